@testable import MegatronData

/// Random and mutated file contents from a fixed seed, for the reader fuzz tests: every input must end in a
/// thrown error or a valid result, never a trap or a read past the file.
struct FuzzInputs {
    private var random: NumpyPCG64

    init(seed: UInt32) { random = NumpyPCG64(seed: seed) }

    /// A number in `0..<n`.
    mutating func below(_ n: Int) -> Int { Int(random.next64() % UInt64(max(n, 1))) }

    /// `count` random bytes.
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next64()) } }

    /// Values a crafted length or count field takes: the edges of each integer width, and near misses.
    mutating func extremeValue(near value: UInt64) -> UInt64 {
        let choices: [UInt64] = [0, 1, value &+ 1, value &- 1, value &* 2, UInt64(Int32.max), 1 << 31, 1 << 32,
                                 UInt64(Int64.max), UInt64.max, UInt64.max - 7, random.next64()]
        return choices[below(choices.count)]
    }

    /// `input` with one to three mutations: bit flips, a truncation, bytes appended, a run overwritten with
    /// random bytes, or one of the little-endian 8-byte `fields` (offsets of lengths and counts) set to an
    /// extreme value.
    mutating func mutated(_ input: [UInt8], fields: [Int] = []) -> [UInt8] {
        var out = input
        for _ in 0...below(3) {
            switch below(fields.isEmpty ? 5 : 7) {
            case 0:
                for _ in 0...below(4) where !out.isEmpty { out[below(out.count)] ^= 1 << UInt8(below(8)) }
            case 1:
                out.removeLast(below(out.count + 1))
            case 2:
                out += bytes(1 + below(16))
            case 3:
                guard !out.isEmpty else { continue }
                let start = below(out.count)
                let run = bytes(min(1 + below(12), out.count - start))
                out.replaceSubrange(start..<(start + run.count), with: run)
            case 4:
                out = bytes(below(out.count + 1))
            default:
                let field = fields[below(fields.count)]
                guard field + 8 <= out.count else { continue }
                let old = out[field..<(field + 8)].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
                let value = extremeValue(near: old)
                for b in 0..<8 { out[field + b] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(b))) }
            }
        }
        return out
    }
}
