import MegatronTensor

/// One recorded operation of the autograd graph: where its inputs' gradients go, and the rule that turns
/// the gradients of its outputs into gradients of its inputs.
public final class Node: GradientFunction {
    /// Where an input's gradient flows: into another node's output slot, or into a leaf's `.grad`.
    enum Edge {
        case node(Node, Int)
        case leaf(AutogradMeta)
    }

    public let name: String
    let edges: [Edge?]
    let outputShapes: [[Int]]
    let outputTypes: [DType]
    let outputDevices: [Device]
    /// Gradients of the inputs (nil where an input needs none) from the gradients of all outputs and the
    /// leaf buffers the pass lets it accumulate into.
    private(set) var rule: (([Tensor], LeafGradientBuffers) -> [InputGradient?])?

    init(name: String, edges: [Edge?], outputs: [Tensor],
         rule: @escaping ([Tensor], LeafGradientBuffers) -> [InputGradient?]) {
        self.name = name
        self.edges = edges
        self.outputShapes = outputs.map(\.shape)
        self.outputTypes = outputs.map(\.dtype)
        self.outputDevices = outputs.map(\.device)
        self.rule = rule
    }

    /// Applies the rule; without `retainGraph` it then drops the rule and the tensors it saved.
    func apply(_ gradOutputs: [Tensor], buffers: LeafGradientBuffers, retainGraph: Bool) -> [InputGradient?] {
        guard let rule else {
            preconditionFailure("backward through \(name) a second time: its saved tensors were freed; pass retainGraph: true")
        }
        if !retainGraph { self.rule = nil }
        return rule(gradOutputs, buffers)
    }
}

/// What a node's backward hands one of its inputs.
public enum InputGradient {
    /// A contribution to add to the input's gradient.
    case tensor(Tensor)
    /// Nothing to add: the backward has already accumulated its contribution into the leaf buffer that
    /// `LeafGradientBuffers.accumulationTarget(forInput:)` offered for this input.
    case accumulatedInPlace
}

/// The leaf gradient buffers a backward pass lets one node write into directly (Megatron's gradient
/// accumulation fusion: a linear layer's wgrad GEMM adds into the fp32 main grad, so no 16-bit weight
/// gradient is ever made and no separate accumulate kernel runs).
///
/// A buffer is offered for input `i` only when that input is a leaf whose `.grad` is already a contiguous
/// fp32 tensor (a main grad set by the optimizer or by DDP) and the graph is not retained. A tied weight
/// used twice may take it at each use; contributions returned as tensors are added to it at the end.
///
/// ```swift
/// record("linear", inputs: [x, w], output: y) { g, buffers in
///     guard let mainGrad = buffers.accumulationTarget(forInput: 1) else { return [.tensor(gx), .tensor(gw)] }
///     addWeightGradient(g, into: mainGrad)
///     return [.tensor(gx), .accumulatedInPlace]
/// }
/// ```
public struct LeafGradientBuffers {
    let targets: [Tensor?]

    /// The fp32 `.grad` of input `i` when the node may add its contribution straight into it, else nil.
    /// A node that uses it must return `.accumulatedInPlace` for that input.
    public func accumulationTarget(forInput i: Int) -> Tensor? {
        i < targets.count ? targets[i] : nil
    }
}

/// Records `outputs` as made from `inputs` by an operation whose backward is `rule`.
///
/// Does nothing (and returns the outputs unchanged) when grad mode is off or no input needs a gradient.
/// `rule` receives one gradient per output (zeros for outputs not used downstream) and returns one per input.
public func record(_ name: String, inputs: [Tensor], outputs: [Tensor],
                   rule: @escaping ([Tensor]) -> [Tensor?]) -> [Tensor] {
    recordNode(name, inputs: inputs, outputs: outputs, rule: { g, _ in rule(g).map { $0.map(InputGradient.tensor) } })
}

/// `record` for the common one-output case.
public func record(_ name: String, inputs: [Tensor], output: Tensor, rule: @escaping (Tensor) -> [Tensor?]) -> Tensor {
    record(name, inputs: inputs, outputs: [output]) { rule($0[0]) }[0]
}

/// `record` for one output, with a backward that may accumulate a leaf's gradient in place: `rule` gets
/// the output's gradient and the buffers the pass offers (see `LeafGradientBuffers`).
public func recordAccumulating(_ name: String, inputs: [Tensor], output: Tensor,
                               rule: @escaping (Tensor, LeafGradientBuffers) -> [InputGradient?]) -> Tensor {
    recordNode(name, inputs: inputs, outputs: [output], rule: { g, buffers in rule(g[0], buffers) })[0]
}

private func recordNode(_ name: String, inputs: [Tensor], outputs: [Tensor],
                        rule: @escaping ([Tensor], LeafGradientBuffers) -> [InputGradient?]) -> [Tensor] {
    guard GradMode.isEnabled, inputs.contains(where: \.requiresGrad) else { return outputs }
    let edges: [Node.Edge?] = inputs.map { input in
        guard let meta = input.autograd, meta.requiresGrad else { return nil }
        if let node = meta.gradFunction as? Node { return .node(node, meta.outputIndex) }
        return .leaf(meta)
    }
    let node = Node(name: name, edges: edges, outputs: outputs, rule: rule)
    return outputs.enumerated().map { i, out in
        var t = out.detached()
        t.autograd = AutogradMeta(requiresGrad: true, gradFunction: node, outputIndex: i)
        return t
    }
}

extension Tensor {
    /// Whether gradients flow to (or through) this tensor. Setting it on a tensor makes that tensor a leaf.
    public var requiresGrad: Bool {
        get { autograd?.requiresGrad ?? false }
        set {
            if let meta = autograd, meta.gradFunction == nil {
                meta.requiresGrad = newValue
            } else {
                autograd = newValue ? AutogradMeta(requiresGrad: true) : nil
            }
        }
    }

    /// The gradient accumulated by backward passes (leaves only).
    public var grad: Tensor? {
        get { autograd?.grad }
        nonmutating set { autograd?.grad = newValue }
    }

    /// True for tensors that need gradients but were not computed by a recorded op (parameters).
    public var isLeaf: Bool { autograd?.gradFunction == nil }

    /// Registers `hook`, called with this leaf's finished gradient at the end of each backward pass's work on it.
    public func onGradReady(_ hook: @escaping (Tensor) -> Void) {
        precondition(isLeaf && requiresGrad, "gradient hooks go on leaves that require grad")
        autograd!.gradReadyHooks.append(hook)
    }
}
