import Foundation
import XCTest
@testable import MegatronData

/// Index caches that no longer fit their dataset (the prefix written again by preprocess-data) are built
/// again, never read past; cache files that are not `.npy` at all are errors naming the file.
final class DatasetCacheTests: XCTestCase {
    /// Writes `documents` documents of seeded lengths (tokens 0..<1000) under `prefix`.
    private func writeCorpus(_ prefix: String, documents: Int, seed: Int) throws {
        let builder = try IndexedDatasetBuilder(binPath: prefix + ".bin", dtype: .uint16)
        for d in 0..<documents {
            let length = 5 + (d * 7 + seed * 13) % 40
            try builder.addDocument((0..<length).map { ($0 * 31 + d + seed) % 1000 }, lengths: [length])
        }
        try builder.finalize(idxPath: prefix + ".idx")
    }

    private func config(_ prefixes: [String], weights: [Double]? = nil) -> GPTDatasetConfig {
        var config = GPTDatasetConfig(sequenceLength: 16, tokenizer: DatasetFixtures.tokenizer)
        config.blend = DataBlend(prefixes: prefixes, weights: weights)
        config.split = "1,0,0"
        return config
    }

    private func build(_ config: GPTDatasetConfig, samples: Int, notes: inout [String]) throws -> any GPTSampleSource {
        var builder = BlendedDatasetBuilder(config: config, sizes: [samples, nil, nil])
        var collected: [String] = []
        builder.log = { collected.append($0) }
        defer { notes += collected }
        guard let train = try builder.build()[0] else { throw DatasetError("the test expects a train split") }
        return train
    }

    /// A 50-document corpus with its train split built once: the prefix, the dataset, and its cache files'
    /// common path (`<prefix>/cache/GPTDataset_indices/<hash>-GPTDataset-train-`).
    private func cachedCorpus(seed: Int) throws -> (prefix: String, dataset: GPTDataset, cacheBase: String) {
        let prefix = try DatasetFixtures.scratch(self) + "/corpus"
        try writeCorpus(prefix, documents: 50, seed: seed)
        var notes: [String] = []
        let dataset = try XCTUnwrap(try build(config([prefix]), samples: 30, notes: &notes) as? GPTDataset)
        return (prefix, dataset, prefix + "/cache/GPTDataset_indices/\(dataset.uniqueDescriptionHash)-GPTDataset-train-")
    }

    /// The cache beside the prefix (Megatron's `<prefix>/cache/GPTDataset_indices`) made for the first contents
    /// is rebuilt for the second: samples equal a fresh build's, and the next run uses the new cache.
    func testCacheOfRewrittenDatasetIsRebuilt() throws {
        let dir = try DatasetFixtures.scratch(self)
        let prefix = dir + "/corpus_text_document"
        try writeCorpus(prefix, documents: 60, seed: 1)
        var notes: [String] = []
        let first = try XCTUnwrap(try build(config([prefix]), samples: 40, notes: &notes) as? GPTDataset)
        XCTAssertFalse(first.loadedFromCache)
        XCTAssertTrue(FileManager.default.fileExists(atPath: prefix + "/cache/GPTDataset_indices"))
        // Fewer, shorter documents: the old indices point past the new data.
        for (documents, seed) in [(30, 2), (90, 3)] {
            try writeCorpus(prefix, documents: documents, seed: seed)
            let rebuilt = try XCTUnwrap(try build(config([prefix]), samples: 40, notes: &notes) as? GPTDataset)
            XCTAssertFalse(rebuilt.loadedFromCache, "\(documents) documents")
            XCTAssertEqual(notes.count, 1, "\(notes)")
            XCTAssertTrue(notes.last?.contains("do not fit the dataset") == true, "\(notes)")
            XCTAssertTrue(notes.last?.contains(prefix + "/cache/GPTDataset_indices") == true, "\(notes)")
            var uncached = config([prefix])
            uncached.pathToCache = dir + "/fresh-\(documents)"
            let fresh = try XCTUnwrap(try build(uncached, samples: 40, notes: &notes) as? GPTDataset)
            XCTAssertEqual(rebuilt.indexes, fresh.indexes)
            XCTAssertEqual((0..<rebuilt.count).map { rebuilt[$0] }, (0..<fresh.count).map { fresh[$0] })
            let again = try XCTUnwrap(try build(config([prefix]), samples: 40, notes: &notes) as? GPTDataset)
            XCTAssertTrue(again.loadedFromCache)
            XCTAssertNil(again.cacheRebuildNote)
            notes.removeAll()
        }
    }

    /// Each cached array edited so that it no longer fits is caught; the rebuild gives the original indices.
    func testEditedCacheArraysAreRebuilt() throws {
        let (prefix, original, base) = try cachedCorpus(seed: 4)
        var notes: [String] = []
        let edits: [(String, String, (inout NPYFile.Array) -> Void)] = [
            ("document_index", "outside the split", { $0.values[3] = 10_000 }),
            ("document_index", "every sequence", { $0.values[3] = $0.values[4] }),
            ("document_index", "entries", { $0.values.removeLast(); $0.shape = [$0.values.count] }),
            ("sample_index", "sample_index", { $0.values[5] += 1 }),
            ("shuffle_index", "permutation", { $0.values[0] = $0.values[1] }),
            ("shuffle_index", "permutation", { $0.values[0] = -1 }),
        ]
        for (name, reason, edit) in edits {
            let path = base + name + ".npy"
            let saved = try Data(contentsOf: URL(fileURLWithPath: path))
            var array = try NPYFile.read(path)
            edit(&array)
            try NPYFile.write(array, to: path)
            let rebuilt = try XCTUnwrap(try build(config([prefix]), samples: 30, notes: &notes) as? GPTDataset)
            XCTAssertFalse(rebuilt.loadedFromCache, name)
            XCTAssertTrue(notes.last?.contains(reason) == true, "\(name): \(notes)")
            XCTAssertEqual(rebuilt.indexes, original.indexes, name)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), saved, "\(name) is written again")
        }
        try Data("{}".utf8).write(to: URL(fileURLWithPath: base + "description.txt"))
        XCTAssertFalse(try XCTUnwrap(try build(config([prefix]), samples: 30, notes: &notes) as? GPTDataset).loadedFromCache)
        XCTAssertTrue(notes.last?.contains("description.txt differs") == true, "\(notes)")
    }

    /// A blend's cached indices that name a dataset it lacks, or take samples out of order, are rebuilt.
    func testEditedBlendCacheIsRebuilt() throws {
        let dir = try DatasetFixtures.scratch(self)
        try writeCorpus(dir + "/a", documents: 40, seed: 5)
        try writeCorpus(dir + "/b", documents: 40, seed: 6)
        var blendConfig = config([dir + "/a", dir + "/b"], weights: [0.3, 0.7])
        blendConfig.pathToCache = dir + "/cache"
        var notes: [String] = []
        let original = try XCTUnwrap(try build(blendConfig, samples: 50, notes: &notes) as? BlendedDataset)
        let base = dir + "/cache/\(original.uniqueDescriptionHash)-BlendedDataset-train-"
        for (name, value, reason) in [("dataset_index", Int64(2), "names dataset 2"), ("dataset_sample_index", 7, "in order")] {
            var array = try NPYFile.read(base + name + ".npy")
            array.values[4] = value
            try NPYFile.write(array, to: base + name + ".npy")
            let rebuilt = try XCTUnwrap(try build(blendConfig, samples: 50, notes: &notes) as? BlendedDataset)
            XCTAssertFalse(rebuilt.loadedFromCache)
            XCTAssertTrue(notes.last?.contains(reason) == true, "\(notes)")
            XCTAssertEqual(rebuilt.datasetIndex, original.datasetIndex)
            XCTAssertEqual(rebuilt.datasetSampleIndex, original.datasetSampleIndex)
        }
        XCTAssertTrue(try XCTUnwrap(try build(blendConfig, samples: 50, notes: &notes) as? BlendedDataset).loadedFromCache)
    }

    /// A cache file that is not a readable `.npy` stops the run, naming the file and how to recover.
    func testUnreadableCacheFileIsAnErrorNamingIt() throws {
        let (prefix, _, base) = try cachedCorpus(seed: 7)
        var notes: [String] = []
        let path = base + "sample_index.npy"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count - 3).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try build(config([prefix]), samples: 30, notes: &notes)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
            XCTAssertTrue("\(error)".contains("delete it"), "\(error)")
        }
    }

    /// The `.npy` reader: numpy's versions, and every malformed header or size an error, not a trap.
    func testNPYReaderRefusesMalformedFiles() throws {
        let dir = try DatasetFixtures.scratch(self)
        let path = dir + "/a.npy"
        try NPYFile.write(NPYFile.Array(descr: "<i8", shape: [3, 2], values: [1, 2, 3, 4, 5, 6]), to: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(try NPYFile.read(path).values, [1, 2, 3, 4, 5, 6])
        func header(_ text: String) -> Data {
            var padded = text
            while (10 + padded.utf8.count + 1) % 64 != 0 { padded += " " }
            padded += "\n"
            return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(padded.utf8.count), 0]) + Data(padded.utf8)
        }
        let cases: [(Data, String)] = [
            (good.prefix(good.count - 1), "needs 48"),
            (good + Data([0]), "needs 48"),
            (good.prefix(9), "not a .npy file"),
            (good.prefix(40), "truncated .npy header"),
            ({ var d = good; d[6] = 9; return d }(), "version 9"),
            (header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }") + Data(count: 8), "unsupported .npy dtype"),
            (header("{'descr': '<i4', 'fortran_order': True, 'shape': (2,), }") + Data(count: 8), "Fortran"),
            (header("{'descr': '<i4', 'fortran_order': False, 'shape': (-2,), }") + Data(count: 8), "does not fit"),
            (header("{'descr': '<i4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }"), "does not fit"),
            (header("{'descr': '<i8', 'fortran_order': False, 'shape': (2305843009213693952,), }") + Data(count: 8), "does not fit"),
            (header("{'descr': '<i4', 'fortran_order': False, 'shape': (x,), }"), "bad shape"),
            (header("{'descr': '<i4', 'fortran_order': False, }"), "no shape"),
        ]
        for (bytes, message) in cases {
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try NPYFile.read(path), message) { error in
                XCTAssertTrue("\(error)".contains(message) && "\(error)".contains(path), "\(message): \(error)")
            }
        }
    }
}
