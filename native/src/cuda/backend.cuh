/*
 * The CUDA backend's class: memory and streams in backend.cu, one .cu file per op family (named
 * next to each group below, as the CPU twins in ../cpu/ are).
 *
 * Every op runs on the context's own stream. An op method starts with `const OpScope scope(*this,
 * "nvlm_op_name")`, which makes the context's device current and opens an NVTX range named after
 * the export, and ends its launches with `after_launch("nvlm_op_name")`: launch errors become the
 * op's status, and with NVLM_CUDA_SYNC=1 in the environment every op also waits for its kernels,
 * so an asynchronous fault is reported by the op that caused it (slow; for debugging).
 */
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <vector>

#include "../backend.h"
#include "check.cuh"

namespace nvlm::cuda {

class CudaBackend final : public Backend {
public:
    CudaBackend(int32_t device, cudaStream_t stream, cublasHandle_t cublas, bool sync_each_op);
    ~CudaBackend() override;

    const char* name() const override { return "CUDA"; }

    nvlm_status alloc(size_t nbytes, void** ptr) override;
    void release(void* ptr) override;
    nvlm_status upload(void* dst, const void* src, size_t nbytes) override;
    nvlm_status download(void* dst, const void* src, size_t nbytes) override;
    nvlm_status copy(void* dst, const void* src, size_t nbytes) override;
    nvlm_status zero(void* dst, size_t nbytes) override;
    nvlm_status synchronize() override;
    void range_push(const char* name) override;
    void range_pop() override;

    // ---- dense algebra: gemm.cu (cuBLAS) ----
    nvlm_status matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k,
                               bool trans_a, bool trans_b, float alpha, float beta) override;
    nvlm_status linear_forward(float* out, const float* x, const float* w, const float* bias, int64_t m,
        int64_t k, int64_t n) override;
    nvlm_status linear_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x,
        const float* w, int64_t m, int64_t k, int64_t n) override;

    // ---- embeddings: embedding.cu ----
    nvlm_status embedding_forward(float* out, const float* table, const int32_t* ids, int64_t n, int64_t vocab,
        int64_t d) override;
    nvlm_status embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n,
        int64_t vocab, int64_t d) override;
    nvlm_status index_copy_forward(float* out, const float* x, const float* src, const int32_t* index,
        int64_t n_rows, int64_t n_src, int64_t d) override;
    nvlm_status index_copy_backward(float* dx, float* dsrc, const float* dout, const int32_t* index,
        int64_t n_rows, int64_t n_src, int64_t d) override;

    // ---- normalisation: norm.cu ----
    nvlm_status rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t n, int64_t d,
        float eps) override;
    nvlm_status rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
        const float* rstd, int64_t n, int64_t d) override;
    nvlm_status layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w,
        const float* b, int64_t n, int64_t d, float eps) override;
    nvlm_status layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x,
        const float* w, const float* mean, const float* rstd, int64_t n, int64_t d) override;

    // ---- rotary position embedding: rope.cu ----
    nvlm_status rope_forward(float* out, const float* x, const int32_t* pos, const float* inv_freq,
        int64_t n_tokens, int64_t n_heads, int64_t head_dim) override;
    nvlm_status rope_backward(float* dx, const float* dout, const int32_t* pos, const float* inv_freq,
        int64_t n_tokens, int64_t n_heads, int64_t head_dim) override;

    // ---- attention: attention.cu ----
    nvlm_status attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
        const uint8_t* key_mask, int64_t batch, int64_t tq, int64_t tk,
        int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, bool causal,
        float scale) override;
    nvlm_status attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
        const float* k, const float* v, const uint8_t* key_mask, const float* out,
        const float* lse, int64_t batch, int64_t tq, int64_t tk, int64_t n_heads,
        int64_t n_kv_heads, int64_t head_dim, bool causal, float scale) override;

    // ---- elementwise: elementwise.cu ----
    nvlm_status gelu_forward(float* out, const float* x, int64_t n) override;
    nvlm_status gelu_backward(float* dx, const float* dout, const float* x, int64_t n) override;
    nvlm_status swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override;
    nvlm_status swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
        int64_t n) override;
    nvlm_status residual_forward(float* out, const float* a, const float* b, int64_t n) override;
    nvlm_status residual_backward(float* da, float* db, const float* dout, int64_t n) override;

    // ---- bias add: bias_add.cu ----
    nvlm_status bias_add_forward(float* out, const float* x, const float* bias, int64_t m, int64_t n) override;
    nvlm_status bias_add_backward(float* dx, float* dbias, const float* dout, int64_t m, int64_t n) override;
    nvlm_status scale_forward(float* out, const float* x, float alpha, int64_t n) override;
    nvlm_status scale_backward(float* dx, const float* dout, float alpha, int64_t n) override;
    nvlm_status sum_forward(float* out, const float* x, int64_t n) override;
    nvlm_status sum_backward(float* dx, const float* dout, int64_t n) override;

    // ---- SigLIP patch embedding: patchify.cu ----
    nvlm_status patchify_forward(float* out, const float* pixels, int64_t n, int64_t channels, int64_t height,
        int64_t width, int64_t patch) override;
    nvlm_status patchify_backward(float* dpixels, const float* dout, int64_t n, int64_t channels,
        int64_t height, int64_t width, int64_t patch) override;

    // ---- Idefics3 connector: pixel_shuffle.cu ----
    nvlm_status pixel_shuffle_forward(float* out, const float* x, int64_t n, int64_t seq, int64_t d,
        int64_t scale) override;
    nvlm_status pixel_shuffle_backward(float* dx, const float* dout, int64_t n, int64_t seq, int64_t d,
        int64_t scale) override;

    // ---- language-model head: lm_logprob.cu ----
    nvlm_status lm_logprob_forward(float* logp, float* lse, const float* h, const float* w,
        const int32_t* targets, int64_t n, int64_t d, int64_t vocab, int64_t chunk) override;
    nvlm_status lm_logprob_backward(float* dh, float* dw, const float* dlogp, const float* h, const float* w,
        const int32_t* targets, const float* lse, int64_t n, int64_t d,
        int64_t vocab, int64_t chunk) override;

    // ---- optimiser: adamw.cu ----
    nvlm_status adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
        float beta1, float beta2, float eps, float weight_decay, int64_t step) override;
    nvlm_status adamw_multi_tensor_step(float* const* params, const float* const* grads, float* const* m,
        float* const* v, const int64_t* n, int64_t count, float lr, float beta1, float beta2, float eps,
        float weight_decay, int64_t step) override;

    // ---- NF4 base weights: nf4.cu ----
    nvlm_status nf4_quantize(uint8_t* packed, uint8_t* absmax_q, float* absmax2, float* offset,
        float* absmax_code, float* absmax, const float* w, int64_t n, int64_t k) override;
    nvlm_status nf4_dequantize(float* w, const nf4::Weight& quantized, int64_t n, int64_t k) override;
    nvlm_status nf4_linear_forward(float* out, const float* x, const nf4::Weight& w, int64_t m, int64_t k,
        int64_t n) override;
    nvlm_status nf4_linear_backward(float* dx, const float* dout, const nf4::Weight& w, int64_t m, int64_t k,
        int64_t n) override;

    // ---- LoRA / DoRA adapters: lora.cu ----
    nvlm_status lora_forward(float* out, float* down, const float* base_out, const float* base_dora,
        const float* x_lora, const float* a, const float* b, const float* col_scale, int64_t m, int64_t k,
        int64_t n, int64_t r, float scaling) override;
    nvlm_status lora_backward(float* dbase_out, float* dbase_dora, float* dx_lora, float* da, float* db,
        float* dcol_scale, const float* dout, const float* base_dora, const float* x_lora, const float* a,
        const float* b, const float* col_scale, const float* down, int64_t m, int64_t k, int64_t n, int64_t r,
        float scaling) override;

    // ---- DoRA's weight norm: dora_norm.cu ----
    nvlm_status dora_norm(float* norm, float* inv_norm, const float* w, const float* a, const float* b, int64_t n,
        int64_t k, int64_t r, float scaling) override;
    nvlm_status dora_norm_nf4(float* norm, float* inv_norm, const nf4::Weight& w, const float* a, const float* b,
        int64_t n, int64_t k, int64_t r, float scaling) override;

    // ---- casts: cast.cu ----
    nvlm_status cast(void* dst, nvlm_dtype dst_dtype, const void* src, nvlm_dtype src_dtype, int64_t n) override;

    cudaStream_t stream() const { return stream_; }
    cublasHandle_t cublas() const { return cublas_; }
    int32_t device() const { return device_; }

    // After an op's launches: the launch error, if any, as the op's status; with NVLM_CUDA_SYNC=1
    // also the error of the kernels themselves.
    nvlm_status after_launch(const char* op) const;

    // A scratch device buffer of at least nbytes owned by the backend and reused by the next op
    // (ops on one stream run in order, so one op's scratch is dead when the next one starts).
    // A second call may move the buffer: an op that needs several regions carves them from one call.
    nvlm_status scratch(size_t nbytes, void** ptr, const char* op);

    // out (n) = in (n) rounded to bf16 bits by bf16.cuh's round to nearest even, queued on the stream:
    // nvlm_cast's f32 → bf16 and the BF16 math mode's operand copies (cast.cu).
    nvlm_status to_bf16(uint16_t* out, const float* in, int64_t n, const char* op) const;

    // Row-major c[i] (m, n) = alpha · op(a[i]) · op(b[i]) + beta · c[i], i < batch, on cuBLAS (gemm.cu):
    // op(a) (m, k) stored (k, m) when trans_a, op(b) (k, n) stored (n, k) when trans_b, every operand
    // contiguous and batches one matrix apart. gemm_f32 multiplies f32 operands in fp32 (the F32 math
    // mode); gemm_bf16 multiplies bf16 operands (to_bf16's bits) on the tensor cores with fp32
    // accumulation (the BF16 math mode). Queued on the stream; the caller ends the op with after_launch.
    nvlm_status gemm_f32(const char* op, bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
        float alpha, const float* a, const float* b, float beta, float* c) const;
    nvlm_status gemm_bf16(const char* op, bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
        float alpha, const uint16_t* a, const uint16_t* b, float beta, float* c) const;

    // A device copy of nbytes of host data (a launch table) that the backend keeps: queued for upload
    // on the stream only when the bytes differ from the previous call's, so a table that stays the same
    // from one call to the next is uploaded once. Valid until the next call.
    nvlm_status kept_table(const void* host, size_t nbytes, void** ptr, const char* op);

private:
    const int32_t device_;
    const cudaStream_t stream_;
    const cublasHandle_t cublas_;
    const bool sync_each_op_;
    void* scratch_ = nullptr;
    size_t scratch_bytes_ = 0;
    void* table_ = nullptr;                  // kept_table's device copy
    size_t table_capacity_ = 0;
    std::vector<unsigned char> table_host_;  // and the bytes it holds (the source of its last upload)
};

// The first lines of every op method: device current, NVTX range around the op. Construction
// cannot fail visibly, so a failing cudaSetDevice surfaces through the op's first launch.
class OpScope {
public:
    OpScope(const CudaBackend& backend, const char* op);
    ~OpScope();
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;
};

// Blocks of `threads` covering n items, capped for grid-stride loops.
inline unsigned grid_for(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return static_cast<unsigned>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

}  // namespace nvlm::cuda
