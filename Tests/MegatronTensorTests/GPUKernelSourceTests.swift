import XCTest
@testable import MegatronCUDA
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

/// How every kernel's arguments reach the driver (`CUDAFunction.launch`), checked without a GPU.
final class KernelParameterLayoutTests: XCTestCase {
    /// Scalars and pointers take 8-byte slots (a 4-byte value in the low bytes), a tensor operand its
    /// 144-byte struct; an operand of too many dimensions is a thrown error.
    func testArgumentsTakeEightByteSlotsAndTensorsTheirStruct() throws {
        let tensor = TensorKernelArgument(address: 0x2000, shape: [4, 5], strides: [5, 1], dtype: .bf16)
        let parameters = try KernelParameters([.pointer(0xABCD), .int32(-2), .tensor(tensor), .float32(1.5), .int64(1 << 40)])
        XCTAssertEqual(parameters.offsets, [0, 8, 16, 160, 168])
        XCTAssertEqual(parameters.pointers.count, 5)
        func load<T>(_ offset: Int, _ type: T.Type) -> T { parameters.buffer.load(fromByteOffset: offset, as: type) }
        XCTAssertEqual(load(0, UInt64.self), 0xABCD)
        XCTAssertEqual(load(8, Int32.self), -2)
        XCTAssertEqual(load(16, UInt64.self), 0x2000)
        XCTAssertEqual(load(16 + 8, Int64.self), 4)
        XCTAssertEqual(load(16 + 140, Int32.self), DTypeCode.bf16.rawValue)
        XCTAssertEqual(load(160, Float.self), 1.5)
        XCTAssertEqual(load(168, Int64.self), 1 << 40)
        let deep = TensorKernelArgument(address: 0, shape: [Int](repeating: 1, count: 9), strides: [Int](repeating: 1, count: 9), dtype: .f32)
        XCTAssertThrowsError(try KernelParameters([.int32(1), .tensor(deep)]))
    }
}
