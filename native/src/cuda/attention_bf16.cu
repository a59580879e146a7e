/*
 * Attention in the BF16 math mode (nvlm_math_mode): flash-attention 2 on the tensor cores, with
 * mma.sync m16n8k16 (bf16 operands, fp32 accumulation). attention.cu dispatches here in BF16 mode
 * for head_dim ≤ 128; shapes and semantics are the ABI's (attention.cu's top comment), and the CPU
 * twin is ../cpu/attention.cpp on bf16-rounded q, k, v and dout.
 *
 * Precision. q, k, v (and dout) are ROUNDED TO BF16 (round to nearest even) as they are staged
 * into shared memory, and every product accumulates in fp32. The probabilities P are rounded to
 * bf16 before P·V and before dV += Pᵀ·dO, the score gradients dS before dQ += dS·K and
 * dK += dSᵀ·Q. Everything else is fp32: the scores, the softmax (max, exp2, the row sums of the
 * UNROUNDED P, lse), D = rowsum(bf16(dO) ⊙ O) and dS = P·(dP − D).
 *
 * Kernels (128 threads = 4 warps; tiles of 64 query rows and 64 keys, warp w owning the tile's
 * rows 16w .. 16w + 15):
 *  - attention_bf16_forward_kernel: one block per (batch, head, 64 query rows). Per key tile, K
 *    and V are staged, S = Q·Kᵀ (16 × 64 per warp) stays in C fragments, the online softmax runs
 *    on them, and P's C fragments become the A fragments of P·V in registers. Key tiles past the
 *    causal limit of the block's last row, or fully masked, are skipped.
 *  - attention_bf16_delta_kernel: D_i = bf16(dO_i) · O_i, one warp per row, into scratch.
 *  - attention_bf16_backward_dkv_kernel: one block per (batch, kv head, 64 keys), looping over
 *    the GQA group's query heads and the query tiles that see its keys. It computes the
 *    transposed tiles Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ (16 keys × 32 queries per warp and step), so Pᵀ
 *    and dSᵀ come out as C fragments that are already the A fragments of dV += Pᵀ·dO and
 *    dK += dSᵀ·Q: no shared P tile. The block owns its dk / dv rows: no atomics.
 *  - attention_bf16_backward_dq_kernel: one block per (batch, head, 64 query rows), looping over
 *    key tiles like the forward: S and dP, then dQ += dS·K with dS from registers.
 *
 * Shared tiles are bf16, 64 rows × D with D = head_dim rounded up to the bucket 64, 80 or 128
 * (SigLIP's 72 → 80), and zeros in the rows and dims past the tensor, so padding adds nothing to
 * any product. Each row is padded by 8 bf16: D/8 + 1 (odd) 16-byte units, so the 8 row addresses
 * of an ldmatrix phase hit distinct banks.
 *
 * Fragments (PTX ISA, mma.m16n8k16 .bf16, as nf4.cu; lane = 4·g + t):
 *   A (16 × 16)  regs {a0 a1 | a2 a3 | a4 a5 | a6 a7} = A[g][2t, 2t+1], A[g+8][2t..], A[g][2t+8..],
 *                A[g+8][2t+8..]: ldmatrix.x4 with lane l addressing row l % 16, column 8·(l / 16)
 *   B (16 × 8)   {b0 b1 | b2 b3} = B[2t, 2t+1][g], B[2t+8, 2t+9][g]; one x4 covers two n8 tiles
 *   C (16 × 8)   {c0 c1 c2 c3} = C[g][2t, 2t+1], C[g+8][2t, 2t+1]
 * X·Yᵀ (scores) takes B from Y's rows as stored, (n, k) row-major: ldmatrix.x4, lane l addressing
 * row l % 8 + 8·(l / 16) at column 8·((l / 8) % 2). P·Y takes B = Y, (k, n) row-major:
 * ldmatrix.x4.trans, lane l addressing row l % 8 + 8·((l / 8) % 2) at column 8·(l / 16). The C
 * fragments of n8 tiles 2s and 2s + 1 of a 16-row score tile are the A fragment of k16 step s:
 * {C_2s[g][2t..], C_2s[g+8][2t..], C_2s+1[g][2t..], C_2s+1[g+8][2t..]}, each pair rounded to bf16.
 *
 * Limits: synchronous global → shared staging (the f32 → bf16 conversion passes through
 * registers; no cp.async pipelining), and backward recomputes S and dP in both gradient kernels.
 * Softmax uses exp2 with log2(e) folded into the scale, as attention.cu.
 */
#include "attention_bf16.cuh"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "attention_tiles.cuh"
#include "backend.cuh"
#include "mma.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kMmaM = 16, kMmaN = 8, kMmaK = 16;  // mma.sync m16n8k16
constexpr int kTileRows = kWarps * kMmaM;          // query rows or keys of a tile: 16 per warp
constexpr int kScoreTiles = kTileRows / kMmaN;     // n8 tiles of a warp's 16 × 64 score tile
constexpr int kDkvRows = 32;                       // queries per score step of the dK/dV kernel
constexpr int kChunk = 8;                          // bf16 per 16-byte shared store
constexpr int kPad = kChunk;                       // bf16 of padding per shared row

static_assert(kThreads >= kTileRows, "one thread per key flag / row statistic");
static_assert(kTileRows % kDkvRows == 0, "dK/dV score steps split a query tile");

// A (64 × Dim) bf16 tile in shared memory, rows kLd apart.
template <int Dim>
struct Tile {
    static constexpr int kLd = Dim + kPad;
    static constexpr int kElements = kTileRows * kLd;
    static constexpr int kDimTiles = Dim / kMmaN;  // n8 tiles of an output row
    static_assert(Dim % kMmaK == 0, "dims come in k16 steps and n8 tile pairs");
    static_assert((kLd * 2 / 16) % 2 == 1, "an odd number of 16-byte units per row spreads ldmatrix over the banks");
};

// Dynamic shared memory of a kernel with `tiles` tiles (above 48 KiB for d128 backward).
template <int Dim>
constexpr size_t tiles_smem(int tiles) {
    return sizeof(__nv_bfloat16) * static_cast<size_t>(tiles) * Tile<Dim>::kElements;
}
static_assert(tiles_smem<128>(4) <= 99 * 1024, "fits sm_86/89's 99 KiB");

struct Shape {
    int64_t batch, tq, tk, n_heads, n_kv_heads, head_dim;
    bool causal;
    float scale;
    bool vector;  // head_dim % 4 == 0 and every f32 tensor 16-byte aligned: float4 loads
};

extern __shared__ __align__(128) unsigned char attention_bf16_shared[];

// The query rows a forward or dq block owns. Grid: (query tiles) × batch × n_heads blocks, the last
// query tiles (the most keys under a causal mask) first.
struct QueryTile {
    int64_t b, h, hkv;  // batch, query head and the kv head it reads
    int64_t q0;         // first query row
    int valid_rows;     // rows of the tile inside tq
    int64_t q_offset;   // element offset of (b, q0, h, 0) in q, out, dout and dq
};

__device__ QueryTile query_tile(const Shape& shape) {
    const int64_t n_bh = shape.batch * shape.n_heads;
    const int64_t n_q_tiles = (shape.tq + kTileRows - 1) / kTileRows;
    const int64_t bh = blockIdx.x % n_bh;
    QueryTile tile;
    tile.q0 = (n_q_tiles - 1 - blockIdx.x / n_bh) * kTileRows;
    tile.b = bh / shape.n_heads;
    tile.h = bh % shape.n_heads;
    tile.hkv = tile.h / (shape.n_heads / shape.n_kv_heads);
    tile.valid_rows = static_cast<int>(shape.tq - tile.q0 < kTileRows ? shape.tq - tile.q0 : kTileRows);
    tile.q_offset = ((tile.b * shape.tq + tile.q0) * shape.n_heads + tile.h) * shape.head_dim;
    return tile;
}

// ---- tiles and products --------------------------------------------------------------------------

// tile (64 × Dim) = bf16 of rows [0, valid_rows) × dims [0, head_dim) of src (rows row_stride apart),
// zero elsewhere: one thread per 8 values, one 16-byte store.
template <int Dim>
__device__ void stage_tile(__nv_bfloat16* tile, const float* src, int64_t row_stride, int valid_rows, int head_dim,
                           bool vector) {
    constexpr int kChunksPerRow = Dim / kChunk;
    for (int e = threadIdx.x; e < kTileRows * kChunksPerRow; e += kThreads) {
        const int row = e / kChunksPerRow, col = e % kChunksPerRow * kChunk;
        const float* p = src + row * row_stride + col;
        float x[kChunk];
        if (vector && row < valid_rows && col + kChunk <= head_dim) {
            const float4 lo = *reinterpret_cast<const float4*>(p), hi = *reinterpret_cast<const float4*>(p + 4);
            x[0] = lo.x, x[1] = lo.y, x[2] = lo.z, x[3] = lo.w, x[4] = hi.x, x[5] = hi.y, x[6] = hi.z, x[7] = hi.w;
        } else {
#pragma unroll
            for (int i = 0; i < kChunk; i++) x[i] = row < valid_rows && col + i < head_dim ? p[i] : 0.0f;
        }
        *reinterpret_cast<uint4*>(&tile[row * Tile<Dim>::kLd + col]) =
            make_uint4(bf16_pair(x[0], x[1]), bf16_pair(x[2], x[3]), bf16_pair(x[4], x[5]), bf16_pair(x[6], x[7]));
    }
}

// c (16 × 8·Tiles) = rows [a_row0, a_row0 + 16) of a · (rows [b_row0, b_row0 + 8·Tiles) of b)ᵀ over
// Dim: scores Q·Kᵀ, dO·Vᵀ, or transposed ones K·Qᵀ, V·dOᵀ. c[j] is the C fragment of columns
// 8j .. 8j + 7.
template <int Dim, int Tiles>
__device__ void multiply_transposed(float (&c)[Tiles][4], const __nv_bfloat16* a, int a_row0,
                                    const __nv_bfloat16* b, int b_row0, int lane) {
    constexpr int kLd = Tile<Dim>::kLd;
    static_assert(Tiles % 2 == 0, "one ldmatrix.x4 loads the B fragments of two n8 tiles");
#pragma unroll
    for (int j = 0; j < Tiles; j++) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < Dim; kk += kMmaK) {
        uint32_t af[4];
        load_matrix_x4(af, &a[(a_row0 + lane % 16) * kLd + kk + lane / 16 * 8]);
#pragma unroll
        for (int j = 0; j < Tiles; j += 2) {
            // Matrices 0..3: (n tile j, k 0..7), (j, k 8..15), (j + 1, k 0..7), (j + 1, k 8..15).
            uint32_t r[4];
            load_matrix_x4(r, &b[(b_row0 + j * kMmaN + lane % 8 + lane / 16 * 8) * kLd + kk + (lane / 8) % 2 * 8]);
            const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
            mma_bf16(c[j], af, b0);
            mma_bf16(c[j + 1], af, b1);
        }
    }
}

// acc (16 × Dim) += bf16(p) (16 × 8·Tiles, the C fragments of a score tile) · rows [y_row0,
// y_row0 + 8·Tiles) of y: P·V, dS·K, Pᵀ·dO, dSᵀ·Q.
template <int Dim, int Tiles>
__device__ void accumulate_product(float (&acc)[Tile<Dim>::kDimTiles][4], const float (&p)[Tiles][4],
                                   const __nv_bfloat16* y, int y_row0, int lane) {
    constexpr int kLd = Tile<Dim>::kLd;
    static_assert(Tiles % 2 == 0, "score tiles pair up into k16 steps");
#pragma unroll
    for (int s = 0; s < Tiles / 2; s++) {
        const uint32_t a[4] = {bf16_pair(p[2 * s][0], p[2 * s][1]), bf16_pair(p[2 * s][2], p[2 * s][3]),
                               bf16_pair(p[2 * s + 1][0], p[2 * s + 1][1]),
                               bf16_pair(p[2 * s + 1][2], p[2 * s + 1][3])};
#pragma unroll
        for (int n = 0; n < Tile<Dim>::kDimTiles; n += 2) {
            // Matrices 0..3: (k 0..7, n tile n), (k 8..15, n), (k 0..7, n + 1), (k 8..15, n + 1).
            uint32_t r[4];
            load_matrix_x4_transposed(
                r, &y[(y_row0 + s * kMmaK + lane % 8 + (lane / 8) % 2 * 8) * kLd + n * kMmaN + lane / 16 * 8]);
            const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
            mma_bf16(acc[n], a, b0);
            mma_bf16(acc[n + 1], a, b1);
        }
    }
}

// ---- key tiles and row statistics ----------------------------------------------------------------

// Stages keys [k0, k0 + 64) of kv head hkv of batch b: their K and V rows as bf16 tiles and their flags
// into key_ok. Every thread of the block calls it; all get true when some key of the tile is kept.
template <int Dim>
__device__ bool stage_key_tile(__nv_bfloat16* k_tile, __nv_bfloat16* v_tile, bool* key_ok, const float* k,
                               const float* v, const uint8_t* key_mask, const Shape& shape, int64_t b, int64_t hkv,
                               int64_t k0) {
    const int valid_keys = static_cast<int>(shape.tk - k0 < kTileRows ? shape.tk - k0 : kTileRows);
    const int64_t kv_offset = ((b * shape.tk + k0) * shape.n_kv_heads + hkv) * shape.head_dim;
    const int64_t kv_row_stride = shape.n_kv_heads * shape.head_dim;
    const int head_dim = static_cast<int>(shape.head_dim);
    stage_tile<Dim>(k_tile, k + kv_offset, kv_row_stride, valid_keys, head_dim, shape.vector);
    stage_tile<Dim>(v_tile, v + kv_offset, kv_row_stride, valid_keys, head_dim, shape.vector);
    return __syncthreads_or(load_key_flags(key_ok, key_mask, b, k0, kTileRows, shape.tk));
}

// Sum over the 4 lanes that share a C-fragment row (lanes 4g .. 4g + 3).
__device__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

__device__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

// ---- kernels -------------------------------------------------------------------------------------

// Grid: (query tiles) × batch × n_heads blocks, the last query tiles (the most keys under a
// causal mask) first.
template <int Dim>
__global__ void __launch_bounds__(kThreads)
    attention_bf16_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                                  const uint8_t* key_mask, Shape shape) {
    __nv_bfloat16* q_tile = reinterpret_cast<__nv_bfloat16*>(attention_bf16_shared);
    __nv_bfloat16* k_tile = q_tile + Tile<Dim>::kElements;
    __nv_bfloat16* v_tile = k_tile + Tile<Dim>::kElements;
    __shared__ bool key_ok[kTileRows];

    const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
    const int g = lane / 4, t = lane % 4;
    const QueryTile tile = query_tile(shape);
    const int64_t b = tile.b, h = tile.h, hkv = tile.hkv, q0 = tile.q0, q_offset = tile.q_offset;
    const int valid_rows = tile.valid_rows;
    const int head_dim = static_cast<int>(shape.head_dim);
    const int64_t q_row_stride = shape.n_heads * shape.head_dim;
    const int64_t shift = shape.tk - shape.tq;  // row i sees keys j <= i + shift
    const float scale2 = shape.scale * kLog2e;    // scores in log2 units

    stage_tile<Dim>(q_tile, q + q_offset, q_row_stride, valid_rows, head_dim, shape.vector);

    // This lane's rows: 16·warp + g (half 0, C registers 0 and 1) and + 8 (half 1, registers 2, 3).
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // row_sum: this lane's keys only
    float acc[Tile<Dim>::kDimTiles][4] = {};

    const int64_t key_end = key_end_of_rows(shape.causal, shape.tq, shape.tk, q0, valid_rows);
    for (int64_t k0 = 0; k0 < key_end; k0 += kTileRows) {
        if (!stage_key_tile<Dim>(k_tile, v_tile, key_ok, k, v, key_mask, shape, b, hkv, k0)) continue;

        float s[kScoreTiles][4];
        multiply_transposed<Dim>(s, q_tile, kMmaM * warp, k_tile, 0, lane);
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int64_t last_key = q0 + kMmaM * warp + g + 8 * half + shift;
            float tile_max = -INFINITY;
#pragma unroll
            for (int j = 0; j < kScoreTiles; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int c = j * kMmaN + 2 * t + e;
                    const bool seen = key_ok[c] && (!shape.causal || k0 + c <= last_key);
                    float& x = s[j][2 * half + e];
                    x = seen ? x * scale2 : -INFINITY;
                    tile_max = fmaxf(tile_max, x);
                }
            const float new_max = fmaxf(row_max[half], quad_max(tile_max));
            // A row that has seen no key yet keeps max −inf; subtracting 0 then leaves every
            // p = exp2(−inf) = 0 instead of NaN.
            const float base = new_max == -INFINITY ? 0.0f : new_max;
            const float rescale = exp2f(row_max[half] - base);
            row_max[half] = new_max;
            float tile_sum = 0.0f;
#pragma unroll
            for (int j = 0; j < kScoreTiles; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float& x = s[j][2 * half + e];
                    x = exp2f(x - base);
                    tile_sum += x;
                }
            row_sum[half] = row_sum[half] * rescale + tile_sum;
#pragma unroll
            for (int n = 0; n < Tile<Dim>::kDimTiles; n++) acc[n][2 * half] *= rescale, acc[n][2 * half + 1] *= rescale;
        }
        accumulate_product<Dim>(acc, s, v_tile, 0, lane);
        __syncthreads();  // every warp is done with K and V before the next tile overwrites them
    }

#pragma unroll
    for (int half = 0; half < 2; half++) {
        const float total = quad_sum(row_sum[half]);
        const int r = kMmaM * warp + g + 8 * half;
        if (r >= valid_rows) continue;
        const float inv_total = total > 0.0f ? 1.0f / total : 0.0f;
        float* out_row = out + q_offset + r * q_row_stride;
#pragma unroll
        for (int n = 0; n < Tile<Dim>::kDimTiles; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int d = n * kMmaN + 2 * t + e;
                if (d < head_dim) out_row[d] = acc[n][2 * half + e] * inv_total;
            }
        if (t == 0)
            lse[(b * shape.n_heads + h) * shape.tq + q0 + r] =
                total > 0.0f ? (row_max[half] + log2f(total)) * kLn2 : -INFINITY;
    }
}

// delta (batch, n_heads, tq), lse's layout: delta_i = bf16(dout_i) · out_i, dout rounded as the
// gradient kernels see it. One warp per row.
__global__ void attention_bf16_delta_kernel(float* delta, const float* dout, const float* out, Shape shape) {
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const int64_t rows = shape.batch * shape.n_heads * shape.tq;
    const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
    for (int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; row < rows;
         row += warps) {
        const int64_t i = row % shape.tq, h = row / shape.tq % shape.n_heads, b = row / shape.tq / shape.n_heads;
        const int64_t offset = ((b * shape.tq + i) * shape.n_heads + h) * shape.head_dim;
        float sum = 0.0f;
        for (int64_t e = lane; e < shape.head_dim; e += kWarp)
            sum = fmaf(__bfloat162float(__float2bfloat16_rn(dout[offset + e])), out[offset + e], sum);
#pragma unroll
        for (int o = kWarp / 2; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) delta[row] = sum;
    }
}

// Grid: (key tiles) × batch × n_kv_heads blocks. Each block owns rows [k0, k0 + 64) of dk / dv for
// its kv head and sums over every query head of the group and every query tile that sees them.
template <int Dim>
__global__ void __launch_bounds__(kThreads)
    attention_bf16_backward_dkv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k,
                                       const float* v, const uint8_t* key_mask, const float* lse, const float* delta,
                                       Shape shape) {
    __nv_bfloat16* k_tile = reinterpret_cast<__nv_bfloat16*>(attention_bf16_shared);
    __nv_bfloat16* v_tile = k_tile + Tile<Dim>::kElements;
    __nv_bfloat16* q_tile = v_tile + Tile<Dim>::kElements;
    __nv_bfloat16* do_tile = q_tile + Tile<Dim>::kElements;
    __shared__ bool key_ok[kTileRows];
    __shared__ float row_lse2[kTileRows], row_delta[kTileRows];

    const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
    const int g = lane / 4, t = lane % 4;
    const int64_t n_bkv = shape.batch * shape.n_kv_heads;
    const int64_t bkv = blockIdx.x % n_bkv;
    const int64_t k0 = blockIdx.x / n_bkv * kTileRows;
    const int64_t b = bkv / shape.n_kv_heads, hkv = bkv % shape.n_kv_heads;
    const int64_t group = shape.n_heads / shape.n_kv_heads;
    const int valid_keys = static_cast<int>(shape.tk - k0 < kTileRows ? shape.tk - k0 : kTileRows);
    const int head_dim = static_cast<int>(shape.head_dim);
    const int64_t q_row_stride = shape.n_heads * shape.head_dim;
    const int64_t kv_row_stride = shape.n_kv_heads * shape.head_dim;
    const int64_t kv_offset = ((b * shape.tk + k0) * shape.n_kv_heads + hkv) * shape.head_dim;
    const int64_t shift = shape.tk - shape.tq;
    const float scale2 = shape.scale * kLog2e;

    if (!stage_key_tile<Dim>(k_tile, v_tile, key_ok, k, v, key_mask, shape, b, hkv, k0)) return;

    // This lane's keys: 16·warp + g (half 0, C registers 0 and 1) and + 8 (half 1, registers 2, 3).
    float dk_acc[Tile<Dim>::kDimTiles][4] = {}, dv_acc[Tile<Dim>::kDimTiles][4] = {};

    // Causal: query row i sees key k0 once i + tk − tq >= k0, and every later row does too.
    const int64_t q_begin = shape.causal && k0 + shape.tq - shape.tk > 0 ? k0 + shape.tq - shape.tk : 0;
    for (int64_t h = hkv * group; h < (hkv + 1) * group; h++) {
        for (int64_t q0 = q_begin; q0 < shape.tq; q0 += kTileRows) {
            const int valid_rows = static_cast<int>(shape.tq - q0 < kTileRows ? shape.tq - q0 : kTileRows);
            const int64_t q_offset = ((b * shape.tq + q0) * shape.n_heads + h) * shape.head_dim;
            stage_tile<Dim>(q_tile, q + q_offset, q_row_stride, valid_rows, head_dim, shape.vector);
            stage_tile<Dim>(do_tile, dout + q_offset, q_row_stride, valid_rows, head_dim, shape.vector);
            load_row_stats(row_lse2, row_delta, lse, delta, (b * shape.n_heads + h) * shape.tq + q0, kTileRows,
                           valid_rows);
            __syncthreads();

            // Sᵀ (keys × queries) becomes Pᵀ = exp(scale·S − lse), dPᵀ becomes dSᵀ = Pᵀ·(dPᵀ − D);
            // both 0 where the query does not see the key or has lse = −inf (padded rows too).
            // kDkvRows queries at a time keep them and both accumulators in registers at d128.
            for (int r0 = 0; r0 < valid_rows; r0 += kDkvRows) {
                float pt[kDkvRows / kMmaN][4], dst[kDkvRows / kMmaN][4];
                multiply_transposed<Dim>(pt, k_tile, kMmaM * warp, q_tile, r0, lane);
                multiply_transposed<Dim>(dst, v_tile, kMmaM * warp, do_tile, r0, lane);
#pragma unroll
                for (int half = 0; half < 2; half++) {
                    const int c = kMmaM * warp + g + 8 * half;
                    const bool key_kept = key_ok[c];
#pragma unroll
                    for (int j = 0; j < kDkvRows / kMmaN; j++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            const int r = r0 + j * kMmaN + 2 * t + e;
                            const float lse2 = row_lse2[r];
                            const bool seen =
                                key_kept && lse2 != -INFINITY && (!shape.causal || k0 + c <= q0 + r + shift);
                            const float p = seen ? exp2f(pt[j][2 * half + e] * scale2 - lse2) : 0.0f;
                            pt[j][2 * half + e] = p;
                            dst[j][2 * half + e] = p * (dst[j][2 * half + e] - row_delta[r]);
                        }
                }
                accumulate_product<Dim>(dv_acc, pt, do_tile, r0, lane);  // dv[key] += Σ_rows P[row][key]·dout[row]
                accumulate_product<Dim>(dk_acc, dst, q_tile, r0, lane);  // dk[key] += Σ_rows dS[row][key]·q[row]
            }
            __syncthreads();  // every warp is done with the tiles before the next ones load
        }
    }

#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int key = kMmaM * warp + g + 8 * half;
        if (key >= valid_keys) continue;
        const int64_t offset = kv_offset + key * kv_row_stride;
#pragma unroll
        for (int n = 0; n < Tile<Dim>::kDimTiles; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int d = n * kMmaN + 2 * t + e;
                if (d >= head_dim) continue;
                if (dk != nullptr) dk[offset + d] += shape.scale * dk_acc[n][2 * half + e];
                if (dv != nullptr) dv[offset + d] += dv_acc[n][2 * half + e];
            }
    }
}

// Grid: (query tiles) × batch × n_heads blocks, as the forward. Each block owns its dq rows.
template <int Dim>
__global__ void __launch_bounds__(kThreads)
    attention_bf16_backward_dq_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v,
                                      const uint8_t* key_mask, const float* lse, const float* delta, Shape shape) {
    __nv_bfloat16* q_tile = reinterpret_cast<__nv_bfloat16*>(attention_bf16_shared);
    __nv_bfloat16* do_tile = q_tile + Tile<Dim>::kElements;
    __nv_bfloat16* k_tile = do_tile + Tile<Dim>::kElements;
    __nv_bfloat16* v_tile = k_tile + Tile<Dim>::kElements;
    __shared__ bool key_ok[kTileRows];
    __shared__ float row_lse2[kTileRows], row_delta[kTileRows];

    const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
    const int g = lane / 4, t = lane % 4;
    const QueryTile tile = query_tile(shape);
    const int64_t b = tile.b, h = tile.h, hkv = tile.hkv, q0 = tile.q0, q_offset = tile.q_offset;
    const int valid_rows = tile.valid_rows;
    const int head_dim = static_cast<int>(shape.head_dim);
    const int64_t q_row_stride = shape.n_heads * shape.head_dim;
    const int64_t shift = shape.tk - shape.tq;
    const float scale2 = shape.scale * kLog2e;

    stage_tile<Dim>(q_tile, q + q_offset, q_row_stride, valid_rows, head_dim, shape.vector);
    stage_tile<Dim>(do_tile, dout + q_offset, q_row_stride, valid_rows, head_dim, shape.vector);
    load_row_stats(row_lse2, row_delta, lse, delta, (b * shape.n_heads + h) * shape.tq + q0, kTileRows,
                   valid_rows);

    // This lane's rows: 16·warp + g (half 0, C registers 0 and 1) and + 8 (half 1, registers 2, 3).
    float dq_acc[Tile<Dim>::kDimTiles][4] = {};

    const int64_t key_end = key_end_of_rows(shape.causal, shape.tq, shape.tk, q0, valid_rows);
    for (int64_t k0 = 0; k0 < key_end; k0 += kTileRows) {
        if (!stage_key_tile<Dim>(k_tile, v_tile, key_ok, k, v, key_mask, shape, b, hkv, k0)) continue;

        // S becomes P = exp(scale·S − lse), dP becomes dS = P·(dP − D); both 0 where the row does
        // not see the key or has lse = −inf.
        float p[kScoreTiles][4], ds[kScoreTiles][4];
        multiply_transposed<Dim>(p, q_tile, kMmaM * warp, k_tile, 0, lane);
        multiply_transposed<Dim>(ds, do_tile, kMmaM * warp, v_tile, 0, lane);
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int r = kMmaM * warp + g + 8 * half;
            const float lse2 = row_lse2[r], d_row = row_delta[r];
            const int64_t last_key = q0 + r + shift;
#pragma unroll
            for (int j = 0; j < kScoreTiles; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int c = j * kMmaN + 2 * t + e;
                    const bool seen = key_ok[c] && lse2 != -INFINITY && (!shape.causal || k0 + c <= last_key);
                    const float x = seen ? exp2f(p[j][2 * half + e] * scale2 - lse2) : 0.0f;
                    p[j][2 * half + e] = x;
                    ds[j][2 * half + e] = x * (ds[j][2 * half + e] - d_row);
                }
        }
        accumulate_product<Dim>(dq_acc, ds, k_tile, 0, lane);  // dq[row] += Σ_keys dS[row][key]·k[key]
        __syncthreads();  // every warp is done with the tiles before the next ones load
    }

#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int r = kMmaM * warp + g + 8 * half;
        if (r >= valid_rows) continue;
        float* dq_row = dq + q_offset + r * q_row_stride;
#pragma unroll
        for (int n = 0; n < Tile<Dim>::kDimTiles; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int d = n * kMmaN + 2 * t + e;
                if (d < head_dim) dq_row[d] += shape.scale * dq_acc[n][2 * half + e];
            }
    }
}

// ---- launchers -----------------------------------------------------------------------------------

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <int Dim>
cudaError_t launch_forward(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v,
                           const uint8_t* key_mask, const Shape& shape) {
    const unsigned blocks = tiled_blocks(shape.tq, kTileRows, shape.batch * shape.n_heads);
    if (blocks == 0) return cudaErrorInvalidConfiguration;
    return launch_tiles(attention_bf16_forward_kernel<Dim>, blocks, kThreads, tiles_smem<Dim>(3), stream, out, lse, q,
                        k, v, key_mask, shape);
}

template <int Dim>
cudaError_t launch_backward(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                            const float* k, const float* v, const uint8_t* key_mask, const float* lse,
                            const float* delta, const Shape& shape) {
    if (dk != nullptr || dv != nullptr) {
        const unsigned blocks = tiled_blocks(shape.tk, kTileRows, shape.batch * shape.n_kv_heads);
        if (blocks == 0) return cudaErrorInvalidConfiguration;
        const cudaError_t error = launch_tiles(attention_bf16_backward_dkv_kernel<Dim>, blocks, kThreads,
                                               tiles_smem<Dim>(4), stream, dk, dv, dout, q, k, v, key_mask, lse, delta,
                                               shape);
        if (error != cudaSuccess) return error;
    }
    if (dq != nullptr) {
        const unsigned blocks = tiled_blocks(shape.tq, kTileRows, shape.batch * shape.n_heads);
        if (blocks == 0) return cudaErrorInvalidConfiguration;
        return launch_tiles(attention_bf16_backward_dq_kernel<Dim>, blocks, kThreads, tiles_smem<Dim>(4), stream, dq,
                            dout, q, k, v, key_mask, lse, delta, shape);
    }
    return cudaSuccess;
}

}  // namespace

cudaError_t launch_attention_bf16_forward(cudaStream_t stream, float* out, float* lse, const float* q, const float* k,
                                          const float* v, const uint8_t* key_mask, int64_t batch, int64_t tq,
                                          int64_t tk, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                          bool causal, float scale) {
    const bool vector = head_dim % 4 == 0 && aligned16(q) && aligned16(k) && aligned16(v);
    const Shape shape{batch, tq, tk, n_heads, n_kv_heads, head_dim, causal, scale, vector};
    if (head_dim <= 64) return launch_forward<64>(stream, out, lse, q, k, v, key_mask, shape);
    if (head_dim <= 80) return launch_forward<80>(stream, out, lse, q, k, v, key_mask, shape);
    if (head_dim <= kBf16AttentionMaxHeadDim) return launch_forward<128>(stream, out, lse, q, k, v, key_mask, shape);
    return cudaErrorInvalidValue;
}

cudaError_t launch_attention_bf16_backward(cudaStream_t stream, float* dq, float* dk, float* dv, float* delta,
                                           const float* dout, const float* q, const float* k, const float* v,
                                           const uint8_t* key_mask, const float* out, const float* lse,
                                           int64_t batch, int64_t tq, int64_t tk, int64_t n_heads,
                                           int64_t n_kv_heads, int64_t head_dim, bool causal, float scale) {
    const bool vector = head_dim % 4 == 0 && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout);
    const Shape shape{batch, tq, tk, n_heads, n_kv_heads, head_dim, causal, scale, vector};
    if (head_dim > kBf16AttentionMaxHeadDim) return cudaErrorInvalidValue;
    constexpr int delta_threads = 256;
    attention_bf16_delta_kernel<<<grid_for(batch * n_heads * tq * kWarp, delta_threads), delta_threads, 0, stream>>>(
        delta, dout, out, shape);
    const cudaError_t error = cudaGetLastError();
    if (error != cudaSuccess) return error;
    if (head_dim <= 64) return launch_backward<64>(stream, dq, dk, dv, dout, q, k, v, key_mask, lse, delta, shape);
    if (head_dim <= 80) return launch_backward<80>(stream, dq, dk, dv, dout, q, k, v, key_mask, lse, delta, shape);
    return launch_backward<128>(stream, dq, dk, dv, dout, q, k, v, key_mask, lse, delta, shape);
}

}  // namespace nvlm::cuda
