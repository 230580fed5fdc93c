import MegatronTensor

/// State a checkpoint carries beside a GPT model's parameters: each router's aux-loss-free expert bias
/// (`--moe-router-enable-expert-bias`), a buffer the optimizer never sees, under Megatron's state-dict name
/// `decoder.layers.<i>.mlp.router.expert_bias` (fp32, `[experts]`). Without it a resumed run would route with a
/// bias back at zero.
///
/// ```swift
/// for (name, bias) in model.checkpointBuffers() { tensors["model." + name] = bias }
/// try model.loadCheckpointBuffers(state, source: directory.path)
/// ```
extension GPTModel {
    /// The buffers a checkpoint of this model holds, by name (none without an expert bias).
    public func checkpointBuffers() -> [(String, Tensor)] {
        namedRouters().compactMap { path, router in router.expertBias.map { (path + ".expert_bias", $0) } }
    }

    /// Whether `name` is a checkpoint buffer's name (of any model): such entries are not parameters.
    public static func isCheckpointBuffer(_ name: String) -> Bool { name.hasSuffix(".router.expert_bias") }

    /// Loads this model's checkpoint buffers from `state` (entries of other buffers are ignored, as Megatron ignores
    /// what it does not ask for). A missing or misshapen one is an error naming `source` and the key.
    public func loadCheckpointBuffers(_ state: [String: Tensor], source: String) throws {
        for (path, router) in namedRouters() where router.expertBias != nil {
            let name = path + ".expert_bias"
            guard let bias = state[name] else {
                throw CheckpointError("\(source): holds no \(name), the expert bias --moe-router-enable-expert-bias routes with "
                    + "(saved without that flag, or by a build that did not save it); drop the flag to load it")
            }
            guard bias.shape == [router.moe.numExperts] else {
                throw CheckpointError("\(source): \(name) has shape \(bias.shape), expected [\(router.moe.numExperts)] (--num-experts)")
            }
            router.loadExpertBias(bias.dtype == .float32 ? bias.madeContiguous() : bias.cast(to: .float32))
        }
    }

    /// `state` split into parameters and checkpoint buffers.
    public static func splitBuffers(_ state: [String: Tensor]) -> (parameters: [String: Tensor], buffers: [String: Tensor]) {
        (state.filter { !isCheckpointBuffer($0.key) }, state.filter { isCheckpointBuffer($0.key) })
    }
}

extension Module {
    /// The routers below this module with their dotted paths.
    fileprivate func namedRouters(prefix: String = "") -> [(String, TopKRouter)] {
        children.flatMap { name, child in
            (child as? TopKRouter).map { [(prefix + name, $0)] } ?? child.namedRouters(prefix: prefix + name + ".")
        }
    }
}
