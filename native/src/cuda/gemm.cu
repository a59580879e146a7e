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
 * Precision: fp32 storage in both math modes (nvlm_math_mode).
 *   F32   cuBLAS's default fp32 compute (cublasSgemmStridedBatched, the handle's default math
 *         mode). TF32 is deliberately not enabled: these ops must agree with the fp32 CPU twin to
 *         fp32 rounding, and TF32's 10-bit mantissa products would be off by ~1e-3 relative.
 *   BF16  the operands (matmul's a and b; linear's x, w and dout, not the bias nor beta·c) are
 *         rounded to bf16 by to_bf16 (cast.cu, bf16.cuh's round to nearest even) into scratch
 *         copies, one scratch allocation carved into 256-byte aligned parts (linear_backward rounds
 *         dout once for both of its products), and multiplied by cublasGemmStridedBatchedEx with
 *         bf16 A and B, f32 C and CUBLAS_COMPUTE_32F: tensor cores, fp32 accumulation, alpha and
 *         beta applied in fp32. CUBLAS_COMPUTE_32F_FAST_16BF is not used: where and how it rounds
 *         is not documented. The twin multiplies the same rounded values (cpu/bf16.h rounds alike),
 *         so in either mode the backends differ only by the order of the fp32 sums.
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
#include <initializer_list>

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

// What comes before cuBLAS: an empty c is done; with k = 0 c = alpha·0 + beta·c by a kernel (cuBLAS
// rejects the leading dimension 0 that empty operands have); dimensions beyond cuBLAS's int are
// refused. *use_cublas says whether the product is still to be computed.
nvlm_status before_cublas(const CudaBackend& backend, const char* op, int64_t batch, int64_t m, int64_t n, int64_t k,
                          float alpha, float beta, float* c, bool* use_cublas) {
    *use_cublas = false;
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
    *use_cublas = true;
    return NVLM_OK;
}

// The values and element counts of an op's f32 operands.
struct Operand {
    const float* values;
    int64_t count;
};

// rounded[i] = operands[i] rounded to bf16 (to_bf16), every copy in its own 256-byte aligned part of
// one scratch allocation so that all stay valid together; a count of 0 gives an unused part.
nvlm_status rounded_operands(CudaBackend& backend, const char* op, std::initializer_list<Operand> operands,
                             uint16_t** rounded) {
    auto part_bytes = [](const Operand& operand) {
        return (static_cast<size_t>(operand.count) * sizeof(uint16_t) + 255) / 256 * 256;
    };
    size_t nbytes = 0;
    for (const Operand& operand : operands) nbytes += part_bytes(operand);
    void* base = nullptr;
    NVLM_TRY(backend.scratch(nbytes, &base, op));
    char* part = static_cast<char*>(base);
    for (const Operand& operand : operands) {
        *rounded = reinterpret_cast<uint16_t*>(part);
        NVLM_TRY(backend.to_bf16(*rounded, operand.values, operand.count, op));
        part += part_bytes(operand);
        rounded++;
    }
    return NVLM_OK;
}

}  // namespace

// Both compute the column-major Cᵀ (n, m) = op(B)ᵀ (n, k) · op(A)ᵀ (k, m), see the header:
// lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n, batch strides m·k, k·n and m·n.
nvlm_status CudaBackend::gemm_f32(const char* op, bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                                  int64_t k, float alpha, const float* a, const float* b, float beta, float* c) const {
    bool use_cublas = false;
    NVLM_TRY(before_cublas(*this, op, batch, m, n, k, alpha, beta, c, &use_cublas));
    if (!use_cublas) return NVLM_OK;
    const int lda = static_cast<int>(trans_a ? m : k);
    const int ldb = static_cast<int>(trans_b ? k : n);
    const cublasStatus_t status = cublasSgemmStridedBatched(
        cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
        static_cast<int>(m), static_cast<int>(k), &alpha, b, ldb, k * n, a, lda, m * k, &beta, c, static_cast<int>(n),
        m * n, static_cast<int>(batch));
    return check(status, op, "cublasSgemmStridedBatched");
}

nvlm_status CudaBackend::gemm_bf16(const char* op, bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                                   int64_t k, float alpha, const uint16_t* a, const uint16_t* b, float beta,
                                   float* c) const {
    bool use_cublas = false;
    NVLM_TRY(before_cublas(*this, op, batch, m, n, k, alpha, beta, c, &use_cublas));
    if (!use_cublas) return NVLM_OK;
    const int lda = static_cast<int>(trans_a ? m : k);
    const int ldb = static_cast<int>(trans_b ? k : n);
    const cublasStatus_t status = cublasGemmStridedBatchedEx(
        cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
        static_cast<int>(m), static_cast<int>(k), &alpha, b, CUDA_R_16BF, ldb, k * n, a, CUDA_R_16BF, lda, m * k,
        &beta, c, CUDA_R_32F, static_cast<int>(n), m * n, static_cast<int>(batch), CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT);
    return check(status, op, "cublasGemmStridedBatchedEx");
}

nvlm_status CudaBackend::matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n,
                                int64_t k, bool trans_a, bool trans_b, float alpha, float beta) {
    constexpr const char* op = "nvlm_matmul";
    const OpScope scope(*this, op);
    if (math_mode == NVLM_MATH_BF16) {
        uint16_t* rounded[2] = {};  // a, b
        NVLM_TRY(rounded_operands(*this, op, {{a, batch * m * k}, {b, batch * k * n}}, rounded));
        NVLM_TRY(gemm_bf16(op, trans_a, trans_b, batch, m, n, k, alpha, rounded[0], rounded[1], beta, c));
    } else {
        NVLM_TRY(gemm_f32(op, trans_a, trans_b, batch, m, n, k, alpha, a, b, beta, c));
    }
    return after_launch(op);
}

nvlm_status CudaBackend::linear_forward(float* out, const float* x, const float* w, const float* bias, int64_t m,
                                        int64_t k, int64_t n) {
    constexpr const char* op = "nvlm_linear_forward";
    const OpScope scope(*this, op);
    if (bias != nullptr && m > 0 && n > 0) {
        linear_forward_bias_kernel<<<grid_for(m * n, kThreads), kThreads, 0, stream()>>>(out, bias, m, n);
        NVLM_CUDA_CHECK_LAUNCH(op);
    }
    const float beta = bias != nullptr ? 1.0f : 0.0f;
    if (math_mode == NVLM_MATH_BF16) {
        uint16_t* rounded[2] = {};  // x, w
        NVLM_TRY(rounded_operands(*this, op, {{x, m * k}, {w, n * k}}, rounded));
        NVLM_TRY(gemm_bf16(op, false, true, 1, m, n, k, 1.0f, rounded[0], rounded[1], beta, out));
    } else {
        NVLM_TRY(gemm_f32(op, false, true, 1, m, n, k, 1.0f, x, w, beta, out));
    }
    return after_launch(op);
}

nvlm_status CudaBackend::linear_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x,
                                         const float* w, int64_t m, int64_t k, int64_t n) {
    constexpr const char* op = "nvlm_linear_backward";
    const OpScope scope(*this, op);
    // dx (m, k) += dout (m, n) · w (n, k);  dw (n, k) += doutᵀ (n, m) · x (m, k)
    if (math_mode == NVLM_MATH_BF16) {
        uint16_t* rounded[3] = {};  // dout, w (for dx), x (for dw)
        if (dx != nullptr || dw != nullptr)
            NVLM_TRY(rounded_operands(*this, op,
                                      {{dout, m * n}, {w, dx != nullptr ? n * k : 0}, {x, dw != nullptr ? m * k : 0}},
                                      rounded));
        if (dx != nullptr) NVLM_TRY(gemm_bf16(op, false, false, 1, m, k, n, 1.0f, rounded[0], rounded[1], 1.0f, dx));
        if (dw != nullptr) NVLM_TRY(gemm_bf16(op, true, false, 1, n, k, m, 1.0f, rounded[0], rounded[2], 1.0f, dw));
    } else {
        if (dx != nullptr) NVLM_TRY(gemm_f32(op, false, false, 1, m, k, n, 1.0f, dout, w, 1.0f, dx));
        if (dw != nullptr) NVLM_TRY(gemm_f32(op, true, false, 1, n, k, m, 1.0f, dout, x, 1.0f, dw));
    }
    // With m = 0 the twin still adds its zero sums (turning -0 into +0), so only n = 0 is skipped.
    if (dbias != nullptr && n > 0) {
        const unsigned blocks = static_cast<unsigned>((n + kSumColumns - 1) / kSumColumns);
        linear_backward_dbias_kernel<<<blocks, dim3(kSumColumns, kSumRowGroups), 0, stream()>>>(dbias, dout, m, n);
    }
    return after_launch(op);
}

}  // namespace nvlm::cuda
