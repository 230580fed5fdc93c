// Layer norm and RMS norm over the last dimension of [rows, cols], forward and backward, optionally
// fused with the residual add before the norm (forward: sum = x + residual is written too and
// normalized; backward: the gradient reaching `sum` directly is added to dx), and optionally with
// inverted dropout on `residual` first (the add_dropout_ kernels: Megatron's bias-dropout-add, with the
// numbers Ops.dropout draws on the whole [rows, cols] branch; their backward writes the residual's
// gradient, dx dropped by the same numbers drawn again, in the same pass).
//
// Each row belongs to a team of `team` threads (a multiple of 32 dividing blockDim.x; a block holds
// blockDim.x / team rows) that keeps the row in registers, so x and dy are read from memory exactly
// once: chunk j of a row (columns 8j ... 8j + 7, one 16-byte access for 16-bit types when
// vectorized) lives in thread j % team, slot j / team. A 32-thread team reduces with shuffles only.
// Every kernel is compiled for each count of SLOTS (chunks per thread, the suffix _1 ... _4 of its
// name) and the host launches the one that holds the row: register arrays sized for the widest row
// would cost every launch the registers (and so the occupancy) of the widest.
//
// Forward statistics are fp32 from the registers: LN reduces a first mean, then the deviations from
// it and their squares (the corrected two-pass method, accurate for rows far from zero); RMS
// reduces the squares only.
//
// Backward loops each team over rows (persistent blocks); with up to 2 chunks per thread it issues
// the loads of its next row before reducing the current one, so memory stays busy through the
// reduction (4096 columns: 512 threads x 1 chunk, two blocks an SM). It keeps each thread's
// dweight / dbias column sums in registers across all the rows its team handles (a team always owns
// the same columns), adds the teams of a block in team order in shared memory, writes one fp32
// partial row per block, and a second kernel sums the partials of each column in block order:
// deterministic, no atomics, no re-read of x or dy.

// Eight elements of a row kept in registers in their storage format: for 16-bit types 4 words,
// element 2i in the low half of word i (4 registers instead of 8 floats), so a thread can hold
// more of its row. No union with an array of 16-bit lanes: the compiler would give each lane a
// register of its own.
template <class T> struct Raw8 { uint4 vector; };
template <> struct Raw8<float> { float4 vector[2]; };

template <class T> __device__ __forceinline__ unsigned int bits_of(T value) { return value.bits; }
template <class T> __device__ __forceinline__ T from_bits(unsigned int bits) {
    T value;
    value.bits = (unsigned short)bits;
    return value;
}

template <class T> __device__ __forceinline__ void unpack(const Raw8<T> &raw, float (&v)[8]) {
    if constexpr (sizeof(T) == 4) {
        const float4 a = raw.vector[0], b = raw.vector[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
        const unsigned int words[4] = {raw.vector.x, raw.vector.y, raw.vector.z, raw.vector.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = to_float(from_bits<T>(words[i] & 0xffffu));
            v[2 * i + 1] = to_float(from_bits<T>(words[i] >> 16));
        }
    }
}

// Rounds each value to T (to nearest even) and packs them.
template <class T> __device__ __forceinline__ Raw8<T> pack(const float (&v)[8]) {
    Raw8<T> raw;
    if constexpr (sizeof(T) == 4) {
        raw.vector[0] = make_float4(v[0], v[1], v[2], v[3]);
        raw.vector[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        unsigned int words[4];
#pragma unroll
        for (int i = 0; i < 4; i++)
            words[i] = bits_of(from_float<T>(v[2 * i])) | (bits_of(from_float<T>(v[2 * i + 1])) << 16);
        raw.vector = make_uint4(words[0], words[1], words[2], words[3]);
    }
    return raw;
}

// Chunk j of a row: one vector access when `vectorized` (cols % 8 == 0, row 16-byte aligned),
// else element by element with zeros past the row's end.
template <class T> __device__ __forceinline__ Raw8<T> load_chunk(const T *row, int j, int cols, int vectorized) {
    if (vectorized) {
        Raw8<T> raw;
        if constexpr (sizeof(T) == 4) {
            raw.vector[0] = reinterpret_cast<const float4 *>(row + 8 * j)[0];
            raw.vector[1] = reinterpret_cast<const float4 *>(row + 8 * j)[1];
        } else {
            raw.vector = *reinterpret_cast<const uint4 *>(row + 8 * j);
        }
        return raw;
    }
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = 8 * j + k < cols ? to_float(row[8 * j + k]) : 0.0f;
    return pack<T>(v);   // exact: every T value is a float
}

template <class T> __device__ __forceinline__ void load_chunk(const T *row, int j, int cols, int vectorized, float (&v)[8]) {
    unpack(load_chunk(row, j, cols, vectorized), v);
}

template <class T> __device__ __forceinline__ void store_chunk(T *row, int j, int cols, int vectorized, const Raw8<T> &raw) {
    if (vectorized) {
        if constexpr (sizeof(T) == 4) {
            reinterpret_cast<float4 *>(row + 8 * j)[0] = raw.vector[0];
            reinterpret_cast<float4 *>(row + 8 * j)[1] = raw.vector[1];
        } else {
            *reinterpret_cast<uint4 *>(row + 8 * j) = raw.vector;
        }
        return;
    }
    float v[8];
    unpack(raw, v);
#pragma unroll
    for (int k = 0; k < 8; k++)
        if (8 * j + k < cols) row[8 * j + k] = from_float<T>(v[k]);
}

template <class T> __device__ __forceinline__ void store_chunk(T *row, int j, int cols, int vectorized, const float (&v)[8]) {
    store_chunk(row, j, cols, vectorized, pack<T>(v));
}

// Hides a chunk's registers from the optimizer, so a later use converts the packed values again
// instead of the compiler keeping their 8 converted floats alive from an earlier use (across a
// reduction, or hoisted out of the row loop): that would double the registers of a 16-bit row and
// cost occupancy. The conversion is one instruction per element.
template <class T> __device__ __forceinline__ void keep_packed(Raw8<T> &raw) {
    if constexpr (sizeof(T) == 4) {
        asm volatile("" : "+f"(raw.vector[0].x), "+f"(raw.vector[0].y), "+f"(raw.vector[0].z), "+f"(raw.vector[0].w),
                          "+f"(raw.vector[1].x), "+f"(raw.vector[1].y), "+f"(raw.vector[1].z), "+f"(raw.vector[1].w));
    } else {
        asm volatile("" : "+r"(raw.vector.x), "+r"(raw.vector.y), "+r"(raw.vector.z), "+r"(raw.vector.w));
    }
}

// `value` reduced over the thread's team, in every thread of the team, in a fixed order (warp
// butterflies, then the team's warp totals in warp order). Teams wider than a warp go through
// shared memory, so every thread of the block must call it. `op` must give the same bits for
// op(a, b) and op(b, a), so both partners of a butterfly step agree.
//
// Without a `buffer` a call first waits (__syncthreads) until the block has read the totals of the
// call before. A caller whose calls alternate buffer 0 and 1 skips that wait: a thread writes
// buffer b only after the __syncthreads of the call in between (buffer 1 - b), which every thread
// reaches after it has read buffer b.
template <class V, class Op> __device__ __forceinline__ V team_all_reduce(V value, int team, Op op, int buffer = -1) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value = op(value, shuffle_xor(value, offset));
    if (team == 32) return value;
    __shared__ V warp_totals[2][32];
    if (buffer < 0) {
        __syncthreads();
        buffer = 0;
    }
    if (threadIdx.x % 32 == 0) warp_totals[buffer][threadIdx.x / 32] = value;
    __syncthreads();
    const int first = threadIdx.x / team * (team / 32);
    value = warp_totals[buffer][first];
    for (int w = 1; w < team / 32; w++) value = op(value, warp_totals[buffer][first + w]);
    return value;
}

// Inverted dropout on chunk j of a residual row (or of its gradient: the same call drops dx's rounded values) (flat index `index` of its first element in [rows, cols]):
// element i is kept iff the Philox uniform of index i in draw (seed, offset) is >= p (dropout.cu's numbers),
// kept values scaled and rounded to T as an unfused dropout stores them. Two Philox blocks when the
// chunk starts a block (cols % 4 == 0), else one block per element.
struct NormDropout {
    float p, scale;
    uint2 key;
    unsigned long long offset;
};

__device__ __forceinline__ NormDropout norm_dropout(float p, float scale, unsigned long long seed, unsigned long long offset) {
    NormDropout d;
    d.p = p, d.scale = scale, d.key = make_uint2((unsigned)seed, (unsigned)(seed >> 32)), d.offset = offset;
    return d;
}

template <class T> __device__ __forceinline__ void drop_chunk(float (&r)[8], long long index, const NormDropout &d) {
    unsigned words[8];
    if ((index & 3) == 0) {
        const uint4 a = philox_block(index >> 2, d.offset, d.key), b = philox_block((index >> 2) + 1, d.offset, d.key);
        words[0] = a.x, words[1] = a.y, words[2] = a.z, words[3] = a.w, words[4] = b.x, words[5] = b.y, words[6] = b.z, words[7] = b.w;
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const uint4 c = philox_block((index + k) >> 2, d.offset, d.key);
            const int w = (int)((index + k) & 3);
            words[k] = w == 0 ? c.x : w == 1 ? c.y : w == 2 ? c.z : c.w;
        }
    }
#pragma unroll
    for (int k = 0; k < 8; k++) r[k] = dropout_keep(words[k], d.p) ? to_float(from_float<T>(r[k] * d.scale)) : 0.0f;
}

// y = (x - mean) * rstd * w + b (LN) or x * rstd * w (RMS); bias may be null; mean may be null.
// With a residual, x + residual (rounded to T, as an unfused add would store it) goes to sum_out
// and is what gets normalized. With DROPOUT the residual is dropped first (drop_chunk).
//
// LN takes the corrected two-pass statistics (Chan, Golub and LeVeque): a first mean m, then from
// the registers d = mean(x - m) and the centred squares mean((x - m)^2), so mean = m + d and
// variance = mean((x - m)^2) - d^2. x - m is exact for x near m (Sterbenz), so d recovers what the
// fp32 sum lost, and y uses (x - m) - d: for rows far from zero (x ~ 1000, std 0.006) y keeps
// nearly full precision, where an fp32 mean alone is off by up to half its ulp, 0.5% of the std.
// Two plain sums (float, then float2) reduce faster than one merge of (count, mean, m2) moments,
// whose every step divides.
template <class T, bool RMS, bool FUSED, bool DROPOUT, int SLOTS>
__device__ void norm_forward(T *y, T *sum_out, float *mean_out, float *rstd_out, const T *x, const T *residual,
                             const T *weight, const T *bias, long long rows, int cols, float eps, int vectorized, int team,
                             NormDropout drop) {
    const int lane = threadIdx.x % team, teams = blockDim.x / team, chunks = (cols + 7) / 8;
    // The loop bound is the same for the whole block: inactive teams still join the reductions.
    for (long long first = (long long)blockIdx.x * teams; first < rows; first += (long long)gridDim.x * teams) {
        const long long row = first + threadIdx.x / team;
        const bool active = row < rows;
        const long long offset = row * cols;
        Raw8<T> raw[SLOTS];
        float sum = 0.0f;
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int j = s * team + lane;
            if (!active || j >= chunks) continue;
            raw[s] = load_chunk(x + offset, j, cols, vectorized);
            if constexpr (FUSED) {
                float v[8], r[8];
                unpack(raw[s], v);
                load_chunk(residual + offset, j, cols, vectorized, r);
                if constexpr (DROPOUT) drop_chunk<T>(r, offset + 8 * j, drop);
#pragma unroll
                for (int k = 0; k < 8; k++) v[k] += r[k];
                raw[s] = pack<T>(v);
                store_chunk(sum_out + offset, j, cols, vectorized, raw[s]);
            }
            if (!RMS) {
                float v[8];
                unpack(raw[s], v);
#pragma unroll
                for (int k = 0; k < 8; k++) sum += v[k];   // padding is zeros
            }
        }
        float first_mean = 0.0f;   // m (LN) or 0 (RMS)
        if (!RMS) {
#pragma unroll
            for (int s = 0; s < SLOTS; s++) keep_packed(raw[s]);
            first_mean = team_all_reduce(sum, team, Add(), 0) / cols;   // LN: buffers 0, 1, 0, 1, ...
        }
        float2 deviations = make_float2(0.0f, 0.0f);   // (sum of x - m, sum of (x - m)^2)
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int j = s * team + lane;
            if (!active || j >= chunks) continue;
            float v[8];
            unpack(raw[s], v);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                if (!vectorized && 8 * j + k >= cols) continue;
                const float deviation = v[k] - first_mean;
                deviations.x += deviation;
                deviations.y += deviation * deviation;
            }
        }
#pragma unroll
        for (int s = 0; s < SLOTS; s++) keep_packed(raw[s]);
        float correction = 0.0f, variance;   // d and the variance (LN), or 0 and the mean square (RMS)
        if (RMS) {
            variance = team_all_reduce(deviations.y, team, Add()) / cols;
        } else {
            const float2 totals = team_all_reduce(deviations, team, Add2(), 1);
            correction = totals.x / cols;
            variance = fmaxf(totals.y / cols - correction * correction, 0.0f);
        }
        const float rstd = rsqrtf(variance + eps);
        if (!active) continue;
        if (lane == 0) {
            rstd_out[row] = rstd;
            if (!RMS && mean_out) mean_out[row] = first_mean + correction;
        }
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int j = s * team + lane;
            if (j >= chunks) continue;
            float v[8], w[8], b[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            unpack(raw[s], v);
            load_chunk(weight, j, cols, vectorized, w);
            if (!RMS && bias) load_chunk(bias, j, cols, vectorized, b);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = ((v[k] - first_mean) - correction) * rstd * w[k] + b[k];
            store_chunk(y + offset, j, cols, vectorized, v);
        }
    }
}

// Writes this block's column sums (`acc`, the thread's own columns) as row blockIdx.x of `partials`.
// With several teams per block they are first added in team order in shared memory ([cols] floats).
template <int SLOTS>
__device__ __forceinline__ void write_column_partials(float *partials, const float (&acc)[SLOTS][8],
                                                      float *column_sums, int cols, int team) {
    const int lane = threadIdx.x % team, teams = blockDim.x / team, chunks = (cols + 7) / 8;
    float *out = partials + (long long)blockIdx.x * cols;
    float *target = teams == 1 ? out : column_sums;
    for (int t = 0; t < teams; t++) {
        if (threadIdx.x / team == t) {
#pragma unroll
            for (int s = 0; s < SLOTS; s++) {
                const int j = s * team + lane;
                if (j >= chunks) continue;
#pragma unroll
                for (int k = 0; k < 8; k++)
                    if (8 * j + k < cols) target[8 * j + k] = (t == 0 ? 0.0f : target[8 * j + k]) + acc[s][k];
            }
        }
        if (teams > 1) __syncthreads();
    }
    if (teams == 1) return;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[c] = column_sums[c];
    __syncthreads();   // the buffer may be reused right after
}

// What the backward reads of one row, held in registers: the chunks of dy and x of this thread's
// slots, and the row's statistics.
template <class T, int SLOTS> struct BackwardRow {
    Raw8<T> grad[SLOTS], x[SLOTS];
    float mean, rstd;

    // An inactive row (past the end) loads nothing and reads as zeros.
    __device__ __forceinline__ void load(const T *grad_in, const T *x_in, const float *mean_in,
                                         const float *rstd_in, long long row, long long rows, int cols,
                                         int vectorized, int team) {
        const int lane = threadIdx.x % team, chunks = (cols + 7) / 8;
        const bool active = row < rows;
        const long long offset = row * cols;
        mean = mean_in && active ? mean_in[row] : 0.0f;
        rstd = active ? rstd_in[row] : 0.0f;
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int j = s * team + lane;
            if (!active || j >= chunks) continue;
            grad[s] = load_chunk(grad_in + offset, j, cols, vectorized);
            x[s] = load_chunk(x_in + offset, j, cols, vectorized);
        }
    }
};

// xhat = (x - mean) * rstd, gw = g * w:
//   LN:  dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) + g_sum,  dw += g * xhat, db += g
//   RMS: dx = rstd * (gw - xhat * mean(gw * xhat)) + g_sum,             dw += g * xhat
// g_sum (grad_sum, may be null) is the gradient reaching the norm's input by the residual path.
// With DROPOUT (the backward of the add_dropout_ forward) d_residual = dropout(dx) as well, with the
// forward's draw: dx rounded to T, then drop_chunk, so the residual's gradient is bit for bit what a
// separate dropout of the stored dx gives, without reading dx back or storing a mask.
// partials: [gridDim.x, cols] for dweight, then (LN, when bias_partials is non-null) the same for dbias.
template <class T, bool RMS, bool FUSED, bool DROPOUT, int SLOTS>
__device__ void norm_backward(T *dx, T *d_residual, float *weight_partials, float *bias_partials, const T *grad,
                              const T *grad_sum, const T *x, const T *weight, const float *mean_in, const float *rstd_in,
                              long long rows, int cols, int vectorized, int team, NormDropout drop) {
    extern __shared__ float column_sums[];   // [cols] when a block holds several teams
    // With up to 2 slots the registers hold the next row and the weights as well; with 3 (narrow
    // rows on a warp, or the widest rows) they would spill, so the row is loaded when its turn comes.
    // The residual path's gradient is never loaded a row ahead: it is only added at the end, so
    // loading it before the row's reduction hides its latency, and a row ahead it made the fused
    // layer norm spill at one slot (64 registers).
    constexpr bool pipelined = SLOTS <= 2;
    const bool with_bias = !RMS && bias_partials;
    const int lane = threadIdx.x % team, teams = blockDim.x / team, chunks = (cols + 7) / 8;
    const long long stride = (long long)gridDim.x * teams;
    const float *mean_or_null = RMS ? nullptr : mean_in;
    float dw[SLOTS][8], db[SLOTS][8];
    Raw8<T> w[SLOTS];   // a team always owns the same columns: pipelined, the weights are read once
#pragma unroll
    for (int s = 0; s < SLOTS; s++) {
        const int j = s * team + lane;
        if (pipelined && j < chunks) w[s] = load_chunk(weight, j, cols, vectorized);
#pragma unroll
        for (int k = 0; k < 8; k++) dw[s][k] = db[s][k] = 0.0f;
    }
    BackwardRow<T, SLOTS> current;
    if (pipelined) {
        current.load(grad, x, mean_or_null, rstd_in, (long long)blockIdx.x * teams + threadIdx.x / team,
                     rows, cols, vectorized, team);
    }
    // The loop bound is the same for the whole block: inactive teams still join the reductions.
    for (long long first = (long long)blockIdx.x * teams; first < rows; first += stride) {
        const long long row = first + threadIdx.x / team;
        BackwardRow<T, SLOTS> next;   // pipelined: in flight while this row is reduced and written
        if (pipelined)
            next.load(grad, x, mean_or_null, rstd_in, row + stride, rows, cols, vectorized, team);
        else
            current.load(grad, x, mean_or_null, rstd_in, row, rows, cols, vectorized, team);
        const bool active = row < rows;
        Raw8<T> g_sum[SLOTS];   // pipelined only; unpipelined it is read where it is added
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int j = s * team + lane;
            if (FUSED && pipelined && active && j < chunks) g_sum[s] = load_chunk(grad_sum + row * cols, j, cols, vectorized);
        }
        const float mean = current.mean, rstd = current.rstd;
        float2 sums = make_float2(0.0f, 0.0f);   // (sum gw, sum gw * xhat); padding adds zeros
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int j = s * team + lane;
            if (!active || j >= chunks) continue;
            float g[8], xv[8], wv[8];
            unpack(current.grad[s], g);
            unpack(current.x[s], xv);
            unpack(pipelined ? w[s] : load_chunk(weight, j, cols, vectorized), wv);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const float xhat = (xv[k] - mean) * rstd, gw = g[k] * wv[k];
                sums.x += gw;
                sums.y += gw * xhat;
                dw[s][k] += g[k] * xhat;
                if (with_bias) db[s][k] += g[k];
            }
        }
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            keep_packed(current.grad[s]);
            keep_packed(current.x[s]);
            if (pipelined) keep_packed(w[s]);
            if (FUSED && pipelined) keep_packed(g_sum[s]);
        }
        sums = team_all_reduce(sums, team, Add2());
        const float mean_gw = RMS ? 0.0f : sums.x / cols, mean_gw_xhat = sums.y / cols;
        if (active) {
#pragma unroll
            for (int s = 0; s < SLOTS; s++) {
                const int j = s * team + lane;
                if (j >= chunks) continue;
                float g[8], xv[8], wv[8], out[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
                unpack(current.grad[s], g);
                unpack(current.x[s], xv);
                unpack(pipelined ? w[s] : load_chunk(weight, j, cols, vectorized), wv);   // else an L1 hit
                if constexpr (FUSED) {
                    if (pipelined) unpack(g_sum[s], out);
                    else load_chunk(grad_sum + row * cols, j, cols, vectorized, out);
                }
#pragma unroll
                for (int k = 0; k < 8; k++)
                    out[k] += rstd * (g[k] * wv[k] - mean_gw - (xv[k] - mean) * rstd * mean_gw_xhat);
                const Raw8<T> rounded = pack<T>(out);
                store_chunk(dx + row * cols, j, cols, vectorized, rounded);
                if constexpr (DROPOUT) {
                    unpack(rounded, out);
                    drop_chunk<T>(out, row * cols + 8 * j, drop);
                    store_chunk(d_residual + row * cols, j, cols, vectorized, out);
                }
            }
        }
        if (pipelined) current = next;
    }
    write_column_partials(weight_partials, dw, column_sums, cols, team);
    if (with_bias) write_column_partials(bias_partials, db, column_sums, cols, team);
}

// out[c] = sum over blocks of partials[block, c], for blockIdx.y = 0 (out0 from the first [blocks, cols]
// partials) and 1 (out1 from the next; launched only with a bias). Block (32, 16): threadIdx.x picks one
// of 32 adjacent columns (coalesced reads), threadIdx.y one of 16 interleaved slices of the blocks;
// the 16 slice sums are then added in slice order. Fixed order: deterministic.
#define COLUMN_SUM_SLICES 16
template <class T>
__device__ void column_sum(T *out0, T *out1, const float *partials, int blocks, int cols) {
    __shared__ float slices[COLUMN_SUM_SLICES][33];
    T *out = blockIdx.y == 0 ? out0 : out1;
    partials += (long long)blockIdx.y * blocks * cols;
    const int c = blockIdx.x * 32 + threadIdx.x;
    float sum = 0.0f;
    if (c < cols) {
#pragma unroll 4
        for (int b = threadIdx.y; b < blocks; b += COLUMN_SUM_SLICES) sum += partials[(long long)b * cols + c];
    }
    slices[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float total = 0.0f;
        for (int s = 0; s < COLUMN_SUM_SLICES; s++) total += slices[s][threadIdx.x];
        out[c] = from_float<T>(total);
    }
}

// Forward kernels, one per slot count and per residual add (the add_ kernels, FUSED: residual and sum
// non-null; a plain norm's kernel keeps no registers for them; the add_dropout_ kernels drop the
// residual first): at most 1024 threads, so at most 64 registers a thread. Every forward kernel takes
// the dropout arguments (p, scale, seed, offset); only the add_dropout_ kernels read them.
#define NORM_FORWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, SLOTS)                                          \
    extern "C" __global__ void __launch_bounds__(1024) PREFIX##layer_norm_forward_##SUFFIX##_##SLOTS(TYPE *y,     \
            TYPE *sum, float *mean, float *rstd, const TYPE *x, const TYPE *residual, const TYPE *w, const TYPE *b, \
            long long rows, int cols, float eps, int vec, int team, float p, float scale, unsigned long long seed,  \
            unsigned long long offset) {                                                                            \
        norm_forward<TYPE, false, FUSED, DROPOUT, SLOTS>(y, sum, mean, rstd, x, residual, w, b, rows, cols, eps,   \
                                                         vec, team, norm_dropout(p, scale, seed, offset));          \
    }                                                                                                               \
    extern "C" __global__ void __launch_bounds__(1024) PREFIX##rms_norm_forward_##SUFFIX##_##SLOTS(TYPE *y,       \
            TYPE *sum, float *rstd, const TYPE *x, const TYPE *residual, const TYPE *w, long long rows, int cols,   \
            float eps, int vec, int team, float p, float scale, unsigned long long seed, unsigned long long offset) { \
        norm_forward<TYPE, true, FUSED, DROPOUT, SLOTS>(y, sum, nullptr, rstd, x, residual, w, nullptr, rows, cols, \
                                                        eps, vec, team, norm_dropout(p, scale, seed, offset));      \
    }

// Backward kernels, one per slot count and per residual gradient (the add_ kernels, FUSED: g_sum
// non-null; the add_dropout_ kernels also write d_residual, dx dropped by the forward's draw), at most
// 512 threads, with NORM_BACKWARD_MIN_BLOCKS_<SLOTS> blocks of 512 threads guaranteed to fit an SM (the
// register cap that sets): the host sizes its persistent grid from it (NormLaunchPlan.backwardMinBlocks).
// Every backward kernel takes d_residual and the dropout arguments; only the add_dropout_ kernels use them.
#define NORM_BACKWARD_MIN_BLOCKS_1 2
#define NORM_BACKWARD_MIN_BLOCKS_2 1
#define NORM_BACKWARD_MIN_BLOCKS_3 1
#define NORM_BACKWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, SLOTS)                                         \
    extern "C" __global__ void __launch_bounds__(512, NORM_BACKWARD_MIN_BLOCKS_##SLOTS)                            \
    PREFIX##layer_norm_backward_##SUFFIX##_##SLOTS(TYPE *dx, TYPE *d_residual, float *dw_partials,                 \
            float *db_partials, const TYPE *g, const TYPE *g_sum, const TYPE *x, const TYPE *w, const float *mean,  \
            const float *rstd, long long rows, int cols, int vec, int team, float p, float scale,                  \
            unsigned long long seed, unsigned long long offset) {                                                   \
        norm_backward<TYPE, false, FUSED, DROPOUT, SLOTS>(dx, d_residual, dw_partials, db_partials, g, g_sum, x, w, \
                                                          mean, rstd, rows, cols, vec, team,                        \
                                                          norm_dropout(p, scale, seed, offset));                    \
    }                                                                                                               \
    extern "C" __global__ void __launch_bounds__(512, NORM_BACKWARD_MIN_BLOCKS_##SLOTS)                            \
    PREFIX##rms_norm_backward_##SUFFIX##_##SLOTS(TYPE *dx, TYPE *d_residual, float *dw_partials, const TYPE *g,   \
            const TYPE *g_sum, const TYPE *x, const TYPE *w, const float *rstd, long long rows, int cols, int vec,  \
            int team, float p, float scale, unsigned long long seed, unsigned long long offset) {                  \
        norm_backward<TYPE, true, FUSED, DROPOUT, SLOTS>(dx, d_residual, dw_partials, nullptr, g, g_sum, x, w,     \
                                                         nullptr, rstd, rows, cols, vec, team,                      \
                                                         norm_dropout(p, scale, seed, offset));                     \
    }

#define NORM_BACKWARD_KERNELS_OF(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE)                                            \
    NORM_BACKWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, 1)                                                 \
    NORM_BACKWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, 2)                                                 \
    NORM_BACKWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, 3)

#define NORM_FORWARD_KERNELS_OF(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE)                                             \
    NORM_FORWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, 1)                                                  \
    NORM_FORWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, 2)                                                  \
    NORM_FORWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, 3)                                                  \
    NORM_FORWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, 4)

#define NORM_KERNELS_OF(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE)                                                      \
    NORM_FORWARD_KERNELS_OF(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE)                                                  \
    NORM_BACKWARD_KERNELS_OF(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE)

#define NORM_KERNELS(SUFFIX, TYPE)                                                                                 \
    NORM_KERNELS_OF(, false, false, SUFFIX, TYPE)                                                                  \
    NORM_KERNELS_OF(add_, true, false, SUFFIX, TYPE)                                                               \
    NORM_KERNELS_OF(add_dropout_, true, true, SUFFIX, TYPE)                                                        \
    extern "C" __global__ void column_sum_##SUFFIX(TYPE *out0, TYPE *out1, const float *partials, int blocks,       \
            int cols) {                                                                                             \
        column_sum<TYPE>(out0, out1, partials, blocks, cols);                                                      \
    }
FOR_EACH_FLOAT_TYPE(NORM_KERNELS)
