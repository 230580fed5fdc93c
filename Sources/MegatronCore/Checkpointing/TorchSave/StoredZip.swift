import Foundation

/// The uncompressed ("stored") ZIP archives `torch.save` writes: entries read through the central directory
/// (ZIP64 included), written with each entry's data aligned to 64 bytes as torch aligns them.
///
/// ```swift
/// let zip = try StoredZip(Data(contentsOf: url), source: url.path)
/// let pickle = try zip.entry(named: "archive/data.pkl")
/// ```
public struct StoredZip {
    /// Entry names and where their data lies in `data`.
    public private(set) var entries: [(name: String, range: Range<Int>, crc32: UInt32)] = []
    let data: Data
    let source: String

    /// Reads the directory of the archive `data` (indices from 0); `source` names it in errors.
    public init(_ data: Data, source: String) throws {
        self.data = data.startIndex == 0 ? data : Data(data)
        self.source = source
        try readDirectory()
    }

    func fail(_ why: String) -> CheckpointError { CheckpointError("\(source): not a torch.save archive: \(why)") }

    func uint(_ at: Int, _ n: Int) throws -> Int {
        guard at >= 0, at + n <= data.count else { throw fail("a record at byte \(at) runs past the end") }
        var v: UInt64 = 0
        for i in (0..<n).reversed() { v = v << 8 | UInt64(data[at + i]) }
        guard v <= UInt64(Int.max) else { throw fail("a size beyond 63 bits") }
        return Int(v)
    }

    private mutating func readDirectory() throws {
        let tail = max(0, data.count - 65_557)
        guard let end = stride(from: data.count - 22, through: tail, by: -1).first(where: { (try? uint($0, 4)) == 0x0605_4b50 }) else {
            throw fail("no end-of-central-directory record")
        }
        var (count, offset) = (try uint(end + 10, 2), try uint(end + 16, 4))
        if count == 0xFFFF || offset == 0xFFFF_FFFF {
            guard end >= 20, try uint(end - 20, 4) == 0x0706_4b50 else { throw fail("ZIP64 fields without a ZIP64 locator") }
            let record = try uint(end - 12, 8)
            guard try uint(record, 4) == 0x0606_4b50 else { throw fail("no ZIP64 end-of-central-directory record") }
            (count, offset) = (try uint(record + 32, 8), try uint(record + 48, 8))
        }
        var at = offset
        for _ in 0..<count {
            guard try uint(at, 4) == 0x0201_4b50 else { throw fail("a central directory entry at byte \(at) is malformed") }
            let (method, nameLength, extraLength, commentLength) = (try uint(at + 10, 2), try uint(at + 28, 2), try uint(at + 30, 2), try uint(at + 32, 2))
            var (size, local) = (try uint(at + 20, 4), try uint(at + 42, 4))
            guard at + 46 + nameLength <= data.count else { throw fail("an entry name runs past the end") }
            let name = String(decoding: data[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
            guard method == 0 else { throw fail("\(name) is compressed (method \(method)); torch.save stores entries uncompressed") }
            (size, local) = try zip64(extra: at + 46 + nameLength, length: extraLength, size: size, uncompressed: try uint(at + 24, 4), local: local)
            guard try uint(local, 4) == 0x0403_4b50 else { throw fail("\(name)'s local header is missing") }
            let start = local + 30 + (try uint(local + 26, 2)) + (try uint(local + 28, 2))
            guard start + size <= data.count else { throw fail("\(name)'s data runs past the end") }
            entries.append((name, start..<(start + size), UInt32(try uint(at + 16, 4))))
            at += 46 + nameLength + extraLength + commentLength
        }
    }

    /// Sizes and offset from a ZIP64 extra field where the 32-bit fields hold 0xFFFFFFFF.
    private func zip64(extra: Int, length: Int, size: Int, uncompressed: Int, local: Int) throws -> (Int, Int) {
        guard size == 0xFFFF_FFFF || uncompressed == 0xFFFF_FFFF || local == 0xFFFF_FFFF else { return (size, local) }
        var at = extra
        while at + 4 <= extra + length {
            let (id, fieldLength) = (try uint(at, 2), try uint(at + 2, 2))
            if id == 1 {
                var field = at + 4
                func next(_ v: Int) throws -> Int {
                    guard v == 0xFFFF_FFFF else { return v }
                    defer { field += 8 }
                    return try uint(field, 8)
                }
                _ = try next(uncompressed)
                let realSize = try next(size)
                return (realSize, try next(local))
            }
            at += 4 + fieldLength
        }
        throw fail("ZIP64 sizes without a ZIP64 extra field")
    }

    /// The bytes of the entry called `name`, checked against their CRC-32.
    public func entry(named name: String) throws -> Data {
        guard let bytes = try entryIfPresent(name) else { throw fail("no entry \(name)") }
        return bytes
    }

    /// The bytes of the entry called `name` (checked against their CRC-32), or nil.
    public func entryIfPresent(_ name: String) throws -> Data? {
        guard let e = entries.first(where: { $0.name == name }) else { return nil }
        let bytes = data[e.range]
        guard CRC32.checksum(bytes) == e.crc32 else {
            throw CheckpointError("\(source): \(name) does not match its CRC-32; the file is corrupt")
        }
        return bytes
    }

    /// An archive of `entries` (name, bytes), stored, each entry's data aligned to 64 bytes from the archive's start.
    /// An entry of `zip64Above` bytes or more, or lying that far in, gets ZIP64 sizes and offset (as torch writes
    /// them); so does the directory when it lies that far in or has 65535 entries or more. (Tests lower the bound
    /// to write ZIP64 without gigabytes.)
    public static func write(_ entries: [(String, Data)], zip64Above limit: Int = 0xFFFF_FFFF) throws -> Data {
        var out = Data()
        var central = Data()
        for (name, content) in entries {
            let nameBytes = Array(name.utf8)
            let offset = out.count
            let wide = content.count >= limit || offset >= limit
            let localExtra = wide ? 20 : 0
            let padding = (64 - (offset + 30 + nameBytes.count + localExtra + 4) % 64) % 64
            let crc = CRC32.checksum(content)
            let size = wide ? 0xFFFF_FFFF : content.count
            var header = Data()
            header.append(le: 0x0403_4b50, 4); header.append(le: wide ? 45 : 20, 2); header.append(le: 0, 2); header.append(le: 0, 2)
            header.append(le: 0, 4)  // time, date
            header.append(le: Int(crc), 4); header.append(le: size, 4); header.append(le: size, 4)
            header.append(le: nameBytes.count, 2); header.append(le: localExtra + 4 + padding, 2)
            header.append(contentsOf: nameBytes)
            if wide { header.append(le: 1, 2); header.append(le: 16, 2); header.append(le: content.count, 8); header.append(le: content.count, 8) }
            header.append(le: 0x4246, 2); header.append(le: padding, 2)  // torch's padding field "FB"
            header.append(Data(repeating: 0x5a, count: padding))
            out.append(header)
            out.append(content)
            central.append(le: 0x0201_4b50, 4); central.append(le: wide ? 45 : 20, 2); central.append(le: wide ? 45 : 20, 2)
            central.append(le: 0, 2); central.append(le: 0, 2); central.append(le: 0, 4)
            central.append(le: Int(crc), 4); central.append(le: size, 4); central.append(le: size, 4)
            central.append(le: nameBytes.count, 2); central.append(le: wide ? 28 : 0, 2); central.append(le: 0, 2); central.append(le: 0, 2)
            central.append(le: 0, 2); central.append(le: 0, 4); central.append(le: wide ? 0xFFFF_FFFF : offset, 4)
            central.append(contentsOf: nameBytes)
            if wide {
                central.append(le: 1, 2); central.append(le: 24, 2)
                central.append(le: content.count, 8); central.append(le: content.count, 8); central.append(le: offset, 8)
            }
        }
        let directoryOffset = out.count
        out.append(central)
        let wide = entries.count >= min(limit, 0xFFFF) || directoryOffset >= limit || central.count >= limit
        if wide {
            let record = out.count
            out.append(le: 0x0606_4b50, 4); out.append(le: 44, 8); out.append(le: 45, 2); out.append(le: 45, 2)
            out.append(le: 0, 4); out.append(le: 0, 4); out.append(le: entries.count, 8); out.append(le: entries.count, 8)
            out.append(le: central.count, 8); out.append(le: directoryOffset, 8)
            out.append(le: 0x0706_4b50, 4); out.append(le: 0, 4); out.append(le: record, 8); out.append(le: 1, 4)
        }
        let count = wide ? 0xFFFF : entries.count
        out.append(le: 0x0605_4b50, 4); out.append(le: 0, 2); out.append(le: 0, 2)
        out.append(le: count, 2); out.append(le: count, 2)
        out.append(le: wide ? 0xFFFF_FFFF : central.count, 4); out.append(le: wide ? 0xFFFF_FFFF : directoryOffset, 4); out.append(le: 0, 2)
        return out
    }
}

extension Data {
    /// Appends the low `bytes` bytes of `value`, little-endian.
    mutating func append(le value: Int, _ bytes: Int) {
        for i in 0..<bytes { append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }
}

/// CRC-32 (the ZIP / zlib polynomial).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        return c
    }

    static func checksum(_ data: Data) -> UInt32 {
        data.withUnsafeBytes { bytes in
            var crc: UInt32 = 0xFFFF_FFFF
            for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
            return crc ^ 0xFFFF_FFFF
        }
    }
}
