/*
 * Fused LM head + log-softmax gather (CPU twin: cpu/lm_logprob.cpp), over vocab chunks so that
 * only an (n, chunk) block of logits ever exists, in the backend's scratch buffer:
 *   nvlm_lm_logprob_forward   logits = h (n, d) · w (vocab, d)ᵀ, lse[t] = logsumexp_v logits[t, v],
 *                             logp[t] = logits[t, targets[t]] − lse[t], 0 where targets[t] = -100;
 *   nvlm_lm_logprob_backward  g = dlogp[t] (0 where ignored), dlogits = g·(onehot(target) − exp(logit − lse)),
 *                             dh (n, d) += dlogits · w;  dw (vocab, d) += dlogitsᵀ · h.
 *
 * Forward, per chunk of `chunk` vocab columns (the last may be partial): the logits block
 * h · w[v0 : v0 + width]ᵀ (n, width) comes from one cuBLAS GEMM (gemm.cu's gemm_f32 or gemm_bf16),
 * then lm_logprob_forward_chunk_kernel gives each row a block of threads that reduces the block's
 * max (float) and Σ exp(logit − max) (double, like the twin's running sum), rescales the row's
 * running sum when the max grows (online logsumexp) and picks the target logit when the chunk
 * holds it. lm_logprob_forward_finish_kernel turns the running max and sum into lse and logp.
 *
 * Backward recomputes each block by the same GEMM, lm_logprob_backward_dlogits_kernel turns it
 * into dlogits in place (one thread per element), and two GEMMs with beta = 1 add
 * dh += dlogits · w_chunk and dw[v0 : v0 + width] += dlogitsᵀ · h; a null dh or dw is skipped.
 *
 * Precision: fp32 storage in both math modes (nvlm_math_mode). F32: the GEMMs in fp32, as gemm.cu.
 * BF16: the GEMMs' operands are rounded to bf16 (to_bf16, the twin's round to nearest even) and
 * multiplied on the tensor cores with fp32 accumulation: h once per call, each chunk of w as it
 * comes, and in backward dlogits, which the dlogits kernel writes already rounded into a bf16 block
 * of its own (the twin computes them in fp32 and then rounds: the same values). The softmax,
 * logsumexp and dlogits arithmetic stay fp32 / double as in F32 mode. The rounded copies are parts
 * of the op's one scratch allocation, next to its other regions.
 *
 * Targets outside [0, vocab) other than -100 fail the op with the twin's message, which names the
 * first such position and its value. They are in device memory, so lm_logprob_check_targets_kernel
 * finds the smallest bad position (atomicMin: the result does not depend on scheduling) and the
 * host reads it back. That read is the one synchronisation of these ops, made before any output
 * is written, so a refused call leaves logp, lse, dh and dw untouched as the twin does.
 */
#include <algorithm>
#include <cmath>
#include <limits>

#include "backend.cuh"
#include "bf16.cuh"

namespace nvlm::cuda {

namespace {

constexpr int32_t kIgnoreIndex = -100;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Blocks of the one-block-per-row kernels, which loop over rows beyond the grid.
constexpr int64_t kMaxRowBlocks = 65535 * 8;

// No bad target found: the initial value of the smallest bad position.
constexpr unsigned long long kNoBadTarget = std::numeric_limits<unsigned long long>::max();

struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

struct SumOp {
    __device__ double operator()(double a, double b) const { return a + b; }
};

// The reduction of value over the kThreads threads of the block, returned to every thread;
// shared holds kWarps partials. Ends with a barrier so shared may be reused right away.
template <typename T, typename Op>
__device__ T block_reduce(T value, Op op, T* shared) {
    for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xFFFFFFFFu, value, offset));
    if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = value;
    __syncthreads();
    T result = shared[0];
    for (int warp = 1; warp < kWarps; warp++) result = op(result, shared[warp]);
    __syncthreads();
    return result;
}

unsigned row_blocks(int64_t n) { return static_cast<unsigned>(std::min(n, kMaxRowBlocks)); }

size_t align_256(size_t nbytes) { return (nbytes + 255) / 256 * 256; }

// *first_bad = min(*first_bad, t) over every t with targets[t] ∉ [0, vocab) ∪ {-100}.
__global__ void lm_logprob_check_targets_kernel(unsigned long long* first_bad, const int32_t* targets, int64_t n,
                                                int64_t vocab) {
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int32_t target = targets[t];
        if (target != kIgnoreIndex && (target < 0 || target >= vocab))
            atomicMin(first_bad, static_cast<unsigned long long>(t));
    }
}

// The running state of each row before the first chunk: max −∞, sum 0, target logit 0.
__global__ void lm_logprob_forward_init_kernel(float* running_max, double* running_sum, float* target_logit,
                                               int64_t n) {
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        running_max[t] = -INFINITY;
        running_sum[t] = 0.0;
        target_logit[t] = 0.0f;
    }
}

// Folds the logits block (n, width) of vocab columns [v0, v0 + width) into each row's running
// max and sum and picks the target logit; one block per row.
__global__ void lm_logprob_forward_chunk_kernel(float* running_max, double* running_sum, float* target_logit,
                                                const float* logits, const int32_t* targets, int64_t n, int64_t v0,
                                                int64_t width) {
    __shared__ float shared_max[kWarps];
    __shared__ double shared_sum[kWarps];
    for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
        const float* row = logits + t * width;
        float thread_max = -INFINITY;
        for (int64_t j = threadIdx.x; j < width; j += kThreads) thread_max = fmaxf(thread_max, row[j]);
        const float chunk_max = block_reduce(thread_max, MaxOp{}, shared_max);
        const float previous_max = running_max[t];
        const float m = chunk_max > previous_max ? chunk_max : previous_max;
        // Every logit so far is −∞: nothing to add (the twin skips the row too). m is the same
        // in all threads of the block, so they all skip together.
        if (m == -INFINITY) continue;
        double thread_sum = 0.0;
        for (int64_t j = threadIdx.x; j < width; j += kThreads) thread_sum += expf(row[j] - m);
        const double chunk_sum = block_reduce(thread_sum, SumOp{}, shared_sum);
        // The barrier at the end of block_reduce orders every thread's read of running_max[t]
        // before this write.
        if (threadIdx.x == 0) {
            double sum = running_sum[t];
            if (chunk_max > previous_max) sum *= exp(static_cast<double>(previous_max) - chunk_max);
            running_sum[t] = sum + chunk_sum;
            running_max[t] = m;
            const int32_t target = targets[t];
            if (target >= v0 && target < v0 + width) target_logit[t] = row[target - v0];
        }
    }
}

// lse = max + log(sum) in double, then logp = target logit − lse (0 for ignored rows).
__global__ void lm_logprob_forward_finish_kernel(float* logp, float* lse, const float* running_max,
                                                 const double* running_sum, const float* target_logit,
                                                 const int32_t* targets, int64_t n) {
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const double row_lse = static_cast<double>(running_max[t]) + log(running_sum[t]);
        lse[t] = static_cast<float>(row_lse);
        logp[t] = targets[t] == kIgnoreIndex ? 0.0f : static_cast<float>(target_logit[t] - row_lse);
    }
}

// The logits block (n, width) of vocab columns [v0, v0 + width) becomes
// dlogits = g·(onehot(target) − exp(logit − lse)): in place, or with block_bf16 (BF16 mode) rounded
// to bf16 into block_bf16 (n, width) instead; one thread per element.
__global__ void lm_logprob_backward_dlogits_kernel(float* block, uint16_t* block_bf16, const float* dlogp,
                                                   const int32_t* targets, const float* lse, int64_t n, int64_t v0,
                                                   int64_t width) {
    const int64_t count = n * width;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t t = i / width, j = i - t * width;
        const int32_t target = targets[t];
        const float g = target == kIgnoreIndex ? 0.0f : dlogp[t];
        float value = -g * expf(block[i] - lse[t]);
        if (target == v0 + j) value += g;
        if (block_bf16 != nullptr)
            block_bf16[i] = f32_to_bf16_bits(value);
        else
            block[i] = value;
    }
}

// The twin's target check (see the header): fails with its message if a target is bad.
// first_bad is 8 bytes of device scratch.
nvlm_status check_targets(const CudaBackend& backend, const char* op, unsigned long long* first_bad,
                          const int32_t* targets, int64_t n, int64_t vocab) {
    if (n == 0) return NVLM_OK;
    NVLM_CUDA_TRY(op, cudaMemsetAsync(first_bad, 0xFF, sizeof *first_bad, backend.stream()));
    lm_logprob_check_targets_kernel<<<grid_for(n, kThreads), kThreads, 0, backend.stream()>>>(first_bad, targets, n,
                                                                                             vocab);
    NVLM_CUDA_CHECK_LAUNCH(op);
    unsigned long long position = kNoBadTarget;
    NVLM_CUDA_TRY(op, cudaMemcpyAsync(&position, first_bad, sizeof position, cudaMemcpyDeviceToHost,
                                      backend.stream()));
    NVLM_CUDA_TRY(op, cudaStreamSynchronize(backend.stream()));
    if (position == kNoBadTarget) return NVLM_OK;
    int32_t target = 0;
    NVLM_CUDA_TRY(op, cudaMemcpyAsync(&target, targets + position, sizeof target, cudaMemcpyDeviceToHost,
                                      backend.stream()));
    NVLM_CUDA_TRY(op, cudaStreamSynchronize(backend.stream()));
    return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: targets[%lld] = %d is outside [0, %lld) and is not -100", op,
                static_cast<long long>(position), target, static_cast<long long>(vocab));
}

}  // namespace

nvlm_status CudaBackend::lm_logprob_forward(float* logp, float* lse, const float* h, const float* w,
                                            const int32_t* targets, int64_t n, int64_t d, int64_t vocab,
                                            int64_t chunk) {
    constexpr const char* op = "nvlm_lm_logprob_forward";
    const OpScope scope(*this, op);
    const bool bf16 = math_mode == NVLM_MATH_BF16;
    const int64_t width_max = std::min(chunk, vocab);
    // Scratch: the bad-target position, running sum (n, double), running max (n), target logit
    // (n), logits block (n, width_max), and in BF16 mode the rounded h (n, d) and w chunk
    // (width_max, d); each region 256-byte aligned.
    const size_t sum_offset = align_256(sizeof(unsigned long long));
    const size_t max_offset = sum_offset + align_256(static_cast<size_t>(n) * sizeof(double));
    const size_t target_offset = max_offset + align_256(static_cast<size_t>(n) * sizeof(float));
    const size_t logits_offset = target_offset + align_256(static_cast<size_t>(n) * sizeof(float));
    const size_t logits_bytes = static_cast<size_t>(n) * static_cast<size_t>(width_max) * sizeof(float);
    const size_t h_offset = logits_offset + align_256(logits_bytes);
    const size_t w_offset = h_offset + align_256(static_cast<size_t>(n * d) * sizeof(uint16_t));
    const size_t nbytes =
        bf16 ? w_offset + static_cast<size_t>(width_max * d) * sizeof(uint16_t) : logits_offset + logits_bytes;
    void* base = nullptr;
    NVLM_TRY(scratch(nbytes, &base, op));
    char* bytes = static_cast<char*>(base);
    auto* first_bad = reinterpret_cast<unsigned long long*>(bytes);
    auto* running_sum = reinterpret_cast<double*>(bytes + sum_offset);
    auto* running_max = reinterpret_cast<float*>(bytes + max_offset);
    auto* target_logit = reinterpret_cast<float*>(bytes + target_offset);
    auto* logits = reinterpret_cast<float*>(bytes + logits_offset);
    auto* h_bf16 = reinterpret_cast<uint16_t*>(bytes + h_offset);
    auto* w_bf16 = reinterpret_cast<uint16_t*>(bytes + w_offset);

    NVLM_TRY(check_targets(*this, op, first_bad, targets, n, vocab));
    if (n == 0) return NVLM_OK;

    lm_logprob_forward_init_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(running_max, running_sum,
                                                                                    target_logit, n);
    NVLM_CUDA_CHECK_LAUNCH(op);
    if (bf16) NVLM_TRY(to_bf16(h_bf16, h, n * d, op));
    for (int64_t v0 = 0; v0 < vocab; v0 += chunk) {
        const int64_t width = std::min(chunk, vocab - v0);
        // logits (n, width) = h (n, d) · w[v0 : v0 + width] (width, d)ᵀ
        if (bf16) {
            NVLM_TRY(to_bf16(w_bf16, w + v0 * d, width * d, op));
            NVLM_TRY(gemm_bf16(op, false, true, 1, n, width, d, 1.0f, h_bf16, w_bf16, 0.0f, logits));
        } else {
            NVLM_TRY(gemm_f32(op, false, true, 1, n, width, d, 1.0f, h, w + v0 * d, 0.0f, logits));
        }
        lm_logprob_forward_chunk_kernel<<<row_blocks(n), kThreads, 0, stream()>>>(
            running_max, running_sum, target_logit, logits, targets, n, v0, width);
        NVLM_CUDA_CHECK_LAUNCH(op);
    }
    lm_logprob_forward_finish_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        logp, lse, running_max, running_sum, target_logit, targets, n);
    return after_launch(op);
}

nvlm_status CudaBackend::lm_logprob_backward(float* dh, float* dw, const float* dlogp, const float* h,
                                             const float* w, const int32_t* targets, const float* lse, int64_t n,
                                             int64_t d, int64_t vocab, int64_t chunk) {
    constexpr const char* op = "nvlm_lm_logprob_backward";
    const OpScope scope(*this, op);
    const bool bf16 = math_mode == NVLM_MATH_BF16;
    const int64_t width_max = std::min(chunk, vocab);
    // Scratch: the bad-target position, the logits / dlogits block (n, width_max), and in BF16 mode
    // the rounded h (n, d), w chunk (width_max, d) and dlogits (n, width_max); each region 256-byte
    // aligned.
    const size_t block_offset = align_256(sizeof(unsigned long long));
    const size_t block_bytes = static_cast<size_t>(n) * static_cast<size_t>(width_max) * sizeof(float);
    const size_t h_offset = block_offset + align_256(block_bytes);
    const size_t w_offset = h_offset + align_256(static_cast<size_t>(n * d) * sizeof(uint16_t));
    const size_t dlogits_bf16_offset = w_offset + align_256(static_cast<size_t>(width_max * d) * sizeof(uint16_t));
    const size_t nbytes = bf16 ? dlogits_bf16_offset + static_cast<size_t>(n * width_max) * sizeof(uint16_t)
                               : block_offset + block_bytes;
    void* base = nullptr;
    NVLM_TRY(scratch(nbytes, &base, op));
    char* bytes = static_cast<char*>(base);
    auto* first_bad = reinterpret_cast<unsigned long long*>(bytes);
    auto* dlogits = reinterpret_cast<float*>(bytes + block_offset);
    auto* h_bf16 = reinterpret_cast<uint16_t*>(bytes + h_offset);
    auto* w_bf16 = reinterpret_cast<uint16_t*>(bytes + w_offset);
    auto* dlogits_bf16 = reinterpret_cast<uint16_t*>(bytes + dlogits_bf16_offset);

    NVLM_TRY(check_targets(*this, op, first_bad, targets, n, vocab));
    if (dh == nullptr && dw == nullptr) return NVLM_OK;

    if (bf16) NVLM_TRY(to_bf16(h_bf16, h, n * d, op));
    for (int64_t v0 = 0; v0 < vocab; v0 += chunk) {
        const int64_t width = std::min(chunk, vocab - v0);
        const float* w_chunk = w + v0 * d;
        // dlogits (n, width) = h · w_chunkᵀ, then g·(onehot − softmax): in place, or rounded into
        // dlogits_bf16 in BF16 mode.
        if (bf16) {
            NVLM_TRY(to_bf16(w_bf16, w_chunk, width * d, op));
            NVLM_TRY(gemm_bf16(op, false, true, 1, n, width, d, 1.0f, h_bf16, w_bf16, 0.0f, dlogits));
        } else {
            NVLM_TRY(gemm_f32(op, false, true, 1, n, width, d, 1.0f, h, w_chunk, 0.0f, dlogits));
        }
        lm_logprob_backward_dlogits_kernel<<<grid_for(n * width, kThreads), kThreads, 0, stream()>>>(
            dlogits, bf16 ? dlogits_bf16 : nullptr, dlogp, targets, lse, n, v0, width);
        NVLM_CUDA_CHECK_LAUNCH(op);
        // dh (n, d) += dlogits (n, width) · w_chunk (width, d);
        // dw[v0 : v0 + width] (width, d) += dlogitsᵀ (width, n) · h (n, d)
        if (bf16) {
            if (dh != nullptr)
                NVLM_TRY(gemm_bf16(op, false, false, 1, n, d, width, 1.0f, dlogits_bf16, w_bf16, 1.0f, dh));
            if (dw != nullptr)
                NVLM_TRY(gemm_bf16(op, true, false, 1, width, d, n, 1.0f, dlogits_bf16, h_bf16, 1.0f, dw + v0 * d));
        } else {
            if (dh != nullptr) NVLM_TRY(gemm_f32(op, false, false, 1, n, d, width, 1.0f, dlogits, w_chunk, 1.0f, dh));
            if (dw != nullptr)
                NVLM_TRY(gemm_f32(op, true, false, 1, width, d, n, 1.0f, dlogits, h, 1.0f, dw + v0 * d));
        }
    }
    return after_launch(op);
}

}  // namespace nvlm::cuda
