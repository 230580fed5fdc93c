import MegatronCUDA

/// The CUDA implementations of `Ops`: each enqueues kernels on the device's stream and returns at
/// once (no synchronization). Same dtype rules and results as the CPU implementations, which are
/// the reference the GPU parity tests compare against.
enum CUDAOps {
    /// The one device all `tensors` live on; mixed devices are a caller error, named here.
    static func device(of tensors: [Tensor], op: String) -> Device {
        let device = tensors[0].device
        for t in tensors where t.device != device {
            preconditionFailure("\(op): tensors on different devices (\(device) and \(t.device)); move them with .to(_:) first")
        }
        return device
    }

    /// The device of an elementwise op, whose rank-0 CPU operands are scalars moved to it.
    static func elementwiseDevice(_ tensors: inout [Tensor], op: String) -> Device {
        let device = Ops.cudaDevice(tensors, op: op, allowingCPUScalars: true)!
        for i in tensors.indices where tensors[i].device == .cpu { tensors[i] = tensors[i].to(device) }
        return device
    }

    static func launch(_ name: String, elements: Int, on device: Device, _ parameters: [KernelArgument],
                       label: @autoclosure () -> String = "") {
        let context = CUDAContext.of(device)
        context.run("\(name)\(label().isEmpty ? "" : " " + label())") { try context.kernels.launchTensorOp(name, elements: elements, stream: context.stream, parameters) }
    }

    // MARK: - Copies

    /// Writes `source` into `destination` (same shape, any layouts, any dtypes) on the device.
    static func copy(_ source: Tensor, into destination: Tensor) {
        _ = device(of: [source, destination], op: "copy")
        if source.dtype == destination.dtype, copyRows16(source, into: destination) { return }
        launch("tensor_copy", elements: destination.count, on: destination.device,
               CollapsedLayout.arguments([destination, source]) + [.int64(Int64(destination.count))],
               label: "\(source.dtype)->\(destination.dtype) \(destination.shape)\(source.isContiguous ? "" : " strided")")
    }

    /// Same-dtype copies whose innermost (collapsed) dimension is contiguous on both sides and whose
    /// rows start on 16-byte boundaries (head-split and permuted activations): 16 bytes a thread.
    private static func copyRows16(_ source: Tensor, into destination: Tensor) -> Bool {
        let layout = CollapsedLayout(shape: destination.shape, strides: [destination.strides, source.strides])
        let size = destination.dtype.byteSize
        let vector = 16 / size
        guard layout.shape.count <= 8, layout.strides.allSatisfy({ $0.last == 1 }),
              layout.shape.last! % vector == 0,
              layout.strides.allSatisfy({ $0.dropLast().allSatisfy { ($0 * size) % 16 == 0 } }),
              destination.deviceAddress % 16 == 0, source.deviceAddress % 16 == 0 else { return false }
        let operands = [destination, source].enumerated().map { i, t in
            KernelArgument.tensor(TensorKernelArgument(address: t.deviceAddress, shape: layout.shape,
                                                              strides: layout.strides[i], dtype: t.dtype.kernelCode))
        }
        let vectors = destination.count / vector
        launch("tensor_copy_rows16", elements: vectors, on: destination.device,
               operands + [.int64(Int64(vectors)), .int32(Int32(vector))],
               label: "\(destination.dtype) \(destination.shape) rows16")
        return true
    }

    /// A contiguous copy of `x` as `dtype`.
    static func contiguousCopy(_ x: Tensor, dtype: DType) -> Tensor {
        // fp8 <-> fp32 / bf16 / fp16 of a contiguous tensor: the vectorized kernels of fp8.cu.
        if x.isContiguous, x.dtype.fp8Format != nil || dtype.fp8Format != nil,
           let converted = CUDAFusedOps.fp8Cast(x, to: dtype, scale: nil) {
            return converted
        }
        let out = Tensor.empty(x.shape, dtype: dtype, device: x.device)
        copy(x, into: out)
        return out
    }

    // MARK: - Elementwise

    static func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp, dtype: DType) -> Tensor {
        if let scalar = hostScalar(b), a.device != .cpu { return binaryScalar(a, scalar, scalarFirst: false, op, dtype: dtype) }
        if let scalar = hostScalar(a), b.device != .cpu { return binaryScalar(b, scalar, scalarFirst: true, op, dtype: dtype) }
        var operands = [a, b]
        let device = elementwiseDevice(&operands, op: "\(op)")
        let (a, b) = (operands[0], operands[1])
        let shape = Shape.broadcast(a.shape, b.shape)
        let out = Tensor.empty(shape, dtype: dtype, device: device)
        if vectorizable16([out, a, b]) {
            launch("tensor_binary_vec8", elements: out.count / 8, on: device,
                   [.pointer(out.deviceAddress), .pointer(a.deviceAddress), .pointer(b.deviceAddress), .int32(op.kernelCode),
                    .int32(dtype.kernelCode.rawValue), .int64(Int64(out.count / 8))],
                   label: "\(op) \(dtype) \(shape) vec8")
            return out
        }
        launch("tensor_binary", elements: out.count, on: device,
               CollapsedLayout.arguments([out, a.expanded(to: shape), b.expanded(to: shape)])
                   + [.int32(op.kernelCode), .int64(Int64(out.count))],
               label: "\(op) \(a.dtype),\(b.dtype)->\(dtype) \(shape)")
        return out
    }

    /// A contiguous tensor's bytes set to zero with one asynchronous memset.
    static func zero(_ tensor: Tensor) {
        let context = CUDAContext.of(tensor.device)
        let bytes = tensor.count * tensor.dtype.byteSize
        context.run("zero \(tensor.dtype) \(tensor.shape)") {
            try context.device.zero(tensor.deviceAddress, bytes: bytes, stream: context.stream)
        }
    }

    /// `destination += source`: the elementwise kernel reading and writing `destination` in place.
    static func accumulate(_ source: Tensor, into destination: Tensor) {
        launch("tensor_binary", elements: destination.count, on: destination.device,
               CollapsedLayout.arguments([destination, destination, source])
                   + [.int32(BinaryOp.add.kernelCode), .int64(Int64(destination.count))],
               label: "accumulate \(source.dtype) into \(destination.dtype) \(destination.shape)")
    }

    /// Whether `tensor_binary_vec8` takes these operands: one 16-bit float dtype, one shape, contiguous,
    /// 16-byte aligned, a multiple of 8 elements.
    private static func vectorizable16(_ tensors: [Tensor]) -> Bool {
        let first = tensors[0]
        guard first.dtype == .bfloat16 || first.dtype == .float16, first.count % 8 == 0, first.count > 0 else { return false }
        return tensors.allSatisfy {
            $0.dtype == first.dtype && $0.shape == first.shape && $0.isContiguous && $0.deviceAddress % 16 == 0
        }
    }

    /// The value of a rank-0 CPU tensor, which joins a GPU op as a kernel argument.
    private static func hostScalar(_ t: Tensor) -> Float? {
        t.device == .cpu && t.rank == 0 ? t.floats()[0] : nil
    }

    private static func binaryScalar(_ a: Tensor, _ scalar: Float, scalarFirst: Bool, _ op: BinaryOp, dtype: DType) -> Tensor {
        let out = Tensor.empty(a.shape, dtype: dtype, device: a.device)
        launch("tensor_binary_scalar", elements: out.count, on: a.device,
               CollapsedLayout.arguments([out, a])
                   + [.float32(scalar), .int32(scalarFirst ? 1 : 0), .int32(op.kernelCode), .int64(Int64(out.count))],
               label: "\(op) \(a.dtype) scalar->\(dtype) \(a.shape)")
        return out
    }

    static func compare(_ a: Tensor, _ b: Tensor, _ op: CompareOp) -> Tensor {
        var operands = [a, b]
        let device = elementwiseDevice(&operands, op: "\(op)")
        let (a, b) = (operands[0], operands[1])
        let shape = Shape.broadcast(a.shape, b.shape)
        let out = Tensor.empty(shape, dtype: .bool, device: device)
        launch("tensor_compare", elements: out.count, on: device,
               CollapsedLayout.arguments([out, a.expanded(to: shape), b.expanded(to: shape)])
                   + [.int32(op.kernelCode), .int64(Int64(out.count))])
        return out
    }

    static func unary(_ x: Tensor, _ op: UnaryOp, dtype: DType) -> Tensor {
        let out = Tensor.empty(x.shape, dtype: dtype, device: x.device)
        launch("tensor_unary", elements: out.count, on: x.device,
               CollapsedLayout.arguments([out, x]) + [.int32(op.kernelCode), .int64(Int64(out.count))],
               label: "\(op) \(x.dtype)->\(dtype) \(x.shape)")
        return out
    }

    static func unaryBackward(_ x: Tensor, gradOutput: Tensor, _ op: UnaryOp) -> Tensor {
        let device = device(of: [x, gradOutput], op: "\(op) backward")
        let out = Tensor.empty(x.shape, dtype: gradOutput.dtype, device: device)
        launch("tensor_unary_backward", elements: out.count, on: device,
               CollapsedLayout.arguments([out, x, gradOutput]) + [.int32(op.kernelCode), .int64(Int64(out.count))])
        return out
    }

    static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor, dtype: DType) -> Tensor {
        var operands = [condition, a, b]
        let device = elementwiseDevice(&operands, op: "where")
        let (condition, a, b) = (operands[0], operands[1], operands[2])
        let shape = Shape.broadcast(condition.shape, Shape.broadcast(a.shape, b.shape))
        let out = Tensor.empty(shape, dtype: dtype, device: device)
        launch("tensor_where", elements: out.count, on: device,
               CollapsedLayout.arguments([out, condition.expanded(to: shape), a.expanded(to: shape), b.expanded(to: shape)])
                   + [.int64(Int64(out.count))])
        return out
    }

    // MARK: - Reductions

    /// Reduces each of `rows` contiguous rows of `width` elements of `moved` into `out`'s shape.
    static func reduceRows(_ moved: Tensor, rows: Int, width: Int, shape: [Int], dtype: DType, _ op: ReduceOp) -> Tensor {
        let out = Tensor.empty(shape, dtype: dtype, device: moved.device)
        if width == 0 {
            // Empty rows: sum and mean of nothing as the CPU gives them (0 and 0/0), max of nothing is -inf.
            let fill: Float = op == .sum ? 0 : (op == .mean ? .nan : -.infinity)
            return Tensor.full(shape, fill, dtype: dtype).to(moved.device)
        }
        // A warp per row leaves the GPU idle when a few long rows are reduced (a whole-tensor sum):
        // split such rows into pieces first.
        let chunk = 4096
        if width > 4 * chunk && rows < 4096 {
            let chunks = (width + chunk - 1) / chunk
            let partial = Tensor.empty([rows, chunks], dtype: .float32, device: moved.device)
            launch("tensor_reduce_rows_partial", elements: rows * chunks * 32, on: moved.device,
                   [.pointer(partial.deviceAddress), .tensor(moved.kernelArgument), .int64(Int64(rows)),
                    .int64(Int64(width)), .int64(Int64(chunk)), .int32(op.kernelCode)],
                   label: "\(op) \(rows)x\(width)")
            launch("tensor_reduce_rows", elements: rows * 32, on: moved.device,
                   [.tensor(out.kernelArgument), .tensor(partial.kernelArgument), .int64(Int64(rows)), .int64(Int64(chunks)),
                    .int32(op.kernelCode), .int64(Int64(width))],
                   label: "\(op) partials \(rows)x\(chunks)")
            return out
        }
        launch("tensor_reduce_rows", elements: rows * 32, on: moved.device,
               [.tensor(out.kernelArgument), .tensor(moved.kernelArgument), .int64(Int64(rows)), .int64(Int64(width)),
                .int32(op.kernelCode), .int64(Int64(width))],
               label: "\(op) \(rows)x\(width)")
        return out
    }

    /// Reduces a contiguous `[rows, columns]` view of `x` over its rows into `shape` (`columns` elements).
    static func reduceColumns(_ x: Tensor, rows: Int, columns: Int, shape: [Int], dtype: DType, _ op: ReduceOp) -> Tensor {
        let out = Tensor.empty(shape, dtype: dtype, device: x.device)
        // Enough (column, piece) threads to fill the GPU, pieces of at least 8 rows.
        let pieces = Swift.max(1, Swift.min((rows + 7) / 8, (1 << 18) / columns))
        let chunk = (rows + pieces - 1) / pieces
        let used = (rows + chunk - 1) / chunk
        let partial = Tensor.empty([used, columns], dtype: .float32, device: x.device)
        launch("tensor_reduce_columns_partial", elements: used * columns, on: x.device,
               [.pointer(partial.deviceAddress), .tensor(x.kernelArgument), .int64(Int64(rows)), .int64(Int64(columns)),
                .int64(Int64(chunk)), .int32(op.kernelCode)],
               label: "\(op) \(rows)x\(columns) \(x.dtype)")
        launch("tensor_reduce_columns_final", elements: columns, on: x.device,
               [.tensor(out.kernelArgument), .pointer(partial.deviceAddress), .int64(Int64(used)), .int64(Int64(columns)),
                .int32(op.kernelCode), .int64(Int64(rows))])
        return out
    }

    static func argmaxRows(_ moved: Tensor, rows: Int, width: Int, shape: [Int]) -> Tensor {
        let out = Tensor.empty(shape, dtype: .int64, device: moved.device)
        launch("tensor_argmax_rows", elements: rows * 32, on: moved.device,
               [.pointer(out.deviceAddress), .tensor(moved.kernelArgument), .int64(Int64(rows)), .int64(Int64(width))])
        return out
    }

    // MARK: - Indexing

    static func gather(_ x: Tensor, dim: Int, index: Tensor) -> Tensor {
        let device = device(of: [x, index], op: "gather")
        let out = Tensor.empty(index.shape, dtype: x.dtype, device: device)
        launch("tensor_gather", elements: out.count, on: device,
               [.tensor(out.kernelArgument), .tensor(x.kernelArgument), .tensor(index.kernelArgument),
                .int32(Int32(dim)), .int64(Int64(out.count))])
        return out
    }

    static func scatterAdd(_ x: Tensor, dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let device = device(of: [x, index, source], op: "scatterAdd")
        let context = CUDAContext.of(device)
        // Accumulate in fp32 (as the CPU does), then round once to x's dtype.
        let accumulator = contiguousCopy(x, dtype: .float32)
        let ordered = context.deterministic
        let threads = ordered ? index.count / max(index.shape[dim], 1) : index.count
        if index.count > 0 {
            launch("tensor_scatter_add", elements: threads, on: device,
                   [.pointer(accumulator.deviceAddress), .tensor(accumulator.kernelArgument), .tensor(index.kernelArgument),
                    .tensor(source.kernelArgument), .int32(Int32(dim)), .int64(Int64(threads)), .int32(ordered ? 1 : 0)])
        }
        return x.dtype == .float32 ? accumulator : contiguousCopy(accumulator, dtype: x.dtype)
    }

    static func indexAdd(_ x: Tensor, dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let device = device(of: [x, index, source], op: "indexAdd")
        let accumulator = contiguousCopy(x, dtype: .float32)
        let src = source.dtype == .float32 && source.isContiguous ? source : contiguousCopy(source, dtype: .float32)
        let outer = x.shape[..<dim].reduce(1, *), inner = x.shape[(dim + 1)...].reduce(1, *)
        launch("tensor_index_add", elements: outer * inner, on: device,
               [.pointer(accumulator.deviceAddress), .pointer(src.deviceAddress), .tensor(index.kernelArgument),
                .int64(Int64(outer)), .int64(Int64(x.shape[dim])), .int64(Int64(index.count)), .int64(Int64(inner))])
        return x.dtype == .float32 ? accumulator : contiguousCopy(accumulator, dtype: x.dtype)
    }

    static func embeddingBackward(_ gradient: Tensor, ids: Tensor, vocabulary: Int) -> Tensor {
        let device = device(of: [gradient, ids], op: "embedding backward")
        let width = gradient.shape[1], tokens = ids.count
        let context = CUDAContext.of(device)
        let table: Tensor
        if context.deterministic {
            // The ordered kernel writes every row (no zeroing first), summing in token order.
            table = Tensor.empty([vocabulary, width], dtype: .float32, device: device)
            let (source, index) = (contiguousCopy(gradient, dtype: .float32), ids.cast(to: .int64).madeContiguous())
            context.run("embedding backward (ordered) \(tokens)x\(width)") {
                try context.kernels.embeddingBackward(tableGradient: table.deviceAddress, gradient: source.deviceAddress,
                                                       ids: index.deviceAddress, tokens: tokens, vocabulary: vocabulary,
                                                       width: width, type: .float32, stream: context.stream)
            }
        } else {
            table = Tensor.zeros([vocabulary, width], device: device)
            launch("tensor_embedding_backward_atomic", elements: tokens * width, on: device,
                   [.pointer(table.deviceAddress), .tensor(gradient.kernelArgument), .tensor(ids.kernelArgument),
                    .int64(Int64(tokens)), .int64(Int64(width)), .int64(Int64(vocabulary))],
                   label: "\(tokens)x\(width) \(gradient.dtype)")
        }
        return gradient.dtype == .float32 ? table : contiguousCopy(table, dtype: gradient.dtype)
    }

    static func embedding(_ weight: Tensor, ids: Tensor) -> Tensor {
        let device = device(of: [weight, ids], op: "embedding")
        let hidden = weight.shape[1]
        let out = Tensor.empty(ids.shape + [hidden], dtype: weight.dtype, device: device)
        launch("tensor_embedding", elements: out.count, on: device,
               [.tensor(out.kernelArgument), .tensor(weight.kernelArgument), .tensor(ids.kernelArgument),
                .int64(Int64(ids.count)), .int64(Int64(hidden))])
        return out
    }

    /// One thread per row making k passes over it: O(k * width) per row, which suits MoE routing (a
    /// row per token over a few dozen experts) and small k; a vocabulary-wide top-k for sampling wants
    /// a block-per-row selection kernel instead.
    static func topk(_ x: Tensor, k: Int, largest: Bool) -> (values: Tensor, indices: Tensor) {
        let width = x.shape.last!, rows = x.count / max(width, 1)
        let source = x.isContiguous ? x : x.madeContiguous()
        let shape = Array(x.shape.dropLast()) + [k]
        let values = Tensor.empty(shape, dtype: x.dtype, device: x.device)
        let indices = Tensor.empty(shape, dtype: .int64, device: x.device)
        if k > 0 {
            launch("tensor_topk_rows", elements: rows, on: x.device,
                   [.tensor(values.kernelArgument), .pointer(indices.deviceAddress), .tensor(source.kernelArgument),
                    .int64(Int64(rows)), .int64(Int64(width)), .int64(Int64(k)), .int32(largest ? 1 : 0)])
        }
        return (values, indices)
    }
}

extension BinaryOp {
    /// The op's code in tensor_ops.cu (`BinaryOpCode`, generated from Kernels/kernel_codes.cuh; `binary_apply`).
    var kernelCode: Int32 {
        let code: BinaryOpCode = switch self {
        case .add: .add
        case .sub: .sub
        case .mul: .mul
        case .div: .div
        case .maximum: .maximum
        case .minimum: .minimum
        case .pow: .pow
        }
        return code.rawValue
    }
}

extension CompareOp {
    /// The op's code in tensor_ops.cu (`CompareOpCode`, generated from Kernels/kernel_codes.cuh; `compare_apply`).
    var kernelCode: Int32 {
        let code: CompareOpCode = switch self {
        case .equal: .equal
        case .notEqual: .notEqual
        case .less: .less
        case .lessEqual: .lessEqual
        case .greater: .greater
        case .greaterEqual: .greaterEqual
        }
        return code.rawValue
    }
}

extension UnaryOp {
    /// The op's code in tensor_ops.cu (`UnaryOpCode`, generated from Kernels/kernel_codes.cuh; `unary_apply`).
    var kernelCode: Int32 {
        let code: UnaryOpCode = switch self {
        case .neg: .neg
        case .exp: .exp
        case .log: .log
        case .tanh: .tanh
        case .sqrt: .sqrt
        case .rsqrt: .rsqrt
        case .abs: .abs
        case .sigmoid: .sigmoid
        case .relu: .relu
        case .silu: .silu
        case .geluTanh: .geluTanh
        case .geluErf: .geluErf
        case .squaredRelu: .squaredRelu
        }
        return code.rawValue
    }
}

extension ReduceOp {
    /// The op's code in tensor_ops.cu (`ReduceOpCode`, generated from Kernels/kernel_codes.cuh; `tensor_reduce_rows`).
    var kernelCode: Int32 {
        let code: ReduceOpCode = switch self {
        case .sum: .sum
        case .mean: .mean
        case .max: .max
        }
        return code.rawValue
    }
}
