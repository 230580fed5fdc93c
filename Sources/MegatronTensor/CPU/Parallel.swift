import Foundation

/// Cores available to this process, read once: Foundation answers `activeProcessorCount` by reading
/// cgroup files on Linux, which costs more than a small kernel does.
let availableCores = ProcessInfo.processInfo.activeProcessorCount

/// Splits `0..<count` into contiguous chunks and runs `body` on each chunk from several threads.
///
/// Work smaller than `grain` elements runs inline: a thread hop costs more than it saves there.
@inline(__always)
public func parallelChunks(_ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
    let workers = min(availableCores, max(1, count / max(grain, 1)))
    if workers <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    let chunk = (count + workers - 1) / workers
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        let lo = w * chunk
        let hi = min(count, lo + chunk)
        if lo < hi { body(lo..<hi) }
    }
}
