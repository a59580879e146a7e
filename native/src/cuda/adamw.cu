/*
 * nvlm_adamw_step and nvlm_adamw_multi_tensor_step (CPU twin: cpu/adamw.cpp): one AdamW step over
 * param, grad, m, v (n, f32) in torch.optim.AdamW's order of operations (single-tensor, non-fused path):
 *   p *= 1 − lr·wd;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
 *   p −= (lr / (1 − β1^step)) · m / (√v / √(1 − β2^step) + eps).
 *
 * The scalar factors (decay, step size, √ of the second bias correction) are computed on the host
 * in double exactly as the twin computes them, and adamw_update applies them to one element in fp32.
 * Its arithmetic is spelled with round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...) because nvcc
 * would otherwise contract a·b + c into one fused multiply-add, which rounds once where the twin rounds
 * twice (x86-64 builds have no FMA unless -march asks for it): with the intrinsics every operation
 * rounds like the twin's, in the twin's order, so on x86-64 hosts both backends produce the same bits.
 *
 * Single tensor: one elementwise grid-stride kernel. Several tensors (the optimiser's whole parameter
 * list): ONE launch, as PyTorch's multi_tensor_apply / fused AdamW. Every tensor is cut into chunks of
 * kChunk elements and each thread block updates one chunk; a table of the tensors (pointers, sizes)
 * and of the blocks (block → tensor, chunk) lives on the device and is uploaded only when it differs
 * from the previous call's (CudaBackend::kept_table): an optimiser that steps the same tensors every
 * time uploads it once. Each element sees the same adamw_update as in the single-tensor kernel.
 */
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 16384;  // elements per block of the multi-tensor kernel: 64 per thread

// The scalars of one step, computed on the host as the twin computes them.
struct AdamWFactors {
    float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, decay, step_size, bias_correction2_sqrt;
};

AdamWFactors adamw_factors(float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    const double steps = static_cast<double>(step);
    AdamWFactors f;
    f.beta1 = beta1;
    f.beta2 = beta2;
    f.one_minus_beta1 = 1.0f - beta1;
    f.one_minus_beta2 = 1.0f - beta2;
    f.eps = eps;
    f.decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
    f.step_size = static_cast<float>(lr / (1.0 - std::pow(static_cast<double>(beta1), steps)));
    f.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(beta2), steps)));
    return f;
}

// Element i of one tensor, in the twin's operations and order.
__device__ __forceinline__ void adamw_update(float* param, const float* grad, float* m, float* v, int64_t i,
                                             const AdamWFactors& f) {
    const float g = grad[i];
    // m = β1·m + (1−β1)·g;  v = β2·v + ((1−β2)·g)·g
    const float m_i = __fadd_rn(__fmul_rn(f.beta1, m[i]), __fmul_rn(f.one_minus_beta1, g));
    const float v_i = __fadd_rn(__fmul_rn(f.beta2, v[i]), __fmul_rn(__fmul_rn(f.one_minus_beta2, g), g));
    m[i] = m_i;
    v[i] = v_i;
    // denom = √v / √bc2 + eps;  p = p·decay − (step_size·m) / denom
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v_i), f.bias_correction2_sqrt), f.eps);
    param[i] = __fsub_rn(__fmul_rn(param[i], f.decay), __fdiv_rn(__fmul_rn(f.step_size, m_i), denom));
}

__global__ void adamw_step_kernel(float* param, const float* grad, float* m, float* v, int64_t n, AdamWFactors f) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        adamw_update(param, grad, m, v, i, f);
}

// The multi-tensor table: the tensors, then one entry per thread block.
struct TensorSlot {
    float* param;
    const float* grad;
    float* m;
    float* v;
    int64_t n;
};

struct ChunkSlot {
    int32_t tensor;  // index into the tensor slots
    int32_t chunk;   // elements [chunk·kChunk, min((chunk + 1)·kChunk, n)) of that tensor
};

static_assert(sizeof(TensorSlot) % alignof(ChunkSlot) == 0, "the chunk slots follow the tensor slots aligned");

// Block b updates chunk chunks[b] of its tensor.
__global__ void adamw_multi_tensor_kernel(const TensorSlot* tensors, const ChunkSlot* chunks, AdamWFactors f) {
    const ChunkSlot c = chunks[blockIdx.x];
    const TensorSlot t = tensors[c.tensor];
    const int64_t begin = static_cast<int64_t>(c.chunk) * kChunk;
    const int64_t end = begin + kChunk < t.n ? begin + kChunk : t.n;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) adamw_update(t.param, t.grad, t.m, t.v, i, f);
}

}  // namespace

nvlm_status CudaBackend::adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                                    float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    const OpScope scope(*this, "nvlm_adamw_step");
    if (n == 0) return NVLM_OK;
    adamw_step_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        param, grad, m, v, n, adamw_factors(lr, beta1, beta2, eps, weight_decay, step));
    return after_launch("nvlm_adamw_step");
}

nvlm_status CudaBackend::adamw_multi_tensor_step(float* const* params, const float* const* grads, float* const* m,
                                                 float* const* v, const int64_t* n, int64_t count, float lr,
                                                 float beta1, float beta2, float eps, float weight_decay,
                                                 int64_t step) {
    const char* op = "nvlm_adamw_multi_tensor_step";
    const OpScope scope(*this, op);
    if (count > INT32_MAX) return fail(NVLM_ERR_UNSUPPORTED, "%s: more than 2^31 - 1 tensors", op);
    std::vector<TensorSlot> tensors(static_cast<size_t>(count));
    std::vector<ChunkSlot> chunks;
    for (int64_t t = 0; t < count; t++) {
        tensors[t] = TensorSlot{params[t], grads[t], m[t], v[t], n[t]};
        const int64_t tensor_chunks = (n[t] + kChunk - 1) / kChunk;
        if (tensor_chunks > INT32_MAX || static_cast<int64_t>(chunks.size()) + tensor_chunks > INT32_MAX)
            return fail(NVLM_ERR_UNSUPPORTED, "%s: more than 2^31 - 1 chunks of %lld elements", op,
                        static_cast<long long>(kChunk));
        for (int64_t c = 0; c < tensor_chunks; c++)
            chunks.push_back(ChunkSlot{static_cast<int32_t>(t), static_cast<int32_t>(c)});
    }
    if (chunks.empty()) return NVLM_OK;  // no tensor or only empty ones

    const size_t tensor_bytes = tensors.size() * sizeof(TensorSlot), chunk_bytes = chunks.size() * sizeof(ChunkSlot);
    std::vector<unsigned char> table(tensor_bytes + chunk_bytes);
    std::memcpy(table.data(), tensors.data(), tensor_bytes);
    std::memcpy(table.data() + tensor_bytes, chunks.data(), chunk_bytes);
    void* device_table = nullptr;
    NVLM_TRY(kept_table(table.data(), table.size(), &device_table, op));
    const auto* device_tensors = static_cast<const TensorSlot*>(device_table);
    const auto* device_chunks =
        reinterpret_cast<const ChunkSlot*>(static_cast<const unsigned char*>(device_table) + tensor_bytes);
    adamw_multi_tensor_kernel<<<static_cast<unsigned>(chunks.size()), kThreads, 0, stream()>>>(
        device_tensors, device_chunks, adamw_factors(lr, beta1, beta2, eps, weight_decay, step));
    return after_launch(op);
}

}  // namespace nvlm::cuda
