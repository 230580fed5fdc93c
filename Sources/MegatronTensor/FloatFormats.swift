/// Conversions between fp32 and the narrow floating-point storage formats, all rounding to nearest even.
///
/// bf16 is the top half of an fp32; fp8 follows the OCP formats as PyTorch's `float8_e4m3fn` (no infinities,
/// one NaN pattern per sign, max 448) and `float8_e5m2` (IEEE-like, max 57344); NaN is written as 0x7F / 0xFF in
/// both, as PyTorch writes it. Overflow gives NaN for e4m3 and infinity for e5m2 (PyTorch 2.13's CPU cast saturates
/// e4m3 instead, as the saturating `Ops.scaledCast` does: FP8ReferenceTests).
public enum FloatFormats {
    /// fp32 -> bf16 bits, round to nearest even; NaN stays a quiet NaN.
    @inline(__always)
    public static func bfloat16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
        let rounding = UInt32(0x7FFF) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    @inline(__always)
    public static func float(bfloat16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    @inline(__always)
    public static func float16Bits(_ x: Float) -> UInt16 { Float16(x).bitPattern }

    @inline(__always)
    public static func float(float16Bits bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

    /// fp32 -> fp8 with `exponentBits` / `mantissaBits`; e4m3fn when `hasInfinity` is false.
    static func float8Bits(_ x: Float, exponentBits: Int, mantissaBits: Int, hasInfinity: Bool) -> UInt8 {
        let sign: UInt8 = x.sign == .minus ? 0x80 : 0
        if x.isNaN { return sign | 0x7F }   // both formats' NaN code as PyTorch writes it
        let bias = (1 << (exponentBits - 1)) - 1
        let maxExponentField = hasInfinity ? (1 << exponentBits) - 2 : (1 << exponentBits) - 1
        let maxMantissaAtTop = hasInfinity ? (1 << mantissaBits) - 1 : (1 << mantissaBits) - 2
        let maxFinite = Float(sign: .plus, exponent: maxExponentField - bias,
                              significand: 1 + Float(maxMantissaAtTop) / Float(1 << mantissaBits))
        let overflow: UInt8 = hasInfinity ? 0x7C : 0x7F
        let a = abs(x)
        if a.isInfinite { return sign | overflow }
        // Quantize on the grid of the target's spacing at this magnitude, using fp32's own RNE.
        let minNormalExponent = 1 - bias
        let e = max(a == 0 ? minNormalExponent : Int(a.exponent), minNormalExponent)
        let spacing = Float(sign: .plus, exponent: e - mantissaBits, significand: 1)
        let q = (a / spacing).rounded(.toNearestOrEven) * spacing
        if q > maxFinite { return sign | overflow }
        if q == 0 { return sign }
        let qe = Int(q.exponent)
        if qe < minNormalExponent {
            let m = Int((q / Float(sign: .plus, exponent: minNormalExponent - mantissaBits, significand: 1)).rounded())
            return sign | UInt8(m)
        }
        let mantissa = Int(((q.significand - 1) * Float(1 << mantissaBits)).rounded())
        return sign | UInt8(((qe + bias) << mantissaBits) | mantissa)
    }

    static func float(float8Bits b: UInt8, exponentBits: Int, mantissaBits: Int, hasInfinity: Bool) -> Float {
        let negative = b & 0x80 != 0
        let field = Int(b & 0x7F)
        let exponentField = field >> mantissaBits
        let mantissa = field & ((1 << mantissaBits) - 1)
        let bias = (1 << (exponentBits - 1)) - 1
        let maxExponentField = (1 << exponentBits) - 1
        var value: Float
        if hasInfinity && exponentField == maxExponentField {
            value = mantissa == 0 ? .infinity : .nan
        } else if !hasInfinity && field == 0x7F {
            value = .nan
        } else if exponentField == 0 {
            value = Float(mantissa) * Float(sign: .plus, exponent: 1 - bias - mantissaBits, significand: 1)
        } else {
            value = Float(sign: .plus, exponent: exponentField - bias,
                          significand: 1 + Float(mantissa) / Float(1 << mantissaBits))
        }
        return negative ? -value : value
    }

    /// The largest finite value of a floating dtype (448 for e4m3, 57344 for e5m2); what saturating casts clamp to.
    public static func largestFinite(_ dtype: DType) -> Float {
        switch dtype {
        case .float8E4M3: 448
        case .float8E5M2: 57344
        case .float16: Float(Float16.greatestFiniteMagnitude)
        case .bfloat16: float(bfloat16Bits: 0x7F7F)
        default: .greatestFiniteMagnitude
        }
    }

    public static func float8E4M3Bits(_ x: Float) -> UInt8 {
        float8Bits(x, exponentBits: 4, mantissaBits: 3, hasInfinity: false)
    }
    public static func float(float8E4M3Bits b: UInt8) -> Float {
        float(float8Bits: b, exponentBits: 4, mantissaBits: 3, hasInfinity: false)
    }
    public static func float8E5M2Bits(_ x: Float) -> UInt8 {
        float8Bits(x, exponentBits: 5, mantissaBits: 2, hasInfinity: true)
    }
    public static func float(float8E5M2Bits b: UInt8) -> Float {
        float(float8Bits: b, exponentBits: 5, mantissaBits: 2, hasInfinity: true)
    }
}
