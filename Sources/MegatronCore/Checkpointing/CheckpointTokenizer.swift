import Foundation
import MegatronData

/// The tokenizer a checkpoint records, so that `generate` needs no tokenizer flags.
///
/// Two records are read. A conversion from Hugging Face copies `tokenizer.json` and its special-token
/// configs into the checkpoint's `tokenizer/` folder and records `"tokenizer": {"tokenizer_type":
/// "HuggingFaceTokenizer", "tokenizer_model": "tokenizer"}` in the manifest, the path relative to the
/// checkpoint's root, so the checkpoint stands alone. A `pretrain-gpt` checkpoint records the run's
/// arguments (`args`): its `--tokenizer-type` and tokenizer files, as the run named them.
///
/// ```swift
/// let loaded = try GPTCheckpoint.load(from: store)
/// if let options = try CheckpointTokenizer.options(recordedIn: loaded.manifest, root: store.root) {
///     let tokenizer = try buildTokenizer(options)
/// }
/// ```
public enum CheckpointTokenizer {
    /// The folder, under a checkpoint's root, that holds a converted model's tokenizer files.
    public static let folderName = "tokenizer"
    /// What a Hugging Face tokenizer is made of: `tokenizer.json` and the files naming its special tokens.
    static let huggingFaceFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

    /// Copies the Hugging Face tokenizer files of `source` that exist into `target`; false when `source`
    /// has no `tokenizer.json` (nothing is copied then).
    @discardableResult
    public static func copyHuggingFaceFiles(from source: URL, to target: URL) throws -> Bool {
        let fm = FileManager.default
        guard fm.fileExists(atPath: source.appendingPathComponent("tokenizer.json").path) else { return false }
        try fm.createDirectory(at: target, withIntermediateDirectories: true)
        for name in huggingFaceFiles where fm.fileExists(atPath: source.appendingPathComponent(name).path) {
            guard let data = fm.contents(atPath: source.appendingPathComponent(name).path) else {
                throw CheckpointError("\(source.appendingPathComponent(name).path): cannot read the tokenizer file")
            }
            try AtomicFile.write(data, to: target.appendingPathComponent(name))
        }
        return true
    }

    /// Copies the tokenizer of the Hugging Face directory `source` into `root/tokenizer/` and returns the
    /// record of it for the manifest, or nil (copying nothing) when `source` has no `tokenizer.json`.
    public static func recordHuggingFaceTokenizer(from source: URL, checkpointRoot root: URL) throws
        -> CheckpointManifest.RecordedTokenizer? {
        guard try copyHuggingFaceFiles(from: source, to: root.appendingPathComponent(folderName)) else { return nil }
        return CheckpointManifest.RecordedTokenizer(tokenizerType: TokenizerOptions.Kind.huggingFace.rawValue, tokenizerModel: folderName)
    }

    /// The folder holding the tokenizer files the manifest records as copied into the checkpoint, if any.
    public static func huggingFaceFolder(recordedIn manifest: CheckpointManifest, root: URL) -> URL? {
        guard let entry = manifest.tokenizer, entry.tokenizerType == TokenizerOptions.Kind.huggingFace.rawValue,
              let model = entry.tokenizerModel
        else { return nil }
        return root.appendingPathComponent(model)
    }

    /// The tokenizer options the checkpoint records (paths resolved), or nil when it records none (a run on
    /// the embedded corpus). Throws, naming the file, when a recorded file is gone.
    public static func options(recordedIn manifest: CheckpointManifest, root: URL) throws -> TokenizerOptions? {
        if let entry = manifest.tokenizer {
            return try options(type: entry.tokenizerType, files: (entry.vocabFile, entry.mergeFile, entry.tokenizerModel),
                               vocabSize: entry.vocabSize, relativeTo: root, source: "tokenizer of \(root.path)")
        }
        if let args = manifest.args, let type = args["tokenizerType"]?.string {
            let files = (args["vocabFile"]?.string, args["mergeFile"]?.string, args["tokenizerModel"]?.string)
            var recorded = try options(type: type, files: files, vocabSize: args["vocabSize"]?.int, relativeTo: nil,
                                       source: "args of \(root.path)")
            recorded.tiktokenPattern = args["tiktokenPattern"]?.string
            if let count = args["tiktokenNumSpecialTokens"]?.int { recorded.tiktokenNumSpecialTokens = count }
            return recorded
        }
        return nil
    }

    private static func options(type name: String, files: (vocab: String?, merges: String?, model: String?),
                                vocabSize: Int?, relativeTo root: URL?, source: String) throws -> TokenizerOptions {
        guard let kind = TokenizerOptions.Kind(rawValue: name) else {
            throw CheckpointError("\(source): records tokenizer type \(name), which this build does not know (\(TokenizerOptions.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        func path(_ recorded: String?) throws -> String? {
            guard let recorded else { return nil }
            let resolved = root.map { $0.appendingPathComponent(recorded).path } ?? recorded
            guard FileManager.default.fileExists(atPath: resolved) else {
                throw CheckpointError("\(source): the recorded tokenizer file \(resolved) does not exist; give the tokenizer flags (--tokenizer-type and its files)")
            }
            return resolved
        }
        return TokenizerOptions(type: kind, vocabFile: try path(files.vocab), mergeFile: try path(files.merges),
                                tokenizerModel: try path(files.model), vocabSize: vocabSize)
    }
}
