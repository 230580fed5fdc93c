import Foundation
import XCTest
import MegatronTensor
@testable import MegatronCore

final class SafeTensorsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

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
}
