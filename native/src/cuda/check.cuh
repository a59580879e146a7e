/*
 * CUDA runtime error handling for the CUDA backend: every runtime call and kernel launch goes
 * through these, turning a cudaError_t into an nvlm status with a message that names the export,
 * the failed call and the runtime's own error name and text.
 */
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../error.h"

namespace nvlm::cuda {

// cudaErrorMemoryAllocation becomes NVLM_ERR_OUT_OF_MEMORY, every other error NVLM_ERR_DEVICE.
inline nvlm_status check(cudaError_t error, const char* op, const char* call) {
    if (error == cudaSuccess) return NVLM_OK;
    const nvlm_status code = error == cudaErrorMemoryAllocation ? NVLM_ERR_OUT_OF_MEMORY : NVLM_ERR_DEVICE;
    return fail(code, "%s: %s failed: %s (%s)", op, call, cudaGetErrorName(error), cudaGetErrorString(error));
}

// CUBLAS_STATUS_* as text (cuBLAS 11 has no cublasGetStatusName).
const char* cublas_status_name(cublasStatus_t status);

// A cuBLAS call's failure as NVLM_ERR_DEVICE naming the export and the call.
inline nvlm_status check(cublasStatus_t status, const char* op, const char* call) {
    if (status == CUBLAS_STATUS_SUCCESS) return NVLM_OK;
    return fail(NVLM_ERR_DEVICE, "%s: %s failed: %s", op, call, cublas_status_name(status));
}

}  // namespace nvlm::cuda

// Runs a CUDA runtime call and returns its failure from the enclosing function; op names the
// export, e.g. NVLM_CUDA_TRY("nvlm_buffer_upload", cudaMemcpyAsync(...)).
#define NVLM_CUDA_TRY(op, call) NVLM_TRY(::nvlm::cuda::check((call), (op), #call))

// Placed right after a kernel launch: reports a launch that failed (bad configuration, or an
// earlier asynchronous error surfacing now) as the op's failure.
#define NVLM_CUDA_CHECK_LAUNCH(op) NVLM_TRY(::nvlm::cuda::check(cudaGetLastError(), (op), "kernel launch"))
