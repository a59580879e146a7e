/*
 * Idefics3Connector.pixel_shuffle with scale factor s, as ../cpu/pixel_shuffle.cpp defines it:
 * x (n, seq, d), seq = side², becomes out (n, seq/s², d·s²). Patch (r, c) = (R·s + i, C·s + j) of
 * the side×side grid lands in output token R·(side/s) + C at channels [(i·s + j)·d, (i·s + j + 1)·d).
 *
 * One thread per output element (grid-stride, int64 index math) computes its x offset. Each input
 * patch has exactly one destination, so the forward is a pure copy (bit-identical to the twin)
 * and the backward walks the same map, adding each dout element into its one x element with no race.
 */
#include <cmath>

#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;

// The x offset of output element o; out_side = side/scale.
__device__ int64_t pixel_shuffle_x_offset(int64_t o, int64_t seq, int64_t d, int64_t scale, int64_t side,
                                          int64_t out_side) {
    const int64_t out_seq = out_side * out_side;
    const int64_t out_d = d * scale * scale;
    const int64_t token = o / out_d, k = o % out_d;
    const int64_t slot = k / d, e = k % d;  // slot = i·scale + j
    const int64_t i = slot / scale, j = slot % scale;
    const int64_t b = token / out_seq, R = token % out_seq / out_side, C = token % out_side;
    const int64_t patch = (R * scale + i) * side + (C * scale + j);
    return (b * seq + patch) * d + e;
}

__global__ void pixel_shuffle_forward_kernel(float* out, const float* x, int64_t total, int64_t seq, int64_t d,
                                             int64_t scale, int64_t side, int64_t out_side) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride)
        out[o] = x[pixel_shuffle_x_offset(o, seq, d, scale, side, out_side)];
}

__global__ void pixel_shuffle_backward_kernel(float* dx, const float* dout, int64_t total, int64_t seq, int64_t d,
                                              int64_t scale, int64_t side, int64_t out_side) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride)
        dx[pixel_shuffle_x_offset(o, seq, d, scale, side, out_side)] += dout[o];
}

// side = √seq exactly (the export checks seq is a perfect square), computed as the twin does.
int64_t grid_side(int64_t seq) { return std::llround(std::sqrt(static_cast<double>(seq))); }

}  // namespace

// out holds as many elements as x: n·seq·d.
nvlm_status CudaBackend::pixel_shuffle_forward(float* out, const float* x, int64_t n, int64_t seq, int64_t d,
                                               int64_t scale) {
    const OpScope scope(*this, "nvlm_pixel_shuffle_forward");
    const int64_t total = n * seq * d;
    if (total == 0) return NVLM_OK;
    const int64_t side = grid_side(seq);
    pixel_shuffle_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(out, x, total, seq, d, scale,
                                                                                     side, side / scale);
    return after_launch("nvlm_pixel_shuffle_forward");
}

nvlm_status CudaBackend::pixel_shuffle_backward(float* dx, const float* dout, int64_t n, int64_t seq, int64_t d,
                                                int64_t scale) {
    const OpScope scope(*this, "nvlm_pixel_shuffle_backward");
    const int64_t total = n * seq * d;
    if (total == 0 || dx == nullptr) return NVLM_OK;
    const int64_t side = grid_side(seq);
    pixel_shuffle_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(dx, dout, total, seq, d,
                                                                                      scale, side, side / scale);
    return after_launch("nvlm_pixel_shuffle_backward");
}

}  // namespace nvlm::cuda
