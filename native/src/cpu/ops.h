/*
 * The CPU backend's ops: the fp32 reference definition of every op in nvlm.h.
 *
 * Arguments follow llm.c: outputs, inputs, sizes, scalars; shapes are those of nvlm.h. Inputs
 * are already validated by the api*.cpp exports; the ops that read ids, targets or row indices check them and
 * return a status, the others cannot fail. A null gradient output is skipped; gradients are added
 * to.
 */
#pragma once

#include <cstdint>

#include "../nf4.h"
#include "nvlm.h"

namespace nvlm::cpu {

// Row-major c (m, n) = alpha · op(a) · op(b) + beta · c, op(a) (m, k), op(b) (k, n), with leading
// dimensions lda, ldb, ldc of the stored matrices. beta == 0 overwrites c without reading it.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// bf16_operands (the BF16 math mode): the products multiply copies of their operands rounded to
// bf16 (bf16.h), in fp32 as ever; the bias, beta·c and the sums of dbias stay unrounded.
void matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k, bool trans_a,
            bool trans_b, float alpha, float beta, bool bf16_operands);
void linear_forward(float* out, const float* x, const float* w, const float* bias, int64_t m, int64_t k, int64_t n,
                    bool bf16_operands);
void linear_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int64_t m,
                     int64_t k, int64_t n, bool bf16_operands);

nvlm_status embedding_forward(float* out, const float* table, const int32_t* ids, int64_t n, int64_t vocab, int64_t d);
nvlm_status embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n, int64_t vocab,
                               int64_t d);
nvlm_status index_copy_forward(float* out, const float* x, const float* src, const int32_t* index, int64_t n_rows,
                               int64_t n_src, int64_t d);
nvlm_status index_copy_backward(float* dx, float* dsrc, const float* dout, const int32_t* index, int64_t n_rows,
                                int64_t n_src, int64_t d);

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t n, int64_t d, float eps);
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t n, int64_t d);
void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b, int64_t n,
                       int64_t d, float eps);
void layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x, const float* w,
                        const float* mean, const float* rstd, int64_t n, int64_t d);

void rope_forward(float* out, const float* x, const int32_t* pos, const float* inv_freq, int64_t n_tokens,
                  int64_t n_heads, int64_t head_dim);
void rope_backward(float* dx, const float* dout, const int32_t* pos, const float* inv_freq, int64_t n_tokens,
                   int64_t n_heads, int64_t head_dim);

// bf16_operands (the BF16 math mode): the products multiply q, k, v and (backward) dout rounded to bf16.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       int64_t batch, int64_t tq, int64_t tk, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                       bool causal, float scale, bool bf16_operands);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const uint8_t* key_mask, const float* out, const float* lse, int64_t batch,
                        int64_t tq, int64_t tk, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, bool causal,
                        float scale, bool bf16_operands);

void gelu_forward(float* out, const float* x, int64_t n);
void gelu_backward(float* dx, const float* dout, const float* x, int64_t n);
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);
void residual_forward(float* out, const float* a, const float* b, int64_t n);
void residual_backward(float* da, float* db, const float* dout, int64_t n);

void bias_add_forward(float* out, const float* x, const float* bias, int64_t m, int64_t n);
void bias_add_backward(float* dx, float* dbias, const float* dout, int64_t m, int64_t n);
void scale_forward(float* out, const float* x, float alpha, int64_t n);
void scale_backward(float* dx, const float* dout, float alpha, int64_t n);
void sum_forward(float* out, const float* x, int64_t n);
void sum_backward(float* dx, const float* dout, int64_t n);

void patchify_forward(float* out, const float* pixels, int64_t n, int64_t channels, int64_t height, int64_t width,
                      int64_t patch);
void patchify_backward(float* dpixels, const float* dout, int64_t n, int64_t channels, int64_t height, int64_t width,
                       int64_t patch);

void pixel_shuffle_forward(float* out, const float* x, int64_t n, int64_t seq, int64_t d, int64_t scale);
void pixel_shuffle_backward(float* dx, const float* dout, int64_t n, int64_t seq, int64_t d, int64_t scale);

// bf16_operands (the BF16 math mode): the products multiply h, w and (backward) dlogits rounded to bf16.
nvlm_status lm_logprob_forward(float* logp, float* lse, const float* h, const float* w, const int32_t* targets,
                               int64_t n, int64_t d, int64_t vocab, int64_t chunk, bool bf16_operands);
nvlm_status lm_logprob_backward(float* dh, float* dw, const float* dlogp, const float* h, const float* w,
                                const int32_t* targets, const float* lse, int64_t n, int64_t d, int64_t vocab,
                                int64_t chunk, bool bf16_operands);

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step);
// adamw_step over count tensors in turn (nvlm_adamw_multi_tensor_step).
void adamw_multi_tensor_step(float* const* params, const float* const* grads, float* const* m, float* const* v,
                             const int64_t* n, int64_t count, float lr, float beta1, float beta2, float eps,
                             float weight_decay, int64_t step);

// NF4 (nf4.cpp): the reference quantiser and dequantiser of nf4.h's layout, and the linear layer over it.
void nf4_quantize_ref(uint8_t* packed, uint8_t* absmax_q, float* absmax2, float* offset, float* absmax_code,
                      float* absmax, const float* w, int64_t n, int64_t k);
void nf4_dequantize_ref(float* w, const nf4::Weight& quantized, int64_t n, int64_t k);
void nf4_linear_forward(float* out, const float* x, const nf4::Weight& w, int64_t m, int64_t k, int64_t n);
void nf4_linear_backward(float* dx, const float* dout, const nf4::Weight& w, int64_t m, int64_t k, int64_t n);

// LoRA / DoRA (lora.cpp): the adapter path fused onto the base output, nvlm.h's nvlm_lora_*.
void lora_forward(float* out, float* down, const float* base_out, const float* base_dora, const float* x_lora,
                  const float* a, const float* b, const float* col_scale, int64_t m, int64_t k, int64_t n, int64_t r,
                  float scaling);
void lora_backward(float* dbase_out, float* dbase_dora, float* dx_lora, float* da, float* db, float* dcol_scale,
                   const float* dout, const float* base_dora, const float* x_lora, const float* a, const float* b,
                   const float* col_scale, const float* down, int64_t m, int64_t k, int64_t n, int64_t r,
                   float scaling);

// DoRA's weight norm (dora_norm.cpp): ‖w + scaling·b·a‖ per row, a row at a time; inv_norm may be null.
void dora_norm(float* norm, float* inv_norm, const float* w, const float* a, const float* b, int64_t n, int64_t k,
               int64_t r, float scaling);
void dora_norm_nf4(float* norm, float* inv_norm, const nf4::Weight& w, const float* a, const float* b, int64_t n,
                   int64_t k, int64_t r, float scaling);

void cast(void* dst, nvlm_dtype dst_dtype, const void* src, nvlm_dtype src_dtype, int64_t n);

}  // namespace nvlm::cpu
