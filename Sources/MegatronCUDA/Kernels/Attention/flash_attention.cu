// Flash attention's kernels, forward and backward, for the program's head dim and types: the entry points over
// flash_attention_common.cuh, flash_attention_forward.cuh and flash_attention_backward.cuh, which the program puts in front.

#define FA_Q_ARGS(T) const T *q, long long q_b, long long q_g, long long q_p, long long q_s
#define FA_KV_ARGS(T)                                                                                  \
    const T *k, long long k_b, long long k_g, long long k_s, const T *v, long long v_b, long long v_g, long long v_s
#define FA_DO_ARGS(T) const T *dout, long long d_b, long long d_g, long long d_p, long long d_s
#define FA_FORWARD_PASS q, q_b, q_g, q_p, q_s, k, k_b, k_g, k_s, v, v_b, v_g, v_s
#define FA_BACKWARD_PASS FA_FORWARD_PASS, dout, d_b, d_g, d_p, d_s
// Every kernel takes the dropout arguments; those without dropout ignore them.
#define FA_DROPOUT_ARGS float dropout_p, float dropout_scale, unsigned long long philox_seed, unsigned long long philox_offset
#define FA_DROPOUT_PASS dropout_p, dropout_scale, philox_seed, philox_offset

// dK/dV (and with ATOMIC, dQ's fp32 accumulation) of one head dim under one name.
#define FA_DKDV_KERNEL(NAME, TYPE, D, MT, BQ, ATOMIC, DROPOUT)                                                    \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) NAME(                                                 \
        FA_Q_ARGS(TYPE), FA_KV_ARGS(TYPE), FA_DO_ARGS(TYPE), const float *lse, const float *delta, TYPE *dk,         \
        long long dk_b, long long dk_g, long long dk_s, TYPE *dv, long long dv_b, long long dv_g, long long dv_s,    \
        float *dq_acc, int groups, int per_group, int s, int t, float scale_log2, float scale, int causal,          \
        FA_DROPOUT_ARGS, int window) {                                                                             \
        flash_backward_dkdv<TYPE, D, MT, BQ, ATOMIC, DROPOUT>(FA_BACKWARD_PASS, lse, delta, dk, dk_b, dk_g, dk_s,    \
                                                              dv, dv_b, dv_g, dv_s, dq_acc, groups, per_group, s,   \
                                                              t, scale_log2, scale, causal, FA_DROPOUT_PASS, window); \
    }

// The forward, dK/dV, dK/dV + atomic dQ and dQ kernels of one head dim, named with VARIANT (empty or
// _dropout) after their role. Tiling: forward MT x BN, dK/dV MT x BQ, dQ MT x BN (see the kernels above).
#define FA_VARIANT_KERNELS(SUFFIX, TYPE, D, VARIANT, DROPOUT, F_MT, F_BN, KV_MT, KV_BQ, Q_MT, Q_BN)                \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_forward##VARIANT##_d##D##_##SUFFIX(             \
        FA_Q_ARGS(TYPE), FA_KV_ARGS(TYPE), TYPE *o, long long o_b, long long o_g, long long o_p, long long o_s,     \
        float *lse, int groups, int per_group, int s, int t, float scale_log2, int causal, FA_DROPOUT_ARGS,        \
        int window, const float *sinks) {                                                                          \
        flash_forward<TYPE, D, F_MT, F_BN, DROPOUT>(FA_FORWARD_PASS, o, o_b, o_g, o_p, o_s, lse, groups, per_group, \
                                                    s, t, scale_log2, causal, FA_DROPOUT_PASS, window, sinks);     \
    }                                                                                                              \
    FA_DKDV_KERNEL(flash_backward_dkdv##VARIANT##_d##D##_##SUFFIX, TYPE, D, KV_MT, KV_BQ, false, DROPOUT)           \
    FA_DKDV_KERNEL(flash_backward_dkdvdq##VARIANT##_d##D##_##SUFFIX, TYPE, D, KV_MT, KV_BQ, true, DROPOUT)          \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_backward_dq##VARIANT##_d##D##_##SUFFIX(         \
        FA_Q_ARGS(TYPE), FA_KV_ARGS(TYPE), FA_DO_ARGS(TYPE), const float *lse, const float *delta, TYPE *dq,         \
        long long dq_b, long long dq_g, long long dq_p, long long dq_s, int groups, int per_group, int s, int t,      \
        float scale_log2, float scale, int causal, FA_DROPOUT_ARGS, int window) {                                  \
        flash_backward_dq<TYPE, D, Q_MT, Q_BN, DROPOUT>(FA_BACKWARD_PASS, lse, delta, dq, dq_b, dq_g, dq_p, dq_s,    \
                                                        groups, per_group, s, t, scale_log2, scale, causal,         \
                                                        FA_DROPOUT_PASS, window);                                  \
    }

// One head dim's kernels of one type: both variants, and the delta and dQ-rounding passes (named for
// the head dim too, so every kernel of a program carries its program's d<D>_<type>).
#define FLASH_ATTENTION_KERNELS(SUFFIX, TYPE, D, F_MT, F_BN, KV_MT, KV_BQ, Q_MT, Q_BN)                             \
    FA_VARIANT_KERNELS(SUFFIX, TYPE, D, , false, F_MT, F_BN, KV_MT, KV_BQ, Q_MT, Q_BN)                             \
    FA_VARIANT_KERNELS(SUFFIX, TYPE, D, _dropout, true, F_MT, F_BN, KV_MT, KV_BQ, Q_MT, Q_BN)                      \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_backward_delta_d##D##_##SUFFIX(                 \
        const TYPE *o, long long o_b, long long o_g, long long o_p, long long o_s, FA_DO_ARGS(TYPE), float *delta, \
        int groups, int per_group, int s, int dim) {                                                               \
        flash_backward_delta<TYPE>(o, o_b, o_g, o_p, o_s, dout, d_b, d_g, d_p, d_s, delta, groups, per_group, s, dim); \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_backward_dq_finalize_d##D##_##SUFFIX(           \
        const float *dq_acc, TYPE *dq, long long q_b, long long q_g, long long q_p, long long q_s, int groups,       \
        int per_group, int s, int dim, float scale) {                                                              \
        flash_backward_dq_finalize<TYPE>(dq_acc, dq, q_b, q_g, q_p, q_s, groups, per_group, s, dim, scale);        \
    }

// What the program builds (CUDAKernels.programSource defines these before the file): the head dim,
// its tiling (forward MT, BN, dK/dV MT, BQ, dQ MT, BN; CUDAKernels.AttentionTiling) and the types.
#ifndef FA_HEAD_DIM
#define FA_HEAD_DIM 64
#endif
#ifndef FA_TILING
#define FA_TILING 2, 64, 2, 32, 2, 32
#endif
#ifndef FA_TYPES
#define FA_TYPES(MACRO) MACRO(bf16, bf16) MACRO(f16, f16)
#endif
#define FA_EXPAND(MACRO, ...) MACRO(__VA_ARGS__)
#define FA_TYPE_KERNELS(SUFFIX, TYPE) FA_EXPAND(FLASH_ATTENTION_KERNELS, SUFFIX, TYPE, FA_HEAD_DIM, FA_TILING)
FA_TYPES(FA_TYPE_KERNELS)
