/*
 * One AdamW step in torch.optim.AdamW's order of operations (single-tensor, non-fused path):
 *   p *= 1 − lr·wd;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
 *   p −= (lr / (1 − β1^step)) · m / (√v / √(1 − β2^step) + eps).
 * The scalar factors are computed in double (as Python floats are) and applied in fp32. The
 * multi-tensor step is this step applied to each tensor in turn: its definition.
 */
#include <cmath>

#include "ops.h"

namespace nvlm::cpu {

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step) {
    const double steps = static_cast<double>(step);
    const float decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
    const float step_size = static_cast<float>(lr / (1.0 - std::pow(static_cast<double>(beta1), steps)));
    const float bias_correction2_sqrt =
        static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(beta2), steps)));
    const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        m[i] = beta1 * m[i] + one_minus_beta1 * g;
        v[i] = beta2 * v[i] + one_minus_beta2 * g * g;
        const float denom = std::sqrt(v[i]) / bias_correction2_sqrt + eps;
        param[i] = param[i] * decay - step_size * m[i] / denom;
    }
}

void adamw_multi_tensor_step(float* const* params, const float* const* grads, float* const* m, float* const* v,
                             const int64_t* n, int64_t count, float lr, float beta1, float beta2, float eps,
                             float weight_decay, int64_t step) {
    for (int64_t t = 0; t < count; t++)
        adamw_step(params[t], grads[t], m[t], v[t], n[t], lr, beta1, beta2, eps, weight_decay, step);
}

}  // namespace nvlm::cpu
