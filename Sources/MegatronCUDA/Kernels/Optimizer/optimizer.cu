// Multi-tensor AdamW over fp32 master weights, and the global L2 norm of many fp32 gradients.
// Both take a device array of per-tensor slots (CUDAKernels+Optimizer.swift builds it); launch grid.y
// is the tensor, grid.x blocks stride over that tensor's elements.

// One tensor of an AdamW step. `copy` (may be 0) receives the updated parameters as bf16.
struct AdamWSlot {
    float *param;
    const void *grad;
    float *exp_avg;
    float *exp_avg_sq;
    bf16 *copy;
    long long count;
};

// torch.optim.AdamW (decoupled weight decay), per element, with g = grad * grad_scale:
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= step_size * m / (sqrt(v) / sqrt(bc2) + eps),  step_size = lr / bc1
struct AdamWHyper {
    float lr, beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt, grad_scale;
};

__device__ __forceinline__ void adamw_element(float &p, float g, float &m, float &v, const AdamWHyper &h) {
    g *= h.grad_scale;
    p *= 1.0f - h.lr * h.weight_decay;
    m = h.beta1 * m + (1.0f - h.beta1) * g;
    v = h.beta2 * v + (1.0f - h.beta2) * g * g;
    p -= h.step_size * (m / (sqrtf(v) / h.bias_correction2_sqrt + h.eps));
}

template <class G>
__device__ void adamw(const AdamWSlot *slots, AdamWHyper h) {
    const AdamWSlot s = slots[blockIdx.y];
    const G *grad = static_cast<const G *>(s.grad);
    const long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x, stride = (long long)gridDim.x * blockDim.x;
    const bool vectorized = ((unsigned long long)s.param | (unsigned long long)grad | (unsigned long long)s.exp_avg
                             | (unsigned long long)s.exp_avg_sq | (unsigned long long)s.copy) % 16 == 0;
    long long start = 0;
    if (vectorized) {
        const long long groups = s.count / 8;
        for (long long i = thread; i < groups; i += stride) {
            float p[8], g[8], m[8], v[8];
            load8(s.param + i * 8, p);
            load8(grad + i * 8, g);
            load8(s.exp_avg + i * 8, m);
            load8(s.exp_avg_sq + i * 8, v);
#pragma unroll
            for (int k = 0; k < 8; k++) adamw_element(p[k], g[k], m[k], v[k], h);
            store8(s.param + i * 8, p);
            store8(s.exp_avg + i * 8, m);
            store8(s.exp_avg_sq + i * 8, v);
            if (s.copy) store8(s.copy + i * 8, p);
        }
        start = groups * 8;
    }
    for (long long i = start + thread; i < s.count; i += stride) {
        float p = s.param[i], m = s.exp_avg[i], v = s.exp_avg_sq[i];
        adamw_element(p, to_float(grad[i]), m, v, h);
        s.param[i] = p;
        s.exp_avg[i] = m;
        s.exp_avg_sq[i] = v;
        if (s.copy) s.copy[i] = from_float<bf16>(p);
    }
}

#define ADAMW_KERNEL(SUFFIX, TYPE)                                                                         \
    extern "C" __global__ void adamw_##SUFFIX(const AdamWSlot *slots, float lr, float beta1, float beta2,  \
            float eps, float weight_decay, float step_size, float bias_correction2_sqrt, float grad_scale) { \
        adamw<TYPE>(slots, AdamWHyper{lr, beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt, grad_scale}); \
    }
FOR_EACH_FLOAT_TYPE(ADAMW_KERNEL)

// One tensor of a norm: fp32 values and their count.
struct NormSlot {
    const float *values;
    long long count;
};

// partials[2 * (tensor * gridDim.x + block)] = (sum of squares, count of non-finite values) of
// that block's grid-stride share of the tensor. Fixed shapes, fixed order: deterministic.
extern "C" __global__ void grad_norm_partials(float *partials, const NormSlot *slots) {
    const NormSlot s = slots[blockIdx.y];
    const long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x, stride = (long long)gridDim.x * blockDim.x;
    float2 acc = make_float2(0.0f, 0.0f);
    auto add = [&](float x) {
        acc.x += x * x;
        if (!isfinite(x)) acc.y += 1.0f;
    };
    long long start = 0;
    if ((unsigned long long)s.values % 16 == 0) {
        const long long groups = s.count / 4;
        for (long long i = thread; i < groups; i += stride) {
            const float4 v = reinterpret_cast<const float4 *>(s.values)[i];
            add(v.x); add(v.y); add(v.z); add(v.w);
        }
        start = groups * 4;
    }
    for (long long i = start + thread; i < s.count; i += stride) add(s.values[i]);
    acc = block_all_reduce(acc, Add2());
    if (threadIdx.x == 0) {
        const long long index = (long long)blockIdx.y * gridDim.x + blockIdx.x;
        partials[2 * index] = acc.x;
        partials[2 * index + 1] = acc.y;
    }
}

// out[0] = sqrt(sum of all squares) (inf / NaN when any value is), out[1] = 1 if any value is
// non-finite, else 0. One block; partials summed in fp64, in a fixed order.
extern "C" __global__ void grad_norm_final(float *out, const float *partials, int count) {
    double squares = 0.0, nonfinite = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        squares += partials[2 * i];
        nonfinite += partials[2 * i + 1];
    }
    squares = block_all_reduce(squares, Add());
    nonfinite = block_all_reduce(nonfinite, Add());
    if (threadIdx.x == 0) {
        out[0] = (float)sqrt(squares);
        out[1] = nonfinite > 0.0 ? 1.0f : 0.0f;
    }
}
