import Foundation

/// Reading and writing numpy `.npy` files (format 1.0, C order, little-endian integers): the cache
/// files of Megatron's dataset indices.
public enum NPYFile {
    /// An integer array as stored: its numpy type string (`<i4`, `<u4`, `<i8`, `<i2`), shape and values.
    public struct Array: Equatable, Sendable {
        public var descr: String
        public var shape: [Int]
        public var values: [Int64]

        public init(descr: String, shape: [Int], values: [Int64]) {
            self.descr = descr
            self.shape = shape
            self.values = values
        }
    }

    static let itemSizes: [String: Int] = ["<i2": 2, "<i4": 4, "<u4": 4, "<i8": 8, "|i1": 1, "|u1": 1, "<u2": 2]

    /// Writes `array` as numpy's `numpy.save` does (header padded with spaces to a 64-byte boundary).
    public static func write(_ array: Array, to path: String) throws {
        guard let size = itemSizes[array.descr] else { throw DatasetError("\(path): unsupported npy dtype \(array.descr)") }
        let shape = array.shape.count == 1 ? "(\(array.shape[0]),)" : "(" + array.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(array.descr)', 'fortran_order': False, 'shape': \(shape), }"
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93] + Swift.Array("NUMPY".utf8) + [1, 0]
        let length = UInt16(header.utf8.count)
        bytes += [UInt8(length & 0xFF), UInt8(length >> 8)]
        bytes += Swift.Array(header.utf8)
        bytes.reserveCapacity(bytes.count + size * array.values.count)
        for value in array.values {
            for b in 0..<size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * Int64(b)))) }
        }
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw DatasetError("cannot write \(path)")
        }
    }

    /// Reads an integer `.npy` file written by numpy or by `write`; anything else (another format, a
    /// truncated file, a shape the bytes do not hold) is an error naming the file.
    public static func read(_ path: String) throws -> Array {
        let file = try MappedFile(path: path)
        let raw = file.bytes
        guard raw.count >= 10, raw[0] == 0x93, Swift.Array(raw[1..<6]) == Swift.Array("NUMPY".utf8) else {
            throw DatasetError("\(path): not a .npy file")
        }
        let major = raw[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(raw[8]) | Int(raw[9]) << 8
            headerStart = 10
        case 2, 3:
            guard raw.count >= 12 else { throw DatasetError("\(path): truncated .npy header") }
            headerLength = (0..<4).reduce(0) { $0 | Int(raw[8 + $1]) << (8 * $1) }
            headerStart = 12
        default:
            throw DatasetError("\(path): unsupported .npy format version \(major)")
        }
        guard raw.count >= headerStart + headerLength else { throw DatasetError("\(path): truncated .npy header") }
        let header = String(decoding: raw[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard let descr = field("descr", in: header), let size = itemSizes[descr] else {
            throw DatasetError("\(path): unsupported .npy dtype in header \(header)")
        }
        guard header.contains("'fortran_order': False") else { throw DatasetError("\(path): Fortran-ordered .npy is not supported") }
        let shape = try parseShape(header, path: path)
        let dataStart = headerStart + headerLength
        let dataBytes = raw.count - dataStart
        guard let count = boundedElementCount(shape, atMost: dataBytes) else {
            throw DatasetError("\(path): shape \(shape) of \(descr) does not fit the file's \(dataBytes) data bytes")
        }
        guard dataBytes == count * size else {
            throw DatasetError("\(path): holds \(dataBytes) data bytes, shape \(shape) of \(descr) needs \(count * size)")
        }
        let values: [Int64] = (0..<count).map { i in
            let at = dataStart + i * size
            switch descr {
            case "<i2": return Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int16.self)))
            case "<u2": return Int64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
            case "<i4": return Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int32.self)))
            case "<u4": return Int64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
            case "|i1": return Int64(Int8(bitPattern: raw[at]))
            case "|u1": return Int64(raw[at])
            default: return Int64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int64.self))
            }
        }
        return Array(descr: descr, shape: shape, values: values)
    }

    private static func field(_ name: String, in header: String) -> String? {
        guard let range = header.range(of: "'\(name)': '") else { return nil }
        let rest = header[range.upperBound...]
        guard let end = rest.firstIndex(of: "'") else { return nil }
        return String(rest[..<end])
    }

    private static func parseShape(_ header: String, path: String) throws -> [Int] {
        guard let range = header.range(of: "'shape': ("), let end = header[range.upperBound...].firstIndex(of: ")") else {
            throw DatasetError("\(path): no shape in .npy header")
        }
        return try header[range.upperBound..<end].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.map {
                guard let n = Int($0) else { throw DatasetError("\(path): bad shape in .npy header") }
                return n
            }
    }
}
