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

    /// `state` (our names, per layer) as torch_dist keys and tensors.
    public static func sharded(_ state: [String: Tensor], numLayers: Int) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var layers = [[String: Tensor]](repeating: [:], count: numLayers)
        for (name, t) in state {
            guard let (layer, rest) = splitLayer(name) else { out[name] = t; continue }
            guard layer < numLayers else { throw CheckpointError("\(name): layer \(layer) of a \(numLayers)-layer model") }
            layers[layer][teName(rest)] = t
        }
        let homogeneous = layers.allSatisfy { Set($0.keys) == Set(layers[0].keys) && $0.allSatisfy { layers[0][$0.key]?.shape == $0.value.shape } }
        for (i, layer) in layers.enumerated() {
            for (rest, t) in layer where !homogeneous { out["\(layerPrefix)\(i).\(rest)"] = t }
        }
        if homogeneous, numLayers > 0 {
            for rest in layers[0].keys {
                out[layerPrefix + rest] = Ops.concat(layers.map { $0[rest]!.to(.cpu).contiguous().reshaped([1] + $0[rest]!.shape) }, dim: 0)
            }
        }
        return out
    }

    /// torch_dist keys and tensors back to our per-layer names (stacked keys split along their first axis).
    public static func unsharded(_ tensors: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (key, t) in tensors {
            guard key.hasPrefix(layerPrefix) else { out[key] = t; continue }
            if let (layer, rest) = splitLayer(key) {
                out["\(layerPrefix)\(layer).\(localName(rest))"] = t
            } else {
                let rest = localName(String(key.dropFirst(layerPrefix.count)))
                for i in 0..<t.size(0) { out["\(layerPrefix)\(i).\(rest)"] = t.narrowed(0, start: i, length: 1).contiguous().reshaped(Array(t.shape.dropFirst())) }
            }
        }
        return out
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
