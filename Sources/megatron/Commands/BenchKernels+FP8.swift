import MegatronCUDA

extension KernelBench {
    /// FP8 with per-tensor scaling (fp8.cu): quantizing bf16 and fp32 tensors of about `bytes` to e4m3
    /// with a device scale, saturating; dequantizing back to bf16; the amax of the bf16 tensor; and, on that tensor
    /// as a [count / 2048, 2048] matrix, the one-pass cast + transpose + amax FP8 linear layers run.
    func fp8Cases(bytes: Int) throws -> [KernelBenchResult] {
        let count = bytes / 2
        let bf16 = try buffer(count, .bfloat16), wide = try buffer(count, .float32), fp8 = try buffer(count / 2 + 1, .bfloat16)
        let transposed = try buffer(count / 2 + 1, .bfloat16)
        let scale = try buffer(1, .float32, low: 100, high: 101), amax = try buffer(1, .float32)
        defer { free(bf16, wide, fp8, transposed, scale, amax) }
        let (rows, columns) = (count / 2048, 2048)
        return [
            try measure("cast bf16->e4m3 scaled", "[\(count)]", traffic: count * 3 + 4) {
                try kernels.quantize(fp8.address, format: .e4m3, input: bf16.address, from: .bfloat16, count: count,
                                scale: scale.address, saturate: true, stream: stream)
            },
            try measure("cast f32->e4m3 scaled", "[\(count)]", traffic: count * 5 + 4) {
                try kernels.quantize(fp8.address, format: .e4m3, input: wide.address, from: .float32, count: count,
                                scale: scale.address, saturate: true, stream: stream)
            },
            try measure("cast e4m3->bf16 scaled", "[\(count)]", traffic: count * 3 + 4) {
                try kernels.dequantize(bf16.address, to: .bfloat16, input: fp8.address, format: .e4m3, count: count,
                                  scale: scale.address, stream: stream)
            },
            try measure("amax bf16", "[\(count)]", traffic: count * 2 + 4) {
                try kernels.absMax(amax.address, input: bf16.address, type: .bfloat16, count: count, stream: stream)
            },
            try measure("cast+transpose+amax bf16->e4m3", "[\(rows), \(columns)]", traffic: rows * columns * 4 + 8) {
                try kernels.quantizeTransposing(fp8.address, transposed: transposed.address, format: .e4m3, input: bf16.address,
                                                from: .bfloat16, rows: rows, columns: columns, scale: scale.address,
                                                amax: amax.address, saturate: true, stream: stream)
            },
        ]
    }
}
