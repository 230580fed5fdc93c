import Foundation
import XCTest
@testable import MegatronTraining

final class ConfigFileTests: XCTestCase {
    func write(_ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).yaml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    func testYAMLSetsFlagsAndTheCommandLineOverridesIt() throws {
        let path = try write("""
            num_layers: 6
            hidden-size: 256
            --num-attention-heads: 8
            lr: 6.0e-4
            swiglu: true
            bf16: false
            data-path: [0.3, web_text_document, 0.7, code_text_document]
            """)
        let args = try MegatronArgumentParser.parse(["--config", path, "--hidden-size", "512", "--train-iters", "10"])
        XCTAssertEqual(args.numLayers, 6)
        XCTAssertEqual(args.hiddenSize, 512, "the command line wins")
        XCTAssertEqual(args.numAttentionHeads, 8)
        XCTAssertEqual(args.lr, 6e-4)
        XCTAssertTrue(args.swiglu)
        XCTAssertFalse(args.bf16)
        XCTAssertEqual(args.dataPath, ["0.3", "web_text_document", "0.7", "code_text_document"])
        XCTAssertEqual(try MegatronArgumentParser.parse(["--yaml-cfg=\(path)"]).numLayers, 6)
    }

    func testBadFilesAndKeysAreNamed() throws {
        XCTAssertThrowsError(try MegatronArgumentParser.parse(["--config", "/nonexistent.yaml"])) {
            XCTAssertEqual("\($0)", "--config: cannot read /nonexistent.yaml")
        }
        let list = try write("- 1\n- 2\n")
        XCTAssertThrowsError(try MegatronArgumentParser.parse(["--config", list])) {
            XCTAssertTrue("\($0)".hasSuffix("expected a mapping of flag names to values"), "\($0)")
        }
        let typo = try write("num-layer: 2\n")
        XCTAssertThrowsError(try MegatronArgumentParser.parse(["--config", typo])) {
            XCTAssertTrue("\($0)".hasPrefix("unknown flag --num-layer; did you mean --num-layers"), "\($0)")
        }
    }
}
