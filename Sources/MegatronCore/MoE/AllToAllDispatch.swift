import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// One MoE layer's pass through the all-to-all token dispatcher (Megatron's `MoEAlltoAllTokenDispatcher`):
/// tokens are permuted by expert, each rank's block goes to the rank holding those experts (uneven splits, from
/// the token counts all-gathered over the group), the chunks are regrouped by local expert, run, put back in
/// arrival order and returned by the reverse all-to-all, then summed per token.
///
/// Every block sent carries one padding row (token 0 at probability 0): no block is empty, an expert no token
/// chose runs on a padding row (exactly 0, zero gradients, as on one rank), and every rank's received tokens
/// take part in the loss, so every rank runs the same collectives in backward.
struct AllToAllDispatch {
    let layer: MoELayer
    let comm: Communicator
    let tokens: Tensor
    let routed: RouterOutput

    func run() -> Tensor {
        let experts = layer.moe.numExperts, perRank = experts / comm.size, device = tokens.device
        let map = routed.routingMap.floats(), tokenCount = tokens.size(0)
        // Permute: for each destination rank, its experts' tokens in expert then token order, then the padding row.
        var rows: [Int] = [], probs: [Tensor] = [], counts = [Int](repeating: 0, count: experts)
        let padding = Tensor.zeros([1, 1], dtype: routed.probs.dtype, device: device)
        for destination in 0..<comm.size {
            for e in (destination * perRank)..<((destination + 1) * perRank) {
                let chosen = (0..<tokenCount).filter { map[$0 * experts + e] != 0 }
                counts[e] = chosen.count
                guard !chosen.isEmpty else { continue }
                rows += chosen
                probs.append(TokenPermutation.select(routed.probs.narrow(1, start: e, length: 1),
                                                     rows: TokenPermutation.index(chosen, on: device)))
            }
            rows.append(0)
            probs.append(padding)
        }
        let allCounts = comm.allGathered(Tensor(shape: [1, experts], values: counts.map(Float.init)).to(device), dim: 0)
            .floats().map { Int($0) }
        let local = layer.expertParallel.localExperts(of: experts)
        let inputSplits = (0..<comm.size).map { j in counts[(j * perRank)..<((j + 1) * perRank)].reduce(1, +) }
        let outputSplits = (0..<comm.size).map { j in local.map { allCounts[j * experts + $0] }.reduce(1, +) }

        let rowIndex = TokenPermutation.index(rows, on: device)
        // On NCCL the first all-to-all between two ranks connects them with both hosts in the call: every rank
        // reaches it right after reading the all-gathered counts on the host, so the hosts meet there.
        let clock = layer.dispatchWaitClock
        let received = ExpertCollectives.allToAll(TokenPermutation.select(tokens, rows: rowIndex), inputSplits: inputSplits,
                                                  outputSplits: outputSplits, over: comm, clock: clock)
        let receivedProbs = ExpertCollectives.allToAll(concat(probs, dim: 0), inputSplits: inputSplits,
                                                       outputSplits: outputSplits, over: comm, clock: clock)
        // Arrival order is [source rank][local expert] (then one padding row per source); regroup by local expert.
        var positions = [[Int]](repeating: [], count: local.count)
        var offset = 0
        for source in 0..<comm.size {
            for (l, e) in local.enumerated() {
                let count = allCounts[source * experts + e]
                positions[l] += offset..<(offset + count)
                offset += count
            }
            offset += 1
        }
        let arrivalOrder = layer.runExperts(received, rows: positions, probs: receivedProbs, probRows: positions,
                                            padding: outputSplits[0] - 1)
        let returned = ExpertCollectives.allToAll(arrivalOrder, inputSplits: outputSplits, outputSplits: inputSplits, over: comm,
                                                  clock: clock)
        return TokenPermutation.combine(returned, rows: rowIndex, tokens: tokenCount)
    }
}
