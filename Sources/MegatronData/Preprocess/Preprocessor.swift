import Foundation

/// Options of `megatron preprocess-data` (Megatron's `tools/preprocess_data.py` flags, plus `skipMalformed`).
public struct PreprocessOptions: Sendable {
    /// `--input`: JSONL files (`.gz` accepted), read in this order.
    public var inputs: [String]
    /// `--output-prefix`: outputs are `{prefix}_{key}_document.bin/.idx`.
    public var outputPrefix: String
    /// `--json-keys`.
    public var jsonKeys: [String] = ["text"]
    /// `--append-eod`.
    public var appendEOD = false
    /// `--workers`: tokenizing threads.
    public var workers: Int = ProcessInfo.processInfo.activeProcessorCount
    /// `--partitions`: Megatron deals lines round-robin into this many parts and concatenates the parts'
    /// outputs in part order; the same document order is reproduced here, in one process.
    public var partitions = 1
    /// `--keep-sequential-samples`: parts are contiguous blocks, which leaves the input order unchanged.
    public var keepSequentialSamples = false
    /// `--log-interval`: progress every this many documents.
    public var logInterval = 1000
    /// `--skip-malformed` (ours): skip and count bad lines instead of stopping at the first.
    public var skipMalformed = false

    public init(inputs: [String], outputPrefix: String) {
        self.inputs = inputs
        self.outputPrefix = outputPrefix
    }

    /// The `.bin`/`.idx` prefix written for `key`.
    public func outputPrefix(for key: String) -> String { "\(outputPrefix)_\(key)_document" }
}

/// What a preprocessing run did.
public struct PreprocessReport: Sendable {
    public var documents = 0
    public var bytes = 0
    public var seconds = 0.0
    public var skippedLines: [String] = []
    public var outputPrefixes: [String] = []

    public var documentsPerSecond: Double { seconds > 0 ? Double(documents) / seconds : 0 }
    public var megabytesPerSecond: Double { seconds > 0 ? Double(bytes) / seconds / 1024 / 1024 : 0 }
}

/// JSONL → Megatron indexed datasets, tokenizing on every worker thread while keeping input order.
///
/// ```swift
/// var options = PreprocessOptions(inputs: ["corpus.jsonl"], outputPrefix: "my-gpt2")
/// options.appendEOD = true
/// let report = try Preprocessor(options: options, tokenizer: tokenizer).run { print($0) }
/// // my-gpt2_text_document.bin / .idx
/// ```
///
/// Outputs are written under temporary names and renamed only when complete, so an interrupted run
/// never leaves a dataset that looks whole.
public struct Preprocessor {
    public let options: PreprocessOptions
    let encoder: DocumentEncoder
    let dtype: TokenDType
    /// Lines handed to a worker at a time.
    static let chunkLines = 16

    public init(options: PreprocessOptions, tokenizer: any Tokenizer) throws {
        guard !options.inputs.isEmpty else { throw DatasetError("preprocess-data: no --input file") }
        guard !options.jsonKeys.isEmpty else { throw DatasetError("preprocess-data: --json-keys is empty") }
        guard options.workers >= 1 else { throw DatasetError("preprocess-data: --workers must be at least 1") }
        guard options.partitions >= 1 else { throw DatasetError("preprocess-data: --partitions must be at least 1") }
        guard options.logInterval >= 1 else { throw DatasetError("preprocess-data: --log-interval must be at least 1") }
        self.options = options
        encoder = DocumentEncoder(tokenizer: tokenizer, jsonKeys: options.jsonKeys, appendEOD: options.appendEOD)
        dtype = .optimal(vocabSize: tokenizer.vocabSize)
    }

    /// Runs the whole conversion; `log` receives progress lines. Input with no document (empty files,
    /// blank lines only, or every line skipped as malformed) is an error, and nothing is written.
    public func run(log: (String) -> Void = { _ in }) throws -> PreprocessReport {
        try checkOutputDirectory()
        let token = "tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let roundRobin = options.partitions > 1 && !options.keepSequentialSamples
        let parts = roundRobin ? options.partitions : 1
        // Per key and part: a builder writing to temporary files.
        let partPrefixes = options.jsonKeys.map { key in
            (0..<parts).map { p in options.outputPrefix(for: key) + (parts > 1 ? ".part\(p)" : "") + "." + token }
        }
        var temporaries = partPrefixes.flatMap { $0 }.flatMap { [$0 + ".bin", $0 + ".idx"] }
        defer { for t in temporaries { unlink(t) } }
        let builders = try partPrefixes.map { try $0.map { try IndexedDatasetBuilder(binPath: $0 + ".bin", dtype: dtype) } }

        var report = PreprocessReport()
        let start = Date()
        var index = 0
        var skipped: [String] = []
        try forEachEncoded(&skipped) { document in
            for k in options.jsonKeys.indices {
                try builders[k][index % parts].addDocument(document.ids[k], lengths: document.lengths[k])
            }
            index += 1
            report.documents += 1
            report.bytes += document.bytes
            if report.documents % options.logInterval == 0 {
                let elapsed = Date().timeIntervalSince(start)
                log(String(format: "Processed %d documents (%.1f docs/s, %.2f MB/s).", report.documents,
                           Double(report.documents) / elapsed, Double(report.bytes) / elapsed / 1024 / 1024))
            }
        }
        report.skippedLines = skipped
        guard report.documents > 0 else {
            let inputs = options.inputs.joined(separator: ", ")
            throw DatasetError("--input \(inputs): no documents to write"
                + (skipped.isEmpty ? " (the input is empty or holds only blank lines)" : " (all \(skipped.count) lines were malformed and skipped)"))
        }
        for (k, key) in options.jsonKeys.enumerated() {
            for (p, builder) in builders[k].enumerated() { try builder.finalize(idxPath: partPrefixes[k][p] + ".idx") }
            let final = options.outputPrefix(for: key)
            var complete = partPrefixes[k][0]
            if parts > 1 {
                complete = final + "." + token
                temporaries += [complete + ".bin", complete + ".idx"]
                let merged = try IndexedDatasetBuilder(binPath: complete + ".bin", dtype: dtype)
                for prefix in partPrefixes[k] { try merged.addIndex(pathPrefix: prefix) }
                try merged.finalize(idxPath: complete + ".idx")
            }
            for ext in [".bin", ".idx"] {
                guard rename(complete + ext, final + ext) == 0 else {
                    throw DatasetError("cannot rename \(complete + ext) to \(final + ext): \(String(cString: strerror(errno)))")
                }
            }
            report.outputPrefixes.append(final)
        }
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// The directory `--output-prefix` writes into must exist and be writable: checked before reading any input.
    private func checkOutputDirectory() throws {
        let directory = (options.outputPrefix as NSString).deletingLastPathComponent
        let path = directory.isEmpty ? "." : directory
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError("--output-prefix \(options.outputPrefix): the directory \(path) does not exist; create it first")
        }
        guard access(path, W_OK) == 0 else {
            throw DatasetError("--output-prefix \(options.outputPrefix): the directory \(path) is not writable")
        }
    }

    /// Reads every input and hands the documents to `consume` in input order, while `workers` threads
    /// encode the chunks ahead of it. At most `workers × 4` chunks are in flight, so memory stays bounded.
    private func forEachEncoded(_ skipped: inout [String], _ consume: (EncodedDocument) throws -> Void) throws {
        let pipeline = EncodingPipeline(encoder: encoder, workers: options.workers)
        defer { pipeline.close() }
        let window = options.workers * 4
        var submitted = 0, consumed = 0
        func consumeNext() throws {
            for result in pipeline.take(consumed) {
                switch result {
                case .success(let document): try document.map(consume)
                case .failure(let error):
                    guard options.skipMalformed else { throw error }
                    skipped.append(error.description)
                }
            }
            consumed += 1
        }
        for path in options.inputs {
            let reader = try LineReader(path: path)
            while true {
                var lines: [(line: [UInt8], number: Int)] = []
                while lines.count < Self.chunkLines, let line = try reader.next() { lines.append((line, reader.lineNumber)) }
                if lines.isEmpty { break }
                pipeline.submit(EncodingPipeline.Chunk(sequence: submitted, path: path, lines: lines))
                submitted += 1
                if submitted - consumed >= window { try consumeNext() }
            }
        }
        while consumed < submitted { try consumeNext() }
    }
}

/// Worker threads that encode chunks of lines; results are collected by chunk sequence number.
private final class EncodingPipeline: @unchecked Sendable {
    struct Chunk {
        var sequence: Int
        var path: String
        var lines: [(line: [UInt8], number: Int)]
    }
    /// Per line: its document, nil for a blank line, or why it is malformed.
    typealias Results = [Result<EncodedDocument?, DatasetError>]

    private let condition = NSCondition()
    private var pending: [Chunk] = []
    private var done: [Int: Results] = [:]
    private var closed = false

    init(encoder: DocumentEncoder, workers: Int) {
        for _ in 0..<workers {
            let thread = Thread { [self] in
                while let chunk = nextChunk() {
                    let results: Results = chunk.lines.map { item in
                        Result { try encoder.encode(item.line, lineNumber: item.number, path: chunk.path) }.mapError {
                            $0 as? DatasetError ?? DatasetError("\(chunk.path) line \(item.number): \($0)")
                        }
                    }
                    condition.lock()
                    done[chunk.sequence] = results
                    condition.broadcast()
                    condition.unlock()
                }
            }
            thread.name = "megatron-preprocess-worker"
            thread.start()
        }
    }

    private func nextChunk() -> Chunk? {
        condition.lock()
        defer { condition.unlock() }
        while pending.isEmpty && !closed { condition.wait() }
        return closed ? nil : pending.removeFirst()
    }

    func submit(_ chunk: Chunk) {
        condition.lock()
        pending.append(chunk)
        condition.broadcast()
        condition.unlock()
    }

    /// Waits for chunk `sequence` and removes its results.
    func take(_ sequence: Int) -> Results {
        condition.lock()
        defer { condition.unlock() }
        while done[sequence] == nil { condition.wait() }
        return done.removeValue(forKey: sequence)!
    }

    /// Stops the workers (they finish the chunk in hand) and drops unstarted work.
    func close() {
        condition.lock()
        closed = true
        pending.removeAll()
        condition.broadcast()
        condition.unlock()
    }
}
