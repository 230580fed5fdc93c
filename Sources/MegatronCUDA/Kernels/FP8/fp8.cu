// FP8 with per-tensor scaling (CUDAKernels+FP8.swift): quantize fp32 / bf16 / fp16 to e4m3 / e5m2
// as fp8(x * scale), dequantize as fp8 * scale, and the amax (largest |x|) that delayed scaling
// records; a matrix's quantize, transpose and amax in one pass (cast_transpose). `scale` points to one fp32 on the device (null: 1), so a scale computed on the GPU needs no
// host sync. Conversions give fp8.cuh's results, bit for bit the CPU's; 8 elements per step (16-byte accesses
// of the wide side, 8-byte of the fp8 side) when the host found the pointers aligned.

// The fp8 formats as storage types of neural.cuh's element helpers (load8, store8, map_unary).
struct e4m3 { unsigned char bits; };
struct e5m2 { unsigned char bits; };

// fp32 to fp8 (and back) by the hardware's conversion (sm_89 on) where it gives fp8.cuh's result:
// cvt.rn rounds to nearest even as float_to_fp8 does, subnormals included, but it saturates. So NaN
// and the magnitudes that round past the largest finite value (above 464 for e4m3, where 480 would be
// its NaN code; from 61440 for e5m2, the tie that rounds up to infinity) take fp8.cuh's path. One
// instruction instead of about thirty: the software encode held a bf16 -> e4m3 cast to 55% of copy
// bandwidth.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define FP8_HARDWARE_ENCODE(FORMAT, INSTRUCTION, IN_RANGE, FALLBACK)                                    \
    template <> __device__ __forceinline__ FORMAT from_float<FORMAT>(float x) {                         \
        FORMAT r;                                                                                       \
        const float m = fabsf(x);                                                                       \
        if (IN_RANGE) {                                                                                 \
            unsigned short pair;                                                                        \
            asm(INSTRUCTION " %0, %1, %2;" : "=h"(pair) : "f"(0.0f), "f"(x));                           \
            r.bits = (unsigned char)(pair & 0xffu);   /* the second operand lands in the low byte */     \
        } else {                                                                                        \
            r.bits = FALLBACK(x);                                                                       \
        }                                                                                               \
        return r;                                                                                       \
    }
FP8_HARDWARE_ENCODE(e4m3, "cvt.rn.satfinite.e4m3x2.f32", m <= 464.0f, float_to_e4m3)
FP8_HARDWARE_ENCODE(e5m2, "cvt.rn.satfinite.e5m2x2.f32", m < 61440.0f, float_to_e5m2)
// Decoding through fp16, which holds every fp8 value exactly; NaN codes take fp8.cuh's path, which
// gives the CPU's canonical NaN (the fp16 route would keep a payload).
#define FP8_HARDWARE_DECODE(FORMAT, INSTRUCTION, IS_NAN, FALLBACK)                                      \
    __device__ __forceinline__ float to_float(FORMAT x) {                                               \
        if (IS_NAN) return FALLBACK(x.bits);                                                            \
        unsigned int halves;                                                                            \
        asm(INSTRUCTION " %0, %1;" : "=r"(halves) : "h"((unsigned short)x.bits));                       \
        f16 h;                                                                                          \
        h.bits = (unsigned short)(halves & 0xffffu);   /* the low byte's value */                       \
        return to_float(h);                                                                             \
    }
FP8_HARDWARE_DECODE(e4m3, "cvt.rn.f16x2.e4m3x2", (x.bits & 0x7fu) == 0x7fu, e4m3_to_float)
FP8_HARDWARE_DECODE(e5m2, "cvt.rn.f16x2.e5m2x2", (x.bits & 0x7fu) > 0x7cu, e5m2_to_float)
#else
__device__ __forceinline__ float to_float(e4m3 x) { return e4m3_to_float(x.bits); }
__device__ __forceinline__ float to_float(e5m2 x) { return e5m2_to_float(x.bits); }
template <> __device__ __forceinline__ e4m3 from_float<e4m3>(float x) { e4m3 r; r.bits = float_to_e4m3(x); return r; }
template <> __device__ __forceinline__ e5m2 from_float<e5m2>(float x) { e5m2 r; r.bits = float_to_e5m2(x); return r; }
#endif

// x * scale, and with `saturate` clamped to ±limit (infinities too), as the CPU's Ops.scaledCast:
// rounding a clamped value gives the largest finite code, the satfinite result. A NaN x is returned
// as it is: the device's arithmetic would turn it into the positive canonical NaN, where the CPU's
// keeps its sign (and the sign is in the fp8 code).
__device__ __forceinline__ float scaled(float x, float scale, int saturate, float limit) {
    if (x != x) return x;
    const float v = x * scale;
    return saturate && v == v ? fminf(fmaxf(v, -limit), limit) : v;
}

#define FP8_CAST_KERNELS(SUFFIX, T, FORMAT, LIMIT)                                                                  \
    extern "C" __global__ void cast_##SUFFIX##_##FORMAT(FORMAT *out, const T *in, const float *scale, long long n, \
                                                        int vectorized, int saturate) {                             \
        const float s = scale ? *scale : 1.0f;                                                                      \
        map_unary(out, in, n, vectorized, [=](float v) { return scaled(v, s, saturate, LIMIT); });                  \
    }                                                                                                               \
    extern "C" __global__ void cast_##FORMAT##_##SUFFIX(T *out, const FORMAT *in, const float *scale, long long n, \
                                                        int vectorized) {                                           \
        const float s = scale ? *scale : 1.0f;                                                                      \
        map_unary(out, in, n, vectorized, [=](float v) { return scaled(v, s, 0, 0.0f); });                           \
    }
#define FP8_E4M3_KERNELS(SUFFIX, T) FP8_CAST_KERNELS(SUFFIX, T, e4m3, 448.0f)
#define FP8_E5M2_KERNELS(SUFFIX, T) FP8_CAST_KERNELS(SUFFIX, T, e5m2, 57344.0f)
FOR_EACH_FLOAT_TYPE(FP8_E4M3_KERNELS)
FOR_EACH_FLOAT_TYPE(FP8_E5M2_KERNELS)

// |v| as ordered bits: for non-negative floats the integer order is the float order, and every NaN
// becomes the quiet NaN 0x7fc00000, which sorts above infinity, so a NaN anywhere makes the amax NaN.
__device__ __forceinline__ unsigned int magnitude_bits(float v) {
    const unsigned int bits = __float_as_uint(v) & 0x7fffffffu;
    return bits > 0x7f800000u ? 0x7fc00000u : bits;
}

// *out = max(*out, the block's largest `largest`), the block's threads (1-D or 2-D, whole warps) all calling it.
// The maximum does not depend on the order of the atomics, so the result is deterministic.
__device__ __forceinline__ void block_atomic_max(unsigned int *out, unsigned int largest) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) largest = max(largest, __shfl_xor_sync(0xffffffffu, largest, offset));
    __shared__ unsigned int warp_largest[32];
    const int thread = threadIdx.y * blockDim.x + threadIdx.x, warps = blockDim.x * blockDim.y / 32;
    if (thread % 32 == 0) warp_largest[thread / 32] = largest;
    __syncthreads();
    if (thread == 0) {
        for (int w = 1; w < warps; w++) largest = max(largest, warp_largest[w]);
        atomicMax(out, largest);
    }
}

// *out = max(*out, max |in|) as fp32 bits; the host zeroes *out first.
template <class T>
__device__ __forceinline__ void abs_max(unsigned int *out, const T *in, long long n, int vectorized) {
    unsigned int largest = 0;
    map_unary((float *)nullptr, in, n, vectorized, [&](float v) {
        largest = max(largest, magnitude_bits(v));
        return 0.0f;
    });
    block_atomic_max(out, largest);
}

#define AMAX_KERNEL(SUFFIX, T)                                                                                \
    extern "C" __global__ void amax_##SUFFIX(unsigned int *out, const T *in, long long n, int vectorized) { \
        abs_max(out, in, n, vectorized);                                                                      \
    }
FOR_EACH_FLOAT_TYPE(AMAX_KERNEL)

// A [rows, cols] matrix cast as cast_<T>_<FORMAT> does (fp8(x * scale), saturating as asked) in one pass that
// also writes, when `out_t` is not null, the transposed codes ([cols, rows]: the copy FP8 GEMMs read in backward)
// and, when `amax` is not null, max |in| as abs_max does (the host zeroes it first): what delayed scaling records.
// Blocks of 32 x 8 threads stride over 32 x 32 tiles: a warp reads a tile row's 32 inputs, writes their codes, and
// after a barrier writes 32 consecutive codes of a transposed row from shared memory.
#define CAST_TILE 32
#define CAST_BLOCK_ROWS 8   // blockDim.y; blockDim.x is CAST_TILE
template <class T, class FORMAT>
__device__ __forceinline__ void cast_transpose(FORMAT *out, FORMAT *out_t, const T *in, const float *scale, unsigned int *amax,
                                               long long rows, long long cols, int saturate, float limit) {
    __shared__ unsigned char tile[CAST_TILE][CAST_TILE + 1];   // the padding spreads a column over the banks
    const float s = scale ? *scale : 1.0f;
    const long long tiles_across = (cols + CAST_TILE - 1) / CAST_TILE;
    const long long tiles = tiles_across * ((rows + CAST_TILE - 1) / CAST_TILE);
    unsigned int largest = 0;
    for (long long t = blockIdx.x; t < tiles; t += gridDim.x) {
        const long long r0 = t / tiles_across * CAST_TILE, c0 = t % tiles_across * CAST_TILE;
#pragma unroll
        for (int k = threadIdx.y; k < CAST_TILE; k += CAST_BLOCK_ROWS) {   // four loads in flight a thread
            const long long r = r0 + k, c = c0 + threadIdx.x;
            if (r < rows && c < cols) {
                const float v = to_float(in[r * cols + c]);
                largest = max(largest, magnitude_bits(v));
                const FORMAT q = from_float<FORMAT>(scaled(v, s, saturate, limit));
                out[r * cols + c] = q;
                tile[k][threadIdx.x] = q.bits;
            }
        }
        if (out_t) {
            __syncthreads();
#pragma unroll
            for (int k = threadIdx.y; k < CAST_TILE; k += CAST_BLOCK_ROWS) {
                const long long c = c0 + k, r = r0 + threadIdx.x;
                if (c < cols && r < rows) out_t[c * rows + r].bits = tile[threadIdx.x][k];
            }
            __syncthreads();   // the tile is refilled by the next iteration
        }
    }
    if (amax) block_atomic_max(amax, largest);
}

#define CAST_TRANSPOSE_KERNEL(SUFFIX, T, FORMAT, LIMIT)                                                                      \
    extern "C" __global__ void cast_transpose_##SUFFIX##_##FORMAT(FORMAT *out, FORMAT *out_t, const T *in, const float *scale, \
                                                                  unsigned int *amax, long long rows, long long cols,        \
                                                                  int saturate) {                                            \
        cast_transpose(out, out_t, in, scale, amax, rows, cols, saturate, LIMIT);                                            \
    }
#define CAST_TRANSPOSE_E4M3(SUFFIX, T) CAST_TRANSPOSE_KERNEL(SUFFIX, T, e4m3, 448.0f)
#define CAST_TRANSPOSE_E5M2(SUFFIX, T) CAST_TRANSPOSE_KERNEL(SUFFIX, T, e5m2, 57344.0f)
FOR_EACH_FLOAT_TYPE(CAST_TRANSPOSE_E4M3)
FOR_EACH_FLOAT_TYPE(CAST_TRANSPOSE_E5M2)

// Per-tensor scale updates (FP8ScaleKernels.swift), one thread each, the math of FP8ScaleMath on the host.
// Delayed scaling (Transformer Engine's delayed_scaling.cu): `history` is the amax window with *amax the step's
// amax in its slot 0; the amax scaled by is that (use_max 0) or the window's maximum (use_max 1); new_history
// is the window rolled one slot toward its front (new[i] = old[i+1], new[last] = old[0]) with slot 0 zeroed;
// the scale becomes (fp8_max / amax) / 2^margin when amax is finite and positive, else stays.
extern "C" __global__ void fp8_delayed_scale_update(float *new_history, float *new_scale, float *new_scale_inv,
                                                    const float *history, const float *amax, const float *scale,
                                                    int length, float fp8_max, float margin, int use_max) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    const float latest = *amax;
    float window = latest;
    if (use_max) {
        bool nan = latest != latest;   // fmaxf drops NaNs; a NaN in the window keeps the scale, as on the host
        for (int i = 1; i < length; i++) {
            window = fmaxf(window, history[i]);
            nan = nan || history[i] != history[i];
        }
        if (nan) window = __int_as_float(0x7fc00000);
    }
    for (int i = 0; i + 1 < length; i++) new_history[i] = history[i + 1];
    new_history[length - 1] = latest;
    new_history[0] = 0.0f;
    float s = *scale;
    if (isfinite(window) && window > 0.0f) {
        s = __fdiv_rn(__fdiv_rn(fp8_max, window), exp2f(margin));
        if (isinf(s)) s = 3.402823466e38f;
    }
    *new_scale = s;
    *new_scale_inv = __frcp_rn(s);
}

// Current (tensorwise) scaling (TE's compute_scale_from_amax): fp8_max / amax, 1 when amax is 0, inf or NaN.
extern "C" __global__ void fp8_current_scale(float *scale, float *scale_inv, const float *amax, float fp8_max) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    const float a = fmaxf(*amax, 0.0f);
    float s = isfinite(a) && a > 0.0f ? __fdiv_rn(fp8_max, a) : 1.0f;
    if (isinf(s)) s = 3.402823466e38f;
    *scale = s;
    *scale_inv = __frcp_rn(s);
}
