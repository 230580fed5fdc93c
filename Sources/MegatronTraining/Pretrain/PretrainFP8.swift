import MegatronCore
import MegatronParallel
import MegatronTensor

extension Pretrainer {
    /// Turns on the FP8 recipe the `--fp8-*` flags ask for (nothing without `--fp8-format`), delayed-scaling
    /// amaxes reduced over the tensor x data x context-parallel group as in Megatron. FP8 GEMMs need a GPU of
    /// compute capability 8.9 or newer (Ada, Hopper); the CPU runs the same math as a reference.
    static func enableFP8(_ arguments: PretrainArguments, on model: GPTModel, device: Device, parallel: ParallelState,
                          log: (String) -> Void) throws {
        guard let recipe = try arguments.fp8TrainingRecipe() else { return }
        if case .cuda(let ordinal) = device {
            let capability = try CUDAContext.shared(ordinal: ordinal).device.properties.computeCapability
            guard capability.major * 10 + capability.minor >= 89 else {
                throw ArgumentError("--fp8-format \(recipe.format.rawValue): FP8 GEMMs need a GPU of compute capability 8.9 or "
                    + "newer (Ada, Hopper); this one is \(capability.major).\(capability.minor)")
            }
        }
        model.enableFP8(recipe, amaxGroup: parallel.tensorWithDataAndContext)
        log("> FP8: --fp8-format \(recipe.format.rawValue) --fp8-recipe \(recipe.scaling.rawValue), "
            + "\(model.fp8Layers.count) linear layers' GEMMs in FP8")
    }

    /// Folds every delayed-scaling amax recorded since the last update into its scale, so a checkpoint holds
    /// settled states; a collective over the amax group, so every rank calls it as the save begins. The
    /// scales are those the next casts would have made anyway.
    func settleFP8Scaling() {
        for (_, layer) in model.fp8Layers {
            for (_, tensor) in layer.tensors { tensor.foldPendingAmax() }
        }
    }

    /// The FP8 scaling states a checkpoint records; nil without delayed scaling.
    func fp8ScalingForCheckpoint() -> [String: FP8ScalingState]? {
        let states = model.fp8ScalingStates()
        return states.isEmpty ? nil : states
    }

    /// Restores the FP8 scaling states `checkpoint` recorded. A checkpoint without any (saved without FP8, or
    /// with tensorwise scaling) starts the scales fresh, as Transformer Engine does without `_extra_state`.
    func restoreFP8Scaling(_ checkpoint: LoadedCheckpoint) throws {
        guard !model.fp8Layers.isEmpty else { return }
        guard let states = try checkpoint.metadata.manifest().fp8Scaling else {
            if arguments.fp8Recipe == .delayed { log("  the checkpoint holds no FP8 scaling state: delayed scales start at 1") }
            return
        }
        do {
            try model.restoreFP8ScalingStates(states)
        } catch let error as ConfigError {
            throw CheckpointError("\(checkpoint.directory.path): \(error.description)")
        }
    }
}
