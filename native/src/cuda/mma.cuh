/*
 * The tensor-core idioms shared by the bf16 kernels (nf4.cu's NF4 linear, attention_bf16.cu's flash
 * attention): packing two floats into a bf16 pair, ldmatrix from shared memory and mma.sync
 * m16n8k16 with bf16 inputs and fp32 accumulators. Fragment layouts are the PTX ISA's, written out in
 * nf4.cu's top comment.
 */
#pragma once

#include <cstdint>
#include <cstring>

#include <cuda_bf16.h>

namespace nvlm::cuda {

// bf16(lo) in the low half (the lower address), bf16(hi) in the high half: round-to-nearest-even.
__device__ inline uint32_t bf16_pair(float lo, float hi) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    uint32_t bits;
    memcpy(&bits, &pair, sizeof(bits));
    return bits;
}

__device__ inline uint32_t shared_address(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Four 8 × 8 bf16 matrices, lanes 8i .. 8i + 7 addressing the rows of matrix i; register i gets
// matrix i's row lane / 4, columns 2·(lane % 4) and + 1 (transposed: row 2·(lane % 4) and + 1, column
// lane / 4).
__device__ inline void load_matrix_x4(uint32_t (&r)[4], const __nv_bfloat16* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
}

__device__ inline void load_matrix_x4_transposed(uint32_t (&r)[4], const __nv_bfloat16* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
}

// c (16 × 8, fp32) += a (16 × 16, bf16) · b (16 × 8, bf16).
__device__ inline void mma_bf16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

}  // namespace nvlm::cuda
