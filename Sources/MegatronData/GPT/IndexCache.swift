import Foundation

/// Megatron's on-disk cache of dataset indices: `<md5>-<Class>-<split>-description.txt` plus one `.npy`
/// per index, in one directory. Either program reads what the other wrote.
struct IndexCache {
    let directory: String
    let description: String
    let className: String
    let split: DatasetSplit

    var hash: String { MD5.hexDigest(description) }

    func path(_ suffix: String) -> String {
        (directory as NSString).appendingPathComponent("\(hash)-\(className)-\(split.name)-\(suffix)")
    }

    /// True when the description and every named array are present (Megatron's cache-hit rule).
    func isComplete(_ arrays: [String]) -> Bool {
        (["description.txt"] + arrays.map { $0 + ".npy" }).allSatisfy { FileManager.default.fileExists(atPath: path($0)) }
    }

    func load(_ name: String) throws -> NPYFile.Array {
        try NPYFile.read(path(name + ".npy"))
    }

    /// Writes each file under a temporary name first and renames it, so a crash never leaves a
    /// complete-looking but half-written cache.
    func save(_ arrays: [(String, NPYFile.Array)]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let token = "\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        for (name, array) in arrays {
            try atomically(path(name + ".npy"), token) { try NPYFile.write(array, to: $0) }
        }
        try atomically(path("description.txt"), token) { tmp in
            guard FileManager.default.createFile(atPath: tmp, contents: Data(description.utf8)) else {
                throw DatasetError("cannot write \(tmp)")
            }
        }
    }

    private func atomically(_ final: String, _ token: String, _ write: (String) throws -> Void) throws {
        let tmp = final + ".tmp-" + token
        try write(tmp)
        guard rename(tmp, final) == 0 else {
            throw DatasetError("cannot rename \(tmp) to \(final): \(String(cString: strerror(errno)))")
        }
    }
}
