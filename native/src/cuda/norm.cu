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
 * dw and db are column sums over the rows, done deterministically in two stages: blocks of
 * 32 columns × a chunk of rows write one partial sum per (chunk, column) into scratch, then one
 * thread per column adds its chunks' partials in chunk order into the gradient (+=).
 */
#include <algorithm>

#include "backend.cuh"
#include "reduce.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kMaxRowThreads = 256;
constexpr int kColumnTile = 32;         // columns per block of the column sums (threadIdx.x)
constexpr int kRowLanes = 8;            // rows read at once per block of the column sums (threadIdx.y)
constexpr int64_t kMaxRowChunks = 1024;  // partial sums per column, at most
constexpr int64_t kMinChunkRows = 64;
constexpr int kColumnTotalThreads = 256;

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

struct LayernormBackwardDbTerm {
    const float* dout;
    int64_t d;
    __device__ float operator()(int64_t i, int64_t j) const { return dout[i * d + j]; }
};

// Stage 1 of the column sums: block (tile, chunk) writes partials[chunk·d + j] = Σ term(i, j) over
// the chunk's rows, for the 32 columns j of its tile (tiles grid-stride over blockIdx.x). Lane
// (x, y) sums rows y, y + 8, …; lane row 0 then adds the 8 lane sums in order.
template <class Term>
__global__ void norm_backward_column_partials_kernel(float* partials, Term term, int64_t n, int64_t d,
                                                     int64_t chunk_rows) {
    __shared__ float lane_sums[kRowLanes][kColumnTile];
    const int64_t row_begin = static_cast<int64_t>(blockIdx.y) * chunk_rows;
    const int64_t row_end = min(n, row_begin + chunk_rows);
    for (int64_t tile = blockIdx.x; tile * kColumnTile < d; tile += gridDim.x) {
        const int64_t j = tile * kColumnTile + threadIdx.x;
        float acc = 0.0f;
        if (j < d)
            for (int64_t i = row_begin + threadIdx.y; i < row_end; i += kRowLanes) acc += term(i, j);
        lane_sums[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && j < d) {
            float sum = 0.0f;
            for (int lane = 0; lane < kRowLanes; lane++) sum += lane_sums[lane][threadIdx.x];
            partials[static_cast<int64_t>(blockIdx.y) * d + j] = sum;
        }
        __syncthreads();
    }
}

// Stage 2: grad[j] += Σ_chunk partials[chunk·d + j], chunks in order.
__global__ void norm_backward_column_totals_kernel(float* grad, const float* partials, int64_t chunks, int64_t d) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < d; j += stride) {
        float sum = 0.0f;
        for (int64_t chunk = 0; chunk < chunks; chunk++) sum += partials[chunk * d + j];
        grad[j] += sum;
    }
}

// grad (d) += Σ_i term(i, j) over the n rows, through the backend's scratch (chunks × d floats).
template <class Term>
nvlm_status add_column_sums(CudaBackend& backend, const char* op, float* grad, Term term, int64_t n, int64_t d) {
    const int64_t chunk_rows = std::max(kMinChunkRows, (n + kMaxRowChunks - 1) / kMaxRowChunks);
    const int64_t chunks = (n + chunk_rows - 1) / chunk_rows;
    void* buffer = nullptr;
    NVLM_TRY(backend.scratch(static_cast<size_t>(chunks * d) * sizeof(float), &buffer, op));
    float* partials = static_cast<float*>(buffer);
    const int64_t tiles = (d + kColumnTile - 1) / kColumnTile;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tiles, 65535)), static_cast<unsigned>(chunks));
    norm_backward_column_partials_kernel<<<grid, dim3(kColumnTile, kRowLanes), 0, backend.stream()>>>(
        partials, term, n, d, chunk_rows);
    norm_backward_column_totals_kernel<<<grid_for(d, kColumnTotalThreads), kColumnTotalThreads, 0, backend.stream()>>>(
        grad, partials, chunks, d);
    return backend.after_launch(op);
}

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
        NVLM_TRY(add_column_sums(*this, "nvlm_layernorm_backward", db, LayernormBackwardDbTerm{dout, d}, n, d));
    return NVLM_OK;
}

}  // namespace nvlm::cuda
