/*
 * The caching allocator of a context, the same for every backend.
 *
 * A request of nbytes takes a block of round_up(max(nbytes, 1), 256) bytes. Freed blocks are not
 * returned to the backend but kept in a free list per block size and handed out again to the next
 * request of that exact block size, so a training loop that allocates the same shapes every step
 * stops calling cudaMalloc/aligned_alloc after its first step. On the CUDA backend all work of a
 * context runs on its one stream, so a block freed by the caller and reused by the next
 * allocation is only touched again by work queued after everything that used it before.
 *
 * Statistics: live_bytes sums the requested sizes of the buffers allocated now; peak_bytes is its
 * maximum since creation or reset_peak; cached_bytes sums the blocks held in the free lists.
 * All methods are thread-safe.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backend.h"

namespace nvlm {

class CachingAllocator {
public:
    explicit CachingAllocator(Backend& backend) : backend_(backend) {}
    ~CachingAllocator();
    CachingAllocator(const CachingAllocator&) = delete;
    CachingAllocator& operator=(const CachingAllocator&) = delete;

    static size_t block_size(int64_t nbytes);

    // A block of block_size(nbytes) bytes: from the free list, else from the backend (after
    // emptying the cache once if the backend is out of memory).
    nvlm_status allocate(int64_t nbytes, void** ptr);
    // Returns a block obtained from allocate(nbytes) to its free list.
    void release(void* ptr, int64_t nbytes);
    // Gives every cached block back to the backend.
    void empty_cache();

    nvlm_memory_stats stats();
    void reset_peak();

private:
    void empty_cache_locked();

    Backend& backend_;
    std::mutex mutex_;
    std::unordered_map<size_t, std::vector<void*>> free_blocks_;  // block size -> cached blocks
    int64_t live_bytes_ = 0;
    int64_t peak_bytes_ = 0;
    int64_t cached_bytes_ = 0;
};

}  // namespace nvlm
