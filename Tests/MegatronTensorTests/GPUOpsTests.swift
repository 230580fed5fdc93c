import XCTest
@testable import MegatronTensor
import MegatronTestSupport

/// Every `Ops` function on `.cuda(0)` against the CPU reference on the same inputs. Skipped where
/// there is no GPU (the skip message names what is missing).
final class GPUOpsTests: XCTestCase {
    let floatTypes: [DType] = [.float32, .bfloat16, .float16]

    func testZerosTransfersAndHostReads() throws {
        let gpu = try requireGPU()
        let context = try CUDAContext.shared(ordinal: 0)
        let zeros = Tensor(zeros: [3, 5], dtype: .bfloat16, device: gpu)
        XCTAssertEqual(zeros.device, gpu)
        XCTAssertEqual(zeros.floats(), [Float](repeating: 0, count: 15))
        for dtype in [DType.float32, .bfloat16, .float16] {
            let x = randomTensor([4, 7], dtype: dtype, seed: 1)
            XCTAssertEqual(x.to(gpu).to(.cpu).floats(), x.floats(), "\(dtype) round trip")
        }
        let ints = Tensor(shape: [5], ints: [-3, 0, 7, 1 << 40, 9], dtype: .int64)
        XCTAssertEqual(ints.to(gpu).ints(), [-3, 0, 7, 1 << 40, 9])
        XCTAssertEqual(Tensor(shape: [3], ints: [1, 0, 1], dtype: .bool).to(gpu).ints(), [1, 0, 1])
        XCTAssertEqual(Tensor(scalar: 2.5).to(gpu).item(), 2.5)
        XCTAssertEqual(Tensor.full([2, 3], -1.5, dtype: .float16, device: gpu).floats(), [Float](repeating: -1.5, count: 6))
        XCTAssertEqual(Tensor.ones([4], dtype: .int32, device: gpu).ints(), [1, 1, 1, 1])
        XCTAssertEqual(Tensor.arange(2, 9, step: 3, device: gpu).ints(), [2, 5, 8])
        // A transposed GPU view reads back in its logical order.
        let m = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6]).to(gpu)
        XCTAssertEqual(m.transposed(0, 1).floats(), [1, 4, 2, 5, 3, 6])
        // Storage goes back to the caching allocator when the last tensor using it dies.
        let before = context.allocator.statistics.allocatedBytes
        do {
            let big = Tensor(zeros: [1 << 20], device: gpu)
            XCTAssertGreaterThanOrEqual(context.allocator.statistics.allocatedBytes, before + big.count * 4)
        }
        XCTAssertEqual(context.allocator.statistics.allocatedBytes, before)
    }

    /// A copy started now reads the values as they are now, in stream order: zeroing the tensor right
    /// after does not reach the host copy; a transposed view arrives in logical order.
    func testStartedHostCopyReadsTheValuesOfItsTurn() throws {
        let gpu = try requireGPU()
        let x = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6], dtype: .bfloat16).to(gpu)
        let pending = x.startCopyToHost(), transposed = x.transposed(0, 1).startCopyToHost()
        Ops.zero(x)
        XCTAssertEqual(pending.tensor().floats(), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(pending.tensor().dtype, .bfloat16)
        XCTAssertEqual(transposed.tensor().shape, [3, 2])
        XCTAssertEqual(transposed.tensor().floats(), [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(x.floats(), [Float](repeating: 0, count: 6))
    }

    func testStridedCopyCastConcat() throws {
        let gpu = try requireGPU()
        let x = randomTensor([3, 4, 5], seed: 2, scale: 3)
        let xg = x.to(gpu)
        assertParity(xg.permuted([2, 0, 1]).madeContiguous(), x.permuted([2, 0, 1]).madeContiguous(), "permuted contiguous")
        assertParity(xg.narrowed(1, start: 1, length: 2).madeContiguous(), x.narrowed(1, start: 1, length: 2).madeContiguous(), "narrowed")
        assertParity(xg.selected(0, 1).unsqueezed(0).expanded(to: [2, 4, 5]).madeContiguous(),
                     x.selected(0, 1).unsqueezed(0).expanded(to: [2, 4, 5]).madeContiguous(), "expanded")
        assertParity(xg.transposed(0, 2).reshaped([-1]), x.transposed(0, 2).reshaped([-1]), "reshape of a view")
        let all: [DType] = [.float32, .bfloat16, .float16, .int32, .int64, .bool]
        for from in all {
            let source = x.cast(to: from)
            for to in all {
                assertParity(source.to(gpu).transposed(0, 1).cast(to: to), source.transposed(0, 1).cast(to: to),
                             "cast \(from) -> \(to)", tolerance: (0, 0))
            }
        }
        // Copy into a strided view of a GPU tensor, converting dtype.
        let target = Tensor(zeros: [4, 6], dtype: .bfloat16)
        let targetGPU = Tensor(zeros: [4, 6], dtype: .bfloat16, device: gpu)
        let patch = randomTensor([3, 4], seed: 3)
        Ops.copy(patch.transposed(0, 1), into: target.narrowed(1, start: 2, length: 3))
        Ops.copy(patch.to(gpu).transposed(0, 1), into: targetGPU.narrowed(1, start: 2, length: 3))
        assertParity(targetGPU, target, "copy into view", tolerance: (0, 0))
        // Head splits: rows of 64 contiguous 16-bit values, permuted, copied 16 bytes at a time; into a
        // slice of a fused buffer (a split's gradient) and out of it.
        for dtype in [DType.bfloat16, .float16, .float32] {
            let heads = randomTensor([2, 3, 5, 64], dtype: dtype, seed: 7)
            let fused = Tensor(zeros: [2, 5, 3, 4, 64], dtype: dtype), fusedGPU = Tensor(zeros: [2, 5, 3, 4, 64], dtype: dtype, device: gpu)
            Ops.copy(heads.permuted([0, 2, 1, 3]), into: fused.narrowed(3, start: 1, length: 1).squeezed(3))
            Ops.copy(heads.to(gpu).permuted([0, 2, 1, 3]), into: fusedGPU.narrowed(3, start: 1, length: 1).squeezed(3))
            assertParity(fusedGPU, fused, "head rows into a fused buffer \(dtype)", tolerance: (0, 0))
            assertParity(fusedGPU.permuted([0, 2, 3, 1, 4]).madeContiguous(), fused.permuted([0, 2, 3, 1, 4]).madeContiguous(),
                         "fused buffer out to heads \(dtype)", tolerance: (0, 0))
        }
        let parts = [randomTensor([2, 3], seed: 4), randomTensor([2, 1], seed: 5), randomTensor([2, 4], dtype: .bfloat16, seed: 6)]
        assertParity(Ops.concat(parts.map { $0.to(gpu) }, dim: 1), Ops.concat(parts, dim: 1), "concat", tolerance: (0, 0))
    }

    func testBinaryCompareWhereWithBroadcasting() throws {
        let gpu = try requireGPU()
        let ops: [BinaryOp] = [.add, .sub, .mul, .div, .maximum, .minimum, .pow]
        for (ta, tb) in [(DType.float32, DType.float32), (.bfloat16, .bfloat16), (.float16, .float16), (.bfloat16, .float32),
                         (.int64, .int32)] {
            let a = ta.isFloatingPoint ? randomTensor([3, 1, 5], dtype: ta, seed: 7, shift: 2)
                                       : Tensor(shape: [3, 1, 5], ints: (0..<15).map { $0 % 7 + 1 }, dtype: ta)
            let b = tb.isFloatingPoint ? randomTensor([4, 5], dtype: tb, seed: 8, scale: 0.5, shift: 1.5)
                                       : Tensor(shape: [4, 5], ints: (0..<20).map { $0 % 3 + 1 }, dtype: tb)
            for op in ops {
                let (x, y) = op == .pow ? (Ops.unary(a, .abs), b) : (a, b)
                assertParity(Ops.binary(x.to(gpu), y.to(gpu), op), Ops.binary(x, y, op), "\(op) \(ta) \(tb)")
            }
            for op in [CompareOp.equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual] {
                assertParity(Ops.compare(a.to(gpu), b.to(gpu), op), Ops.compare(a, b, op), "\(op) \(ta) \(tb)")
            }
        }
        // Strided (transposed) operands and a scalar, on the GPU or a CPU scalar joining a GPU op.
        let a = randomTensor([6, 4], seed: 9), s = Tensor(scalar: 0.25)
        assertParity(Ops.binary(a.to(gpu).transposed(0, 1), s.to(gpu), .mul), Ops.binary(a.transposed(0, 1), s, .mul), "scalar")
        let lifted = Ops.binary(s, a.to(gpu), .sub)
        XCTAssertEqual(lifted.device, gpu)
        assertParity(lifted, Ops.binary(s, a, .sub), "CPU scalar with a GPU tensor")
        // Same-shape contiguous 16-bit operands take the 128-bit vectorized kernel.
        for dtype in [DType.bfloat16, .float16] {
            let (u, w) = (randomTensor([40, 24], dtype: dtype, seed: 14, shift: 2), randomTensor([40, 24], dtype: dtype, seed: 15, shift: 2))
            for op in [BinaryOp.add, .sub, .mul, .div, .maximum, .minimum] {
                assertParity(Ops.binary(u.to(gpu), w.to(gpu), op), Ops.binary(u, w, op), "vectorized \(op) \(dtype)")
            }
        }
        for dtype in [DType.bfloat16, .float16] {
            let h = randomTensor([5, 7], dtype: dtype, seed: 13).transposed(0, 1)
            for op in [BinaryOp.mul, .div, .sub, .pow] {
                let (first, second) = (Ops.binary(s, h.to(gpu), op), Ops.binary(h.to(gpu), s, op))
                XCTAssertEqual([first.dtype, second.dtype], [dtype, dtype], "a scalar keeps \(dtype)")
                assertParity(first, Ops.binary(s, h, op), "scalar \(op) \(dtype)")
                assertParity(second, Ops.binary(h, s, op), "\(dtype) \(op) scalar")
            }
        }
        let nan = Tensor(shape: [3], values: [.nan, 1, 2]), other = Tensor(shape: [3], values: [0, .nan, 5])
        assertParity(Ops.binary(nan.to(gpu), other.to(gpu), .maximum), Ops.binary(nan, other, .maximum), "NaN maximum")
        let condition = Ops.compare(randomTensor([4, 1], seed: 10), Tensor(scalar: 0), .greater)
        let x = randomTensor([4, 5], dtype: .bfloat16, seed: 11), y = randomTensor([5], dtype: .bfloat16, seed: 12)
        assertParity(Ops.where(condition.to(gpu), x.to(gpu), y.to(gpu)), Ops.where(condition, x, y), "where")
    }

    func testUnaryAndBackward() throws {
        let gpu = try requireGPU()
        let ops: [UnaryOp] = [.neg, .exp, .log, .tanh, .sqrt, .rsqrt, .abs, .sigmoid, .relu, .silu, .geluTanh, .geluErf,
                              .squaredRelu]
        for dtype in floatTypes {
            let signed = randomTensor([5, 33], dtype: dtype, seed: 13, scale: 2)
            let positive = Ops.binary(Ops.unary(signed, .abs), Tensor(scalar: 0.1, dtype: dtype), .add)
            let grad = randomTensor([5, 33], dtype: dtype, seed: 14)
            for op in ops {
                let x = [.log, .sqrt, .rsqrt].contains(op) ? positive : signed
                let tol: (Float, Float) = dtype == .float32 ? (2e-5, 2e-5) : gpuTolerance(dtype)
                assertParity(Ops.unary(x.to(gpu), op), Ops.unary(x, op), "\(op) \(dtype)", tolerance: tol)
                assertParity(Ops.unaryBackward(x.to(gpu), gradOutput: grad.to(gpu), op),
                             Ops.unaryBackward(x, gradOutput: grad, op), "\(op) backward \(dtype)", tolerance: tol)
            }
        }
        let ints = Tensor(shape: [4], ints: [-2, 0, 3, 4], dtype: .int32)
        assertParity(Ops.unary(ints.to(gpu), .abs), Ops.unary(ints, .abs), "unary of ints gives fp32")
    }

    func testReductionsArgmaxSumToShape() throws {
        let gpu = try requireGPU()
        for dtype in floatTypes {
            let x = randomTensor([4, 6, 70], dtype: dtype, seed: 15)
            for dims in [[], [2], [0], [1, 2], [0, 2]] {
                for op in [ReduceOp.sum, .mean, .max] {
                    for keep in [false, true] {
                        let tol: (Float, Float) = dtype == .float32 ? (1e-5, 1e-4) : gpuTolerance(dtype)
                        assertParity(Ops.reduce(x.to(gpu), dims: dims, keepDim: keep, op), Ops.reduce(x, dims: dims, keepDim: keep, op),
                                     "\(op) over \(dims) keep \(keep) \(dtype)", tolerance: tol)
                    }
                }
            }
            for dim in [0, 1, 2, -1] {
                assertParity(Ops.argmax(x.to(gpu), dim: dim), Ops.argmax(x, dim: dim), "argmax \(dim) \(dtype)", tolerance: (0, 0))
            }
        }
        let wide = randomTensor([3, 50_000], seed: 16)
        assertParity(Ops.reduce(wide.to(gpu), dims: [1], .sum), Ops.reduce(wide, dims: [1], .sum), "wide sum", tolerance: (1e-4, 1e-3))
        assertParity(Ops.argmax(wide.to(gpu), dim: 1), Ops.argmax(wide, dim: 1), "wide argmax", tolerance: (0, 0))
        // Rows long enough to be split into pieces (two passes), with a NaN in one piece of one row.
        var long = randomTensor([2, 70_001], seed: 18).floats()
        long[70_001 + 40_000] = .nan
        let longRows = Tensor(shape: [2, 70_001], values: long)
        for op in [ReduceOp.sum, .mean, .max] {
            assertParity(Ops.reduce(longRows.to(gpu), dims: [1], op), Ops.reduce(longRows, dims: [1], op), "long rows \(op)",
                         tolerance: (1e-4, 1e-3))
        }
        // Reductions over leading dimensions (bias gradients) run down the columns in pieces.
        var tall = randomTensor([5000, 33], dtype: .bfloat16, seed: 20).floats()
        tall[77 * 33 + 5] = .nan
        let columns = Tensor(shape: [50, 100, 33], values: tall, dtype: .bfloat16)
        for op in [ReduceOp.sum, .mean, .max] {
            for keep in [false, true] {
                assertParity(Ops.reduce(columns.to(gpu), dims: [0, 1], keepDim: keep, op),
                             Ops.reduce(columns, dims: [0, 1], keepDim: keep, op), "columns \(op) keep \(keep)",
                             tolerance: (1e-2, 1e-2))
            }
        }
        let whole = randomTensor([300, 1000], seed: 19)
        assertParity(Ops.reduce(whole.to(gpu), dims: [], .mean), Ops.reduce(whole, dims: [], .mean), "whole mean",
                     tolerance: (1e-5, 1e-4))
        let withNaN = Tensor(shape: [2, 4], values: [1, .nan, 3, 2, 4, 4, 1, 0])
        assertParity(Ops.reduce(withNaN.to(gpu), dims: [1], .max), Ops.reduce(withNaN, dims: [1], .max), "NaN max")
        assertParity(Ops.argmax(withNaN.to(gpu), dim: 1), Ops.argmax(withNaN, dim: 1), "NaN and tie argmax", tolerance: (0, 0))
        let ints = Tensor(shape: [2, 3], ints: [1, 2, 3, 4, 5, 6], dtype: .int64)
        assertParity(Ops.reduce(ints.to(gpu), dims: [1], .sum), Ops.reduce(ints, dims: [1], .sum), "int sum", tolerance: (0, 0))
        let g = randomTensor([2, 3, 4], seed: 17)
        assertParity(Ops.sumToShape(g.to(gpu), [3, 1]), Ops.sumToShape(g, [3, 1]), "sumToShape")
    }

    func testMatmulLayoutsAndTypes() throws {
        let gpu = try requireGPU()
        let a = randomTensor([2, 3, 37, 24], seed: 18), b = randomTensor([2, 3, 24, 19], seed: 19)
        let w = randomTensor([19, 24], seed: 20)   // a linear layer's weight [out, in]
        // Each case builds its operands from (a, b, w) of one dtype, so the same views arise on both devices.
        let cases: [(String, (Tensor, Tensor, Tensor) -> (Tensor, Tensor))] = [
            ("2-D", { a, b, _ in (a.selected(0, 0).selected(0, 0), b.selected(0, 0).selected(0, 0)) }),
            ("batched", { a, b, _ in (a, b) }),
            ("x . W^T (shared transposed weight)", { a, _, w in (a, w.transposed(0, 1)) }),
            ("A^T view", { a, b, _ in (a.transposed(2, 3).madeContiguous().transposed(2, 3), b) }),
            ("B^T view per batch", { a, b, _ in (a, b.transposed(2, 3).madeContiguous().transposed(2, 3)) }),
            ("broadcast left operand", { a, b, _ in (a.selected(0, 1).selected(0, 2), b) }),
            ("permuted batch dims", { a, b, _ in (a.permuted([1, 0, 2, 3]), b.permuted([1, 0, 2, 3])) }),
            ("narrowed rows", { a, b, _ in (a.narrowed(2, start: 3, length: 20), b) }),
        ]
        for dtype in floatTypes {
            let tol: (Float, Float) = dtype == .float32 ? (1e-4, 1e-4) : (dtype == .bfloat16 ? (2e-2, 3e-2) : (4e-3, 4e-3))
            let (ac, bc, wc) = (a.cast(to: dtype), b.cast(to: dtype), w.cast(to: dtype))
            let (ag, bg, wg) = (ac.to(gpu), bc.to(gpu), wc.to(gpu))
            for (label, make) in cases {
                let (x, y) = make(ac, bc, wc), (xg, yg) = make(ag, bg, wg)
                assertParity(Ops.matmul(xg, yg), Ops.matmul(x, y), "matmul \(label) \(dtype)", tolerance: tol)
            }
            // A linear layer: one GEMM with the bias in cuBLASLt's epilogue (16-bit), or multiply and add (fp32).
            let bias = randomTensor([19], dtype: dtype, seed: 22)
            assertParity(Ops.linear(ag, weight: wg, bias: bias.to(gpu)), Ops.linear(ac, weight: wc, bias: bias),
                         "linear with bias \(dtype)", tolerance: tol)
            assertParity(Ops.linear(ag, weight: wg, bias: nil), Ops.linear(ac, weight: wc, bias: nil), "linear \(dtype)",
                         tolerance: tol)
            let dy = randomTensor([2, 3, 37, 19], dtype: dtype, seed: 23)
            for withBias in [true, false] {
                let (found, expected) = (Ops.linearParameterGradients(gradOutput: dy.to(gpu), input: ag, withBias: withBias),
                                         Ops.linearParameterGradients(gradOutput: dy, input: ac, withBias: withBias))
                assertParity(found.weight, expected.weight, "linear weight gradient \(dtype)", tolerance: tol)
                XCTAssertEqual(found.bias == nil, !withBias)
                if let b = found.bias { assertParity(b, expected.bias!, "linear bias gradient \(dtype)", tolerance: tol) }
            }
        }
        let mixed = Ops.matmul(a.cast(to: .bfloat16).to(gpu), b.to(gpu))
        assertParity(mixed, Ops.matmul(a.cast(to: .bfloat16), b), "bf16 x fp32 gives fp32", tolerance: (1e-4, 1e-4))
    }

    func testGatherScatterIndexAddEmbeddingTopk() throws {
        let gpu = try requireGPU()
        let x = randomTensor([4, 9], dtype: .bfloat16, seed: 21)
        let index = Tensor(shape: [4, 3], ints: [0, 8, 8, 1, 2, 3, 7, 7, 0, 4, 4, 4])
        assertParity(Ops.gather(x.to(gpu), dim: 1, index: index.to(gpu)), Ops.gather(x, dim: 1, index: index), "gather", tolerance: (0, 0))
        let index0 = Tensor(shape: [2, 9], ints: (0..<18).map { $0 % 4 }, dtype: .int32)
        assertParity(Ops.gather(x.to(gpu), dim: 0, index: index0.to(gpu)), Ops.gather(x, dim: 0, index: index0), "gather dim 0", tolerance: (0, 0))
        let source = randomTensor([4, 3], seed: 22)
        assertParity(Ops.scatterAdd(x.to(gpu), dim: 1, index: index.to(gpu), source: source.to(gpu)),
                     Ops.scatterAdd(x, dim: 1, index: index, source: source), "scatterAdd")
        let rowIndex = Tensor(shape: [5], ints: [3, 0, 3, 3, 1])
        let rows = randomTensor([5, 9], seed: 23)
        let xf = randomTensor([4, 9], seed: 24)
        assertParity(Ops.indexAdd(xf.to(gpu), dim: 0, index: rowIndex.to(gpu), source: rows.to(gpu)),
                     Ops.indexAdd(xf, dim: 0, index: rowIndex, source: rows), "indexAdd dim 0")
        let cols = randomTensor([4, 5], dtype: .bfloat16, seed: 25)
        assertParity(Ops.indexAdd(x.to(gpu), dim: 1, index: rowIndex.to(gpu), source: cols.to(gpu)),
                     Ops.indexAdd(x, dim: 1, index: rowIndex, source: cols), "indexAdd dim 1 bf16")
        let weight = randomTensor([50, 16], dtype: .bfloat16, seed: 26)
        let ids = Tensor(shape: [2, 3], ints: [49, 0, 7, 7, 3, 1], dtype: .int32)
        assertParity(Ops.embedding(weight.to(gpu), ids: ids.to(gpu)), Ops.embedding(weight, ids: ids), "embedding", tolerance: (0, 0))
        let tokenIds = Tensor(shape: [600], ints: (0..<600).map { ($0 * 7) % 50 }, dtype: .int32)
        for dtype in [DType.float32, .bfloat16] {
            let gradient = randomTensor([600, 16], dtype: dtype, seed: 28)
            assertParity(Ops.embeddingBackward(gradient.to(gpu), ids: tokenIds.to(gpu), vocabulary: 50),
                         Ops.embeddingBackward(gradient, ids: tokenIds, vocabulary: 50), "embedding backward \(dtype)",
                         tolerance: dtype == .float32 ? (1e-5, 1e-5) : (1e-2, 1e-2))
        }
        let scores = Tensor(shape: [3, 6], values: [1, 5, 5, 2, 0, 3, 9, 8, 7, 6, 5, 4, -1, -1, -1, 0, 0, 2])
        for largest in [true, false] {
            let (v, i) = Ops.topk(scores.to(gpu), k: 3, largest: largest)
            let (vc, ic) = Ops.topk(scores, k: 3, largest: largest)
            assertParity(v, vc, "topk values largest \(largest)", tolerance: (0, 0))
            assertParity(i, ic, "topk indices largest \(largest)", tolerance: (0, 0))
        }
        let logits = randomTensor([7, 300], dtype: .bfloat16, seed: 27)
        let (v, i) = Ops.topk(logits.to(gpu), k: 10)
        let (vc, ic) = Ops.topk(logits, k: 10)
        assertParity(v, vc, "topk bf16 values", tolerance: (0, 0))
        assertParity(i, ic, "topk bf16 indices", tolerance: (0, 0))
    }

    /// Fused ops (CUDAKernels for fp32 / bf16 / fp16; the general device paths for other dtype mixes).
    func testFusedOpsOnGPUTensors() throws {
        let gpu = try requireGPU()
        for dtype in floatTypes {
            let tol: (Float, Float) = dtype == .float32 ? (1e-4, 1e-4) : (dtype == .bfloat16 ? (2e-2, 2e-2) : (4e-3, 4e-3))
            let x = randomTensor([6, 40], dtype: dtype, seed: 28), g = randomTensor([6, 40], dtype: dtype, seed: 29)
            let w = randomTensor([40], dtype: dtype, seed: 30, shift: 1), b = randomTensor([40], dtype: dtype, seed: 31)
            let half = randomTensor([6, 20], dtype: dtype, seed: 32)
            assertParity(Ops.swiglu(x.to(gpu)), Ops.swiglu(x), "swiglu \(dtype)", tolerance: tol)
            assertParity(Ops.swigluBackward(x.to(gpu), gradOutput: half.to(gpu)), Ops.swigluBackward(x, gradOutput: half),
                         "swiglu backward \(dtype)", tolerance: tol)
            let quickGeGLU = GatedLinearUnit(gate: .quickGelu, linearOffset: 1, clampValue: 0.8)   // gpt-oss's MLP
            assertParity(Ops.gatedLinearUnit(x.to(gpu), quickGeGLU), Ops.gatedLinearUnit(x, quickGeGLU), "\(quickGeGLU) \(dtype)",
                         tolerance: tol)
            assertParity(Ops.gatedLinearUnitBackward(x.to(gpu), gradOutput: half.to(gpu), quickGeGLU),
                         Ops.gatedLinearUnitBackward(x, gradOutput: half, quickGeGLU), "\(quickGeGLU) backward \(dtype)", tolerance: tol)
            for op in [UnaryOp.geluTanh, .geluErf, .silu] {
                assertParity(Ops.unary(x.to(gpu), op), Ops.unary(x, op), "\(op) \(dtype)", tolerance: tol)
                assertParity(Ops.unaryBackward(x.to(gpu), gradOutput: g.to(gpu), op), Ops.unaryBackward(x, gradOutput: g, op),
                             "\(op) backward \(dtype)", tolerance: tol)
            }
            for log in [false, true] {
                let y = Ops.softmax(x, log: log)
                assertParity(Ops.softmax(x.to(gpu), log: log), y, "softmax log \(log) \(dtype)", tolerance: tol)
                assertParity(Ops.softmaxBackward(y.to(gpu), gradOutput: g.to(gpu), log: log),
                             Ops.softmaxBackward(y, gradOutput: g, log: log), "softmax backward log \(log) \(dtype)", tolerance: tol)
            }
            for weight in [w, nil] {
                let ln = Ops.layerNorm(x, weight: weight, bias: b, epsilon: 1e-5)
                let lnGPU = Ops.layerNorm(x.to(gpu), weight: weight?.to(gpu), bias: b.to(gpu), epsilon: 1e-5)
                assertParity(lnGPU.output, ln.output, "layerNorm \(dtype) weight \(weight != nil)", tolerance: tol)
                assertParity(lnGPU.rstd, ln.rstd, "layerNorm rstd \(dtype)", tolerance: (1e-4, 1e-4))
                let back = Ops.layerNormBackward(g, x: x, mean: ln.mean, rstd: ln.rstd, weight: weight)
                let backGPU = Ops.layerNormBackward(g.to(gpu), x: x.to(gpu), mean: lnGPU.mean, rstd: lnGPU.rstd, weight: weight?.to(gpu))
                assertParity(backGPU.gradInput, back.gradInput, "layerNorm backward input \(dtype)", tolerance: tol)
                assertParity(backGPU.gradWeight, back.gradWeight, "layerNorm backward weight \(dtype)", tolerance: tol)
                assertParity(backGPU.gradBias, back.gradBias, "layerNorm backward bias \(dtype)", tolerance: tol)
            }
            let rms = Ops.rmsNorm(x, weight: w, epsilon: 1e-5), rmsGPU = Ops.rmsNorm(x.to(gpu), weight: w.to(gpu), epsilon: 1e-5)
            assertParity(rmsGPU.output, rms.output, "rmsNorm \(dtype)", tolerance: tol)
            let rmsBack = Ops.rmsNormBackward(g, x: x, rstd: rms.rstd, weight: w)
            let rmsBackGPU = Ops.rmsNormBackward(g.to(gpu), x: x.to(gpu), rstd: rmsGPU.rstd, weight: w.to(gpu))
            assertParity(rmsBackGPU.gradInput, rmsBack.gradInput, "rmsNorm backward input \(dtype)", tolerance: tol)
            assertParity(rmsBackGPU.gradWeight, rmsBack.gradWeight, "rmsNorm backward weight \(dtype)", tolerance: tol)
            let labels = Tensor(shape: [6], ints: [0, 39, -100, 5, 5, 12])
            for smoothing in [Float(0), 0.1] {
                let ce = Ops.crossEntropy(x, labels: labels, labelSmoothing: smoothing)
                let ceGPU = Ops.crossEntropy(x.to(gpu), labels: labels.to(gpu), labelSmoothing: smoothing)
                assertParity(ceGPU.loss, ce.loss, "cross entropy \(dtype) smoothing \(smoothing)", tolerance: (1e-4, 1e-4))
                let gradLoss = randomTensor([6], seed: 32)
                assertParity(Ops.crossEntropyBackward(x.to(gpu), labels: labels.to(gpu), logSumExp: ceGPU.logSumExp,
                                                      gradLoss: gradLoss.to(gpu), labelSmoothing: smoothing),
                             Ops.crossEntropyBackward(x, labels: labels, logSumExp: ce.logSumExp, gradLoss: gradLoss,
                                                      labelSmoothing: smoothing),
                             "cross entropy backward \(dtype) smoothing \(smoothing)", tolerance: tol)
                // Overwriting the logits gives the same gradient, in the logits' own storage.
                let consumed = x.to(gpu)
                let outOfPlace = Ops.crossEntropyBackward(consumed, labels: labels.to(gpu), logSumExp: ceGPU.logSumExp,
                                                          gradLoss: gradLoss.to(gpu), labelSmoothing: smoothing)
                let inPlace = Ops.crossEntropyBackward(consumed, labels: labels.to(gpu), logSumExp: ceGPU.logSumExp,
                                                       gradLoss: gradLoss.to(gpu), labelSmoothing: smoothing, overwritingLogits: true)
                XCTAssertTrue(inPlace.storage === consumed.storage, "the in-place gradient must reuse the logits' storage")
                assertParity(inPlace, outOfPlace, "cross entropy backward over the logits \(dtype)", tolerance: (0, 0))
            }
            assertParity(Ops.dropout(x.to(gpu), p: 0.3, seed: 5, offset: 2), Ops.dropout(x, p: 0.3, seed: 5, offset: 2),
                         "dropout \(dtype)", tolerance: (0, 0))
        }
        // Mixed dtypes (bf16 activations, fp32 weight) take the general device path and still agree.
        let x = randomTensor([3, 16], dtype: .bfloat16, seed: 33), w = randomTensor([16], seed: 34)
        assertParity(Ops.rmsNorm(x.to(gpu), weight: w.to(gpu), epsilon: 1e-6).output, Ops.rmsNorm(x, weight: w, epsilon: 1e-6).output,
                     "rmsNorm bf16 x fp32 weight")
    }

    /// Rough throughput of the generic kernels and the GEMM path, printed for the notes (not asserted).
    func testTimings() throws {
        let gpu = try requireGPU()
        let context = try CUDAContext.shared(ordinal: 0)
        func time(_ label: String, bytes: Double = 0, flops: Double = 0, _ body: () -> Void) throws {
            body()
            try context.synchronize()
            let runs = 20
            let start = Date()
            for _ in 0..<runs { body() }
            try context.synchronize()
            let seconds = Date().timeIntervalSince(start) / Double(runs)
            var line = "TIMING \(label): " + String(format: "%.3f ms", seconds * 1000)
            if bytes > 0 { line += String(format: ", %.0f GB/s", bytes / seconds / 1e9) }
            if flops > 0 { line += String(format: ", %.1f TFLOP/s", flops / seconds / 1e12) }
            print(line)
        }
        // Random data, not zeros: zeros can run faster than real data (METHOD.md).
        let n = 1 << 24
        let a = randomTensor([n], dtype: .bfloat16, seed: 40).to(gpu), b = randomTensor([n], dtype: .bfloat16, seed: 41).to(gpu)
        try time("add bf16 16M contiguous", bytes: Double(n) * 6) { _ = Ops.binary(a, b, .add) }
        let m = a.reshaped([4096, 4096])
        try time("transpose copy bf16 4096^2", bytes: Double(n) * 4) { _ = m.transposed(0, 1).madeContiguous() }
        try time("broadcast add bf16 4096^2 + row", bytes: Double(n) * 4) { _ = Ops.binary(m, b.narrowed(0, start: 0, length: 4096), .add) }
        try time("sum rows bf16 4096x4096", bytes: Double(n) * 2) { _ = Ops.reduce(m, dims: [1], .sum) }
        let one = Tensor(scalar: 1, dtype: .bfloat16).to(gpu)
        try time("add bf16 1 element (host cost per op, debug build)") { _ = Ops.binary(one, one, .add) }
        let gain = randomTensor([4096], dtype: .bfloat16, seed: 42).to(gpu)
        try time("softmax bf16 4096x4096", bytes: Double(n) * 4) { _ = Ops.softmax(m) }
        try time("layerNorm bf16 4096x4096", bytes: Double(n) * 4) { _ = Ops.layerNorm(m, weight: gain, bias: gain, epsilon: 1e-5) }
        let x = m
        try time("matmul bf16 4096^3", flops: 2 * pow(4096, 3)) { _ = Ops.matmul(x, x) }
        let xf = x.cast(to: .float32)
        try time("matmul fp32 4096^3", flops: 2 * pow(4096, 3)) { _ = Ops.matmul(xf, xf) }
    }
}
