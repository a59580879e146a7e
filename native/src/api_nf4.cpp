/*
 * Exports of nvlm.h: NF4 base weights (quantise, dequantise, linear forward and backward, DoRA's
 * weight norm over an NF4 weight) and the casts. Each validates its arguments through api_checks.h
 * inside guarded(), then hands raw data pointers to the context's backend.
 */
#include "api_checks.h"
#include "backend.h"
#include "context.h"
#include "error.h"

using namespace nvlm::api;

// ---- NF4 base weights -------------------------------------------------------------------------

namespace {

// n and k are positive and n·k floats fit int64 bytes, so every size derived from n·k does too.
nvlm_status check_nf4_sizes(const char* fn, int64_t n, int64_t k) {
    NVLM_TRY(check_positive(fn, "n", n));
    NVLM_TRY(check_positive(fn, "k", k));
    if (n > INT64_MAX / kF32.bytes / k)
        return fail(NVLM_ERR_INVALID_ARGUMENT, "%s: n = %lld times k = %lld floats overflow", fn,
                    static_cast<long long>(n), static_cast<long long>(k));
    return NVLM_OK;
}

// The five buffers that hold a quantised weight of n·k values (nvlm.h, nf4.h), each required and
// checked like any buffer. Their contents need no check: every byte is a valid code or index.
nvlm_status check_nf4_weight(const char* fn, const nvlm_context* ctx, const nvlm_buffer* packed,
                             const nvlm_buffer* absmax_q, const nvlm_buffer* absmax2, const nvlm_buffer* offset,
                             const nvlm_buffer* absmax_code, int64_t n, int64_t k) {
    namespace nf4 = nvlm::nf4;
    const int64_t numel = n * k;
    NVLM_TRY(check_buffer(fn, ctx, "packed", packed, kU8, {{"ceil(n*k/2)", nf4::packed_bytes(numel)}}));
    NVLM_TRY(check_buffer(fn, ctx, "absmax_q", absmax_q, kU8, {{"ceil(n*k/64)", nf4::block_count(numel)}}));
    NVLM_TRY(check_buffer(fn, ctx, "absmax2", absmax2, kF32, {{"ceil(n*k/(64*256))", nf4::nested_block_count(numel)}}));
    NVLM_TRY(check_buffer(fn, ctx, "offset", offset, kF32, {{"size", 1}}));
    NVLM_TRY(check_buffer(fn, ctx, "absmax_code", absmax_code, kF32, {{"codes", nf4::kDynamicCodes}}));
    return NVLM_OK;
}

nvlm::nf4::Weight nf4_weight(const nvlm_buffer* packed, const nvlm_buffer* absmax_q, const nvlm_buffer* absmax2,
                             const nvlm_buffer* offset, const nvlm_buffer* absmax_code) {
    return {data<const uint8_t>(packed), data<const uint8_t>(absmax_q), data<const float>(absmax2),
            data<const float>(offset), data<const float>(absmax_code)};
}

}  // namespace

NVLM_API nvlm_status nvlm_nf4_quantize(nvlm_context* ctx, nvlm_buffer* packed, nvlm_buffer* absmax_q,
                                       nvlm_buffer* absmax2, nvlm_buffer* offset, nvlm_buffer* absmax_code,
                                       nvlm_buffer* absmax, const nvlm_buffer* w, int64_t n, int64_t k) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_nf4_sizes(fn, n, k));
        NVLM_TRY(check_nf4_weight(fn, ctx, packed, absmax_q, absmax2, offset, absmax_code, n, k));
        NVLM_TRY(
            check_optional_buffer(fn, ctx, "absmax", absmax, kF32, {{"ceil(n*k/64)", nvlm::nf4::block_count(n * k)}}));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"n", n}, {"k", k}}));
        return ctx->backend->nf4_quantize(data<uint8_t>(packed), data<uint8_t>(absmax_q), data<float>(absmax2),
                                          data<float>(offset), data<float>(absmax_code), data<float>(absmax),
                                          data<const float>(w), n, k);
    });
}

NVLM_API nvlm_status nvlm_nf4_dequantize(nvlm_context* ctx, nvlm_buffer* w, const nvlm_buffer* packed,
                                         const nvlm_buffer* absmax_q, const nvlm_buffer* absmax2,
                                         const nvlm_buffer* offset, const nvlm_buffer* absmax_code, int64_t n,
                                         int64_t k) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_nf4_sizes(fn, n, k));
        NVLM_TRY(check_buffer(fn, ctx, "w", w, kF32, {{"n", n}, {"k", k}}));
        NVLM_TRY(check_nf4_weight(fn, ctx, packed, absmax_q, absmax2, offset, absmax_code, n, k));
        return ctx->backend->nf4_dequantize(data<float>(w), nf4_weight(packed, absmax_q, absmax2, offset, absmax_code),
                                            n, k);
    });
}

NVLM_API nvlm_status nvlm_nf4_linear_forward(nvlm_context* ctx, nvlm_buffer* out, const nvlm_buffer* x,
                                             const nvlm_buffer* packed, const nvlm_buffer* absmax_q,
                                             const nvlm_buffer* absmax2, const nvlm_buffer* offset,
                                             const nvlm_buffer* absmax_code, int64_t m, int64_t k, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"m", m}}));
        NVLM_TRY(check_nf4_sizes(fn, n, k));
        NVLM_TRY(check_buffer(fn, ctx, "out", out, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "x", x, kF32, {{"m", m}, {"k", k}}));
        NVLM_TRY(check_nf4_weight(fn, ctx, packed, absmax_q, absmax2, offset, absmax_code, n, k));
        return ctx->backend->nf4_linear_forward(data<float>(out), data<const float>(x),
                                                nf4_weight(packed, absmax_q, absmax2, offset, absmax_code), m, k, n);
    });
}

NVLM_API nvlm_status nvlm_nf4_linear_backward(nvlm_context* ctx, nvlm_buffer* dx, const nvlm_buffer* dout,
                                              const nvlm_buffer* packed, const nvlm_buffer* absmax_q,
                                              const nvlm_buffer* absmax2, const nvlm_buffer* offset,
                                              const nvlm_buffer* absmax_code, int64_t m, int64_t k, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_sizes(fn, {{"m", m}}));
        NVLM_TRY(check_nf4_sizes(fn, n, k));
        NVLM_TRY(check_optional_buffer(fn, ctx, "dx", dx, kF32, {{"m", m}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "dout", dout, kF32, {{"m", m}, {"n", n}}));
        NVLM_TRY(check_nf4_weight(fn, ctx, packed, absmax_q, absmax2, offset, absmax_code, n, k));
        if (dx == nullptr) return NVLM_OK;
        return ctx->backend->nf4_linear_backward(data<float>(dx), data<const float>(dout),
                                                 nf4_weight(packed, absmax_q, absmax2, offset, absmax_code), m, k, n);
    });
}

NVLM_API nvlm_status nvlm_dora_norm_nf4(nvlm_context* ctx, nvlm_buffer* norm, nvlm_buffer* inv_norm,
                                        const nvlm_buffer* packed, const nvlm_buffer* absmax_q,
                                        const nvlm_buffer* absmax2, const nvlm_buffer* offset,
                                        const nvlm_buffer* absmax_code, const nvlm_buffer* a, const nvlm_buffer* b,
                                        int64_t n, int64_t k, int64_t r, float scaling) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_nf4_sizes(fn, n, k));
        NVLM_TRY(check_positive(fn, "r", r));
        NVLM_TRY(check_buffer(fn, ctx, "norm", norm, kF32, {{"n", n}}));
        NVLM_TRY(check_optional_buffer(fn, ctx, "inv_norm", inv_norm, kF32, {{"n", n}}));
        NVLM_TRY(check_nf4_weight(fn, ctx, packed, absmax_q, absmax2, offset, absmax_code, n, k));
        NVLM_TRY(check_buffer(fn, ctx, "a", a, kF32, {{"r", r}, {"k", k}}));
        NVLM_TRY(check_buffer(fn, ctx, "b", b, kF32, {{"n", n}, {"r", r}}));
        return ctx->backend->dora_norm_nf4(data<float>(norm), data<float>(inv_norm),
                                           nf4_weight(packed, absmax_q, absmax2, offset, absmax_code),
                                           data<const float>(a), data<const float>(b), n, k, r, scaling);
    });
}

// ---- casts ------------------------------------------------------------------------------------

NVLM_API nvlm_status nvlm_cast(nvlm_context* ctx, nvlm_buffer* dst, int32_t dst_dtype, const nvlm_buffer* src,
                               int32_t src_dtype, int64_t n) {
    return guarded(__func__, [&](const char* fn) {
        NVLM_TRY(check_context(fn, ctx));
        NVLM_TRY(check_dtype(fn, "dst_dtype", dst_dtype));
        NVLM_TRY(check_dtype(fn, "src_dtype", src_dtype));
        const bool f32_bf16 =
            (dst_dtype == NVLM_F32 && src_dtype == NVLM_BF16) || (dst_dtype == NVLM_BF16 && src_dtype == NVLM_F32);
        if (dst_dtype != src_dtype && !f32_bf16)
            return fail(NVLM_ERR_INVALID_ARGUMENT,
                        "%s: no cast from src_dtype = %d to dst_dtype = %d (only f32 <-> bf16 and identities)", fn,
                        src_dtype, dst_dtype);
        NVLM_TRY(check_sizes(fn, {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "dst", dst, element_type(dst_dtype), {{"n", n}}));
        NVLM_TRY(check_buffer(fn, ctx, "src", src, element_type(src_dtype), {{"n", n}}));
        return ctx->backend->cast(data<void>(dst), static_cast<nvlm_dtype>(dst_dtype), data<const void>(src),
                                  static_cast<nvlm_dtype>(src_dtype), n);
    });
}
