import MegatronAutograd
import MegatronTensor

/// Inverted dropout, active in training mode only; masks come from `generator`.
public final class Dropout: Module {
    public let probability: Float
    public let generator: PhiloxGenerator

    public init(_ probability: Float, generator: PhiloxGenerator) {
        precondition(probability >= 0 && probability < 1, "dropout probability \(probability) outside [0, 1)")
        self.probability = probability
        self.generator = generator
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        runForward { isTraining ? Functional.dropout(x, p: probability, generator: generator) : x }
    }

    /// The probability and generator a fused kernel draws this dropout with, nil when it drops nothing
    /// (evaluation, or probability 0).
    public var activeDraw: (probability: Float, generator: PhiloxGenerator)? {
        isTraining && probability > 0 ? (probability, generator) : nil
    }
}
