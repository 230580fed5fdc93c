// FP8 with per-tensor scaling (NeuralKernels+FP8.swift): quantize fp32 / bf16 / fp16 to e4m3 / e5m2
// as fp8(x * scale), dequantize as fp8 * scale, and the amax (largest |x|) that delayed scaling
// records. `scale` points to one fp32 on the device (null: 1), so a scale computed on the GPU needs no
// host sync. Conversions are common.cuh's, bit for bit the CPU's. Vectorized: 8 elements per step,
// 16-byte accesses of the wide side and 8-byte accesses of the fp8 side, when the host has checked
// alignment.

union fp8x8 {
    uint2 vector;
    unsigned char lanes[8];
};

template <class T, class Encode>
__device__ __forceinline__ void quantize(unsigned char *out, const T *in, const float *scale, long long n, int vectorized,
                                         Encode encode) {
    const float s = scale ? *scale : 1.0f;
    long long start = 0;
    if (vectorized) {
        const long long groups = n / 8;
        for (long long g = global_thread_index(); g < groups; g += grid_stride()) {
            float v[8];
            load8(in + g * 8, v);
            fp8x8 pack;
#pragma unroll
            for (int k = 0; k < 8; k++) pack.lanes[k] = encode(v[k] * s);
            *reinterpret_cast<uint2 *>(out + g * 8) = pack.vector;
        }
        start = groups * 8;
    }
    for (long long i = start + global_thread_index(); i < n; i += grid_stride()) out[i] = encode(to_float(in[i]) * s);
}

template <class T, class Decode>
__device__ __forceinline__ void dequantize(T *out, const unsigned char *in, const float *scale, long long n, int vectorized,
                                           Decode decode) {
    const float s = scale ? *scale : 1.0f;
    long long start = 0;
    if (vectorized) {
        const long long groups = n / 8;
        for (long long g = global_thread_index(); g < groups; g += grid_stride()) {
            fp8x8 pack;
            pack.vector = *reinterpret_cast<const uint2 *>(in + g * 8);
            float v[8];
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = decode(pack.lanes[k]) * s;
            store8(out + g * 8, v);
        }
        start = groups * 8;
    }
    for (long long i = start + global_thread_index(); i < n; i += grid_stride()) out[i] = from_float<T>(decode(in[i]) * s);
}

#define FP8_CAST_KERNELS(SUFFIX, T)                                                                                      \
    extern "C" __global__ void cast_##SUFFIX##_e4m3(unsigned char *out, const T *in, const float *scale, long long n,    \
                                                    int vectorized, int saturate) {                                      \
        quantize(out, in, scale, n, vectorized, [=](float v) { return float_to_e4m3(v, saturate != 0); });              \
    }                                                                                                                    \
    extern "C" __global__ void cast_##SUFFIX##_e5m2(unsigned char *out, const T *in, const float *scale, long long n,    \
                                                    int vectorized, int saturate) {                                      \
        quantize(out, in, scale, n, vectorized, [=](float v) { return float_to_e5m2(v, saturate != 0); });              \
    }                                                                                                                    \
    extern "C" __global__ void cast_e4m3_##SUFFIX(T *out, const unsigned char *in, const float *scale, long long n,      \
                                                  int vectorized) {                                                      \
        dequantize(out, in, scale, n, vectorized, [](unsigned char b) { return e4m3_to_float(b); });                     \
    }                                                                                                                    \
    extern "C" __global__ void cast_e5m2_##SUFFIX(T *out, const unsigned char *in, const float *scale, long long n,      \
                                                  int vectorized) {                                                      \
        dequantize(out, in, scale, n, vectorized, [](unsigned char b) { return e5m2_to_float(b); });                     \
    }
FOR_EACH_FLOAT_TYPE(FP8_CAST_KERNELS)

// |v| as ordered bits: for non-negative floats the integer order is the float order, and every NaN
// becomes the quiet NaN 0x7fc00000, which sorts above infinity, so a NaN anywhere makes the amax NaN.
__device__ __forceinline__ unsigned int magnitude_bits(float v) {
    const unsigned int bits = __float_as_uint(v) & 0x7fffffffu;
    return bits > 0x7f800000u ? 0x7fc00000u : bits;
}

// *out = max(*out, max |in|) as fp32 bits; the host zeroes *out first. The maximum does not depend on
// the order of the atomics, so the result is deterministic.
template <class T>
__device__ __forceinline__ void abs_max(unsigned int *out, const T *in, long long n, int vectorized) {
    unsigned int largest = 0;
    long long start = 0;
    if (vectorized) {
        const long long groups = n / 8;
        for (long long g = global_thread_index(); g < groups; g += grid_stride()) {
            float v[8];
            load8(in + g * 8, v);
#pragma unroll
            for (int k = 0; k < 8; k++) largest = max(largest, magnitude_bits(v[k]));
        }
        start = groups * 8;
    }
    for (long long i = start + global_thread_index(); i < n; i += grid_stride()) largest = max(largest, magnitude_bits(to_float(in[i])));
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) largest = max(largest, __shfl_xor_sync(0xffffffffu, largest, offset));
    __shared__ unsigned int warp_largest[32];
    if (threadIdx.x % 32 == 0) warp_largest[threadIdx.x / 32] = largest;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x / 32); w++) largest = max(largest, warp_largest[w]);
        atomicMax(out, largest);
    }
}

#define AMAX_KERNEL(SUFFIX, T)                                                                                \
    extern "C" __global__ void amax_##SUFFIX(unsigned int *out, const T *in, long long n, int vectorized) { \
        abs_max(out, in, n, vectorized);                                                                      \
    }
FOR_EACH_FLOAT_TYPE(AMAX_KERNEL)
