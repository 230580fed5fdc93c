import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// One training step of a small GPT on the GPU with its host copies counted: the forward and backward
/// copy nothing to the host, whatever the fused kernels take (fp32 attention, rows wider than the norm
/// kernels hold, dropout on); the optimizer step reads the gradient norm once; reading the loss is one
/// more copy, the caller's.
final class HostCopyTrainingStepGPUTests: XCTestCase {
    func testTrainingStepCopiesToTheHostOnlyWhatTheCallerReads() throws {
        let gpu = try requireGPU("host copies of a GPU training step")
        let copies = try CUDAContext.shared(ordinal: 0).hostCopies
        let small = { (dtype: DType, normalization: TransformerConfig.Normalization) in
            try TransformerConfig(numLayers: 2, hiddenSize: 64, numAttentionHeads: 4, numQueryGroups: 2,
                                  normalization: normalization, gatedLinearUnit: normalization == .rmsNorm,
                                  activation: normalization == .rmsNorm ? .silu : .gelu, hiddenDropout: 0.1,
                                  attentionDropout: 0.1, positionEmbeddingType: normalization == .rmsNorm ? .rope : .learnedAbsolute,
                                  paramsDType: dtype)
        }
        // Rows of 12,416 (wider than CUDAKernels.normMaxColumns) for every norm, at a few thousand parameters
        // a matrix: one 8-wide head, an 8-wide MLP.
        let wide = { (dtype: DType) in
            try TransformerConfig(numLayers: 1, hiddenSize: 12_416, numAttentionHeads: 1, kvChannels: 8, ffnHiddenSize: 8,
                                  hiddenDropout: 0.1, attentionDropout: 0.1, paramsDType: dtype)
        }
        let cases: [(String, TransformerConfig)] = [
            ("fp32 LayerNorm GELU", try small(.float32, .layerNorm)), ("bf16 LayerNorm GELU", try small(.bfloat16, .layerNorm)),
            ("fp32 RMSNorm SwiGLU RoPE", try small(.float32, .rmsNorm)), ("bf16 RMSNorm SwiGLU RoPE", try small(.bfloat16, .rmsNorm)),
            ("fp32 hidden 12,416", try wide(.float32)), ("bf16 hidden 12,416", try wide(.bfloat16)),
        ]
        let (batch, sequence, vocabulary) = (2, 16, 64)
        let ids = (0..<(batch * (sequence + 1))).map { ($0 * 37 + 11) % vocabulary }
        let tokens = Tensor(shape: [batch, sequence], ints: (0..<batch).flatMap { b in ids[(b * (sequence + 1))..<(b * (sequence + 1) + sequence)] }).to(gpu)
        let labels = Tensor(shape: [batch, sequence], ints: (0..<batch).flatMap { b in ids[(b * (sequence + 1) + 1)...(b * (sequence + 1) + sequence)] }).to(gpu)
        let scheduler = try OptimizerParamScheduler(
            .init(maxLR: 1e-3, lrDecaySteps: 10, lrDecayStyle: .constant, startWD: 0.01, endWD: 0.01, wdIncrSteps: 10))
        for (name, config) in cases {
            let model = onDevice(gpu) { GPTModel(config: config, vocabSize: vocabulary, maxSequenceLength: sequence) }
            model.train()
            let parameters = model.namedParameters().map { (name: $0.0, tensor: $0.1) }
            let optimizer = MixedPrecisionOptimizer(groups: [ParamGroup(parameters: parameters)], rule: try AdamRule.adamW())
            optimizer.zeroGrad()

            let start = copies.count
            let loss = model.loss(tokens: tokens, labels: labels).mean()
            loss.backward()
            let forwardBackward = copies.count - start
            XCTAssertEqual(forwardBackward.deviceToHost, 0, "\(name): forward and backward copied to the host")
            let report = optimizer.step(scheduler: scheduler, clipGrad: 1)
            let step = copies.count - start - forwardBackward
            XCTAssertLessThanOrEqual(step.deviceToHost, 1, "\(name): the optimizer step reads the gradient norm, nothing else")
            let value = loss.item()
            XCTAssertEqual((copies.count - start).deviceToHost, forwardBackward.deviceToHost + step.deviceToHost + 1,
                           "\(name): reading the loss is one copy")
            XCTAssertTrue(value.isFinite && report.updated && report.gradNorm.isFinite, "\(name): loss \(value), \(report)")
            print("\(name): loss \(value); forward + backward \(forwardBackward), optimizer step \(step)")
        }
    }
}
