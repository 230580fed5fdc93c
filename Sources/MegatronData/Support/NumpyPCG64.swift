/// numpy's `numpy.random.default_rng(seed)` (SeedSequence → PCG64) for the one call Megatron's mock data
/// makes: `integers(low, high, size, dtype=int32)` with Lemire's bounded draw. Bit for bit as numpy.
struct NumpyPCG64 {
    private var stateHigh: UInt64 = 0, stateLow: UInt64 = 0
    private var incHigh: UInt64 = 0, incLow: UInt64 = 0
    private var buffered: UInt32? = nil
    private static let multiplierHigh: UInt64 = 0x2360_ED05_1FC6_5DA4
    private static let multiplierLow: UInt64 = 0x4385_DF64_9FCC_F645

    init(seed: UInt32) {
        let words = Self.seedSequenceState(entropy: seed, words: 8)
        let w64 = (0..<4).map { UInt64(words[2 * $0]) | UInt64(words[2 * $0 + 1]) << 32 }
        // pcg_setseq_128_srandom_r: inc = seq << 1 | 1; step; state += seed; step.
        incHigh = w64[2] << 1 | w64[3] >> 63
        incLow = w64[3] << 1 | 1
        step()
        let (low, carry) = stateLow.addingReportingOverflow(w64[1])
        stateLow = low
        stateHigh = stateHigh &+ w64[0] &+ (carry ? 1 : 0)
        step()
    }

    /// numpy's SeedSequence(entropy).generate_state(words, uint32) for a 32-bit integer entropy.
    static func seedSequenceState(entropy: UInt32, words: Int) -> [UInt32] {
        var hashConst: UInt32 = 0x43B0_D7E5
        func hashmix(_ value: UInt32) -> UInt32 {
            var v = value ^ hashConst
            hashConst = hashConst &* 0x931E_8875
            v = v &* hashConst
            return v ^ (v >> 16)
        }
        func mix(_ x: UInt32, _ y: UInt32) -> UInt32 {
            let r = 0xCA01_F9DD &* x &- 0x4973_F715 &* y
            return r ^ (r >> 16)
        }
        var pool = (0..<4).map { hashmix($0 == 0 ? entropy : 0) }
        for source in 0..<4 {
            for destination in 0..<4 where source != destination {
                pool[destination] = mix(pool[destination], hashmix(pool[source]))
            }
        }
        var constB: UInt32 = 0x8B51_F9DD
        return (0..<words).map { i in
            var v = pool[i % 4] ^ constB
            constB = constB &* 0x58F3_8DED
            v = v &* constB
            return v ^ (v >> 16)
        }
    }

    private mutating func step() {
        // state = state * multiplier + inc, modulo 2^128.
        let low = stateLow.multipliedFullWidth(by: Self.multiplierLow)
        let high = stateHigh &* Self.multiplierLow &+ stateLow &* Self.multiplierHigh &+ low.high
        let (newLow, carry) = low.low.addingReportingOverflow(incLow)
        stateLow = newLow
        stateHigh = high &+ incHigh &+ (carry ? 1 : 0)
    }

    mutating func next64() -> UInt64 {
        step()
        let x = stateHigh ^ stateLow
        let rotation = stateHigh >> 58
        return x >> rotation | x << ((64 - rotation) & 63)
    }

    /// Low half first, the high half kept for the next call (numpy's `pcg64_next32`).
    mutating func next32() -> UInt32 {
        if let b = buffered {
            buffered = nil
            return b
        }
        let n = next64()
        buffered = UInt32(truncatingIfNeeded: n >> 32)
        return UInt32(truncatingIfNeeded: n)
    }

    /// `integers(low, high)` for int32: `low + lemire(high - low - 1)`.
    mutating func integer(low: Int32, high: Int32) -> Int32 {
        let range = UInt32(high - low - 1)
        if range == 0 { return low }
        let exclusive = UInt64(range) + 1
        var m = UInt64(next32()) * exclusive
        var leftover = UInt32(truncatingIfNeeded: m)
        if UInt64(leftover) < exclusive {
            let threshold = UInt32((UInt64(UInt32.max) - UInt64(range)) % exclusive)
            while leftover < threshold {
                m = UInt64(next32()) * exclusive
                leftover = UInt32(truncatingIfNeeded: m)
            }
        }
        return low + Int32(m >> 32)
    }
}
