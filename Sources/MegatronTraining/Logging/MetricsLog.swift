import Foundation

/// Where a run's numbers go besides the console: TensorBoard event files (Megatron's tag names) and a
/// JSONL file of the same values (`metrics.jsonl`), both in `--tensorboard-dir`.
final class MetricsLog {
    private let tensorboard: TensorBoardWriter
    private let jsonl: FileHandle

    init(directory: String) throws {
        tensorboard = try TensorBoardWriter(directory: directory)
        let url = URL(fileURLWithPath: directory).appendingPathComponent("metrics.jsonl")
        if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
        jsonl = try FileHandle(forWritingTo: url)
        jsonl.seekToEndOfFile()
    }

    /// Records `values` (tag to number) at `iteration` in both outputs.
    func record(_ values: [(String, Double)], iteration: Int) {
        for (tag, value) in values where value.isFinite { tensorboard.scalar(tag, value, step: iteration) }
        var object: [String: Any] = ["iteration": iteration]
        for (tag, value) in values where value.isFinite { object[tag] = value }
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
            jsonl.write(data + Data("\n".utf8))
        }
    }

    func flush() {
        tensorboard.flush()
        try? jsonl.synchronize()
    }
}
