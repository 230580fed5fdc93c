// Softmax and log-softmax over the last dimension of a [rows, cols] tensor, forward and backward.
// One block per row (grid-stride over rows). Forward: one pass for the online (max, sum) state,
// one pass that writes; backward: one pass for the row's dot product, one that writes. The
// second pass reads the row again from L1/L2, so device memory sees about one read per input.

template <class T, bool LOG>
__device__ void softmax_forward(T *out, const T *in, long long rows, int cols, int vectorized) {
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
