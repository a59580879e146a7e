/*
 * Rotary position embedding, Hugging Face rotate_half convention over the whole head.
 *
 * x, out (n_tokens, n_heads, head_dim); with h = head_dim/2 each pair (i, i + h) of a head is
 * rotated by angle = pos[t]·inv_freq[i]. The angle is an fp32 product and cos/sin are taken in
 * fp32, as torch computes them, once per token into a per-thread table shared by its heads.
 */
#include <cmath>
#include <vector>

#include "ops.h"
#include "parallel.h"

namespace nvlm::cpu {

namespace {

// Rotates every head of every token by +angle (sign = 1) or −angle (sign = −1), adding into
// dst when accumulate (backward) and overwriting it otherwise (forward; dst may alias src).
void rotate(float* dst, const float* src, const int32_t* pos, const float* inv_freq, int64_t n_tokens, int64_t n_heads,
            int64_t head_dim, float sign, bool accumulate) {
    const int64_t h = head_dim / 2;
    std::vector<float> tables(static_cast<size_t>(max_threads()) * static_cast<size_t>(head_dim));
#pragma omp parallel
    {
        float* cos_table = tables.data() + static_cast<size_t>(thread_index()) * static_cast<size_t>(head_dim);
        float* sin_table = cos_table + h;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_tokens; t++) {
            const float position = static_cast<float>(pos[t]);
            for (int64_t i = 0; i < h; i++) {
                const float angle = position * inv_freq[i];
                cos_table[i] = std::cos(angle);
                sin_table[i] = sign * std::sin(angle);
            }
            for (int64_t head = 0; head < n_heads; head++) {
                const float* x = src + (t * n_heads + head) * head_dim;
                float* y = dst + (t * n_heads + head) * head_dim;
                for (int64_t i = 0; i < h; i++) {
                    const float x1 = x[i], x2 = x[i + h];
                    const float y1 = x1 * cos_table[i] - x2 * sin_table[i];
                    const float y2 = x2 * cos_table[i] + x1 * sin_table[i];
                    if (accumulate) {
                        y[i] += y1;
                        y[i + h] += y2;
                    } else {
                        y[i] = y1;
                        y[i + h] = y2;
                    }
                }
            }
        }
    }
}

}  // namespace

// out[i] = x[i]·cos − x[i+h]·sin;  out[i+h] = x[i+h]·cos + x[i]·sin.
void rope_forward(float* out, const float* x, const int32_t* pos, const float* inv_freq, int64_t n_tokens,
                  int64_t n_heads, int64_t head_dim) {
    rotate(out, x, pos, inv_freq, n_tokens, n_heads, head_dim, 1.0f, false);
}

// The rotation is orthogonal, so its transpose is the rotation by −angle: dx += R(−angle)·dout.
void rope_backward(float* dx, const float* dout, const int32_t* pos, const float* inv_freq, int64_t n_tokens,
                   int64_t n_heads, int64_t head_dim) {
    rotate(dx, dout, pos, inv_freq, n_tokens, n_heads, head_dim, -1.0f, true);
}

}  // namespace nvlm::cpu
