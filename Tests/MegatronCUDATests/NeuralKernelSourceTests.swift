import XCTest
@testable import MegatronCUDA

/// What the neural-network launchers rely on, checked without a GPU.
final class NeuralKernelSourceTests: XCTestCase {
    func testEverySourceIsEmbeddedWithBothHeadersInFront() throws {
        for file in CUDAKernels.files {
            let source = try CUDAKernels.source(file)
            let second = CUDAKernels.codeHeaderFiles.contains(file) ? "kernel_codes.cuh" : "neural.cuh"
            XCTAssertTrue(source.hasPrefix(EmbeddedKernels.sources["common.cuh"]! + "\n" + EmbeddedKernels.sources[second]!), file)
            XCTAssertTrue(source.hasSuffix(EmbeddedKernels.sources[file]!), file)
        }
        XCTAssertEqual(CUDAKernels.codeHeaderFiles, ["elementwise.cu", "reduce.cu", "tensor_ops.cu"])
        XCTAssertThrowsError(try CUDAKernels.source("missing.cu")) { XCTAssertTrue("\($0)".contains("missing.cu")) }
    }

    /// The launchers' kernel names exist: either spelled out or made by a macro whose pattern is in the file.
    func testKernelNamesTheLaunchersUseAreDefined() throws {
        let expected: [String: [String]] = [
            "softmax.cu": ["softmax_forward_##SUFFIX", "log_softmax_forward_##SUFFIX", "softmax_backward_##SUFFIX",
                           "log_softmax_backward_##SUFFIX"],
            "norm.cu": ["layer_norm_forward_##SUFFIX", "rms_norm_forward_##SUFFIX", "layer_norm_backward_##SUFFIX",
                        "rms_norm_backward_##SUFFIX", "NORM_KERNELS_OF(add_, true", "column_sum_##SUFFIX"],
            "cross_entropy.cu": ["cross_entropy_forward_##SUFFIX", "cross_entropy_backward_##SUFFIX"],
            "embedding.cu": ["embedding_forward_##SUFFIX", "index_add_##SUFFIX"],
            "dropout.cu": ["dropout_##SUFFIX"],
            "activation.cu": ["NAME##_forward_##SUFFIX", "NAME##_backward_##SUFFIX", "GLU_KERNELS_FOR(swiglu, Silu,",
                              "GLU_KERNELS_FOR(quick_geglu, QuickGelu,"] + Activation.allCases.map { "(\($0.rawValue)," },
            "cast.cu": ["cast_##FROM_SUFFIX##_##TO_SUFFIX", "CAST_KERNEL(f32, float, bf16, bf16)", "CAST_KERNEL(f16, f16, bf16, bf16)"],
            "optimizer.cu": ["adamw_##SUFFIX", "grad_norm_partials(", "grad_norm_final("],
            "flash_attention.cu": ["flash_forward##VARIANT##_d##D##_##SUFFIX", "flash_backward_dkdv##VARIANT##_d##D##_##SUFFIX",
                                   "flash_backward_dkdvdq##VARIANT##_d##D##_##SUFFIX", "flash_backward_dq_finalize_d##D##_##SUFFIX",
                                   "flash_backward_dq##VARIANT##_d##D##_##SUFFIX", "flash_backward_delta_d##D##_##SUFFIX",
                                   "FA_VARIANT_KERNELS(SUFFIX, TYPE, D, , false,", "FA_VARIANT_KERNELS(SUFFIX, TYPE, D, _dropout, true,",
                                   "FA_EXPAND(FLASH_ATTENTION_KERNELS, SUFFIX, TYPE, FA_HEAD_DIM, FA_TILING)",
                                   "FA_TYPES(FA_TYPE_KERNELS)"],
            "fp8.cu": ["cast_##SUFFIX##_##FORMAT(", "cast_##FORMAT##_##SUFFIX(", "amax_##SUFFIX(",
                       "FOR_EACH_FLOAT_TYPE(FP8_E4M3_KERNELS)", "FOR_EACH_FLOAT_TYPE(FP8_E5M2_KERNELS)",
                       "FOR_EACH_FLOAT_TYPE(AMAX_KERNEL)"] + FP8Format.allCases.map { "(SUFFIX, T, \($0.rawValue)," },
            "rope.cu": ["rope_##SUFFIX(", "FOR_EACH_FLOAT_TYPE(ROPE_KERNELS)"],
            "gated_delta_rule.cu": ["void gated_delta_rule_forward(", "void gated_delta_rule_backward("],
        ]
        XCTAssertEqual(Set(expected.keys), Set(CUDAKernels.files).subtracting(CUDAKernels.codeHeaderFiles))
        for (file, names) in expected {
            let source = EmbeddedKernels.sources[file]!
            for name in names { XCTAssertTrue(source.contains(name), "\(file) defines \(name)") }
        }
        XCTAssertTrue(EmbeddedKernels.sources["neural.cuh"]!.contains("MACRO(f32, float) MACRO(bf16, bf16) MACRO(f16, f16)"))
        XCTAssertEqual(KernelElementType.allCases.map(\.rawValue), ["f32", "bf16", "f16"])
    }

    func testRowBlockSizeFollowsTheRowWidth() {
        XCTAssertEqual(CUDAKernels.rowBlock(columns: 1, vectorized: false).x, 64)
        XCTAssertEqual(CUDAKernels.rowBlock(columns: 1000, vectorized: true).x, 128)     // 125 vectors -> 4 warps
        XCTAssertEqual(CUDAKernels.rowBlock(columns: 4096, vectorized: true).x, 512)
        XCTAssertEqual(CUDAKernels.rowBlock(columns: 4096, vectorized: true, limit: 128).x, 128)
        XCTAssertEqual(CUDAKernels.rowBlock(columns: 50304, vectorized: true, limit: 1000).x, 992)   // whole warps
        XCTAssertEqual(CUDAKernels.rowBlock(columns: 77, vectorized: false).x, 96)
        XCTAssertEqual(CUDAKernels.rowBlock(columns: 77, vectorized: false, limit: 40).x, 64)       // at least 2 warps
    }

    func testVectorizationNeedsWholeVectorsAndAlignedPointers() {
        XCTAssertTrue(CUDAKernels.vectorizable(columns: 1024, 0x1000, 0x2010, 0))
        XCTAssertFalse(CUDAKernels.vectorizable(columns: 1020, 0x1000))
        XCTAssertFalse(CUDAKernels.vectorizable(columns: 1024, 0x1000, 0x2008))
    }

    /// Bias corrections as torch computes them (in double from the fp32 hyperparameters), e.g.
    /// step 10 with betas (0.9, 0.95): lr / (1 - 0.9^10) = 3e-4 / 0.65132.
    func testAdamWStepBiasCorrections() {
        let step = AdamWStep(learningRate: 3e-4, beta1: 0.9, beta2: 0.95, step: 10)
        let (lr, b1, b2) = (Double(Float(3e-4)), Double(Float(0.9)), Double(Float(0.95)))
        XCTAssertEqual(step.stepSize, Float(lr / (1 - pow(b1, 10))))
        XCTAssertEqual(step.biasCorrection2Sqrt, Float((1 - pow(b2, 10)).squareRoot()))
        XCTAssertEqual(Double(step.stepSize), 4.6060e-4, accuracy: 1e-7)
    }

    /// Table words follow optimizer.cu's AdamWSlot (param, grad, exp_avg, exp_avg_sq, copy, count) and NormSlot.
    func testDeviceTablesLayout() {
        let tensors = [AdamWTensor(param: 1, gradient: 2, expAvg: 3, expAvgSq: 4, copy: 5, count: 6),
                       AdamWTensor(param: 7, gradient: 8, expAvg: 9, expAvgSq: 10, count: 11)]
        XCTAssertEqual(AdamWTensor.table(tensors), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 11])
        XCTAssertEqual(CUDAKernels.normTable([(address: 0x100, count: 3), (address: 0x200, count: 5)]), [0x100, 3, 0x200, 5])
        let source = EmbeddedKernels.sources["optimizer.cu"]!
        XCTAssertTrue(source.contains("float *param;\n    const void *grad;\n    float *exp_avg;\n    float *exp_avg_sq;\n    bf16 *copy;\n    long long count;"))
    }
}
