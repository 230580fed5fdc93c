import Foundation

/// The start-up, setup and checkpoint lines Megatron-LM prints, in its exact words and layout (core_v0.18,
/// `training.py`, `checkpointing.py`, `vocab_utils.py`), so that tools which parse Megatron logs read ours.
///
/// ```swift
/// print(MegatronLogLines.datetime("after dataloaders are built"))
/// // [after dataloaders are built] datetime: 2026-12-07 12:00:00.123456
/// ```
enum MegatronLogLines {
    /// `print_datetime`: a bracketed event and the local time, with Megatron's trailing space.
    static func datetime(_ event: String, at date: Date = Date()) -> String {
        "[\(event)] datetime: \(timestamp(date)) "
    }

    /// Printed by every rank of data-parallel rank 0 once the model is built: its own (tensor-parallel slice's)
    /// parameter count.
    static func parameterCount(tensorRank: Int, pipelineRank: Int = 0, count: Int) -> String {
        " > number of parameters on (tensor, pipeline) model parallel rank (\(tensorRank), \(pipelineRank)): \(count)"
    }

    /// How the tokenizer's vocabulary was padded (to a multiple of `--make-vocab-size-divisible-by` x TP).
    static func paddedVocabulary(size: Int, padded: Int) -> String {
        " > padded vocab (size: \(size)) with \(padded - size) dummy tokens (new size: \(padded))"
    }

    /// Before a checkpoint is written.
    static func savingCheckpoint(iteration: Int, directory: String, format: String, at date: Date = Date()) -> String {
        "[\(timestamp(date))] saving checkpoint at iteration \(padded(iteration, 7)) to \(directory) in \(format) format"
    }

    /// After a checkpoint is written (and its tracker file updated); `tensor` and `pipeline` are the printing
    /// rank's (rank, size).
    static func savedCheckpoint(iteration: Int, directory: String, tensor: (rank: Int, size: Int),
                                pipeline: (rank: Int, size: Int) = (0, 1), at date: Date = Date()) -> String {
        "  [\(timestamp(date))] successfully saved checkpoint from iteration \(padded(iteration, 7)) to \(directory) "
            + "[ t \(tensor.rank + 1)/\(tensor.size), p \(pipeline.rank + 1)/\(pipeline.size) ]"
    }

    /// After `--save-retain-interval` deleted the checkpoint before the one just saved.
    static func deletedCheckpoint(iteration: Int, directory: String) -> String {
        "  successfully deleted checkpoint from iteration \(padded(iteration, 7)) at \(directory)"
    }

    /// After a checkpoint is loaded.
    static func loadedCheckpoint(directory: String, iteration: Int, tensor: (rank: Int, size: Int),
                                 pipeline: (rank: Int, size: Int) = (0, 1)) -> String {
        "  successfully loaded checkpoint from \(directory) [ t \(tensor.rank + 1)/\(tensor.size), "
            + "p \(pipeline.rank + 1)/\(pipeline.size) ] at iteration \(iteration)"
    }

    /// Python's `datetime.now().strftime('%Y-%m-%d %H:%M:%S.%f')`, in local time: the date rounded to the
    /// microsecond, as Python's clock reads it.
    static func timestamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        let microseconds = Int64((date.timeIntervalSinceReferenceDate * 1_000_000).rounded())
        let (seconds, fraction) = (microseconds.quotientAndRemainder(dividingBy: 1_000_000))
        let whole = fraction < 0 ? seconds - 1 : seconds
        let wholeDate = Date(timeIntervalSinceReferenceDate: TimeInterval(whole))
        return formatter.string(from: wholeDate) + "." + String(format: "%06d", Int((fraction + 1_000_000) % 1_000_000))
    }

    /// `{:Nd}`: right-aligned in `width` columns.
    static func padded(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
