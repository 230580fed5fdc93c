import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// Runs one pipeline rank's 1F1B schedule (`PipelineSchedule.oneFOneB`'s steps) on its stage of the model: each
/// forward starts from the activation received from the previous stage (or the tokens on the first), each
/// backward from the output gradient received from the next stage (or the loss on the last); exchanges go
/// through `Communicator.batchSendRecv` on the pipeline group, in Megatron's batch order. A micro-batch's
/// activations are dropped as soon as its backward has run, so only 1F1B's in-flight micro-batches are alive.
///
/// Activations travel as `activationShape` tensors of `dtype` (`GPTModel.stageActivationShape`, the same on
/// every stage). The last stage reports the loss; the other stages report zero, so that the step's sum over
/// the pipeline group gives every rank the last stage's loss.
///
/// ```swift
/// step.schedule = PipelineStageSchedule(pipeline: state.pipeline,
///                                       activationShape: model.stageActivationShape(batch: 2, seq: 128),
///                                       dtype: config.paramsDType, device: device)
/// ```
public final class PipelineStageSchedule: ForwardBackwardSchedule {
    public let pipeline: Communicator
    public let activationShape: [Int]
    public let dtype: DType
    public let device: Device
    /// The most micro-batches whose activations were alive at once in the last `run` (the 1F1B bound is the
    /// number of stages from this one to the last).
    public private(set) var peakLiveMicroBatches = 0

    public init(pipeline: Communicator, activationShape: [Int], dtype: DType, device: Device) {
        self.pipeline = pipeline
        self.activationShape = activationShape
        self.dtype = dtype
        self.device = device
    }

    /// A micro-batch between its forward and its backward.
    private struct InFlight {
        /// The received activation (a leaf requiring grad); nil on the first stage.
        var input: Tensor?
        var output: PipelineStageOutput
    }

    /// What one run keeps between steps.
    private struct RunState {
        var inFlight: [Int: InFlight] = [:]
        var receivedActivations: [Tensor] = []
        var receivedGradients: [Tensor] = []
        var outgoingActivations: [Int: Tensor] = [:]
        var outgoingGradients: [Int: Tensor] = [:]
        var lossSum: Tensor?
        var tokens = 0
        var peak = 0
    }

    public func run(_ passes: ForwardBackwardPasses) throws {
        var state = RunState()
        let steps = try PipelineSchedule.oneFOneB(stages: pipeline.size, rank: pipeline.rank, microBatches: passes.count)
        for step in steps {
            switch step {
            case .forward(let work): try forward(work.microBatch, passes, &state)
            case .backward(let work): try backward(work.microBatch, passes, &state)
            case .exchange(let exchange): try self.exchange(exchange, &state)
            }
        }
        peakLiveMicroBatches = state.peak
        guard state.inFlight.isEmpty else {
            throw PipelineScheduleError(description: "the pipeline schedule left \(state.inFlight.count) micro-batches without a backward")
        }
        if state.lossSum == nil {
            try passes.lossesComputed(Tensor.zeros([1], dtype: .float32, device: device), 0)
        }
    }

    /// One micro-batch's forward without gradients (evaluation): receives the previous stage's activation,
    /// runs `forward` on it (nil on the first stage) and sends the result on. Returns the last stage's
    /// [loss sum, tokens], summed over the pipeline group so every stage gets them.
    public func forwardOnly(_ forward: (Tensor?) -> PipelineStageOutput) throws -> (lossSum: Double, tokens: Int) {
        var input: Tensor?
        if pipeline.rank > 0 {
            let received = Tensor.zeros(activationShape, dtype: dtype, device: device)
            try pipeline.batchSendRecv([.recv(into: received, from: pipeline.rank - 1)]).wait()
            input = received
        }
        var totals: [Float] = [0, 0]
        switch withoutGrad({ forward(input) }) {
        case .activation(let hidden): try pipeline.batchSendRecv([.send(hidden.contiguous(), to: pipeline.rank + 1)]).wait()
        case .loss(let loss): totals = [loss.sum.cast(to: .float32).item(), Float(loss.tokens)]
        }
        let summed = Tensor(shape: [2], values: totals).to(device)
        try pipeline.allReduce(summed, op: .sum).wait()
        let values = summed.to(.cpu).floats()
        return (Double(values[0]), Int(values[1].rounded()))
    }

    private func forward(_ m: Int, _ passes: ForwardBackwardPasses, _ state: inout RunState) throws {
        var input: Tensor?
        if pipeline.rank > 0 {
            guard !state.receivedActivations.isEmpty else {
                throw PipelineScheduleError(description: "forward of micro-batch \(m) before its activation arrived")
            }
            var received = state.receivedActivations.removeFirst()
            received.requiresGrad = true
            input = received
        }
        let output = try passes.stageForward(m, input)
        switch output {
        case .activation(let hidden):
            guard hidden.shape == activationShape, hidden.dtype == dtype else {
                throw PipelineScheduleError(description: "stage output \(hidden.shape) \(hidden.dtype) differs from the "
                    + "activation the next stage expects, \(activationShape) \(dtype)")
            }
            state.outgoingActivations[m] = hidden.detached().contiguous()
        case .loss(let loss):
            state.lossSum = state.lossSum.map { $0 + loss.sum.detached() } ?? loss.sum.detached()
            state.tokens += loss.tokens
            if m == passes.count - 1 { try passes.lossesComputed(state.lossSum!, state.tokens) }
        }
        state.inFlight[m] = InFlight(input: input, output: output)
        state.peak = max(state.peak, state.inFlight.count)
    }

    private func backward(_ m: Int, _ passes: ForwardBackwardPasses, _ state: inout RunState) throws {
        guard let live = state.inFlight.removeValue(forKey: m) else {
            throw PipelineScheduleError(description: "backward of micro-batch \(m) before its forward")
        }
        try passes.gradientSync(m) {
            switch live.output {
            case .loss(let loss): try passes.backward(loss)
            case .activation(let hidden):
                guard !state.receivedGradients.isEmpty else {
                    throw PipelineScheduleError(description: "backward of micro-batch \(m) before its output gradient arrived")
                }
                hidden.backward(gradient: state.receivedGradients.removeFirst())
            }
        }
        if let input = live.input {
            state.outgoingGradients[m] = input.grad ?? Tensor.zeros(activationShape, dtype: dtype, device: device)
        }
    }

    /// One batch of transfers in Megatron's order: gradient to the previous stage, activation from it,
    /// activation to the next stage, gradient from it.
    private func exchange(_ x: PipelineExchange, _ state: inout RunState) throws {
        let previous = pipeline.rank - 1, next = pipeline.rank + 1
        var transfers: [PointToPoint] = []
        func send(_ work: PipelineWork?, from outgoing: inout [Int: Tensor], to peer: Int, what: String) throws {
            guard let work else { return }
            guard let tensor = outgoing.removeValue(forKey: work.microBatch) else {
                throw PipelineScheduleError(description: "no \(what) of micro-batch \(work.microBatch) to send")
            }
            transfers.append(.send(tensor, to: peer))
        }
        func receive(_ wanted: Bool, from peer: Int) -> Tensor? {
            guard wanted else { return nil }
            let tensor = Tensor.zeros(activationShape, dtype: dtype, device: device)
            transfers.append(.recv(into: tensor, from: peer))
            return tensor
        }
        try send(x.sendBackward, from: &state.outgoingGradients, to: previous, what: "input gradient")
        let activation = receive(x.receiveForward, from: previous)
        try send(x.sendForward, from: &state.outgoingActivations, to: next, what: "activation")
        let gradient = receive(x.receiveBackward, from: next)
        try pipeline.batchSendRecv(transfers).wait()
        if let activation { state.receivedActivations.append(activation) }
        if let gradient { state.receivedGradients.append(gradient) }
    }
}
