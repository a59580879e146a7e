/*
 * nvlm.h — the one public header of the NativeVlm native library.
 *
 * A C ABI over two backends that compute the same ops: the CPU backend (C++ fp32, OpenMP,
 * OpenBLAS) is the definition of every op; the CUDA backend implements the same entry points.
 * A context picks the backend; buffers belong to one context; every op takes the context of
 * its buffers.
 *
 * Conventions (llm.c style):
 *   - Arguments: context, outputs, inputs, sizes, scalars. Gradients carry a `d` prefix.
 *   - Every backward ADDS into its gradient outputs (d* += ...): the caller zeroes a gradient
 *     buffer once, and several consumers of one tensor accumulate into it. A null gradient
 *     output means "not wanted" and is skipped.
 *   - Tensors are row-major and contiguous; shapes are written next to each argument.
 *   - Float buffers are f32 unless the argument says otherwise; token ids and positions are
 *     int32; masks are uint8 (1 = keep).
 *   - Every function returns nvlm_status (0 ok, negative error). On error, nvlm_last_error()
 *     returns a message for the calling thread that names the offending argument. The library
 *     never prints, never exits, never aborts.
 */
#ifndef NVLM_H
#define NVLM_H

#include <stdint.h>

#if defined(_WIN32)
#  if defined(NVLM_BUILDING)
#    define NVLM_API __declspec(dllexport)
#  else
#    define NVLM_API __declspec(dllimport)
#  endif
#else
#  define NVLM_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature or a meaning below changes; the C# side refuses a mismatch. */
#define NVLM_ABI_VERSION 7

typedef enum nvlm_status {
    NVLM_OK = 0,
    NVLM_ERR_INVALID_ARGUMENT = -1, /* null pointer, negative or mismatched size, bad enum */
    NVLM_ERR_OUT_OF_MEMORY = -2,
    NVLM_ERR_UNAVAILABLE = -3,      /* backend not compiled in, or no such device */
    NVLM_ERR_UNSUPPORTED = -4,      /* op not implemented on this backend */
    NVLM_ERR_DEVICE = -5,           /* error reported by the device runtime */
    NVLM_ERR_INTERNAL = -6          /* unexpected C++ exception */
} nvlm_status;

typedef enum nvlm_device_kind {
    NVLM_DEVICE_CPU = 0,
    NVLM_DEVICE_CUDA = 1
} nvlm_device_kind;

typedef enum nvlm_dtype {
    NVLM_F32 = 0,
    NVLM_BF16 = 1,
    NVLM_U8 = 2,
    NVLM_I32 = 3
} nvlm_dtype;

/* How a context's dense products and attention treat their f32 operands (the tensors stay f32; the host
 * keeps saved activations as bf16 between forward and backward itself, with nvlm_cast):
 *   F32   fp32 operands, fp32 accumulation: the precision of every CPU twin (the default);
 *   BF16  the operands of matmul, linear, lm_logprob and attention are rounded to bf16 (nearest even) and
 *         the products accumulate in fp32, as torch's bf16 autocast computes them; on CUDA this
 *         puts them on the tensor cores. Attention's probabilities (and in backward its score
 *         gradients) may be rounded to bf16 as well before they multiply V (or K, Q). */
typedef enum nvlm_math_mode {
    NVLM_MATH_F32 = 0,
    NVLM_MATH_BF16 = 1
} nvlm_math_mode;

typedef struct nvlm_context nvlm_context; /* device kind, stream, caching allocator */
typedef struct nvlm_buffer nvlm_buffer;   /* bytes owned by one context's allocator */

typedef struct nvlm_memory_stats {
    int64_t live_bytes;   /* bytes in buffers that are allocated now */
    int64_t peak_bytes;   /* maximum of live_bytes since creation or the last reset */
    int64_t cached_bytes; /* bytes freed by the caller but kept by the allocator for reuse, counted
                             in whole blocks (requested sizes rounded up to 256 bytes) */
} nvlm_memory_stats;

/* ---- library ---------------------------------------------------------------------------- */

NVLM_API int32_t nvlm_abi_version(void);
/* The calling thread's message for its last failed call; "" if it has had none. Successful calls
 * leave it in place; the pointer stays valid until the thread's next failed call. */
NVLM_API const char* nvlm_last_error(void);
/* Number of devices of a kind that this build can use (CPU: 1; CUDA: 0 when not compiled in). */
NVLM_API nvlm_status nvlm_device_count(int32_t kind, int32_t* count);

/* ---- contexts and buffers --------------------------------------------------------------- */

NVLM_API nvlm_status nvlm_context_create(int32_t kind, int32_t device_index, nvlm_context** out);
/* A null ctx is a no-op. Buffers of ctx that are still allocated stay valid until freed; the last
 * nvlm_buffer_free then releases the context, so handles may be released in any order. */
NVLM_API nvlm_status nvlm_context_destroy(nvlm_context* ctx);
/* Waits until all work queued on the context's stream is done. */
NVLM_API nvlm_status nvlm_context_synchronize(nvlm_context* ctx);
NVLM_API nvlm_status nvlm_context_memory_stats(nvlm_context* ctx, nvlm_memory_stats* stats);
NVLM_API nvlm_status nvlm_context_reset_peak(nvlm_context* ctx);
/* The math mode of the ops queued after the call (nvlm_math_mode; a new context is F32). */
NVLM_API nvlm_status nvlm_context_set_math_mode(nvlm_context* ctx, int32_t mode);
NVLM_API nvlm_status nvlm_context_math_mode(nvlm_context* ctx, int32_t* mode);
/* Named ranges for profilers (NVTX on CUDA, shown by Nsight Systems; nothing on CPU), nested per
 * context: the C# graph opens one per layer and per op. name is copied. */
NVLM_API nvlm_status nvlm_range_push(nvlm_context* ctx, const char* name);
NVLM_API nvlm_status nvlm_range_pop(nvlm_context* ctx);

NVLM_API nvlm_status nvlm_buffer_alloc(nvlm_context* ctx, int64_t nbytes, nvlm_buffer** out);
/* A null buf is a no-op. */
NVLM_API nvlm_status nvlm_buffer_free(nvlm_buffer* buf);
NVLM_API nvlm_status nvlm_buffer_size(const nvlm_buffer* buf, int64_t* nbytes);
/* Host <-> buffer copies of nbytes starting at byte `offset` of the buffer. */
NVLM_API nvlm_status nvlm_buffer_upload(nvlm_buffer* dst, int64_t offset, const void* src, int64_t nbytes);
NVLM_API nvlm_status nvlm_buffer_download(const nvlm_buffer* src, int64_t offset, void* dst, int64_t nbytes);
/* Buffer -> buffer copy within one context. */
NVLM_API nvlm_status nvlm_buffer_copy(nvlm_buffer* dst, int64_t dst_offset, const nvlm_buffer* src,
                                      int64_t src_offset, int64_t nbytes);
NVLM_API nvlm_status nvlm_buffer_zero(nvlm_buffer* buf);

/* ---- dense algebra ---------------------------------------------------------------------- */

/* Strided batched GEMM, fp32 accumulate: for each b < batch,
 *   c[b] = alpha * op(a[b]) · op(b[b]) + beta * c[b]
 * op(a) is [m, k] (stored [k, m] when trans_a), op(b) is [k, n] (stored [n, k] when trans_b),
 * c[b] is [m, n]. Batches are contiguous. */
NVLM_API nvlm_status nvlm_matmul(nvlm_context* ctx, nvlm_buffer* c, const nvlm_buffer* a,
                                 const nvlm_buffer* b, int64_t batch, int64_t m, int64_t n,
                                 int64_t k, int32_t trans_a, int32_t trans_b, float alpha, float beta);

/* out (m, n) = x (m, k) · w (n, k)ᵀ [+ bias (n)]; bias may be null. */
NVLM_API nvlm_status nvlm_linear_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                         const nvlm_buffer* w, const nvlm_buffer* bias, int64_t m,
                                         int64_t k, int64_t n);
/* dx (m, k) += dout · w; dw (n, k) += doutᵀ · x; dbias (n) += Σ_rows dout. */
NVLM_API nvlm_status nvlm_linear_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dw,
                                          nvlm_buffer* dbias, const nvlm_buffer* dout,
                                          const nvlm_buffer* x, const nvlm_buffer* w, int64_t m,
                                          int64_t k, int64_t n);

/* ---- embeddings ------------------------------------------------------------------------- */

/* out (n, d) = table (vocab, d)[ids (n, int32)]. An id outside [0, vocab) is an error naming
 * its position. */
NVLM_API nvlm_status nvlm_embedding_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* table,
                                            const nvlm_buffer* ids, int64_t n, int64_t vocab, int64_t d);
/* dtable (vocab, d) += scatter-add of dout (n, d) at ids. */
NVLM_API nvlm_status nvlm_embedding_backward(nvlm_context* ctx, nvlm_buffer* dtable, const nvlm_buffer* dout,
                                             const nvlm_buffer* ids, int64_t n, int64_t vocab, int64_t d);

/* Merge of image features into token embeddings (Idefics3's inputs_merger, torch's index_copy
 * along rows): out (n_rows, d) = x (n_rows, d), then out[index[i]] = src[i] for i < n_src, with
 * src (n_src, d) and index (n_src, int32). Indices lie in [0, n_rows) and are distinct; an index
 * outside that range or one repeating an earlier one is an error naming its position and value. */
NVLM_API nvlm_status nvlm_index_copy_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                             const nvlm_buffer* src, const nvlm_buffer* index, int64_t n_rows,
                                             int64_t n_src, int64_t d);
/* dx (n_rows, d) += dout on the rows that no index names (the indexed rows get nothing);
 * dsrc (n_src, d) [i] += dout[index[i]]. Indices are checked as in the forward. */
NVLM_API nvlm_status nvlm_index_copy_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dsrc,
                                              const nvlm_buffer* dout, const nvlm_buffer* index, int64_t n_rows,
                                              int64_t n_src, int64_t d);

/* ---- normalisation ---------------------------------------------------------------------- */

/* Llama RMSNorm: out = x · rsqrt(mean(x²) + eps) · w.  x, out (n, d); w (d); rstd (n) saved. */
NVLM_API nvlm_status nvlm_rmsnorm_forward(nvlm_context* ctx, nvlm_buffer* out, nvlm_buffer* rstd,
                                          const nvlm_buffer* x, const nvlm_buffer* w, int64_t n,
                                          int64_t d, float eps);
NVLM_API nvlm_status nvlm_rmsnorm_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dw,
                                           const nvlm_buffer* dout, const nvlm_buffer* x,
                                           const nvlm_buffer* w, const nvlm_buffer* rstd, int64_t n,
                                           int64_t d);

/* LayerNorm over the last dim: out = (x - mean) · rstd · w + b.  x, out (n, d); w, b (d);
 * mean, rstd (n) saved for backward. */
NVLM_API nvlm_status nvlm_layernorm_forward(nvlm_context* ctx, nvlm_buffer* out, nvlm_buffer* mean,
                                            nvlm_buffer* rstd, const nvlm_buffer* x, const nvlm_buffer* w,
                                            const nvlm_buffer* b, int64_t n, int64_t d, float eps);
NVLM_API nvlm_status nvlm_layernorm_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dw,
                                             nvlm_buffer* db, const nvlm_buffer* dout, const nvlm_buffer* x,
                                             const nvlm_buffer* w, const nvlm_buffer* mean,
                                             const nvlm_buffer* rstd, int64_t n, int64_t d);

/* ---- rotary position embedding ---------------------------------------------------------- */

/* Hugging Face's rotate_half convention over the whole head: with h = head_dim/2 and
 * angle = pos[t] · inv_freq[i] (i < h),
 *   out[i]   = x[i]·cos − x[i+h]·sin,   out[i+h] = x[i+h]·cos + x[i]·sin.
 * x, out (n_tokens, n_heads, head_dim); pos (n_tokens, int32); inv_freq (head_dim/2), so that
 * rope scaling variants are the caller's choice. head_dim must be even. */
NVLM_API nvlm_status nvlm_rope_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                       const nvlm_buffer* pos, const nvlm_buffer* inv_freq,
                                       int64_t n_tokens, int64_t n_heads, int64_t head_dim);
/* dx += rotation of dout by −angle. */
NVLM_API nvlm_status nvlm_rope_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout,
                                        const nvlm_buffer* pos, const nvlm_buffer* inv_freq,
                                        int64_t n_tokens, int64_t n_heads, int64_t head_dim);

/* ---- attention -------------------------------------------------------------------------- */

/* Scaled dot-product attention with grouped query heads.
 *   q, out (batch, tq, n_heads, head_dim); k, v (batch, tk, n_kv_heads, head_dim);
 *   key_mask (batch, tk, uint8, 1 = attend) or null; lse (batch, n_heads, tq) saved.
 * Query head h reads kv head h / (n_heads / n_kv_heads). When causal, query i sees keys
 * j ≤ i + (tk − tq) (bottom-right aligned, so a decode step with a KV cache is causal too).
 * A query row that sees no key gets out = 0 and lse = −inf. */
NVLM_API nvlm_status nvlm_attention_forward(nvlm_context* ctx, nvlm_buffer* out, nvlm_buffer* lse,
                                            const nvlm_buffer* q, const nvlm_buffer* k,
                                            const nvlm_buffer* v, const nvlm_buffer* key_mask,
                                            int64_t batch, int64_t tq, int64_t tk, int64_t n_heads,
                                            int64_t n_kv_heads, int64_t head_dim, int32_t causal,
                                            float scale);
NVLM_API nvlm_status nvlm_attention_backward(nvlm_context* ctx, nvlm_buffer* dq, nvlm_buffer* dk,
                                             nvlm_buffer* dv, const nvlm_buffer* dout,
                                             const nvlm_buffer* q, const nvlm_buffer* k,
                                             const nvlm_buffer* v, const nvlm_buffer* key_mask,
                                             const nvlm_buffer* out, const nvlm_buffer* lse,
                                             int64_t batch, int64_t tq, int64_t tk, int64_t n_heads,
                                             int64_t n_kv_heads, int64_t head_dim, int32_t causal,
                                             float scale);

/* ---- elementwise ------------------------------------------------------------------------ */

/* GELU, tanh approximation (gelu_pytorch_tanh): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
NVLM_API nvlm_status nvlm_gelu_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x, int64_t n);
NVLM_API nvlm_status nvlm_gelu_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout,
                                        const nvlm_buffer* x, int64_t n);

/* SwiGLU: out = silu(gate) · up, silu(g) = g·sigmoid(g). All (n). */
NVLM_API nvlm_status nvlm_swiglu_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* gate,
                                         const nvlm_buffer* up, int64_t n);
NVLM_API nvlm_status nvlm_swiglu_backward(nvlm_context* ctx, nvlm_buffer* dgate, nvlm_buffer* dup,
                                          const nvlm_buffer* dout, const nvlm_buffer* gate,
                                          const nvlm_buffer* up, int64_t n);

/* Residual add: out = a + b (n).  Backward: da += dout, db += dout. */
NVLM_API nvlm_status nvlm_residual_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* a,
                                           const nvlm_buffer* b, int64_t n);
NVLM_API nvlm_status nvlm_residual_backward(nvlm_context* ctx, nvlm_buffer* da, nvlm_buffer* db,
                                            const nvlm_buffer* dout, int64_t n);

/* Bias add: out (m, n) = x (m, n) + bias (n) on every row (out may alias x).
 * Backward: dx += dout, dbias (n) += Σ_rows dout. */
NVLM_API nvlm_status nvlm_bias_add_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                           const nvlm_buffer* bias, int64_t m, int64_t n);
NVLM_API nvlm_status nvlm_bias_add_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dbias,
                                            const nvlm_buffer* dout, int64_t m, int64_t n);

/* Scale: out = alpha · x (n).  Backward: dx += alpha · dout. */
NVLM_API nvlm_status nvlm_scale_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                        float alpha, int64_t n);
NVLM_API nvlm_status nvlm_scale_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout,
                                         float alpha, int64_t n);

/* Sum of all elements: out (1) = Σ x (n).  Backward: dx[i] += dout[0]. */
NVLM_API nvlm_status nvlm_sum_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x, int64_t n);
NVLM_API nvlm_status nvlm_sum_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout, int64_t n);

/* ---- SigLIP patch embedding ------------------------------------------------------------- */

/* The patches that SigLIP's patch embedding Conv2d(channels, hidden, kernel = stride = patch,
 * padding "valid") sees, so that the conv is patchify followed by a linear layer whose weight is
 * the conv weight (hidden, channels, patch, patch) viewed as (hidden, channels·patch²):
 *   pixels (n, channels, height, width) → out (n, (height/patch)·(width/patch), channels·patch²).
 * Patch (py, px) of the grid is output row py·(width/patch) + px; within it, element
 * (c·patch + ky)·patch + kx is pixels[c, py·patch + ky, px·patch + kx]. channels, height, width
 * and patch are positive; height and width are multiples of patch. */
NVLM_API nvlm_status nvlm_patchify_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* pixels,
                                           int64_t n, int64_t channels, int64_t height, int64_t width,
                                           int64_t patch);
/* dpixels += dout scattered back along the same map (each pixel lies in exactly one patch). */
NVLM_API nvlm_status nvlm_patchify_backward(nvlm_context* ctx, nvlm_buffer* dpixels, const nvlm_buffer* dout,
                                            int64_t n, int64_t channels, int64_t height, int64_t width,
                                            int64_t patch);

/* ---- Idefics3 connector ----------------------------------------------------------------- */

/* Pixel shuffle exactly as Idefics3Connector.pixel_shuffle, scale factor s:
 * x (n, seq, d) with seq = side² and side divisible by s  →  out (n, seq/s², d·s²).
 * Patch (row r, col c) of the side×side grid, with r = R·s + i and c = C·s + j, lands in output
 * token R·(side/s) + C at channels [(i·s + j)·d, (i·s + j + 1)·d). */
NVLM_API nvlm_status nvlm_pixel_shuffle_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                                int64_t n, int64_t seq, int64_t d, int64_t scale);
NVLM_API nvlm_status nvlm_pixel_shuffle_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout,
                                                 int64_t n, int64_t seq, int64_t d, int64_t scale);

/* ---- language-model head: log-probabilities of given targets ---------------------------- */

/* Fused LM head + log-softmax gather, computed in vocab chunks of `chunk` columns so that no
 * (n, vocab) matrix ever exists:
 *   logits = h (n, d) · w (vocab, d)ᵀ,  lse[t] = logsumexp_v logits[t, v],
 *   logp[t] = logits[t, targets[t]] − lse[t], or 0 where targets[t] == -100 (ignored).
 * logp, lse (n); targets (n, int32). Softmax cross-entropy is −mean of logp over kept tokens. */
NVLM_API nvlm_status nvlm_lm_logprob_forward(nvlm_context* ctx, nvlm_buffer* logp, nvlm_buffer* lse,
                                             const nvlm_buffer* h, const nvlm_buffer* w,
                                             const nvlm_buffer* targets, int64_t n, int64_t d,
                                             int64_t vocab, int64_t chunk);
/* With g = dlogp[t] (0 where ignored): dlogits[t, v] = g·(onehot(targets[t])[v] − softmax[t, v]);
 * dh (n, d) += dlogits · w; dw (vocab, d) += dlogitsᵀ · h. Recomputed chunk by chunk from lse. */
NVLM_API nvlm_status nvlm_lm_logprob_backward(nvlm_context* ctx, nvlm_buffer* dh, nvlm_buffer* dw,
                                              const nvlm_buffer* dlogp, const nvlm_buffer* h,
                                              const nvlm_buffer* w, const nvlm_buffer* targets,
                                              const nvlm_buffer* lse, int64_t n, int64_t d,
                                              int64_t vocab, int64_t chunk);

/* ---- optimiser -------------------------------------------------------------------------- */

/* One AdamW step as torch.optim.AdamW computes it (decoupled weight decay, bias correction),
 * `step` counted from 1:
 *   p −= lr·wd·p;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
 *   p −= (lr / (1−β1^step)) · m / (√v / √(1−β2^step) + eps).
 * param, grad, m, v (n), all f32. */
NVLM_API nvlm_status nvlm_adamw_step(nvlm_context* ctx, nvlm_buffer* param, const nvlm_buffer* grad,
                                     nvlm_buffer* m, nvlm_buffer* v, int64_t n, float lr, float beta1,
                                     float beta2, float eps, float weight_decay, int64_t step);
/* The same step over count tensors at once: for each t < count, exactly
 *   nvlm_adamw_step(ctx, params[t], grads[t], m[t], v[t], n[t], lr, beta1, beta2, eps, weight_decay, step)
 * with one step count for all of them (a caller whose tensors have different counts calls once per count).
 * params, grads, m, v are arrays of count handles, n (count) their element counts; an n[t] of 0 is allowed.
 * The params, m and v handles (3·count buffers, all written) must be distinct. On CUDA this is one kernel
 * launch over all tensors in chunks (PyTorch's multi_tensor_apply). count may be 0. */
NVLM_API nvlm_status nvlm_adamw_multi_tensor_step(nvlm_context* ctx, nvlm_buffer* const* params,
                                                  const nvlm_buffer* const* grads, nvlm_buffer* const* m,
                                                  nvlm_buffer* const* v, const int64_t* n, int64_t count, float lr,
                                                  float beta1, float beta2, float eps, float weight_decay,
                                                  int64_t step);

/* ---- NF4 base weights (QLoRA) ----------------------------------------------------------- */

/* A frozen weight w (n, k) in bitsandbytes 0.47's NF4 with double quantisation, bit for bit
 * (quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True); the layout and the
 * arithmetic are written out in native/src/nf4.h). With numel = n·k and blocks = ceil(numel/64):
 *   packed (ceil(numel/2), uint8)   two 4-bit codes a byte, element 2i in the high nibble
 *   absmax_q (blocks, uint8)        each block's absmax, 8-bit through absmax_code
 *   absmax2 (ceil(blocks/256))      the nested absmax of every 256 absmax values
 *   offset (1)                      the mean of the absmax values, subtracted before quantising them
 *   absmax_code (256)               bitsandbytes' signed dynamic map (create_dynamic_map()), ascending
 * n and k are positive. A weight is frozen: no op here has a gradient for it. */

/* Quantises w (n, k) into the five buffers above; absmax (blocks), optional, receives the per-block
 * absmax before double quantisation. */
NVLM_API nvlm_status nvlm_nf4_quantize(nvlm_context* ctx, nvlm_buffer* packed, nvlm_buffer* absmax_q,
                                       nvlm_buffer* absmax2, nvlm_buffer* offset, nvlm_buffer* absmax_code,
                                       nvlm_buffer* absmax, const nvlm_buffer* w, int64_t n, int64_t k);
/* w (n, k) = dequant(the quantised weight): code · (absmax_code[absmax_q] · absmax2 + offset). */
NVLM_API nvlm_status nvlm_nf4_dequantize(nvlm_context* ctx, nvlm_buffer* w, const nvlm_buffer* packed,
                                         const nvlm_buffer* absmax_q, const nvlm_buffer* absmax2,
                                         const nvlm_buffer* offset, const nvlm_buffer* absmax_code, int64_t n,
                                         int64_t k);

/* out (m, n) = x (m, k) · dequant(w (n, k))ᵀ, fp32 accumulate. w is dequantised a tile of rows at a
 * time, so no full f32 copy of it ever exists. */
NVLM_API nvlm_status nvlm_nf4_linear_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                             const nvlm_buffer* packed, const nvlm_buffer* absmax_q,
                                             const nvlm_buffer* absmax2, const nvlm_buffer* offset,
                                             const nvlm_buffer* absmax_code, int64_t m, int64_t k, int64_t n);
/* dx (m, k) += dout (m, n) · dequant(w), tile by tile as the forward. */
NVLM_API nvlm_status nvlm_nf4_linear_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout,
                                              const nvlm_buffer* packed, const nvlm_buffer* absmax_q,
                                              const nvlm_buffer* absmax2, const nvlm_buffer* offset,
                                              const nvlm_buffer* absmax_code, int64_t m, int64_t k, int64_t n);

/* ---- LoRA / DoRA adapters ---------------------------------------------------------------- */

/* PEFT's (v0.13.2) adapter path of one lora.Linear, fused onto its base projection's output. With
 * down = x_lora · aᵀ (m, r), up = down · bᵀ (m, n) and c = col_scale (n), per column j:
 *   out (m, n) = base_out + (c − 1) ⊙ base_dora + c ⊙ scaling · up
 * x_lora (m, k) is the adapter's input after dropout; a (r, k) is lora_A.weight, b (n, r) lora_B.weight.
 *   LoRA: col_scale and base_dora null (c = 1, base_dora = 0): out = base_out + scaling · up.
 *   DoRA (DoraLinearLayer): c = magnitude / ‖W + scaling·b·a‖ per output row of the base weight W (n, k),
 *         the norm detached (the caller computes it, so c's gradient reaches the magnitude only);
 *         base_dora = x_lora · Wᵀ without the bias (PEFT's base_result − bias). That is PEFT's
 *         out = base_out + (c − 1)·(x_lora·Wᵀ) + c·scaling·up: the bias stays unscaled. Without dropout
 *         and without a bias, base_dora is base_out itself (the same buffer may be passed twice).
 * A null col_scale means c = 1 (base_dora, whose factor c − 1 is then 0, is not read); a null base_dora
 * means 0. down (m, r) is saved for the backward.
 * r is positive; m, k, n may be 0. */
NVLM_API nvlm_status nvlm_lora_forward(nvlm_context* ctx, nvlm_buffer* out, nvlm_buffer* down,
                                       const nvlm_buffer* base_out, const nvlm_buffer* base_dora,
                                       const nvlm_buffer* x_lora, const nvlm_buffer* a, const nvlm_buffer* b,
                                       const nvlm_buffer* col_scale, int64_t m, int64_t k, int64_t n, int64_t r,
                                       float scaling);
/* With g = c ⊙ dout (column j of dout times c_j) and d_down = scaling · g · b (m, r):
 *   dbase_out (m, n) += dout;   dbase_dora (m, n) += (c − 1) ⊙ dout;
 *   dcol_scale (n) += Σ_rows dout ⊙ (base_dora + scaling · up), up recomputed from down and b;
 *   db (n, r) += scaling · gᵀ · down;   da (r, k) += d_downᵀ · x_lora;   dx_lora (m, k) += d_down · a.
 * dbase_out and dbase_dora may be the same buffer (base_dora = base_out): it then receives c ⊙ dout. */
NVLM_API nvlm_status nvlm_lora_backward(nvlm_context* ctx, nvlm_buffer* dbase_out, nvlm_buffer* dbase_dora,
                                        nvlm_buffer* dx_lora, nvlm_buffer* da, nvlm_buffer* db,
                                        nvlm_buffer* dcol_scale, const nvlm_buffer* dout,
                                        const nvlm_buffer* base_dora, const nvlm_buffer* x_lora,
                                        const nvlm_buffer* a, const nvlm_buffer* b, const nvlm_buffer* col_scale,
                                        const nvlm_buffer* down, int64_t m, int64_t k, int64_t n, int64_t r,
                                        float scaling);

/* DoRA's weight norm (PEFT DoraLinearLayer.get_weight_norm: ‖W + scaling·B·A‖ over dim 1), computed
 * tile by tile from the adapter's factors, so that no (n, k) matrix W + scaling·b·a ever exists:
 *   norm (n) [j] = √( Σ_l (w[j, l] + scaling · Σ_p b[j, p] · a[p, l])² ),   inv_norm (n) [j] = 1 / norm[j]
 * w (n, k) the base weight, a (r, k) lora_A.weight, b (n, r) lora_B.weight; fp32 throughout (the rank
 * sum, the square sum). inv_norm, optional, is the correctly rounded reciprocal that DoRA's column scale
 * multiplies by. No gradient: PEFT detaches the norm. r is positive; n and k may be 0. */
NVLM_API nvlm_status nvlm_dora_norm(nvlm_context* ctx, nvlm_buffer* norm, nvlm_buffer* inv_norm,
                                    const nvlm_buffer* w, const nvlm_buffer* a, const nvlm_buffer* b, int64_t n,
                                    int64_t k, int64_t r, float scaling);
/* The same with the base weight in NF4 (the five buffers of nvlm_nf4_dequantize; n and k positive): each
 * w[j, l] is dequantised where it is used, as nvlm_nf4_dequantize computes it. */
NVLM_API nvlm_status nvlm_dora_norm_nf4(nvlm_context* ctx, nvlm_buffer* norm, nvlm_buffer* inv_norm,
                                        const nvlm_buffer* packed, const nvlm_buffer* absmax_q,
                                        const nvlm_buffer* absmax2, const nvlm_buffer* offset,
                                        const nvlm_buffer* absmax_code, const nvlm_buffer* a, const nvlm_buffer* b,
                                        int64_t n, int64_t k, int64_t r, float scaling);

/* ---- casts ------------------------------------------------------------------------------ */

/* dst (n, dst_dtype) = src (n, src_dtype) for f32 ↔ bf16 (round to nearest even; NaN stays a
 * quiet NaN) and identity copies. */
NVLM_API nvlm_status nvlm_cast(nvlm_context* ctx, nvlm_buffer* dst, int32_t dst_dtype,
                               const nvlm_buffer* src, int32_t src_dtype, int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* NVLM_H */
