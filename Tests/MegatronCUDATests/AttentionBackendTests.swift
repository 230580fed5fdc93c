import XCTest
@testable import MegatronTensor

/// MEGATRON_ATTENTION picks the flash-attention implementation; auto (cuDNN where it loads) unless set.
final class AttentionBackendTests: XCTestCase {
    func testEnvironmentChoosesBackend() throws {
        XCTAssertEqual(try AttentionBackend(environment: [:]), .auto)
        XCTAssertEqual(try AttentionBackend(environment: ["MEGATRON_ATTENTION": ""]), .auto)
        XCTAssertEqual(try AttentionBackend(environment: ["MEGATRON_ATTENTION": "AUTO"]), .auto)
        XCTAssertEqual(try AttentionBackend(environment: ["MEGATRON_ATTENTION": "kernels"]), .kernels)
        XCTAssertEqual(try AttentionBackend(environment: ["MEGATRON_ATTENTION": "cudnn"]), .cudnn)
        XCTAssertEqual(try AttentionBackend(environment: ["MEGATRON_ATTENTION": "cuDNN"]), .cudnn)
        XCTAssertThrowsError(try AttentionBackend(environment: ["MEGATRON_ATTENTION": "flash3"])) { error in
            XCTAssertTrue("\(error)".contains("MEGATRON_ATTENTION=flash3"), "\(error)")
            XCTAssertTrue("\(error)".contains("auto, kernels, cudnn"), "\(error)")
        }
    }
}
