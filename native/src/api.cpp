/*
 * Exports of nvlm.h: the library, contexts and buffers. The ops are in api_ops.cpp and
 * api_nf4.cpp; every export validates through api_checks.h inside guarded(). The exports keep C
 * linkage from their declarations in nvlm.h.
 */
#include <cstdint>
#include <memory>
#include <mutex>

#include "api_checks.h"
#include "backend.h"
#include "context.h"
#include "error.h"

using namespace nvlm::api;

// ---- library ----------------------------------------------------------------------------------

NVLM_API int32_t nvlm_abi_version(void) { return NVLM_ABI_VERSION; }

NVLM_API const char* nvlm_last_error(void) { return nvlm::last_error(); }

NVLM_API nvlm_status nvlm_device_count(int32_t kind, int32_t* count) {
    return guarded(__func__, [&](const char* fn) {
        if (count == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: count is null", fn);
        switch (kind) {
            case NVLM_DEVICE_CPU: *count = 1; return NVLM_OK;
            case NVLM_DEVICE_CUDA:
#if defined(NVLM_WITH_CUDA)
                return nvlm::cuda_device_count(count);
#else
                *count = 0;
                return NVLM_OK;
#endif
            default: return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: kind = %d is not an nvlm_device_kind", fn, kind);
        }
    });
}

// ---- contexts and buffers ---------------------------------------------------------------------

NVLM_API nvlm_status nvlm_context_create(int32_t kind, int32_t device_index, nvlm_context** out) {
    return guarded(__func__, [&](const char* fn) {
        if (out == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: out is null", fn);
        *out = nullptr;
        if (device_index < 0)
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: device_index = %d is negative", fn, device_index);
        std::unique_ptr<nvlm::Backend> backend;
        switch (kind) {
            case NVLM_DEVICE_CPU:
                if (device_index != 0)
                    return fail(NVLM_ERR_UNAVAILABLE, "%s: CPU device %d does not exist (there is one, 0)", fn,
                                device_index);
                backend = nvlm::create_cpu_backend();
                break;
            case NVLM_DEVICE_CUDA: {
#if defined(NVLM_WITH_CUDA)
                int32_t devices = 0;
                NVLM_TRY(nvlm::cuda_device_count(&devices));
                if (devices == 0) return fail(NVLM_ERR_UNAVAILABLE, "%s: no CUDA device", fn);
                if (device_index >= devices)
                    return fail(NVLM_ERR_UNAVAILABLE, "%s: CUDA device %d does not exist (there are %d)", fn,
                                device_index, devices);
                NVLM_TRY(nvlm::create_cuda_backend(device_index, &backend));
                break;
#else
                return fail(NVLM_ERR_UNAVAILABLE, "%s: built without CUDA", fn);
#endif
            }
            default: return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: kind = %d is not an nvlm_device_kind", fn, kind);
        }
        *out = new nvlm_context(static_cast<nvlm_device_kind>(kind), device_index, std::move(backend));
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_context_destroy(nvlm_context* ctx) {
    return guarded(__func__, [&](const char*) {
        if (ctx == nullptr) return NVLM_OK;
        bool last_reference;
        {
            std::lock_guard<std::mutex> lock(ctx->lifetime_mutex);
            ctx->destroyed = true;
            last_reference = ctx->live_buffers == 0;
            if (!last_reference) ctx->allocator.empty_cache();
        }
        if (last_reference) delete ctx;
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_context_synchronize(nvlm_context* ctx) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        return ctx->backend->synchronize();
    });
}

NVLM_API nvlm_status nvlm_context_memory_stats(nvlm_context* ctx, nvlm_memory_stats* stats) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        if (stats == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: stats is null", fn);
        *stats = ctx->allocator.stats();
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_context_reset_peak(nvlm_context* ctx) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        ctx->allocator.reset_peak();
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_context_set_math_mode(nvlm_context* ctx, int32_t mode) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        if (mode != NVLM_MATH_F32 && mode != NVLM_MATH_BF16)
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: mode = %d is not an nvlm_math_mode", fn, mode);
        ctx->backend->math_mode = static_cast<nvlm_math_mode>(mode);
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_context_math_mode(nvlm_context* ctx, int32_t* mode) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        if (mode == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: mode is null", fn);
        *mode = ctx->backend->math_mode;
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_range_push(nvlm_context* ctx, const char* name) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        if (name == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: name is null", fn);
        ctx->backend->range_push(name);
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_range_pop(nvlm_context* ctx) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        ctx->backend->range_pop();
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_buffer_alloc(nvlm_context* ctx, int64_t nbytes, nvlm_buffer** out) {
    return guarded(__func__, [&](const char* fn) {
        if (out == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: out is null", fn);
        *out = nullptr;
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"nbytes", nbytes}}));
        void* block = nullptr;
        NVLM_TRY(ctx->allocator.allocate(nbytes, &block));
        nvlm_buffer* buf;
        try {
            buf = new nvlm_buffer{ctx, block, nbytes};
        } catch (...) {
            ctx->allocator.release(block, nbytes);
            throw;
        }
        std::lock_guard<std::mutex> lock(ctx->lifetime_mutex);
        ctx->live_buffers++;
        *out = buf;
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_buffer_free(nvlm_buffer* buf) {
    return guarded(__func__, [&](const char*) {
        if (buf == nullptr) return NVLM_OK;
        nvlm_context* ctx = buf->ctx;
        ctx->allocator.release(buf->data, buf->nbytes);
        delete buf;
        bool last_reference;
        {
            std::lock_guard<std::mutex> lock(ctx->lifetime_mutex);
            ctx->live_buffers--;
            last_reference = ctx->destroyed && ctx->live_buffers == 0;
        }
        if (last_reference) delete ctx;
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_buffer_size(const nvlm_buffer* buf, int64_t* nbytes) {
    return guarded(__func__, [&](const char* fn) {
        if (buf == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: buf is null", fn);
        if (nbytes == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: nbytes is null", fn);
        *nbytes = buf->nbytes;
        return NVLM_OK;
    });
}

NVLM_API nvlm_status nvlm_buffer_upload(nvlm_buffer* dst, int64_t offset, const void* src, int64_t nbytes) {
    return guarded(__func__, [&](const char* fn) {
        if (dst == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: dst is null", fn);
        NVLM_TRY(check_sizes(fn, {{"offset", offset}, {"nbytes", nbytes}}));
        NVLM_TRY(check_range(fn, "dst", dst, offset, nbytes));
        if (nbytes == 0) return NVLM_OK;
        if (src == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: src is null", fn);
        return dst->ctx->backend->upload(data<char>(dst) + offset, src, static_cast<size_t>(nbytes));
    });
}

NVLM_API nvlm_status nvlm_buffer_download(const nvlm_buffer* src, int64_t offset, void* dst, int64_t nbytes) {
    return guarded(__func__, [&](const char* fn) {
        if (src == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: src is null", fn);
        NVLM_TRY(check_sizes(fn, {{"offset", offset}, {"nbytes", nbytes}}));
        NVLM_TRY(check_range(fn, "src", src, offset, nbytes));
        if (nbytes == 0) return NVLM_OK;
        if (dst == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: dst is null", fn);
        return src->ctx->backend->download(dst, data<const char>(src) + offset, static_cast<size_t>(nbytes));
    });
}

NVLM_API nvlm_status nvlm_buffer_copy(nvlm_buffer* dst, int64_t dst_offset, const nvlm_buffer* src, int64_t src_offset,
                                      int64_t nbytes) {
    return guarded(__func__, [&](const char* fn) {
        if (dst == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: dst is null", fn);
        if (src == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: src is null", fn);
        if (dst->ctx != src->ctx)
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: src and dst belong to different contexts", fn);
        NVLM_TRY(check_sizes(fn, {{"dst_offset", dst_offset}, {"src_offset", src_offset}, {"nbytes", nbytes}}));
        NVLM_TRY(check_range(fn, "dst", dst, dst_offset, nbytes));
        NVLM_TRY(check_range(fn, "src", src, src_offset, nbytes));
        if (nbytes == 0) return NVLM_OK;
        return dst->ctx->backend->copy(data<char>(dst) + dst_offset, data<const char>(src) + src_offset,
                                       static_cast<size_t>(nbytes));
    });
}

NVLM_API nvlm_status nvlm_buffer_zero(nvlm_buffer* buf) {
    return guarded(__func__, [&](const char* fn) {
        if (buf == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: buf is null", fn);
        if (buf->nbytes == 0) return NVLM_OK;
        return buf->ctx->backend->zero(buf->data, static_cast<size_t>(buf->nbytes));
    });
}
