import XCTest
import MegatronTensor

/// Device `.cuda(0)` for a test that needs a GPU, or an XCTSkip naming `what` is skipped and why this machine
/// cannot run it (no driver, no device, no NVRTC). CI has no GPU: such tests skip there with this message.
///
/// ```swift
/// let gpu = try requireGPU("fused rotary GPU tests")
/// ```
@discardableResult
public func requireGPU(_ what: String = "GPU test", file: StaticString = #filePath, line: UInt = #line) throws -> Device {
    do {
        _ = try CUDAContext.shared(ordinal: 0)
        return .cuda(0)
    } catch {
        throw XCTSkip("no usable CUDA device here, \(what) skipped: \(error)", file: file, line: line)
    }
}
