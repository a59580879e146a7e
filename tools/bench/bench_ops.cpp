/*
 * nvlm_bench_ops — times every op of native/include/nvlm.h through the C ABI on one device, at the
 * shapes of SmolVLM / SmolVLM-Instruct training (or tiny ones with --quick, to prove the harness).
 *
 *   build/gpu/nvlm_bench_ops --device cuda --json build/gpu-check/bench.json
 *   build/native/nvlm_bench_ops --device cpu --quick --filter linear,attention
 *
 * Options: --device cpu|cuda|cuda:N (default cuda), --quick, --filter A,B (benchmarks whose op name
 * contains A or B), --list (print the selected benchmarks, run nothing), --json FILE, --warmup N,
 * --repeats N, --target-ms T (time of one repeat).
 *
 * A benchmark is named after its op as in nvlm.h without the nvlm_ prefix (linear_forward,
 * attention_backward, cast, ...). Each one allocates and fills its inputs, calls the op --warmup
 * times, picks an iteration count so that one repeat lasts about --target-ms, then times --repeats
 * repeats of that many calls, each bracketed by nvlm_context_synchronize, and reports the median
 * time per call. Every measured repeat sits inside an NVTX range "op shape" (nvlm_range_push), so
 * Nsight Systems shows which benchmark a kernel belongs to.
 *
 * Throughput: GEMM-like ops (matmul, linear, nf4_linear, attention, lm_logprob) report TFLOP/s of
 * their multiply-adds (2 flops each; attention counts QKᵀ and PV forward, 2.5× that backward, half
 * of it when causal). Bandwidth-bound ops, and the m = 1 GEMVs, report GB/s of the bytes they must
 * move at least: every input read once, every output written once, a += gradient read and written.
 *
 * Output: one table row per benchmark on stdout and, with --json, an array of
 *   {"op", "shape", "dims": {...}, "time_us", "iterations", "flops", "tflops"}   (GEMM-like)
 *   {"op", "shape", "dims": {...}, "time_us", "iterations", "bytes", "gbps"}     (bandwidth-bound)
 *   {"op", "shape", "dims": {...}, "error"}                                       (nvlm_last_error())
 * rewritten after every benchmark, so a crash keeps what was measured. A failing op is recorded and
 * the run goes on; the exit status is 0 unless the command line or the context is unusable.
 */
#include "nvlm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// ---- command line ----------------------------------------------------------------------------

struct Options {
    int32_t device_kind = NVLM_DEVICE_CUDA;
    int32_t device_index = 0;
    bool quick = false;
    bool list = false;
    std::vector<std::string> filters;
    std::string json_path;
    int warmup = 3;
    int repeats = 5;
    double target_ms = 10.0;
};

const char* const kUsage =
    "usage: nvlm_bench_ops [--device cpu|cuda|cuda:N] [--quick] [--filter A,B] [--list] [--json FILE]\n"
    "                      [--warmup N] [--repeats N] [--target-ms T]\n";

std::vector<std::string> split_commas(const std::string& text) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find(',', start);
        if (end == std::string::npos) end = text.size();
        if (end > start) parts.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return parts;
}

bool parse_options(int argc, char** argv, Options* options) {
    bool warmup_given = false, repeats_given = false, target_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--quick") {
            options->quick = true;
        } else if (arg == "--list") {
            options->list = true;
        } else if (arg == "--device" && has_value) {
            const std::string device = argv[++i];
            if (device == "cpu") {
                options->device_kind = NVLM_DEVICE_CPU;
            } else if (device == "cuda") {
                options->device_kind = NVLM_DEVICE_CUDA;
            } else if (device.rfind("cuda:", 0) == 0 && device.size() > 5) {
                options->device_kind = NVLM_DEVICE_CUDA;
                options->device_index = std::atoi(device.c_str() + 5);
            } else {
                std::fprintf(stderr, "nvlm_bench_ops: unknown device '%s'\n", device.c_str());
                return false;
            }
        } else if (arg == "--filter" && has_value) {
            options->filters = split_commas(argv[++i]);
        } else if (arg == "--json" && has_value) {
            options->json_path = argv[++i];
        } else if (arg == "--warmup" && has_value) {
            options->warmup = std::max(0, std::atoi(argv[++i]));
            warmup_given = true;
        } else if (arg == "--repeats" && has_value) {
            options->repeats = std::max(1, std::atoi(argv[++i]));
            repeats_given = true;
        } else if (arg == "--target-ms" && has_value) {
            options->target_ms = std::max(0.0, std::atof(argv[++i]));
            target_given = true;
        } else {
            std::fprintf(stderr, "nvlm_bench_ops: unknown or incomplete argument '%s'\n%s", arg.c_str(), kUsage);
            return false;
        }
    }
    if (options->quick) {
        if (!warmup_given) options->warmup = 1;
        if (!repeats_given) options->repeats = 3;
        if (!target_given) options->target_ms = 1.0;
    }
    return true;
}

// ---- errors ----------------------------------------------------------------------------------

// A failed nvlm call inside a benchmark: ends that benchmark, which records the message.
struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void check(nvlm_status status, const std::string& what) {
    if (status != NVLM_OK) throw Failure(what + ": " + nvlm_last_error());
}

// ---- buffers ---------------------------------------------------------------------------------

// Host values reused for every random fill: uniform in [-1, 1), grown on demand.
const std::vector<float>& random_pool(size_t count) {
    static std::vector<float> pool;
    static uint64_t state = 0x9E3779B97F4A7C15ull;
    size_t filled = pool.size();
    if (filled >= count) return pool;
    pool.resize(count);
    for (; filled < count; ++filled) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        pool[filled] = static_cast<float>(static_cast<int64_t>(state >> 40)) / 8388608.0f - 1.0f;
    }
    return pool;
}

// The buffers of one benchmark, freed when it ends.
class Buffers {
public:
    explicit Buffers(nvlm_context* ctx) : ctx_(ctx) {}
    Buffers(const Buffers&) = delete;
    Buffers& operator=(const Buffers&) = delete;
    ~Buffers() {
        for (nvlm_buffer* buffer : owned_) nvlm_buffer_free(buffer);
    }

    nvlm_context* ctx() const { return ctx_; }

    nvlm_buffer* zeros(int64_t nbytes) {
        nvlm_buffer* buffer = nullptr;
        check(nvlm_buffer_alloc(ctx_, nbytes, &buffer), "nvlm_buffer_alloc(" + std::to_string(nbytes) + " bytes)");
        owned_.push_back(buffer);
        check(nvlm_buffer_zero(buffer), "nvlm_buffer_zero");
        return buffer;
    }
    nvlm_buffer* zeros_f32(int64_t count) { return zeros(count * 4); }

    nvlm_buffer* upload(const void* data, int64_t nbytes) {
        nvlm_buffer* buffer = zeros(nbytes);
        check(nvlm_buffer_upload(buffer, 0, data, nbytes), "nvlm_buffer_upload");
        return buffer;
    }
    nvlm_buffer* random_f32(int64_t count) {
        return upload(random_pool(static_cast<size_t>(count)).data(), count * 4);
    }
    nvlm_buffer* random_bf16(int64_t count) {
        const std::vector<float>& pool = random_pool(static_cast<size_t>(count));
        std::vector<uint16_t> bits(static_cast<size_t>(count));
        for (size_t i = 0; i < bits.size(); ++i) {
            uint32_t word;
            std::memcpy(&word, &pool[i], 4);
            bits[i] = static_cast<uint16_t>(word >> 16);
        }
        return upload(bits.data(), count * 2);
    }
    nvlm_buffer* i32(const std::vector<int32_t>& values) {
        return upload(values.data(), static_cast<int64_t>(values.size()) * 4);
    }
    nvlm_buffer* f32(const std::vector<float>& values) {
        return upload(values.data(), static_cast<int64_t>(values.size()) * 4);
    }

private:
    nvlm_context* ctx_;
    std::vector<nvlm_buffer*> owned_;
};

std::vector<int32_t> uniform_ids(int64_t count, int64_t below) {
    std::vector<int32_t> ids(static_cast<size_t>(count));
    uint64_t state = 12345;
    for (int32_t& id : ids) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        id = static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(below));
    }
    return ids;
}

std::vector<int32_t> positions(int64_t count) {
    std::vector<int32_t> pos(static_cast<size_t>(count));
    for (size_t t = 0; t < pos.size(); ++t) pos[t] = static_cast<int32_t>(t);
    return pos;
}

std::vector<float> rope_inv_freq(int64_t head_dim, double theta) {
    std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i)
        inv_freq[i] = static_cast<float>(std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim)));
    return inv_freq;
}

// ---- benchmarks ------------------------------------------------------------------------------

// What one call of the op costs, and the call itself.
struct Work {
    double flops = 0;  // GEMM-like: multiply-adds × 2
    double bytes = 0;  // bandwidth-bound: bytes moved at least
    std::function<nvlm_status()> call;
};

struct Dim {
    std::string name;
    int64_t value;
};

struct Bench {
    std::string op;           // the nvlm.h name without nvlm_
    std::vector<Dim> dims;    // the sizes it is called with
    std::string variant;      // what the sizes do not say (dtypes, transposes, "math=bf16"), or ""
    std::function<Work(Buffers&)> prepare;  // allocates and fills the inputs
    int32_t math = NVLM_MATH_F32;           // the context's nvlm_math_mode while it runs

    std::string shape() const {
        std::string text;
        for (const Dim& dim : dims) text += (text.empty() ? "" : " ") + dim.name + "=" + std::to_string(dim.value);
        if (!variant.empty()) text += (text.empty() ? "" : " ") + variant;
        return text;
    }
};

// Sizes of the benchmarks: full ones are SmolVLM-Instruct (SigLIP 1152 × 27 layers, 17 tiles of
// 27×27 patches, Llama 2048 × 24 layers) and SmolVLM-256M (576 hidden, vocab 49280) training shapes.
struct Gemm { int64_t m, k, n; };
struct Matmul { int64_t batch, m, n, k; int32_t trans_a, trans_b; };
struct Attention { int64_t batch, seq, heads, kv_heads, head_dim; int32_t causal; };
struct Lora { int64_t m, k, n, r; };
struct DoraNorm { int64_t n, k, r; };

struct Sizes {
    std::vector<Matmul> matmuls;
    std::vector<Gemm> linears;             // linear and nf4_linear: x (m, k) · w (n, k)ᵀ
    std::vector<Attention> attentions;
    std::vector<Lora> loras;               // lora: x (m, k) through a (r, k), b (n, r) onto a base (m, n)
    int64_t tokens, hidden, intermediate;  // decoder activations (rmsnorm, residual, swiglu, ...)
    int64_t heads, head_dim;               // rope
    int64_t vision_tokens, vision_hidden, vision_intermediate;  // layernorm, gelu
    int64_t vocab;                         // embedding
    int64_t image_tokens;                  // index_copy: image features merged into the tokens
    int64_t tiles, image_side, patch;      // patchify
    int64_t patches, scale;                // pixel_shuffle
    int64_t lm_tokens, lm_hidden, lm_vocab, lm_chunk;
    int64_t nf4_n, nf4_k;                  // nf4_quantize / nf4_dequantize
    int64_t adamw_params;
    std::vector<int64_t> adamw_tensors;    // adamw_multi_tensor_step: element counts of a LoRA parameter list
    std::vector<DoraNorm> dora_norms;      // dora_norm (dense and NF4): w (n, k), a (r, k), b (n, r)
    int64_t cast_elements;
    int64_t copy_bytes;
};

// lora_A (r, in) and lora_B (out, r) of q, k, v, o, gate, up, down in each of `layers` Llama layers of
// width `hidden` (k and v as wide as q) and MLP width `intermediate`, in the order an optimiser holds them.
std::vector<int64_t> lora_parameter_sizes(int64_t layers, int64_t hidden, int64_t intermediate, int64_t r) {
    const int64_t projections[][2] = {{hidden, hidden}, {hidden, hidden},       {hidden, hidden},      {hidden, hidden},
                                      {hidden, intermediate}, {hidden, intermediate}, {intermediate, hidden}};
    std::vector<int64_t> sizes;
    for (int64_t layer = 0; layer < layers; ++layer)
        for (const auto& [in, out] : projections) {
            sizes.push_back(r * in);
            sizes.push_back(out * r);
        }
    return sizes;
}

Sizes full_sizes() {
    Sizes s;
    s.matmuls = {{1, 4096, 4096, 4096, 0, 0}, {32, 1024, 1024, 64, 0, 1}};
    s.linears = {{4096, 576, 1536}, {4096, 2048, 8192}, {4096, 8192, 2048},
                 {1, 576, 1536},    {1, 2048, 8192},    {1, 8192, 2048}};
    for (int64_t seq : {1024, 2048, 4096}) {
        s.attentions.push_back({1, seq, 16, 16, 64, 1});
        s.attentions.push_back({1, seq, 32, 8, 128, 1});
    }
    s.attentions.push_back({1, 1024, 16, 16, 72, 0});
    s.loras = {{4096, 576, 1536, 8}, {4096, 2048, 8192, 16}};  // SmolVLM-256M up_proj, SmolVLM-Instruct up_proj
    s.tokens = 4096; s.hidden = 2048; s.intermediate = 8192;
    s.heads = 32; s.head_dim = 64;
    s.vision_tokens = 17 * 729; s.vision_hidden = 1152; s.vision_intermediate = 4304;
    s.vocab = 49155;
    s.image_tokens = 17 * 81;
    s.tiles = 17; s.image_side = 378; s.patch = 14;  // 384 px tiles: SigLIP's conv sees 27×14 of them
    s.patches = 729; s.scale = 3;
    s.lm_tokens = 4096; s.lm_hidden = 576; s.lm_vocab = 49280; s.lm_chunk = 4096;
    s.nf4_n = 8192; s.nf4_k = 2048;
    s.adamw_params = 10536960;  // LoRA r=8 on SmolVLM-Instruct's q,k,v,o,gate,up,down
    s.adamw_tensors = lora_parameter_sizes(24, 2048, 8192, 8);  // SmolVLM-Instruct's decoder: 336 tensors
    s.dora_norms = {{1536, 576, 8}, {8192, 2048, 8}};  // SmolVLM-256M and SmolVLM-Instruct up_proj
    s.cast_elements = 64ll << 20;
    s.copy_bytes = 256ll << 20;
    return s;
}

Sizes quick_sizes() {
    Sizes s;
    s.matmuls = {{1, 32, 32, 32, 0, 0}, {4, 16, 16, 8, 0, 1}};
    s.linears = {{8, 16, 32}, {1, 16, 32}};
    s.attentions = {{1, 16, 2, 2, 8, 1}, {1, 16, 4, 2, 16, 1}, {1, 16, 2, 2, 12, 0}};
    s.loras = {{8, 16, 32, 4}};
    s.tokens = 16; s.hidden = 64; s.intermediate = 128;
    s.heads = 2; s.head_dim = 8;
    s.vision_tokens = 16; s.vision_hidden = 32; s.vision_intermediate = 64;
    s.vocab = 100;
    s.image_tokens = 4;
    s.tiles = 2; s.image_side = 28; s.patch = 14;
    s.patches = 36; s.scale = 3;
    s.lm_tokens = 16; s.lm_hidden = 32; s.lm_vocab = 300; s.lm_chunk = 64;
    s.nf4_n = 64; s.nf4_k = 128;
    s.adamw_params = 4096;
    s.adamw_tensors = lora_parameter_sizes(2, 64, 128, 4);
    s.dora_norms = {{32, 16, 4}};
    s.cast_elements = 4096;
    s.copy_bytes = 64 << 10;
    return s;
}

// Bytes of n floats.
double f32(double n) { return 4.0 * n; }

// Each shape in both math modes: BF16 rounds the operands to bf16 and multiplies them on CUDA's tensor
// cores (the M = 4096 linears are the training shapes); the m = 1 GEMVs show what the rounding costs.
void add_dense_algebra(std::vector<Bench>& benches, const Sizes& s) {
    for (const Matmul& g : s.matmuls) {
        const std::vector<Dim> dims = {{"batch", g.batch}, {"m", g.m}, {"n", g.n}, {"k", g.k},
                                       {"trans_a", g.trans_a}, {"trans_b", g.trans_b}};
        for (const int32_t math : {NVLM_MATH_F32, NVLM_MATH_BF16}) {
            benches.push_back({"matmul", dims, math == NVLM_MATH_BF16 ? "math=bf16" : "", [g](Buffers& b) {
                nvlm_buffer* a = b.random_f32(g.batch * g.m * g.k);
                nvlm_buffer* bm = b.random_f32(g.batch * g.k * g.n);
                nvlm_buffer* c = b.zeros_f32(g.batch * g.m * g.n);
                nvlm_context* ctx = b.ctx();
                return Work{2.0 * g.batch * g.m * g.n * g.k, 0, [=] {
                    return nvlm_matmul(ctx, c, a, bm, g.batch, g.m, g.n, g.k, g.trans_a, g.trans_b, 1.0f, 0.0f);
                }};
            }, math});
        }
    }
    for (const Gemm& g : s.linears) {
        const std::vector<Dim> dims = {{"m", g.m}, {"k", g.k}, {"n", g.n}};
        const double mkn = static_cast<double>(g.m) * g.k * g.n, nk = static_cast<double>(g.n) * g.k;
        for (const int32_t math : {NVLM_MATH_F32, NVLM_MATH_BF16}) {
            const bool bf16 = math == NVLM_MATH_BF16;
            benches.push_back({"linear_forward", dims, bf16 ? "math=bf16" : "", [=](Buffers& b) {
                nvlm_buffer* x = b.random_f32(g.m * g.k);
                nvlm_buffer* w = b.random_f32(g.n * g.k);
                nvlm_buffer* out = b.zeros_f32(g.m * g.n);
                nvlm_context* ctx = b.ctx();
                Work work{0, 0, [=] { return nvlm_linear_forward(ctx, out, x, w, nullptr, g.m, g.k, g.n); }};
                if (g.m == 1) work.bytes = f32(nk + g.k + g.n); else work.flops = 2 * mkn;
                return work;
            }, math});
            benches.push_back({"linear_backward", dims, bf16 ? "dx and dw math=bf16" : "dx and dw", [=](Buffers& b) {
                nvlm_buffer* dout = b.random_f32(g.m * g.n);
                nvlm_buffer* x = b.random_f32(g.m * g.k);
                nvlm_buffer* w = b.random_f32(g.n * g.k);
                nvlm_buffer* dx = b.zeros_f32(g.m * g.k);
                nvlm_buffer* dw = b.zeros_f32(g.n * g.k);
                nvlm_context* ctx = b.ctx();
                Work work{0, 0, [=] { return nvlm_linear_backward(ctx, dx, dw, nullptr, dout, x, w, g.m, g.k, g.n); }};
                if (g.m == 1) work.bytes = f32(3 * nk + 3 * g.k + g.n); else work.flops = 4 * mkn;
                return work;
            }, math});
        }
    }
}

// The five buffers of an NF4 weight (n, k), quantised on the device from random values.
struct Nf4Weight {
    nvlm_buffer *packed, *absmax_q, *absmax2, *offset, *absmax_code;
    int64_t numel, blocks;
};

Nf4Weight nf4_buffers(Buffers& b, int64_t n, int64_t k) {
    Nf4Weight q;
    q.numel = n * k;
    q.blocks = (q.numel + 63) / 64;
    q.packed = b.zeros((q.numel + 1) / 2);
    q.absmax_q = b.zeros(q.blocks);
    q.absmax2 = b.zeros_f32((q.blocks + 255) / 256);
    q.offset = b.zeros_f32(1);
    q.absmax_code = b.zeros_f32(256);
    return q;
}

Nf4Weight quantized_weight(Buffers& b, int64_t n, int64_t k) {
    Nf4Weight q = nf4_buffers(b, n, k);
    nvlm_buffer* w = b.random_f32(n * k);
    check(nvlm_nf4_quantize(b.ctx(), q.packed, q.absmax_q, q.absmax2, q.offset, q.absmax_code, nullptr, w, n, k),
          "setup nvlm_nf4_quantize");
    return q;
}

void add_nf4(std::vector<Bench>& benches, const Sizes& s) {
    const int64_t n = s.nf4_n, k = s.nf4_k;
    const double numel = static_cast<double>(n) * k, blocks = std::ceil(numel / 64);
    const double quantized_bytes = numel / 2 + blocks + f32(std::ceil(blocks / 256) + 257);
    benches.push_back({"nf4_quantize", {{"n", n}, {"k", k}}, "", [=](Buffers& b) {
        nvlm_buffer* w = b.random_f32(n * k);
        Nf4Weight q = nf4_buffers(b, n, k);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(numel) + quantized_bytes, [=] {
            return nvlm_nf4_quantize(ctx, q.packed, q.absmax_q, q.absmax2, q.offset, q.absmax_code, nullptr, w, n, k);
        }};
    }});
    benches.push_back({"nf4_dequantize", {{"n", n}, {"k", k}}, "", [=](Buffers& b) {
        Nf4Weight q = quantized_weight(b, n, k);
        nvlm_buffer* w = b.zeros_f32(n * k);
        nvlm_context* ctx = b.ctx();
        return Work{0, quantized_bytes + f32(numel), [=] {
            return nvlm_nf4_dequantize(ctx, w, q.packed, q.absmax_q, q.absmax2, q.offset, q.absmax_code, n, k);
        }};
    }});
    for (const Gemm& g : s.linears) {
        const std::vector<Dim> dims = {{"m", g.m}, {"k", g.k}, {"n", g.n}};
        const double mkn = static_cast<double>(g.m) * g.k * g.n, weight_bytes = static_cast<double>(g.n) * g.k / 2 +
                                                                                  std::ceil(g.n * g.k / 64.0);
        benches.push_back({"nf4_linear_forward", dims, "", [=](Buffers& b) {
            Nf4Weight q = quantized_weight(b, g.n, g.k);
            nvlm_buffer* x = b.random_f32(g.m * g.k);
            nvlm_buffer* out = b.zeros_f32(g.m * g.n);
            nvlm_context* ctx = b.ctx();
            Work work{0, 0, [=] {
                return nvlm_nf4_linear_forward(ctx, out, x, q.packed, q.absmax_q, q.absmax2, q.offset, q.absmax_code,
                                               g.m, g.k, g.n);
            }};
            if (g.m == 1) work.bytes = weight_bytes + f32(g.k + g.n); else work.flops = 2 * mkn;
            return work;
        }});
        benches.push_back({"nf4_linear_backward", dims, "dx", [=](Buffers& b) {
            Nf4Weight q = quantized_weight(b, g.n, g.k);
            nvlm_buffer* dout = b.random_f32(g.m * g.n);
            nvlm_buffer* dx = b.zeros_f32(g.m * g.k);
            nvlm_context* ctx = b.ctx();
            Work work{0, 0, [=] {
                return nvlm_nf4_linear_backward(ctx, dx, dout, q.packed, q.absmax_q, q.absmax2, q.offset,
                                                q.absmax_code, g.m, g.k, g.n);
            }};
            if (g.m == 1) work.bytes = weight_bytes + f32(g.n + 2 * g.k); else work.flops = 2 * mkn;
            return work;
        }});
    }
}

void add_attention(std::vector<Bench>& benches, const Sizes& s) {
    for (const Attention& a : s.attentions) {
        const std::vector<Dim> dims = {{"batch", a.batch}, {"seq", a.seq}, {"heads", a.heads},
                                       {"kv_heads", a.kv_heads}, {"head_dim", a.head_dim}, {"causal", a.causal}};
        const double forward_flops = 4.0 * a.batch * a.heads * a.seq * a.seq * a.head_dim * (a.causal ? 0.5 : 1.0);
        const float scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
        const int64_t q_size = a.batch * a.seq * a.heads * a.head_dim, kv_size = a.batch * a.seq * a.kv_heads * a.head_dim;
        struct Tensors { nvlm_buffer *q, *k, *v, *out, *lse; };
        auto forward_tensors = [=](Buffers& b) {
            return Tensors{b.random_f32(q_size), b.random_f32(kv_size), b.random_f32(kv_size), b.zeros_f32(q_size),
                           b.zeros_f32(a.batch * a.heads * a.seq)};
        };
        auto forward = [=](nvlm_context* ctx, const Tensors& t) {
            return nvlm_attention_forward(ctx, t.out, t.lse, t.q, t.k, t.v, nullptr, a.batch, a.seq, a.seq, a.heads,
                                          a.kv_heads, a.head_dim, a.causal, scale);
        };
        // Each shape in both math modes: BF16 is CUDA's tensor-core kernels (head_dim ≤ 128).
        for (const int32_t math : {NVLM_MATH_F32, NVLM_MATH_BF16}) {
            const std::string variant = math == NVLM_MATH_BF16 ? "math=bf16" : "";
            benches.push_back({"attention_forward", dims, variant, [=](Buffers& b) {
                Tensors t = forward_tensors(b);
                nvlm_context* ctx = b.ctx();
                return Work{forward_flops, 0, [=] { return forward(ctx, t); }};
            }, math});
            benches.push_back({"attention_backward", dims, variant, [=](Buffers& b) {
                Tensors t = forward_tensors(b);
                nvlm_context* ctx = b.ctx();
                check(forward(ctx, t), "setup nvlm_attention_forward");
                nvlm_buffer* dout = b.random_f32(q_size);
                nvlm_buffer* dq = b.zeros_f32(q_size);
                nvlm_buffer* dk = b.zeros_f32(kv_size);
                nvlm_buffer* dv = b.zeros_f32(kv_size);
                return Work{2.5 * forward_flops, 0, [=] {
                    return nvlm_attention_backward(ctx, dq, dk, dv, dout, t.q, t.k, t.v, nullptr, t.out, t.lse,
                                                   a.batch, a.seq, a.seq, a.heads, a.kv_heads, a.head_dim, a.causal,
                                                   scale);
                }};
            }, math});
        }
    }
}

void add_lm_logprob(std::vector<Bench>& benches, const Sizes& s) {
    const int64_t n = s.lm_tokens, d = s.lm_hidden, vocab = s.lm_vocab, chunk = s.lm_chunk;
    const std::vector<Dim> dims = {{"n", n}, {"d", d}, {"vocab", vocab}, {"chunk", chunk}};
    const double logits_flops = 2.0 * n * d * vocab;
    struct Tensors { nvlm_buffer *logp, *lse, *h, *w, *targets; };
    auto forward_tensors = [=](Buffers& b) {
        return Tensors{b.zeros_f32(n), b.zeros_f32(n), b.random_f32(n * d), b.random_f32(vocab * d),
                       b.i32(uniform_ids(n, vocab))};
    };
    auto forward = [=](nvlm_context* ctx, const Tensors& t) {
        return nvlm_lm_logprob_forward(ctx, t.logp, t.lse, t.h, t.w, t.targets, n, d, vocab, chunk);
    };
    // Both math modes: BF16 puts the head's three GEMMs on CUDA's tensor cores.
    for (const int32_t math : {NVLM_MATH_F32, NVLM_MATH_BF16}) {
        const bool bf16 = math == NVLM_MATH_BF16;
        benches.push_back({"lm_logprob_forward", dims, bf16 ? "math=bf16" : "", [=](Buffers& b) {
            Tensors t = forward_tensors(b);
            nvlm_context* ctx = b.ctx();
            return Work{logits_flops, 0, [=] { return forward(ctx, t); }};
        }, math});
        benches.push_back({"lm_logprob_backward", dims, bf16 ? "dh and dw math=bf16" : "dh and dw", [=](Buffers& b) {
            Tensors t = forward_tensors(b);
            nvlm_context* ctx = b.ctx();
            check(forward(ctx, t), "setup nvlm_lm_logprob_forward");
            nvlm_buffer* dlogp = b.random_f32(n);
            nvlm_buffer* dh = b.zeros_f32(n * d);
            nvlm_buffer* dw = b.zeros_f32(vocab * d);
            return Work{3 * logits_flops, 0, [=] {  // logits recomputed, then dh and dw
                return nvlm_lm_logprob_backward(ctx, dh, dw, dlogp, t.h, t.w, t.targets, t.lse, n, d, vocab, chunk);
            }};
        }, math});
    }
}

void add_norms_and_rope(std::vector<Bench>& benches, const Sizes& s) {
    {
        const int64_t n = s.tokens, d = s.hidden;
        const std::vector<Dim> dims = {{"n", n}, {"d", d}};
        const double nd = static_cast<double>(n) * d;
        benches.push_back({"rmsnorm_forward", dims, "", [=](Buffers& b) {
            nvlm_buffer* x = b.random_f32(n * d);
            nvlm_buffer* w = b.random_f32(d);
            nvlm_buffer* out = b.zeros_f32(n * d);
            nvlm_buffer* rstd = b.zeros_f32(n);
            nvlm_context* ctx = b.ctx();
            return Work{0, f32(2 * nd + d + n), [=] { return nvlm_rmsnorm_forward(ctx, out, rstd, x, w, n, d, 1e-6f); }};
        }});
        benches.push_back({"rmsnorm_backward", dims, "dx and dw", [=](Buffers& b) {
            nvlm_buffer* x = b.random_f32(n * d);
            nvlm_buffer* w = b.random_f32(d);
            nvlm_buffer* out = b.zeros_f32(n * d);
            nvlm_buffer* rstd = b.zeros_f32(n);
            nvlm_context* ctx = b.ctx();
            check(nvlm_rmsnorm_forward(ctx, out, rstd, x, w, n, d, 1e-6f), "setup nvlm_rmsnorm_forward");
            nvlm_buffer* dout = b.random_f32(n * d);
            nvlm_buffer* dx = b.zeros_f32(n * d);
            nvlm_buffer* dw = b.zeros_f32(d);
            return Work{0, f32(4 * nd + 3 * d + n), [=] { return nvlm_rmsnorm_backward(ctx, dx, dw, dout, x, w, rstd, n, d); }};
        }});
    }
    {
        const int64_t n = s.vision_tokens, d = s.vision_hidden;
        const std::vector<Dim> dims = {{"n", n}, {"d", d}};
        const double nd = static_cast<double>(n) * d;
        struct Tensors { nvlm_buffer *out, *mean, *rstd, *x, *w, *bias; };
        auto forward_tensors = [=](Buffers& b) {
            return Tensors{b.zeros_f32(n * d), b.zeros_f32(n), b.zeros_f32(n), b.random_f32(n * d), b.random_f32(d),
                           b.random_f32(d)};
        };
        auto forward = [=](nvlm_context* ctx, const Tensors& t) {
            return nvlm_layernorm_forward(ctx, t.out, t.mean, t.rstd, t.x, t.w, t.bias, n, d, 1e-6f);
        };
        benches.push_back({"layernorm_forward", dims, "", [=](Buffers& b) {
            Tensors t = forward_tensors(b);
            nvlm_context* ctx = b.ctx();
            return Work{0, f32(2 * nd + 2 * d + 2 * n), [=] { return forward(ctx, t); }};
        }});
        benches.push_back({"layernorm_backward", dims, "dx, dw and db", [=](Buffers& b) {
            Tensors t = forward_tensors(b);
            nvlm_context* ctx = b.ctx();
            check(forward(ctx, t), "setup nvlm_layernorm_forward");
            nvlm_buffer* dout = b.random_f32(n * d);
            nvlm_buffer* dx = b.zeros_f32(n * d);
            nvlm_buffer* dw = b.zeros_f32(d);
            nvlm_buffer* db = b.zeros_f32(d);
            return Work{0, f32(4 * nd + 5 * d + 2 * n), [=] {
                return nvlm_layernorm_backward(ctx, dx, dw, db, dout, t.x, t.w, t.mean, t.rstd, n, d);
            }};
        }});
    }
    {
        const int64_t tokens = s.tokens, heads = s.heads, head_dim = s.head_dim;
        const std::vector<Dim> dims = {{"n_tokens", tokens}, {"n_heads", heads}, {"head_dim", head_dim}};
        const double numel = static_cast<double>(tokens) * heads * head_dim;
        benches.push_back({"rope_forward", dims, "", [=](Buffers& b) {
            nvlm_buffer* x = b.random_f32(tokens * heads * head_dim);
            nvlm_buffer* out = b.zeros_f32(tokens * heads * head_dim);
            nvlm_buffer* pos = b.i32(positions(tokens));
            nvlm_buffer* inv_freq = b.f32(rope_inv_freq(head_dim, 273768.0));
            nvlm_context* ctx = b.ctx();
            return Work{0, f32(2 * numel + tokens + head_dim / 2), [=] {
                return nvlm_rope_forward(ctx, out, x, pos, inv_freq, tokens, heads, head_dim);
            }};
        }});
        benches.push_back({"rope_backward", dims, "", [=](Buffers& b) {
            nvlm_buffer* dout = b.random_f32(tokens * heads * head_dim);
            nvlm_buffer* dx = b.zeros_f32(tokens * heads * head_dim);
            nvlm_buffer* pos = b.i32(positions(tokens));
            nvlm_buffer* inv_freq = b.f32(rope_inv_freq(head_dim, 273768.0));
            nvlm_context* ctx = b.ctx();
            return Work{0, f32(3 * numel + tokens + head_dim / 2), [=] {
                return nvlm_rope_backward(ctx, dx, dout, pos, inv_freq, tokens, heads, head_dim);
            }};
        }});
    }
}

void add_elementwise(std::vector<Bench>& benches, const Sizes& s) {
    const int64_t gelu_n = s.vision_tokens * s.vision_intermediate, swiglu_n = s.tokens * s.intermediate;
    const int64_t n = s.tokens * s.hidden;
    benches.push_back({"gelu_forward", {{"n", gelu_n}}, "", [=](Buffers& b) {
        nvlm_buffer* x = b.random_f32(gelu_n);
        nvlm_buffer* out = b.zeros_f32(gelu_n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(2.0 * gelu_n), [=] { return nvlm_gelu_forward(ctx, out, x, gelu_n); }};
    }});
    benches.push_back({"gelu_backward", {{"n", gelu_n}}, "", [=](Buffers& b) {
        nvlm_buffer* x = b.random_f32(gelu_n);
        nvlm_buffer* dout = b.random_f32(gelu_n);
        nvlm_buffer* dx = b.zeros_f32(gelu_n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(4.0 * gelu_n), [=] { return nvlm_gelu_backward(ctx, dx, dout, x, gelu_n); }};
    }});
    benches.push_back({"swiglu_forward", {{"n", swiglu_n}}, "", [=](Buffers& b) {
        nvlm_buffer* gate = b.random_f32(swiglu_n);
        nvlm_buffer* up = b.random_f32(swiglu_n);
        nvlm_buffer* out = b.zeros_f32(swiglu_n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(3.0 * swiglu_n), [=] { return nvlm_swiglu_forward(ctx, out, gate, up, swiglu_n); }};
    }});
    benches.push_back({"swiglu_backward", {{"n", swiglu_n}}, "", [=](Buffers& b) {
        nvlm_buffer* gate = b.random_f32(swiglu_n);
        nvlm_buffer* up = b.random_f32(swiglu_n);
        nvlm_buffer* dout = b.random_f32(swiglu_n);
        nvlm_buffer* dgate = b.zeros_f32(swiglu_n);
        nvlm_buffer* dup = b.zeros_f32(swiglu_n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(7.0 * swiglu_n), [=] { return nvlm_swiglu_backward(ctx, dgate, dup, dout, gate, up, swiglu_n); }};
    }});
    benches.push_back({"residual_forward", {{"n", n}}, "", [=](Buffers& b) {
        nvlm_buffer* x = b.random_f32(n);
        nvlm_buffer* y = b.random_f32(n);
        nvlm_buffer* out = b.zeros_f32(n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(3.0 * n), [=] { return nvlm_residual_forward(ctx, out, x, y, n); }};
    }});
    benches.push_back({"residual_backward", {{"n", n}}, "", [=](Buffers& b) {
        nvlm_buffer* dout = b.random_f32(n);
        nvlm_buffer* da = b.zeros_f32(n);
        nvlm_buffer* db = b.zeros_f32(n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(5.0 * n), [=] { return nvlm_residual_backward(ctx, da, db, dout, n); }};
    }});
    // The bias of the vision MLP's up projection (fc1) when its product is NF4, or DoRA's unbiased one.
    const int64_t bias_m = s.vision_tokens, bias_n = s.vision_intermediate;
    benches.push_back({"bias_add_forward", {{"m", bias_m}, {"n", bias_n}}, "", [=](Buffers& b) {
        nvlm_buffer* x = b.random_f32(bias_m * bias_n);
        nvlm_buffer* bias = b.random_f32(bias_n);
        nvlm_buffer* out = b.zeros_f32(bias_m * bias_n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(2.0 * bias_m * bias_n + bias_n), [=] { return nvlm_bias_add_forward(ctx, out, x, bias, bias_m, bias_n); }};
    }});
    benches.push_back({"bias_add_backward", {{"m", bias_m}, {"n", bias_n}}, "", [=](Buffers& b) {
        nvlm_buffer* dout = b.random_f32(bias_m * bias_n);
        nvlm_buffer* dx = b.zeros_f32(bias_m * bias_n);
        nvlm_buffer* dbias = b.zeros_f32(bias_n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(3.0 * bias_m * bias_n + 2.0 * bias_n), [=] {
            return nvlm_bias_add_backward(ctx, dx, dbias, dout, bias_m, bias_n);
        }};
    }});
    benches.push_back({"scale_forward", {{"n", n}}, "", [=](Buffers& b) {
        nvlm_buffer* x = b.random_f32(n);
        nvlm_buffer* out = b.zeros_f32(n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(2.0 * n), [=] { return nvlm_scale_forward(ctx, out, x, 0.5f, n); }};
    }});
    benches.push_back({"scale_backward", {{"n", n}}, "", [=](Buffers& b) {
        nvlm_buffer* dout = b.random_f32(n);
        nvlm_buffer* dx = b.zeros_f32(n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(3.0 * n), [=] { return nvlm_scale_backward(ctx, dx, dout, 0.5f, n); }};
    }});
    benches.push_back({"sum_forward", {{"n", n}}, "", [=](Buffers& b) {
        nvlm_buffer* x = b.random_f32(n);
        nvlm_buffer* out = b.zeros_f32(1);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(n + 1.0), [=] { return nvlm_sum_forward(ctx, out, x, n); }};
    }});
    benches.push_back({"sum_backward", {{"n", n}}, "", [=](Buffers& b) {
        nvlm_buffer* dout = b.random_f32(1);
        nvlm_buffer* dx = b.zeros_f32(n);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(2.0 * n + 1), [=] { return nvlm_sum_backward(ctx, dx, dout, n); }};
    }});
}

void add_embedding_and_merge(std::vector<Bench>& benches, const Sizes& s) {
    const int64_t n = s.tokens, vocab = s.vocab, d = s.hidden;
    const std::vector<Dim> embedding_dims = {{"n", n}, {"vocab", vocab}, {"d", d}};
    benches.push_back({"embedding_forward", embedding_dims, "", [=](Buffers& b) {
        nvlm_buffer* table = b.random_f32(vocab * d);
        nvlm_buffer* ids = b.i32(uniform_ids(n, vocab));
        nvlm_buffer* out = b.zeros_f32(n * d);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(n + 2.0 * n * d), [=] { return nvlm_embedding_forward(ctx, out, table, ids, n, vocab, d); }};
    }});
    benches.push_back({"embedding_backward", embedding_dims, "", [=](Buffers& b) {
        nvlm_buffer* dtable = b.zeros_f32(vocab * d);
        nvlm_buffer* ids = b.i32(uniform_ids(n, vocab));
        nvlm_buffer* dout = b.random_f32(n * d);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(n + 3.0 * n * d), [=] { return nvlm_embedding_backward(ctx, dtable, dout, ids, n, vocab, d); }};
    }});

    // Image features scattered into the rows of their <image> tokens, evenly spread over the sequence.
    const int64_t n_src = s.image_tokens;
    std::vector<int32_t> index(static_cast<size_t>(n_src));
    for (int64_t i = 0; i < n_src; ++i) index[static_cast<size_t>(i)] = static_cast<int32_t>(i * n / n_src);
    const std::vector<Dim> merge_dims = {{"n_rows", n}, {"n_src", n_src}, {"d", d}};
    benches.push_back({"index_copy_forward", merge_dims, "", [=](Buffers& b) {
        nvlm_buffer* x = b.random_f32(n * d);
        nvlm_buffer* src = b.random_f32(n_src * d);
        nvlm_buffer* idx = b.i32(index);
        nvlm_buffer* out = b.zeros_f32(n * d);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(2.0 * n * d + n_src * d + n_src), [=] {
            return nvlm_index_copy_forward(ctx, out, x, src, idx, n, n_src, d);
        }};
    }});
    benches.push_back({"index_copy_backward", merge_dims, "dx and dsrc", [=](Buffers& b) {
        nvlm_buffer* dout = b.random_f32(n * d);
        nvlm_buffer* idx = b.i32(index);
        nvlm_buffer* dx = b.zeros_f32(n * d);
        nvlm_buffer* dsrc = b.zeros_f32(n_src * d);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(3.0 * n * d + n_src), [=] {
            return nvlm_index_copy_backward(ctx, dx, dsrc, dout, idx, n, n_src, d);
        }};
    }});
}

void add_vision_layout(std::vector<Bench>& benches, const Sizes& s) {
    const int64_t tiles = s.tiles, side = s.image_side, patch = s.patch;
    const int64_t pixels = tiles * 3 * side * side;
    const std::vector<Dim> patchify_dims = {{"n", tiles}, {"channels", 3}, {"height", side}, {"width", side},
                                            {"patch", patch}};
    benches.push_back({"patchify_forward", patchify_dims, "", [=](Buffers& b) {
        nvlm_buffer* image = b.random_f32(pixels);
        nvlm_buffer* out = b.zeros_f32(pixels);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(2.0 * pixels), [=] { return nvlm_patchify_forward(ctx, out, image, tiles, 3, side, side, patch); }};
    }});
    benches.push_back({"patchify_backward", patchify_dims, "", [=](Buffers& b) {
        nvlm_buffer* dout = b.random_f32(pixels);
        nvlm_buffer* dpixels = b.zeros_f32(pixels);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(3.0 * pixels), [=] {
            return nvlm_patchify_backward(ctx, dpixels, dout, tiles, 3, side, side, patch);
        }};
    }});

    const int64_t seq = s.patches, d = s.vision_hidden, scale = s.scale, numel = tiles * seq * d;
    const std::vector<Dim> shuffle_dims = {{"n", tiles}, {"seq", seq}, {"d", d}, {"scale", scale}};
    benches.push_back({"pixel_shuffle_forward", shuffle_dims, "", [=](Buffers& b) {
        nvlm_buffer* x = b.random_f32(numel);
        nvlm_buffer* out = b.zeros_f32(numel);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(2.0 * numel), [=] { return nvlm_pixel_shuffle_forward(ctx, out, x, tiles, seq, d, scale); }};
    }});
    benches.push_back({"pixel_shuffle_backward", shuffle_dims, "", [=](Buffers& b) {
        nvlm_buffer* dout = b.random_f32(numel);
        nvlm_buffer* dx = b.zeros_f32(numel);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(3.0 * numel), [=] { return nvlm_pixel_shuffle_backward(ctx, dx, dout, tiles, seq, d, scale); }};
    }});
}

void add_optimizer_casts_and_copies(std::vector<Bench>& benches, const Sizes& s) {
    const int64_t params = s.adamw_params;
    benches.push_back({"adamw_step", {{"n", params}}, "", [=](Buffers& b) {
        nvlm_buffer* param = b.random_f32(params);
        nvlm_buffer* grad = b.random_f32(params);
        nvlm_buffer* m = b.zeros_f32(params);
        nvlm_buffer* v = b.zeros_f32(params);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(7.0 * params), [=] {
            return nvlm_adamw_step(ctx, param, grad, m, v, params, 1e-5f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
        }};
    }});

    // The whole parameter list: one multi-tensor launch, and for comparison one nvlm_adamw_step per tensor.
    const std::vector<int64_t> sizes = s.adamw_tensors;
    int64_t total = 0;
    for (int64_t size : sizes) total += size;
    const int64_t tensor_count = static_cast<int64_t>(sizes.size());
    struct AdamWList { std::vector<nvlm_buffer*> params, m, v; std::vector<const nvlm_buffer*> grads; };
    auto adamw_list = [sizes](Buffers& b) {
        AdamWList list;
        for (int64_t size : sizes) {
            list.params.push_back(b.random_f32(size));
            list.grads.push_back(b.random_f32(size));
            list.m.push_back(b.zeros_f32(size));
            list.v.push_back(b.zeros_f32(size));
        }
        return list;
    };
    benches.push_back({"adamw_multi_tensor_step", {{"tensors", tensor_count}, {"n", total}}, "", [=](Buffers& b) {
        const AdamWList list = adamw_list(b);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(7.0 * total), [=] {
            return nvlm_adamw_multi_tensor_step(ctx, list.params.data(), list.grads.data(), list.m.data(),
                                                list.v.data(), sizes.data(), tensor_count, 1e-5f, 0.9f, 0.999f, 1e-8f,
                                                0.01f, 1);
        }};
    }});
    benches.push_back({"adamw_step", {{"tensors", tensor_count}, {"n", total}}, "one call per tensor", [=](Buffers& b) {
        const AdamWList list = adamw_list(b);
        nvlm_context* ctx = b.ctx();
        return Work{0, f32(7.0 * total), [=] {
            for (int64_t t = 0; t < tensor_count; ++t) {
                const nvlm_status status = nvlm_adamw_step(ctx, list.params[t], list.grads[t], list.m[t], list.v[t],
                                                           sizes[t], 1e-5f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
                if (status != NVLM_OK) return status;
            }
            return NVLM_OK;
        }};
    }});

    const int64_t n = s.cast_elements;
    benches.push_back({"cast", {{"n", n}}, "f32->bf16", [=](Buffers& b) {
        nvlm_buffer* src = b.random_f32(n);
        nvlm_buffer* dst = b.zeros(n * 2);
        nvlm_context* ctx = b.ctx();
        return Work{0, 6.0 * n, [=] { return nvlm_cast(ctx, dst, NVLM_BF16, src, NVLM_F32, n); }};
    }});
    benches.push_back({"cast", {{"n", n}}, "bf16->f32", [=](Buffers& b) {
        nvlm_buffer* src = b.random_bf16(n);
        nvlm_buffer* dst = b.zeros_f32(n);
        nvlm_context* ctx = b.ctx();
        return Work{0, 6.0 * n, [=] { return nvlm_cast(ctx, dst, NVLM_F32, src, NVLM_BF16, n); }};
    }});

    const int64_t nbytes = s.copy_bytes;
    benches.push_back({"buffer_copy", {{"nbytes", nbytes}}, "", [=](Buffers& b) {
        nvlm_buffer* src = b.zeros(nbytes);
        nvlm_buffer* dst = b.zeros(nbytes);
        return Work{0, 2.0 * nbytes, [=] { return nvlm_buffer_copy(dst, 0, src, 0, nbytes); }};
    }});
    benches.push_back({"buffer_zero", {{"nbytes", nbytes}}, "", [=](Buffers& b) {
        nvlm_buffer* buffer = b.zeros(nbytes);
        return Work{0, static_cast<double>(nbytes), [=] { return nvlm_buffer_zero(buffer); }};
    }});
}

// LoRA and DoRA on a base output: with r ≤ 16 the rank-r products are a few percent of the traffic, so
// these report GB/s of the tensors they must move. Forward: x, a, b, base_out (and base_dora, col_scale)
// read, out and down written. Backward with every gradient: dout, x, a, b, down (and base_dora,
// col_scale) read, dbase_out, dx, da, db (and dbase_dora, dcol_scale) read and written.
void add_lora(std::vector<Bench>& benches, const Sizes& s) {
    for (const Lora& g : s.loras)
        for (bool dora : {false, true}) {
            const std::vector<Dim> dims = {{"m", g.m}, {"k", g.k}, {"n", g.n}, {"r", g.r}};
            const double mn = static_cast<double>(g.m) * g.n, mk = static_cast<double>(g.m) * g.k;
            const double weights = static_cast<double>(g.r) * (g.k + g.n), mr = static_cast<double>(g.m) * g.r;
            benches.push_back({"lora_forward", dims, dora ? "dora" : "lora", [=](Buffers& b) {
                nvlm_buffer* base_out = b.random_f32(g.m * g.n);
                nvlm_buffer* base_dora = dora ? b.random_f32(g.m * g.n) : nullptr;
                nvlm_buffer* x = b.random_f32(g.m * g.k);
                nvlm_buffer* a = b.random_f32(g.r * g.k);
                nvlm_buffer* bw = b.random_f32(g.n * g.r);
                nvlm_buffer* col_scale = dora ? b.random_f32(g.n) : nullptr;
                nvlm_buffer* out = b.zeros_f32(g.m * g.n);
                nvlm_buffer* down = b.zeros_f32(g.m * g.r);
                nvlm_context* ctx = b.ctx();
                const double bytes = f32(2 * mn + mk + weights + mr + (dora ? mn + g.n : 0));
                return Work{0, bytes, [=] {
                    return nvlm_lora_forward(ctx, out, down, base_out, base_dora, x, a, bw, col_scale, g.m, g.k, g.n,
                                             g.r, 0.5f);
                }};
            }});
            benches.push_back({"lora_backward", dims, dora ? "dora, every gradient" : "lora, every gradient",
                [=](Buffers& b) {
                nvlm_buffer* dout = b.random_f32(g.m * g.n);
                nvlm_buffer* base_dora = dora ? b.random_f32(g.m * g.n) : nullptr;
                nvlm_buffer* x = b.random_f32(g.m * g.k);
                nvlm_buffer* a = b.random_f32(g.r * g.k);
                nvlm_buffer* bw = b.random_f32(g.n * g.r);
                nvlm_buffer* col_scale = dora ? b.random_f32(g.n) : nullptr;
                nvlm_buffer* down = b.random_f32(g.m * g.r);
                nvlm_buffer* dbase_out = b.zeros_f32(g.m * g.n);
                nvlm_buffer* dbase_dora = dora ? b.zeros_f32(g.m * g.n) : nullptr;
                nvlm_buffer* dx = b.zeros_f32(g.m * g.k);
                nvlm_buffer* da = b.zeros_f32(g.r * g.k);
                nvlm_buffer* db = b.zeros_f32(g.n * g.r);
                nvlm_buffer* dcol_scale = dora ? b.zeros_f32(g.n) : nullptr;
                nvlm_context* ctx = b.ctx();
                const double bytes = f32(3 * mn + 3 * mk + 3 * weights + mr + (dora ? 3 * mn + 3 * g.n : 0));
                return Work{0, bytes, [=] {
                    return nvlm_lora_backward(ctx, dbase_out, dbase_dora, dx, da, db, dcol_scale, dout, base_dora, x,
                                              a, bw, col_scale, down, g.m, g.k, g.n, g.r, 0.5f);
                }};
            }});
        }
}

// DoRA's weight norm of w + s·b·a per row, never forming it: GB/s of w (f32, or NF4 codes and absmax), a, b
// read once and the norm and its reciprocal written.
void add_dora_norm(std::vector<Bench>& benches, const Sizes& s) {
    for (const DoraNorm& g : s.dora_norms) {
        const std::vector<Dim> dims = {{"n", g.n}, {"k", g.k}, {"r", g.r}};
        const double numel = static_cast<double>(g.n) * g.k;
        const double factors = f32(static_cast<double>(g.r) * (g.k + g.n) + 2.0 * g.n);
        benches.push_back({"dora_norm", dims, "", [=](Buffers& b) {
            nvlm_buffer* w = b.random_f32(g.n * g.k);
            nvlm_buffer* a = b.random_f32(g.r * g.k);
            nvlm_buffer* bw = b.random_f32(g.n * g.r);
            nvlm_buffer* norm = b.zeros_f32(g.n);
            nvlm_buffer* inv_norm = b.zeros_f32(g.n);
            nvlm_context* ctx = b.ctx();
            return Work{0, f32(numel) + factors, [=] {
                return nvlm_dora_norm(ctx, norm, inv_norm, w, a, bw, g.n, g.k, g.r, 0.5f);
            }};
        }});
        benches.push_back({"dora_norm_nf4", dims, "", [=](Buffers& b) {
            Nf4Weight q = quantized_weight(b, g.n, g.k);
            nvlm_buffer* a = b.random_f32(g.r * g.k);
            nvlm_buffer* bw = b.random_f32(g.n * g.r);
            nvlm_buffer* norm = b.zeros_f32(g.n);
            nvlm_buffer* inv_norm = b.zeros_f32(g.n);
            nvlm_context* ctx = b.ctx();
            return Work{0, numel / 2 + std::ceil(numel / 64) + factors, [=] {
                return nvlm_dora_norm_nf4(ctx, norm, inv_norm, q.packed, q.absmax_q, q.absmax2, q.offset,
                                          q.absmax_code, a, bw, g.n, g.k, g.r, 0.5f);
            }};
        }});
    }
}

std::vector<Bench> all_benches(const Sizes& sizes) {
    std::vector<Bench> benches;
    add_dense_algebra(benches, sizes);
    add_nf4(benches, sizes);
    add_attention(benches, sizes);
    add_lm_logprob(benches, sizes);
    add_norms_and_rope(benches, sizes);
    add_elementwise(benches, sizes);
    add_embedding_and_merge(benches, sizes);
    add_vision_layout(benches, sizes);
    add_optimizer_casts_and_copies(benches, sizes);
    add_lora(benches, sizes);
    add_dora_norm(benches, sizes);
    return benches;
}

// ---- timing ----------------------------------------------------------------------------------

struct Result {
    std::string op, shape;
    std::vector<Dim> dims;
    double time_us = 0, flops = 0, bytes = 0;
    int64_t iterations = 0;
    std::string error;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Seconds of `iterations` calls of the op, from an idle stream to an idle stream.
double time_calls(nvlm_context* ctx, const Bench& bench, const Work& work, int64_t iterations) {
    check(nvlm_context_synchronize(ctx), "nvlm_context_synchronize");
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iterations; ++i) check(work.call(), "nvlm_" + bench.op);
    check(nvlm_context_synchronize(ctx), "nvlm_context_synchronize after nvlm_" + bench.op);
    return seconds_since(start);
}

// An NVTX range (nvlm_range_push) open for the lifetime of the object.
class Range {
public:
    Range(nvlm_context* ctx, const std::string& name) : ctx_(ctx) { check(nvlm_range_push(ctx, name.c_str()), "nvlm_range_push"); }
    Range(const Range&) = delete;
    Range& operator=(const Range&) = delete;
    ~Range() { nvlm_range_pop(ctx_); }

private:
    nvlm_context* ctx_;
};

Result run_bench(nvlm_context* ctx, const Bench& bench, const Options& options) {
    Result result;
    result.op = bench.op;
    result.shape = bench.shape();
    result.dims = bench.dims;
    try {
        check(nvlm_context_set_math_mode(ctx, bench.math), "nvlm_context_set_math_mode");
        Buffers buffers(ctx);
        const Work work = bench.prepare(buffers);
        for (int i = 0; i < options.warmup; ++i) time_calls(ctx, bench, work, 1);
        // One call sizes the repeats: about target_ms each, at least one call, at most 10000; a call
        // over 0.1 s gets at most 3 repeats.
        const double single = time_calls(ctx, bench, work, 1);
        const double target = options.target_ms * 1e-3;
        result.iterations = std::max<int64_t>(1, std::min<int64_t>(10000, static_cast<int64_t>(target / std::max(single, 1e-7))));
        const int repeats = single > 0.1 ? std::min(options.repeats, 3) : options.repeats;
        std::vector<double> per_call;
        {
            const Range range(ctx, bench.op + " " + result.shape);
            for (int r = 0; r < repeats; ++r)
                per_call.push_back(time_calls(ctx, bench, work, result.iterations) / result.iterations);
        }
        std::sort(per_call.begin(), per_call.end());
        result.time_us = per_call[per_call.size() / 2] * 1e6;
        result.flops = work.flops;
        result.bytes = work.bytes;
    } catch (const Failure& failure) {
        result.error = failure.what();
    } catch (const std::exception& exception) {  // e.g. std::bad_alloc of a host fill
        result.error = std::string("host: ") + exception.what();
    }
    return result;
}

// ---- output ----------------------------------------------------------------------------------

std::string json_string(const std::string& text) {
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char escape[8];
            std::snprintf(escape, sizeof escape, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
            out += escape;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string json_number(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", value);
    return text;
}

void write_json(const std::string& path, const std::vector<Result>& results) {
    FILE* file = std::fopen(path.c_str(), "w");
    if (file == nullptr) {
        std::fprintf(stderr, "nvlm_bench_ops: cannot write %s\n", path.c_str());
        return;
    }
    std::fprintf(file, "[\n");
    for (size_t i = 0; i < results.size(); ++i) {
        const Result& r = results[i];
        std::string dims;
        for (const Dim& dim : r.dims) dims += (dims.empty() ? "" : ", ") + json_string(dim.name) + ": " + std::to_string(dim.value);
        std::string line = "  {\"op\": " + json_string(r.op) + ", \"shape\": " + json_string(r.shape) + ", \"dims\": {" + dims + "}";
        if (!r.error.empty()) {
            line += ", \"error\": " + json_string(r.error);
        } else {
            line += ", \"time_us\": " + json_number(r.time_us) + ", \"iterations\": " + std::to_string(r.iterations);
            if (r.flops > 0) line += ", \"flops\": " + json_number(r.flops) + ", \"tflops\": " + json_number(r.flops / (r.time_us * 1e6));
            else line += ", \"bytes\": " + json_number(r.bytes) + ", \"gbps\": " + json_number(r.bytes / (r.time_us * 1e3));
        }
        std::fprintf(file, "%s}%s\n", line.c_str(), i + 1 < results.size() ? "," : "");
    }
    std::fprintf(file, "]\n");
    std::fclose(file);
}

void print_row(const Result& r) {
    if (!r.error.empty()) {
        std::printf("%-24s %-60s error: %s\n", r.op.c_str(), r.shape.c_str(), r.error.c_str());
    } else if (r.flops > 0) {
        std::printf("%-24s %-60s %12.1f %9.2f TFLOP/s %7lld\n", r.op.c_str(), r.shape.c_str(), r.time_us,
                    r.flops / (r.time_us * 1e6), static_cast<long long>(r.iterations));
    } else {
        std::printf("%-24s %-60s %12.1f %9.1f GB/s    %7lld\n", r.op.c_str(), r.shape.c_str(), r.time_us,
                    r.bytes / (r.time_us * 1e3), static_cast<long long>(r.iterations));
    }
    std::fflush(stdout);
}

bool selected(const Bench& bench, const std::vector<std::string>& filters) {
    if (filters.empty()) return true;
    for (const std::string& filter : filters)
        if (bench.op.find(filter) != std::string::npos) return true;
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    if (!parse_options(argc, argv, &options)) return 2;

    std::vector<Bench> benches;
    for (Bench& bench : all_benches(options.quick ? quick_sizes() : full_sizes()))
        if (selected(bench, options.filters)) benches.push_back(std::move(bench));
    if (options.list) {
        for (const Bench& bench : benches) std::printf("%-24s %s\n", bench.op.c_str(), bench.shape().c_str());
        return 0;
    }

    const char* device_name = options.device_kind == NVLM_DEVICE_CPU ? "cpu" : "cuda";
    nvlm_context* ctx = nullptr;
    if (nvlm_context_create(options.device_kind, options.device_index, &ctx) != NVLM_OK) {
        const std::string message = std::string("nvlm_context_create(") + device_name + "): " + nvlm_last_error();
        std::fprintf(stderr, "nvlm_bench_ops: %s\n", message.c_str());
        Result failure;
        failure.op = "context_create";
        failure.shape = device_name;
        failure.error = message;
        if (!options.json_path.empty()) write_json(options.json_path, {failure});
        return 1;
    }

    std::printf("nvlm_bench_ops: %zu benchmarks on %s:%d%s (warm-up %d, %d repeats of ~%.0f ms, median)\n",
                benches.size(), device_name, options.device_index, options.quick ? ", quick shapes" : "", options.warmup,
                options.repeats, options.target_ms);
    std::printf("%-24s %-60s %12s %17s %7s\n", "op", "shape", "time (us)", "throughput", "iters");

    const auto start = std::chrono::steady_clock::now();
    std::vector<Result> results;
    int failed = 0;
    for (const Bench& bench : benches) {
        results.push_back(run_bench(ctx, bench, options));
        failed += results.back().error.empty() ? 0 : 1;
        print_row(results.back());
        if (!options.json_path.empty()) write_json(options.json_path, results);
    }
    std::printf("nvlm_bench_ops: %zu benchmarks, %d failed, %.1f s\n", results.size(), failed, seconds_since(start));
    nvlm_context_destroy(ctx);
    return 0;
}
