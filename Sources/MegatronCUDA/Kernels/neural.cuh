// Shared helpers of the neural-network kernels (CUDAKernels.swift): storage types, 8-wide
// vector access, block reductions and row loops. Prepended after common.cuh. Activations are
// stored as fp32, bf16 or fp16 and always computed in fp32.
#pragma once

// No math headers under NVRTC: infinity and NaN from their bits.
#define NEG_INFINITY __int_as_float(0xff800000)
#define QUIET_NAN __int_as_float(0x7fc00000)

// Distinct wrapper types for the two 16-bit formats, so overloads can tell them apart.
struct bf16 { unsigned short bits; };
struct f16 { unsigned short bits; };

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return bf16_to_float(x.bits); }
__device__ __forceinline__ float to_float(f16 x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}

// Round to nearest even in each format.
template <class T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_float<bf16>(float x) { bf16 r; r.bits = float_to_bf16(x); return r; }
template <> __device__ __forceinline__ f16 from_float<f16>(float x) {
    f16 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(x));
    return r;
}

// Philox-4x32-10, the numbers of the CPU's Philox (Sources/MegatronTensor/Philox.swift): the block for
// counter (lo(block), hi(block), lo(offset), hi(offset)) under key (lo(seed), hi(seed)).
__device__ __forceinline__ uint4 philox4x32_10(uint4 counter, uint2 key) {
#pragma unroll
    for (int round = 0; round < 10; round++) {
        const unsigned lo0 = 0xD2511F53u * counter.x, hi0 = __umulhi(0xD2511F53u, counter.x);
        const unsigned lo1 = 0xCD9E8D57u * counter.z, hi1 = __umulhi(0xCD9E8D57u, counter.z);
        counter = make_uint4(hi1 ^ counter.y ^ key.x, lo1, hi0 ^ counter.w ^ key.y, lo0);
        key.x += 0x9E3779B9u;
        key.y += 0xBB67AE85u;
    }
    return counter;
}

__device__ __forceinline__ uint4 philox_block(long long block, unsigned long long offset, uint2 key) {
    return philox4x32_10(make_uint4((unsigned)block, (unsigned)(block >> 32), (unsigned)offset, (unsigned)(offset >> 32)), key);
}

__device__ __forceinline__ bool dropout_keep(unsigned bits, float p) {
    return (float)(bits >> 8) * (1.0f / 16777216.0f) >= p;
}

// One access of eight elements of `BYTES` bytes each (16 bytes for 16-bit types, 8 for fp8).
template <int BYTES> struct Vector8;
template <> struct Vector8<1> { typedef uint2 type; };
template <> struct Vector8<2> { typedef uint4 type; };

// Eight consecutive elements as floats, with one or two 16-byte accesses (8 bytes for fp8): `p` must
// be aligned to that size.
template <class T> __device__ __forceinline__ void load8(const T *p, float (&v)[8]) {
    if constexpr (sizeof(T) == 4) {
        const float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
        typedef typename Vector8<sizeof(T)>::type Vector;
        union { Vector vector; T lanes[8]; } pack;
        pack.vector = *reinterpret_cast<const Vector *>(p);
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = to_float(pack.lanes[k]);
    }
}

template <class T> __device__ __forceinline__ void store8(T *p, const float (&v)[8]) {
    if constexpr (sizeof(T) == 4) {
        reinterpret_cast<float4 *>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
        reinterpret_cast<float4 *>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        typedef typename Vector8<sizeof(T)>::type Vector;
        union { Vector vector; T lanes[8]; } pack;
#pragma unroll
        for (int k = 0; k < 8; k++) pack.lanes[k] = from_float<T>(v[k]);
        *reinterpret_cast<Vector *>(p) = pack.vector;
    }
}

// out[i] = op(in[i]) over n elements, 8 at a time with 16-byte accesses when `vectorized`
// (both pointers 16-byte aligned; the host checks), the tail element by element. A null `out`
// (passed as a literal, so the checks fold away) stores nothing: a read for op's side effects.
// Each thread issues two groups' loads before using either: a 16-bit input gives only 16 bytes
// a load, and with one in flight per thread a widening cast stays well short of bandwidth.
template <class In, class Out, class Op>
__device__ __forceinline__ void map_unary(Out *out, const In *in, long long n, int vectorized, Op op) {
    long long start = 0;
    if (vectorized) {
        const long long groups = n / 8, stride = grid_stride();
        long long g = global_thread_index();
        for (; g + stride < groups; g += 2 * stride) {
            float v[8], w[8];
            load8(in + g * 8, v);
            load8(in + (g + stride) * 8, w);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = op(v[k]), w[k] = op(w[k]);
            if (out) store8(out + g * 8, v), store8(out + (g + stride) * 8, w);
        }
        if (g < groups) {
            float v[8];
            load8(in + g * 8, v);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = op(v[k]);
            if (out) store8(out + g * 8, v);
        }
        start = groups * 8;
    }
    for (long long i = start + global_thread_index(); i < n; i += grid_stride()) {
        const float v = op(to_float(in[i]));
        if (out) out[i] = from_float<Out>(v);
    }
}

// out[i] = op(a[i], b[i]), vectorized like map_unary.
template <class T, class Op>
__device__ __forceinline__ void map_binary(T *out, const T *a, const T *b, long long n, int vectorized, Op op) {
    long long start = 0;
    if (vectorized) {
        const long long groups = n / 8;
        for (long long g = global_thread_index(); g < groups; g += grid_stride()) {
            float x[8], y[8];
            load8(a + g * 8, x);
            load8(b + g * 8, y);
#pragma unroll
            for (int k = 0; k < 8; k++) x[k] = op(x[k], y[k]);
            store8(out + g * 8, x);
        }
        start = groups * 8;
    }
    for (long long i = start + global_thread_index(); i < n; i += grid_stride())
        out[i] = from_float<T>(op(to_float(a[i]), to_float(b[i])));
}

// Running (max, sum of exp(x - max)) of a row: the online-softmax state. Combining is
// symmetric in its arguments, so every lane of a butterfly reduction ends with the same bits.
struct MaxSum { float max, sum; };

__device__ __forceinline__ MaxSum max_sum_add(MaxSum a, float x) {
    if (x == NEG_INFINITY) return a;   // a masked entry adds nothing (and must not make exp(-inf + inf))
    if (x > a.max) return MaxSum{x, a.sum * __expf(a.max - x) + 1.0f};
    return MaxSum{a.max, a.sum + __expf(x - a.max)};
}

// Adds eight values at once: one rescale of the running sum at most, then eight exponentials,
// instead of a compare-and-branch per element.
__device__ __forceinline__ MaxSum max_sum_add8(MaxSum a, const float (&v)[8]) {
    float m = a.max;
#pragma unroll
    for (int k = 0; k < 8; k++) m = fmaxf(m, v[k]);
    if (m == NEG_INFINITY) return a;
    float sum = a.max == NEG_INFINITY ? 0.0f : a.sum * __expf(a.max - m);
#pragma unroll
    for (int k = 0; k < 8; k++) sum += __expf(v[k] - m);   // exp(-inf) = 0 for masked entries
    return MaxSum{m, sum};
}

__device__ __forceinline__ MaxSum max_sum_combine(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.max, b.max);
    if (m == NEG_INFINITY) return MaxSum{m, 0.0f};
    return MaxSum{m, a.sum * __expf(a.max - m) + b.sum * __expf(b.max - m)};
}

__device__ __forceinline__ float shuffle_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ double shuffle_xor(double v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ float2 shuffle_xor(float2 v, int mask) { return make_float2(shuffle_xor(v.x, mask), shuffle_xor(v.y, mask)); }
__device__ __forceinline__ MaxSum shuffle_xor(MaxSum v, int mask) { return MaxSum{shuffle_xor(v.max, mask), shuffle_xor(v.sum, mask)}; }

// Reduces `value` over the block and returns the result in every thread, in a fixed order
// (warp butterflies, then the warp totals in warp order): the same inputs give the same bits.
// blockDim.x must be a multiple of 32. Safe to call repeatedly in one kernel.
template <class V, class Op> __device__ V block_all_reduce(V value, Op op) {
    __shared__ V warp_totals[32];
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value = op(value, shuffle_xor(value, offset));
    __syncthreads();   // an earlier call may still be reading warp_totals
    if (threadIdx.x % 32 == 0) warp_totals[threadIdx.x / 32] = value;
    __syncthreads();
    value = warp_totals[0];
    for (int w = 1; w < (int)(blockDim.x / 32); w++) value = op(value, warp_totals[w]);
    return value;
}

struct Add {
    template <class V> __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
};
struct Add2 {
    __device__ __forceinline__ float2 operator()(float2 a, float2 b) const { return make_float2(a.x + b.x, a.y + b.y); }
};

// Calls f(column, value) for this thread's share of a row of `cols` elements (8 at a time when
// `vectorized`: cols % 8 == 0 and the row 16-byte aligned). Each thread always gets the same
// columns, so per-column state needs no synchronization.
template <class T, class F> __device__ __forceinline__ void row_read(const T *x, int cols, int vectorized, F f) {
    if (vectorized) {
        for (int c = threadIdx.x * 8; c < cols; c += blockDim.x * 8) {
            float v[8];
            load8(x + c, v);
#pragma unroll
            for (int k = 0; k < 8; k++) f(c + k, v[k]);
        }
    } else {
        for (int c = threadIdx.x; c < cols; c += blockDim.x) f(c, to_float(x[c]));
    }
}

// The one loop of the row helpers below: out[c] = f(column, a[c], b[c], c3[c]) over a row, 8 columns
// at a time when `vectorized`. A null `c3` reads as zeros (e.g. no bias); a null `out` stores nothing
// (a read of the row for f's side effects). Callers pass null as a literal, so after inlining the
// checks fold away.
template <class T, class F>
__device__ __forceinline__ void row_map3(T *out, const T *a, const T *b, const T *c3, int cols, int vectorized, F f) {
    if (vectorized) {
        for (int c = threadIdx.x * 8; c < cols; c += blockDim.x * 8) {
            float x[8], y[8], z[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            load8(a + c, x);
            load8(b + c, y);
            if (c3) load8(c3 + c, z);
#pragma unroll
            for (int k = 0; k < 8; k++) x[k] = f(c + k, x[k], y[k], z[k]);
            if (out) store8(out + c, x);
        }
    } else {
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            const float v = f(c, to_float(a[c]), to_float(b[c]), c3 ? to_float(c3[c]) : 0.0f);
            if (out) out[c] = from_float<T>(v);
        }
    }
}

// Three rows side by side, f(column, a, b, c); `c3` may be null (reads as zeros).
template <class T, class F> __device__ __forceinline__ void row_read3(const T *a, const T *b, const T *c3, int cols, int vectorized, F f) {
    row_map3((T *)nullptr, a, b, c3, cols, vectorized, [&](int c, float x, float y, float z) { f(c, x, y, z); return 0.0f; });
}

// Two rows side by side: f(column, a, b).
template <class T, class F> __device__ __forceinline__ void row_read2(const T *a, const T *b, int cols, int vectorized, F f) {
    row_map3((T *)nullptr, a, b, (const T *)nullptr, cols, vectorized, [&](int c, float x, float y, float) { f(c, x, y); return 0.0f; });
}

// out[c] = f(column, a[c], b[c]) over a row (b may equal a when one input is enough).
template <class T, class F> __device__ __forceinline__ void row_map2(T *out, const T *a, const T *b, int cols, int vectorized, F f) {
    row_map3(out, a, b, (const T *)nullptr, cols, vectorized, [&](int c, float x, float y, float) { return f(c, x, y); });
}

// The online-softmax state of this thread's share of a row (8 values at a time when
// vectorized); also adds those values to `sum` in the same pass (cross-entropy's smoothing term).
template <class T> __device__ __forceinline__ MaxSum row_max_sum(const T *x, int cols, int vectorized, float &sum) {
    MaxSum state{NEG_INFINITY, 0.0f};
    if (vectorized) {
        for (int c = threadIdx.x * 8; c < cols; c += blockDim.x * 8) {
            float v[8];
            load8(x + c, v);
            state = max_sum_add8(state, v);
#pragma unroll
            for (int k = 0; k < 8; k++) sum += v[k];
        }
    } else {
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            const float v = to_float(x[c]);
            state = max_sum_add(state, v);
            sum += v;
        }
    }
    return state;
}

// Instantiates MACRO(suffix, type) for each activation storage type.
#define FOR_EACH_FLOAT_TYPE(MACRO) MACRO(f32, float) MACRO(bf16, bf16) MACRO(f16, f16)
