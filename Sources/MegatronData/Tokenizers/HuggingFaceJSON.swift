import Foundation

/// Reads the parts of a Hugging Face `tokenizer.json` that a BPE tokenizer uses, refusing by name anything else.
enum HuggingFaceJSON {
    typealias Object = [String: Any]

    static func type(_ object: Object, _ role: String) throws -> String {
        guard let type = object["type"] as? String else { throw TokenizerError("tokenizer.json: \(role) has no type") }
        return type
    }

    static func unsupported(_ role: String, _ what: String) -> TokenizerError {
        TokenizerError("tokenizer.json: \(role) \(what) is not supported")
    }

    /// `normalizer`: Prepend, Replace (string pattern), NFC, NFKC, Lowercase, Sequence of those.
    static func normalizers(_ value: Any?) throws -> [Normalizer] {
        guard let object = value as? Object else { return [] }
        switch try type(object, "normalizer") {
        case "Sequence":
            return try (object["normalizers"] as? [Any] ?? []).flatMap { try normalizers($0) }
        case "Prepend":
            return [.prepend(Array((object["prepend"] as? String ?? "").utf8))]
        case "Replace":
            let (pattern, content) = try replacePattern(object, "normalizer")
            return [.replace(pattern: Array(pattern.utf8), content: Array(content.utf8))]
        case "NFC": return [.nfc]
        case "NFKC": return [.nfkc]
        case "Lowercase": return [.lowercase]
        case let other: throw unsupported("normalizer", other)
        }
    }

    private static func replacePattern(_ object: Object, _ role: String) throws -> (String, String) {
        guard let pattern = object["pattern"] as? Object, let string = pattern["String"] as? String else {
            throw unsupported(role, "Replace with a Regex pattern")
        }
        return (string, object["content"] as? String ?? "")
    }

    /// `pre_tokenizer`: ByteLevel, Split (a known regex, Isolated), Metaspace, Sequence of those.
    static func preTokenizer(_ value: Any?) throws -> PreTokenizer {
        var result = PreTokenizer()
        guard let object = value as? Object else { return result }
        try addPreTokenizer(object, to: &result)
        return result
    }

    private static func addPreTokenizer(_ object: Object, to result: inout PreTokenizer) throws {
        let kind = try type(object, "pre_tokenizer")
        let rewrites = kind == "Metaspace" || (kind == "ByteLevel" && object["add_prefix_space"] as? Bool == true)
        if rewrites && !result.splits.isEmpty {
            throw unsupported("pre_tokenizer", "\(kind) after a splitting pre-tokenizer")
        }
        switch kind {
        case "Sequence":
            for step in object["pretokenizers"] as? [Any] ?? [] {
                guard let step = step as? Object else { continue }
                try addPreTokenizer(step, to: &result)
            }
        case "ByteLevel":
            result.addPrefixSpace = object["add_prefix_space"] as? Bool ?? false
            if object["use_regex"] as? Bool ?? true { result.splits.append(.pattern(.gpt2)) }
        case "Split":
            guard let pattern = object["pattern"] as? Object, let regex = pattern["Regex"] as? String else {
                throw unsupported("pre_tokenizer", "Split without a Regex pattern")
            }
            guard let known = PreTokenizerPattern.matching(regex: regex) else {
                throw unsupported("pre_tokenizer", "Split regex \(regex)")
            }
            guard object["behavior"] as? String == "Isolated", object["invert"] as? Bool != true else {
                throw unsupported("pre_tokenizer", "Split behavior \(object["behavior"] ?? "nil") / invert")
            }
            result.splits.append(.pattern(known))
        case "Metaspace":
            let replacement = Array((object["replacement"] as? String ?? "\u{2581}").utf8)
            guard !replacement.isEmpty else { throw unsupported("pre_tokenizer", "Metaspace with an empty replacement") }
            result.metaspace = (replacement, try prependScheme(object))
            if object["split"] as? Bool ?? true { result.splits.append(.before(replacement)) }
        case let other:
            throw unsupported("pre_tokenizer", other)
        }
    }

    /// Metaspace's `prepend_scheme`, or the older `add_prefix_space`.
    static func prependScheme(_ object: Object) throws -> PreTokenizer.PrependScheme {
        switch object["prepend_scheme"] as? String {
        case "always": return .always
        case "first": return .first
        case "never": return .never
        case nil: return object["add_prefix_space"] as? Bool ?? true ? .always : .never
        case let other?: throw unsupported("Metaspace", "prepend_scheme \(other)")
        }
    }

    /// `decoder`: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence of those.
    static func decoder(_ value: Any?) throws -> [DecoderStep] {
        guard let object = value as? Object else { return [] }
        switch try type(object, "decoder") {
        case "Sequence":
            return try (object["decoders"] as? [Any] ?? []).flatMap { try decoder($0) }
        case "ByteLevel": return [.byteLevel]
        case "ByteFallback": return [.byteFallback]
        case "Fuse": return [.fuse]
        case "Replace":
            let (pattern, content) = try replacePattern(object, "decoder")
            return [.replace(pattern, content)]
        case "Strip":
            guard let content = (object["content"] as? String)?.first else {
                throw unsupported("decoder", "Strip without a content character")
            }
            return [.strip(content: content, start: object["start"] as? Int ?? 0, stop: object["stop"] as? Int ?? 0)]
        case "Metaspace":
            let replacement = (object["replacement"] as? String ?? "\u{2581}").first ?? "\u{2581}"
            return [.metaspace(replacement: replacement, prependFirst: try prependScheme(object) != .never)]
        case let other: throw unsupported("decoder", other)
        }
    }

    /// `post_processor`: the ids a single sequence gets before and after it (ByteLevel adds none).
    static func postProcessor(_ value: Any?) throws -> (prefix: [Int], suffix: [Int]) {
        guard let object = value as? Object else { return ([], []) }
        switch try type(object, "post_processor") {
        case "ByteLevel": return ([], [])
        case "Sequence":
            var prefix: [Int] = []
            var suffix: [Int] = []
            for step in object["processors"] as? [Any] ?? [] {
                let (p, s) = try postProcessor(step)
                prefix += p
                suffix = s + suffix
            }
            return (prefix, suffix)
        case "TemplateProcessing":
            return try template(object)
        case let other: throw unsupported("post_processor", other)
        }
    }

    /// `TemplateProcessing.single`: special tokens around `$A`.
    private static func template(_ object: Object) throws -> (prefix: [Int], suffix: [Int]) {
        let specials = object["special_tokens"] as? [String: Object] ?? [:]
        var prefix: [Int] = []
        var suffix: [Int] = []
        var seenSequence = false
        for piece in object["single"] as? [Object] ?? [] {
            if piece["Sequence"] != nil {
                seenSequence = true
            } else if let special = piece["SpecialToken"] as? Object, let name = special["id"] as? String {
                guard let ids = specials[name]?["ids"] as? [Int] else {
                    throw TokenizerError("tokenizer.json: TemplateProcessing names special token \(name) without ids")
                }
                for id in ids { _ = try TokenizerFile.checkedID(id, "TemplateProcessing special token \(name)") }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
        }
        return (prefix, suffix)
    }
}
