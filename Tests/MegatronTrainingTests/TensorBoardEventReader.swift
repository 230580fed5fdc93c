import Foundation
import XCTest
@testable import MegatronTraining

/// Reads back the scalars of the TensorBoard event files in a directory: TFRecord framing (both masked CRCs
/// checked) around `Event` protocol buffers, the fields TensorBoard reads (step 2, summary 5 -> value 1 ->
/// tag 1, simple_value 2). Lets tests check what TensorBoard would show without the Python package.
enum TensorBoardEventReader {
    /// Tag to its (step, value) points, in file order.
    static func scalars(in directory: URL) throws -> [String: [(step: Int, value: Float)]] {
        var out: [String: [(step: Int, value: Float)]] = [:]
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("events.out.tfevents.") }
        for file in files.sorted() {
            let bytes = [UInt8](try Data(contentsOf: directory.appendingPathComponent(file)))
            var at = 0
            while at < bytes.count {
                let length = Array(bytes[at..<(at + 8)])
                XCTAssertEqual(little32(bytes, at + 8), TensorBoardWriter.maskedCRC(length), "length CRC at \(at) of \(file)")
                let count = Int(little64(length, 0))
                let data = Array(bytes[(at + 12)..<(at + 12 + count)])
                XCTAssertEqual(little32(bytes, at + 12 + count), TensorBoardWriter.maskedCRC(data), "data CRC at \(at) of \(file)")
                at += 16 + count
                let event = fields(data)
                guard let step = event[2]?.first?.varint, let summary = event[5]?.first?.bytes else { continue }
                for value in fields(summary)[1] ?? [] {
                    let v = fields(value.bytes ?? [])
                    guard let tag = v[1]?.first?.bytes, let scalar = v[2]?.first?.fixed32 else { continue }
                    out[String(decoding: tag, as: UTF8.self), default: []].append((Int(step), Float(bitPattern: scalar)))
                }
            }
        }
        return out
    }

    /// One protocol-buffer field's payload.
    struct Field {
        var varint: UInt64?
        var fixed32: UInt32?
        var bytes: [UInt8]?
    }

    /// Field number to its occurrences.
    static func fields(_ message: [UInt8]) -> [Int: [Field]] {
        var out: [Int: [Field]] = [:]
        var i = 0
        func varint() -> UInt64 {
            var value: UInt64 = 0, shift: UInt64 = 0
            while true {
                let b = message[i]
                i += 1
                value |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return value }
                shift += 7
            }
        }
        while i < message.count {
            let key = varint()
            var field = Field()
            switch key & 7 {
            case 0: field.varint = varint()
            case 1: i += 8
            case 2:
                let n = Int(varint())
                field.bytes = Array(message[i..<(i + n)])
                i += n
            case 5:
                field.fixed32 = little32(message, i)
                i += 4
            default: return out
            }
            out[Int(key >> 3), default: []].append(field)
        }
        return out
    }

    private static func little32(_ b: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
    }

    private static func little64(_ b: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
    }
}
