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
    private func isComplete(_ arrays: [String]) -> Bool {
        (["description.txt"] + arrays.map { $0 + ".npy" }).allSatisfy { FileManager.default.fileExists(atPath: path($0)) }
    }

    /// Whether `description.txt` holds this cache's description (another text under the same hash is damage).
    var descriptionMatches: Bool {
        FileManager.default.contents(atPath: path("description.txt")) == Data(description.utf8)
    }

    /// A cached array; a file that is not a readable `.npy` is an error naming it.
    func load(_ name: String) throws -> NPYFile.Array {
        do {
            return try NPYFile.read(path(name + ".npy"))
        } catch let error as DatasetError {
            throw DatasetError("\(error.description); delete it (or the whole cache directory \(directory)) to rebuild the cache")
        }
    }

    /// The cached arrays when they are all there and `problem` finds them fitting the dataset; else nil, with
    /// a line for the log when cached files existed but did not fit (they are then built again).
    func reuse<T>(_ arrays: [String], load: (IndexCache) throws -> T, problem: (T) throws -> String?)
        throws -> (value: T?, rebuildNote: String?)
    {
        func rebuild(_ reason: String) -> (T?, String?) {
            (nil, "> the cached \(className) \(split.name) indices \(path("*")) do not fit the dataset (\(reason)): "
                + "building them again (was the dataset written again by preprocess-data?)")
        }
        guard isComplete(arrays) else { return (nil, nil) }
        guard descriptionMatches else { return rebuild("its description.txt differs") }
        let cached = try load(self)
        return try problem(cached).map(rebuild) ?? (cached, nil)
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
