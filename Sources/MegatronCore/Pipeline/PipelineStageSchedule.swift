import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// Runs one pipeline rank's schedule on its stage of the model: 1F1B (`PipelineSchedule.oneFOneB`) with one
/// model chunk, interleaved 1F1B (`PipelineSchedule.interleaved`) with several (virtual pipeline stages). Each
/// forward starts from the activation received from the previous stage (or the tokens in the first chunk of
/// the first stage), each backward from the output gradient received from the next stage (or the loss in the
/// last chunk of the last stage); exchanges go through `Communicator.batchSendRecv` on the pipeline group,
/// in Megatron's batch order. A micro-batch's activations are dropped as soon as its backward has run, so
/// only the schedule's in-flight micro-batches are alive.
///
/// With `overlapCommunication` (Megatron's `overlap_p2p_comm`, interleaved only) transfers are posted as the
/// schedule reaches them and a received tensor is waited for only when a pass uses it; otherwise each exchange
/// completes before the next step. `overlapWarmupFlush` (`overlap_p2p_comm_warmup_flush`) posts the warm-up's and
/// the flush's receives one pass earlier as well; the results are the same, only the waiting moves.
///
/// Activations travel as `activationShape` tensors of `dtype` (`GPTModel.stageActivationShape`, the same on
/// every stage). The last stage reports the loss; the other stages report zero, so that the step's sum over
/// the pipeline group gives every rank the last stage's loss.
///
/// On NCCL (one communicator per group, each on its own stream) the transfers cannot deadlock or cross:
/// - Each exchange is one `batchSendRecv` per communicator, one NCCL group, so a rank that sends to and
///   receives from a neighbour in the same step does both at once (separate calls would each wait for the
///   other rank's matching call, which waits behind its own first call: Megatron's reason for batching).
/// - The schedules pair exchanges: whatever rank r sends to r+1 in an exchange, r+1 receives in the exchange
///   at the same place of its own schedule (the schedule tests check the tables), so each rank's batches on a
///   communicator run in the same order as their partners' and every batch's partners are in flight together.
/// - NCCL pairs two ranks' sends and receives in issue order. With two stages and several chunks both
///   neighbours are one rank, so an activation and a gradient to it in one batch would cross; the gradients
///   take a group of their own (`gradientLink`). Its batch and the activations' batch of one exchange are on
///   two streams with no order between them, so issuing them in either order is safe.
/// - NCCL connects two ranks for point-to-point transfers at their first transfer, with both hosts inside
///   the call; a host that blocks there while its neighbour's host waits on a value from it would hang.
///   `init` connects every link once, all ranks together, before any schedule runs.
/// - The loss totals and the gradient reductions that follow the schedule (pipeline, data-parallel and
///   embedding groups) are issued by every member of each group in the same order after its last exchange.
/// `NCCLOrderCheck` replays a thread-rank run's calls under these rules (`PipelineCommunicationOrderTests`).
///
/// ```swift
/// step.schedule = try PipelineStageSchedule(pipeline: state.pipeline,
///                                           activationShape: model.stageActivationShape(batch: 2, seq: 128),
///                                           dtype: config.paramsDType, device: device, chunks: 2,
///                                           overlapCommunication: true)
/// ```
public final class PipelineStageSchedule: ForwardBackwardSchedule {
    public let pipeline: Communicator
    /// The group gradients travel on: `pipeline`, except with two stages and several model chunks, where both
    /// neighbours are the same rank and activations and gradients between the two must not share one queue
    /// (Megatron sends one direction over another group there too).
    let gradientLink: Communicator
    public let activationShape: [Int]
    public let dtype: DType
    public let device: Device
    /// Model chunks on this rank (virtual pipeline stages); 1 runs 1F1B.
    public let chunks: Int
    /// `--microbatch-group-size-per-virtual-pipeline-stage`; nil: the pipeline size.
    public let microBatchGroupSize: Int?
    public let overlapCommunication: Bool
    /// Whether the warm-up and flush post their receives ahead too (interleaved, with `overlapCommunication`).
    public let overlapWarmupFlush: Bool
    /// The most micro-batches (over all chunks) whose activations were alive at once in the last `run` (the
    /// 1F1B bound is the number of stages from this one to the last).
    public private(set) var peakLiveMicroBatches = 0
    /// When set, times how long this rank's compute waits for the transfers of its exchanges (`bench train`
    /// reports it per stage: the pipeline bubble plus the transfer time not hidden behind compute).
    public var waitClock: CommunicationWaitClock?

    /// Splits the pipeline group once more when two stages run several chunks, and connects the neighbours'
    /// links (every pipeline rank must build its schedule then, as for a collective).
    public init(pipeline: Communicator, activationShape: [Int], dtype: DType, device: Device, chunks: Int = 1,
                microBatchGroupSize: Int? = nil, overlapCommunication: Bool = false, overlapWarmupFlush: Bool = false) throws {
        guard chunks >= 1 else { throw PipelineScheduleError(description: "a pipeline rank needs at least one model chunk, got \(chunks)") }
        self.pipeline = pipeline
        self.activationShape = activationShape
        self.dtype = dtype
        self.device = device
        self.chunks = chunks
        self.microBatchGroupSize = microBatchGroupSize
        self.overlapCommunication = overlapCommunication && chunks > 1
        self.overlapWarmupFlush = overlapWarmupFlush && chunks > 1
        gradientLink = chunks > 1 && pipeline.size == 2 ? try pipeline.split(color: 0, key: pipeline.rank) : pipeline
        try connectNeighbours()
    }

    /// One tiny exchange with both ring neighbours on every link, all pipeline ranks at once, so that NCCL
    /// makes its point-to-point connections here and never inside the schedule, where a host waiting in a
    /// connection for a neighbour that waits on something else would hang (see the type's notes).
    private func connectNeighbours() throws {
        guard pipeline.size > 1 else { return }
        for link in gradientLink === pipeline ? [pipeline] : [pipeline, gradientLink] {
            func token() -> Tensor { Tensor.zeros([1], dtype: dtype, device: device) }
            try link.batchSendRecv([.send(token(), to: nextRank), .recv(into: token(), from: previousRank),
                                    .send(token(), to: previousRank), .recv(into: token(), from: nextRank)]).wait()
        }
    }

    /// This rank's steps for an iteration of `microBatches` micro-batches.
    public func steps(microBatches: Int) throws -> [PipelineStep] {
        guard chunks > 1 else { return try PipelineSchedule.oneFOneB(stages: pipeline.size, rank: pipeline.rank, microBatches: microBatches) }
        return try PipelineSchedule.interleaved(stages: pipeline.size, rank: pipeline.rank, microBatches: microBatches, chunks: chunks,
                                                groupSize: microBatchGroupSize, overlapCommunication: overlapCommunication,
                                                overlapWarmupFlush: overlapWarmupFlush)
    }

    /// A pass between its forward and its backward.
    private struct InFlight {
        /// The received activation (a leaf requiring grad); nil in the chunk that embeds the tokens.
        var input: Tensor?
        var output: PipelineStageOutput
    }

    /// A received tensor and the transfers that fill it, waited for before the tensor is used.
    private struct Arrival {
        let tensor: Tensor
        let transfers: [CollectiveWork]
    }

    private func take(_ arrival: Arrival) throws -> Tensor {
        try wait(for: arrival.transfers)
        return arrival.tensor
    }

    /// Orders this rank's compute after `transfers`, timed by `waitClock` when there is one.
    private func wait(for transfers: [CollectiveWork]) throws {
        guard let waitClock else {
            for transfer in transfers { try transfer.wait() }
            return
        }
        try waitClock.measure { for transfer in transfers { try transfer.wait() } }
    }

    /// What one run keeps between steps.
    private struct RunState {
        var inFlight: [PipelineWork: InFlight] = [:]
        var activations: [Arrival] = []
        var gradients: [Arrival] = []
        var outgoingActivations: [PipelineWork: Tensor] = [:]
        var outgoingGradients: [PipelineWork: Tensor] = [:]
        /// Posted transfers not waited for yet (overlap), waited at the end of the run.
        var posted: [CollectiveWork] = []
        var lossSum: Tensor?
        var tokens = 0
        var peak = 0
    }

    public func run(_ passes: ForwardBackwardPasses) throws {
        var state = RunState()
        for step in try steps(microBatches: passes.count) {
            switch step {
            case .forward(let work): try forward(work, passes, &state)
            case .backward(let work): try backward(work, passes, &state)
            case .exchange(let exchange): try self.exchange(exchange, &state)
            }
        }
        try wait(for: state.posted)
        peakLiveMicroBatches = state.peak
        guard state.inFlight.isEmpty, state.activations.isEmpty, state.gradients.isEmpty else {
            throw PipelineScheduleError(description: "the pipeline schedule left \(state.inFlight.count) passes without a backward "
                + "and \(state.activations.count + state.gradients.count) received tensors unused")
        }
        if state.lossSum == nil {
            try passes.lossesComputed(Tensor.zeros([1], dtype: .float32, device: device), 0)
        }
    }

    /// One micro-batch's forward without gradients (evaluation), chunk after chunk: receives the previous
    /// stage's activation, runs `forward(chunk, input)` on it (input nil in the chunk that embeds the tokens)
    /// and sends the result on. Returns the last stage's [loss sum, tokens], summed over the pipeline group so
    /// every stage gets them.
    public func forwardOnly(_ forward: (_ chunk: Int, _ input: Tensor?) -> PipelineStageOutput) throws -> (lossSum: Double, tokens: Int) {
        var totals: [Float] = [0, 0]
        for chunk in 0..<chunks {
            var input: Tensor?
            if !embedsTokens(chunk) {
                let received = Tensor.zeros(activationShape, dtype: dtype, device: device)
                try pipeline.batchSendRecv([.recv(into: received, from: previousRank)]).wait()
                input = received
            }
            switch withoutGrad({ forward(chunk, input) }) {
            case .activation(let hidden): try pipeline.batchSendRecv([.send(hidden.madeContiguous(), to: nextRank)]).wait()
            case .loss(let loss): totals = [loss.sum.cast(to: .float32).item(), Float(loss.tokens)]
            }
        }
        let summed = Tensor(shape: [2], values: totals).to(device)
        try pipeline.allReduce(summed, op: .sum).wait()
        let values = summed.to(.cpu).floats()
        return (Double(values[0]), Int(values[1].rounded()))
    }

    /// Neighbours in the pipeline ring: the last stage's chunk hands on to the first stage's next chunk.
    private var previousRank: Int { (pipeline.rank + pipeline.size - 1) % pipeline.size }
    private var nextRank: Int { (pipeline.rank + 1) % pipeline.size }
    private func embedsTokens(_ chunk: Int) -> Bool { pipeline.rank == 0 && chunk == 0 }

    private func forward(_ work: PipelineWork, _ passes: ForwardBackwardPasses, _ state: inout RunState) throws {
        var input: Tensor?
        if !embedsTokens(work.chunk) {
            guard !state.activations.isEmpty else {
                throw PipelineScheduleError(description: "forward \(work) before its activation arrived")
            }
            var received = try take(state.activations.removeFirst())
            received.requiresGrad = true
            input = received
        }
        let output = try passes.stageForward(work.microBatch, work.chunk, input)
        switch output {
        case .activation(let hidden):
            guard hidden.shape == activationShape, hidden.dtype == dtype else {
                throw PipelineScheduleError(description: "stage output \(hidden.shape) \(hidden.dtype) differs from the "
                    + "activation the next stage expects, \(activationShape) \(dtype)")
            }
            state.outgoingActivations[work] = hidden.detached().madeContiguous()
        case .loss(let loss):
            state.lossSum = state.lossSum.map { $0 + loss.sum.detached() } ?? loss.sum.detached()
            state.tokens += loss.tokens
            if work.microBatch == passes.count - 1 { try passes.lossesComputed(state.lossSum!, state.tokens) }
        }
        state.inFlight[work] = InFlight(input: input, output: output)
        state.peak = max(state.peak, state.inFlight.count)
    }

    private func backward(_ work: PipelineWork, _ passes: ForwardBackwardPasses, _ state: inout RunState) throws {
        guard let live = state.inFlight.removeValue(forKey: work) else {
            throw PipelineScheduleError(description: "backward \(work) before its forward")
        }
        // Megatron turns the gradient reduction on for a chunk's last micro-batch.
        try passes.gradientSync(work.microBatch) {
            switch live.output {
            case .loss(let loss): try passes.backward(loss)
            case .activation(let hidden):
                guard !state.gradients.isEmpty else {
                    throw PipelineScheduleError(description: "backward \(work) before its output gradient arrived")
                }
                hidden.backward(gradient: try take(state.gradients.removeFirst()))
            }
        }
        if let input = live.input {
            state.outgoingGradients[work] = input.grad ?? Tensor.zeros(activationShape, dtype: dtype, device: device)
        }
    }

    /// One exchange in Megatron's batch order: gradient to the previous stage, activation from it, activation
    /// to the next stage, gradient from it; gradients on `gradientLink` when that is a group of its own.
    private func exchange(_ x: PipelineExchange, _ state: inout RunState) throws {
        var batches: [(link: Communicator, transfers: [PointToPoint])] = []
        func add(_ transfer: PointToPoint, on link: Communicator) {
            if let i = batches.firstIndex(where: { $0.link === link }) { batches[i].transfers.append(transfer) } else {
                batches.append((link, [transfer]))
            }
        }
        func send(_ work: PipelineWork?, from outgoing: inout [PipelineWork: Tensor], to peer: Int, on link: Communicator,
                  what: String) throws {
            guard let work else { return }
            guard let tensor = outgoing.removeValue(forKey: work) else {
                throw PipelineScheduleError(description: "no \(what) of \(work) to send")
            }
            add(.send(tensor, to: peer), on: link)
        }
        func receive(_ wanted: Bool, from peer: Int, on link: Communicator) -> Tensor? {
            guard wanted else { return nil }
            let tensor = Tensor.zeros(activationShape, dtype: dtype, device: device)
            add(.recv(into: tensor, from: peer), on: link)
            return tensor
        }
        try send(x.sendBackward, from: &state.outgoingGradients, to: previousRank, on: gradientLink, what: "input gradient")
        let activation = receive(x.receiveForward, from: previousRank, on: pipeline)
        try send(x.sendForward, from: &state.outgoingActivations, to: nextRank, on: pipeline, what: "activation")
        let gradient = receive(x.receiveBackward, from: nextRank, on: gradientLink)
        let transfers = try batches.map { try $0.link.batchSendRecv($0.transfers) }
        if overlapCommunication {
            state.posted += transfers
        } else {
            try wait(for: transfers)
        }
        if let activation { state.activations.append(Arrival(tensor: activation, transfers: transfers)) }
        if let gradient { state.gradients.append(Arrival(tensor: gradient, transfers: transfers)) }
    }
}
