import Foundation

/// A tiktoken-style encoding: mergeable ranks, a pre-tokenization pattern and special tokens.
///
/// Encodes like `tiktoken.Encoding.encode(text, allowed_special="all")`: special tokens are cut out first, the
/// rest is split by the pattern, and each piece is looked up whole before it is merged.
///
/// ```swift
/// let cl100k = try TikTokenEncoding(rankFile: "cl100k_base.tiktoken", pattern: .cl100k,
///                                   specialTokens: [("<|endoftext|>", 100257)])
/// let ids = cl100k.encode("hello world")  // [15339, 1917]
/// ```
public struct TikTokenEncoding: Sendable {
    public let pattern: PreTokenizerPattern
    /// Number of mergeable ranks (ids `idOffset ..< idOffset + rankCount`).
    public let rankCount: Int
    /// Added to every rank to form an id (Megatron shifts ranks past its special tokens).
    public let idOffset: Int
    let model: BPEModel
    let specials: SpecialTokenMatcher
    private let rankBytes: [UInt8]
    private let rankStarts: [Int]
    private let specialText: [Int: [UInt8]]

    /// Reads `rankFile` (tiktoken text or Megatron's JSON list), keeping the first `maxRanks` ranks.
    public init(
        rankFile: String, pattern: PreTokenizerPattern, specialTokens: [(String, Int)] = [], idOffset: Int = 0,
        maxRanks: Int? = nil
    ) throws {
        var ranks = try TikTokenRankFile.read(rankFile)
        if let maxRanks, ranks.count > maxRanks { ranks.removeLast(ranks.count - maxRanks) }
        try self.init(ranks: ranks, pattern: pattern, specialTokens: specialTokens, idOffset: idOffset)
    }

    /// `ranks[i]` holds the bytes of rank `i`.
    public init(ranks: [[UInt8]], pattern: PreTokenizerPattern, specialTokens: [(String, Int)], idOffset: Int)
        throws
    {
        self.pattern = pattern
        self.rankCount = ranks.count
        self.idOffset = idOffset
        let table = ByteSequenceTable(ranks.enumerated().map { ($0.element, $0.offset) })
        guard table.count == ranks.count else { throw TokenizerError("the rank file repeats a token's bytes") }
        model = BPEModel(
            tokens: table, merges: TikTokenEncoding.pairMerges(ranks, table), alphabet: .bytes,
            wholePieceFirst: true)
        specials = SpecialTokenMatcher(specialTokens.map { ($0.0, $0.1) })
        var bytes: [UInt8] = []
        var starts = [0]
        for r in ranks {
            bytes += r
            starts.append(bytes.count)
        }
        rankBytes = bytes
        rankStarts = starts
        specialText = Dictionary(specialTokens.map { ($0.1, Array($0.0.utf8)) }, uniquingKeysWith: { a, _ in a })
    }

    /// tiktoken merges byte spans by the rank of their concatenation; as token-id pairs that is every split of a
    /// token into two tokens, with the token's own rank.
    private static func pairMerges(_ ranks: [[UInt8]], _ table: ByteSequenceTable) -> PairMergeTable {
        var merges: [(left: Int32, right: Int32, merged: Int32, rank: Int32)] = []
        merges.reserveCapacity(ranks.count * 4)
        for (rank, bytes) in ranks.enumerated() where bytes.count > 1 {
            bytes.withUnsafeBufferPointer { b in
                for cut in 1..<b.count {
                    guard let left = table.id(b.baseAddress!, cut),
                        let right = table.id(b.baseAddress! + cut, b.count - cut)
                    else { continue }
                    merges.append((left, right, Int32(rank), Int32(rank)))
                }
            }
        }
        return PairMergeTable(merges)
    }

    /// The ids of `text`, special tokens included.
    public func encode(_ text: String) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(text.utf8.count / 3)
        var scratch = BPEScratch(textBytes: text.utf8.count)
        text.withUTF8Buffer { bytes in
            specials.segment(
                bytes,
                ordinary: { range in
                    pattern.split(bytes, range: range) { piece in
                        model.encode(
                            bytes.baseAddress! + piece.lowerBound, piece.count, offset: idOffset, into: &out,
                            scratch: &scratch)
                    }
                },
                special: { out.append($0) })
        }
        return out
    }

    /// The bytes of one id, or nil when it is neither a rank nor a special token.
    public func bytes(of id: Int) -> ArraySlice<UInt8>? {
        let rank = id - idOffset
        if rank >= 0 && rank < rankCount { return rankBytes[rankStarts[rank]..<rankStarts[rank + 1]] }
        return specialText[id].map { $0[...] }
    }

    /// The text of `ids`; bytes that do not form UTF-8 become U+FFFD, unknown ids are skipped.
    public func decode(_ ids: [Int]) -> String {
        var bytes: [UInt8] = []
        for id in ids { if let b = self.bytes(of: id) { bytes += b } }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The two files that hold tiktoken ranks.
enum TikTokenRankFile {
    /// Megatron's JSON list (`.json`) or tiktoken's `base64 rank` lines; `result[i]` is rank `i`'s bytes.
    static func read(_ path: String) throws -> [[UInt8]] {
        let ranks = try path.hasSuffix(".json") ? readJSON(path) : readText(TokenizerFile.contents(path, flag: "--tokenizer-model"), path)
        guard !ranks.isEmpty else { throw TokenizerError("--tokenizer-model \(path) holds no ranks") }
        return ranks
    }

    /// `[{"rank": i, "token_bytes": base64, "token_str": ...}, ...]`, ranks in order, ranks < 256 single bytes.
    private static func readJSON(_ path: String) throws -> [[UInt8]] {
        guard let list = try TokenizerFile.json(path, flag: "--tokenizer-model") as? [[String: Any]] else {
            throw TokenizerError("\(path): expected a JSON list of {rank, token_bytes, token_str}")
        }
        return try list.enumerated().map { index, entry in
            guard let rank = entry["rank"] as? Int, let encoded = entry["token_bytes"] as? String,
                let bytes = Data(base64Encoded: encoded)
            else { throw TokenizerError("\(path): entry \(index) lacks an integer rank or base64 token_bytes") }
            guard rank == index else { throw TokenizerError("\(path): entry \(index) has rank \(rank)") }
            guard index >= 256 || Array(bytes) == [UInt8(index)] else {
                throw TokenizerError("\(path): rank \(index) < 256 must be the single byte \(index)")
            }
            return Array(bytes)
        }
    }

    /// Lines of `base64 rank`; ranks must be 0, 1, 2, ... in order.
    private static func readText(_ data: Data, _ path: String) throws -> [[UInt8]] {
        var result: [[UInt8]] = []
        for (number, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where !line.isEmpty {
            let fields = line.split(separator: UInt8(ascii: " "))
            guard fields.count == 2, let bytes = Data(base64Encoded: Data(fields[0])),
                let rank = Int(String(decoding: fields[1], as: UTF8.self))
            else { throw TokenizerError("\(path): line \(number + 1) is not `base64 rank`") }
            guard rank == result.count else {
                throw TokenizerError("\(path): line \(number + 1) has rank \(rank), expected \(result.count)")
            }
            result.append(Array(bytes))
        }
        return result
    }
}
