/*
 * Dense algebra on cuBLAS (CPU twin: cpu/matmul.cpp):
 *   nvlm_matmul           c[i] (m, n) = alpha · op(a[i]) · op(b[i]) + beta · c[i], i < batch, with
 *                         op(a) (m, k) stored (k, m) when trans_a, op(b) (k, n) stored (n, k) when
 *                         trans_b, every batch contiguous;
 *   nvlm_linear_forward   out (m, n) = x (m, k) · w (n, k)ᵀ + bias (n);
 *   nvlm_linear_backward  dx (m, k) += dout (m, n) · w;  dw (n, k) += doutᵀ · x;  dbias (n) += Σ_rows dout.
 *
 * Everything is row-major and cuBLAS is column-major. A row-major (r, c) matrix is the column-major
 * (c, r) matrix with the same leading dimension, so the row-major product C = op(A) · op(B) is
 * computed as the column-major Cᵀ = op(B)ᵀ · op(A)ᵀ: the operands and m, n swap places, each keeps
 * its own transpose flag.
 *
 * Precision: fp32 storage with cuBLAS's default fp32 compute (cublasSgemmStridedBatched, the
 * handle's default math mode). TF32 is deliberately not enabled: these ops must agree with the
 * fp32 CPU twin to fp32 rounding, and TF32's 10-bit mantissa products would be off by ~1e-3
 * relative. Reduced-precision speed is the bf16 NF4 kernels' job, not this file's.
 *
 * Edge cases: m, n or batch = 0 is a no-op. k = 0 makes the product zero and c = alpha·0 + beta·c
 * exactly as the twin's loops compute it, in an elementwise kernel, because cuBLAS rejects the
 * leading dimension 0 that empty operands have. cuBLAS takes int dimensions; larger ones are
 * refused as unsupported.
 *
 * The bias of linear_forward is broadcast into out by an elementwise kernel and the GEMM adds to
 * it (beta = 1), as the twin does. dbias is a deterministic column sum without atomics: a block
 * owns 32 columns, its 32 row groups each sum every 32nd row of a column in double (like the twin's
 * double accumulators), and one thread per column adds the 32 partial sums in a fixed order.
 */
#include <climits>

#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;

// dbias reduction block: kSumColumns columns (one warp wide, so row reads are coalesced) by
// kSumRowGroups row groups.
constexpr int kSumColumns = 32;
constexpr int kSumRowGroups = 32;

// The k = 0 product over count contiguous elements of c: alpha·0 + beta·c, or alpha·0 with beta = 0
// (c is then not read, so NaN garbage in it is overwritten like BLAS does).
__global__ void gemm_empty_product_kernel(float* c, int64_t count, float alpha, float beta) {
    const float product = alpha * 0.0f;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        c[i] = beta == 0.0f ? product : product + beta * c[i];
}

// out (m, n): every row = bias (n).
__global__ void linear_forward_bias_kernel(float* out, const float* bias, int64_t m, int64_t n) {
    const int64_t count = m * n;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[i] = bias[i % n];
}

// dbias (n) += Σ_i dout[i, :] for dout (m, n); block (kSumColumns, kSumRowGroups), one block per
// kSumColumns columns.
__global__ void linear_backward_dbias_kernel(float* dbias, const float* dout, int64_t m, int64_t n) {
    __shared__ double partial[kSumRowGroups][kSumColumns];
    const int64_t column = blockIdx.x * static_cast<int64_t>(kSumColumns) + threadIdx.x;
    double sum = 0.0;
    if (column < n)
        for (int64_t i = threadIdx.y; i < m; i += kSumRowGroups) sum += dout[i * n + column];
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && column < n) {
        double total = 0.0;
        for (int group = 0; group < kSumRowGroups; group++) total += partial[group][threadIdx.x];
        dbias[column] += static_cast<float>(total);
    }
}

// Row-major c[i] (m, n) = alpha · op(a[i]) · op(b[i]) + beta · c[i] for i < batch, every operand
// contiguous (lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n) and batches one matrix apart.
// Queues its work on the backend's stream; the caller ends the op with after_launch.
nvlm_status gemm_row_major(const CudaBackend& backend, const char* op, bool trans_a, bool trans_b, int64_t batch,
                           int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b, float beta,
                           float* c) {
    if (batch == 0 || m == 0 || n == 0) return NVLM_OK;
    if (k == 0) {
        const int64_t count = batch * m * n;
        gemm_empty_product_kernel<<<grid_for(count, kThreads), kThreads, 0, backend.stream()>>>(c, count, alpha,
                                                                                               beta);
        return NVLM_OK;
    }
    if (batch > INT_MAX || m > INT_MAX || n > INT_MAX || k > INT_MAX)
        return fail(NVLM_ERR_UNSUPPORTED,
                    "%s: GEMM of batch=%lld m=%lld n=%lld k=%lld exceeds cuBLAS's int dimensions", op,
                    static_cast<long long>(batch), static_cast<long long>(m), static_cast<long long>(n),
                    static_cast<long long>(k));
    // Column-major Cᵀ (n, m) = op(B)ᵀ (n, k) · op(A)ᵀ (k, m), see the header.
    const int lda = static_cast<int>(trans_a ? m : k);
    const int ldb = static_cast<int>(trans_b ? k : n);
    const cublasStatus_t status = cublasSgemmStridedBatched(
        backend.cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b, ldb, k * n, a, lda, m * k, &beta, c,
        static_cast<int>(n), m * n, static_cast<int>(batch));
    return check(status, op, "cublasSgemmStridedBatched");
}

}  // namespace

nvlm_status CudaBackend::matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n,
                                int64_t k, bool trans_a, bool trans_b, float alpha, float beta) {
    const OpScope scope(*this, "nvlm_matmul");
    NVLM_TRY(gemm_row_major(*this, "nvlm_matmul", trans_a, trans_b, batch, m, n, k, alpha, a, b, beta, c));
    return after_launch("nvlm_matmul");
}

nvlm_status CudaBackend::linear_forward(float* out, const float* x, const float* w, const float* bias, int64_t m,
                                        int64_t k, int64_t n) {
    const OpScope scope(*this, "nvlm_linear_forward");
    if (bias != nullptr && m > 0 && n > 0) {
        linear_forward_bias_kernel<<<grid_for(m * n, kThreads), kThreads, 0, stream()>>>(out, bias, m, n);
        NVLM_CUDA_CHECK_LAUNCH("nvlm_linear_forward");
    }
    NVLM_TRY(gemm_row_major(*this, "nvlm_linear_forward", false, true, 1, m, n, k, 1.0f, x, w,
                            bias != nullptr ? 1.0f : 0.0f, out));
    return after_launch("nvlm_linear_forward");
}

nvlm_status CudaBackend::linear_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x,
                                         const float* w, int64_t m, int64_t k, int64_t n) {
    const OpScope scope(*this, "nvlm_linear_backward");
    // dx (m, k) += dout (m, n) · w (n, k)
    if (dx != nullptr)
        NVLM_TRY(gemm_row_major(*this, "nvlm_linear_backward", false, false, 1, m, k, n, 1.0f, dout, w, 1.0f, dx));
    // dw (n, k) += doutᵀ (n, m) · x (m, k)
    if (dw != nullptr)
        NVLM_TRY(gemm_row_major(*this, "nvlm_linear_backward", true, false, 1, n, k, m, 1.0f, dout, x, 1.0f, dw));
    // With m = 0 the twin still adds its zero sums (turning -0 into +0), so only n = 0 is skipped.
    if (dbias != nullptr && n > 0) {
        const unsigned blocks = static_cast<unsigned>((n + kSumColumns - 1) / kSumColumns);
        linear_backward_dbias_kernel<<<blocks, dim3(kSumColumns, kSumRowGroups), 0, stream()>>>(dbias, dout, m, n);
    }
    return after_launch("nvlm_linear_backward");
}

}  // namespace nvlm::cuda
