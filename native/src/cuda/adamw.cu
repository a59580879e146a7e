/*
 * nvlm_adamw_step (CPU twin: cpu/adamw.cpp): one AdamW step over param, grad, m, v (n, f32) in
 * torch.optim.AdamW's order of operations (single-tensor, non-fused path):
 *   p *= 1 − lr·wd;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
 *   p −= (lr / (1 − β1^step)) · m / (√v / √(1 − β2^step) + eps).
 *
 * The scalar factors (decay, step size, √ of the second bias correction) are computed on the host
 * in double exactly as the twin computes them, and one elementwise grid-stride kernel applies them
 * in fp32. Its arithmetic is spelled with round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...)
 * because nvcc would otherwise contract a·b + c into one fused multiply-add, which rounds once
 * where the twin rounds twice (x86-64 builds have no FMA unless -march asks for it): with the
 * intrinsics every operation rounds like the twin's, in the twin's order, so on x86-64 hosts both
 * backends produce the same bits.
 */
#include <cmath>

#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void adamw_step_kernel(float* param, const float* grad, float* m, float* v, int64_t n, float beta1,
                                  float beta2, float one_minus_beta1, float one_minus_beta2, float eps, float decay,
                                  float step_size, float bias_correction2_sqrt) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float g = grad[i];
        // m = β1·m + (1−β1)·g;  v = β2·v + ((1−β2)·g)·g
        const float m_i = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(one_minus_beta1, g));
        const float v_i = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(one_minus_beta2, g), g));
        m[i] = m_i;
        v[i] = v_i;
        // denom = √v / √bc2 + eps;  p = p·decay − (step_size·m) / denom
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v_i), bias_correction2_sqrt), eps);
        param[i] = __fsub_rn(__fmul_rn(param[i], decay), __fdiv_rn(__fmul_rn(step_size, m_i), denom));
    }
}

}  // namespace

nvlm_status CudaBackend::adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                                    float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    const OpScope scope(*this, "nvlm_adamw_step");
    if (n == 0) return NVLM_OK;
    const double steps = static_cast<double>(step);
    const float decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
    const float step_size = static_cast<float>(lr / (1.0 - std::pow(static_cast<double>(beta1), steps)));
    const float bias_correction2_sqrt =
        static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(beta2), steps)));
    const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
    adamw_step_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(param, grad, m, v, n, beta1, beta2,
                                                                        one_minus_beta1, one_minus_beta2, eps, decay,
                                                                        step_size, bias_correction2_sqrt);
    return after_launch("nvlm_adamw_step");
}

}  // namespace nvlm::cuda
