/*
 * The thread-local error message behind nvlm_last_error. Formatting never throws: a message
 * longer than the slot is truncated.
 */
#include "error.h"

#include <cstdarg>
#include <cstdio>

namespace nvlm {

namespace {
thread_local char error_message[1024] = "";
}

nvlm_status fail(nvlm_status code, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(error_message, sizeof error_message, fmt, args);
    va_end(args);
    return code;
}

const char* last_error() { return error_message; }

}  // namespace nvlm
