import Foundation
@testable import MegatronCore
import MegatronTensor
import XCTest

/// The pickle and torch.save reader/writer against files written by real torch
/// (scripts/fixtures/make_torch_save_fixtures.py).
final class TorchSaveTests: XCTestCase {
    static func fixture(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/torch_save/\(name)")
    }

    func floats(_ t: Tensor?) -> [Float] {
        guard let t else { return [] }
        let f = t.cast(to: .float32).madeContiguous()
        return Array(UnsafeBufferPointer(start: f.pointer(as: Float.self), count: f.count))
    }

    func testReadsTensorsAndValuesTorchWrote() throws {
        let url = Self.fixture("values.pt")
        let v = try TorchSave.read(Data(contentsOf: url), source: url.path)
        let base = (0..<12).map { Float($0) / 8 - 0.5 }
        XCTAssertEqual(v["f32"]?.tensorValue?.shape, [3, 4])
        XCTAssertEqual(floats(v["f32"]?.tensorValue), base)
        XCTAssertEqual(v["transposed"]?.tensorValue?.shape, [4, 3])
        XCTAssertEqual(floats(v["transposed"]?.tensorValue), (0..<12).map { base[($0 % 3) * 4 + $0 / 3] })
        XCTAssertEqual(floats(v["row"]?.tensorValue), Array(base[4..<8]))
        XCTAssertEqual(v["bf16"]?.tensorValue?.dtype, .bfloat16)
        XCTAssertEqual(floats(v["bf16"]?.tensorValue)[0...1], [1.5, -2.25])
        XCTAssertEqual(v["f16"]?.tensorValue?.shape, [1, 2])
        XCTAssertEqual(floats(v["f16"]?.tensorValue), [0.5, -1.0])
        let ints = try XCTUnwrap(v["i64"]?.tensorValue)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: ints.pointer(as: Int64.self), count: 3)), [1, -2, 1 << 40])
        XCTAssertEqual(v["scalar"]?.tensorValue?.shape, [])
        XCTAssertEqual(floats(v["scalar"]?.tensorValue), [7.5])
        let plain = try XCTUnwrap(v["plain"]?.elements)
        XCTAssertEqual(plain[0].intValue, 1)
        XCTAssertEqual(plain[1].doubleValue, 2.5)
        XCTAssertEqual(plain[2].stringValue, "text")
        XCTAssertTrue(plain[3].isNone)
        XCTAssertEqual(plain[4].boolValue, true)
        XCTAssertEqual(plain[5].boolValue, false)
        XCTAssertEqual(plain[6].intArray, [3, 4])
        XCTAssertEqual(plain[7...].map(\.intValue), [-5, 1 << 40, 300, 70000])
        XCTAssertEqual(v["ordered"]?.pairs?.map { $0.key.stringValue ?? "" }, ["b", "a"])
        guard case .bytes(let bytes)? = v["bytes"] else { return XCTFail("bytes: \(String(describing: v["bytes"]))") }
        XCTAssertEqual(bytes, [0, 255, 97, 98])
        XCTAssertEqual(v["args"]?.attribute("num_layers")?.intValue, 2)
        XCTAssertEqual(v["args"]?.attribute("name")?.stringValue, "gpt")
        XCTAssertEqual(v["args"]?.attribute("dtype").flatMap(PickleGlobals.dtype), .bfloat16)
    }

    func testRefusesAGlobalOffTheListByName() throws {
        let url = Self.fixture("refused.pt")
        XCTAssertThrowsError(try TorchSave.read(Data(contentsOf: url), source: url.path)) { error in
            XCTAssertTrue("\(error)".contains("posix.system"), "\(error)")
        }
    }

    /// torch.save pickles a tensor with Python attributes (Megatron's fp32 main copies keep their parameter's
    /// tensor-parallel markers) as `_rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, args, attributes)`: read as
    /// the tensor (here a main copy from MegatronResumeTests' bf16 fixture, which rounds to its bf16 weight). Another
    /// tensor type in that call is an error.
    func testReadsATensorWithAttributes() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/megatron/resume/bf16/adam_torch/iter_0000003/mp_rank_00/model_optim_rng.pt")
        let state = try TorchSave.read(Data(contentsOf: url), source: url.path)
        let main = try XCTUnwrap(state["optimizer"]?["fp32_from_fp16_params"]?[0]?[0]?.tensorValue)
        let weight = try XCTUnwrap(state["model"]?["embedding.word_embeddings.weight"]?.tensorValue)
        XCTAssertEqual(main.dtype, .float32)
        XCTAssertEqual(main.shape, weight.shape)
        XCTAssertEqual(floats(main.cast(to: .bfloat16)), floats(weight))
        XCTAssertNotEqual(floats(main), floats(weight))
        let subclass = PickleObject(PickleGlobals.rebuildFromType, arguments: [
            .global(PickleGlobals.rebuildTensor), .global(PickleGlobal("torch.nn.parameter", "Parameter")), .tuple([]), .dict([]),
        ])
        XCTAssertThrowsError(try TorchSave.plainTensorRebuild(subclass)) { XCTAssertTrue("\($0)".contains("_rebuild_from_type_v2"), "\($0)") }
    }

    func testWrittenArchiveReadsBackAligned() throws {
        let t = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        let value = PickleValue.stringDict([
            ("w", .tensor(t)), ("b", .tensor(t.cast(to: .bfloat16))), ("n", .int(-70000)), ("big", .int(1 << 50)),
            ("x", .float(0.25)), ("s", .string("é")), ("l", .list([.none, .bool(true), .tuple([.int(1), .int(2), .int(3), .int(4)])])),
            ("raw", .bytes([0, 200])),
            ("args", .object(PickleObject(PickleGlobals.namespace, state: .stringDict([("k", .int(3))]), isNewObject: true))),
        ])
        let data = try TorchSave.write(value)
        let zip = try StoredZip(data, source: "written")
        for entry in zip.entries where entry.name.contains("/data/") { XCTAssertEqual(entry.range.lowerBound % 64, 0) }
        let back = try TorchSave.read(data, source: "written")
        XCTAssertEqual(floats(back["w"]?.tensorValue), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(back["b"]?.tensorValue?.dtype, .bfloat16)
        XCTAssertEqual(back["n"]?.intValue, -70000)
        XCTAssertEqual(back["big"]?.intValue, 1 << 50)
        XCTAssertEqual(back["x"]?.doubleValue, 0.25)
        XCTAssertEqual(back["s"]?.stringValue, "é")
        XCTAssertEqual(back["l"]?[2]?.intArray, [1, 2, 3, 4])
        guard case .bytes(let raw)? = back["raw"] else { return XCTFail("bytes lost") }
        XCTAssertEqual(raw, [0, 200])
        XCTAssertEqual(back["args"]?.attribute("k")?.intValue, 3)
    }

    /// Past 4 GiB (an entry, an offset) or 65535 entries torch.save's zip needs ZIP64 records; with the bound
    /// lowered every entry and the directory get them, and the archive reads back whole. (Python's zipfile and
    /// torch.load read such an archive too: `MEGATRON_ZIP64_OUT=<file>` writes it for them.)
    func testZip64ArchiveReadsBack() throws {
        let t = Tensor(shape: [3, 5], values: (0..<15).map(Float.init))
        let value = PickleValue.stringDict([("w", .tensor(t)), ("n", .int(7))])
        let plain = try TorchSave.write(value)
        let wide = try TorchSave.write(value, zip64Above: 0)
        if let out = ProcessInfo.processInfo.environment["MEGATRON_ZIP64_OUT"] { try wide.write(to: URL(fileURLWithPath: out)) }
        func hasRecord(_ data: Data, _ signature: [UInt8]) -> Bool { data.range(of: Data(signature)) != nil }
        XCTAssertFalse(hasRecord(plain, [0x50, 0x4b, 0x06, 0x06]))
        XCTAssertTrue(hasRecord(wide, [0x50, 0x4b, 0x06, 0x06]), "ZIP64 end of central directory")
        XCTAssertTrue(hasRecord(wide, [0x50, 0x4b, 0x06, 0x07]), "ZIP64 locator")
        let zip = try StoredZip(wide, source: "zip64")
        XCTAssertEqual(zip.entries.map(\.name), try StoredZip(plain, source: "plain").entries.map(\.name))
        for entry in zip.entries where entry.name.contains("/data/") { XCTAssertEqual(entry.range.lowerBound % 64, 0) }
        let back = try TorchSave.read(wide, source: "zip64")
        XCTAssertEqual(floats(back["w"]?.tensorValue), (0..<15).map(Float.init))
        XCTAssertEqual(back["n"]?.intValue, 7)
        // The 65535-entry bound alone turns the directory ZIP64.
        let many = try StoredZip.write((0..<70_000).map { ("e\($0)", Data([UInt8($0 % 251)])) })
        let read = try StoredZip(many, source: "many")
        XCTAssertEqual(read.entries.count, 70_000)
        XCTAssertEqual(try read.entry(named: "e69999"), Data([UInt8(69_999 % 251)]))
    }

    func testTruncatedAndMalformedPicklesAreErrors() {
        XCTAssertThrowsError(try PickleReader.read(Data([0x80, 2, 0x4b])))          // BININT1 without its byte
        XCTAssertThrowsError(try PickleReader.read(Data([0x80, 2, 0x61, 0x2e])))    // APPEND on an empty stack
        XCTAssertThrowsError(try PickleReader.read(Data([0x80, 2, 0x68, 5, 0x2e]))) // memo entry never stored
        // A list that holds itself: ]q\0 h\0 a .
        XCTAssertThrowsError(try PickleReader.read(Data([0x80, 2, 0x5d, 0x71, 0, 0x68, 0, 0x61, 0x2e])))
        XCTAssertThrowsError(try StoredZip(Data("not a zip".utf8), source: "x"))
    }
}
