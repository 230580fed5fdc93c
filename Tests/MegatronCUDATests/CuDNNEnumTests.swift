import Foundation
import XCTest
@testable import MegatronCUDA

/// The hand-written cuDNN enum values against the ones cuDNN's own headers define
/// (Fixtures/cudnn_enums.txt, printed by scripts/fixtures/cudnn_enums.sh from cuDNN 9.28's headers).
final class CuDNNEnumTests: XCTestCase {
    func headerValues() throws -> [String: Int32] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/cudnn_enums.txt")
        var values: [String: Int32] = [:]
        for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: "=").map { $0.trimmingCharacters(in: .whitespaces) }
            values[parts[0]] = Int32(parts[1])!
        }
        return values
    }

    func check<E: RawRepresentable & CaseIterable>(_ type: E.Type, _ names: [String], _ headers: [String: Int32],
                                                   file: StaticString = #filePath, line: UInt = #line) where E.RawValue == Int32 {
        XCTAssertEqual(E.allCases.count, names.count, "\(E.self): one header name per case", file: file, line: line)
        for (value, name) in zip(E.allCases, names) {
            XCTAssertEqual(value.rawValue, headers[name], "\(E.self).\(value) is \(name)", file: file, line: line)
        }
    }

    func testValuesMatchCuDNNHeaders() throws {
        let h = try headerValues()
        check(CuDNNBackend.DescriptorType.self, ["POINTWISE", "ENGINECFG", "ENGINEHEUR", "EXECUTION_PLAN", "OPERATION_POINTWISE",
                                                 "OPERATIONGRAPH", "VARIANT_PACK", "TENSOR", "MATMUL", "OPERATION_MATMUL",
                                                 "REDUCTION", "OPERATION_REDUCTION", "OPERATION_RESHAPE", "RNG", "OPERATION_RNG"]
            .map { "CUDNN_BACKEND_\($0)_DESCRIPTOR" }, h)
        check(CuDNNBackend.AttributeType.self, ["HANDLE", "DATA_TYPE", "BOOLEAN", "INT64", "FLOAT", "DOUBLE", "VOID_PTR", "HEUR_MODE",
                                                "POINTWISE_MODE", "BACKEND_DESCRIPTOR", "REDUCTION_OPERATOR_TYPE", "INT32",
                                                "RNG_DISTRIBUTION"]
            .map { "CUDNN_TYPE_\($0)" }, h)
        check(CuDNNBackend.Attribute.self, ["POINTWISE_MODE", "POINTWISE_MATH_PREC", "POINTWISE_AXIS", "ENGINEHEUR_MODE",
                                            "ENGINEHEUR_OPERATION_GRAPH", "ENGINEHEUR_RESULTS", "ENGINECFG_ENGINE",
                                            "EXECUTION_PLAN_HANDLE", "EXECUTION_PLAN_ENGINE_CONFIG", "EXECUTION_PLAN_WORKSPACE_SIZE",
                                            "OPERATION_POINTWISE_PW_DESCRIPTOR", "OPERATION_POINTWISE_XDESC",
                                            "OPERATION_POINTWISE_BDESC", "OPERATION_POINTWISE_YDESC", "OPERATION_POINTWISE_TDESC",
                                            "OPERATIONGRAPH_HANDLE", "OPERATIONGRAPH_OPS", "TENSOR_BYTE_ALIGNMENT",
                                            "TENSOR_DATA_TYPE", "TENSOR_DIMENSIONS", "TENSOR_STRIDES", "TENSOR_UNIQUE_ID",
                                            "TENSOR_IS_VIRTUAL", "TENSOR_IS_BY_VALUE", "VARIANT_PACK_UNIQUE_IDS",
                                            "VARIANT_PACK_DATA_POINTERS", "VARIANT_PACK_WORKSPACE", "MATMUL_COMP_TYPE",
                                            "OPERATION_MATMUL_ADESC", "OPERATION_MATMUL_BDESC", "OPERATION_MATMUL_CDESC",
                                            "OPERATION_MATMUL_DESC", "REDUCTION_OPERATOR", "REDUCTION_COMP_TYPE",
                                            "OPERATION_REDUCTION_XDESC", "OPERATION_REDUCTION_YDESC", "OPERATION_REDUCTION_DESC",
                                            "OPERATION_RESHAPE_XDESC", "OPERATION_RESHAPE_YDESC", "RNG_DISTRIBUTION",
                                            "RNG_BERNOULLI_DIST_PROBABILITY", "OPERATION_RNG_YDESC", "OPERATION_RNG_SEED",
                                            "OPERATION_RNG_DESC", "OPERATION_RNG_OFFSET_DESC"]
            .map { "CUDNN_ATTR_\($0)" }, h)
        check(CuDNNBackend.DataType.self, ["FLOAT", "HALF", "INT32", "BFLOAT16", "INT64", "BOOLEAN"].map { "CUDNN_DATA_\($0)" }, h)
        check(CuDNNBackend.PointwiseMode.self, ["ADD", "MUL", "DIV", "SUB", "EXP", "LOG", "IDENTITY", "CMP_GE", "GEN_INDEX",
                                                "BINARY_SELECT"].map { "CUDNN_POINTWISE_\($0)" }, h)
        check(CuDNNBackend.ReductionOperator.self, ["CUDNN_REDUCE_TENSOR_ADD", "CUDNN_REDUCE_TENSOR_MAX"], h)
        XCTAssertEqual(CuDNNBackend.heuristicModeA, h["CUDNN_HEUR_MODE_A"])
        XCTAssertEqual(CuDNNBackend.rngDistributionBernoulli, h["CUDNN_RNG_DISTRIBUTION_BERNOULLI"])
        XCTAssertEqual(CuDNNBackend.statusSuccess, h["CUDNN_STATUS_SUCCESS"])
        XCTAssertEqual(CuDNNBackend.statusNotSupported, h["CUDNN_STATUS_NOT_SUPPORTED"])
    }

    func testMissingLibraryNamesWhatToInstall() {
        guard case .failure(let error) = CuDNNLibrary.open(path: "/nonexistent/libcudnn.so.9") else {
            return XCTFail("a missing file must not load")
        }
        let text = "\(error)"
        XCTAssertTrue(text.contains("/nonexistent/libcudnn.so.9"), text)
        XCTAssertTrue(text.contains("MEGATRON_CUDNN_PATH"), text)
        XCTAssertTrue(text.contains("nvidia-cudnn-cu12"), text)
    }

    func testPipInstalledCuDNNIsFoundUnderPythonPrefixes() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cudnn-find-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let venv = "\(root)/venv", home = "\(root)/home"
        let inVenv = "\(venv)/lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn.so.9"
        let inUserSite = "\(home)/.local/lib/python3.11/site-packages/nvidia/cudnn/lib/libcudnn.so.9"
        for file in [inVenv, inUserSite] {
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data()))
        }
        let found = CuDNNLibrary.installedCandidates(environment: ["VIRTUAL_ENV": venv, "HOME": home])
        XCTAssertEqual(Array(found.prefix(2)), [inVenv, inUserSite])
        // An explicit MEGATRON_CUDNN_PATH is the one file tried: its failure names it, not the candidates.
        guard case .failure(let error) = CuDNNLibrary.open(environment: ["MEGATRON_CUDNN_PATH": "/nonexistent/x.so", "VIRTUAL_ENV": venv]) else {
            return XCTFail("a missing explicit path must not load")
        }
        XCTAssertTrue("\(error)".contains("/nonexistent/x.so"), "\(error)")
    }
}
