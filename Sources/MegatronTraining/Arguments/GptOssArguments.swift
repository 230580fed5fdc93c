import Foundation
import MegatronCore

/// gpt-oss's model flags read as Megatron reads them: `--window-size` (`tuple_type`), `--window-attn-skip-freq`
/// (`moe_freq_type`), YaRN's settings (`_apply_yarn_config_from_args`), and the checks Megatron makes of them.
extension PretrainArguments {
    /// The left extent of `--window-size left,right`; nil without a window or with an unlimited one (-1).
    /// GPT attention is causal, so the right extent must be 0 (or -1, which causal attention turns into 0, as
    /// Transformer Engine does).
    func slidingWindow() throws -> Int? {
        guard let windowSize else { return nil }
        let parts = windowSize.trimmingCharacters(in: CharacterSet(charactersIn: "() ")).split(separator: ",", omittingEmptySubsequences: false)
            .map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let left = parts[0], let right = parts[1] else {
            throw ArgumentError("--window-size needs two integers, left,right (e.g. 127,0), got '\(windowSize)'")
        }
        guard right == 0 || right == -1 else {
            throw ArgumentError("--window-size \(windowSize): GPT attention is causal, so the window's right extent must be 0, got \(right)")
        }
        guard left >= -1 else { throw ArgumentError("--window-size \(windowSize): the left extent must be >= 0 (or -1 for unlimited)") }
        return left == -1 ? nil : left
    }

    /// `--window-attn-skip-freq`: every N-th layer full, or a list pattern with one entry per layer (1: windowed).
    func windowAttnPattern() throws -> LayerPattern? {
        guard let text = windowAttnSkipFreq else { return nil }
        let flag = "--window-attn-skip-freq"
        switch try LayerPatternExpression.evaluate(text, flag: flag) {
        case .int(let n):
            guard n > 0 else { throw ArgumentError("\(flag) needs a positive integer or a list pattern, got '\(text)'") }
            return .frequency(n)
        case .list(let list):
            guard list.count == numLayers else {
                throw ArgumentError("\(flag) \(text) gives \(list.count) layers; the model has --num-layers \(numLayers)")
            }
            return .list(list)
        }
    }

    /// YaRN's settings with `--position-embedding-type yarn`, Megatron's defaults where a flag is not given.
    func yarnScaling() -> YarnScaling? {
        guard positionEmbeddingType == .yarn else { return nil }
        let defaults = YarnScaling()
        return YarnScaling(factor: rotaryScalingFactor,
                           originalMaxPositionEmbeddings: yarnOriginalMaxPositionEmbeddings ?? defaults.originalMaxPositionEmbeddings,
                           betaFast: yarnBetaFast ?? defaults.betaFast, betaSlow: yarnBetaSlow ?? defaults.betaSlow,
                           mscale: mscale, mscaleAllDim: mscaleAllDim,
                           correctionRangeRoundToInt: yarnCorrectionRangeRoundToInt ?? defaults.correctionRangeRoundToInt)
    }

    /// Megatron's checks of the gpt-oss flags (`core_transformer_config_from_args`, `TransformerConfig`).
    func validateGptOss() throws {
        if quickGeglu && (swiglu || squaredRelu) {
            throw ArgumentError("--quick-geglu cannot be combined with \(swiglu ? "--swiglu" : "--squared-relu")")
        }
        if swiglu, let clamp = activationFuncClampValue, numExperts == nil {
            throw ArgumentError("--activation-func-clamp-value \(clamp) with --swiglu is only supported with mixture of experts (as in Megatron)")
        }
        if let clamp = activationFuncClampValue, clamp <= 0 {
            throw ArgumentError("--activation-func-clamp-value must be positive, got \(clamp)")
        }
        if gluLinearOffset != 0 && mlpActivation == .gelu {
            throw ArgumentError("--glu-linear-offset \(gluLinearOffset) needs a gated MLP (--quick-geglu); with the fused bias GeLU Megatron refuses it")
        }
        if softmaxType == .learnable && initMethodXavierUniform {
            throw ArgumentError("--softmax-type learnable with --init-method-xavier-uniform: the sinks are 1-D and have no fans for xavier init (Megatron fails too)")
        }
        _ = try slidingWindow()
        _ = try windowAttnPattern()
    }
}
