import MegatronParallel

extension TensorParallelGroup {
    /// The tensor-parallel view of `state`: its "tp" group (none when TP is 1, so every mapping is an identity).
    ///
    /// ```swift
    /// let tp = TensorParallelGroup(state, sequenceParallel: arguments.sequenceParallel)
    /// ```
    public init(_ state: ParallelState, sequenceParallel: Bool = false) {
        self.init(state.tensor.size > 1 ? state.tensor : nil, sequenceParallel: sequenceParallel)
    }
}
