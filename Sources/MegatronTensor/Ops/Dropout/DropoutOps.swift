extension Ops {
    /// Inverted dropout: zeroes each element with probability `p` (Philox draw `seed`, `offset`) and scales the
    /// rest by `1 / (1 - p)`. The same draw applied to the output gradient is the backward pass.
    public static func dropout(_ x: Tensor, p: Float, seed: UInt64, offset: UInt64) -> Tensor {
        precondition(p >= 0 && p < 1, "dropout probability \(p) outside [0, 1)")
        if cudaDevice(x, op: "dropout") != nil { return CUDAFusedOps.dropout(x, p: p, seed: seed, offset: offset) }
        let scale = 1 / (1 - p)
        var uniform = [Float](repeating: 0, count: x.count)
        uniform.withUnsafeMutableBufferPointer { Philox.fillUniform($0, seed: seed, offset: offset) }
        return x.withFloats { xs in
            Tensor.computed(shape: x.shape, dtype: x.dtype) { out in
                for i in 0..<out.count { out[i] = uniform[i] >= p ? xs[i] * scale : 0 }
            }
        }
    }
}
