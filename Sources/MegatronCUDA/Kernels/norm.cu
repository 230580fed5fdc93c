// Layer norm and RMS norm over the last dimension of [rows, cols], forward and backward.
// One block per row (grid-stride over rows); statistics are computed in fp32 from a re-read of
// the row (L1/L2-resident), mean first and then the centred variance, for accuracy.
//
// Backward writes dx per row and accumulates dweight / dbias per column in dynamic shared memory
// (each thread always owns the same columns, so no atomics), stores one partial row per block,
// and a second kernel sums the partials of each column in block order: deterministic.

// y = (x - mean) * rstd * w + b (LN) or x * rstd * w (RMS); bias may be null; mean may be null.
template <class T, bool RMS>
__device__ void norm_forward(T *y, float *mean_out, float *rstd_out, const T *x, const T *weight, const T *bias,
                             long long rows, int cols, float eps, int vectorized) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *xr = x + row * cols;
        float mean = 0.0f;
        if (!RMS) {
            float sum = 0.0f;
            row_read(xr, cols, vectorized, [&](int, float v) { sum += v; });
            mean = block_all_reduce(sum, Add()) / cols;
        }
        float squares = 0.0f;
        row_read(xr, cols, vectorized, [&](int, float v) { squares += (v - mean) * (v - mean); });
        const float rstd = rsqrtf(block_all_reduce(squares, Add()) / cols + eps);
        if (threadIdx.x == 0) {
            rstd_out[row] = rstd;
            if (!RMS && mean_out) mean_out[row] = mean;
        }
        row_map3(y + row * cols, xr, weight, RMS ? nullptr : bias, cols, vectorized,
                 [&](int, float v, float w, float b) { return (v - mean) * rstd * w + b; });
    }
}

// xhat = (x - mean) * rstd, gw = g * w:
//   LN:  dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)),  dw += g * xhat, db += g
//   RMS: dx = rstd * (gw - xhat * mean(gw * xhat)),              dw += g * xhat
// partials: [gridDim.x, cols] for dweight, then (LN, when bias_partials is non-null) the same for dbias.
template <class T, bool RMS>
__device__ void norm_backward(T *dx, float *weight_partials, float *bias_partials, const T *grad, const T *x,
                              const T *weight, const float *mean_in, const float *rstd_in,
                              long long rows, int cols, int vectorized) {
    extern __shared__ float column_sums[];   // [cols] dweight, then [cols] dbias (LN)
    float *dw = column_sums, *db = column_sums + cols;
    const bool with_bias = !RMS && bias_partials;
    // Column c lives at slot(c): with 8 columns per thread, lane k of every thread is contiguous,
    // so a warp's accesses fall in distinct banks.
    auto slot = [&](int c) { return vectorized ? (c & 7) * (cols >> 3) + (c >> 3) : c; };
    // Zero exactly the columns this thread will own (the row_read mapping).
    row_read(weight, cols, vectorized, [&](int c, float) { dw[slot(c)] = 0.0f; if (with_bias) db[slot(c)] = 0.0f; });
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *g = grad + row * cols, *xr = x + row * cols;
        const float mean = RMS ? 0.0f : mean_in[row], rstd = rstd_in[row];
        float2 sums = make_float2(0.0f, 0.0f);   // (sum gw, sum gw * xhat)
        row_read3(g, xr, weight, cols, vectorized, [&](int c, float gv, float xv, float w) {
            const float gw = gv * w, xhat = (xv - mean) * rstd;
            sums.x += gw;
            sums.y += gw * xhat;
            dw[slot(c)] += gv * xhat;
            if (with_bias) db[slot(c)] += gv;
        });
        sums = block_all_reduce(sums, Add2());
        const float mean_gw = RMS ? 0.0f : sums.x / cols, mean_gw_xhat = sums.y / cols;
        row_map3(dx + row * cols, g, xr, weight, cols, vectorized, [&](int, float gv, float xv, float w) {
            const float xhat = (xv - mean) * rstd;
            return rstd * (gv * w - mean_gw - xhat * mean_gw_xhat);
        });
    }
    row_read(weight, cols, vectorized, [&](int c, float) {
        weight_partials[(long long)blockIdx.x * cols + c] = dw[slot(c)];
        if (with_bias) bias_partials[(long long)blockIdx.x * cols + c] = db[slot(c)];
    });
}

// out[c] = sum over blocks of partials[block, c]. Block (32, 16): threadIdx.x picks one of 32
// adjacent columns (coalesced reads), threadIdx.y one of 16 interleaved slices of the blocks;
// the 16 slice sums are then added in slice order. Fixed order: deterministic.
#define COLUMN_SUM_SLICES 16
template <class T>
__device__ void column_sum(T *out, const float *partials, int blocks, int cols) {
    __shared__ float slices[COLUMN_SUM_SLICES][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float sum = 0.0f;
    if (c < cols)
        for (int b = threadIdx.y; b < blocks; b += COLUMN_SUM_SLICES) sum += partials[(long long)b * cols + c];
    slices[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float total = 0.0f;
        for (int s = 0; s < COLUMN_SUM_SLICES; s++) total += slices[s][threadIdx.x];
        out[c] = from_float<T>(total);
    }
}

#define NORM_KERNELS(SUFFIX, TYPE)                                                                                 \
    extern "C" __global__ void layer_norm_forward_##SUFFIX(TYPE *y, float *mean, float *rstd, const TYPE *x,       \
            const TYPE *w, const TYPE *b, long long rows, int cols, float eps, int vec) {                          \
        norm_forward<TYPE, false>(y, mean, rstd, x, w, b, rows, cols, eps, vec);                                   \
    }                                                                                                               \
    extern "C" __global__ void rms_norm_forward_##SUFFIX(TYPE *y, float *rstd, const TYPE *x, const TYPE *w,       \
            long long rows, int cols, float eps, int vec) {                                                         \
        norm_forward<TYPE, true>(y, nullptr, rstd, x, w, nullptr, rows, cols, eps, vec);                           \
    }                                                                                                               \
    extern "C" __global__ void layer_norm_backward_##SUFFIX(TYPE *dx, float *dw_partials, float *db_partials,      \
            const TYPE *g, const TYPE *x, const TYPE *w, const float *mean, const float *rstd,                     \
            long long rows, int cols, int vec) {                                                                    \
        norm_backward<TYPE, false>(dx, dw_partials, db_partials, g, x, w, mean, rstd, rows, cols, vec);           \
    }                                                                                                               \
    extern "C" __global__ void rms_norm_backward_##SUFFIX(TYPE *dx, float *dw_partials, const TYPE *g,            \
            const TYPE *x, const TYPE *w, const float *rstd, long long rows, int cols, int vec) {                 \
        norm_backward<TYPE, true>(dx, dw_partials, nullptr, g, x, w, nullptr, rstd, rows, cols, vec);             \
    }                                                                                                               \
    extern "C" __global__ void column_sum_##SUFFIX(TYPE *out, const float *partials, int blocks, int cols) {       \
        column_sum<TYPE>(out, partials, blocks, cols);                                                             \
    }
FOR_EACH_FLOAT_TYPE(NORM_KERNELS)
