/*
 * Elementwise ops over n floats, as ../cpu/elementwise.cpp defines them: GELU (tanh
 * approximation), SwiGLU, residual add, scale, and the full sum. Forward outputs may alias their
 * inputs (each thread reads its element before writing it); backwards add into their gradients
 * and skip a null one.
 *
 * Every op but sum_forward is one grid-stride loop, one thread per element. sum_forward is a
 * deterministic two-stage reduction in double (the twin accumulates in double): a fixed number of
 * blocks (a function of n only) each write one partial sum into scratch, then one block adds the
 * partials and overwrites out[0].
 */
#include <algorithm>

#include "backend.cuh"
#include "reduce.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxSumBlocks = 1024;
constexpr float kGeluBeta = 0.7978845608028654f;  // √(2/π)
constexpr float kGeluKappa = 0.044715f;

__device__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// out = 0.5·x·(1 + tanh(β·(x + κ·x³))).
__global__ void gelu_forward_kernel(float* out, const float* x, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xi = x[i];
        out[i] = 0.5f * xi * (1.0f + tanhf(kGeluBeta * (xi + kGeluKappa * xi * xi * xi)));
    }
}

// dx += dout·(0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·β·(1 + 3κ·x²)), u = β·(x + κ·x³).
__global__ void gelu_backward_kernel(float* dx, const float* dout, const float* x, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xi = x[i];
        const float tanh_u = tanhf(kGeluBeta * (xi + kGeluKappa * xi * xi * xi));
        const float left_derivative = 0.5f * (1.0f + tanh_u);
        const float right_derivative =
            0.5f * xi * (1.0f - tanh_u * tanh_u) * kGeluBeta * (1.0f + 3.0f * kGeluKappa * xi * xi);
        dx[i] += dout[i] * (left_derivative + right_derivative);
    }
}

// out = silu(gate)·up, silu(g) = g·σ(g).
__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

// dgate += dout·up·σ(g)·(1 + g·(1 − σ(g)));  dup += dout·silu(g).
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                       int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = gate[i], s = sigmoid(g);
        if (dgate != nullptr) dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup != nullptr) dup[i] += dout[i] * g * s;
    }
}

__global__ void residual_forward_kernel(float* out, const float* a, const float* b, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = a[i] + b[i];
}

__global__ void residual_backward_kernel(float* da, float* db, const float* dout, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        if (da != nullptr) da[i] += dout[i];
        if (db != nullptr) db[i] += dout[i];
    }
}

__global__ void scale_forward_kernel(float* out, const float* x, float alpha, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = alpha * x[i];
}

__global__ void scale_backward_kernel(float* dx, const float* dout, float alpha, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        dx[i] += alpha * dout[i];
}

// Stage 1 of sum_forward: partials[block] = Σ of the block's grid-stride share of x, in double.
__global__ void sum_forward_partials_kernel(double* partials, const float* x, int64_t n) {
    __shared__ double shared[kWarpSize];
    double acc = 0.0;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) acc += x[i];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// Stage 2, one block: out[0] = Σ partials (overwritten, as the twin does).
__global__ void sum_forward_total_kernel(float* out, const double* partials, int64_t n_partials) {
    __shared__ double shared[kWarpSize];
    double acc = 0.0;
    for (int64_t b = threadIdx.x; b < n_partials; b += blockDim.x) acc += partials[b];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) out[0] = static_cast<float>(acc);
}

// dx += dout[0] everywhere.
__global__ void sum_backward_kernel(float* dx, const float* dout, int64_t n) {
    const float g = dout[0];
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) dx[i] += g;
}

}  // namespace

nvlm_status CudaBackend::gelu_forward(float* out, const float* x, int64_t n) {
    const OpScope scope(*this, "nvlm_gelu_forward");
    if (n == 0) return NVLM_OK;
    gelu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(out, x, n);
    return after_launch("nvlm_gelu_forward");
}

nvlm_status CudaBackend::gelu_backward(float* dx, const float* dout, const float* x, int64_t n) {
    const OpScope scope(*this, "nvlm_gelu_backward");
    if (n == 0 || dx == nullptr) return NVLM_OK;
    gelu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dx, dout, x, n);
    return after_launch("nvlm_gelu_backward");
}

nvlm_status CudaBackend::swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
    const OpScope scope(*this, "nvlm_swiglu_forward");
    if (n == 0) return NVLM_OK;
    swiglu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(out, gate, up, n);
    return after_launch("nvlm_swiglu_forward");
}

nvlm_status CudaBackend::swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                                         const float* up, int64_t n) {
    const OpScope scope(*this, "nvlm_swiglu_backward");
    if (n == 0 || (dgate == nullptr && dup == nullptr)) return NVLM_OK;
    swiglu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dgate, dup, dout, gate, up, n);
    return after_launch("nvlm_swiglu_backward");
}

nvlm_status CudaBackend::residual_forward(float* out, const float* a, const float* b, int64_t n) {
    const OpScope scope(*this, "nvlm_residual_forward");
    if (n == 0) return NVLM_OK;
    residual_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(out, a, b, n);
    return after_launch("nvlm_residual_forward");
}

nvlm_status CudaBackend::residual_backward(float* da, float* db, const float* dout, int64_t n) {
    const OpScope scope(*this, "nvlm_residual_backward");
    if (n == 0 || (da == nullptr && db == nullptr)) return NVLM_OK;
    residual_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(da, db, dout, n);
    return after_launch("nvlm_residual_backward");
}

nvlm_status CudaBackend::scale_forward(float* out, const float* x, float alpha, int64_t n) {
    const OpScope scope(*this, "nvlm_scale_forward");
    if (n == 0) return NVLM_OK;
    scale_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(out, x, alpha, n);
    return after_launch("nvlm_scale_forward");
}

nvlm_status CudaBackend::scale_backward(float* dx, const float* dout, float alpha, int64_t n) {
    const OpScope scope(*this, "nvlm_scale_backward");
    if (n == 0 || dx == nullptr) return NVLM_OK;
    scale_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dx, dout, alpha, n);
    return after_launch("nvlm_scale_backward");
}

// n = 0 still runs both stages: out[0] = 0, as the twin writes.
nvlm_status CudaBackend::sum_forward(float* out, const float* x, int64_t n) {
    const OpScope scope(*this, "nvlm_sum_forward");
    const unsigned blocks = std::min(grid_for(n, kThreads), kMaxSumBlocks);
    void* buffer = nullptr;
    NVLM_TRY(scratch(blocks * sizeof(double), &buffer, "nvlm_sum_forward"));
    double* partials = static_cast<double*>(buffer);
    sum_forward_partials_kernel<<<blocks, kThreads, 0, stream()>>>(partials, x, n);
    sum_forward_total_kernel<<<1, kThreads, 0, stream()>>>(out, partials, blocks);
    return after_launch("nvlm_sum_forward");
}

nvlm_status CudaBackend::sum_backward(float* dx, const float* dout, int64_t n) {
    const OpScope scope(*this, "nvlm_sum_backward");
    if (n == 0 || dx == nullptr) return NVLM_OK;
    sum_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dx, dout, n);
    return after_launch("nvlm_sum_backward");
}

}  // namespace nvlm::cuda
