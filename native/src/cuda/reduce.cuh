/*
 * Deterministic sums across a warp and across a block, shared by the CUDA kernels that reduce
 * rows (norms) or a whole tensor (sum). The shuffle pattern is fixed, so a given input always
 * gives the same bits, whatever the timing of the warps.
 */
#pragma once

#include <cuda_runtime.h>

namespace nvlm::cuda {

constexpr int kWarpSize = 32;

// The sum of v over the 32 lanes of a full warp, returned to every lane (butterfly over xor).
template <class T>
__device__ inline T warp_sum(T v) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// The sum of v over the whole block, returned to every thread. blockDim.x must be a multiple of 32
// (at most 1024) and every thread of the block must call it; shared holds kWarpSize values. The
// leading barrier lets a block call this back to back: no warp overwrites shared while another
// still reads the previous total.
template <class T>
__device__ inline T block_sum(T v, T* shared) {
    const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
    const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
    const int warps = static_cast<int>(blockDim.x) / kWarpSize;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? shared[lane] : T(0));
}

}  // namespace nvlm::cuda
