// Softmax and log-softmax over the last dimension of a [rows, cols] tensor, forward and backward.
// One block per row (grid-stride over rows). Rows of up to 32 elements a thread (vectorized) are
// read once into registers: one read and one write of device memory, with the two reductions in
// between. Wider rows take two passes: one for the online (max, sum) state (or the backward's dot
// product), one that writes, reading the row again from L1/L2.

#define SOFTMAX_VECTORS 4   // 8-element vectors a thread holds in the register path

// This thread's vectors of a row in registers (`fill` past the end of the row).
template <class T>
__device__ __forceinline__ void softmax_load_row(const T *x, int cols, float (&v)[SOFTMAX_VECTORS][8], float fill) {
#pragma unroll
    for (int i = 0; i < SOFTMAX_VECTORS; i++) {
        const int c = (threadIdx.x + i * blockDim.x) * 8;
        if (c < cols) load8(x + c, v[i]);
        else
#pragma unroll
            for (int k = 0; k < 8; k++) v[i][k] = fill;
    }
}

template <class T>
__device__ __forceinline__ void softmax_store_row(T *y, int cols, float (&v)[SOFTMAX_VECTORS][8]) {
#pragma unroll
    for (int i = 0; i < SOFTMAX_VECTORS; i++) {
        const int c = (threadIdx.x + i * blockDim.x) * 8;
        if (c < cols) store8(y + c, v[i]);
    }
}

struct Max {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <class T, bool LOG>
__device__ void softmax_forward(T *out, const T *in, long long rows, int cols, int vectorized) {
    if (vectorized && cols <= (int)blockDim.x * 8 * SOFTMAX_VECTORS) {
        for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
            float v[SOFTMAX_VECTORS][8];
            softmax_load_row(in + row * cols, cols, v, NEG_INFINITY);
            float max = NEG_INFINITY;
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECTORS; i++)
#pragma unroll
                for (int k = 0; k < 8; k++) max = fmaxf(max, v[i][k]);
            max = block_all_reduce(max, Max());
            // A row of -inf only: exponentiate against 0, as the two-pass path's state does.
            const float base = max == NEG_INFINITY ? 0.0f : max;
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECTORS; i++)
#pragma unroll
                for (int k = 0; k < 8; k++) sum += __expf(v[i][k] - base);
            sum = block_all_reduce(sum, Add());
            const float log_sum = logf(sum), inverse_sum = 1.0f / sum;
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECTORS; i++)
#pragma unroll
                for (int k = 0; k < 8; k++) v[i][k] = LOG ? v[i][k] - base - log_sum : __expf(v[i][k] - base) * inverse_sum;
            softmax_store_row(out + row * cols, cols, v);
        }
        return;
    }
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *x = in + row * cols;
        float unused_sum = 0.0f;
        MaxSum state = row_max_sum(x, cols, vectorized, unused_sum);
        state = block_all_reduce(state, [](MaxSum a, MaxSum b) { return max_sum_combine(a, b); });
        const float max = state.max, log_sum = logf(state.sum), inverse_sum = 1.0f / state.sum;
        row_map2(out + row * cols, x, x, cols, vectorized, [&](int, float v, float) {
            return LOG ? v - max - log_sum : __expf(v - max) * inverse_sum;
        });
    }
}

// softmax: dx = y * (g - sum(g * y)); log-softmax: dx = g - exp(y) * sum(g). `y` is the forward output.
template <class T, bool LOG>
__device__ void softmax_backward(T *dx, const T *grad, const T *y, long long rows, int cols, int vectorized) {
    if (vectorized && cols <= (int)blockDim.x * 8 * SOFTMAX_VECTORS) {
        for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
            float g[SOFTMAX_VECTORS][8], yv[SOFTMAX_VECTORS][8];
            softmax_load_row(grad + row * cols, cols, g, 0.0f);
            softmax_load_row(y + row * cols, cols, yv, 0.0f);
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECTORS; i++)
#pragma unroll
                for (int k = 0; k < 8; k++) dot += LOG ? g[i][k] : g[i][k] * yv[i][k];
            dot = block_all_reduce(dot, Add());
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECTORS; i++)
#pragma unroll
                for (int k = 0; k < 8; k++) g[i][k] = LOG ? g[i][k] - __expf(yv[i][k]) * dot : yv[i][k] * (g[i][k] - dot);
            softmax_store_row(dx + row * cols, cols, g);
        }
        return;
    }
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *g = grad + row * cols, *yr = y + row * cols;
        float dot = 0.0f;
        row_read2(g, yr, cols, vectorized, [&](int, float gv, float yv) { dot += LOG ? gv : gv * yv; });
        dot = block_all_reduce(dot, Add());
        row_map2(dx + row * cols, g, yr, cols, vectorized, [&](int, float gv, float yv) {
            return LOG ? gv - __expf(yv) * dot : yv * (gv - dot);
        });
    }
}

#define SOFTMAX_KERNELS(SUFFIX, TYPE)                                                                             \
    extern "C" __global__ void softmax_forward_##SUFFIX(TYPE *out, const TYPE *in, long long rows, int cols, int vec) { \
        softmax_forward<TYPE, false>(out, in, rows, cols, vec);                                                   \
    }                                                                                                              \
    extern "C" __global__ void log_softmax_forward_##SUFFIX(TYPE *out, const TYPE *in, long long rows, int cols, int vec) { \
        softmax_forward<TYPE, true>(out, in, rows, cols, vec);                                                    \
    }                                                                                                              \
    extern "C" __global__ void softmax_backward_##SUFFIX(TYPE *dx, const TYPE *g, const TYPE *y, long long rows, int cols, int vec) { \
        softmax_backward<TYPE, false>(dx, g, y, rows, cols, vec);                                                 \
    }                                                                                                              \
    extern "C" __global__ void log_softmax_backward_##SUFFIX(TYPE *dx, const TYPE *g, const TYPE *y, long long rows, int cols, int vec) { \
        softmax_backward<TYPE, true>(dx, g, y, rows, cols, vec);                                                  \
    }
FOR_EACH_FLOAT_TYPE(SOFTMAX_KERNELS)
