import XCTest
@testable import MegatronTensor

/// A CPU tensor of normal draws (scaled and shifted), stored as `dtype`.
func randomTensor(_ shape: [Int], dtype: DType = .float32, seed: UInt64, scale: Float = 1, shift: Float = 0) -> Tensor {
    Tensor.normal(shape, mean: shift, std: scale, dtype: dtype, generator: PhiloxGenerator(seed: seed))
}
