import Foundation
import XCTest
@testable import MegatronCUDA

/// norm.cu compiled as one NVRTC program per element type: the program list, the routing of
/// launched kernel names to their program, and (with libnvrtc, no GPU) each program holding exactly
/// its type's kernels.
final class KernelProgramSplitTests: XCTestCase {
    func testNormIsThreeProgramsAndOtherFilesOne() {
        XCTAssertEqual(NeuralKernels.programs.filter { $0.hasPrefix("norm.cu") }, ["norm.cu[f32]", "norm.cu[bf16]", "norm.cu[f16]"])
        XCTAssertEqual(NeuralKernels.programs.filter { !$0.hasPrefix("norm.cu") }, NeuralKernels.files.filter { $0 != "norm.cu" })
    }

    func testLaunchedNamesRouteToTheirTypesProgram() {
        for type in KernelElementType.allCases {
            for name in ["layer_norm_forward_\(type.rawValue)_1", "add_rms_norm_forward_\(type.rawValue)_4",
                         "layer_norm_backward_\(type.rawValue)_3", "add_rms_norm_backward_\(type.rawValue)_2",
                         "column_sum_\(type.rawValue)"] {
                XCTAssertEqual(NeuralKernels.program(file: "norm.cu", kernel: name), "norm.cu[\(type.rawValue)]", name)
            }
        }
        XCTAssertEqual(NeuralKernels.program(file: "softmax.cu", kernel: "softmax_forward_bf16"), "softmax.cu")
        XCTAssertEqual(NeuralKernels.program(file: "cast.cu", kernel: "cast_bf16_f32"), "cast.cu")
    }

    func testSplitProgramNarrowsTheTypeListBeforeTheFile() throws {
        let headers = try CUDAKernels.joinedSources(["common.cuh", "neural.cuh", "fp8.cuh"])
        let bf16 = try NeuralKernels.programSource("norm.cu[bf16]")
        XCTAssertTrue(bf16.hasPrefix(headers))
        XCTAssertTrue(bf16.hasSuffix(EmbeddedKernels.sources["norm.cu"]!))
        XCTAssertTrue(bf16.contains("#define FOR_EACH_FLOAT_TYPE(MACRO) MACRO(bf16, bf16)\n"))
        XCTAssertTrue(try NeuralKernels.programSource("norm.cu[f32]").contains("#define FOR_EACH_FLOAT_TYPE(MACRO) MACRO(f32, float)\n"))
        XCTAssertEqual(try NeuralKernels.programSource("softmax.cu"), try NeuralKernels.source("softmax.cu"))
    }

    /// Each norm program compiles for sm_90a and its CUBIN names its own type's kernels only.
    func testEachNormProgramHoldsItsTypesKernels() throws {
        do { _ = try CUDALibraries.nvrtc() } catch { throw XCTSkip("NVRTC test skipped, libnvrtc not loadable: \(error)") }
        let programs = NeuralKernels.programs.filter { $0.hasPrefix("norm.cu") }
        let modules = KernelModules(files: programs, compiler: try KernelCompiler(architecture: "sm_90a", cache: nil),
                                    source: NeuralKernels.programSource)
        for type in KernelElementType.allCases {
            let image = try modules.image("norm.cu[\(type.rawValue)]")
            XCTAssertEqual(image.format, .cubin)
            let text = String(decoding: image.bytes, as: UTF8.self)
            for other in KernelElementType.allCases {
                for name in ["layer_norm_forward_\(other.rawValue)_4", "add_layer_norm_forward_\(other.rawValue)_4",
                             "rms_norm_backward_\(other.rawValue)_3", "add_rms_norm_backward_\(other.rawValue)_3",
                             "column_sum_\(other.rawValue)"] {
                    XCTAssertEqual(text.contains(name), other == type, "norm.cu[\(type.rawValue)] holding \(name)")
                }
            }
        }
        for timing in modules.timings() { print(String(format: "%@: %.0f ms", timing.file, timing.milliseconds)) }
    }
}
