/// What a pipeline layout cannot schedule, said as Megatron says it.
public struct PipelineScheduleError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// The order in which a pipeline rank runs its forward and backward passes and exchanges activations and
/// gradients with its neighbours, as data: Megatron's schedules (`megatron.core.pipeline_parallel.schedules`)
/// step by step, so the executor runs a list and tests compare the list with Megatron's own.
///
/// ```swift
/// let steps = try PipelineSchedule.oneFOneB(stages: 4, rank: 0, microBatches: 8)
/// print(steps.map(\.description).joined(separator: " "))   // F0.0 x sF0.0 F1.0 x sF1.0 ...
/// ```
public enum PipelineSchedule {
    /// Gradient accumulation without pipelining: each micro-batch's forward, then its backward.
    public static func noPipelining(microBatches: Int) -> [PipelineStep] {
        (0..<microBatches).flatMap { m -> [PipelineStep] in
            [.forward(PipelineWork(microBatch: m, chunk: 0)), .backward(PipelineWork(microBatch: m, chunk: 0))]
        }
    }

    /// 1F1B (`forward_backward_pipelining_without_interleaving`): `stages - rank - 1` warm-up forwards, then
    /// one forward and one backward at a time, then the cool-down backwards; micro-batches in order.
    public static func oneFOneB(stages: Int, rank: Int, microBatches: Int) throws -> [PipelineStep] {
        try checkRank(stages: stages, rank: rank, microBatches: microBatches)
        let first = rank == 0, last = rank == stages - 1
        let warmup = min(stages - rank - 1, microBatches), remaining = microBatches - warmup
        var steps = PipelineStepList()
        func work(_ m: Int) -> PipelineWork { PipelineWork(microBatch: m, chunk: 0) }
        for m in 0..<warmup {
            steps.exchange(receiveForward: !first)
            steps.append(.forward(work(m)))
            steps.exchange(sendForward: last ? nil : work(m))
        }
        if remaining > 0 { steps.exchange(receiveForward: !first) }
        for i in 0..<remaining {
            let forward = work(i + warmup), backward = work(i)
            steps.append(.forward(forward))
            if !last { steps.exchange(sendForward: forward, receiveBackward: true) }
            steps.append(.backward(backward))
            let isLast = i == remaining - 1
            if !first { steps.exchange(sendBackward: backward, receiveForward: !isLast) }
        }
        for m in remaining..<microBatches {
            steps.exchange(receiveBackward: !last)
            steps.append(.backward(work(m)))
            steps.exchange(sendBackward: first ? nil : work(m))
        }
        return steps.steps
    }

    /// Interleaved 1F1B (`forward_backward_pipelining_with_interleaving`): each rank holds `chunks` model
    /// chunks; micro-batches run in groups of `groupSize` per chunk (Megatron's
    /// `--microbatch-group-size-per-virtual-pipeline-stage`, default `stages`). Transfers are batched, both
    /// directions in one exchange, or with `overlapCommunication` (Megatron's default for this schedule) one
    /// exchange per direction right after the pass whose result it sends, its receives waited for only when used;
    /// `overlapWarmupFlush` (Megatron's `overlap_p2p_comm_warmup_flush`, which needs `overlapCommunication`) also
    /// asks for the warm-up's activations and the flush's gradients before the passes that precede their use.
    public static func interleaved(stages: Int, rank: Int, microBatches: Int, chunks: Int, groupSize: Int? = nil,
                                   overlapCommunication: Bool = false, overlapWarmupFlush: Bool = false) throws -> [PipelineStep] {
        try checkRank(stages: stages, rank: rank, microBatches: microBatches)
        let plan = try InterleavedPlan(stages: stages, rank: rank, microBatches: microBatches, chunks: chunks,
                                       groupSize: groupSize ?? stages, overlapCommunication: overlapCommunication,
                                       warmupFlush: overlapWarmupFlush)
        return plan.steps()
    }

    /// Megatron's `get_schedule_table`: for each group of `groupSize` micro-batches, every chunk in turn runs
    /// the group's micro-batches; the last group takes the remainder.
    public static func table(microBatches: Int, chunks: Int, groupSize: Int) -> [PipelineWork] {
        stride(from: 0, to: microBatches, by: groupSize).flatMap { start -> [PipelineWork] in
            let end = start + groupSize >= microBatches ? microBatches : start + groupSize
            return (0..<chunks).flatMap { chunk in (start..<end).map { PipelineWork(microBatch: $0, chunk: chunk) } }
        }
    }

    static func checkRank(stages: Int, rank: Int, microBatches: Int) throws {
        guard stages >= 1, (0..<stages).contains(rank) else {
            throw PipelineScheduleError(description: "pipeline rank \(rank) is outside the \(stages) pipeline stages")
        }
        guard microBatches >= 1 else {
            throw PipelineScheduleError(description: "a pipeline schedule needs at least one micro-batch, got \(microBatches)")
        }
    }
}

/// Steps being collected; exchanges that move nothing are dropped, as Megatron issues no transfer for them.
struct PipelineStepList {
    var steps: [PipelineStep] = []

    mutating func append(_ step: PipelineStep) { steps.append(step) }

    mutating func exchange(sendBackward: PipelineWork? = nil, receiveForward: Bool = false, sendForward: PipelineWork? = nil,
                           receiveBackward: Bool = false) {
        let x = PipelineExchange(sendBackward: sendBackward, receiveForward: receiveForward, sendForward: sendForward,
                                 receiveBackward: receiveBackward)
        if !x.isEmpty { steps.append(.exchange(x)) }
    }
}
