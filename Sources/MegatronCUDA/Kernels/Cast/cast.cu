// Casts between fp32, bf16 and fp16, rounding to nearest even (NaN stays NaN), 8 elements per
// step with 16-byte accesses when both pointers are 16-byte aligned.
//
// Widening casts (16-bit to fp32) write twice the bytes they read and have a loop of their own:
// 4 elements per access (8-byte loads, 16-byte stores), so every warp-wide store covers whole
// 32-byte sectors (with 8 elements per thread each 16-byte store would fill half of 32 sectors);
// 4 loads in flight per thread before any store; and streaming stores (st.global.cs), since the
// output is not read back soon and should not push the input out of L2. The host launches one wave
// of blocks (CUDAKernels.cast).

#define CAST_KERNEL(FROM_SUFFIX, FROM, TO_SUFFIX, TO)                                                           \
    extern "C" __global__ void cast_##FROM_SUFFIX##_##TO_SUFFIX(TO *out, const FROM *in, long long n, int vec) { \
        map_unary(out, in, n, vec, [](float v) { return v; });                                                  \
    }
CAST_KERNEL(f32, float, bf16, bf16)
CAST_KERNEL(f32, float, f16, f16)
CAST_KERNEL(bf16, bf16, f16, f16)
CAST_KERNEL(f16, f16, bf16, bf16)

// Elements 2i and 2i + 1 of a packed pair of 16-bit values as floats (low half first).
template <class T> __device__ __forceinline__ float2 widen_pair(unsigned int word) {
    T low, high;
    low.bits = (unsigned short)(word & 0xffffu);
    high.bits = (unsigned short)(word >> 16);
    return make_float2(to_float(low), to_float(high));
}

template <class T> __device__ __forceinline__ float4 widen_quad(uint2 words) {
    const float2 a = widen_pair<T>(words.x), b = widen_pair<T>(words.y);
    return make_float4(a.x, a.y, b.x, b.y);
}

#define WIDEN_UNROLL 4
template <class T> __device__ __forceinline__ void widen(float *out, const T *in, long long n, int vectorized) {
    long long start = 0;
    if (vectorized) {
        const uint2 *source = reinterpret_cast<const uint2 *>(in);
        float4 *target = reinterpret_cast<float4 *>(out);
        const long long quads = n / 4, stride = grid_stride();
        long long q = global_thread_index();
        for (; q + (WIDEN_UNROLL - 1) * stride < quads; q += WIDEN_UNROLL * stride) {
            uint2 words[WIDEN_UNROLL];
#pragma unroll
            for (int u = 0; u < WIDEN_UNROLL; u++) words[u] = source[q + u * stride];
#pragma unroll
            for (int u = 0; u < WIDEN_UNROLL; u++) __stcs(target + q + u * stride, widen_quad<T>(words[u]));
        }
        for (; q < quads; q += stride) __stcs(target + q, widen_quad<T>(source[q]));
        start = quads * 4;
    }
    for (long long i = start + global_thread_index(); i < n; i += grid_stride()) out[i] = to_float(in[i]);
}

#define WIDEN_KERNEL(FROM_SUFFIX, FROM)                                                                          \
    extern "C" __global__ void cast_##FROM_SUFFIX##_f32(float *out, const FROM *in, long long n, int vec) {      \
        widen(out, in, n, vec);                                                                                  \
    }
WIDEN_KERNEL(bf16, bf16)
WIDEN_KERNEL(f16, f16)
