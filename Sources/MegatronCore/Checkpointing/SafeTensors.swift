import Foundation
import MegatronTensor

/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header naming
/// each tensor's dtype, shape and byte range, then the raw little-endian data.
///
/// Reading maps the file; the tensors returned are views of the mapping, so nothing is copied until used.
///
/// ```swift
/// try SafeTensors.write(["w": weight], to: url, metadata: ["format": "pt"])
/// let file = try SafeTensors.read(url)
/// let w = file.tensors["w"]!
/// ```
public enum SafeTensors {
    /// A file's tensors and its `__metadata__` strings.
    public struct File {
        public var tensors: [String: Tensor]
        public var metadata: [String: String]
    }

    static let dtypeCodes: [(DType, String)] = [
        (.float32, "F32"), (.bfloat16, "BF16"), (.float16, "F16"), (.float8E4M3, "F8_E4M3"),
        (.float8E5M2, "F8_E5M2"), (.int32, "I32"), (.int64, "I64"), (.bool, "BOOL"),
    ]

    public static func read(_ url: URL) throws -> File {
        let mapping = try MappedFile(url)
        let bytes = mapping.bytes
        func fail(_ why: String) -> CheckpointError { CheckpointError("\(url.path): \(why)") }
        guard bytes.count >= 8 else { throw fail("file of \(bytes.count) bytes is too short for a safetensors header") }
        let headerLength = Int(UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self)))
        guard headerLength <= bytes.count - 8 else { throw fail("header length \(headerLength) exceeds the file size \(bytes.count)") }
        let headerData = Data(bytes[8..<(8 + headerLength)])
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        let storage = mapping.storage
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let entry = value as? [String: Any], let code = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2
            else { throw fail("entry '\(name)' lacks dtype, shape or data_offsets") }
            guard let dtype = dtypeCodes.first(where: { $0.1 == code })?.0 else {
                throw fail("tensor '\(name)' has dtype \(code), which this build does not read")
            }
            let (begin, end) = (offsets[0], offsets[1])
            let expected = Shape.elementCount(shape) * dtype.byteSize
            guard begin >= 0, end - begin == expected, dataStart + end <= bytes.count else {
                throw fail("tensor '\(name)' claims bytes \(begin)..<\(end) but shape \(shape) of \(code) needs \(expected) within \(bytes.count - dataStart)")
            }
            if (dataStart + begin) % dtype.byteSize == 0 {
                tensors[name] = Tensor(storage: storage, shape: shape, strides: Shape.contiguousStrides(shape),
                                       offset: (dataStart + begin) / dtype.byteSize, dtype: dtype)
            } else {
                // Misaligned data cannot be viewed in place: copy it out.
                let copy = Tensor(zeros: shape, dtype: dtype)
                copy.pointer(as: UInt8.self).update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + dataStart + begin,
                                                    count: expected)
                tensors[name] = copy
            }
        }
        return File(tensors: tensors, metadata: metadata)
    }

    /// Writes `tensors` to `url` through a temporary file renamed into place. Wider elements come first (then
    /// by name), as the reference writer orders them, so every tensor is aligned to its element size.
    public static func write(_ tensors: [String: Tensor], to url: URL, metadata: [String: String] = [:]) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted {
            let (a, b) = (tensors[$0]!.dtype.byteSize, tensors[$1]!.dtype.byteSize)
            return a != b ? a > b : $0 < $1
        }
        for name in names {
            let t = tensors[name]!
            guard let code = dtypeCodes.first(where: { $0.0 == t.dtype })?.1 else {
                throw CheckpointError("tensor '\(name)' has dtype \(t.dtype), which safetensors cannot hold")
            }
            let size = t.count * t.dtype.byteSize
            header[name] = ["dtype": code, "shape": t.shape, "data_offsets": [offset, offset + size]] as [String: Any]
            offset += size
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names {
            let t = tensors[name]!.contiguous()
            out.append(contentsOf: UnsafeRawBufferPointer(start: t.pointer(as: UInt8.self), count: t.count * t.dtype.byteSize))
        }
        try AtomicFile.write(out, to: url)
    }
}

/// A read-only memory mapping whose lifetime a `Storage` carries.
struct MappedFile {
    let storage: Storage
    let bytes: UnsafeRawBufferPointer

    init(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw CheckpointError("\(url.path): cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw CheckpointError("\(url.path): cannot stat") }
        let size = Int(info.st_size)
        guard size > 0 else { throw CheckpointError("\(url.path): file is empty") }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw CheckpointError("\(url.path): cannot map (\(String(cString: strerror(errno))))")
        }
        storage = Storage(pointer: base, byteCount: size, device: .cpu) { munmap($0, size) }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }
}

/// A checkpoint that cannot be read or written, with the file and the reason.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
