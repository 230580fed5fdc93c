import MegatronCUDA

extension KernelBench {
    /// Embedding backward, the gradient of a [vocab, columns] table from a [tokens, columns] output
    /// gradient of about `bytes` (bf16) and uniformly random ids, by each kernel that can compute it:
    ///
    /// - `embedding bwd bf16 det.`: NeuralKernels.embeddingBackward (embedding.cu), sort-free and
    ///   deterministic, one block per table row;
    /// - `index_add f32 (Ops)`: tensor_ops.cu's index_add, what `Functional.embedding`'s backward runs
    ///   through `Ops.indexAdd` (ordered, one thread per column), fp32 as Ops accumulates;
    /// - `scatter_add f32 atomic` / `ordered`: tensor_ops.cu's scatter_add along the tokens, the default
    ///   (atomics) and the `MEGATRON_DETERMINISTIC=1` variant.
    ///
    /// Each is charged the same minimum traffic: the gradient and ids read once, the table written once.
    func embeddingBackwardCases(bytes: Int, columns: Int, vocab: Int) throws -> [KernelBenchResult] {
        let tokens = max(1, bytes / (columns * 2))
        let shape = "\(tokens)x\(columns)->\(vocab)"
        let ids = try allocator.allocate(bytes: tokens * 8, stream: stream.allocatorKey)
        try PinnedStaging(device: device).copyToDevice(Self.randomIDs(count: tokens, below: vocab), to: ids.address, stream: stream)
        var results: [KernelBenchResult] = []
        do {
            let gradient = try buffer(tokens * columns, .bfloat16), table = try buffer(vocab * columns, .bfloat16)
            defer { free(gradient, table) }
            results.append(try measure("embedding bwd bf16 det.", shape, traffic: tokens * columns * 2 + tokens * 8 + vocab * columns * 2) {
                try nn.embeddingBackward(tableGradient: table.address, gradient: gradient.address, ids: ids.address, tokens: tokens,
                                         vocabulary: vocab, width: columns, type: .bfloat16, stream: stream)
            })
        }
        do {
            let gradient = try buffer(tokens * columns, .float32), table = try buffer(vocab * columns, .float32)
            defer { free(gradient, table) }
            let traffic = tokens * columns * 4 + tokens * 8 + vocab * columns * 4
            let idArgument = TensorKernelArgument(address: ids.address, shape: [tokens], strides: [1], dtype: .int64)
            results.append(try measure("index_add f32 (Ops)", shape, traffic: traffic) {
                try tensorKernels.launch("tensor_index_add", elements: columns, stream: stream,
                                         [.pointer(table.address), .pointer(gradient.address), .tensor(idArgument), .int64(1),
                                          .int64(Int64(vocab)), .int64(Int64(tokens)), .int64(Int64(columns))])
            })
            // The ids broadcast along the columns (stride 0): scatter_add's index has the gradient's shape.
            let index = TensorKernelArgument(address: ids.address, shape: [tokens, columns], strides: [1, 0], dtype: .int64)
            let source = TensorKernelArgument(address: gradient.address, shape: [tokens, columns], strides: [columns, 1], dtype: .float32)
            let out = TensorKernelArgument(address: table.address, shape: [vocab, columns], strides: [columns, 1], dtype: .float32)
            for ordered in [false, true] {
                let threads = ordered ? columns : tokens * columns
                results.append(try measure("scatter_add f32 " + (ordered ? "ordered" : "atomic"), shape, traffic: traffic) {
                    try tensorKernels.launch("tensor_scatter_add", elements: threads, stream: stream,
                                             [.pointer(table.address), .tensor(out), .tensor(index), .tensor(source), .int32(0),
                                              .int64(Int64(threads)), .int32(ordered ? 1 : 0)])
                })
            }
        }
        free(ids)
        return results
    }

    /// `count` token ids uniform in [0, limit), from a fixed seed (SplitMix64).
    static func randomIDs(count: Int, below limit: Int) -> [Int64] {
        var state: UInt64 = 0x5EED
        return (0..<count).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int64((z ^ (z >> 31)) % UInt64(limit))
        }
    }
}
