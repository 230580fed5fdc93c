// Fill, uniform random fill and 128-bit vectorized elementwise kernels (fp32 and bf16).
// Vector paths need 16-byte aligned pointers (the host checks); a scalar loop takes the tail.

extern "C" __global__ void fill_f32(float *out, float value, long long n) {
    for (long long i = global_thread_index(); i < n; i += grid_stride()) out[i] = value;
}

extern "C" __global__ void fill_bf16(bf16_t *out, float value, long long n) {
    const bf16_t bits = float_to_bf16(value);
    for (long long i = global_thread_index(); i < n; i += grid_stride()) out[i] = bits;
}

// A counter-based generator (splitmix64 of seed and index): any launch shape gives the same values.
__device__ __forceinline__ float uniform_at(unsigned long long seed, long long index) {
    unsigned long long z = seed + 0x9e3779b97f4a7c15ull * (unsigned long long)(index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);   // 24 random bits in [0, 1)
}

extern "C" __global__ void uniform_bf16(bf16_t *out, long long n, unsigned long long seed, float low, float high) {
    for (long long i = global_thread_index(); i < n; i += grid_stride())
        out[i] = float_to_bf16(low + (high - low) * uniform_at(seed, i));
}

extern "C" __global__ void uniform_f32(float *out, long long n, unsigned long long seed, float low, float high) {
    for (long long i = global_thread_index(); i < n; i += grid_stride())
        out[i] = low + (high - low) * uniform_at(seed, i);
}

// out = alpha * a + beta * b: add (1, 1) and scale (s, 0) share one kernel per dtype.
extern "C" __global__ void axpby_f32(float *out, const float *a, const float *b, float alpha, float beta, long long n) {
    const long long vectors = n / 4;
    const float4 *a4 = reinterpret_cast<const float4 *>(a);
    const float4 *b4 = reinterpret_cast<const float4 *>(b);
    float4 *out4 = reinterpret_cast<float4 *>(out);
    for (long long i = global_thread_index(); i < vectors; i += grid_stride()) {
        const float4 x = a4[i];
        const float4 y = beta != 0.0f ? b4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
        out4[i] = make_float4(alpha * x.x + beta * y.x, alpha * x.y + beta * y.y,
                              alpha * x.z + beta * y.z, alpha * x.w + beta * y.w);
    }
    for (long long i = vectors * 4 + global_thread_index(); i < n; i += grid_stride())
        out[i] = alpha * a[i] + (beta != 0.0f ? beta * b[i] : 0.0f);
}

extern "C" __global__ void axpby_bf16(bf16_t *out, const bf16_t *a, const bf16_t *b, float alpha, float beta, long long n) {
    const long long vectors = n / 8;
    const uint4 *a8 = reinterpret_cast<const uint4 *>(a);
    const uint4 *b8 = reinterpret_cast<const uint4 *>(b);
    uint4 *out8 = reinterpret_cast<uint4 *>(out);
    for (long long i = global_thread_index(); i < vectors; i += grid_stride()) {
        bf16x8 x, y, r;
        x.vector = a8[i];
        y.vector = beta != 0.0f ? b8[i] : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int lane = 0; lane < 8; lane++)
            r.lanes[lane] = float_to_bf16(alpha * bf16_to_float(x.lanes[lane]) + beta * bf16_to_float(y.lanes[lane]));
        out8[i] = r.vector;
    }
    for (long long i = vectors * 8 + global_thread_index(); i < n; i += grid_stride())
        out[i] = float_to_bf16(alpha * bf16_to_float(a[i]) + (beta != 0.0f ? beta * bf16_to_float(b[i]) : 0.0f));
}
