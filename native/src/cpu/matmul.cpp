/*
 * Dense algebra: the row-major GEMM every matrix product of the CPU backend goes through, the
 * strided batched nvlm_matmul on top of it, and the linear layer.
 *
 * With OpenBLAS (NVLM_HAVE_CBLAS) the GEMM is cblas_sgemm; otherwise, and for dimensions that
 * do not fit cblas's int, it is a loop GEMM that computes whole rows of c per thread with fp32
 * accumulators.
 *
 * In the BF16 math mode (bf16_operands) matmul and linear multiply copies of their operands rounded
 * to bf16 (bf16.h: a, b; x, w; dout, w, x), still in fp32: the values CUDA's tensor cores multiply.
 */
#include <algorithm>
#include <climits>
#include <vector>

#include "bf16.h"
#include "ops.h"
#include "parallel.h"

#if defined(NVLM_HAVE_CBLAS)
#  include <cblas.h>
#endif

namespace nvlm::cpu {

namespace {

// One row of c per iteration: the row of op(a) is gathered into a contiguous workspace, then
// either streamed against contiguous rows of b (b not transposed: acc += a_ip · b[p, :]) or dotted
// with contiguous rows of the stored b (b transposed: acc_j = a_i · b[j, :]).
void gemm_loops(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    std::vector<float> workspace(static_cast<size_t>(max_threads()) * static_cast<size_t>(k + n));
#pragma omp parallel
    {
        float* a_row = workspace.data() + static_cast<size_t>(thread_index()) * static_cast<size_t>(k + n);
        float* acc = a_row + k;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < m; i++) {
            for (int64_t p = 0; p < k; p++) a_row[p] = trans_a ? a[p * lda + i] : a[i * lda + p];
            if (trans_b) {
                for (int64_t j = 0; j < n; j++) {
                    const float* b_row = b + j * ldb;
                    float dot = 0.0f;
                    for (int64_t p = 0; p < k; p++) dot += a_row[p] * b_row[p];
                    acc[j] = dot;
                }
            } else {
                std::fill(acc, acc + n, 0.0f);
                for (int64_t p = 0; p < k; p++) {
                    const float a_ip = a_row[p];
                    const float* b_row = b + p * ldb;
                    for (int64_t j = 0; j < n; j++) acc[j] += a_ip * b_row[j];
                }
            }
            float* c_row = c + i * ldc;
            for (int64_t j = 0; j < n; j++) c_row[j] = beta == 0.0f ? alpha * acc[j] : alpha * acc[j] + beta * c_row[j];
        }
    }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    if (m == 0 || n == 0) return;
#if defined(NVLM_HAVE_CBLAS)
    // cblas rejects (and prints about) k == 0 with its minimal leading dimensions; the loops
    // handle it as c = beta · c.
    const bool fits_cblas = k > 0 && std::max({m, n, k, lda, ldb, ldc}) <= INT_MAX;
    if (fits_cblas) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
                    static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
        return;
    }
#endif
    gemm_loops(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// c[i] (m, n) = alpha · op(a[i]) · op(b[i]) + beta · c[i] for each batch index i.
void matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k, bool trans_a,
            bool trans_b, float alpha, float beta, bool bf16_operands) {
    std::vector<float> a_bf16, b_bf16;
    if (bf16_operands) {
        a_bf16 = rounded_to_bf16(a, batch * m * k);
        a = a_bf16.data();
        b_bf16 = rounded_to_bf16(b, batch * k * n);
        b = b_bf16.data();
    }
    for (int64_t i = 0; i < batch; i++)
        sgemm(trans_a, trans_b, m, n, k, alpha, a + i * m * k, trans_a ? m : k, b + i * k * n, trans_b ? k : n, beta,
              c + i * m * n, n);
}

// out (m, n) = x (m, k) · w (n, k)ᵀ + bias (n): the bias is written first and the GEMM adds to it.
void linear_forward(float* out, const float* x, const float* w, const float* bias, int64_t m, int64_t k, int64_t n,
                    bool bf16_operands) {
    std::vector<float> x_bf16, w_bf16;
    if (bf16_operands) {
        x_bf16 = rounded_to_bf16(x, m * k);
        x = x_bf16.data();
        w_bf16 = rounded_to_bf16(w, n * k);
        w = w_bf16.data();
    }
    if (bias != nullptr) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++) std::copy(bias, bias + n, out + i * n);
    }
    sgemm(false, true, m, n, k, 1.0f, x, k, w, k, bias != nullptr ? 1.0f : 0.0f, out, n);
}

// dx (m, k) += dout (m, n) · w (n, k);  dw (n, k) += doutᵀ · x (m, k);  dbias (n) += Σ_rows dout.
// In BF16 mode dbias sums the unrounded dout.
void linear_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int64_t m,
                     int64_t k, int64_t n, bool bf16_operands) {
    std::vector<float> dout_bf16, x_bf16, w_bf16;
    const float* dout_product = dout;
    if (bf16_operands && (dx != nullptr || dw != nullptr)) {
        dout_bf16 = rounded_to_bf16(dout, m * n);
        dout_product = dout_bf16.data();
        if (dx != nullptr) {
            w_bf16 = rounded_to_bf16(w, n * k);
            w = w_bf16.data();
        }
        if (dw != nullptr) {
            x_bf16 = rounded_to_bf16(x, m * k);
            x = x_bf16.data();
        }
    }
    if (dx != nullptr) sgemm(false, false, m, k, n, 1.0f, dout_product, n, w, k, 1.0f, dx, k);
    if (dw != nullptr) sgemm(true, false, n, k, m, 1.0f, dout_product, n, x, k, 1.0f, dw, k);
    if (dbias != nullptr) add_column_sums(dbias, m, n, [&](int64_t i, int64_t j) { return dout[i * n + j]; });
}

}  // namespace nvlm::cpu
