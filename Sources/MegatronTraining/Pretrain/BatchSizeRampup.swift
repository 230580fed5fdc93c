/// Megatron's batch-size ramp-up (`--rampup-batch-size <start> <increment> <samples>`, its
/// `RampupBatchsizeNumMicroBatchesCalculator`): the global batch starts at `start` and grows by `increment`
/// every `samples / ((global - start) / increment)` consumed samples, reaching the global batch size once
/// more than `samples` samples are consumed.
///
/// ```swift
/// let ramp = try BatchSizeRampup(["16", "8", "300000"], globalBatchSize: 1024, microBatchTimesDataParallel: 8)
/// ramp.batchSize(consumedSamples: 0)        // 16
/// ```
struct BatchSizeRampup: Equatable {
    let start: Int
    let increment: Int
    let samples: Int
    let globalBatchSize: Int

    /// Reads the flag's three words; every batch size of the ramp must split into micro-batches on each
    /// data-parallel rank (Megatron checks each as it is reached).
    init(_ words: [String], globalBatchSize: Int, microBatchTimesDataParallel: Int) throws {
        let values = words.compactMap { Int($0) }
        guard words.count == 3, values.count == 3 else {
            throw ArgumentError("--rampup-batch-size needs three integers <start batch size> <batch size increment> <ramp-up samples>, got '\(words.joined(separator: " "))'")
        }
        (start, increment, samples) = (values[0], values[1], values[2])
        self.globalBatchSize = globalBatchSize
        guard start > 0, increment > 0, samples > 0 else {
            throw ArgumentError("--rampup-batch-size \(words.joined(separator: " ")): start batch size, increment and ramp-up samples must be positive")
        }
        guard start <= globalBatchSize, (globalBatchSize - start) % increment == 0 else {
            throw ArgumentError("--rampup-batch-size: --global-batch-size (\(globalBatchSize)) minus the start batch size (\(start)) must be a non-negative multiple of the increment (\(increment))")
        }
        let unit = microBatchTimesDataParallel
        guard start % unit == 0, increment % unit == 0 else {
            throw ArgumentError("--rampup-batch-size: the start batch size (\(start)) and the increment (\(increment)) must be multiples of --micro-batch-size x data-parallel size (\(unit)), so every ramped batch splits into micro-batches")
        }
    }

    /// The global batch size once `consumedSamples` samples are consumed.
    func batchSize(consumedSamples: Int) -> Int {
        let increments = (globalBatchSize - start) / increment
        guard consumedSamples <= samples, increments > 0 else { return globalBatchSize }
        let samplesPerIncrement = Double(samples) / Double(increments)
        return start + Int(Double(consumedSamples) / samplesPerIncrement) * increment
    }

    /// Iterations that train on `trainSamples` (Megatron's `update_train_iters`): the ramp's batches while
    /// they fit, then whole global batches (a partial last batch is dropped).
    func iterations(trainSamples: Int) -> Int {
        var (iterations, consumed) = (0, 0)
        while consumed <= samples && consumed <= trainSamples {
            consumed += batchSize(consumedSamples: consumed)
            iterations += 1
        }
        return iterations + max(0, trainSamples - consumed) / globalBatchSize
    }
}
