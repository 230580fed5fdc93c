import Foundation

/// A `tokenizer.json` normalizer step, run on each stretch of text between added tokens before pre-tokenizing.
/// `HuggingFaceJSON` builds the steps and names any normalizer it does not support.
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
