/*
 * The interface every backend implements: raw memory plus one method per op of nvlm.h.
 *
 * The api*.cpp exports validate arguments (null handles, sizes, buffer capacities, contexts) and then calls
 * these methods with raw data pointers of the context's device, so a backend trusts its
 * arguments except for data-dependent checks (token ids, targets, row indices) that only it can
 * read.
 * Arguments keep nvlm.h's order: outputs, inputs, sizes, scalars. A null gradient output means
 * "not wanted". Ops return NVLM_OK or a status set through nvlm::fail.
 *
 * Every op has a default that reports NVLM_ERR_UNSUPPORTED, so a backend under construction
 * overrides the ops it has; the CPU backend overrides all of them.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "nf4.h"
#include "nvlm.h"

namespace nvlm {

class Backend {
public:
    virtual ~Backend() = default;

    // "CPU" or "CUDA", for messages.
    virtual const char* name() const = 0;

    // nvlm_context_set_math_mode's setting, read by matmul, linear, lm_logprob and attention when they run.
    nvlm_math_mode math_mode = NVLM_MATH_F32;

    // ---- memory (nbytes > 0; the caching allocator sits above alloc/release) ----
    virtual nvlm_status alloc(size_t nbytes, void** ptr) = 0;
    virtual void release(void* ptr) = 0;
    virtual nvlm_status upload(void* dst, const void* src, size_t nbytes) = 0;
    virtual nvlm_status download(void* dst, const void* src, size_t nbytes) = 0;
    virtual nvlm_status copy(void* dst, const void* src, size_t nbytes) = 0;
    virtual nvlm_status zero(void* dst, size_t nbytes) = 0;
    virtual nvlm_status synchronize() = 0;

    // ---- profiler ranges (nvlm_range_push/pop); nothing by default ----
    virtual void range_push(const char* /*name*/) {}
    virtual void range_pop() {}

    // ---- dense algebra ----
    virtual nvlm_status matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k,
                               bool trans_a, bool trans_b, float alpha, float beta);
    virtual nvlm_status linear_forward(float* out, const float* x, const float* w, const float* bias, int64_t m,
                                       int64_t k, int64_t n);
    virtual nvlm_status linear_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x,
                                        const float* w, int64_t m, int64_t k, int64_t n);

    // ---- embeddings ----
    virtual nvlm_status embedding_forward(float* out, const float* table, const int32_t* ids, int64_t n, int64_t vocab,
                                          int64_t d);
    virtual nvlm_status embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n,
                                           int64_t vocab, int64_t d);
    virtual nvlm_status index_copy_forward(float* out, const float* x, const float* src, const int32_t* index,
                                           int64_t n_rows, int64_t n_src, int64_t d);
    virtual nvlm_status index_copy_backward(float* dx, float* dsrc, const float* dout, const int32_t* index,
                                            int64_t n_rows, int64_t n_src, int64_t d);

    // ---- normalisation ----
    virtual nvlm_status rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t n, int64_t d,
                                        float eps);
    virtual nvlm_status rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                         const float* rstd, int64_t n, int64_t d);
    virtual nvlm_status layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w,
                                          const float* b, int64_t n, int64_t d, float eps);
    virtual nvlm_status layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x,
                                           const float* w, const float* mean, const float* rstd, int64_t n, int64_t d);

    // ---- rotary position embedding ----
    virtual nvlm_status rope_forward(float* out, const float* x, const int32_t* pos, const float* inv_freq,
                                     int64_t n_tokens, int64_t n_heads, int64_t head_dim);
    virtual nvlm_status rope_backward(float* dx, const float* dout, const int32_t* pos, const float* inv_freq,
                                      int64_t n_tokens, int64_t n_heads, int64_t head_dim);

    // ---- attention ----
    virtual nvlm_status attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                          const uint8_t* key_mask, int64_t batch, int64_t tq, int64_t tk,
                                          int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, bool causal,
                                          float scale);
    virtual nvlm_status attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                           const float* k, const float* v, const uint8_t* key_mask, const float* out,
                                           const float* lse, int64_t batch, int64_t tq, int64_t tk, int64_t n_heads,
                                           int64_t n_kv_heads, int64_t head_dim, bool causal, float scale);

    // ---- elementwise ----
    virtual nvlm_status gelu_forward(float* out, const float* x, int64_t n);
    virtual nvlm_status gelu_backward(float* dx, const float* dout, const float* x, int64_t n);
    virtual nvlm_status swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
    virtual nvlm_status swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                        int64_t n);
    virtual nvlm_status residual_forward(float* out, const float* a, const float* b, int64_t n);
    virtual nvlm_status residual_backward(float* da, float* db, const float* dout, int64_t n);
    virtual nvlm_status bias_add_forward(float* out, const float* x, const float* bias, int64_t m, int64_t n);
    virtual nvlm_status bias_add_backward(float* dx, float* dbias, const float* dout, int64_t m, int64_t n);
    virtual nvlm_status scale_forward(float* out, const float* x, float alpha, int64_t n);
    virtual nvlm_status scale_backward(float* dx, const float* dout, float alpha, int64_t n);
    virtual nvlm_status sum_forward(float* out, const float* x, int64_t n);
    virtual nvlm_status sum_backward(float* dx, const float* dout, int64_t n);

    // ---- SigLIP patch embedding ----
    virtual nvlm_status patchify_forward(float* out, const float* pixels, int64_t n, int64_t channels, int64_t height,
                                         int64_t width, int64_t patch);
    virtual nvlm_status patchify_backward(float* dpixels, const float* dout, int64_t n, int64_t channels,
                                          int64_t height, int64_t width, int64_t patch);

    // ---- Idefics3 connector ----
    virtual nvlm_status pixel_shuffle_forward(float* out, const float* x, int64_t n, int64_t seq, int64_t d,
                                              int64_t scale);
    virtual nvlm_status pixel_shuffle_backward(float* dx, const float* dout, int64_t n, int64_t seq, int64_t d,
                                               int64_t scale);

    // ---- language-model head ----
    virtual nvlm_status lm_logprob_forward(float* logp, float* lse, const float* h, const float* w,
                                           const int32_t* targets, int64_t n, int64_t d, int64_t vocab, int64_t chunk);
    virtual nvlm_status lm_logprob_backward(float* dh, float* dw, const float* dlogp, const float* h, const float* w,
                                            const int32_t* targets, const float* lse, int64_t n, int64_t d,
                                            int64_t vocab, int64_t chunk);

    // ---- optimiser ----
    virtual nvlm_status adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                                   float beta1, float beta2, float eps, float weight_decay, int64_t step);
    // count tensors (arrays of count data pointers and sizes; param, m and v pointers all distinct)
    virtual nvlm_status adamw_multi_tensor_step(float* const* params, const float* const* grads, float* const* m,
                                                float* const* v, const int64_t* n, int64_t count, float lr,
                                                float beta1, float beta2, float eps, float weight_decay,
                                                int64_t step);

    // ---- NF4 base weights (layout and arithmetic: nf4.h; optional absmax may be null) ----
    virtual nvlm_status nf4_quantize(uint8_t* packed, uint8_t* absmax_q, float* absmax2, float* offset,
                                     float* absmax_code, float* absmax, const float* w, int64_t n, int64_t k);
    virtual nvlm_status nf4_dequantize(float* w, const nf4::Weight& quantized, int64_t n, int64_t k);
    virtual nvlm_status nf4_linear_forward(float* out, const float* x, const nf4::Weight& w, int64_t m, int64_t k,
                                           int64_t n);
    virtual nvlm_status nf4_linear_backward(float* dx, const float* dout, const nf4::Weight& w, int64_t m, int64_t k,
                                            int64_t n);

    // ---- LoRA / DoRA adapters (nullable: base_dora, col_scale and every gradient) ----
    virtual nvlm_status lora_forward(float* out, float* down, const float* base_out, const float* base_dora,
                                     const float* x_lora, const float* a, const float* b, const float* col_scale,
                                     int64_t m, int64_t k, int64_t n, int64_t r, float scaling);
    virtual nvlm_status lora_backward(float* dbase_out, float* dbase_dora, float* dx_lora, float* da, float* db,
                                      float* dcol_scale, const float* dout, const float* base_dora,
                                      const float* x_lora, const float* a, const float* b, const float* col_scale,
                                      const float* down, int64_t m, int64_t k, int64_t n, int64_t r, float scaling);

    // ---- DoRA's weight norm (inv_norm nullable) ----
    virtual nvlm_status dora_norm(float* norm, float* inv_norm, const float* w, const float* a, const float* b,
                                  int64_t n, int64_t k, int64_t r, float scaling);
    virtual nvlm_status dora_norm_nf4(float* norm, float* inv_norm, const nf4::Weight& w, const float* a,
                                      const float* b, int64_t n, int64_t k, int64_t r, float scaling);

    // ---- casts (dtype pair already checked to be f32<->bf16 or an identity) ----
    virtual nvlm_status cast(void* dst, nvlm_dtype dst_dtype, const void* src, nvlm_dtype src_dtype, int64_t n);

protected:
    // The default body of every op: NVLM_ERR_UNSUPPORTED naming the export and this backend.
    nvlm_status unsupported(const char* op) const;
};

std::unique_ptr<Backend> create_cpu_backend();

#if defined(NVLM_WITH_CUDA)
// Devices the CUDA runtime sees; 0 (not an error) without a driver or device.
nvlm_status cuda_device_count(int32_t* count);
// A backend bound to `device` (already checked to exist) with its own stream.
nvlm_status create_cuda_backend(int32_t device, std::unique_ptr<Backend>* out);
#endif

}  // namespace nvlm
