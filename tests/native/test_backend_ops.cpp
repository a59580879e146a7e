/*
 * test_backend_ops.cpp — parity of the CUDA backend with the CPU twin through the C ABI of nvlm.h,
 * in the manner of ggml's test-backend-ops.
 *
 *   nvlm_test_backend_ops [--cpu-only] [--filter SUBSTR] [--markdown FILE] [--list]
 *
 * Every case builds fresh random inputs (seeded by a hash of the case's name), runs one op of nvlm.h
 * on a CUDA context and on a CPU context, downloads the results and compares them with the CPU as
 * the reference. Forward outputs are poisoned with 0xFF bytes (NaN for floats) before the call on
 * both backends, so an element an op forgets to write fails; gradient outputs are pre-filled with
 * the same random values on both, so the "backward ADDS into its gradients" contract is checked.
 * Backward cases take their saved tensors (lse, out, rstd, mean, quantised weights) from the CPU's
 * forward, so both backends see identical inputs and a mismatch points at the backward alone.
 *
 * Tolerances. Where both backends must do the same correctly rounded operations (index permutations,
 * gathers, one add per element, casts, the NF4 format) the comparison is bit-exact. Elsewhere each
 * element gets |cuda − cpu| ≤ tol_i, with tol_i derived next to each case from the standard fp32 error
 * bound: a sum of K terms computed in any order is off by at most γ_K·Σ|terms| ≈ K·u·Σ|terms|
 * (u = 2^-24, the fp32 unit roundoff), and the two backends together by twice that. Σ|terms| is
 * computed on the host in double from the inputs; these are worst-case bounds, so a passing op
 * usually uses a few percent of its tolerance ("used" in the output), while a wrong index or a
 * missing term is off by O(1) relative to the terms and fails.
 *
 * With --cpu-only, or without a CUDA device (exit 77, "skipped"), the candidate is a second CPU
 * context: a self-test of the harness, in which every case must pass (bit-identically, since the
 * CPU backend is deterministic).
 */
#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nvlm.h"

namespace {

constexpr double kU = 0x1p-24;      // fp32 unit roundoff: one rounding is off by ≤ u·|result|
constexpr double kBf16U = 0x1p-8;   // bf16 unit roundoff (8 significand bits)
constexpr uint8_t kPoison = 0xFF;   // every f32 / bf16 made of it is a NaN no op produces
constexpr int32_t kIgnoreIndex = -100;

// ---- random inputs --------------------------------------------------------------------------------

// FNV-1a of the case name: every case gets its own fixed seed, independent of which cases run.
uint64_t seed_of(const std::string& name) {
    uint64_t hash = 1469598103934665603ull;
    for (unsigned char c : name) hash = (hash ^ c) * 1099511628211ull;
    return hash;
}

class Random {
public:
    explicit Random(uint64_t seed) : engine_(seed) {}

    std::vector<float> uniform(int64_t n, float lo, float hi) {
        std::uniform_real_distribution<float> dist(lo, hi);
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = dist(engine_);
        return v;
    }

    std::vector<float> normal(int64_t n, float mean, float sd) {
        std::normal_distribution<float> dist(mean, sd);
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = dist(engine_);
        return v;
    }

    // n integers in [lo, hi].
    std::vector<int32_t> integers(int64_t n, int32_t lo, int32_t hi) {
        std::uniform_int_distribution<int32_t> dist(lo, hi);
        std::vector<int32_t> v(static_cast<size_t>(n));
        for (int32_t& x : v) x = dist(engine_);
        return v;
    }

    // count distinct integers of [0, range) in random order.
    std::vector<int32_t> distinct(int64_t count, int64_t range) {
        std::vector<int32_t> all(static_cast<size_t>(range));
        std::iota(all.begin(), all.end(), 0);
        std::shuffle(all.begin(), all.end(), engine_);
        all.resize(static_cast<size_t>(count));
        return all;
    }

    // n bytes, each 1 with probability keep.
    std::vector<uint8_t> mask(int64_t n, double keep) {
        std::bernoulli_distribution dist(keep);
        std::vector<uint8_t> v(static_cast<size_t>(n));
        for (uint8_t& x : v) x = dist(engine_) ? 1 : 0;
        return v;
    }

private:
    std::mt19937_64 engine_;
};

// ---- what a case compares and how -----------------------------------------------------------------

// Exact: the bytes must be equal. Otherwise |cuda − cpu| ≤ atol + rtol·|cpu| + bound[i] per element.
struct Check {
    bool exact = false;
    double atol = 0.0, rtol = 0.0;
    std::vector<double> bound;  // per-element absolute term; empty when the case has none
    std::string rule;           // the tolerance as the report prints it

    double at(size_t i, double reference) const {  // (an infinite reference has no relative term)
        return atol + (rtol != 0.0 ? rtol * std::fabs(reference) : 0.0) + (bound.empty() ? 0.0 : bound[i]);
    }
};

Check exact() { return Check{true, 0.0, 0.0, {}, "exact"}; }

Check relative(double atol, double rtol, std::string rule) { return Check{false, atol, rtol, {}, std::move(rule)}; }

// tol_i = factor · magnitude_i, magnitude from the inputs on the host.
Check scaled(const std::vector<double>& magnitude, double factor, std::string rule) {
    std::vector<double> bound(magnitude.size());
    for (size_t i = 0; i < bound.size(); i++) bound[i] = factor * magnitude[i];
    return Check{false, 0.0, 0.0, std::move(bound), std::move(rule)};
}

// A sum of K terms (plus up to two more roundings: a scale, an add into the gradient), in any order,
// on two backends: |Δ| ≤ 2·(K+2)·u·Σ|terms|, with Σ|terms| (abs_sum) computed on the host.
Check sum_bound(const std::vector<double>& abs_sum, int64_t terms) {
    return scaled(abs_sum, 2.0 * static_cast<double>(terms + 2) * kU,
                  "2(K+2)u*sum|terms| K=" + std::to_string(terms));
}

// A tensor of a case: uploaded identically to both backends (init), or poisoned (init empty).
struct Tensor {
    std::string name;
    nvlm_dtype dtype;
    int64_t count;
    std::vector<uint8_t> init;
    bool compared;
    Check check;
};

int64_t dtype_size(nvlm_dtype dtype) { return dtype == NVLM_BF16 ? 2 : dtype == NVLM_U8 ? 1 : 4; }

template <class T>
std::vector<uint8_t> bytes_of(const std::vector<T>& values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(T));
    if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
}

template <class T>
std::vector<T> values_of(const std::vector<uint8_t>& bytes) {
    std::vector<T> values(bytes.size() / sizeof(T));
    if (!values.empty()) std::memcpy(values.data(), bytes.data(), values.size() * sizeof(T));
    return values;
}

using Buffers = std::vector<nvlm_buffer*>;

// A tensor index, or −1 for a null argument (a gradient that is not wanted).
nvlm_buffer* maybe(const Buffers& buffers, int index) { return index < 0 ? nullptr : buffers[index]; }

struct Case {
    std::vector<Tensor> tensors;
    std::function<nvlm_status(nvlm_context*, const Buffers&)> call;  // buffers[i] holds tensors[i]
    int32_t math = NVLM_MATH_F32;  // the contexts' math mode during the call (nvlm_math_mode)

    template <class T>
    int input(const std::string& name, nvlm_dtype dtype, const std::vector<T>& values) {
        const int64_t count = static_cast<int64_t>(values.size() * sizeof(T)) / dtype_size(dtype);
        tensors.push_back(Tensor{name, dtype, count, bytes_of(values), false, Check{}});
        return static_cast<int>(tensors.size()) - 1;
    }
    int input(const std::string& name, const std::vector<float>& values) { return input(name, NVLM_F32, values); }

    // A forward output: poisoned on both backends, then compared.
    int output(const std::string& name, nvlm_dtype dtype, int64_t count, Check check) {
        tensors.push_back(Tensor{name, dtype, count, {}, true, std::move(check)});
        return static_cast<int>(tensors.size()) - 1;
    }
    int output(const std::string& name, int64_t count, Check check) {
        return output(name, NVLM_F32, count, std::move(check));
    }

    // An accumulated output (a gradient, matmul's c with beta ≠ 0, an optimiser state): the same
    // values on both backends before the call, then compared.
    int accumulated(const std::string& name, const std::vector<float>& values, Check check) {
        tensors.push_back(Tensor{name, NVLM_F32, static_cast<int64_t>(values.size()), bytes_of(values), true,
                                 std::move(check)});
        return static_cast<int>(tensors.size()) - 1;
    }
};

// A case by name; built only when it runs (some builders run the CPU's forward for saved tensors).
struct CaseSpec {
    std::string name;
    std::function<Case(Random&, nvlm_context* cpu)> build;
};

// ---- running a case on one backend ----------------------------------------------------------------

struct Run {
    bool ok = true;
    std::string error;                         // the failing call and nvlm_last_error()
    std::vector<std::vector<uint8_t>> results;  // per tensor; empty for the inputs
};

std::string failure(const char* what, nvlm_status status) {
    return std::string(what) + " returned " + std::to_string(static_cast<int>(status)) + ": " + nvlm_last_error();
}

Run run_case(nvlm_context* ctx, const Case& c) {
    Run run;
    Buffers buffers(c.tensors.size(), nullptr);
    auto release = [&] {
        for (nvlm_buffer* buffer : buffers) nvlm_buffer_free(buffer);
    };
    auto fail = [&](const char* what, nvlm_status status) {
        run.ok = false;
        run.error = failure(what, status);
        release();
        return run;
    };
    for (size_t i = 0; i < c.tensors.size(); i++) {
        const Tensor& t = c.tensors[i];
        const int64_t nbytes = t.count * dtype_size(t.dtype);
        nvlm_status status = nvlm_buffer_alloc(ctx, nbytes, &buffers[i]);
        if (status != NVLM_OK) return fail("nvlm_buffer_alloc", status);
        const std::vector<uint8_t> poison(t.init.empty() ? static_cast<size_t>(nbytes) : 0, kPoison);
        status = nvlm_buffer_upload(buffers[i], 0, t.init.empty() ? poison.data() : t.init.data(), nbytes);
        if (status != NVLM_OK) return fail("nvlm_buffer_upload", status);
    }
    nvlm_status status = nvlm_context_set_math_mode(ctx, c.math);
    if (status != NVLM_OK) return fail("nvlm_context_set_math_mode", status);
    status = c.call(ctx, buffers);
    const nvlm_status reset = nvlm_context_set_math_mode(ctx, NVLM_MATH_F32);
    if (status != NVLM_OK) return fail("the op", status);
    if (reset != NVLM_OK) return fail("nvlm_context_set_math_mode", reset);
    status = nvlm_context_synchronize(ctx);
    if (status != NVLM_OK) return fail("nvlm_context_synchronize", status);
    run.results.resize(c.tensors.size());
    for (size_t i = 0; i < c.tensors.size(); i++) {
        const Tensor& t = c.tensors[i];
        if (!t.compared) continue;
        run.results[i].resize(static_cast<size_t>(t.count * dtype_size(t.dtype)));
        status = nvlm_buffer_download(buffers[i], 0, run.results[i].data(), static_cast<int64_t>(run.results[i].size()));
        if (status != NVLM_OK) return fail("nvlm_buffer_download", status);
    }
    release();
    return run;
}

// The CPU's results of a forward case, which a backward case takes as its saved tensors.
Run reference_run(nvlm_context* cpu, const Case& c) {
    Run run = run_case(cpu, c);
    if (!run.ok) throw std::runtime_error("reference forward on the CPU: " + run.error);
    return run;
}

// ---- comparing --------------------------------------------------------------------------------------

struct Comparison {
    double max_abs = 0.0, max_rel = 0.0;
    bool toleranced = false;  // some output was compared with a tolerance, not bit for bit
    double used = 0.0;        // max over elements of |Δ| / tol: how much of its tolerance the case used
    std::string used_rule;    // the rule of the tensor that used the most; "exact" when all are exact
    std::string failure;    // the first mismatch; empty when the case passed
};

float bf16_value(uint16_t bits) {
    const uint32_t wide = static_cast<uint32_t>(bits) << 16;
    float value;
    std::memcpy(&value, &wide, sizeof value);
    return value;
}

// Element i of a result as a number, for differences and messages.
double element(const std::vector<uint8_t>& bytes, nvlm_dtype dtype, size_t i) {
    switch (dtype) {
        case NVLM_F32: { float v; std::memcpy(&v, bytes.data() + 4 * i, 4); return v; }
        case NVLM_BF16: { uint16_t v; std::memcpy(&v, bytes.data() + 2 * i, 2); return bf16_value(v); }
        case NVLM_U8: return bytes[i];
        case NVLM_I32: { int32_t v; std::memcpy(&v, bytes.data() + 4 * i, 4); return v; }
    }
    return 0.0;
}

std::string show(const std::vector<uint8_t>& bytes, nvlm_dtype dtype, size_t i) {
    char text[64];
    const int64_t size = dtype_size(dtype);
    uint32_t bits = 0;
    std::memcpy(&bits, bytes.data() + size * static_cast<int64_t>(i), static_cast<size_t>(size));
    if (dtype == NVLM_F32 || dtype == NVLM_BF16)
        std::snprintf(text, sizeof text, "%.9g (0x%0*" PRIx32 ")", element(bytes, dtype, i),
                      static_cast<int>(2 * size), bits);
    else
        std::snprintf(text, sizeof text, "%.0f", element(bytes, dtype, i));
    return text;
}

bool is_poison(const std::vector<uint8_t>& bytes, int64_t size, size_t i) {
    for (int64_t b = 0; b < size; b++)
        if (bytes[static_cast<size_t>(size) * i + static_cast<size_t>(b)] != kPoison) return false;
    return true;
}

void compare(const Tensor& t, const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
             const char* candidate, Comparison& c) {
    const int64_t size = dtype_size(t.dtype);
    const bool floating = t.dtype == NVLM_F32 || t.dtype == NVLM_BF16;
    for (size_t i = 0; i < static_cast<size_t>(t.count); i++) {
        // A poisoned float output still holding 0xFF… was never written.
        if (floating && t.init.empty() && (is_poison(got, size, i) || is_poison(want, size, i))) {
            if (c.failure.empty())
                c.failure = t.name + "[" + std::to_string(i) + "] left unwritten (poison) on " +
                            (is_poison(got, size, i) ? candidate : "cpu");
            continue;
        }
        const double a = element(got, t.dtype, i), b = element(want, t.dtype, i);
        const double diff = a == b ? 0.0 : std::fabs(a - b);  // equal infinities differ by 0, NaN by NaN
        const bool equal_bits = std::memcmp(got.data() + size * i, want.data() + size * i, size) == 0;
        if (floating) {
            if (!(diff <= c.max_abs)) c.max_abs = diff;
            if (b != 0.0 && !(diff / std::fabs(b) <= c.max_rel)) c.max_rel = diff / std::fabs(b);
        }
        bool pass;
        if (t.check.exact) {
            pass = equal_bits;
        } else {
            const double tol = t.check.at(i, b);
            pass = diff <= tol;
            const double used = diff == 0.0 ? 0.0 : tol > 0.0 ? diff / tol : std::numeric_limits<double>::infinity();
            if (!c.toleranced || !(used <= c.used)) {
                c.toleranced = true;
                c.used = used;
                c.used_rule = t.name + ": " + t.check.rule;
            }
        }
        if (!pass && c.failure.empty()) {
            char tol_text[48] = "exact";
            if (!t.check.exact) std::snprintf(tol_text, sizeof tol_text, "%.3g", t.check.at(i, b));
            c.failure = t.name + "[" + std::to_string(i) + "]: " + candidate + "=" + show(got, t.dtype, i) +
                        " cpu=" + show(want, t.dtype, i) + " tol=" + tol_text;
        }
    }
    if (c.used_rule.empty() && t.check.exact) c.used_rule = "exact";
}

// ---- host-side magnitudes for the bounds ------------------------------------------------------------

std::vector<double> abs_of(const std::vector<float>& v) {
    std::vector<double> a(v.size());
    for (size_t i = 0; i < v.size(); i++) a[i] = std::fabs(v[i]);
    return a;
}

// acc += |extra| elementwise: the previous contents of an accumulated gradient are terms too.
void add_abs(std::vector<double>& acc, const std::vector<float>& extra) {
    for (size_t i = 0; i < acc.size(); i++) acc[i] += std::fabs(extra[i]);
}

// S (m, n) = |op(a)| · |op(b)| in double, op(a) (m, k) stored (k, m) when trans_a, op(b) (k, n)
// stored (n, k) when trans_b: the Σ|terms| of every element of a matrix product.
std::vector<double> abs_product(const float* a, bool trans_a, const float* b, bool trans_b, int64_t m, int64_t n,
                                int64_t k) {
    std::vector<double> a_rows(static_cast<size_t>(m * k)), b_cols(static_cast<size_t>(n * k));
    for (int64_t i = 0; i < m; i++)
        for (int64_t p = 0; p < k; p++) a_rows[i * k + p] = std::fabs(trans_a ? a[p * m + i] : a[i * k + p]);
    for (int64_t j = 0; j < n; j++)
        for (int64_t p = 0; p < k; p++) b_cols[j * k + p] = std::fabs(trans_b ? b[j * k + p] : b[p * n + j]);
    std::vector<double> s(static_cast<size_t>(m * n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0.0;
            for (int64_t p = 0; p < k; p++) sum += a_rows[i * k + p] * b_cols[j * k + p];
            s[i * n + j] = sum;
        }
    return s;
}

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> named) {
    std::string text;
    for (const auto& [name, value] : named) text += std::string(" ") + name + std::to_string(value);
    return text;
}

// A scalar parameter as a case name shows it: "0.5", "-0.25".
std::string number(float value) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", value);
    return text;
}

// ---- dense algebra ---------------------------------------------------------------------------------

// The math=bf16 cases of matmul, linear and lm_logprob. Both backends round the products' operands to
// bf16 before any arithmetic, by the same round to nearest even (cpu/bf16.h, cuda/bf16.cuh), so both
// multiply the same values ã, b̃: a product of two 8-bit significands is exact in fp32, and the sides
// differ only by their fp32 sums of the same K terms ã·b̃. The bounds are therefore sum_bound's, with
// Σ|terms| taken over the operands rounded on the host alike (bf16_operands), and one change: CUDA's
// tensor cores add a block of b products and the accumulator by aligning them to the largest exponent
// and truncating (Fasi, Higham, Mikaitis, Pranesh 2021, for V100 to A100), which loses < 2u·|largest|
// per addend and 2u·|sum| in the normalisation: a step is off by ≤ 2u(b + 1)·Σ|addends|, the K/b steps
// by ≤ 2(1 + 1/b)K·u·Σ|terms| ≤ 3(K + 2)u·Σ|terms| for b ≥ 2. With the CPU's (K + 2)u·Σ|terms|:
// |Δ| ≤ 4(K + 2)u·Σ|terms|.
const int32_t kMathModes[] = {NVLM_MATH_F32, NVLM_MATH_BF16};

std::string math_suffix(int32_t math) { return math == NVLM_MATH_BF16 ? " math=bf16" : ""; }

// The operands a product of the math mode multiplies: values, or in BF16 mode their bf16 roundings
// (nearest even on the bits; the inputs are finite, so no NaN case).
std::vector<float> bf16_operands(const std::vector<float>& values, int32_t math) {
    if (math != NVLM_MATH_BF16) return values;
    std::vector<float> rounded(values.size());
    for (size_t i = 0; i < values.size(); i++) {
        uint32_t bits;
        std::memcpy(&bits, &values[i], sizeof bits);
        bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
        std::memcpy(&rounded[i], &bits, sizeof bits);
    }
    return rounded;
}

// The two sides' difference for a sum of K products in the math mode, per unit of (K + 2)u·Σ|terms|
// (see above): 2 for two round-to-nearest fp32 sums, 4 when one side is the tensor cores'.
double sum_sides(int32_t math) { return math == NVLM_MATH_BF16 ? 4.0 : 2.0; }

// sum_bound for a product of the math mode: 2(K+2)u·Σ|terms| (F32) or 4(K+2)u·Σ|terms| (BF16, with
// Σ|terms| over the rounded operands).
Check product_bound(const std::vector<double>& abs_sum, int64_t terms, int32_t math) {
    if (math != NVLM_MATH_BF16) return sum_bound(abs_sum, terms);
    return scaled(abs_sum, 4.0 * static_cast<double>(terms + 2) * kU,
                  "4(K+2)u*sum|bf16 terms| K=" + std::to_string(terms));
}

void add_matmul_cases(std::vector<CaseSpec>& cases) {
    struct Shape { int64_t batch, m, n, k; bool trans_a, trans_b; float alpha, beta; };
    const Shape shapes[] = {
        {1, 1, 1, 1, false, false, 1.0f, 0.0f},
        {1, 37, 53, 61, false, false, 1.0f, 0.0f},
        {1, 37, 53, 61, true, false, 1.0f, 0.0f},
        {1, 37, 53, 61, false, true, 1.0f, 0.0f},
        {1, 37, 53, 61, true, true, 0.5f, 0.0f},
        {3, 17, 1, 29, false, true, 1.0f, 1.5f},    // batch with beta: c is read
        {5, 1, 33, 64, true, false, -2.0f, 1.0f},   // a row vector per batch
        {2, 65, 31, 7, false, false, 1.0f, -0.25f},
        {1, 256, 300, 576, false, true, 1.0f, 0.0f},  // model-like: a (tokens, hidden) · Wᵀ
        {2, 3, 4, 0, false, true, 1.0f, 0.5f},        // k = 0: c = beta·c, operands empty
    };
    for (const Shape& s : shapes)
        for (int32_t math : kMathModes) {
            const std::string name = "matmul" + dims({{"b", s.batch}, {"m", s.m}, {"n", s.n}, {"k", s.k}}) +
                                     (s.trans_a ? " ta" : "") + (s.trans_b ? " tb" : "") + " alpha" + number(s.alpha) +
                                     " beta" + number(s.beta) + math_suffix(math);
            cases.push_back({name, [s, math](Random& rng, nvlm_context*) {
                Case c;
                c.math = math;
                const auto a = rng.uniform(s.batch * s.m * s.k, -1.0f, 1.0f);
                const auto b = rng.uniform(s.batch * s.k * s.n, -1.0f, 1.0f);
                // Each element: k products summed, times alpha, plus beta·c: product_bound over k terms of
                // |alpha|·|a·b| (of the rounded a, b in BF16 mode) and the |beta·c| term.
                const auto ra = bf16_operands(a, math), rb = bf16_operands(b, math);
                std::vector<double> magnitude;
                for (int64_t i = 0; i < s.batch; i++) {
                    auto part = abs_product(ra.data() + i * s.m * s.k, s.trans_a, rb.data() + i * s.k * s.n, s.trans_b,
                                            s.m, s.n, s.k);
                    for (double& x : part) x *= std::fabs(s.alpha);
                    magnitude.insert(magnitude.end(), part.begin(), part.end());
                }
                const int ia = c.input("a", a), ib = c.input("b", b);
                int ic;
                if (s.beta == 0.0f) {  // beta = 0: c must not be read, so its poison must not leak through
                    ic = c.output("c", s.batch * s.m * s.n, product_bound(magnitude, s.k, math));
                } else {
                    const auto c0 = rng.uniform(s.batch * s.m * s.n, -1.0f, 1.0f);
                    for (size_t i = 0; i < magnitude.size(); i++) magnitude[i] += std::fabs(s.beta * c0[i]);
                    ic = c.accumulated("c", c0, product_bound(magnitude, s.k, math));
                }
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_matmul(ctx, buf[ic], buf[ia], buf[ib], s.batch, s.m, s.n, s.k, s.trans_a, s.trans_b,
                                       s.alpha, s.beta);
                };
                return c;
            }});
        }
}

struct LinearShape { int64_t m, k, n; };
const LinearShape kLinearShapes[] = {{1, 1, 1}, {7, 33, 65}, {77, 576, 300}, {64, 576, 1536}};

void add_linear_cases(std::vector<CaseSpec>& cases) {
    for (const LinearShape& s : kLinearShapes)
        for (bool bias : {true, false})
            for (int32_t math : kMathModes) {
                const std::string name = "linear_forward" + dims({{"m", s.m}, {"k", s.k}, {"n", s.n}}) +
                                         (bias ? " bias" : " nobias") + math_suffix(math);
                cases.push_back({name, [s, bias, math](Random& rng, nvlm_context*) {
                    Case c;
                    c.math = math;
                    const auto x = rng.uniform(s.m * s.k, -1.0f, 1.0f), w = rng.uniform(s.n * s.k, -0.5f, 0.5f);
                    const auto b = rng.uniform(s.n, -1.0f, 1.0f);
                    // k products plus the bias: product_bound over k terms of |x·w| (rounded x, w in BF16
                    // mode), plus |bias| (never rounded).
                    auto magnitude = abs_product(bf16_operands(x, math).data(), false, bf16_operands(w, math).data(),
                                                 true, s.m, s.n, s.k);
                    if (bias)
                        for (int64_t i = 0; i < s.m * s.n; i++) magnitude[i] += std::fabs(b[i % s.n]);
                    const int ix = c.input("x", x), iw = c.input("w", w), ib = bias ? c.input("bias", b) : -1;
                    const int iout = c.output("out", s.m * s.n, product_bound(magnitude, s.k, math));
                    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                        return nvlm_linear_forward(ctx, buf[iout], buf[ix], buf[iw], maybe(buf, ib), s.m, s.k, s.n);
                    };
                    return c;
                }});
            }

    // Which gradients are wanted: all, no bias (dbias null), only dw, only dx.
    struct Wanted { bool dx, dw, dbias; const char* label; };
    const Wanted all{true, true, true, "dx dw dbias"};
    const Wanted variants[] = {{true, true, false, "dx dw"}, {false, true, false, "dw"}, {true, false, false, "dx"}};
    for (const LinearShape& s : kLinearShapes) {
        std::vector<Wanted> wanted{all};
        if (s.m == 7) wanted.insert(wanted.end(), std::begin(variants), std::end(variants));
        for (const Wanted& want : wanted)
            for (int32_t math : kMathModes) {
                const std::string name = "linear_backward" + dims({{"m", s.m}, {"k", s.k}, {"n", s.n}}) + " " +
                                         want.label + math_suffix(math);
                cases.push_back({name, [s, want, math](Random& rng, nvlm_context*) {
                    Case c;
                    c.math = math;
                    const auto dout = rng.uniform(s.m * s.n, -1.0f, 1.0f);
                    const auto x = rng.uniform(s.m * s.k, -1.0f, 1.0f), w = rng.uniform(s.n * s.k, -0.5f, 0.5f);
                    // The products' operands (dout, x, w rounded in BF16 mode); dbias sums dout itself.
                    const auto rdout = bf16_operands(dout, math), rx = bf16_operands(x, math),
                               rw = bf16_operands(w, math);
                    const int idout = c.input("dout", dout), ix = c.input("x", x), iw = c.input("w", w);
                    int idx = -1, idw = -1, idb = -1;
                    if (want.dx) {  // dx (m, k) += dout · w: n terms each
                        const auto dx0 = rng.uniform(s.m * s.k, -1.0f, 1.0f);
                        auto magnitude = abs_product(rdout.data(), false, rw.data(), false, s.m, s.k, s.n);
                        add_abs(magnitude, dx0);
                        idx = c.accumulated("dx", dx0, product_bound(magnitude, s.n, math));
                    }
                    if (want.dw) {  // dw (n, k) += doutᵀ · x: m terms each
                        const auto dw0 = rng.uniform(s.n * s.k, -1.0f, 1.0f);
                        auto magnitude = abs_product(rdout.data(), true, rx.data(), false, s.n, s.k, s.m);
                        add_abs(magnitude, dw0);
                        idw = c.accumulated("dw", dw0, product_bound(magnitude, s.m, math));
                    }
                    if (want.dbias) {  // dbias (n) += Σ_rows dout: m terms each, fp32 in both modes
                        const auto db0 = rng.uniform(s.n, -1.0f, 1.0f);
                        auto magnitude = abs_of(db0);
                        for (int64_t i = 0; i < s.m * s.n; i++) magnitude[i % s.n] += std::fabs(dout[i]);
                        idb = c.accumulated("dbias", db0, sum_bound(magnitude, s.m));
                    }
                    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                        return nvlm_linear_backward(ctx, maybe(buf, idx), maybe(buf, idw), maybe(buf, idb),
                                                    buf[idout], buf[ix], buf[iw], s.m, s.k, s.n);
                    };
                    return c;
                }});
            }
    }
}

// ---- embeddings --------------------------------------------------------------------------------------

void add_embedding_cases(std::vector<CaseSpec>& cases) {
    struct Shape { int64_t n, vocab, d; };
    // vocab 5 with 300 ids: every row is hit ~60 times, so concurrent scatter-adds collide.
    const Shape shapes[] = {{1, 1, 1}, {37, 50, 67}, {300, 5, 33}, {300, 1000, 576}};
    for (const Shape& s : shapes) {
        const std::string shape = dims({{"n", s.n}, {"vocab", s.vocab}, {"d", s.d}});
        // Ids with repeats, always including the first and the last row of the table.
        auto make_ids = [s](Random& rng) {
            auto ids = rng.integers(s.n, 0, static_cast<int32_t>(s.vocab - 1));
            ids[0] = static_cast<int32_t>(s.vocab - 1);
            ids[static_cast<size_t>(s.n / 2)] = 0;
            return ids;
        };
        cases.push_back({"embedding_forward" + shape, [s, make_ids](Random& rng, nvlm_context*) {
            Case c;
            const int itable = c.input("table", rng.uniform(s.vocab * s.d, -1.0f, 1.0f));
            const int iids = c.input("ids", NVLM_I32, make_ids(rng));
            const int iout = c.output("out", s.n * s.d, exact());  // a gather copies
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_embedding_forward(ctx, buf[iout], buf[itable], buf[iids], s.n, s.vocab, s.d);
            };
            return c;
        }});
        for (bool wanted : {true, false}) {
            if (!wanted && s.n != 37) continue;
            cases.push_back({"embedding_backward" + shape + (wanted ? "" : " dtable=null"),
                             [s, make_ids, wanted](Random& rng, nvlm_context*) {
                Case c;
                const auto dout = rng.uniform(s.n * s.d, -1.0f, 1.0f);
                const auto ids = make_ids(rng);
                const int idout = c.input("dout", dout), iids = c.input("ids", NVLM_I32, ids);
                int idtable = -1;
                if (wanted) {
                    // A row gets one term per occurrence of its id, in any order (atomics): at most n
                    // terms, sum_bound with Σ|dout| over the occurrences plus the initial value.
                    const auto dtable0 = rng.uniform(s.vocab * s.d, -1.0f, 1.0f);
                    auto magnitude = abs_of(dtable0);
                    for (int64_t t = 0; t < s.n; t++)
                        for (int64_t j = 0; j < s.d; j++) magnitude[ids[t] * s.d + j] += std::fabs(dout[t * s.d + j]);
                    idtable = c.accumulated("dtable", dtable0, sum_bound(magnitude, s.n));
                }
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_embedding_backward(ctx, maybe(buf, idtable), buf[idout], buf[iids], s.n, s.vocab, s.d);
                };
                return c;
            }});
        }
    }
}

void add_index_copy_cases(std::vector<CaseSpec>& cases) {
    struct Shape { int64_t n_rows, n_src, d; };
    // 300 rows with 256 image tokens of hidden 576; every row replaced; one row.
    const Shape shapes[] = {{1, 1, 1}, {50, 17, 67}, {40, 40, 9}, {300, 256, 576}};
    for (const Shape& s : shapes) {
        const std::string shape = dims({{"rows", s.n_rows}, {"src", s.n_src}, {"d", s.d}});
        cases.push_back({"index_copy_forward" + shape, [s](Random& rng, nvlm_context*) {
            Case c;
            const int ix = c.input("x", rng.uniform(s.n_rows * s.d, -1.0f, 1.0f));
            const int isrc = c.input("src", rng.uniform(s.n_src * s.d, -1.0f, 1.0f));
            const int iindex = c.input("index", NVLM_I32, rng.distinct(s.n_src, s.n_rows));
            const int iout = c.output("out", s.n_rows * s.d, exact());  // row copies
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_index_copy_forward(ctx, buf[iout], buf[ix], buf[isrc], buf[iindex], s.n_rows, s.n_src, s.d);
            };
            return c;
        }});
        struct Wanted { bool dx, dsrc; const char* label; };
        const Wanted variants[] = {{true, true, ""}, {true, false, " dsrc=null"}, {false, true, " dx=null"}};
        for (const Wanted& want : variants) {
            if (want.label[0] != '\0' && s.n_rows != 50) continue;
            cases.push_back({"index_copy_backward" + shape + want.label, [s, want](Random& rng, nvlm_context*) {
                Case c;
                const int idout = c.input("dout", rng.uniform(s.n_rows * s.d, -1.0f, 1.0f));
                const int iindex = c.input("index", NVLM_I32, rng.distinct(s.n_src, s.n_rows));
                // Each gradient element gets at most one add (the indices are distinct): exact.
                const int idx = want.dx ? c.accumulated("dx", rng.uniform(s.n_rows * s.d, -1.0f, 1.0f), exact()) : -1;
                const int idsrc =
                    want.dsrc ? c.accumulated("dsrc", rng.uniform(s.n_src * s.d, -1.0f, 1.0f), exact()) : -1;
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_index_copy_backward(ctx, maybe(buf, idx), maybe(buf, idsrc), buf[idout], buf[iindex],
                                                    s.n_rows, s.n_src, s.d);
                };
                return c;
            }});
        }
    }
}

// ---- normalisation -----------------------------------------------------------------------------------

struct NormShape { int64_t n, d; };
const NormShape kNormShapes[] = {{1, 1}, {7, 33}, {77, 576}, {300, 768}};
constexpr float kNormEps = 1e-5f;

void add_rmsnorm_cases(std::vector<CaseSpec>& cases) {
    for (const NormShape& s : kNormShapes) {
        const std::string shape = dims({{"n", s.n}, {"d", s.d}});
        // Building the inputs draws the same values in the forward and the backward case.
        auto forward = [s](Random& rng) {
            Case c;
            const int ix = c.input("x", rng.uniform(s.n * s.d, -2.0f, 2.0f));
            const int iw = c.input("w", rng.uniform(s.d, 0.5f, 1.5f));
            // rstd = 1/√(Σx²/d + eps): a sum of d positive terms is off by ≤ d·u relative, rsqrt by a
            // few ulp (CUDA's rsqrtf ≤ 2 ulp = 4u): (d+6)u per side. out = x·rstd·w adds two products
            // (2u). Both are relative bounds; two sides: rtol = 2(d+8)u.
            const double rtol = 2.0 * static_cast<double>(s.d + 8) * kU;
            const int iout = c.output("out", s.n * s.d, relative(0.0, rtol, "2(d+8)u*|out|"));
            const int irstd = c.output("rstd", s.n, relative(0.0, rtol, "2(d+8)u*|rstd|"));
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_rmsnorm_forward(ctx, buf[iout], buf[irstd], buf[ix], buf[iw], s.n, s.d, kNormEps);
            };
            return c;
        };
        cases.push_back({"rmsnorm_forward" + shape, [forward](Random& rng, nvlm_context*) { return forward(rng); }});
        struct Wanted { bool dx, dw; const char* label; };
        const Wanted variants[] = {{true, true, ""}, {true, false, " dw=null"}, {false, true, " dx=null"}};
        for (const Wanted& want : variants) {
            if (want.label[0] != '\0' && s.d != 33) continue;
            cases.push_back({"rmsnorm_backward" + shape + want.label, [s, forward, want](Random& rng, nvlm_context* cpu) {
                const Case fwd = forward(rng);
                const auto rstd = values_of<float>(reference_run(cpu, fwd).results[3]);
                const auto x = values_of<float>(fwd.tensors[0].init), w = values_of<float>(fwd.tensors[1].init);
                const auto dout = rng.uniform(s.n * s.d, -1.0f, 1.0f);
                const auto dx0 = rng.uniform(s.n * s.d, -1.0f, 1.0f), dw0 = rng.uniform(s.d, -1.0f, 1.0f);
                // dx[i,j] += r·w_j·g_j − (r³/d)·x_j·Σ_k g_k·w_k·x_k: a d-term dot product, then a few roundings:
                // sum_bound over d terms of |r·w·g| + |x|·(r³/d)·Σ|g·w·x| + |dx0|.
                // dw[j] += Σ_i g·x·r: n terms (each a 2-rounding product, absorbed in K+2).
                std::vector<double> dx_mag = abs_of(dx0), dw_mag = abs_of(dw0);
                for (int64_t i = 0; i < s.n; i++) {
                    const double r = rstd[i];
                    double dot = 0.0;
                    for (int64_t j = 0; j < s.d; j++) dot += std::fabs(dout[i * s.d + j] * w[j] * x[i * s.d + j]);
                    for (int64_t j = 0; j < s.d; j++) {
                        const int64_t e = i * s.d + j;
                        dx_mag[e] += std::fabs(r * w[j] * dout[e]) + std::fabs(x[e]) * r * r * r / s.d * dot;
                        dw_mag[j] += std::fabs(dout[e] * x[e] * r);
                    }
                }
                Case c;
                const int idout = c.input("dout", dout), ix = c.input("x", x), iw = c.input("w", w);
                const int irstd = c.input("rstd", rstd);
                const int idx = want.dx ? c.accumulated("dx", dx0, sum_bound(dx_mag, s.d + 2)) : -1;
                const int idw = want.dw ? c.accumulated("dw", dw0, sum_bound(dw_mag, s.n + 2)) : -1;
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_rmsnorm_backward(ctx, maybe(buf, idx), maybe(buf, idw), buf[idout], buf[ix], buf[iw],
                                                 buf[irstd], s.n, s.d);
                };
                return c;
            }});
        }
    }
}

void add_layernorm_cases(std::vector<CaseSpec>& cases) {
    for (const NormShape& s : kNormShapes) {
        const std::string shape = dims({{"n", s.n}, {"d", s.d}});
        auto forward = [s](Random& rng) {
            Case c;
            const auto x = rng.uniform(s.n * s.d, -2.0f, 2.0f), w = rng.uniform(s.d, 0.5f, 1.5f);
            const auto b = rng.uniform(s.d, -0.5f, 0.5f);
            // mean = Σx/d is off by ≤ (d+1)u·mean|x| per side. rstd: the variance is a sum of d positive
            // terms (d·u relative; the mean's error enters only at second order since Σ(x − mean) = 0),
            // then rsqrt (4u): (d+6)u relative per side. out = (x − mean)·rstd·w + b: the mean's error
            // times rstd·|w|, (d+10)u relative of |x − mean|·rstd·|w|, and u·|b|. Two sides, so
            // out tolerance 2(d+10)u·((|x − mean| + mean|x|)·rstd·|w| + |b|), in double on the host.
            std::vector<double> out_mag(static_cast<size_t>(s.n * s.d)), mean_mag(static_cast<size_t>(s.n));
            for (int64_t i = 0; i < s.n; i++) {
                double sum = 0.0, sum_abs = 0.0, var = 0.0;
                for (int64_t j = 0; j < s.d; j++) sum += x[i * s.d + j], sum_abs += std::fabs(x[i * s.d + j]);
                const double mean = sum / s.d, mean_abs = sum_abs / s.d;
                for (int64_t j = 0; j < s.d; j++) var += (x[i * s.d + j] - mean) * (x[i * s.d + j] - mean);
                const double rstd = 1.0 / std::sqrt(var / s.d + kNormEps);
                for (int64_t j = 0; j < s.d; j++)
                    out_mag[i * s.d + j] = (std::fabs(x[i * s.d + j] - mean) + mean_abs) * rstd * w[j] + std::fabs(b[j]);
                mean_mag[i] = mean_abs;
            }
            const double factor = 2.0 * static_cast<double>(s.d + 10) * kU;
            const int ix = c.input("x", x), iw = c.input("w", w), ib = c.input("b", b);
            const int iout = c.output("out", s.n * s.d, scaled(out_mag, factor, "2(d+10)u*((|x-mean|+mean|x|)rstd|w|+|b|)"));
            const int imean = c.output("mean", s.n, scaled(mean_mag, factor, "2(d+10)u*mean|x|"));
            const int irstd = c.output("rstd", s.n, relative(0.0, factor, "2(d+10)u*|rstd|"));
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_layernorm_forward(ctx, buf[iout], buf[imean], buf[irstd], buf[ix], buf[iw], buf[ib], s.n,
                                              s.d, kNormEps);
            };
            return c;
        };
        cases.push_back({"layernorm_forward" + shape, [forward](Random& rng, nvlm_context*) { return forward(rng); }});

        struct Wanted { bool dx, dw, db; const char* label; };
        const Wanted variants[] = {{true, true, true, ""}, {true, false, false, " dw=null db=null"},
                                   {false, true, true, " dx=null"}};
        for (const Wanted& want : variants) {
            if (want.label[0] != '\0' && s.d != 33) continue;
            cases.push_back({"layernorm_backward" + shape + want.label, [s, forward, want](Random& rng, nvlm_context* cpu) {
                const Case fwd = forward(rng);
                const Run saved = reference_run(cpu, fwd);
                const auto mean = values_of<float>(saved.results[4]), rstd = values_of<float>(saved.results[5]);
                const auto x = values_of<float>(fwd.tensors[0].init), w = values_of<float>(fwd.tensors[1].init);
                const auto dout = rng.uniform(s.n * s.d, -1.0f, 1.0f);
                const auto dx0 = rng.uniform(s.n * s.d, -1.0f, 1.0f);
                const auto dw0 = rng.uniform(s.d, -1.0f, 1.0f), db0 = rng.uniform(s.d, -1.0f, 1.0f);
                // With xhat = (x − mean)·rstd and dnorm = g·w:
                // dx += rstd·(dnorm − mean(dnorm) − xhat·mean(dnorm·xhat)): two d-term sums, sum_bound
                // over d terms of rstd·(|dnorm| + mean|dnorm| + |xhat|·mean|dnorm·xhat|) + |dx0|;
                // dw += Σ_i g·xhat and db += Σ_i g: n terms each (xhat's 2 roundings in K+2).
                std::vector<double> dx_mag = abs_of(dx0), dw_mag = abs_of(dw0), db_mag = abs_of(db0);
                for (int64_t i = 0; i < s.n; i++) {
                    double dnorm_abs = 0.0, dnorm_xhat_abs = 0.0;
                    for (int64_t j = 0; j < s.d; j++) {
                        const double xhat = (x[i * s.d + j] - mean[i]) * rstd[i];
                        dnorm_abs += std::fabs(dout[i * s.d + j] * w[j]);
                        dnorm_xhat_abs += std::fabs(dout[i * s.d + j] * w[j] * xhat);
                    }
                    for (int64_t j = 0; j < s.d; j++) {
                        const int64_t e = i * s.d + j;
                        const double xhat = (x[e] - mean[i]) * rstd[i];
                        dx_mag[e] += rstd[i] * (std::fabs(dout[e] * w[j]) + dnorm_abs / s.d +
                                                std::fabs(xhat) * dnorm_xhat_abs / s.d);
                        dw_mag[j] += std::fabs(dout[e] * xhat);
                        db_mag[j] += std::fabs(dout[e]);
                    }
                }
                Case c;
                const int idout = c.input("dout", dout), ix = c.input("x", x), iw = c.input("w", w);
                const int imean = c.input("mean", mean), irstd = c.input("rstd", rstd);
                const int idx = want.dx ? c.accumulated("dx", dx0, sum_bound(dx_mag, s.d + 2)) : -1;
                const int idw = want.dw ? c.accumulated("dw", dw0, sum_bound(dw_mag, s.n + 2)) : -1;
                const int idb = want.db ? c.accumulated("db", db0, sum_bound(db_mag, s.n)) : -1;
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_layernorm_backward(ctx, maybe(buf, idx), maybe(buf, idw), maybe(buf, idb), buf[idout],
                                                   buf[ix], buf[iw], buf[imean], buf[irstd], s.n, s.d);
                };
                return c;
            }});
        }
    }
}

// ---- rotary position embedding ---------------------------------------------------------------------

void add_rope_cases(std::vector<CaseSpec>& cases) {
    struct Shape { int64_t tokens, heads, dim; };
    const Shape shapes[] = {{1, 1, 2}, {37, 3, 64}, {300, 9, 64}, {77, 4, 128}};
    for (const Shape& s : shapes) {
        const std::string shape = dims({{"t", s.tokens}, {"h", s.heads}, {"d", s.dim}});
        // Positions up to 8191 (a long context: large angles exercise the range reduction of sin/cos);
        // inv_freq = 100000^(−2i/d), the SmolLM2 base.
        auto make_rope = [s](Random& rng, Case& c) {
            std::vector<float> inv_freq(static_cast<size_t>(s.dim / 2));
            for (int64_t i = 0; i < s.dim / 2; i++)
                inv_freq[i] = static_cast<float>(std::pow(100000.0, -2.0 * static_cast<double>(i) / s.dim));
            const int ipos = c.input("pos", NVLM_I32, rng.integers(s.tokens, 0, 8191));
            return std::make_pair(ipos, c.input("inv_freq", inv_freq));
        };
        // Each output is a·cos ∓ b·sin of an element a and its partner b (same angle, a single fp32
        // product, identical on both). sin/cos are ≤ 2 ulp off on CUDA and ≤ 1 on the CPU (≤ 3u
        // absolute for values in [−1, 1]), the two products and the sum 3 roundings: per side
        // ≤ 6u·(|a| + |b|); two sides and the add into a gradient: tol = 16u·(|a| + |b| [+ |g0|]).
        auto partner_sum = [s](const std::vector<float>& v) {
            std::vector<double> magnitude(v.size());
            const int64_t h = s.dim / 2;
            for (size_t e = 0; e < v.size(); e++) {
                const int64_t i = static_cast<int64_t>(e) % s.dim;
                magnitude[e] = std::fabs(v[e]) + std::fabs(v[e + (i < h ? h : -h)]);
            }
            return magnitude;
        };
        const int64_t count = s.tokens * s.heads * s.dim;
        cases.push_back({"rope_forward" + shape, [=](Random& rng, nvlm_context*) {
            Case c;
            const auto x = rng.uniform(count, -1.0f, 1.0f);
            const int ix = c.input("x", x);
            const auto [ipos, ifreq] = make_rope(rng, c);
            const int iout = c.output("out", count, scaled(partner_sum(x), 16.0 * kU, "16u*(|x_i|+|x_partner|)"));
            c.call = [=, ipos = ipos, ifreq = ifreq](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_rope_forward(ctx, buf[iout], buf[ix], buf[ipos], buf[ifreq], s.tokens, s.heads, s.dim);
            };
            return c;
        }});
        for (bool wanted : {true, false}) {
            if (!wanted && s.tokens != 37) continue;
            cases.push_back({"rope_backward" + shape + (wanted ? "" : " dx=null"), [=](Random& rng, nvlm_context*) {
                Case c;
                const auto dout = rng.uniform(count, -1.0f, 1.0f);
                const int idout = c.input("dout", dout);
                const auto [ipos, ifreq] = make_rope(rng, c);
                int idx = -1;
                if (wanted) {
                    const auto dx0 = rng.uniform(count, -1.0f, 1.0f);
                    auto magnitude = partner_sum(dout);
                    add_abs(magnitude, dx0);
                    idx = c.accumulated("dx", dx0, scaled(magnitude, 16.0 * kU, "16u*(|g_i|+|g_partner|+|dx0|)"));
                }
                c.call = [=, ipos = ipos, ifreq = ifreq](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_rope_backward(ctx, maybe(buf, idx), buf[idout], buf[ipos], buf[ifreq], s.tokens,
                                              s.heads, s.dim);
                };
                return c;
            }});
        }
    }
}

// ---- attention -----------------------------------------------------------------------------------

struct AttentionShape {
    int64_t batch, tq, tk, heads, kv_heads, dim;
    bool causal, mask;
    float scale;  // 0: 1/√dim
};

std::string describe(const AttentionShape& s) {
    std::string text = dims({{"b", s.batch}, {"tq", s.tq}, {"tk", s.tk}}) + " h" + std::to_string(s.heads) + "/" +
                       std::to_string(s.kv_heads) + " d" + std::to_string(s.dim) +
                       (s.causal ? " causal" : " bidir") + (s.mask ? " mask" : "");
    if (s.scale != 0.0f) text += " scale" + number(s.scale);
    return text;
}

float scale_of(const AttentionShape& s) {
    return s.scale != 0.0f ? s.scale : 1.0f / std::sqrt(static_cast<float>(s.dim));
}

// Query i of batch b sees key j: before the bottom-right causal edge and kept by the mask.
bool sees(const AttentionShape& s, const std::vector<uint8_t>& mask, int64_t b, int64_t i, int64_t j) {
    if (s.causal && j > i + s.tk - s.tq) return false;
    return !s.mask || mask[b * s.tk + j] != 0;
}

// The attention inputs, drawn identically for the forward and the backward case of a shape.
struct AttentionInputs {
    std::vector<float> q, k, v;
    std::vector<uint8_t> mask;  // (batch, tk); empty without a mask
};

AttentionInputs attention_inputs(const AttentionShape& s, Random& rng) {
    AttentionInputs in;
    in.q = rng.uniform(s.batch * s.tq * s.heads * s.dim, -1.0f, 1.0f);
    in.k = rng.uniform(s.batch * s.tk * s.kv_heads * s.dim, -1.0f, 1.0f);
    in.v = rng.uniform(s.batch * s.tk * s.kv_heads * s.dim, -1.0f, 1.0f);
    if (s.mask) {
        // ~80% kept; key 0 of batch 0 masked (with causal and tq = tk, query 0 then sees nothing);
        // batch 1 masked entirely (every row sees nothing: out = 0, lse = −inf).
        in.mask = rng.mask(s.batch * s.tk, 0.8);
        in.mask[0] = 0;
        if (s.batch > 1) std::fill(in.mask.begin() + s.tk, in.mask.begin() + 2 * s.tk, uint8_t{0});
    }
    return in;
}

// q, k, v rounded to bf16 (bf16_operands): the operands that the BF16 math mode multiplies, from which
// the bf16 cases' bounds take Σ|terms|.
AttentionInputs bf16_rounded(const AttentionInputs& in) {
    return AttentionInputs{bf16_operands(in.q, NVLM_MATH_BF16), bf16_operands(in.k, NVLM_MATH_BF16),
                           bf16_operands(in.v, NVLM_MATH_BF16), in.mask};
}

// Walks every visible (query row, key) pair of one query head with its score s = scale·q·k and the
// score's Σ|terms| a = scale·Σ|q·k|, in double: visit(b, h, i, j, s, a). rows(b, h, i) runs first.
template <class Row, class Pair>
void for_each_pair(const AttentionShape& s, const AttentionInputs& in, Row row, Pair pair) {
    const int64_t group = s.heads / s.kv_heads;
    const double scale = scale_of(s);
    for (int64_t b = 0; b < s.batch; b++)
        for (int64_t h = 0; h < s.heads; h++)
            for (int64_t i = 0; i < s.tq; i++) {
                row(b, h, i);
                const float* q = in.q.data() + ((b * s.tq + i) * s.heads + h) * s.dim;
                for (int64_t j = 0; j < s.tk; j++) {
                    if (!sees(s, in.mask, b, i, j)) continue;
                    const float* k = in.k.data() + ((b * s.tk + j) * s.kv_heads + h / group) * s.dim;
                    double dot = 0.0, abs_dot = 0.0;
                    for (int64_t e = 0; e < s.dim; e++) dot += q[e] * k[e], abs_dot += std::fabs(q[e] * k[e]);
                    pair(b, h, i, j, scale * dot, scale * abs_dot);
                }
            }
}

// bf16: the BF16 math mode (nvlm_math_mode), in which both sides multiply q, k, v (and dout) rounded
// to bf16; the bounds below then take every Σ|terms| from the rounded inputs.
Case attention_forward_case(const AttentionShape& s, const AttentionInputs& inputs, bool bf16) {
    // Per query row: each score is off by ≤ (d+2)u·a_j per side (a_j = scale·Σ|q·k|), so by
    // 2(d+2)u·a_j between the sides; a weight p_j = exp(s_j − lse) moves by that for s_j and as much
    // again through the normaliser, plus expf's ulps and the tk-term normalising sum:
    //   δ = 4(d+2)u·max_j a_j + 2(tk+8)u   (relative error of every weight),
    //   |Δout_e| ≤ δ·Σ_j p_j·|v_je|,   |Δlse| ≤ δ + 2u·|lse|.
    // In BF16 mode CUDA also rounds each weight to bf16 before P·V (the normalising sum adds the
    // unrounded ones, so lse keeps its bound): a weight is off by (1+δ)(1+u_b) − 1 = δ + u_b(1+δ)
    // relative (u_b = 2^-8), so |Δout_e| ≤ (δ + u_b(1+δ))·Σ_j p_j·|v_je|.
    // Rows that see no key must agree exactly (out = 0, lse = −inf): their tolerance is 0.
    const AttentionInputs in = bf16 ? bf16_rounded(inputs) : inputs;
    const int64_t group = s.heads / s.kv_heads;
    const int64_t rows = s.batch * s.heads * s.tq;
    std::vector<double> out_mag(static_cast<size_t>(rows * s.dim), 0.0), lse_tol(static_cast<size_t>(rows), 0.0);
    std::vector<double> scores(static_cast<size_t>(s.tk)), weights(static_cast<size_t>(s.tk));
    auto finish_row = [&](int64_t b, int64_t h, int64_t i, double max_abs_score, const std::vector<int64_t>& keys) {
        if (keys.empty()) return;
        double max_score = -std::numeric_limits<double>::infinity(), sum = 0.0;
        for (int64_t j : keys) max_score = std::max(max_score, scores[j]);
        for (int64_t j : keys) sum += weights[j] = std::exp(scores[j] - max_score);
        const double delta = 4.0 * (s.dim + 2) * kU * max_abs_score + 2.0 * (s.tk + 8) * kU;
        const double weight_error = bf16 ? delta + kBf16U * (1.0 + delta) : delta;
        const int64_t row = (b * s.heads + h) * s.tq + i;
        lse_tol[row] = delta + 2.0 * kU * std::fabs(max_score + std::log(sum));
        double* mag = out_mag.data() + ((b * s.tq + i) * s.heads + h) * s.dim;
        for (int64_t j : keys) {
            const float* v = in.v.data() + ((b * s.tk + j) * s.kv_heads + h / group) * s.dim;
            for (int64_t e = 0; e < s.dim; e++) mag[e] += weight_error * weights[j] / sum * std::fabs(v[e]);
        }
    };
    int64_t cur_b = -1, cur_h = 0, cur_i = 0;
    double max_abs_score = 0.0;
    std::vector<int64_t> keys;
    for_each_pair(
        s, in,
        [&](int64_t b, int64_t h, int64_t i) {
            if (cur_b >= 0) finish_row(cur_b, cur_h, cur_i, max_abs_score, keys);
            cur_b = b, cur_h = h, cur_i = i, max_abs_score = 0.0;
            keys.clear();
        },
        [&](int64_t, int64_t, int64_t, int64_t j, double score, double abs_score) {
            scores[j] = score;
            max_abs_score = std::max(max_abs_score, abs_score);
            keys.push_back(j);
        });
    finish_row(cur_b, cur_h, cur_i, max_abs_score, keys);

    Case c;
    c.math = bf16 ? NVLM_MATH_BF16 : NVLM_MATH_F32;
    const int iq = c.input("q", inputs.q), ik = c.input("k", inputs.k), iv = c.input("v", inputs.v);
    const int imask = s.mask ? c.input("key_mask", NVLM_U8, inputs.mask) : -1;
    const std::string out_rule = bf16 ? "(delta+u_b(1+delta))*sum_j p_j|v_j|" : "delta*sum_j p_j|v_j|";
    const int iout = c.output("out", rows * s.dim, scaled(out_mag, 1.0, out_rule));
    const int ilse = c.output("lse", rows, scaled(lse_tol, 1.0, "delta+2u|lse|"));
    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
        return nvlm_attention_forward(ctx, buf[iout], buf[ilse], buf[iq], buf[ik], buf[iv], maybe(buf, imask),
                                      s.batch, s.tq, s.tk, s.heads, s.kv_heads, s.dim, s.causal, scale_of(s));
    };
    return c;
}

struct AttentionGrads { bool dq, dk, dv; const char* label; };

// bf16: as attention_forward_case; the saved out and lse come from the CPU's forward in the same mode.
Case attention_backward_case(const AttentionShape& s, const AttentionInputs& inputs, const AttentionGrads& want,
                             Random& rng, nvlm_context* cpu, bool bf16) {
    const Run saved = reference_run(cpu, attention_forward_case(s, inputs, bf16));
    const auto out = values_of<float>(saved.results[s.mask ? 4 : 3]);
    const auto lse = values_of<float>(saved.results[s.mask ? 5 : 4]);
    const auto dout_input = rng.uniform(static_cast<int64_t>(inputs.q.size()), -1.0f, 1.0f);
    const AttentionInputs in = bf16 ? bf16_rounded(inputs) : inputs;
    const auto dout = bf16 ? bf16_operands(dout_input, NVLM_MATH_BF16) : dout_input;
    const auto dq0 = rng.uniform(static_cast<int64_t>(in.q.size()), -1.0f, 1.0f);
    const auto dk0 = rng.uniform(static_cast<int64_t>(in.k.size()), -1.0f, 1.0f);
    const auto dv0 = rng.uniform(static_cast<int64_t>(in.v.size()), -1.0f, 1.0f);

    // With the saved lse identical on both sides, a weight p = exp(s − lse) is off by
    // ε_p = 2(d+2)u·a + 8u relative (the score's error between sides, expf's ulps). dp = g·v_j and
    // D = g·out are d-term dots (off by 2(d+2)u·Σ|terms|), ds = p·(dp − D) then by
    //   e_ds = (ε_p + 4u)·p·|dp − D| + p·(e_dp + e_D).
    // dq += scale·Σ_j ds·k_j (tk terms), dk += scale·Σ_i ds·q_i and dv += Σ_i p·g_i (tq·group terms):
    // each tolerance is the propagated Σ e·|factor| plus sum_bound's 2(K+2)u·Σ|terms| (and |g0|).
    // In BF16 mode CUDA also rounds p to bf16 before dv += Σ_i p·g_i (relative error then
    // ε_p + u_b(1+ε_p)) and ds before dq and dk (an extra u_b·|ds| ≤ u_b·(p|dp − D| + e_ds) per term,
    // times scale·|k_j| or scale·|q_i|); p inside ds = p·(dp − D) stays unrounded.
    const int64_t group = s.heads / s.kv_heads;
    const double scale = scale_of(s);
    std::vector<double> dq_err(in.q.size(), 0.0), dq_mag = abs_of(dq0);
    std::vector<double> dk_err(in.k.size(), 0.0), dk_mag = abs_of(dk0);
    std::vector<double> dv_err(in.v.size(), 0.0), dv_mag = abs_of(dv0);
    double d_row = 0.0, d_err = 0.0;
    for_each_pair(
        s, in,
        [&](int64_t b, int64_t h, int64_t i) {
            const int64_t offset = ((b * s.tq + i) * s.heads + h) * s.dim;
            d_row = d_err = 0.0;
            for (int64_t e = 0; e < s.dim; e++)
                d_row += dout[offset + e] * out[offset + e], d_err += std::fabs(dout[offset + e] * out[offset + e]);
            d_err *= 2.0 * (s.dim + 2) * kU;
        },
        [&](int64_t b, int64_t h, int64_t i, int64_t j, double score, double abs_score) {
            const double row_lse = lse[(b * s.heads + h) * s.tq + i];
            const double p = std::exp(score - row_lse);
            const int64_t offset = ((b * s.tq + i) * s.heads + h) * s.dim;
            const int64_t kv_offset = ((b * s.tk + j) * s.kv_heads + h / group) * s.dim;
            double dp = 0.0, dp_err = 0.0;
            for (int64_t e = 0; e < s.dim; e++) {
                dp += dout[offset + e] * in.v[kv_offset + e];
                dp_err += std::fabs(dout[offset + e] * in.v[kv_offset + e]);
            }
            dp_err *= 2.0 * (s.dim + 2) * kU;
            const double eps_p = 2.0 * (s.dim + 2) * kU * abs_score + 8.0 * kU;
            const double ds_mag = p * std::fabs(dp - d_row);
            const double ds_err = (eps_p + 4.0 * kU) * ds_mag + p * (dp_err + d_err);
            const double ds_rounding = bf16 ? kBf16U * (ds_mag + ds_err) : 0.0;
            const double p_error = bf16 ? eps_p + kBf16U * (1.0 + eps_p) : eps_p;
            for (int64_t e = 0; e < s.dim; e++) {
                const double k_abs = std::fabs(in.k[kv_offset + e]), q_abs = std::fabs(in.q[offset + e]);
                const double g_abs = std::fabs(dout[offset + e]);
                dq_err[offset + e] += scale * (ds_err + ds_rounding) * k_abs;
                dq_mag[offset + e] += scale * ds_mag * k_abs;
                dk_err[kv_offset + e] += scale * (ds_err + ds_rounding) * q_abs;
                dk_mag[kv_offset + e] += scale * ds_mag * q_abs;
                dv_err[kv_offset + e] += p_error * p * g_abs, dv_mag[kv_offset + e] += p * g_abs;
            }
        });
    auto bound = [](std::vector<double> err, const std::vector<double>& mag, int64_t terms) {
        for (size_t e = 0; e < err.size(); e++) err[e] += 2.0 * (terms + 2) * kU * mag[e];
        return err;
    };
    const std::string rule = bf16 ? "sum err|factor| (u_b-rounded p, ds) + 2(K+2)u*sum|terms| K="
                                  : "sum err|factor| + 2(K+2)u*sum|terms| K=";

    Case c;
    c.math = bf16 ? NVLM_MATH_BF16 : NVLM_MATH_F32;
    const int idout = c.input("dout", dout_input), iq = c.input("q", inputs.q), ik = c.input("k", inputs.k);
    const int iv = c.input("v", inputs.v);
    const int imask = s.mask ? c.input("key_mask", NVLM_U8, inputs.mask) : -1;
    const int iout = c.input("out", out), ilse = c.input("lse", lse);
    const int idq = want.dq ? c.accumulated("dq", dq0, scaled(bound(dq_err, dq_mag, s.tk), 1.0,
                                                                rule + std::to_string(s.tk))) : -1;
    const int idk = want.dk ? c.accumulated("dk", dk0, scaled(bound(dk_err, dk_mag, s.tq * group), 1.0,
                                                                rule + std::to_string(s.tq * group))) : -1;
    const int idv = want.dv ? c.accumulated("dv", dv0, scaled(bound(dv_err, dv_mag, s.tq * group), 1.0,
                                                                rule + std::to_string(s.tq * group))) : -1;
    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
        return nvlm_attention_backward(ctx, maybe(buf, idq), maybe(buf, idk), maybe(buf, idv), buf[idout], buf[iq],
                                       buf[ik], buf[iv], maybe(buf, imask), buf[iout], buf[ilse], s.batch, s.tq, s.tk,
                                       s.heads, s.kv_heads, s.dim, s.causal, scale_of(s));
    };
    return c;
}

void add_attention_cases(std::vector<CaseSpec>& cases) {
    const std::vector<AttentionShape> shapes = {
        {1, 1, 1, 1, 1, 64, false, false, 0.0f},     // size 1
        {2, 37, 53, 8, 2, 72, true, true, 0.0f},     // GQA 4:1, tq < tk bottom-right, a fully masked batch
        {2, 53, 37, 4, 4, 64, true, false, 0.0f},    // tq > tk: the first 16 queries see no key
        {1, 1, 300, 8, 2, 64, true, false, 0.0f},    // a decode step over a 300-token cache
        {2, 300, 300, 4, 1, 64, true, true, 0.0f},   // text model-like: causal, padded batch
        {1, 200, 200, 2, 2, 128, false, true, 0.0f},  // bidirectional with a key mask, d128
        {3, 64, 64, 6, 6, 72, false, false, 1.0f},   // scale 1: peaked softmax, max subtraction matters
        {2, 77, 77, 4, 1, 128, true, false, 0.0f},
    };
    // The BF16 math mode runs every shape and two more whose query and key tiles (64 on CUDA) end in
    // tails: SigLIP-so400m's d72 (CUDA pads it to 80) and Qwen3's d128.
    std::vector<AttentionShape> bf16_shapes = shapes;
    bf16_shapes.push_back({2, 150, 150, 4, 2, 72, false, true, 0.0f});
    bf16_shapes.push_back({1, 150, 150, 8, 2, 128, true, false, 0.0f});
    const AttentionGrads all{true, true, true, ""};
    const AttentionGrads partial[] = {{true, false, false, " dk=null dv=null"},
                                      {false, true, true, " dq=null"},
                                      {false, false, true, " dq=null dk=null"},
                                      {false, false, false, " all null"}};
    for (const bool bf16 : {false, true}) {
        const std::string math = bf16 ? " math=bf16" : "";
        for (const AttentionShape& s : bf16 ? bf16_shapes : shapes)
            cases.push_back({"attention_forward" + describe(s) + math, [s, bf16](Random& rng, nvlm_context*) {
                return attention_forward_case(s, attention_inputs(s, rng), bf16);
            }});
        for (const AttentionShape& s : bf16 ? bf16_shapes : shapes) {
            std::vector<AttentionGrads> variants{all};
            if (s.tq == 37) variants.insert(variants.end(), std::begin(partial), std::end(partial));
            for (const AttentionGrads& want : variants)
                cases.push_back({"attention_backward" + describe(s) + want.label + math,
                                 [s, want, bf16](Random& rng, nvlm_context* cpu) {
                                     const AttentionInputs in = attention_inputs(s, rng);
                                     return attention_backward_case(s, in, want, rng, cpu, bf16);
                                 }});
        }
    }
}

// ---- elementwise --------------------------------------------------------------------------------

const int64_t kElementwiseSizes[] = {1, 7, 1000003};

void add_gelu_cases(std::vector<CaseSpec>& cases) {
    constexpr double kBeta = 0.7978845608028654, kKappa = 0.044715;
    for (int64_t n : kElementwiseSizes) {
        const std::string shape = dims({{"n", n}});
        cases.push_back({"gelu_forward" + shape, [n](Random& rng, nvlm_context*) {
            Case c;
            const auto x = rng.uniform(n, -5.0f, 5.0f);
            // out = 0.5·x·(1 + tanh(arg)), arg = β(x + κx³): arg is off by ~4u·|arg|, tanhf by 2 ulp
            // (≤ 4u absolute), and tanh' ≤ 1; the rest are 3 roundings of |out| ≤ |x|. Per side
            // ≤ 0.5|x|·(4u|arg| + 4u) + 3u|x|; two sides and margin: tol = 8u·|x|·(2 + |arg|).
            std::vector<double> magnitude(x.size());
            for (size_t i = 0; i < x.size(); i++)
                magnitude[i] = std::fabs(x[i]) * (2.0 + std::fabs(kBeta * (x[i] + kKappa * x[i] * x[i] * x[i])));
            const int ix = c.input("x", x);
            const int iout = c.output("out", n, scaled(magnitude, 8.0 * kU, "8u*|x|(2+|arg|)"));
            c.call = [=](nvlm_context* ctx, const Buffers& buf) { return nvlm_gelu_forward(ctx, buf[iout], buf[ix], n); };
            return c;
        }});
        for (bool wanted : {true, false}) {
            if (!wanted && n != 7) continue;
            cases.push_back({"gelu_backward" + shape + (wanted ? "" : " dx=null"), [n, wanted](Random& rng, nvlm_context*) {
                Case c;
                const auto x = rng.uniform(n, -5.0f, 5.0f), dout = rng.uniform(n, -1.0f, 1.0f);
                const int idout = c.input("dout", dout), ix = c.input("x", x);
                int idx = -1;
                if (wanted) {
                    // dx += g·(0.5(1 + t) + 0.5x(1 − t²)·β(1 + 3κx²)): t is off as in the forward
                    // (4u(1 + |arg|)), the derivative's sensitivity to t is ≤ 0.5 + |x|β(1 + 3κx²), and
                    // ~10 roundings of terms bounded by the same factor: tol = 16u·(|g|·(1 + |x|β(1+3κx²))·
                    // (2 + |arg|) + |dx0|).
                    const auto dx0 = rng.uniform(n, -1.0f, 1.0f);
                    std::vector<double> magnitude(x.size());
                    for (size_t i = 0; i < x.size(); i++) {
                        const double xi = x[i], arg = kBeta * (xi + kKappa * xi * xi * xi);
                        magnitude[i] = std::fabs(dout[i]) * (1.0 + std::fabs(xi) * kBeta * (1.0 + 3.0 * kKappa * xi * xi)) *
                                           (2.0 + std::fabs(arg)) + std::fabs(dx0[i]);
                    }
                    idx = c.accumulated("dx", dx0, scaled(magnitude, 16.0 * kU, "16u*(|g|(1+|x|b(1+3kx2))(2+|arg|)+|dx0|)"));
                }
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_gelu_backward(ctx, maybe(buf, idx), buf[idout], buf[ix], n);
                };
                return c;
            }});
        }
    }
}

void add_swiglu_cases(std::vector<CaseSpec>& cases) {
    for (int64_t n : kElementwiseSizes) {
        const std::string shape = dims({{"n", n}});
        cases.push_back({"swiglu_forward" + shape, [n](Random& rng, nvlm_context*) {
            Case c;
            const int igate = c.input("gate", rng.uniform(n, -6.0f, 6.0f));
            const int iup = c.input("up", rng.uniform(n, -2.0f, 2.0f));
            // σ(g) = 1/(1 + exp(−g)): expf's 2 ulp, the add and the division, ≤ 6u relative; two
            // products: ≤ 8u relative per side. tol = 2·8u·|out| with margin: 32u·|out|.
            const int iout = c.output("out", n, relative(0.0, 32.0 * kU, "32u*|out|"));
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_swiglu_forward(ctx, buf[iout], buf[igate], buf[iup], n);
            };
            return c;
        }});
        struct Wanted { bool dgate, dup; const char* label; };
        const Wanted variants[] = {{true, true, ""}, {true, false, " dup=null"}, {false, true, " dgate=null"}};
        for (const Wanted& want : variants) {
            if (want.label[0] != '\0' && n != 7) continue;
            cases.push_back({"swiglu_backward" + shape + want.label, [n, want](Random& rng, nvlm_context*) {
                Case c;
                const auto gate = rng.uniform(n, -6.0f, 6.0f), up = rng.uniform(n, -2.0f, 2.0f);
                const auto dout = rng.uniform(n, -1.0f, 1.0f);
                const auto dgate0 = rng.uniform(n, -1.0f, 1.0f), dup0 = rng.uniform(n, -1.0f, 1.0f);
                // dgate += g_out·up·σ·(1 + g(1 − σ)): σ is off by 6u relative, so 1 − σ by 6u·σ absolute
                // and g(1 − σ) by 6u·|g|; with ~6 more roundings: per side ≤ 16u·|g_out·up|·σ·(1 + |g|).
                // dup += g_out·g·σ: ≤ 10u relative per side. Two sides, the add into the gradient:
                // tol = 32u·(magnitude + |grad0|).
                std::vector<double> dgate_mag(gate.size()), dup_mag(gate.size());
                for (size_t i = 0; i < gate.size(); i++) {
                    const double g = gate[i], sig = 1.0 / (1.0 + std::exp(-g));
                    dgate_mag[i] = std::fabs(dout[i] * up[i]) * sig * (1.0 + std::fabs(g)) + std::fabs(dgate0[i]);
                    dup_mag[i] = std::fabs(dout[i] * g) * sig + std::fabs(dup0[i]);
                }
                const int idout = c.input("dout", dout), igate = c.input("gate", gate), iup = c.input("up", up);
                const int idgate = want.dgate ? c.accumulated("dgate", dgate0,
                                                              scaled(dgate_mag, 32.0 * kU, "32u*(|g_out up|s(1+|g|)+|dgate0|)"))
                                              : -1;
                const int idup = want.dup ? c.accumulated("dup", dup0, scaled(dup_mag, 32.0 * kU, "32u*(|g_out g s|+|dup0|)"))
                                          : -1;
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_swiglu_backward(ctx, maybe(buf, idgate), maybe(buf, idup), buf[idout], buf[igate],
                                                buf[iup], n);
                };
                return c;
            }});
        }
    }
}

void add_residual_cases(std::vector<CaseSpec>& cases) {
    for (int64_t n : kElementwiseSizes) {
        const std::string shape = dims({{"n", n}});
        cases.push_back({"residual_forward" + shape, [n](Random& rng, nvlm_context*) {
            Case c;
            const int ia = c.input("a", rng.uniform(n, -1.0f, 1.0f)), ib = c.input("b", rng.uniform(n, -1.0f, 1.0f));
            const int iout = c.output("out", n, exact());  // one correctly rounded add
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_residual_forward(ctx, buf[iout], buf[ia], buf[ib], n);
            };
            return c;
        }});
        struct Wanted { bool da, db; const char* label; };
        const Wanted variants[] = {{true, true, ""}, {true, false, " db=null"}, {false, true, " da=null"}};
        for (const Wanted& want : variants) {
            if (want.label[0] != '\0' && n != 7) continue;
            cases.push_back({"residual_backward" + shape + want.label, [n, want](Random& rng, nvlm_context*) {
                Case c;
                const int idout = c.input("dout", rng.uniform(n, -1.0f, 1.0f));
                // One add into each gradient: exact.
                const int ida = want.da ? c.accumulated("da", rng.uniform(n, -1.0f, 1.0f), exact()) : -1;
                const int idb = want.db ? c.accumulated("db", rng.uniform(n, -1.0f, 1.0f), exact()) : -1;
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_residual_backward(ctx, maybe(buf, ida), maybe(buf, idb), buf[idout], n);
                };
                return c;
            }});
        }
    }
}

void add_bias_add_cases(std::vector<CaseSpec>& cases) {
    struct Shape { int64_t m, n; };
    // A single element; a single row; odd sizes; the column sums' several row chunks (> 64 rows) and a
    // partial 32-column tile.
    const Shape shapes[] = {{1, 1}, {1, 300}, {7, 33}, {1000, 77}};
    for (const Shape& s : shapes) {
        const std::string shape = dims({{"m", s.m}, {"n", s.n}});
        cases.push_back({"bias_add_forward" + shape, [s](Random& rng, nvlm_context*) {
            Case c;
            const int ix = c.input("x", rng.uniform(s.m * s.n, -1.0f, 1.0f)), ibias = c.input("bias", rng.uniform(s.n, -1.0f, 1.0f));
            const int iout = c.output("out", s.m * s.n, exact());  // one correctly rounded add
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_bias_add_forward(ctx, buf[iout], buf[ix], buf[ibias], s.m, s.n);
            };
            return c;
        }});
        struct Wanted { bool dx, dbias; const char* label; };
        const Wanted variants[] = {{true, true, ""}, {true, false, " dbias=null"}, {false, true, " dx=null"}};
        for (const Wanted& want : variants) {
            if (want.label[0] != '\0' && s.m != 7) continue;
            cases.push_back({"bias_add_backward" + shape + want.label, [s, want](Random& rng, nvlm_context*) {
                Case c;
                const auto dout = rng.uniform(s.m * s.n, -1.0f, 1.0f);
                const int idout = c.input("dout", dout);
                // dx: one add into the gradient, exact. dbias: m terms of dout per column plus the initial
                // value, in any order: sum_bound over their absolute values.
                const int idx = want.dx ? c.accumulated("dx", rng.uniform(s.m * s.n, -1.0f, 1.0f), exact()) : -1;
                int idbias = -1;
                if (want.dbias) {
                    const auto dbias0 = rng.uniform(s.n, -1.0f, 1.0f);
                    auto magnitude = abs_of(dbias0);
                    for (int64_t i = 0; i < s.m * s.n; i++) magnitude[i % s.n] += std::fabs(dout[i]);
                    idbias = c.accumulated("dbias", dbias0, sum_bound(magnitude, s.m + 1));
                }
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_bias_add_backward(ctx, maybe(buf, idx), maybe(buf, idbias), buf[idout], s.m, s.n);
                };
                return c;
            }});
        }
    }
}

void add_scale_cases(std::vector<CaseSpec>& cases) {
    const float alpha = -0.7f;
    for (int64_t n : kElementwiseSizes) {
        const std::string shape = dims({{"n", n}});
        cases.push_back({"scale_forward" + shape, [n, alpha](Random& rng, nvlm_context*) {
            Case c;
            const int ix = c.input("x", rng.uniform(n, -1.0f, 1.0f));
            const int iout = c.output("out", n, exact());  // one correctly rounded product
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_scale_forward(ctx, buf[iout], buf[ix], alpha, n);
            };
            return c;
        }});
        for (bool wanted : {true, false}) {
            if (!wanted && n != 7) continue;
            cases.push_back({"scale_backward" + shape + (wanted ? "" : " dx=null"), [n, alpha, wanted](Random& rng, nvlm_context*) {
                Case c;
                const auto dout = rng.uniform(n, -1.0f, 1.0f);
                const int idout = c.input("dout", dout);
                int idx = -1;
                if (wanted) {
                    // dx += alpha·dout: a product and an add, which nvcc may fuse into one fma (one
                    // rounding fewer): the sides differ by ≤ 2u·(|alpha·dout| + |dx0|); tol 4u·that.
                    const auto dx0 = rng.uniform(n, -1.0f, 1.0f);
                    std::vector<double> magnitude(dout.size());
                    for (size_t i = 0; i < dout.size(); i++) magnitude[i] = std::fabs(alpha * dout[i]) + std::fabs(dx0[i]);
                    idx = c.accumulated("dx", dx0, scaled(magnitude, 4.0 * kU, "4u*(|alpha g|+|dx0|)"));
                }
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_scale_backward(ctx, maybe(buf, idx), buf[idout], alpha, n);
                };
                return c;
            }});
        }
    }
}

void add_sum_cases(std::vector<CaseSpec>& cases) {
    for (int64_t n : kElementwiseSizes) {
        const std::string shape = dims({{"n", n}});
        // Multiples of 1/64 in [−1, 1]: every partial sum of ≤ 10^6 of them is a multiple of 1/64 below
        // 2^20 in magnitude, exactly representable in fp32 — so any summation order gives the exact
        // sum and the comparison is bit-exact: a dropped or doubled element cannot hide in a tolerance.
        cases.push_back({"sum_forward" + shape + " exact-sum", [n](Random& rng, nvlm_context*) {
            Case c;
            const auto steps = rng.integers(n, -64, 64);
            std::vector<float> x(steps.size());
            for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>(steps[i]) / 64.0f;
            const int ix = c.input("x", x);
            const int iout = c.output("out", 1, exact());
            c.call = [=](nvlm_context* ctx, const Buffers& buf) { return nvlm_sum_forward(ctx, buf[iout], buf[ix], n); };
            return c;
        }});
        // General values: n terms in any order, sum_bound over Σ|x|.
        cases.push_back({"sum_forward" + shape, [n](Random& rng, nvlm_context*) {
            Case c;
            const auto x = rng.uniform(n, -1.0f, 1.0f);
            double abs_sum = 0.0;
            for (float v : x) abs_sum += std::fabs(v);
            const int ix = c.input("x", x);
            const int iout = c.output("out", 1, sum_bound({abs_sum}, n));
            c.call = [=](nvlm_context* ctx, const Buffers& buf) { return nvlm_sum_forward(ctx, buf[iout], buf[ix], n); };
            return c;
        }});
        for (bool wanted : {true, false}) {
            if (!wanted && n != 7) continue;
            cases.push_back({"sum_backward" + shape + (wanted ? "" : " dx=null"), [n, wanted](Random& rng, nvlm_context*) {
                Case c;
                const int idout = c.input("dout", rng.uniform(1, -1.0f, 1.0f));
                const int idx = wanted ? c.accumulated("dx", rng.uniform(n, -1.0f, 1.0f), exact()) : -1;  // one add
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_sum_backward(ctx, maybe(buf, idx), buf[idout], n);
                };
                return c;
            }});
        }
    }
}

// ---- SigLIP patch embedding and the Idefics3 connector: index maps, bit-exact ---------------------------

void add_patchify_cases(std::vector<CaseSpec>& cases) {
    struct Shape { int64_t n, channels, height, width, patch; };
    const Shape shapes[] = {{1, 1, 1, 1, 1}, {3, 3, 15, 10, 5}, {2, 3, 28, 42, 14}, {1, 3, 512, 512, 16}};
    for (const Shape& s : shapes) {
        const std::string shape = dims({{"n", s.n}, {"c", s.channels}, {"h", s.height}, {"w", s.width}, {"p", s.patch}});
        const int64_t count = s.n * s.channels * s.height * s.width;
        cases.push_back({"patchify_forward" + shape, [s, count](Random& rng, nvlm_context*) {
            Case c;
            const int ipixels = c.input("pixels", rng.uniform(count, -1.0f, 1.0f));
            const int iout = c.output("out", count, exact());  // a permutation
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_patchify_forward(ctx, buf[iout], buf[ipixels], s.n, s.channels, s.height, s.width, s.patch);
            };
            return c;
        }});
        for (bool wanted : {true, false}) {
            if (!wanted && s.height != 15) continue;
            cases.push_back({"patchify_backward" + shape + (wanted ? "" : " dpixels=null"), [s, count, wanted](Random& rng, nvlm_context*) {
                Case c;
                const int idout = c.input("dout", rng.uniform(count, -1.0f, 1.0f));
                // Each pixel lies in exactly one patch: one add, exact.
                const int idp = wanted ? c.accumulated("dpixels", rng.uniform(count, -1.0f, 1.0f), exact()) : -1;
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_patchify_backward(ctx, maybe(buf, idp), buf[idout], s.n, s.channels, s.height, s.width,
                                                  s.patch);
                };
                return c;
            }});
        }
    }
}

void add_pixel_shuffle_cases(std::vector<CaseSpec>& cases) {
    struct Shape { int64_t n, seq, d, scale; };
    // SmolVLM: 1024 tokens (32×32) of 768 channels, scale 4.
    const Shape shapes[] = {{1, 1, 1, 1}, {2, 36, 5, 3}, {3, 16, 7, 2}, {1, 1024, 768, 4}};
    for (const Shape& s : shapes) {
        const std::string shape = dims({{"n", s.n}, {"seq", s.seq}, {"d", s.d}, {"s", s.scale}});
        const int64_t count = s.n * s.seq * s.d;
        cases.push_back({"pixel_shuffle_forward" + shape, [s, count](Random& rng, nvlm_context*) {
            Case c;
            const int ix = c.input("x", rng.uniform(count, -1.0f, 1.0f));
            const int iout = c.output("out", count, exact());  // a permutation
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_pixel_shuffle_forward(ctx, buf[iout], buf[ix], s.n, s.seq, s.d, s.scale);
            };
            return c;
        }});
        for (bool wanted : {true, false}) {
            if (!wanted && s.seq != 36) continue;
            cases.push_back({"pixel_shuffle_backward" + shape + (wanted ? "" : " dx=null"), [s, count, wanted](Random& rng, nvlm_context*) {
                Case c;
                const int idout = c.input("dout", rng.uniform(count, -1.0f, 1.0f));
                const int idx = wanted ? c.accumulated("dx", rng.uniform(count, -1.0f, 1.0f), exact()) : -1;  // one add
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_pixel_shuffle_backward(ctx, maybe(buf, idx), buf[idout], s.n, s.seq, s.d, s.scale);
                };
                return c;
            }});
        }
    }
}

// ---- language-model head ---------------------------------------------------------------------------

struct LmShape { int64_t n, d, vocab, chunk; };

struct LmInputs {
    std::vector<float> h, w;
    std::vector<int32_t> targets;
};

LmInputs lm_inputs(const LmShape& s, Random& rng) {
    LmInputs in;
    in.h = rng.uniform(s.n * s.d, -1.0f, 1.0f);
    in.w = rng.uniform(s.vocab * s.d, -0.5f, 0.5f);
    in.targets = rng.integers(s.n, 0, static_cast<int32_t>(s.vocab - 1));
    in.targets[0] = static_cast<int32_t>(s.vocab - 1);  // the last, partial chunk
    for (size_t t = 2; t < in.targets.size(); t += 3) in.targets[t] = kIgnoreIndex;
    return in;
}

// The h and w that the math mode's products multiply (bf16_operands of each).
LmInputs bf16_operands(const LmInputs& in, int32_t math) {
    return LmInputs{bf16_operands(in.h, math), bf16_operands(in.w, math), in.targets};
}

// x rounded to the nearest bf16, ties to even, exactly in double (x within bf16's normal range or 0):
// the significand scaled to [128, 256) is rounded to an integer, 256 carrying into the exponent.
double bf16_nearest(double x) {
    if (x == 0.0) return x;
    int exponent;
    const double significand = std::frexp(x, &exponent);
    return std::ldexp(std::nearbyint(std::ldexp(significand, 8)), exponent - 8);
}

// The host's logits in double and their Σ|terms| (n, vocab), for the bounds.
void lm_host_logits(const LmShape& s, const LmInputs& in, std::vector<double>& logits, std::vector<double>& abs_terms) {
    logits.assign(static_cast<size_t>(s.n * s.vocab), 0.0);
    abs_terms.assign(static_cast<size_t>(s.n * s.vocab), 0.0);
    for (int64_t t = 0; t < s.n; t++)
        for (int64_t v = 0; v < s.vocab; v++) {
            double dot = 0.0, abs_dot = 0.0;
            for (int64_t e = 0; e < s.d; e++) {
                const double term = static_cast<double>(in.h[t * s.d + e]) * in.w[v * s.d + e];
                dot += term, abs_dot += std::fabs(term);
            }
            logits[t * s.vocab + v] = dot, abs_terms[t * s.vocab + v] = abs_dot;
        }
}

Case lm_forward_case(const LmShape& s, const LmInputs& in, int32_t math) {
    // A logit is off by 2(d+2)u·Σ|h·w| between the sides (BF16 mode: 4(d+2)u·Σ|h̃·w̃| over the rounded
    // operands, see the dense algebra section); lse moves by at most the largest such error (δ = max over
    // the row) plus the vocab-term sum of exponentials (2(V+8)u with expf's ulps), which stays fp32 in
    // both modes; logp = logit[target] − lse by both. Ignored rows are 0 on both: tolerance 0 there.
    std::vector<double> logits, abs_terms;
    lm_host_logits(s, bf16_operands(in, math), logits, abs_terms);
    std::vector<double> lse_tol(static_cast<size_t>(s.n)), logp_tol(static_cast<size_t>(s.n));
    for (int64_t t = 0; t < s.n; t++) {
        double max_logit = -std::numeric_limits<double>::infinity(), delta = 0.0, sum = 0.0;
        for (int64_t v = 0; v < s.vocab; v++) {
            max_logit = std::max(max_logit, logits[t * s.vocab + v]);
            delta = std::max(delta, sum_sides(math) * (s.d + 2) * kU * abs_terms[t * s.vocab + v]);
        }
        for (int64_t v = 0; v < s.vocab; v++) sum += std::exp(logits[t * s.vocab + v] - max_logit);
        const double lse = max_logit + std::log(sum);
        lse_tol[t] = delta + 2.0 * (s.vocab + 8) * kU + 2.0 * kU * std::fabs(lse);
        const int32_t target = in.targets[t];
        logp_tol[t] = target == kIgnoreIndex ? 0.0 : lse_tol[t] + delta + 2.0 * kU * std::fabs(logits[t * s.vocab + target] - lse);
    }
    Case c;
    c.math = math;
    const int ih = c.input("h", in.h), iw = c.input("w", in.w), itargets = c.input("targets", NVLM_I32, in.targets);
    const int ilogp = c.output("logp", s.n, scaled(logp_tol, 1.0, "2delta+2(V+8)u+2u(|lse|+|logp|)"));
    const int ilse = c.output("lse", s.n, scaled(lse_tol, 1.0, "delta+2(V+8)u+2u|lse|"));
    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
        return nvlm_lm_logprob_forward(ctx, buf[ilogp], buf[ilse], buf[ih], buf[iw], buf[itargets], s.n, s.d, s.vocab,
                                       s.chunk);
    };
    return c;
}

Case lm_backward_case(const LmShape& s, const LmInputs& in, bool want_dh, bool want_dw, int32_t math, Random& rng,
                      nvlm_context* cpu) {
    const auto lse = values_of<float>(reference_run(cpu, lm_forward_case(s, in, math)).results[4]);
    const auto dlogp = rng.uniform(s.n, -1.0f, 1.0f);
    const auto dh0 = rng.uniform(s.n * s.d, -1.0f, 1.0f), dw0 = rng.uniform(s.vocab * s.d, -1.0f, 1.0f);
    // With the saved lse identical on both sides, p = exp(logit − lse) is off by
    // ε = 2(d+2)u·Σ|h·w| + 8u relative, so dlogit = g·(onehot − p) by e = |g|·p·ε + 2u·|dlogit|.
    // dh += dlogits · w (vocab terms) and dw += dlogitsᵀ · h (n terms): the propagated Σ e·|factor|
    // plus 2(K+2)u·Σ|dlogit·factor| and the initial value.
    // BF16 mode: the logits come from the rounded h̃, w̃ (4(d+2)u in ε, see the dense algebra section),
    // and dh, dw multiply the dlogits rounded to bf16 with h̃, w̃. Both sides' fp32 dlogits lie in
    // [x − e, x + e] around the host's x (e adds both sides' error bounds, so each side is within e of
    // the exact value, which x matches to double precision), and rounding is monotone, so their
    // roundings differ by at most
    // rd(x + e) − rd(x − e): 0 unless a bf16 rounding boundary falls inside, one bf16 step when one
    // does. That difference propagates instead of e; the sums then add the products of the same
    // rounded values: 4(K+2)u·Σ|rd(dlogit)·factor| with |rd(dlogit)| ≤ max|rd(x ± e)|.
    std::vector<double> logits, abs_terms;
    const LmInputs operands = bf16_operands(in, math);
    lm_host_logits(s, operands, logits, abs_terms);
    const bool bf16 = math == NVLM_MATH_BF16;
    std::vector<double> dh_err(dh0.size(), 0.0), dh_mag = abs_of(dh0);
    std::vector<double> dw_err(dw0.size(), 0.0), dw_mag = abs_of(dw0);
    for (int64_t t = 0; t < s.n; t++) {
        if (in.targets[t] == kIgnoreIndex) continue;
        const double g = dlogp[t];
        for (int64_t v = 0; v < s.vocab; v++) {
            const double p = std::exp(logits[t * s.vocab + v] - lse[t]);
            const double dlogit = g * ((v == in.targets[t] ? 1.0 : 0.0) - p);
            const double err =
                std::fabs(g) * p * (sum_sides(math) * (s.d + 2) * kU * abs_terms[t * s.vocab + v] + 8.0 * kU) +
                2.0 * kU * std::fabs(dlogit);
            const double low = bf16 ? bf16_nearest(dlogit - err) : 0.0, high = bf16 ? bf16_nearest(dlogit + err) : 0.0;
            const double propagated = bf16 ? high - low : err;
            const double factor_abs = bf16 ? std::max(std::fabs(low), std::fabs(high)) : std::fabs(dlogit);
            for (int64_t e = 0; e < s.d; e++) {
                const double w_abs = std::fabs(operands.w[v * s.d + e]), h_abs = std::fabs(operands.h[t * s.d + e]);
                dh_err[t * s.d + e] += propagated * w_abs, dh_mag[t * s.d + e] += factor_abs * w_abs;
                dw_err[v * s.d + e] += propagated * h_abs, dw_mag[v * s.d + e] += factor_abs * h_abs;
            }
        }
    }
    auto bound = [math](std::vector<double> err, const std::vector<double>& mag, int64_t terms) {
        for (size_t e = 0; e < err.size(); e++) err[e] += sum_sides(math) * (terms + 2) * kU * mag[e];
        return err;
    };
    const std::string rule = bf16 ? "sum (rd(x+e)-rd(x-e))|factor| + 4(K+2)u*sum|bf16 terms| K="
                                  : "sum err|factor| + 2(K+2)u*sum|terms| K=";
    Case c;
    c.math = math;
    const int idlogp = c.input("dlogp", dlogp), ih = c.input("h", in.h), iw = c.input("w", in.w);
    const int itargets = c.input("targets", NVLM_I32, in.targets), ilse = c.input("lse", lse);
    const int idh = want_dh ? c.accumulated("dh", dh0, scaled(bound(dh_err, dh_mag, s.vocab), 1.0,
                                                              rule + std::to_string(s.vocab))) : -1;
    const int idw = want_dw ? c.accumulated("dw", dw0, scaled(bound(dw_err, dw_mag, s.n), 1.0,
                                                              rule + std::to_string(s.n))) : -1;
    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
        return nvlm_lm_logprob_backward(ctx, maybe(buf, idh), maybe(buf, idw), buf[idlogp], buf[ih], buf[iw],
                                        buf[itargets], buf[ilse], s.n, s.d, s.vocab, s.chunk);
    };
    return c;
}

void add_lm_logprob_cases(std::vector<CaseSpec>& cases) {
    // Every third target is −100; vocab never a multiple of chunk except the chunk ≥ vocab case.
    const LmShape shapes[] = {{1, 1, 1, 1}, {7, 33, 100, 32}, {5, 17, 50, 64}, {77, 576, 1000, 256}, {50, 576, 1999, 512}};
    for (const LmShape& s : shapes)
        for (int32_t math : kMathModes) {
            const std::string shape = dims({{"n", s.n}, {"d", s.d}, {"vocab", s.vocab}, {"chunk", s.chunk}});
            cases.push_back({"lm_logprob_forward" + shape + math_suffix(math), [s, math](Random& rng, nvlm_context*) {
                return lm_forward_case(s, lm_inputs(s, rng), math);
            }});
            struct Wanted { bool dh, dw; const char* label; };
            const Wanted variants[] = {{true, true, ""}, {true, false, " dw=null"}, {false, true, " dh=null"},
                                       {false, false, " all null"}};
            for (const Wanted& want : variants) {
                if (want.label[0] != '\0' && s.vocab != 100) continue;
                cases.push_back({"lm_logprob_backward" + shape + want.label + math_suffix(math),
                                 [s, want, math](Random& rng, nvlm_context* cpu) {
                    const LmInputs in = lm_inputs(s, rng);
                    return lm_backward_case(s, in, want.dh, want.dw, math, rng, cpu);
                }});
            }
        }
}

// ---- optimiser -----------------------------------------------------------------------------------------

// The tolerances of one AdamW update of param, m, v (n) from grad; the scalar factors as the twin
// computes them, in double (torch's Python floats). Per element:
//   m = β1·m0 + (1−β1)·g: 3 roundings of |β1·m0| + |(1−β1)·g| =: M, per side; tol_m = 8u·M.
//   v likewise, all terms positive: tol_v = 8u·v.
//   p = p0·(1 − lr·wd) − step_size·m / (√v/bc2 + eps): the decay 2u·|p0|; the update moves by
//   its m's error over the denominator plus ~6u relative (sqrt, two divisions, the add):
//   tol_p = 8u·|p0| + 2·step_size·(4u·M + 8u·|m|)/den + 4u·|p|.
struct AdamWSetting { float lr, beta1, beta2, eps, weight_decay; int64_t step; };

struct AdamWChecks { Check param, m, v; };

AdamWChecks adamw_checks(const AdamWSetting& st, const std::vector<float>& param, const std::vector<float>& grad,
                         const std::vector<float>& m0, const std::vector<float>& v0) {
    const double steps = static_cast<double>(st.step), beta1 = st.beta1, beta2 = st.beta2;
    const double step_size = st.lr / (1.0 - std::pow(beta1, steps));
    const double bc2 = std::sqrt(1.0 - std::pow(beta2, steps));
    std::vector<double> m_mag(param.size()), v_tol(param.size()), p_tol(param.size());
    for (size_t i = 0; i < param.size(); i++) {
        const double M = std::fabs(beta1 * m0[i]) + std::fabs((1.0 - beta1) * grad[i]);
        const double m = beta1 * m0[i] + (1.0 - beta1) * grad[i];
        const double v = beta2 * v0[i] + (1.0 - beta2) * grad[i] * grad[i];
        const double den = std::sqrt(v) / bc2 + st.eps;
        const double p = param[i] * (1.0 - static_cast<double>(st.lr) * st.weight_decay) - step_size * m / den;
        m_mag[i] = M;
        v_tol[i] = 8.0 * kU * v;
        p_tol[i] = 8.0 * kU * std::fabs(param[i]) + 2.0 * step_size * (4.0 * kU * M + 8.0 * kU * std::fabs(m)) / den +
                   4.0 * kU * std::fabs(p);
    }
    return {scaled(p_tol, 1.0, "8u|p0|+2 step_size(4uM+8u|m|)/den+4u|p|"),
            scaled(m_mag, 8.0 * kU, "8u*(|b1 m0|+|(1-b1)g|)"), scaled(v_tol, 1.0, "8u*v")};
}

// One tensor's inputs: param U(−1, 1), grad N(0, 0.01), m0 N(0, 0.005), v0 U(1e-6, 1e-4).
struct AdamWTensorInputs { std::vector<float> param, grad, m0, v0; };

AdamWTensorInputs adamw_inputs(Random& rng, int64_t n) {
    AdamWTensorInputs in;
    in.param = rng.uniform(n, -1.0f, 1.0f);
    in.grad = rng.normal(n, 0.0f, 0.01f);
    in.m0 = rng.normal(n, 0.0f, 0.005f);
    in.v0 = rng.uniform(n, 1e-6f, 1e-4f);
    return in;
}

void add_adamw_cases(std::vector<CaseSpec>& cases) {
    struct Setting { int64_t n, step; float weight_decay; };
    const Setting settings[] = {{1, 1, 0.0f}, {7, 1, 0.1f}, {1000003, 1, 0.1f}, {1000003, 1000, 0.0f}};
    for (const Setting& st : settings) {
        const std::string name = "adamw_step" + dims({{"n", st.n}, {"step", st.step}}) + " wd" + number(st.weight_decay);
        const AdamWSetting h{1e-3f, 0.9f, 0.999f, 1e-8f, st.weight_decay, st.step};
        cases.push_back({name, [=](Random& rng, nvlm_context*) {
            Case c;
            const AdamWTensorInputs in = adamw_inputs(rng, st.n);
            const AdamWChecks checks = adamw_checks(h, in.param, in.grad, in.m0, in.v0);
            const int igrad = c.input("grad", in.grad);
            const int iparam = c.accumulated("param", in.param, checks.param);
            const int im = c.accumulated("m", in.m0, checks.m);
            const int iv = c.accumulated("v", in.v0, checks.v);
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_adamw_step(ctx, buf[iparam], buf[igrad], buf[im], buf[iv], st.n, h.lr, h.beta1, h.beta2,
                                       h.eps, h.weight_decay, h.step);
            };
            return c;
        }});
    }

    // Many tensors of odd sizes in one call: an empty one, single elements, exactly one chunk of the
    // CUDA kernel (16384), one element past it, several chunks with a partial last one, LoRA-like
    // shapes. Every element is updated once, as by nvlm_adamw_step: the same tolerances. "two calls"
    // updates the first half and then the second half, so the CUDA launch table changes between calls.
    const std::vector<int64_t> sizes = {4608, 1, 0, 7, 16384, 16385, 40003, 576, 129, 12288, 3, 65537};
    for (const AdamWSetting& h : {AdamWSetting{1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 1},
                                  AdamWSetting{1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1000}})
        for (bool two_calls : {false, true}) {
            if (two_calls && h.step != 1) continue;
            const std::string name = "adamw_multi_tensor_step" + dims({{"tensors", static_cast<int64_t>(sizes.size())},
                                                                       {"step", h.step}}) +
                                     " wd" + number(h.weight_decay) + (two_calls ? " two calls" : "");
            cases.push_back({name, [=](Random& rng, nvlm_context*) {
                Case c;
                std::vector<int> iparam, igrad, im, iv;
                for (size_t t = 0; t < sizes.size(); t++) {
                    const AdamWTensorInputs in = adamw_inputs(rng, sizes[t]);
                    const AdamWChecks checks = adamw_checks(h, in.param, in.grad, in.m0, in.v0);
                    const std::string index = "[" + std::to_string(t) + "]";
                    igrad.push_back(c.input("grads" + index, in.grad));
                    iparam.push_back(c.accumulated("params" + index, in.param, checks.param));
                    im.push_back(c.accumulated("m" + index, in.m0, checks.m));
                    iv.push_back(c.accumulated("v" + index, in.v0, checks.v));
                }
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    const size_t half = two_calls ? sizes.size() / 2 : sizes.size();
                    for (const auto& [begin, end] : {std::pair<size_t, size_t>{0, half}, {half, sizes.size()}}) {
                        if (begin == end) continue;
                        std::vector<nvlm_buffer*> params, ms, vs;
                        std::vector<const nvlm_buffer*> grads;
                        for (size_t t = begin; t < end; t++) {
                            params.push_back(buf[iparam[t]]);
                            grads.push_back(buf[igrad[t]]);
                            ms.push_back(buf[im[t]]);
                            vs.push_back(buf[iv[t]]);
                        }
                        const nvlm_status status = nvlm_adamw_multi_tensor_step(
                            ctx, params.data(), grads.data(), ms.data(), vs.data(), sizes.data() + begin,
                            static_cast<int64_t>(end - begin), h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.step);
                        if (status != NVLM_OK) return status;
                    }
                    return NVLM_OK;
                };
                return c;
            }});
        }
}

// ---- NF4 base weights ------------------------------------------------------------------------------------

int64_t nf4_blocks(int64_t numel) { return (numel + 63) / 64; }
int64_t nf4_nested(int64_t numel) { return (nf4_blocks(numel) + 255) / 256; }

// The weight an NF4 case quantises: N(0, 0.02) like a trained projection; "zero-block" zeroes a
// block-aligned run of 128 elements (absmax 0: bitsandbytes' NaN path gives code 0), "flat" makes
// every block's absmax 1 (nested absmax 0: the NaN path of the double quantisation).
std::vector<float> nf4_weight(Random& rng, int64_t n, int64_t k, const std::string& kind) {
    auto w = rng.normal(n * k, 0.0f, 0.02f);
    if (kind == "zero-block" && n * k >= 192) std::fill(w.begin() + 64, w.begin() + 192, 0.0f);
    if (kind == "flat")
        for (size_t i = 0; i < w.size(); i++) w[i] = (i % 3 == 0) ? -1.0f : (w[i] < 0 ? -0.5f : 0.5f);
    return w;
}

// The five buffers of a quantised weight, as the CPU's nf4_quantize writes them (inputs of the
// dequantize and linear cases, identical on both backends).
struct Nf4State {
    std::vector<uint8_t> packed, absmax_q;
    std::vector<float> absmax2, offset, absmax_code;
};

Case nf4_quantize_case(int64_t n, int64_t k, const std::vector<float>& w, bool want_absmax) {
    // The format is defined bit for bit (nf4.h): every output is exact.
    const int64_t numel = n * k;
    Case c;
    const int iw = c.input("w", w);
    const int ipacked = c.output("packed", NVLM_U8, (numel + 1) / 2, exact());
    const int iabsmax_q = c.output("absmax_q", NVLM_U8, nf4_blocks(numel), exact());
    const int iabsmax2 = c.output("absmax2", nf4_nested(numel), exact());
    const int ioffset = c.output("offset", 1, exact());
    const int icode = c.output("absmax_code", 256, exact());
    const int iabsmax = want_absmax ? c.output("absmax", nf4_blocks(numel), exact()) : -1;
    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
        return nvlm_nf4_quantize(ctx, buf[ipacked], buf[iabsmax_q], buf[iabsmax2], buf[ioffset], buf[icode],
                                 maybe(buf, iabsmax), buf[iw], n, k);
    };
    return c;
}

Nf4State nf4_reference_state(nvlm_context* cpu, int64_t n, int64_t k, const std::vector<float>& w) {
    const Run run = reference_run(cpu, nf4_quantize_case(n, k, w, false));
    return Nf4State{run.results[1], run.results[2], values_of<float>(run.results[3]), values_of<float>(run.results[4]),
                    values_of<float>(run.results[5])};
}

// Adds the five state buffers to a case; returns their indices in nvlm.h's argument order.
std::array<int, 5> nf4_state_inputs(Case& c, const Nf4State& st) {
    return {c.input("packed", NVLM_U8, st.packed), c.input("absmax_q", NVLM_U8, st.absmax_q),
            c.input("absmax2", st.absmax2), c.input("offset", st.offset), c.input("absmax_code", st.absmax_code)};
}

// The CPU's dequantised weight, for the bounds of the linear cases.
std::vector<float> nf4_reference_weight(nvlm_context* cpu, int64_t n, int64_t k, const Nf4State& st) {
    Case c;
    const auto s = nf4_state_inputs(c, st);
    const int iw = c.output("w", n * k, exact());
    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
        return nvlm_nf4_dequantize(ctx, buf[iw], buf[s[0]], buf[s[1]], buf[s[2]], buf[s[3]], buf[s[4]], n, k);
    };
    return values_of<float>(reference_run(cpu, c).results[iw]);
}

void add_nf4_cases(std::vector<CaseSpec>& cases) {
    struct Weight { int64_t n, k; const char* kind; };
    // Odd numel (a padded last nibble), k = 200 (blocks of 64 straddle rows), the SmolLM2 MLP's up
    // projection (1536, 576), more than 256 blocks (several nested blocks), and both NaN paths.
    const Weight weights[] = {{1, 1, "normal"}, {3, 5, "normal"}, {72, 200, "normal"}, {1536, 576, "normal"},
                              {40, 128, "zero-block"}, {16, 64, "flat"}};
    for (const Weight& wt : weights) {
        const std::string shape = dims({{"n", wt.n}, {"k", wt.k}}) + " " + wt.kind;
        for (bool want_absmax : {true, false}) {
            if (!want_absmax && wt.n != 72) continue;
            cases.push_back({"nf4_quantize" + shape + (want_absmax ? "" : " absmax=null"), [wt, want_absmax](Random& rng, nvlm_context*) {
                return nf4_quantize_case(wt.n, wt.k, nf4_weight(rng, wt.n, wt.k, wt.kind), want_absmax);
            }});
        }
        cases.push_back({"nf4_dequantize" + shape, [wt](Random& rng, nvlm_context* cpu) {
            const Nf4State st = nf4_reference_state(cpu, wt.n, wt.k, nf4_weight(rng, wt.n, wt.k, wt.kind));
            Case c;
            const auto s = nf4_state_inputs(c, st);
            // Each element is code · (absmax_code[q]·absmax2 + offset), single roundings without fma
            // (nf4.h): exact.
            const int iw = c.output("w", wt.n * wt.k, exact());
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_nf4_dequantize(ctx, buf[iw], buf[s[0]], buf[s[1]], buf[s[2]], buf[s[3]], buf[s[4]], wt.n,
                                           wt.k);
            };
            return c;
        }});
    }

    // x (m, k) · dequant(w (n, k))ᵀ: m = 1..4 is CUDA's GEMV path, 5 the first tensor-core size.
    struct Linear { int64_t m, k, n; };
    const Linear linears[] = {{1, 576, 1536}, {3, 576, 1536}, {4, 200, 72}, {5, 200, 72}, {77, 576, 1536},
                              {1, 200, 72}, {3, 200, 72}, {77, 200, 72}, {16, 1536, 576}};
    // CUDA's tensor-core path rounds x and the dequantised w to bf16 (2^-8 relative each, so a product
    // by ≤ 2^-7 + 2^-16) and accumulates in fp32: per element |Δ| ≤ 2^-7·Σ|x·w| plus the fp32 sum's
    // 2(K+2)u·Σ|x·w|. The GEMV path (m ≤ 4) is fp32 and well inside the same bound. Σ|x·w| is taken
    // with the CPU's nf4_dequantize output.
    auto nf4_bound = [](const std::vector<double>& abs_terms, int64_t terms) {
        return scaled(abs_terms, 2.0 * kBf16U + 2.0 * static_cast<double>(terms + 2) * kU,
                      "(2^-7+2(K+2)u)*sum|x w| K=" + std::to_string(terms));
    };
    for (const Linear& l : linears) {
        const std::string shape = dims({{"m", l.m}, {"k", l.k}, {"n", l.n}});
        cases.push_back({"nf4_linear_forward" + shape, [l, nf4_bound](Random& rng, nvlm_context* cpu) {
            const Nf4State st = nf4_reference_state(cpu, l.n, l.k, nf4_weight(rng, l.n, l.k, "normal"));
            const auto w = nf4_reference_weight(cpu, l.n, l.k, st);
            const auto x = rng.uniform(l.m * l.k, -1.0f, 1.0f);
            Case c;
            const int ix = c.input("x", x);
            const auto s = nf4_state_inputs(c, st);
            const int iout = c.output("out", l.m * l.n,
                                      nf4_bound(abs_product(x.data(), false, w.data(), true, l.m, l.n, l.k), l.k));
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_nf4_linear_forward(ctx, buf[iout], buf[ix], buf[s[0]], buf[s[1]], buf[s[2]], buf[s[3]],
                                               buf[s[4]], l.m, l.k, l.n);
            };
            return c;
        }});
        for (bool wanted : {true, false}) {
            if (!wanted && !(l.m == 3 && l.k == 200)) continue;
            cases.push_back({"nf4_linear_backward" + shape + (wanted ? "" : " dx=null"), [l, wanted, nf4_bound](Random& rng, nvlm_context* cpu) {
                const Nf4State st = nf4_reference_state(cpu, l.n, l.k, nf4_weight(rng, l.n, l.k, "normal"));
                const auto w = nf4_reference_weight(cpu, l.n, l.k, st);
                const auto dout = rng.uniform(l.m * l.n, -1.0f, 1.0f);
                Case c;
                const int idout = c.input("dout", dout);
                const auto s = nf4_state_inputs(c, st);
                int idx = -1;
                if (wanted) {  // dx (m, k) += dout · w: n terms each, the same bf16 bound, plus |dx0|
                    const auto dx0 = rng.uniform(l.m * l.k, -1.0f, 1.0f);
                    auto magnitude = abs_product(dout.data(), false, w.data(), false, l.m, l.k, l.n);
                    add_abs(magnitude, dx0);
                    idx = c.accumulated("dx", dx0, nf4_bound(magnitude, l.n));
                }
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_nf4_linear_backward(ctx, maybe(buf, idx), buf[idout], buf[s[0]], buf[s[1]], buf[s[2]],
                                                    buf[s[3]], buf[s[4]], l.m, l.k, l.n);
                };
                return c;
            }});
        }
    }
}

// ---- casts ---------------------------------------------------------------------------------------------

// f32 values whose bf16 rounding is delicate: ties to even both ways, just above and below a tie,
// ±0, the smallest normal and subnormals, the largest finite (rounds to inf), ±inf, and quiet and
// signalling NaNs of both signs (the CPU makes every NaN sign|0x7FC0).
std::vector<float> cast_specials() {
    const uint32_t bits[] = {0x3F808000u, 0x3F818000u, 0x3F808001u, 0x3F807FFFu, 0x00000000u, 0x80000000u,
                             0x00800000u, 0x00000001u, 0x807FFFFFu, 0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F800000u,
                             0xFF800000u, 0x7FC00000u, 0xFFC00001u, 0x7F800001u, 0xFFA00000u, 0x7F7F8000u};
    std::vector<float> v;
    for (uint32_t b : bits) {
        float f;
        std::memcpy(&f, &b, sizeof f);
        v.push_back(f);
    }
    return v;
}

void add_cast_cases(std::vector<CaseSpec>& cases) {
    // Round to nearest even and exact widening are single correctly rounded operations: bit-exact.
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
        const std::string shape = dims({{"n", n}});
        // Normals spread over many binades: N(0, 1) scaled by 2^[−30, 30].
        auto wide_values = [n](Random& rng) {
            auto v = rng.normal(n, 0.0f, 1.0f);
            const auto exponents = rng.integers(n, -30, 30);
            for (size_t i = 0; i < v.size(); i++) v[i] = std::ldexp(v[i], exponents[i]);
            return v;
        };
        cases.push_back({"cast f32->bf16" + shape, [wide_values, n](Random& rng, nvlm_context*) {
            Case c;
            const int isrc = c.input("src", wide_values(rng));
            const int idst = c.output("dst", NVLM_BF16, n, exact());
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_cast(ctx, buf[idst], NVLM_BF16, buf[isrc], NVLM_F32, n);
            };
            return c;
        }});
        cases.push_back({"cast bf16->f32" + shape, [n](Random& rng, nvlm_context*) {
            Case c;
            // Any 16-bit pattern but 0xFFFF, the poison (a NaN the forward would keep: it would
            // read as unwritten).
            const auto patterns = rng.integers(n, 0, 0xFFFE);
            std::vector<uint16_t> src(patterns.begin(), patterns.end());
            const int isrc = c.input("src", NVLM_BF16, src);
            const int idst = c.output("dst", n, exact());
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_cast(ctx, buf[idst], NVLM_F32, buf[isrc], NVLM_BF16, n);
            };
            return c;
        }});
        cases.push_back({"cast f32->f32" + shape, [wide_values, n](Random& rng, nvlm_context*) {
            Case c;
            const int isrc = c.input("src", wide_values(rng));
            const int idst = c.output("dst", n, exact());
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_cast(ctx, buf[idst], NVLM_F32, buf[isrc], NVLM_F32, n);
            };
            return c;
        }});
        cases.push_back({"cast bf16->bf16" + shape, [n](Random& rng, nvlm_context*) {
            Case c;
            const auto patterns = rng.integers(n, 0, 0xFFFE);
            const int isrc = c.input("src", NVLM_BF16, std::vector<uint16_t>(patterns.begin(), patterns.end()));
            const int idst = c.output("dst", NVLM_BF16, n, exact());
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_cast(ctx, buf[idst], NVLM_BF16, buf[isrc], NVLM_BF16, n);
            };
            return c;
        }});
    }
    cases.push_back({"cast f32->bf16 specials", [](Random&, nvlm_context*) {
        Case c;
        const auto src = cast_specials();
        const int64_t n = static_cast<int64_t>(src.size());
        const int isrc = c.input("src", src);
        const int idst = c.output("dst", NVLM_BF16, n, exact());
        c.call = [=](nvlm_context* ctx, const Buffers& buf) {
            return nvlm_cast(ctx, buf[idst], NVLM_BF16, buf[isrc], NVLM_F32, n);
        };
        return c;
    }});
}

// ---- LoRA / DoRA adapters -----------------------------------------------------------------------

// The CUDA kernels work in tiles of 32 rows × 64 columns with ranks staged 32 at a time: the shapes
// stay inside one tile or cross each boundary, r covers 1, 8, 16 and two rank chunks (40), and k = 0
// makes down zero.
struct LoraShape { int64_t m, k, n, r; };
const LoraShape kLoraShapes[] = {{1, 1, 1, 1},    {37, 29, 70, 1},   {65, 33, 130, 8},
                                 {33, 70, 65, 16}, {100, 40, 50, 40}, {5, 0, 9, 8}};
constexpr float kLoraScaling = 0.75f;

// lora: no column scale, no base term; dora: both; dora aliased: base_dora is base_out's own buffer
// (and in the backward dbase_out and dbase_dora are one buffer), as the adapter passes it.
enum class LoraMode { lora, dora, dora_aliased };

const char* lora_mode_name(LoraMode mode) {
    return mode == LoraMode::lora ? " lora" : mode == LoraMode::dora ? " dora" : " dora aliased";
}

struct LoraInputs {
    std::vector<float> base_out, base_dora, x, a, b, col_scale;  // base_dora, col_scale empty for lora
    // Host magnitudes for the bounds: down_abs (m, r) = |x|·|a|ᵀ, up_abs (m, n) = down_abs·|b|ᵀ, the
    // Σ|terms| of down and, through down's errors too, of up.
    std::vector<double> down_abs, up_abs;
};

LoraInputs lora_inputs(Random& rng, const LoraShape& s, LoraMode mode) {
    LoraInputs in;
    in.base_out = rng.uniform(s.m * s.n, -1.0f, 1.0f);
    if (mode == LoraMode::dora) in.base_dora = rng.uniform(s.m * s.n, -1.0f, 1.0f);
    if (mode == LoraMode::dora_aliased) in.base_dora = in.base_out;
    in.x = rng.uniform(s.m * s.k, -1.0f, 1.0f);
    in.a = rng.uniform(s.r * s.k, -0.5f, 0.5f);
    in.b = rng.uniform(s.n * s.r, -0.5f, 0.5f);
    if (mode != LoraMode::lora) in.col_scale = rng.uniform(s.n, 0.5f, 1.5f);
    in.down_abs = abs_product(in.x.data(), false, in.a.data(), true, s.m, s.r, s.k);
    in.up_abs.assign(static_cast<size_t>(s.m * s.n), 0.0);
    for (int64_t i = 0; i < s.m; i++)
        for (int64_t j = 0; j < s.n; j++)
            for (int64_t p = 0; p < s.r; p++)
                in.up_abs[i * s.n + j] += in.down_abs[i * s.r + p] * std::fabs(in.b[j * s.r + p]);
    return in;
}

double lora_scale(const LoraInputs& in, int64_t j) { return in.col_scale.empty() ? 1.0 : in.col_scale[j]; }

// The forward case; down is its last tensor, which the backward cases take from the CPU's run.
Case lora_forward_case(const LoraShape& s, LoraMode mode, const LoraInputs& in) {
    Case c;
    const int ibase = c.input("base_out", in.base_out);
    const int ibd = mode == LoraMode::dora ? c.input("base_dora", in.base_dora)
                                           : mode == LoraMode::dora_aliased ? ibase : -1;
    const int ix = c.input("x_lora", in.x), ia = c.input("a", in.a), ib = c.input("b", in.b);
    const int ic = in.col_scale.empty() ? -1 : c.input("col_scale", in.col_scale);
    // up's error: down's k-term sums of products ((k+1)u·down_abs) carried through b, Σ_p |b|·(k+1)u·down_abs
    // = (k+1)u·up_abs, plus its own r products and sum, (r+1)u·up_abs; then the scale, c, c − 1, its product
    // with base_dora and two adds are 6 roundings of the terms |base_out| + |c − 1|·|base_dora| + c·s·up_abs.
    // Two backends: 2(k+r+8)u·Σ|terms|.
    std::vector<double> out_abs(static_cast<size_t>(s.m * s.n));
    for (int64_t i = 0; i < s.m; i++)
        for (int64_t j = 0; j < s.n; j++) {
            const int64_t e = i * s.n + j;
            const double scale = lora_scale(in, j);
            out_abs[e] = std::fabs(in.base_out[e]) + (in.base_dora.empty() ? 0.0 : std::fabs(scale - 1.0) * std::fabs(in.base_dora[e])) +
                         scale * kLoraScaling * in.up_abs[e];
        }
    const int iout = c.output("out", s.m * s.n,
                              scaled(out_abs, 2.0 * static_cast<double>(s.k + s.r + 8) * kU, "2(k+r+8)u*sum|terms|"));
    const int idown = c.output("down", s.m * s.r, sum_bound(in.down_abs, s.k));  // k products each
    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
        return nvlm_lora_forward(ctx, buf[iout], buf[idown], buf[ibase], maybe(buf, ibd), buf[ix], buf[ia], buf[ib],
                                 maybe(buf, ic), s.m, s.k, s.n, s.r, kLoraScaling);
    };
    return c;
}

void add_lora_cases(std::vector<CaseSpec>& cases) {
    const LoraMode modes[] = {LoraMode::lora, LoraMode::dora, LoraMode::dora_aliased};
    for (const LoraShape& s : kLoraShapes)
        for (LoraMode mode : modes) {
            const std::string shape = dims({{"m", s.m}, {"k", s.k}, {"n", s.n}, {"r", s.r}}) + lora_mode_name(mode);
            cases.push_back({"lora_forward" + shape, [s, mode](Random& rng, nvlm_context*) {
                return lora_forward_case(s, mode, lora_inputs(rng, s, mode));
            }});
        }

    // Which gradients are wanted: all; the adapter weights and input only; the base terms and the scale only.
    struct Wanted { bool dbase, dx, da, db, dcol; const char* label; };
    const Wanted all{true, true, true, true, true, ""};
    const Wanted variants[] = {{false, true, true, true, false, " dbase=null dcol_scale=null"},
                               {true, false, false, false, true, " dx=null da=null db=null"}};
    for (const LoraShape& s : kLoraShapes)
        for (LoraMode mode : modes) {
            std::vector<Wanted> wanted{all};
            if (s.m == 65) wanted.insert(wanted.end(), std::begin(variants), std::end(variants));
            for (const Wanted& want : wanted) {
                const std::string name = "lora_backward" +
                                         dims({{"m", s.m}, {"k", s.k}, {"n", s.n}, {"r", s.r}}) +
                                         lora_mode_name(mode) + want.label;
                cases.push_back({name, [s, mode, want](Random& rng, nvlm_context* cpu) {
                    const LoraInputs in = lora_inputs(rng, s, mode);
                    const Run forward = reference_run(cpu, lora_forward_case(s, mode, in));
                    const auto down = values_of<float>(forward.results.back());
                    const auto dout = rng.uniform(s.m * s.n, -1.0f, 1.0f);
                    const double u2 = 2.0 * kU;  // two backends

                    // d_down_abs (m, r) = Σ_j |dout|·|s·c_j·b_jp|: the terms of d_down, each two roundings
                    // (s·c_j, then ·b_jp) and a product, summed over n: off by ≤ (n+3)u of it. da and dx
                    // carry that error and add their own product, m- or r-term sum and add: 2(n+m+6)u, 2(n+r+6)u.
                    std::vector<double> d_down_abs(static_cast<size_t>(s.m * s.r), 0.0);
                    for (int64_t i = 0; i < s.m; i++)
                        for (int64_t j = 0; j < s.n; j++)
                            for (int64_t p = 0; p < s.r; p++)
                                d_down_abs[i * s.r + p] += std::fabs(dout[i * s.n + j]) *
                                                           std::fabs(kLoraScaling * lora_scale(in, j) * in.b[j * s.r + p]);

                    Case c;
                    const int idout = c.input("dout", dout);
                    const int ibd = in.base_dora.empty() ? -1 : c.input("base_dora", in.base_dora);
                    const int ix = c.input("x_lora", in.x), ia = c.input("a", in.a), ib = c.input("b", in.b);
                    const int ic = in.col_scale.empty() ? -1 : c.input("col_scale", in.col_scale);
                    const int idown = c.input("down", down);
                    int idbase = -1, idbd = -1, idx = -1, ida = -1, idb = -1, idcol = -1;
                    if (want.dbase) {
                        // One add of dout, and of (c − 1)·dout (a product and an add), per element.
                        const auto d0 = rng.uniform(s.m * s.n, -1.0f, 1.0f);
                        std::vector<double> base_abs = abs_of(d0), dora_abs = abs_of(d0);
                        for (int64_t e = 0; e < s.m * s.n; e++) {
                            base_abs[e] += std::fabs(dout[e]);
                            dora_abs[e] += std::fabs((lora_scale(in, e % s.n) - 1.0) * dout[e]);
                        }
                        if (mode == LoraMode::dora_aliased) {
                            add_abs(base_abs, std::vector<float>(dora_abs.begin(), dora_abs.end()));
                            idbase = c.accumulated("dbase_out=dbase_dora", d0, sum_bound(base_abs, 2));
                        } else {
                            idbase = c.accumulated("dbase_out", d0, sum_bound(base_abs, 1));
                            // Without a column scale the factor c − 1 is 0: dbase_dora is left as it was.
                            const auto dbd0 = rng.uniform(s.m * s.n, -1.0f, 1.0f);
                            std::vector<double> dbd_abs = abs_of(dbd0);
                            for (int64_t e = 0; e < s.m * s.n; e++)
                                dbd_abs[e] += std::fabs((lora_scale(in, e % s.n) - 1.0) * dout[e]);
                            idbd = c.accumulated("dbase_dora", dbd0,
                                                 mode == LoraMode::lora ? exact() : sum_bound(dbd_abs, 1));
                        }
                    }
                    if (want.dx) {  // dx_il += Σ_p d_down_ip·a_pl
                        const auto d0 = rng.uniform(s.m * s.k, -1.0f, 1.0f);
                        std::vector<double> mag = abs_of(d0);
                        for (int64_t i = 0; i < s.m; i++)
                            for (int64_t l = 0; l < s.k; l++)
                                for (int64_t p = 0; p < s.r; p++)
                                    mag[i * s.k + l] += d_down_abs[i * s.r + p] * std::fabs(in.a[p * s.k + l]);
                        idx = c.accumulated("dx_lora", d0,
                                            scaled(mag, u2 * static_cast<double>(s.n + s.r + 6), "2(n+r+6)u*sum|terms|"));
                    }
                    if (want.da) {  // da_pl += Σ_i d_down_ip·x_il
                        const auto d0 = rng.uniform(s.r * s.k, -1.0f, 1.0f);
                        std::vector<double> mag = abs_of(d0);
                        for (int64_t i = 0; i < s.m; i++)
                            for (int64_t p = 0; p < s.r; p++)
                                for (int64_t l = 0; l < s.k; l++)
                                    mag[p * s.k + l] += d_down_abs[i * s.r + p] * std::fabs(in.x[i * s.k + l]);
                        ida = c.accumulated("da", d0,
                                            scaled(mag, u2 * static_cast<double>(s.n + s.m + 6), "2(n+m+6)u*sum|terms|"));
                    }
                    if (want.db) {  // db_jp += s·c_j·Σ_i dout_ij·down_ip: m products, s·c_j, its product, the add
                        const auto d0 = rng.uniform(s.n * s.r, -1.0f, 1.0f);
                        std::vector<double> mag = abs_of(d0);
                        for (int64_t i = 0; i < s.m; i++)
                            for (int64_t j = 0; j < s.n; j++)
                                for (int64_t p = 0; p < s.r; p++)
                                    mag[j * s.r + p] += kLoraScaling * lora_scale(in, j) *
                                                        std::fabs(dout[i * s.n + j] * down[i * s.r + p]);
                        idb = c.accumulated("db", d0, sum_bound(mag, s.m + 2));
                    }
                    if (want.dcol) {
                        // dcol_j += Σ_i dout_ij·(base_dora_ij + s·up_ij): up recomputed from the saved down
                        // (r products summed, (r+1)u·|down|·|b|ᵀ), then s·up, the add, the product with dout
                        // and the m-term sum and add: 2(m+r+6)u.
                        const auto d0 = rng.uniform(s.n, -1.0f, 1.0f);
                        std::vector<double> mag = abs_of(d0);
                        for (int64_t i = 0; i < s.m; i++)
                            for (int64_t j = 0; j < s.n; j++) {
                                double up_abs = 0.0;
                                for (int64_t p = 0; p < s.r; p++)
                                    up_abs += std::fabs(down[i * s.r + p] * in.b[j * s.r + p]);
                                const double base = in.base_dora.empty() ? 0.0 : std::fabs(in.base_dora[i * s.n + j]);
                                mag[j] += std::fabs(dout[i * s.n + j]) * (base + kLoraScaling * up_abs);
                            }
                        idcol = c.accumulated("dcol_scale", d0,
                                              scaled(mag, u2 * static_cast<double>(s.m + s.r + 6), "2(m+r+6)u*sum|terms|"));
                    }
                    const bool aliased = mode == LoraMode::dora_aliased;
                    c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                        return nvlm_lora_backward(ctx, maybe(buf, idbase), aliased ? maybe(buf, idbase) : maybe(buf, idbd),
                                                  maybe(buf, idx), maybe(buf, ida), maybe(buf, idb), maybe(buf, idcol),
                                                  buf[idout], maybe(buf, ibd), buf[ix], buf[ia], buf[ib], maybe(buf, ic),
                                                  buf[idown], s.m, s.k, s.n, s.r, kLoraScaling);
                    };
                    return c;
                }});
            }
        }
}

// ---- DoRA's weight norm ----------------------------------------------------------------------------

// The CUDA kernel works in tiles of 32 rows × 64 columns with ranks staged 32 at a time: the shapes stay
// inside one tile or cross each boundary, r covers 1, 8, 16 and two rank chunks (40); k = 0 (dense only)
// makes every norm 0 and its reciprocal infinite.
struct DoraNormShape { int64_t n, k, r; };
constexpr float kDoraScaling = 0.75f;

// Row j's norm of w + s·b·a, off by at most, per backend: the rank sum δ_l = Σ_p b_jp·a_pl and the two
// roundings of w + s·δ put c_l within e_l = (r+3)u·T_l of its exact value, T_l = |w_jl| + s·Σ_p|b_jp·a_pl|;
// the k squares and their sum then give |Ŝ − S| ≤ Σ|ĉ² − c²| + (k+1)u·Σĉ² ≤ (3(r+3) + k + 2)u·ΣT², and
// √ moves that by at most |Ŝ − S|/norm, plus its own rounding (2u·norm with the second-order terms).
// Two backends: twice that. The reciprocal 1/norm inherits the norm's error, tol/(norm·(norm − tol)),
// plus one division on each side (2u/norm). A row whose terms are all 0 has norm 0 (and 1/0 = inf) on
// both sides: tolerance 0.
void dora_norm_checks(const DoraNormShape& s, const std::vector<float>& w, const std::vector<float>& a,
                      const std::vector<float>& b, Check& norm_check, Check& inv_check) {
    std::vector<double> norm_tol(static_cast<size_t>(s.n)), inv_tol(static_cast<size_t>(s.n));
    for (int64_t j = 0; j < s.n; j++) {
        double squares = 0.0, t_squares = 0.0;
        for (int64_t l = 0; l < s.k; l++) {
            double delta = 0.0, delta_abs = 0.0;
            for (int64_t p = 0; p < s.r; p++) {
                delta += static_cast<double>(b[j * s.r + p]) * a[p * s.k + l];
                delta_abs += std::fabs(static_cast<double>(b[j * s.r + p]) * a[p * s.k + l]);
            }
            const double c = w[j * s.k + l] + kDoraScaling * delta;
            const double t = std::fabs(w[j * s.k + l]) + kDoraScaling * delta_abs;
            squares += c * c;
            t_squares += t * t;
        }
        const double norm = std::sqrt(squares);
        if (norm == 0.0) {
            norm_tol[j] = inv_tol[j] = 0.0;
            continue;
        }
        const double err_s = static_cast<double>(3 * (s.r + 3) + s.k + 2) * kU * t_squares;
        norm_tol[j] = 2.0 * (err_s / norm + 2.0 * kU * norm);
        inv_tol[j] = norm_tol[j] < norm ? norm_tol[j] / (norm * (norm - norm_tol[j])) + 2.0 * kU / norm
                                        : std::numeric_limits<double>::infinity();
    }
    norm_check = scaled(norm_tol, 1.0, "2(|S^-S|/norm+2u norm), |S^-S|<=(3(r+3)+k+2)u*sum T^2");
    inv_check = scaled(inv_tol, 1.0, "tol/(norm(norm-tol))+2u/norm");
}

void add_dora_norm_cases(std::vector<CaseSpec>& cases) {
    const DoraNormShape dense_shapes[] = {{1, 1, 1}, {37, 29, 1}, {65, 130, 8}, {33, 70, 40}, {300, 576, 16}, {5, 0, 8}};
    for (const DoraNormShape& s : dense_shapes)
        for (bool want_inv : {true, false}) {
            if (!want_inv && s.n != 65) continue;
            const std::string name = "dora_norm" + dims({{"n", s.n}, {"k", s.k}, {"r", s.r}}) + (want_inv ? "" : " inv_norm=null");
            cases.push_back({name, [s, want_inv](Random& rng, nvlm_context*) {
                const auto w = rng.uniform(s.n * s.k, -1.0f, 1.0f);
                const auto a = rng.uniform(s.r * s.k, -0.5f, 0.5f), b = rng.uniform(s.n * s.r, -0.5f, 0.5f);
                Check norm_check, inv_check;
                dora_norm_checks(s, w, a, b, norm_check, inv_check);
                Case c;
                const int iw = c.input("w", w), ia = c.input("a", a), ib = c.input("b", b);
                const int inorm = c.output("norm", s.n, norm_check);
                const int iinv = want_inv ? c.output("inv_norm", s.n, inv_check) : -1;
                c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                    return nvlm_dora_norm(ctx, buf[inorm], maybe(buf, iinv), buf[iw], buf[ia], buf[ib], s.n, s.k, s.r,
                                          kDoraScaling);
                };
                return c;
            }});
        }

    // NF4: odd numel (a padded last nibble), blocks of 64 straddling rows (k = 29, 200), several nested
    // blocks (300 × 576). The dequantised weight is the same on both backends (bit-exact, nf4.h), so the
    // dense bound holds with it as w.
    const DoraNormShape nf4_shapes[] = {{3, 5, 1}, {37, 29, 8}, {65, 200, 40}, {300, 576, 16}};
    for (const DoraNormShape& s : nf4_shapes) {
        const std::string name = "dora_norm_nf4" + dims({{"n", s.n}, {"k", s.k}, {"r", s.r}});
        cases.push_back({name, [s](Random& rng, nvlm_context* cpu) {
            const Nf4State st = nf4_reference_state(cpu, s.n, s.k, nf4_weight(rng, s.n, s.k, "normal"));
            const auto w = nf4_reference_weight(cpu, s.n, s.k, st);
            const auto a = rng.uniform(s.r * s.k, -0.5f, 0.5f), b = rng.uniform(s.n * s.r, -0.05f, 0.05f);
            Check norm_check, inv_check;
            dora_norm_checks(s, w, a, b, norm_check, inv_check);
            Case c;
            const auto q = nf4_state_inputs(c, st);
            const int ia = c.input("a", a), ib = c.input("b", b);
            const int inorm = c.output("norm", s.n, norm_check);
            const int iinv = c.output("inv_norm", s.n, inv_check);
            c.call = [=](nvlm_context* ctx, const Buffers& buf) {
                return nvlm_dora_norm_nf4(ctx, buf[inorm], buf[iinv], buf[q[0]], buf[q[1]], buf[q[2]], buf[q[3]],
                                          buf[q[4]], buf[ia], buf[ib], s.n, s.k, s.r, kDoraScaling);
            };
            return c;
        }});
    }
}

// ---- main --------------------------------------------------------------------------------------------

std::vector<CaseSpec> all_cases() {
    std::vector<CaseSpec> cases;
    add_matmul_cases(cases);
    add_linear_cases(cases);
    add_embedding_cases(cases);
    add_index_copy_cases(cases);
    add_rmsnorm_cases(cases);
    add_layernorm_cases(cases);
    add_rope_cases(cases);
    add_attention_cases(cases);
    add_gelu_cases(cases);
    add_swiglu_cases(cases);
    add_residual_cases(cases);
    add_bias_add_cases(cases);
    add_scale_cases(cases);
    add_sum_cases(cases);
    add_patchify_cases(cases);
    add_pixel_shuffle_cases(cases);
    add_lm_logprob_cases(cases);
    add_adamw_cases(cases);
    add_nf4_cases(cases);
    add_cast_cases(cases);
    add_lora_cases(cases);
    add_dora_norm_cases(cases);
    return cases;
}

struct Outcome {
    bool passed;
    Comparison comparison;
};

Outcome run_and_compare(const CaseSpec& spec, nvlm_context* cpu, nvlm_context* candidate, const char* candidate_name) {
    Outcome outcome{false, {}};
    Comparison& cmp = outcome.comparison;
    Case c;
    try {
        Random rng(seed_of(spec.name));
        c = spec.build(rng, cpu);
    } catch (const std::exception& e) {
        cmp.failure = e.what();
        return outcome;
    }
    const Run got = run_case(candidate, c);
    if (!got.ok) {
        cmp.failure = std::string(candidate_name) + ": " + got.error;
        return outcome;
    }
    const Run want = run_case(cpu, c);
    if (!want.ok) {
        cmp.failure = "cpu: " + want.error;
        return outcome;
    }
    for (size_t i = 0; i < c.tensors.size(); i++)
        if (c.tensors[i].compared) compare(c.tensors[i], got.results[i], want.results[i], candidate_name, cmp);
    if (cmp.used_rule.empty()) cmp.used_rule = "no outputs: status only";
    outcome.passed = cmp.failure.empty();
    return outcome;
}

// A markdown table cell: the rules' "|x|" must not end the cell.
std::string markdown_cell(const std::string& text) {
    std::string cell;
    for (char ch : text) cell += ch == '|' ? std::string("\\|") : std::string(1, ch);
    return cell;
}

int usage(const char* program) {
    std::fprintf(stderr, "usage: %s [--cpu-only] [--filter SUBSTR] [--markdown FILE] [--list]\n", program);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    bool cpu_only = false, list = false;
    std::string filter, markdown_path;
    for (int i = 1; i < argc; i++) {
        const std::string arg = argv[i];
        if (arg == "--cpu-only") cpu_only = true;
        else if (arg == "--list") list = true;
        else if (arg == "--filter" && i + 1 < argc) filter = argv[++i];
        else if (arg == "--markdown" && i + 1 < argc) markdown_path = argv[++i];
        else return usage(argv[0]);
    }

    std::vector<CaseSpec> cases;
    for (CaseSpec& spec : all_cases())
        if (spec.name.find(filter) != std::string::npos) cases.push_back(std::move(spec));
    if (list) {
        for (const CaseSpec& spec : cases) std::printf("%s\n", spec.name.c_str());
        return 0;
    }

    if (!cpu_only) {
        int32_t devices = 0;
        const nvlm_status status = nvlm_device_count(NVLM_DEVICE_CUDA, &devices);
        if (status != NVLM_OK || devices == 0) {
            std::printf("skipped: no CUDA device (%s)\n",
                        status != NVLM_OK ? nvlm_last_error()
                                          : "nvlm_device_count(CUDA) = 0: built without CUDA or no GPU visible");
            return 77;
        }
    }
    nvlm_context* cpu = nullptr;
    nvlm_context* candidate = nullptr;
    if (nvlm_context_create(NVLM_DEVICE_CPU, 0, &cpu) != NVLM_OK ||
        nvlm_context_create(cpu_only ? NVLM_DEVICE_CPU : NVLM_DEVICE_CUDA, 0, &candidate) != NVLM_OK) {
        std::printf("FAIL context creation: %s\n0 passed, 1 failed\n", nvlm_last_error());
        return 1;
    }
    const char* candidate_name = cpu_only ? "cpu2" : "cuda";

    std::FILE* markdown = nullptr;
    if (!markdown_path.empty()) {
        markdown = std::fopen(markdown_path.c_str(), "w");
        if (markdown == nullptr) {
            std::fprintf(stderr, "cannot write %s\n", markdown_path.c_str());
            return 2;
        }
        std::fprintf(markdown, "Backend parity, %s vs cpu (nvlm_test_backend_ops)\n\n", candidate_name);
        std::fprintf(markdown, "| case | result | max_abs | max_rel | tol (share used) |\n|---|---|---|---|---|\n");
    }

    int passed = 0, failed = 0;
    for (const CaseSpec& spec : cases) {
        const Outcome outcome = run_and_compare(spec, cpu, candidate, candidate_name);
        const Comparison& cmp = outcome.comparison;
        char numbers[96];
        std::snprintf(numbers, sizeof numbers, "max_abs=%.3g max_rel=%.3g", cmp.max_abs, cmp.max_rel);
        char used[32];
        std::snprintf(used, sizeof used, "%.3g%%", 100.0 * cmp.used);
        const std::string tol = cmp.toleranced ? cmp.used_rule + " used=" + used : cmp.used_rule;
        if (outcome.passed) {
            passed++;
            std::printf("ok   %s  %s tol=%s\n", spec.name.c_str(), numbers, tol.c_str());
        } else {
            failed++;
            std::printf("FAIL %s  %s\n", spec.name.c_str(), cmp.failure.c_str());
        }
        std::fflush(stdout);
        if (markdown != nullptr) {
            const std::string result = outcome.passed ? "ok" : "FAIL: " + cmp.failure;
            std::fprintf(markdown, "| %s | %s | %.3g | %.3g | %s |\n", markdown_cell(spec.name).c_str(),
                         markdown_cell(result).c_str(), cmp.max_abs, cmp.max_rel, markdown_cell(tol).c_str());
            std::fflush(markdown);
        }
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    if (markdown != nullptr) {
        std::fprintf(markdown, "\n%d passed, %d failed\n", passed, failed);
        std::fclose(markdown);
    }
    nvlm_context_destroy(candidate);
    nvlm_context_destroy(cpu);
    return failed == 0 ? 0 : 1;
}
