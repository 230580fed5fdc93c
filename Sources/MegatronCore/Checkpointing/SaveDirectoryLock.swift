import Foundation

/// The right to write checkpoints into a `--save` directory, held by one process at a time.
///
/// The lock is the file `<save>/megatron_save.lock`, holding the writer's pid and host name and kept under an
/// advisory `flock` while the writer runs. A second run is refused with the holder named. A lock left by a killed
/// run does not block forever: on the same host, a holder whose pid is gone (or that no longer holds the `flock`)
/// is taken over. A lock naming another host cannot be checked from here; the message says to delete the file
/// once that run is over. Opening the lock is also what proves, at start-up, that the directory can be written.
///
/// ```swift
/// let lock = try SaveDirectoryLock(directory: URL(fileURLWithPath: "checkpoints"))
/// // ... save checkpoints ...
/// lock.release()   // or let it go out of scope
/// ```
public final class SaveDirectoryLock {
    public static let fileName = "megatron_save.lock"
    public let file: URL
    private var descriptor: Int32

    /// Creates `directory` if needed and takes its lock, or throws naming the path and what is wrong (a file in
    /// the way, no permission, a read-only file system, a live holder).
    public init(directory: URL) throws {
        try Self.prepare(directory)
        file = directory.appendingPathComponent(Self.fileName)
        descriptor = try Self.acquire(file)
    }

    deinit { release() }

    /// Gives the lock up: removes the file, then drops the `flock`.
    public func release() {
        guard descriptor >= 0 else { return }
        unlink(file.path)
        close(descriptor)
        descriptor = -1
    }

    /// Who holds a lock: its file's contents.
    struct Holder: Equatable {
        var pid: Int32
        var host: String

        var text: String { "pid \(pid)\nhost \(host)\n" }

        init(pid: Int32, host: String) {
            self.pid = pid
            self.host = host
        }

        init?(_ text: String) {
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            guard let pid = fields["pid"].flatMap({ Int32($0) }), let host = fields["host"] else { return nil }
            self.init(pid: pid, host: host)
        }

        static var current: Holder { Holder(pid: getpid(), host: hostName) }

        /// Whether the holder's process runs (only meaningful on this host).
        var isRunning: Bool { kill(pid, 0) == 0 || errno == EPERM }
    }

    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown-host" }
        return String(cString: buffer)
    }

    /// `directory` exists as a directory, created if missing.
    static func prepare(_ directory: URL) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw CheckpointError("\(directory.path): is a file, not a directory") }
            return
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError("\(directory.path): cannot create the directory (\(error.localizedDescription))")
        }
    }

    /// Opens and locks `file`, retrying when a releasing holder unlinks it under us; returns the descriptor.
    static func acquire(_ file: URL) throws -> Int32 {
        for _ in 0..<8 {
            let fd = open(file.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw AtomicFile.failure(file, "cannot write a lock file into this directory") }
            do {
                if try lockIfFree(fd, file: file) { return fd }
            } catch {
                close(fd)
                throw error
            }
            close(fd)
        }
        throw CheckpointError("\(file.path): another run keeps taking and releasing this lock; try again")
    }

    /// Takes the lock on the open `fd` if nobody live holds it; false when the file was replaced meanwhile.
    static func lockIfFree(_ fd: Int32, file: URL) throws -> Bool {
        let flocked = flock(fd, LOCK_EX | LOCK_NB) == 0
        // EWOULDBLOCK: a live process holds it. Other errors: the file system has no flock; the pid check decides.
        if !flocked && errno == EWOULDBLOCK { throw locked(file, by: read(fd)) }
        var opened = stat(), current = stat()
        guard fstat(fd, &opened) == 0, stat(file.path, &current) == 0,
              opened.st_ino == current.st_ino, opened.st_dev == current.st_dev
        else { return false }
        let text = read(fd)
        if !text.isEmpty {
            guard let holder = Holder(text) else {
                throw CheckpointError("\(file.path): holds '\(text.prefix(80))', not a pid and host; if no run is "
                    + "writing into this directory, delete the file")
            }
            let stale = holder.host == hostName && (flocked || !holder.isRunning)
            guard stale else { throw locked(file, by: text) }
        }
        let content = Data(Holder.current.text.utf8)
        guard ftruncate(fd, 0) == 0,
              content.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) == content.count, fsync(fd) == 0
        else { throw AtomicFile.failure(file, "cannot write the lock file") }
        return true
    }

    static func read(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = pread(fd, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer.prefix(count), as: UTF8.self) : ""
    }

    static func locked(_ file: URL, by text: String) -> CheckpointError {
        let holder = Holder(text)
        let who = holder.map { "process \($0.pid) on host \($0.host)" } ?? "another process"
        return CheckpointError("\(file.deletingLastPathComponent().path): another run (\(who)) is saving checkpoints "
            + "into this directory (\(file.path)); use another --save directory, or wait for it to end. If that run is "
            + "no longer alive, delete \(file.path)")
    }
}
