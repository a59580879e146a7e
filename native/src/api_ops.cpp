/*
 * Exports of nvlm.h: the dense, embedding, normalisation, rotary, attention, elementwise,
 * patch-embedding, connector, LM-head, optimiser, LoRA and (dense) DoRA-norm ops. Each validates its
 * arguments through api_checks.h inside guarded(), then hands raw data pointers to the context's
 * backend.
 */
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "api_checks.h"
#include "backend.h"
#include "context.h"
#include "error.h"

using namespace nvlm::api;

// ---- dense algebra ----------------------------------------------------------------------------

NVLM_API nvlm_status nvlm_matmul(nvlm_context* ctx, nvlm_buffer* c, const nvlm_buffer* a, const nvlm_buffer* b,
                                 int64_t batch, int64_t m, int64_t n, int64_t k, int32_t trans_a, int32_t trans_b,
                                 float alpha, float beta) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"batch", batch}, {"m", m}, {"n", n}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "c", c, kF32, {{"batch", batch}, {"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "a", a, kF32, {{"batch", batch}, {"m", m}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "b", b, kF32, {{"batch", batch}, {"k", k}, {"n", n}}));
        return ctx->backend->matmul(data<float>(c), data<const float>(a), data<const float>(b), batch, m, n, k,
                                    trans_a != 0, trans_b != 0, alpha, beta);
    });
}

NVLM_API nvlm_status nvlm_linear_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                         const nvlm_buffer* w, const nvlm_buffer* bias, int64_t m, int64_t k,
                                         int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"m", m}, {"k", k}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"m", m}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"n", n}, {"k", k}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "bias", bias, kF32, {{"n", n}}));
        return ctx->backend->linear_forward(data<float>(out), data<const float>(x), data<const float>(w),
                                            data<const float>(bias), m, k, n);
    });
}

NVLM_API nvlm_status nvlm_linear_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dw, nvlm_buffer* dbias,
                                          const nvlm_buffer* dout, const nvlm_buffer* x, const nvlm_buffer* w,
                                          int64_t m, int64_t k, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"m", m}, {"k", k}, {"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"m", m}, {"k", k}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dw", dw, kF32, {{"n", n}, {"k", k}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dbias", dbias, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"m", m}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"n", n}, {"k", k}}));
        return ctx->backend->linear_backward(data<float>(dx), data<float>(dw), data<float>(dbias),
                                             data<const float>(dout), data<const float>(x), data<const float>(w), m, k,
                                             n);
    });
}

// ---- embeddings -------------------------------------------------------------------------------

NVLM_API nvlm_status nvlm_embedding_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* table,
                                            const nvlm_buffer* ids, int64_t n, int64_t vocab, int64_t d) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"vocab", vocab}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "table", table, kF32, {{"vocab", vocab}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "ids", ids, kI32, {{"n", n}}));
        return ctx->backend->embedding_forward(data<float>(out), data<const float>(table), data<const int32_t>(ids), n,
                                               vocab, d);
    });
}

NVLM_API nvlm_status nvlm_embedding_backward(nvlm_context* ctx, nvlm_buffer* dtable, const nvlm_buffer* dout,
                                             const nvlm_buffer* ids, int64_t n, int64_t vocab, int64_t d) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"vocab", vocab}, {"d", d}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dtable", dtable, kF32, {{"vocab", vocab}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "ids", ids, kI32, {{"n", n}}));
        if (dtable == nullptr) return NVLM_OK;
        return ctx->backend->embedding_backward(data<float>(dtable), data<const float>(dout), data<const int32_t>(ids),
                                                n, vocab, d);
    });
}

namespace {

// Distinct indices into n_rows rows: at most n_rows of them.
nvlm_status check_index_copy_sizes(const char* fn, int64_t n_rows, int64_t n_src, int64_t d) {
    NVLM_TRY(check_sizes(fn, {{"n_rows", n_rows}, {"n_src", n_src}, {"d", d}}));
    if (n_src > n_rows)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: n_src = %lld distinct indices cannot fit in n_rows = %lld rows", fn,
                    static_cast<long long>(n_src), static_cast<long long>(n_rows));
    return NVLM_OK;
}

}  // namespace

NVLM_API nvlm_status nvlm_index_copy_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                             const nvlm_buffer* src, const nvlm_buffer* index, int64_t n_rows,
                                             int64_t n_src, int64_t d) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_index_copy_sizes(fn, n_rows, n_src, d));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"n_rows", n_rows}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n_rows", n_rows}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "src", src, kF32, {{"n_src", n_src}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "index", index, kI32, {{"n_src", n_src}}));
        return ctx->backend->index_copy_forward(data<float>(out), data<const float>(x), data<const float>(src),
                                                data<const int32_t>(index), n_rows, n_src, d);
    });
}

NVLM_API nvlm_status nvlm_index_copy_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dsrc,
                                              const nvlm_buffer* dout, const nvlm_buffer* index, int64_t n_rows,
                                              int64_t n_src, int64_t d) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_index_copy_sizes(fn, n_rows, n_src, d));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"n_rows", n_rows}, {"d", d}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dsrc", dsrc, kF32, {{"n_src", n_src}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"n_rows", n_rows}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "index", index, kI32, {{"n_src", n_src}}));
        if (dx == nullptr && dsrc == nullptr) return NVLM_OK;
        return ctx->backend->index_copy_backward(data<float>(dx), data<float>(dsrc), data<const float>(dout),
                                                 data<const int32_t>(index), n_rows, n_src, d);
    });
}

// ---- normalisation ----------------------------------------------------------------------------

NVLM_API nvlm_status nvlm_rmsnorm_forward(nvlm_context* ctx, nvlm_buffer* out, nvlm_buffer* rstd, const nvlm_buffer* x,
                                          const nvlm_buffer* w, int64_t n, int64_t d, float eps) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "rstd", rstd, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"d", d}}));
        return ctx->backend->rmsnorm_forward(data<float>(out), data<float>(rstd), data<const float>(x),
                                             data<const float>(w), n, d, eps);
    });
}

NVLM_API nvlm_status nvlm_rmsnorm_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dw, const nvlm_buffer* dout,
                                           const nvlm_buffer* x, const nvlm_buffer* w, const nvlm_buffer* rstd,
                                           int64_t n, int64_t d) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dw", dw, kF32, {{"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "rstd", rstd, kF32, {{"n", n}}));
        return ctx->backend->rmsnorm_backward(data<float>(dx), data<float>(dw), data<const float>(dout),
                                              data<const float>(x), data<const float>(w), data<const float>(rstd), n,
                                              d);
    });
}

NVLM_API nvlm_status nvlm_layernorm_forward(nvlm_context* ctx, nvlm_buffer* out, nvlm_buffer* mean, nvlm_buffer* rstd,
                                            const nvlm_buffer* x, const nvlm_buffer* w, const nvlm_buffer* b, int64_t n,
                                            int64_t d, float eps) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "mean", mean, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "rstd", rstd, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "b", b, kF32, {{"d", d}}));
        return ctx->backend->layernorm_forward(data<float>(out), data<float>(mean), data<float>(rstd),
                                               data<const float>(x), data<const float>(w), data<const float>(b), n, d,
                                               eps);
    });
}

NVLM_API nvlm_status nvlm_layernorm_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dw, nvlm_buffer* db,
                                             const nvlm_buffer* dout, const nvlm_buffer* x, const nvlm_buffer* w,
                                             const nvlm_buffer* mean, const nvlm_buffer* rstd, int64_t n, int64_t d) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dw", dw, kF32, {{"d", d}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "db", db, kF32, {{"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "mean", mean, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "rstd", rstd, kF32, {{"n", n}}));
        return ctx->backend->layernorm_backward(data<float>(dx), data<float>(dw), data<float>(db),
                                                data<const float>(dout), data<const float>(x), data<const float>(w),
                                                data<const float>(mean), data<const float>(rstd), n, d);
    });
}

// ---- rotary position embedding ----------------------------------------------------------------

namespace {

nvlm_status check_rope(const char* fn, nvlm_context* ctx, const nvlm_buffer* pos, const nvlm_buffer* inv_freq,
                       int64_t n_tokens, int64_t n_heads, int64_t head_dim) {
    NVLM_TRY(check_sizes(fn, {{"n_tokens", n_tokens}, {"n_heads", n_heads}, {"head_dim", head_dim}}));
    if (head_dim % 2 != 0)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: head_dim = %lld is odd", fn, static_cast<long long>(head_dim));
    NVLM_TRY(check_buffer(fn, ctx, "pos", pos, kI32, {{"n_tokens", n_tokens}}));
    return check_buffer(fn, ctx, "inv_freq", inv_freq, kF32, {{"head_dim/2", head_dim / 2}});
}

}  // namespace

NVLM_API nvlm_status nvlm_rope_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                       const nvlm_buffer* pos, const nvlm_buffer* inv_freq, int64_t n_tokens,
                                       int64_t n_heads, int64_t head_dim) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_rope(fn, ctx, pos, inv_freq, n_tokens, n_heads, head_dim));
        const Dims shape = {{"n_tokens", n_tokens}, {"n_heads", n_heads}, {"head_dim", head_dim}};
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, shape));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, shape));
        return ctx->backend->rope_forward(data<float>(out), data<const float>(x), data<const int32_t>(pos),
                                          data<const float>(inv_freq), n_tokens, n_heads, head_dim);
    });
}

NVLM_API nvlm_status nvlm_rope_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout,
                                        const nvlm_buffer* pos, const nvlm_buffer* inv_freq, int64_t n_tokens,
                                        int64_t n_heads, int64_t head_dim) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_rope(fn, ctx, pos, inv_freq, n_tokens, n_heads, head_dim));
        const Dims shape = {{"n_tokens", n_tokens}, {"n_heads", n_heads}, {"head_dim", head_dim}};
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, shape));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, shape));
        if (dx == nullptr) return NVLM_OK;
        return ctx->backend->rope_backward(data<float>(dx), data<const float>(dout), data<const int32_t>(pos),
                                           data<const float>(inv_freq), n_tokens, n_heads, head_dim);
    });
}

// ---- attention --------------------------------------------------------------------------------

namespace {

// Sizes, head grouping and the inputs shared by forward and backward.
nvlm_status check_attention(const char* fn, nvlm_context* ctx, const nvlm_buffer* q, const nvlm_buffer* k,
                            const nvlm_buffer* v, const nvlm_buffer* key_mask, const nvlm_buffer* lse, int64_t batch,
                            int64_t tq, int64_t tk, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
    NVLM_TRY(check_sizes(fn, {{"batch", batch}, {"tq", tq}, {"tk", tk}, {"head_dim", head_dim}}));
    NVLM_TRY(check_positive(fn, "n_heads", n_heads));
    NVLM_TRY(check_positive(fn, "n_kv_heads", n_kv_heads));
    if (n_heads % n_kv_heads != 0)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: n_heads = %lld is not a multiple of n_kv_heads = %lld", fn,
                    static_cast<long long>(n_heads), static_cast<long long>(n_kv_heads));
    NVLM_TRY(check_buffer(fn, ctx, "q", q, kF32,
                          {{"batch", batch}, {"tq", tq}, {"n_heads", n_heads}, {"head_dim", head_dim}}));
    const Dims kv_shape = {{"batch", batch}, {"tk", tk}, {"n_kv_heads", n_kv_heads}, {"head_dim", head_dim}};
    NVLM_TRY(check_buffer(fn, ctx, "k", k, kF32, kv_shape));
    NVLM_TRY(check_buffer(fn, ctx, "v", v, kF32, kv_shape));
    NVLM_TRY(check_optional_buffer(fn, ctx, "key_mask", key_mask, kU8, {{"batch", batch}, {"tk", tk}}));
    return check_buffer(fn, ctx, "lse", lse, kF32, {{"batch", batch}, {"n_heads", n_heads}, {"tq", tq}});
}

}  // namespace

NVLM_API nvlm_status nvlm_attention_forward(nvlm_context* ctx, nvlm_buffer* out, nvlm_buffer* lse, const nvlm_buffer* q,
                                            const nvlm_buffer* k, const nvlm_buffer* v, const nvlm_buffer* key_mask,
                                            int64_t batch, int64_t tq, int64_t tk, int64_t n_heads, int64_t n_kv_heads,
                                            int64_t head_dim, int32_t causal, float scale) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_attention(fn, ctx, q, k, v, key_mask, lse, batch, tq, tk, n_heads, n_kv_heads, head_dim));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32,
                              {{"batch", batch}, {"tq", tq}, {"n_heads", n_heads}, {"head_dim", head_dim}}));
        return ctx->backend->attention_forward(
            data<float>(out), data<float>(lse), data<const float>(q), data<const float>(k), data<const float>(v),
            data<const uint8_t>(key_mask), batch, tq, tk, n_heads, n_kv_heads, head_dim, causal != 0, scale);
    });
}

NVLM_API nvlm_status nvlm_attention_backward(nvlm_context* ctx, nvlm_buffer* dq, nvlm_buffer* dk, nvlm_buffer* dv,
                                             const nvlm_buffer* dout, const nvlm_buffer* q, const nvlm_buffer* k,
                                             const nvlm_buffer* v, const nvlm_buffer* key_mask, const nvlm_buffer* out,
                                             const nvlm_buffer* lse, int64_t batch, int64_t tq, int64_t tk,
                                             int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int32_t causal,
                                             float scale) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_attention(fn, ctx, q, k, v, key_mask, lse, batch, tq, tk, n_heads, n_kv_heads, head_dim));
        const Dims q_shape = {{"batch", batch}, {"tq", tq}, {"n_heads", n_heads}, {"head_dim", head_dim}};
        const Dims kv_shape = {{"batch", batch}, {"tk", tk}, {"n_kv_heads", n_kv_heads}, {"head_dim", head_dim}};
        NVLM_TRY(check_optional_buffer(fn, ctx, "dq", dq, kF32, q_shape));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dk", dk, kF32, kv_shape));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dv", dv, kF32, kv_shape));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, q_shape));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, q_shape));
        return ctx->backend->attention_backward(
            data<float>(dq), data<float>(dk), data<float>(dv), data<const float>(dout), data<const float>(q),
            data<const float>(k), data<const float>(v), data<const uint8_t>(key_mask), data<const float>(out),
            data<const float>(lse), batch, tq, tk, n_heads, n_kv_heads, head_dim, causal != 0, scale);
    });
}

// ---- elementwise ------------------------------------------------------------------------------

NVLM_API nvlm_status nvlm_gelu_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}}));
        return ctx->backend->gelu_forward(data<float>(out), data<const float>(x), n);
    });
}

NVLM_API nvlm_status nvlm_gelu_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout,
                                        const nvlm_buffer* x, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}}));
        if (dx == nullptr) return NVLM_OK;
        return ctx->backend->gelu_backward(data<float>(dx), data<const float>(dout), data<const float>(x), n);
    });
}

NVLM_API nvlm_status nvlm_swiglu_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* gate,
                                         const nvlm_buffer* up, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "gate", gate, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "up", up, kF32, {{"n", n}}));
        return ctx->backend->swiglu_forward(data<float>(out), data<const float>(gate), data<const float>(up), n);
    });
}

NVLM_API nvlm_status nvlm_swiglu_backward(nvlm_context* ctx, nvlm_buffer* dgate, nvlm_buffer* dup,
                                          const nvlm_buffer* dout, const nvlm_buffer* gate, const nvlm_buffer* up,
                                          int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dgate", dgate, kF32, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dup", dup, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "gate", gate, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "up", up, kF32, {{"n", n}}));
        return ctx->backend->swiglu_backward(data<float>(dgate), data<float>(dup), data<const float>(dout),
                                             data<const float>(gate), data<const float>(up), n);
    });
}

NVLM_API nvlm_status nvlm_residual_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* a,
                                           const nvlm_buffer* b, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "a", a, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "b", b, kF32, {{"n", n}}));
        return ctx->backend->residual_forward(data<float>(out), data<const float>(a), data<const float>(b), n);
    });
}

NVLM_API nvlm_status nvlm_residual_backward(nvlm_context* ctx, nvlm_buffer* da, nvlm_buffer* db,
                                            const nvlm_buffer* dout, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "da", da, kF32, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "db", db, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"n", n}}));
        return ctx->backend->residual_backward(data<float>(da), data<float>(db), data<const float>(dout), n);
    });
}

NVLM_API nvlm_status nvlm_bias_add_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                           const nvlm_buffer* bias, int64_t m, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "bias", bias, kF32, {{"n", n}}));
        return ctx->backend->bias_add_forward(data<float>(out), data<const float>(x), data<const float>(bias), m, n);
    });
}

NVLM_API nvlm_status nvlm_bias_add_backward(nvlm_context* ctx, nvlm_buffer* dx, nvlm_buffer* dbias,
                                            const nvlm_buffer* dout, int64_t m, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dbias", dbias, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"m", m}, {"n", n}}));
        return ctx->backend->bias_add_backward(data<float>(dx), data<float>(dbias), data<const float>(dout), m, n);
    });
}

NVLM_API nvlm_status nvlm_scale_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x, float alpha,
                                        int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}}));
        return ctx->backend->scale_forward(data<float>(out), data<const float>(x), alpha, n);
    });
}

NVLM_API nvlm_status nvlm_scale_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout, float alpha,
                                         int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"n", n}}));
        if (dx == nullptr) return NVLM_OK;
        return ctx->backend->scale_backward(data<float>(dx), data<const float>(dout), alpha, n);
    });
}

NVLM_API nvlm_status nvlm_sum_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"size", 1}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}}));
        return ctx->backend->sum_forward(data<float>(out), data<const float>(x), n);
    });
}

NVLM_API nvlm_status nvlm_sum_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"size", 1}}));
        if (dx == nullptr) return NVLM_OK;
        return ctx->backend->sum_backward(data<float>(dx), data<const float>(dout), n);
    });
}

// ---- SigLIP patch embedding -------------------------------------------------------------------

namespace {

// The image is a whole number of patches, and one image's channels·height·width values fit int64,
// so that a patch's channels·patch² values and the patch count do too.
nvlm_status check_patchify_sizes(const char* fn, int64_t n, int64_t channels, int64_t height, int64_t width,
                                 int64_t patch) {
    NVLM_TRY(check_sizes(fn, {{"n", n}}));
    NVLM_TRY(check_positive(fn, "channels", channels));
    NVLM_TRY(check_positive(fn, "height", height));
    NVLM_TRY(check_positive(fn, "width", width));
    NVLM_TRY(check_positive(fn, "patch", patch));
    if (height % patch != 0)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: height = %lld is not divisible by patch = %lld", fn,
                    static_cast<long long>(height), static_cast<long long>(patch));
    if (width % patch != 0)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: width = %lld is not divisible by patch = %lld", fn,
                    static_cast<long long>(width), static_cast<long long>(patch));
    if (height > INT64_MAX / width || channels > INT64_MAX / (height * width))
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: channels = %lld times height = %lld times width = %lld overflows",
                    fn, static_cast<long long>(channels), static_cast<long long>(height),
                    static_cast<long long>(width));
    return NVLM_OK;
}

}  // namespace

NVLM_API nvlm_status nvlm_patchify_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* pixels, int64_t n,
                                           int64_t channels, int64_t height, int64_t width, int64_t patch) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_patchify_sizes(fn, n, channels, height, width, patch));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32,
                              {{"n", n},
                               {"(height/patch)*(width/patch)", (height / patch) * (width / patch)},
                               {"channels*patch^2", channels * patch * patch}}));
        NVLM_TRY(check_buffer(fn, ctx, "pixels", pixels, kF32,
                              {{"n", n}, {"channels", channels}, {"height", height}, {"width", width}}));
        return ctx->backend->patchify_forward(data<float>(out), data<const float>(pixels), n, channels, height, width,
                                              patch);
    });
}

NVLM_API nvlm_status nvlm_patchify_backward(nvlm_context* ctx, nvlm_buffer* dpixels, const nvlm_buffer* dout, int64_t n,
                                            int64_t channels, int64_t height, int64_t width, int64_t patch) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_patchify_sizes(fn, n, channels, height, width, patch));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dpixels", dpixels, kF32,
                                       {{"n", n}, {"channels", channels}, {"height", height}, {"width", width}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32,
                              {{"n", n},
                               {"(height/patch)*(width/patch)", (height / patch) * (width / patch)},
                               {"channels*patch^2", channels * patch * patch}}));
        if (dpixels == nullptr) return NVLM_OK;
        return ctx->backend->patchify_backward(data<float>(dpixels), data<const float>(dout), n, channels, height,
                                               width, patch);
    });
}

// ---- Idefics3 connector -----------------------------------------------------------------------

namespace {

// seq must be side² with side a multiple of scale; d·seq must fit int64 (so d·scale² does).
nvlm_status check_pixel_shuffle_sizes(const char* fn, int64_t n, int64_t seq, int64_t d, int64_t scale) {
    NVLM_TRY(check_sizes(fn, {{"n", n}, {"seq", seq}, {"d", d}}));
    NVLM_TRY(check_positive(fn, "scale", scale));
    if (seq != 0 && d > INT64_MAX / seq)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: d = %lld times seq = %lld overflows", fn, static_cast<long long>(d),
                    static_cast<long long>(seq));
    const int64_t side = std::llround(std::sqrt(static_cast<double>(seq)));
    if (side * side != seq)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: seq = %lld is not a perfect square", fn,
                    static_cast<long long>(seq));
    if (side % scale != 0)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: side = sqrt(seq) = %lld is not divisible by scale = %lld", fn,
                    static_cast<long long>(side), static_cast<long long>(scale));
    return NVLM_OK;
}

}  // namespace

NVLM_API nvlm_status nvlm_pixel_shuffle_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x, int64_t n,
                                                int64_t seq, int64_t d, int64_t scale) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_pixel_shuffle_sizes(fn, n, seq, d, scale));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32,
                              {{"n", n}, {"seq/scale^2", seq / (scale * scale)}, {"d*scale^2", d * scale * scale}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"n", n}, {"seq", seq}, {"d", d}}));
        return ctx->backend->pixel_shuffle_forward(data<float>(out), data<const float>(x), n, seq, d, scale);
    });
}

NVLM_API nvlm_status nvlm_pixel_shuffle_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout, int64_t n,
                                                 int64_t seq, int64_t d, int64_t scale) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_pixel_shuffle_sizes(fn, n, seq, d, scale));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"n", n}, {"seq", seq}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32,
                              {{"n", n}, {"seq/scale^2", seq / (scale * scale)}, {"d*scale^2", d * scale * scale}}));
        if (dx == nullptr) return NVLM_OK;
        return ctx->backend->pixel_shuffle_backward(data<float>(dx), data<const float>(dout), n, seq, d, scale);
    });
}

// ---- language-model head ----------------------------------------------------------------------

NVLM_API nvlm_status nvlm_lm_logprob_forward(nvlm_context* ctx, nvlm_buffer* logp, nvlm_buffer* lse,
                                             const nvlm_buffer* h, const nvlm_buffer* w, const nvlm_buffer* targets,
                                             int64_t n, int64_t d, int64_t vocab, int64_t chunk) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"d", d}, {"vocab", vocab}}));
        NVLM_TRY(check_positive(fn, "chunk", chunk));
        NVLM_TRY(check_buffer(fn, ctx, "logp", logp, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "lse", lse, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "h", h, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"vocab", vocab}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "targets", targets, kI32, {{"n", n}}));
        return ctx->backend->lm_logprob_forward(data<float>(logp), data<float>(lse), data<const float>(h),
                                                data<const float>(w), data<const int32_t>(targets), n, d, vocab, chunk);
    });
}

NVLM_API nvlm_status nvlm_lm_logprob_backward(nvlm_context* ctx, nvlm_buffer* dh, nvlm_buffer* dw,
                                              const nvlm_buffer* dlogp, const nvlm_buffer* h, const nvlm_buffer* w,
                                              const nvlm_buffer* targets, const nvlm_buffer* lse, int64_t n, int64_t d,
                                              int64_t vocab, int64_t chunk) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"d", d}, {"vocab", vocab}}));
        NVLM_TRY(check_positive(fn, "chunk", chunk));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dh", dh, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dw", dw, kF32, {{"vocab", vocab}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "dlogp", dlogp, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "h", h, kF32, {{"n", n}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"vocab", vocab}, {"d", d}}));
        NVLM_TRY(check_buffer(fn, ctx, "targets", targets, kI32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "lse", lse, kF32, {{"n", n}}));
        return ctx->backend->lm_logprob_backward(
            data<float>(dh), data<float>(dw), data<const float>(dlogp), data<const float>(h), data<const float>(w),
            data<const int32_t>(targets), data<const float>(lse), n, d, vocab, chunk);
    });
}

// ---- optimiser --------------------------------------------------------------------------------

NVLM_API nvlm_status nvlm_adamw_step(nvlm_context* ctx, nvlm_buffer* param, const nvlm_buffer* grad, nvlm_buffer* m,
                                     nvlm_buffer* v, int64_t n, float lr, float beta1, float beta2, float eps,
                                     float weight_decay, int64_t step) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_positive(fn, "step", step));
        NVLM_TRY(check_buffer(fn, ctx, "param", param, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "grad", grad, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "m", m, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "v", v, kF32, {{"n", n}}));
        return ctx->backend->adamw_step(data<float>(param), data<const float>(grad), data<float>(m), data<float>(v), n,
                                        lr, beta1, beta2, eps, weight_decay, step);
    });
}

NVLM_API nvlm_status nvlm_adamw_multi_tensor_step(nvlm_context* ctx, nvlm_buffer* const* params,
                                                  const nvlm_buffer* const* grads, nvlm_buffer* const* m,
                                                  nvlm_buffer* const* v, const int64_t* n, int64_t count, float lr,
                                                  float beta1, float beta2, float eps, float weight_decay,
                                                  int64_t step) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"count", count}}));
        NVLM_TRY(check_positive(fn, "step", step));
        if (count > 0) {
            const std::pair<const char*, const void*> arrays[] = {
                {"params", params}, {"grads", grads}, {"m", m}, {"v", v}, {"n", n}};
            for (const auto& [name, array] : arrays)
                if (array == nullptr)
                    return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s is null with count = %lld", fn, name,
                                static_cast<long long>(count));
        }
        std::vector<float*> param_data, m_data, v_data;
        std::vector<const float*> grad_data;
        // Every written buffer with the name of its slot, to find one named twice.
        std::vector<std::pair<const nvlm_buffer*, std::string>> written;
        for (int64_t t = 0; t < count; t++) {
            const std::string index = "[" + std::to_string(t) + "]";
            const std::string n_name = "n" + index, param_name = "params" + index, grad_name = "grads" + index,
                              m_name = "m" + index, v_name = "v" + index;
            NVLM_TRY(check_sizes(fn, {{n_name.c_str(), n[t]}}));
            NVLM_TRY(check_buffer(fn, ctx, param_name.c_str(), params[t], kF32, {{n_name.c_str(), n[t]}}));
            NVLM_TRY(check_buffer(fn, ctx, grad_name.c_str(), grads[t], kF32, {{n_name.c_str(), n[t]}}));
            NVLM_TRY(check_buffer(fn, ctx, m_name.c_str(), m[t], kF32, {{n_name.c_str(), n[t]}}));
            NVLM_TRY(check_buffer(fn, ctx, v_name.c_str(), v[t], kF32, {{n_name.c_str(), n[t]}}));
            written.emplace_back(params[t], param_name);
            written.emplace_back(m[t], m_name);
            written.emplace_back(v[t], v_name);
            param_data.push_back(data<float>(params[t]));
            grad_data.push_back(data<const float>(grads[t]));
            m_data.push_back(data<float>(m[t]));
            v_data.push_back(data<float>(v[t]));
        }
        // The CUDA kernel updates all tensors at once: a buffer written twice would race. (Stable: the
        // message names the two slots in argument order.)
        std::stable_sort(written.begin(), written.end(), [](const auto& x, const auto& y) {
            return std::less<const nvlm_buffer*>()(x.first, y.first);
        });
        for (size_t i = 1; i < written.size(); i++)
            if (written[i].first == written[i - 1].first)
                return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: %s and %s are the same buffer", fn,
                            written[i - 1].second.c_str(), written[i].second.c_str());
        return ctx->backend->adamw_multi_tensor_step(param_data.data(), grad_data.data(), m_data.data(),
                                                     v_data.data(), n, count, lr, beta1, beta2, eps, weight_decay,
                                                     step);
    });
}

// ---- LoRA / DoRA adapters ---------------------------------------------------------------------

namespace {

// m, k, n non-negative and the rank positive (an adapter has at least one rank).
nvlm_status check_lora_sizes(const char* fn, int64_t m, int64_t k, int64_t n, int64_t r) {
    NVLM_TRY(check_sizes(fn, {{"m", m}, {"k", k}, {"n", n}}));
    return check_positive(fn, "r", r);
}

}  // namespace

NVLM_API nvlm_status nvlm_lora_forward(nvlm_context* ctx, nvlm_buffer* out, nvlm_buffer* down,
                                       const nvlm_buffer* base_out, const nvlm_buffer* base_dora,
                                       const nvlm_buffer* x_lora, const nvlm_buffer* a, const nvlm_buffer* b,
                                       const nvlm_buffer* col_scale, int64_t m, int64_t k, int64_t n, int64_t r,
                                       float scaling) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_lora_sizes(fn, m, k, n, r));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "down", down, kF32, {{"m", m}, {"r", r}}));
        NVLM_TRY(check_buffer(fn, ctx, "base_out", base_out, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "base_dora", base_dora, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x_lora", x_lora, kF32, {{"m", m}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "a", a, kF32, {{"r", r}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "b", b, kF32, {{"n", n}, {"r", r}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "col_scale", col_scale, kF32, {{"n", n}}));
        return ctx->backend->lora_forward(data<float>(out), data<float>(down), data<const float>(base_out),
                                          data<const float>(base_dora), data<const float>(x_lora),
                                          data<const float>(a), data<const float>(b), data<const float>(col_scale), m,
                                          k, n, r, scaling);
    });
}

NVLM_API nvlm_status nvlm_lora_backward(nvlm_context* ctx, nvlm_buffer* dbase_out, nvlm_buffer* dbase_dora,
                                        nvlm_buffer* dx_lora, nvlm_buffer* da, nvlm_buffer* db,
                                        nvlm_buffer* dcol_scale, const nvlm_buffer* dout,
                                        const nvlm_buffer* base_dora, const nvlm_buffer* x_lora,
                                        const nvlm_buffer* a, const nvlm_buffer* b, const nvlm_buffer* col_scale,
                                        const nvlm_buffer* down, int64_t m, int64_t k, int64_t n, int64_t r,
                                        float scaling) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_lora_sizes(fn, m, k, n, r));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dbase_out", dbase_out, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dbase_dora", dbase_dora, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx_lora", dx_lora, kF32, {{"m", m}, {"k", k}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "da", da, kF32, {{"r", r}, {"k", k}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "db", db, kF32, {{"n", n}, {"r", r}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dcol_scale", dcol_scale, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "base_dora", base_dora, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x_lora", x_lora, kF32, {{"m", m}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "a", a, kF32, {{"r", r}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "b", b, kF32, {{"n", n}, {"r", r}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "col_scale", col_scale, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "down", down, kF32, {{"m", m}, {"r", r}}));
        return ctx->backend->lora_backward(data<float>(dbase_out), data<float>(dbase_dora), data<float>(dx_lora),
                                           data<float>(da), data<float>(db), data<float>(dcol_scale),
                                           data<const float>(dout), data<const float>(base_dora),
                                           data<const float>(x_lora), data<const float>(a), data<const float>(b),
                                           data<const float>(col_scale), data<const float>(down), m, k, n, r,
                                           scaling);
    });
}

NVLM_API nvlm_status nvlm_dora_norm(nvlm_context* ctx, nvlm_buffer* norm, nvlm_buffer* inv_norm,
                                    const nvlm_buffer* w, const nvlm_buffer* a, const nvlm_buffer* b, int64_t n,
                                    int64_t k, int64_t r, float scaling) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"n", n}, {"k", k}}));
        NVLM_TRY(check_positive(fn, "r", r));
        NVLM_TRY(check_buffer(fn, ctx, "norm", norm, kF32, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "inv_norm", inv_norm, kF32, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"n", n}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "a", a, kF32, {{"r", r}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "b", b, kF32, {{"n", n}, {"r", r}}));
        return ctx->backend->dora_norm(data<float>(norm), data<float>(inv_norm), data<const float>(w),
                                       data<const float>(a), data<const float>(b), n, k, r, scaling);
    });
}
