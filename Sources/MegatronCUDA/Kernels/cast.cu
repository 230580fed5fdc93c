// Casts between fp32, bf16 and fp16, rounding to nearest even (NaN stays NaN), 8 elements per
// step with 16-byte accesses when both pointers are 16-byte aligned.

#define CAST_KERNEL(FROM_SUFFIX, FROM, TO_SUFFIX, TO)                                                           \
    extern "C" __global__ void cast_##FROM_SUFFIX##_##TO_SUFFIX(TO *out, const FROM *in, long long n, int vec) { \
        map_unary(out, in, n, vec, [](float v) { return v; });                                                  \
    }
CAST_KERNEL(f32, float, bf16, bf16)
CAST_KERNEL(f32, float, f16, f16)
CAST_KERNEL(bf16, bf16, f32, float)
CAST_KERNEL(f16, f16, f32, float)
CAST_KERNEL(bf16, bf16, f16, f16)
CAST_KERNEL(f16, f16, bf16, bf16)
