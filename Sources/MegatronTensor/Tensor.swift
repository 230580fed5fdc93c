/// An n-dimensional array: a view (shape, strides, offset) over reference-counted `Storage`.
///
/// `Tensor` is a value type; copying one copies the view, not the data. Differentiable operations live in
/// MegatronAutograd; this layer holds the data layout, views, creation and the raw kernels (`Ops`).
///
/// ```swift
/// let x = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
/// let xt = x.transposed(0, 1)          // a view: no copy
/// print(xt.madeContiguous().floats())  // [1, 4, 2, 5, 3, 6]
/// ```
public struct Tensor: @unchecked Sendable {
    public let storage: Storage
    public let shape: [Int]
    /// Strides in elements, one per dimension.
    public let strides: [Int]
    /// Offset of element [0, 0, ...] in elements from the start of `storage`.
    public let offset: Int
    public let dtype: DType
    /// Autograd bookkeeping, shared by copies of this value; nil for tensors that need no gradient.
    public var autograd: AutogradMeta?

    public init(storage: Storage, shape: [Int], strides: [Int], offset: Int = 0, dtype: DType) {
        precondition(shape.count == strides.count, "shape \(shape) and strides \(strides) differ in rank")
        self.storage = storage
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.dtype = dtype
    }

    /// A new zero-filled contiguous tensor on `device`; `.cuda(i)` memory comes from that device's caching
    /// allocator (and traps with a message naming what is missing when there is no GPU or driver).
    public init(zeros shape: [Int], dtype: DType = .float32, device: Device = .cpu) {
        let bytes = Shape.elementCount(shape) * dtype.byteSize
        let storage: Storage
        switch device {
        case .cpu: storage = Storage(cpuByteCount: bytes)
        case .cuda(let ordinal): storage = Storage.cuda(byteCount: bytes, ordinal: ordinal, zeroed: true)
        }
        self.init(storage: storage, shape: shape, strides: Shape.contiguousStrides(shape), dtype: dtype)
    }

    public var rank: Int { shape.count }
    public var count: Int { Shape.elementCount(shape) }
    public var device: Device { storage.device }
    public var isContiguous: Bool { Shape.isContiguous(shape: shape, strides: strides) }

    /// The size of dimension `dim` (negative counts from the end).
    public func size(_ dim: Int) -> Int { shape[Shape.normalize(dim, rank: rank)] }

    /// Pointer to element [0, 0, ...] typed as `T` (CPU only: a GPU tensor's memory is not host-addressable;
    /// read it with `floats()` / `ints()` or move it with `to(.cpu)`).
    @inline(__always)
    public func pointer<T>(as type: T.Type) -> UnsafeMutablePointer<T> {
        precondition(storage.device == .cpu, "host pointer to a tensor on \(storage.device); use to(.cpu) first")
        return (storage.pointer + offset * dtype.byteSize).assumingMemoryBound(to: T.self)
    }

    /// A tensor sharing this one's data with autograd bookkeeping dropped.
    public func detached() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)
    }
}

/// Marker for autograd graph nodes; MegatronAutograd defines the node type.
public protocol GradientFunction: AnyObject {}

/// Per-tensor autograd state, shared by all copies of a tensor value.
///
/// For a leaf (a parameter) it holds the accumulated `grad` and the hooks that fire when a backward pass has
/// finished that gradient; for an op's output it names the graph node that made it.
public final class AutogradMeta: @unchecked Sendable {
    public var requiresGrad: Bool
    public var grad: Tensor?
    public var gradFunction: GradientFunction?
    public var outputIndex: Int
    /// Called with the tensor's finished gradient after each backward pass has accumulated it (leaves only).
    public var gradReadyHooks: [(Tensor) -> Void] = []
    /// Makes the leaf's gradient buffer when backward first reaches it while `grad` is nil: an optimizer's
    /// zeroed fp32 main grad, so gradient memory is only held from that point of the backward on (as
    /// torch's `zero_grad(set_to_none=True)`), not through the forward's activation peak.
    public var mainGradFactory: (() -> Tensor)?

    public init(requiresGrad: Bool, gradFunction: GradientFunction? = nil, outputIndex: Int = 0) {
        self.requiresGrad = requiresGrad
        self.gradFunction = gradFunction
        self.outputIndex = outputIndex
    }

    /// `grad`, made first by `mainGradFactory` when it is nil and a factory is set.
    public func gradBuffer() -> Tensor? {
        if grad == nil, let mainGradFactory { grad = mainGradFactory() }
        return grad
    }
}
