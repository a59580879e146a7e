/*
 * NF4 base weights: the reference quantiser and dequantiser of nf4.h's layout (bitsandbytes 0.47,
 * bit for bit), and the linear layer over a quantised weight.
 *
 * Bit-exactness reaches past the NF4 code into two values bitsandbytes takes from torch: the dynamic
 * map (create_dynamic_map(), built from torch.linspace in float32) and the offset (absmax.mean()).
 * Their bits depend on the order of torch's float32 operations, reproduced below as torch runs them on
 * an AVX2 CPU (8-float vectors), where the fixtures (tests/fixtures/nf4) were made.
 *
 * The linear layer dequantises kTileRows rows of w at a time into a workspace and multiplies them with
 * the GEMM of matmul.cpp, so that at most a (kTileRows, k) slice of w exists in f32.
 */
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "ops.h"

namespace nvlm::cpu {

namespace {

constexpr int64_t kTileRows = 256;  // rows of w dequantised at a time by the linear layer
constexpr int64_t kTorchLanes = 8;  // floats in one of torch's AVX2 vectors

// Element `index` of torch.linspace(start, end, steps) in float32. torch fills the tensor 16 elements
// (two vectors) per round while 16 remain, then one by one. A vector, or a lone element, starts from
// a base computed with one fused multiply-add from the nearer end; lane j of a vector adds j·step.
float linspace_element(float start, float end, int64_t steps, int64_t index) {
    const float step = (end - start) / static_cast<float>(steps - 1);
    const int64_t vectorised = steps / (2 * kTorchLanes) * (2 * kTorchLanes);
    const int64_t first = index < vectorised ? index / kTorchLanes * kTorchLanes : index;
    const float base = first < steps / 2 ? std::fma(step, static_cast<float>(first), start)
                                         : std::fma(-step, static_cast<float>(steps - first - 1), end);
    const int64_t lane = index - first;
    return lane == 0 ? base : base + static_cast<float>(lane) * step;
}

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for each decade
// d = 0..6, the 2^d midpoints of linspace(0.1, 1, 2^d + 1) times 10^(d−6), with both signs; then 0 and
// 1; ascending. code (kDynamicCodes).
void dynamic_map(float* code) {
    constexpr int kDecades = 7;
    constexpr float kDecadeScale[kDecades] = {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f, 1.0f};
    int count = 0;
    for (int decade = 0; decade < kDecades; decade++) {
        const int64_t steps = (int64_t{1} << decade) + 1;
        for (int64_t i = 0; i + 1 < steps; i++) {
            const float midpoint =
                (linspace_element(0.1f, 1.0f, steps, i) + linspace_element(0.1f, 1.0f, steps, i + 1)) / 2.0f;
            code[count++] = kDecadeScale[decade] * midpoint;
            code[count++] = -kDecadeScale[decade] * midpoint;
        }
    }
    code[count++] = 0.0f;
    code[count++] = 1.0f;
    std::sort(code, code + count);
}

// ceil(log2(x)) for x > 2, and 1 below (torch's utils::CeilLog2).
int64_t ceil_log2(int64_t x) {
    int64_t power = 1;
    while ((int64_t{1} << power) < x) power++;
    return power;
}

// mean(x (n)) in float32 as torch's cascade_sum adds it up for a contiguous tensor (vectors of
// kTorchLanes floats, or single floats when n < kTorchLanes), then divides by n:
//   - rows of 4 vectors are added into 4 accumulators; every 2^p rows (p = max(4, ceil_log2(rows)/4))
//     level 0 is added into level 1 and cleared, level 1 into level 2 when the row count is a multiple
//     of 2^(2p), and so on up 4 levels; the remaining rows go into level 0 and the levels are summed;
//   - vectors after the last whole row go into accumulator 0, then accumulators 1..3 are added to it;
//   - the scalar tail after the last whole vector is summed from 0, then the lanes are added in order.
// torch splits a sum of more than 32768 values across threads, so beyond that its result depends on
// its thread count (and on the GPU, on CUDA's reduction); this keeps the single-thread order.
float mean_in_torch_order(const float* x, int64_t n) {
    constexpr int64_t kAccumulators = 4, kLevels = 4;
    using Vector = std::array<float, kTorchLanes>;
    const int64_t lanes = n >= kTorchLanes ? kTorchLanes : 1;
    const int64_t vectors = n / lanes;
    const int64_t rows = vectors / kAccumulators;
    auto add = [lanes](Vector& into, const float* values) {
        for (int64_t lane = 0; lane < lanes; lane++) into[lane] += values[lane];
    };

    Vector acc[kLevels][kAccumulators] = {};
    auto add_row = [&](int64_t row) {
        for (int64_t a = 0; a < kAccumulators; a++) add(acc[0][a], x + (row * kAccumulators + a) * lanes);
    };
    const int64_t level_power = std::max<int64_t>(4, ceil_log2(rows) / kLevels);
    const int64_t level_step = int64_t{1} << level_power;
    int64_t row = 0;
    while (row + level_step <= rows) {
        for (int64_t j = 0; j < level_step; j++) add_row(row++);
        for (int64_t level = 1; level < kLevels; level++) {
            for (int64_t a = 0; a < kAccumulators; a++) {
                add(acc[level][a], acc[level - 1][a].data());
                acc[level - 1][a] = Vector{};
            }
            if ((row & ((level_step - 1) << (level * level_power))) != 0) break;
        }
    }
    for (; row < rows; row++) add_row(row);
    for (int64_t level = 1; level < kLevels; level++)
        for (int64_t a = 0; a < kAccumulators; a++) add(acc[0][a], acc[level][a].data());

    Vector& total = acc[0][0];
    for (int64_t v = rows * kAccumulators; v < vectors; v++) add(total, x + v * lanes);
    for (int64_t a = 1; a < kAccumulators; a++) add(total, acc[0][a].data());

    float sum = 0.0f;
    for (int64_t i = vectors * lanes; i < n; i++) sum += x[i];
    for (int64_t lane = 0; lane < lanes; lane++) sum += total[lane];
    return sum / static_cast<float>(n);
}

// The index of the code (kDynamicCodes, ascending) entry nearest to x as bitsandbytes'
// argmin(|x − code|) picks it: float32 distances, the first index among equal ones. The rounded
// distance grows monotonically away from x, so the nearest entry is one of x's two neighbours, and
// equal distances can only continue to its left. NaN (a nested block whose absmax values all equal
// the offset) gets 0, the first NaN that torch's argmin returns.
uint8_t nearest_code(const float* code, float x) {
    if (std::isnan(x)) return 0;
    int64_t best = std::lower_bound(code, code + nf4::kDynamicCodes, x) - code;
    if (best == nf4::kDynamicCodes) best--;
    if (best > 0 && std::fabs(x - code[best - 1]) <= std::fabs(x - code[best])) best--;
    while (best > 0 && std::fabs(x - code[best - 1]) == std::fabs(x - code[best])) best--;
    return static_cast<uint8_t>(best);
}

// out (end − begin) = dequantised elements [begin, end) of the flattened weight, block by block.
void dequantize_range(float* out, const nf4::Weight& w, int64_t begin, int64_t end) {
    if (begin >= end) return;
    const float offset = *w.offset;
    const int64_t first_block = begin / nf4::kBlock, last_block = (end - 1) / nf4::kBlock;
#pragma omp parallel for schedule(static)
    for (int64_t block = first_block; block <= last_block; block++) {
        const float scale = nf4::block_scale(w, offset, block);
        const int64_t lo = std::max(block * nf4::kBlock, begin), hi = std::min((block + 1) * nf4::kBlock, end);
        for (int64_t i = lo; i < hi; i++) out[i - begin] = nf4::dequantize_value(w, scale, i);
    }
}

}  // namespace

void nf4_quantize_ref(uint8_t* packed, uint8_t* absmax_q, float* absmax2, float* offset, float* absmax_code,
                      float* absmax, const float* w, int64_t n, int64_t k) {
    const int64_t numel = n * k, blocks = nf4::block_count(numel), nested = nf4::nested_block_count(numel);
    std::vector<float> own_absmax(absmax == nullptr ? static_cast<size_t>(blocks) : 0);
    float* amax = absmax != nullptr ? absmax : own_absmax.data();

    // 4-bit codes: a block starts at an even element, so its bytes are its own.
#pragma omp parallel for schedule(static)
    for (int64_t block = 0; block < blocks; block++) {
        const int64_t lo = block * nf4::kBlock, hi = std::min(lo + nf4::kBlock, numel);
        float block_max = 0.0f;
        for (int64_t i = lo; i < hi; i++) block_max = std::max(block_max, std::fabs(w[i]));
        amax[block] = block_max;
        const float inverse = 1.0f / block_max;  // +inf for a zero block: 0 · inf = NaN → code 0
        auto code_of = [&](int64_t i) { return nf4::quantize_code(nf4::clamp_unit(w[i] * inverse)); };
        for (int64_t i = lo; i < hi; i += 2)
            packed[i / 2] = nf4::pack(code_of(i), i + 1 < hi ? code_of(i + 1) : nf4::quantize_code(0.0f));
    }

    // Double quantisation of absmax.
    dynamic_map(absmax_code);
    const float mean = mean_in_torch_order(amax, blocks);
    *offset = mean;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nested; c++) {
        const int64_t lo = c * nf4::kNestedBlock, hi = std::min(lo + nf4::kNestedBlock, blocks);
        float nested_max = 0.0f;
        for (int64_t b = lo; b < hi; b++) nested_max = std::max(nested_max, std::fabs(amax[b] - mean));
        absmax2[c] = nested_max;
        const float inverse = 1.0f / nested_max;
        for (int64_t b = lo; b < hi; b++)
            absmax_q[b] = nearest_code(absmax_code, nf4::clamp_unit((amax[b] - mean) * inverse));
    }
}

void nf4_dequantize_ref(float* w, const nf4::Weight& quantized, int64_t n, int64_t k) {
    dequantize_range(w, quantized, 0, n * k);
}

// out (m, n) = x (m, k) · dequant(w)ᵀ: each tile of rows [r0, r1) of w gives columns [r0, r1) of out.
void nf4_linear_forward(float* out, const float* x, const nf4::Weight& w, int64_t m, int64_t k, int64_t n) {
    std::vector<float> tile(static_cast<size_t>(std::min(n, kTileRows) * k));  // (rows, k)
    for (int64_t r0 = 0; r0 < n; r0 += kTileRows) {
        const int64_t rows = std::min(kTileRows, n - r0);
        dequantize_range(tile.data(), w, r0 * k, (r0 + rows) * k);
        sgemm(false, true, m, rows, k, 1.0f, x, k, tile.data(), k, 0.0f, out + r0, n);
    }
}

// dx (m, k) += dout (m, n) · dequant(w): each tile of rows [r0, r1) of w adds dout[:, r0:r1] · tile.
void nf4_linear_backward(float* dx, const float* dout, const nf4::Weight& w, int64_t m, int64_t k, int64_t n) {
    if (dx == nullptr) return;
    std::vector<float> tile(static_cast<size_t>(std::min(n, kTileRows) * k));  // (rows, k)
    for (int64_t r0 = 0; r0 < n; r0 += kTileRows) {
        const int64_t rows = std::min(kTileRows, n - r0);
        dequantize_range(tile.data(), w, r0 * k, (r0 + rows) * k);
        sgemm(false, false, m, k, rows, 1.0f, dout + r0, n, tile.data(), k, 1.0f, dx, k);
    }
}

}  // namespace nvlm::cpu
