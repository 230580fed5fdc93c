import MegatronParallel
import MegatronTensor

extension GPTModel {
    /// Runs the GEMMs of the transformer layers' linear layers (QKV, projection, FC1, FC2) in FP8 as `recipe`
    /// says, each layer with its own scaling state; layers `recipe` keeps in high precision, the embeddings,
    /// the output layer, attention's own products and MoE experts stay in the model's dtype, as in Megatron.
    /// `amaxGroup` is the group delayed-scaling amaxes are reduced over (`ParallelState.tensorWithDataAndContext`).
    ///
    /// ```swift
    /// model.enableFP8(FP8Recipe(format: .hybrid), amaxGroup: parallel.tensorWithDataAndContext)
    /// ```
    public func enableFP8(_ recipe: FP8Recipe, amaxGroup: Communicator?) {
        for (local, layer) in decoder.layers.enumerated()
        where recipe.runsInFP8(layer: decoder.layerIndices[local], of: config.numLayers) {
            if let attention = layer.attention {
                attention.linearQKV.fp8 = FP8LinearScaling(recipe: recipe, amaxGroup: amaxGroup)
                attention.linearProj.fp8 = FP8LinearScaling(recipe: recipe, amaxGroup: amaxGroup)
            }
            if let mlp = layer.mlp as? MLP {
                mlp.linearFC1.fp8 = FP8LinearScaling(recipe: recipe, amaxGroup: amaxGroup)
                mlp.linearFC2.fp8 = FP8LinearScaling(recipe: recipe, amaxGroup: amaxGroup)
            }
        }
    }

    /// The FP8 linear layers by their path with the whole model's layer numbering
    /// (`decoder.layers.3.mlp.linear_fc1`).
    public var fp8Layers: [(String, FP8LinearScaling)] {
        decoder.layers.enumerated().flatMap { local, layer -> [(String, FP8LinearScaling)] in
            let prefix = "decoder.layers.\(decoder.layerIndices[local])."
            var found: [(String, FP8LinearQuantizer?)] = []
            if let attention = layer.attention {
                found += [("self_attention.linear_qkv", attention.linearQKV.fp8), ("self_attention.linear_proj", attention.linearProj.fp8)]
            }
            if let mlp = layer.mlp as? MLP { found += [("mlp.linear_fc1", mlp.linearFC1.fp8), ("mlp.linear_fc2", mlp.linearFC2.fp8)] }
            return found.compactMap { name, quantizer in (quantizer as? FP8LinearScaling).map { (prefix + name, $0) } }
        }
    }

    /// The delayed-scaling states of this rank's FP8 layers, by `<layer path>.<input|weight|grad_output>`; empty
    /// under tensorwise scaling, which keeps none. Folds pending amaxes in first: every rank of the amax group
    /// must call it together.
    public func fp8ScalingStates() -> [String: FP8ScalingState] {
        var states: [String: FP8ScalingState] = [:]
        for (path, layer) in fp8Layers where layer.input.recipe.scaling == .delayed {
            for (name, tensor) in layer.tensors { states["\(path).\(name)"] = tensor.savedState() }
        }
        return states
    }

    /// Restores the states `fp8ScalingStates` saved; every delayed-scaling tensor of this rank must be in `states`.
    public func restoreFP8ScalingStates(_ states: [String: FP8ScalingState]) throws {
        for (path, layer) in fp8Layers where layer.input.recipe.scaling == .delayed {
            for (name, tensor) in layer.tensors {
                guard let state = states["\(path).\(name)"] else {
                    throw ConfigError("the checkpoint holds no FP8 scaling state for \(path).\(name): it was saved without "
                        + "--fp8-recipe delayed, or with other --first-last-layers-bf16 settings")
                }
                try tensor.restore(state)
            }
        }
    }
}
