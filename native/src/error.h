/*
 * Error reporting shared by the exports and the backends.
 *
 * A failure stores a message in the calling thread's slot and returns its status code, so that
 * every failure path reads `return fail(code, "nvlm_op: what is wrong", ...)`. The message
 * stays until the thread's next failure (successful calls leave it alone).
 */
#pragma once

#include "nvlm.h"

#if defined(__GNUC__) || defined(__clang__)
#  define NVLM_PRINTF_FORMAT(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#  define NVLM_PRINTF_FORMAT(fmt_index, first_arg)
#endif

namespace nvlm {

// Formats the message (printf style) into the calling thread's slot and returns `code`.
nvlm_status fail(nvlm_status code, const char* fmt, ...) NVLM_PRINTF_FORMAT(2, 3);

// The calling thread's last message, "" before its first failure.
const char* last_error();

}  // namespace nvlm

// Returns from the enclosing function when `expr` (an nvlm_status) is an error.
#define NVLM_TRY(expr)                                      \
  do {                                                      \
    const nvlm_status nvlm_try_status = (expr);             \
    if (nvlm_try_status != NVLM_OK) return nvlm_try_status; \
  } while (0)
