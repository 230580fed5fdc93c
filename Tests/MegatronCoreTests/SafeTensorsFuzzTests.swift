import Foundation
import XCTest
import MegatronTensor
@testable import MegatronCore

/// Fuzz test of the safetensors reader: thousands of crafted headers (shapes, offsets, dtypes, lengths drawn
/// from the edges of each integer width) and damaged files from a fixed seed. Each must be refused with a
/// `CheckpointError` or read into tensors whose every byte lies in the file; a trap fails the run.
final class SafeTensorsFuzzTests: XCTestCase {
    /// Philox counter-mode draws from a fixed key.
    private struct Draws {
        var counter: UInt32 = 0
        mutating func below(_ n: Int) -> Int {
            counter += 1
            let r = Philox.block(counter: (counter, 0, 0, 0), key: (0x5AFE, 0x7E45))
            return Int((UInt64(r.0) << 32 | UInt64(r.1)) % UInt64(max(n, 1)))
        }
        mutating func pick<T>(_ choices: [T]) -> T { choices[below(choices.count)] }
    }

    private static let edgeInts: [Any] = [0, 1, 2, 3, 4, 8, 16, 24, -1, -8, Int.max, Int.min, Int(Int32.max), 1 << 31, 1 << 32,
                                          4_611_686_018_427_387_904, 1.5, 1e300, "8", NSNull()]

    /// A header of one to three entries, each valid or with one field replaced by an edge value, and the data
    /// size the valid entries tile.
    private func craftedHeader(_ draws: inout Draws) -> (header: [String: Any], dataBytes: Int) {
        var header: [String: Any] = [:]
        var offset = 0
        for index in 0..<(1 + draws.below(3)) {
            let dtype = draws.pick(["F32", "BF16", "I64", "BOOL", "F8_E4M3"])
            let size = ["F32": 4, "BF16": 2, "I64": 8, "BOOL": 1, "F8_E4M3": 1][dtype]!
            let count = draws.below(5)
            var entry: [String: Any] = ["dtype": dtype, "shape": [count], "data_offsets": [offset, offset + count * size]]
            offset += count * size
            switch draws.below(6) {
            case 0: entry["shape"] = (0..<draws.below(4)).map { _ in draws.pick(Self.edgeInts) }
            case 1: entry["data_offsets"] = (0..<(1 + draws.below(3))).map { _ in draws.pick(Self.edgeInts) }
            case 2: entry["dtype"] = draws.pick(["F64", "U8", "", "f32", 7] as [Any])
            case 3: entry.removeValue(forKey: draws.pick(["dtype", "shape", "data_offsets"]))
            default: break
            }
            header["t\(index)"] = draws.below(10) == 0 ? draws.pick(Self.edgeInts) : entry
        }
        if draws.below(8) == 0 { header["__metadata__"] = draws.pick([["format": "pt"], ["n": 1], "pt"] as [Any]) }
        return (header, offset)
    }

    private func file(_ draws: inout Draws) throws -> [UInt8] {
        let (header, validBytes) = craftedHeader(&draws)
        var json = Array(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        json += Array(repeating: 0x20, count: draws.below(8))
        let dataBytes = draws.below(4) == 0 ? draws.below(80) : validBytes
        var length = UInt64(json.count)
        if draws.below(6) == 0 { length = UInt64(bitPattern: Int64(draws.pick([-1, 0, 7, json.count + 1, Int.max, 100_000_001]))) }
        var bytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) } + json
        bytes += (0..<dataBytes).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        switch draws.below(5) {
        case 0: bytes.removeLast(draws.below(bytes.count + 1))
        case 1: bytes[draws.below(bytes.count)] ^= UInt8(1 << draws.below(8))
        default: break
        }
        return bytes
    }

    func testReaderRefusesOrReadsCraftedFiles() throws {
        // In memory where there is /dev/shm: on a disk, thousands of small writes wait seconds.
        let memory = FileManager.default.fileExists(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm") : nil
        let directory = (memory ?? FileManager.default.temporaryDirectory).appendingPathComponent("st-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("f.safetensors")
        var draws = Draws()
        var read = 0
        for round in 0..<3000 {
            let bytes = try file(&draws)
            // Plain stdio, no fsync: thousands of cases.
            let handle = try XCTUnwrap(fopen(url.path, "wb"))
            fwrite(bytes, 1, bytes.count, handle)
            fclose(handle)
            do {
                let file = try SafeTensors.read(url)
                for (name, t) in file.tensors {
                    let raw = UnsafeRawBufferPointer(start: t.pointer(as: UInt8.self), count: t.count * t.dtype.byteSize)
                    XCTAssertGreaterThanOrEqual(raw.reduce(0) { $0 &+ Int($1) }, 0, "round \(round) \(name)")
                }
                read += 1
            } catch is CheckpointError {
                continue
            } catch {
                XCTFail("round \(round): \(type(of: error)) instead of a CheckpointError: \(error)")
            }
        }
        XCTAssertGreaterThan(read, 100, "some crafted files are valid")
        XCTAssertLessThan(read, 2900, "most are refused")
    }
}
