import Foundation
import XCTest
@testable import MegatronData

/// BlendedDataset indices, descriptions and cache files against Megatron's.
final class BlendedDatasetTests: XCTestCase {
    private func blendCase(_ name: String) throws -> [String: Any] {
        let cases = try XCTUnwrap(DatasetFixtures.json("gpt_cases.json")["cases"] as? [[String: Any]])
        return try XCTUnwrap(cases.first { $0["name"] as? String == name })
    }

    private func builder(_ config: GPTDatasetConfig, sizes: [Int?]) -> BlendedDatasetBuilder {
        var builder = BlendedDatasetBuilder(config: config, sizes: sizes)
        builder.open = { prefix in try IndexedDataset(pathPrefix: DatasetFixtures.path((prefix as NSString).lastPathComponent)) }
        return builder
    }

    private func assertMatchesMegatron(_ blended: BlendedDataset, _ expected: [String: Any], cache dir: String) throws {
        let label = "\(expected["split"]!)"
        XCTAssertEqual(blended.uniqueDescription, expected["description"] as? String, label)
        XCTAssertEqual(blended.uniqueDescriptionHash, expected["hash"] as? String, label)
        XCTAssertEqual(blended.size, expected["size"] as? Int, label)
        for (mid, want) in zip(blended.datasets, expected["datasets"] as! [[String: Any]]) {
            XCTAssertEqual(mid.uniqueDescriptionHash, want["hash"] as? String, label)
            XCTAssertEqual(mid.numSamples, want["num_samples"] as? Int, label)
        }
        for s in expected["samples"] as? [[String: Any]] ?? [] {
            let (id, sample) = blended.sampleWithSource(s["index"] as! Int)
            XCTAssertEqual(id, s["dataset_id"] as? Int, label)
            XCTAssertEqual(sample.tokens.map(Int.init), s["tokens"] as? [Int], label)
        }
        let megatronCache = DatasetFixtures.path("cache")
        let files = try FileManager.default.contentsOfDirectory(atPath: megatronCache).filter { $0.hasPrefix(blended.uniqueDescriptionHash) }
        XCTAssertEqual(files.count, 3, "Megatron's cache has description + 2 arrays for \(label)")
        for file in files {
            XCTAssertEqual(try DatasetFixtures.bytes(dir + "/" + file), try DatasetFixtures.bytes(megatronCache + "/" + file), "\(label) \(file)")
        }
    }

    func testWeightedBlendMatchesMegatron() throws {
        let c = try blendCase("blend_30_70")
        let dir = try DatasetFixtures.scratch(self)
        var config = GPTDatasetConfig(sequenceLength: 16, tokenizer: DatasetFixtures.tokenizer, randomSeed: 1234)
        config.blend = try DataBlend(arguments: ["30", "./corpus_a", "70", "./corpus_b"])
        config.split = "98,2,0"
        config.pathToCache = dir
        let built = try builder(config, sizes: [120, 6, 0]).build()
        let splits = c["splits"] as! [Any]
        for i in 0..<2 {
            try assertMatchesMegatron(try XCTUnwrap(built[i] as? BlendedDataset), splits[i] as! [String: Any], cache: dir)
        }
        XCTAssertNil(built[2])
        let train = try XCTUnwrap(built[0] as? BlendedDataset)
        XCTAssertEqual(train.count, 120)
        XCTAssertEqual(train.datasetIndex.filter { $0 == 1 }.count, 84)   // ceil(120 * 0.7)
    }

    func testBlendWeightedByLengthMatchesMegatron() throws {
        let c = try blendCase("blend_by_length")
        let dir = try DatasetFixtures.scratch(self)
        var config = GPTDatasetConfig(sequenceLength: 16, tokenizer: DatasetFixtures.tokenizer, randomSeed: 77)
        config.blend = try DataBlend(arguments: ["./corpus_a", "./corpus_b"])
        config.split = "1,0,0"
        config.pathToCache = dir
        let built = try builder(config, sizes: [50, nil, nil]).build()
        let train = try XCTUnwrap(built[0] as? BlendedDataset)
        try assertMatchesMegatron(train, (c["splits"] as! [Any])[0] as! [String: Any], cache: dir)
        // Second run: both levels come from the cache.
        let again = try XCTUnwrap(try builder(config, sizes: [50, nil, nil]).build()[0] as? BlendedDataset)
        XCTAssertTrue(again.loadedFromCache)
        XCTAssertTrue(again.datasets.allSatisfy(\.loadedFromCache))
        XCTAssertEqual(again.datasetSampleIndex, train.datasetSampleIndex)
    }

    func testExhaustiveBlendingTakesEverySampleOnce() {
        let built = BlendingIndices.exhaustive(counts: [3, 1, 2])
        XCTAssertEqual(built.datasetIndex.count, 6)
        for d in 0..<3 {
            let samples = zip(built.datasetIndex, built.datasetSampleIndex).filter { $0.0 == Int16(d) }.map(\.1)
            XCTAssertEqual(samples, (0..<Int64([3, 1, 2][d])).map { $0 })
        }
    }

    func testDataPathArguments() throws {
        XCTAssertEqual(try DataBlend(arguments: ["0.3", "a", "0.7", "b"]), DataBlend(prefixes: ["a", "b"], weights: [0.3, 0.7]))
        XCTAssertEqual(try DataBlend(arguments: ["a", "b"]), DataBlend(prefixes: ["a", "b"], weights: nil))
        XCTAssertEqual(try DataBlend(arguments: ["a"]), DataBlend(prefixes: ["a"], weights: nil))
        XCTAssertThrowsError(try DataBlend(arguments: ["0.3", "a", "b", "c"]))
        // Weights that would turn into NaN sample counts (a trap) are refused by value.
        for weight in ["inf", "nan", "-1", "0"] {
            XCTAssertThrowsError(try DataBlend(arguments: [weight, "a", "0.7", "b"])) {
                XCTAssertTrue("\($0)".contains("is not a positive number"), "\($0)")
            }
        }
        XCTAssertThrowsError(try SplitMatrix(parsing: String(repeating: "9", count: 400) + ",1")) {
            XCTAssertTrue("\($0)".contains("finite"), "\($0)")
        }
    }

    func testPerSplitDataPaths() throws {
        var config = GPTDatasetConfig(sequenceLength: 16, tokenizer: DatasetFixtures.tokenizer)
        config.blendPerSplit = [DataBlend(prefixes: ["./corpus_a"]), DataBlend(prefixes: ["./corpus_b"]), nil]
        config.pathToCache = try DatasetFixtures.scratch(self)
        let built = try builder(config, sizes: [20, 5, 0]).build()
        let train = try XCTUnwrap(built[0] as? GPTDataset)
        let valid = try XCTUnwrap(built[1] as? GPTDataset)
        XCTAssertNil(built[2])
        XCTAssertEqual(train.indices, 0..<60)
        XCTAssertEqual(valid.indices, 0..<25)
        XCTAssertTrue(valid.uniqueDescription.contains("\"split\": null"))
    }

    func testMockDataLengthsMatchNumpyDefaultRNG() throws {
        let mock = MockGPTLowLevelDataset(vocabSize: 1000, eod: 999)
        // numpy.random.default_rng(0).integers(1, 4096, size=100000, dtype=int32)
        XCTAssertEqual(Array(mock.sequenceLengths.prefix(8)), [3484, 2609, 2094, 1105, 1261, 168, 309, 68])
        XCTAssertEqual(Array(mock.sequenceLengths.suffix(3)), [61, 100, 769])
        XCTAssertEqual(mock.sequenceLengths.reduce(0) { $0 + Int($1) }, 204_637_097)
        XCTAssertEqual(mock.sequence(5, offset: 0, length: nil).count, 168)
        XCTAssertEqual(mock.sequence(5, offset: 165, length: nil), [166, 167, 999])
        var config = GPTDatasetConfig(sequenceLength: 64, tokenizer: DatasetFixtures.tokenizer)
        config.mock = true
        let built = try BlendedDatasetBuilder(config: config, sizes: [10, 2, 2]).build()
        let train = try XCTUnwrap(built[0] as? GPTDataset)
        XCTAssertTrue(train.uniqueDescription.contains("\"class\": \"MockGPTDataset\""))
        XCTAssertEqual(train[0].tokens.count, 64)
    }
}
