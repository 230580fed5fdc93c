import Foundation

/// Binary elementwise operations with NumPy broadcasting.
public enum BinaryOp: Sendable {
    case add, sub, mul, div, maximum, minimum, pow

    @inline(__always)
    func apply(_ x: Float, _ y: Float) -> Float {
        switch self {
        case .add: x + y
        case .sub: x - y
        case .mul: x * y
        case .div: x / y
        case .maximum: x.isNaN || y.isNaN ? .nan : Swift.max(x, y)
        case .minimum: x.isNaN || y.isNaN ? .nan : Swift.min(x, y)
        case .pow: Foundation.pow(x, y)
        }
    }
}

/// Comparisons; results are `bool` tensors.
public enum CompareOp: Sendable {
    case equal, notEqual, less, lessEqual, greater, greaterEqual

    @inline(__always)
    func apply(_ x: Float, _ y: Float) -> Bool {
        switch self {
        case .equal: x == y
        case .notEqual: x != y
        case .less: x < y
        case .lessEqual: x <= y
        case .greater: x > y
        case .greaterEqual: x >= y
        }
    }
}

/// Unary elementwise functions, each with its derivative for the backward pass.
public enum UnaryOp: Sendable {
    case neg, exp, log, tanh, sqrt, rsqrt, abs, sigmoid, relu, silu, geluTanh, geluErf
    /// relu(x)², Megatron's `squared_relu`.
    case squaredRelu

    @inline(__always)
    func apply(_ x: Float) -> Float {
        switch self {
        case .neg: -x
        case .exp: Foundation.exp(x)
        case .log: Foundation.log(x)
        case .tanh: Foundation.tanh(x)
        case .sqrt: x.squareRoot()
        case .rsqrt: 1 / x.squareRoot()
        case .abs: Swift.abs(x)
        case .sigmoid: 1 / (1 + Foundation.exp(-x))
        case .relu: x > 0 ? x : 0
        case .silu: x / (1 + Foundation.exp(-x))
        case .geluTanh: 0.5 * x * (1 + Foundation.tanh(GELU.k0 * (x + GELU.k1 * x * x * x)))
        case .geluErf: 0.5 * x * (1 + erf(x * GELU.invSqrt2))
        case .squaredRelu: x > 0 ? x * x : 0
        }
    }

    /// d apply / dx at `x`.
    @inline(__always)
    func derivative(_ x: Float) -> Float {
        switch self {
        case .neg: return -1
        case .exp: return Foundation.exp(x)
        case .log: return 1 / x
        case .tanh:
            let t = Foundation.tanh(x)
            return 1 - t * t
        case .sqrt: return 0.5 / x.squareRoot()
        case .rsqrt: return -0.5 / (x * x.squareRoot())
        case .abs: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case .sigmoid:
            let s = 1 / (1 + Foundation.exp(-x))
            return s * (1 - s)
        case .relu: return x > 0 ? 1 : 0
        case .silu:
            let s = 1 / (1 + Foundation.exp(-x))
            return s * (1 + x * (1 - s))
        case .geluTanh:
            let inner = GELU.k0 * (x + GELU.k1 * x * x * x)
            let t = Foundation.tanh(inner)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU.k0 * (1 + 3 * GELU.k1 * x * x)
        case .geluErf:
            return 0.5 * (1 + erf(x * GELU.invSqrt2)) + x * GELU.invSqrt2PI * Foundation.exp(-0.5 * x * x)
        case .squaredRelu: return x > 0 ? 2 * x : 0
        }
    }
}

enum GELU {
    static let k0: Float = 0.797_884_560_802_865_4  // sqrt(2 / pi)
    static let k1: Float = 0.044715
    static let invSqrt2: Float = 0.707_106_781_186_547_5
    static let invSqrt2PI: Float = 0.398_942_280_401_432_7
}

extension Ops {
    /// `a op b` with broadcasting.
    public static func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) -> Tensor {
        let outShape = Shape.broadcast(a.shape, b.shape)
        let promoted = resultType(a, b)
        let dtype = promoted.isFloatingPoint ? promoted : .float32
        if cudaDevice(a, b, op: "\(op)", allowingCPUScalars: true) != nil { return CUDAOps.binary(a, b, op, dtype: dtype) }
        let af = a.cast(to: .float32), bf = b.cast(to: .float32)
        if af.shape == bf.shape && af.isContiguous && bf.isContiguous {
            let pa = af.pointer(as: Float.self), pb = bf.pointer(as: Float.self)
            return Tensor.computed(shape: outShape, dtype: dtype) { out in
                parallelChunks(out.count) { r in for i in r { out[i] = op.apply(pa[i], pb[i]) } }
            }
        }
        return Tensor.computed(shape: outShape, dtype: dtype) { out in
            zipBroadcast(af, bf, outShape, out) { op.apply($0, $1) }
        }
    }

    /// `a op b` elementwise with broadcasting, as a bool tensor.
    public static func compare(_ a: Tensor, _ b: Tensor, _ op: CompareOp) -> Tensor {
        if cudaDevice(a, b, op: "\(op)", allowingCPUScalars: true) != nil { return CUDAOps.compare(a, b, op) }
        let outShape = Shape.broadcast(a.shape, b.shape)
        let values = Tensor.computed(shape: outShape) { out in
            zipBroadcast(a.cast(to: .float32), b.cast(to: .float32), outShape, out) { op.apply($0, $1) ? 1 : 0 }
        }
        return values.cast(to: .bool)
    }

    /// `f(x)` elementwise.
    public static func unary(_ x: Tensor, _ op: UnaryOp) -> Tensor {
        if cudaDevice(x, op: "\(op)") != nil {
            return CUDAFusedOps.activation(x, op) ?? CUDAOps.unary(x, op, dtype: x.dtype.isFloatingPoint ? x.dtype : .float32)
        }
        return x.withFloats { src in
            Tensor.computed(shape: x.shape, dtype: x.dtype.isFloatingPoint ? x.dtype : .float32) { out in
                parallelChunks(out.count, grain: 8192) { r in for i in r { out[i] = op.apply(src[i]) } }
            }
        }
    }

    /// `gradOutput * f'(x)` elementwise: the backward of `unary(x, op)`.
    public static func unaryBackward(_ x: Tensor, gradOutput: Tensor, _ op: UnaryOp) -> Tensor {
        precondition(x.shape == gradOutput.shape, "unary backward shapes \(x.shape) and \(gradOutput.shape)")
        if cudaDevice(x, gradOutput, op: "\(op) backward") != nil {
            return CUDAFusedOps.activationBackward(x, gradOutput: gradOutput, op) ?? CUDAOps.unaryBackward(x, gradOutput: gradOutput, op)
        }
        return x.withFloats { src in
            gradOutput.withFloats { g in
                Tensor.computed(shape: x.shape, dtype: gradOutput.dtype) { out in
                    parallelChunks(out.count, grain: 8192) { r in for i in r { out[i] = g[i] * op.derivative(src[i]) } }
                }
            }
        }
    }

    /// `condition ? a : b` elementwise with broadcasting of all three.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        let outShape = Shape.broadcast(condition.shape, Shape.broadcast(a.shape, b.shape))
        let dtype = resultType(a, b)
        if cudaDevice(condition, a, b, op: "where", allowingCPUScalars: true) != nil { return CUDAOps.where(condition, a, b, dtype: dtype) }
        let c = condition.cast(to: .float32).expanded(to: outShape).madeContiguous()
        let av = a.cast(to: .float32).expanded(to: outShape).madeContiguous()
        let bv = b.cast(to: .float32).expanded(to: outShape).madeContiguous()
        let pc = c.pointer(as: Float.self), pa = av.pointer(as: Float.self), pb = bv.pointer(as: Float.self)
        return Tensor.computed(shape: outShape, dtype: dtype) { out in
            for i in 0..<out.count { out[i] = pc[i] != 0 ? pa[i] : pb[i] }
        }
    }

    /// Iterates two fp32 tensors broadcast to `shape`, writing `f(a, b)` row-major into `out`.
    static func zipBroadcast(_ a: Tensor, _ b: Tensor, _ shape: [Int], _ out: UnsafeMutableBufferPointer<Float>,
                             _ f: (Float, Float) -> Float) {
        let ea = a.expanded(to: shape), eb = b.expanded(to: shape)
        let pa = ea.pointer(as: Float.self), pb = eb.pointer(as: Float.self)
        var o = 0
        StridedLoop.forEach(shape: shape, strides: [ea.strides, eb.strides]) { offsets, inner, st in
            for i in 0..<inner { out[o + i] = f(pa[offsets[0] + i * st[0]], pb[offsets[1] + i * st[1]]) }
            o += inner
        }
    }
}
