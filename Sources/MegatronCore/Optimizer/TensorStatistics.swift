import MegatronAutograd
import MegatronTensor

/// Sums over lists of tensors on any one device, for the statistics Megatron logs: the squared L2 norm
/// (`--log-params-norm`) and the number of elements equal to zero (`--log-num-zeros-in-grad`). On a GPU each
/// is one read back to the host; on the CPU the sums run on the host buffers.
///
/// ```swift
/// let norm = TensorStatistics.sumOfSquares(model.parameters).squareRoot()
/// let zeros = TensorStatistics.zeroCount(grads)
/// ```
public enum TensorStatistics {
    /// The sum of the squares of every element of every tensor, accumulated in fp32 per tensor and in Double
    /// across tensors.
    public static func sumOfSquares(_ tensors: [Tensor]) -> Double {
        guard let device = tensors.first?.device, device != .cpu else {
            return tensors.reduce(0.0) { total, t in
                let c = t.cast(to: .float32).madeContiguous()
                return total + GradientNorm.sumOfSquares(UnsafeBufferPointer(start: c.pointer(as: Float.self), count: c.count))
            }
        }
        return perTensorSums(tensors) { x in
            let x32 = x.cast(to: .float32)
            return Ops.binary(x32, x32, .mul)
        }
    }

    /// The number of elements equal to zero (negative zero included), over every tensor. On a GPU each
    /// tensor's count is an fp32 sum, exact up to 2^24 zeros per tensor.
    public static func zeroCount(_ tensors: [Tensor]) -> Int {
        guard let device = tensors.first?.device, device != .cpu else {
            return tensors.reduce(0) { total, t in total + t.floats().count { $0 == 0 } }
        }
        let counts = perTensorSums(tensors) { x in Ops.compare(x, Tensor(scalar: 0), .equal).cast(to: .float32) }
        return Int(counts.rounded())
    }

    /// `Σ_t sum(transform(t))`: one fp32 sum per tensor on the device, added on the host in Double.
    private static func perTensorSums(_ tensors: [Tensor], _ transform: (Tensor) -> Tensor) -> Double {
        withoutGrad {
            let sums = tensors.map { Ops.reduce(transform($0), dims: [], .sum).reshaped([1]) }
            return Ops.concat(sums, dim: 0).floats().reduce(0.0) { $0 + Double($1) }
        }
    }
}
