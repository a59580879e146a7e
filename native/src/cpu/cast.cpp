/*
 * dtype casts of n elements: f32 → bf16 and bf16 → f32 as bf16.h rounds them, and a cast to the
 * same dtype is a copy.
 */
#include <cstring>

#include "bf16.h"
#include "ops.h"

namespace nvlm::cpu {

namespace {

size_t dtype_size(nvlm_dtype dtype) {
    switch (dtype) {
        case NVLM_F32:
        case NVLM_I32: return 4;
        case NVLM_BF16: return 2;
        case NVLM_U8: return 1;
    }
    return 0;
}

}  // namespace

void cast(void* dst, nvlm_dtype dst_dtype, const void* src, nvlm_dtype src_dtype, int64_t n) {
    if (dst_dtype == src_dtype) {
        std::memmove(dst, src, static_cast<size_t>(n) * dtype_size(dst_dtype));
    } else if (src_dtype == NVLM_F32) {
        const float* in = static_cast<const float*>(src);
        uint16_t* out = static_cast<uint16_t*>(dst);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) out[i] = f32_to_bf16(in[i]);
    } else {
        const uint16_t* in = static_cast<const uint16_t*>(src);
        float* out = static_cast<float*>(dst);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(in[i]);
    }
}

}  // namespace nvlm::cpu
