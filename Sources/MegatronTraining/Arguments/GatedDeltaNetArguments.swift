import MegatronCore
import MegatronCUDA
import MegatronTensor

/// On a GPU, Gated DeltaNet sizes its CUDA kernels take (one thread carries a state column of at most 256 keys,
/// a block at most 1024 value columns); refused at start-up otherwise.
func checkGatedDeltaNetKernels(_ config: TransformerConfig, on device: Device) throws {
    guard device != .cpu, let gdn = config.gatedDeltaNet, gdn.layers.contains(true) else { return }
    if gdn.keyHeadDim > GatedDeltaRuleProblem.maxKeyDim || gdn.valueHeadDim > GatedDeltaRuleProblem.maxValueDim {
        throw ArgumentError("--linear-key-head-dim \(gdn.keyHeadDim) / --linear-value-head-dim \(gdn.valueHeadDim): the GPU "
            + "kernels take at most \(GatedDeltaRuleProblem.maxKeyDim) / \(GatedDeltaRuleProblem.maxValueDim); "
            + "choose smaller heads, or train on the CPU (--device cpu)")
    }
}

extension PretrainArguments {
    /// The Gated DeltaNet layers `--experimental-attention-variant gated_delta_net` (or `gdn`) asks for, with
    /// Megatron's checks of the `--linear-*` flags; nil without the variant (the `--linear-*` flags are then unused,
    /// as in Megatron).
    func gatedDeltaNetConfig() throws -> GatedDeltaNetConfig? {
        guard let variant = experimentalAttentionVariant else { return nil }
        guard let frequency = linearAttentionFreq else {
            throw ArgumentError("--experimental-attention-variant \(variant.rawValue) needs --linear-attention-freq (which layers are "
                + "Gated DeltaNet and which attention), as in Megatron")
        }
        let config = GatedDeltaNetConfig(layers: try linearAttentionLayers(frequency), convKernelDim: linearConvKernelDim,
                                         keyHeadDim: linearKeyHeadDim, valueHeadDim: linearValueHeadDim,
                                         numKeyHeads: linearNumKeyHeads, numValueHeads: linearNumValueHeads)
        for (flag, value) in [("--linear-conv-kernel-dim", linearConvKernelDim), ("--linear-key-head-dim", linearKeyHeadDim),
                              ("--linear-value-head-dim", linearValueHeadDim), ("--linear-num-key-heads", linearNumKeyHeads),
                              ("--linear-num-value-heads", linearNumValueHeads)] where value <= 0 {
            throw ArgumentError("\(flag) must be positive, got \(value)")
        }
        guard linearNumValueHeads % linearNumKeyHeads == 0 else {
            throw ArgumentError("--linear-num-value-heads (\(linearNumValueHeads)) must be a multiple of --linear-num-key-heads (\(linearNumKeyHeads))")
        }
        let tp = tensorModelParallelSize
        for (flag, heads) in [("--linear-num-key-heads", linearNumKeyHeads), ("--linear-num-value-heads", linearNumValueHeads)]
        where heads % tp != 0 {
            throw ArgumentError("\(flag) (\(heads)) must be divisible by --tensor-model-parallel-size (\(tp))")
        }
        return config
    }

    /// Per layer, whether `--linear-attention-freq` makes it Gated DeltaNet: an integer N makes every N-th layer
    /// attention; a list (Python's syntax, e.g. `([1]*3+[0]*1)*3`) gives 1 (Gated DeltaNet) or 0 per layer.
    private func linearAttentionLayers(_ text: String) throws -> [Bool] {
        try LayerPatternExpression.layers(text, flag: "--linear-attention-freq", numLayers: numLayers, one: "Gated DeltaNet",
                                          zero: "attention") { GatedDeltaNetConfig.pattern(frequency: $0, numLayers: numLayers) }
    }
}
