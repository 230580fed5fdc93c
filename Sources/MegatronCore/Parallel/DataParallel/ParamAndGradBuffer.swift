import MegatronAutograd
import MegatronTensor

/// The contiguous main-grad buffer (fp32, or the parameters' dtype with `--grad-reduce-in-bf16`) of the
/// parameters of one dtype, laid out by a `BufferLayout`, and,
/// for the distributed optimizer, a parameter buffer of the same layout that the updated shards are
/// all-gathered into.
///
/// Each parameter's `.grad` is a view into `gradData`, so every backward pass accumulates into the buffer in
/// its dtype and a bucket's gradients are one contiguous range for the collective.
///
/// With `paramData`, each parameter that owns its whole storage is moved into its range of `paramData`
/// (`Storage.alias`, Megatron's `param.data = buffer view`), so an all-gather into the buffer updates the
/// parameters themselves. A parameter that is a view of a larger storage keeps its own memory, and gets the
/// gathered values by a copy (`copyParamBufferIntoParameters`).
///
/// ```swift
/// let buffer = ParamAndGradBuffer(parameters: named, layout: layout, withParamData: false)
/// buffer.attachGrads()                 // p.grad is now a view into buffer.gradData
/// loss.backward()                      // accumulates into buffer.gradData
/// let firstBucketGrads = buffer.bucketGrad(0)
/// ```
public final class ParamAndGradBuffer {
    public let parameters: [(name: String, tensor: Tensor)]
    public let layout: BufferLayout
    public let paramDType: DType
    public let device: Device
    /// Main grads in `gradDType`, `[layout.numel]`.
    public let gradData: Tensor
    /// fp32, or the parameters' dtype when gradients are reduced in it (`DistributedDataParallelConfig.gradReduceInFP32`).
    public var gradDType: DType { gradData.dtype }
    /// Parameters in the buffer's dtype, `[layout.numel]`; distributed optimizer only.
    public let paramData: Tensor?

    /// - Parameters:
    ///   - parameters: in definition order, all of one dtype and device.
    ///   - layout: built from the parameters' element counts in that order.
    ///   - gradDType: the main grads' dtype.
    public init(parameters: [(name: String, tensor: Tensor)], layout: BufferLayout, withParamData: Bool,
                gradDType: DType = .float32) {
        precondition(layout.parameterRanges.count == parameters.count,
                     "layout has \(layout.parameterRanges.count) parameters, buffer got \(parameters.count)")
        let first = parameters.first?.tensor
        self.parameters = parameters
        self.layout = layout
        paramDType = first?.dtype ?? .float32
        device = first?.device ?? .cpu
        for (name, p) in parameters {
            precondition(p.dtype == paramDType && p.device == device,
                         "parameter '\(name)' is \(p.dtype) on \(p.device); this buffer holds \(paramDType) on \(device)")
        }
        gradData = Tensor.zeros([layout.numel], dtype: gradDType, device: device)
        paramData = withParamData ? Tensor.zeros([layout.numel], dtype: paramDType, device: device) : nil
        if let paramData {
            copyParametersIntoParamBuffer()
            parametersInParamData = Self.moveIntoBuffer(parameters.map(\.tensor), ranges: layout.parameterRanges, buffer: paramData)
        }
    }

    /// Indices of the parameters that live in `paramData` (see the type's comment).
    public private(set) var parametersInParamData: Set<Int> = []

    /// Moves each parameter that is the whole of a storage no other parameter shares into its range of
    /// `buffer` (which already holds its values); returns their indices.
    private static func moveIntoBuffer(_ parameters: [Tensor], ranges: [Range<Int>], buffer: Tensor) -> Set<Int> {
        let owners = Dictionary(grouping: parameters.indices, by: { ObjectIdentifier(parameters[$0].storage) })
        var moved: Set<Int> = []
        for (i, p) in parameters.enumerated() where owners[ObjectIdentifier(p.storage)]!.count == 1 {
            guard p.offset == 0, p.isContiguous, p.storage.byteCount == p.count * p.dtype.byteSize else { continue }
            p.storage.alias(into: buffer.storage, byteOffset: (buffer.offset + ranges[i].lowerBound) * p.dtype.byteSize)
            moved.insert(i)
        }
        return moved
    }

    /// Parameter `i`'s main grad: a view into `gradData` shaped like the parameter.
    public func gradView(_ i: Int) -> Tensor {
        Self.view(gradData, layout.parameterRanges[i]).reshaped(parameters[i].tensor.shape)
    }

    /// Bucket `b`'s grads, padding included: a 1-D view into `gradData`.
    public func bucketGrad(_ b: Int) -> Tensor { Self.view(gradData, layout.buckets[b].range) }

    /// Bucket `b`'s parameters, padding included: a 1-D view into `paramData`.
    public func bucketParams(_ b: Int) -> Tensor {
        guard let paramData else { preconditionFailure("this buffer has no parameter buffer (no distributed optimizer)") }
        return Self.view(paramData, layout.buckets[b].range)
    }

    /// Data-parallel rank `rank`'s shard of bucket `b`'s parameters: what that rank updates with the
    /// distributed optimizer and sends in the bucket's all-gather.
    public func shardParams(_ b: Int, rank: Int, dataParallelSize: Int) -> Tensor {
        guard let paramData else { preconditionFailure("this buffer has no parameter buffer (no distributed optimizer)") }
        return Self.view(paramData, layout.shard(of: b, rank: rank, dataParallelSize: dataParallelSize))
    }

    /// Points every parameter's `.grad` at its view of `gradData`.
    public func attachGrads() {
        for i in parameters.indices { parameters[i].tensor.grad = gradView(i) }
    }

    /// Zeroes the grad buffer (and re-attaches the views, in case something replaced a `.grad`).
    public func zeroGrads() {
        Ops.zero(gradData)
        attachGrads()
    }

    /// Copies the parameters' current values into `paramData` (at setup and after loading a checkpoint); those
    /// that live there already have nothing to copy.
    public func copyParametersIntoParamBuffer() {
        guard let paramData else { return }
        withoutGrad {
            for (i, (_, p)) in parameters.enumerated() where !parametersInParamData.contains(i) {
                Ops.copy(p, into: Self.view(paramData, layout.parameterRanges[i]).reshaped(p.shape))
            }
        }
    }

    /// Copies bucket `b`'s part of `paramData` into its parameters that do not live there (after the bucket's
    /// all-gather).
    public func copyParamBufferIntoParameters(bucket b: Int) {
        guard let paramData else { return }
        withoutGrad {
            for i in layout.buckets[b].parameterIndices where !parametersInParamData.contains(i) {
                let p = parameters[i].tensor
                Ops.copy(Self.view(paramData, layout.parameterRanges[i]).reshaped(p.shape), into: p)
            }
        }
    }

    static func view(_ flat: Tensor, _ range: Range<Int>) -> Tensor {
        flat.narrowed(0, start: range.lowerBound, length: range.count)
    }
}
