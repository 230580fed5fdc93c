/// One GEMM of a group: its problem, operand pointers and beta (1 accumulates into D).
public struct GroupedGemmCall {
    public var problem: GemmProblem
    public var a: UInt64, b: UInt64, d: UInt64
    public var beta: Float

    public init(_ problem: GemmProblem, a: UInt64, b: UInt64, d: UInt64, beta: Float = 0) {
        self.problem = problem
        (self.a, self.b, self.d, self.beta) = (a, b, d, beta)
    }
}

/// Independent GEMMs of different shapes (the experts of an MoE layer, each on its own tokens) run
/// concurrently: each on one of a few side streams forked from the caller's stream and joined back into it,
/// so several small GEMMs share the GPU's SMs instead of each leaving most of them idle (Transformer
/// Engine's grouped GEMM does the same with its compute streams).
///
/// Memory stays ordered by the caller's stream: the side streams start after everything already enqueued on
/// it and the caller's stream waits for all of them before its next op, so tensors allocated and freed in its
/// order are never reused while a side stream still reads or writes them.
///
///     let grouped = try GroupedGemm(device: device, streams: 4)
///     try grouped.run(calls, gemm: gemm, on: stream)
public final class GroupedGemm {
    public let device: CUDADevice
    private let streams: [CUDAStream]
    private let forked: CUDAEvent
    private let joined: [CUDAEvent]

    public init(device: CUDADevice, streams count: Int) throws {
        precondition(count > 0, "a grouped GEMM needs at least one side stream")
        self.device = device
        streams = try (0..<count).map { _ in try CUDAStream(device: device) }
        forked = try CUDAEvent(device: device, timing: false)
        joined = try streams.map { _ in try CUDAEvent(device: device, timing: false) }
    }

    /// Enqueues every call: on `stream` itself when there is only one, else round-robin over the side streams
    /// between a fork from and a join into `stream`. No host wait.
    public func run(_ calls: [GroupedGemmCall], gemm: CublasLtGemm, on stream: CUDAStream) throws {
        guard calls.count > 1 else {
            for call in calls { try enqueue(call, gemm, stream) }
            return
        }
        let used = min(streams.count, calls.count)
        try forked.record(on: stream)
        for side in streams.prefix(used) { try side.wait(for: forked) }
        for (index, call) in calls.enumerated() { try enqueue(call, gemm, streams[index % used]) }
        for (side, event) in zip(streams.prefix(used), joined) {
            try event.record(on: side)
            try stream.wait(for: event)
        }
    }

    private func enqueue(_ call: GroupedGemmCall, _ gemm: CublasLtGemm, _ stream: CUDAStream) throws {
        try gemm.run(call.problem, a: call.a, b: call.b, d: call.d, beta: call.beta, stream: stream)
    }
}
