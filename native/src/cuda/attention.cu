/*
 * Scaled dot-product attention with grouped query heads, flash-attention style: the tq × tk
 * score matrix is never stored; forward keeps an online softmax, backward recomputes the
 * probabilities from lse. CPU twin: ../cpu/attention.cpp.
 *
 * q, out, dq, dout (batch, tq, n_heads, head_dim); k, v, dk, dv (batch, tk, n_kv_heads, head_dim);
 * key_mask (batch, tk) uint8 (1 = keep) or null; lse (batch, n_heads, tq). Query head h reads kv
 * head h / (n_heads / n_kv_heads). Causal rows are bottom-right aligned: query i sees keys
 * j ≤ i + tk − tq. A row that sees no key has out = 0 and lse = −inf, and gets no gradient.
 * Backward adds into dq, dk, dv (each may be null: not wanted).
 *
 * Parallelisation. Every kernel runs 256 threads as a 16 × 16 grid (ty, tx). A (rows × keys)
 * score tile is spread so that thread (ty, tx) holds rows ty + 16·i and keys tx + 16·j; a
 * (rows × head_dim) accumulator so that it holds rows ty + 16·i and dims tx + 16·c. The half
 * warp sharing ty therefore owns whole score rows, and row max / sum are 16-lane shuffles.
 *  - attention_forward_kernel: one block per (batch, head, tile of query rows). The Q tile stays
 *    in shared memory; key tiles are staged there (K, then V in the same buffer), and each
 *    thread keeps its rows' running max, partial sum and output accumulator in registers. Key
 *    tiles past the causal limit of the tile's last row, or fully masked, are skipped.
 *  - attention_backward_delta_kernel: D_i = dout_i · out_i, one warp per row, into scratch.
 *  - attention_backward_dkv_kernel: one block per (batch, kv head, tile of keys), looping over
 *    the query tiles that can see it, for every query head of the GQA group; it owns its dk / dv
 *    rows, so they need no atomics. P = exp(s − lse), dS = P·(dout·v − D),
 *    dv += Pᵀ·dout, dk += scale·dSᵀ·q.
 *  - attention_backward_dq_kernel: one block per (batch, head, tile of query rows), looping over
 *    key tiles like the forward: dq += scale·dS·k.
 * Tiles are picked per head-dim bucket (64, 80, 128, 256; the runtime head_dim may be smaller)
 * so that shared memory stays under sm_86/89's 99 KiB.
 *
 * Limits of this first version: fp32 CUDA-core FMAs (no tensor cores, no bf16), plain
 * synchronous global → shared copies (no cp.async / TMA pipelining), and backward recomputes
 * S and dP in both gradient kernels. Softmax uses exp2 with log2(e) folded into the scale.
 *
 * In the BF16 math mode (nvlm_math_mode) head_dim ≤ 128 runs attention_bf16.cu's tensor-core
 * kernels instead; head_dim > 128 in BF16 mode falls back to these fp32 kernels.
 */
#include "attention_bf16.cuh"
#include "attention_tiles.cuh"
#include "backend.cuh"

#include <cmath>
#include <cstdint>

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;  // a 16 × 16 thread grid
constexpr int kSide = 16;

// Tile shape for head dims up to head_dim_max: `rows` query rows × `keys` keys per step.
template <int HeadDimMax, int Rows, int Keys>
struct Tile {
    static constexpr int head_dim_max = HeadDimMax;
    static constexpr int rows = Rows;
    static constexpr int keys = Keys;
    // Row pitch of Q/K/V/dout tiles: +4 keeps float4 alignment and puts the 8 rows that a
    // quarter warp reads at one d in different banks.
    static constexpr int stride = HeadDimMax + 4;
    static constexpr int p_stride = Keys + 4;  // pitch of the (rows × keys) P / dS tile
    static constexpr int rows_per_thread = Rows / kSide;
    static constexpr int keys_per_thread = Keys / kSide;
    static constexpr int dims_per_thread = HeadDimMax / kSide;
    static_assert(Rows % kSide == 0 && Keys % kSide == 0 && HeadDimMax % kSide == 0, "tiles are 16-aligned");
    static_assert(Keys % 4 == 0 && Keys <= kThreads && Rows <= kThreads, "one thread per key / row flag");
};

// Dynamic shared memory of the forward: Q tile, one K-or-V tile, P tile.
template <class T>
constexpr size_t forward_smem() {
    return sizeof(float) * (size_t(T::rows + T::keys) * T::stride + size_t(T::rows) * T::p_stride);
}

// Dynamic shared memory of both backward kernels: Q, dout, K, V tiles, P-or-dS tile.
template <class T>
constexpr size_t backward_smem() {
    return sizeof(float) * (size_t(2 * T::rows + 2 * T::keys) * T::stride + size_t(T::rows) * T::p_stride);
}

using ForwardTile64 = Tile<64, 64, 64>;
using ForwardTile80 = Tile<80, 64, 64>;
using ForwardTile128 = Tile<128, 64, 64>;
using ForwardTile256 = Tile<256, 32, 32>;
using BackwardTile64 = Tile<64, 64, 64>;
using BackwardTile80 = Tile<80, 32, 64>;
using BackwardTile128 = Tile<128, 32, 32>;
using BackwardTile256 = Tile<256, 16, 16>;

struct AttentionShape {
    int64_t batch, tq, tk, n_heads, n_kv_heads, head_dim;
    bool causal;
    float scale;
};

// Copies `Rows` rows of one head into a (Rows × stride) shared tile; rows past valid_rows and
// dims past head_dim become 0, so padded rows and dims add nothing to any product.
template <class T, int Rows>
__device__ void load_tile(float* tile, const float* src, int64_t row_stride, int valid_rows, int head_dim) {
    for (int e = threadIdx.x; e < Rows * T::head_dim_max; e += kThreads) {
        const int r = e / T::head_dim_max, d = e % T::head_dim_max;
        tile[r * T::stride + d] = r < valid_rows && d < head_dim ? src[r * row_stride + d] : 0.0f;
    }
}

// s[i][j] = a_row(ty + 16i) · b_row(tx + 16j) over the first dims4 dims (a multiple of 4).
template <class T, int RowsPerThread, int ColsPerThread>
__device__ void tile_dot(float (&s)[RowsPerThread][ColsPerThread], const float* a, const float* b, int dims4,
                         int ty, int tx) {
#pragma unroll
    for (int i = 0; i < RowsPerThread; i++)
#pragma unroll
        for (int j = 0; j < ColsPerThread; j++) s[i][j] = 0.0f;
    for (int d = 0; d < dims4; d += 4) {
        float4 av[RowsPerThread], bv[ColsPerThread];
#pragma unroll
        for (int i = 0; i < RowsPerThread; i++)
            av[i] = *reinterpret_cast<const float4*>(a + (ty + kSide * i) * T::stride + d);
#pragma unroll
        for (int j = 0; j < ColsPerThread; j++)
            bv[j] = *reinterpret_cast<const float4*>(b + (tx + kSide * j) * T::stride + d);
#pragma unroll
        for (int i = 0; i < RowsPerThread; i++)
#pragma unroll
            for (int j = 0; j < ColsPerThread; j++) {
                s[i][j] = fmaf(av[i].x, bv[j].x, s[i][j]);
                s[i][j] = fmaf(av[i].y, bv[j].y, s[i][j]);
                s[i][j] = fmaf(av[i].z, bv[j].z, s[i][j]);
                s[i][j] = fmaf(av[i].w, bv[j].w, s[i][j]);
            }
    }
}

// acc[i][c] += Σ_n w(row ty + 16i, n) · x(n, dim tx + 16c) for n < n_inner, where w is read at
// w[row * w_row + n * w_col] (so a transposed operand is a matter of strides) and x is a
// (n_inner × stride) tile.
template <class T, int RowsPerThread>
__device__ void tile_accumulate(float (&acc)[RowsPerThread][T::dims_per_thread], const float* w, int w_row,
                                int w_col, const float* x, int n_inner, int ty, int tx) {
#pragma unroll 4
    for (int n = 0; n < n_inner; n++) {
        float xv[T::dims_per_thread];
#pragma unroll
        for (int c = 0; c < T::dims_per_thread; c++) xv[c] = x[n * T::stride + tx + kSide * c];
#pragma unroll
        for (int i = 0; i < RowsPerThread; i++) {
            const float wv = w[(ty + kSide * i) * w_row + n * w_col];
#pragma unroll
            for (int c = 0; c < T::dims_per_thread; c++) acc[i][c] = fmaf(wv, xv[c], acc[i][c]);
        }
    }
}

// Reductions over the 16 lanes that share ty (lanes 0–15 or 16–31 of a warp).
__device__ float half_warp_max(float x) {
#pragma unroll
    for (int offset = kSide / 2; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}

__device__ float half_warp_sum(float x) {
#pragma unroll
    for (int offset = kSide / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

// Grid: (query tiles) × batch × n_heads blocks, the last query tiles (the most keys under a
// causal mask) first.
template <class T>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                             const uint8_t* key_mask, AttentionShape shape) {
    constexpr int RQ = T::rows_per_thread, RK = T::keys_per_thread, RD = T::dims_per_thread;
    extern __shared__ float4 smem4[];
    float* q_tile = reinterpret_cast<float*>(smem4);  // (rows × stride)
    float* kv_tile = q_tile + T::rows * T::stride;     // (keys × stride): K, then V of a key tile
    float* p_tile = kv_tile + T::keys * T::stride;     // (rows × p_stride)
    __shared__ bool key_ok[T::keys];

    const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
    const int64_t n_bh = shape.batch * shape.n_heads;
    const int64_t n_q_tiles = (shape.tq + T::rows - 1) / T::rows;
    const int64_t bh = blockIdx.x % n_bh;
    const int64_t q0 = (n_q_tiles - 1 - blockIdx.x / n_bh) * T::rows;
    const int64_t b = bh / shape.n_heads, h = bh % shape.n_heads;
    const int64_t hkv = h / (shape.n_heads / shape.n_kv_heads);
    const int valid_rows = static_cast<int>(shape.tq - q0 < T::rows ? shape.tq - q0 : T::rows);
    const int head_dim = static_cast<int>(shape.head_dim);
    const int dims4 = (head_dim + 3) / 4 * 4;
    const int64_t q_row_stride = shape.n_heads * shape.head_dim;
    const int64_t kv_row_stride = shape.n_kv_heads * shape.head_dim;
    const int64_t shift = shape.tk - shape.tq;  // row i sees keys j <= i + shift
    const float scale2 = shape.scale * kLog2e;    // scores in log2 units

    load_tile<T, T::rows>(q_tile, q + ((b * shape.tq + q0) * shape.n_heads + h) * shape.head_dim, q_row_stride,
                          valid_rows, head_dim);

    float row_max[RQ], row_sum[RQ], acc[RQ][RD];  // row_sum: this thread's keys only
#pragma unroll
    for (int i = 0; i < RQ; i++) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
#pragma unroll
        for (int c = 0; c < RD; c++) acc[i][c] = 0.0f;
    }

    const int64_t key_end = key_end_of_rows(shape.causal, shape.tq, shape.tk, q0, valid_rows);
    for (int64_t k0 = 0; k0 < key_end; k0 += T::keys) {
        const int valid_keys = static_cast<int>(shape.tk - k0 < T::keys ? shape.tk - k0 : T::keys);
        load_tile<T, T::keys>(kv_tile, k + ((b * shape.tk + k0) * shape.n_kv_heads + hkv) * shape.head_dim,
                              kv_row_stride, valid_keys, head_dim);
        if (!__syncthreads_or(load_key_flags(key_ok, key_mask, b, k0, T::keys, shape.tk))) continue;

        float s[RQ][RK];
        tile_dot<T>(s, q_tile, kv_tile, dims4, ty, tx);
#pragma unroll
        for (int i = 0; i < RQ; i++) {
            const int64_t last_key = q0 + ty + kSide * i + shift;
            float tile_max = -INFINITY;
#pragma unroll
            for (int j = 0; j < RK; j++) {
                const int c = tx + kSide * j;
                const bool seen = key_ok[c] && (!shape.causal || k0 + c <= last_key);
                s[i][j] = seen ? s[i][j] * scale2 : -INFINITY;
                tile_max = fmaxf(tile_max, s[i][j]);
            }
            const float new_max = fmaxf(row_max[i], half_warp_max(tile_max));
            // A row that has seen no key yet keeps max −inf; subtracting 0 then leaves every
            // p = exp2(−inf) = 0 instead of NaN.
            const float base = new_max == -INFINITY ? 0.0f : new_max;
            const float rescale = exp2f(row_max[i] - base);
            row_max[i] = new_max;
            float tile_sum = 0.0f;
#pragma unroll
            for (int j = 0; j < RK; j++) {
                s[i][j] = exp2f(s[i][j] - base);
                tile_sum += s[i][j];
            }
            row_sum[i] = row_sum[i] * rescale + tile_sum;
#pragma unroll
            for (int c = 0; c < RD; c++) acc[i][c] *= rescale;
        }
        __syncthreads();  // every thread is done with K
#pragma unroll
        for (int i = 0; i < RQ; i++)
#pragma unroll
            for (int j = 0; j < RK; j++) p_tile[(ty + kSide * i) * T::p_stride + tx + kSide * j] = s[i][j];
        load_tile<T, T::keys>(kv_tile, v + ((b * shape.tk + k0) * shape.n_kv_heads + hkv) * shape.head_dim,
                              kv_row_stride, valid_keys, head_dim);
        __syncthreads();
        tile_accumulate<T, RQ>(acc, p_tile, T::p_stride, 1, kv_tile, T::keys, ty, tx);
        __syncthreads();  // every thread is done with V and P before the next tile overwrites them
    }

#pragma unroll
    for (int i = 0; i < RQ; i++) {
        const float total = half_warp_sum(row_sum[i]);
        const int r = ty + kSide * i;
        if (r >= valid_rows) continue;
        const int64_t i_row = q0 + r;
        const float inv_total = total > 0.0f ? 1.0f / total : 0.0f;
        float* out_row = out + ((b * shape.tq + i_row) * shape.n_heads + h) * shape.head_dim;
#pragma unroll
        for (int c = 0; c < RD; c++) {
            const int d = tx + kSide * c;
            if (d < head_dim) out_row[d] = acc[i][c] * inv_total;
        }
        if (tx == 0)
            lse[(b * shape.n_heads + h) * shape.tq + i_row] =
                total > 0.0f ? (row_max[i] + log2f(total)) * kLn2 : -INFINITY;
    }
}

// delta (batch, n_heads, tq), lse's layout: delta_i = dout_i · out_i. One warp per row.
__global__ void attention_backward_delta_kernel(float* delta, const float* dout, const float* out,
                                                AttentionShape shape) {
    const int lane = threadIdx.x % 32;
    const int64_t rows = shape.batch * shape.n_heads * shape.tq;
    const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
    for (int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; row < rows;
         row += warps) {
        const int64_t i = row % shape.tq, h = row / shape.tq % shape.n_heads, b = row / shape.tq / shape.n_heads;
        const int64_t offset = ((b * shape.tq + i) * shape.n_heads + h) * shape.head_dim;
        float sum = 0.0f;
        for (int64_t e = lane; e < shape.head_dim; e += 32) sum = fmaf(dout[offset + e], out[offset + e], sum);
#pragma unroll
        for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) delta[row] = sum;
    }
}

// From S = q·kᵀ and dP = dout·vᵀ of a tile: s becomes P = exp(scale·S − lse) and dp becomes
// dS = P·(dP − D); both 0 where the row does not see the key or the row has lse = −inf.
template <class T>
__device__ void probabilities_and_score_grads(float (&s)[T::rows_per_thread][T::keys_per_thread],
                                              float (&dp)[T::rows_per_thread][T::keys_per_thread],
                                              const bool* key_ok, const float* row_lse2, const float* row_delta,
                                              const AttentionShape& shape, int64_t q0, int64_t k0, int ty, int tx) {
    const float scale2 = shape.scale * kLog2e;
    const int64_t shift = shape.tk - shape.tq;
#pragma unroll
    for (int i = 0; i < T::rows_per_thread; i++) {
        const int r = ty + kSide * i;
        const float lse2 = row_lse2[r], d_row = row_delta[r];
        const int64_t last_key = q0 + r + shift;
#pragma unroll
        for (int j = 0; j < T::keys_per_thread; j++) {
            const int c = tx + kSide * j;
            const bool seen = key_ok[c] && lse2 != -INFINITY && (!shape.causal || k0 + c <= last_key);
            const float p = seen ? exp2f(s[i][j] * scale2 - lse2) : 0.0f;
            s[i][j] = p;
            dp[i][j] = p * (dp[i][j] - d_row);
        }
    }
}

template <class T>
__device__ void store_score_tile(float* p_tile, const float (&x)[T::rows_per_thread][T::keys_per_thread], int ty,
                                 int tx) {
#pragma unroll
    for (int i = 0; i < T::rows_per_thread; i++)
#pragma unroll
        for (int j = 0; j < T::keys_per_thread; j++) p_tile[(ty + kSide * i) * T::p_stride + tx + kSide * j] = x[i][j];
}

// Grid: (key tiles) × batch × n_kv_heads blocks. Each block owns rows [k0, k0 + keys) of dk / dv
// for its kv head and sums over every query head of the group and every query tile that sees
// the key tile.
template <class T>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k,
                                  const float* v, const uint8_t* key_mask, const float* lse, const float* delta,
                                  AttentionShape shape) {
    constexpr int RQ = T::rows_per_thread, RK = T::keys_per_thread, RD = T::dims_per_thread;
    extern __shared__ float4 smem4[];
    float* k_tile = reinterpret_cast<float*>(smem4);  // (keys × stride)
    float* v_tile = k_tile + T::keys * T::stride;      // (keys × stride)
    float* q_tile = v_tile + T::keys * T::stride;      // (rows × stride)
    float* do_tile = q_tile + T::rows * T::stride;     // (rows × stride)
    float* p_tile = do_tile + T::rows * T::stride;     // (rows × p_stride): P, then dS
    __shared__ bool key_ok[T::keys];
    __shared__ float row_lse2[T::rows], row_delta[T::rows];

    const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
    const int64_t n_bkv = shape.batch * shape.n_kv_heads;
    const int64_t bkv = blockIdx.x % n_bkv;
    const int64_t k0 = blockIdx.x / n_bkv * T::keys;
    const int64_t b = bkv / shape.n_kv_heads, hkv = bkv % shape.n_kv_heads;
    const int64_t group = shape.n_heads / shape.n_kv_heads;
    const int valid_keys = static_cast<int>(shape.tk - k0 < T::keys ? shape.tk - k0 : T::keys);
    const int head_dim = static_cast<int>(shape.head_dim);
    const int dims4 = (head_dim + 3) / 4 * 4;
    const int64_t q_row_stride = shape.n_heads * shape.head_dim;
    const int64_t kv_row_stride = shape.n_kv_heads * shape.head_dim;
    const int64_t kv_offset = ((b * shape.tk + k0) * shape.n_kv_heads + hkv) * shape.head_dim;

    load_tile<T, T::keys>(k_tile, k + kv_offset, kv_row_stride, valid_keys, head_dim);
    load_tile<T, T::keys>(v_tile, v + kv_offset, kv_row_stride, valid_keys, head_dim);
    if (!__syncthreads_or(load_key_flags(key_ok, key_mask, b, k0, T::keys, shape.tk))) return;

    float dk_acc[RK][RD], dv_acc[RK][RD];
#pragma unroll
    for (int a = 0; a < RK; a++)
#pragma unroll
        for (int c = 0; c < RD; c++) dk_acc[a][c] = dv_acc[a][c] = 0.0f;

    // Causal: query row i sees key k0 once i + tk − tq >= k0, and every later row does too.
    const int64_t q_begin = shape.causal && k0 + shape.tq - shape.tk > 0 ? k0 + shape.tq - shape.tk : 0;
    for (int64_t h = hkv * group; h < (hkv + 1) * group; h++) {
        for (int64_t q0 = q_begin; q0 < shape.tq; q0 += T::rows) {
            const int valid_rows = static_cast<int>(shape.tq - q0 < T::rows ? shape.tq - q0 : T::rows);
            const int64_t q_offset = ((b * shape.tq + q0) * shape.n_heads + h) * shape.head_dim;
            load_tile<T, T::rows>(q_tile, q + q_offset, q_row_stride, valid_rows, head_dim);
            load_tile<T, T::rows>(do_tile, dout + q_offset, q_row_stride, valid_rows, head_dim);
            load_row_stats(row_lse2, row_delta, lse, delta, (b * shape.n_heads + h) * shape.tq + q0, T::rows,
                           valid_rows);
            __syncthreads();

            float s[RQ][RK], dp[RQ][RK];
            tile_dot<T>(s, q_tile, k_tile, dims4, ty, tx);
            tile_dot<T>(dp, do_tile, v_tile, dims4, ty, tx);
            probabilities_and_score_grads<T>(s, dp, key_ok, row_lse2, row_delta, shape, q0, k0, ty, tx);

            // dv[key] += Σ_rows P[row][key] · dout[row]: P read transposed from the tile.
            store_score_tile<T>(p_tile, s, ty, tx);
            __syncthreads();
            tile_accumulate<T, RK>(dv_acc, p_tile, 1, T::p_stride, do_tile, T::rows, ty, tx);
            __syncthreads();
            // dk[key] += Σ_rows dS[row][key] · q[row] (scale applied at the end).
            store_score_tile<T>(p_tile, dp, ty, tx);
            __syncthreads();
            tile_accumulate<T, RK>(dk_acc, p_tile, 1, T::p_stride, q_tile, T::rows, ty, tx);
            __syncthreads();  // every thread is done with the tiles before the next ones load
        }
    }

#pragma unroll
    for (int a = 0; a < RK; a++) {
        const int key = ty + kSide * a;
        if (key >= valid_keys) continue;
        const int64_t offset = kv_offset + key * kv_row_stride;
#pragma unroll
        for (int c = 0; c < RD; c++) {
            const int d = tx + kSide * c;
            if (d >= head_dim) continue;
            if (dk != nullptr) dk[offset + d] += shape.scale * dk_acc[a][c];
            if (dv != nullptr) dv[offset + d] += dv_acc[a][c];
        }
    }
}

// Grid: (query tiles) × batch × n_heads blocks, as the forward. Each block owns its dq rows.
template <class T>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v,
                                 const uint8_t* key_mask, const float* lse, const float* delta, AttentionShape shape) {
    constexpr int RQ = T::rows_per_thread, RK = T::keys_per_thread, RD = T::dims_per_thread;
    extern __shared__ float4 smem4[];
    float* q_tile = reinterpret_cast<float*>(smem4);  // (rows × stride)
    float* do_tile = q_tile + T::rows * T::stride;     // (rows × stride)
    float* k_tile = do_tile + T::rows * T::stride;     // (keys × stride)
    float* v_tile = k_tile + T::keys * T::stride;      // (keys × stride)
    float* p_tile = v_tile + T::keys * T::stride;      // (rows × p_stride): dS
    __shared__ bool key_ok[T::keys];
    __shared__ float row_lse2[T::rows], row_delta[T::rows];

    const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
    const int64_t n_bh = shape.batch * shape.n_heads;
    const int64_t n_q_tiles = (shape.tq + T::rows - 1) / T::rows;
    const int64_t bh = blockIdx.x % n_bh;
    const int64_t q0 = (n_q_tiles - 1 - blockIdx.x / n_bh) * T::rows;
    const int64_t b = bh / shape.n_heads, h = bh % shape.n_heads;
    const int64_t hkv = h / (shape.n_heads / shape.n_kv_heads);
    const int valid_rows = static_cast<int>(shape.tq - q0 < T::rows ? shape.tq - q0 : T::rows);
    const int head_dim = static_cast<int>(shape.head_dim);
    const int dims4 = (head_dim + 3) / 4 * 4;
    const int64_t q_row_stride = shape.n_heads * shape.head_dim;
    const int64_t kv_row_stride = shape.n_kv_heads * shape.head_dim;
    const int64_t q_offset = ((b * shape.tq + q0) * shape.n_heads + h) * shape.head_dim;

    load_tile<T, T::rows>(q_tile, q + q_offset, q_row_stride, valid_rows, head_dim);
    load_tile<T, T::rows>(do_tile, dout + q_offset, q_row_stride, valid_rows, head_dim);
    load_row_stats(row_lse2, row_delta, lse, delta, (b * shape.n_heads + h) * shape.tq + q0, T::rows,
                   valid_rows);

    float dq_acc[RQ][RD];
#pragma unroll
    for (int i = 0; i < RQ; i++)
#pragma unroll
        for (int c = 0; c < RD; c++) dq_acc[i][c] = 0.0f;

    const int64_t key_end = key_end_of_rows(shape.causal, shape.tq, shape.tk, q0, valid_rows);
    for (int64_t k0 = 0; k0 < key_end; k0 += T::keys) {
        const int valid_keys = static_cast<int>(shape.tk - k0 < T::keys ? shape.tk - k0 : T::keys);
        const int64_t kv_offset = ((b * shape.tk + k0) * shape.n_kv_heads + hkv) * shape.head_dim;
        load_tile<T, T::keys>(k_tile, k + kv_offset, kv_row_stride, valid_keys, head_dim);
        load_tile<T, T::keys>(v_tile, v + kv_offset, kv_row_stride, valid_keys, head_dim);
        if (!__syncthreads_or(load_key_flags(key_ok, key_mask, b, k0, T::keys, shape.tk))) continue;

        float s[RQ][RK], dp[RQ][RK];
        tile_dot<T>(s, q_tile, k_tile, dims4, ty, tx);
        tile_dot<T>(dp, do_tile, v_tile, dims4, ty, tx);
        probabilities_and_score_grads<T>(s, dp, key_ok, row_lse2, row_delta, shape, q0, k0, ty, tx);
        store_score_tile<T>(p_tile, dp, ty, tx);
        __syncthreads();
        // dq[row] += Σ_keys dS[row][key] · k[key] (scale applied at the end).
        tile_accumulate<T, RQ>(dq_acc, p_tile, T::p_stride, 1, k_tile, T::keys, ty, tx);
        __syncthreads();  // every thread is done with the tiles before the next ones load
    }

#pragma unroll
    for (int i = 0; i < RQ; i++) {
        const int r = ty + kSide * i;
        if (r >= valid_rows) continue;
        float* dq_row = dq + q_offset + r * q_row_stride;
#pragma unroll
        for (int c = 0; c < RD; c++) {
            const int d = tx + kSide * c;
            if (d < head_dim) dq_row[d] += shape.scale * dq_acc[i][c];
        }
    }
}



template <class T>
cudaError_t launch_attention_forward(cudaStream_t stream, float* out, float* lse, const float* q, const float* k,
                                     const float* v, const uint8_t* key_mask, const AttentionShape& shape) {
    const unsigned blocks = tiled_blocks(shape.tq, T::rows, shape.batch * shape.n_heads);
    if (blocks == 0) return cudaErrorInvalidConfiguration;
    return launch_tiles(attention_forward_kernel<T>, blocks, kThreads, forward_smem<T>(), stream, out, lse, q, k, v,
                        key_mask, shape);
}

template <class T>
cudaError_t launch_attention_backward(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout,
                                      const float* q, const float* k, const float* v, const uint8_t* key_mask,
                                      const float* lse, const float* delta, const AttentionShape& shape) {
    if (dk != nullptr || dv != nullptr) {
        const unsigned blocks = tiled_blocks(shape.tk, T::keys, shape.batch * shape.n_kv_heads);
        if (blocks == 0) return cudaErrorInvalidConfiguration;
        const cudaError_t error = launch_tiles(attention_backward_dkv_kernel<T>, blocks, kThreads, backward_smem<T>(),
                                               stream, dk, dv, dout, q, k, v, key_mask, lse, delta, shape);
        if (error != cudaSuccess) return error;
    }
    if (dq != nullptr) {
        const unsigned blocks = tiled_blocks(shape.tq, T::rows, shape.batch * shape.n_heads);
        if (blocks == 0) return cudaErrorInvalidConfiguration;
        return launch_tiles(attention_backward_dq_kernel<T>, blocks, kThreads, backward_smem<T>(), stream, dq, dout, q,
                            k, v, key_mask, lse, delta, shape);
    }
    return cudaSuccess;
}

constexpr int64_t kMaxHeadDim = 256;

nvlm_status unsupported_head_dim(const char* op, int64_t head_dim) {
    return fail(NVLM_ERR_UNSUPPORTED, "%s: head_dim = %lld is above the CUDA kernels' limit of %lld", op,
                static_cast<long long>(head_dim), static_cast<long long>(kMaxHeadDim));
}

}  // namespace

nvlm_status CudaBackend::attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                           const uint8_t* key_mask, int64_t batch, int64_t tq, int64_t tk,
                                           int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, bool causal,
                                           float scale) {
    const OpScope scope(*this, "nvlm_attention_forward");
    if (head_dim > kMaxHeadDim) return unsupported_head_dim("nvlm_attention_forward", head_dim);
    if (batch == 0 || tq == 0) return NVLM_OK;
    if (math_mode == NVLM_MATH_BF16 && head_dim <= kBf16AttentionMaxHeadDim) {
        NVLM_CUDA_TRY("nvlm_attention_forward",
                      launch_attention_bf16_forward(stream(), out, lse, q, k, v, key_mask, batch, tq, tk, n_heads,
                                                    n_kv_heads, head_dim, causal, scale));
        return after_launch("nvlm_attention_forward");
    }
    const AttentionShape shape{batch, tq, tk, n_heads, n_kv_heads, head_dim, causal, scale};
    cudaError_t error = cudaSuccess;
    if (head_dim <= 64)
        error = launch_attention_forward<ForwardTile64>(stream(), out, lse, q, k, v, key_mask, shape);
    else if (head_dim <= 80)
        error = launch_attention_forward<ForwardTile80>(stream(), out, lse, q, k, v, key_mask, shape);
    else if (head_dim <= 128)
        error = launch_attention_forward<ForwardTile128>(stream(), out, lse, q, k, v, key_mask, shape);
    else
        error = launch_attention_forward<ForwardTile256>(stream(), out, lse, q, k, v, key_mask, shape);
    NVLM_CUDA_TRY("nvlm_attention_forward", error);
    return after_launch("nvlm_attention_forward");
}

nvlm_status CudaBackend::attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                            const float* k, const float* v, const uint8_t* key_mask,
                                            const float* out, const float* lse, int64_t batch, int64_t tq,
                                            int64_t tk, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                            bool causal, float scale) {
    const OpScope scope(*this, "nvlm_attention_backward");
    if (head_dim > kMaxHeadDim) return unsupported_head_dim("nvlm_attention_backward", head_dim);
    if (batch == 0 || tq == 0 || tk == 0 || (dq == nullptr && dk == nullptr && dv == nullptr)) return NVLM_OK;
    const AttentionShape shape{batch, tq, tk, n_heads, n_kv_heads, head_dim, causal, scale};

    const int64_t rows = batch * n_heads * tq;
    float* delta = nullptr;
    NVLM_TRY(scratch(static_cast<size_t>(rows) * sizeof(float), reinterpret_cast<void**>(&delta),
                     "nvlm_attention_backward"));
    if (math_mode == NVLM_MATH_BF16 && head_dim <= kBf16AttentionMaxHeadDim) {
        NVLM_CUDA_TRY("nvlm_attention_backward",
                      launch_attention_bf16_backward(stream(), dq, dk, dv, delta, dout, q, k, v, key_mask, out, lse,
                                                     batch, tq, tk, n_heads, n_kv_heads, head_dim, causal, scale));
        return after_launch("nvlm_attention_backward");
    }
    constexpr int delta_threads = 256;
    attention_backward_delta_kernel<<<grid_for(rows * 32, delta_threads), delta_threads, 0, stream()>>>(delta, dout,
                                                                                                       out, shape);
    NVLM_CUDA_CHECK_LAUNCH("nvlm_attention_backward");

    cudaError_t error = cudaSuccess;
    if (head_dim <= 64)
        error = launch_attention_backward<BackwardTile64>(stream(), dq, dk, dv, dout, q, k, v, key_mask, lse, delta,
                                                          shape);
    else if (head_dim <= 80)
        error = launch_attention_backward<BackwardTile80>(stream(), dq, dk, dv, dout, q, k, v, key_mask, lse, delta,
                                                          shape);
    else if (head_dim <= 128)
        error = launch_attention_backward<BackwardTile128>(stream(), dq, dk, dv, dout, q, k, v, key_mask, lse, delta,
                                                           shape);
    else
        error = launch_attention_backward<BackwardTile256>(stream(), dq, dk, dv, dout, q, k, v, key_mask, lse, delta,
                                                           shape);
    NVLM_CUDA_TRY("nvlm_attention_backward", error);
    return after_launch("nvlm_attention_backward");
}

}  // namespace nvlm::cuda
