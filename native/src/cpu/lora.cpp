/*
 * LoRA / DoRA: PEFT's adapter path fused onto a base projection's output (nvlm.h's nvlm_lora_*).
 * With down = x_lora · aᵀ (m, r), up = down · bᵀ (m, n) and c = col_scale (n; 1 when null):
 *   out (m, n) = base_out + (c − 1) ⊙ base_dora + c ⊙ scaling · up.
 *
 * Every product goes through the GEMM of matmul.cpp. The backward never forms g = c ⊙ dout (m, n):
 * the column scale moves onto the (n, r) side, d_down = dout · (scaling·c ⊙ b) and
 * db = scaling·c ⊙ (doutᵀ · down), so its temporaries are (n, r) and (m, r).
 */
#include <cstddef>
#include <vector>

#include "ops.h"
#include "parallel.h"

namespace nvlm::cpu {

namespace {

// Σ_p down[i, p] · b[j, p]: element (i, j) of up, recomputed for dcol_scale.
float up_element(const float* down, const float* b, int64_t i, int64_t j, int64_t r) {
    const float* down_row = down + i * r;
    const float* b_row = b + j * r;
    float sum = 0.0f;
    for (int64_t p = 0; p < r; p++) sum += down_row[p] * b_row[p];
    return sum;
}

}  // namespace

void lora_forward(float* out, float* down, const float* base_out, const float* base_dora, const float* x_lora,
                  const float* a, const float* b, const float* col_scale, int64_t m, int64_t k, int64_t n, int64_t r,
                  float scaling) {
    sgemm(false, true, m, r, k, 1.0f, x_lora, k, a, k, 0.0f, down, r);
    // out holds scaling · up first; the base terms are then added element by element.
    sgemm(false, true, m, n, r, scaling, down, r, b, r, 0.0f, out, n);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const int64_t ij = i * n + j;
            if (col_scale == nullptr) {
                out[ij] = base_out[ij] + out[ij];
            } else {
                const float c = col_scale[j];
                const float base = base_dora != nullptr ? base_out[ij] + (c - 1.0f) * base_dora[ij] : base_out[ij];
                out[ij] = base + c * out[ij];
            }
        }
}

void lora_backward(float* dbase_out, float* dbase_dora, float* dx_lora, float* da, float* db, float* dcol_scale,
                   const float* dout, const float* base_dora, const float* x_lora, const float* a, const float* b,
                   const float* col_scale, const float* down, int64_t m, int64_t k, int64_t n, int64_t r,
                   float scaling) {
    // dbase_dora's factor c − 1 is 0 without a column scale. Both gradients of one element are
    // added in one iteration, so dbase_out and dbase_dora may be the same buffer.
    const bool dora_base_wanted = dbase_dora != nullptr && col_scale != nullptr;
    if (dbase_out != nullptr || dora_base_wanted) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                const int64_t ij = i * n + j;
                if (dbase_out != nullptr) dbase_out[ij] += dout[ij];
                if (dora_base_wanted) dbase_dora[ij] += (col_scale[j] - 1.0f) * dout[ij];
            }
    }
    if (dcol_scale != nullptr)
        add_column_sums(dcol_scale, m, n, [&](int64_t i, int64_t j) {
            const int64_t ij = i * n + j;
            const float base = base_dora != nullptr ? base_dora[ij] : 0.0f;
            return dout[ij] * (base + scaling * up_element(down, b, i, j, r));
        });
    if (db != nullptr) {
        // db[j, :] += scaling·c_j · (doutᵀ · down)[j, :]
        std::vector<float> product(static_cast<std::size_t>(n * r));
        sgemm(true, false, n, r, m, 1.0f, dout, n, down, r, 0.0f, product.data(), r);
        for (int64_t j = 0; j < n; j++) {
            const float factor = col_scale != nullptr ? scaling * col_scale[j] : scaling;
            for (int64_t p = 0; p < r; p++) db[j * r + p] += factor * product[j * r + p];
        }
    }
    if (dx_lora != nullptr || da != nullptr) {
        // d_down (m, r) = dout · scaled_b with scaled_b[j, :] = scaling·c_j · b[j, :].
        std::vector<float> scaled_b(static_cast<std::size_t>(n * r));
        for (int64_t j = 0; j < n; j++) {
            const float factor = col_scale != nullptr ? scaling * col_scale[j] : scaling;
            for (int64_t p = 0; p < r; p++) scaled_b[j * r + p] = factor * b[j * r + p];
        }
        std::vector<float> d_down(static_cast<std::size_t>(m * r));
        sgemm(false, false, m, r, n, 1.0f, dout, n, scaled_b.data(), r, 0.0f, d_down.data(), r);
        if (da != nullptr) sgemm(true, false, r, k, m, 1.0f, d_down.data(), r, x_lora, k, 1.0f, da, k);
        if (dx_lora != nullptr) sgemm(false, false, m, k, r, 1.0f, d_down.data(), r, a, k, 1.0f, dx_lora, k);
    }
}

}  // namespace nvlm::cpu
