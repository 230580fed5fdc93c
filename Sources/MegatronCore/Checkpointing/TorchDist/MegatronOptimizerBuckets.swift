import Foundation
import MegatronTensor

/// Where Megatron-LM's optimizers keep each parameter's state: the order its GPTModel registers parameters (the
/// legacy optimizer's ids follow it, the distributed optimizer's buckets hold it reversed) and the buckets' flat
/// layout (`dp_reshardable`).
extension MegatronOptimizerState {
    /// A layer's parameters in the order Megatron's local-spec TransformerLayer registers them (our names).
    static let layerOrder = [
        "input_layernorm.weight", "input_layernorm.bias",
        "self_attention.linear_proj.weight", "self_attention.linear_proj.bias",
        "self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias",
        "self_attention.q_layernorm.weight", "self_attention.q_layernorm.bias",
        "self_attention.k_layernorm.weight", "self_attention.k_layernorm.bias",
        "pre_mlp_layernorm.weight", "pre_mlp_layernorm.bias",
        "mlp.linear_fc1.weight", "mlp.linear_fc1.bias", "mlp.linear_fc2.weight", "mlp.linear_fc2.bias",
    ]
    /// The same under the Transformer Engine spec (Megatron's default `--transformer-impl`): the input norms are
    /// fused into `linear_qkv` / `linear_fc1`, whose modules create them before their weights. (Read from
    /// Transformer Engine's `LayerNormLinear`; only the local spec is checked against a checkpoint Megatron wrote.)
    static let transformerEngineLayerOrder = [
        "self_attention.linear_proj.weight", "self_attention.linear_proj.bias",
        "input_layernorm.weight", "input_layernorm.bias", "self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias",
        "self_attention.q_layernorm.weight", "self_attention.q_layernorm.bias",
        "self_attention.k_layernorm.weight", "self_attention.k_layernorm.bias",
        "pre_mlp_layernorm.weight", "pre_mlp_layernorm.bias",
        "mlp.linear_fc1.weight", "mlp.linear_fc1.bias", "mlp.linear_fc2.weight", "mlp.linear_fc2.bias",
    ]
    static let before = ["embedding.word_embeddings.weight", "embedding.position_embeddings.weight"]
    static let after = ["decoder.final_layernorm.weight", "decoder.final_layernorm.bias", "output_layer.weight"]

    /// `names` (our parameter names) in Megatron's registration order under the local or the Transformer Engine
    /// spec; a name outside the dense GPT layout throws.
    static func registrationOrder(_ names: [String], transformerEngine: Bool) throws -> [String] {
        let layerOrder = transformerEngine ? transformerEngineLayerOrder : layerOrder
        func rank(_ name: String) throws -> [Int] {
            if let i = before.firstIndex(of: name) { return [0, i] }
            if let i = after.firstIndex(of: name) { return [2, i] }
            if let (layer, rest) = MegatronGPTLayout.splitLayer(name), let i = layerOrder.firstIndex(of: rest) { return [1, layer, i] }
            throw NotCarried("holds \(name), whose place in Megatron's parameter order this build does not know")
        }
        return try names.map { ($0, try rank($0)) }.sorted { $0.1.lexicographicallyPrecedes($1.1) }.map(\.0)
    }

    /// The distributed optimizer's `dp_reshardable` state: per bucket `optimizer.distributed.dp_group_idx_0.gbuf_idx_0
    /// .dtype_<…>.bucket_idx_<b>.<param|exp_avg|exp_avg_sq>`, flat, holding the parameters in reverse registration
    /// order (of the layer spec `args.transformer_impl` names), each at the next multiple of 64 elements, a bucket
    /// ending where its last parameter does. Each
    /// parameter was saved as its own chunk: a parameter expected where no chunk of its size starts means another
    /// order (another layer spec), and nothing is read.
    static func bucketState(_ reader: DistributedCheckpointReader, parameters: [(String, [Int])], contents: DistributedCheckpoint.Contents,
                            lowPrecision: Bool, stateNames: [String]) throws -> [String: Tensor] {
        let keys = contents.tensors.keys.filter { $0.hasPrefix(bucketPrefix) }
        let buffers = Set(keys.map { $0.components(separatedBy: ".bucket_idx_")[0] })
        guard buffers.count == 1, let buffer = buffers.first else {
            throw NotCarried("has \(buffers.count) gradient buffers or model-parallel groups (\(buffers.sorted().joined(separator: ", "))); "
                + "this build reads one (a run without tensor, pipeline or expert parallelism, one dtype)")
        }
        let shapes = Dictionary(uniqueKeysWithValues: parameters)
        // Megatron's default implementation when its args do not say.
        let impl = contents.common["args"]?.attribute("transformer_impl")?.stringValue ?? "transformer_engine"
        let spec = impl == "transformer_engine" ? "Transformer Engine" : "local"
        var order = try registrationOrder(parameters.map(\.0), transformerEngine: impl == "transformer_engine").reversed().makeIterator()
        var out: [String: Tensor] = [:]
        var next = order.next()
        for bucket in 0... {
            let kinds = keys.filter { $0.hasPrefix("\(buffer).bucket_idx_\(bucket).") }.map { String($0.dropFirst("\(buffer).bucket_idx_\(bucket).".count)) }
            guard let anyKind = kinds.first else { break }
            let flat = "\(buffer).bucket_idx_\(bucket).\(anyKind)"
            let size = contents.tensors[flat]!.count
            let chunks = Set(reader.chunkBoxes(of: flat).map { [$0.offsets[0], $0.sizes[0]] })
            var position = 0
            while let name = next, position < size {
                let count = shapes[name]!.reduce(1, *)
                position = (position + 63) / 64 * 64
                guard chunks.contains([position, count]) else {
                    throw NotCarried("does not hold \(name) where Megatron's \(spec)-spec parameter order puts it (bucket \(bucket), "
                        + "element \(position)); save it with --dist-ckpt-optim-fully-reshardable")
                }
                for kind in kinds {
                    guard let ours = ourName(kind, stateNames, lowPrecision: lowPrecision) else { continue }
                    let values = contents.tensors["\(buffer).bucket_idx_\(bucket).\(kind)"]!
                    out["optimizer.\(ours).\(name)"] = values.narrowed(0, start: position, length: count).contiguous().reshaped(shapes[name]!)
                }
                position += count
                next = order.next()
            }
        }
        if let missing = next { throw NotCarried("ends before \(missing)'s state") }
        return out
    }

    /// The legacy optimizer's param groups as (id, our name, shape) per group: a group with weight decay holds the
    /// model's matrices and embeddings, one without it the biases and other 1-D parameters (Megatron's default
    /// `no_weight_decay_cond`), each in model order.
    static func legacyGroups(_ groups: PickleValue?, modelOrder: [(String, [Int])]) throws -> [[(Int, String, [Int])]] {
        guard let groups = groups?.elements else { throw NotCarried("has no param_groups") }
        var remaining = [false: modelOrder.filter { !isNoDecay($0) }, true: modelOrder.filter(isNoDecay)]
        return try groups.map { group in
            guard let ids = group["params"]?.intArray else { throw NotCarried("has a param group without parameter ids") }
            let noDecay = (group["wd_mult"]?.doubleValue ?? 1) == 0
            guard remaining[noDecay]!.count >= ids.count else {
                throw NotCarried("has param groups this build cannot match to the model's parameters (\(ids.count) ids in a group "
                    + "\(noDecay ? "without" : "with") weight decay)")
            }
            let members = remaining[noDecay]!.prefix(ids.count)
            remaining[noDecay]!.removeFirst(ids.count)
            return zip(ids, members).map { ($0, $1.0, $1.1) }
        }
    }

    static func isNoDecay(_ parameter: (String, [Int])) -> Bool { parameter.0.hasSuffix(".bias") || parameter.1.count == 1 }
}
