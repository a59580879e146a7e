/*
 * Attention in the BF16 math mode on the tensor cores (attention_bf16.cu), for attention.cu's
 * CudaBackend::attention_forward / attention_backward to dispatch to when the context's math mode
 * is NVLM_MATH_BF16 and head_dim ≤ kBf16AttentionMaxHeadDim. Arguments, shapes and semantics are
 * those of the ABI's attention ops (attention.cu's top comment); the launchers check their
 * launches and return the first error.
 */
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nvlm::cuda {

constexpr int64_t kBf16AttentionMaxHeadDim = 128;

cudaError_t launch_attention_bf16_forward(cudaStream_t stream, float* out, float* lse, const float* q, const float* k,
                                          const float* v, const uint8_t* key_mask, int64_t batch, int64_t tq,
                                          int64_t tk, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                          bool causal, float scale);

// delta (batch, n_heads, tq) is device scratch that receives D = rowsum(bf16(dout) ⊙ out).
cudaError_t launch_attention_bf16_backward(cudaStream_t stream, float* dq, float* dk, float* dv, float* delta,
                                           const float* dout, const float* q, const float* k, const float* v,
                                           const uint8_t* key_mask, const float* out, const float* lse,
                                           int64_t batch, int64_t tq, int64_t tk, int64_t n_heads,
                                           int64_t n_kv_heads, int64_t head_dim, bool causal, float scale);

}  // namespace nvlm::cuda
