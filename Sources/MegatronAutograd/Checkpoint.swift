import MegatronTensor

/// Activation checkpointing: runs `body` without keeping its intermediate activations and runs it again,
/// recording, when the backward pass reaches it.
///
/// Random draws inside `body` must come from `generators`: their offsets are rewound for the replay so
/// dropout masks repeat exactly. Parameters used inside `body` receive their gradients during the replay.
///
/// ```swift
/// let y = checkpoint([x], generators: [dropoutRNG]) { inputs in [layer(inputs[0])] }[0]
/// ```
public func checkpoint(_ inputs: [Tensor], generators: [PhiloxGenerator] = [],
                       _ body: @escaping ([Tensor]) -> [Tensor]) -> [Tensor] {
    guard GradMode.isEnabled, inputs.contains(where: \.requiresGrad) else { return body(inputs) }
    let startOffsets = generators.map(\.offset)
    let saved = inputs.map { $0.detached() }
    let needsGrad = inputs.map(\.requiresGrad)
    let outputs = withoutGrad { body(saved) }
    return record("checkpoint", inputs: inputs, outputs: outputs) { gradOutputs in
        let resumeOffsets = generators.map(\.offset)
        for (g, o) in zip(generators, startOffsets) { g.offset = o }
        defer { for (g, o) in zip(generators, resumeOffsets) { g.offset = o } }
        let replayInputs = zip(saved, needsGrad).map { t, needs in
            var leaf = t.detached()
            leaf.requiresGrad = needs
            return leaf
        }
        let replayed = withGrad { body(replayInputs) }
        let live = zip(replayed, gradOutputs).filter { $0.0.requiresGrad }
        if !live.isEmpty { Tensor.backward(live.map(\.0), gradients: live.map(\.1)) }
        return replayInputs.map { $0.requiresGrad ? $0.grad : nil }
    }
}
