import MegatronAutograd
import MegatronTensor

/// The sink logits of `--softmax-type off-by-one` / `learnable` (Megatron's `DotProductAttention.softmax_offset`):
/// one per query head, added to every row's softmax denominator. `off-by-one` holds fixed zeros (no parameter,
/// as in Megatron); `learnable` a parameter `softmax_offset [heads]` drawn with the init method, split over a
/// tensor-parallel group by heads like `linear_qkv`'s rows (Megatron's `{'softmax_offset': 0}`).
///
/// ```swift
/// let sinks = AttentionSinks(config: config, generator: rng)     // config.softmaxType == .learnable
/// let o = Functional.scaledDotProductAttention(q, k, v, sinks: sinks.logits)
/// ```
public final class AttentionSinks: Module {
    /// `[heads on this rank]`, in the parameters' dtype.
    public let logits: Tensor
    let learnable: Bool

    public init(config: TransformerConfig, generator: PhiloxGenerator, tensorParallel: TensorParallelGroup = .single) {
        learnable = config.softmaxType == .learnable
        let heads = config.numAttentionHeads
        if learnable {
            let full = config.initMethod.draw([heads], dtype: config.paramsDType, generator: generator)
            logits = parameter(try! TensorParallelSharding.split(dim: 0).shard(full, rank: tensorParallel.rank, size: tensorParallel.size))
        } else {
            logits = Tensor.zeros([heads / tensorParallel.size], dtype: config.paramsDType).to(DevicePlacement.current)
        }
        super.init()
        setAttributesOfParameters { $0.tensorParallel = .split(dim: 0) }
    }

    override public var parameters: [(String, Tensor)] { learnable ? [("softmax_offset", logits)] : [] }
}
