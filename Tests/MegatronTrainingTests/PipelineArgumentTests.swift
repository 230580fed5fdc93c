import XCTest
@testable import MegatronTraining

/// The pipeline flags of `pretrain-gpt`: layouts Megatron refuses are errors naming the flags, virtual stages
/// derived as Megatron derives them; checkpoints of pipeline stages are saved in torch_dist, not in the one-file
/// safetensors layout.
final class PipelineArgumentTests: XCTestCase {
    private let base = "--num-layers 4 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 1 --train-iters 2 --lr 1e-4"

    private func message(_ flags: String, layers: Int = 4) -> String {
        let base = self.base.replacingOccurrences(of: "--num-layers 4 ", with: "--num-layers \(layers) ")
        do {
            try MegatronArgumentParser.parse((base + " " + flags).split(separator: " ").map(String.init)).validate()
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testLayoutsMegatronRefusesAreErrorsNamingTheFlags() {
        XCTAssertEqual(message("--pipeline-model-parallel-size 2"), "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 3 --decoder-first-pipeline-num-layers 1 --decoder-last-pipeline-num-layers 1"),
                       "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 3"), "--num-layers 4 is not divisible by --pipeline-model-parallel-size 3")
        XCTAssertEqual(message("--pipeline-model-parallel-size 3 --account-for-embedding-in-pipeline-split --account-for-loss-in-pipeline-split"),
                       "no error")   // 4 layers + embedding + loss = 6 split over 3 stages
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --overlap-grad-reduce"), "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --overlap-grad-reduce --untie-embeddings-and-output-weights"), "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --decoder-first-pipeline-num-layers 3 --decoder-last-pipeline-num-layers 3"),
                       "--decoder-first-pipeline-num-layers and --decoder-last-pipeline-num-layers take more than the 4 layers")
    }

    func testVirtualStagesAsMegatronDerivesAndRefusesThem() throws {
        func chunks(_ flags: String) throws -> Int? {
            try MegatronArgumentParser.parse((base + " " + flags).split(separator: " ").map(String.init)).virtualPipelineSize()
        }
        XCTAssertEqual(try chunks("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1"), 2)
        XCTAssertEqual(try chunks("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 2"), nil)   // one chunk: 1F1B
        XCTAssertEqual(try chunks("--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2"), 2)
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1 --global-batch-size 4"), "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1 --num-virtual-stages-per-pipeline-rank 2"),
                       "no more than one of --num-layers-per-virtual-pipeline-stage and --num-virtual-stages-per-pipeline-rank can be set")
        XCTAssertEqual(message("--num-layers-per-virtual-pipeline-stage 1"),
                       "--num-layers-per-virtual-pipeline-stage 1 asks for the interleaved schedule (4 virtual stages), which needs "
                        + "--pipeline-model-parallel-size greater than 1")
        XCTAssertTrue(message("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1 --no-overlap-p2p-communication")
            .hasPrefix("the interleaved schedule with --no-overlap-p2p-communication needs --pipeline-model-parallel-size greater than 2"))
        XCTAssertTrue(message("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1 --decoder-first-pipeline-num-layers 2")
            .hasPrefix("with uneven pipeline stages"))
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2 --decoder-first-pipeline-num-layers 2"
                               + " --global-batch-size 2"), "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1 --global-batch-size 4 "
                               + "--overlap-p2p-communication-warmup-flush"), "no error")
        XCTAssertTrue(message("--pipeline-model-parallel-size 2 --overlap-p2p-communication-warmup-flush")
            .hasPrefix("--overlap-p2p-communication-warmup-flush applies to the interleaved pipeline schedule"))
        XCTAssertEqual(message("--pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 1 --global-batch-size 4 "
                               + "--no-overlap-p2p-communication --overlap-p2p-communication-warmup-flush", layers: 8),
                       "--overlap-p2p-communication-warmup-flush needs overlapped transfers: drop --no-overlap-p2p-communication")
        // One micro-batch is fewer than the pipeline's two stages: Megatron's group-size check.
        XCTAssertTrue(message("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1").contains("1 micro-batches"))
    }

    func testPipelineCheckpointsAreTorchDist() {
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --save ckpt --save-interval 1 --load ckpt"), "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --load ckpt --ckpt-format safetensors"), "no error")
        XCTAssertTrue(message("--pipeline-model-parallel-size 2 --save ckpt --save-interval 1 --ckpt-format safetensors")
            .hasPrefix("--ckpt-format safetensors with --pipeline-model-parallel-size 2: that layout is one file of the whole model"))
        XCTAssertEqual(message("--pipeline-model-parallel-size 1 --save ckpt --save-interval 1 --ckpt-format safetensors"), "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --save ckpt --save-interval 1 --ckpt-format torch"), """
            pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):
              checkpoint formats (--ckpt-format): --ckpt-format torch
            """)
    }
}
