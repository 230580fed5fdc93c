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
    /// Modules whose `_extra_state` Megatron requests for each layer (a superset: unrequested objects are ignored).
    static let extraStateModules = ["self_attention.linear_qkv", "self_attention.linear_proj", "self_attention.core_attention",
                                    "mlp.linear_fc1", "mlp.linear_fc2"]

    /// Where a parameter lies in torch_dist: its key, and for a stacked layer parameter its index on the
    /// prepended layer axis (the tensor's global shape is then `[numLayers] + shape`).
    public struct Placement: Equatable, Sendable {
        public var key: String
        public var layer: Int?
    }

    /// The torch_dist placement of every parameter of `shapes` (our names, per layer, global shapes): the layers
    /// stacked when every layer present has the same parameters and shapes, else kept per layer. A pipeline stage
    /// passes its own layers (global indices): they are its boxes of the layer axis; and `homogeneous`, whether the
    /// whole model's layers are alike, since the few it holds may be alike where the model's are not.
    public static func placements(_ shapes: [String: [Int]], numLayers: Int, homogeneous wholeModel: Bool? = nil) throws -> [String: Placement] {
        var layers = [String: [Int: [Int]]]()
        var perLayer = [Int: Set<String>]()
        for (name, shape) in shapes {
            guard let (layer, rest) = splitLayer(name) else { continue }
            guard layer < numLayers else { throw CheckpointError("\(name): layer \(layer) of a \(numLayers)-layer model") }
            layers[teName(rest), default: [:]][layer] = shape
            perLayer[layer, default: []].insert(teName(rest))
        }
        let homogeneous = wholeModel ?? (Set(perLayer.values).count <= 1 && layers.values.allSatisfy { Set($0.values).count == 1 })
        var out: [String: Placement] = [:]
        for name in shapes.keys {
            guard let (layer, rest) = splitLayer(name) else { out[name] = Placement(key: name, layer: nil); continue }
            out[name] = homogeneous ? Placement(key: layerPrefix + teName(rest), layer: layer)
                : Placement(key: "\(layerPrefix)\(layer).\(teName(rest))", layer: nil)
        }
        return out
    }

    /// `state` (our names, per layer) as torch_dist keys and tensors.
    public static func sharded(_ state: [String: Tensor], numLayers: Int) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var stacks: [String: [Int: Tensor]] = [:]
        for (name, placement) in try placements(state.mapValues(\.shape), numLayers: numLayers) {
            let t = state[name]!
            if let layer = placement.layer { stacks[placement.key, default: [:]][layer] = t } else { out[placement.key] = t }
        }
        for (key, layers) in stacks {
            out[key] = Ops.concat(layers.keys.sorted().map { layers[$0]!.to(.cpu).madeContiguous().reshaped([1] + layers[$0]!.shape) }, dim: 0)
        }
        return out
    }

    /// torch_dist keys and tensors back to our per-layer names (stacked keys split along their first axis).
    public static func unsharded(_ tensors: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (key, t) in tensors {
            let (names, stacked) = localNames(key, shape: t.shape)
            for (i, name) in names.enumerated() {
                out[name] = stacked ? t.narrowed(0, start: i, length: 1).madeContiguous().reshaped(Array(t.shape.dropFirst())) : t
            }
        }
        return out
    }

    /// The per-layer names and shapes `unsharded` gives for torch_dist tensors of `shapes`, without reading them.
    public static func unshardedShapes(_ shapes: [String: [Int]]) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for (key, shape) in shapes {
            let (names, stacked) = localNames(key, shape: shape)
            for name in names { out[name] = stacked ? Array(shape.dropFirst()) : shape }
        }
        return out
    }

    /// Our names for the torch_dist tensor `key` of `shape`: one, or for a stacked key one per entry of its layer axis.
    static func localNames(_ key: String, shape: [Int]) -> (names: [String], stacked: Bool) {
        guard key.hasPrefix(layerPrefix) else { return ([key], false) }
        if let (layer, rest) = splitLayer(key) { return (["\(layerPrefix)\(layer).\(localName(rest))"], false) }
        let rest = localName(String(key.dropFirst(layerPrefix.count)))
        return ((0..<(shape.first ?? 0)).map { "\(layerPrefix)\($0).\(rest)" }, true)
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

    /// `_extra_state` objects for every layer, empty (`[None]`), under their unique keys.
    public static func extraStateObjects(numLayers: Int) -> [String: PickleValue] {
        var out: [String: PickleValue] = [:]
        for module in extraStateModules {
            for i in 0..<numLayers { out["\(layerPrefix)\(module)._extra_state/shard_\(i)_\(numLayers)"] = .list([.none]) }
        }
        return out
    }

    static func splitLayer(_ name: String) -> (Int, String)? {
        guard name.hasPrefix(layerPrefix) else { return nil }
        let rest = name.dropFirst(layerPrefix.count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]) else { return nil }
        return (layer, String(rest[rest.index(after: dot)...]))
    }

    static func teName(_ local: String) -> String { renames.first { $0.0 == local }?.1 ?? local }
    static func localName(_ te: String) -> String { renames.first { $0.1 == te }?.0 ?? te }
}
