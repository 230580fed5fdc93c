/// The raw (non-differentiable) operations on tensors.
///
/// Every function takes and returns tensors; floating-point math runs in fp32 and results keep the input's
/// floating dtype. MegatronAutograd builds the differentiable API on these. Today every op runs on the
/// CPU; a device backend plugs in here by dispatching on `Tensor.device`.
public enum Ops {
    /// The dtype of a result of mixing `a` and `b`: the wider float wins, then floats over ints.
    static func resultType(_ a: DType, _ b: DType) -> DType {
        if a == b { return a }
        if a == .float32 || b == .float32 { return .float32 }
        if a.isFloatingPoint { return a }
        if b.isFloatingPoint { return b }
        return a == .int64 || b == .int64 ? .int64 : a
    }

    /// Checks that a tensor lives where the kernels of this build can reach it.
    @inline(__always)
    static func requireCPU(_ tensors: Tensor..., op: String) {
        for t in tensors where t.device != .cpu {
            preconditionFailure("\(op): tensor on \(t.device) but this build runs \(op) on the CPU only")
        }
    }

    /// Copies `source` into `destination` (same shape), converting dtype; `destination` may be any view.
    public static func copy(_ source: Tensor, into destination: Tensor) {
        precondition(source.shape == destination.shape, "copy of shape \(source.shape) into \(destination.shape)")
        let converted = source.cast(to: destination.dtype)
        StridedCopy.copy(from: converted, to: destination)
    }
}
