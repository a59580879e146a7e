/*
 * nvlm_cast (CPU twin: cpu/cast.cpp): dst (n) = src (n) converted, for
 *   f32 → bf16  round to nearest even on the bits; a NaN becomes the quiet NaN 0x7FC0 with its sign,
 *   bf16 → f32  exact: the bf16 bits are the upper half of the f32,
 *   identity    a device-to-device copy of the n elements.
 * The conversions are elementwise grid-stride kernels, one element per thread per step. They use
 * the twin's bit manipulation (bf16.cuh) rather than __float2bfloat16, so both backends give the
 * same bits for every input, NaN payloads included, without depending on a library's NaN convention.
 * The f32 → bf16 kernel is also CudaBackend::to_bf16, with which the BF16 math mode (gemm.cu,
 * lm_logprob.cu) rounds its operands.
 */
#include "backend.cuh"
#include "bf16.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;

size_t dtype_size(nvlm_dtype dtype) {
    switch (dtype) {
        case NVLM_F32:
        case NVLM_I32: return 4;
        case NVLM_BF16: return 2;
        case NVLM_U8: return 1;
    }
    return 0;
}

__global__ void cast_f32_to_bf16_kernel(uint16_t* out, const float* in, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[i] = f32_to_bf16_bits(in[i]);
}

__global__ void cast_bf16_to_f32_kernel(float* out, const uint16_t* in, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[i] = bf16_bits_to_f32(in[i]);
}

}  // namespace

nvlm_status CudaBackend::to_bf16(uint16_t* out, const float* in, int64_t n, const char* op) const {
    if (n == 0) return NVLM_OK;
    cast_f32_to_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(out, in, n);
    NVLM_CUDA_CHECK_LAUNCH(op);
    return NVLM_OK;
}

nvlm_status CudaBackend::cast(void* dst, nvlm_dtype dst_dtype, const void* src, nvlm_dtype src_dtype, int64_t n) {
    const OpScope scope(*this, "nvlm_cast");
    if (n == 0) return NVLM_OK;
    if (dst_dtype == src_dtype) {
        // The twin's memmove of a buffer onto itself is a no-op; cudaMemcpy needs distinct regions.
        if (dst != src)
            NVLM_CUDA_TRY("nvlm_cast", cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * dtype_size(dst_dtype),
                                                       cudaMemcpyDeviceToDevice, stream()));
    } else if (src_dtype == NVLM_F32) {
        NVLM_TRY(to_bf16(static_cast<uint16_t*>(dst), static_cast<const float*>(src), n, "nvlm_cast"));
    } else {
        // The export admits only f32 ↔ bf16 besides identities, so this is bf16 → f32.
        cast_bf16_to_f32_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
            static_cast<float*>(dst), static_cast<const uint16_t*>(src), n);
    }
    return after_launch("nvlm_cast");
}

}  // namespace nvlm::cuda
