/// Megatron's checkpoint-format flags (`--ckpt-format torch_dist`, `--async-save`, `--dist-ckpt-strictness`, ...)
/// choose how checkpoints are written and read. This build writes its own format only (issue #20), so they are
/// refused, by feature, when the run saves or loads (`--save`, `--load`); without either, nothing is written or
/// read, the format cannot matter, and they are accepted with a start-up note. Real configs carry them whether
/// or not the run checkpoints.
extension CommandLineParse {
    static let checkpointFormatNote = "no effect: this run neither saves nor loads checkpoints (no --save, no --load), "
        + "so their format does not matter; with --save or --load these flags are refused (this build writes its own format)"

    /// Flags of the checkpoint-format feature that write a checkpoint by themselves (a conversion of the loaded
    /// one), so that no run is without effect.
    static let checkpointConversionFlags: Set<String> = [
        "--ckpt-convert-format", "--ckpt-convert-save", "--ckpt-convert-update-legacy-dist-opt-format",
    ]

    /// Whether `megatron`, given as `name`, only decides how the run's checkpoints are written or read.
    static func onlyShapesCheckpoints(_ megatron: MegatronFlag, as name: String) -> Bool {
        megatron.feature == "checkpoint formats (--ckpt-format)" && !checkpointConversionFlags.contains(name)
    }

    /// Once the whole line is read: the checkpoint-format flags stay refused when the run saves or loads, and
    /// are otherwise accepted with the note.
    mutating func settleCheckpointFormatFlags() {
        guard !checkpointFormatFlags.isEmpty, arguments.save == nil, arguments.load == nil else { return }
        let usages = checkpointFormatFlags.map { problems.unsupported[$0].usage }
        for index in checkpointFormatFlags.reversed() { problems.unsupported.remove(at: index) }
        notes += usages.map { ($0, Self.checkpointFormatNote) }
    }
}
