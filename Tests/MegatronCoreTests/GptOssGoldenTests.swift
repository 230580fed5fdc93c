import XCTest
import MegatronTensor
@testable import MegatronCore

/// gpt-oss's dense features against Megatron's own pure-torch pieces (fixtures from
/// scripts/fixtures/make_gpt_oss_golden.py): learnable and off-by-one attention sinks, a sliding window on
/// every layer or on odd ones (`--window-attn-skip-freq 2`), YaRN positions, quick GeGLU with a linear offset
/// and a clamp; logits, loss and every gradient (the sinks' included).
extension ModelFeatureGoldenTests {
    static let gptOssRoPELearnable = try! TransformerConfig(
        numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, numQueryGroups: 2, kvChannels: 8, ffnHiddenSize: 24,
        normalization: .rmsNorm, gatedLinearUnit: true, activation: .quickGelu, addBiasLinear: false, hiddenDropout: 0,
        attentionDropout: 0, positionEmbeddingType: .rope, layernormZeroCenteredGamma: true, gluLinearOffset: 1,
        activationFuncClampValue: 2, softmaxType: .learnable, slidingWindow: 3, windowAttnSkipFreq: .frequency(2))
    static let gptOssYarnOffByOne = try! TransformerConfig(
        numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, numQueryGroups: 2, kvChannels: 8, ffnHiddenSize: 24,
        normalization: .rmsNorm, gatedLinearUnit: true, activation: .quickGelu, addBiasLinear: false, hiddenDropout: 0,
        attentionDropout: 0, positionEmbeddingType: .rope, layernormZeroCenteredGamma: true, gluLinearOffset: 0.5,
        softmaxType: .offByOne, slidingWindow: 2,
        yarn: YarnScaling(factor: 4, originalMaxPositionEmbeddings: 8, correctionRangeRoundToInt: false))

    func testGptOssSinksWindowOnOddLayersAndClampedQuickGeGLUMatchMegatron() throws {
        try compare("gpt_oss_rope_learnable", config: Self.gptOssRoPELearnable, untied: true, directory: "gpt_oss")
    }

    func testGptOssYaRNOffByOneAndWindowedLayersMatchMegatron() throws {
        try compare("gpt_oss_yarn_off_by_one", config: Self.gptOssYarnOffByOne, untied: true, directory: "gpt_oss")
    }
}
