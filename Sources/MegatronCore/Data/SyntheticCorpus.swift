import MegatronTensor

/// A built-in English-like corpus with learnable structure, so training runs with no downloaded data.
///
/// Documents mix templated sentences (a small grammar with agreement), counting runs and sums with their
/// correct results: a model's loss falls quickly on the spelling and grammar and more slowly on the arithmetic.
///
/// ```swift
/// let docs = SyntheticCorpus.documents(count: 1000, seed: 1234)
/// ```
public enum SyntheticCorpus {
    static let subjects = ["the cat", "a dog", "the old man", "my sister", "the small bird", "our teacher",
                           "the farmer", "a young girl", "the robot", "every student"]
    static let verbs = ["sees", "likes", "finds", "carries", "paints", "follows", "remembers", "builds"]
    static let objects = ["a red ball", "the green door", "an apple", "the long road", "a wooden box",
                          "the bright star", "a quiet river", "the tall tree", "a blue cup", "the map"]
    static let places = ["in the garden", "at the market", "near the river", "on the hill", "in the kitchen",
                         "by the sea", "under the bridge", "at school"]
    static let times = ["every morning", "at night", "on sunday", "after lunch", "in winter", "today"]

    /// `count` documents drawn with `seed`; the same seed gives the same text everywhere.
    public static func documents(count: Int, seed: UInt64) -> [String] {
        var draw = Draw(seed: seed)
        return (0..<count).map { _ in document(&draw) }
    }

    static func document(_ draw: inout Draw) -> String {
        let sentences = 2 + draw.below(5)
        return (0..<sentences).map { _ -> String in
            switch draw.below(10) {
            case 0: counting(&draw)
            case 1, 2: sum(&draw)
            default: sentence(&draw)
            }
        }.joined(separator: " ")
    }

    static func sentence(_ draw: inout Draw) -> String {
        var words = [draw.pick(subjects), draw.pick(verbs), draw.pick(objects)]
        if draw.below(2) == 0 { words.append(draw.pick(places)) }
        if draw.below(3) == 0 { words.append(draw.pick(times)) }
        let text = words.joined(separator: " ") + "."
        return text.prefix(1).uppercased() + text.dropFirst()
    }

    static func counting(_ draw: inout Draw) -> String {
        let start = draw.below(20), step = 1 + draw.below(3)
        return "Count: " + (0..<6).map { String(start + $0 * step) }.joined(separator: ", ") + "."
    }

    static func sum(_ draw: inout Draw) -> String {
        let a = draw.below(50), b = draw.below(50)
        return "\(a) plus \(b) is \(a + b)."
    }

    /// A stream of small random integers from Philox, one block per draw.
    struct Draw {
        let seed: UInt64
        var counter: UInt64 = 0

        init(seed: UInt64) { self.seed = seed }

        mutating func below(_ n: Int) -> Int {
            defer { counter += 1 }
            let block = Philox.block(counter: (UInt32(truncatingIfNeeded: counter), UInt32(truncatingIfNeeded: counter >> 32), 0, 0),
                                     key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
            return Int(block.0 % UInt32(n))
        }

        mutating func pick(_ options: [String]) -> String { options[below(options.count)] }
    }
}

/// Bytes as tokens (0...255) with one end-of-document token (256): the embedded default's tokenizer.
public enum ByteTokens {
    public static let endOfDocument = 256
    public static let vocabularySize = 257

    public static func encode(_ text: String) -> [Int] { text.utf8.map(Int.init) }

    /// Text of the byte tokens, stopping at the first end-of-document; invalid UTF-8 is replaced.
    public static func decode(_ ids: [Int]) -> String {
        let bytes = ids.prefix { $0 != endOfDocument }.map { UInt8(clamping: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
