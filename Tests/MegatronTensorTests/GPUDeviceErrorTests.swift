import XCTest
@testable import MegatronTensor

/// What a user sees when asking for a GPU that this machine cannot give (runs everywhere).
final class GPUDeviceErrorTests: XCTestCase {
    func testMissingGPUErrorNamesWhatIsMissing() throws {
        do {
            _ = try CUDAContext.shared(ordinal: 0)
            throw XCTSkip("a usable GPU is present here; the missing-GPU message cannot be observed")
        } catch let error as XCTSkip {
            throw error
        } catch {
            let message = "\(error)"
            XCTAssertTrue(message.contains("libcuda") || message.contains("driver") || message.contains("device")
                              || message.contains("NVRTC") || message.contains("nvrtc"),
                          "error should name the missing library or device: \(message)")
            XCTAssertFalse(CUDAContext.isAvailable())
        }
    }

    func testLocalRankMustBeAnInteger() {
        XCTAssertThrowsError(try Device.localCUDA(environment: ["LOCAL_RANK": "two"])) {
            XCTAssertTrue("\($0)".contains("LOCAL_RANK"), "\($0)")
        }
    }

    func testDeviceOfAnOpIsTheSharedDeviceOrNilOnTheCPU() {
        let x = Tensor(shape: [2], values: [1, 2])
        XCTAssertNil(Ops.cudaDevice(x, nil, x, op: "test"))
    }
}
