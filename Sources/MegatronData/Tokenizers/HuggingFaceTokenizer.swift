import Foundation

/// Megatron's `HuggingFaceTokenizer` for BPE `tokenizer.json` files: byte-level (GPT-2, LLaMA-3, Qwen-2) and
/// byte-fallback with metaspace (LLaMA-2, Mistral), with added tokens, normalizers, pre-tokenizers, the
/// post-processor's template and the decoder. Ids equal `tokenizers`' `Tokenizer.encode(text).ids`.
///
/// `eod` is the id of `eos_token` from `tokenizer_config.json` or `special_tokens_map.json` beside the file;
/// without them, of the first added special token among `<|endoftext|>`, `</s>`, `<|end_of_text|>`, `<eos>`.
///
/// ```swift
/// let tok = try HuggingFaceTokenizer(path: "/models/Meta-Llama-3-8B")  // a directory or its tokenizer.json
/// let ids = tok.encode("Hello")
/// ```
public struct HuggingFaceTokenizer: Tokenizer {
    let core: BPETokenizerCore
    public let vocabSize: Int
    public let eod: Int
    public let bos: Int?
    public let pad: Int?

    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError("--tokenizer-model \(path) does not exist")
        }
        let file = isDirectory.boolValue ? (path as NSString).appendingPathComponent("tokenizer.json") : path
        let directory = (file as NSString).deletingLastPathComponent
        guard let spec = try TokenizerFile.json(file, flag: "--tokenizer-model") as? [String: Any] else {
            throw TokenizerError("--tokenizer-model \(file) is not a tokenizer.json object")
        }
        do {
            try self.init(spec: spec, config: HuggingFaceTokenizer.specialTokenConfig(directory))
        } catch let error as TokenizerError {
            throw TokenizerError("\(file): \(error.description)")
        }
    }

    /// From a parsed `tokenizer.json` and the special-token names of its config (`eos_token`, ...).
    init(spec: [String: Any], config: [String: String]) throws {
        guard let model = spec["model"] as? [String: Any] else { throw TokenizerError("no model") }
        let added = try HuggingFaceTokenizer.addedTokens(spec["added_tokens"])
        let preTokenizer = try HuggingFaceJSON.preTokenizer(spec["pre_tokenizer"])
        let decoder = try HuggingFaceJSON.decoder(spec["decoder"])
        let byteLevel = HuggingFaceTokenizer.mentionsByteLevel(spec["pre_tokenizer"])
            || decoder.contains { if case .byteLevel = $0 { return true } else { return false } }
        let vocabulary = try HuggingFaceTokenizer.vocabulary(model, byteLevel: byteLevel)
        let post = try HuggingFaceJSON.postProcessor(spec["post_processor"])
        core = BPETokenizerCore(
            addedTokens: SpecialTokenMatcher(added.map { ($0.content, $0.id) }),
            normalizers: try HuggingFaceJSON.normalizers(spec["normalizer"]), preTokenizer: preTokenizer,
            model: try vocabulary.model(), prefixIds: post.prefix, suffixIds: post.suffix,
            tokenStrings: vocabulary.tokenStrings(added: added.map { ($0.content, $0.id) }), decoder: decoder)
        vocabSize = Set(vocabulary.vocab.values).union(added.map(\.id)).count
        func id(_ name: String?) -> Int? {
            guard let name else { return nil }
            return added.first { $0.content == name }?.id ?? vocabulary.vocab[name]
        }
        let fallbackEos = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"].first { name in
            added.contains { $0.content == name && $0.special }
        }
        guard let eod = id(config["eos_token"] ?? fallbackEos) else {
            throw TokenizerError("no eos_token: put a tokenizer_config.json with eos_token beside tokenizer.json")
        }
        self.eod = eod
        bos = id(config["bos_token"])
        pad = id(config["pad_token"])
    }

    public func encode(_ text: String) -> [Int] { core.encode(text) }
    public func decode(_ ids: [Int]) -> String { core.decode(ids) }

    struct AddedToken {
        let id: Int
        let content: String
        let special: Bool
    }

    /// `added_tokens`; stripping and single-word matching are refused rather than ignored.
    static func addedTokens(_ value: Any?) throws -> [AddedToken] {
        try (value as? [[String: Any]] ?? []).map { entry in
            guard let id = entry["id"] as? Int, let content = entry["content"] as? String else {
                throw TokenizerError("added_tokens entry without id and content")
            }
            _ = try TokenizerFile.checkedID(id, "added token \(content.debugDescription)")
            for flag in ["lstrip", "rstrip", "single_word"] where entry[flag] as? Bool == true {
                throw TokenizerError("added token \(content) has \(flag): true, which is not supported")
            }
            return AddedToken(id: id, content: content, special: entry["special"] as? Bool ?? false)
        }
    }

    private static func mentionsByteLevel(_ value: Any?) -> Bool {
        guard let object = value as? [String: Any] else { return false }
        if object["type"] as? String == "ByteLevel" { return true }
        return (object["pretokenizers"] as? [Any] ?? []).contains { mentionsByteLevel($0) }
    }

    /// The `model` section: BPE only, without dropout or word prefixes/suffixes.
    static func vocabulary(_ model: [String: Any], byteLevel: Bool) throws -> BPEVocabulary {
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw HuggingFaceJSON.unsupported("model", type) }
        if let dropout = model["dropout"], !(dropout is NSNull) {
            throw HuggingFaceJSON.unsupported("model", "BPE dropout")
        }
        for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = model[field] as? String, !value.isEmpty {
                throw HuggingFaceJSON.unsupported("model", "BPE \(field)")
            }
        }
        let vocab = try TokenizerFile.vocabulary(model["vocab"], "model.vocab")
        let merges: [(String, String)] = try (model["merges"] as? [Any] ?? []).map { merge in
            if let pair = merge as? [String], pair.count == 2 { return (pair[0], pair[1]) }
            if let line = merge as? String {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                if parts.count == 2 { return (String(parts[0]), String(parts[1])) }
            }
            throw TokenizerError("merge \(merge) is neither \"a b\" nor [a, b]")
        }
        var result = BPEVocabulary(vocab: vocab, merges: merges, byteLevel: byteLevel)
        result.byteFallback = model["byte_fallback"] as? Bool ?? false
        result.unknownToken = model["unk_token"] as? String
        result.fuseUnknown = model["fuse_unk"] as? Bool ?? false
        result.ignoreMerges = model["ignore_merges"] as? Bool ?? false
        return result
    }

    /// `bos_token`, `eos_token`, `pad_token` from `tokenizer_config.json`, else `special_tokens_map.json`.
    static func specialTokenConfig(_ directory: String) -> [String: String] {
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: path),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { continue }
            var result: [String: String] = [:]
            for key in ["bos_token", "eos_token", "pad_token"] {
                if let value = object[key] as? String {
                    result[key] = value
                } else if let value = (object[key] as? [String: Any])?["content"] as? String {
                    result[key] = value
                }
            }
            return result
        }
        return [:]
    }
}
