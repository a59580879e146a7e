/*
 * The CPU backend: host memory (64-byte aligned, for vector loads) and the ops of this folder.
 * Everything runs synchronously on the calling thread and its OpenMP team.
 */
#include "../backend.h"

#include <cstdlib>
#include <cstring>

#if defined(_WIN32)
#  include <malloc.h>
#endif

#include "../error.h"
#include "ops.h"

namespace nvlm {

namespace {

constexpr size_t kHostAlignment = 64;

class CpuBackend final : public Backend {
public:
    const char* name() const override { return "CPU"; }

    // nbytes is a multiple of the allocator's 256-byte blocks, as aligned_alloc requires.
    nvlm_status alloc(size_t nbytes, void** ptr) override {
#if defined(_WIN32)
        *ptr = _aligned_malloc(nbytes, kHostAlignment);
#else
        *ptr = std::aligned_alloc(kHostAlignment, nbytes);
#endif
        if (*ptr == nullptr)
            return fail(NVLM_ERR_OUT_OF_MEMORY, "nvlm_buffer_alloc: host allocation of %zu bytes failed", nbytes);
        return NVLM_OK;
    }

    void release(void* ptr) override {
#if defined(_WIN32)
        _aligned_free(ptr);
#else
        std::free(ptr);
#endif
    }

    nvlm_status upload(void* dst, const void* src, size_t nbytes) override {
        std::memcpy(dst, src, nbytes);
        return NVLM_OK;
    }

    nvlm_status download(void* dst, const void* src, size_t nbytes) override {
        std::memcpy(dst, src, nbytes);
        return NVLM_OK;
    }

    // Source and destination may be overlapping ranges of one buffer.
    nvlm_status copy(void* dst, const void* src, size_t nbytes) override {
        std::memmove(dst, src, nbytes);
        return NVLM_OK;
    }

    nvlm_status zero(void* dst, size_t nbytes) override {
        std::memset(dst, 0, nbytes);
        return NVLM_OK;
    }

    nvlm_status synchronize() override { return NVLM_OK; }

    nvlm_status matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k,
                       bool trans_a, bool trans_b, float alpha, float beta) override {
        cpu::matmul(c, a, b, batch, m, n, k, trans_a, trans_b, alpha, beta, math_mode == NVLM_MATH_BF16);
        return NVLM_OK;
    }

    nvlm_status linear_forward(float* out, const float* x, const float* w, const float* bias, int64_t m, int64_t k,
                               int64_t n) override {
        cpu::linear_forward(out, x, w, bias, m, k, n, math_mode == NVLM_MATH_BF16);
        return NVLM_OK;
    }

    nvlm_status linear_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w,
                                int64_t m, int64_t k, int64_t n) override {
        cpu::linear_backward(dx, dw, dbias, dout, x, w, m, k, n, math_mode == NVLM_MATH_BF16);
        return NVLM_OK;
    }

    nvlm_status embedding_forward(float* out, const float* table, const int32_t* ids, int64_t n, int64_t vocab,
                                  int64_t d) override {
        return cpu::embedding_forward(out, table, ids, n, vocab, d);
    }

    nvlm_status embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n, int64_t vocab,
                                   int64_t d) override {
        return cpu::embedding_backward(dtable, dout, ids, n, vocab, d);
    }

    nvlm_status index_copy_forward(float* out, const float* x, const float* src, const int32_t* index, int64_t n_rows,
                                   int64_t n_src, int64_t d) override {
        return cpu::index_copy_forward(out, x, src, index, n_rows, n_src, d);
    }

    nvlm_status index_copy_backward(float* dx, float* dsrc, const float* dout, const int32_t* index, int64_t n_rows,
                                    int64_t n_src, int64_t d) override {
        return cpu::index_copy_backward(dx, dsrc, dout, index, n_rows, n_src, d);
    }

    nvlm_status rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t n, int64_t d,
                                float eps) override {
        cpu::rmsnorm_forward(out, rstd, x, w, n, d, eps);
        return NVLM_OK;
    }

    nvlm_status rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                 const float* rstd, int64_t n, int64_t d) override {
        cpu::rmsnorm_backward(dx, dw, dout, x, w, rstd, n, d);
        return NVLM_OK;
    }

    nvlm_status layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b,
                                  int64_t n, int64_t d, float eps) override {
        cpu::layernorm_forward(out, mean, rstd, x, w, b, n, d, eps);
        return NVLM_OK;
    }

    nvlm_status layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x, const float* w,
                                   const float* mean, const float* rstd, int64_t n, int64_t d) override {
        cpu::layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, n, d);
        return NVLM_OK;
    }

    nvlm_status rope_forward(float* out, const float* x, const int32_t* pos, const float* inv_freq, int64_t n_tokens,
                             int64_t n_heads, int64_t head_dim) override {
        cpu::rope_forward(out, x, pos, inv_freq, n_tokens, n_heads, head_dim);
        return NVLM_OK;
    }

    nvlm_status rope_backward(float* dx, const float* dout, const int32_t* pos, const float* inv_freq, int64_t n_tokens,
                              int64_t n_heads, int64_t head_dim) override {
        cpu::rope_backward(dx, dout, pos, inv_freq, n_tokens, n_heads, head_dim);
        return NVLM_OK;
    }

    nvlm_status attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                  const uint8_t* key_mask, int64_t batch, int64_t tq, int64_t tk, int64_t n_heads,
                                  int64_t n_kv_heads, int64_t head_dim, bool causal, float scale) override {
        cpu::attention_forward(out, lse, q, k, v, key_mask, batch, tq, tk, n_heads, n_kv_heads, head_dim, causal,
                               scale, math_mode == NVLM_MATH_BF16);
        return NVLM_OK;
    }

    nvlm_status attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                                   const float* v, const uint8_t* key_mask, const float* out, const float* lse,
                                   int64_t batch, int64_t tq, int64_t tk, int64_t n_heads, int64_t n_kv_heads,
                                   int64_t head_dim, bool causal, float scale) override {
        cpu::attention_backward(dq, dk, dv, dout, q, k, v, key_mask, out, lse, batch, tq, tk, n_heads, n_kv_heads,
                                head_dim, causal, scale, math_mode == NVLM_MATH_BF16);
        return NVLM_OK;
    }

    nvlm_status gelu_forward(float* out, const float* x, int64_t n) override {
        cpu::gelu_forward(out, x, n);
        return NVLM_OK;
    }

    nvlm_status gelu_backward(float* dx, const float* dout, const float* x, int64_t n) override {
        cpu::gelu_backward(dx, dout, x, n);
        return NVLM_OK;
    }

    nvlm_status swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override {
        cpu::swiglu_forward(out, gate, up, n);
        return NVLM_OK;
    }

    nvlm_status swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                int64_t n) override {
        cpu::swiglu_backward(dgate, dup, dout, gate, up, n);
        return NVLM_OK;
    }

    nvlm_status residual_forward(float* out, const float* a, const float* b, int64_t n) override {
        cpu::residual_forward(out, a, b, n);
        return NVLM_OK;
    }

    nvlm_status residual_backward(float* da, float* db, const float* dout, int64_t n) override {
        cpu::residual_backward(da, db, dout, n);
        return NVLM_OK;
    }

    nvlm_status bias_add_forward(float* out, const float* x, const float* bias, int64_t m, int64_t n) override {
        cpu::bias_add_forward(out, x, bias, m, n);
        return NVLM_OK;
    }

    nvlm_status bias_add_backward(float* dx, float* dbias, const float* dout, int64_t m, int64_t n) override {
        cpu::bias_add_backward(dx, dbias, dout, m, n);
        return NVLM_OK;
    }

    nvlm_status scale_forward(float* out, const float* x, float alpha, int64_t n) override {
        cpu::scale_forward(out, x, alpha, n);
        return NVLM_OK;
    }

    nvlm_status scale_backward(float* dx, const float* dout, float alpha, int64_t n) override {
        cpu::scale_backward(dx, dout, alpha, n);
        return NVLM_OK;
    }

    nvlm_status sum_forward(float* out, const float* x, int64_t n) override {
        cpu::sum_forward(out, x, n);
        return NVLM_OK;
    }

    nvlm_status sum_backward(float* dx, const float* dout, int64_t n) override {
        cpu::sum_backward(dx, dout, n);
        return NVLM_OK;
    }

    nvlm_status patchify_forward(float* out, const float* pixels, int64_t n, int64_t channels, int64_t height,
                                 int64_t width, int64_t patch) override {
        cpu::patchify_forward(out, pixels, n, channels, height, width, patch);
        return NVLM_OK;
    }

    nvlm_status patchify_backward(float* dpixels, const float* dout, int64_t n, int64_t channels, int64_t height,
                                  int64_t width, int64_t patch) override {
        cpu::patchify_backward(dpixels, dout, n, channels, height, width, patch);
        return NVLM_OK;
    }

    nvlm_status pixel_shuffle_forward(float* out, const float* x, int64_t n, int64_t seq, int64_t d,
                                      int64_t scale) override {
        cpu::pixel_shuffle_forward(out, x, n, seq, d, scale);
        return NVLM_OK;
    }

    nvlm_status pixel_shuffle_backward(float* dx, const float* dout, int64_t n, int64_t seq, int64_t d,
                                       int64_t scale) override {
        cpu::pixel_shuffle_backward(dx, dout, n, seq, d, scale);
        return NVLM_OK;
    }

    nvlm_status lm_logprob_forward(float* logp, float* lse, const float* h, const float* w, const int32_t* targets,
                                   int64_t n, int64_t d, int64_t vocab, int64_t chunk) override {
        return cpu::lm_logprob_forward(logp, lse, h, w, targets, n, d, vocab, chunk, math_mode == NVLM_MATH_BF16);
    }

    nvlm_status lm_logprob_backward(float* dh, float* dw, const float* dlogp, const float* h, const float* w,
                                    const int32_t* targets, const float* lse, int64_t n, int64_t d, int64_t vocab,
                                    int64_t chunk) override {
        return cpu::lm_logprob_backward(dh, dw, dlogp, h, w, targets, lse, n, d, vocab, chunk,
                                        math_mode == NVLM_MATH_BF16);
    }

    nvlm_status adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                           float beta2, float eps, float weight_decay, int64_t step) override {
        cpu::adamw_step(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
        return NVLM_OK;
    }

    nvlm_status adamw_multi_tensor_step(float* const* params, const float* const* grads, float* const* m,
                                        float* const* v, const int64_t* n, int64_t count, float lr, float beta1,
                                        float beta2, float eps, float weight_decay, int64_t step) override {
        cpu::adamw_multi_tensor_step(params, grads, m, v, n, count, lr, beta1, beta2, eps, weight_decay, step);
        return NVLM_OK;
    }

    nvlm_status nf4_quantize(uint8_t* packed, uint8_t* absmax_q, float* absmax2, float* offset, float* absmax_code,
                             float* absmax, const float* w, int64_t n, int64_t k) override {
        cpu::nf4_quantize_ref(packed, absmax_q, absmax2, offset, absmax_code, absmax, w, n, k);
        return NVLM_OK;
    }

    nvlm_status nf4_dequantize(float* w, const nf4::Weight& quantized, int64_t n, int64_t k) override {
        cpu::nf4_dequantize_ref(w, quantized, n, k);
        return NVLM_OK;
    }

    nvlm_status nf4_linear_forward(float* out, const float* x, const nf4::Weight& w, int64_t m, int64_t k,
                                   int64_t n) override {
        cpu::nf4_linear_forward(out, x, w, m, k, n);
        return NVLM_OK;
    }

    nvlm_status nf4_linear_backward(float* dx, const float* dout, const nf4::Weight& w, int64_t m, int64_t k,
                                    int64_t n) override {
        cpu::nf4_linear_backward(dx, dout, w, m, k, n);
        return NVLM_OK;
    }

    nvlm_status lora_forward(float* out, float* down, const float* base_out, const float* base_dora,
                             const float* x_lora, const float* a, const float* b, const float* col_scale, int64_t m,
                             int64_t k, int64_t n, int64_t r, float scaling) override {
        cpu::lora_forward(out, down, base_out, base_dora, x_lora, a, b, col_scale, m, k, n, r, scaling);
        return NVLM_OK;
    }

    nvlm_status lora_backward(float* dbase_out, float* dbase_dora, float* dx_lora, float* da, float* db,
                              float* dcol_scale, const float* dout, const float* base_dora, const float* x_lora,
                              const float* a, const float* b, const float* col_scale, const float* down, int64_t m,
                              int64_t k, int64_t n, int64_t r, float scaling) override {
        cpu::lora_backward(dbase_out, dbase_dora, dx_lora, da, db, dcol_scale, dout, base_dora, x_lora, a, b,
                           col_scale, down, m, k, n, r, scaling);
        return NVLM_OK;
    }

    nvlm_status dora_norm(float* norm, float* inv_norm, const float* w, const float* a, const float* b, int64_t n,
                          int64_t k, int64_t r, float scaling) override {
        cpu::dora_norm(norm, inv_norm, w, a, b, n, k, r, scaling);
        return NVLM_OK;
    }

    nvlm_status dora_norm_nf4(float* norm, float* inv_norm, const nf4::Weight& w, const float* a, const float* b,
                              int64_t n, int64_t k, int64_t r, float scaling) override {
        cpu::dora_norm_nf4(norm, inv_norm, w, a, b, n, k, r, scaling);
        return NVLM_OK;
    }

    nvlm_status cast(void* dst, nvlm_dtype dst_dtype, const void* src, nvlm_dtype src_dtype, int64_t n) override {
        cpu::cast(dst, dst_dtype, src, src_dtype, n);
        return NVLM_OK;
    }
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace nvlm
