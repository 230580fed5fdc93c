import Foundation
import MegatronCUDA

/// What `MEGATRON_PROFILE` turns on: something that sees every op a CUDA context runs and sums it up.
///
///     MEGATRON_PROFILE=1 megatron bench train ...          // OpProfile: GPU time per op label
///     MEGATRON_PROFILE=timeline megatron bench train ...   // OpTimeline: where the GPU sat idle, and why
public protocol OpProfiler: AnyObject, Sendable {
    /// Runs one op's enqueueing `body` on `stream`, observing it.
    func measure<R>(_ label: String, stream: CUDAStream, _ body: () -> R) -> R
    /// Forgets what was recorded (e.g. after warm-up steps).
    func reset()
    /// What was recorded, as a table.
    func summary() -> String
}

/// The profiler MEGATRON_PROFILE asks for: "1" for `OpProfile`, "timeline" for `OpTimeline`, else none.
func makeOpProfiler(_ setting: String?, device: CUDADevice) -> (any OpProfiler)? {
    switch setting {
    case "1": OpProfile()
    case "timeline": OpTimeline(device: device)
    default: nil
    }
}

/// Where the GPU time of a program goes, op by op: with `MEGATRON_PROFILE=1` every op on a CUDA
/// device waits for the stream before and after itself, and its wall time is added to its label
/// (kernel and dtype, GEMM shape, host copy). Synchronizing serializes the host and the device, so
/// totals exceed an unprofiled run; the split between ops, and the host time left over between
/// them, is what it is for.
///
///     MEGATRON_PROFILE=1 megatron bench train ...   // prints the table after the timed steps
public final class OpProfile: OpProfiler, @unchecked Sendable {
    private struct Entry {
        var count = 0
        var seconds = 0.0
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]

    public func measure<R>(_ label: String, stream: CUDAStream, _ body: () -> R) -> R {
        try? stream.synchronize()
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        try? stream.synchronize()
        add(label, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return result
    }

    func add(_ label: String, seconds: Double) {
        lock.lock()
        defer { lock.unlock() }
        entries[label, default: Entry()].count += 1
        entries[label, default: Entry()].seconds += seconds
    }

    /// Forgets what was recorded (e.g. after warm-up steps).
    public func reset() {
        lock.lock()
        defer { lock.unlock() }
        entries = [:]
    }

    public func summary() -> String { summary(limit: 40) }

    /// The `limit` labels with the most time, as a table: calls, total ms, share of the profiled time.
    public func summary(limit: Int) -> String {
        lock.lock()
        let sorted = entries.sorted { $0.value.seconds > $1.value.seconds }
        lock.unlock()
        let total = sorted.reduce(0) { $0 + $1.value.seconds }
        let calls = sorted.reduce(0) { $0 + $1.value.count }
        var lines = [String(format: "op profile: %d calls, %.1f ms in ops", calls, total * 1000)]
        for (label, entry) in sorted.prefix(limit) {
            lines.append(String(format: "%8d  %10.2f ms  %5.1f%%  %@", entry.count, entry.seconds * 1000,
                                100 * entry.seconds / max(total, 1e-12), label))
        }
        return lines.joined(separator: "\n")
    }
}
