// GeLU (tanh approximation and exact erf), SiLU, SwiGLU and quick GeGLU, forward and backward, computed in
// fp32 with 16-byte loads and stores where the pointers allow (the host passes `vec`).

// Both GeLUs write 0.5 (1 + f) in forms that keep their accuracy in the far negative tail,
// where 1 + tanh or 1 + erf would cancel to 0 in fp32: 0.5 (1 + tanh u) = sigmoid(2u) and
// 0.5 (1 + erf z) = 0.5 erfc(-z).
struct GeluTanh {
    static __device__ __forceinline__ float inner(float x) {
        const float k = 0.7978845608028654f;   // sqrt(2 / pi)
        return k * (x + 0.044715f * x * x * x);
    }
    static __device__ __forceinline__ float forward(float x) { return x / (1.0f + expf(-2.0f * inner(x))); }
    // d/dx [x s(2u)] = s + x * 2 s (1 - s) * u',  u' = k (1 + 3 * 0.044715 x^2)
    static __device__ __forceinline__ float derivative(float x) {
        const float k = 0.7978845608028654f;
        const float s = 1.0f / (1.0f + expf(-2.0f * inner(x)));
        return s + x * 2.0f * s * (1.0f - s) * k * (1.0f + 3.0f * 0.044715f * x * x);
    }
};

struct GeluErf {
    static __device__ __forceinline__ float cdf(float x) { return 0.5f * erfcf(-x * 0.7071067811865476f); }
    static __device__ __forceinline__ float forward(float x) { return x * cdf(x); }
    static __device__ __forceinline__ float derivative(float x) {
        const float density = 0.3989422804014327f * expf(-0.5f * x * x);   // standard normal pdf
        return cdf(x) + x * density;
    }
};

struct Silu {
    static __device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
    static __device__ __forceinline__ float forward(float x) { return x * sigmoid(x); }
    static __device__ __forceinline__ float derivative(float x) {
        const float s = sigmoid(x);
        return s * (1.0f + x * (1.0f - s));
    }
};

// quick_gelu(x) = x * sigmoid(1.702 x) (Megatron's quick_gelu, the gate of gpt-oss's quick GeGLU).
struct QuickGelu {
    static __device__ __forceinline__ float forward(float x) { return x * Silu::sigmoid(1.702f * x); }
    static __device__ __forceinline__ float derivative(float x) {
        const float s = Silu::sigmoid(1.702f * x);
        return s * (1.0f + 1.702f * x * (1.0f - s));
    }
};

// A gated linear unit on [rows, 2 * half] -> [rows, half] (Megatron's chunk of the fc1 output into gate a
// and linear b): out = F(min(a, c)) * (clamp(b, -c, c) + offset), c = `clamp` (+inf: none); F is SiLU
// (SwiGLU) or quick GeLU (gate 1). Backward writes d_in = [g * (b' + offset) * F'(a'), g * F(a')], zero where
// a clamp cut the input off (torch's clamp backward). Vectorized when half % 8 == 0 and the pointers are
// 16-byte aligned.
template <class F>
__device__ __forceinline__ float glu_value(float a, float b, float offset, float clamp) {
    return F::forward(fminf(a, clamp)) * (fminf(fmaxf(b, -clamp), clamp) + offset);
}

template <class F>
__device__ __forceinline__ void glu_gradient(float &a, float &b, float g, float offset, float clamp) {
    const float ac = fminf(a, clamp), bc = fminf(fmaxf(b, -clamp), clamp);
    const float da = a <= clamp ? g * (bc + offset) * F::derivative(ac) : 0.0f;
    const float db = b >= -clamp && b <= clamp ? g * F::forward(ac) : 0.0f;
    a = da, b = db;
}

template <class T, class F>
__device__ void glu_forward(T *out, const T *in, long long rows, int half, int vectorized, float offset, float clamp) {
    const int step = vectorized ? 8 : 1;
    const long long per_row = half / step;
    for (long long i = global_thread_index(); i < rows * per_row; i += grid_stride()) {
        const long long row = i / per_row, column = (i % per_row) * step;
        const T *a = in + row * 2 * half + column, *b = a + half;
        T *y = out + row * half + column;
        if (vectorized) {
            float av[8], bv[8];
            load8(a, av);
            load8(b, bv);
#pragma unroll
            for (int k = 0; k < 8; k++) av[k] = glu_value<F>(av[k], bv[k], offset, clamp);
            store8(y, av);
        } else {
            *y = from_float<T>(glu_value<F>(to_float(*a), to_float(*b), offset, clamp));
        }
    }
}

template <class T, class F>
__device__ void glu_backward(T *din, const T *grad, const T *in, long long rows, int half, int vectorized, float offset,
                             float clamp) {
    const int step = vectorized ? 8 : 1;
    const long long per_row = half / step;
    for (long long i = global_thread_index(); i < rows * per_row; i += grid_stride()) {
        const long long row = i / per_row, column = (i % per_row) * step;
        const long long a_index = row * 2 * half + column;
        const T *g = grad + row * half + column;
        if (vectorized) {
            float av[8], bv[8], gv[8];
            load8(in + a_index, av);
            load8(in + a_index + half, bv);
            load8(g, gv);
#pragma unroll
            for (int k = 0; k < 8; k++) glu_gradient<F>(av[k], bv[k], gv[k], offset, clamp);
            store8(din + a_index, av);
            store8(din + a_index + half, bv);
        } else {
            float a = to_float(in[a_index]), b = to_float(in[a_index + half]);
            glu_gradient<F>(a, b, to_float(*g), offset, clamp);
            din[a_index] = from_float<T>(a);
            din[a_index + half] = from_float<T>(b);
        }
    }
}

// For each activation F and type: F_forward_T(out, x, n, vec) and F_backward_T(dx, g, x, n, vec) (dx = g * F'(x)).
#define ACTIVATION_KERNELS_FOR(NAME, FUNCTOR, SUFFIX, TYPE)                                                       \
    extern "C" __global__ void NAME##_forward_##SUFFIX(TYPE *out, const TYPE *x, long long n, int vec) {         \
        map_unary(out, x, n, vec, [](float v) { return FUNCTOR::forward(v); });                                  \
    }                                                                                                             \
    extern "C" __global__ void NAME##_backward_##SUFFIX(TYPE *dx, const TYPE *g, const TYPE *x, long long n, int vec) { \
        map_binary(dx, g, x, n, vec, [](float gv, float v) { return gv * FUNCTOR::derivative(v); });             \
    }

// For each gated unit G and type: G_forward_T(out, in, rows, half, vec, offset, clamp) and its backward.
#define GLU_KERNELS_FOR(NAME, FUNCTOR, SUFFIX, TYPE)                                                              \
    extern "C" __global__ void NAME##_forward_##SUFFIX(TYPE *out, const TYPE *in, long long rows, int half, int vec, \
                                                       float offset, float clamp) {                               \
        glu_forward<TYPE, FUNCTOR>(out, in, rows, half, vec, offset, clamp);                                      \
    }                                                                                                             \
    extern "C" __global__ void NAME##_backward_##SUFFIX(TYPE *din, const TYPE *g, const TYPE *in, long long rows,   \
                                                        int half, int vec, float offset, float clamp) {           \
        glu_backward<TYPE, FUNCTOR>(din, g, in, rows, half, vec, offset, clamp);                                  \
    }

#define ACTIVATION_KERNELS(SUFFIX, TYPE)                                                                          \
    ACTIVATION_KERNELS_FOR(gelu_tanh, GeluTanh, SUFFIX, TYPE)                                                     \
    ACTIVATION_KERNELS_FOR(gelu_erf, GeluErf, SUFFIX, TYPE)                                                       \
    ACTIVATION_KERNELS_FOR(silu, Silu, SUFFIX, TYPE)                                                              \
    GLU_KERNELS_FOR(swiglu, Silu, SUFFIX, TYPE)                                                                   \
    GLU_KERNELS_FOR(quick_geglu, QuickGelu, SUFFIX, TYPE)
FOR_EACH_FLOAT_TYPE(ACTIVATION_KERNELS)
