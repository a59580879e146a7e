/*
 * Elementwise ops over n floats: GELU (tanh approximation), SwiGLU, residual add, scale, and the
 * full sum. Forward outputs may alias their inputs.
 */
#include <cmath>

#include "ops.h"

namespace nvlm::cpu {

namespace {
constexpr float kGeluBeta = 0.7978845608028654f;  // √(2/π)
constexpr float kGeluKappa = 0.044715f;

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
}  // namespace

// out = 0.5·x·(1 + tanh(β·(x + κ·x³))).
void gelu_forward(float* out, const float* x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i];
        out[i] = 0.5f * xi * (1.0f + std::tanh(kGeluBeta * (xi + kGeluKappa * xi * xi * xi)));
    }
}

// d/dx = 0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·β·(1 + 3κ·x²), u = β·(x + κ·x³), as torch's
// gelu_backward(approximate="tanh") computes it.
void gelu_backward(float* dx, const float* dout, const float* x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i];
        const float tanh_u = std::tanh(kGeluBeta * (xi + kGeluKappa * xi * xi * xi));
        const float left_derivative = 0.5f * (1.0f + tanh_u);
        const float right_derivative =
            0.5f * xi * (1.0f - tanh_u * tanh_u) * kGeluBeta * (1.0f + 3.0f * kGeluKappa * xi * xi);
        dx[i] += dout[i] * (left_derivative + right_derivative);
    }
}

// out = silu(gate)·up, silu(g) = g·σ(g).
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

// dgate += dout·up·σ(g)·(1 + g·(1 − σ(g)));  dup += dout·silu(g).
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i], s = sigmoid(g);
        if (dgate != nullptr) dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup != nullptr) dup[i] += dout[i] * g * s;
    }
}

void residual_forward(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_backward(float* da, float* db, const float* dout, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        if (da != nullptr) da[i] += dout[i];
        if (db != nullptr) db[i] += dout[i];
    }
}

void scale_forward(float* out, const float* x, float alpha, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = alpha * x[i];
}

void scale_backward(float* dx, const float* dout, float alpha, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dx[i] += alpha * dout[i];
}

// out[0] = Σ x, accumulated in double.
void sum_forward(float* out, const float* x, int64_t n) {
    double sum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) sum += x[i];
    out[0] = static_cast<float>(sum);
}

void sum_backward(float* dx, const float* dout, int64_t n) {
    const float g = dout[0];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dx[i] += g;
}

}  // namespace nvlm::cpu
