/*
 * Deterministic column sums over the rows of an (n, d) grid of terms, the reduction of weight and
 * bias gradients (norm.cu's dw and db, bias_add.cu's dbias):
 *   grad[j] += Σ_i term(i, j)
 * in two stages: blocks of kColumnTile columns × a chunk of rows write one partial sum per
 * (chunk, column) into the backend's scratch, then one thread per column adds its chunks' partials in
 * chunk order. The order of every addition is fixed, so a given input always gives the same bits.
 * Sums are fp32 (the CPU twin's add_column_sums accumulates in double; the parity tolerances cover it).
 */
#pragma once

#include <algorithm>

#include "backend.cuh"

namespace nvlm::cuda {

namespace {

constexpr int kColumnTile = 32;          // columns per block of the column sums (threadIdx.x)
constexpr int kRowLanes = 8;             // rows read at once per block of the column sums (threadIdx.y)
constexpr int64_t kMaxRowChunks = 1024;  // partial sums per column, at most
constexpr int64_t kMinChunkRows = 64;
constexpr int kColumnTotalThreads = 256;

// The term that sums a row-major (n, d) matrix's columns: term(i, j) = x[i·d + j].
struct MatrixEntries {
    const float* x;
    int64_t d;
    __device__ float operator()(int64_t i, int64_t j) const { return x[i * d + j]; }
};

// Stage 1: block (tile, chunk) writes partials[chunk·d + j] = Σ term(i, j) over the chunk's rows, for
// the 32 columns j of its tile (tiles grid-stride over blockIdx.x). Lane (x, y) sums rows y, y + 8, …;
// lane row 0 then adds the 8 lane sums in order.
template <class Term>
__global__ void column_partials_kernel(float* partials, Term term, int64_t n, int64_t d, int64_t chunk_rows) {
    __shared__ float lane_sums[kRowLanes][kColumnTile];
    const int64_t row_begin = static_cast<int64_t>(blockIdx.y) * chunk_rows;
    const int64_t row_end = min(n, row_begin + chunk_rows);
    for (int64_t tile = blockIdx.x; tile * kColumnTile < d; tile += gridDim.x) {
        const int64_t j = tile * kColumnTile + threadIdx.x;
        float acc = 0.0f;
        if (j < d)
            for (int64_t i = row_begin + threadIdx.y; i < row_end; i += kRowLanes) acc += term(i, j);
        lane_sums[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && j < d) {
            float sum = 0.0f;
            for (int lane = 0; lane < kRowLanes; lane++) sum += lane_sums[lane][threadIdx.x];
            partials[static_cast<int64_t>(blockIdx.y) * d + j] = sum;
        }
        __syncthreads();
    }
}

// Stage 2: grad[j] += Σ_chunk partials[chunk·d + j], chunks in order.
__global__ void column_totals_kernel(float* grad, const float* partials, int64_t chunks, int64_t d) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < d; j += stride) {
        float sum = 0.0f;
        for (int64_t chunk = 0; chunk < chunks; chunk++) sum += partials[chunk * d + j];
        grad[j] += sum;
    }
}

// grad (d) += Σ_i term(i, j) over the n rows (n ≥ 1), through the backend's scratch (chunks × d floats);
// checks its launches with the backend's after_launch.
template <class Term>
nvlm_status add_column_sums(CudaBackend& backend, const char* op, float* grad, Term term, int64_t n, int64_t d) {
    const int64_t chunk_rows = std::max(kMinChunkRows, (n + kMaxRowChunks - 1) / kMaxRowChunks);
    const int64_t chunks = (n + chunk_rows - 1) / chunk_rows;
    void* buffer = nullptr;
    NVLM_TRY(backend.scratch(static_cast<size_t>(chunks * d) * sizeof(float), &buffer, op));
    float* partials = static_cast<float*>(buffer);
    const int64_t tiles = (d + kColumnTile - 1) / kColumnTile;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tiles, 65535)), static_cast<unsigned>(chunks));
    column_partials_kernel<<<grid, dim3(kColumnTile, kRowLanes), 0, backend.stream()>>>(partials, term, n, d,
                                                                                       chunk_rows);
    column_totals_kernel<<<grid_for(d, kColumnTotalThreads), kColumnTotalThreads, 0, backend.stream()>>>(
        grad, partials, chunks, d);
    return backend.after_launch(op);
}

}  // namespace

}  // namespace nvlm::cuda
