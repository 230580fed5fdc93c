import XCTest
@testable import MegatronCUDA

/// The SDPA graphs handed to cuDNN itself: every tensor and operation descriptor must finalize
/// (cuDNN checks attribute types, dims, strides and operand compatibility on the host). Needs a
/// loadable libcudnn.so.9 (MEGATRON_CUDNN_PATH or the loader path) but no GPU: on a machine without
/// a driver, cuDNN's engine sublibrary loads against a stand-in libcuda.so.1 (see the cudnn-sdpa
/// report). Skips with a message when cuDNN cannot be loaded.
final class CuDNNDescriptorTests: XCTestCase {
    func cudnn() throws -> CuDNNLibrary {
        do {
            return try CuDNNLibrary.load()
        } catch {
            throw XCTSkip("cuDNN not loadable here, descriptor checks skipped: \(error)")
        }
    }

    func shapes() -> [SDPAShape] {
        var result: [SDPAShape] = []
        for (heads, kvHeads, queries, keys, headDim, causal, type, dropout) in [
            (4, 4, 128, 128, 64, false, CuDNNBackend.DataType.bfloat16, Float(0)), (8, 2, 77, 77, 128, true, .half, 0),
            (6, 2, 5, 77, 64, true, .bfloat16, 0), (4, 4, 128, 128, 80, true, .bfloat16, 0.1), (8, 2, 64, 64, 96, true, .half, 0.2),
        ] {
            let query = [queries * heads * headDim, headDim, heads * headDim, 1]
            let key = [keys * kvHeads * headDim, headDim, kvHeads * headDim, 1]
            result.append(SDPAShape(batch: 2, heads: heads, kvHeads: kvHeads, queries: queries, keys: keys, headDim: headDim,
                                    dataType: type, causal: causal, scale: 0.125, dropout: dropout,
                                    strides: [.q: query, .o: query, .dO: query, .dQ: query, .k: key, .v: key, .dK: key, .dV: key]))
        }
        return result
    }

    func testEveryOperationFinalizes() throws {
        let cudnn = try cudnn()
        print("cuDNN \(cudnn.version)")
        let maskValue = SDPAGraphs.maskValue(cudnnVersion: cudnn.version)
        for shape in shapes() {
            for (direction, spec) in [("forward", SDPAGraphs.forward(shape, maskValue: maskValue)),
                                      ("backward", SDPAGraphs.backward(shape, maskValue: maskValue))] {
                do {
                    let (operations, _) = try CuDNNGraphBuilder.finalizedOperations(spec, cudnn: cudnn)
                    XCTAssertEqual(operations.count, spec.operations.count)
                } catch {
                    XCTFail("\(direction) h\(shape.heads)/\(shape.kvHeads) s\(shape.queries) t\(shape.keys) causal \(shape.causal): \(error)")
                }
            }
        }
    }

    /// The check above is not vacuous: a matmul whose inner dims disagree is refused at finalize.
    func testMismatchedMatmulIsRefused() throws {
        let cudnn = try cudnn()
        var spec = CuDNNGraphSpec()
        func tensor(_ uid: Int64, _ dims: [Int64], virtual: Bool = false) -> Int64 {
            spec.add(.init(uid: uid, name: "t\(uid)", dims: dims, strides: CuDNNGraphSpec.contiguousStrides(dims), dataType: .bfloat16,
                           isVirtual: virtual, scalar: nil))
        }
        let a = tensor(1, [1, 1, 64, 32]), b = tensor(2, [1, 1, 48, 64]), c = tensor(3, [1, 1, 64, 64])
        spec.add(.matmul(name: "bad", a: a, b: b, c: c))
        XCTAssertThrowsError(try CuDNNGraphBuilder.finalizedOperations(spec, cudnn: cudnn)) { error in
            print("refused as expected: \(error)")
        }
    }

    /// Whether the operation graph finalizes without a handle (informational: cuDNN may require one).
    func testOperationGraphWithoutHandle() throws {
        let cudnn = try cudnn()
        for shape in shapes() {
            do {
                _ = try CuDNNGraphBuilder.operationGraph(SDPAGraphs.forward(shape, maskValue: -.infinity), cudnn: cudnn, handle: nil)
                print("operation graph finalized without a handle")
            } catch {
                print("operation graph without a handle: \(error)")
            }
        }
    }
}
