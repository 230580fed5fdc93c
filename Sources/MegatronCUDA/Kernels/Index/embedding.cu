// Embedding lookup (row gather) and its deterministic backward, index-add of rows.
//
// index_add: out[ids[i], :] (+)= src[i, :]. Sort-free and deterministic: one block per output
// row scans all ids in token order, collects the matching tokens in shared memory (order kept
// by a ballot prefix), and sums their source rows in that order in fp32. The cost is
// rows x tokens id comparisons (about 0.4 G for a 50k vocabulary and 8k tokens): correct and
// reproducible first; a sort-based version can replace it behind the same launcher.

// out[t, :] = table[ids[t], :]; an id outside [0, vocab) gives a NaN row instead of a fault.
template <class T>
__device__ void embedding_forward(T *out, const T *table, const long long *ids, long long tokens, long long vocab,
                                  int width, int vectorized) {
    const int step = vectorized ? 8 : 1;
    const long long per_row = width / step;
    for (long long i = global_thread_index(); i < tokens * per_row; i += grid_stride()) {
        const long long token = i / per_row, column = (i % per_row) * step;
        const long long id = ids[token];
        const bool valid = id >= 0 && id < vocab;
        T *target = out + token * width + column;
        if (vectorized) {
            if (valid) {   // 8 elements: two 16-byte vectors of fp32, one of a 16-bit type
                const uint4 *from = reinterpret_cast<const uint4 *>(table + id * width + column);
                for (int v = 0; v < (int)sizeof(T) / 2; v++) reinterpret_cast<uint4 *>(target)[v] = from[v];
            } else {
                float v[8];
                for (int k = 0; k < 8; k++) v[k] = QUIET_NAN;
                store8(target, v);
            }
        } else {
            *target = valid ? table[id * width + column] : from_float<T>(QUIET_NAN);
        }
    }
}

#define INDEX_ADD_CAPACITY 1024   // matching tokens buffered in shared memory before they are summed

// Dynamic shared memory: width floats (the row's running sums).
template <class T>
__device__ void index_add(T *out, const T *src, const long long *ids, long long tokens, long long rows, int width,
                          int accumulate) {
    extern __shared__ float sums[];
    __shared__ long long matches[INDEX_ADD_CAPACITY];
    __shared__ int warp_counts[32];
    __shared__ int match_count;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        for (int c = threadIdx.x; c < width; c += blockDim.x) sums[c] = 0.0f;
        if (threadIdx.x == 0) match_count = 0;
        __syncthreads();
        for (long long base = 0; base < tokens; base += blockDim.x) {
            const long long token = base + threadIdx.x;
            const bool hit = token < tokens && ids[token] == row;
            const unsigned ballot = __ballot_sync(0xffffffffu, hit);
            if (lane == 0) warp_counts[warp] = __popc(ballot);
            __syncthreads();
            int position = match_count, tile_total = 0;
            for (int w = 0; w < warps; w++) {
                if (w < warp) position += warp_counts[w];
                tile_total += warp_counts[w];
            }
            if (hit) matches[position + __popc(ballot & ((1u << lane) - 1u))] = token;
            __syncthreads();
            if (threadIdx.x == 0) match_count += tile_total;
            __syncthreads();
            // Sum the buffered tokens when the next tile might not fit, or at the end.
            const bool last = base + blockDim.x >= tokens;
            if (match_count > INDEX_ADD_CAPACITY - (int)blockDim.x || (last && match_count > 0)) {
                for (int c = threadIdx.x; c < width; c += blockDim.x) {
                    float sum = sums[c];
                    for (int m = 0; m < match_count; m++) sum += to_float(src[matches[m] * width + c]);
                    sums[c] = sum;
                }
                __syncthreads();
                if (threadIdx.x == 0) match_count = 0;
                __syncthreads();
            }
        }
        T *target = out + row * width;
        for (int c = threadIdx.x; c < width; c += blockDim.x)
            target[c] = from_float<T>((accumulate ? to_float(target[c]) : 0.0f) + sums[c]);
        __syncthreads();
    }
}

#define EMBEDDING_KERNELS(SUFFIX, TYPE)                                                                              \
    extern "C" __global__ void embedding_forward_##SUFFIX(TYPE *out, const TYPE *table, const long long *ids,       \
            long long tokens, long long vocab, int width, int vec) {                                                 \
        embedding_forward<TYPE>(out, table, ids, tokens, vocab, width, vec);                                        \
    }                                                                                                                 \
    extern "C" __global__ void index_add_##SUFFIX(TYPE *out, const TYPE *src, const long long *ids, long long tokens, \
            long long rows, int width, int accumulate) {                                                             \
        index_add<TYPE>(out, src, ids, tokens, rows, width, accumulate);                                            \
    }
FOR_EACH_FLOAT_TYPE(EMBEDDING_KERNELS)
