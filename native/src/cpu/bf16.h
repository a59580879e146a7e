/*
 * bf16 rounding on the host, shared by nvlm_cast and by the ops whose operands the BF16 math mode
 * (nvlm_math_mode) rounds: f32 → bf16 rounds to nearest, ties to even, on the bits (a NaN becomes
 * the quiet NaN 0x7FC0 with its sign); bf16 → f32 is exact (the bf16 bits are the f32's upper
 * half). The CUDA kernels use the same bit manipulation, so both backends round every value alike.
 */
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace nvlm::cpu {

// Adding 0x7FFF plus the lowest kept bit and truncating rounds to nearest even and carries into the
// exponent (up to Inf) where it must; NaNs are handled first because the carry could make one Inf.
inline uint16_t f32_to_bf16(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    const uint32_t sign = (bits >> 16) & 0x8000u;
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7FC0u);
    const uint32_t rounding_bias = 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

inline float bf16_to_f32(uint16_t value) {
    const uint32_t bits = static_cast<uint32_t>(value) << 16;
    float result;
    std::memcpy(&result, &bits, sizeof result);
    return result;
}

// The f32 nearest to value that a bf16 can hold.
inline float round_to_bf16(float value) { return bf16_to_f32(f32_to_bf16(value)); }

// A copy of x (n) with every element rounded to bf16: the operand a BF16-mode op multiplies.
inline std::vector<float> rounded_to_bf16(const float* x, int64_t n) {
    std::vector<float> rounded(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) rounded[static_cast<size_t>(i)] = round_to_bf16(x[i]);
    return rounded;
}

}  // namespace nvlm::cpu
