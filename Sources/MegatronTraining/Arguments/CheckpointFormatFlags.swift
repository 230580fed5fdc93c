extension PretrainArguments {
    /// `--ckpt-format`: Megatron-LM's `torch_dist` (the default, as in Megatron), or this build's own
    /// `safetensors` layout (`rank_00000.safetensors` + metadata.json). Megatron's legacy `torch` format is read,
    /// not written.
    public enum CheckpointFormat: String, FlagChoice, CaseIterable {
        case torchDist = "torch_dist", safetensors
    }
}

/// Megatron's other checkpoint-format flags (`--dist-ckpt-strictness`, `--ckpt-fully-parallel-save`, `--async-strategy`,
/// ...) choose how checkpoints are written and read in ways this build does not implement (issue #20), so they are
/// refused, by feature, when the run saves or loads (`--save`, `--load`); without either, nothing is written or
/// read, the format cannot matter, and they are accepted with a start-up note. Real configs carry them whether
/// or not the run checkpoints.
extension CommandLineParse {
    static let checkpointFormatNote = "no effect: this run neither saves nor loads checkpoints (no --save, no --load), "
        + "so their format does not matter; with --save or --load these flags are refused (not implemented in this build)"

    /// Flags of the checkpoint-format feature that write a checkpoint by themselves (a conversion of the loaded
    /// one), so that no run is without effect.
    static let checkpointConversionFlags: Set<String> = [
        "--ckpt-convert-format", "--ckpt-convert-save", "--ckpt-convert-update-legacy-dist-opt-format",
    ]

    /// Whether `megatron`, given as `name`, only decides how the run's checkpoints are written or read.
    static func onlyShapesCheckpoints(_ megatron: MegatronFlag, as name: String) -> Bool {
        megatron.feature == "checkpoint formats (--ckpt-format)" && !checkpointConversionFlags.contains(name)
    }

    /// `--ckpt-format torch` (or another of Megatron's formats this build does not write) counts with the other
    /// checkpoint-format flags: refused only when the run saves or loads.
    static func unwrittenCheckpointFormat(_ unsupported: UnsupportedFeature, as name: String) -> UnsupportedFeature? {
        guard name == "--ckpt-format" else { return nil }
        return UnsupportedFeature(feature: "checkpoint formats (--ckpt-format)", usage: unsupported.usage)
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
