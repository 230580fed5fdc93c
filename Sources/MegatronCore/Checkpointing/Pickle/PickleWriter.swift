import Foundation
import MegatronTensor

/// Writes `PickleValue`s as a protocol 2 pickle (what `torch.save` writes and what `pickle.load`,
/// `torch.load(weights_only=True)` and PyTorch DCP read). No memo: every value is written where it occurs.
/// `bytes` are written as protocol 2 spells them, `_codecs.encode(text, 'latin1')`.
///
/// ```swift
/// let data = try PickleWriter.write(.stringDict([("iteration", .int(7))]))
/// ```
public struct PickleWriter {
    private(set) var out: [UInt8] = [0x80, 2]
    /// How a `.tensor` is written (torch.save turns it into a rebuild call over a persistent storage id).
    let tensor: (Tensor) throws -> PickleValue

    /// `value` pickled; `tensor` replaces each tensor by the value to write in its place.
    public static func write(_ value: PickleValue,
                             tensor: @escaping (Tensor) throws -> PickleValue = { _ in throw PickleError("a tensor outside torch.save") })
        throws -> Data {
        var writer = PickleWriter(tensor: tensor)
        try writer.emit(value)
        writer.out.append(0x2e)  // STOP
        return Data(writer.out)
    }

    mutating func emit(_ value: PickleValue) throws {
        switch value {
        case .none: out.append(0x4e)
        case .bool(let b): out.append(b ? 0x88 : 0x89)
        case .int(let v): emitInt(v)
        case .float(let v): out.append(0x47); out += withUnsafeBytes(of: v.bitPattern.bigEndian, Array.init)
        case .string(let s): emitString(s)
        case .bytes(let b):
            try emit(.object(PickleObject(PickleGlobals.codecsEncode,
                                          arguments: [.string(String(decoding: b.map { UInt16($0) }, as: UTF16.self)), .string("latin1")])))
        case .tuple(let items): try emitTuple(items)
        case .list(let items):
            out.append(0x5d)
            for chunk in stride(from: 0, to: items.count, by: 1000) {
                out.append(0x28)
                for item in items[chunk..<min(chunk + 1000, items.count)] { try emit(item) }
                out.append(0x65)  // APPENDS
            }
        case .dict(let pairs):
            out.append(0x7d)
            for chunk in stride(from: 0, to: pairs.count, by: 1000) {
                out.append(0x28)
                for pair in pairs[chunk..<min(chunk + 1000, pairs.count)] { try emit(pair.key); try emit(pair.value) }
                out.append(0x75)  // SETITEMS
            }
        case .global(let g): emitGlobal(g)
        case .object(let o):
            emitGlobal(o.callable)
            try emitTuple(o.arguments)
            out.append(o.isNewObject ? 0x81 : 0x52)
            if let state = o.state {
                try emit(state)
                out.append(0x62)  // BUILD
            }
        case .persistent(let id):
            try emit(id)
            out.append(0x51)  // BINPERSID
        case .tensor(let t): try emit(try tensor(t))
        }
    }

    private mutating func emitInt(_ v: Int) {
        switch v {
        case 0..<256: out += [0x4b, UInt8(v)]
        case 256..<65536: out += [0x4d, UInt8(v & 0xff), UInt8(v >> 8)]
        case Int(Int32.min)...Int(Int32.max): out.append(0x4a); out += withUnsafeBytes(of: Int32(v).littleEndian, Array.init)
        default: out += [0x8a, 8]; out += withUnsafeBytes(of: Int64(v).littleEndian, Array.init)
        }
    }

    private mutating func emitString(_ s: String) {
        let utf8 = Array(s.utf8)
        out.append(0x58)
        out += withUnsafeBytes(of: UInt32(utf8.count).littleEndian, Array.init)
        out += utf8
    }

    private mutating func emitTuple(_ items: [PickleValue]) throws {
        switch items.count {
        case 0: out.append(0x29)
        case 1...3:
            for item in items { try emit(item) }
            out.append(0x84 + UInt8(items.count))
        default:
            out.append(0x28)
            for item in items { try emit(item) }
            out.append(0x74)
        }
    }

    private mutating func emitGlobal(_ g: PickleGlobal) {
        out.append(0x63)
        out += Array("\(g.module)\n\(g.name)\n".utf8)
    }
}
