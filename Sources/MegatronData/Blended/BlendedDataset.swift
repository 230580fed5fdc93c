import Foundation

/// A sample source the data loader can draw from: a GPTDataset or a blend of them.
public protocol GPTSampleSource: AnyObject, Sendable {
    /// Number of samples.
    var count: Int { get }
    /// Sample `idx`; `nil` gives a batch-padding sample with a zero loss mask.
    func sample(_ idx: Int?) -> GPTSample
    /// The raw tokens of sample `idx` by the dataset sequence they come from (for error messages).
    func pieces(ofSample idx: Int) -> [SamplePiece]
}

extension GPTDataset: GPTSampleSource {}

/// Megatron's `BlendedDataset`: samples drawn from several datasets in proportion to weights.
///
/// Sample `k` comes from dataset `datasetIndex[k]`, at its sample `datasetSampleIndex[k]`. The choice is
/// greedy: the dataset furthest below its share so far (helpers.cpp `build_blending_indices`).
public final class BlendedDataset: GPTSampleSource, @unchecked Sendable {
    public let datasets: [GPTDataset]
    /// Normalised weights when `size` is set; per-dataset sample counts otherwise.
    public let weights: [Double]
    public let size: Int?
    public let split: DatasetSplit
    public let datasetIndex: [Int16]
    public let datasetSampleIndex: [Int64]
    public let uniqueDescription: String
    public let loadedFromCache: Bool
    /// Set when cache files existed but did not fit and were rebuilt: a line for the log.
    public let cacheRebuildNote: String?

    public var uniqueDescriptionHash: String { MD5.hexDigest(uniqueDescription) }
    public var count: Int { datasetIndex.count }

    /// - Parameters:
    ///   - weights: relative weights (normalised here) with a `size`; with `size == nil`, exact sample counts.
    ///   - cacheDirectory: `--data-cache-path`; nil builds in memory only, as Megatron does.
    public init(datasets: [GPTDataset], weights: [Double], size: Int?, cacheDirectory: String?) throws {
        guard !datasets.isEmpty, datasets.count == weights.count else {
            throw DatasetError("BlendedDataset: \(datasets.count) datasets but \(weights.count) weights")
        }
        guard datasets.count < 32767 else { throw DatasetError("BlendedDataset: at most 32766 datasets, got \(datasets.count)") }
        guard weights.allSatisfy({ $0 > 0 }) else { throw DatasetError("BlendedDataset: weights must be positive, got \(weights)") }
        let split = datasets[0].split
        guard datasets.allSatisfy({ $0.split == split }) else { throw DatasetError("BlendedDataset: datasets of different splits") }
        self.datasets = datasets
        self.size = size
        self.split = split
        let weights = size == nil ? weights : NumpySum.normalize(weights)
        self.weights = weights
        let description = Self.description(datasets: datasets, weights: weights, countsAreIntegers: size == nil, size: size, split: split).dumps()
        uniqueDescription = description
        let cache = cacheDirectory.map { IndexCache(directory: $0, description: description, className: "BlendedDataset", split: split) }
        let expectedSize = size ?? weights.reduce(0) { $0 + Int($1) }
        let reuse = try cache?.reuse(["dataset_index", "dataset_sample_index"], load: Self.load) {
            Self.inconsistency(datasetIndex: $0.datasetIndex, sampleIndex: $0.sampleIndex, datasets: datasets.count, size: expectedSize)
        }
        cacheRebuildNote = reuse?.rebuildNote
        if let cached = reuse?.value {
            datasetIndex = cached.datasetIndex.map { Int16($0) }
            datasetSampleIndex = cached.sampleIndex
            loadedFromCache = true
        } else {
            let built = size.map { BlendingIndices.weighted(weights: weights, size: $0) }
                ?? BlendingIndices.exhaustive(counts: weights.map { Int($0) })
            datasetIndex = built.datasetIndex
            datasetSampleIndex = built.datasetSampleIndex
            loadedFromCache = false
        }
        try checkNotOversampled()
        if !loadedFromCache {
            try cache?.save([
                ("dataset_index", NPYFile.Array(descr: "<i2", shape: [datasetIndex.count], values: datasetIndex.map(Int64.init))),
                ("dataset_sample_index", NPYFile.Array(descr: "<i8", shape: [datasetSampleIndex.count], values: datasetSampleIndex)),
            ])
        }
    }

    private static func load(_ cache: IndexCache) throws -> (datasetIndex: [Int64], sampleIndex: [Int64]) {
        (try cache.load("dataset_index").values, try cache.load("dataset_sample_index").values)
    }

    /// Why cached blending indices are not what the build gives, or nil: `size` entries, each naming one of
    /// the `datasets`, each dataset's samples taken in order 0, 1, 2, ... (as both builders take them).
    static func inconsistency(datasetIndex: [Int64], sampleIndex: [Int64], datasets: Int, size: Int) -> String? {
        guard datasetIndex.count == size, sampleIndex.count == size else {
            return "it holds \(datasetIndex.count) and \(sampleIndex.count) entries for a blend of \(size) samples"
        }
        var taken = [Int64](repeating: 0, count: datasets)
        for (d, sample) in zip(datasetIndex, sampleIndex) {
            guard d >= 0 && d < Int64(datasets) else { return "dataset_index names dataset \(d) of \(datasets)" }
            guard sample == taken[Int(d)] else { return "dataset_sample_index is not each dataset's samples in order" }
            taken[Int(d)] += 1
        }
        return nil
    }

    private func checkNotOversampled() throws {
        var counts = [Int](repeating: 0, count: datasets.count)
        for d in datasetIndex {
            guard Int(d) >= 0 && Int(d) < datasets.count else { throw DatasetError("BlendedDataset \(split.name): dataset index \(d) out of range") }
            counts[Int(d)] += 1
        }
        for (i, n) in counts.enumerated() where n > datasets[i].count {
            throw DatasetError("The \(split.name) blend oversamples dataset \(i) (\(datasets[i].datasetPath ?? "mock")): it asks \(n) samples of its \(datasets[i].count); raise --mid-level-dataset-surplus (now \(datasets[i].config.midLevelDatasetSurplus))")
        }
    }

    static func description(datasets: [GPTDataset], weights: [Double], countsAreIntegers: Bool, size: Int?, split: DatasetSplit) -> PythonJSON {
        .object([
            ("class", .string("BlendedDataset")),
            ("datasets", .array(datasets.map(\.uniqueIdentifiers))),
            ("split", .string(split.name)),
            ("weights", .array(weights.map { countsAreIntegers ? .int(Int($0)) : .float($0) })),
            ("size", size.map(PythonJSON.int) ?? .null),
        ])
    }

    /// Sample `idx` of the blend, with the dataset it came from.
    public func sampleWithSource(_ idx: Int) -> (datasetID: Int, sample: GPTSample) {
        let d = Int(datasetIndex[idx])
        return (d, datasets[d].sample(Int(datasetSampleIndex[idx])))
    }

    public func sample(_ idx: Int?) -> GPTSample {
        guard let idx else { return datasets[Int(datasetIndex[0])].sample(nil) }
        return sampleWithSource(idx).sample
    }

    public func pieces(ofSample idx: Int) -> [SamplePiece] {
        datasets[Int(datasetIndex[idx])].pieces(ofSample: Int(datasetSampleIndex[idx]))
    }
}

/// helpers.cpp's blending index builders.
enum BlendingIndices {
    /// `build_blending_indices`: for each sample, the dataset with the largest `w·max(k,1) − taken` (first wins ties).
    static func weighted(weights: [Double], size: Int) -> (datasetIndex: [Int16], datasetSampleIndex: [Int64]) {
        var taken = [Int64](repeating: 0, count: weights.count)
        var index = [Int16](), sampleIndex = [Int64]()
        index.reserveCapacity(size)
        sampleIndex.reserveCapacity(size)
        for k in 0..<size {
            let position = max(Double(k), 1.0)
            var best = 0
            var bestError = weights[0] * position - Double(taken[0])
            for d in 1..<weights.count {
                let error = weights[d] * position - Double(taken[d])
                if error > bestError { bestError = error; best = d }
            }
            index.append(Int16(best))
            sampleIndex.append(taken[best])
            taken[best] += 1
        }
        return (index, sampleIndex)
    }

    /// `build_exhaustive_blending_indices`: the same greedy rule until every dataset gave exactly its count.
    static func exhaustive(counts: [Int]) -> (datasetIndex: [Int16], datasetSampleIndex: [Int64]) {
        let total = counts.reduce(0, +)
        let weights = counts.map { Double($0) / Double(total) }
        var taken = [Int64](repeating: 0, count: counts.count)
        var unspent = (0..<counts.count).filter { counts[$0] > 0 }
        var index = [Int16](), sampleIndex = [Int64]()
        var k = 0
        while !unspent.isEmpty {
            let position = max(Double(k), 1.0)
            var best = -1
            var bestError = -Double.greatestFiniteMagnitude
            for d in unspent {
                let error = weights[d] * position - Double(taken[d])
                if error > bestError { bestError = error; best = d }
            }
            index.append(Int16(best))
            sampleIndex.append(taken[best])
            taken[best] += 1
            if taken[best] == Int64(counts[best]) { unspent.removeAll { $0 == best } }
            k += 1
        }
        return (index, sampleIndex)
    }
}
