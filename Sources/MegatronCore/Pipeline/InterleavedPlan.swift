/// Megatron's interleaved 1F1B for one rank: the schedule table of virtual micro-batches, the warm-up count,
/// and which transfers each step pairs, batched (`--no-overlap-p2p-communication`) or overlapped, in the steady
/// state only or also in the warm-up and flush (`--overlap-p2p-communication-warmup-flush`).
struct InterleavedPlan {
    let stages: Int, rank: Int, microBatches: Int, chunks: Int
    let table: [PipelineWork]
    let warmup: Int
    let allWarmup: Bool
    /// Megatron's `overlap_p2p_comm`: each direction's transfers are posted right after the pass that
    /// produces them and waited for only before the pass that uses them.
    let overlapCommunication: Bool
    /// Megatron's `overlap_p2p_comm_warmup_flush`: in the warm-up every stage but the first asks for its next
    /// activation before running a forward, and in the flush every stage but the last asks for its next gradient
    /// before running a backward, so that the transfer overlaps the pass instead of following it.
    let warmupFlush: Bool

    init(stages: Int, rank: Int, microBatches: Int, chunks: Int, groupSize: Int, overlapCommunication: Bool = false,
         warmupFlush: Bool = false) throws {
        guard !warmupFlush || overlapCommunication else {
            throw PipelineScheduleError(description: "overlapping the warm-up and flush transfers (--overlap-p2p-communication-warmup-flush) "
                + "needs overlapped transfers: drop --no-overlap-p2p-communication")
        }
        guard chunks >= 1 else {
            throw PipelineScheduleError(description: "an interleaved schedule needs at least one model chunk per rank, got \(chunks)")
        }
        guard groupSize >= stages, groupSize <= microBatches else {
            throw PipelineScheduleError(description: "the micro-batches of a group per virtual pipeline stage "
                + "(--microbatch-group-size-per-virtual-pipeline-stage \(groupSize)) must lie in [PP=\(stages), M=\(microBatches)]")
        }
        let remainder = microBatches % groupSize
        guard remainder == 0 || remainder >= stages else {
            throw PipelineScheduleError(description: "\(microBatches) micro-batches in groups of \(groupSize) leave a last group of "
                + "\(remainder), fewer than the \(stages) pipeline stages: choose a micro-batch count whose remainder is 0 or at least \(stages)")
        }
        self.stages = stages
        self.rank = rank
        self.microBatches = microBatches
        self.chunks = chunks
        self.overlapCommunication = overlapCommunication
        self.warmupFlush = warmupFlush
        table = PipelineSchedule.table(microBatches: microBatches, chunks: chunks, groupSize: groupSize)
        let total = microBatches * chunks
        let wanted = stages > 1 ? (stages - rank - 1) * 2 + (chunks - 1) * groupSize : 0
        allWarmup = wanted >= total
        warmup = min(wanted, total)
    }

    var total: Int { microBatches * chunks }

    /// The pass a virtual micro-batch runs: forwards walk the chunks up, backwards down.
    func work(_ k: Int, forward: Bool) -> PipelineWork {
        let entry = table[k % total]
        return PipelineWork(microBatch: entry.microBatch, chunk: forward ? entry.chunk : chunks - 1 - entry.chunk)
    }

    /// Whether a chunk's forward starts the whole model (nothing to receive) or its output ends it.
    func startsModel(_ chunk: Int) -> Bool { chunk == 0 && rank == 0 }
    func endsModel(_ chunk: Int) -> Bool { chunk == chunks - 1 && rank == stages - 1 }

    /// Whether the neighbour sends something for the step after virtual micro-batch `k` (Megatron's
    /// `recv_tensor_from_previous_stage`): the leading stage of a direction runs `stages - 1` steps ahead of
    /// the stage that feeds it, and the chunk that ends the model in that direction sends nothing.
    func receives(after k: Int, forward: Bool) -> Bool {
        let leading = forward ? rank == 0 : rank == stages - 1
        guard leading else { return true }
        guard k >= stages - 1 else { return false }
        let lastChunk = forward ? chunks - 1 : 0
        return work(k - (stages - 1), forward: forward).chunk != lastChunk
    }

    func steps() -> [PipelineStep] {
        var steps = PipelineStepList()
        steps.exchange(receiveForward: !startsModel(0))
        if overlapCommunication {
            overlappedWarmupAndSteadyState(&steps)
        } else {
            batchedWarmupAndSteadyState(&steps)
        }
        if allWarmup { steps.exchange(receiveBackward: !endsModel(chunks - 1)) }
        let prefetchGradients = warmupFlush && rank != stages - 1
        for k in (total - warmup)..<total {
            let backward = work(k, forward: false)
            let receive = receives(after: k, forward: false) && k != total - 1
            if prefetchGradients { steps.exchange(receiveBackward: receive) }
            steps.append(.backward(backward))
            steps.exchange(sendBackward: startsModel(backward.chunk) ? nil : backward, receiveBackward: receive && !prefetchGradients)
        }
        return steps.steps
    }

    /// Each exchange pairs both directions (`send_forward_backward_recv_forward_backward`).
    private func batchedWarmupAndSteadyState(_ steps: inout PipelineStepList) {
        for k in 0..<warmup {
            let forward = work(k, forward: true)
            let receive = receives(after: k, forward: true) && k != total - 1
            steps.append(.forward(forward))
            let send = endsModel(forward.chunk) ? nil : forward
            if k == warmup - 1 && !allWarmup {
                steps.exchange(receiveForward: receive, sendForward: send, receiveBackward: rank != stages - 1)
            } else {
                steps.exchange(receiveForward: receive, sendForward: send)
            }
        }
        let remaining = total - warmup
        for k in 0..<remaining {
            let forward = work(k + warmup, forward: true), backward = work(k, forward: false)
            steps.append(.forward(forward))
            steps.append(.backward(backward))
            steps.exchange(sendBackward: startsModel(backward.chunk) ? nil : backward,
                           receiveForward: receives(after: k + warmup, forward: true) && k != remaining - 1,
                           sendForward: endsModel(forward.chunk) ? nil : forward,
                           receiveBackward: receives(after: k, forward: false))
        }
    }

    /// Forward transfers follow each forward and backward transfers each backward (Megatron's
    /// `pp_post_forward` / `pp_post_backward`); the first gradient is asked for at the end of the warm-up. With
    /// `warmupFlush` a warm-up forward's next activation is asked for before the forward, except on the first
    /// stage, which asks after it as before.
    private func overlappedWarmupAndSteadyState(_ steps: inout PipelineStepList) {
        let prefetchActivations = warmupFlush && rank != 0
        for k in 0..<warmup {
            let forward = work(k, forward: true)
            let receive = receives(after: k, forward: true) && k != total - 1
            if prefetchActivations { steps.exchange(receiveForward: receive) }
            steps.append(.forward(forward))
            steps.exchange(receiveForward: receive && !prefetchActivations, sendForward: endsModel(forward.chunk) ? nil : forward)
            if k == warmup - 1 && !allWarmup { steps.exchange(receiveBackward: rank != stages - 1) }
        }
        let remaining = total - warmup
        for k in 0..<remaining {
            let forward = work(k + warmup, forward: true), backward = work(k, forward: false)
            steps.append(.forward(forward))
            steps.exchange(receiveForward: receives(after: k + warmup, forward: true) && k != remaining - 1,
                           sendForward: endsModel(forward.chunk) ? nil : forward)
            steps.append(.backward(backward))
            steps.exchange(sendBackward: startsModel(backward.chunk) ? nil : backward,
                           receiveBackward: receives(after: k, forward: false))
        }
    }
}
