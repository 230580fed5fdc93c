// Which probabilities of flash attention (flash_attention.cu) count: the key range each query sees (causal
// mask, sliding window) and attention dropout's keep bits, drawn as the CPU reference draws them.

// One past the last key any query of [q0, q0 + rows) may see.
__device__ __forceinline__ int fa_key_end(int q0, int rows, int s, int t, int causal) {
    return causal ? min(t, min(s - 1, q0 + rows - 1) + (t - s) + 1) : t;
}

// The first key any query of [q0, ...) may see: the first query's window edge (0 without a window).
__device__ __forceinline__ int fa_key_begin(int q0, int s, int t, int window) {
    return window >= 0 ? max(0, q0 + (t - s) - window) : 0;
}

// Whether query `row` (of s, keys at offset t - s) does not see key `key` (past the keys, in its future,
// or before its window).
__device__ __forceinline__ bool fa_hidden(int key, int row, int offset, int t, int causal, int window) {
    return key >= t || (causal && key > row + offset) || (window >= 0 && key < row + offset - window);
}

// ---------------------------------------------------------------------------------------------
// Attention dropout's mask (see the top of the file). `head_rows` is (b * heads + h) * s for the query
// head at hand, so query row i's probabilities start at index (head_rows + i) * t.
struct FaDropout {
    float p, scale;
    uint2 key;
    unsigned long long offset;
    long long head_rows;
    int t;
};

__device__ __forceinline__ FaDropout fa_dropout(float p, float scale, unsigned long long seed, unsigned long long offset,
                                                long long head_rows, int t) {
    FaDropout d;
    d.p = p, d.scale = scale, d.key = make_uint2((unsigned)seed, (unsigned)(seed >> 32)), d.offset = offset;
    d.head_rows = head_rows, d.t = t;
    return d;
}

// The keep test of mask index `index`, its Philox block drawn for it alone.
__device__ __forceinline__ bool fa_keeps(const FaDropout &d, unsigned long long index) {
    const uint4 r = philox_block((long long)(index >> 2), d.offset, d.key);
    const int word = (int)(index & 3);
    return dropout_keep(word == 0 ? r.x : word == 1 ? r.y : word == 2 ? r.z : r.w, d.p);
}

// Keep bits (bit e for accumulator element e) of a 16 x 8 accumulator tile whose rows are queries
// (this thread's `row` and row + 8) and columns keys (col0 + tq * 2 + (e & 1)). When t % 4 == 0 a
// Philox block is keys 4m..4m+3 of one query, which a lane pair (tq, tq ^ 1) holds: the even lane
// draws row `row`'s block and the odd lane row + 8's, and they swap the halves the other holds, one
// block per four probabilities. Otherwise each probability draws its own block.
__device__ __forceinline__ unsigned fa_keep_bits_rows(const FaDropout &d, int row, int col0) {
    const int tq = threadIdx.x & 3;
    if ((d.t & 3) == 0) {
        const bool odd = tq & 1;
        const unsigned long long index = (unsigned long long)(d.head_rows + row + (odd ? 8 : 0)) * d.t + col0 + (tq >> 1) * 4;
        const uint4 r = philox_block((long long)(index >> 2), d.offset, d.key);
        const unsigned got0 = __shfl_xor_sync(0xffffffffu, odd ? r.x : r.z, 1);
        const unsigned got1 = __shfl_xor_sync(0xffffffffu, odd ? r.y : r.w, 1);
        const unsigned w0 = odd ? got0 : r.x, w1 = odd ? got1 : r.y, w2 = odd ? r.z : got0, w3 = odd ? r.w : got1;
        return (unsigned)dropout_keep(w0, d.p) | (unsigned)dropout_keep(w1, d.p) << 1 | (unsigned)dropout_keep(w2, d.p) << 2
               | (unsigned)dropout_keep(w3, d.p) << 3;
    }
    unsigned bits = 0;
#pragma unroll
    for (int e = 0; e < 4; e++)
        bits |= (unsigned)fa_keeps(d, (unsigned long long)(d.head_rows + row + (e >> 1) * 8) * d.t + col0 + tq * 2 + (e & 1)) << e;
    return bits;
}

// Keep bits of a 16 x 8 accumulator tile whose rows are keys (this thread's `key` and key + 8) and
// columns queries (col0 + tq * 2 + (e & 1)), as the dK/dV kernel holds Pᵀ. When t % 4 == 0 a Philox
// block is keys 4m..4m+3 of one query, which the four lanes g = 4m'..4m'+3 of one tq hold: lane x = g % 4
// draws the block of element x (key half x / 2, query x % 2) and three shuffles give each lane its
// word of the other three blocks.
__device__ __forceinline__ unsigned fa_keep_bits_cols(const FaDropout &d, int key, int col0) {
    const int lane = threadIdx.x & 31, tq = lane & 3, x = (lane >> 2) & 3;
    if ((d.t & 3) == 0) {
        const unsigned long long index = (unsigned long long)(d.head_rows + col0 + tq * 2 + (x & 1)) * d.t + key - x + (x >> 1) * 8;
        const uint4 r = philox_block((long long)(index >> 2), d.offset, d.key);
        unsigned bits = 0;
#pragma unroll
        for (int round = 0; round < 4; round++) {
            // Round r: lane x reads lane x ^ r, which hands over word x of its block (its own x ^ r): the
            // word of lane x's key in the block of element x ^ r.
            const int word = x ^ round;
            unsigned w = word == 0 ? r.x : word == 1 ? r.y : word == 2 ? r.z : r.w;
            if (round) w = __shfl_xor_sync(0xffffffffu, w, round << 2);
            bits |= (unsigned)dropout_keep(w, d.p) << (x ^ round);
        }
        return bits;
    }
    unsigned bits = 0;
#pragma unroll
    for (int e = 0; e < 4; e++)
        bits |= (unsigned)fa_keeps(d, (unsigned long long)(d.head_rows + col0 + tq * 2 + (e & 1)) * d.t + key + (e >> 1) * 8) << e;
    return bits;
}
