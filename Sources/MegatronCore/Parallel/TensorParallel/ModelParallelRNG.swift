import MegatronTensor

/// The dropout generators of one tensor-parallel rank (Megatron's CUDA RNG tracker and
/// `model_parallel_cuda_manual_seed`).
///
/// Dropout on activations every rank holds whole (hidden states without sequence parallelism) draws from
/// `duplicated`, seeded alike on every rank, so all ranks drop the same positions and stay identical.
/// Dropout on activations split over the group (attention probabilities of each rank's heads, hidden
/// states under sequence parallelism) draws from `tensorParallel`, seeded `seed + 2718 + rank` as in
/// Megatron, so the ranks' slices get independent masks.
///
/// On a single rank both are one generator, so a model built without tensor parallelism draws exactly as
/// it did before this split existed.
///
/// ```swift
/// let rng = ModelParallelRNG(seed: 1235, group: tp)
/// let attentionDropout = Dropout(0.1, generator: rng.generator(split: true))
/// ```
public struct ModelParallelRNG {
    /// Megatron's offset between the data-parallel and the tensor-model-parallel seed.
    public static let tensorParallelSeedOffset: UInt64 = 2718

    public let duplicated: PhiloxGenerator
    public let tensorParallel: PhiloxGenerator

    public init(seed: UInt64, group: TensorParallelGroup) {
        duplicated = PhiloxGenerator(seed: seed)
        tensorParallel = group.size > 1
            ? PhiloxGenerator(seed: seed &+ Self.tensorParallelSeedOffset &+ UInt64(group.rank))
            : duplicated
    }

    /// One generator for everything (a single rank).
    public init(single generator: PhiloxGenerator) {
        duplicated = generator
        tensorParallel = generator
    }

    /// The generator for dropout on activations that are split over the group (`true`) or whole on every rank.
    public func generator(split: Bool) -> PhiloxGenerator { split ? tensorParallel : duplicated }

    /// Both generators: activation recomputation rewinds them together.
    public var all: [PhiloxGenerator] { duplicated === tensorParallel ? [duplicated] : [duplicated, tensorParallel] }
}
