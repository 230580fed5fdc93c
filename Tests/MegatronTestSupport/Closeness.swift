import XCTest
import MegatronTensor

/// Asserts that every element of `actual` is within `absolute + relative * |expected|` of `expected` (equal
/// infinities agree, NaN only with NaN), naming the worst element.
///
/// ```swift
/// assertClose(fused.floats(), reference.floats(), absolute: 1e-5, "weight gradient")
/// ```
public func assertClose(_ actual: [Float], _ expected: [Float], relative: Float = 0, absolute: Float = 0, _ label: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(label): element count", file: file, line: line)
    guard let worst = worstElement(actual, expected, absolute: absolute, relative: relative) else { return }
    XCTFail("\(label): element \(worst) is \(actual[worst]), expected \(expected[worst]) "
            + "(tolerance \(absolute) + \(relative) x |expected|)", file: file, line: line)
}

/// The same for tensors (any device), which must also agree in shape and dtype.
public func assertClose(_ actual: Tensor, _ expected: Tensor, relative: Float = 0, absolute: Float = 0, _ label: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "\(label): shape", file: file, line: line)
    XCTAssertEqual(actual.dtype, expected.dtype, "\(label): dtype", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    assertClose(actual.floats(), expected.floats(), relative: relative, absolute: absolute, label, file: file, line: line)
}

/// The index of the element furthest outside the tolerance, or nil when all are inside it.
func worstElement(_ actual: [Float], _ expected: [Float], absolute: Float, relative: Float) -> Int? {
    var worst: Int?, worstExcess: Float = 0
    for i in 0..<min(actual.count, expected.count) {
        let (a, e) = (actual[i], expected[i])
        if a.isNaN || e.isNaN {
            if a.isNaN != e.isNaN { return i }
            continue
        }
        if a == e { continue }   // equal infinities
        let excess = abs(a - e) - (absolute + relative * abs(e))
        if !(excess <= worstExcess) { (worst, worstExcess) = (i, excess.isNaN ? .infinity : excess) }
    }
    return worst
}

/// Tolerances for a GPU result against the CPU reference: both compute in fp32 and round once, but
/// transcendental functions and summation order differ in the last bits, and bf16 / fp16 results round
/// those differences to a coarser grid (one unit in the last place).
public func gpuTolerance(_ dtype: DType) -> (relative: Float, absolute: Float) {
    switch dtype {
    case .bfloat16: (1e-2, 1e-2)
    case .float16: (2e-3, 2e-3)
    default: (1e-5, 1e-5)
    }
}

/// Asserts that `gpu` (any device) and `cpu` agree in shape, dtype and every element, within `tolerance`
/// (by default `gpuTolerance` of the dtype).
public func assertParity(_ gpu: Tensor, _ cpu: Tensor, _ label: String, tolerance: (relative: Float, absolute: Float)? = nil,
                         file: StaticString = #filePath, line: UInt = #line) {
    let (relative, absolute) = tolerance ?? gpuTolerance(cpu.dtype)
    assertClose(gpu, cpu, relative: relative, absolute: absolute, "\(label) (GPU against CPU)", file: file, line: line)
}

/// Asserts that the largest |a - b| is at most `tolerance` times the largest |b|: for results whose small
/// elements carry only the rounding of the large ones (logits, hidden states).
public func assertScaledClose(_ a: [Float], _ b: [Float], tolerance: Float, _ label: String,
                              file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, label, file: file, line: line)
    let scale = max(b.map(abs).max() ?? 0, 1e-12)
    let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
    XCTAssertLessThanOrEqual(worst / scale, tolerance, "\(label): max |diff| \(worst) vs scale \(scale)", file: file, line: line)
}

/// ‖x − reference‖ / ‖reference‖, NaN when any value of `x` is NaN.
public func relativeError(_ x: [Double], _ reference: [Double]) -> Double {
    precondition(x.count == reference.count, "relativeError of \(x.count) against \(reference.count) values")
    var difference = 0.0, norm = 0.0
    for (a, b) in zip(x, reference) {
        if a.isNaN { return .nan }
        difference += (a - b) * (a - b)
        norm += b * b
    }
    return (difference / max(norm, 1e-300)).squareRoot()
}

/// The same for tensors, in Double.
public func relativeError(_ x: Tensor, _ reference: Tensor) -> Double {
    relativeError(x.floats(), reference.floats())
}

/// The same for Float values, in Double.
public func relativeError(_ x: [Float], _ reference: [Float]) -> Double {
    relativeError(x.map(Double.init), reference.map(Double.init))
}
