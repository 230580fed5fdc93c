import MegatronAutograd
import MegatronTensor

/// A lookup table of `count` vectors of `dimension` values.
public final class Embedding: Module {
    public let weight: Tensor

    public init(count: Int, dimension: Int, initMethod: InitMethod = .normal(std: 0.02), dtype: DType = .float32,
                generator: PhiloxGenerator) {
        weight = parameter(initMethod.draw([count, dimension], dtype: dtype, generator: generator))
    }

    override public var parameters: [(String, Tensor)] { [("weight", weight)] }

    public func callAsFunction(_ ids: Tensor) -> Tensor { runForward { Functional.embedding(ids, weight: weight) } }
}
