/*
 * The two opaque handles of nvlm.h.
 *
 * A context owns a backend and the caching allocator over it. A buffer is a block of that
 * allocator plus its requested size. Destroying a context while some of its buffers are still
 * allocated only marks it: the last nvlm_buffer_free then deletes it, so handles may be released
 * in any order (as .NET finalizers do).
 */
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "allocator.h"
#include "backend.h"

struct nvlm_context {
    nvlm_context(nvlm_device_kind kind_, int32_t device_, std::unique_ptr<nvlm::Backend> backend_)
        : kind(kind_), device(device_), backend(std::move(backend_)), allocator(*backend) {}

    const nvlm_device_kind kind;
    const int32_t device;
    const std::unique_ptr<nvlm::Backend> backend;
    nvlm::CachingAllocator allocator;  // after backend: destroyed first, while the backend still works

    std::mutex lifetime_mutex;  // guards the two fields below
    int64_t live_buffers = 0;
    bool destroyed = false;
};

struct nvlm_buffer {
    nvlm_context* const ctx;
    void* const data;
    const int64_t nbytes;
};
