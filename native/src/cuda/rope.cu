/*
 * Rotary position embedding, Hugging Face rotate_half convention over the whole head, as
 * ../cpu/rope.cpp defines it.
 *
 * x, out (n_tokens, n_heads, head_dim); with h = head_dim/2 each pair (i, i + h) of a head is
 * rotated by angle = pos[t]·inv_freq[i], the angle an fp32 product and cos/sin taken in fp32:
 *   out[i] = x[i]·cos − x[i+h]·sin;  out[i+h] = x[i+h]·cos + x[i]·sin.
 * The backward is the transposed (= inverse) rotation, by −angle, added into dx.
 *
 * One thread per pair (token, head, i), grid-stride; the thread reads and writes both members of
 * its pair, so the forward may run in place (out == x).
 */
#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;

// The pair p = (t·n_heads + head)·h + i rotated by sign·angle: its two offsets into the tensor and
// the two rotated values.
struct RotatedPair {
    int64_t first, second;
    float y1, y2;
};

__device__ RotatedPair rope_rotate_pair(const float* src, const int32_t* pos, const float* inv_freq, int64_t n_heads,
                                        int64_t head_dim, float sign, int64_t p) {
    const int64_t h = head_dim / 2;
    const int64_t i = p % h;
    const int64_t token_head = p / h;  // t·n_heads + head
    const int64_t t = token_head / n_heads;
    const float angle = static_cast<float>(pos[t]) * inv_freq[i];
    float sin_angle, cos_angle;
    sincosf(angle, &sin_angle, &cos_angle);
    sin_angle *= sign;
    const int64_t first = token_head * head_dim + i, second = first + h;
    const float x1 = src[first], x2 = src[second];
    return {first, second, x1 * cos_angle - x2 * sin_angle, x2 * cos_angle + x1 * sin_angle};
}

// out = R(angle)·x, pairs = n_tokens·n_heads·head_dim/2.
__global__ void rope_forward_kernel(float* out, const float* x, const int32_t* pos, const float* inv_freq,
                                    int64_t pairs, int64_t n_heads, int64_t head_dim) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += stride) {
        const RotatedPair r = rope_rotate_pair(x, pos, inv_freq, n_heads, head_dim, 1.0f, p);
        out[r.first] = r.y1;
        out[r.second] = r.y2;
    }
}

// dx += R(−angle)·dout.
__global__ void rope_backward_kernel(float* dx, const float* dout, const int32_t* pos, const float* inv_freq,
                                     int64_t pairs, int64_t n_heads, int64_t head_dim) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += stride) {
        const RotatedPair r = rope_rotate_pair(dout, pos, inv_freq, n_heads, head_dim, -1.0f, p);
        dx[r.first] += r.y1;
        dx[r.second] += r.y2;
    }
}

}  // namespace

nvlm_status CudaBackend::rope_forward(float* out, const float* x, const int32_t* pos, const float* inv_freq,
                                      int64_t n_tokens, int64_t n_heads, int64_t head_dim) {
    const OpScope scope(*this, "nvlm_rope_forward");
    const int64_t pairs = n_tokens * n_heads * (head_dim / 2);
    if (pairs == 0) return NVLM_OK;
    rope_forward_kernel<<<grid_for(pairs, kThreads), kThreads, 0, stream()>>>(out, x, pos, inv_freq, pairs, n_heads,
                                                                            head_dim);
    return after_launch("nvlm_rope_forward");
}

nvlm_status CudaBackend::rope_backward(float* dx, const float* dout, const int32_t* pos, const float* inv_freq,
                                       int64_t n_tokens, int64_t n_heads, int64_t head_dim) {
    const OpScope scope(*this, "nvlm_rope_backward");
    const int64_t pairs = n_tokens * n_heads * (head_dim / 2);
    if (pairs == 0) return NVLM_OK;
    rope_backward_kernel<<<grid_for(pairs, kThreads), kThreads, 0, stream()>>>(dx, dout, pos, inv_freq, pairs,
                                                                             n_heads, head_dim);
    return after_launch("nvlm_rope_backward");
}

}  // namespace nvlm::cuda
