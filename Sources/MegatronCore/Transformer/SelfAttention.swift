import Foundation
import MegatronAutograd
import MegatronTensor

/// Causal self-attention with a fused QKV projection, grouped-query attention and optional RoPE.
///
/// `linear_qkv` produces, for each query group, that group's query heads, then its key head, then its
/// value head (Megatron's layout), so a checkpoint's weights load unchanged.
public final class SelfAttention: Module {
    public let config: TransformerConfig
    public let linearQKV: ColumnParallelLinear
    public let linearProj: RowParallelLinear
    public let qLayernorm: (Module & NormLayer)?
    public let kLayernorm: (Module & NormLayer)?
    public let tensorParallel: TensorParallelGroup
    let rotary: RotaryEmbedding?
    let attentionDropout: Dropout
    /// The sink logits of `--softmax-type off-by-one` / `learnable`, nil for `vanilla`.
    public let sinks: AttentionSinks?
    /// How many earlier keys each query sees besides itself (a sliding window), nil for full attention.
    public let window: Int?
    /// Query heads and key/value groups on this rank (all of them on a single rank).
    let localHeads: Int
    let localGroups: Int
    /// Recompute the core attention in backward instead of keeping its activations (selective `core_attn`).
    public var recomputeCoreAttention = false

    public convenience init(config: TransformerConfig, generator: PhiloxGenerator, dropoutGenerator: PhiloxGenerator) {
        self.init(config: config, generator: generator, dropout: ModelParallelRNG(single: dropoutGenerator),
                  window: config.slidingWindow(layerNumber: 1))
    }

    /// With a tensor-parallel group, each rank holds `heads / size` query heads and `groups / size` key/value
    /// groups: `linear_qkv` is column-parallel (whole query groups per rank, as Megatron's fused layout
    /// allows) and `linear_proj` row-parallel. Attention dropout then draws from the split generator.
    /// `window`: this layer's sliding window (`TransformerConfig.slidingWindow(layerNumber:)` picks it per layer).
    public init(config: TransformerConfig, generator: PhiloxGenerator, dropout: ModelParallelRNG,
                tensorParallel: TensorParallelGroup = .single, window: Int? = nil) {
        precondition(config.numAttentionHeads % tensorParallel.size == 0 && config.numQueryGroups % tensorParallel.size == 0,
                     "num_attention_heads (\(config.numAttentionHeads)) and num_query_groups (\(config.numQueryGroups)) must be divisible by the tensor-parallel size (\(tensorParallel.size))")
        self.config = config
        self.tensorParallel = tensorParallel
        localHeads = config.numAttentionHeads / tensorParallel.size
        localGroups = config.numQueryGroups / tensorParallel.size
        let gateWidth = config.attentionOutputGate ? config.numAttentionHeads : 0
        let qkvWidth = (config.numAttentionHeads + gateWidth + 2 * config.numQueryGroups) * config.kvChannels
        linearQKV = ColumnParallelLinear(inFeatures: config.hiddenSize, outFeatures: qkvWidth, bias: config.addQKVBias,
                                         initMethod: config.initMethod, dtype: config.paramsDType,
                                         group: tensorParallel, generator: generator)
        linearProj = RowParallelLinear(inFeatures: config.numAttentionHeads * config.kvChannels, outFeatures: config.hiddenSize,
                                       bias: config.addBiasLinear, initMethod: config.outputLayerInitMethod,
                                       dtype: config.paramsDType, group: tensorParallel, generator: generator)
        // Per head: on more than one rank they see only this rank's heads.
        let perHeadPartial = tensorParallel.size > 1
        qLayernorm = config.qkLayernorm ? makeNorm(config, dimension: config.kvChannels, partialGradient: perHeadPartial) : nil
        kLayernorm = config.qkLayernorm ? makeNorm(config, dimension: config.kvChannels, partialGradient: perHeadPartial) : nil
        rotary = config.positionEmbeddingType == .rope
            ? RotaryEmbedding(kvChannels: config.kvChannels, rotaryPercent: config.rotaryPercent, base: config.rotaryBase,
                              scaling: config.ropeScaling, yarn: config.yarn)
            : nil
        attentionDropout = Dropout(config.attentionDropout, generator: dropout.generator(split: true))
        sinks = config.softmaxType == .vanilla ? nil : AttentionSinks(config: config, generator: generator, tensorParallel: tensorParallel)
        self.window = window
    }

    override public var children: [(String, Module)] {
        var list: [(String, Module)] = [("linear_qkv", linearQKV), ("linear_proj", linearProj),
                                        ("attention_dropout", attentionDropout)]
        if let qLayernorm, let kLayernorm { list += [("q_layernorm", qLayernorm), ("k_layernorm", kLayernorm)] }
        if let sinks { list.append(("core_attention", sinks)) }
        return list
    }

    /// `x [batch, seq, hidden] -> [batch, seq, hidden]`. With a `cache`, `x` continues the cached sequence:
    /// its keys and values are appended and its queries attend to everything before them. Under sequence
    /// parallelism `x` and the result hold this rank's `seq / size` positions.
    public func callAsFunction(_ x: Tensor, cache: KVCache.Layer? = nil) -> Tensor {
        runForward { attend(x, cache: cache) }
    }

    private func attend(_ x: Tensor, cache: KVCache.Layer?) -> Tensor {
        let qkvOut = linearQKV(x)   // the whole sequence, this rank's query groups
        let (b, s) = (qkvOut.size(0), qkvOut.size(1))
        let (groups, heads, d) = (localGroups, localHeads, config.kvChannels)
        let perGroup = heads / groups
        // With the output gate each group's query heads are followed by as many gate heads (Megatron's layout).
        let gateHeads = config.attentionOutputGate ? perGroup : 0
        // [b, s, groups, perGroup + gateHeads + 2, d] -> [b, groups, perGroup + 2, s, d]
        var parts = qkvOut.reshape([b, s, groups, perGroup + gateHeads + 2, d])
            .split(config.attentionOutputGate ? [perGroup, gateHeads, 1, 1] : [perGroup, 1, 1], dim: 3)
        let gate = config.attentionOutputGate ? parts.remove(at: 1) : nil
        var q = parts[0].permute([0, 2, 3, 1, 4])                   // [b, g, perGroup, s, d]
        var k = parts[1].permute([0, 2, 3, 1, 4])                   // [b, g, 1, s, d]
        let v = parts[2].permute([0, 2, 3, 1, 4])
        if let qLayernorm, let kLayernorm {
            q = qLayernorm(q)
            k = kLayernorm(k)
        }
        let offset = cache?.length ?? 0
        if let rotary {
            // Left-padded batches (cache.padding) rotate each row by its own positions.
            let rows = cache?.padding?.positions(from: offset, count: s)
            let rope = { (t: Tensor) in rows.map { rotary(t, rowPositions: $0) } ?? rotary(t, offset: offset) }
            // The fused kernel reads the strided [b, g, perGroup, s, d] views directly (no reshape copy).
            q = rope(q)
            k = rope(k)
        }
        var (keys, values) = (k, v)
        if let cache { (keys, values) = cache.append(keys: k, values: v) }
        let keyMask = cache?.padding.map { $0.keyMask(queries: s, keys: keys.size(3), device: x.device) }
        let context = recomputeCoreAttention
            ? checkpoint([q, keys, values], generators: [attentionDropout.generator]) {
                [self.coreAttention(q: $0[0], k: $0[1], v: $0[2], keyMask: keyMask)]
            }[0]
            : coreAttention(q: q, k: keys, v: values, keyMask: keyMask)   // [b, g, perGroup, s, d]
        // [b, s, g, perGroup, d]: a free view of the fused kernels' output, which is laid out so.
        var merged = context.permute([0, 3, 1, 2, 4]).reshape([b, s, heads * d])
        if let gate {   // Megatron's _apply_output_gate: sigmoid in fp32, rounded back
            merged = (merged.to(.float32) * gate.reshape([b, s, heads * d]).to(.float32).sigmoid()).to(merged.dtype)
        }
        return linearProj(merged)
    }

    /// softmax(q k^T / sqrt(d) + causal mask) v, with key/value heads broadcast over their query group.
    /// The `s` queries are the last `s` of the `t` key positions (t > s when earlier keys are cached).
    ///
    /// On the GPU fused flash attention runs it (no [s, t] scores in memory) wherever it applies:
    /// bf16/fp16 and a head dim that is a multiple of 8 up to 256 (`GPTModel` refuses other head dims
    /// on the GPU at build), attention dropout included: the fused kernels draw the same mask the
    /// materialized path's dropout would (`AttentionDropout`). On the CPU, whose golden tests pin the
    /// materialized rounding, and for fp32 the scores are materialized.
    ///
    /// `keyMask` (true: hidden), broadcast over the scores `[b, g, perGroup, s, t]`, hides more keys per
    /// batch row: the pad keys of left-padded prompts (`LeftPadding.keyMask`). The fused kernels know
    /// only the causal mask, so a masked call (generation, no dropout) takes the materialized path.
    ///
    /// gpt-oss's sliding window (`window`) and sinks (`sinks`) run inside the fused kernels too.
    func coreAttention(q: Tensor, k: Tensor, v: Tensor, keyMask: Tensor? = nil) -> Tensor {
        if keyMask == nil && q.device != .cpu && Ops.attentionIsFused(q: q, k: k, v: v) {
            return Functional.scaledDotProductAttention(q, k, v, causal: true, dropout: attentionDropout.activeDraw,
                                                        window: window, sinks: sinks?.logits)
        }
        return materializedAttention(q: q, k: k, v: v, keyMask: keyMask)
    }

    /// The reference path: the full [s, t] probabilities, then their product with v.
    func materializedAttention(q: Tensor, k: Tensor, v: Tensor, keyMask: Tensor? = nil) -> Tensor {
        let s = q.size(-2), t = k.size(-2), d = q.size(-1)
        let scores = q.matmul(k.transpose(-1, -2)) * (1 / Float(d).squareRoot())
        // Key j is in query i's future when j > i + (t - s); built where the scores are.
        let (keys, positions) = (Tensor.arange(0, t, device: q.device).reshaped([1, t]), Tensor.arange(t - s, t, device: q.device).reshaped([s, 1]))
        var masked = scores.maskedFill(Ops.compare(keys, positions, .greater), -.infinity)
        if let window {   // and before its window when j < i + (t - s) - window
            masked = masked.maskedFill(Ops.compare(keys, Ops.binary(positions, Tensor(scalar: Float(window)), .sub), .less), -.infinity)
        }
        if let keyMask { masked = masked.maskedFill(keyMask, -.infinity) }
        return attentionDropout(softmax(masked)).matmul(v)
    }

    /// The softmax over each row of `scores [b, g, perGroup, s, t]`; with sinks, over the row and its head's sink
    /// logit, whose probability is then dropped (Megatron's `SoftmaxOne`).
    private func softmax(_ scores: Tensor) -> Tensor {
        guard let sinks else { return Functional.softmax(scores) }
        let shape = scores.shape, t = shape[4]
        // Off-by-one's zeros are no parameter: they stay where the model was built.
        let logits = sinks.logits.device == scores.device ? sinks.logits : sinks.logits.detached().to(scores.device)
        let sink = logits.to(scores.dtype).reshape([1, shape[1], shape[2], 1, 1])
            .expand(to: [shape[0], shape[1], shape[2], shape[3], 1])
        return Functional.softmax(concat([scores, sink], dim: 4)).narrow(4, start: 0, length: t)
    }
}
