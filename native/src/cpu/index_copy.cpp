/*
 * Row index_copy, the merge of image features into token embeddings: out (n_rows, d) is x with
 * row index[i] replaced by src row i. Indices are distinct, so every output row has one source —
 * a row of x or a row of src — and backward sends each dout row back to that one source.
 *
 * Indices are data, so they are checked here (before anything is written): an index outside
 * [0, n_rows) or one repeating an earlier index fails naming its position and value.
 */
#include <algorithm>
#include <vector>

#include "../error.h"
#include "ops.h"

namespace nvlm::cpu {

namespace {

constexpr int64_t kFromX = -1;

// source_of_row (n_rows) = the src row i with index[i] == row, or kFromX where no index names it.
nvlm_status map_rows(const char* op, const int32_t* index, int64_t n_rows, int64_t n_src,
                     std::vector<int64_t>* source_of_row) {
    source_of_row->assign(static_cast<size_t>(n_rows), kFromX);
    for (int64_t i = 0; i < n_src; i++) {
        if (index[i] < 0 || index[i] >= n_rows)
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: index[%lld] = %d is outside [0, n_rows = %lld)", op,
                        static_cast<long long>(i), index[i], static_cast<long long>(n_rows));
        int64_t& source = (*source_of_row)[static_cast<size_t>(index[i])];
        if (source != kFromX)
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: index[%lld] = %d repeats index[%lld]", op,
                        static_cast<long long>(i), index[i], static_cast<long long>(source));
        source = i;
    }
    return NVLM_OK;
}

}  // namespace

nvlm_status index_copy_forward(float* out, const float* x, const float* src, const int32_t* index, int64_t n_rows,
                               int64_t n_src, int64_t d) {
    std::vector<int64_t> source_of_row;
    NVLM_TRY(map_rows("nvlm_index_copy_forward", index, n_rows, n_src, &source_of_row));
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < n_rows; row++) {
        const int64_t source = source_of_row[row];
        const float* from = source == kFromX ? x + row * d : src + source * d;
        std::copy(from, from + d, out + row * d);
    }
    return NVLM_OK;
}

// Each dout row goes to exactly one of dx and dsrc, and distinct rows to distinct places: no races.
nvlm_status index_copy_backward(float* dx, float* dsrc, const float* dout, const int32_t* index, int64_t n_rows,
                                int64_t n_src, int64_t d) {
    std::vector<int64_t> source_of_row;
    NVLM_TRY(map_rows("nvlm_index_copy_backward", index, n_rows, n_src, &source_of_row));
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < n_rows; row++) {
        const int64_t source = source_of_row[row];
        float* grad = source == kFromX ? dx : dsrc;  // the gradient of the tensor this row came from
        if (grad == nullptr) continue;
        float* to = grad + (source == kFromX ? row : source) * d;
        const float* g = dout + row * d;
        for (int64_t j = 0; j < d; j++) to[j] += g[j];
    }
    return NVLM_OK;
}

}  // namespace nvlm::cpu
