/*
 * Defaults of the Backend ops: each reports that this backend does not have the op yet.
 */
#include "backend.h"

#include "error.h"

namespace nvlm {

nvlm_status Backend::unsupported(const char* op) const {
    return fail(NVLM_ERR_UNSUPPORTED, "%s: not implemented on the %s backend yet", op, name());
}

nvlm_status Backend::matmul(float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, bool, bool, float,
                            float) {
    return unsupported("nvlm_matmul");
}

nvlm_status Backend::linear_forward(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_linear_forward");
}

nvlm_status Backend::linear_backward(float*, float*, float*, const float*, const float*, const float*, int64_t, int64_t,
                                     int64_t) {
    return unsupported("nvlm_linear_backward");
}

nvlm_status Backend::embedding_forward(float*, const float*, const int32_t*, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_embedding_forward");
}

nvlm_status Backend::embedding_backward(float*, const float*, const int32_t*, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_embedding_backward");
}

nvlm_status Backend::index_copy_forward(float*, const float*, const float*, const int32_t*, int64_t, int64_t,
                                        int64_t) {
    return unsupported("nvlm_index_copy_forward");
}

nvlm_status Backend::index_copy_backward(float*, float*, const float*, const int32_t*, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_index_copy_backward");
}

nvlm_status Backend::rmsnorm_forward(float*, float*, const float*, const float*, int64_t, int64_t, float) {
    return unsupported("nvlm_rmsnorm_forward");
}

nvlm_status Backend::rmsnorm_backward(float*, float*, const float*, const float*, const float*, const float*, int64_t,
                                      int64_t) {
    return unsupported("nvlm_rmsnorm_backward");
}

nvlm_status Backend::layernorm_forward(float*, float*, float*, const float*, const float*, const float*, int64_t,
                                       int64_t, float) {
    return unsupported("nvlm_layernorm_forward");
}

nvlm_status Backend::layernorm_backward(float*, float*, float*, const float*, const float*, const float*, const float*,
                                        const float*, int64_t, int64_t) {
    return unsupported("nvlm_layernorm_backward");
}

nvlm_status Backend::rope_forward(float*, const float*, const int32_t*, const float*, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_rope_forward");
}

nvlm_status Backend::rope_backward(float*, const float*, const int32_t*, const float*, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_rope_backward");
}

nvlm_status Backend::attention_forward(float*, float*, const float*, const float*, const float*, const uint8_t*,
                                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, float) {
    return unsupported("nvlm_attention_forward");
}

nvlm_status Backend::attention_backward(float*, float*, float*, const float*, const float*, const float*, const float*,
                                        const uint8_t*, const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                                        int64_t, int64_t, bool, float) {
    return unsupported("nvlm_attention_backward");
}

nvlm_status Backend::gelu_forward(float*, const float*, int64_t) { return unsupported("nvlm_gelu_forward"); }
nvlm_status Backend::gelu_backward(float*, const float*, const float*, int64_t) {
    return unsupported("nvlm_gelu_backward");
}

nvlm_status Backend::swiglu_forward(float*, const float*, const float*, int64_t) {
    return unsupported("nvlm_swiglu_forward");
}

nvlm_status Backend::swiglu_backward(float*, float*, const float*, const float*, const float*, int64_t) {
    return unsupported("nvlm_swiglu_backward");
}

nvlm_status Backend::residual_forward(float*, const float*, const float*, int64_t) {
    return unsupported("nvlm_residual_forward");
}

nvlm_status Backend::residual_backward(float*, float*, const float*, int64_t) {
    return unsupported("nvlm_residual_backward");
}

nvlm_status Backend::bias_add_forward(float*, const float*, const float*, int64_t, int64_t) {
    return unsupported("nvlm_bias_add_forward");
}

nvlm_status Backend::bias_add_backward(float*, float*, const float*, int64_t, int64_t) {
    return unsupported("nvlm_bias_add_backward");
}

nvlm_status Backend::scale_forward(float*, const float*, float, int64_t) { return unsupported("nvlm_scale_forward"); }
nvlm_status Backend::scale_backward(float*, const float*, float, int64_t) { return unsupported("nvlm_scale_backward"); }
nvlm_status Backend::sum_forward(float*, const float*, int64_t) { return unsupported("nvlm_sum_forward"); }
nvlm_status Backend::sum_backward(float*, const float*, int64_t) { return unsupported("nvlm_sum_backward"); }
nvlm_status Backend::patchify_forward(float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_patchify_forward");
}

nvlm_status Backend::patchify_backward(float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_patchify_backward");
}

nvlm_status Backend::pixel_shuffle_forward(float*, const float*, int64_t, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_pixel_shuffle_forward");
}

nvlm_status Backend::pixel_shuffle_backward(float*, const float*, int64_t, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_pixel_shuffle_backward");
}

nvlm_status Backend::lm_logprob_forward(float*, float*, const float*, const float*, const int32_t*, int64_t, int64_t,
                                        int64_t, int64_t) {
    return unsupported("nvlm_lm_logprob_forward");
}

nvlm_status Backend::lm_logprob_backward(float*, float*, const float*, const float*, const float*, const int32_t*,
                                         const float*, int64_t, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_lm_logprob_backward");
}

nvlm_status Backend::adamw_step(float*, const float*, float*, float*, int64_t, float, float, float, float, float,
                                int64_t) {
    return unsupported("nvlm_adamw_step");
}

nvlm_status Backend::adamw_multi_tensor_step(float* const*, const float* const*, float* const*, float* const*,
                                             const int64_t*, int64_t, float, float, float, float, float, int64_t) {
    return unsupported("nvlm_adamw_multi_tensor_step");
}

nvlm_status Backend::nf4_quantize(uint8_t*, uint8_t*, float*, float*, float*, float*, const float*, int64_t, int64_t) {
    return unsupported("nvlm_nf4_quantize");
}

nvlm_status Backend::nf4_dequantize(float*, const nf4::Weight&, int64_t, int64_t) {
    return unsupported("nvlm_nf4_dequantize");
}

nvlm_status Backend::nf4_linear_forward(float*, const float*, const nf4::Weight&, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_nf4_linear_forward");
}

nvlm_status Backend::nf4_linear_backward(float*, const float*, const nf4::Weight&, int64_t, int64_t, int64_t) {
    return unsupported("nvlm_nf4_linear_backward");
}

nvlm_status Backend::lora_forward(float*, float*, const float*, const float*, const float*, const float*,
                                  const float*, const float*, int64_t, int64_t, int64_t, int64_t, float) {
    return unsupported("nvlm_lora_forward");
}

nvlm_status Backend::lora_backward(float*, float*, float*, float*, float*, float*, const float*, const float*,
                                   const float*, const float*, const float*, const float*, const float*, int64_t,
                                   int64_t, int64_t, int64_t, float) {
    return unsupported("nvlm_lora_backward");
}

nvlm_status Backend::dora_norm(float*, float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                               float) {
    return unsupported("nvlm_dora_norm");
}

nvlm_status Backend::dora_norm_nf4(float*, float*, const nf4::Weight&, const float*, const float*, int64_t, int64_t,
                                   int64_t, float) {
    return unsupported("nvlm_dora_norm_nf4");
}

nvlm_status Backend::cast(void*, nvlm_dtype, const void*, nvlm_dtype, int64_t) { return unsupported("nvlm_cast"); }

}  // namespace nvlm
