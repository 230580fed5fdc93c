import Foundation
import XCTest
import MegatronCore
import MegatronCUDA
import MegatronParallel
import MegatronTensor
@testable import MegatronTraining

/// Megatron's `--grad-reduce-in-bf16`, `--apply-wd-to-qk-layernorm`, `--disable-bf16-reduced-precision-matmul`
/// and `--tp-comm-overlap` / `--tp-comm-overlap-cfg` through the command line into a run.
final class TrainFlagTests: XCTestCase {
    let model = "--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 2 --lr 3e-3 --log-interval 1 --eval-iters 1 --eval-interval 1000 --hidden-dropout 0 "
        + "--attention-dropout 0 --device cpu "

    func parse(_ line: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse((model + line).split(separator: " ").map(String.init))
    }

    func errorText(_ line: String) -> String {
        do {
            try parse(line).validate()
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    /// A bf16 run on two data-parallel thread ranks (distributed optimizer) with bf16 gradient reduction
    /// trains, its gradients living in bf16 buffers; one rank keeps bf16 main grads of its own.
    func testGradReduceInBF16Trains() throws {
        let args = try parse("--bf16 --grad-reduce-in-bf16 --global-batch-size 8 --train-iters 8 --use-distributed-optimizer")
        let results = try ThreadCommunicator.run(worldSize: 2) { world -> ([Double], Set<DType>) in
            let trainer = try Pretrainer(arguments: args, parallel: try ParallelState(layout: ParallelLayout(worldSize: world.size), world: world)) { _ in }
            let losses = try trainer.run().intervalLosses
            return (losses, Set(trainer.model.namedParameters().compactMap { $0.1.grad?.dtype }))
        }
        for (losses, gradTypes) in results {
            XCTAssertEqual(losses.count, 8)
            XCTAssertTrue(losses.allSatisfy(\.isFinite), "\(losses)")
            XCTAssertLessThan(losses.last!, losses.first!, "\(losses)")
            XCTAssertEqual(gradTypes, [.bfloat16])
        }
        let single = try Pretrainer(arguments: try parse("--bf16 --grad-reduce-in-bf16 --train-iters 1")) { _ in }
        _ = try single.run()
        XCTAssertEqual(Set(single.model.namedParameters().compactMap { $0.1.grad?.dtype }), [.bfloat16])
        let fp32 = try Pretrainer(arguments: try parse("--bf16 --train-iters 1")) { _ in }
        _ = try fp32.run()
        XCTAssertEqual(Set(fp32.model.namedParameters().compactMap { $0.1.grad?.dtype }), [.float32], "fp32 main grads by default")
    }

    /// The q/k layer-norm weights (and biases) join the weight-decayed group with `--apply-wd-to-qk-layernorm` (or its
    /// deprecated spelling); other norms and biases stay exempt. One AdamW step on zero gradients is pure
    /// decoupled decay: w(1 - lr wd) for the decayed, unchanged for the rest.
    func testQKLayernormWeightsAreDecayedWithTheFlag() throws {
        for (flag, decayed) in [("", false), ("--apply-wd-to-qk-layernorm", true),
                                ("--no-weight-decay-cond-type apply_wd_to_qk_layernorm", true)] {
            let trainer = try Pretrainer(arguments: try parse("--qk-layernorm --train-iters 1 --weight-decay 0.1 " + flag)) { _ in }
            let exempt = Set(trainer.optimizer.groups.filter { $0.override.wdMult == 0 }.flatMap { $0.parameters.map(\.name) })
            let qk = trainer.model.namedParameters().map(\.0).filter { $0.contains("q_layernorm.") || $0.contains("k_layernorm.") }
            XCTAssertEqual(qk.count, 8, "q and k layer-norm weights and biases of two layers (Megatron decays both)")
            for name in qk { XCTAssertEqual(exempt.contains(name), !decayed, "\(name) with '\(flag)'") }
            XCTAssertTrue(exempt.contains("decoder.layers.0.input_layernorm.weight"), "\(exempt.sorted())")
            let before = Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.0, $0.1.floats()) })
            try trainer.optimizer.zeroGrad()
            _ = try trainer.optimizer.step(scheduler: trainer.schedule.scheduler, clipGrad: 0, lossScale: 1)
            let after = Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.0, $0.1.floats()) })
            let factor = Float(1 - 3e-3 * 0.1)
            for name in qk + ["decoder.layers.0.input_layernorm.weight"] {
                let expected = exempt.contains(name) ? before[name]! : before[name]!.map { $0 * factor }
                for (a, b) in zip(after[name]!, expected) { XCTAssertEqual(a, b, accuracy: 1e-6, "\(name) with '\(flag)'") }
            }
        }
        XCTAssertTrue(errorText("--no-weight-decay-cond-type other --train-iters 1").contains("--no-weight-decay-cond-type"))
    }

    /// With `--bf16`, the flag reaches the GPU context's GEMM configuration through the environment it is made
    /// with (no global state); without `--bf16` it changes nothing, as in Megatron.
    func testDisableBF16ReducedPrecisionMatmulReachesTheGemmConfiguration() throws {
        let on = try parse("--bf16 --disable-bf16-reduced-precision-matmul --train-iters 1")
        XCTAssertEqual(on.requestedGemmReductionPrecision, .fp32PartialSums)
        let environment = on.cudaEnvironment([:])
        XCTAssertEqual(environment[CUDAContext.bf16ReducedPrecisionReductionVariable], "0")
        XCTAssertEqual(CUDAContext.gemmReductionPrecision(environment: environment), .fp32PartialSums)
        let fp32 = try parse("--disable-bf16-reduced-precision-matmul --train-iters 1")
        XCTAssertEqual(fp32.requestedGemmReductionPrecision, .reducedAllowed)
        XCTAssertEqual(CUDAContext.gemmReductionPrecision(environment: fp32.cudaEnvironment([:])), .reducedAllowed)
        XCTAssertEqual(CUDAContext.gemmReductionPrecision(environment: try parse("--bf16 --train-iters 1").cudaEnvironment([:])),
                       .reducedAllowed)
    }

    /// `--tp-comm-overlap` keeps Megatron's checks (sequence parallelism with TP above 1, no deterministic
    /// mode, a readable YAML `--tp-comm-overlap-cfg`) and says at start-up that nothing is overlapped here.
    func testTPCommOverlapIsCheckedAsMegatronAndNoted() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tp-overlap-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("ub.yaml").path, bad = directory.appendingPathComponent("bad.yaml").path
        try "qkv_fprop:\n  method: ring_exchange\n  aggregate: 1\n".write(toFile: good, atomically: true, encoding: .utf8)
        try "qkv_fprop: [unclosed\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let tp2 = "--train-iters 1 --tensor-model-parallel-size 2 --tp-comm-overlap "
        XCTAssertEqual(errorText(tp2 + "--sequence-parallel --tp-comm-overlap-cfg \(good)"), "no error")
        XCTAssertTrue(errorText(tp2).contains("can happen only when sequence parallelism is enabled"), errorText(tp2))
        XCTAssertTrue(errorText("--train-iters 1 --sequence-parallel --tp-comm-overlap").contains("--tp-comm-overlap"))
        XCTAssertTrue(errorText(tp2 + "--sequence-parallel --deterministic-mode").contains("--deterministic-mode requires tp_comm_overlap=False"))
        let missing = errorText(tp2 + "--sequence-parallel --tp-comm-overlap-cfg \(directory.path)/none.yaml")
        XCTAssertTrue(missing.contains("--tp-comm-overlap-cfg \(directory.path)/none.yaml: cannot read the file"), missing)
        let unparsable = errorText(tp2 + "--sequence-parallel --tp-comm-overlap-cfg \(bad)")
        XCTAssertTrue(unparsable.contains("--tp-comm-overlap-cfg \(bad): not valid YAML"), unparsable)
        let note = PretrainFlags.byName["--tp-comm-overlap"]!.note(nil)
        XCTAssertEqual(note, "tensor-parallel communication is not overlapped with the GEMMs here (no userbuffers); the run is otherwise identical")
    }
}
