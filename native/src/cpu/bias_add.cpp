/*
 * A bias added to every row, the bias add of a Linear whose product has no bias argument (NF4), or
 * whose product an adapter needs without its bias (DoRA scales x·Wᵀ but not the bias):
 *   bias_add_forward   out (m, n) = x (m, n) + bias (n) broadcast over the rows;
 *   bias_add_backward  dx (m, n) += dout;  dbias (n) += Σ_rows dout (in double, as linear_backward's).
 * out may alias x.
 */
#include "ops.h"
#include "parallel.h"

namespace nvlm::cpu {

void bias_add_forward(float* out, const float* x, const float* bias, int64_t m, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) out[i * n + j] = x[i * n + j] + bias[j];
}

void bias_add_backward(float* dx, float* dbias, const float* dout, int64_t m, int64_t n) {
    if (dx != nullptr) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m * n; i++) dx[i] += dout[i];
    }
    if (dbias != nullptr) add_column_sums(dbias, m, n, [&](int64_t i, int64_t j) { return dout[i * n + j]; });
}

}  // namespace nvlm::cpu
