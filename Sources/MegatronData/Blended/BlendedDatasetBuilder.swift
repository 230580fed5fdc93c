import Foundation

/// Megatron's `BlendedMegatronDatasetBuilder` for GPT: turns `--data-path` / `--split` (or the per-split
/// paths, or mock data) and the sample count each split needs into one dataset per split.
///
/// ```swift
/// var config = GPTDatasetConfig(sequenceLength: 1024, tokenizer: info)
/// config.blend = try DataBlend(arguments: ["30", "web_text_document", "70", "code_text_document"])
/// config.split = "969,30,1"
/// let (train, valid, test) = try BlendedDatasetBuilder(config: config, sizes: [80_000, 1_600, 160]).buildSplits()
/// ```
public struct BlendedDatasetBuilder {
    public var config: GPTDatasetConfig
    /// Samples wanted per split (train, valid, test); nil builds one epoch.
    public var sizes: [Int?]
    /// Opens a dataset prefix; tests and tools may substitute their own.
    public var open: (String) throws -> any TokenSource = { try IndexedDataset(pathPrefix: $0) }
    /// Receives a line when a cache that no longer fits its dataset is built again.
    public var log: (String) -> Void = { _ in }

    public init(config: GPTDatasetConfig, sizes: [Int?]) {
        precondition(sizes.count == 3, "one size per split (train, valid, test)")
        self.config = config
        self.sizes = sizes
    }

    /// The three splits; nil where a split is empty.
    public func buildSplits() throws -> (train: (any GPTSampleSource)?, valid: (any GPTSampleSource)?, test: (any GPTSampleSource)?) {
        let all = try build()
        return (all[0], all[1], all[2])
    }

    public func build() throws -> [(any GPTSampleSource)?] {
        if config.usesMockData {
            let source = MockGPTLowLevelDataset(vocabSize: config.tokenizer.vocabSize, eod: config.tokenizer.eod)
            return try datasetSplits(source: source, path: nil, matrix: try SplitMatrix(parsing: "1,1,1"), sizes: sizes)
        }
        if let blend = config.blend {
            let matrix = try config.splitMatrix() ?? SplitMatrix(parsing: "969, 30, 1")
            return try blended(blend, matrix: matrix, sizes: sizes)
        }
        let perSplit = config.blendPerSplit ?? []
        return try DatasetSplit.allCases.map { split -> (any GPTSampleSource)? in
            guard split.rawValue < perSplit.count, let blend = perSplit[split.rawValue] else { return nil }
            var bookends: [(low: Double, high: Double)?] = [nil, nil, nil]
            bookends[split.rawValue] = (0.0, 1.0)
            var spoofSizes: [Int?] = [0, 0, 0]
            spoofSizes[split.rawValue] = sizes[split.rawValue]
            return try blended(blend, matrix: SplitMatrix(bookends: bookends), sizes: spoofSizes)[split.rawValue]
        }
    }

    private func blended(_ blend: DataBlend, matrix: SplitMatrix, sizes: [Int?]) throws -> [(any GPTSampleSource)?] {
        let weights = blend.weights.map(NumpySum.normalize)
        if blend.prefixes.count == 1 && weights == nil {
            return try datasetSplits(source: open(blend.prefixes[0]), path: blend.prefixes[0], matrix: matrix, sizes: sizes)
        }
        if let weights, blend.prefixes.count != weights.count {
            throw DatasetError("--data-path: \(blend.prefixes.count) prefixes but \(weights.count) weights")
        }
        var targets: [[Int?]]? = nil
        var mids: [[GPTDataset?]] = []
        if let weights {
            for (i, size) in sizes.enumerated() where size == nil && matrix.bookends[i] != nil {
                throw DatasetError("weighted --data-path needs a sample count for the \(DatasetSplit(rawValue: i)!.name) split")
            }
            targets = weights.map { w in sizes.map { $0.map { Int((Double($0) * w).rounded(.up)) } } }
            let surplus = config.midLevelDatasetSurplus
            for (i, prefix) in blend.prefixes.enumerated() {
                let buffered = targets![i].map { $0.map { Int((Double($0) * (1 + surplus)).rounded(.up)) } }
                mids.append(try datasetSplits(source: open(prefix), path: prefix, matrix: matrix, sizes: buffered).map { $0 as? GPTDataset })
            }
        } else {
            for prefix in blend.prefixes {
                mids.append(try datasetSplits(source: open(prefix), path: prefix, matrix: matrix, sizes: [nil, nil, nil]).map { $0 as? GPTDataset })
            }
        }
        return try DatasetSplit.allCases.map { split -> (any GPTSampleSource)? in
            let s = split.rawValue
            guard matrix.bookends[s] != nil else { return nil }
            let parts = mids.map { $0[s]! }
            let blend: BlendedDataset
            if let weights, let targets {
                blend = try BlendedDataset(datasets: parts, weights: weights, size: targets.reduce(0) { $0 + ($1[s] ?? 0) },
                                           cacheDirectory: config.pathToCache)
            } else {
                let lengths = parts.map { Double($0.count) }
                let size = sizes[s].map { min($0, parts.reduce(0) { $0 + $1.count }) }
                blend = try BlendedDataset(datasets: parts, weights: lengths, size: size, cacheDirectory: config.pathToCache)
            }
            blend.cacheRebuildNote.map(log)
            return blend
        }
    }

    /// Megatron's `_build_megatron_dataset_splits`: one GPTDataset per non-empty split of one source.
    private func datasetSplits(source: any TokenSource, path: String?, matrix: SplitMatrix, sizes: [Int?]) throws -> [(any GPTSampleSource)?] {
        let n = source.sequenceCount
        return try DatasetSplit.allCases.map { split -> (any GPTSampleSource)? in
            guard let range = matrix.range(split, count: n) else { return nil }
            let dataset = try GPTDataset(source: source, datasetPath: path, indices: range, numSamples: sizes[split.rawValue],
                                         split: split, config: config)
            dataset.cacheRebuildNote.map(log)
            return dataset
        }
    }
}
