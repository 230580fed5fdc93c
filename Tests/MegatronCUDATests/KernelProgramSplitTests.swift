import Foundation
import XCTest
@testable import MegatronCUDA

/// norm.cu compiled as one NVRTC program per element type, flash_attention.cu as one per head dim
/// and type: the program list, the routing of launched kernel names to their program, and (with
/// libnvrtc, no GPU) each program holding exactly its kernels.
final class KernelProgramSplitTests: XCTestCase {
    func testNormIsThreeProgramsAndOtherFilesOne() {
        XCTAssertEqual(CUDAKernels.programs.filter { $0.hasPrefix("norm.cu") }, ["norm.cu[f32]", "norm.cu[bf16]", "norm.cu[f16]"])
        XCTAssertEqual(CUDAKernels.programs.filter { $0.hasPrefix("flash_attention.cu") },
                       ["flash_attention.cu[d64_bf16]", "flash_attention.cu[d64_f16]", "flash_attention.cu[d128_bf16]",
                        "flash_attention.cu[d128_f16]"], "the common head dims start compiling at once")
        XCTAssertEqual(CUDAKernels.programs.filter { !$0.hasPrefix("norm.cu") && !$0.hasPrefix("flash_attention.cu") },
                       CUDAKernels.files.filter { $0 != "norm.cu" && $0 != "flash_attention.cu" })
    }

    func testFlashAttentionKernelsRouteToTheirHeadDimsProgram() throws {
        for name in ["flash_forward_dropout_d80_bf16", "flash_backward_dkdvdq_d80_bf16", "flash_backward_delta_d80_bf16",
                     "flash_backward_dq_finalize_d80_bf16"] {
            XCTAssertEqual(CUDAKernels.program(file: "flash_attention.cu", kernel: name), "flash_attention.cu[d80_bf16]", name)
        }
        XCTAssertEqual(CUDAKernels.program(file: "flash_attention.cu", kernel: "flash_backward_dq_d256_f16"), "flash_attention.cu[d256_f16]")
        // Programs of other head dims are compiled on demand: valid names only.
        XCTAssertTrue(CUDAKernels.isAttentionProgram("flash_attention.cu[d72_f16]"))
        for invalid in ["flash_attention.cu[d36_bf16]", "flash_attention.cu[d264_bf16]", "flash_attention.cu[d64_f32]", "norm.cu[d64_bf16]"] {
            XCTAssertFalse(CUDAKernels.isAttentionProgram(invalid), invalid)
        }
        let source = try CUDAKernels.programSource("flash_attention.cu[d200_bf16]")
        XCTAssertTrue(source.hasSuffix(EmbeddedKernels.sources["flash_attention.cu"]!))
        // The masks, shared helpers, forward and backward halves come before the entry points, in that order.
        let starts = try CUDAKernels.attentionParts.map { try XCTUnwrap(source.range(of: EmbeddedKernels.sources[$0]!), $0).lowerBound }
        XCTAssertEqual(starts, starts.sorted())
        for line in ["#define FA_HEAD_DIM 200\n", CUDAKernels.AttentionTiling.forHeadDim(200).macroDefinition + "\n",
                     "#define FA_TYPES(MACRO) MACRO(bf16, bf16)\n"] {
            XCTAssertTrue(source.contains(line), line)
        }
        XCTAssertEqual(CUDAKernels.AttentionTiling.forHeadDim(200).macroDefinition, "#define FA_TILING 1, 32, 1, 16, 1, 16")
        XCTAssertEqual(CUDAKernels.AttentionTiling.forHeadDim(72), CUDAKernels.AttentionTiling.forHeadDim(128))
        XCTAssertEqual(CUDAKernels.AttentionTiling.paddedHeadDim(72), 80)
    }

    /// A head dim's program compiles on first use and holds its type's kernels of that head dim only,
    /// both variants (with and without dropout).
    func testAttentionProgramCompilesOnDemand() throws {
        do { _ = try CUDALibraries.nvrtc() } catch { throw XCTSkip("NVRTC test skipped, libnvrtc not loadable: \(error)") }
        let modules = KernelModules(files: [], compiler: try KernelCompiler(architecture: "sm_90a", cache: nil),
                                    source: CUDAKernels.programSource, compilesOnDemand: CUDAKernels.isAttentionProgram)
        let text = String(decoding: try modules.image("flash_attention.cu[d24_f16]").bytes, as: UTF8.self)
        for role in ["flash_forward", "flash_backward_dkdv", "flash_backward_dkdvdq", "flash_backward_dq"] {
            for variant in ["", "_dropout"] {
                XCTAssertTrue(text.contains("\(role)\(variant)_d24_f16"), "\(role)\(variant)")
                XCTAssertFalse(text.contains("\(role)\(variant)_d24_bf16"))
            }
        }
        XCTAssertThrowsError(try modules.image("flash_attention.cu[d36_f16]"))
    }

    func testLaunchedNamesRouteToTheirTypesProgram() {
        for type in KernelElementType.allCases {
            for name in ["layer_norm_forward_\(type.rawValue)_1", "add_rms_norm_forward_\(type.rawValue)_4",
                         "layer_norm_backward_\(type.rawValue)_3", "add_rms_norm_backward_\(type.rawValue)_2",
                         "add_dropout_layer_norm_backward_\(type.rawValue)_1",
                         "column_sum_\(type.rawValue)"] {
                XCTAssertEqual(CUDAKernels.program(file: "norm.cu", kernel: name), "norm.cu[\(type.rawValue)]", name)
            }
        }
        XCTAssertEqual(CUDAKernels.program(file: "softmax.cu", kernel: "softmax_forward_bf16"), "softmax.cu")
        XCTAssertEqual(CUDAKernels.program(file: "cast.cu", kernel: "cast_bf16_f32"), "cast.cu")
    }

    func testSplitProgramNarrowsTheTypeListBeforeTheFile() throws {
        let headers = try CUDAKernels.joinedSources(["common.cuh", "neural.cuh", "fp8.cuh"])
        let bf16 = try CUDAKernels.programSource("norm.cu[bf16]")
        XCTAssertTrue(bf16.hasPrefix(headers))
        XCTAssertTrue(bf16.hasSuffix(EmbeddedKernels.sources["norm.cu"]!))
        XCTAssertTrue(bf16.contains("#define FOR_EACH_FLOAT_TYPE(MACRO) MACRO(bf16, bf16)\n"))
        XCTAssertTrue(try CUDAKernels.programSource("norm.cu[f32]").contains("#define FOR_EACH_FLOAT_TYPE(MACRO) MACRO(f32, float)\n"))
        XCTAssertEqual(try CUDAKernels.programSource("softmax.cu"), try CUDAKernels.source("softmax.cu"))
    }

    /// Each norm program compiles for sm_90a and its CUBIN names its own type's kernels only.
    func testEachNormProgramHoldsItsTypesKernels() throws {
        do { _ = try CUDALibraries.nvrtc() } catch { throw XCTSkip("NVRTC test skipped, libnvrtc not loadable: \(error)") }
        let programs = CUDAKernels.programs.filter { $0.hasPrefix("norm.cu") }
        let modules = KernelModules(files: programs, compiler: try KernelCompiler(architecture: "sm_90a", cache: nil),
                                    source: CUDAKernels.programSource)
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
