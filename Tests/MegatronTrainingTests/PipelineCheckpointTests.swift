import Foundation
import XCTest
import MegatronCore
import MegatronParallel
import MegatronTensor
@testable import MegatronTraining
import MegatronTestSupport

/// torch_dist checkpoints of pipeline-parallel runs on thread ranks: each stage writes its own layers under their
/// global numbers (the tied embedding once, from the first stage), which makes the checkpoint of a pipeline layout
/// the single-rank one; it loads bit for bit into other pipeline and tensor sizes and into `megatron generate` /
/// `convert`'s one-rank model, and a resumed run logs the uninterrupted run's losses.
final class PipelineCheckpointTests: XCTestCase {
    private let base = "--num-layers 4 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
        + "--micro-batch-size 1 --global-batch-size 4 --lr 3e-3 --log-interval 1 --eval-iters 1 --eval-interval 1000 --device cpu --seed 7"
    private let noDropout = " --hidden-dropout 0 --attention-dropout 0"
    private var root: URL!

    override func setUpWithError() throws { root = scratchPath("pp-ckpt") }

    private func arguments(_ extra: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse((base + " " + extra).split(separator: " ").map(String.init))
    }

    /// The pretrainer of each of `world` thread ranks for `flags`, given to `body`; its results by world rank.
    private func onRanks<T>(_ world: Int, _ flags: String, log: @escaping @Sendable (String) -> Void = { _ in },
                            _ body: @escaping (Pretrainer) throws -> T) throws -> [T] {
        let args = try arguments(flags)
        return try ThreadCommunicator.run(worldSize: world, timeout: 120) { comm in
            let training = try TrainingWorld.make(args, world: comm)
            return try body(try Pretrainer(arguments: args, parallel: training.parallel, log: log))
        }
    }

    /// Trains 2 iterations at `world` ranks with `layout` flags, saving into `name`.
    private func save(_ name: String, world: Int, _ layout: String) throws -> String {
        let path = root.appendingPathComponent(name).path
        _ = try onRanks(world, "--train-iters 2 --save \(path) --save-interval 2" + noDropout + " " + layout) { try $0.run() }
        return path
    }

    /// The whole model and optimizer state (single-rank names and shapes), step count and iteration after loading
    /// `path` at `world` ranks with `layout` flags: every stage's part, gathered over tensor parallelism; a tied
    /// embedding copy and its optimizer state must equal the first stage's.
    private func loaded(_ path: String, world: Int, _ layout: String) throws -> [String: [Float]] {
        let parts = try onRanks(world, "--train-iters 2 --load \(path)" + noDropout + " " + layout) { pretrainer -> [String: [Float]]? in
            let (model, optimizer) = try ParallelCheckpoint.gather(model: pretrainer.model, optimizerState: try pretrainer.optimizer.stateTensors())
            guard pretrainer.parallel.dataWithContext.rank == 0 else { return nil }
            var state = model.mapValues(Self.realVocabulary)
            for (key, t) in optimizer { state["optimizer." + key] = Self.realVocabulary(t) }
            state["steps"] = [Float(pretrainer.optimizer.stepCount), Float(pretrainer.iteration)]
            return state
        }
        var whole: [String: [Float]] = [:]
        for part in parts.compactMap({ $0 }) {
            for (key, values) in part {
                if let held = whole[key] { XCTAssertEqual(held, values, "\(key): two stages hold it differently") }
                whole[key] = values
            }
        }
        return whole
    }

    /// The embedded corpus's vocabulary (256 bytes and the end of document) is padded to 384 rows at TP=1 and to
    /// 512 at TP=2: vocabulary tensors are compared on their real rows.
    static func realVocabulary(_ t: Tensor) -> [Float] {
        let vocabulary = ByteTokens.vocabularySize
        return (t.shape.count == 2 && t.size(0) > vocabulary ? t.narrowed(0, start: 0, length: vocabulary) : t).to(.cpu).madeContiguous().floats()
    }

    private func assertSame(_ a: [String: [Float]], _ b: [String: [Float]], _ what: String) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), what)
        for (key, values) in a where b[key] != values { XCTFail("\(what): \(key) differs"); return }
    }

    /// Saved before training from the same seed, a PP=2 (tied) and a PP=3 (untied, uneven stages) checkpoint hold
    /// the PP=1 checkpoint's tensors under its keys and global shapes, bit for bit, model and optimizer; the
    /// stages only add their dropout RNG positions.
    func testPipelineSaveIsTheSingleRankSave() throws {
        for (stages, model, placement) in [(2, "", ""), (3, "--untie-embeddings-and-output-weights", "--decoder-first-pipeline-num-layers 2")] {
            let single = root.appendingPathComponent("single-\(stages)"), pipelined = root.appendingPathComponent("pp-\(stages)")
            for (world, path, flags) in [(1, single, ""), (stages, pipelined, "--pipeline-model-parallel-size \(stages) " + placement)] {
                _ = try onRanks(world, "--train-iters 2 --save \(path.path) --save-interval 1 \(model) \(flags)") { try $0.saveCheckpoint() }
            }
            let a = try DistributedCheckpointReader(directory: single.appendingPathComponent("iter_0000000"))
            let b = try DistributedCheckpointReader(directory: pipelined.appendingPathComponent("iter_0000000"))
            XCTAssertEqual(a.tensorKeys, b.tensorKeys)
            XCTAssertTrue(a.tensorKeys.contains("decoder.layers.mlp.linear_fc1.weight"), "layers stacked under global numbers")
            XCTAssertTrue(a.tensorKeys.contains { $0.hasPrefix("optimizer.state.exp_avg.") })
            for key in a.tensorKeys {
                XCTAssertEqual(a.shape(of: key), b.shape(of: key), key)
                let whole = ShardBox(whole: a.shape(of: key)!)
                XCTAssertEqual(try a.read(key, box: whole).floats(), try b.read(key, box: whole).floats(), key)
            }
            let rng = (0..<stages).map { ParallelCheckpoint.stageRNGKey(stage: $0, stages: stages) }
            XCTAssertEqual(Set(b.objectKeys), Set(a.objectKeys).union(rng))
        }
    }

    /// Trained at PP=2 x TP=2 and saved, the state reads back bit for bit at one rank, at PP=2, at PP=4, and at
    /// PP=4 x TP=2; and `megatron generate` / `convert`'s one-rank model of it (`GPTCheckpoint.load`) holds the
    /// same weights.
    func testPipelineTensorCheckpointLoadsIntoOtherLayouts() throws {
        let path = try save("pp2tp2", world: 4, "--pipeline-model-parallel-size 2 --tensor-model-parallel-size 2")
        let reference = try loaded(path, world: 1, "")
        XCTAssertEqual(reference["steps"], [2, 2])
        XCTAssertTrue(reference.keys.contains("optimizer.state1.decoder.layers.3.mlp.linear_fc2.weight"), "the moments were read")
        for (world, layout) in [(2, "--pipeline-model-parallel-size 2"), (4, "--pipeline-model-parallel-size 4"),
                                (8, "--pipeline-model-parallel-size 4 --tensor-model-parallel-size 2")] {
            assertSame(try loaded(path, world: world, layout), reference, "PP2 x TP2 -> \(layout)")
        }
        let oneRank = try GPTCheckpoint.load(from: CheckpointDirectory(root: URL(fileURLWithPath: path)))
        XCTAssertEqual(oneRank.model.stage, .whole(layers: 4))
        for (name, p) in oneRank.model.namedParameters() { XCTAssertEqual(Self.realVocabulary(p), reference[name], name) }
    }

    /// The distributed optimizer's shards of an untied PP=2 x DP=2 run read back at one rank and at PP=4 with the
    /// distributed optimizer; a single-rank checkpoint (torch_dist, or safetensors, which PP only loads) reads
    /// into PP=2 the same.
    func testDistributedOptimizerAndSingleRankCheckpointsCrossPipelineSizes() throws {
        let untied = "--untie-embeddings-and-output-weights"
        let path = try save("pp2dp2", world: 4, "--pipeline-model-parallel-size 2 --use-distributed-optimizer " + untied)
        let reference = try loaded(path, world: 1, untied)
        XCTAssertNotNil(reference["output_layer.weight"])
        assertSame(try loaded(path, world: 4, "--pipeline-model-parallel-size 4 --use-distributed-optimizer " + untied), reference,
                   "PP2 x DP2 -> PP4")
        for format in ["torch_dist", "safetensors"] {
            let single = try save(format, world: 1, "--ckpt-format \(format)")
            assertSame(try loaded(single, world: 2, "--pipeline-model-parallel-size 2"), try loaded(single, world: 1, ""), "PP1 -> PP2 \(format)")
        }
    }

    /// PP=2 x DP=2 with the distributed optimizer and dropout, saved at iteration 2 and resumed: iterations 3 and 4
    /// log the uninterrupted run's losses exactly (each stage's dropout stream resumes where it stood).
    func testResumedPipelineRunLogsTheUninterruptedLosses() throws {
        let layout = "--pipeline-model-parallel-size 2 --use-distributed-optimizer --train-iters 4 --hidden-dropout 0.1 --attention-dropout 0.1"
        let path = root.appendingPathComponent("resume").path
        let straight = try losses(layout)
        let first = try losses(layout + " --save \(path) --save-interval 100 --exit-interval 2")
        XCTAssertEqual(try CheckpointDirectory(root: URL(fileURLWithPath: path)).latestIteration(), 2)
        let second = try losses(layout + " --load \(path)")
        XCTAssertEqual(straight.count, 4)
        XCTAssertEqual(first + second, straight)
    }

    /// The `lm loss` of each iteration line the ranks of a 4-rank run log.
    private func losses(_ flags: String) throws -> [String] {
        let lines = LockedLines()
        _ = try onRanks(4, flags, log: { lines.append($0) }) { try $0.run() }
        return lines.all.filter { $0.contains("] iteration ") }.map { line in
            String(line[line.range(of: "lm loss: ")!.upperBound...].prefix(12))
        }
    }
}

/// Lines logged from several thread ranks.
private final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}
