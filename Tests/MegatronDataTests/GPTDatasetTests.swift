import Foundation
import XCTest
@testable import MegatronData

/// GPTDataset indices, samples and cache files against `gpt_cases.json` and the cache Megatron wrote.
final class GPTDatasetTests: XCTestCase {
    private func cases() throws -> [[String: Any]] {
        try XCTUnwrap(DatasetFixtures.json("gpt_cases.json")["cases"] as? [[String: Any]])
    }

    private func config(_ c: [String: Any], cache: String?) throws -> GPTDatasetConfig {
        var config = GPTDatasetConfig(sequenceLength: c["sequence_length"] as! Int, tokenizer: DatasetFixtures.tokenizer,
                                      randomSeed: c["seed"] as! Int)
        config.split = c["split"] as? String
        config.pathToCache = cache
        let flags = c["flags"] as? [String: Bool] ?? [:]
        config.resetPositionIDs = flags["reset_position_ids"] ?? false
        config.resetAttentionMask = flags["reset_attention_mask"] ?? false
        config.eodMaskLoss = flags["eod_mask_loss"] ?? false
        config.dropLastPartialValidationSequence = flags["drop_last_partial_validation_sequence"] ?? true
        return config
    }

    /// A builder that opens the fixture corpora under the relative names the fixtures were made with.
    private func builder(_ config: GPTDatasetConfig, sizes: [Int?]) -> BlendedDatasetBuilder {
        var builder = BlendedDatasetBuilder(config: config, sizes: sizes)
        builder.open = { prefix in try IndexedDataset(pathPrefix: DatasetFixtures.path((prefix as NSString).lastPathComponent)) }
        return builder
    }

    private func megatronIndices(_ hash: String, _ split: String) throws -> (NPYFile.Array, NPYFile.Array, NPYFile.Array) {
        let base = DatasetFixtures.path("cache/\(hash)-GPTDataset-\(split)-")
        return (try NPYFile.read(base + "document_index.npy"), try NPYFile.read(base + "sample_index.npy"),
                try NPYFile.read(base + "shuffle_index.npy"))
    }

    private func assertSample(_ sample: GPTSample, _ expected: [String: Any], _ label: String) {
        XCTAssertEqual(sample.tokens.map(Int.init), expected["tokens"] as? [Int], "\(label) tokens")
        XCTAssertEqual(sample.labels.map(Int.init), expected["labels"] as? [Int], "\(label) labels")
        XCTAssertEqual(sample.lossMask.map(Double.init), expected["loss_mask"] as? [Double], "\(label) loss mask")
        XCTAssertEqual(sample.positionIDs.map(Int.init), expected["position_ids"] as? [Int], "\(label) position ids")
        if let rows = expected["attention_mask"] as? [String] {
            let s = sample.tokens.count
            let mask = sample.attentionMask()
            let ours = (0..<s).map { r in String((0..<s).map { mask[r * s + $0] ? "1" : "0" }) }
            XCTAssertEqual(ours, rows, "\(label) attention mask")
        }
    }

    /// Builds every case without a cache and compares indices, descriptions and samples with Megatron's.
    func testIndicesDescriptionsAndSamplesMatchMegatron() throws {
        for c in try cases() where (c["name"] as! String).hasPrefix("blend") == false {
            let name = c["name"] as! String
            let sizes = (c["sizes"] as! [Any]).map { $0 as? Int }
            let dir = try DatasetFixtures.scratch(self)
            var cfg = try config(c, cache: dir)
            cfg.blend = DataBlend(prefixes: ["./corpus_a"])
            let built = try builder(cfg, sizes: sizes).build()
            for (i, expected) in (c["splits"] as! [Any]).enumerated() {
                guard let expected = expected as? [String: Any] else {
                    XCTAssertNil(built[i], "\(name) split \(i) should be empty")
                    continue
                }
                let label = "\(name)/\(expected["split"]!)"
                let ds = try XCTUnwrap(built[i] as? GPTDataset, label)
                XCTAssertEqual(ds.uniqueDescription, expected["description"] as? String, label)
                XCTAssertEqual(ds.uniqueDescriptionHash, expected["hash"] as? String, label)
                XCTAssertEqual(ds.count, expected["length"] as? Int, label)
                XCTAssertEqual([ds.indices.lowerBound, ds.indices.upperBound], expected["indexed_indices"] as? [Int], label)
                let (doc, sample, shuffle) = try megatronIndices(ds.uniqueDescriptionHash, ds.split.name)
                XCTAssertEqual(ds.indexes.documentIndex.map(Int64.init), doc.values, "\(label) document index")
                XCTAssertEqual(ds.indexes.sampleIndex, sample.values, "\(label) sample index")
                XCTAssertEqual(ds.indexes.sampleIndexDType, sample.descr, label)
                XCTAssertEqual(ds.indexes.shuffleIndex, shuffle.values, "\(label) shuffle index")
                XCTAssertEqual(ds.indexes.shuffleIndexDType, shuffle.descr, label)
                for s in expected["samples"] as! [[String: Any]] {
                    assertSample(ds[s["index"] as! Int], s, "\(label)[\(s["index"]!)]")
                }
                // Our cache files are byte-identical to Megatron's.
                for suffix in ["description.txt", "document_index.npy", "sample_index.npy", "shuffle_index.npy"] {
                    let file = "\(ds.uniqueDescriptionHash)-GPTDataset-\(ds.split.name)-\(suffix)"
                    XCTAssertEqual(try DatasetFixtures.bytes(dir + "/" + file), try DatasetFixtures.bytes(DatasetFixtures.path("cache/" + file)), "\(label) \(suffix)")
                }
            }
        }
    }

    func testSeparateFinalEpochCaseIsCovered() throws {
        // multi_epoch_separate: 150 samples of 32 tokens from 54 documents needs several epochs and a short last one.
        let source = try IndexedDataset(pathPrefix: DatasetFixtures.path("corpus_a"))
        let plan = GPTIndexPlan(sequenceLengths: source.sequenceLengths, indices: 0..<54, numSamples: 150, sequenceLength: 32,
                                seed: 5, addExtraToken: true, dropLastPartialSequence: true, label: "test")
        let epochs = try plan.epochs(tokensPerEpoch: plan.tokensPerEpoch())
        XCTAssertGreaterThan(epochs, 1)
        let indices = try plan.build()
        // The last epoch's documents are shuffled on their own: the tail of the document index is one permutation of 0..<54.
        XCTAssertEqual(Set(indices.documentIndex.suffix(54)), Set((0..<54).map(Int32.init)))
    }

    /// Keeping the last partial validation sample (helpers.cpp's float `ceil`) pads it: pad id −1 becomes
    /// token 0 with a zero loss mask.
    func testPartialValidationSampleIsPaddedAsMegatron() throws {
        let c = try XCTUnwrap(try cases().first { $0["name"] as? String == "valid_partial" })
        var cfg = try config(c, cache: try DatasetFixtures.scratch(self))
        XCTAssertFalse(cfg.dropLastPartialValidationSequence)
        cfg.blend = DataBlend(prefixes: ["./corpus_a"])
        let valid = try XCTUnwrap(try builder(cfg, sizes: [20, nil, 3]).build()[1] as? GPTDataset)
        let expected = (c["splits"] as! [Any])[1] as! [String: Any]
        XCTAssertEqual(valid.count, expected["length"] as? Int)
        let padded = (expected["samples"] as! [[String: Any]]).filter { ($0["loss_mask"] as! [Double]).contains(0) }
        XCTAssertFalse(padded.isEmpty, "the fixture holds the padded sample")
        for s in padded { assertSample(valid[s["index"] as! Int], s, "padded[\(s["index"]!)]") }
    }

    /// A cache Megatron wrote is used as is (no rebuild), and gives the same samples.
    func testReadsMegatronCache() throws {
        let c = try XCTUnwrap(try cases().first { $0["name"] as? String == "two_epochs_joint" })
        let dir = try DatasetFixtures.scratch(self)
        for file in try FileManager.default.contentsOfDirectory(atPath: DatasetFixtures.path("cache")) {
            try FileManager.default.copyItem(atPath: DatasetFixtures.path("cache/" + file), toPath: dir + "/" + file)
        }
        var cfg = try config(c, cache: dir)
        cfg.blend = DataBlend(prefixes: ["./corpus_a"])
        let train = try XCTUnwrap(try builder(cfg, sizes: [230, 5, 1]).build()[0] as? GPTDataset)
        XCTAssertTrue(train.loadedFromCache)
        let expected = (c["splits"] as! [Any])[0] as! [String: Any]
        for s in expected["samples"] as! [[String: Any]] { assertSample(train[s["index"] as! Int], s, "cached[\(s["index"]!)]") }
        // A damaged cache file is reported by name, not silently rebuilt.
        let shuffle = dir + "/\(train.uniqueDescriptionHash)-GPTDataset-train-shuffle_index.npy"
        try Data([0x93, 0x4E]).write(to: URL(fileURLWithPath: shuffle))
        XCTAssertThrowsError(try builder(cfg, sizes: [230, 5, 1]).build()) { XCTAssertTrue("\($0)".contains(shuffle), "\($0)") }
    }

    /// Our second run reuses our first run's cache.
    func testReusesItsOwnCache() throws {
        let dir = try DatasetFixtures.scratch(self)
        var cfg = GPTDatasetConfig(sequenceLength: 16, tokenizer: DatasetFixtures.tokenizer)
        cfg.blend = DataBlend(prefixes: ["./corpus_a"])
        cfg.split = "1,0,0"
        cfg.pathToCache = dir
        let first = try XCTUnwrap(try builder(cfg, sizes: [50, nil, nil]).build()[0] as? GPTDataset)
        let second = try XCTUnwrap(try builder(cfg, sizes: [50, nil, nil]).build()[0] as? GPTDataset)
        XCTAssertFalse(first.loadedFromCache)
        XCTAssertTrue(second.loadedFromCache)
        XCTAssertEqual(first.indexes, second.indexes)
    }

    func testSplitParsingAndRounding() throws {
        let m = try SplitMatrix(parsing: "969,30,1")
        XCTAssertEqual(m.range(.train, count: 1000), 0..<969)
        XCTAssertEqual(m.range(.valid, count: 1000), 969..<999)
        XCTAssertEqual(m.range(.test, count: 1000), 999..<1000)
        // round(0.999 * 257) = 257: Megatron's test split is empty here.
        XCTAssertEqual(m.range(.test, count: 257)?.count, 0)
        // Half to even, as Python's round: 0.5 * 5 = 2.5 -> 2.
        XCTAssertEqual(try SplitMatrix(parsing: "1 1").range(.train, count: 5), 0..<2)
        XCTAssertNil(try SplitMatrix(parsing: "90,10").range(.test, count: 10))
        XCTAssertThrowsError(try SplitMatrix(parsing: "0,0,0"))
    }

    /// Epochs come from a division, not a loop: a sample count far beyond the data is an error, not a hang or
    /// an overflow trap.
    func testEpochCountIsComputedAndBounded() throws {
        var plan = GPTIndexPlan(sequenceLengths: [10, 20, 30], indices: 0..<3, numSamples: 7, sequenceLength: 16, seed: 1,
                                addExtraToken: true, dropLastPartialSequence: true, label: "plan")
        XCTAssertEqual(try plan.epochs(tokensPerEpoch: 60), 2)   // 7 * 16 + 1 = 113 tokens
        plan.numSamples = 3
        XCTAssertEqual(try plan.epochs(tokensPerEpoch: 60), 1)   // 49
        plan.numSamples = 1 << 60
        XCTAssertThrowsError(try plan.epochs(tokensPerEpoch: 60)) { XCTAssertTrue("\($0)".contains("more than this build can index"), "\($0)") }
    }

    func testEmptySplitIsAnErrorNotAHang() throws {
        var cfg = GPTDatasetConfig(sequenceLength: 16, tokenizer: DatasetFixtures.tokenizer)
        cfg.blend = DataBlend(prefixes: ["./corpus_a"])
        cfg.pathToCache = try DatasetFixtures.scratch(self)
        cfg.split = "969,30,1"   // 60 sequences: round(0.999 * 60) = 60, so the test split is empty
        XCTAssertThrowsError(try builder(cfg, sizes: [10, 2, 4]).build()) { error in
            XCTAssertTrue("\(error)".contains("test split of ./corpus_a"), "\(error)")
            XCTAssertTrue("\(error)".contains("no tokens"), "\(error)")
        }
    }

    func testNumpyRandomStateShuffleMatchesNumpy() {
        var rs = NumpyRandomState(seed: 1234)
        var a = Array(0..<10)
        rs.shuffle(&a)
        XCTAssertEqual(a, [7, 2, 9, 1, 0, 8, 4, 5, 6, 3])   // numpy.random.RandomState(1234).shuffle(arange(10))
        var rs7 = NumpyRandomState(seed: 7)
        var b = Array(0..<5)
        rs7.shuffle(&b)
        XCTAssertEqual(b, [0, 3, 2, 1, 4])
    }

    func testMD5AndPythonJSONMatchPython() {
        XCTAssertEqual(MD5.hexDigest(""), "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(MD5.hexDigest(String(repeating: "a", count: 1000)), "cabe45dcc9ae5b66ba86600cca6b8ba8")
        let value = PythonJSON.object([("a", .array([.int(0), .float(0.8999999999999999), .float(1.0)])), ("b", .null),
                                       ("c", .string("é\"\n")), ("d", .array([])), ("e", .float(1e-05))])
        XCTAssertEqual(value.dumps(), "{\n    \"a\": [\n        0,\n        0.8999999999999999,\n        1.0\n    ],\n    \"b\": null,\n    \"c\": \"\\u00e9\\\"\\n\",\n    \"d\": [],\n    \"e\": 1e-05\n}")
    }
}

/// Cache hashes include the tokenizer's identifiers; ours must print as Megatron's build_tokenizer makes them.
final class TokenizerIdentifierTests: XCTestCase {
    func testIdentifiersMatchMegatronsBuildTokenizer() throws {
        let expected = try DatasetFixtures.json("tokenizer_identifiers.json") as! [String: String]
        let cases: [String: TokenizerOptions] = [
            "gpt2": TokenizerOptions(type: .gpt2BPE, vocabFile: "/data/vocab.json", mergeFile: "/data/merges.txt"),
            "hf": TokenizerOptions(type: .huggingFace, tokenizerModel: "/data/tok"),
            "tiktoken": TokenizerOptions(type: .tikToken, tokenizerModel: "/data/tt.json", tiktokenPattern: "v2"),
            "null": TokenizerOptions(type: .null, vocabSize: 1000),
        ]
        XCTAssertEqual(Set(cases.keys), Set(expected.keys))
        for (name, options) in cases {
            XCTAssertEqual(megatronTokenizerIdentifiers(options).dumps(), expected[name], name)
        }
    }
}
