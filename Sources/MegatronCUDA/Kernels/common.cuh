// Shared helpers for the kernels in this folder. Prepended to each kernel source before NVRTC
// compiles it; written without cuda_bf16.h so no CUDA headers are needed at run time.
#pragma once

typedef unsigned short bf16_t;   // bfloat16 bits: the high half of a float32

__device__ __forceinline__ float bf16_to_float(bf16_t h) {
    return __uint_as_float(((unsigned int)h) << 16);
}

// Round to nearest even, NaN stays NaN (quiet bit set).
__device__ __forceinline__ bf16_t float_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

// Eight bf16 values in one 16-byte register quadruple, for 128-bit loads and stores.
union bf16x8 {
    uint4 vector;
    bf16_t lanes[8];
};

__device__ __forceinline__ long long global_thread_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long grid_stride() {
    return (long long)gridDim.x * blockDim.x;
}
