/*
 * LoRA / DoRA: PEFT's adapter path fused onto a base projection's output (CPU twin: ../cpu/lora.cpp).
 * With down = x_lora · aᵀ (m, r), up = down · bᵀ (m, n) and c = col_scale (n; 1 when null):
 *   out (m, n) = base_out + (c − 1) ⊙ base_dora + c ⊙ scaling · up.
 *
 * Forward: down by cuBLAS (the k-long products), then lora_forward_kernel computes up a tile of
 * kTileRows × kTileCols at a time from the tile's rows of down and columns of b, staged through shared
 * memory kRankChunk ranks at a time, and writes out from its registers: no (m, n) temporary exists.
 *
 * Backward, with g = c ⊙ dout never formed: the column scale moves onto the (n, r) side.
 *   - lora_backward_tile_kernel walks dout in the forward's tiles: dbase_out += dout and
 *     dbase_dora += (c − 1) ⊙ dout in the same thread (so the two may be one buffer), and, when
 *     dcol_scale is wanted, recomputes up's tile as the forward does and writes one partial column
 *     sum of dout ⊙ (base_dora + scaling·up) per (row tile, column); column_totals_kernel
 *     (column_sums.cuh) adds them in row-tile order (deterministic, no atomics).
 *   - db (n, r) += scaling·c ⊙ (doutᵀ · down): cuBLAS into scratch, then an (n, r) kernel.
 *   - d_down (m, r) = dout · (scaling·c ⊙ b): the (n, r) scaled b by a kernel, the product by cuBLAS;
 *     da += d_downᵀ · x_lora and dx_lora += d_down · a by cuBLAS with beta = 1.
 * The scratch holds the partial sums, doutᵀ · down, the scaled b and d_down, as each is wanted.
 *
 * Precision: fp32 throughout; cuBLAS in its default fp32 math (no TF32, as gemm.cu), the rank sums
 * of up in fp32 registers. Row-major products go to column-major cuBLAS as gemm.cu explains.
 * The BF16 math mode does not apply: the adapter's products stay fp32 in both modes.
 */
#include <algorithm>
#include <climits>

#include "backend.cuh"
#include "column_sums.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kTileRows = 32;    // rows of out per tile
constexpr int kTileCols = 64;    // columns of out per tile
constexpr int kRankChunk = 32;   // ranks staged in shared memory at once
constexpr int kThreadsX = 32;    // threadIdx.x: a column within each 32-column half of the tile
constexpr int kThreadsY = 8;     // threadIdx.y: a row within each 8-row group of the tile
constexpr int kTileThreads = kThreadsX * kThreadsY;
constexpr int kRowsPerThread = kTileRows / kThreadsY;  // thread (x, y) owns rows y, y + 8, y + 16, y + 24
constexpr int kColsPerThread = kTileCols / kThreadsX;  // and columns x, x + 32 of its tile
constexpr int kThreads = 256;                          // the 1-D elementwise and column-total kernels
constexpr int64_t kMaxTileBlocks = 65535 * 8;

// Shared staging of one rank chunk: the tile's rows of down and columns of b (b's rows), padded by
// one so that lanes reading row (x + 32·cc) of b_tile at the same rank hit 32 different banks.
struct RankChunk {
    float down[kTileRows][kRankChunk + 1];
    float b[kTileCols][kRankChunk + 1];
};

// acc[rr][cc] = Σ_p down[i, p] · b[j, p] for i = row0 + y + 8·rr, j = col0 + x + 32·cc (zero past the
// edges). Every thread of the block calls it; it starts with a barrier, so the block may call it
// again for its next tile while slow warps still read the previous chunk.
__device__ void up_tile(float (&acc)[kRowsPerThread][kColsPerThread], RankChunk& chunk, const float* down,
                        const float* b, int64_t row0, int64_t col0, int64_t m, int64_t n, int64_t r) {
    for (int rr = 0; rr < kRowsPerThread; rr++)
        for (int cc = 0; cc < kColsPerThread; cc++) acc[rr][cc] = 0.0f;
    const int thread = static_cast<int>(threadIdx.y) * kThreadsX + static_cast<int>(threadIdx.x);
    for (int64_t p0 = 0; p0 < r; p0 += kRankChunk) {
        __syncthreads();
        for (int t = thread; t < kTileRows * kRankChunk; t += kTileThreads) {
            const int row = t / kRankChunk, p = t % kRankChunk;
            const int64_t i = row0 + row, rank = p0 + p;
            chunk.down[row][p] = i < m && rank < r ? down[i * r + rank] : 0.0f;
        }
        for (int t = thread; t < kTileCols * kRankChunk; t += kTileThreads) {
            const int col = t / kRankChunk, p = t % kRankChunk;
            const int64_t j = col0 + col, rank = p0 + p;
            chunk.b[col][p] = j < n && rank < r ? b[j * r + rank] : 0.0f;
        }
        __syncthreads();
        const int ranks = r - p0 < kRankChunk ? static_cast<int>(r - p0) : kRankChunk;
        for (int p = 0; p < ranks; p++)
            for (int rr = 0; rr < kRowsPerThread; rr++) {
                const float d = chunk.down[threadIdx.y + kThreadsY * rr][p];
                for (int cc = 0; cc < kColsPerThread; cc++) acc[rr][cc] += d * chunk.b[threadIdx.x + kThreadsX * cc][p];
            }
    }
}

// out = base_out + (c − 1)·base_dora + c·(scaling·up), tile by tile (grid-stride over the tiles).
__global__ void lora_forward_kernel(float* out, const float* base_out, const float* base_dora, const float* down,
                                    const float* b, const float* col_scale, int64_t m, int64_t n, int64_t r,
                                    float scaling) {
    __shared__ RankChunk chunk;
    const int64_t col_tiles = (n + kTileCols - 1) / kTileCols;
    const int64_t tiles = (m + kTileRows - 1) / kTileRows * col_tiles;
    for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int64_t row0 = tile / col_tiles * kTileRows, col0 = tile % col_tiles * kTileCols;
        float acc[kRowsPerThread][kColsPerThread];
        up_tile(acc, chunk, down, b, row0, col0, m, n, r);
        for (int rr = 0; rr < kRowsPerThread; rr++) {
            const int64_t i = row0 + threadIdx.y + kThreadsY * rr;
            for (int cc = 0; cc < kColsPerThread; cc++) {
                const int64_t j = col0 + threadIdx.x + kThreadsX * cc;
                if (i >= m || j >= n) continue;
                const int64_t ij = i * n + j;
                const float scaled_up = scaling * acc[rr][cc];
                if (col_scale == nullptr) {
                    out[ij] = base_out[ij] + scaled_up;
                } else {
                    const float c = col_scale[j];
                    const float base = base_dora != nullptr ? base_out[ij] + (c - 1.0f) * base_dora[ij] : base_out[ij];
                    out[ij] = base + c * scaled_up;
                }
            }
        }
    }
}

// Per tile of dout: dbase_out += dout and dbase_dora += (c − 1)·dout (dbase_dora is null unless
// col_scale is set), and with partials set, partials[row_tile·n + j] = Σ over the tile's rows of
// dout·(base_dora + scaling·up). Lanes y sum their 4 rows, then lane row 0 adds the 8 lane sums in order.
__global__ void lora_backward_tile_kernel(float* dbase_out, float* dbase_dora, float* partials, const float* dout,
                                          const float* base_dora, const float* down, const float* b,
                                          const float* col_scale, int64_t m, int64_t n, int64_t r, float scaling) {
    __shared__ RankChunk chunk;
    __shared__ float lane_sums[kThreadsY][kTileCols];
    const int64_t col_tiles = (n + kTileCols - 1) / kTileCols;
    const int64_t tiles = (m + kTileRows - 1) / kTileRows * col_tiles;
    for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int64_t row_tile = tile / col_tiles;
        const int64_t row0 = row_tile * kTileRows, col0 = tile % col_tiles * kTileCols;
        float acc[kRowsPerThread][kColsPerThread];
        if (partials != nullptr) up_tile(acc, chunk, down, b, row0, col0, m, n, r);
        float column_sum[kColsPerThread] = {};
        for (int rr = 0; rr < kRowsPerThread; rr++) {
            const int64_t i = row0 + threadIdx.y + kThreadsY * rr;
            for (int cc = 0; cc < kColsPerThread; cc++) {
                const int64_t j = col0 + threadIdx.x + kThreadsX * cc;
                if (i >= m || j >= n) continue;
                const int64_t ij = i * n + j;
                const float g = dout[ij];
                if (dbase_out != nullptr) dbase_out[ij] += g;
                if (dbase_dora != nullptr) dbase_dora[ij] += (col_scale[j] - 1.0f) * g;
                if (partials != nullptr) {
                    const float base = base_dora != nullptr ? base_dora[ij] : 0.0f;
                    column_sum[cc] += g * (base + scaling * acc[rr][cc]);
                }
            }
        }
        if (partials == nullptr) continue;
        for (int cc = 0; cc < kColsPerThread; cc++) lane_sums[threadIdx.y][threadIdx.x + kThreadsX * cc] = column_sum[cc];
        __syncthreads();
        if (threadIdx.y == 0)
            for (int cc = 0; cc < kColsPerThread; cc++) {
                const int col = static_cast<int>(threadIdx.x) + kThreadsX * cc;
                if (col0 + col >= n) continue;
                float sum = 0.0f;
                for (int lane = 0; lane < kThreadsY; lane++) sum += lane_sums[lane][col];
                partials[row_tile * n + col0 + col] = sum;
            }
        __syncthreads();
    }
}

// out (n, r) = scaling·c_j · in (n, r) row j (c = 1 when col_scale is null), added to out when accumulate.
__global__ void lora_scale_rows_kernel(float* out, const float* in, const float* col_scale, int64_t n, int64_t r,
                                       float scaling, bool accumulate) {
    const int64_t count = n * r;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float factor = col_scale != nullptr ? scaling * col_scale[e / r] : scaling;
        out[e] = accumulate ? out[e] + factor * in[e] : factor * in[e];
    }
}

unsigned tile_blocks(int64_t m, int64_t n) {
    const int64_t tiles = (m + kTileRows - 1) / kTileRows * ((n + kTileCols - 1) / kTileCols);
    return static_cast<unsigned>(std::clamp<int64_t>(tiles, 1, kMaxTileBlocks));
}

// Row-major c (rows, cols) = op(a) · op(b) + beta · c with op(a) (rows, inner), op(b) (inner, cols), all
// contiguous; beta is 0 (overwrite) or 1 (accumulate), the two this file needs. Column-major cuBLAS
// computes cᵀ = op(b)ᵀ · op(a)ᵀ. inner = 0 is a zero product: c is zeroed (beta 0) or kept (beta 1).
nvlm_status gemm(const CudaBackend& backend, const char* op, bool trans_a, bool trans_b, int64_t rows, int64_t cols,
                 int64_t inner, const float* a, const float* b, float beta, float* c) {
    if (rows == 0 || cols == 0) return NVLM_OK;
    if (inner == 0) {
        if (beta == 0.0f)
            NVLM_CUDA_TRY(op, cudaMemsetAsync(c, 0, static_cast<size_t>(rows * cols) * sizeof(float), backend.stream()));
        return NVLM_OK;
    }
    if (rows > INT_MAX || cols > INT_MAX || inner > INT_MAX)
        return fail(NVLM_ERR_UNSUPPORTED, "%s: GEMM of %lld x %lld x %lld exceeds cuBLAS's int dimensions", op,
                    static_cast<long long>(rows), static_cast<long long>(cols), static_cast<long long>(inner));
    const float one = 1.0f;
    const int lda = static_cast<int>(trans_a ? rows : inner);
    const int ldb = static_cast<int>(trans_b ? inner : cols);
    return check(cublasSgemm(backend.cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                             static_cast<int>(cols), static_cast<int>(rows), static_cast<int>(inner), &one, b, ldb, a,
                             lda, &beta, c, static_cast<int>(cols)),
                 op, "cublasSgemm");
}

}  // namespace

nvlm_status CudaBackend::lora_forward(float* out, float* down, const float* base_out, const float* base_dora,
                                      const float* x_lora, const float* a, const float* b, const float* col_scale,
                                      int64_t m, int64_t k, int64_t n, int64_t r, float scaling) {
    constexpr const char* op = "nvlm_lora_forward";
    const OpScope scope(*this, op);
    if (m == 0) return NVLM_OK;
    NVLM_TRY(gemm(*this, op, false, true, m, r, k, x_lora, a, 0.0f, down));  // down (m, r) = x_lora · aᵀ
    if (n > 0)
        lora_forward_kernel<<<tile_blocks(m, n), dim3(kThreadsX, kThreadsY), 0, stream()>>>(
            out, base_out, base_dora, down, b, col_scale, m, n, r, scaling);
    return after_launch(op);
}

nvlm_status CudaBackend::lora_backward(float* dbase_out, float* dbase_dora, float* dx_lora, float* da, float* db,
                                       float* dcol_scale, const float* dout, const float* base_dora,
                                       const float* x_lora, const float* a, const float* b, const float* col_scale,
                                       const float* down, int64_t m, int64_t k, int64_t n, int64_t r, float scaling) {
    constexpr const char* op = "nvlm_lora_backward";
    const OpScope scope(*this, op);
    // dbase_dora's factor c − 1 is 0 without a column scale.
    float* dora_base_grad = col_scale != nullptr ? dbase_dora : nullptr;
    const bool down_grad_wanted = dx_lora != nullptr || da != nullptr;

    // Scratch, in this order, as wanted: partials (row_tiles, n), doutᵀ·down (n, r), scaled b (n, r), d_down (m, r).
    const int64_t row_tiles = (m + kTileRows - 1) / kTileRows;
    const int64_t partial_count = dcol_scale != nullptr ? row_tiles * n : 0;
    const int64_t product_count = db != nullptr ? n * r : 0;
    const int64_t scaled_b_count = down_grad_wanted ? n * r : 0;
    const int64_t d_down_count = down_grad_wanted ? m * r : 0;
    const int64_t scratch_count = partial_count + product_count + scaled_b_count + d_down_count;
    float* partials = nullptr;
    if (scratch_count > 0) {
        void* buffer = nullptr;
        NVLM_TRY(scratch(static_cast<size_t>(scratch_count) * sizeof(float), &buffer, op));
        partials = static_cast<float*>(buffer);
    }
    float* product = partials + partial_count;
    float* scaled_b = product + product_count;
    float* d_down = scaled_b + scaled_b_count;

    if (m > 0 && n > 0 && (dbase_out != nullptr || dora_base_grad != nullptr || dcol_scale != nullptr)) {
        lora_backward_tile_kernel<<<tile_blocks(m, n), dim3(kThreadsX, kThreadsY), 0, stream()>>>(
            dbase_out, dora_base_grad, dcol_scale != nullptr ? partials : nullptr, dout, base_dora, down, b,
            col_scale, m, n, r, scaling);
        NVLM_CUDA_CHECK_LAUNCH(op);
        if (dcol_scale != nullptr) {
            column_totals_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dcol_scale, partials, row_tiles, n);
            NVLM_CUDA_CHECK_LAUNCH(op);
        }
    }
    if (db != nullptr && n > 0) {
        NVLM_TRY(gemm(*this, op, true, false, n, r, m, dout, down, 0.0f, product));  // doutᵀ · down (n, r)
        lora_scale_rows_kernel<<<grid_for(n * r, kThreads), kThreads, 0, stream()>>>(db, product, col_scale, n, r,
                                                                                     scaling, true);
        NVLM_CUDA_CHECK_LAUNCH(op);
    }
    if (down_grad_wanted && m > 0) {
        if (n > 0) {
            lora_scale_rows_kernel<<<grid_for(n * r, kThreads), kThreads, 0, stream()>>>(scaled_b, b, col_scale, n,
                                                                                         r, scaling, false);
            NVLM_CUDA_CHECK_LAUNCH(op);
        }
        NVLM_TRY(gemm(*this, op, false, false, m, r, n, dout, scaled_b, 0.0f, d_down));  // d_down (m, r)
        if (da != nullptr) NVLM_TRY(gemm(*this, op, true, false, r, k, m, d_down, x_lora, 1.0f, da));
        if (dx_lora != nullptr) NVLM_TRY(gemm(*this, op, false, false, m, k, r, d_down, a, 1.0f, dx_lora));
    }
    return after_launch(op);
}

}  // namespace nvlm::cuda
