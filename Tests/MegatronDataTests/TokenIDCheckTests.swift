import Foundation
import XCTest
@testable import MegatronData

/// Token ids outside the model's vocabulary are caught where a batch is made, naming the dataset, document
/// and id; batches of valid ids pass.
final class TokenIDCheckTests: XCTestCase {
    /// 40 documents of ids below 100, but document `bad` holds `badID` at its fifth token.
    private func dataset(_ dir: String, bad: Int, badID: Int, dtype: TokenDType = .int32) throws -> GPTDataset {
        let builder = try IndexedDatasetBuilder(binPath: dir + "/d.bin", dtype: dtype)
        for d in 0..<40 {
            var tokens = (0..<(8 + d % 5)).map { ($0 * 7 + d) % 100 }
            if d == bad { tokens[4] = badID }
            try builder.addDocument(tokens, lengths: [tokens.count])
        }
        try builder.finalize(idxPath: dir + "/d.idx")
        let config = GPTDatasetConfig(sequenceLength: 16, tokenizer: DatasetTokenizerInfo(vocabSize: 100, eod: 99, identifiers: .null))
        let source = try IndexedDataset(pathPrefix: dir + "/d")
        return try GPTDataset(source: source, datasetPath: dir + "/d", indices: 0..<40, numSamples: nil, split: .train, config: config)
    }

    private func batches(_ data: GPTDataset) -> [GPTBatch] {
        stride(from: 0, to: data.count - 1, by: 2).map { GPTBatch(sampleIDs: [$0, $0 + 1], samples: [data[$0], data[$0 + 1]]) }
    }

    func testOutOfVocabularyIdNamesDatasetDocumentAndId() throws {
        let dir = try DatasetFixtures.scratch(self)
        for (badID, vocabulary) in [(128, 128), (-3, 128), (70_000, 128)] {
            let data = try dataset(dir, bad: 17, badID: badID)
            let failures = batches(data).compactMap { batch -> String? in
                do {
                    try batch.checkTokenIDs(below: vocabulary, source: data, data: "training data")
                    return nil
                } catch { return "\(error)" }
            }
            // The document shows up in one or two samples (a sample spans documents).
            XCTAssertTrue((1...2).contains(failures.count), "\(failures)")
            for message in failures {
                for text in ["token id \(badID)", "document 17 of \(dir)/d", "of the training data", "vocabulary 0..<\(vocabulary)"] {
                    XCTAssertTrue(message.contains(text), "\(message) should say \(text)")
                }
            }
        }
        let clean = try dataset(dir, bad: 17, badID: 5)
        for batch in batches(clean) { XCTAssertNoThrow(try batch.checkTokenIDs(below: 100, source: clean, data: "training data")) }
    }

    /// An int64 id beyond int32 is clamped on read, so it stays out of every vocabulary instead of wrapping.
    func testInt64IdBeyondInt32IsCaught() throws {
        let dir = try DatasetFixtures.scratch(self)
        let data = try dataset(dir, bad: 3, badID: (1 << 32) + 5, dtype: .int64)
        let messages = batches(data).compactMap { batch in
            (try? batch.checkTokenIDs(below: 1 << 20, source: data, data: "training data")) == nil ? "bad" : nil
        }
        XCTAssertFalse(messages.isEmpty)
        XCTAssertThrowsError(try batches(data).forEach { try $0.checkTokenIDs(below: 1 << 20, source: data, data: "x") }) {
            XCTAssertTrue("\($0)".contains("token id 2147483647 or above"), "\($0)")
        }
    }

    /// The check is one pass over a few thousand ids: next to making the batch, it costs nothing measurable.
    func testCheckCostsLittleNextToMakingTheBatch() throws {
        let dir = try DatasetFixtures.scratch(self)
        let data = try dataset(dir, bad: 0, badID: 1)
        let ids = Array(0..<8)
        let batch = GPTBatch(sampleIDs: ids, samples: ids.map { data[$0] })
        let repeats = 2000
        var clock = ContinuousClock.now
        for _ in 0..<repeats { _ = GPTBatch(sampleIDs: ids, samples: ids.map { data[$0] }) }
        let making = ContinuousClock.now - clock
        clock = ContinuousClock.now
        for _ in 0..<repeats { try batch.checkTokenIDs(below: 100, source: data, data: "x") }
        let checking = ContinuousClock.now - clock
        XCTAssertLessThan(checking, making / 5, "check \(checking) vs making the batch \(making)")
    }
}
