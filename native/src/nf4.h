/*
 * nf4.h — the NF4 block layout, defined once for the CPU twin (cpu/nf4.cpp) and the CUDA kernels.
 *
 * It is bitsandbytes 0.47's quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True),
 * the QLoRA format, bit for bit. A weight w (n, k) is flattened row-major into numel = n·k values and
 * cut into blocks of kBlock (the last block may be partial):
 *
 *   absmax[b]     = max |w[i]| over block b                                               (blocks)
 *   index[i]      = quantize_code(clamp(w[i] · (1/absmax[b]), −1, 1))                      4 bits each
 *   packed[j]     = index[2j] << 4 | index[2j+1]: element 2j in the high nibble            (packed_bytes)
 *
 * Double quantisation stores absmax in 8 bits ("nested" state):
 *
 *   offset        = mean(absmax)                                                          (1)
 *   absmax2[c]    = max |absmax[b] − offset| over nested block c (kNestedBlock absmax)    (nested_blocks)
 *   absmax_q[b]   = index of the absmax_code entry nearest to
 *                   clamp((absmax[b] − offset) · (1/absmax2[c]), −1, 1)                    (blocks, u8)
 *   absmax_code   = bitsandbytes' signed dynamic map (create_dynamic_map()), ascending     (kDynamicCodes)
 *
 * and dequantisation is
 *
 *   scale[b]      = absmax_code[absmax_q[b]] · absmax2[b / kNestedBlock] + offset
 *   w'[i]         = code_value(index[i]) · scale[i / kBlock]
 *
 * Every step is one rounded float32 operation, never a fused multiply-add (bitsandbytes runs them as
 * separate torch ops); mul_rn / add_rn below keep nvcc from contracting them.
 *
 * Edge cases, as bitsandbytes: an all-zero block has absmax 0, 0 · (1/0) is NaN and NaN gets index 0
 * (code −1), so the block dequantises to −scale[b]; an odd numel pads the last byte's low nibble
 * with quantize_code(0) = 7.
 */
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#  define NVLM_HOST_DEVICE __host__ __device__
#else
#  define NVLM_HOST_DEVICE
#endif

namespace nvlm::nf4 {

constexpr int64_t kBlock = 64;         // weights per absmax (bitsandbytes' blocksize)
constexpr int64_t kNestedBlock = 256;  // absmax values per nested absmax
constexpr int kCodes = 16;             // 4-bit codes
constexpr int kDynamicCodes = 256;     // 8-bit codes of absmax

// Even blocks start at even elements, so the two codes of a byte always share one block (one scale).
static_assert(kBlock % 2 == 0, "a byte's two codes must belong to one block");

// ---- sizes of the quantised state of numel weights ------------------------------------------------

NVLM_HOST_DEVICE constexpr int64_t packed_bytes(int64_t numel) { return (numel + 1) / 2; }
NVLM_HOST_DEVICE constexpr int64_t block_count(int64_t numel) { return (numel + kBlock - 1) / kBlock; }
NVLM_HOST_DEVICE constexpr int64_t nested_block_count(int64_t numel) {
    return (block_count(numel) + kNestedBlock - 1) / kNestedBlock;
}

static_assert(packed_bytes(kBlock) == 32, "a full block packs into 32 bytes");
static_assert(block_count(kBlock + 1) == 2 && nested_block_count(kBlock * kNestedBlock + 1) == 2,
              "partial blocks count as blocks");

// ---- the NF4 code ----------------------------------------------------------------------------------

// The 16 NF4 values (bitsandbytes' get_4bit_type("nf4")), ascending: quantiles of N(0, 1) scaled to
// [−1, 1], with an exact 0 at index 7.
NVLM_HOST_DEVICE constexpr float code_value(int index) {
    constexpr float values[kCodes] = {
        -1.0f,
        -0.6961928009986877f,
        -0.5250730514526367f,
        -0.39491748809814453f,
        -0.28444138169288635f,
        -0.18477343022823334f,
        -0.09105003625154495f,
        0.0f,
        0.07958029955625534f,
        0.16093020141124725f,
        0.24611230194568634f,
        0.33791524171829224f,
        0.44070982933044434f,
        0.5626170039176941f,
        0.7229568362236023f,
        1.0f,
    };
    return values[index];
}

// bitsandbytes' decision thresholds between adjacent codes: the midpoints, as the float literals of its
// CPU and CUDA dQuantizeNF4 trees. Four midpoints (0, 8, 12, 14) fall halfway between two floats, and
// the literals read as float round them the other way than float((a + b) / 2) would, so they are data.
NVLM_HOST_DEVICE constexpr float threshold(int index) {
    constexpr float values[kCodes - 1] = {
        -0.8480964004993439f,
        -0.6106329262256622f,
        -0.4599952697753906f,
        -0.33967943489551544f,
        -0.23460740596055984f,
        -0.13791173323988914f,
        -0.045525018125772476f,
        0.03979014977812767f,
        0.1202552504837513f,
        0.2035212516784668f,
        0.2920137718319893f,
        0.3893125355243683f,
        0.5016634166240692f,
        0.6427869200706482f,
        0.8614784181118011f,
    };
    return values[index];
}

// The code of a scaled weight x: the number of thresholds strictly below x. This is the outcome of
// bitsandbytes' tree of `x > threshold` tests (a binary search over the same sorted thresholds), NaN
// included: every comparison with NaN is false, so NaN gets 0.
NVLM_HOST_DEVICE constexpr uint8_t quantize_code(float x) {
    uint8_t index = 0;
    for (int i = 0; i < kCodes - 1; i++) index += x > threshold(i) ? 1 : 0;
    return index;
}

// Two codes in one byte: element 2j in the high nibble, element 2j+1 in the low one.
NVLM_HOST_DEVICE constexpr uint8_t pack(uint8_t even, uint8_t odd) { return static_cast<uint8_t>(even << 4 | odd); }
NVLM_HOST_DEVICE constexpr uint8_t unpack(uint8_t byte, int64_t element) {
    return element % 2 == 0 ? byte >> 4 : byte & 0x0F;
}

namespace check {

constexpr bool thresholds_separate_the_codes() {
    for (int i = 0; i < kCodes - 1; i++)
        if (!(code_value(i) < threshold(i) && threshold(i) < code_value(i + 1))) return false;
    return true;
}

constexpr bool every_code_quantises_to_itself() {
    for (int i = 0; i < kCodes; i++)
        if (quantize_code(code_value(i)) != i) return false;
    return true;
}

}  // namespace check

static_assert(check::thresholds_separate_the_codes(), "each threshold lies strictly between its two codes");
static_assert(check::every_code_quantises_to_itself(), "quantize_code inverts code_value");
static_assert(quantize_code(0.0f) == 7 && code_value(7) == 0.0f, "0 is code 7, the odd-numel padding");
static_assert(pack(0xA, 0x5) == 0xA5 && unpack(0xA5, 0) == 0xA && unpack(0xA5, 1) == 0x5, "nibble order");

// ---- the arithmetic ----------------------------------------------------------------------------------

// One rounded float32 product or sum: separate calls, so that no compiler fuses them into an FMA.
NVLM_HOST_DEVICE inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

NVLM_HOST_DEVICE inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

// x clamped to [−1, 1], NaN kept (as torch.clamp): the scaled value of a weight or an absmax.
NVLM_HOST_DEVICE inline float clamp_unit(float x) { return x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x); }

// ---- one quantised weight --------------------------------------------------------------------------

// The buffers of one quantised weight of numel values, as nvlm.h passes them (device pointers).
struct Weight {
    const uint8_t* packed;     // (packed_bytes(numel))
    const uint8_t* absmax_q;   // (block_count(numel))
    const float* absmax2;      // (nested_block_count(numel))
    const float* offset;       // (1)
    const float* absmax_code;  // (kDynamicCodes)
};

// scale[b]: the dequantised absmax of block b.
NVLM_HOST_DEVICE inline float block_scale(const Weight& w, float offset, int64_t block) {
    return add_rn(mul_rn(w.absmax_code[w.absmax_q[block]], w.absmax2[block / kNestedBlock]), offset);
}

// w'[element] given its block's scale.
NVLM_HOST_DEVICE inline float dequantize_value(const Weight& w, float scale, int64_t element) {
    return mul_rn(code_value(unpack(w.packed[element / 2], element)), scale);
}

}  // namespace nvlm::nf4
