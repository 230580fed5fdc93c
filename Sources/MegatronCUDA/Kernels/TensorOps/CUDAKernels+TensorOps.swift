import CCUDA
import Foundation

/// A tensor operand of the kernels in tensor_ops.cu (beside this file): device address of element [0, 0, ...],
/// dtype code, and shape and strides (in elements) of up to `maxRank` dimensions. Passed to the
/// kernel by value as `struct TensorArg`, so views are read and written in place.
public struct TensorKernelArgument {
    public static let maxRank = 8

    public var address: UInt64
    public var shape: [Int]
    public var strides: [Int]
    public var dtype: DTypeCode

    public init(address: UInt64, shape: [Int], strides: [Int], dtype: DTypeCode) {
        (self.address, self.shape, self.strides, self.dtype) = (address, shape, strides, dtype)
    }

    /// Size of `struct TensorArg`, a multiple of 8.
    public static let byteCount = 144

    /// The 144 bytes of `struct TensorArg { void *data; long long shape[8], strides[8]; int rank, dtype; }`.
    public func bytes() throws -> [UInt8] {
        guard shape.count <= Self.maxRank, shape.count == strides.count else {
            throw CUDAError.invalidArgument("tensor kernels take at most \(Self.maxRank) dimensions, got shape \(shape)")
        }
        var words: [Int64] = [Int64(bitPattern: address)]
        words += (0..<Self.maxRank).map { $0 < shape.count ? Int64(shape[$0]) : 1 }
        words += (0..<Self.maxRank).map { $0 < strides.count ? Int64(strides[$0]) : 0 }
        var out = words.withUnsafeBytes { Array($0) }
        withUnsafeBytes(of: Int32(shape.count)) { out += $0 }
        withUnsafeBytes(of: dtype.rawValue) { out += $0 }
        return out
    }
}

/// The strided tensor ops of tensor_ops.cu (beside this file) (copy, binary and unary ops, reductions, indexing),
/// launched by name; tensor operands are `KernelArgument.tensor`.
///
///     try kernels.launchTensorOp("tensor_copy", elements: n, stream: stream,
///                                [.tensor(out), .tensor(input), .int64(Int64(n))])
extension CUDAKernels {
    /// A grid-stride launch of `name` over `elements` work items (threads), at most 32 blocks per SM.
    public func launchTensorOp(_ name: String, elements: Int, stream: CUDAStream, _ parameters: [KernelArgument]) throws {
        guard elements > 0 else { return }
        try launch("tensor_ops.cu", name, grid: .init(gridStrideBlocks(elements)), block: Self.elementwiseBlock, stream: stream,
                   parameters)
    }
}
