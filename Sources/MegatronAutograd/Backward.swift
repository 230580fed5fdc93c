import MegatronTensor

extension Tensor {
    /// Backpropagates from this tensor, accumulating into the `.grad` of every leaf it depends on.
    ///
    /// `gradient` seeds the pass (a pipeline stage passes the gradient it received); it defaults to one for
    /// a single-element tensor. Without `retainGraph` the graph's saved tensors are freed as it goes.
    ///
    /// ```swift
    /// var w = Tensor.normal([4, 4], generator: gen); w.requiresGrad = true
    /// (x.matmul(w)).sum().backward()
    /// print(w.grad!.floats())
    /// ```
    public func backward(gradient: Tensor? = nil, retainGraph: Bool = false) {
        if gradient == nil {
            precondition(count == 1, "backward() without a gradient needs a one-element tensor, got shape \(shape)")
        }
        Tensor.backward([self], gradients: [gradient ?? Tensor.ones(shape, dtype: dtype, device: device)], retainGraph: retainGraph)
    }

    /// Backpropagates from several outputs at once (e.g. a pipeline stage's outputs).
    public static func backward(_ roots: [Tensor], gradients: [Tensor], retainGraph: Bool = false) {
        precondition(roots.count == gradients.count, "\(roots.count) roots but \(gradients.count) gradients")
        var engine = BackwardPass(retainGraph: retainGraph)
        for (root, g) in zip(roots, gradients) {
            precondition(root.requiresGrad, "backward from a tensor that does not require grad")
            precondition(root.shape == g.shape, "gradient shape \(g.shape) differs from tensor shape \(root.shape)")
            engine.seed(root, g)
        }
        engine.run()
    }
}

/// One backward pass: counts each node's and leaf's incoming gradients, then runs nodes once all have arrived.
struct BackwardPass {
    let retainGraph: Bool
    private var pending: [ObjectIdentifier: Int] = [:]
    private var buffers: [ObjectIdentifier: [Tensor?]] = [:]
    private var leafGrads: [ObjectIdentifier: Tensor] = [:]
    /// Leaves a node has added a contribution into in place (their `.grad` holds it already).
    private var inPlaceLeaves = Set<ObjectIdentifier>()
    private var ready: [Node] = []
    private var seeded: [Node] = []
    private var counted = Set<ObjectIdentifier>()

    init(retainGraph: Bool) { self.retainGraph = retainGraph }

    mutating func seed(_ root: Tensor, _ gradient: Tensor) {
        let meta = root.autograd!
        guard let node = meta.gradFunction as? Node else {
            countLeaf(meta, extra: 1)
            deliver(to: .leaf(meta), .tensor(gradient))
            return
        }
        countEdges(from: node)
        accumulate(node, meta.outputIndex, gradient)
        seeded.append(node)
    }

    mutating func run() {
        for node in seeded where pending[ObjectIdentifier(node), default: 0] == 0 && !ready.contains(where: { $0 === node }) {
            ready.append(node)
        }
        while let node = ready.popLast() {
            let id = ObjectIdentifier(node)
            let slots = buffers.removeValue(forKey: id) ?? []
            let gradOutputs = node.outputShapes.indices.map { i in
                (i < slots.count ? slots[i] : nil) ?? Tensor.zeros(node.outputShapes[i], dtype: node.outputTypes[i], device: node.outputDevices[i])
            }
            let buffers = leafBuffers(for: node)
            let gradInputs = node.apply(gradOutputs, buffers: buffers, retainGraph: retainGraph)
            precondition(gradInputs.count == node.edges.count, "\(node.name) returned \(gradInputs.count) gradients for \(node.edges.count) inputs")
            for (i, (edge, g)) in zip(node.edges, gradInputs).enumerated() {
                guard let edge else { continue }
                if case .accumulatedInPlace? = g {
                    precondition(buffers.accumulationTarget(forInput: i) != nil,
                                 "\(node.name) accumulated input \(i)'s gradient in place, but no buffer was offered for it")
                }
                deliver(to: edge, g)
            }
        }
    }

    /// The leaf buffers `node` may accumulate into: for each input, its leaf's fp32 `.grad`. A tied weight's
    /// other contributions still arrive as tensors and `finish` adds their sum into the same buffer, so
    /// every contribution lands once whatever the order.
    private func leafBuffers(for node: Node) -> LeafGradientBuffers {
        guard !retainGraph else { return LeafGradientBuffers(targets: []) }
        return LeafGradientBuffers(targets: node.edges.map { edge in
            guard case .leaf(let meta)? = edge, let grad = meta.gradBuffer(), grad.dtype == .float32, grad.isContiguous else {
                return nil
            }
            return grad
        })
    }

    /// Hands one gradient contribution along an edge; a node or leaf whose contributions are all in goes next.
    private mutating func deliver(to edge: Node.Edge, _ gradient: InputGradient?) {
        switch edge {
        case .node(let next, let index):
            switch gradient {
            case .tensor(let g)?: accumulate(next, index, g)
            case .accumulatedInPlace?: preconditionFailure("\(next.name)'s input gradient was accumulated in place")
            case nil: break
            }
            let id = ObjectIdentifier(next)
            pending[id]! -= 1
            if pending[id] == 0 { ready.append(next) }
        case .leaf(let meta):
            let id = ObjectIdentifier(meta)
            pending[id]! -= 1
            switch gradient {
            case .tensor(let g)?:
                leafGrads[id] = leafGrads[id].map { Ops.binary($0, g, .add) } ?? g
            case .accumulatedInPlace?:
                inPlaceLeaves.insert(id)
            case nil:
                break
            }
            guard pending[id] == 0 else { return }
            let addedInPlace = inPlaceLeaves.remove(id) != nil
            if let total = leafGrads.removeValue(forKey: id) {
                finish(meta, total)
            } else if addedInPlace {
                gradReady(meta)
            }
        }
    }

    private func finish(_ meta: AutogradMeta, _ gradient: Tensor) {
        if let existing = meta.gradBuffer() {
            Ops.accumulate(gradient, into: existing)
        } else {
            meta.grad = gradient.madeContiguous().detached()
        }
        gradReady(meta)
    }

    /// Runs the leaf's hooks (DDP's bucket reduction) once its gradient for this pass is in `.grad`.
    private func gradReady(_ meta: AutogradMeta) {
        for hook in meta.gradReadyHooks { hook(meta.grad!) }
    }

    private mutating func accumulate(_ node: Node, _ index: Int, _ gradient: Tensor) {
        let id = ObjectIdentifier(node)
        var slots = buffers[id] ?? Array(repeating: nil, count: node.outputShapes.count)
        slots[index] = slots[index].map { Ops.binary($0, gradient, .add) } ?? gradient
        buffers[id] = slots
    }

    /// Counts, for every node and leaf reachable from `root`, how many gradient contributions it will receive.
    private mutating func countEdges(from root: Node) {
        guard counted.insert(ObjectIdentifier(root)).inserted else { return }
        var stack = [root]
        while let node = stack.popLast() {
            for edge in node.edges {
                switch edge {
                case .node(let next, _)?:
                    pending[ObjectIdentifier(next), default: 0] += 1
                    if counted.insert(ObjectIdentifier(next)).inserted { stack.append(next) }
                case .leaf(let meta)?:
                    countLeaf(meta, extra: 1)
                case nil:
                    break
                }
            }
        }
    }

    private mutating func countLeaf(_ meta: AutogradMeta, extra: Int) {
        pending[ObjectIdentifier(meta), default: 0] += extra
    }
}
