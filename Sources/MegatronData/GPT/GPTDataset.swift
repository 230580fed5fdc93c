import Foundation

/// Megatron's `GPTDataset`: fixed-length samples cut across shuffled documents of one split.
///
/// ```swift
/// let source = try IndexedDataset(pathPrefix: "my-gpt2_text_document")
/// let train = try GPTDataset(source: source, datasetPath: "my-gpt2_text_document", indices: 0..<source.sequenceCount,
///                            numSamples: 1000, split: .train, config: config)
/// let sample = train[0]   // tokens, labels, loss mask, position ids
/// ```
///
/// Indices are built as Megatron builds them (same seed → same samples in the same order) and cached in
/// Megatron's file layout; a cache written by either program is reused by the other.
public final class GPTDataset: @unchecked Sendable {
    public let source: any TokenSource
    public let datasetPath: String?
    public let indices: Range<Int>
    public let numSamples: Int?
    public let split: DatasetSplit
    public let config: GPTDatasetConfig
    public let indexes: GPTIndices
    /// Megatron's `unique_identifiers` of this dataset (a blend's description embeds them).
    public let uniqueIdentifiers: PythonJSON
    /// Megatron's `unique_description` (its MD5 names the cache files).
    public let uniqueDescription: String
    /// True when the indices came from existing cache files.
    public let loadedFromCache: Bool
    /// Set when cache files existed but did not fit the dataset (made for other `.bin/.idx` contents) and
    /// were rebuilt: a line for the log.
    public let cacheRebuildNote: String?

    public var uniqueDescriptionHash: String { MD5.hexDigest(uniqueDescription) }
    /// `len(dataset)`: the number of samples.
    public var count: Int { indexes.sampleCount }

    public init(source: any TokenSource, datasetPath: String?, indices: Range<Int>, numSamples: Int?,
                split: DatasetSplit, config: GPTDatasetConfig) throws {
        self.source = source
        self.datasetPath = datasetPath
        self.indices = indices
        self.numSamples = numSamples
        self.split = split
        self.config = config
        uniqueIdentifiers = try Self.description(datasetPath: datasetPath, numSamples: numSamples, split: split, config: config)
        let description = uniqueIdentifiers.dumps()
        uniqueDescription = description
        let plan = GPTIndexPlan(
            sequenceLengths: source.sequenceLengths, indices: indices, numSamples: numSamples,
            sequenceLength: config.sequenceLength, seed: config.randomSeed, addExtraToken: config.addExtraTokenToSequence,
            dropLastPartialSequence: split == .valid ? config.dropLastPartialValidationSequence : true,
            label: "GPTDataset \(split.name) split of \(datasetPath ?? "mock data")")
        let cache = Self.cacheDirectory(datasetPath: datasetPath, config: config).map {
            IndexCache(directory: $0, description: description, className: "GPTDataset", split: split)
        }
        let reuse = try cache?.reuse(["document_index", "sample_index", "shuffle_index"], load: Self.load,
                                     problem: plan.inconsistency)
        let cached = reuse?.value
        cacheRebuildNote = reuse?.rebuildNote
        loadedFromCache = cached != nil
        if let cached {
            indexes = cached
        } else {
            indexes = try plan.build()
            try cache?.save([
                ("document_index", NPYFile.Array(descr: "<i4", shape: [indexes.documentIndex.count], values: indexes.documentIndex.map(Int64.init))),
                ("sample_index", NPYFile.Array(descr: indexes.sampleIndexDType, shape: [indexes.sampleIndex.count / 2, 2], values: indexes.sampleIndex)),
                ("shuffle_index", NPYFile.Array(descr: indexes.shuffleIndexDType, shape: [indexes.shuffleIndex.count], values: indexes.shuffleIndex)),
            ])
        }
    }

    /// Megatron's `unique_identifiers` of a GPTDataset, in its key order.
    static func description(datasetPath: String?, numSamples: Int?, split: DatasetSplit, config: GPTDatasetConfig) throws -> PythonJSON {
        .object([
            ("class", .string(config.usesMockData ? "MockGPTDataset" : "GPTDataset")),
            ("dataset_path", datasetPath.map(PythonJSON.string) ?? .null),
            ("num_samples", numSamples.map(PythonJSON.int) ?? .null),
            ("index_split", .string(split.name)),
            ("random_seed", .int(config.randomSeed)),
            ("sequence_length", .int(config.sequenceLength)),
            ("split", config.effectiveSplit.map(PythonJSON.string) ?? .null),
            ("split_matrix", try config.splitMatrix()?.json ?? .null),
            ("tokenizer", config.tokenizer.identifiers),
        ])
    }

    /// `--data-cache-path`, else `<prefix>/cache/GPTDataset_indices`; mock data is never cached.
    static func cacheDirectory(datasetPath: String?, config: GPTDatasetConfig) -> String? {
        if config.usesMockData { return nil }
        if let dir = config.pathToCache { return dir }
        guard let datasetPath else { return nil }
        return ((datasetPath as NSString).appendingPathComponent("cache") as NSString).appendingPathComponent("GPTDataset_indices")
    }

    /// The cached arrays as read; whether they fit the dataset is `GPTIndexPlan.inconsistency`'s question.
    private static func load(_ cache: IndexCache) throws -> GPTIndices {
        let document = try cache.load("document_index")
        let sample = try cache.load("sample_index")
        let shuffle = try cache.load("shuffle_index")
        guard sample.shape.count == 2, sample.shape[1] == 2 else {
            throw DatasetError("\(cache.path("sample_index.npy")): expected shape [n, 2], found \(sample.shape)")
        }
        return GPTIndices(documentIndex: document.values.map { Int32(clamping: $0) }, sampleIndex: sample.values,
                          sampleIndexDType: sample.descr, shuffleIndex: shuffle.values, shuffleIndexDType: shuffle.descr)
    }

    /// The `S + add` raw tokens of sample `idx` after shuffling, padded with the pad id.
    public func text(_ idx: Int) -> [Int32] {
        var text = pieces(ofSample: idx).flatMap(\.tokens)
        let want = config.sequenceLength + (config.addExtraTokenToSequence ? 1 : 0)
        if text.count < want {
            text += [Int32](repeating: Int32(truncatingIfNeeded: config.tokenizer.padID), count: want - text.count)
        }
        return text
    }

    /// The raw tokens of sample `idx` (before padding), by the sequence of the dataset they come from.
    public func pieces(ofSample idx: Int) -> [SamplePiece] {
        let i = Int(indexes.shuffleIndex[idx])
        let (d0, o0) = (Int(indexes.sampleIndex[2 * i]), Int(indexes.sampleIndex[2 * i + 1]))
        let (d1, o1) = (Int(indexes.sampleIndex[2 * i + 2]), Int(indexes.sampleIndex[2 * i + 3]))
        let add = config.addExtraTokenToSequence ? 1 : 0
        return (d0...d1).map { d in
            let sequence = Int(indexes.documentIndex[d])
            let offset = d == d0 ? o0 : 0
            let end: Int? = d < d1 ? nil : o1 + add
            return SamplePiece(datasetPath: datasetPath, sequence: sequence,
                               tokens: source.sequence(sequence, offset: offset, length: end.map { $0 - offset }))
        }
    }

    /// Sample `idx`; `nil` gives Megatron's batch-padding sample (sample 0 with a zero loss mask).
    public func sample(_ idx: Int?) -> GPTSample {
        GPTSample.make(text: text(idx ?? 0), config: config, padID: config.tokenizer.padID, isPaddingSample: idx == nil)
    }

    public subscript(_ idx: Int) -> GPTSample { sample(idx) }
}

/// Tokens of one sample taken from one sequence of a dataset: where a bad token id is reported from.
public struct SamplePiece: Equatable, Sendable {
    /// The dataset prefix (nil for mock data).
    public var datasetPath: String?
    /// The sequence (document) of the dataset.
    public var sequence: Int
    public var tokens: [Int32]
}
