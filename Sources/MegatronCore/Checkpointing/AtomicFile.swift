import Foundation

/// File writes that a kill or a power loss at any instant cannot tear: a reader finds the old file or the new one.
///
/// A file is written under a temporary name in its directory, synced to disk, renamed over the target, and the
/// directory is synced so the rename itself is on disk before the caller goes on.
enum AtomicFile {
    /// Replaces `url` with `data` atomically and durably.
    static func write(_ data: Data, to url: URL) throws {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do {
            try writeSynced(data, to: temporary)
            try move(temporary, to: url)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
        try syncDirectory(directory)
    }

    /// Writes `data` to a new file at `url` and syncs it (no rename: for files inside a directory that is itself
    /// published by a rename).
    static func writeSynced(_ data: Data, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(url, "cannot create") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        do {
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
        } catch {
            throw CheckpointError("\(url.path): cannot write (\(error.localizedDescription))")
        }
    }

    /// Renames `source` to `target`, replacing a file there (never a non-empty directory).
    static func move(_ source: URL, to target: URL) throws {
        guard rename(source.path, target.path) == 0 else {
            throw failure(target, "cannot rename \(source.lastPathComponent) into place")
        }
    }

    /// Makes the entries of `directory` (files created, renamed or removed in it) durable.
    static func syncDirectory(_ directory: URL) throws {
        let fd = open(directory.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(directory, "cannot open the directory to sync it") }
        defer { close(fd) }
        // Some file systems cannot sync a directory (EINVAL); their renames are then as durable as they get.
        guard fsync(fd) == 0 || errno == EINVAL else { throw failure(directory, "cannot sync the directory") }
    }

    /// An error naming `url`, what failed and the system's reason (errno).
    static func failure(_ url: URL, _ what: String) -> CheckpointError {
        CheckpointError("\(url.path): \(what) (\(String(cString: strerror(errno))))")
    }
}
