extension CUDAKernels {
    /// Embedding lookup: out[t, :] = table[ids[t], :] for `tokens` int64 ids into a
    /// [vocabulary, width] table of `type`. An id outside [0, vocabulary) yields a NaN row.
    ///
    ///     try nn.embeddingForward(hidden, table: wordEmbeddings, ids: tokens, tokens: n,
    ///                             vocabulary: 50304, width: 2048, type: .bfloat16, stream: stream)
    public func embeddingForward(_ out: UInt64, table: UInt64, ids: UInt64, tokens: Int, vocabulary: Int, width: Int,
                                 type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "embedding_forward_" + type.rawValue
        try Self.requireShape(kernel, rows: tokens, columns: width)
        try Self.require(vocabulary > 0, "\(kernel): vocabulary \(vocabulary) must be positive")
        try Self.requirePointers(kernel, ["out": out, "table": table, "ids": ids])
        let vectorized = Self.vectorizable(columns: width, out, table)
        try launch("embedding.cu", kernel, grid: .init(gridStrideBlocks(tokens * width / (vectorized ? 8 : 1))),
                   block: Self.elementwiseBlock, stream: stream,
                   [.pointer(out), .pointer(table), .pointer(ids), .int64(Int64(tokens)), .int64(Int64(vocabulary)),
                    .int32(Int32(width)), .int32(vectorized ? 1 : 0)])
    }

    /// Index-add of rows: out[ids[t], :] += source[t, :] for t in 0..<tokens (or `=` the sum when
    /// `accumulate` is false, which zeroes rows no id names). `out` is [rows, width]; ids outside
    /// [0, rows) are skipped. Deterministic without sorting: one block per output row scans
    /// every id and sums the matching source rows in token order in fp32, so it costs
    /// rows x tokens id comparisons (fine for correctness; a sort-based kernel can replace it).
    public func indexAdd(_ out: UInt64, source: UInt64, ids: UInt64, tokens: Int, rows: Int, width: Int, accumulate: Bool,
                         type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "index_add_" + type.rawValue
        try Self.requireShape(kernel, rows: rows, columns: width)
        try Self.require(tokens >= 0, "\(kernel): negative token count \(tokens)")
        try Self.requirePointers(kernel, ["out": out, "source": source, "ids": ids])
        let shared = width * 4
        let limit = device.properties.maxSharedMemoryPerBlockOptin - 9 * 1024   // the static id buffer and counters
        try Self.require(shared <= limit, "\(kernel): width \(width) needs \(shared) bytes of shared memory; the limit is \(limit)")
        try launch("embedding.cu", kernel, grid: .init(rowBlocks(rows)), block: Self.elementwiseBlock, sharedMemoryBytes: shared,
                   stream: stream, [.pointer(out), .pointer(source), .pointer(ids), .int64(Int64(tokens)), .int64(Int64(rows)),
                                    .int32(Int32(width)), .int32(accumulate ? 1 : 0)])
    }

    /// Embedding backward: tableGradient[v, :] (+)= sum of gradient[t, :] over tokens with ids[t] == v,
    /// deterministic (see `indexAdd`).
    public func embeddingBackward(tableGradient: UInt64, gradient: UInt64, ids: UInt64, tokens: Int, vocabulary: Int,
                                  width: Int, accumulate: Bool = false, type: KernelElementType, stream: CUDAStream) throws {
        try indexAdd(tableGradient, source: gradient, ids: ids, tokens: tokens, rows: vocabulary, width: width,
                     accumulate: accumulate, type: type, stream: stream)
    }
}
