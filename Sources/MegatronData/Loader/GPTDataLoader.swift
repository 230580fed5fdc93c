import Foundation

/// Batches for one data-parallel rank, made on a background thread a few batches ahead of use.
///
/// The order depends only on the dataset (its shuffle index) and the sampler, never on timing, so runs
/// are deterministic and resumable from `consumedSamples`.
///
/// ```swift
/// let sampler = try PretrainingSampler(totalSamples: train.count, consumedSamples: 0, microBatchSize: 8)
/// let loader = GPTDataLoader(source: train, sampler: sampler)
/// while let batch = loader.next() { … batch.tokens … }
/// ```
public final class GPTDataLoader: @unchecked Sendable {
    /// State shared with the producer thread; guarded by `condition`.
    private final class Queue: @unchecked Sendable {
        let condition = NSCondition()
        var ready: [GPTBatch] = []
        var finished = false
        var cancelled = false
    }

    private let queue = Queue()
    public let prefetch: Int

    /// - Parameter prefetch: how many batches may wait ready ahead of the consumer (at least 1).
    public init(source: any GPTSampleSource, sampler: PretrainingSampler, prefetch: Int = 2) {
        self.prefetch = max(1, prefetch)
        let queue = self.queue, capacity = self.prefetch
        let thread = Thread {
            for ids in sampler {
                let batch = GPTBatch(sampleIDs: ids, samples: ids.map { source.sample($0) })
                queue.condition.lock()
                while queue.ready.count >= capacity && !queue.cancelled { queue.condition.wait() }
                if queue.cancelled {
                    queue.condition.unlock()
                    return
                }
                queue.ready.append(batch)
                queue.condition.broadcast()
                queue.condition.unlock()
            }
            queue.condition.lock()
            queue.finished = true
            queue.condition.broadcast()
            queue.condition.unlock()
        }
        thread.name = "megatron-data-prefetch"
        thread.start()
    }

    deinit {
        queue.condition.lock()
        queue.cancelled = true
        queue.condition.broadcast()
        queue.condition.unlock()
    }

    /// The next batch, waiting for it if needed; nil after the last one.
    public func next() -> GPTBatch? {
        queue.condition.lock()
        defer { queue.condition.unlock() }
        while queue.ready.isEmpty && !queue.finished { queue.condition.wait() }
        guard !queue.ready.isEmpty else { return nil }
        let batch = queue.ready.removeFirst()
        queue.condition.broadcast()
        return batch
    }
}
