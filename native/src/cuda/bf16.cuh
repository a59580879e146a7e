/*
 * bf16 rounding on the device, the bit manipulation of the host's ../cpu/bf16.h: f32 → bf16 rounds
 * to nearest, ties to even, on the bits (a NaN becomes the quiet NaN 0x7FC0 with its sign); bf16 →
 * f32 is exact (the bf16 bits are the f32's upper half). nvlm_cast and the BF16 math mode's operand
 * copies (CudaBackend::to_bf16) round with it, so both backends round every value alike, NaN
 * payloads included, without depending on a library's conversion (__float2bfloat16 and cuBLAS's
 * internal ones do not document their NaN convention).
 */
#pragma once

#include <cstdint>

namespace nvlm::cuda {

// Adding 0x7FFF plus the lowest kept bit and truncating rounds to nearest, ties to even, and
// carries into the exponent (up to Inf) where it must; NaNs are handled first because the carry
// could turn one into Inf or flip its sign.
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float value) {
    const uint32_t bits = __float_as_uint(value);
    const uint32_t sign = (bits >> 16) & 0x8000u;
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7FC0u);
    const uint32_t rounding_bias = 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t bits) {
    return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

}  // namespace nvlm::cuda
