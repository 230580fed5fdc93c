/// A pre-tokenization regex of the GPT family, run by a hand-written scanner instead of a regex engine.
///
/// The regexes differ in a few choices (contractions, what may precede a word, digit grouping, what trails
/// punctuation, newline handling); each choice is a field here and `nextPieceEnd` follows the alternation order
/// of the regex, including the backtracking that `\s+(?!\S)` and the o200k letter classes imply.
///
/// ```swift
/// var pieces: [Range<Int>] = []
/// PreTokenizerPattern.cl100k.split(utf8Bytes) { pieces.append($0) }
/// ```
public struct PreTokenizerPattern: Sendable, Equatable {
    enum Contractions: Sendable { case none, caseSensitive, caseInsensitive }
    enum LetterPrefix: Sendable { case optionalSpace, anyNonLetterNonNumberNonNewline }
    enum LetterShape: Sendable { case run, caseSplit }

    let name: String
    let contractions: Contractions
    let letterPrefix: LetterPrefix
    let letterShape: LetterShape
    /// `\p{N}{1,maxDigits}`; GPT-2's ` ?\p{N}+` is `.max` with `spaceBeforeDigits`.
    let maxDigits: Int
    let spaceBeforeDigits: Bool
    /// What may trail a punctuation run: `[\r\n]*` (newlines) or `[\r\n/]*` (also slashes).
    let newlinesAfterPunctuation: Bool
    let slashesAfterPunctuation: Bool
    /// `\s*[\r\n]+`: a whitespace run ends after its last newline.
    let splitsAfterNewline: Bool
    /// o200k: a word may end in a contraction, `(?i:'s|'t|'re|'ve|'m|'ll|'d)?`.
    var contractionSuffix = false

    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    public static let gpt2 = PreTokenizerPattern(
        name: "gpt2", contractions: .caseSensitive, letterPrefix: .optionalSpace, letterShape: .run,
        maxDigits: .max, spaceBeforeDigits: true, newlinesAfterPunctuation: false, slashesAfterPunctuation: false,
        splitsAfterNewline: false)
    /// cl100k_base, also LLaMA-3's `Split` regex.
    public static let cl100k = PreTokenizerPattern(
        name: "cl100k", contractions: .caseInsensitive, letterPrefix: .anyNonLetterNonNumberNonNewline,
        letterShape: .run, maxDigits: 3, spaceBeforeDigits: false, newlinesAfterPunctuation: true,
        slashesAfterPunctuation: false, splitsAfterNewline: true)
    /// Qwen-2: cl100k with single digits.
    public static let qwen2 = PreTokenizerPattern(
        name: "qwen2", contractions: .caseInsensitive, letterPrefix: .anyNonLetterNonNumberNonNewline,
        letterShape: .run, maxDigits: 1, spaceBeforeDigits: false, newlinesAfterPunctuation: true,
        slashesAfterPunctuation: false, splitsAfterNewline: true)
    /// Megatron's `--tiktoken-pattern v1`.
    public static let megatronV1 = PreTokenizerPattern(
        name: "v1", contractions: .none, letterPrefix: .anyNonLetterNonNumberNonNewline, letterShape: .run,
        maxDigits: 1, spaceBeforeDigits: false, newlinesAfterPunctuation: true, slashesAfterPunctuation: false,
        splitsAfterNewline: true)
    /// Megatron's `--tiktoken-pattern v2` (o200k's letter classes, no contractions, single digits).
    public static let megatronV2 = PreTokenizerPattern(
        name: "v2", contractions: .none, letterPrefix: .anyNonLetterNonNumberNonNewline, letterShape: .caseSplit,
        maxDigits: 1, spaceBeforeDigits: false, newlinesAfterPunctuation: true, slashesAfterPunctuation: true,
        splitsAfterNewline: true)

    /// o200k_base: Megatron v2's letter classes with contraction suffixes and digits in threes.
    public static let o200k: PreTokenizerPattern = {
        var pattern = PreTokenizerPattern(
            name: "o200k", contractions: .none, letterPrefix: .anyNonLetterNonNumberNonNewline,
            letterShape: .caseSplit, maxDigits: 3, spaceBeforeDigits: false, newlinesAfterPunctuation: true,
            slashesAfterPunctuation: true, splitsAfterNewline: true)
        pattern.contractionSuffix = true
        return pattern
    }()

    /// The regex sources each pattern stands for, as tokenizer.json files spell them.
    static let knownRegexes: [(String, PreTokenizerPattern)] = [
        (#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#, .gpt2),
        (#"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, .cl100k),
        (#"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"#, .cl100k),
        (#"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, .qwen2),
        (#"[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"#, .megatronV1),
        (#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, .megatronV2),
        (#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, .o200k),
    ]

    /// The pattern a regex source stands for, or nil when it is not one of the known ones.
    public static func matching(regex: String) -> PreTokenizerPattern? {
        knownRegexes.first { $0.0 == regex }?.1
    }

    public static func == (a: PreTokenizerPattern, b: PreTokenizerPattern) -> Bool { a.name == b.name }

    /// Calls `body` with the byte range of each piece of `bytes[range]`, in order; the pieces tile the range.
    public func split(_ bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>, _ body: (Range<Int>) -> Void) {
        guard let base = bytes.baseAddress, !range.isEmpty else { return }
        let text = ScalarCursor(base: base, end: range.upperBound)
        var i = range.lowerBound
        while i < range.upperBound {
            let end = nextPieceEnd(text, i)
            body(i..<end)
            i = end
        }
    }

    /// The end of the regex match that starts at `i` (the regexes match at every position, so it is `> i`).
    func nextPieceEnd(_ text: ScalarCursor, _ i: Int) -> Int {
        let (value, afterFirst) = text.scalar(at: i)
        let cls = ScalarClass.of(value)
        if value == 0x27, contractions != .none, let end = contractionEnd(text, afterFirst) { return end }
        if let end = letterPieceEnd(text, i, value: value, cls: cls, afterFirst: afterFirst) { return end }
        if let end = numberPieceEnd(text, i, value: value, cls: cls, afterFirst: afterFirst) { return end }
        if let end = punctuationPieceEnd(text, i, value: value, cls: cls, afterFirst: afterFirst) { return end }
        return whitespacePieceEnd(text, i, afterFirst: afterFirst)
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, case-folded for cl100k-style patterns (`ſ` folds to `s`).
    private func contractionEnd(_ text: ScalarCursor, _ i: Int) -> Int? {
        guard i < text.end else { return nil }
        let folding = contractions == .caseInsensitive || contractionSuffix
        func fold(_ v: UInt32) -> UInt32 {
            guard folding else { return v }
            if v == 0x17F { return 0x73 }
            return (v >= 0x41 && v <= 0x5A) ? v + 0x20 : v
        }
        let (first, afterFirst) = text.scalar(at: i)
        switch fold(first) {
        case 0x73, 0x74, 0x6D, 0x64: return afterFirst  // s t m d
        case 0x72, 0x76, 0x6C:  // r v l: need e e l
            guard afterFirst < text.end else { return nil }
            let (second, afterSecond) = text.scalar(at: afterFirst)
            let want: UInt32 = fold(first) == 0x6C ? 0x6C : 0x65
            return fold(second) == want ? afterSecond : nil
        default: return nil
        }
    }

    /// The word alternatives: an optional prefix scalar, then letters (`\p{L}+` or o200k's two case shapes).
    private func letterPieceEnd(
        _ text: ScalarCursor, _ i: Int, value: UInt32, cls: ScalarClass, afterFirst: Int
    ) -> Int? {
        let prefixAllowed: Bool
        switch letterPrefix {
        case .optionalSpace: prefixAllowed = value == 0x20
        case .anyNonLetterNonNumberNonNewline: prefixAllowed = cls.isDisjoint(with: [.letter, .number, .newline])
        }
        switch letterShape {
        case .run:
            if cls.contains(.letter) { return text.run(from: i, .letter) }
            if prefixAllowed && text.classAt(afterFirst).cls.contains(.letter) {
                return text.run(from: afterFirst, .letter)
            }
            return nil
        case .caseSplit:
            let end: Int?
            if prefixAllowed, let e = upperThenLowerEnd(text, afterFirst) {
                end = e
            } else if let e = upperThenLowerEnd(text, i) {
                end = e
            } else if prefixAllowed, let e = upperRunThenLowerEnd(text, afterFirst) {
                end = e
            } else {
                end = upperRunThenLowerEnd(text, i)
            }
            return end.map(withContractionSuffix(text))
        }
    }

    /// o200k's optional contraction after a word.
    private func withContractionSuffix(_ text: ScalarCursor) -> (Int) -> Int {
        { end in
            guard contractionSuffix, end < text.end, text.base[end] == 0x27,
                let suffixEnd = contractionEnd(text, end + 1)
            else { return end }
            return suffixEnd
        }
    }

    /// `[upper]*[lower]+`, greedy with backtracking: the upper run gives back scalars until one is also lower.
    private func upperThenLowerEnd(_ text: ScalarCursor, _ p: Int) -> Int? {
        var lastLowerEnd: Int? = nil
        var j = p
        while j < text.end {
            let (c, n) = text.classAt(j)
            if !c.contains(.upperish) { break }
            if c.contains(.lowerish) { lastLowerEnd = n }
            j = n
        }
        if text.classAt(j).cls.contains(.lowerish) { return text.run(from: j, .lowerish) }
        return lastLowerEnd
    }

    /// `[upper]+[lower]*`.
    private func upperRunThenLowerEnd(_ text: ScalarCursor, _ p: Int) -> Int? {
        let j = text.run(from: p, .upperish)
        return j > p ? text.run(from: j, .lowerish) : nil
    }

    /// `\p{N}{1,n}`, or GPT-2's ` ?\p{N}+`.
    private func numberPieceEnd(
        _ text: ScalarCursor, _ i: Int, value: UInt32, cls: ScalarClass, afterFirst: Int
    ) -> Int? {
        if cls.contains(.number) { return text.run(from: i, .number, limit: maxDigits) }
        if spaceBeforeDigits && value == 0x20 && text.classAt(afterFirst).cls.contains(.number) {
            return text.run(from: afterFirst, .number, limit: maxDigits)
        }
        return nil
    }

    /// ` ?[^\s\p{L}\p{N}]+`, then `[\r\n]*` or `[\r\n/]*` where the pattern has it.
    private func punctuationPieceEnd(
        _ text: ScalarCursor, _ i: Int, value: UInt32, cls: ScalarClass, afterFirst: Int
    ) -> Int? {
        let start: Int
        if cls.isOther {
            start = i
        } else if value == 0x20 && afterFirst < text.end && text.classAt(afterFirst).cls.isOther {
            start = afterFirst
        } else {
            return nil
        }
        var end = text.otherRun(from: start)
        guard newlinesAfterPunctuation else { return end }
        while end < text.end {
            let b = text.base[end]
            guard b == 0x0A || b == 0x0D || (slashesAfterPunctuation && b == 0x2F) else { break }
            end += 1
        }
        return end
    }

    /// `\s*[\r\n]+` (where present), `\s+(?!\S)`, `\s+`: a whitespace run ends after its last newline, or keeps
    /// its last scalar back for the next word unless it reaches the end of the text.
    private func whitespacePieceEnd(_ text: ScalarCursor, _ i: Int, afterFirst: Int) -> Int {
        var j = i
        var lastStart = i
        var afterLastNewline: Int? = nil
        while j < text.end {
            let (c, n) = text.classAt(j)
            if !c.contains(.space) { break }
            if c.contains(.newline) { afterLastNewline = n }
            lastStart = j
            j = n
        }
        if j == i { return afterFirst }  // unreachable for valid classes; keeps the scan moving
        if splitsAfterNewline, let end = afterLastNewline { return end }
        if j == text.end || lastStart == i { return j }
        return lastStart
    }
}
