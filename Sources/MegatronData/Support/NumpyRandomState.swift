/// numpy's legacy `numpy.random.RandomState(seed)` for the calls Megatron's datasets make, bit for bit:
/// MT19937 seeded from an integer (numpy's `mt19937_seed`, the `init_genrand` rule) and `shuffle` of a
/// 1-D array (Fisher-Yates from the end, bounded draws by masking and rejection as `random_interval`).
///
/// ```swift
/// var rs = NumpyRandomState(seed: 1234)
/// var a = Array(0..<10)
/// rs.shuffle(&a)   // [7, 2, 9, 1, 0, 8, 4, 5, 6, 3], as numpy
/// ```
public struct NumpyRandomState: Sendable {
    private var state = [UInt32](repeating: 0, count: 624)
    private var position = 624

    public init(seed: UInt32) {
        state[0] = seed
        for i in 1..<624 {
            let previous = state[i - 1]
            state[i] = 1_812_433_253 &* (previous ^ (previous >> 30)) &+ UInt32(i)
        }
    }

    /// The next 32 tempered bits (numpy's `mt19937_next32`).
    public mutating func next32() -> UInt32 {
        if position == 624 { regenerate() }
        var y = state[position]
        position += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// Two draws, high word first (numpy's `mt19937_next64`).
    public mutating func next64() -> UInt64 {
        let high = UInt64(next32())
        return high << 32 | UInt64(next32())
    }

    /// A uniform integer in `0...max` (numpy's `random_interval`).
    public mutating func interval(_ max: UInt64) -> UInt64 {
        if max == 0 { return 0 }
        var mask = max
        mask |= mask >> 1
        mask |= mask >> 2
        mask |= mask >> 4
        mask |= mask >> 8
        mask |= mask >> 16
        mask |= mask >> 32
        if max <= 0xFFFF_FFFF {
            while true {
                let value = UInt64(next32()) & mask
                if value <= max { return value }
            }
        }
        while true {
            let value = next64() & mask
            if value <= max { return value }
        }
    }

    /// Shuffles in place exactly as `RandomState.shuffle` does a 1-D array.
    public mutating func shuffle<T>(_ values: inout [T]) {
        guard values.count > 1 else { return }
        for i in stride(from: values.count - 1, through: 1, by: -1) {
            let j = Int(interval(UInt64(i)))
            values.swapAt(i, j)
        }
    }

    private mutating func regenerate() {
        let upper: UInt32 = 0x8000_0000, lower: UInt32 = 0x7FFF_FFFF
        for i in 0..<624 {
            let y = (state[i] & upper) | (state[(i + 1) % 624] & lower)
            var next = state[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { next ^= 0x9908_B0DF }
            state[i] = next
        }
        position = 0
    }
}
