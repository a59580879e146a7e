/*
 * Scaled dot-product attention with grouped query heads, one query row at a time.
 *
 * q, out (batch, tq, n_heads, head_dim); k, v (batch, tk, n_kv_heads, head_dim);
 * key_mask (batch, tk) or null; lse (batch, n_heads, tq). Query head h reads kv head
 * h / (n_heads / n_kv_heads). Causal rows are bottom-right aligned: query i sees keys
 * j ≤ i + tk − tq. A row that sees no key has out = 0 and lse = −inf, and gets no gradient.
 *
 * Forward keeps one row of tk scores per thread. Backward recomputes the probabilities from
 * lse (flash-attention style): with P_j = exp(s_j − lse), dP_j = dout·v_j, D = dout·out and
 * dS_j = P_j·(dP_j − D):  dq += scale·Σ_j dS_j·k_j,  dk_j += scale·dS_j·q,  dv_j += P_j·dout.
 * Backward runs one thread per (batch, kv head), which owns that slice of dk and dv and the dq
 * rows of its query heads, so nothing races.
 *
 * In the BF16 math mode (nvlm_math_mode) both directions run the same fp32 code on copies of q, k,
 * v (and dout) rounded to bf16; CUDA's tensor-core kernels (../cuda/attention_bf16.cu) round the
 * same operands, and P and dS on top, which the parity suite's tolerances account for.
 */
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "bf16.h"
#include "ops.h"
#include "parallel.h"

namespace nvlm::cpu {

namespace {

float dot(const float* a, const float* b, int64_t n) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

// Which keys query row i of batch b sees: keys before the returned end that the mask keeps.
struct KeyRange {
    const uint8_t* mask;  // (tk) row of the batch, or null
    int64_t end;

    KeyRange(const uint8_t* key_mask, int64_t b, int64_t i, int64_t tq, int64_t tk, bool causal)
        : mask(key_mask != nullptr ? key_mask + b * tk : nullptr),
          end(causal ? std::clamp<int64_t>(i + tk - tq + 1, 0, tk) : tk) {}

    bool sees(int64_t j) const { return mask == nullptr || mask[j] != 0; }
};

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       int64_t batch, int64_t tq, int64_t tk, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                       bool causal, float scale, bool bf16_operands) {
    if (bf16_operands) {
        const std::vector<float> q16 = rounded_to_bf16(q, batch * tq * n_heads * head_dim);
        const std::vector<float> k16 = rounded_to_bf16(k, batch * tk * n_kv_heads * head_dim);
        const std::vector<float> v16 = rounded_to_bf16(v, batch * tk * n_kv_heads * head_dim);
        attention_forward(out, lse, q16.data(), k16.data(), v16.data(), key_mask, batch, tq, tk, n_heads, n_kv_heads,
                          head_dim, causal, scale, false);
        return;
    }
    const int64_t group = n_heads / n_kv_heads;
    const int64_t rows = batch * n_heads * tq;
    std::vector<float> scores(static_cast<size_t>(max_threads()) * static_cast<size_t>(tk));
#pragma omp parallel
    {
        float* s = scores.data() + static_cast<size_t>(thread_index()) * static_cast<size_t>(tk);
#pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; row++) {  // row = (b·n_heads + h)·tq + i, lse's layout
            const int64_t i = row % tq, h = row / tq % n_heads, b = row / tq / n_heads;
            const int64_t hkv = h / group;
            const KeyRange keys(key_mask, b, i, tq, tk, causal);
            const float* q_row = q + ((b * tq + i) * n_heads + h) * head_dim;
            float* out_row = out + ((b * tq + i) * n_heads + h) * head_dim;

            float max_score = -std::numeric_limits<float>::infinity();
            for (int64_t j = 0; j < keys.end; j++) {
                if (!keys.sees(j)) continue;
                s[j] = scale * dot(q_row, k + ((b * tk + j) * n_kv_heads + hkv) * head_dim, head_dim);
                max_score = std::max(max_score, s[j]);
            }
            std::fill(out_row, out_row + head_dim, 0.0f);
            if (max_score == -std::numeric_limits<float>::infinity()) {
                lse[row] = max_score;
                continue;
            }
            double sum = 0.0;
            for (int64_t j = 0; j < keys.end; j++) {
                if (!keys.sees(j)) continue;
                const float p = std::exp(s[j] - max_score);
                sum += p;
                const float* v_row = v + ((b * tk + j) * n_kv_heads + hkv) * head_dim;
                for (int64_t e = 0; e < head_dim; e++) out_row[e] += p * v_row[e];
            }
            const float inv_sum = static_cast<float>(1.0 / sum);
            for (int64_t e = 0; e < head_dim; e++) out_row[e] *= inv_sum;
            lse[row] = max_score + static_cast<float>(std::log(sum));
        }
    }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const uint8_t* key_mask, const float* out, const float* lse, int64_t batch,
                        int64_t tq, int64_t tk, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, bool causal,
                        float scale, bool bf16_operands) {
    if (bf16_operands) {
        const std::vector<float> dout16 = rounded_to_bf16(dout, batch * tq * n_heads * head_dim);
        const std::vector<float> q16 = rounded_to_bf16(q, batch * tq * n_heads * head_dim);
        const std::vector<float> k16 = rounded_to_bf16(k, batch * tk * n_kv_heads * head_dim);
        const std::vector<float> v16 = rounded_to_bf16(v, batch * tk * n_kv_heads * head_dim);
        attention_backward(dq, dk, dv, dout16.data(), q16.data(), k16.data(), v16.data(), key_mask, out, lse, batch,
                           tq, tk, n_heads, n_kv_heads, head_dim, causal, scale, false);
        return;
    }
    const int64_t group = n_heads / n_kv_heads;
#pragma omp parallel for schedule(dynamic)
    for (int64_t slice = 0; slice < batch * n_kv_heads; slice++) {
        const int64_t b = slice / n_kv_heads, hkv = slice % n_kv_heads;
        for (int64_t h = hkv * group; h < (hkv + 1) * group; h++) {
            for (int64_t i = 0; i < tq; i++) {
                const float row_lse = lse[(b * n_heads + h) * tq + i];
                if (row_lse == -std::numeric_limits<float>::infinity()) continue;
                const KeyRange keys(key_mask, b, i, tq, tk, causal);
                const int64_t offset = ((b * tq + i) * n_heads + h) * head_dim;
                const float* q_row = q + offset;
                const float* g_row = dout + offset;
                const float d_row = dot(g_row, out + offset, head_dim);
                for (int64_t j = 0; j < keys.end; j++) {
                    if (!keys.sees(j)) continue;
                    const int64_t kv_offset = ((b * tk + j) * n_kv_heads + hkv) * head_dim;
                    const float* k_row = k + kv_offset;
                    const float p = std::exp(scale * dot(q_row, k_row, head_dim) - row_lse);
                    const float ds = p * (dot(g_row, v + kv_offset, head_dim) - d_row);
                    if (dq != nullptr)
                        for (int64_t e = 0; e < head_dim; e++) dq[offset + e] += scale * ds * k_row[e];
                    if (dk != nullptr)
                        for (int64_t e = 0; e < head_dim; e++) dk[kv_offset + e] += scale * ds * q_row[e];
                    if (dv != nullptr)
                        for (int64_t e = 0; e < head_dim; e++) dv[kv_offset + e] += p * g_row[e];
                }
            }
        }
    }
}

}  // namespace nvlm::cpu
