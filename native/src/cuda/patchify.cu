/*
 * SigLIP's patch embedding conv (kernel = stride = patch, no padding) as data movement, as
 * ../cpu/patchify.cpp defines it: pixels (n, channels, height, width) → out (n, (height/patch)·
 * (width/patch), channels·patch²), output row py·(width/patch) + px holding
 * pixels[c, py·patch + ky, px·patch + kx] at (c·patch + ky)·patch + kx, the order of a conv weight
 * (hidden, channels, patch, patch) flattened.
 *
 * One thread per output element (grid-stride, int64 index math) computes its pixel's offset. The
 * patches tile the image, so the map is a bijection: the forward is a pure copy (bit-identical to
 * the twin) and the backward walks the same map, adding each dout element into its one pixel with
 * no race.
 */
#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;

// The pixels offset of output element o.
__device__ int64_t patchify_pixel_offset(int64_t o, int64_t channels, int64_t height, int64_t width, int64_t patch) {
    const int64_t grid_width = width / patch;
    const int64_t patches = height / patch * grid_width;
    const int64_t patch_size = channels * patch * patch;
    const int64_t token = o / patch_size, k = o % patch_size;
    const int64_t c = k / (patch * patch), ky = k / patch % patch, kx = k % patch;
    const int64_t b = token / patches, py = token % patches / grid_width, px = token % grid_width;
    return ((b * channels + c) * height + py * patch + ky) * width + px * patch + kx;
}

__global__ void patchify_forward_kernel(float* out, const float* pixels, int64_t total, int64_t channels,
                                        int64_t height, int64_t width, int64_t patch) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride)
        out[o] = pixels[patchify_pixel_offset(o, channels, height, width, patch)];
}

__global__ void patchify_backward_kernel(float* dpixels, const float* dout, int64_t total, int64_t channels,
                                         int64_t height, int64_t width, int64_t patch) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride)
        dpixels[patchify_pixel_offset(o, channels, height, width, patch)] += dout[o];
}

}  // namespace

// out holds as many elements as pixels: n·channels·height·width.
nvlm_status CudaBackend::patchify_forward(float* out, const float* pixels, int64_t n, int64_t channels,
                                          int64_t height, int64_t width, int64_t patch) {
    const OpScope scope(*this, "nvlm_patchify_forward");
    const int64_t total = n * channels * height * width;
    if (total == 0) return NVLM_OK;
    patchify_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(out, pixels, total, channels, height,
                                                                                width, patch);
    return after_launch("nvlm_patchify_forward");
}

nvlm_status CudaBackend::patchify_backward(float* dpixels, const float* dout, int64_t n, int64_t channels,
                                           int64_t height, int64_t width, int64_t patch) {
    const OpScope scope(*this, "nvlm_patchify_backward");
    const int64_t total = n * channels * height * width;
    if (total == 0 || dpixels == nullptr) return NVLM_OK;
    patchify_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(dpixels, dout, total, channels,
                                                                                 height, width, patch);
    return after_launch("nvlm_patchify_backward");
}

}  // namespace nvlm::cuda
