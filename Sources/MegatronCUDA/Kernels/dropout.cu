// Inverted dropout with Philox-4x32-10 numbers identical to the CPU's Philox.fillUniform
// (Sources/MegatronTensor/Philox.swift): element i takes word i % 4 of the block for counter
// (lo(i / 4), hi(i / 4), lo(offset), hi(offset)) under key (lo(seed), hi(seed)); its uniform is
// (bits >> 8) * 2^-24; it is kept iff uniform >= p, and kept values are scaled by `scale`
// (the host passes 1 / (1 - p) computed in fp32, as the CPU does). The same call on the output
// gradient is the backward pass. One thread per Philox block of 4 elements.

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

// out = keep ? x * scale : 0; mask (optional, may be null) = keep as 1 / 0 bytes.
template <class T>
__device__ void dropout(T *out, unsigned char *mask, const T *in, long long n, float p, float scale,
                        unsigned long long seed, unsigned long long offset) {
    const uint2 key = make_uint2((unsigned)seed, (unsigned)(seed >> 32));
    const long long blocks = (n + 3) / 4;
    for (long long b = global_thread_index(); b < blocks; b += grid_stride()) {
        const uint4 r = philox4x32_10(make_uint4((unsigned)b, (unsigned)(b >> 32), (unsigned)offset, (unsigned)(offset >> 32)), key);
        const unsigned words[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const long long i = b * 4 + k;
            if (i >= n) break;
            const bool keep = (float)(words[k] >> 8) * (1.0f / 16777216.0f) >= p;
            out[i] = from_float<T>(keep ? to_float(in[i]) * scale : 0.0f);
            if (mask) mask[i] = keep ? 1 : 0;
        }
    }
}

#define DROPOUT_KERNELS(SUFFIX, TYPE)                                                                          \
    extern "C" __global__ void dropout_##SUFFIX(TYPE *out, unsigned char *mask, const TYPE *in, long long n,   \
            float p, float scale, unsigned long long seed, unsigned long long offset) {                        \
        dropout<TYPE>(out, mask, in, n, p, scale, seed, offset);                                               \
    }
FOR_EACH_FLOAT_TYPE(DROPOUT_KERNELS)
