// Fused softmax cross-entropy over [rows, vocab] logits with int64 labels, an ignore index and
// label smoothing eps. One block per row (grid-stride over rows). No [rows, vocab] temporary:
// forward keeps the online (max, sum exp) state and the sum of logits (for smoothing), and
// writes the row's loss and log-sum-exp; backward recomputes softmax from the logits and lse.
//
// loss = lse - (1 - eps) * x[label] - eps / V * sum(x)   (torch's label_smoothing formula)
// ignored rows: loss 0 and gradient 0; a label outside [0, V) that is not the ignore index
// gives loss NaN (and a NaN gradient row), so bad data shows up instead of reading out of bounds.

struct CrossEntropyState { MaxSum softmax; float sum; };

__device__ __forceinline__ CrossEntropyState shuffle_xor(CrossEntropyState v, int mask) {
    return CrossEntropyState{shuffle_xor(v.softmax, mask), shuffle_xor(v.sum, mask)};
}

template <class T>
__device__ void cross_entropy_forward(float *loss, float *lse_out, const T *logits, const long long *labels,
                                      long long rows, int vocab, long long ignore_index, float smoothing, int vectorized) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *x = logits + row * vocab;
        CrossEntropyState state{{NEG_INFINITY, 0.0f}, 0.0f};
        state.softmax = row_max_sum(x, vocab, vectorized, state.sum);   // one pass over the row
        state = block_all_reduce(state, [](CrossEntropyState a, CrossEntropyState b) {
            return CrossEntropyState{max_sum_combine(a.softmax, b.softmax), a.sum + b.sum};
        });
        if (threadIdx.x != 0) continue;
        const float lse = state.softmax.max + logf(state.softmax.sum);
        const long long label = labels[row];
        float value;
        if (label == ignore_index) value = 0.0f;
        else if (label < 0 || label >= vocab) value = QUIET_NAN;
        else value = lse - (1.0f - smoothing) * to_float(x[label]) - smoothing / vocab * state.sum;
        loss[row] = value;
        lse_out[row] = lse;
    }
}

// dlogits = g * (softmax - (1 - eps) * onehot(label) - eps / V); g = grad[row * grad_stride]
// (stride 0: one gradient for every row, as a mean-reduced loss gives). dlogits may alias logits.
template <class T>
__device__ void cross_entropy_backward(T *dlogits, const float *grad, long long grad_stride, const T *logits,
                                       const float *lse, const long long *labels, long long rows, int vocab,
                                       long long ignore_index, float smoothing, int vectorized) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const long long label = labels[row];
        const bool ignored = label == ignore_index;
        const float g = ignored ? 0.0f : grad[row * grad_stride];
        const float bad = (!ignored && (label < 0 || label >= vocab)) ? QUIET_NAN : 0.0f;
        const float row_lse = lse[row], uniform = smoothing / vocab, target = 1.0f - smoothing;
        const T *x = logits + row * vocab;
        row_map2(dlogits + row * vocab, x, x, vocab, vectorized, [&](int c, float v, float) {
            if (ignored) return 0.0f;
            const float p = __expf(v - row_lse) - uniform - (c == label ? target : 0.0f);
            return g * p + bad;
        });
    }
}

#define CROSS_ENTROPY_KERNELS(SUFFIX, TYPE)                                                                         \
    extern "C" __global__ void cross_entropy_forward_##SUFFIX(float *loss, float *lse, const TYPE *logits,         \
            const long long *labels, long long rows, int vocab, long long ignore_index, float smoothing, int vec) { \
        cross_entropy_forward<TYPE>(loss, lse, logits, labels, rows, vocab, ignore_index, smoothing, vec);         \
    }                                                                                                                \
    extern "C" __global__ void cross_entropy_backward_##SUFFIX(TYPE *dlogits, const float *grad, long long grad_stride, \
            const TYPE *logits, const float *lse, const long long *labels, long long rows, int vocab,              \
            long long ignore_index, float smoothing, int vec) {                                                     \
        cross_entropy_backward<TYPE>(dlogits, grad, grad_stride, logits, lse, labels, rows, vocab, ignore_index,   \
                                     smoothing, vec);                                                               \
    }
FOR_EACH_FLOAT_TYPE(CROSS_ENTROPY_KERNELS)
