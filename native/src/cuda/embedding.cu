/*
 * Token embedding and row index_copy, as ../cpu/embedding.cpp and ../cpu/index_copy.cpp define them:
 *   embedding_forward:   out (n, d) = table (vocab, d)[ids (n)];
 *   embedding_backward:  dtable (vocab, d) += dout (n, d) scattered to rows ids;
 *   index_copy_forward:  out (n_rows, d) = x with row index[i] replaced by src (n_src, d) row i;
 *   index_copy_backward: each dout row added to the one row it came from, of dx or of dsrc.
 *
 * Ids and indices are data on the device, yet the op must fail naming the first bad position
 * before it writes anything (the twin's contract; the tests check that nothing was added). So a
 * check kernel records the first bad position in scratch (atomicMin, hence the lowest position
 * whatever the thread order), and the host waits for the stream and reads it: the one
 * synchronisation in these ops. Only on failure does the host read the offending value back.
 *
 * index_copy's check also builds source_of_row (n_rows) in scratch: the lowest i with
 * index[i] == row, or kFromX. Position i is bad when index[i] is out of range or
 * source_of_row[index[i]] != i (an earlier position holds the same value) — exactly the first
 * failure the twin's in-order scan reports, with the same "repeats index[source]" partner.
 *
 * The copies are one thread per output (or dout) element with int64 index math, grid-stride.
 */
#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned long long kNone = ~0ull;   // no bad position found
constexpr unsigned long long kFromX = ~0ull;  // a row no index names keeps x's row

// first_bad = min t with ids[t] outside [0, vocab).
__global__ void embedding_find_bad_id_kernel(unsigned long long* first_bad, const int32_t* ids, int64_t n,
                                             int64_t vocab) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += stride)
        if (ids[t] < 0 || ids[t] >= vocab) atomicMin(first_bad, static_cast<unsigned long long>(t));
}

// out[t, j] = table[ids[t], j], e = t·d + j.
__global__ void embedding_forward_kernel(float* out, const float* table, const int32_t* ids, int64_t n, int64_t d) {
    const int64_t total = n * d;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int64_t t = e / d, j = e % d;
        out[e] = table[static_cast<int64_t>(ids[t]) * d + j];
    }
}

// dtable[ids[t], j] += dout[t, j]. Repeated ids send several dout rows to one table row, so the
// adds are atomic: their order (and the last bits of a repeated row) may vary from run to run.
__global__ void embedding_backward_kernel(float* dtable, const float* dout, const int32_t* ids, int64_t n, int64_t d) {
    const int64_t total = n * d;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int64_t t = e / d, j = e % d;
        atomicAdd(dtable + static_cast<int64_t>(ids[t]) * d + j, dout[e]);
    }
}

// source_of_row[index[i]] = min over the positions i naming that row (in-range indices only).
__global__ void index_copy_map_rows_kernel(unsigned long long* source_of_row, const int32_t* index, int64_t n_rows,
                                           int64_t n_src) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_src; i += stride)
        if (index[i] >= 0 && index[i] < n_rows)
            atomicMin(source_of_row + index[i], static_cast<unsigned long long>(i));
}

// first_bad = min i with index[i] out of range or repeating an earlier position's value.
__global__ void index_copy_find_bad_index_kernel(unsigned long long* first_bad, const unsigned long long* source_of_row,
                                                 const int32_t* index, int64_t n_rows, int64_t n_src) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_src; i += stride) {
        const bool outside = index[i] < 0 || index[i] >= n_rows;
        if (outside || source_of_row[index[i]] != static_cast<unsigned long long>(i))
            atomicMin(first_bad, static_cast<unsigned long long>(i));
    }
}

// out[row, j] = (source_of_row[row] == kFromX ? x[row] : src[source_of_row[row]])[j], e = row·d + j.
__global__ void index_copy_forward_kernel(float* out, const float* x, const float* src,
                                          const unsigned long long* source_of_row, int64_t n_rows, int64_t d) {
    const int64_t total = n_rows * d;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
        const unsigned long long source = source_of_row[e / d];
        out[e] = source == kFromX ? x[e] : src[static_cast<int64_t>(source) * d + e % d];
    }
}

// Each dout element goes to exactly one place (rows are distinct), so plain adds do not race.
__global__ void index_copy_backward_kernel(float* dx, float* dsrc, const float* dout,
                                           const unsigned long long* source_of_row, int64_t n_rows, int64_t d) {
    const int64_t total = n_rows * d;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
        const unsigned long long source = source_of_row[e / d];
        if (source == kFromX) {
            if (dx != nullptr) dx[e] += dout[e];
        } else if (dsrc != nullptr) {
            dsrc[static_cast<int64_t>(source) * d + e % d] += dout[e];
        }
    }
}

// Waits for the stream and reads the device value at `from` (the synchronisation the checks need).
template <class T>
nvlm_status read_back(const CudaBackend& backend, const char* op, T* to, const T* from) {
    NVLM_CUDA_TRY(op, cudaMemcpyAsync(to, from, sizeof(T), cudaMemcpyDeviceToHost, backend.stream()));
    NVLM_CUDA_TRY(op, cudaStreamSynchronize(backend.stream()));
    return NVLM_OK;
}

// Fails naming the first id outside [0, vocab), as the twin's message does, before any write.
nvlm_status check_ids(CudaBackend& backend, const char* op, const int32_t* ids, int64_t n, int64_t vocab) {
    void* buffer = nullptr;
    NVLM_TRY(backend.scratch(sizeof(unsigned long long), &buffer, op));
    auto* first_bad = static_cast<unsigned long long*>(buffer);
    NVLM_CUDA_TRY(op, cudaMemsetAsync(first_bad, 0xFF, sizeof(unsigned long long), backend.stream()));
    embedding_find_bad_id_kernel<<<grid_for(n, kThreads), kThreads, 0, backend.stream()>>>(first_bad, ids, n, vocab);
    NVLM_TRY(backend.after_launch(op));
    unsigned long long position = kNone;
    NVLM_TRY(read_back(backend, op, &position, first_bad));
    if (position == kNone) return NVLM_OK;
    int32_t id = 0;
    NVLM_TRY(read_back(backend, op, &id, ids + position));
    return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: ids[%lld] = %d is outside [0, %lld)", op,
                static_cast<long long>(position), id, static_cast<long long>(vocab));
}

// Builds source_of_row in scratch (returned through *source_of_row) and fails, as the twin's
// messages do, naming the first index out of range or repeating an earlier one.
nvlm_status map_rows(CudaBackend& backend, const char* op, const int32_t* index, int64_t n_rows, int64_t n_src,
                     const unsigned long long** source_of_row) {
    void* buffer = nullptr;
    const size_t nbytes = static_cast<size_t>(1 + n_rows) * sizeof(unsigned long long);
    NVLM_TRY(backend.scratch(nbytes, &buffer, op));
    auto* first_bad = static_cast<unsigned long long*>(buffer);
    unsigned long long* rows = first_bad + 1;
    // All ones: first_bad = kNone and every row kFromX.
    NVLM_CUDA_TRY(op, cudaMemsetAsync(buffer, 0xFF, nbytes, backend.stream()));
    if (n_src > 0) {
        index_copy_map_rows_kernel<<<grid_for(n_src, kThreads), kThreads, 0, backend.stream()>>>(rows, index, n_rows,
                                                                                                n_src);
        index_copy_find_bad_index_kernel<<<grid_for(n_src, kThreads), kThreads, 0, backend.stream()>>>(
            first_bad, rows, index, n_rows, n_src);
        NVLM_TRY(backend.after_launch(op));
        unsigned long long position = kNone;
        NVLM_TRY(read_back(backend, op, &position, first_bad));
        if (position != kNone) {
            int32_t value = 0;
            NVLM_TRY(read_back(backend, op, &value, index + position));
            if (value < 0 || value >= n_rows)
                return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: index[%lld] = %d is outside [0, n_rows = %lld)", op,
                            static_cast<long long>(position), value, static_cast<long long>(n_rows));
            unsigned long long source = 0;
            NVLM_TRY(read_back(backend, op, &source, rows + value));
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: index[%lld] = %d repeats index[%lld]", op,
                        static_cast<long long>(position), value, static_cast<long long>(source));
        }
    }
    *source_of_row = rows;
    return NVLM_OK;
}

}  // namespace

nvlm_status CudaBackend::embedding_forward(float* out, const float* table, const int32_t* ids, int64_t n,
                                           int64_t vocab, int64_t d) {
    const OpScope scope(*this, "nvlm_embedding_forward");
    if (n == 0) return NVLM_OK;
    NVLM_TRY(check_ids(*this, "nvlm_embedding_forward", ids, n, vocab));
    if (d == 0) return NVLM_OK;
    embedding_forward_kernel<<<grid_for(n * d, kThreads), kThreads, 0, stream()>>>(out, table, ids, n, d);
    return after_launch("nvlm_embedding_forward");
}

nvlm_status CudaBackend::embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n,
                                            int64_t vocab, int64_t d) {
    const OpScope scope(*this, "nvlm_embedding_backward");
    if (n == 0) return NVLM_OK;
    NVLM_TRY(check_ids(*this, "nvlm_embedding_backward", ids, n, vocab));
    if (d == 0) return NVLM_OK;
    embedding_backward_kernel<<<grid_for(n * d, kThreads), kThreads, 0, stream()>>>(dtable, dout, ids, n, d);
    return after_launch("nvlm_embedding_backward");
}

nvlm_status CudaBackend::index_copy_forward(float* out, const float* x, const float* src, const int32_t* index,
                                            int64_t n_rows, int64_t n_src, int64_t d) {
    const OpScope scope(*this, "nvlm_index_copy_forward");
    if (n_rows == 0) return NVLM_OK;  // then n_src = 0 too (the export checks n_src ≤ n_rows)
    const unsigned long long* source_of_row = nullptr;
    NVLM_TRY(map_rows(*this, "nvlm_index_copy_forward", index, n_rows, n_src, &source_of_row));
    if (d == 0) return NVLM_OK;
    index_copy_forward_kernel<<<grid_for(n_rows * d, kThreads), kThreads, 0, stream()>>>(out, x, src, source_of_row,
                                                                                        n_rows, d);
    return after_launch("nvlm_index_copy_forward");
}

nvlm_status CudaBackend::index_copy_backward(float* dx, float* dsrc, const float* dout, const int32_t* index,
                                             int64_t n_rows, int64_t n_src, int64_t d) {
    const OpScope scope(*this, "nvlm_index_copy_backward");
    if (n_rows == 0) return NVLM_OK;
    const unsigned long long* source_of_row = nullptr;
    NVLM_TRY(map_rows(*this, "nvlm_index_copy_backward", index, n_rows, n_src, &source_of_row));
    if (d == 0 || (dx == nullptr && dsrc == nullptr)) return NVLM_OK;
    index_copy_backward_kernel<<<grid_for(n_rows * d, kThreads), kThreads, 0, stream()>>>(dx, dsrc, dout,
                                                                                         source_of_row, n_rows, d);
    return after_launch("nvlm_index_copy_backward");
}

}  // namespace nvlm::cuda
