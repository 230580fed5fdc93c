import Foundation
import MegatronCUDA

/// Where a GPU sits idle, and which op it was waiting for: with `MEGATRON_PROFILE=timeline` every op
/// on a CUDA context is bracketed by two events on its stream, without synchronizing, so the run keeps
/// its speed (bar the event records). The summary lays the ops out on the device's clock: busy time,
/// idle time, and the idle time before each op label. Idle time before an op means the host had not
/// enqueued it yet when the stream ran dry: host-bound launching, or a host sync (a loss or norm read
/// back) that emptied the queue. The host's own split (inside op enqueueing, between ops) is given too.
///
///     MEGATRON_PROFILE=timeline megatron bench train ...   // prints the table after the timed steps
public final class OpTimeline: OpProfiler, @unchecked Sendable {
    private struct Record {
        var label: String
        var start: CUDAEvent
        var end: CUDAEvent
        var hostStart: UInt64
        var hostEnd: UInt64
    }

    private let device: CUDADevice
    private let lock = NSLock()
    private var records: [Record] = []
    private var spare: [CUDAEvent] = []
    private var depth = 0

    init(device: CUDADevice) {
        self.device = device
    }

    public func measure<R>(_ label: String, stream: CUDAStream, _ body: () -> R) -> R {
        // Ops that run ops inside themselves are seen once, as the outermost.
        lock.lock()
        depth += 1
        let outermost = depth == 1
        lock.unlock()
        defer {
            lock.lock()
            depth -= 1
            lock.unlock()
        }
        guard outermost, let start = event(), let end = event() else { return body() }
        let hostStart = DispatchTime.now().uptimeNanoseconds
        try? start.record(on: stream)
        let result = body()
        try? end.record(on: stream)
        let record = Record(label: label, start: start, end: end, hostStart: hostStart, hostEnd: DispatchTime.now().uptimeNanoseconds)
        lock.lock()
        records.append(record)
        lock.unlock()
        return result
    }

    private func event() -> CUDAEvent? {
        lock.lock()
        defer { lock.unlock() }
        return spare.popLast() ?? (try? CUDAEvent(device: device))
    }

    public func reset() {
        lock.lock()
        defer { lock.unlock() }
        spare += records.flatMap { [$0.start, $0.end] }
        records = []
    }

    /// One op on the device clock, in milliseconds from the first op's start.
    struct Span {
        var label: String
        var start: Double
        var end: Double
        /// Host milliseconds from the previous op's enqueue returning to this one's beginning (Swift
        /// work between ops: autograd, optimizer bookkeeping, allocation), and inside this op's enqueue.
        var hostBefore = 0.0
        var hostInside = 0.0
    }

    public func summary() -> String {
        lock.lock()
        let taken = records
        lock.unlock()
        guard let first = taken.first, let last = taken.last, (try? last.end.synchronize()) != nil else {
            return "timeline: no ops recorded"
        }
        var previousHostEnd = first.hostStart
        let spans = taken.compactMap { record -> Span? in
            defer { previousHostEnd = record.hostEnd }
            guard let start = try? record.start.elapsedMilliseconds(since: first.start),
                  let end = try? record.end.elapsedMilliseconds(since: first.start) else { return nil }
            return Span(label: record.label, start: start, end: end,
                        hostBefore: Double(record.hostStart - previousHostEnd) / 1e6,
                        hostInside: Double(record.hostEnd - record.hostStart) / 1e6)
        }
        let hostInside = taken.reduce(0.0) { $0 + Double($1.hostEnd - $1.hostStart) } / 1e6
        let hostSpan = Double(last.hostEnd - first.hostStart) / 1e6
        return Self.table(spans, hostInside: hostInside, hostSpan: hostSpan)
    }

    /// Busy and idle time of `spans` (in stream order) and the idle time before each label, largest first.
    static func table(_ spans: [Span], hostInside: Double, hostSpan: Double, limit: Int = 25) -> String {
        var idleBefore: [String: (count: Int, ms: Double)] = [:]
        var largest: [(ms: Double, span: Span, after: Span?)] = []
        var busy = 0.0, frontier = spans.first?.start ?? 0, previous: Span? = nil
        for span in spans {
            let gap = max(0, span.start - frontier)
            if gap > 0.002 {
                idleBefore[span.label, default: (0, 0)].count += 1
                idleBefore[span.label, default: (0, 0)].ms += gap
                largest.append((gap, span, previous))
            }
            busy += max(0, span.end - max(span.start, frontier))
            frontier = max(frontier, span.end)
            previous = span
        }
        let total = frontier - (spans.first?.start ?? 0)
        var lines = [String(format: "timeline: %d ops over %.1f ms of device time: busy %.1f ms (%.1f%%), idle %.1f ms; "
                            + "host %.1f ms, %.1f ms of it enqueueing ops", spans.count, total, busy,
                            100 * busy / max(total, 1e-9), total - busy, hostSpan, hostInside)]
        lines.append("idle before op (count, ms):")
        for (label, entry) in idleBefore.sorted(by: { $0.value.ms > $1.value.ms }).prefix(limit) {
            lines.append(String(format: "%8d  %10.3f ms  %@", entry.count, entry.ms, label))
        }
        lines.append("largest gaps (host ms before the op's enqueue, and inside the previous op's enqueue):")
        for gap in largest.sorted(by: { $0.ms > $1.ms }).prefix(10) {
            lines.append(String(format: "  %8.3f ms  host %.3f / %.3f  before %@ (after %@)", gap.ms, gap.span.hostBefore,
                                gap.after?.hostInside ?? 0, gap.span.label, gap.after?.label ?? "(start)"))
        }
        return lines.joined(separator: "\n")
    }
}
