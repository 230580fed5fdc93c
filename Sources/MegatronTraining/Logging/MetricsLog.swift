import Foundation

/// Where a run's numbers go besides the console: TensorBoard event files (Megatron's tag names) and a
/// JSONL file of the same values (`metrics.jsonl`), both in `--tensorboard-dir`.
final class MetricsLog {
    private let tensorboard: TensorBoardWriter
    private let jsonl: FileHandle

    init(directory: String, queueSize: Int = 1000) throws {
        tensorboard = try TensorBoardWriter(directory: directory, queueSize: queueSize)
        let url = URL(fileURLWithPath: directory).appendingPathComponent("metrics.jsonl")
        if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
        jsonl = try FileHandle(forWritingTo: url)
        jsonl.seekToEndOfFile()
    }

    /// Records `values` (tag to number) at `iteration` in both outputs. Those named in `againstSamples` also
    /// go to TensorBoard as `<tag> vs samples` at step `samples` (the consumed training samples), as Megatron
    /// writes them; the JSONL record carries `consumed_samples` instead.
    func record(_ values: [(String, Double)], iteration: Int, samples: Int? = nil, againstSamples: Set<String> = []) {
        for (tag, value) in values where value.isFinite {
            tensorboard.scalar(tag, value, step: iteration)
            if let samples, againstSamples.contains(tag) { tensorboard.scalar(tag + " vs samples", value, step: samples) }
        }
        var object: [String: Any] = ["iteration": iteration]
        if let samples { object["consumed_samples"] = samples }
        for (tag, value) in values where value.isFinite { object[tag] = value }
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
            jsonl.write(data + Data("\n".utf8))
        }
    }

    /// Writes what TensorBoard's queue holds and syncs both files to disk.
    func flush() {
        tensorboard.flush()
        try? jsonl.synchronize()
    }
}
