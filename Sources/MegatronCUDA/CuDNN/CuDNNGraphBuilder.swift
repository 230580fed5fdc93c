import CCUDA

/// Turns a `CuDNNGraphSpec` into backend descriptors and finalized execution plans: tensors,
/// operations, the operation graph, engine configs from heuristic mode A, and the first `limit`
/// configs whose plans finalize, in the heuristic's order (limit 1 is cudnn-frontend's default
/// policy; more are candidates for timing them, as cudnn-frontend's autotune does).
enum CuDNNGraphBuilder {
    static func plans(_ spec: CuDNNGraphSpec, cudnn: CuDNNLibrary, handle: cudnnHandle_t, limit: Int = 1) throws
        -> [CuDNNExecutionPlan] {
        let (graph, keep) = try operationGraph(spec, cudnn: cudnn, handle: handle)
        return try finalizedPlans(graph, cudnn: cudnn, handle: handle, limit: limit).map { plan, workspace in
            CuDNNExecutionPlan(cudnn: cudnn, plan: plan, workspaceBytes: workspace, spec: spec, keepAlive: keep + [graph])
        }
    }

    /// The finalized operation graph and every descriptor it refers to (which must outlive it).
    /// Without a handle only the tensors and operations are finalized (`graph` is nil): cuDNN checks
    /// those on the host, so tests can run this part with no GPU.
    static func operationGraph(_ spec: CuDNNGraphSpec, cudnn: CuDNNLibrary, handle: cudnnHandle_t?) throws
        -> (graph: CuDNNDescriptor, keep: [CuDNNDescriptor]) {
        let (operations, keep) = try finalizedOperations(spec, cudnn: cudnn)
        let graph = try CuDNNDescriptor(cudnn, .operationGraph)
        if let handle { try graph.set(.operationGraphHandle, handle: handle) }
        try graph.set(.operationGraphOperations, descriptors: operations)
        try graph.finalize()
        return (graph, keep + operations)
    }

    /// Every operation descriptor of `spec`, finalized, and the tensor and settings descriptors they refer to.
    static func finalizedOperations(_ spec: CuDNNGraphSpec, cudnn: CuDNNLibrary) throws
        -> (operations: [CuDNNDescriptor], keep: [CuDNNDescriptor]) {
        var tensors: [Int64: CuDNNDescriptor] = [:]
        for tensor in spec.tensors { tensors[tensor.uid] = try makeTensor(tensor, cudnn) }
        var keep: [CuDNNDescriptor] = Array(tensors.values)
        var operations: [CuDNNDescriptor] = []
        for operation in spec.operations {
            do {
                let (made, settings) = try makeOperation(operation, tensors, cudnn)
                operations.append(made)
                keep += settings
            } catch var error as CuDNNError {
                error.call += " in operation \(operation.name)"
                throw error
            }
        }
        return (operations, keep)
    }

    static func makeTensor(_ tensor: CuDNNGraphSpec.Tensor, _ cudnn: CuDNNLibrary) throws -> CuDNNDescriptor {
        let d = try CuDNNDescriptor(cudnn, .tensor)
        try d.set(.tensorDataType, dataType: tensor.dataType)
        try d.set(.tensorDimensions, int64: tensor.dims)
        try d.set(.tensorStrides, int64: tensor.strides)
        try d.set(.tensorUniqueID, int64: [tensor.uid])
        try d.set(.tensorByteAlignment, int64: [16])
        try d.set(.tensorIsVirtual, bool: tensor.isVirtual)
        if tensor.scalar != nil { try d.set(.tensorIsByValue, bool: true) }
        try d.finalize()
        return d
    }

    /// The operation descriptor and the settings descriptors it refers to.
    static func makeOperation(_ operation: CuDNNGraphSpec.Operation, _ tensors: [Int64: CuDNNDescriptor],
                              _ cudnn: CuDNNLibrary) throws -> (CuDNNDescriptor, [CuDNNDescriptor]) {
        func t(_ uid: Int64) -> [CuDNNDescriptor] { [tensors[uid]!] }
        switch operation {
        case .matmul(_, let a, let b, let c):
            let settings = try CuDNNDescriptor(cudnn, .matmul)
            try settings.set(.matmulComputeType, dataType: .float)
            try settings.finalize()
            let op = try CuDNNDescriptor(cudnn, .operationMatmul)
            try op.set(.operationMatmulA, descriptors: t(a))
            try op.set(.operationMatmulB, descriptors: t(b))
            try op.set(.operationMatmulC, descriptors: t(c))
            try op.set(.operationMatmulDescriptor, descriptors: [settings])
            try op.finalize()
            return (op, [settings])
        case .pointwise(_, let mode, let x, let b, let tMask, let y, let computeType, let axis):
            let settings = try CuDNNDescriptor(cudnn, .pointwise)
            try settings.set(.pointwiseMode, .pointwiseMode, [mode.rawValue])
            try settings.set(.pointwiseMathPrecision, dataType: computeType)
            if let axis { try settings.set(.pointwiseAxis, int64: [axis]) }
            try settings.finalize()
            let op = try CuDNNDescriptor(cudnn, .operationPointwise)
            try op.set(.operationPointwiseDescriptor, descriptors: [settings])
            try op.set(.operationPointwiseX, descriptors: t(x))
            if let b { try op.set(.operationPointwiseB, descriptors: t(b)) }
            if let tMask { try op.set(.operationPointwiseT, descriptors: t(tMask)) }
            try op.set(.operationPointwiseY, descriptors: t(y))
            try op.finalize()
            return (op, [settings])
        case .reduction(_, let reduce, let x, let y):
            let settings = try CuDNNDescriptor(cudnn, .reduction)
            try settings.set(.reductionOperator, .reductionOperator, [reduce.rawValue])
            try settings.set(.reductionComputeType, dataType: .float)
            try settings.finalize()
            let op = try CuDNNDescriptor(cudnn, .operationReduction)
            try op.set(.operationReductionX, descriptors: t(x))
            try op.set(.operationReductionY, descriptors: t(y))
            try op.set(.operationReductionDescriptor, descriptors: [settings])
            try op.finalize()
            return (op, [settings])
        case .reshape(_, let x, let y):
            let op = try CuDNNDescriptor(cudnn, .operationReshape)
            try op.set(.operationReshapeX, descriptors: t(x))
            try op.set(.operationReshapeY, descriptors: t(y))
            try op.finalize()
            return (op, [])
        case .bernoulli(_, let probability, let seed, let offset, let y):
            let settings = try CuDNNDescriptor(cudnn, .rng)
            try settings.set(.rngDistribution, .rngDistribution, [CuDNNBackend.rngDistributionBernoulli])
            try settings.set(.rngBernoulliProbability, .double, [probability])
            try settings.finalize()
            let op = try CuDNNDescriptor(cudnn, .operationRng)
            try op.set(.operationRngY, descriptors: t(y))
            try op.set(.operationRngDescriptor, descriptors: [settings])
            try op.set(.operationRngSeed, descriptors: t(seed))
            try op.set(.operationRngOffset, descriptors: t(offset))
            try op.finalize()
            return (op, [settings])
        }
    }

    /// Asks heuristic mode A for engine configs, best first, and keeps the first `limit` that finalize
    /// into plans (with their workspace bytes); throws with every config's failure when none does.
    static func finalizedPlans(_ graph: CuDNNDescriptor, cudnn: CuDNNLibrary, handle: cudnnHandle_t, limit: Int) throws
        -> [(CuDNNDescriptor, Int)] {
        let heuristics = try CuDNNDescriptor(cudnn, .engineHeuristics)
        try heuristics.set(.engineHeuristicsOperationGraph, descriptors: [graph])
        try heuristics.set(.engineHeuristicsMode, .heuristicMode, [CuDNNBackend.heuristicModeA])
        try heuristics.finalize()
        let resultType = CuDNNBackend.AttributeType.backendDescriptor.rawValue, results = CuDNNBackend.Attribute.engineHeuristicsResults.rawValue
        var available: Int64 = 0
        try cudnn.check(cudnn.table.cudnnBackendGetAttribute(heuristics.pointer, results, resultType, 0, &available, nil),
                        "cudnnBackendGetAttribute(engine heuristics results count)")
        guard available > 0 else {
            throw CuDNNError(call: "engine heuristics", status: CuDNNBackend.statusNotSupported, message: "no engine config for this graph")
        }
        let configs = try (0..<available).map { _ in try CuDNNDescriptor(cudnn, .engineConfig) }
        var pointers = configs.map { Optional($0.pointer) }
        var returned: Int64 = 0
        try cudnn.check(cudnn.table.cudnnBackendGetAttribute(heuristics.pointer, results, resultType, available, &returned, &pointers),
                        "cudnnBackendGetAttribute(engine heuristics results)")
        var failures: [String] = [], plans: [(CuDNNDescriptor, Int)] = []
        for config in configs.prefix(Int(returned)) where plans.count < limit {
            do {
                let plan = try CuDNNDescriptor(cudnn, .executionPlan)
                try plan.set(.executionPlanHandle, handle: handle)
                try plan.set(.executionPlanEngineConfig, descriptors: [config])
                try plan.finalize()
                plans.append((plan, Int(try plan.int64(.executionPlanWorkspaceSize))))
            } catch let error as CuDNNError {
                failures.append(error.description)
            }
        }
        if !plans.isEmpty { return plans }
        throw CuDNNError(call: "execution plan", status: CuDNNBackend.statusNotSupported,
                         message: "none of \(returned) engine configs finalized: " + failures.joined(separator: "; "))
    }
}

/// A finalized execution plan with everything it refers to, the workspace it needs and the host
/// values of its by-value scalars.
final class CuDNNExecutionPlan {
    let cudnn: CuDNNLibrary
    let plan: CuDNNDescriptor
    let workspaceBytes: Int
    let spec: CuDNNGraphSpec
    private let keepAlive: [CuDNNDescriptor]
    /// Host copies of the by-value scalars, read by cudnnBackendExecute through the variant pack.
    private let scalars: [(uid: Int64, bytes: UnsafeMutableRawPointer)]

    init(cudnn: CuDNNLibrary, plan: CuDNNDescriptor, workspaceBytes: Int, spec: CuDNNGraphSpec, keepAlive: [CuDNNDescriptor]) {
        (self.cudnn, self.plan, self.workspaceBytes, self.spec, self.keepAlive) = (cudnn, plan, workspaceBytes, spec, keepAlive)
        scalars = spec.scalarTensors.map { tensor in
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
            switch tensor.scalar! {
            case .float(let value): bytes.storeBytes(of: value, as: Float.self)
            case .int32(let value): bytes.storeBytes(of: value, as: Int32.self)
            }
            return (tensor.uid, bytes)
        }
    }

    deinit { for scalar in scalars { scalar.bytes.deallocate() } }

    /// Enqueues the plan on the handle's stream with `addresses` for every device tensor of the graph.
    func execute(handle: cudnnHandle_t, addresses: [Int64: UInt64], workspace: UInt64) throws {
        let device = spec.deviceTensors.map(\.uid)
        if let missing = device.first(where: { addresses[$0] == nil }) {
            throw CuDNNError(call: "execute", status: -1, message: "no address for tensor uid \(missing)")
        }
        let uids = device + scalars.map(\.uid)
        let pointers: [UnsafeMutableRawPointer?] = device.map { UnsafeMutableRawPointer(bitPattern: UInt(addresses[$0]!)) }
            + scalars.map { Optional($0.bytes) }
        let pack = try CuDNNDescriptor(cudnn, .variantPack)
        try pack.set(.variantPackUniqueIDs, int64: uids)
        try pack.set(.variantPackDataPointers, .voidPointer, pointers)
        try pack.set(.variantPackWorkspace, .voidPointer, [UnsafeMutableRawPointer(bitPattern: UInt(workspace))])
        try pack.finalize()
        try cudnn.check(cudnn.table.cudnnBackendExecute(handle, plan.pointer, pack.pointer), "cudnnBackendExecute")
    }
}
