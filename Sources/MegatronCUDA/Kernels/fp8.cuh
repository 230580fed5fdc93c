// fp8 <-> fp32 conversions, shared by tensor_ops.cu (fp8 tensors in every generic op) and fp8.cu
// (scaled, vectorized casts). Prepended after common.cuh. Self-contained (bit casts and rintf only) so
// that a host test (FP8ConversionHostTests) compiles this file with a C++ compiler and checks it against
// the CPU's FloatFormats without a GPU.
#pragma once

// fp8 storage as PyTorch's float8_e4m3fn (E=4, M=3: no infinities, NaN = S.1111.111, max 448) and
// float8_e5m2 (E=5, M=2: IEEE-like, max 57344), converted exactly as the CPU's FloatFormats: round to
// nearest even; overflow gives NaN (e4m3) or infinity (e5m2); NaN keeps its sign. (Saturating casts
// clamp before converting, as the CPU does.)
template <int EXPONENT_BITS, int MANTISSA_BITS, bool HAS_INFINITY>
__device__ __forceinline__ unsigned char float_to_fp8(float x) {
    const int bias = (1 << (EXPONENT_BITS - 1)) - 1;
    const int min_normal_exponent = 1 - bias;
    const unsigned char nan_code = 0x7f;   // both formats' NaN code as PyTorch writes it (S.1111.111, S.11111.11)
    const unsigned char overflow_code = HAS_INFINITY ? 0x7c : 0x7f;
    const float max_finite = HAS_INFINITY ? 57344.0f : 448.0f;
    const unsigned int bits = __float_as_uint(x);
    const unsigned char sign = (unsigned char)((bits >> 24) & 0x80u);
    const unsigned int magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return sign | nan_code;
    if (magnitude == 0x7f800000u) return sign | overflow_code;
    // Round on the target's grid at this magnitude, spacing 2^(e - M) with e at least the smallest
    // normal exponent. Scaling by powers of two is exact, so rintf (ties to even) is the only rounding.
    int e = (int)(magnitude >> 23) - 127;
    if (e < min_normal_exponent) e = min_normal_exponent;
    const float inverse_spacing = __uint_as_float((unsigned int)(127 - e + MANTISSA_BITS) << 23);
    const float spacing = __uint_as_float((unsigned int)(127 + e - MANTISSA_BITS) << 23);
    const float q = rintf(__uint_as_float(magnitude) * inverse_spacing) * spacing;
    if (q > max_finite) return sign | overflow_code;
    if (q == 0.0f) return sign;
    const unsigned int q_bits = __float_as_uint(q);   // a normal fp32: q >= the smallest fp8 subnormal
    const int q_exponent = (int)(q_bits >> 23) - 127;
    if (q_exponent < min_normal_exponent) {
        // Subnormal: q is a whole multiple of the subnormal spacing 2^(min_normal_exponent - M).
        const float subnormal_units = __uint_as_float((unsigned int)(127 - min_normal_exponent + MANTISSA_BITS) << 23);
        return sign | (unsigned char)(q * subnormal_units);
    }
    const unsigned int mantissa = (q_bits >> (23 - MANTISSA_BITS)) & ((1u << MANTISSA_BITS) - 1u);
    return sign | (unsigned char)(((unsigned int)(q_exponent + bias) << MANTISSA_BITS) | mantissa);
}

// fp8 bits to fp32 (exact); NaN codes give the quiet NaN 0x7fc00000 with the code's sign, as the CPU.
template <int EXPONENT_BITS, int MANTISSA_BITS, bool HAS_INFINITY>
__device__ __forceinline__ float fp8_to_float(unsigned char code) {
    const int bias = (1 << (EXPONENT_BITS - 1)) - 1;
    const unsigned int sign = ((unsigned int)(code & 0x80u)) << 24;
    const int field = code & 0x7f;
    const int exponent_field = field >> MANTISSA_BITS;
    const int mantissa = field & ((1 << MANTISSA_BITS) - 1);
    unsigned int magnitude;
    if (HAS_INFINITY ? exponent_field == (1 << EXPONENT_BITS) - 1 : field == 0x7f) {
        magnitude = (HAS_INFINITY && mantissa == 0) ? 0x7f800000u : 0x7fc00000u;
    } else if (exponent_field == 0) {
        const float unit = __uint_as_float((unsigned int)(127 + 1 - bias - MANTISSA_BITS) << 23);
        magnitude = __float_as_uint((float)mantissa * unit);
    } else {
        magnitude = ((unsigned int)(exponent_field - bias + 127) << 23) | ((unsigned int)mantissa << (23 - MANTISSA_BITS));
    }
    return __uint_as_float(sign | magnitude);
}

__device__ __forceinline__ unsigned char float_to_e4m3(float x) { return float_to_fp8<4, 3, false>(x); }
__device__ __forceinline__ unsigned char float_to_e5m2(float x) { return float_to_fp8<5, 2, true>(x); }
__device__ __forceinline__ float e4m3_to_float(unsigned char code) { return fp8_to_float<4, 3, false>(code); }
__device__ __forceinline__ float e5m2_to_float(unsigned char code) { return fp8_to_float<5, 2, true>(code); }
