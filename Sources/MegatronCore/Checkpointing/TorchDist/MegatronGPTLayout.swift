import Foundation
import MegatronTensor

/// A GPT model's parameters under Megatron-LM's checkpoint keys: Transformer Engine names for the fused norms
/// (`self_attention.linear_qkv.layer_norm_weight` for our `input_layernorm.weight`), and in `torch_dist` the
/// layers stacked into one `[L, …]` tensor per key (`decoder.layers.mlp.linear_fc1.weight`), or kept per layer
/// (`decoder.layers.3.…`) when the layers differ, as Megatron does for heterogeneous blocks.
public enum MegatronGPTLayout {
    static let layerPrefix = "decoder.layers."
    /// Our (local-spec) names and the Transformer Engine names Megatron's sharded checkpoints use.
    static let renames = [
        ("input_layernorm.weight", "self_attention.linear_qkv.layer_norm_weight"),
        ("input_layernorm.bias", "self_attention.linear_qkv.layer_norm_bias"),
        ("pre_mlp_layernorm.weight", "mlp.linear_fc1.layer_norm_weight"),
        ("pre_mlp_layernorm.bias", "mlp.linear_fc1.layer_norm_bias"),
    ]
    /// Attention modules whose `_extra_state` Megatron requests for each layer (with the MLP's, `extraStateObjects`).
    static let attentionExtraStateModules = ["self_attention.linear_qkv", "self_attention.linear_proj", "self_attention.core_attention"]

    /// Where a parameter lies in torch_dist: its key, and the axes Megatron prepends to its shape, with its index on
    /// each: the layer axis of stacked layers (`numLayers` long), then for a routed expert's weight the expert axis
    /// (`numExperts` long: Megatron's `SequentialMLP` and `TEGroupedMLP` keep one key per weight for all experts,
    /// `…mlp.experts.experts.linear_fc1.weight`, each expert's box at its global number).
    public struct Placement: Equatable, Sendable {
        public var key: String
        /// The index on each prepended axis (layer, then expert); empty for a tensor saved as it is.
        public var leading: [Int]
        /// The length of each prepended axis.
        public var leadingShape: [Int]
        /// The key Megatron's Transformer Engine spec gives the same tensor, where it differs from the local spec's
        /// `key`: a mixture-of-experts layer's pre-MLP norm is its own module there (`pre_mlp_layernorm.weight`),
        /// while the local spec maps it onto `mlp.linear_fc1.layer_norm_weight` as for a dense layer. Written under
        /// both, a checkpoint loads into either spec (Megatron ignores keys it does not request).
        public var alias: String? = nil
    }

    /// A mixture-of-experts layer's pre-MLP norm under the local spec's keys, and under the Transformer Engine spec's.
    static let localSpecMoENorm = "mlp.linear_fc1.layer_norm_", transformerEngineMoENorm = "pre_mlp_layernorm."

    /// Our routed experts' names (`mlp.experts.local_experts.<global number>.`) and Megatron's key for all of them.
    static let localExpertsInfix = "mlp.experts.local_experts."
    static let expertInfix = "mlp.experts.experts."

    /// The torch_dist placement of every parameter of `shapes` (our names, per layer, global shapes): the layers
    /// stacked when every layer present has the same parameters and shapes, else kept per layer. A pipeline stage
    /// passes its own layers (global indices): they are its boxes of the layer axis; and `homogeneous`, whether the
    /// whole model's layers are alike, since the few it holds may be alike where the model's are not. Under expert
    /// parallelism `shapes` holds this rank's experts only (by global number): `numExperts` gives the expert axis
    /// (by default, one past the highest expert number present).
    public static func placements(_ shapes: [String: [Int]], numLayers: Int, numExperts: Int? = nil,
                                  homogeneous wholeModel: Bool? = nil) throws -> [String: Placement] {
        var layers = [String: [Int: [Int]]]()
        var perLayer = [Int: Set<String>]()
        var experts = [String: (key: String, expert: Int?)]()
        for (name, shape) in shapes {
            guard let (layer, rest) = splitLayer(name) else { continue }
            guard layer < numLayers else { throw CheckpointError("\(name): layer \(layer) of a \(numLayers)-layer model") }
            let split = splitExpert(rest)
            experts[name] = (teName(split.rest), split.expert)
            layers[teName(split.rest), default: [:]][layer] = shape
            perLayer[layer, default: []].insert(teName(split.rest))
        }
        let expertCount = numExperts ?? (experts.values.compactMap(\.expert).max().map { $0 + 1 } ?? 0)
        let homogeneous = wholeModel ?? (Set(perLayer.values).count <= 1 && layers.values.allSatisfy { Set($0.values).count == 1 })
        var out: [String: Placement] = [:]
        for name in shapes.keys {
            guard let (layer, _) = splitLayer(name), let (rest, expert) = experts[name] else {
                out[name] = Placement(key: name, leading: [], leadingShape: [])
                continue
            }
            if let expert, expert >= expertCount {
                throw CheckpointError("\(name): expert \(expert) of a \(expertCount)-expert layer")
            }
            var placement = homogeneous ? Placement(key: layerPrefix + rest, leading: [layer], leadingShape: [numLayers])
                : Placement(key: "\(layerPrefix)\(layer).\(rest)", leading: [], leadingShape: [])
            if let expert { (placement.leading, placement.leadingShape) = (placement.leading + [expert], placement.leadingShape + [expertCount]) }
            if rest.hasPrefix(localSpecMoENorm), perLayer[layer]?.contains("mlp.router.weight") == true {
                placement.alias = placement.key.replacingOccurrences(of: localSpecMoENorm, with: transformerEngineMoENorm)
            }
            out[name] = placement
        }
        return out
    }

    /// `state` (our names, per layer) as torch_dist keys and tensors; every expert of every layer must be present.
    /// `aliases`: the Transformer Engine spec's keys too (`Placement.alias`; for model weights, not optimizer state).
    public static func sharded(_ state: [String: Tensor], numLayers: Int, numExperts: Int? = nil, aliases: Bool = true) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var stacks: [String: (shape: [Int], entries: [Int: Tensor])] = [:]
        for (name, placement) in try placements(state.mapValues(\.shape), numLayers: numLayers, numExperts: numExperts) {
            let t = state[name]!
            for key in [placement.key] + (aliases ? [placement.alias].compactMap { $0 } : []) {
                guard !placement.leading.isEmpty else { out[key] = t; continue }
                let flat = zip(placement.leading, placement.leadingShape).reduce(0) { $0 * $1.1 + $1.0 }
                stacks[key, default: (placement.leadingShape, [:])].entries[flat] = t
            }
        }
        for (key, stack) in stacks {
            let count = stack.shape.reduce(1, *)
            guard stack.entries.count == count, let first = stack.entries[0] else {
                throw CheckpointError("\(key): \(stack.entries.count) of its \(count) layers or experts are given; a whole-model save needs them all")
            }
            let parts = (0..<count).map { stack.entries[$0]!.to(.cpu).madeContiguous().reshaped([1] + first.shape) }
            out[key] = Ops.concat(parts, dim: 0).reshaped(stack.shape + first.shape)
        }
        return out
    }

    /// torch_dist keys and tensors back to our per-layer names (stacked keys split along their layer and expert axes).
    public static func unsharded(_ tensors: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (key, t) in tensors {
            let (names, axes) = localNames(key, shape: t.shape)
            guard axes > 0 else { out[names[0]] = t; continue }
            let rest = Array(t.shape.dropFirst(axes))
            let rows = t.madeContiguous().reshaped([names.count] + rest)
            for (i, name) in names.enumerated() { out[name] = rows.narrowed(0, start: i, length: 1).madeContiguous().reshaped(rest) }
        }
        return out
    }

    /// The per-layer names and shapes `unsharded` gives for torch_dist tensors of `shapes`, without reading them.
    public static func unshardedShapes(_ shapes: [String: [Int]]) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for (key, shape) in shapes {
            let (names, axes) = localNames(key, shape: shape)
            for name in names { out[name] = Array(shape.dropFirst(axes)) }
        }
        return out
    }

    /// Our names for the torch_dist tensor `key` of `shape`, one per entry of its prepended axes (row-major: layer,
    /// then expert), and how many axes were prepended.
    static func localNames(_ key: String, shape: [Int]) -> (names: [String], axes: Int) {
        guard key.hasPrefix(layerPrefix) else { return ([key], 0) }
        var prefixes: [String], rest: String, axes: Int
        if let (layer, inLayer) = splitLayer(key) {
            (prefixes, rest, axes) = (["\(layerPrefix)\(layer)."], inLayer, 0)
        } else {
            (prefixes, rest, axes) = ((0..<(shape.first ?? 0)).map { "\(layerPrefix)\($0)." }, String(key.dropFirst(layerPrefix.count)), 1)
        }
        if rest.hasPrefix(expertInfix), shape.count > axes {
            let count = shape[axes]
            let tail = String(rest.dropFirst(expertInfix.count))
            prefixes = prefixes.flatMap { p in (0..<count).map { "\(p)\(localExpertsInfix)\($0)." } }
            rest = tail
            axes += 1
        }
        let local = localName(rest)
        return (prefixes.map { $0 + local }, axes)
    }

    /// The legacy `torch` format's model dict (our names already: local spec, per layer) without `_extra_state`.
    public static func legacyModel(_ model: PickleValue, source: String) throws -> [String: Tensor] {
        guard let pairs = model.pairs else { throw CheckpointError("\(source): 'model' is not a state dict") }
        var out: [String: Tensor] = [:]
        for pair in pairs {
            guard let key = pair.key.stringValue else { throw CheckpointError("\(source): a model key is not a string") }
            if key.hasSuffix("._extra_state") { continue }
            guard let t = pair.value.tensorValue else {
                throw CheckpointError("\(source): model.\(key) is not a tensor of a dtype this build reads")
            }
            out[key] = t
        }
        return out
    }

    /// `_extra_state` objects, empty (`[None]`), for every layer's linear modules under the unique keys Megatron
    /// requests (a superset: unrequested objects are ignored, missing ones fail its load): sharded like the layer's
    /// tensors, `decoder.layers.<module>._extra_state/shard_<i>_<L>` when the layers are stacked, else
    /// `decoder.layers.<i>.<module>._extra_state/shard_0_1`; a routed expert's with its expert axis appended
    /// (`…mlp.experts.experts.linear_fc1._extra_state/shard_<i>.<e>_<L>.<E>`).
    public static func extraStateObjects(_ config: TransformerConfig) -> [String: PickleValue] {
        let numLayers = config.numLayers, stacked = ShardedGPTLayout.layersAlike(config)
        var out: [String: PickleValue] = [:]
        func add(_ layer: Int, _ module: String, expert: (index: Int, count: Int)? = nil) {
            var (offsets, shape) = stacked ? ([layer], [numLayers]) : ([], [])
            if let expert { (offsets, shape) = (offsets + [expert.index], shape + [expert.count]) }
            if offsets.isEmpty { (offsets, shape) = ([0], [1]) }
            let key = stacked ? layerPrefix + module : "\(layerPrefix)\(layer).\(module)"
            let dotted = { (v: [Int]) in v.map(String.init).joined(separator: ".") }
            out["\(key)._extra_state/shard_\(dotted(offsets))_\(dotted(shape))"] = .list([.none])
        }
        for layer in 0..<numLayers {
            for module in attentionExtraStateModules { add(layer, module) }
            guard let moe = config.moe, config.isMoELayer(layer) else {
                for module in ["mlp.linear_fc1", "mlp.linear_fc2"] { add(layer, module) }
                continue
            }
            if moe.sharedExpertIntermediateSize != nil {
                for module in ["mlp.shared_experts.linear_fc1", "mlp.shared_experts.linear_fc2"] { add(layer, module) }
            }
            for e in 0..<moe.numExperts {
                for module in ["linear_fc1", "linear_fc2"] { add(layer, expertInfix + module, expert: (e, moe.numExperts)) }
            }
        }
        return out
    }

    static func splitLayer(_ name: String) -> (Int, String)? {
        guard name.hasPrefix(layerPrefix) else { return nil }
        let rest = name.dropFirst(layerPrefix.count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]) else { return nil }
        return (layer, String(rest[rest.index(after: dot)...]))
    }

    /// A layer's parameter name without its routed expert's number (`mlp.experts.local_experts.3.linear_fc1.weight`
    /// is expert 3's `mlp.experts.experts.linear_fc1.weight`), and that number; other names unchanged.
    static func splitExpert(_ inLayer: String) -> (rest: String, expert: Int?) {
        guard inLayer.hasPrefix(localExpertsInfix) else { return (inLayer, nil) }
        let tail = inLayer.dropFirst(localExpertsInfix.count)
        guard let dot = tail.firstIndex(of: "."), let expert = Int(tail[..<dot]) else { return (inLayer, nil) }
        return (expertInfix + tail[tail.index(after: dot)...], expert)
    }

    static func teName(_ local: String) -> String { renames.first { $0.0 == local }?.1 ?? local }
    static func localName(_ te: String) -> String { renames.first { $0.1 == te }?.0 ?? te }
}
