/*
 * The CUDA backend: device memory and transfers on one stream per context, cuBLAS bound to that
 * stream, NVTX ranges, and the launch checks every op ends with. The ops live in the other .cu
 * files of this folder, one per family (backend.cuh lists which).
 *
 * All work of a context is queued on its own non-blocking stream, in call order. Uploads read
 * ordinary (pageable, not cudaHostRegister-ed) host memory, from which cudaMemcpyAsync returns
 * only once the source has been staged, so the caller may reuse it at once; downloads wait for
 * the copy. Every method first makes the context's device current, because one host thread may
 * drive contexts on several devices.
 */
#include "backend.cuh"

#include <cstdlib>
#include <cstring>
#include <memory>

#include <nvtx3/nvToolsExt.h>

namespace nvlm {

namespace cuda {

CudaBackend::CudaBackend(int32_t device, cudaStream_t stream, cublasHandle_t cublas, bool sync_each_op)
    : device_(device), stream_(stream), cublas_(cublas), sync_each_op_(sync_each_op) {}

// A destructor cannot report, so errors while tearing down are dropped.
CudaBackend::~CudaBackend() {
    cudaSetDevice(device_);
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (table_ != nullptr) cudaFree(table_);
    cublasDestroy(cublas_);
    cudaStreamDestroy(stream_);
}

nvlm_status CudaBackend::alloc(size_t nbytes, void** ptr) {
    NVLM_CUDA_TRY("nvlm_buffer_alloc", cudaSetDevice(device_));
    const cudaError_t error = cudaMalloc(ptr, nbytes);
    if (error != cudaSuccess) cudaGetLastError();  // an out-of-memory must not surface at the next launch
    return check(error, "nvlm_buffer_alloc", "cudaMalloc");
}

void CudaBackend::release(void* ptr) {
    cudaSetDevice(device_);
    cudaFree(ptr);
}

nvlm_status CudaBackend::upload(void* dst, const void* src, size_t nbytes) {
    NVLM_CUDA_TRY("nvlm_buffer_upload", cudaSetDevice(device_));
    NVLM_CUDA_TRY("nvlm_buffer_upload", cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream_));
    return NVLM_OK;
}

nvlm_status CudaBackend::download(void* dst, const void* src, size_t nbytes) {
    NVLM_CUDA_TRY("nvlm_buffer_download", cudaSetDevice(device_));
    NVLM_CUDA_TRY("nvlm_buffer_download", cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream_));
    NVLM_CUDA_TRY("nvlm_buffer_download", cudaStreamSynchronize(stream_));
    return NVLM_OK;
}

nvlm_status CudaBackend::copy(void* dst, const void* src, size_t nbytes) {
    NVLM_CUDA_TRY("nvlm_buffer_copy", cudaSetDevice(device_));
    NVLM_CUDA_TRY("nvlm_buffer_copy", cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream_));
    return NVLM_OK;
}

nvlm_status CudaBackend::zero(void* dst, size_t nbytes) {
    NVLM_CUDA_TRY("nvlm_buffer_zero", cudaSetDevice(device_));
    NVLM_CUDA_TRY("nvlm_buffer_zero", cudaMemsetAsync(dst, 0, nbytes, stream_));
    return NVLM_OK;
}

nvlm_status CudaBackend::synchronize() {
    NVLM_CUDA_TRY("nvlm_context_synchronize", cudaSetDevice(device_));
    NVLM_CUDA_TRY("nvlm_context_synchronize", cudaStreamSynchronize(stream_));
    return NVLM_OK;
}

void CudaBackend::range_push(const char* name) { nvtxRangePushA(name); }

void CudaBackend::range_pop() { nvtxRangePop(); }

nvlm_status CudaBackend::after_launch(const char* op) const {
    NVLM_TRY(check(cudaGetLastError(), op, "kernel launch"));
    if (sync_each_op_) NVLM_TRY(check(cudaStreamSynchronize(stream_), op, "kernel (NVLM_CUDA_SYNC=1)"));
    return NVLM_OK;
}

nvlm_status CudaBackend::scratch(size_t nbytes, void** ptr, const char* op) {
    if (nbytes > scratch_bytes_) {
        // cudaFree waits for the device, so kernels still reading the old scratch finish first.
        if (scratch_ != nullptr) NVLM_TRY(check(cudaFree(scratch_), op, "cudaFree(scratch)"));
        scratch_ = nullptr;
        scratch_bytes_ = 0;
        const cudaError_t error = cudaMalloc(&scratch_, nbytes);
        if (error != cudaSuccess) {
            cudaGetLastError();
            return check(error, op, "cudaMalloc(scratch)");
        }
        scratch_bytes_ = nbytes;
    }
    *ptr = scratch_;
    return NVLM_OK;
}

nvlm_status CudaBackend::kept_table(const void* host, size_t nbytes, void** ptr, const char* op) {
    const auto* bytes = static_cast<const unsigned char*>(host);
    const bool same = table_host_.size() == nbytes && std::memcmp(table_host_.data(), bytes, nbytes) == 0;
    if (!same) {
        if (nbytes > table_capacity_) {
            // cudaFree waits for the device, so kernels still reading the old table finish first.
            if (table_ != nullptr) NVLM_TRY(check(cudaFree(table_), op, "cudaFree(table)"));
            table_ = nullptr;
            table_capacity_ = 0;
            table_host_.clear();
            const cudaError_t error = cudaMalloc(&table_, nbytes);
            if (error != cudaSuccess) {
                cudaGetLastError();
                return check(error, op, "cudaMalloc(table)");
            }
            table_capacity_ = nbytes;
        }
        // The host copy is the upload's source: it stays unchanged until the next call, and a copy from
        // pageable memory is staged before cudaMemcpyAsync returns anyway. Kernels of earlier calls that
        // still read the table run before the copy, on the same stream.
        table_host_.assign(bytes, bytes + nbytes);
        const cudaError_t error =
            cudaMemcpyAsync(table_, table_host_.data(), nbytes, cudaMemcpyHostToDevice, stream_);
        if (error != cudaSuccess) {
            table_host_.clear();  // the device copy is unknown: upload again next time
            return check(error, op, "cudaMemcpyAsync(table)");
        }
    }
    *ptr = table_;
    return NVLM_OK;
}

OpScope::OpScope(const CudaBackend& backend, const char* op) {
    cudaSetDevice(backend.device());
    nvtxRangePushA(op);
}

OpScope::~OpScope() { nvtxRangePop(); }

const char* cublas_status_name(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        default: return "cuBLAS error";
    }
}

}  // namespace cuda

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
    cublasHandle_t cublas = nullptr;
    cublasStatus_t status = cublasCreate(&cublas);
    if (status == CUBLAS_STATUS_SUCCESS) status = cublasSetStream(cublas, stream);
    if (status != CUBLAS_STATUS_SUCCESS) {
        if (cublas != nullptr) cublasDestroy(cublas);
        cudaStreamDestroy(stream);
        return fail(NVLM_ERR_DEVICE, "nvlm_context_create: cuBLAS initialisation failed: %s",
                    cuda::cublas_status_name(status));
    }
    const char* sync = std::getenv("NVLM_CUDA_SYNC");
    const bool sync_each_op = sync != nullptr && std::strcmp(sync, "1") == 0;
    try {
        *out = std::make_unique<cuda::CudaBackend>(device, stream, cublas, sync_each_op);
    } catch (...) {
        cublasDestroy(cublas);
        cudaStreamDestroy(stream);
        throw;
    }
    return NVLM_OK;
}

}  // namespace nvlm
