/// Megatron's step-wise global-batch-size schedule (`--step-batch-size-schedule "0:768 250B:1536"`, its
/// `StepBatchsizeNumMicroBatchesCalculator`): from each threshold on, the global batch is that entry's size.
/// Thresholds are tokens (Megatron always passes `--seq-length`, so they are divided by it, rounding down, into
/// samples; samples when `seqLength` is nil) and may carry a K, M, B or T suffix; entries are sorted, the
/// first must be at 0 and thresholds must rise strictly.
///
/// ```swift
/// let steps = try StepBatchSizeSchedule("0:16 2.4B:320", seqLength: 2048)
/// steps.batchSize(consumedSamples: 1_171_875)      // 320 (2.4B tokens / 2048)
/// ```
struct StepBatchSizeSchedule: Equatable, BatchSizeSchedule {
    struct Step: Equatable {
        /// Consumed samples from which `batchSize` applies.
        let samples: Int
        let batchSize: Int
    }

    /// Sorted by threshold, the first at 0.
    let steps: [Step]

    init(_ text: String, seqLength: Int?) throws {
        func refuse(_ message: String) -> ArgumentError {
            ArgumentError("--step-batch-size-schedule '\(text)': \(message)")
        }
        var steps: [Step] = []
        for entry in text.replacingOccurrences(of: ",", with: " ").split(whereSeparator: \.isWhitespace) {
            guard let colon = entry.firstIndex(of: ":") else {
                throw refuse("Invalid schedule entry \"\(entry)\". Expected format: \"THRESHOLD:BATCH_SIZE\"")
            }
            guard var threshold = Self.number(entry[..<colon]), let batchSize = Self.number(entry[entry.index(after: colon)...]) else {
                throw refuse("could not read entry \"\(entry)\" as THRESHOLD:BATCH_SIZE numbers")
            }
            if let seqLength { threshold = Self.floorDivide(threshold, seqLength) }
            steps.append(Step(samples: threshold, batchSize: batchSize))
        }
        steps.sort { $0.samples < $1.samples }
        guard let first = steps.first else { throw refuse("schedule must have at least one entry") }
        guard first.samples == 0 else { throw refuse("first schedule entry must have threshold 0, got \(first.samples)") }
        for (before, after) in zip(steps, steps.dropFirst()) where after.samples <= before.samples {
            throw refuse("schedule thresholds must be strictly increasing, got \(before.samples) before \(after.samples)")
        }
        if let bad = steps.first(where: { $0.batchSize <= 0 }) {
            throw refuse("batch size must be positive, got \(bad.batchSize)")
        }
        self.steps = steps
    }

    /// The global batch size once `consumedSamples` samples are consumed: the last entry reached.
    func batchSize(consumedSamples: Int) -> Int {
        steps.last { $0.samples <= consumedSamples }!.batchSize
    }

    /// Iterations that train on `trainSamples` (Megatron's `update_train_iters`): whole scheduled batches
    /// until at least that many samples are consumed.
    func iterations(trainSamples: Int) -> Int {
        var (iterations, consumed) = (0, 0)
        while consumed < trainSamples {
            consumed += batchSize(consumedSamples: consumed)
            iterations += 1
        }
        return iterations
    }

    /// A number as Megatron reads it: a decimal with an optional K / M / B / T suffix (any case), scaled and
    /// truncated to an integer (`int(float(value) * multiplier)`).
    private static func number(_ text: Substring) -> Int? {
        var digits = text.uppercased()
        let multipliers: [Character: Double] = ["T": 1e12, "B": 1e9, "M": 1e6, "K": 1e3]
        var multiplier = 1.0
        if let last = digits.last, let scale = multipliers[last] {
            multiplier = scale
            digits.removeLast()
        }
        guard let value = Double(digits), (value * multiplier).magnitude < 9e18 else { return nil }
        return Int(value * multiplier)
    }

    /// Python's `//`: the quotient rounded toward minus infinity.
    private static func floorDivide(_ a: Int, _ b: Int) -> Int {
        let quotient = a / b
        return a % b != 0 && (a < 0) != (b < 0) ? quotient - 1 : quotient
    }
}

/// The global batch size of a run as a function of the samples consumed so far: `--rampup-batch-size` or
/// `--step-batch-size-schedule`.
protocol BatchSizeSchedule {
    func batchSize(consumedSamples: Int) -> Int
    /// Iterations that train on `trainSamples` samples (Megatron's `update_train_iters`).
    func iterations(trainSamples: Int) -> Int
}

extension BatchSizeRampup: BatchSizeSchedule {}
