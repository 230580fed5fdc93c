import Foundation

/// `--log-progress`: Megatron's `progress.txt` in the `--save` directory, one tab-separated line per event
/// (`<time>\tJob ID: <SLURM_JOB_ID>\t# GPUs: <world size>\t<event>`): the job's start, and after each
/// checkpoint the iteration, the job's and the cumulative TFLOP/s per GPU, the floating-point operations and
/// the tokens so far. Megatron reads the file back for the cumulative throughput; so does this.
///
/// ```swift
/// let progress = ProgressLog(directory: "ckpt", worldSize: 8)
/// try progress.append("Starting job")
/// ```
struct ProgressLog {
    let url: URL
    let worldSize: Int
    var jobID = ProcessInfo.processInfo.environment["SLURM_JOB_ID"] ?? ""

    init(directory: String, worldSize: Int) {
        url = URL(fileURLWithPath: directory).appendingPathComponent("progress.txt")
        self.worldSize = worldSize
    }

    /// Appends one event line stamped with the local time (to the second).
    func append(_ event: String, at date: Date = Date()) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("\(Self.time(date))\tJob ID: \(jobID)\t# GPUs: \(worldSize)\t\(event)\n".utf8))
    }

    /// The `Saved checkpoint` event (`compute_throughputs_and_append_to_progress_log`): `flops` is the
    /// operations of every iteration so far, `flopsAtJobStart` those done before this job started.
    func appendCheckpoint(iteration: Int, flops: Double, flopsAtJobStart: Double, jobStarted: Date, tokens: Int,
                          at date: Date = Date()) throws {
        let job = (flops - flopsAtJobStart) / (date.timeIntervalSince(jobStarted) * 1e12 * Double(worldSize))
        let (firstStart, firstFlops) = try cumulativeStart() ?? (jobStarted, flopsAtJobStart)
        let cumulative = (flops - firstFlops) / (date.timeIntervalSince(firstStart) * 1e12 * Double(worldSize))
        try append("Saved checkpoint\tIteration: \(iteration)\t"
                   + "Job throughput: \(String(format: "%.1f", job)) TFLOP/s/GPU\t"
                   + "Cumulative throughput: \(String(format: "%.1f", cumulative)) TFLOP/s/GPU\t"
                   + "Floating-point operations: \(Self.exponential(flops))\t"
                   + "Tokens (in billions): \(String(format: "%.2f", Double(tokens) / 1e9))", at: date)
    }

    /// Megatron's `get_start_time_from_progress_log`: the start of the first job in the current run of jobs
    /// with this world size, and the operations done when it started (those of the checkpoint saved last
    /// before it).
    func cumulativeStart() throws -> (Date, Double)? {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return nil }
        var start: (Date, Double)?
        var latestFlops = 0.0
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 4, let size = Int(Self.value(fields[2])) else { continue }
            if fields[3] == "Saved checkpoint", fields.count > 7, let flops = Double(Self.value(fields[7])) {
                latestFlops = flops
            }
            if size != worldSize {
                start = nil
                continue
            }
            if fields[3] == "Starting job", start == nil, let date = Self.parseTime(fields[0]) {
                start = (date, latestFlops)
            }
        }
        return start
    }

    /// The text after `": "` in a `Name: value` field.
    private static func value(_ field: String) -> String {
        field.components(separatedBy: ": ").dropFirst().joined(separator: ": ")
    }

    private static func formatter() -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter
    }

    static func time(_ date: Date) -> String { formatter().string(from: date) }

    static func parseTime(_ text: String) -> Date? { formatter().date(from: text) }

    /// Python's `{:.2e}`.
    static func exponential(_ value: Double) -> String { String(format: "%.2e", value) }
}
