/*
 * A bias added to every row (CPU twin: ../cpu/bias_add.cpp):
 *   nvlm_bias_add_forward   out (m, n) = x (m, n) + bias (n), one element per thread per grid-stride step;
 *   nvlm_bias_add_backward  dx (m, n) += dout the same way, and dbias (n) += Σ_rows dout through the
 *                           deterministic column sums of column_sums.cuh.
 * out may alias x: each element is read and written by the same thread.
 */
#include "backend.cuh"
#include "column_sums.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void bias_add_forward_kernel(float* out, const float* x, const float* bias, int64_t m, int64_t n) {
    const int64_t count = m * n;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[i] = x[i] + bias[i % n];
}

__global__ void bias_add_backward_dx_kernel(float* dx, const float* dout, int64_t count) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dx[i] += dout[i];
}

}  // namespace

nvlm_status CudaBackend::bias_add_forward(float* out, const float* x, const float* bias, int64_t m, int64_t n) {
    const OpScope scope(*this, "nvlm_bias_add_forward");
    if (m == 0 || n == 0) return NVLM_OK;
    bias_add_forward_kernel<<<grid_for(m * n, kThreads), kThreads, 0, stream()>>>(out, x, bias, m, n);
    return after_launch("nvlm_bias_add_forward");
}

nvlm_status CudaBackend::bias_add_backward(float* dx, float* dbias, const float* dout, int64_t m, int64_t n) {
    const OpScope scope(*this, "nvlm_bias_add_backward");
    if (m == 0 || n == 0) return NVLM_OK;
    if (dx != nullptr) {
        bias_add_backward_dx_kernel<<<grid_for(m * n, kThreads), kThreads, 0, stream()>>>(dx, dout, m * n);
        NVLM_TRY(after_launch("nvlm_bias_add_backward"));
    }
    if (dbias != nullptr) return add_column_sums(*this, "nvlm_bias_add_backward", dbias, MatrixEntries{dout, n}, m, n);
    return NVLM_OK;
}

}  // namespace nvlm::cuda
