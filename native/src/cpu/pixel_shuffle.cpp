/*
 * Idefics3Connector.pixel_shuffle with scale factor s: x (n, seq, d), seq = side², becomes
 * out (n, seq/s², d·s²). Patch (r, c) = (R·s + i, C·s + j) of the side×side grid lands in output
 * token R·(side/s) + C at channels [(i·s + j)·d, (i·s + j + 1)·d). Each input patch has exactly
 * one destination, so backward is the same map read the other way, added into dx.
 */
#include <cmath>

#include "ops.h"

namespace nvlm::cpu {

namespace {

// Visits every (input patch, output slot) pair of the map as (x offset, out offset), each
// covering d floats, one output token per iteration.
template <class Move>
void for_each_patch(int64_t n, int64_t seq, int64_t d, int64_t scale, Move move) {
    const int64_t side = std::llround(std::sqrt(static_cast<double>(seq)));
    const int64_t out_side = side / scale;
    const int64_t out_seq = out_side * out_side;
#pragma omp parallel for schedule(static)
    for (int64_t token = 0; token < n * out_seq; token++) {
        const int64_t b = token / out_seq, R = token % out_seq / out_side, C = token % out_side;
        for (int64_t i = 0; i < scale; i++)
            for (int64_t j = 0; j < scale; j++) {
                const int64_t patch = (R * scale + i) * side + (C * scale + j);
                move((b * seq + patch) * d, token * d * scale * scale + (i * scale + j) * d);
            }
    }
}

}  // namespace

void pixel_shuffle_forward(float* out, const float* x, int64_t n, int64_t seq, int64_t d, int64_t scale) {
    for_each_patch(n, seq, d, scale, [&](int64_t x_offset, int64_t out_offset) {
        for (int64_t e = 0; e < d; e++) out[out_offset + e] = x[x_offset + e];
    });
}

void pixel_shuffle_backward(float* dx, const float* dout, int64_t n, int64_t seq, int64_t d, int64_t scale) {
    for_each_patch(n, seq, d, scale, [&](int64_t x_offset, int64_t out_offset) {
        for (int64_t e = 0; e < d; e++) dx[x_offset + e] += dout[out_offset + e];
    });
}

}  // namespace nvlm::cpu
