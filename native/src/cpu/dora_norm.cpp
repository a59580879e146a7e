/*
 * DoRA's weight norm (nvlm.h's nvlm_dora_norm*), PEFT's DoraLinearLayer.get_weight_norm without the
 * (n, k) matrix W + scaling·B·A: one row of it at a time, in a per-thread row of k floats.
 *
 *   delta[l] = Σ_p b[j, p] · a[p, l]                 fp32, ranks in order p = 0 … r−1
 *   norm[j]  = √( Σ_l (w[j, l] + scaling·delta[l])² )  fp32, columns in order l = 0 … k−1
 *   inv_norm[j] = 1 / norm[j]
 *
 * For an NF4 weight the row is dequantised first, element by element exactly as nf4_dequantize_ref.
 */
#include <cmath>
#include <vector>

#include "ops.h"
#include "parallel.h"

namespace nvlm::cpu {

namespace {

// The norm of row j of w + scaling·b·a, w_row (k) given; delta (k) is the caller's workspace.
float row_norm(const float* w_row, const float* a, const float* b_row, float* delta, int64_t k, int64_t r,
               float scaling) {
    for (int64_t l = 0; l < k; l++) delta[l] = 0.0f;
    for (int64_t p = 0; p < r; p++) {
        const float bp = b_row[p];
        const float* a_row = a + p * k;
        for (int64_t l = 0; l < k; l++) delta[l] += bp * a_row[l];
    }
    float squares = 0.0f;
    for (int64_t l = 0; l < k; l++) {
        const float c = w_row[l] + scaling * delta[l];
        squares += c * c;
    }
    return std::sqrt(squares);
}

// Every row's norm; row_of(j, buffer) returns row j of w (k), possibly written into buffer (k).
template <class RowOf>
void row_norms(float* norm, float* inv_norm, RowOf row_of, const float* a, const float* b, int64_t n, int64_t k,
               int64_t r, float scaling) {
    // Per thread: delta (k) and a row buffer (k).
    std::vector<float> workspace(static_cast<size_t>(max_threads()) * 2 * static_cast<size_t>(k));
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; j++) {
        float* delta = workspace.data() + static_cast<size_t>(thread_index()) * 2 * static_cast<size_t>(k);
        float* row = delta + k;
        norm[j] = row_norm(row_of(j, row), a, b + j * r, delta, k, r, scaling);
        if (inv_norm != nullptr) inv_norm[j] = 1.0f / norm[j];
    }
}

}  // namespace

void dora_norm(float* norm, float* inv_norm, const float* w, const float* a, const float* b, int64_t n, int64_t k,
               int64_t r, float scaling) {
    row_norms(norm, inv_norm, [w, k](int64_t j, float*) { return w + j * k; }, a, b, n, k, r, scaling);
}

void dora_norm_nf4(float* norm, float* inv_norm, const nf4::Weight& w, const float* a, const float* b, int64_t n,
                   int64_t k, int64_t r, float scaling) {
    const float offset = *w.offset;
    auto dequantized_row = [&w, offset, k](int64_t j, float* row) {
        for (int64_t l = 0; l < k; l++) {
            const int64_t element = j * k + l;
            row[l] = nf4::dequantize_value(w, nf4::block_scale(w, offset, element / nf4::kBlock), element);
        }
        return static_cast<const float*>(row);
    };
    row_norms(norm, inv_norm, dequantized_row, a, b, n, k, r, scaling);
}

}  // namespace nvlm::cpu
