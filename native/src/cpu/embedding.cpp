/*
 * Token embedding: a row gather from the table, and its scatter-add backward.
 *
 * Ids are data, so they are checked here (before anything is written): an id outside
 * [0, vocab) fails naming its position.
 */
#include <algorithm>

#include "../error.h"
#include "ops.h"
#include "parallel.h"

namespace nvlm::cpu {

namespace {

nvlm_status check_ids(const char* op, const int32_t* ids, int64_t n, int64_t vocab) {
    for (int64_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= vocab)
            return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: ids[%lld] = %d is outside [0, %lld)", op,
                        static_cast<long long>(t), ids[t], static_cast<long long>(vocab));
    return NVLM_OK;
}

}  // namespace

// out (n, d) = table (vocab, d)[ids (n)].
nvlm_status embedding_forward(float* out, const float* table, const int32_t* ids, int64_t n, int64_t vocab, int64_t d) {
    NVLM_TRY(check_ids("nvlm_embedding_forward", ids, n, vocab));
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n; t++) {
        const float* row = table + ids[t] * d;
        std::copy(row, row + d, out + t * d);
    }
    return NVLM_OK;
}

// dtable (vocab, d) += dout (n, d) scattered to rows ids (n). Repeated ids add up; each thread
// owns a range of columns, so repeated ids never race.
nvlm_status embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t n, int64_t vocab,
                               int64_t d) {
    NVLM_TRY(check_ids("nvlm_embedding_backward", ids, n, vocab));
#pragma omp parallel
    {
        int64_t begin, end;
        thread_range(d, &begin, &end);
        for (int64_t t = 0; t < n; t++) {
            float* row = dtable + ids[t] * d;
            const float* g = dout + t * d;
            for (int64_t j = begin; j < end; j++) row[j] += g[j];
        }
    }
    return NVLM_OK;
}

}  // namespace nvlm::cpu
