import Foundation
import MegatronAutograd
import MegatronTensor

/// Gated DeltaNet (Megatron Core's `GatedDeltaNet`), the linear-attention token mixer of a hybrid model's
/// `self_attention` slot:
///
/// 1. `in_proj` projects x to q, k, v, the output gate z, beta and alpha (Megatron's fused layout, in that order);
/// 2. q, k and v go through a causal depthwise convolution (`conv1d`) and the activation (SiLU with `--swiglu`);
/// 3. q and k are L2-normalized per head and repeated over the value heads they serve;
/// 4. the gated delta rule runs per value head with decay `g = -exp(A_log) softplus(alpha + dt_bias)` and write
///    strength `beta = sigmoid(beta)` (`Functional.gatedDeltaRule`);
/// 5. each head's output is normalized (`out_norm`, the model's norm over one value head), scaled by the
///    activation of z, and `out_proj` maps all heads back to the hidden size.
///
/// With a tensor-parallel group each rank holds `1 / size` of the key and value heads: `in_proj` is
/// column-parallel with each of its six sections split separately, `conv1d`, `A_log` and `dt_bias` follow
/// their heads, `out_proj` is row-parallel, as Megatron shards them.
public final class GatedDeltaNet: Module, SequenceMixer {
    public let config: TransformerConfig
    let sizes: GatedDeltaNetConfig
    public let inProj: ColumnParallelLinear
    public let conv1d: CausalConv1d
    /// Per local value head: the log of the decay rate A, and the bias of the time step.
    public let aLog: Tensor
    public let dtBias: Tensor
    public let outNorm: Module & NormLayer
    public let outProj: RowParallelLinear
    /// Key heads and value heads on this rank.
    let localKeyHeads: Int
    let localValueHeads: Int
    /// Recompute the output norm and gate in backward instead of keeping their activations (`gdn_norm_out`).
    public var recomputeNormOut = false

    public func recompute(_ modules: Set<RecomputedModule>) { recomputeNormOut = modules.contains(.gdnNormOut) }

    /// Builds this rank's part; `TensorParallelGroup.validate` has checked that the heads divide by its size.
    public init(config: TransformerConfig, generator: PhiloxGenerator, tensorParallel: TensorParallelGroup = .single) {
        guard let sizes = config.gatedDeltaNet else { preconditionFailure("GatedDeltaNet needs config.gatedDeltaNet") }
        let tp = tensorParallel.size
        precondition(sizes.numKeyHeads % tp == 0 && sizes.numValueHeads % tp == 0,
                     "linear key (\(sizes.numKeyHeads)) and value (\(sizes.numValueHeads)) heads must divide by the tensor-parallel size \(tp)")
        self.config = config
        self.sizes = sizes
        localKeyHeads = sizes.numKeyHeads / tp
        localValueHeads = sizes.numValueHeads / tp
        let (qk, v, heads) = (sizes.keyDim, sizes.valueDim, sizes.numValueHeads)
        let sections = [qk, qk, v, v, heads, heads]
        inProj = ColumnParallelLinear(inFeatures: config.hiddenSize, outFeatures: sections.reduce(0, +), bias: false,
                                      sections: sections, initMethod: config.initMethod, dtype: config.paramsDType,
                                      group: tensorParallel, generator: generator)
        conv1d = CausalConv1d(sections: [qk, qk, v], kernelSize: sizes.convKernelDim, dtype: config.paramsDType,
                              group: tensorParallel, generator: generator)
        let slice = { (whole: Tensor) in try! TensorParallelSharding.split(dim: 0).shard(whole, rank: tensorParallel.rank, size: tp) }
        // Megatron's reset_parameters: dt_bias ones, A drawn uniformly from [1, 16].
        dtBias = parameter(Tensor.ones([localValueHeads], dtype: config.paramsDType))
        aLog = parameter(slice(Tensor.uniform([heads], low: 1, high: 16, generator: generator).log().cast(to: config.paramsDType)))
        // Per head: on more than one rank it sees only this rank's heads.
        outNorm = makeNorm(config, dimension: sizes.valueHeadDim, partialGradient: tp > 1)
        outProj = RowParallelLinear(inFeatures: v, outFeatures: config.hiddenSize, bias: false,
                                    initMethod: config.outputLayerInitMethod, dtype: config.paramsDType,
                                    group: tensorParallel, generator: generator)
        super.init()
        // `A_log` and `dt_bias` follow the value heads.
        setAttributesOfParameters { $0.tensorParallel = .split(dim: 0) }
    }

    override public var parameters: [(String, Tensor)] { [("A_log", aLog), ("dt_bias", dtBias)] }

    override public var children: [(String, Module)] {
        [("in_proj", inProj), ("conv1d", conv1d), ("out_norm", outNorm), ("out_proj", outProj)]
    }

    /// `x [batch, seq, hidden] -> [batch, seq, hidden]` (this rank's positions under sequence parallelism).
    /// There is no recurrent-state cache: generation refuses models with these layers before it starts.
    public func callAsFunction(_ x: Tensor, cache: KVCache.Layer?) -> Tensor {
        precondition(cache == nil, "Gated DeltaNet layers keep no inference cache")
        return runForward { mix(x) }
    }

    private func mix(_ x: Tensor) -> Tensor {
        let projected = inProj(x)   // the whole sequence, this rank's heads
        let (b, s) = (projected.size(0), projected.size(1))
        let (dk, dv) = (sizes.keyHeadDim, sizes.valueHeadDim)
        let (qk, v, heads) = (localKeyHeads * dk, localValueHeads * dv, localValueHeads)
        let parts = projected.split([2 * qk + v, v, heads, heads], dim: 2)
        let mixed = conv1d(parts[0]).apply(activation).split([2 * qk, v], dim: 2)
        let queryKey = Self.l2Normalized(mixed[0].reshape([b, s, 2 * localKeyHeads, dk]))
        let qAndK = queryKey.split([localKeyHeads, localKeyHeads], dim: 2).map(repeatedOverValueHeads)
        let value = mixed[1].reshape([b, s, heads, dv]).to(.float32)
        let g = -aLog.to(.float32).exp() * Self.softplus(parts[3].to(.float32) + dtBias.to(.float32))
        let beta = parts[2].sigmoid().to(.float32)
        let core = Functional.gatedDeltaRule(q: qAndK[0], k: qAndK[1], v: value, g: g, beta: beta,
                                             scale: 1 / Float(dk).squareRoot())
        let z = parts[1].reshape([b, s, heads, dv])
        let gated = recomputeNormOut
            ? checkpoint([core, z]) { [self.gatedNorm($0[0], z: $0[1], dtype: x.dtype)] }[0]
            : gatedNorm(core, z: z, dtype: x.dtype)
        return outProj(gated.reshape([b, s, v]))
    }

    /// Megatron's `_apply_gated_norm`: `out_norm` of each head's output (in the model's dtype) times act(z), in fp32.
    private func gatedNorm(_ core: Tensor, z: Tensor, dtype: DType) -> Tensor {
        (outNorm(core.to(dtype)).to(.float32) * z.to(.float32).apply(activation)).to(dtype)
    }

    /// Megatron's `config.activation_func` for the convolution and the output gate: SiLU with `--swiglu`,
    /// relu² with `--squared-relu`, else the exact GeLU (`F.gelu`).
    var activation: UnaryOp {
        switch config.activation {
        case .silu: .silu
        case .squaredRelu: .squaredRelu
        case .gelu, .geluExact: .geluErf
        case .quickGelu: preconditionFailure("Gated DeltaNet with quick_gelu is refused by TransformerConfig.validate")
        }
    }

    /// `[b, s, keyHeads, d] -> [b, s, valueHeads, d]`, each key head repeated for its consecutive value heads
    /// (`repeat_interleave`).
    private func repeatedOverValueHeads(_ t: Tensor) -> Tensor {
        let repeats = localValueHeads / localKeyHeads
        guard repeats > 1 else { return t }
        let (b, s, d) = (t.size(0), t.size(1), t.size(3))
        return t.unsqueeze(3).expand(to: [b, s, localKeyHeads, repeats, d]).reshape([b, s, localValueHeads, d])
    }

    /// `x / sqrt(sum(x²) + 1e-6)` over the last dim in fp32 (fla's `l2norm`).
    static func l2Normalized(_ x: Tensor) -> Tensor {
        let x32 = x.to(.float32)
        return x32 * ((x32 * x32).sum(dims: [x.rank - 1], keepDim: true) + 1e-6).rsqrt()
    }

    /// log(1 + exp(x)) as relu(x) + log(1 + exp(-|x|)), which neither overflows nor loses small values.
    static func softplus(_ x: Tensor) -> Tensor {
        x.relu() + ((-x.abs()).exp() + 1).log()
    }
}

/// A causal depthwise convolution over the sequence: `y[t, c] = sum_j w[c, 0, j] x[t - (kernel - 1) + j, c]`,
/// zero before the first position (PyTorch's `Conv1d(groups: channels, padding: kernel - 1)` cut to the
/// sequence), on `x [batch, seq, channels]`. No bias, as Megatron's Gated DeltaNet builds it.
///
/// The weight `[channels, 1, kernel]` is drawn whole as `nn.Conv1d` does (uniform in ±1/sqrt(kernel)) and
/// split per section over a tensor-parallel group, like the q, k and v sections of `in_proj` it follows.
public final class CausalConv1d: Module {
    public let weight: Tensor

    public init(sections: [Int], kernelSize: Int, dtype: DType, group: TensorParallelGroup, generator: PhiloxGenerator) {
        let bound = 1 / Float(kernelSize).squareRoot()
        let whole = Tensor.uniform([sections.reduce(0, +), 1, kernelSize], low: -bound, high: bound, dtype: dtype,
                                   generator: generator)
        weight = parameter(try! TensorParallelSharding.splitSections(dim: 0, lengths: sections)
            .shard(whole, rank: group.rank, size: group.size))
        super.init()
        setAttributes(ofParameter: "weight") { $0.tensorParallel = .splitSections(dim: 0, lengths: sections) }
    }

    override public var parameters: [(String, Tensor)] { [("weight", weight)] }

    /// The convolution as `kernel` shifted copies of x scaled per channel and summed.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        runForward {
            let (b, s, c, kernel) = (x.size(0), x.size(1), x.size(2), weight.size(2))
            let padded = concat([Tensor.zeros([b, kernel - 1, c], dtype: x.dtype, device: x.device), x], dim: 1)
            let terms = (0..<kernel).map { j in padded.narrow(1, start: j, length: s) * weight.narrow(2, start: j, length: 1).reshape([c]) }
            return terms.dropFirst().reduce(terms[0], +)
        }
    }
}
