import MegatronTensor

/// Megatron's `DistributedDataParallelConfig`: how gradients are bucketed and reduced over the data-parallel group.
///
/// ```swift
/// var config = DistributedDataParallelConfig(overlapGradReduce: true, useDistributedOptimizer: true)
/// config.bucketSize = 40_000_000          // --ddp-bucket-size; nil takes Megatron's default
/// let ddp = try DistributedDataParallel(parameters: model.namedParameters(), config: config,
///                                       dataParallelGroup: dp)
/// ```
public struct DistributedDataParallelConfig: Sendable, Equatable {
    /// `--overlap-grad-reduce`: each bucket's reduction starts during backward, as soon as its grads are ready.
    public var overlapGradReduce: Bool
    /// `--use-distributed-optimizer`: grads are reduce-scattered and each rank updates its shard (ZeRO-1).
    public var useDistributedOptimizer: Bool
    /// `--overlap-param-gather`: the optimizer step only starts every bucket's all-gather of the updated
    /// parameters; `DistributedDataParallel.zeroGradBuffer` (or `finishParamGather`) waits for them before the
    /// next forward, or, as Megatron's forward pre-hooks, each forward stage waits for its own buckets
    /// (`DistributedDataParallel.waitForParamGathersInForward`).
    public var overlapParamGather: Bool
    /// `--ddp-average-in-collective`: the collective averages (NCCL's avg) instead of summing grads it
    /// pre-scales by 1/dp (a `scaledSum`, Megatron's default). Neither costs a pass of its own.
    public var averageInCollective: Bool
    /// `--ddp-bucket-size` in elements; nil: `max(40M, 1M * dp)`. Used only with `overlapGradReduce`
    /// (Megatron keeps one bucket otherwise).
    public var bucketSize: Int?
    /// `--ddp-pad-buckets-for-high-nccl-busbw`: pad buckets to a multiple of 2^16 too.
    public var padBucketsForHighNCCLBusBandwidth: Bool
    /// Megatron's `grad_reduce_in_fp32`: gradients are accumulated and reduced in fp32 grad buffers; off
    /// (`--bf16 --grad-reduce-in-bf16`), the buffers hold the parameters' dtype, and the optimizer updates from
    /// fp32 copies of the reduced gradients.
    public var gradReduceInFP32: Bool

    public init(overlapGradReduce: Bool = false, useDistributedOptimizer: Bool = false,
                overlapParamGather: Bool = false, averageInCollective: Bool = false, bucketSize: Int? = nil,
                padBucketsForHighNCCLBusBandwidth: Bool = false, gradReduceInFP32: Bool = true) {
        self.overlapGradReduce = overlapGradReduce
        self.useDistributedOptimizer = useDistributedOptimizer
        self.overlapParamGather = overlapParamGather
        self.averageInCollective = averageInCollective
        self.bucketSize = bucketSize
        self.padBucketsForHighNCCLBusBandwidth = padBucketsForHighNCCLBusBandwidth
        self.gradReduceInFP32 = gradReduceInFP32
    }

    /// The grad buffer's dtype for parameters of `paramDType` (Megatron's `grad_dtype`).
    public func gradDType(forParameters paramDType: DType) -> DType {
        gradReduceInFP32 ? .float32 : paramDType
    }

    /// Megatron's default bucket size: `max(40_000_000, 1_000_000 * dp)` elements.
    public static func defaultBucketSize(dataParallelSize: Int) -> Int {
        max(40_000_000, 1_000_000 * dataParallelSize)
    }

    /// The bucket size the buffers are cut with: nil (one bucket) without overlapped reduction, as Megatron.
    public func effectiveBucketSize(dataParallelSize: Int) -> Int? {
        guard overlapGradReduce else { return nil }
        return bucketSize ?? Self.defaultBucketSize(dataParallelSize: dataParallelSize)
    }

    /// Rejects settings Megatron rejects, with the flag names in the message.
    public func validate() throws {
        if overlapParamGather && !useDistributedOptimizer {
            throw DataParallelError.invalidConfig("--overlap-param-gather only works with --use-distributed-optimizer")
        }
        if let bucketSize, bucketSize <= 0 {
            throw DataParallelError.invalidConfig("--ddp-bucket-size must be positive, got \(bucketSize)")
        }
    }
}

/// Why data-parallel setup or gradient synchronization failed.
public enum DataParallelError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case gradSync(String)
    case stateDict(String)

    public var description: String {
        switch self {
        case .invalidConfig(let m): "invalid data-parallel configuration: \(m)"
        case .gradSync(let m): "gradient synchronization: \(m)"
        case .stateDict(let m): "distributed optimizer state: \(m)"
        }
    }
}
