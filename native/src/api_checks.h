/*
 * What every export of nvlm.h does before it reaches a backend (api*.cpp):
 *
 * guarded() turns escaping C++ exceptions into statuses (std::bad_alloc → NVLM_ERR_OUT_OF_MEMORY,
 * anything else → NVLM_ERR_INTERNAL); the check_* functions validate arguments and, on failure,
 * name the argument and the numbers: null handles, negative sizes, buffers of another context,
 * buffers smaller than the shapes need, enums. Gradient outputs (d*), bias and key_mask may be
 * null; every other handle is required.
 */
#ifndef NVLM_API_CHECKS_H
#define NVLM_API_CHECKS_H

#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <new>

#include "context.h"
#include "error.h"

namespace nvlm::api {

using nvlm::fail;

// ---- exception barrier ------------------------------------------------------------------------

template <class Body>
inline nvlm_status guarded(const char* fn, Body&& body) noexcept {
    try {
        return body(fn);
    } catch (const std::bad_alloc&) {
        return fail(NVLM_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    } catch (const std::exception& e) {
        return fail(NVLM_ERR_INTERNAL, "%s: %s", fn, e.what());
    } catch (...) {
        return fail(NVLM_ERR_INTERNAL, "%s: unknown exception", fn);
    }
}

// ---- argument checks --------------------------------------------------------------------------

struct ElementType {
    const char* name;  // plural, for "(n=3, d=4: 12 floats)"
    int64_t bytes;
};
constexpr ElementType kF32{"floats", 4};
constexpr ElementType kBF16{"bf16 values", 2};
constexpr ElementType kI32{"int32 values", 4};
constexpr ElementType kU8{"uint8 values", 1};

struct Dim {
    const char* name;
    int64_t value;
};
using Dims = std::initializer_list<Dim>;

inline nvlm_status check_context(const char* fn, const nvlm_context* ctx) {
    if (ctx == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: ctx is null", fn);
    return NVLM_OK;
}

inline nvlm_status check_sizes(const char* fn, Dims sizes) {
    for (const Dim& size : sizes)
        if (size.value < 0)
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s = %lld is negative", fn, size.name,
                        static_cast<long long>(size.value));
    return NVLM_OK;
}

inline nvlm_status check_positive(const char* fn, const char* name, int64_t value) {
    if (value <= 0)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s = %lld must be positive", fn, name,
                    static_cast<long long>(value));
    return NVLM_OK;
}

// A required buffer of ctx that holds a tensor of the given (non-negative) dims.
inline nvlm_status check_buffer(const char* fn, const nvlm_context* ctx, const char* name, const nvlm_buffer* buf,
                         ElementType type, Dims dims) {
    if (buf == nullptr) return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s is null", fn, name);
    if (buf->ctx != ctx)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s belongs to a different context than ctx", fn, name);

    char shape[256];
    int length = 0;
    int64_t count = 1;
    bool overflow = false;
    for (const Dim& dim : dims) {
        length += std::snprintf(shape + length, sizeof shape - static_cast<size_t>(length), "%s%s=%lld",
                                length > 0 ? ", " : "", dim.name, static_cast<long long>(dim.value));
        if (length >= static_cast<int>(sizeof shape)) length = static_cast<int>(sizeof shape) - 1;
        if (dim.value != 0 && count > INT64_MAX / dim.value) overflow = true;
        if (!overflow) count *= dim.value;
    }
    if (overflow || count > INT64_MAX / type.bytes)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s would need more than 2^63 bytes (%s)", fn, name, shape);
    const int64_t needed = count * type.bytes;
    if (buf->nbytes < needed)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s holds %lld bytes, needs %lld (%s: %lld %s)", fn, name,
                    static_cast<long long>(buf->nbytes), static_cast<long long>(needed), shape,
                    static_cast<long long>(count), type.name);
    return NVLM_OK;
}

// A buffer that may be null (gradient outputs, bias, key_mask); checked like check_buffer if not.
inline nvlm_status check_optional_buffer(const char* fn, const nvlm_context* ctx, const char* name, const nvlm_buffer* buf,
                                  ElementType type, Dims dims) {
    if (buf == nullptr) return NVLM_OK;
    return check_buffer(fn, ctx, name, buf, type, dims);
}

// Bytes [offset, offset + nbytes) must lie inside buf (offset and nbytes already non-negative).
inline nvlm_status check_range(const char* fn, const char* name, const nvlm_buffer* buf, int64_t offset, int64_t nbytes) {
    if (offset > buf->nbytes || nbytes > buf->nbytes - offset)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %lld bytes at offset %lld run past the end of %s, which holds %lld",
                    fn, static_cast<long long>(nbytes), static_cast<long long>(offset), name,
                    static_cast<long long>(buf->nbytes));
    return NVLM_OK;
}

inline nvlm_status check_dtype(const char* fn, const char* name, int32_t dtype) {
    if (dtype < NVLM_F32 || dtype > NVLM_I32)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s = %d is not an nvlm_dtype", fn, name, dtype);
    return NVLM_OK;
}

inline ElementType element_type(int32_t dtype) {
    switch (dtype) {
        case NVLM_BF16: return kBF16;
        case NVLM_U8: return kU8;
        case NVLM_I32: return kI32;
        default: return kF32;
    }
}

// The data of a buffer (null for a null handle), typed for the backend.
template <class T>
inline T* data(const nvlm_buffer* buf) {
    return buf != nullptr ? static_cast<T*>(buf->data) : nullptr;
}

}  // namespace nvlm::api

#endif  // NVLM_API_CHECKS_H
