import Foundation
import MegatronData
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

    /// The reference reader's limit on the JSON header (100 MB): a length field beyond it is damage, not a model.
    static let maxHeaderBytes = 100_000_000

    /// Reads `url`, refusing anything the reference reader refuses (before allocating for it): a header
    /// length beyond the file or 100 MB, a header that is not a JSON object of entries, an unknown dtype,
    /// negative dimensions, byte ranges that do not match shape x dtype size, overlap, leave gaps or run
    /// past the file.
    public static func read(_ url: URL) throws -> File {
        let mapping = try MappedFile(url)
        let bytes = mapping.bytes
        func fail(_ why: String) -> CheckpointError { CheckpointError("\(url.path): \(why)") }
        guard bytes.count >= 8 else { throw fail("file of \(bytes.count) bytes is too short for a safetensors header") }
        let declaredLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard declaredLength <= UInt64(bytes.count - 8) else {
            throw fail("header length \(declaredLength) exceeds the file size \(bytes.count)")
        }
        guard declaredLength <= UInt64(maxHeaderBytes) else {
            throw fail("header length \(declaredLength) is above the format's limit of \(maxHeaderBytes) bytes")
        }
        let headerLength = Int(declaredLength)
        let headerData = Data(bytes[8..<(8 + headerLength)])
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let strings = value as? [String: String] else { throw fail("__metadata__ must map strings to strings") }
                metadata = strings
            } else {
                entries.append(try Entry(name: name, value: value, dataBytes: bytes.count - dataStart, fail: fail))
            }
        }
        try Entry.checkLayout(entries, dataBytes: bytes.count - dataStart, fail: fail)
        var tensors: [String: Tensor] = [:]
        for entry in entries {
            let (begin, dtype, shape) = (dataStart + entry.begin, entry.dtype, entry.shape)
            if begin % dtype.byteSize == 0 {
                tensors[entry.name] = Tensor(storage: mapping.storage, shape: shape, strides: Shape.contiguousStrides(shape),
                                             offset: begin / dtype.byteSize, dtype: dtype)
            } else {
                // Misaligned data cannot be viewed in place: copy it out.
                let copy = Tensor(zeros: shape, dtype: dtype)
                copy.pointer(as: UInt8.self).update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + begin,
                                                    count: entry.end - entry.begin)
                tensors[entry.name] = copy
            }
        }
        return File(tensors: tensors, metadata: metadata)
    }

    /// One tensor's header entry, checked against the data section's size.
    struct Entry {
        let name: String
        let dtype: DType
        let shape: [Int]
        /// Byte range in the data section.
        let begin: Int, end: Int

        init(name: String, value: Any, dataBytes: Int, fail: (String) -> CheckpointError) throws {
            guard let entry = value as? [String: Any], let code = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2
            else { throw fail("entry '\(name)' lacks dtype, shape or data_offsets") }
            guard let dtype = SafeTensors.dtypeCodes.first(where: { $0.1 == code })?.0 else {
                throw fail("tensor '\(name)' has dtype \(code), which this build does not read")
            }
            guard let elements = boundedElementCount(shape, atMost: dataBytes) else {
                throw fail("tensor '\(name)' has shape \(shape), which the file's \(dataBytes) data bytes cannot hold")
            }
            let (begin, end) = (offsets[0], offsets[1])
            let size = elements * dtype.byteSize
            guard begin >= 0, begin <= end, end <= dataBytes, end - begin == size else {
                throw fail("tensor '\(name)' claims bytes \(begin)..<\(end) but shape \(shape) of \(code) needs \(size) within \(dataBytes)")
            }
            (self.name, self.dtype, self.shape, self.begin, self.end) = (name, dtype, shape, begin, end)
        }

        /// The reference reader's rule: the tensors tile the data section, in offset order, without gaps.
        static func checkLayout(_ entries: [Entry], dataBytes: Int, fail: (String) -> CheckpointError) throws {
            var position = 0
            for entry in entries.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
                guard entry.begin == position else {
                    let problem = entry.begin < position ? "overlaps the tensor before it" : "leaves a gap before it"
                    throw fail("tensor '\(entry.name)' at bytes \(entry.begin)..<\(entry.end) \(problem) (which ends at \(position))")
                }
                position = entry.end
            }
            guard position == dataBytes else {
                throw fail("the tensors cover \(position) of the \(dataBytes) data bytes")
            }
        }
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
            let t = tensors[name]!.madeContiguous()
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
