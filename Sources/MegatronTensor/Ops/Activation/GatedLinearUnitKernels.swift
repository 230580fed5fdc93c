import Foundation

/// A gated linear unit as Megatron's MLP applies it to `linear_fc1`'s output `[..., 2h]` = [gate, linear]
/// halves: `act(min(gate, c)) * (clamp(linear, -c, c) + offset)`, with `c` = `--activation-func-clamp-value`
/// (no clamp when nil) and `offset` = `--glu-linear-offset`.
///
/// ```swift
/// let quickGeGLU = GatedLinearUnit(gate: .quickGelu, linearOffset: 1, clampValue: 7)   // gpt-oss
/// let y = Ops.gatedLinearUnit(x, quickGeGLU)                                           // x [..., 2h] -> [..., h]
/// ```
public struct GatedLinearUnit: Equatable, Sendable, Codable, CustomStringConvertible {
    public enum Gate: String, Sendable, Codable {
        /// SiLU: SwiGLU (`--swiglu`).
        case silu
        /// `x * sigmoid(1.702 x)`, Megatron's `quick_gelu` (`--quick-geglu`).
        case quickGelu = "quick_gelu"
    }

    public var gate: Gate
    public var linearOffset: Float
    public var clampValue: Float?

    public init(gate: Gate, linearOffset: Float = 0, clampValue: Float? = nil) {
        (self.gate, self.linearOffset, self.clampValue) = (gate, linearOffset, clampValue)
    }

    /// `silu(gate) * linear`.
    public static let swiglu = GatedLinearUnit(gate: .silu)

    public var description: String {
        let name = gate == .silu ? "swiglu" : "quick_geglu"
        return name + (linearOffset == 0 ? "" : "+\(linearOffset)") + (clampValue.map { " clamp \($0)" } ?? "")
    }

    /// The activation of the (clamped) gate, and its derivative.
    @inline(__always)
    func activation(_ x: Float) -> (value: Float, derivative: Float) {
        let k: Float = gate == .silu ? 1 : 1.702
        let s = 1 / (1 + Foundation.exp(-k * x))
        return (x * s, s * (1 + k * x * (1 - s)))
    }

    /// The output for one (gate, linear) pair, and its gradients with respect to each given the output's
    /// gradient `g` (a clamped input gets none, as torch's `clamp` backward gives).
    @inline(__always)
    func apply(gate a: Float, linear b: Float, gradient g: Float) -> (y: Float, da: Float, db: Float) {
        let c = clampValue ?? .infinity
        let (ac, bc) = (Swift.min(a, c), Swift.min(Swift.max(b, -c), c))
        let (act, derivative) = activation(ac)
        let up = bc + linearOffset
        return (act * up, a <= c ? g * up * derivative : 0, b >= -c && b <= c ? g * act : 0)
    }
}

extension Ops {
    /// SwiGLU as Megatron's gated MLP: `x [..., 2h]` holds [gate, up]; returns `silu(gate) * up [..., h]`,
    /// one fused kernel on the GPU.
    public static func swiglu(_ x: Tensor) -> Tensor { gatedLinearUnit(x, .swiglu) }

    /// The gradient of `swiglu` with respect to `x`: `[g * up * silu'(gate), g * silu(gate)]`.
    public static func swigluBackward(_ x: Tensor, gradOutput: Tensor) -> Tensor {
        gatedLinearUnitBackward(x, gradOutput: gradOutput, .swiglu)
    }

    /// `unit` over the halves of `x [..., 2h]`, `[..., h]` in x's dtype; one fused kernel on the GPU.
    public static func gatedLinearUnit(_ x: Tensor, _ unit: GatedLinearUnit) -> Tensor {
        let half = x.shape.last! / 2
        precondition(x.shape.last! == 2 * half, "gated linear unit: last dimension \(x.shape.last!) is odd")
        if cudaDevice(x, op: "\(unit)") != nil { return CUDAFusedOps.gatedLinearUnit(x, unit) }
        let input = x.madeContiguous().floats(), rows = x.count / max(2 * half, 1)
        return Tensor.computed(shape: Array(x.shape.dropLast()) + [half], dtype: x.dtype) { out in
            parallelChunks(rows, grain: max(1, 8192 / max(half, 1))) { r in
                for row in r {
                    for c in 0..<half {
                        out[row * half + c] = unit.apply(gate: input[row * 2 * half + c], linear: input[row * 2 * half + half + c], gradient: 0).y
                    }
                }
            }
        }
    }

    /// The gradient of `gatedLinearUnit(x, unit)` with respect to `x`, from the output's gradient.
    public static func gatedLinearUnitBackward(_ x: Tensor, gradOutput: Tensor, _ unit: GatedLinearUnit) -> Tensor {
        if cudaDevice(x, gradOutput, op: "\(unit) backward") != nil {
            return CUDAFusedOps.gatedLinearUnitBackward(x, gradOutput: gradOutput, unit)
        }
        let half = x.shape.last! / 2, rows = x.count / max(2 * half, 1)
        let input = x.madeContiguous().floats(), g = gradOutput.madeContiguous().floats()
        return Tensor.computed(shape: x.shape, dtype: x.dtype) { out in
            parallelChunks(rows, grain: max(1, 8192 / max(half, 1))) { r in
                for row in r {
                    for c in 0..<half {
                        let (a, b) = (row * 2 * half + c, row * 2 * half + half + c)
                        let grads = unit.apply(gate: input[a], linear: input[b], gradient: g[row * half + c])
                        (out[a], out[b]) = (grads.da, grads.db)
                    }
                }
            }
        }
    }
}
