/// numpy's float64 `sum` (pairwise, 8-way unrolled below 128 elements), so normalised blend weights
/// carry the same last bits as Megatron's `normalize`.
enum NumpySum {
    static func sum(_ values: ArraySlice<Double>) -> Double {
        let n = values.count
        let start = values.startIndex
        if n < 8 {
            var total = -0.0
            for v in values { total += v }
            return total
        }
        if n <= 128 {
            var r = (0..<8).map { values[start + $0] }
            var i = 8
            while i < n - n % 8 {
                for j in 0..<8 { r[j] += values[start + i + j] }
                i += 8
            }
            var total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
            while i < n {
                total += values[start + i]
                i += 1
            }
            return total
        }
        var half = n / 2
        half -= half % 8
        return sum(values[start..<(start + half)]) + sum(values[(start + half)...])
    }

    /// Megatron's `normalize`: each weight divided by the numpy sum.
    static func normalize(_ weights: [Double]) -> [Double] {
        let total = sum(weights[...])
        return weights.map { $0 / total }
    }
}
