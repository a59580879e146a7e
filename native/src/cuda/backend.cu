/*
 * The CUDA backend: device memory and transfers on one stream per context. Ops are not written
 * yet, so every op reports NVLM_ERR_UNSUPPORTED through the Backend defaults.
 *
 * All work of a context is queued on its own non-blocking stream, in call order. Uploads read
 * ordinary (pageable, not cudaHostRegister-ed) host memory, from which cudaMemcpyAsync returns
 * only once the source has been staged, so the caller may reuse it at once; downloads wait for
 * the copy. Every method first makes the context's device current, because one host thread may
 * drive contexts on several devices.
 */
#include "../backend.h"
#include "check.cuh"

namespace nvlm {

namespace {

class CudaBackend final : public Backend {
public:
    CudaBackend(int32_t device, cudaStream_t stream) : device_(device), stream_(stream) {}

    // A destructor cannot report, so errors while tearing down are dropped.
    ~CudaBackend() override {
        cudaSetDevice(device_);
        cudaStreamDestroy(stream_);
    }

    const char* name() const override { return "CUDA"; }

    nvlm_status alloc(size_t nbytes, void** ptr) override {
        NVLM_CUDA_TRY("nvlm_buffer_alloc", cudaSetDevice(device_));
        const cudaError_t error = cudaMalloc(ptr, nbytes);
        if (error != cudaSuccess) cudaGetLastError();  // an out-of-memory must not surface at the next launch
        return cuda::check(error, "nvlm_buffer_alloc", "cudaMalloc");
    }

    void release(void* ptr) override {
        cudaSetDevice(device_);
        cudaFree(ptr);
    }

    nvlm_status upload(void* dst, const void* src, size_t nbytes) override {
        NVLM_CUDA_TRY("nvlm_buffer_upload", cudaSetDevice(device_));
        NVLM_CUDA_TRY("nvlm_buffer_upload", cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream_));
        return NVLM_OK;
    }

    nvlm_status download(void* dst, const void* src, size_t nbytes) override {
        NVLM_CUDA_TRY("nvlm_buffer_download", cudaSetDevice(device_));
        NVLM_CUDA_TRY("nvlm_buffer_download", cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream_));
        NVLM_CUDA_TRY("nvlm_buffer_download", cudaStreamSynchronize(stream_));
        return NVLM_OK;
    }

    nvlm_status copy(void* dst, const void* src, size_t nbytes) override {
        NVLM_CUDA_TRY("nvlm_buffer_copy", cudaSetDevice(device_));
        NVLM_CUDA_TRY("nvlm_buffer_copy", cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream_));
        return NVLM_OK;
    }

    nvlm_status zero(void* dst, size_t nbytes) override {
        NVLM_CUDA_TRY("nvlm_buffer_zero", cudaSetDevice(device_));
        NVLM_CUDA_TRY("nvlm_buffer_zero", cudaMemsetAsync(dst, 0, nbytes, stream_));
        return NVLM_OK;
    }

    nvlm_status synchronize() override {
        NVLM_CUDA_TRY("nvlm_context_synchronize", cudaSetDevice(device_));
        NVLM_CUDA_TRY("nvlm_context_synchronize", cudaStreamSynchronize(stream_));
        return NVLM_OK;
    }

private:
    const int32_t device_;
    const cudaStream_t stream_;
};

}  // namespace

nvlm_status cuda_device_count(int32_t* count) {
    int devices = 0;
    const cudaError_t error = cudaGetDeviceCount(&devices);
    if (error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver) {
        cudaGetLastError();
        *count = 0;
        return NVLM_OK;
    }
    NVLM_TRY(cuda::check(error, "nvlm_device_count", "cudaGetDeviceCount"));
    *count = devices;
    return NVLM_OK;
}

nvlm_status create_cuda_backend(int32_t device, std::unique_ptr<Backend>* out) {
    NVLM_CUDA_TRY("nvlm_context_create", cudaSetDevice(device));
    cudaStream_t stream = nullptr;
    NVLM_CUDA_TRY("nvlm_context_create", cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    try {
        *out = std::make_unique<CudaBackend>(device, stream);
    } catch (...) {
        cudaStreamDestroy(stream);
        throw;
    }
    return NVLM_OK;
}

}  // namespace nvlm
