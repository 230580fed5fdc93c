import XCTest
@testable import MegatronCUDA

final class LoaderTests: XCTestCase {
    /// Without a driver, the first GPU use says which library is missing and what to install.
    func testMissingDriverErrorNamesLibraryAndRemedy() throws {
        do {
            _ = try CUDALibraries.driver()
            throw XCTSkip("a CUDA driver is installed here; the missing-driver message cannot be observed")
        } catch let error as CUDAError {
            guard case .libraryUnavailable(let message) = error else {
                throw XCTSkip("libcuda.so.1 loads here (\(error)); the missing-driver message cannot be observed")
            }
            XCTAssertTrue(message.contains("libcuda.so.1"), message)
            XCTAssertTrue(message.contains("Install the NVIDIA driver"), message)
            XCTAssertThrowsError(try CUDADevice.select()) { XCTAssertEqual($0 as? CUDAError, error) }
        }
    }

    func testDeviceOrdinalSelection() throws {
        XCTAssertEqual(try CUDADevice.ordinal(index: nil, environment: [:]), 0)
        XCTAssertEqual(try CUDADevice.ordinal(index: nil, environment: ["LOCAL_RANK": "3"]), 3)
        XCTAssertEqual(try CUDADevice.ordinal(index: 1, environment: ["LOCAL_RANK": "3"]), 1)
        XCTAssertThrowsError(try CUDADevice.ordinal(index: nil, environment: ["LOCAL_RANK": "x"])) {
            XCTAssertTrue("\($0)".contains("LOCAL_RANK"))
        }
    }

    func testArchitectureFromComputeCapability() {
        XCTAssertEqual(CUDADeviceProperties.architecture(major: 9, minor: 0), "sm_90a")
        XCTAssertEqual(CUDADeviceProperties.architecture(major: 8, minor: 0), "sm_80")
        XCTAssertEqual(CUDADeviceProperties.architecture(major: 8, minor: 9), "sm_89")
    }
}
