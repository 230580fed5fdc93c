// Inverted dropout with Philox-4x32-10 numbers identical to the CPU's Philox.fillUniform
// (Sources/MegatronTensor/Philox.swift): element i takes word i % 4 of the block for counter
// (lo(i / 4), hi(i / 4), lo(offset), hi(offset)) under key (lo(seed), hi(seed)); its uniform is
// (bits >> 8) * 2^-24; it is kept iff uniform >= p, and kept values are scaled by `scale`
// (the host passes 1 / (1 - p) computed in fp32, as the CPU does). The same call on the output
// gradient is the backward pass. Philox and the keep test are neural.cuh's (flash attention shares them).

// out = keep ? x * scale : 0; mask (optional, may be null) = keep as 1 / 0 bytes. When
// `vectorized` (out and in 16-byte aligned, mask 8-byte aligned), each thread takes 8 elements,
// two Philox blocks, with one 16-byte access per tensor (two for fp32); the tail, or everything
// otherwise, goes element by element, each computing its own block.
template <class T>
__device__ void dropout(T *out, unsigned char *mask, const T *in, long long n, float p, float scale,
                        unsigned long long seed, unsigned long long offset, int vectorized) {
    const uint2 key = make_uint2((unsigned)seed, (unsigned)(seed >> 32));
    const long long groups = vectorized ? n / 8 : 0;
    for (long long g = global_thread_index(); g < groups; g += grid_stride()) {
        const uint4 r0 = philox_block(2 * g, offset, key), r1 = philox_block(2 * g + 1, offset, key);
        const unsigned words[8] = {r0.x, r0.y, r0.z, r0.w, r1.x, r1.y, r1.z, r1.w};
        float v[8];
        load8(in + g * 8, v);
        unsigned long long keep_bytes = 0;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const bool keep = dropout_keep(words[k], p);
            v[k] = keep ? v[k] * scale : 0.0f;
            keep_bytes |= (unsigned long long)keep << (8 * k);
        }
        store8(out + g * 8, v);
        if (mask) *reinterpret_cast<unsigned long long *>(mask + g * 8) = keep_bytes;
    }
    for (long long i = groups * 8 + global_thread_index(); i < n; i += grid_stride()) {
        const uint4 r = philox_block(i / 4, offset, key);
        const int word = (int)(i % 4);
        const bool keep = dropout_keep(word == 0 ? r.x : word == 1 ? r.y : word == 2 ? r.z : r.w, p);
        out[i] = from_float<T>(keep ? to_float(in[i]) * scale : 0.0f);
        if (mask) mask[i] = keep ? 1 : 0;
    }
}

#define DROPOUT_KERNELS(SUFFIX, TYPE)                                                                          \
    extern "C" __global__ void dropout_##SUFFIX(TYPE *out, unsigned char *mask, const TYPE *in, long long n,   \
            float p, float scale, unsigned long long seed, unsigned long long offset, int vec) {               \
        dropout<TYPE>(out, mask, in, n, p, scale, seed, offset, vec);                                          \
    }
FOR_EACH_FLOAT_TYPE(DROPOUT_KERNELS)
