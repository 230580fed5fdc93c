import Foundation
import XCTest
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

final class SafeTensorsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try scratchDirectory("st") }

    func testRoundTripOfEveryDType() throws {
        let url = directory.appendingPathComponent("t.safetensors")
        let values: [Float] = [1.5, -2, 0.25, 3]
        let tensors: [String: Tensor] = [
            "a.f32": Tensor(shape: [2, 2], values: values),
            "b.bf16": Tensor(shape: [4], values: values, dtype: .bfloat16),
            "c.f16": Tensor(shape: [1, 4], values: values, dtype: .float16),
            "d.e4m3": Tensor(shape: [4], values: values, dtype: .float8E4M3),
            "e.i64": Tensor(shape: [3], ints: [7, -1, 1 << 40]),
            "f.i32": Tensor(shape: [2], ints: [5, 6], dtype: .int32),
            "g.t": Tensor(shape: [2, 2], values: values).transposed(0, 1),
        ]
        try SafeTensors.write(tensors, to: url, metadata: ["format": "pt"])
        let file = try SafeTensors.read(url)
        XCTAssertEqual(file.metadata, ["format": "pt"])
        XCTAssertEqual(Set(file.tensors.keys), Set(tensors.keys))
        for (name, t) in tensors {
            XCTAssertEqual(file.tensors[name]!.dtype, t.dtype, name)
            XCTAssertEqual(file.tensors[name]!.shape, t.shape, name)
            XCTAssertEqual(file.tensors[name]!.floats(), t.floats(), name)
        }
        let raw = try Data(contentsOf: url)
        let headerLength = raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual((8 + Int(headerLength)) % 8, 0, "data starts 8-byte aligned")
    }

    func testCorruptFilesGiveErrorsNamingTheProblem() throws {
        let url = directory.appendingPathComponent("bad.safetensors")
        try SafeTensors.write(["w": Tensor.ones([4, 4])], to: url)
        let full = try Data(contentsOf: url)
        try full.prefix(full.count - 5).write(to: url)
        XCTAssertThrowsError(try SafeTensors.read(url)) { XCTAssertTrue("\($0)".contains("tensor 'w' claims bytes"), "\($0)") }
        try Data([1, 2, 3]).write(to: url)
        XCTAssertThrowsError(try SafeTensors.read(url)) { XCTAssertTrue("\($0)".contains("too short"), "\($0)") }
        var huge = Data()
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { huge.append(contentsOf: $0) }
        try huge.write(to: url)
        XCTAssertThrowsError(try SafeTensors.read(url)) { XCTAssertTrue("\($0)".contains("exceeds the file size"), "\($0)") }
        XCTAssertThrowsError(try SafeTensors.read(directory.appendingPathComponent("missing"))) {
            XCTAssertTrue("\($0)".contains("cannot open"), "\($0)")
        }
    }

    /// A file of `header` (JSON text) and `data` bytes, as a crafted file would be laid out.
    private func crafted(_ header: String, data: Int = 16, declaredLength: UInt64? = nil) throws -> URL {
        let url = directory.appendingPathComponent("crafted.safetensors")
        var bytes = Data()
        withUnsafeBytes(of: (declaredLength ?? UInt64(header.utf8.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(Data(header.utf8))
        bytes.append(Data(count: data))
        try bytes.write(to: url)
        return url
    }

    private func assertRefused(_ url: URL, _ text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors.read(url), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(text) && "\(error)".contains(url.path), "\(error) should say \(text)", file: file, line: line)
        }
    }

    /// Crafted headers are refused before anything is allocated for them, never trapped on or read past.
    func testCraftedHeadersAreRefused() throws {
        let w = #""w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}"#
        XCTAssertEqual(try SafeTensors.read(try crafted("{" + w + "}")).tensors["w"]?.shape, [2, 2])
        assertRefused(try crafted("{" + w + "}", declaredLength: UInt64.max), "exceeds the file size")
        assertRefused(try crafted("{" + w + "}", declaredLength: 1 << 63), "exceeds the file size")
        assertRefused(try crafted("not json"), "header is not a JSON object")
        assertRefused(try crafted("[1, 2]"), "header is not a JSON object")
        assertRefused(try crafted(#"{"w": 5}"#), "entry 'w' lacks dtype")
        assertRefused(try crafted(#"{"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}}"#), "dtype F64")
        assertRefused(try crafted(#"{"w": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}}"#), "shape [-2, -2]")
        assertRefused(try crafted(#"{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 16]}}"#),
                      "cannot hold")
        assertRefused(try crafted(#"{"w": {"dtype": "F32", "shape": [0, 9223372036854775807], "data_offsets": [0, 0]}}"#),
                      "cover 0 of the 16")
        assertRefused(try crafted(#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [-9223372036854775808, 8]}}"#),
                      "claims bytes")
        assertRefused(try crafted(#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 9223372036854775807]}}"#),
                      "claims bytes")
        assertRefused(try crafted(#"{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}"#), "needs 16")
        assertRefused(try crafted(#"{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}}"#), "claims bytes 8..<24")
        assertRefused(try crafted(#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}, "#
            + #""b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}"#), "overlaps")
        assertRefused(try crafted(#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "#
            + #""b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}"#), "leaves a gap")
        assertRefused(try crafted(#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#), "cover 8 of the 16")
        assertRefused(try crafted(#"{"__metadata__": {"format": 1}, "# + w + "}"), "__metadata__ must map strings")
    }
}
