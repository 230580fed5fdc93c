import MegatronCUDA

extension KernelBench {
    /// Embedding backward, the fp32 gradient of a [vocab, columns] table from a [tokens, columns] output
    /// gradient of about `bytes` (bf16) and uniformly random ids, by the kernels `Ops.embeddingBackward`
    /// chooses between:
    ///
    /// - `embedding bwd atomic`: tensor_ops.cu's fp32 atomics, reading the bf16 gradient (the default);
    /// - `embedding bwd ordered`: embedding.cu's sort-free deterministic kernel on the fp32 gradient
    ///   (`MEGATRON_DETERMINISTIC=1`);
    /// - `index_add f32 (Ops)`: tensor_ops.cu's index_add behind `Ops.indexAdd` (ordered, one thread per
    ///   column), the same sum by the general op.
    ///
    /// Each is charged the minimum traffic of its operands: the gradient and ids read once, the table
    /// written once (the zeroing that the atomic and index-add paths need first is not timed).
    func embeddingBackwardCases(bytes: Int, columns: Int, vocab: Int) throws -> [KernelBenchResult] {
        let tokens = max(1, bytes / (columns * 2))
        let shape = "\(tokens)x\(columns)->\(vocab)"
        let ids = try allocator.allocate(bytes: tokens * 8, stream: stream.allocatorKey)
        try PinnedStaging(device: device).copyToDevice(Self.randomIDs(count: tokens, below: vocab), to: ids.address, stream: stream)
        let narrow = try buffer(tokens * columns, .bfloat16), wide = try buffer(tokens * columns, .float32)
        let table = try buffer(vocab * columns, .float32)
        defer { free(ids, narrow, wide, table) }
        let idArgument = TensorKernelArgument(address: ids.address, shape: [tokens], strides: [1], dtype: .i64)
        let tableBytes = vocab * columns * 4
        return [
            try measure("embedding bwd atomic", shape, traffic: tokens * columns * 2 + tokens * 8 + tableBytes) {
                let gradient = TensorKernelArgument(address: narrow.address, shape: [tokens, columns], strides: [columns, 1],
                                                    dtype: .bf16)
                try kernels.launchTensorOp("tensor_embedding_backward_atomic", elements: tokens * columns, stream: stream,
                                         [.pointer(table.address), .tensor(gradient), .tensor(idArgument), .int64(Int64(tokens)),
                                          .int64(Int64(columns)), .int64(Int64(vocab))])
            },
            try measure("embedding bwd ordered", shape, traffic: tokens * columns * 4 + tokens * 8 + tableBytes) {
                try kernels.embeddingBackward(tableGradient: table.address, gradient: wide.address, ids: ids.address, tokens: tokens,
                                         vocabulary: vocab, width: columns, type: .float32, stream: stream)
            },
            try measure("index_add f32 (Ops)", shape, traffic: tokens * columns * 4 + tokens * 8 + tableBytes) {
                try kernels.launchTensorOp("tensor_index_add", elements: columns, stream: stream,
                                         [.pointer(table.address), .pointer(wide.address), .tensor(idArgument), .int64(1),
                                          .int64(Int64(vocab)), .int64(Int64(tokens)), .int64(Int64(columns))])
            },
        ]
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
