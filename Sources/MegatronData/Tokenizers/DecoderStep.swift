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
            let text = String(decoding: pending, as: UTF8.self)
            if text.utf8.elementsEqual(pending) {  // valid UTF-8 decodes without replacement characters
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
