/*
 * Fused LM head + log-softmax gather over vocab chunks, so that only an (n, chunk) block of
 * logits ever exists.
 *
 * Forward: for each chunk of `chunk` vocab columns (the last may be partial) the logits block
 * h (n, d) · w[v0 : v0 + width]ᵀ is computed by one GEMM; each row keeps a running max and a
 * running sum of exp(logit − max) (online logsumexp, sum in double) and picks its target logit
 * when the chunk holds it. lse = max + log(sum); logp = target logit − lse, 0 for ignored rows.
 *
 * Backward recomputes each block, turns it in place into
 * dlogits = g·(onehot(target) − exp(logit − lse)) with g = dlogp (0 for ignored rows), and adds
 * dh += dlogits · w_chunk and dw_chunk += dlogitsᵀ · h with two GEMMs.
 *
 * In the BF16 math mode (bf16_operands) the GEMMs multiply, in fp32 as ever, copies rounded to bf16
 * (bf16.h): h once per call, each chunk of w as it comes, and the dlogits block once computed; the
 * softmax arithmetic is unchanged.
 */
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../error.h"
#include "bf16.h"
#include "ops.h"

namespace nvlm::cpu {

namespace {

constexpr int32_t kIgnoreIndex = -100;

nvlm_status check_targets(const char* op, const int32_t* targets, int64_t n, int64_t vocab) {
    for (int64_t t = 0; t < n; t++)
        if (targets[t] != kIgnoreIndex && (targets[t] < 0 || targets[t] >= vocab))
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: targets[%lld] = %d is outside [0, %lld) and is not -100", op,
                        static_cast<long long>(t), targets[t], static_cast<long long>(vocab));
    return NVLM_OK;
}

}  // namespace

nvlm_status lm_logprob_forward(float* logp, float* lse, const float* h, const float* w, const int32_t* targets,
                               int64_t n, int64_t d, int64_t vocab, int64_t chunk, bool bf16_operands) {
    NVLM_TRY(check_targets("nvlm_lm_logprob_forward", targets, n, vocab));
    std::vector<float> h_bf16, w_bf16;
    if (bf16_operands) {
        h_bf16 = rounded_to_bf16(h, n * d);
        h = h_bf16.data();
    }
    const int64_t width_max = std::min(chunk, vocab);
    std::vector<float> logits(static_cast<size_t>(n) * static_cast<size_t>(width_max));
    std::vector<float> running_max(static_cast<size_t>(n), -std::numeric_limits<float>::infinity());
    std::vector<double> running_sum(static_cast<size_t>(n), 0.0);
    std::vector<float> target_logit(static_cast<size_t>(n), 0.0f);

    for (int64_t v0 = 0; v0 < vocab; v0 += chunk) {
        const int64_t width = std::min(chunk, vocab - v0);
        const float* w_chunk = w + v0 * d;
        if (bf16_operands) {
            w_bf16 = rounded_to_bf16(w_chunk, width * d);
            w_chunk = w_bf16.data();
        }
        sgemm(false, true, n, width, d, 1.0f, h, d, w_chunk, d, 0.0f, logits.data(), width);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++) {
            const float* row = logits.data() + t * width;
            const float chunk_max = *std::max_element(row, row + width);
            if (chunk_max > running_max[t]) {
                running_sum[t] *= std::exp(static_cast<double>(running_max[t]) - chunk_max);
                running_max[t] = chunk_max;
            }
            const float m = running_max[t];
            if (m == -std::numeric_limits<float>::infinity()) continue;
            double sum = 0.0;
            for (int64_t j = 0; j < width; j++) sum += std::exp(row[j] - m);
            running_sum[t] += sum;
            if (targets[t] >= v0 && targets[t] < v0 + width) target_logit[t] = row[targets[t] - v0];
        }
    }

#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n; t++) {
        const double row_lse = running_max[t] + std::log(running_sum[t]);
        lse[t] = static_cast<float>(row_lse);
        logp[t] = targets[t] == kIgnoreIndex ? 0.0f : static_cast<float>(target_logit[t] - row_lse);
    }
    return NVLM_OK;
}

nvlm_status lm_logprob_backward(float* dh, float* dw, const float* dlogp, const float* h, const float* w,
                                const int32_t* targets, const float* lse, int64_t n, int64_t d, int64_t vocab,
                                int64_t chunk, bool bf16_operands) {
    NVLM_TRY(check_targets("nvlm_lm_logprob_backward", targets, n, vocab));
    if (dh == nullptr && dw == nullptr) return NVLM_OK;
    std::vector<float> dlogits(static_cast<size_t>(n) * static_cast<size_t>(std::min(chunk, vocab)));
    std::vector<float> h_bf16, w_bf16;
    if (bf16_operands) {
        h_bf16 = rounded_to_bf16(h, n * d);
        h = h_bf16.data();
    }

    for (int64_t v0 = 0; v0 < vocab; v0 += chunk) {
        const int64_t width = std::min(chunk, vocab - v0);
        const float* w_chunk = w + v0 * d;
        if (bf16_operands) {
            w_bf16 = rounded_to_bf16(w_chunk, width * d);
            w_chunk = w_bf16.data();
        }
        sgemm(false, true, n, width, d, 1.0f, h, d, w_chunk, d, 0.0f, dlogits.data(), width);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++) {
            float* row = dlogits.data() + t * width;
            const float g = targets[t] == kIgnoreIndex ? 0.0f : dlogp[t];
            for (int64_t j = 0; j < width; j++) row[j] = -g * std::exp(row[j] - lse[t]);
            if (targets[t] >= v0 && targets[t] < v0 + width) row[targets[t] - v0] += g;
            if (bf16_operands)
                for (int64_t j = 0; j < width; j++) row[j] = round_to_bf16(row[j]);
        }
        if (dh != nullptr) sgemm(false, false, n, d, width, 1.0f, dlogits.data(), width, w_chunk, d, 1.0f, dh, d);
        if (dw != nullptr) sgemm(true, false, width, d, n, 1.0f, dlogits.data(), width, h, d, 1.0f, dw + v0 * d, d);
    }
    return NVLM_OK;
}

}  // namespace nvlm::cpu
