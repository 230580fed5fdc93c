import Foundation
import XCTest
import MegatronTestSupport

/// `megatron launch --nproc-per-node 4 -- pretrain-gpt ...` on the CPU (thread ranks), checked on its log
/// against `megatron pretrain-gpt` on one rank.
final class LaunchPretrainTests: XCTestCase {
    private func output(_ binary: URL, _ command: String) throws -> String {
        let process = Process()
        process.executableURL = binary
        process.arguments = command.split(separator: " ").map(String.init)
        var environment = ProcessInfo.processInfo.environment
        environment["CUDA_VISIBLE_DEVICES"] = ""   // thread ranks: the CPU even on a GPU machine
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 0, text)
        return text
    }

    /// The lm loss values of the log lines, in order.
    private func losses(_ log: String) -> [String] {
        log.split(separator: "\n").compactMap { line in
            line.range(of: "lm loss: ").map { String(line[$0.upperBound...].prefix(12)) }
        }
    }

    func testFourThreadRanksLogTheSingleRankLosses() throws {
        let binary = try builtMegatronExecutable()
        let flags = "--num-layers 1 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 --micro-batch-size 2 "
            + "--global-batch-size 8 --train-iters 3 --lr 3e-3 --log-interval 1 --eval-iters 1 --hidden-dropout 0 "
            + "--attention-dropout 0 --mock-data --tokenizer-type NullTokenizer --vocab-size 511 --device cpu"
        let single = losses(try output(binary, "pretrain-gpt " + flags))
        let launched = try output(binary, "launch --threads --nproc-per-node 4 -- pretrain-gpt " + flags
                                  + " --tensor-model-parallel-size 2 --use-distributed-optimizer")
        XCTAssertEqual(single.count, 3)
        XCTAssertEqual(losses(launched).count, 3, "rank 0 alone logs: \(launched)")
        for (a, b) in zip(losses(launched), single) {
            XCTAssertEqual(Double(a)!, Double(b)!, accuracy: 2e-5, "launched \(launched)")
        }
    }

    /// 1F1B with uneven stages and the distributed optimizer; then interleaved 1F1B (two model chunks per rank,
    /// p2p overlapped as Megatron's default) with tied embeddings and the data-parallel reduction overlapped
    /// with the backward. Both against one single-rank run, their communication checked against NCCL's ordering
    /// rules (`--check-nccl-order`: training, evaluation and setup as they would run on GPUs).
    func testPipelineStagesOnThreadRanksLogTheSingleRankLosses() throws {
        let binary = try builtMegatronExecutable()
        let flags = "--num-layers 4 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
            + "--micro-batch-size 2 --global-batch-size 8 --train-iters 3 --lr 3e-3 --log-interval 1 --eval-iters 1 --eval-interval 3 "
            + "--hidden-dropout 0 --attention-dropout 0 --mock-data --tokenizer-type NullTokenizer --vocab-size 511 --device cpu"
        // The training lines, then the validation loss (forward only through the stages).
        func logged(_ log: String) -> [String] {
            losses(log) + log.split(separator: "\n").compactMap { line in
                line.range(of: "lm loss value: ").map { String(line[$0.upperBound...].prefix(12)) }
            }
        }
        let single = logged(try output(binary, "pretrain-gpt " + flags))
        XCTAssertGreaterThan(single.count, 3)
        for pipeline in ["--pipeline-model-parallel-size 2 --decoder-first-pipeline-num-layers 1 --decoder-last-pipeline-num-layers 3 "
                            + "--use-distributed-optimizer",
                         "--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1 --use-distributed-optimizer "
                            + "--overlap-grad-reduce"] {
            let launched = try output(binary, "launch --check-nccl-order --nproc-per-node 4 -- pretrain-gpt " + flags + " " + pipeline)
            XCTAssertTrue(launched.contains("NCCL order check: ") && launched.contains("free of deadlock"), launched)
            XCTAssertEqual(logged(launched).count, single.count, "rank 0 alone logs: \(launched)")
            for (a, b) in zip(logged(launched), single) {
                XCTAssertEqual(Double(a)!, Double(b)!, accuracy: 2e-5, "\(pipeline): launched \(launched)")
            }
        }
    }

    /// Expert parallelism through `launch`: EP=2 x DP=2 with the alltoall dispatcher logs the single-rank lm and
    /// load-balancing losses; its checkpoint (experts by their global numbers), torch_dist or safetensors, then
    /// resumes on one rank, every expert whole there, and the next iteration logs what the uninterrupted single-rank
    /// run logs.
    func testExpertParallelRanksMatchOneRankAndTheirCheckpointResumesOnOne() throws {
        let binary = try builtMegatronExecutable()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ep-ckpt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let flags = "--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 --micro-batch-size 2 "
            + "--global-batch-size 8 --lr 3e-3 --log-interval 1 --eval-iters 0 --hidden-dropout 0 --attention-dropout 0 --mock-data "
            + "--tokenizer-type NullTokenizer --vocab-size 511 --device cpu --num-experts 4 --moe-router-topk 2 --moe-aux-loss-coeff 0.01 --lr-decay-style constant --lr-decay-iters 4 "
            + "--moe-ffn-hidden-size 24 --use-distributed-optimizer --disable-bias-linear"
        func logged(_ log: String) -> [String] {
            log.split(separator: "\n").compactMap { line in
                guard let lm = line.range(of: "lm loss: "), let lb = line.range(of: "load_balancing_loss: ") else { return nil }
                return String(line[lm.upperBound...].prefix(12)) + " " + String(line[lb.upperBound...].prefix(12))
            }
        }
        let single = logged(try output(binary, "pretrain-gpt --train-iters 4 " + flags))
        XCTAssertEqual(single.count, 4)
        // torch_dist: each rank writes its experts' boxes; safetensors: rank 0 writes the experts gathered.
        for format in ["torch_dist", "safetensors"] {
            let save = directory.appendingPathComponent(format).path
            let launchLog = try output(binary, "launch --check-nccl-order --nproc-per-node 4 -- pretrain-gpt --train-iters 3 " + flags
                                       + " --expert-model-parallel-size 2 --moe-token-dispatcher-type alltoall --ckpt-format \(format) "
                                       + "--save \(save) --save-interval 3")
            XCTAssertTrue(launchLog.contains("free of deadlock"), "\(format): \(launchLog)")
            let launched = logged(launchLog)
            let resumed = logged(try output(binary, "pretrain-gpt --train-iters 4 " + flags + " --ckpt-format \(format) --load \(save) "
                                            + "--use-checkpoint-opt_param-scheduler"))
            XCTAssertEqual(launched.count, 3, "\(format): rank 0 alone logs")
            XCTAssertEqual(resumed.count, 1, "\(format): only iteration 4 runs after the load")
            for (found, expected) in zip(launched + resumed, single) {
                for (a, b) in zip(found.split(separator: " "), expected.split(separator: " ")) {
                    XCTAssertEqual(Double(a)!, Double(b)!, accuracy: 2e-5, "\(format): \(launched + resumed) against \(single)")
                }
            }
        }
    }
}
