import MegatronCore
import MegatronParallel
import MegatronTensor

extension ParallelCheckpoint {
    /// `state` (parameters, or optimizer state keyed `<role>.<parameter>`) with the routed experts of every
    /// expert-parallel rank of `group` added, each under its global number (`…local_experts.<n>.…`): a collective
    /// over `group`, for the whole-state (safetensors) checkpoint. Rank r of the group holds experts
    /// `r·k ..< (r+1)·k` of `numExperts`, so the ranks' local keys differ only in those numbers.
    static func gatherExperts(_ state: [String: Tensor], group: Communicator, numExperts: Int) throws -> [String: Tensor] {
        guard group.size > 1 else { return state }
        let perRank = numExperts / group.size, first = group.rank * perRank
        var out = state.filter { expertNumber($0.key) == nil }
        // By local index, so that every rank of the group gathers the same keys in the same order.
        let local = state.compactMap { key, t in expertNumber(key).map { (renumbered(key, $0 - first), t) } }.sorted { $0.0 < $1.0 }
        for (key, t) in local {
            let flat = t.madeContiguous().reshaped([-1])
            let all = Tensor.zeros([group.size * flat.count], dtype: flat.dtype, device: flat.device)
            try group.allGather(flat, into: all).wait()
            let index = expertNumber(key)!
            for r in 0..<group.size {
                out[renumbered(key, r * perRank + index)] = all.narrowed(0, start: r * flat.count, length: flat.count).reshaped(t.shape)
            }
        }
        return out
    }

    static let localExpertsInfix = ".local_experts."

    /// The expert number in `key` (`…mlp.experts.local_experts.<n>.…`), nil for other keys.
    static func expertNumber(_ key: String) -> Int? {
        guard let infix = key.range(of: localExpertsInfix) else { return nil }
        return Int(key[infix.upperBound...].prefix { $0 != "." })
    }

    /// `key` with its expert number replaced by `number`.
    static func renumbered(_ key: String, _ number: Int) -> String {
        let infix = key.range(of: localExpertsInfix)!
        let digits = key[infix.upperBound...].prefix { $0 != "." }
        return String(key[..<infix.upperBound]) + "\(number)" + String(key[digits.endIndex...])
    }
}
