// Layer norm and RMS norm over the last dimension of [rows, cols], forward and backward, optionally
// fused with the residual add before the norm (forward: sum = x + residual is written too and
// normalized; backward: the gradient reaching `sum` directly is added to dx).
//
// Each row belongs to a team of `team` threads (a multiple of 32 dividing blockDim.x; a block holds
// blockDim.x / team rows) that keeps the row in registers, so x and dy are read from memory exactly
// once: chunk j of a row (columns 8j ... 8j + 7, one 16-byte access for 16-bit types when
// vectorized) lives in thread j % team, slot j / team. A 32-thread team reduces with shuffles only.
// Statistics are fp32: the mean first, then the centred variance from the registers, for accuracy.
//
// Backward keeps each thread's dweight / dbias column sums in registers across all the rows its
// team handles (a team always owns the same columns), adds the teams of a block in team order in
// shared memory, writes one fp32 partial row per block, and a second kernel sums the partials of
// each column in block order: deterministic, no atomics, no re-read of x or dy.

#define NORM_FORWARD_SLOTS 4    // chunks per thread: rows up to 1024 * 4 * 8 = 32768 columns
#define NORM_BACKWARD_SLOTS 3   // with dw and db also in registers: up to 512 * 3 * 8 = 12288 columns

// Eight elements of a row kept in registers in their storage format (4 registers for 16-bit
// types instead of 8 floats), so a thread can hold more of its row.
template <class T> struct Raw8 {
    union { typename Vector8<sizeof(T)>::type vector; T lanes[8]; };
};
template <> struct Raw8<float> {
    union { float4 vector[2]; float lanes[8]; };
};

// Chunk j of a row: one vector access when `vectorized` (cols % 8 == 0, row 16-byte aligned),
// else element by element with zeros past the row's end.
template <class T> __device__ __forceinline__ Raw8<T> load_chunk(const T *row, int j, int cols, int vectorized) {
    Raw8<T> raw;
    if (vectorized) {
        if constexpr (sizeof(T) == 4) {
            raw.vector[0] = reinterpret_cast<const float4 *>(row + 8 * j)[0];
            raw.vector[1] = reinterpret_cast<const float4 *>(row + 8 * j)[1];
        } else {
            raw.vector = *reinterpret_cast<const typename Vector8<sizeof(T)>::type *>(row + 8 * j);
        }
        return raw;
    }
#pragma unroll
    for (int k = 0; k < 8; k++) raw.lanes[k] = from_float<T>(0.0f);
#pragma unroll
    for (int k = 0; k < 8; k++)
        if (8 * j + k < cols) raw.lanes[k] = row[8 * j + k];
    return raw;
}

template <class T> __device__ __forceinline__ void unpack(const Raw8<T> &raw, float (&v)[8]) {
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = to_float(raw.lanes[k]);
}

template <class T> __device__ __forceinline__ void load_chunk(const T *row, int j, int cols, int vectorized, float (&v)[8]) {
    unpack(load_chunk(row, j, cols, vectorized), v);
}

template <class T> __device__ __forceinline__ void store_chunk(T *row, int j, int cols, int vectorized, const float (&v)[8]) {
    if (vectorized) {
        store8(row + 8 * j, v);
        return;
    }
#pragma unroll
    for (int k = 0; k < 8; k++)
        if (8 * j + k < cols) row[8 * j + k] = from_float<T>(v[k]);
}

template <class T> __device__ __forceinline__ void store_chunk(T *row, int j, int cols, int vectorized, const Raw8<T> &raw) {
    if (vectorized) {
        if constexpr (sizeof(T) == 4) {
            reinterpret_cast<float4 *>(row + 8 * j)[0] = raw.vector[0];
            reinterpret_cast<float4 *>(row + 8 * j)[1] = raw.vector[1];
        } else {
            *reinterpret_cast<typename Vector8<sizeof(T)>::type *>(row + 8 * j) = raw.vector;
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < 8; k++)
        if (8 * j + k < cols) row[8 * j + k] = raw.lanes[k];
}

// `value` reduced over the thread's team, in every thread of the team, in a fixed order (warp
// butterflies, then the team's warp totals in warp order). Teams wider than a warp go through
// shared memory, so every thread of the block must call it.
template <class V, class Op> __device__ __forceinline__ V team_all_reduce(V value, int team, Op op) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value = op(value, shuffle_xor(value, offset));
    if (team == 32) return value;
    __shared__ V warp_totals[32];
    __syncthreads();   // an earlier call may still be reading warp_totals
    if (threadIdx.x % 32 == 0) warp_totals[threadIdx.x / 32] = value;
    __syncthreads();
    const int first = threadIdx.x / team * (team / 32);
    value = warp_totals[first];
    for (int w = 1; w < team / 32; w++) value = op(value, warp_totals[first + w]);
    return value;
}

// y = (x - mean) * rstd * w + b (LN) or x * rstd * w (RMS); bias may be null; mean may be null.
// With a residual, x + residual (rounded to T, as an unfused add would store it) goes to sum_out
// and is what gets normalized.
template <class T, bool RMS>
__device__ void norm_forward(T *y, T *sum_out, float *mean_out, float *rstd_out, const T *x, const T *residual,
                             const T *weight, const T *bias, long long rows, int cols, float eps, int vectorized, int team) {
    const int lane = threadIdx.x % team, teams = blockDim.x / team, chunks = (cols + 7) / 8;
    // The loop bound is the same for the whole block: inactive teams still join the reductions.
    for (long long first = (long long)blockIdx.x * teams; first < rows; first += (long long)gridDim.x * teams) {
        const long long row = first + threadIdx.x / team;
        const bool active = row < rows;
        const long long offset = row * cols;
        Raw8<T> raw[NORM_FORWARD_SLOTS];
        float sum = 0.0f;
#pragma unroll
        for (int s = 0; s < NORM_FORWARD_SLOTS; s++) {
            const int j = s * team + lane;
            if (!active || j >= chunks) continue;
            raw[s] = load_chunk(x + offset, j, cols, vectorized);
            if (residual) {
                float v[8], r[8];
                unpack(raw[s], v);
                load_chunk(residual + offset, j, cols, vectorized, r);
#pragma unroll
                for (int k = 0; k < 8; k++) raw[s].lanes[k] = from_float<T>(v[k] + r[k]);
                store_chunk(sum_out + offset, j, cols, vectorized, raw[s]);
            }
            float v[8];
            unpack(raw[s], v);
#pragma unroll
            for (int k = 0; k < 8; k++) sum += v[k];   // padding is zeros
        }
        const float mean = RMS ? 0.0f : team_all_reduce(sum, team, Add()) / cols;
        float squares = 0.0f;
#pragma unroll
        for (int s = 0; s < NORM_FORWARD_SLOTS; s++) {
            const int j = s * team + lane;
            if (!active || j >= chunks) continue;
            float v[8];
            unpack(raw[s], v);
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (vectorized || 8 * j + k < cols) squares += (v[k] - mean) * (v[k] - mean);
        }
        const float rstd = rsqrtf(team_all_reduce(squares, team, Add()) / cols + eps);
        if (!active) continue;
        if (lane == 0) {
            rstd_out[row] = rstd;
            if (!RMS && mean_out) mean_out[row] = mean;
        }
#pragma unroll
        for (int s = 0; s < NORM_FORWARD_SLOTS; s++) {
            const int j = s * team + lane;
            if (j >= chunks) continue;
            float v[8], w[8], b[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            unpack(raw[s], v);
            load_chunk(weight, j, cols, vectorized, w);
            if (!RMS && bias) load_chunk(bias, j, cols, vectorized, b);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = (v[k] - mean) * rstd * w[k] + b[k];
            store_chunk(y + offset, j, cols, vectorized, v);
        }
    }
}

// Writes this block's column sums (`acc`, the thread's own columns) as row blockIdx.x of `partials`;
// with several teams per block they are first added in team order in shared memory ([cols] floats).
__device__ __forceinline__ void write_column_partials(float *partials, const float (&acc)[NORM_BACKWARD_SLOTS][8],
                                                      float *column_sums, int cols, int team) {
    const int lane = threadIdx.x % team, teams = blockDim.x / team, chunks = (cols + 7) / 8;
    float *out = partials + (long long)blockIdx.x * cols;
    if (teams == 1) {
#pragma unroll
        for (int s = 0; s < NORM_BACKWARD_SLOTS; s++) {
            const int j = s * team + lane;
            if (j >= chunks) continue;
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (8 * j + k < cols) out[8 * j + k] = acc[s][k];
        }
        return;
    }
    for (int t = 0; t < teams; t++) {
        if (threadIdx.x / team == t) {
#pragma unroll
            for (int s = 0; s < NORM_BACKWARD_SLOTS; s++) {
                const int j = s * team + lane;
                if (j >= chunks) continue;
#pragma unroll
                for (int k = 0; k < 8; k++)
                    if (8 * j + k < cols) column_sums[8 * j + k] = (t == 0 ? 0.0f : column_sums[8 * j + k]) + acc[s][k];
            }
        }
        __syncthreads();
    }
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[c] = column_sums[c];
    __syncthreads();   // the buffer may be reused right after
}

// xhat = (x - mean) * rstd, gw = g * w:
//   LN:  dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) + g_sum,  dw += g * xhat, db += g
//   RMS: dx = rstd * (gw - xhat * mean(gw * xhat)) + g_sum,             dw += g * xhat
// g_sum (grad_sum, may be null) is the gradient reaching the norm's input by the residual path.
// partials: [gridDim.x, cols] for dweight, then (LN, when bias_partials is non-null) the same for dbias.
template <class T, bool RMS>
__device__ void norm_backward(T *dx, float *weight_partials, float *bias_partials, const T *grad, const T *grad_sum,
                              const T *x, const T *weight, const float *mean_in, const float *rstd_in,
                              long long rows, int cols, int vectorized, int team) {
    extern __shared__ float column_sums[];   // [cols] when a block holds several teams
    const bool with_bias = !RMS && bias_partials;
    const int lane = threadIdx.x % team, teams = blockDim.x / team, chunks = (cols + 7) / 8;
    float dw[NORM_BACKWARD_SLOTS][8], db[NORM_BACKWARD_SLOTS][8];
#pragma unroll
    for (int s = 0; s < NORM_BACKWARD_SLOTS; s++)
#pragma unroll
        for (int k = 0; k < 8; k++) dw[s][k] = db[s][k] = 0.0f;
    for (long long first = (long long)blockIdx.x * teams; first < rows; first += (long long)gridDim.x * teams) {
        const long long row = first + threadIdx.x / team;
        const bool active = row < rows;
        const long long offset = row * cols;
        const float mean = RMS || !active ? 0.0f : mean_in[row], rstd = active ? rstd_in[row] : 0.0f;
        Raw8<T> graw[NORM_BACKWARD_SLOTS], xraw[NORM_BACKWARD_SLOTS];   // the row, read once
        float2 sums = make_float2(0.0f, 0.0f);   // (sum gw, sum gw * xhat); padding adds zeros
#pragma unroll
        for (int s = 0; s < NORM_BACKWARD_SLOTS; s++) {
            const int j = s * team + lane;
            if (!active || j >= chunks) continue;
            graw[s] = load_chunk(grad + offset, j, cols, vectorized);
            xraw[s] = load_chunk(x + offset, j, cols, vectorized);
            float g[8], xv[8], w[8];
            unpack(graw[s], g);
            unpack(xraw[s], xv);
            load_chunk(weight, j, cols, vectorized, w);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const float xhat = (xv[k] - mean) * rstd, gw = g[k] * w[k];
                sums.x += gw;
                sums.y += gw * xhat;
                dw[s][k] += g[k] * xhat;
                if (with_bias) db[s][k] += g[k];
            }
        }
        sums = team_all_reduce(sums, team, Add2());
        if (!active) continue;
        const float mean_gw = RMS ? 0.0f : sums.x / cols, mean_gw_xhat = sums.y / cols;
#pragma unroll
        for (int s = 0; s < NORM_BACKWARD_SLOTS; s++) {
            const int j = s * team + lane;
            if (j >= chunks) continue;
            float g[8], xv[8], w[8], out[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            unpack(graw[s], g);
            unpack(xraw[s], xv);
            load_chunk(weight, j, cols, vectorized, w);   // an L1 hit: the first pass read it
            if (grad_sum) load_chunk(grad_sum + offset, j, cols, vectorized, out);
#pragma unroll
            for (int k = 0; k < 8; k++) out[k] += rstd * (g[k] * w[k] - mean_gw - (xv[k] - mean) * rstd * mean_gw_xhat);
            store_chunk(dx + offset, j, cols, vectorized, out);
        }
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

// residual / sum and grad_sum may be null (a plain norm).
#define NORM_KERNELS(SUFFIX, TYPE)                                                                                 \
    extern "C" __global__ void __launch_bounds__(1024) layer_norm_forward_##SUFFIX(TYPE *y, TYPE *sum,            \
            float *mean, float *rstd, const TYPE *x, const TYPE *residual, const TYPE *w, const TYPE *b,            \
            long long rows, int cols, float eps, int vec, int team) {                                               \
        norm_forward<TYPE, false>(y, sum, mean, rstd, x, residual, w, b, rows, cols, eps, vec, team);              \
    }                                                                                                               \
    extern "C" __global__ void __launch_bounds__(1024) rms_norm_forward_##SUFFIX(TYPE *y, TYPE *sum, float *rstd,  \
            const TYPE *x, const TYPE *residual, const TYPE *w, long long rows, int cols, float eps, int vec,       \
            int team) {                                                                                             \
        norm_forward<TYPE, true>(y, sum, nullptr, rstd, x, residual, w, nullptr, rows, cols, eps, vec, team);      \
    }                                                                                                               \
    extern "C" __global__ void __launch_bounds__(512) layer_norm_backward_##SUFFIX(TYPE *dx, float *dw_partials,  \
            float *db_partials, const TYPE *g, const TYPE *g_sum, const TYPE *x, const TYPE *w, const float *mean, \
            const float *rstd, long long rows, int cols, int vec, int team) {                                       \
        norm_backward<TYPE, false>(dx, dw_partials, db_partials, g, g_sum, x, w, mean, rstd, rows, cols, vec, team); \
    }                                                                                                               \
    extern "C" __global__ void __launch_bounds__(512) rms_norm_backward_##SUFFIX(TYPE *dx, float *dw_partials,    \
            const TYPE *g, const TYPE *g_sum, const TYPE *x, const TYPE *w, const float *rstd, long long rows,     \
            int cols, int vec, int team) {                                                                          \
        norm_backward<TYPE, true>(dx, dw_partials, nullptr, g, g_sum, x, w, nullptr, rstd, rows, cols, vec, team); \
    }                                                                                                               \
    extern "C" __global__ void column_sum_##SUFFIX(TYPE *out0, TYPE *out1, const float *partials, int blocks,       \
            int cols) {                                                                                             \
        column_sum<TYPE>(out0, out1, partials, blocks, cols);                                                      \
    }
FOR_EACH_FLOAT_TYPE(NORM_KERNELS)
