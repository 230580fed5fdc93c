import Foundation

/// The numbers of one training log line, averaged over the iterations since the previous line.
public struct TrainingLogEntry {
    public var iteration: Int
    public var trainIters: Int
    public var consumedSamples: Int
    public var skippedSamples = 0
    public var elapsedMillisecondsPerIteration: Double
    /// TFLOP/s per GPU, printed with `--log-throughput`.
    public var throughput: Double?
    public var learningRate: Float
    public var globalBatchSize: Int
    public var lmLoss: Double
    /// Megatron's MoE loss items (`load_balancing_loss`, `z_loss`, ...) in its order, printed after the lm loss.
    public var moeLosses: [(name: String, value: Double)] = []
    public var lossScale: Float
    public var gradNorm: Float?
    /// Zeros in the main gradients, with `--log-num-zeros-in-grad`.
    public var numZeros: Int?
    /// L2 norm of the parameters, with `--log-params-norm`.
    public var paramsNorm: Double?
    public var skippedIterations: Int
    public var nanIterations: Int

    /// Megatron's line, field for field (`training.py: training_log`).
    public func formatted(timestamp: Date = Date()) -> String {
        var line = " [\(Self.timestamp(timestamp))] iteration \(pad(iteration, 8))/\(pad(trainIters, 8)) |"
        line += " consumed samples: \(pad(consumedSamples, 12)) |"
        if skippedSamples > 0 { line += " skipped samples: \(pad(skippedSamples, 12)) |" }
        line += " elapsed time per iteration (ms): \(String(format: "%.1f", elapsedMillisecondsPerIteration)) |"
        if let throughput { line += " throughput per GPU (TFLOP/s/GPU): \(String(format: "%.1f", throughput)) |" }
        line += " learning rate: \(Self.scientific(Double(learningRate))) |"
        line += " global batch size: \(pad(globalBatchSize, 5)) |"
        line += " lm loss: \(Self.scientific(lmLoss)) |"
        for (name, value) in moeLosses { line += " \(name): \(Self.scientific(value)) |" }
        line += " loss scale: \(String(format: "%.1f", lossScale)) |"
        if let gradNorm { line += " grad norm: \(String(format: "%.3f", gradNorm)) |" }
        // Megatron's count is a Python float that went through an fp32 tensor: `1234.0`.
        if let numZeros { line += " num zeros: \(PythonText.float(Double(Float(numZeros)))) |" }
        if let paramsNorm { line += " params norm: \(String(format: "%.3f", paramsNorm)) |" }
        line += " number of skipped iterations: \(pad(skippedIterations, 3)) |"
        line += " number of nan iterations: \(pad(nanIterations, 3)) |"
        return line
    }

    private func pad(_ value: Int, _ width: Int) -> String { MegatronLogLines.padded(value, width) }

    /// Python's `{:.6E}`: six decimals and a two-digit signed exponent.
    static func scientific(_ value: Double) -> String {
        String(format: "%.6E", value)
    }

    static func timestamp(_ date: Date) -> String { MegatronLogLines.timestamp(date) }
}

/// Megatron's evaluation line: loss and perplexity (`exp(min(20, loss))`); `prefix` is `iteration N`, or
/// `iteration N on validation set` / `on test set` after training.
public func validationLogLine(prefix: String, loss: Double) -> String {
    " validation loss at \(prefix) | lm loss value: \(TrainingLogEntry.scientific(loss)) | lm loss PPL: \(TrainingLogEntry.scientific(exp(min(20, loss)))) | "
}
