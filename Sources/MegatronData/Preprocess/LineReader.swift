import Foundation

/// Reads an input file line by line; `.gz` files are decompressed by a `gzip -dc` child process.
///
/// gzip through a subprocess keeps the package free of a zlib build dependency, streams with
/// constant memory, and reports corrupt archives through gzip's own exit status.
final class LineReader {
    let path: String
    private let file: UnsafeMutablePointer<FILE>
    private let gzip: Process?
    private var buffer: UnsafeMutablePointer<CChar>? = nil
    private var capacity = 0
    /// 1-based number of the line last returned.
    private(set) var lineNumber = 0

    init(path: String) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DatasetError("--input \(path) does not exist")
        }
        guard !isDirectory.boolValue else { throw DatasetError("--input \(path) is a directory, not a JSONL file") }
        guard FileManager.default.isReadableFile(atPath: path) else { throw DatasetError("--input \(path) is not readable") }
        if path.hasSuffix(".gz") {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["gzip", "-dc", "--", path]
            let pipe = Pipe()
            process.standardOutput = pipe
            do { try process.run() } catch { throw DatasetError("cannot start gzip to read \(path): \(error)") }
            guard let file = fdopen(dup(pipe.fileHandleForReading.fileDescriptor), "r") else {
                throw DatasetError("cannot read gzip output for \(path)")
            }
            try? pipe.fileHandleForReading.close()
            self.file = file
            gzip = process
        } else {
            guard let file = fopen(path, "r") else { throw DatasetError("cannot open \(path): \(String(cString: strerror(errno)))") }
            self.file = file
            gzip = nil
        }
    }

    deinit {
        fclose(file)
        free(buffer)
        if let gzip, gzip.isRunning { gzip.terminate() }
    }

    /// The next line with its newline, or nil at the end (after checking that the read, and gzip, succeeded).
    func next() throws -> [UInt8]? {
        let n = getline(&buffer, &capacity, file)
        guard n >= 0, let buffer else {
            if ferror(file) != 0 {
                throw DatasetError("\(path): read failed after line \(lineNumber): \(String(cString: strerror(errno)))")
            }
            if let gzip {
                gzip.waitUntilExit()
                let status = gzip.terminationStatus
                if status == 127 { throw DatasetError("\(path): cannot run gzip to decompress it; install gzip or pass the file uncompressed") }
                if status != 0 {
                    throw DatasetError("\(path): gzip failed (exit \(status)) after line \(lineNumber): the archive is corrupt or truncated")
                }
            }
            return nil
        }
        lineNumber += 1
        return buffer.withMemoryRebound(to: UInt8.self, capacity: n) { Array(UnsafeBufferPointer(start: $0, count: n)) }
    }
}
