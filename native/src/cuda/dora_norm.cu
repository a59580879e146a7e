/*
 * DoRA's weight norm (CPU twin: ../cpu/dora_norm.cpp): PEFT's get_weight_norm, ‖W + scaling·B·A‖ per
 * output row, computed from the factors without ever forming the (n, k) matrix W + scaling·B·A:
 *   norm (n) [j] = √( Σ_l (w[j, l] + scaling · Σ_p b[j, p] · a[p, l])² ),   inv_norm [j] = 1 / norm[j]
 * w (n, k) dense f32 or NF4 (dequantised where it is read, with nf4.h's arithmetic), a (r, k), b (n, r).
 *
 * dora_norm_kernel: a thread block owns kTileRows rows and walks their columns kTileCols at a time.
 * For each column tile it forms the tile of b·a in registers, staging kRankChunk ranks of the block's
 * rows of b and of the tile's columns of a through shared memory, adds w and squares into per-thread
 * sums. Thread (x, y) owns rows y + 8·rr and columns x + 32·cc of every tile, so warp y holds whole
 * rows: a shuffle reduction over its 32 lanes ends each row. Nothing of (n, k) is ever written. An
 * NF4 weight is dequantised element by element as it is read (bit for bit nf4_dequantize's value),
 * with the 16 NF4 code values in shared memory.
 *
 * Precision: fp32 throughout, as the twin; the rank sums run in the twin's order, but the square sums
 * in another and nvcc may contract products into fused multiply-adds, so the results agree with the
 * twin within the fp32 error bound of the sums, not bit for bit (the parity case derives it).
 * Deterministic: a fixed order.
 */
#include <algorithm>

#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kTileRows = 32;    // rows of w per block
constexpr int kTileCols = 64;    // columns of w per step
constexpr int kRankChunk = 32;   // ranks staged in shared memory at once
constexpr int kThreadsX = 32;    // a column within each 32-column half of the tile; one warp per y
constexpr int kThreadsY = 8;
constexpr int kTileThreads = kThreadsX * kThreadsY;
constexpr int kRowsPerThread = kTileRows / kThreadsY;  // rows y, y + 8, y + 16, y + 24
constexpr int kColsPerThread = kTileCols / kThreadsX;  // columns x, x + 32
constexpr int64_t kMaxBlocks = 65535 * 8;

static_assert(kThreadsX == 32, "a row's partial sums lie in one warp");

// Element (j, l) of a dense weight.
struct DenseRows {
    static constexpr bool kCodeValues = false;  // reads no NF4 code table
    const float* w;
    int64_t k;
    __device__ float operator()(int64_t j, int64_t l, const float*) const { return w[j * k + l]; }
};

// Element (j, l) of an NF4 weight, dequantised as nf4.h's dequantize_value does, its code's value read
// from the block's shared copy of the 16 NF4 values (nf4.cu's linear kernels do the same: indexing
// code_value's own table by a runtime code would put it in local memory).
struct Nf4Rows {
    static constexpr bool kCodeValues = true;
    nf4::Weight w;
    int64_t k;
    __device__ float operator()(int64_t j, int64_t l, const float* code_values) const {
        const int64_t element = j * k + l;
        const float scale = nf4::block_scale(w, *w.offset, element / nf4::kBlock);
        return nf4::mul_rn(code_values[nf4::unpack(w.packed[element / 2], element)], scale);
    }
};

template <class Rows>
__global__ void dora_norm_kernel(float* norm, float* inv_norm, Rows rows, const float* a, const float* b, int64_t n,
                                 int64_t k, int64_t r, float scaling) {
    __shared__ float b_tile[kTileRows][kRankChunk];   // b[row0 + i, p0 + p]
    __shared__ float a_tile[kRankChunk][kTileCols];   // a[p0 + p, col0 + c]
    __shared__ float code_values[nf4::kCodes];          // NF4 weights only
    const int thread = static_cast<int>(threadIdx.y) * kThreadsX + static_cast<int>(threadIdx.x);
    if constexpr (Rows::kCodeValues) {
        // Constant indices: code_value's table stays in registers.
#pragma unroll
        for (int i = 0; i < nf4::kCodes; i++)
            if (thread == i) code_values[i] = nf4::code_value(i);
        __syncthreads();
    }
    const int64_t row_tiles = (n + kTileRows - 1) / kTileRows;
    for (int64_t tile = blockIdx.x; tile < row_tiles; tile += gridDim.x) {
        const int64_t row0 = tile * kTileRows;
        float squares[kRowsPerThread] = {};
        for (int64_t col0 = 0; col0 < k; col0 += kTileCols) {
            float delta[kRowsPerThread][kColsPerThread] = {};
            for (int64_t p0 = 0; p0 < r; p0 += kRankChunk) {
                __syncthreads();  // the previous chunk (or tile) is read by every warp
                for (int t = thread; t < kTileRows * kRankChunk; t += kTileThreads) {
                    const int i = t / kRankChunk, p = t % kRankChunk;
                    const int64_t j = row0 + i, rank = p0 + p;
                    b_tile[i][p] = j < n && rank < r ? b[j * r + rank] : 0.0f;
                }
                for (int t = thread; t < kRankChunk * kTileCols; t += kTileThreads) {
                    const int p = t / kTileCols, c = t % kTileCols;
                    const int64_t rank = p0 + p, l = col0 + c;
                    a_tile[p][c] = rank < r && l < k ? a[rank * k + l] : 0.0f;
                }
                __syncthreads();
                const int ranks = r - p0 < kRankChunk ? static_cast<int>(r - p0) : kRankChunk;
                for (int p = 0; p < ranks; p++)
                    for (int rr = 0; rr < kRowsPerThread; rr++) {
                        const float bv = b_tile[threadIdx.y + kThreadsY * rr][p];
                        for (int cc = 0; cc < kColsPerThread; cc++)
                            delta[rr][cc] += bv * a_tile[p][threadIdx.x + kThreadsX * cc];
                    }
            }
            for (int rr = 0; rr < kRowsPerThread; rr++) {
                const int64_t j = row0 + threadIdx.y + kThreadsY * rr;
                for (int cc = 0; cc < kColsPerThread; cc++) {
                    const int64_t l = col0 + threadIdx.x + kThreadsX * cc;
                    if (j >= n || l >= k) continue;
                    const float c = rows(j, l, code_values) + scaling * delta[rr][cc];
                    squares[rr] += c * c;
                }
            }
        }
        for (int rr = 0; rr < kRowsPerThread; rr++) {
            float sum = squares[rr];
            for (int offset = kThreadsX / 2; offset > 0; offset /= 2) sum += __shfl_down_sync(0xFFFFFFFFu, sum, offset);
            const int64_t j = row0 + threadIdx.y + kThreadsY * rr;
            if (threadIdx.x == 0 && j < n) {
                const float value = __fsqrt_rn(sum);
                norm[j] = value;
                if (inv_norm != nullptr) inv_norm[j] = __fdiv_rn(1.0f, value);
            }
        }
    }
}

unsigned row_tile_blocks(int64_t n) {
    return static_cast<unsigned>(std::clamp<int64_t>((n + kTileRows - 1) / kTileRows, 1, kMaxBlocks));
}

}  // namespace

nvlm_status CudaBackend::dora_norm(float* norm, float* inv_norm, const float* w, const float* a, const float* b,
                                   int64_t n, int64_t k, int64_t r, float scaling) {
    const OpScope scope(*this, "nvlm_dora_norm");
    if (n == 0) return NVLM_OK;
    dora_norm_kernel<<<row_tile_blocks(n), dim3(kThreadsX, kThreadsY), 0, stream()>>>(
        norm, inv_norm, DenseRows{w, k}, a, b, n, k, r, scaling);
    return after_launch("nvlm_dora_norm");
}

nvlm_status CudaBackend::dora_norm_nf4(float* norm, float* inv_norm, const nf4::Weight& w, const float* a,
                                       const float* b, int64_t n, int64_t k, int64_t r, float scaling) {
    const OpScope scope(*this, "nvlm_dora_norm_nf4");
    dora_norm_kernel<<<row_tile_blocks(n), dim3(kThreadsX, kThreadsY), 0, stream()>>>(
        norm, inv_norm, Nf4Rows{w, k}, a, b, n, k, r, scaling);
    return after_launch("nvlm_dora_norm_nf4");
}

}  // namespace nvlm::cuda
