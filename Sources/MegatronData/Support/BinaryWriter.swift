#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A buffered, append-only file writer for little-endian binary data.
final class BinaryWriter {
    let path: String
    private let file: UnsafeMutablePointer<FILE>

    init(path: String) throws {
        guard let file = fopen(path, "wb") else {
            throw DatasetError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        self.path = path
        self.file = file
        setvbuf(file, nil, _IOFBF, 1 << 20)
    }

    deinit { fclose(file) }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        if fwrite(bytes.baseAddress, 1, bytes.count, file) != bytes.count {
            throw DatasetError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    func write<T: FixedWidthInteger>(littleEndian values: [T]) throws {
        let le = values.map { $0.littleEndian }
        try le.withUnsafeBytes { try write($0) }
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Flushes and closes; a failed flush (disk full) surfaces here rather than silently in deinit.
    func close() throws {
        if fflush(file) != 0 {
            throw DatasetError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
