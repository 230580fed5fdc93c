import Foundation
import XCTest
import MegatronData
@testable import MegatronTraining

/// pretrain-gpt on Megatron-format data: preprocessed `.bin/.idx` with a real tokenizer, and mock data.
final class DatasetTrainingTests: XCTestCase {
    let shared = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/data").standardized

    func parse(_ line: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse(line.split(separator: " ").map(String.init))
    }

    let model = "--num-layers 1 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 2 "
        + "--global-batch-size 4 --lr 3e-3 --log-interval 5 --eval-iters 2 --hidden-dropout 0 --attention-dropout 0 "

    func testTrainsOnPreprocessedData() throws {
        let tokenizerDir = shared.appendingPathComponent("tokenizers/bytelevel-bpe-8k")
        guard FileManager.default.fileExists(atPath: tokenizerDir.path) else {
            throw XCTSkip("../shared/data is absent: no tokenizer files to test with")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let docs = (0..<60).map { i in "{\"text\": \"Document \(i): the quick brown fox jumps over the lazy dog \(i * 7) times.\"}" }
        try docs.joined(separator: "\n").write(to: dir.appendingPathComponent("d.jsonl"), atomically: true, encoding: .utf8)
        let tokenizerFlags = "--tokenizer-type GPT2BPETokenizer --vocab-file \(tokenizerDir.path)/vocab.json --merge-file \(tokenizerDir.path)/merges.txt"
        let options = TokenizerOptions(type: .gpt2BPE, vocabFile: "\(tokenizerDir.path)/vocab.json",
                                       mergeFile: "\(tokenizerDir.path)/merges.txt")
        let tokenizer = try buildTokenizer(options)
        let prefix = dir.appendingPathComponent("d_text_document").path
        let builder = try IndexedDatasetBuilder(binPath: prefix + ".bin", dtype: .optimal(vocabSize: tokenizer.vocabSize))
        for doc in docs {
            let text = doc.components(separatedBy: "\"text\": \"")[1].dropLast(2)
            let ids = try tokenizer.encode(String(text)) + [tokenizer.eod]
            try builder.addDocument(ids, lengths: [ids.count])
        }
        try builder.finalize(idxPath: prefix + ".idx")
        var lines: [String] = []
        let args = try parse(model + "--train-iters 20 --data-path \(dir.path)/d_text_document --split 90,10,0 "
                             + "--data-cache-path \(dir.path)/cache " + tokenizerFlags)
        let summary = try Pretrainer(arguments: args) { lines.append($0) }.run()
        XCTAssertEqual(summary.iterations, 20)
        XCTAssertLessThan(summary.intervalLosses.last!, summary.intervalLosses.first! - 1, "\(summary.intervalLosses)")
        XCTAssertNotNil(summary.validationLoss)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cache").path), "index cache written")
    }

    func testTrainsOnMockData() throws {
        let args = try parse(model + "--train-iters 4 --mock-data --tokenizer-type NullTokenizer --vocab-size 500")
        let summary = try Pretrainer(arguments: args) { _ in }.run()
        XCTAssertEqual(summary.iterations, 4)
    }

    /// Without --tokenizer-type, Megatron data means pretrain_gpt.py's default GPT2BPETokenizer, which needs its files.
    func testDataWithoutTokenizerMeansGPT2BPE() throws {
        XCTAssertThrowsError(try Pretrainer(arguments: try parse(model + "--train-iters 4 --mock-data")) { _ in }) {
            XCTAssertEqual("\($0)", "no --tokenizer-type, so pretrain_gpt.py's default: GPT2BPETokenizer needs --vocab-file")
        }
    }

    /// A dataset id at or above the model's vocabulary stops training with the document and id (the CPU's
    /// embedding trapped on it); a dataset rewritten under the same prefix rebuilds its cache, saying so.
    func testDatasetIdsOutsideTheVocabularyAndRewrittenDataAreReported() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let prefix = dir.appendingPathComponent("ids_text_document").path
        func write(documents: Int, badID: Int?) throws {
            let builder = try IndexedDatasetBuilder(binPath: prefix + ".bin", dtype: .uint16)
            for d in 0..<documents {
                var ids = (0..<40).map { ($0 * 3 + d) % 99 } + [99]
                if let badID { ids[7] = badID }
                try builder.addDocument(ids, lengths: [ids.count])
            }
            try builder.finalize(idxPath: prefix + ".idx")
        }
        let flags = model + "--train-iters 3 --data-path \(prefix) --split 1,0,0 --tokenizer-type NullTokenizer --vocab-size 100 "
        try write(documents: 40, badID: nil)
        _ = try Pretrainer(arguments: try parse(flags)) { _ in }.run()
        // Written again with fewer documents, every one holding id 300 (the model's vocabulary is 128 padded).
        try write(documents: 20, badID: 300)
        var lines: [String] = []
        let trainer = try Pretrainer(arguments: try parse(flags)) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("do not fit the dataset") }, "\(lines)")
        XCTAssertThrowsError(try trainer.run()) { error in
            for text in ["token id 300", "of \(prefix)", "training data", "vocabulary 0..<128"] {
                XCTAssertTrue("\(error)".contains(text), "\(error) should say \(text)")
            }
        }
    }
}
