import MegatronTensor

/// Differentiable elementwise arithmetic with broadcasting.
extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .add) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .sub) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .mul) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .div) }
    public static func + (a: Tensor, s: Float) -> Tensor { binary(a, Tensor(scalar: s), .add) }
    public static func - (a: Tensor, s: Float) -> Tensor { binary(a, Tensor(scalar: s), .sub) }
    public static func * (a: Tensor, s: Float) -> Tensor { binary(a, Tensor(scalar: s), .mul) }
    public static func / (a: Tensor, s: Float) -> Tensor { binary(a, Tensor(scalar: s), .div) }
    public static func * (s: Float, a: Tensor) -> Tensor { binary(Tensor(scalar: s), a, .mul) }
    public static prefix func - (a: Tensor) -> Tensor { a.apply(.neg) }

    /// Elementwise maximum and minimum (gradient goes to the chosen side; ties to the first).
    public func maximum(_ other: Tensor) -> Tensor { Tensor.binary(self, other, .maximum) }
    public func minimum(_ other: Tensor) -> Tensor { Tensor.binary(self, other, .minimum) }

    /// `self ** exponent` elementwise.
    public func pow(_ exponent: Float) -> Tensor { Tensor.binary(self, Tensor(scalar: exponent), .pow) }

    public func exp() -> Tensor { apply(.exp) }
    public func log() -> Tensor { apply(.log) }
    public func tanh() -> Tensor { apply(.tanh) }
    public func sqrt() -> Tensor { apply(.sqrt) }
    public func rsqrt() -> Tensor { apply(.rsqrt) }
    public func abs() -> Tensor { apply(.abs) }
    public func sigmoid() -> Tensor { apply(.sigmoid) }
    public func relu() -> Tensor { apply(.relu) }

    /// A differentiable elementwise function.
    public func apply(_ op: UnaryOp) -> Tensor {
        let x = detached()
        return record("\(op)", inputs: [self], output: Ops.unary(x, op)) { g in
            [Ops.unaryBackward(x, gradOutput: g, op)]
        }
    }

    /// A copy in another dtype; the gradient is cast back.
    public func to(_ dtype: DType) -> Tensor {
        let source = self.dtype
        return record("cast", inputs: [self], output: cast(to: dtype)) { g in [g.cast(to: source)] }
    }

    static func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) -> Tensor {
        let (x, y) = (a.detached(), b.detached())
        let out = Ops.binary(x, y, op)
        let (needA, needB) = (a.requiresGrad, b.requiresGrad)
        return record("\(op)", inputs: [a, b], output: out) { g in
            let (ga, gb) = binaryGradients(x, y, out, g, op, needA: needA, needB: needB)
            return [ga.map { Ops.sumToShape($0, x.shape) }, gb.map { Ops.sumToShape($0, y.shape) }]
        }
    }

    /// Gradients of `out = x op y` at full broadcast shape, before summing back to each input's shape.
    private static func binaryGradients(_ x: Tensor, _ y: Tensor, _ out: Tensor, _ g: Tensor, _ op: BinaryOp,
                                        needA: Bool, needB: Bool) -> (Tensor?, Tensor?) {
        switch op {
        case .add: return (needA ? g : nil, needB ? g : nil)
        case .sub: return (needA ? g : nil, needB ? Ops.unary(g, .neg) : nil)
        case .mul: return (needA ? Ops.binary(g, y, .mul) : nil, needB ? Ops.binary(g, x, .mul) : nil)
        case .div:
            let ga = Ops.binary(g, y, .div)
            return (needA ? ga : nil, needB ? Ops.unary(Ops.binary(ga, out, .mul), .neg) : nil)
        case .maximum, .minimum:
            let pickA = Ops.compare(out, x, .equal)
            let zero = Tensor(scalar: 0)
            return (needA ? Ops.where(pickA, g, zero) : nil, needB ? Ops.where(pickA, zero, g) : nil)
        case .pow:
            // d/dx x^y = y x^(y-1); d/dy x^y = x^y log x.
            let ga = Ops.binary(g, Ops.binary(y, Ops.binary(x, Ops.binary(y, Tensor(scalar: 1), .sub), .pow), .mul), .mul)
            let gb = needB ? Ops.binary(g, Ops.binary(out, Ops.unary(x, .log), .mul), .mul) : nil
            return (needA ? ga : nil, gb)
        }
    }
}

/// `condition ? a : b` elementwise, differentiable in `a` and `b`.
public func select(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
    let (x, y) = (a.detached(), b.detached())
    let zero = Tensor(scalar: 0)
    let (needA, needB) = (a.requiresGrad, b.requiresGrad)
    return record("where", inputs: [a, b], output: Ops.where(condition, x, y)) { g in
        // Only what is needed: a masked fill's constant would otherwise cost a sum over the whole gradient.
        [needA ? Ops.sumToShape(Ops.where(condition, g, zero), x.shape) : nil,
         needB ? Ops.sumToShape(Ops.where(condition, zero, g), y.shape) : nil]
    }
}

extension Tensor {
    /// `value` where `mask` is true, else this tensor's element.
    public func maskedFill(_ mask: Tensor, _ value: Float) -> Tensor {
        select(mask, Tensor(scalar: value, dtype: dtype), self)
    }

    // Comparisons produce bool tensors and carry no gradient.
    public func eq(_ other: Tensor) -> Tensor { Ops.compare(self, other, .equal) }
    public func ne(_ other: Tensor) -> Tensor { Ops.compare(self, other, .notEqual) }
    public func lt(_ other: Tensor) -> Tensor { Ops.compare(self, other, .less) }
    public func le(_ other: Tensor) -> Tensor { Ops.compare(self, other, .lessEqual) }
    public func gt(_ other: Tensor) -> Tensor { Ops.compare(self, other, .greater) }
    public func ge(_ other: Tensor) -> Tensor { Ops.compare(self, other, .greaterEqual) }
}
