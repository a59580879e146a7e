/*
 * dtype casts of n elements: f32 → bf16 rounds to nearest even (a NaN becomes the quiet NaN
 * 0x7FC0 with its sign), bf16 → f32 is exact (the bf16 bits are the f32's upper half), and a
 * cast to the same dtype is a copy.
 */
#include <cstring>

#include "ops.h"

namespace nvlm::cpu {

namespace {

uint16_t f32_to_bf16(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    const uint32_t sign = (bits >> 16) & 0x8000u;
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7FC0u);
    const uint32_t rounding_bias = 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

float bf16_to_f32(uint16_t value) {
    const uint32_t bits = static_cast<uint32_t>(value) << 16;
    float result;
    std::memcpy(&result, &bits, sizeof result);
    return result;
}

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
