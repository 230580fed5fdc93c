import Foundation

/// The text-side stages of a Hugging Face style tokenizer, as plain values.
///
/// `Normalizer` and `PreTokenizer` run before the model, `Decoder` after it; `HuggingFaceJSON` builds them from
/// `tokenizer.json` and names any component it does not support.
enum Normalizer: Sendable {
    case prepend([UInt8])
    case replace(pattern: [UInt8], content: [UInt8])
    case nfc
    case nfkc
    case lowercase

    /// Applies one step to a segment of text.
    func apply(_ bytes: [UInt8]) -> [UInt8] {
        switch self {
        case .prepend(let prefix): return bytes.isEmpty ? bytes : prefix + bytes
        case .replace(let pattern, let content): return replacing(bytes, pattern, content)
        case .nfc: return Array(String(decoding: bytes, as: UTF8.self).precomposedStringWithCanonicalMapping.utf8)
        case .nfkc: return Array(String(decoding: bytes, as: UTF8.self).precomposedStringWithCompatibilityMapping.utf8)
        case .lowercase: return Array(String(decoding: bytes, as: UTF8.self).lowercased().utf8)
        }
    }
}

/// Every occurrence of `pattern` in `bytes` replaced by `content`; on UTF-8 this replaces whole scalars.
func replacing(_ bytes: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
    guard !pattern.isEmpty, bytes.count >= pattern.count else { return bytes }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    while i < bytes.count {
        if bytes[i] == pattern[0] && i + pattern.count <= bytes.count
            && bytes[i..<(i + pattern.count)].elementsEqual(pattern)
        {
            out += content
            i += pattern.count
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    return out
}

/// How a segment is cut into the pieces the model sees.
struct PreTokenizer: Sendable {
    enum PrependScheme: Sendable { case always, first, never }
    enum Split: Sendable {
        case pattern(PreTokenizerPattern)
        /// Metaspace's split: a new piece starts at each replacement character.
        case before([UInt8])
    }

    /// ByteLevel's `add_prefix_space`: a space before a segment that does not start with one.
    var addPrefixSpace = false
    /// Metaspace: spaces become `replacement`, which is also prepended per `prepend`.
    var metaspace: (replacement: [UInt8], prepend: PrependScheme)? = nil
    var splits: [Split] = []

    /// True when the pre-tokenizer only splits, so the text's own bytes can be used without a copy.
    var onlySplits: Bool { !addPrefixSpace && metaspace == nil }

    /// The bytes after the prefix-space and metaspace rewrites; `isFirst` is whether the segment starts the text.
    func rewrite(_ bytes: [UInt8], isFirst: Bool) -> [UInt8] {
        var bytes = bytes
        if addPrefixSpace && bytes.first != 0x20 { bytes.insert(0x20, at: 0) }
        if let (replacement, prepend) = metaspace {
            bytes = replacing(bytes, [0x20], replacement)
            let wanted = prepend == .always || (prepend == .first && isFirst)
            if wanted && !bytes.starts(with: replacement) { bytes = replacement + bytes }
        }
        return bytes
    }

    /// Calls `body` with each piece of `bytes[range]`, applying the splits in order.
    func forEachPiece(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        split(bytes, range, level: 0, body)
    }

    private func split(
        _ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, level: Int, _ body: (Range<Int>) -> Void
    ) {
        guard level < splits.count else {
            if !range.isEmpty { body(range) }
            return
        }
        switch splits[level] {
        case .pattern(let pattern):
            if level == splits.count - 1 {
                pattern.split(bytes, range: range, body)
            } else {
                pattern.split(bytes, range: range) { split(bytes, $0, level: level + 1, body) }
            }
        case .before(let marker):
            var start = range.lowerBound
            var i = range.lowerBound + 1
            while i + marker.count <= range.upperBound {
                if bytes[i] == marker[0] && (0..<marker.count).allSatisfy({ bytes[i + $0] == marker[$0] }) {
                    split(bytes, start..<i, level: level + 1, body)
                    start = i
                    i += marker.count
                } else {
                    i += 1
                }
            }
            split(bytes, start..<range.upperBound, level: level + 1, body)
        }
    }
}

/// The steps of a Hugging Face decoder, applied to token strings in order.
enum DecoderStep: Sendable {
    case byteLevel
    case replace(String, String)
    case byteFallback
    case fuse
    case strip(content: Character, start: Int, stop: Int)
    case metaspace(replacement: Character, prependFirst: Bool)

    func apply(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            let bytes = tokens.flatMap { ByteLevelAlphabet.bytes(of: $0) ?? Array($0.utf8) }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { String(decoding: replacing(Array($0.utf8), Array(pattern.utf8), Array(content.utf8)), as: UTF8.self) }
        case .byteFallback:
            return DecoderStep.fuseByteTokens(tokens)
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                var chars = Array(token)
                var head = 0
                while head < start && head < chars.count && chars[head] == content { head += 1 }
                chars.removeFirst(head)
                var tail = 0
                while tail < stop && !chars.isEmpty && chars.last == content {
                    chars.removeLast()
                    tail += 1
                }
                return String(chars)
            }
        case .metaspace(let replacement, let prependFirst):
            return tokens.enumerated().map { index, token in
                var text = String(token.map { $0 == replacement ? " " : $0 })
                if index == 0 && prependFirst && text.first == " " { text.removeFirst() }
                return text
            }
        }
    }

    /// Runs of `<0xAB>` tokens become the text of their bytes, or one U+FFFD per byte when not UTF-8.
    private static func fuseByteTokens(_ tokens: [String]) -> [String] {
        var out: [String] = []
        var pending: [UInt8] = []
        func flush() {
            guard !pending.isEmpty else { return }
            if let text = String(validatingUTF8: pending.map { CChar(bitPattern: $0) } + [0]), !pending.contains(0) {
                out.append(text)
            } else {
                out.append(String(repeating: "\u{FFFD}", count: pending.count))
            }
            pending.removeAll()
        }
        for token in tokens {
            let utf8 = Array(token.utf8)
            if utf8.count == 6 && token.hasPrefix("<0x") && token.hasSuffix(">"),
                let byte = UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16)
            {
                pending.append(byte)
            } else {
                flush()
                out.append(token)
            }
        }
        flush()
        return out
    }
}
