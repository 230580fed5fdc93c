import MegatronAutograd
import MegatronTensor

/// `y = x W^T + b` with Megatron's weight layout `[out, in]`, drawn by `initMethod` (normal(0, 0.02) by default).
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?

    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true, initMethod: InitMethod = .normal(std: 0.02),
                dtype: DType = .float32, generator: PhiloxGenerator) {
        weight = parameter(initMethod.draw([outFeatures, inFeatures], dtype: dtype, generator: generator))
        self.bias = bias ? parameter(Tensor.zeros([outFeatures], dtype: dtype)) : nil
    }

    override public var parameters: [(String, Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { runForward { Functional.linear(x, weight: weight, bias: bias) } }
}
