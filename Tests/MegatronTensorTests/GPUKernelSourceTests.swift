import XCTest
import MegatronCUDA
@testable import MegatronTensor

/// What the CUDA ops hand their kernels, checked without a GPU.
final class GPUKernelSourceTests: XCTestCase {
    func testTensorOpsSourceHoldsEveryLaunchedKernel() throws {
        let source = try CUDAKernels.source("tensor_ops.cu")
        for name in ["tensor_copy", "tensor_copy_rows16", "tensor_binary", "tensor_binary_scalar", "tensor_compare", "tensor_unary", "tensor_unary_backward", "tensor_where",
                     "tensor_reduce_rows", "tensor_reduce_rows_partial", "tensor_reduce_columns_partial", "tensor_reduce_columns_final", "tensor_argmax_rows", "tensor_gather", "tensor_scatter_add", "tensor_index_add",
                     "tensor_embedding", "tensor_embedding_backward_atomic", "tensor_topk_rows"] {
            XCTAssertTrue(source.contains("extern \"C\" __global__ void \(name)("), name)
        }
    }

    /// The codes the launchers pass are the enums the EmbedKernels plugin generates from Kernels/kernel_codes.cuh
    /// (compiled in front of tensor_ops.cu): each op and dtype has its own, and every code has an op.
    func testOpAndDtypeCodesComeFromTheKernelHeader() throws {
        let binary: [BinaryOp] = [.add, .sub, .mul, .div, .maximum, .minimum, .pow]
        let compare: [CompareOp] = [.equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual]
        let unary: [UnaryOp] = [.neg, .exp, .log, .tanh, .sqrt, .rsqrt, .abs, .sigmoid, .relu, .silu, .geluTanh, .geluErf, .squaredRelu]
        let reduce: [ReduceOp] = [.sum, .mean, .max]
        XCTAssertEqual(binary.map(\.kernelCode), BinaryOpCode.allCases.map(\.rawValue))
        XCTAssertEqual(compare.map(\.kernelCode), CompareOpCode.allCases.map(\.rawValue))
        XCTAssertEqual(unary.map(\.kernelCode), UnaryOpCode.allCases.map(\.rawValue))
        XCTAssertEqual(reduce.map(\.kernelCode), ReduceOpCode.allCases.map(\.rawValue))
        XCTAssertEqual(DType.allCases.map(\.kernelCode), DTypeCode.allCases)
        XCTAssertEqual(UnaryOpCode.geluTanh.rawValue, 10)
        let source = try CUDAKernels.source("tensor_ops.cu")
        for header in ["enum DTypeCode {", "enum BinaryOpCode {", "enum UnaryOpCode {", "enum ReduceOpCode {"] {
            XCTAssertTrue(source.contains(header), header)
        }
    }

    /// The struct the kernels take by value: pointer, 8 sizes, 8 strides, rank, dtype (144 bytes).
    func testKernelArgumentLayoutAndRankLimit() throws {
        let t = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6], dtype: .bfloat16).transposed(0, 1)
        let argument = TensorKernelArgument(address: 0x1000, shape: t.shape, strides: t.strides, dtype: t.dtype.kernelCode)
        let bytes = try argument.bytes()
        XCTAssertEqual(bytes.count, 144)
        func word(_ index: Int) -> Int64 { bytes.withUnsafeBytes { $0.load(fromByteOffset: index * 8, as: Int64.self) } }
        XCTAssertEqual(word(0), 0x1000)
        XCTAssertEqual((1...8).map(word), [3, 2, 1, 1, 1, 1, 1, 1])
        XCTAssertEqual((9...16).map(word), [1, 3, 0, 0, 0, 0, 0, 0])
        let tail = bytes.withUnsafeBytes { ($0.load(fromByteOffset: 136, as: Int32.self), $0.load(fromByteOffset: 140, as: Int32.self)) }
        XCTAssertEqual(tail.0, 2)
        XCTAssertEqual(tail.1, DTypeCode.bf16.rawValue)
        let tooDeep = TensorKernelArgument(address: 0, shape: [Int](repeating: 1, count: 9), strides: [Int](repeating: 1, count: 9),
                                           dtype: .f32)
        XCTAssertThrowsError(try tooDeep.bytes()) { XCTAssertTrue("\($0)".contains("at most 8 dimensions"), "\($0)") }
    }
}
