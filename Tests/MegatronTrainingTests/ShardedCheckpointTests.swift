import Foundation
import XCTest
import MegatronCore
import MegatronParallel
import MegatronTensor
@testable import MegatronTraining

/// Sharded torch_dist checkpoints on thread ranks: each rank writes only its own boxes, and any layout reads back
/// exactly the state another wrote (model, distributed-optimizer shards, step counts), vocabulary padding re-cut.
final class ShardedCheckpointTests: XCTestCase {
    private let base = "--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 --micro-batch-size 2 "
        + "--global-batch-size 8 --lr 3e-3 --log-interval 1 --eval-iters 1 --eval-interval 1000 --hidden-dropout 0 --swiglu "
        + "--attention-dropout 0 --device cpu --mock-data --tokenizer-type NullTokenizer --seed 7 --ckpt-format torch_dist"
    private var root: URL!

    override func setUp() {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("sharded-ckpt-\(UUID().uuidString)")
    }

    override func tearDown() { try? FileManager.default.removeItem(at: root) }

    private func arguments(_ extra: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse((base + " " + extra).split(separator: " ").map(String.init))
    }

    /// Trains 2 iterations at `world` ranks with `layout` flags and saves into `name` (every `interval` iterations).
    private func save(_ name: String, world: Int, _ layout: String, vocab: Int = 511, interval: Int = 2) throws -> String {
        let path = root.appendingPathComponent(name).path
        let args = try arguments("--vocab-size \(vocab) --train-iters 2 --save \(path) --save-interval \(interval) " + layout)
        _ = try ThreadCommunicator.run(worldSize: world) { comm in
            let training = try TrainingWorld.make(args, world: comm)
            return try Pretrainer(arguments: args, parallel: training.parallel) { _ in }.run().iterations
        }
        return path
    }

    /// The whole (single-rank layout) model and optimizer state, step count and iteration after loading `path` at
    /// `world` ranks with `layout` flags.
    private func loaded(_ path: String, world: Int, _ layout: String, vocab: Int = 511) throws -> [String: [Float]] {
        let args = try arguments("--vocab-size \(vocab) --train-iters 2 --load \(path) " + layout)
        return try ThreadCommunicator.run(worldSize: world) { comm -> [String: [Float]] in
            let training = try TrainingWorld.make(args, world: comm)
            let pretrainer = try Pretrainer(arguments: args, parallel: training.parallel) { _ in }
            let (model, optimizer) = try ParallelCheckpoint.gather(model: pretrainer.model, optimizerState: try pretrainer.optimizer.stateTensors())
            var state = model.mapValues { $0.to(.cpu).madeContiguous().floats() }
            for (key, t) in optimizer { state["optimizer." + key] = t.to(.cpu).madeContiguous().floats() }
            state["steps"] = [Float(pretrainer.optimizer.stepCount), Float(pretrainer.iteration)]
            return state
        }[0]
    }

    private func assertSame(_ a: [String: [Float]], _ b: [String: [Float]], _ what: String) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), what)
        for (key, values) in a where b[key] != values { XCTFail("\(what): \(key) differs"); return }
    }

    /// Saved at TP2 x DP2 with the distributed optimizer, each rank having written only its own file, the state
    /// read back at one rank and at four other layouts is the same bit for bit (model, optimizer moments, steps).
    /// (testCheckpointsMoveBetweenLayouts resumes TP2 x DP2 -> TP1 x DP4 -> TP4 training through the same path.)
    func testEveryLayoutReadsWhatAnotherWrote() throws {
        let tp2dp2 = "--tensor-model-parallel-size 2 --use-distributed-optimizer"
        let path = try save("tp2dp2", world: 4, tp2dp2)
        try assertEachRankWroteItsShard(URL(fileURLWithPath: path).appendingPathComponent("iter_0000002"), ranks: 4)
        let reference = try loaded(path, world: 1, "")
        XCTAssertEqual(reference["steps"], [2, 2])
        XCTAssertTrue(reference.keys.contains { $0.hasPrefix("optimizer.state1.") }, "the moments were read")
        for (world, layout) in [(2, "--use-distributed-optimizer"), (2, "--tensor-model-parallel-size 2"),
                                (4, "--tensor-model-parallel-size 4"), (4, "--use-distributed-optimizer")] {
            assertSame(try loaded(path, world: world, layout), reference, "TP2 x DP2 -> \(world) ranks \(layout)")
        }
    }

    /// Each rank writes its own file with only its own boxes: at TP2 x DP2 with the distributed optimizer no file
    /// holds half of the checkpoint (a gather onto one rank would write it all there), and the boxes cover every
    /// tensor exactly once (the reader refuses overlaps and gaps).
    private func assertEachRankWroteItsShard(_ directory: URL, ranks: Int) throws {
        let sizes = try (0..<ranks).map { rank in
            try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("__\(rank)_0.distcp").path)[.size] as? Int)
        }
        let total = sizes.reduce(0, +)
        XCTAssertLessThan(sizes.max()!, total / 2, "bytes per rank: \(sizes)")
        XCTAssertGreaterThan(sizes.min()!, total / 8, "bytes per rank: \(sizes)")
        let reader = try DistributedCheckpointReader(directory: directory)
        for key in reader.tensorKeys { _ = try reader.read(key, box: ShardBox(whole: reader.shape(of: key)!)) }
    }

    /// A vocabulary padded to 504 rows at TP1 (divisible by 8) and 512 at TP2 (by 16): read at TP2 the saved rows
    /// are where they were and the extra ones zero.
    func testPaddedVocabularyIsRecut() throws {
        let flags = "--make-vocab-size-divisible-by 8"
        let path = try save("tp1", world: 1, flags, vocab: 500)
        let original = try loaded(path, world: 1, flags, vocab: 500)
        let atTP2 = try loaded(path, world: 2, flags + " --tensor-model-parallel-size 2", vocab: 500)
        let embedding = try XCTUnwrap(atTP2["embedding.word_embeddings.weight"])
        XCTAssertEqual(embedding.count, 512 * 32)
        XCTAssertEqual(Array(embedding.prefix(504 * 32)), original["embedding.word_embeddings.weight"])
        XCTAssertTrue(embedding.suffix(8 * 32).allSatisfy { $0 == 0 })
    }


    /// `--async-save` (two saves, the second waiting for the first, the last one waited for at the end) leaves the
    /// same checkpoints as synchronous saves, bit for bit.
    func testAsyncSaveEqualsSync() throws {
        let layout = "--tensor-model-parallel-size 2"
        let async = try save("async", world: 2, layout + " --async-save", interval: 1)
        let sync = try save("sync", world: 2, layout, interval: 1)
        XCTAssertEqual(try CheckpointDirectory(root: URL(fileURLWithPath: async)).iterations(), [1, 2])
        XCTAssertEqual(try CheckpointDirectory(root: URL(fileURLWithPath: async)).latestIteration(), 2)
        assertSame(try loaded(async, world: 1, ""), try loaded(sync, world: 1, ""), "async vs sync")
    }
}
