/// A cuDNN operation graph as plain values: its tensors and operations, before any backend
/// descriptor exists. `SDPAGraphs` writes these; `CuDNNGraphBuilder` turns one into descriptors.
/// Keeping the description separate makes the graph testable on a machine without a GPU or cuDNN.
public struct CuDNNGraphSpec: Equatable, Sendable {
    /// One tensor: a graph input or output (not virtual, bound to a device address by its uid at
    /// execution), an intermediate the engine keeps on chip (virtual), or a host scalar passed by value.
    public struct Tensor: Equatable, Sendable {
        public var uid: Int64
        public var name: String
        public var dims: [Int64]
        public var strides: [Int64]
        public var dataType: CuDNNBackend.DataType
        public var isVirtual: Bool
        /// The value of a by-value scalar (dims and strides all 1), nil for every other tensor.
        public var scalar: Scalar?
    }

    /// A by-value scalar's value; its bytes are what the variant pack points to.
    public enum Scalar: Equatable, Sendable {
        case float(Float)
        case int32(Int32)

        var dataType: CuDNNBackend.DataType {
            switch self {
            case .float: return .float
            case .int32: return .int32
            }
        }
    }

    /// One operation; tensors are named by uid.
    public enum Operation: Equatable, Sendable {
        /// c = a · b over the last two dims, batched (and broadcast over heads) over the leading ones.
        case matmul(name: String, a: Int64, b: Int64, c: Int64)
        /// y = mode(x, b) (or mode(x) / select(x, b, t)); `axis` only for index generation.
        case pointwise(name: String, mode: CuDNNBackend.PointwiseMode, x: Int64, b: Int64?, t: Int64?, y: Int64,
                       computeType: CuDNNBackend.DataType, axis: Int64?)
        /// y = reduce(x) over the dims where y's extent is 1.
        case reduction(name: String, op: CuDNNBackend.ReductionOperator, x: Int64, y: Int64)
        /// y is x seen with other dims/strides (used for the transposes Pᵀ, dSᵀ and K).
        case reshape(name: String, x: Int64, y: Int64)
        /// y = Bernoulli draws, 1 with `probability`, from cuDNN's generator under the int64 tensors
        /// `seed` and `offset` (dropout's keep mask).
        case bernoulli(name: String, probability: Double, seed: Int64, offset: Int64, y: Int64)

        public var name: String {
            switch self {
            case .matmul(let name, _, _, _), .pointwise(let name, _, _, _, _, _, _, _),
                 .reduction(let name, _, _, _), .reshape(let name, _, _), .bernoulli(let name, _, _, _, _):
                return name
            }
        }

        /// The uids this operation reads, then the one it writes (last).
        public var tensorUIDs: [Int64] {
            switch self {
            case .matmul(_, let a, let b, let c): return [a, b, c]
            case .pointwise(_, _, let x, let b, let t, let y, _, _): return [x] + [b, t].compactMap { $0 } + [y]
            case .reduction(_, _, let x, let y), .reshape(_, let x, let y): return [x, y]
            case .bernoulli(_, _, let seed, let offset, let y): return [seed, offset, y]
            }
        }
    }

    public private(set) var tensors: [Tensor] = []
    public private(set) var operations: [Operation] = []

    public init() {}

    /// The tensor with `uid`, or nil.
    public func tensor(_ uid: Int64) -> Tensor? { tensors.first { $0.uid == uid } }

    /// The tensor named `name` (names are unique within the graphs SDPAGraphs writes), or nil.
    public func tensor(named name: String) -> Tensor? { tensors.first { $0.name == name } }

    /// Tensors bound to device memory at execution: neither virtual nor by-value.
    public var deviceTensors: [Tensor] { tensors.filter { !$0.isVirtual && $0.scalar == nil } }

    /// By-value scalars, bound to host values at execution.
    public var scalarTensors: [Tensor] { tensors.filter { $0.scalar != nil } }

    mutating func add(_ tensor: Tensor) -> Int64 {
        precondition(self.tensor(tensor.uid) == nil, "cuDNN graph: uid \(tensor.uid) used twice")
        tensors.append(tensor)
        return tensor.uid
    }

    mutating func add(_ operation: Operation) {
        precondition(operation.tensorUIDs.allSatisfy { tensor($0) != nil }, "cuDNN graph: \(operation.name) names an unknown tensor")
        operations.append(operation)
    }

    /// Row-major strides of `dims`.
    static func contiguousStrides(_ dims: [Int64]) -> [Int64] {
        var strides = [Int64](repeating: 1, count: dims.count)
        for i in stride(from: dims.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * dims[i + 1] }
        return strides
    }
}
