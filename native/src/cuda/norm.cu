/*
 * RMSNorm (Llama) and LayerNorm over the last dimension of x (n, d), as ../cpu/norm.cpp defines them:
 *   rmsnorm:   rstd[i] = 1/sqrt(mean_j x[i,j]² + eps),  out[i,j] = (x[i,j]·rstd[i])·w[j];
 *   layernorm: mean[i] = mean_j x[i,j], rstd[i] = 1/sqrt(biased variance + eps),
 *              out[i,j] = (x[i,j] − mean[i])·rstd[i]·w[j] + b[j].
 * rstd (n) and mean (n) are saved by the forward and reused by the backward.
 *
 * Forward and the dx part of backward: one block per row (grid-stride over rows when n exceeds
 * the grid), the row's sums in fp32 through block_sum, the scalar that follows (mean, rstd, the
 * backward coefficients) in double as the twin forms it.
 *
 * dw and db are column sums over the rows (column_sums.cuh).
 */
#include <algorithm>

#include "backend.cuh"
#include "column_sums.cuh"
#include "reduce.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kMaxRowThreads = 256;

// Threads for one row of d values: a whole number of warps, no more than the row needs up to 256.
int row_threads(int64_t d) {
    const int64_t warps = (d + kWarpSize - 1) / kWarpSize;
    return static_cast<int>(std::clamp<int64_t>(warps * kWarpSize, kWarpSize, kMaxRowThreads));
}

// One block per row: grid_for(n, 1) is n blocks, capped (the kernels stride over the rest).
unsigned row_blocks(int64_t n) { return grid_for(n, 1); }

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* x, const float* w, int64_t n,
                                       int64_t d, float eps) {
    __shared__ float shared[kWarpSize];
    for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
        const float* x_row = x + row * d;
        float sum_sq = 0.0f;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) sum_sq += x_row[j] * x_row[j];
        sum_sq = block_sum(sum_sq, shared);
        const float r = static_cast<float>(1.0 / sqrt(static_cast<double>(sum_sq) / static_cast<double>(d) + eps));
        float* out_row = out + row * d;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) out_row[j] = x_row[j] * r * w[j];
        if (threadIdx.x == 0) rstd[row] = r;
    }
}

// dx[i,j] += r·w_j·dout_j − (r³/d)·x_j·Σ_k dout_k·w_k·x_k, r = rstd[i].
__global__ void rmsnorm_backward_dx_kernel(float* dx, const float* dout, const float* x, const float* w,
                                           const float* rstd, int64_t n, int64_t d) {
    __shared__ float shared[kWarpSize];
    for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
        const float* x_row = x + row * d;
        const float* g_row = dout + row * d;
        float dot = 0.0f;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dot += g_row[j] * w[j] * x_row[j];
        dot = block_sum(dot, shared);
        const float r = rstd[row];
        const double r_double = r;
        const float coeff =
            static_cast<float>(r_double * r_double * r_double * static_cast<double>(dot) / static_cast<double>(d));
        float* dx_row = dx + row * d;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dx_row[j] += r * w[j] * g_row[j] - coeff * x_row[j];
    }
}

__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* x, const float* w,
                                         const float* b, int64_t n, int64_t d, float eps) {
    __shared__ float shared[kWarpSize];
    for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
        const float* x_row = x + row * d;
        float sum = 0.0f;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) sum += x_row[j];
        sum = block_sum(sum, shared);
        const float m = static_cast<float>(static_cast<double>(sum) / static_cast<double>(d));
        // Two passes, the variance about the mean, as the twin: no cancellation of E[x²] − E[x]².
        float sum_sq = 0.0f;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            const float centred = x_row[j] - m;
            sum_sq += centred * centred;
        }
        sum_sq = block_sum(sum_sq, shared);
        const float r = static_cast<float>(1.0 / sqrt(static_cast<double>(sum_sq) / static_cast<double>(d) + eps));
        float* out_row = out + row * d;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) out_row[j] = (x_row[j] - m) * r * w[j] + b[j];
        if (threadIdx.x == 0) {
            mean[row] = m;
            rstd[row] = r;
        }
    }
}

// With xhat = (x − mean)·rstd and dnorm = dout·w: dx += rstd·(dnorm − mean(dnorm) − xhat·mean(dnorm·xhat)).
__global__ void layernorm_backward_dx_kernel(float* dx, const float* dout, const float* x, const float* w,
                                             const float* mean, const float* rstd, int64_t n, int64_t d) {
    __shared__ float shared[kWarpSize];
    for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
        const float* x_row = x + row * d;
        const float* g_row = dout + row * d;
        const float m = mean[row], r = rstd[row];
        float sum_dnorm = 0.0f, sum_dnorm_xhat = 0.0f;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            const float dnorm = g_row[j] * w[j];
            sum_dnorm += dnorm;
            sum_dnorm_xhat += dnorm * ((x_row[j] - m) * r);
        }
        sum_dnorm = block_sum(sum_dnorm, shared);
        sum_dnorm_xhat = block_sum(sum_dnorm_xhat, shared);
        const float mean_dnorm = static_cast<float>(static_cast<double>(sum_dnorm) / static_cast<double>(d));
        const float mean_dnorm_xhat = static_cast<float>(static_cast<double>(sum_dnorm_xhat) / static_cast<double>(d));
        float* dx_row = dx + row * d;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            const float xhat = (x_row[j] - m) * r;
            dx_row[j] += r * (g_row[j] * w[j] - mean_dnorm - xhat * mean_dnorm_xhat);
        }
    }
}

// The terms the weight and bias gradients sum over rows i, for column j.
struct RmsnormBackwardDwTerm {
    const float* dout;
    const float* x;
    const float* rstd;
    int64_t d;
    __device__ float operator()(int64_t i, int64_t j) const { return dout[i * d + j] * x[i * d + j] * rstd[i]; }
};

struct LayernormBackwardDwTerm {
    const float* dout;
    const float* x;
    const float* mean;
    const float* rstd;
    int64_t d;
    __device__ float operator()(int64_t i, int64_t j) const {
        return dout[i * d + j] * ((x[i * d + j] - mean[i]) * rstd[i]);
    }
};

}  // namespace

nvlm_status CudaBackend::rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t n, int64_t d,
                                         float eps) {
    const OpScope scope(*this, "nvlm_rmsnorm_forward");
    if (n == 0) return NVLM_OK;
    rmsnorm_forward_kernel<<<row_blocks(n), row_threads(d), 0, stream()>>>(out, rstd, x, w, n, d, eps);
    return after_launch("nvlm_rmsnorm_forward");
}

nvlm_status CudaBackend::rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                          const float* rstd, int64_t n, int64_t d) {
    const OpScope scope(*this, "nvlm_rmsnorm_backward");
    if (n == 0 || d == 0) return NVLM_OK;
    if (dx != nullptr) {
        rmsnorm_backward_dx_kernel<<<row_blocks(n), row_threads(d), 0, stream()>>>(dx, dout, x, w, rstd, n, d);
        NVLM_TRY(after_launch("nvlm_rmsnorm_backward"));
    }
    if (dw != nullptr)
        NVLM_TRY(add_column_sums(*this, "nvlm_rmsnorm_backward", dw, RmsnormBackwardDwTerm{dout, x, rstd, d}, n, d));
    return NVLM_OK;
}

nvlm_status CudaBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w,
                                           const float* b, int64_t n, int64_t d, float eps) {
    const OpScope scope(*this, "nvlm_layernorm_forward");
    if (n == 0) return NVLM_OK;
    layernorm_forward_kernel<<<row_blocks(n), row_threads(d), 0, stream()>>>(out, mean, rstd, x, w, b, n, d, eps);
    return after_launch("nvlm_layernorm_forward");
}

nvlm_status CudaBackend::layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x,
                                            const float* w, const float* mean, const float* rstd, int64_t n,
                                            int64_t d) {
    const OpScope scope(*this, "nvlm_layernorm_backward");
    if (n == 0 || d == 0) return NVLM_OK;
    if (dx != nullptr) {
        layernorm_backward_dx_kernel<<<row_blocks(n), row_threads(d), 0, stream()>>>(dx, dout, x, w, mean, rstd, n,
                                                                                       d);
        NVLM_TRY(after_launch("nvlm_layernorm_backward"));
    }
    // dw's partials are consumed by its totals kernel before db's overwrite the scratch: one stream.
    if (dw != nullptr)
        NVLM_TRY(add_column_sums(*this, "nvlm_layernorm_backward", dw,
                                 LayernormBackwardDwTerm{dout, x, mean, rstd, d}, n, d));
    if (db != nullptr)
        NVLM_TRY(add_column_sums(*this, "nvlm_layernorm_backward", db, MatrixEntries{dout, d}, n, d));
    return NVLM_OK;
}

}  // namespace nvlm::cuda
