import XCTest
@testable import MegatronTraining

/// The pipeline flags of `pretrain-gpt`: layouts Megatron refuses are errors naming the flags; checkpoints of
/// pipeline stages are saved in torch_dist, not in the one-file safetensors layout.
final class PipelineArgumentTests: XCTestCase {
    private let base = "--num-layers 4 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 1 --train-iters 2 --lr 1e-4"

    private func message(_ flags: String) -> String {
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
        XCTAssertTrue(message("--pipeline-model-parallel-size 2 --overlap-grad-reduce").hasPrefix("--overlap-grad-reduce with --pipeline-model-parallel-size 2 and tied embeddings"))
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --overlap-grad-reduce --untie-embeddings-and-output-weights"), "no error")
        XCTAssertEqual(message("--pipeline-model-parallel-size 2 --decoder-first-pipeline-num-layers 3 --decoder-last-pipeline-num-layers 3"),
                       "--decoder-first-pipeline-num-layers and --decoder-last-pipeline-num-layers take more than the 4 layers")
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
