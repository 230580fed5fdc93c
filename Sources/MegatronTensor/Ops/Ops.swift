/// The raw (non-differentiable) operations on tensors.
///
/// Every function takes and returns tensors; floating-point math runs in fp32 and results keep the input's
/// floating dtype. MegatronAutograd builds the differentiable API on these. Each op dispatches on
/// `Tensor.device`: CPU tensors run the CPU kernels (the reference), `.cuda(i)` tensors enqueue
/// CUDA kernels on that device's stream (the family's launcher beside it in Ops/<Family>/, the strided tensor ops in
/// CUDA/CUDAOps.swift). Inputs on different devices are an error.
public enum Ops {
    /// The dtype of a result of mixing `a` and `b`: the wider float wins, then floats over ints.
    static func resultType(_ a: DType, _ b: DType) -> DType {
        if a == b { return a }
        if a == .float32 || b == .float32 { return .float32 }
        if a.isFloatingPoint { return a }
        if b.isFloatingPoint { return b }
        return a == .int64 || b == .int64 ? .int64 : a
    }

    /// The dtype of an elementwise result of `a` and `b`, by PyTorch's rule for scalars: a rank-0
    /// operand (a scalar such as the `0.125` of `scores * 0.125`) does not widen a shaped operand of
    /// its own kind, so bf16 activations stay bf16; otherwise as `resultType(_:_:)` on the dtypes.
    static func resultType(_ a: Tensor, _ b: Tensor) -> DType {
        if a.rank == 0, b.rank > 0, a.dtype.isFloatingPoint == b.dtype.isFloatingPoint { return b.dtype }
        if b.rank == 0, a.rank > 0, a.dtype.isFloatingPoint == b.dtype.isFloatingPoint { return a.dtype }
        return resultType(a.dtype, b.dtype)
    }

    /// The CUDA device the op's tensors live on, or nil when all are on the CPU; tensors on different
    /// devices stop the op with a message naming both. Elementwise ops pass `allowingCPUScalars`: a
    /// rank-0 CPU tensor then joins a GPU operation as a scalar (PyTorch's rule, which lets
    /// `x * Tensor(scalar: 2)` work for a GPU `x`).
    @inline(__always)
    static func cudaDevice(_ tensors: Tensor?..., op: String, allowingCPUScalars: Bool = false) -> Device? {
        cudaDevice(tensors.compactMap { $0 }, op: op, allowingCPUScalars: allowingCPUScalars)
    }

    static func cudaDevice(_ present: [Tensor], op: String, allowingCPUScalars: Bool = false) -> Device? {
        guard present.contains(where: { $0.device != .cpu }) else { return nil }
        let placed = allowingCPUScalars ? present.filter { !($0.device == .cpu && $0.rank == 0) } : present
        return CUDAOps.device(of: placed, op: op)
    }

    /// Copies `source` into `destination` (same shape), converting dtype; `destination` may be any view.
    public static func copy(_ source: Tensor, into destination: Tensor) {
        precondition(source.shape == destination.shape, "copy of shape \(source.shape) into \(destination.shape)")
        // Across devices: move the data first, as PyTorch's copy_ does.
        if source.device != destination.device { return copy(source.to(destination.device), into: destination) }
        if cudaDevice(source, destination, op: "copy") != nil { return CUDAOps.copy(source, into: destination) }
        let converted = source.cast(to: destination.dtype)
        StridedCopy.copy(from: converted, to: destination)
    }

    /// Sets every element of `tensor` (any view) to zero in place: a contiguous one with one memset on the
    /// GPU and no zero-filled temporary to copy from, a strided one by copying zeros in.
    public static func zero(_ tensor: Tensor) {
        guard tensor.isContiguous else { return copy(Tensor.zeros(tensor.shape, dtype: tensor.dtype, device: tensor.device), into: tensor) }
        let bytes = tensor.count * tensor.dtype.byteSize
        guard case .cuda = tensor.device else {
            _ = tensor.storage.pointer.advanced(by: tensor.offset * tensor.dtype.byteSize)
                .initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            return
        }
        CUDAOps.zero(tensor)
    }

    /// `destination += source` in place (same shape, any dtypes: a bf16 gradient into an fp32 main
    /// gradient), one kernel on the GPU.
    public static func accumulate(_ source: Tensor, into destination: Tensor) {
        precondition(source.shape == destination.shape, "accumulate of shape \(source.shape) into \(destination.shape)")
        if cudaDevice(source, destination, op: "accumulate") != nil {
            return CUDAOps.accumulate(source, into: destination)
        }
        copy(binary(destination, source, .add), into: destination)
    }
}
