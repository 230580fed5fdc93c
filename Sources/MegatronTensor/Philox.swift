import Foundation

/// Counter-based random numbers (Philox-4x32-10), so a seeded tensor is the same on every device.
///
/// Element `i` of a draw at generator offset `o` comes from block `i / 4` (uniform) or `i / 2` (normal) of
/// the counter `(block, o)` under the key `seed`: any kernel on any device computes it independently.
///
/// ```swift
/// let gen = PhiloxGenerator(seed: 1234)
/// let w = Tensor.normal([256, 256], std: 0.02, generator: gen)
/// ```
public final class PhiloxGenerator: @unchecked Sendable {
    public let seed: UInt64
    /// Advances by one for every draw, so consecutive draws use disjoint counters.
    public var offset: UInt64

    public init(seed: UInt64, offset: UInt64 = 0) {
        self.seed = seed
        self.offset = offset
    }

    /// Returns the offset for a new draw and moves past it.
    public func nextOffset() -> UInt64 {
        defer { offset += 1 }
        return offset
    }
}

public enum Philox {
    /// The four 32-bit outputs of Philox-4x32-10 for `counter` and `key`.
    @inline(__always)
    public static func block(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32))
        -> (UInt32, UInt32, UInt32, UInt32)
    {
        var c = counter
        var k = key
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c.0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c.2)
            c = (UInt32(truncatingIfNeeded: p1 >> 32) ^ c.1 ^ k.0, UInt32(truncatingIfNeeded: p1),
                 UInt32(truncatingIfNeeded: p0 >> 32) ^ c.3 ^ k.1, UInt32(truncatingIfNeeded: p0))
            k = (k.0 &+ 0x9E37_79B9, k.1 &+ 0xBB67_AE85)
        }
        return c
    }

    @inline(__always)
    static func block(seed: UInt64, offset: UInt64, index: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        block(counter: (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                        UInt32(truncatingIfNeeded: offset), UInt32(truncatingIfNeeded: offset >> 32)),
              key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
    }

    /// Maps 32 random bits to a uniform Float in [0, 1) with 24 bits of precision.
    @inline(__always)
    public static func unit(_ bits: UInt32) -> Float { Float(bits >> 8) * (1.0 / 16_777_216.0) }

    /// Fills `out` with uniform [0, 1) values for draw (`seed`, `offset`).
    public static func fillUniform(_ out: UnsafeMutableBufferPointer<Float>, seed: UInt64, offset: UInt64) {
        parallelChunks((out.count + 3) / 4, grain: 4096) { blocks in
            for b in blocks {
                let r = block(seed: seed, offset: offset, index: UInt64(b))
                let base = b * 4
                out[base] = unit(r.0)
                if base + 1 < out.count { out[base + 1] = unit(r.1) }
                if base + 2 < out.count { out[base + 2] = unit(r.2) }
                if base + 3 < out.count { out[base + 3] = unit(r.3) }
            }
        }
    }

    /// Fills `out` with standard normal values (Box-Muller on the first two words of each block).
    public static func fillNormal(_ out: UnsafeMutableBufferPointer<Float>, seed: UInt64, offset: UInt64) {
        parallelChunks((out.count + 1) / 2, grain: 4096) { pairs in
            for p in pairs {
                let r = block(seed: seed, offset: offset, index: UInt64(p))
                // 1 - u keeps the logarithm's argument in (0, 1].
                let u1 = 1 - unit(r.0), u2 = unit(r.1)
                let radius = (-2 * log(u1)).squareRoot()
                let angle = 2 * Float.pi * u2
                out[p * 2] = radius * cos(angle)
                if p * 2 + 1 < out.count { out[p * 2 + 1] = radius * sin(angle) }
            }
        }
    }
}
