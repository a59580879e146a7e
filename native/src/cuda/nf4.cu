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
 * and the 32 bytes of codes), the offset (the mean of absmax, in torch's summation order: 32
 * sequential chains in one warp, fed from shared memory by the other 31 warps of its block), and one
 * thread block per nested block of 256 absmax values (absmax2 and absmax_q). Every float step is
 * nf4.h's mul_rn / add_rn or an explicitly rounded __fdiv_rn / __fsub_rn, so nvcc contracts nothing
 * into a fused multiply-add and the results equal the twin's bytes.
 *
 * The linear layer never writes a dequantised w to global memory. For more than kGemvMaxRows rows
 * it is a tensor-core GEMM in two kernels:
 *
 *   1. the activations a (x forward, dout backward; (m, r) with r the reduction length) are rounded
 *      once to bf16 into a scratch copy (m, lda), lda = r rounded up to 8, zero-padded: every row
 *      starts 16-byte aligned, so the GEMM copies them with 16-byte cp.async and converts nothing;
 *   2. each thread block of 256 threads (8 warps as 2 × 4, each warp 64 × 32 of the output) computes
 *      a 128 × 128 output tile in steps of kTileK = 64 along the reduction (one NF4 block per row of
 *      w per step when k is a multiple of 64). Every step copies the next activation tile (128 × 64
 *      bf16) with cp.async and loads the next weight tile's packed codes (32 per thread, 16 bytes)
 *      with their blocks' absmax_q and absmax2 into registers, then multiplies the current step's
 *      shared tiles with mma.sync m16n8k16 (bf16 in, fp32 accumulate), and only then dequantises the
 *      registers with nf4.h's arithmetic, rounds to bf16 and stores into the other shared buffer;
 *      one __syncthreads per step. The tile is sized for two resident blocks per SM (≤ 128
 *      registers, 75 KiB of shared memory), so one block's barrier and dequantisation overlap the
 *      other's tensor-core work.
 *
 *   Shared layouts (bf16, each row padded by 8 so that the 8 row addresses of an ldmatrix, or 8
 *   lanes' 16-byte stores, hit distinct banks):
 *     activation  (128, 64)  row-major, ld 72             A of the mma, read with ldmatrix.x4
 *     weight fwd  (128, 64)  w[col0 + j][r0 + i], ld 72   B = w'ᵀ "col-major": ldmatrix.x4
 *     weight bwd  (64, 128)  w[r0 + i][col0 + j], ld 136  B = w' row-major: ldmatrix.x4.trans
 *
 *   Fragments (PTX ISA, mma.m16n8k16 .bf16; lane = 4·g + t):
 *     A (16 × 16)  regs {a0 a1 | a2 a3 | a4 a5 | a6 a7} = A[g][2t, 2t+1], A[g+8][2t..], A[g][2t+8..],
 *                  A[g+8][2t+8..]: ldmatrix.x4 with lane l addressing row l % 16, column 8·(l / 16)
 *     B (16 × 8)   {b0 b1 | b2 b3} = B[2t, 2t+1][g], B[2t+8, 2t+9][g]: one x4 covers two n8 tiles
 *     C (16 × 8)   {c0 c1 c2 c3} = C[g][2t, 2t+1], C[g+8][2t, 2t+1], written straight to global
 *
 * Rounding of the GEMM: x (or dout) and w' are each ROUNDED ONCE TO BF16 (round-to-nearest-even,
 * w' from its exact f32 value) and the products accumulated in fp32, so an element differs from the
 * twin's f32 result by at most about 2^-7 · Σ|x·w|. Partial tiles are zero-padded (zero codes and
 * zero activations, never garbage, so no 0 · NaN).
 *
 * For m ≤ kGemvMaxRows (decoding) both directions are fp32 GEMVs without tensor cores, bound by
 * reading the packed codes once: forward, one warp per output column reads that row of w; backward,
 * each thread owns 8 consecutive columns of dx (one 4-byte word of codes per row of w), warps split
 * the rows, and the partial sums of row slices are added up in a fixed order (deterministic).
 */
#include <cuda_bf16.h>

#include <cstdint>

#include "backend.cuh"
#include "mma.cuh"

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


// offset (1) = mean(absmax (n)) in the twin's order (mean_in_torch_order, read its comment). The
// twin's accumulators acc[level][a][lane] never mix lanes or accumulators until the end, so thread
// a·8 + lane of warp 0 runs the chain of acc[·][a][lane] with exactly the twin's sequence of adds;
// thread 0 then finishes (trailing vectors, accumulators 1..3, scalar tail, lanes, division) alone.
// The chains must stay sequential (a tree would change the float result); only the loads are
// parallel: warps 1..31 stage the next chunk of absmax rows in shared memory while warp 0 adds up
// the current one, kOffsetBatch rows at a time so that its shared loads are all in flight at once.
constexpr int kOffsetThreads = 1024;
constexpr int kOffsetChunkRows = 128;  // rows (kTorchAccumulators vectors each) per staged chunk
constexpr int kOffsetBatch = 16;       // rows loaded before they are added; divides every level step
constexpr int kOffsetRowFloats = kTorchAccumulators * kTorchLanes;
constexpr int kOffsetStagers = kOffsetThreads - kWarp;
constexpr int kOffsetLoads = (kOffsetChunkRows * kOffsetRowFloats + kOffsetStagers - 1) / kOffsetStagers;
static_assert(kOffsetChunkRows % kOffsetBatch == 0, "batches never straddle chunks");

__global__ void __launch_bounds__(kOffsetThreads) nf4_quantize_offset_kernel(float* offset, const float* absmax,
                                                                            int64_t n) {
    __shared__ float chunk[2][kOffsetChunkRows * kOffsetRowFloats];
    __shared__ float partial[kTorchAccumulators][kTorchLanes];
    const int t = static_cast<int>(threadIdx.x);
    const int accumulator = t / kTorchLanes, lane = t % kTorchLanes;  // of the chains, in warp 0
    const int64_t lanes = n >= kTorchLanes ? kTorchLanes : 1;
    const int64_t width = kTorchAccumulators * lanes;  // floats per row
    const int64_t vectors = n / lanes, rows = vectors / kTorchAccumulators;
    const int64_t chunks = (rows + kOffsetChunkRows - 1) / kOffsetChunkRows;
    const bool chain = t < kWarp, active = chain && lane < lanes;

    // Rows [c·kOffsetChunkRows, +kOffsetChunkRows) ∩ [0, rows) into chunk[c % 2], by warps 1..31.
    auto stage = [&](int64_t c) {
        const int64_t first = c * kOffsetChunkRows * width;
        const int64_t count = (rows - c * kOffsetChunkRows < kOffsetChunkRows ? rows - c * kOffsetChunkRows
                                                                              : kOffsetChunkRows) * width;
        float value[kOffsetLoads];
#pragma unroll
        for (int i = 0; i < kOffsetLoads; i++) {
            const int64_t e = t - kWarp + static_cast<int64_t>(i) * kOffsetStagers;
            value[i] = e < count ? absmax[first + e] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < kOffsetLoads; i++) {
            const int64_t e = t - kWarp + static_cast<int64_t>(i) * kOffsetStagers;
            if (e < count) chunk[c % 2][e] = value[i];
        }
    };

    float level_sum[kTorchLevels] = {};  // the twin's acc[level][accumulator][lane]
    const int64_t level_power = ceil_log2(rows) / kTorchLevels > 4 ? ceil_log2(rows) / kTorchLevels : 4;
    const int64_t level_step = int64_t{1} << level_power;
    // The twin's cascade after each whole group of level_step rows; `row` counts the rows added.
    auto cascade = [&](int64_t row) {
#pragma unroll
        for (int level = 1; level < kTorchLevels; level++) {
            level_sum[level] = nf4::add_rn(level_sum[level], level_sum[level - 1]);
            level_sum[level - 1] = 0.0f;
            if ((row & ((level_step - 1) << (level * level_power))) != 0) break;
        }
    };

    if (!chain && chunks > 0) stage(0);
    __syncthreads();
    for (int64_t c = 0; c < chunks; c++) {
        if (!chain) {
            if (c + 1 < chunks) stage(c + 1);  // the buffer warp 0 finished before the last barrier
        } else {
            const float* rows_of_chunk = chunk[c % 2];
            const int64_t row0 = c * kOffsetChunkRows;
            const int64_t row1 = rows - row0 < kOffsetChunkRows ? rows : row0 + kOffsetChunkRows;
            for (int64_t row = row0; row < row1; row += kOffsetBatch) {
                float value[kOffsetBatch];
#pragma unroll
                for (int j = 0; j < kOffsetBatch; j++)
                    value[j] = active && row + j < row1
                                   ? rows_of_chunk[(row - row0 + j) * width + accumulator * lanes + lane]
                                   : 0.0f;
#pragma unroll
                for (int j = 0; j < kOffsetBatch; j++)
                    if (active && row + j < row1) level_sum[0] = nf4::add_rn(level_sum[0], value[j]);
                // level_step is a multiple of kOffsetBatch, so a group can only end with a whole batch.
                if (row + kOffsetBatch <= rows && ((row + kOffsetBatch) & (level_step - 1)) == 0)
                    cascade(row + kOffsetBatch);
            }
        }
        __syncthreads();
    }
    if (!chain) return;
#pragma unroll
    for (int level = 1; level < kTorchLevels; level++) level_sum[0] = nf4::add_rn(level_sum[0], level_sum[level]);
    partial[accumulator][lane] = level_sum[0];
    __syncwarp();
    if (t != 0) return;

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

// The shared lookup tables of the linear kernels: absmax_code (kDynamicCodes) and the 16 NF4 values.
struct CodeTables {
    float absmax_code[nf4::kDynamicCodes];
    float nf4_value[nf4::kCodes];
};

// Fills the tables with all threads of the block; the caller synchronises before use.
__device__ void load_code_tables(CodeTables& tables, const nf4::Weight& w) {
    for (int i = static_cast<int>(threadIdx.x); i < nf4::kDynamicCodes; i += static_cast<int>(blockDim.x))
        tables.absmax_code[i] = w.absmax_code[i];
    // Constant indices: code_value's table stays in registers, not in local memory.
#pragma unroll
    for (int i = 0; i < nf4::kCodes; i++)
        if (static_cast<int>(threadIdx.x) == i) tables.nf4_value[i] = nf4::code_value(i);
}

// The quantised state of weights w[row][col .. col + valid) (valid ≤ kLength ≤ kBlock, 0 outside
// w), as loaded from global memory: their codes in packed-byte order (byte e/2 of `codes`, element
// e in its high nibble when e is even), and the absmax_q and absmax2 of the (at most two) blocks they
// touch: elements e < split belong to the first block, the others to the second.
template <int kLength>
struct WeightRun {
    static_assert(kLength % 8 == 0 && kLength <= nf4::kBlock, "whole 32-bit words of codes, at most two blocks");
    static constexpr int kWords = kLength / 8;
    uint32_t codes[kWords];
    int valid;
    int split;
    uint32_t absmax_q[2];
    float absmax2[2];

    // Code of element e (< kLength).
    __device__ uint32_t code(int e) const { return (codes[e / 8] >> (8 * ((e / 2) % 4) + (e % 2 == 0 ? 4 : 0))) & 0x0Fu; }
};

// Loads weights w[row][col .. col + kLength) of w (n, k). `vector_codes` (k and col multiples of
// kLength, packed aligned to kLength / 2 bytes) allows one load of all the codes.
template <int kLength>
__device__ WeightRun<kLength> load_weight_run(const nf4::Weight& w, int64_t n, int64_t k, int64_t row, int64_t col,
                                              bool vector_codes) {
    WeightRun<kLength> run{};
    if (row >= n || col >= k) return run;
    run.valid = k - col < kLength ? static_cast<int>(k - col) : kLength;
    const int64_t first = row * k + col, last = first + run.valid - 1;
    const int64_t block0 = first / nf4::kBlock, block1 = last / nf4::kBlock;
    run.split = static_cast<int>((block0 + 1) * nf4::kBlock - first);
    run.absmax_q[0] = w.absmax_q[block0];
    run.absmax_q[1] = w.absmax_q[block1];
    run.absmax2[0] = w.absmax2[block0 / nf4::kNestedBlock];
    run.absmax2[1] = w.absmax2[block1 / nf4::kNestedBlock];
    if (vector_codes && run.valid == kLength) {
        const uint8_t* bytes = w.packed + first / 2;
        if constexpr (kLength == 32) {
            const uint4 v = *reinterpret_cast<const uint4*>(bytes);
            run.codes[0] = v.x, run.codes[1] = v.y, run.codes[2] = v.z, run.codes[3] = v.w;
        } else if constexpr (kLength == 16) {
            const uint2 v = *reinterpret_cast<const uint2*>(bytes);
            run.codes[0] = v.x, run.codes[1] = v.y;
        } else {
#pragma unroll
            for (int i = 0; i < run.kWords; i++) run.codes[i] = reinterpret_cast<const uint32_t*>(bytes)[i];
        }
    } else {
#pragma unroll
        for (int e = 0; e < kLength; e++) {
            if (e < run.valid) {
                const int64_t element = first + e;
                const uint32_t code = nf4::unpack(w.packed[element / 2], element);
                run.codes[e / 8] |= code << (8 * ((e / 2) % 4) + (e % 2 == 0 ? 4 : 0));
            }
        }
    }
    return run;
}

// Loads weights w[row][col .. col + kLength) of w (n, k) when k and col are multiples of kLength and
// packed is aligned to kLength / 2 bytes (kLength divides kBlock): the run is whole or outside w, and
// lies in one block. Outside w it holds code 7 (exactly 0) under a zero absmax2, so it dequantises to
// zeros without a validity test.
template <int kLength>
__device__ WeightRun<kLength> load_aligned_weight_run(const nf4::Weight& w, int64_t n, int64_t k, int64_t row,
                                                      int64_t col) {
    static_assert(nf4::kBlock % kLength == 0 && kLength == 32, "one block per run, one 16-byte load");
    constexpr uint32_t kZeros = 0x77777777u;  // eight codes 7: code_value(7) = 0
    WeightRun<kLength> run{};
    run.valid = kLength;
    run.split = kLength;
    if (row >= n || col >= k) {
#pragma unroll
        for (int i = 0; i < run.kWords; i++) run.codes[i] = kZeros;
        return run;
    }
    const int64_t first = row * k + col;
    run.absmax_q[0] = run.absmax_q[1] = w.absmax_q[first / nf4::kBlock];
    run.absmax2[0] = run.absmax2[1] = w.absmax2[first / nf4::kBlock / nf4::kNestedBlock];
    const uint4 v = *reinterpret_cast<const uint4*>(w.packed + first / 2);
    run.codes[0] = v.x, run.codes[1] = v.y, run.codes[2] = v.z, run.codes[3] = v.w;
    return run;
}

// The two blocks' scales of a run: nf4.h's block_scale, bit for bit, with absmax_code read from the
// shared table.
template <int kLength>
__device__ float2 run_scales(const WeightRun<kLength>& run, const CodeTables& tables, float offset) {
    return make_float2(nf4::add_rn(nf4::mul_rn(tables.absmax_code[run.absmax_q[0]], run.absmax2[0]), offset),
                       nf4::add_rn(nf4::mul_rn(tables.absmax_code[run.absmax_q[1]], run.absmax2[1]), offset));
}

// Weight e of a run, 0 past `valid`: nf4.h's dequantize_value, with code_value from the shared table.
template <int kLength>
__device__ float run_value(const WeightRun<kLength>& run, int e, float2 scales, const CodeTables& tables) {
    return e < run.valid ? nf4::mul_rn(tables.nf4_value[run.code(e)], e < run.split ? scales.x : scales.y) : 0.0f;
}

// value (kLength) = the dequantised weights of a run.
template <int kLength>
__device__ void dequantize_weight_run(float* value, const WeightRun<kLength>& run, const CodeTables& tables,
                                      float offset) {
    const float2 scales = run_scales(run, tables, offset);
#pragma unroll
    for (int e = 0; e < kLength; e++) value[e] = run_value(run, e, scales, tables);
}

// ---- the linear layer: tensor-core tiles -------------------------------------------------------------

constexpr int kTileM = 128;        // output rows per thread block
constexpr int kTileN = 128;        // output columns per thread block
constexpr int kTileK = 64;         // reduction step: one NF4 block per row of w
constexpr int kTileThreads = 256;  // 8 warps as 2 (rows) × 4 (columns)
constexpr int kWarpTileM = 64, kWarpTileN = 32;
constexpr int kWarpsN = kTileN / kWarpTileN;
constexpr int kMmaM = 16, kMmaN = 8, kMmaK = 16;  // mma.sync m16n8k16
constexpr int kMmaTilesM = kWarpTileM / kMmaM, kMmaTilesN = kWarpTileN / kMmaN;
constexpr int kChunk = 8;          // bf16 per 16-byte copy or store
constexpr int kPad = kChunk;       // bf16 of padding per shared row
constexpr int kLdA = kTileK + kPad;          // activation tile (kTileM, kTileK)
constexpr int kLdWForward = kTileK + kPad;   // forward weight tile (kTileN rows of w, kTileK)
constexpr int kLdWBackward = kTileN + kPad;  // backward weight tile (kTileK rows of w, kTileN)
constexpr int kRun = 32;                     // consecutive weights of one row of w per thread per step
constexpr int kChunksA = kTileM * kTileK / kChunk / kTileThreads;  // activation copies per thread per step
constexpr int64_t kMaxGridRows = 65535;      // gridDim.y limit: row tiles per launch

static_assert((kTileM / kWarpTileM) * kWarpsN * kWarp == kTileThreads, "8 warps cover the tile");
static_assert(kTileN * kTileK == kRun * kTileThreads, "one run of weights per thread per step");
static_assert(kTileM * kTileK % (kChunk * kTileThreads) == 0, "activation copies spread evenly");
static_assert(kMmaTilesN % 2 == 0, "one ldmatrix.x4 loads the B fragments of two n8 tiles");
// Row strides of 16 bytes mod 128: the 8 rows of an ldmatrix (or 8 lanes' 16-byte stores) hit
// distinct 16-byte bank groups.
static_assert(kLdA * 2 % 128 == 16 && kLdWForward * 2 % 128 == 16 && kLdWBackward * 2 % 128 == 16,
              "padding spreads rows over the banks");

// Shared memory of a linear tile kernel (dynamic, above 48 KiB): double-buffered bf16 tiles and
// the code tables.
template <bool kBackward>
struct TileShared {
    static constexpr int kWeightElements = kBackward ? kTileK * kLdWBackward : kTileN * kLdWForward;
    __nv_bfloat16 activation[2][kTileM * kLdA];
    __nv_bfloat16 weight[2][kWeightElements];
    CodeTables tables;
};

// 16 bytes global → shared without registers; src_bytes = 0 fills the destination with zeros.
__device__ void copy_async(void* dst, const void* src, uint32_t src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
                 "r"(src_bytes));
}

__device__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

__device__ void copy_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// a16 (rows, ld) = bf16(a (rows, cols)), zero in columns [cols, ld) (ld a multiple of kChunk): one
// thread per kChunk values, one 16-byte store. `vector` (cols a multiple of 4, a 16-byte aligned)
// allows float4 loads.
__global__ void nf4_linear_round_activations_kernel(uint4* a16, const float* a, int64_t rows, int64_t cols,
                                                    int64_t ld, bool vector) {
    const int64_t chunks_per_row = ld / kChunk, chunks = rows * chunks_per_row;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < chunks; i += stride) {
        const int64_t col = i % chunks_per_row * kChunk;
        const float* p = a + i / chunks_per_row * cols + col;
        float v[kChunk];
        if (vector && col + kChunk <= cols) {
            const float4 lo = *reinterpret_cast<const float4*>(p), hi = *reinterpret_cast<const float4*>(p + 4);
            v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
        } else {
#pragma unroll
            for (int e = 0; e < kChunk; e++) v[e] = col + e < cols ? p[e] : 0.0f;
        }
        a16[i] = make_uint4(bf16_pair(v[0], v[1]), bf16_pair(v[2], v[3]), bf16_pair(v[4], v[5]), bf16_pair(v[6], v[7]));
    }
}

// Where thread threadIdx.x puts its run of the weight tile: row `row` of the shared tile, columns
// [col, col + kRun). Forward (kTileN rows of kTileK): lane pairs share a row, so the 8 lanes of a
// 16-byte store phase cover 4 rows × 2 halves. Backward (kTileK rows of kTileN): the 8 lanes of a
// phase take 8 rows of one column run, and a warp still reads 64 contiguous bytes per row of w.
template <bool kBackward>
struct RunPlace {
    int row, col;
    __device__ RunPlace() {
        const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
        constexpr int kRunsPerRow = (kBackward ? kTileN : kTileK) / kRun;
        constexpr int kRowsPerWarp = kWarp / kRunsPerRow;
        row = warp * kRowsPerWarp + (kBackward ? lane % kRowsPerWarp : lane / kRunsPerRow);
        col = (kBackward ? lane / kRowsPerWarp : lane % kRunsPerRow) * kRun;
    }
};

// Copies activation tile rows [row0, row0 + kTileM) × columns [r0, r0 + kTileK) of a16 (m, lda)
// into `tile` with cp.async, zeros outside a16 (lda is a multiple of kChunk: copies are whole).
__device__ void copy_activation_tile(__nv_bfloat16* tile, const __nv_bfloat16* a16, int64_t lda, int64_t m,
                                     int64_t row0, int64_t r0) {
#pragma unroll
    for (int i = 0; i < kChunksA; i++) {
        const int q = static_cast<int>(threadIdx.x) + i * kTileThreads;
        const int row = q / (kTileK / kChunk), col = q % (kTileK / kChunk) * kChunk;
        const bool inside = row0 + row < m && r0 + col < lda;
        const __nv_bfloat16* src = inside ? a16 + (row0 + row) * lda + r0 + col : a16;
        copy_async(&tile[row * kLdA + col], src, inside ? 16u : 0u);
    }
}

// Dequantises a run into bf16 and stores it at row place.row, columns place.col.. of a weight tile.
template <bool kBackward>
__device__ void store_weight_run(__nv_bfloat16* tile, const WeightRun<kRun>& run, const RunPlace<kBackward>& place,
                                 const CodeTables& tables, float offset) {
    constexpr int kLdW = kBackward ? kLdWBackward : kLdWForward;
    const float2 scales = run_scales(run, tables, offset);
    uint4* dst = reinterpret_cast<uint4*>(&tile[place.row * kLdW + place.col]);
#pragma unroll
    for (int i = 0; i < kRun / kChunk; i++) {
        uint32_t pair[kChunk / 2];
#pragma unroll
        for (int p = 0; p < kChunk / 2; p++) {
            const int e = i * kChunk + 2 * p;
            pair[p] = bf16_pair(run_value(run, e, scales, tables), run_value(run, e + 1, scales, tables));
        }
        dst[i] = make_uint4(pair[0], pair[1], pair[2], pair[3]);
    }
}

// acc += the warp's 64 × 32 part of activation (kTileM, kTileK) · B, B (kTileK, kTileN) = the weight
// tile read transposed (forward: w'ᵀ) or as is (backward: w').
template <bool kBackward>
__device__ void multiply_tiles(float (&acc)[kMmaTilesM][kMmaTilesN][4], const __nv_bfloat16* activation,
                               const __nv_bfloat16* weight, int warp_row, int warp_col) {
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += kMmaK) {
        uint32_t b[kMmaTilesN][2];
#pragma unroll
        for (int j = 0; j < kMmaTilesN; j += 2) {
            // Matrices 0..3: (n tile j, k 0..7), (j, k 8..15), (j + 1, k 0..7), (j + 1, k 8..15).
            uint32_t r[4];
            if constexpr (kBackward) {
                // Stored [k][n]: lane l addresses k row l % 8 + 8·((l / 8) % 2) at n 8·(l / 16).
                load_matrix_x4_transposed(
                    r, &weight[(kk + lane % 8 + (lane / 8) % 2 * 8) * kLdWBackward + warp_col + j * kMmaN +
                               lane / 16 * 8]);
            } else {
                // Stored [n][k]: lane l addresses n row l % 8 + 8·(l / 16) at k 8·((l / 8) % 2).
                load_matrix_x4(r, &weight[(warp_col + j * kMmaN + lane % 8 + lane / 16 * 8) * kLdWForward + kk +
                                          (lane / 8) % 2 * 8]);
            }
            b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
        }
        // One A fragment at a time: fewer live registers than holding all four.
#pragma unroll
        for (int i = 0; i < kMmaTilesM; i++) {
            uint32_t a[4];
            load_matrix_x4(a, &activation[(warp_row + i * kMmaM + lane % 16) * kLdA + kk + lane / 16 * 8]);
#pragma unroll
            for (int j = 0; j < kMmaTilesN; j++) mma_bf16(acc[i][j], a, b[j]);
        }
    }
}

extern __shared__ __align__(128) unsigned char tile_shared_memory[];

// The tile kernel of both directions: forward out (m, n) = x (m, k) · w'ᵀ, backward out = dx (m, k)
// += dout (m, n) · w'; a16 (m, lda) is x or dout in bf16. Block (blockIdx.x, blockIdx.y) owns out
// columns blockIdx.x·kTileN and rows blockIdx.y·kTileM onwards.
template <bool kBackward, bool kAligned>
__device__ void nf4_linear_tile(float* out, const __nv_bfloat16* a16, int64_t lda, const nf4::Weight& w, int64_t m,
                                int64_t k, int64_t n, bool vector_out) {
    TileShared<kBackward>& shared = *reinterpret_cast<TileShared<kBackward>*>(tile_shared_memory);
    const int64_t reduction = kBackward ? n : k, columns = kBackward ? k : n;
    const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTileM, col0 = static_cast<int64_t>(blockIdx.x) * kTileN;
    const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
    const int warp_row = warp / kWarpsN * kWarpTileM, warp_col = warp % kWarpsN * kWarpTileN;
    const RunPlace<kBackward> place;
    // Forward: w[col0 + row][r0 + col ..]; backward: w[r0 + row][col0 + col ..].
    auto load_run = [&](int64_t r0) {
        const int64_t row = kBackward ? r0 + place.row : col0 + place.row;
        const int64_t col = kBackward ? col0 + place.col : r0 + place.col;
        if constexpr (kAligned) return load_aligned_weight_run<kRun>(w, n, k, row, col);
        else return load_weight_run<kRun>(w, n, k, row, col, false);
    };

    load_code_tables(shared.tables, w);
    const float offset = *w.offset;
    float acc[kMmaTilesM][kMmaTilesN][4] = {};

    // Double buffering: step s multiplies buffer s % 2 while step s + 1's activations travel by
    // cp.async and its codes into registers; they land in the other buffer, which no warp reads any
    // more (all passed the barrier that ended step s − 1).
    copy_activation_tile(shared.activation[0], a16, lda, m, row0, 0);
    copy_async_commit();
    WeightRun<kRun> run = load_run(0);
    __syncthreads();  // the code tables
    store_weight_run(shared.weight[0], run, place, shared.tables, offset);
    copy_async_wait_all();
    __syncthreads();
    const int64_t steps = (reduction + kTileK - 1) / kTileK;
    for (int64_t s = 0; s < steps; s++) {
        const int buffer = static_cast<int>(s % 2);
        const bool more = s + 1 < steps;
        if (more) {
            copy_activation_tile(shared.activation[1 - buffer], a16, lda, m, row0, (s + 1) * kTileK);
            copy_async_commit();
            run = load_run((s + 1) * kTileK);
        }
        multiply_tiles<kBackward>(acc, shared.activation[buffer], shared.weight[buffer], warp_row, warp_col);
        if (more) store_weight_run(shared.weight[1 - buffer], run, place, shared.tables, offset);
        copy_async_wait_all();
        __syncthreads();
    }

    // C fragments straight to global: lane 4g + t holds rows g and g + 8, columns 2t and 2t + 1 of
    // each 16 × 8 tile; forward writes, backward adds.
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < kMmaTilesM; i++) {
#pragma unroll
        for (int j = 0; j < kMmaTilesN; j++) {
            const int64_t col = col0 + warp_col + j * kMmaN + 2 * t;
#pragma unroll
            for (int half = 0; half < 2; half++) {
                const int64_t row = row0 + warp_row + i * kMmaM + g + 8 * half;
                if (row >= m || col >= columns) continue;
                float* p = out + row * columns + col;
                const float v0 = acc[i][j][2 * half], v1 = acc[i][j][2 * half + 1];
                if (vector_out && col + 1 < columns) {
                    float2 pair = make_float2(v0, v1);
                    if (kBackward) {
                        const float2 old = *reinterpret_cast<const float2*>(p);
                        pair.x += old.x, pair.y += old.y;
                    }
                    *reinterpret_cast<float2*>(p) = pair;
                } else {
                    if (kBackward) p[0] += v0;
                    else p[0] = v0;
                    if (col + 1 < columns) {
                        if (kBackward) p[1] += v1;
                        else p[1] = v1;
                    }
                }
            }
        }
    }
}

constexpr size_t kForwardSharedBytes = sizeof(TileShared<false>);
constexpr size_t kBackwardSharedBytes = sizeof(TileShared<true>);

// out (m, n) = x (m, k) · w'ᵀ on tensor cores, x16 = bf16(x) (m, ldx); grid (ceil(n / kTileN),
// ceil(m / kTileM)), kForwardSharedBytes of dynamic shared memory. kAligned: k a multiple of kRun and
// packed 16-byte aligned (every run one 16-byte load within one block).
template <bool kAligned>
__global__ void __launch_bounds__(kTileThreads, 2)
    nf4_linear_forward_kernel(float* out, const __nv_bfloat16* x16, int64_t ldx, nf4::Weight w, int64_t m, int64_t k,
                              int64_t n, bool vector_out) {
    nf4_linear_tile<false, kAligned>(out, x16, ldx, w, m, k, n, vector_out);
}

// dx (m, k) += dout (m, n) · w' on tensor cores, dout16 = bf16(dout) (m, ldd); grid (ceil(k /
// kTileN), ceil(m / kTileM)), kBackwardSharedBytes of dynamic shared memory; kAligned as forward.
template <bool kAligned>
__global__ void __launch_bounds__(kTileThreads, 2)
    nf4_linear_backward_kernel(float* dx, const __nv_bfloat16* dout16, int64_t ldd, nf4::Weight w, int64_t m,
                               int64_t k, int64_t n, bool vector_out) {
    nf4_linear_tile<true, kAligned>(dx, dout16, ldd, w, m, k, n, vector_out);
}

// ---- the linear layer: GEMV for a few rows ------------------------------------------------------------

constexpr int64_t kGemvMaxRows = 4;  // at most this many rows (decoding) take the GEMV kernels
constexpr int kGemvThreads = 256;
constexpr int kGemvWarps = kGemvThreads / kWarp;
constexpr int kGemvRun = 16;         // forward: consecutive weights of a row per lane per iteration

// Activations a[row][col .. col + 4) of a (rows, cols), 0 outside; `vector` (cols a multiple of 4,
// a 16-byte aligned) allows one float4 load.
__device__ float4 load_activation_quad(const float* a, int64_t rows, int64_t cols, int64_t row, int64_t col,
                                       bool vector) {
    if (row >= rows || col >= cols) return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const float* p = a + row * cols + col;
    if (vector) return *reinterpret_cast<const float4*>(p);
    return make_float4(p[0], col + 1 < cols ? p[1] : 0.0f, col + 2 < cols ? p[2] : 0.0f, col + 3 < cols ? p[3] : 0.0f);
}

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
    const int64_t column = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
    if (column >= n) return;

    float acc[kGemvMaxRows] = {};
    for (int64_t col = static_cast<int64_t>(lane) * kGemvRun; col < k; col += kWarp * kGemvRun) {
        float value[kGemvRun];
        const WeightRun<kGemvRun> run = load_weight_run<kGemvRun>(w, n, k, column, col, vector_codes);
        dequantize_weight_run(value, run, tables, offset);
#pragma unroll
        for (int r = 0; r < kGemvMaxRows; r++) {
            if (r >= m) break;
#pragma unroll
            for (int e = 0; e < kGemvRun; e += 4) {
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

constexpr int kGemvColumnsPerThread = 8;  // backward: one 32-bit word of codes per row of w
constexpr int kGemvSpan = kWarp * kGemvColumnsPerThread;  // backward: dx columns per block
constexpr int64_t kGemvMinSliceRows = 64;  // backward: rows of w per block at least
constexpr int64_t kGemvTargetBlocks = 1024;  // backward: enough blocks to keep every SM's loads in flight

// dx (m ≤ kGemvMaxRows, k) += dout (m, n) · w' in fp32, over the slice of rows [y·rows_per_slice,
// +rows_per_slice) of w for block y: lane l of every warp owns columns blockIdx.x·256 + 8l .. + 8
// (a warp reads 128 contiguous bytes of a row of w), warp j takes rows j, j + 8, ... of the slice,
// and the warps' sums are added up in warp order through shared memory. With one slice the sum is
// added to dx; otherwise it goes to partial (slices, m, k) and nf4_linear_backward_gemv_reduce_kernel
// adds the slices to dx in order.
__global__ void __launch_bounds__(kGemvThreads) nf4_linear_backward_gemv_kernel(float* dx, float* partial,
                                                                                const float* dout, nf4::Weight w,
                                                                                int64_t m, int64_t k, int64_t n,
                                                                                int64_t rows_per_slice,
                                                                                bool vector_codes) {
    __shared__ CodeTables tables;
    __shared__ float warp_sum[kGemvWarps][kGemvMaxRows][kGemvSpan];
    load_code_tables(tables, w);
    const float offset = *w.offset;
    __syncthreads();
    const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
    const int64_t col = static_cast<int64_t>(blockIdx.x) * kGemvSpan + lane * kGemvColumnsPerThread;
    const int64_t first_row = static_cast<int64_t>(blockIdx.y) * rows_per_slice;
    const int64_t end_row = n - first_row < rows_per_slice ? n : first_row + rows_per_slice;

    float acc[kGemvMaxRows][kGemvColumnsPerThread] = {};
    if (col < k) {
        for (int64_t row = first_row + warp; row < end_row; row += kGemvWarps) {
            float value[kGemvColumnsPerThread];
            const WeightRun<kGemvColumnsPerThread> run =
                load_weight_run<kGemvColumnsPerThread>(w, n, k, row, col, vector_codes);
            dequantize_weight_run(value, run, tables, offset);
#pragma unroll
            for (int r = 0; r < kGemvMaxRows; r++) {
                if (r >= m) break;
                const float d = dout[r * n + row];
#pragma unroll
                for (int e = 0; e < kGemvColumnsPerThread; e++) acc[r][e] = fmaf(d, value[e], acc[r][e]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; r++)
#pragma unroll
        for (int e = 0; e < kGemvColumnsPerThread; e++) warp_sum[warp][r][lane * kGemvColumnsPerThread + e] = acc[r][e];
    __syncthreads();
    const int64_t out_col = static_cast<int64_t>(blockIdx.x) * kGemvSpan + threadIdx.x;
    if (out_col >= k) return;
    for (int r = 0; r < m; r++) {
        float sum = warp_sum[0][r][threadIdx.x];
        for (int j = 1; j < kGemvWarps; j++) sum += warp_sum[j][r][threadIdx.x];
        if (gridDim.y == 1) dx[r * k + out_col] += sum;
        else partial[(static_cast<int64_t>(blockIdx.y) * m + r) * k + out_col] = sum;
    }
}

// dx (m, k) += Σ over slices s = 0, 1, ... of partial[s] (slices, m, k), in slice order.
__global__ void nf4_linear_backward_gemv_reduce_kernel(float* dx, const float* partial, int64_t count,
                                                       int64_t slices) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
        float sum = partial[i];
        for (int64_t s = 1; s < slices; s++) sum += partial[s * count + i];
        dx[i] += sum;
    }
}

static_assert(kGemvSpan == kGemvThreads, "one thread per column of the block in the warps' sum");

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Whether runs of `length` codes may be loaded at once: every run starts at a multiple of length
// within a row, so a multiple-of-length k puts it at a flat index that is a multiple of length.
bool vector_codes(const nf4::Weight& w, int64_t k, int length) {
    return k % length == 0 && aligned(w.packed, static_cast<uintptr_t>(length / 2));
}

// Whether rows of a (·, cols) may be read as float4.
bool vector_rows(const float* a, int64_t cols) { return cols % 4 == 0 && aligned(a, sizeof(float4)); }

unsigned tiles(int64_t extent, int64_t tile) { return static_cast<unsigned>((extent + tile - 1) / tile); }

// a16 (m, ld) = bf16(a (m, cols)) in the backend's scratch, ld = cols rounded up to kChunk.
nvlm_status round_activations(CudaBackend& backend, const __nv_bfloat16** a16, int64_t* ld, const float* a,
                              int64_t m, int64_t cols, const char* op) {
    *ld = (cols + kChunk - 1) / kChunk * kChunk;
    void* buffer = nullptr;
    NVLM_TRY(backend.scratch(static_cast<size_t>(m * *ld) * sizeof(__nv_bfloat16), &buffer, op));
    *a16 = static_cast<const __nv_bfloat16*>(buffer);
    constexpr int kThreads = 256;
    nf4_linear_round_activations_kernel<<<grid_for(m * *ld / kChunk, kThreads), kThreads, 0, backend.stream()>>>(
        static_cast<uint4*>(buffer), a, m, cols, *ld, vector_rows(a, cols));
    return NVLM_OK;
}

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
    nf4_quantize_offset_kernel<<<1, kOffsetThreads, 0, stream()>>>(offset, amax, blocks);
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

// Row tiles beyond gridDim.y's limit go in further launches, offset by whole tiles.
nvlm_status CudaBackend::nf4_linear_forward(float* out, const float* x, const nf4::Weight& w, int64_t m, int64_t k,
                                            int64_t n) {
    constexpr const char* kOp = "nvlm_nf4_linear_forward";
    const OpScope scope(*this, kOp);
    if (m == 0 || n == 0) return NVLM_OK;
    if (m <= kGemvMaxRows) {
        nf4_linear_forward_gemv_kernel<<<tiles(n, kGemvWarps), kGemvThreads, 0, stream()>>>(
            out, x, w, m, k, n, vector_rows(x, k), vector_codes(w, k, kGemvRun));
        return after_launch(kOp);
    }
    const __nv_bfloat16* x16 = nullptr;
    int64_t ldx = 0;
    NVLM_TRY(round_activations(*this, &x16, &ldx, x, m, k, kOp));
    const bool vector_out = n % 2 == 0 && aligned(out, sizeof(float2));
    auto kernel = vector_codes(w, k, kRun) ? nf4_linear_forward_kernel<true> : nf4_linear_forward_kernel<false>;
    NVLM_TRY(check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(kForwardSharedBytes)),
                   kOp, "cudaFuncSetAttribute"));
    for (int64_t row0 = 0; row0 < m; row0 += kMaxGridRows * kTileM) {
        const int64_t chunk = m - row0 < kMaxGridRows * kTileM ? m - row0 : kMaxGridRows * kTileM;
        const dim3 grid(tiles(n, kTileN), tiles(chunk, kTileM));
        kernel<<<grid, kTileThreads, kForwardSharedBytes, stream()>>>(out + row0 * n, x16 + row0 * ldx, ldx, w, chunk,
                                                                      k, n, vector_out);
    }
    return after_launch(kOp);
}

nvlm_status CudaBackend::nf4_linear_backward(float* dx, const float* dout, const nf4::Weight& w, int64_t m, int64_t k,
                                             int64_t n) {
    constexpr const char* kOp = "nvlm_nf4_linear_backward";
    const OpScope scope(*this, kOp);
    if (dx == nullptr || m == 0 || k == 0 || n == 0) return NVLM_OK;
    if (m <= kGemvMaxRows) {
        // Slices of rows of w: enough blocks for the whole GPU, each slice at least kGemvMinSliceRows.
        const int64_t column_blocks = tiles(k, kGemvSpan);
        int64_t slices = (kGemvTargetBlocks + column_blocks - 1) / column_blocks;
        const int64_t max_slices = n / kGemvMinSliceRows > 1 ? n / kGemvMinSliceRows : 1;
        slices = slices < max_slices ? slices : max_slices;
        const int64_t rows_per_slice = (n + slices - 1) / slices;
        slices = (n + rows_per_slice - 1) / rows_per_slice;
        float* partial = nullptr;
        if (slices > 1) {
            void* buffer = nullptr;
            NVLM_TRY(scratch(static_cast<size_t>(slices * m * k) * sizeof(float), &buffer, kOp));
            partial = static_cast<float*>(buffer);
        }
        const dim3 grid(static_cast<unsigned>(column_blocks), static_cast<unsigned>(slices));
        nf4_linear_backward_gemv_kernel<<<grid, kGemvThreads, 0, stream()>>>(
            dx, partial, dout, w, m, k, n, rows_per_slice, vector_codes(w, k, kGemvColumnsPerThread));
        if (slices > 1) {
            constexpr int kThreads = 256;
            nf4_linear_backward_gemv_reduce_kernel<<<grid_for(m * k, kThreads), kThreads, 0, stream()>>>(dx, partial,
                                                                                                        m * k, slices);
        }
        return after_launch(kOp);
    }
    const __nv_bfloat16* dout16 = nullptr;
    int64_t ldd = 0;
    NVLM_TRY(round_activations(*this, &dout16, &ldd, dout, m, n, kOp));
    const bool vector_out = k % 2 == 0 && aligned(dx, sizeof(float2));
    auto kernel = vector_codes(w, k, kRun) ? nf4_linear_backward_kernel<true> : nf4_linear_backward_kernel<false>;
    NVLM_TRY(check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(kBackwardSharedBytes)),
                   kOp, "cudaFuncSetAttribute"));
    for (int64_t row0 = 0; row0 < m; row0 += kMaxGridRows * kTileM) {
        const int64_t chunk = m - row0 < kMaxGridRows * kTileM ? m - row0 : kMaxGridRows * kTileM;
        const dim3 grid(tiles(k, kTileN), tiles(chunk, kTileM));
        kernel<<<grid, kTileThreads, kBackwardSharedBytes, stream()>>>(dx + row0 * k, dout16 + row0 * ldd, ldd, w,
                                                                       chunk, k, n, vector_out);
    }
    return after_launch(kOp);
}

}  // namespace nvlm::cuda
