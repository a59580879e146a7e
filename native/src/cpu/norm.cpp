/*
 * RMSNorm (Llama) and LayerNorm over the last dimension of x (n, d), one row per iteration.
 * Row statistics accumulate in double; the saved rstd (and mean) are what backward reuses.
 */
#include <cmath>

#include "ops.h"
#include "parallel.h"

namespace nvlm::cpu {

// rstd[i] = 1 / sqrt(mean_j x[i, j]² + eps);  out[i, j] = (x[i, j] · rstd[i]) · w[j].
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t n, int64_t d, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float* x_row = x + i * d;
        double sum_sq = 0.0;
        for (int64_t j = 0; j < d; j++) sum_sq += static_cast<double>(x_row[j]) * x_row[j];
        const float r = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(d) + eps));
        float* out_row = out + i * d;
        for (int64_t j = 0; j < d; j++) out_row[j] = x_row[j] * r * w[j];
        rstd[i] = r;
    }
}

// With r = rstd[i] and dr/dx_j = −r³·x_j/d:
//   dx[i, j] += r·w_j·dout_j − (r³/d)·x_j·Σ_k dout_k·w_k·x_k;   dw[j] += Σ_i dout[i, j]·x[i, j]·r_i.
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t n, int64_t d) {
    if (dx != nullptr) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const float* x_row = x + i * d;
            const float* g_row = dout + i * d;
            double dot = 0.0;
            for (int64_t j = 0; j < d; j++) dot += static_cast<double>(g_row[j]) * w[j] * x_row[j];
            const double r = rstd[i];
            const float coeff = static_cast<float>(r * r * r * dot / static_cast<double>(d));
            float* dx_row = dx + i * d;
            for (int64_t j = 0; j < d; j++) dx_row[j] += rstd[i] * w[j] * g_row[j] - coeff * x_row[j];
        }
    }
    if (dw != nullptr)
        add_column_sums(dw, n, d, [&](int64_t i, int64_t j) { return dout[i * d + j] * x[i * d + j] * rstd[i]; });
}

// mean[i] = mean_j x[i, j];  rstd[i] = 1 / sqrt(biased variance + eps);
// out[i, j] = (x[i, j] − mean[i]) · rstd[i] · w[j] + b[j].
void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b, int64_t n,
                       int64_t d, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float* x_row = x + i * d;
        double sum = 0.0;
        for (int64_t j = 0; j < d; j++) sum += x_row[j];
        const double mu = sum / static_cast<double>(d);
        double sum_sq = 0.0;
        for (int64_t j = 0; j < d; j++) sum_sq += (x_row[j] - mu) * (x_row[j] - mu);
        const float m = static_cast<float>(mu);
        const float r = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(d) + eps));
        float* out_row = out + i * d;
        for (int64_t j = 0; j < d; j++) out_row[j] = (x_row[j] - m) * r * w[j] + b[j];
        mean[i] = m;
        rstd[i] = r;
    }
}

// With xhat = (x − mean)·rstd and dnorm = dout·w (per row):
//   dx += rstd · (dnorm − mean(dnorm) − xhat · mean(dnorm·xhat));
//   dw += Σ_rows dout·xhat;  db += Σ_rows dout.
void layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x, const float* w,
                        const float* mean, const float* rstd, int64_t n, int64_t d) {
    if (dx != nullptr) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const float* x_row = x + i * d;
            const float* g_row = dout + i * d;
            double sum_dnorm = 0.0, sum_dnorm_xhat = 0.0;
            for (int64_t j = 0; j < d; j++) {
                const double dnorm = static_cast<double>(g_row[j]) * w[j];
                sum_dnorm += dnorm;
                sum_dnorm_xhat += dnorm * ((x_row[j] - mean[i]) * rstd[i]);
            }
            const float mean_dnorm = static_cast<float>(sum_dnorm / static_cast<double>(d));
            const float mean_dnorm_xhat = static_cast<float>(sum_dnorm_xhat / static_cast<double>(d));
            float* dx_row = dx + i * d;
            for (int64_t j = 0; j < d; j++) {
                const float xhat = (x_row[j] - mean[i]) * rstd[i];
                dx_row[j] += rstd[i] * (g_row[j] * w[j] - mean_dnorm - xhat * mean_dnorm_xhat);
            }
        }
    }
    if (dw != nullptr)
        add_column_sums(dw, n, d,
                        [&](int64_t i, int64_t j) { return dout[i * d + j] * ((x[i * d + j] - mean[i]) * rstd[i]); });
    if (db != nullptr) add_column_sums(db, n, d, [&](int64_t i, int64_t j) { return dout[i * d + j]; });
}

}  // namespace nvlm::cpu
