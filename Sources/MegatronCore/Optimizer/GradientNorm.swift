/// Megatron's gradient clipping by global L2 norm (`clip_grad_norm`), on flat fp32 gradient buffers.
///
/// ```swift
/// let norm = GradientNorm.globalL2Norm(grads)              // over every parameter's gradient
/// GradientNorm.clip(mutableGrads, maxNorm: 1.0, totalNorm: norm)
/// ```
public enum GradientNorm {
    /// The L2 norm of all elements of all `buffers` together. Squares are summed in fp32 over runs of 32
    /// elements (4 per lane) and those partial sums in Double, in a fixed order: the result does not
    /// depend on the number of threads, and is within a few fp32 ulps of the exact norm.
    public static func globalL2Norm(_ buffers: [UnsafeBufferPointer<Float>]) -> Double {
        var total = 0.0
        for buffer in buffers { total += sumOfSquares(buffer) }
        return total.squareRoot()
    }

    /// Megatron's `max_norm / (total_norm + 1e-6)`; gradients are scaled by it only when it is below 1.
    public static func clipCoefficient(maxNorm: Double, totalNorm: Double) -> Double {
        maxNorm / (totalNorm + 1.0e-6)
    }

    /// Scales every buffer by the clip coefficient when it is below 1 (`clip_grad_by_total_norm_fp32`),
    /// and returns the coefficient.
    @discardableResult
    public static func clip(_ buffers: [UnsafeMutableBufferPointer<Float>], maxNorm: Double, totalNorm: Double) -> Double {
        let coefficient = clipCoefficient(maxNorm: maxNorm, totalNorm: totalNorm)
        if coefficient < 1 {
            for buffer in buffers { scale(buffer, by: Float(coefficient)) }
        }
        return coefficient
    }

    /// Multiplies every element of `buffer` by `factor`.
    public static func scale(_ buffer: UnsafeMutableBufferPointer<Float>, by factor: Float) {
        guard let base = buffer.baseAddress else { return }
        forEachLaneBlock(buffer.count) { i, n in
            storeLanes(loadLanes(base, i, n) * factor, base, i, n)
        }
    }

    /// The sum of the squares of `buffer`'s elements, summed as `globalL2Norm` sums them (a rank's share of a
    /// norm that spans several ranks).
    public static func sumOfSquares(_ buffer: UnsafeBufferPointer<Float>) -> Double {
        guard let base = buffer.baseAddress else { return 0 }
        let partials = mapBlocks(buffer.count) { range -> Double in
            var acc = SIMD8<Double>()
            var i = range.lowerBound
            while i < range.upperBound {
                // Converting each lane to Double costs more than the squares; do it once per 4 vectors.
                var run = FloatLanes()
                for _ in 0..<4 where i < range.upperBound {
                    let n = min(FloatLanes.scalarCount, range.upperBound - i)
                    let x = loadLanes(base, i, n)
                    run += x * x
                    i += n
                }
                acc += SIMD8<Double>(run)
            }
            return acc.sum()
        }
        return partials.reduce(0, +)
    }
}

/// Inf / NaN detection on gradients, as the mixed-precision optimizer needs before a step.
public enum NonFiniteGradients {
    /// True when any element of any buffer is inf or NaN.
    public static func containsNonFinite(_ buffers: [UnsafeBufferPointer<Float>]) -> Bool {
        buffers.contains { buffer in
            guard let base = buffer.baseAddress else { return false }
            return mapBlocks(buffer.count) { range in blockHasNonFinite(base, range) }.contains(true)
        }
    }

    /// Multiplies every element by `inverseScale` and reports whether any element was inf or NaN before,
    /// like torch's `_amp_foreach_non_finite_check_and_unscale_` that Megatron calls. Every buffer is
    /// unscaled even after a non-finite value is found, as there.
    public static func unscaleAndCheck(_ buffers: [UnsafeMutableBufferPointer<Float>], inverseScale: Float) -> Bool {
        var found = false
        for buffer in buffers {
            guard let base = buffer.baseAddress else { continue }
            let flags = mapBlocks(buffer.count) { range -> Bool in
                let nonFinite = blockHasNonFinite(UnsafePointer(base), range)
                if inverseScale != 1 {
                    var i = range.lowerBound
                    while i < range.upperBound {
                        let n = min(FloatLanes.scalarCount, range.upperBound - i)
                        storeLanes(loadLanes(base, i, n) * inverseScale, base, i, n)
                        i += n
                    }
                }
                return nonFinite
            }
            found = found || flags.contains(true)
        }
        return found
    }

    private static func blockHasNonFinite(_ base: UnsafePointer<Float>, _ range: Range<Int>) -> Bool {
        // x * 0 is 0 for finite x and NaN for inf or NaN; padding lanes load as 0.
        var bad = SIMDMask<SIMD8<Int32>>()
        var i = range.lowerBound
        while i < range.upperBound {
            let n = min(FloatLanes.scalarCount, range.upperBound - i)
            let v = loadLanes(base, i, n)
            bad .|= (v * 0) .!= 0
            i += n
        }
        return any(bad)
    }
}
