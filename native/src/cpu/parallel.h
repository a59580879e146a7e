/*
 * OpenMP helpers of the CPU backend; without OpenMP everything runs on one thread.
 *
 * Rule of the CPU kernels: nothing inside a parallel region allocates or throws (an exception
 * escaping a region would terminate the process), so workspaces are sized with max_threads()
 * before the region and indexed with thread_index() inside it.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(_OPENMP)
#  include <omp.h>
#endif

namespace nvlm::cpu {

inline int max_threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

inline int thread_index() {
#if defined(_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

inline int thread_count() {
#if defined(_OPENMP)
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// The calling thread's contiguous share [begin, end) of n items inside a parallel region, used
// where each thread must own whole columns of a reduction over rows.
inline void thread_range(int64_t n, int64_t* begin, int64_t* end) {
    const int64_t threads = thread_count();
    const int64_t index = thread_index();
    *begin = n * index / threads;
    *end = n * (index + 1) / threads;
}

// out[j] += Σ_i term(i, j) over a (rows, cols) grid, the column reductions of weight and bias
// gradients. Accumulates in double; each thread owns a contiguous range of columns and walks the
// rows in order, so no two threads share an accumulator and memory is read row by row.
template <class Term>
void add_column_sums(float* out, int64_t rows, int64_t cols, Term term) {
    std::vector<double> acc(static_cast<size_t>(cols), 0.0);
#pragma omp parallel
    {
        int64_t begin, end;
        thread_range(cols, &begin, &end);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = begin; j < end; j++) acc[j] += term(i, j);
        for (int64_t j = begin; j < end; j++) out[j] += static_cast<float>(acc[j]);
    }
}

}  // namespace nvlm::cpu
