/*
 * NF4 base weights on the GPU: the quantiser and dequantiser of nf4.h's layout (bitsandbytes 0.47,
 * bit for bit, as the CPU twin cpu/nf4.cpp), and the linear layer over a quantised weight
 * w (n, k), flattened row-major into n·k values in NF4 blocks of 64 (a block may straddle rows).
 *
 *   nf4_quantize         packed, absmax_q, absmax2, offset, absmax_code (and absmax if wanted) of w
 *   nf4_dequantize       w (n, k) = code_value(index) · (absmax_code[absmax_q] · absmax2 + offset)
 *   nf4_linear_forward   out (m, n) = x (m, k) · w'ᵀ           (overwrites out)
 *   nf4_linear_backward  dx (m, k) += dout (m, n) · w'           (no weight gradient: w is frozen)
 *
 * Quantisation runs as four kernels: the dynamic map of absmax codes, one warp per NF4 block (absmax
 * and the 32 bytes of codes), the offset (the mean of absmax, in torch's summation order, by one
 * warp), and one thread block per nested block of 256 absmax values (absmax2 and absmax_q). Every
 * float step is nf4.h's mul_rn / add_rn or an explicitly rounded __fdiv_rn / __fsub_rn, so nvcc
 * contracts nothing into a fused multiply-add and the results equal the twin's bytes.
 *
 * The linear layer never writes a dequantised w to global memory. Each thread block of 256 threads
 * (8 warps) computes a 64 × 128 output tile in steps of 32 along the reduction dimension: every
 * step it loads the activations (x, or dout) as f32, and 16 consecutive packed codes per thread with
 * their blocks' absmax_q and absmax2, dequantises them into shared memory with nf4.h's arithmetic,
 * and multiplies with nvcuda::wmma 16×16×16 bf16 fragments into fp32 accumulators (each warp a
 * 32 × 32 sub-tile). The tile is sized for two resident blocks per SM (≤ 128 registers, no spills),
 * so one block's barrier and load latency overlaps the other's tensor-core work.
 *
 * Rounding of the tile path: x (or dout) and w' are ROUNDED TO BF16 in shared memory
 * (round-to-nearest-even) and the products accumulated in fp32, so an element differs from the
 * twin's f32 result by at most about 2^-7 · Σ|x·w|. Shared tiles are double-buffered with a
 * register prefetch of the next step (one __syncthreads per step), rows padded by 8 bf16 against
 * bank conflicts, and partial tiles zero-padded.
 *
 * The forward for m ≤ kGemvMaxRows (decoding one token) is instead a GEMV in fp32 without tensor
 * cores: one warp per output column reads that row of packed codes directly.
 */
#include <cuda_bf16.h>
#include <mma.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend.cuh"

namespace nvlm::cuda {

namespace {

// ---- quantisation ------------------------------------------------------------------------------------

constexpr int kWarp = 32;
constexpr int kTorchLanes = 8;        // floats in one of torch's AVX2 vectors (as the twin's mean)
constexpr int kTorchAccumulators = 4; // vectors per row of torch's cascade sum
constexpr int kTorchLevels = 4;       // levels of torch's cascade sum

// Element `index` of torch.linspace(start, end, steps) in float32, as the twin's linspace_element:
// vectors of 8 (while 16 remain) start from a base computed with one fused multiply-add from the
// nearer end, and lane j adds j·step with a separate product and sum.
__device__ float linspace_element(float start, float end, int64_t steps, int64_t index) {
    const float step = __fdiv_rn(__fsub_rn(end, start), static_cast<float>(steps - 1));
    const int64_t vectorised = steps / (2 * kTorchLanes) * (2 * kTorchLanes);
    const int64_t first = index < vectorised ? index / kTorchLanes * kTorchLanes : index;
    const float base = first < steps / 2 ? fmaf(step, static_cast<float>(first), start)
                                         : fmaf(-step, static_cast<float>(steps - first - 1), end);
    const int64_t lane = index - first;
    return lane == 0 ? base : nf4::add_rn(base, nf4::mul_rn(static_cast<float>(lane), step));
}

// absmax_code (kDynamicCodes) = bitsandbytes' create_dynamic_map(signed=True), ascending, by one
// block of kDynamicCodes threads. Thread t makes the twin's t-th unsorted entry: pair t/2 of the
// midpoints of decades 0..6 (decade d holds pairs 2^d − 1 .. 2^(d+1) − 2; even t positive, odd t
// negative), then 0 and 1. All 256 values are distinct, so an entry's rank (the number of smaller
// entries) is its index after the twin's std::sort.
__global__ void nf4_quantize_code_map_kernel(float* absmax_code) {
    constexpr float kDecadeScale[] = {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f, 1.0f};
    __shared__ float values[nf4::kDynamicCodes];
    const int t = static_cast<int>(threadIdx.x);
    float value = t == nf4::kDynamicCodes - 2 ? 0.0f : 1.0f;
    if (t < nf4::kDynamicCodes - 2) {
        const int pair = t / 2;
        int decade = 0;
        while (pair >= (2 << decade) - 1) decade++;
        const int64_t i = pair - ((1 << decade) - 1);
        const int64_t steps = (int64_t{1} << decade) + 1;
        const float midpoint = __fdiv_rn(
            nf4::add_rn(linspace_element(0.1f, 1.0f, steps, i), linspace_element(0.1f, 1.0f, steps, i + 1)), 2.0f);
        value = nf4::mul_rn(t % 2 == 0 ? kDecadeScale[decade] : -kDecadeScale[decade], midpoint);
    }
    values[t] = value;
    __syncthreads();
    int rank = 0;
    for (int j = 0; j < nf4::kDynamicCodes; j++) rank += values[j] < value ? 1 : 0;
    absmax_code[rank] = value;
}

// The max over a warp of values that are not NaN (fmaxf is exact, so the order does not matter).
__device__ float warp_max(float value) {
    for (int delta = kWarp / 2; delta > 0; delta /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, delta));
    return value;
}

// packed (packed_bytes(numel)) and absmax (block_count(numel)) of w (numel): one warp per NF4 block,
// lane j owning elements 2j and 2j+1 of the block (one packed byte). The twin's std::max(max, |w|)
// skips NaN weights; so does `max < v ? v : max`, from 0.
__global__ void nf4_quantize_blocks_kernel(uint8_t* packed, float* absmax, const float* w, int64_t numel) {
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const int64_t blocks = nf4::block_count(numel);
    const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
    for (int64_t block = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; block < blocks;
         block += warps) {
        const int64_t lo = block * nf4::kBlock, hi = lo + nf4::kBlock < numel ? lo + nf4::kBlock : numel;
        const int64_t i = lo + 2 * lane;
        const float w0 = i < hi ? w[i] : 0.0f, w1 = i + 1 < hi ? w[i + 1] : 0.0f;
        float block_max = 0.0f;
        block_max = block_max < fabsf(w0) ? fabsf(w0) : block_max;
        block_max = block_max < fabsf(w1) ? fabsf(w1) : block_max;
        block_max = warp_max(block_max);
        if (lane == 0) absmax[block] = block_max;
        const float inverse = __fdiv_rn(1.0f, block_max);  // +inf for a zero block: 0 · inf = NaN → code 0
        if (i < hi) {
            const uint8_t even = nf4::quantize_code(nf4::clamp_unit(nf4::mul_rn(w0, inverse)));
            const uint8_t odd =
                i + 1 < hi ? nf4::quantize_code(nf4::clamp_unit(nf4::mul_rn(w1, inverse))) : nf4::quantize_code(0.0f);
            packed[i / 2] = nf4::pack(even, odd);
        }
    }
}

// ceil(log2(x)) for x > 2, and 1 below (torch's utils::CeilLog2, as the twin).
__device__ int64_t ceil_log2(int64_t x) {
    int64_t power = 1;
    while ((int64_t{1} << power) < x) power++;
    return power;
}

// offset (1) = mean(absmax (n)) in the twin's order (mean_in_torch_order, read its comment), by one
// warp. The twin's accumulators acc[level][a][lane] never mix lanes or accumulators until the end,
// so thread a·8 + lane runs the chain of acc[·][a][lane] with exactly the twin's sequence of adds;
// thread 0 then finishes (trailing vectors, accumulators 1..3, scalar tail, lanes, division) alone.
// One warp, not a tree over the whole grid: a tree would change the float result.
__global__ void nf4_quantize_offset_kernel(float* offset, const float* absmax, int64_t n) {
    __shared__ float partial[kTorchAccumulators][kTorchLanes];
    const int accumulator = static_cast<int>(threadIdx.x) / kTorchLanes;
    const int lane = static_cast<int>(threadIdx.x) % kTorchLanes;
    const int64_t lanes = n >= kTorchLanes ? kTorchLanes : 1;
    const int64_t vectors = n / lanes, rows = vectors / kTorchAccumulators;
    const bool active = lane < lanes;

    float level_sum[kTorchLevels] = {};  // the twin's acc[level][accumulator][lane]
    auto add_row = [&](int64_t row) {
        if (active)
            level_sum[0] = nf4::add_rn(level_sum[0], absmax[(row * kTorchAccumulators + accumulator) * lanes + lane]);
    };
    const int64_t level_power = ceil_log2(rows) / kTorchLevels > 4 ? ceil_log2(rows) / kTorchLevels : 4;
    const int64_t level_step = int64_t{1} << level_power;
    int64_t row = 0;
    while (row + level_step <= rows) {
        for (int64_t j = 0; j < level_step; j++) add_row(row++);
#pragma unroll
        for (int level = 1; level < kTorchLevels; level++) {
            level_sum[level] = nf4::add_rn(level_sum[level], level_sum[level - 1]);
            level_sum[level - 1] = 0.0f;
            if ((row & ((level_step - 1) << (level * level_power))) != 0) break;
        }
    }
    for (; row < rows; row++) add_row(row);
#pragma unroll
    for (int level = 1; level < kTorchLevels; level++) level_sum[0] = nf4::add_rn(level_sum[0], level_sum[level]);
    partial[accumulator][lane] = level_sum[0];
    __syncwarp();
    if (threadIdx.x != 0) return;

    float total[kTorchLanes];
    for (int64_t l = 0; l < lanes; l++) total[l] = partial[0][l];
    for (int64_t v = rows * kTorchAccumulators; v < vectors; v++)
        for (int64_t l = 0; l < lanes; l++) total[l] = nf4::add_rn(total[l], absmax[v * lanes + l]);
    for (int a = 1; a < kTorchAccumulators; a++)
        for (int64_t l = 0; l < lanes; l++) total[l] = nf4::add_rn(total[l], partial[a][l]);
    float sum = 0.0f;
    for (int64_t i = vectors * lanes; i < n; i++) sum = nf4::add_rn(sum, absmax[i]);
    for (int64_t l = 0; l < lanes; l++) sum = nf4::add_rn(sum, total[l]);
    *offset = __fdiv_rn(sum, static_cast<float>(n));
}

// The index of the code (kDynamicCodes, ascending) entry nearest to x, as the twin's nearest_code:
// float32 distances, the first index among equal ones, 0 for NaN.
__device__ uint8_t nearest_code(const float* code, float x) {
    if (isnan(x)) return 0;
    int lo = 0, hi = nf4::kDynamicCodes;  // std::lower_bound: the first entry not less than x
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (code[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    int best = lo == nf4::kDynamicCodes ? lo - 1 : lo;
    if (best > 0 && fabsf(__fsub_rn(x, code[best - 1])) <= fabsf(__fsub_rn(x, code[best]))) best--;
    while (best > 0 && fabsf(__fsub_rn(x, code[best - 1])) == fabsf(__fsub_rn(x, code[best]))) best--;
    return static_cast<uint8_t>(best);
}

// absmax2 (nested) and absmax_q (blocks) from absmax (blocks), offset and absmax_code: one thread
// block of kNestedBlock threads per nested block, thread t owning absmax value c·256 + t.
constexpr int kNestedThreads = static_cast<int>(nf4::kNestedBlock);

__global__ void nf4_quantize_nested_kernel(uint8_t* absmax_q, float* absmax2, const float* absmax, const float* offset,
                                           const float* absmax_code, int64_t blocks, int64_t nested) {
    __shared__ float code[nf4::kDynamicCodes];
    __shared__ float warp_maxima[kNestedThreads / kWarp];
    for (int i = static_cast<int>(threadIdx.x); i < nf4::kDynamicCodes; i += kNestedThreads) code[i] = absmax_code[i];
    const float mean = *offset;
    const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
    for (int64_t c = blockIdx.x; c < nested; c += gridDim.x) {
        const int64_t b = c * nf4::kNestedBlock + threadIdx.x;
        const float centred = b < blocks ? __fsub_rn(absmax[b], mean) : 0.0f;
        float nested_max = 0.0f < fabsf(centred) ? fabsf(centred) : 0.0f;  // NaN skipped, as std::max
        nested_max = warp_max(nested_max);
        if (lane == 0) warp_maxima[warp] = nested_max;
        __syncthreads();  // also publishes `code` on the first pass
        nested_max = 0.0f;
        for (int i = 0; i < kNestedThreads / kWarp; i++) nested_max = fmaxf(nested_max, warp_maxima[i]);
        if (threadIdx.x == 0) absmax2[c] = nested_max;
        const float inverse = __fdiv_rn(1.0f, nested_max);
        if (b < blocks) absmax_q[b] = nearest_code(code, nf4::clamp_unit(nf4::mul_rn(centred, inverse)));
        __syncthreads();  // warp_maxima is rewritten by the next nested block
    }
}

// ---- dequantisation ----------------------------------------------------------------------------------

// w (numel) = the dequantised weight: one thread per packed byte (two elements of one block).
__global__ void nf4_dequantize_kernel(float* w, nf4::Weight quantized, int64_t numel) {
    const float offset = *quantized.offset;
    const int64_t bytes = nf4::packed_bytes(numel);
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t byte = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; byte < bytes; byte += stride) {
        const int64_t element = 2 * byte;
        const float scale = nf4::block_scale(quantized, offset, element / nf4::kBlock);
        w[element] = nf4::dequantize_value(quantized, scale, element);
        if (element + 1 < numel) w[element + 1] = nf4::dequantize_value(quantized, scale, element + 1);
    }
}

// ---- the linear layer: loading and dequantising weights ----------------------------------------------

constexpr int kRun = 16;  // consecutive weights of one row of w that one thread loads and dequantises

// The shared lookup tables of the linear kernels: absmax_code (kDynamicCodes) and the 16 NF4 values.
struct CodeTables {
    float absmax_code[nf4::kDynamicCodes];
    float nf4_value[nf4::kCodes];
};

// Fills the tables with all threads of the block; the caller synchronises before use.
__device__ void load_code_tables(CodeTables& tables, const nf4::Weight& w) {
    for (int i = static_cast<int>(threadIdx.x); i < nf4::kDynamicCodes; i += static_cast<int>(blockDim.x))
        tables.absmax_code[i] = w.absmax_code[i];
    const int t = static_cast<int>(threadIdx.x);
    if (t < nf4::kCodes) tables.nf4_value[t] = nf4::code_value(t);
}

// The quantised state of weights w[row][col .. col + valid) (valid ≤ kRun, 0 outside w), as loaded
// from global memory: their codes in packed-byte order (byte e/2 of `codes`, element e in its high
// nibble when e is even), and the absmax_q and absmax2 of the (at most two) blocks they touch:
// elements e < split belong to the first block, the others to the second.
struct WeightRun {
    uint2 codes;
    int valid;
    int split;
    uint32_t absmax_q[2];
    float absmax2[2];
};

// Loads weights w[row][col .. col + kRun) of w (n, k). `vector_codes` (k a multiple of kRun, col a
// multiple of kRun and packed 8-byte aligned) allows one 8-byte load of the 16 codes.
__device__ WeightRun load_weight_run(const nf4::Weight& w, int64_t n, int64_t k, int64_t row, int64_t col,
                                     bool vector_codes) {
    WeightRun run{};
    if (row >= n || col >= k) return run;
    run.valid = k - col < kRun ? static_cast<int>(k - col) : kRun;
    const int64_t first = row * k + col, last = first + run.valid - 1;
    const int64_t block0 = first / nf4::kBlock, block1 = last / nf4::kBlock;
    run.split = static_cast<int>((block0 + 1) * nf4::kBlock - first);
    run.absmax_q[0] = w.absmax_q[block0];
    run.absmax_q[1] = w.absmax_q[block1];
    run.absmax2[0] = w.absmax2[block0 / nf4::kNestedBlock];
    run.absmax2[1] = w.absmax2[block1 / nf4::kNestedBlock];
    if (vector_codes && run.valid == kRun) {
        run.codes = *reinterpret_cast<const uint2*>(w.packed + first / 2);
    } else {
        uint32_t words[2] = {0, 0};
#pragma unroll
        for (int e = 0; e < kRun; e++) {
            if (e < run.valid) {
                const int64_t element = first + e;
                const uint32_t code = nf4::unpack(w.packed[element / 2], element);
                words[e / 8] |= code << (8 * ((e / 2) % 4) + (e % 2 == 0 ? 4 : 0));
            }
        }
        run.codes = make_uint2(words[0], words[1]);
    }
    return run;
}

// value (kRun) = the dequantised weights of a run, 0 past `valid`: nf4.h's block_scale and
// dequantize_value, bit for bit, with absmax_code and code_value read from the shared tables.
__device__ void dequantize_weight_run(float* value, const WeightRun& run, const CodeTables& tables, float offset) {
    const float scale0 = nf4::add_rn(nf4::mul_rn(tables.absmax_code[run.absmax_q[0]], run.absmax2[0]), offset);
    const float scale1 = nf4::add_rn(nf4::mul_rn(tables.absmax_code[run.absmax_q[1]], run.absmax2[1]), offset);
#pragma unroll
    for (int e = 0; e < kRun; e++) {
        const uint32_t word = e < 8 ? run.codes.x : run.codes.y;
        const uint32_t code = (word >> (8 * ((e / 2) % 4) + (e % 2 == 0 ? 4 : 0))) & 0x0Fu;
        value[e] = e < run.valid ? nf4::mul_rn(tables.nf4_value[code], e < run.split ? scale0 : scale1) : 0.0f;
    }
}

// ---- the linear layer: tensor-core tiles -------------------------------------------------------------

namespace wmma = nvcuda::wmma;

constexpr int kTileM = 64;        // output rows per thread block
constexpr int kTileN = 128;       // output columns per thread block
constexpr int kTileK = 32;        // reduction step
constexpr int kTileThreads = 256; // 8 warps as 2 (rows) × 4 (columns), each 32 × 32 of the output
constexpr int kWarpTileM = 32, kWarpTileN = 32;
constexpr int kFragment = 16;     // wmma's 16×16×16 bf16 shape
constexpr int kFragmentsM = kWarpTileM / kFragment, kFragmentsN = kWarpTileN / kFragment;
constexpr int kPad = 8;           // bf16 of padding per shared row: 16 bytes, keeps wmma's ldm a multiple of 8
constexpr int kLdA = kTileK + kPad;             // activation tile (kTileM, kTileK), row-major
constexpr int kLdWForward = kTileK + kPad;      // forward weight tile (kTileN rows of w, kTileK), row-major
constexpr int kLdWBackward = kTileN + kPad;     // backward weight tile (kTileK rows of w, kTileN), row-major
constexpr int kQuads = kTileM * kTileK / 4 / kTileThreads;  // float4s of activations per thread per step
constexpr int64_t kMaxGridRows = 65535;         // gridDim.y limit: row tiles per launch

static_assert(kTileN * kTileK == kRun * kTileThreads,
              "one run of weights per thread per step: forward (kTileN, kTileK), backward (kTileK, kTileN)");
static_assert((kTileM / kWarpTileM) * (kTileN / kWarpTileN) * kWarp == kTileThreads, "8 warps cover the tile");
static_assert(kTileM * kTileK % (4 * kTileThreads) == 0, "activation float4s spread evenly");

// Shared memory of a linear tile kernel: double-buffered bf16 tiles, the code tables; after the
// main loop the activation tiles are reused to stage each warp's fp32 fragments for the bounds-
// checked store.
template <bool kBackward>
struct TileShared {
    static constexpr int kWeightElements = kBackward ? kTileK * kLdWBackward : kTileN * kLdWForward;
    __nv_bfloat16 activation[2][kTileM * kLdA];
    __nv_bfloat16 weight[2][kWeightElements];
    CodeTables tables;
};
static_assert(sizeof(__nv_bfloat16) * 2 * kTileM * kLdA >= sizeof(float) * kFragment * kFragment * kTileThreads / kWarp,
              "the activation tiles hold the epilogue's staging");

// bf16(lo) in the low half (the lower address), bf16(hi) in the high half: round-to-nearest-even.
__device__ uint32_t bf16_pair(float lo, float hi) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    uint32_t bits;
    memcpy(&bits, &pair, sizeof(bits));
    return bits;
}

// Activations a[row][col .. col + 4) of a (rows, cols), 0 outside; `vector` (cols a multiple of 4,
// a 16-byte aligned) allows one float4 load.
__device__ float4 load_activation_quad(const float* a, int64_t rows, int64_t cols, int64_t row, int64_t col,
                                       bool vector) {
    if (row >= rows || col >= cols) return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const float* p = a + row * cols + col;
    if (vector) return *reinterpret_cast<const float4*>(p);
    return make_float4(p[0], col + 1 < cols ? p[1] : 0.0f, col + 2 < cols ? p[2] : 0.0f, col + 3 < cols ? p[3] : 0.0f);
}

// One step of the linear tile kernel: out tile rows [row0, row0 + kTileM) × columns [col0, col0 +
// kTileN), reduction [r0, r0 + kTileK). a is x (m, k) forward and dout (m, n) backward; the weight
// tile is w[col0 .. + kTileN][r0 .. + kTileK] forward, w[r0 .. + kTileK][col0 .. + kTileN] backward.
template <bool kBackward>
struct TileStep {
    float4 quads[kQuads];
    WeightRun run;

    __device__ void load(const float* a, const nf4::Weight& w, int64_t m, int64_t k, int64_t n, int64_t row0,
                         int64_t col0, int64_t r0, bool vector_a, bool vector_codes) {
        const int64_t reduction = kBackward ? n : k;
#pragma unroll
        for (int i = 0; i < kQuads; i++) {
            const int q = static_cast<int>(threadIdx.x) + i * kTileThreads;
            quads[i] = load_activation_quad(a, m, reduction, row0 + q / (kTileK / 4), r0 + q % (kTileK / 4) * 4,
                                            vector_a);
        }
        constexpr int kRunsPerRow = (kBackward ? kTileN : kTileK) / kRun;
        const int run_row = static_cast<int>(threadIdx.x) / kRunsPerRow;
        const int run_col = static_cast<int>(threadIdx.x) % kRunsPerRow * kRun;
        run = kBackward ? load_weight_run(w, n, k, r0 + run_row, col0 + run_col, vector_codes)
                        : load_weight_run(w, n, k, col0 + run_row, r0 + run_col, vector_codes);
    }

    // Converts to bf16 and stores into buffer `buffer` of the shared tiles.
    __device__ void store(TileShared<kBackward>& shared, int buffer, float offset) const {
#pragma unroll
        for (int i = 0; i < kQuads; i++) {
            const int q = static_cast<int>(threadIdx.x) + i * kTileThreads;
            *reinterpret_cast<uint2*>(&shared.activation[buffer][q / (kTileK / 4) * kLdA + q % (kTileK / 4) * 4]) =
                make_uint2(bf16_pair(quads[i].x, quads[i].y), bf16_pair(quads[i].z, quads[i].w));
        }
        float value[kRun];
        dequantize_weight_run(value, run, shared.tables, offset);
        constexpr int kRunsPerRow = (kBackward ? kTileN : kTileK) / kRun;
        constexpr int kLdW = kBackward ? kLdWBackward : kLdWForward;
        const int run_row = static_cast<int>(threadIdx.x) / kRunsPerRow;
        const int run_col = static_cast<int>(threadIdx.x) % kRunsPerRow * kRun;
        uint4* dst = reinterpret_cast<uint4*>(&shared.weight[buffer][run_row * kLdW + run_col]);
        dst[0] = make_uint4(bf16_pair(value[0], value[1]), bf16_pair(value[2], value[3]), bf16_pair(value[4], value[5]),
                            bf16_pair(value[6], value[7]));
        dst[1] = make_uint4(bf16_pair(value[8], value[9]), bf16_pair(value[10], value[11]),
                            bf16_pair(value[12], value[13]), bf16_pair(value[14], value[15]));
    }
};

// The tile kernel of both directions: forward out (m, n) = x (m, k) · w'ᵀ, backward out = dx (m, k)
// += dout (m, n) · w'. Block (blockIdx.x, blockIdx.y) owns out columns blockIdx.x·kTileN and rows
// blockIdx.y·kTileM onwards.
template <bool kBackward>
__device__ void nf4_linear_tile(float* out, const float* a, const nf4::Weight& w, int64_t m, int64_t k, int64_t n,
                                bool vector_a, bool vector_codes) {
    __shared__ __align__(128) TileShared<kBackward> shared;
    using WeightLayout = typename std::conditional<kBackward, wmma::row_major, wmma::col_major>::type;
    constexpr int kLdW = kBackward ? kLdWBackward : kLdWForward;
    const int64_t reduction = kBackward ? n : k, columns = kBackward ? k : n;
    const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTileM, col0 = static_cast<int64_t>(blockIdx.x) * kTileN;
    const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
    const int warp_row = warp / (kTileN / kWarpTileN) * kWarpTileM;
    const int warp_col = warp % (kTileN / kWarpTileN) * kWarpTileN;

    load_code_tables(shared.tables, w);
    const float offset = *w.offset;
    __syncthreads();

    wmma::fragment<wmma::accumulator, kFragment, kFragment, kFragment, float> acc[kFragmentsM][kFragmentsN];
#pragma unroll
    for (int i = 0; i < kFragmentsM; i++)
#pragma unroll
        for (int j = 0; j < kFragmentsN; j++) wmma::fill_fragment(acc[i][j], 0.0f);

    // Double buffering: step s multiplies buffer s % 2 while step s + 1 travels from global memory
    // into registers and then into the other buffer, which no warp reads any more (they all passed
    // the barrier that ended step s − 1).
    TileStep<kBackward> step;
    step.load(a, w, m, k, n, row0, col0, 0, vector_a, vector_codes);
    step.store(shared, 0, offset);
    __syncthreads();
    const int64_t steps = (reduction + kTileK - 1) / kTileK;
    for (int64_t s = 0; s < steps; s++) {
        const int buffer = static_cast<int>(s % 2);
        const bool more = s + 1 < steps;
        if (more) step.load(a, w, m, k, n, row0, col0, (s + 1) * kTileK, vector_a, vector_codes);
#pragma unroll
        for (int kk = 0; kk < kTileK; kk += kFragment) {
            wmma::fragment<wmma::matrix_a, kFragment, kFragment, kFragment, __nv_bfloat16, wmma::row_major>
                fa[kFragmentsM];
            wmma::fragment<wmma::matrix_b, kFragment, kFragment, kFragment, __nv_bfloat16, WeightLayout>
                fb[kFragmentsN];
#pragma unroll
            for (int i = 0; i < kFragmentsM; i++)
                wmma::load_matrix_sync(fa[i], &shared.activation[buffer][(warp_row + i * kFragment) * kLdA + kk], kLdA);
#pragma unroll
            for (int j = 0; j < kFragmentsN; j++) {
                const int column = warp_col + j * kFragment;
                // Forward: B = w'ᵀ (k × n) is the (n, k) tile read column-major; backward: B = w' as is.
                const __nv_bfloat16* b = kBackward ? &shared.weight[buffer][kk * kLdW + column]
                                                   : &shared.weight[buffer][column * kLdW + kk];
                wmma::load_matrix_sync(fb[j], b, kLdW);
            }
#pragma unroll
            for (int i = 0; i < kFragmentsM; i++)
#pragma unroll
                for (int j = 0; j < kFragmentsN; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        if (more) step.store(shared, 1 - buffer, offset);
        __syncthreads();
    }

    // Each warp stages one 16 × 16 fragment at a time and writes (forward) or adds (backward) the
    // elements inside out; the last barrier of the loop freed the activation tiles.
    float* stage = reinterpret_cast<float*>(&shared.activation[0][0]) + warp * kFragment * kFragment;
#pragma unroll
    for (int i = 0; i < kFragmentsM; i++) {
#pragma unroll
        for (int j = 0; j < kFragmentsN; j++) {
            wmma::store_matrix_sync(stage, acc[i][j], kFragment, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < kFragment * kFragment; e += kWarp) {
                const int64_t row = row0 + warp_row + i * kFragment + e / kFragment;
                const int64_t col = col0 + warp_col + j * kFragment + e % kFragment;
                if (row < m && col < columns) {
                    if (kBackward) out[row * columns + col] += stage[e];
                    else out[row * columns + col] = stage[e];
                }
            }
            __syncwarp();
        }
    }
}

// out (m, n) = x (m, k) · w'ᵀ on tensor cores; grid (ceil(n / kTileN), ceil(m / kTileM)).
__global__ void __launch_bounds__(kTileThreads, 2) nf4_linear_forward_kernel(float* out, const float* x, nf4::Weight w,
                                                                          int64_t m, int64_t k, int64_t n,
                                                                          bool vector_x, bool vector_codes) {
    nf4_linear_tile<false>(out, x, w, m, k, n, vector_x, vector_codes);
}

// dx (m, k) += dout (m, n) · w' on tensor cores; grid (ceil(k / kTileN), ceil(m / kTileM)).
__global__ void __launch_bounds__(kTileThreads, 2) nf4_linear_backward_kernel(float* dx, const float* dout,
                                                                           nf4::Weight w, int64_t m, int64_t k,
                                                                           int64_t n, bool vector_dout,
                                                                           bool vector_codes) {
    nf4_linear_tile<true>(dx, dout, w, m, k, n, vector_dout, vector_codes);
}

// ---- the linear layer: GEMV for a few rows ------------------------------------------------------------

constexpr int64_t kGemvMaxRows = 4;  // the forward of at most this many rows (decoding) is a GEMV
constexpr int kGemvThreads = 256;    // one warp per output column
constexpr int kGemvColumns = kGemvThreads / kWarp;

// out (m, n) = x (m ≤ kGemvMaxRows, k) · w'ᵀ in fp32: warp j of block b computes column b·8 + j,
// lane l dequantising runs l·16, (l + 32)·16, ... of that row of w straight from the packed codes
// and multiplying them with the same columns of every row of x; then the warp sums its lanes.
__global__ void __launch_bounds__(kGemvThreads) nf4_linear_forward_gemv_kernel(float* out, const float* x,
                                                                               nf4::Weight w, int64_t m, int64_t k,
                                                                               int64_t n, bool vector_x,
                                                                               bool vector_codes) {
    __shared__ CodeTables tables;
    load_code_tables(tables, w);
    const float offset = *w.offset;
    __syncthreads();
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const int64_t column = static_cast<int64_t>(blockIdx.x) * kGemvColumns + threadIdx.x / kWarp;
    if (column >= n) return;

    float acc[kGemvMaxRows] = {};
    for (int64_t col = static_cast<int64_t>(lane) * kRun; col < k; col += kWarp * kRun) {
        float value[kRun];
        const WeightRun run = load_weight_run(w, n, k, column, col, vector_codes);
        dequantize_weight_run(value, run, tables, offset);
#pragma unroll
        for (int r = 0; r < kGemvMaxRows; r++) {
            if (r >= m) break;
#pragma unroll
            for (int e = 0; e < kRun; e += 4) {
                const float4 xs = load_activation_quad(x, m, k, r, col + e, vector_x);
                acc[r] = fmaf(xs.x, value[e], acc[r]);
                acc[r] = fmaf(xs.y, value[e + 1], acc[r]);
                acc[r] = fmaf(xs.z, value[e + 2], acc[r]);
                acc[r] = fmaf(xs.w, value[e + 3], acc[r]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; r++) {
        for (int delta = kWarp / 2; delta > 0; delta /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], delta);
        if (lane == 0 && r < m) out[r * n + column] = acc[r];
    }
}

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Whether the tile and GEMV kernels may load 16 codes at once: every run starts at a multiple of
// kRun within a row, so a multiple-of-kRun k puts it at a flat index that is a multiple of kRun.
bool vector_codes(const nf4::Weight& w, int64_t k) { return k % kRun == 0 && aligned(w.packed, sizeof(uint2)); }

// Whether rows of a (·, cols) may be read as float4.
bool vector_rows(const float* a, int64_t cols) { return cols % 4 == 0 && aligned(a, sizeof(float4)); }

unsigned tiles(int64_t extent, int64_t tile) { return static_cast<unsigned>((extent + tile - 1) / tile); }

}  // namespace

// ---- the ops -------------------------------------------------------------------------------------------

nvlm_status CudaBackend::nf4_quantize(uint8_t* packed, uint8_t* absmax_q, float* absmax2, float* offset,
                                      float* absmax_code, float* absmax, const float* w, int64_t n, int64_t k) {
    constexpr const char* kOp = "nvlm_nf4_quantize";
    const OpScope scope(*this, kOp);
    const int64_t numel = n * k, blocks = nf4::block_count(numel), nested = nf4::nested_block_count(numel);
    float* amax = absmax;
    if (amax == nullptr) {
        void* buffer = nullptr;
        NVLM_TRY(scratch(static_cast<size_t>(blocks) * sizeof(float), &buffer, kOp));
        amax = static_cast<float*>(buffer);
    }
    constexpr int kThreads = 256;
    nf4_quantize_code_map_kernel<<<1, nf4::kDynamicCodes, 0, stream()>>>(absmax_code);
    nf4_quantize_blocks_kernel<<<grid_for(blocks * kWarp, kThreads), kThreads, 0, stream()>>>(packed, amax, w, numel);
    nf4_quantize_offset_kernel<<<1, kWarp, 0, stream()>>>(offset, amax, blocks);
    nf4_quantize_nested_kernel<<<grid_for(nested, 1), kNestedThreads, 0, stream()>>>(absmax_q, absmax2, amax, offset,
                                                                                      absmax_code, blocks, nested);
    return after_launch(kOp);
}

nvlm_status CudaBackend::nf4_dequantize(float* w, const nf4::Weight& quantized, int64_t n, int64_t k) {
    constexpr const char* kOp = "nvlm_nf4_dequantize";
    const OpScope scope(*this, kOp);
    constexpr int kThreads = 256;
    nf4_dequantize_kernel<<<grid_for(nf4::packed_bytes(n * k), kThreads), kThreads, 0, stream()>>>(w, quantized,
                                                                                                     n * k);
    return after_launch(kOp);
}

// Row tiles beyond gridDim.y's limit go in further launches, offset by whole tiles (which keeps
// float4 alignment wherever the row length is a multiple of 4).
nvlm_status CudaBackend::nf4_linear_forward(float* out, const float* x, const nf4::Weight& w, int64_t m, int64_t k,
                                            int64_t n) {
    constexpr const char* kOp = "nvlm_nf4_linear_forward";
    const OpScope scope(*this, kOp);
    if (m == 0) return NVLM_OK;
    const bool codes = vector_codes(w, k), rows = vector_rows(x, k);
    if (m <= kGemvMaxRows) {
        nf4_linear_forward_gemv_kernel<<<tiles(n, kGemvColumns), kGemvThreads, 0, stream()>>>(out, x, w, m, k, n,
                                                                                               rows, codes);
        return after_launch(kOp);
    }
    for (int64_t row0 = 0; row0 < m; row0 += kMaxGridRows * kTileM) {
        const int64_t chunk = m - row0 < kMaxGridRows * kTileM ? m - row0 : kMaxGridRows * kTileM;
        const dim3 grid(tiles(n, kTileN), tiles(chunk, kTileM));
        nf4_linear_forward_kernel<<<grid, kTileThreads, 0, stream()>>>(out + row0 * n, x + row0 * k, w, chunk, k, n,
                                                                       rows, codes);
    }
    return after_launch(kOp);
}

nvlm_status CudaBackend::nf4_linear_backward(float* dx, const float* dout, const nf4::Weight& w, int64_t m, int64_t k,
                                             int64_t n) {
    constexpr const char* kOp = "nvlm_nf4_linear_backward";
    const OpScope scope(*this, kOp);
    if (dx == nullptr || m == 0) return NVLM_OK;
    const bool codes = vector_codes(w, k), rows = vector_rows(dout, n);
    for (int64_t row0 = 0; row0 < m; row0 += kMaxGridRows * kTileM) {
        const int64_t chunk = m - row0 < kMaxGridRows * kTileM ? m - row0 : kMaxGridRows * kTileM;
        const dim3 grid(tiles(k, kTileN), tiles(chunk, kTileM));
        nf4_linear_backward_kernel<<<grid, kTileThreads, 0, stream()>>>(dx + row0 * k, dout + row0 * n, w, chunk, k, n,
                                                                        rows, codes);
    }
    return after_launch(kOp);
}

}  // namespace nvlm::cuda
