/*
 * What the fp32 (attention.cu) and the tensor-core (attention_bf16.cu) attention kernels share: the
 * log2-domain constants of their exp2 softmax, the key flags of a key tile, the causal end of a query
 * tile's keys, the per-row statistics (lse, delta) the backward loads, and how a grid of tiles is
 * sized and launched.
 * Shapes are nvlm.h's: key_mask (batch, tk) uint8 or null; lse and delta (batch, n_heads, tq).
 */
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_runtime.h>

namespace nvlm::cuda {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Whether key k0 + threadIdx.x (threadIdx.x < keys) exists and the mask keeps it, into key_ok; true in
// the threads that found a kept key.
__device__ inline bool load_key_flags(bool* key_ok, const uint8_t* key_mask, int64_t b, int64_t k0, int keys,
                                      int64_t tk) {
    bool ok = false;
    if (static_cast<int>(threadIdx.x) < keys) {
        const int64_t j = k0 + threadIdx.x;
        ok = j < tk && (key_mask == nullptr || key_mask[b * tk + j] != 0);
        key_ok[threadIdx.x] = ok;
    }
    return ok;
}

// End (exclusive) of the keys that some query row of [q0, q0 + valid_rows) sees: all tk keys unless
// causal, where row i sees keys j ≤ i + tk − tq.
__device__ inline int64_t key_end_of_rows(bool causal, int64_t tq, int64_t tk, int64_t q0, int valid_rows) {
    if (!causal) return tk;
    const int64_t end = q0 + valid_rows + tk - tq;
    return end < 0 ? 0 : (end > tk ? tk : end);
}

// Loads lse (in log2 units, −inf for rows past valid_rows) and delta of the query rows [row0, row0 + rows),
// one thread per row.
__device__ inline void load_row_stats(float* row_lse2, float* row_delta, const float* lse, const float* delta,
                                      int64_t row0, int rows, int valid_rows) {
    if (static_cast<int>(threadIdx.x) < rows) {
        const int r = threadIdx.x;
        row_lse2[r] = r < valid_rows ? lse[row0 + r] * kLog2e : -INFINITY;
        row_delta[r] = r < valid_rows ? delta[row0 + r] : 0.0f;
    }
}

// Blocks of a grid over (tiles of `tile` along `length`) × `others`, or 0 when it would not fit a
// launch's grid.x.
inline unsigned tiled_blocks(int64_t length, int tile, int64_t others) {
    const int64_t blocks = (length + tile - 1) / tile * others;
    return blocks > 0x7fffffff ? 0u : static_cast<unsigned>(blocks);
}

// Raises a kernel's dynamic shared-memory limit (above 48 KiB needs it) and launches it.
template <class Kernel, class... Args>
cudaError_t launch_tiles(Kernel kernel, unsigned blocks, int threads, size_t smem, cudaStream_t stream, Args... args) {
    const cudaError_t error =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (error != cudaSuccess) return error;
    kernel<<<blocks, threads, smem, stream>>>(args...);
    return cudaGetLastError();
}

}  // namespace nvlm::cuda
