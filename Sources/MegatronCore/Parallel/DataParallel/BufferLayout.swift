/// Where each parameter of one parameter-and-gradient buffer lives in its flat storage, and how that
/// storage is cut into buckets: the index math of Megatron's `_ParamAndGradBuffer`, with no tensors.
///
/// Parameters are laid out in reverse order of definition, so buckets fill in the order backward produces
/// gradients. A bucket is closed once it holds at least `bucketSize` elements. For the distributed optimizer
/// every parameter starts at a multiple of 64 elements and every bucket ends at a multiple of
/// `lcm(dp, 128)` (also of 2^16 with `padForHighBusBandwidth`), so each bucket splits into `dp` equal shards.
///
/// ```swift
/// let layout = BufferLayout(elementCounts: [300, 20, 500], bucketSize: 400, dataParallelSize: 2,
///                           padForDistributedOptimizer: true)
/// layout.buckets.map(\.range)          // [0..<512, 512..<896]: [500] then [20, 300]
/// layout.shardPieces(bucket: 0, rank: 1, dataParallelSize: 2)  // what rank 1 owns of bucket 0
/// ```
public struct BufferLayout: Equatable, Sendable {
    /// One bucket: a padded range of the buffer and the parameters in it.
    public struct Bucket: Equatable, Sendable {
        /// Elements of the buffer, padding included.
        public var range: Range<Int>
        /// Elements from the bucket start to the end of its last parameter (Megatron's `numel_unpadded`).
        public var numelUnpadded: Int
        /// Indices into the parameter list, in buffer order (last defined first).
        public var parameterIndices: [Int]
    }

    /// Range of each parameter in the buffer, indexed as the parameter list given to `init`.
    public private(set) var parameterRanges: [Range<Int>]
    /// Bucket of each parameter, indexed as the parameter list.
    public private(set) var parameterBuckets: [Int]
    public private(set) var buckets: [Bucket] = []
    /// Elements of the whole buffer, padding included.
    public private(set) var numel = 0

    /// - Parameters:
    ///   - elementCounts: element count of each parameter, in definition order.
    ///   - bucketSize: close a bucket once it holds this many elements; nil: one bucket (the whole buffer).
    ///   - needsOwnBucket: parameters that get a bucket of their own with the distributed optimizer
    ///     (Megatron's shared embedding); nil: none.
    public init(elementCounts: [Int], bucketSize: Int?, dataParallelSize: Int, padForDistributedOptimizer: Bool,
                padForHighBusBandwidth: Bool = false, needsOwnBucket: [Bool]? = nil) {
        precondition(dataParallelSize >= 1, "data-parallel size must be at least 1, got \(dataParallelSize)")
        precondition(needsOwnBucket == nil || needsOwnBucket!.count == elementCounts.count,
                     "needsOwnBucket has \(needsOwnBucket!.count) flags for \(elementCounts.count) parameters")
        parameterRanges = Array(repeating: 0..<0, count: elementCounts.count)
        parameterBuckets = Array(repeating: 0, count: elementCounts.count)
        let bucketDivisor = padForHighBusBandwidth ? lcm(lcm(dataParallelSize, 128), 1 << 16) : lcm(dataParallelSize, 128)
        func padEnd(_ end: Int) -> Int { padForDistributedOptimizer ? roundUp(end, bucketDivisor) : end }
        func padStart(_ start: Int) -> Int { padForDistributedOptimizer ? roundUp(start, 64) : start }
        func ownBucket(_ i: Int) -> Bool { padForDistributedOptimizer && (needsOwnBucket?[i] ?? false) }

        var bucketStart = 0, next = 0
        var members: [Int] = []
        func closeBucket(at paramEnd: Int) -> Int {
            let end = padEnd(paramEnd)
            buckets.append(Bucket(range: bucketStart..<end, numelUnpadded: paramEnd - bucketStart, parameterIndices: members))
            bucketStart = end
            members = []
            return end
        }
        for i in elementCounts.indices.reversed() {
            var start = padStart(next)
            if ownBucket(i) && !members.isEmpty { start = closeBucket(at: start) }
            let end = start + elementCounts[i]
            parameterRanges[i] = start..<end
            parameterBuckets[i] = buckets.count
            members.append(i)
            if let bucketSize, end - bucketStart >= bucketSize {
                next = closeBucket(at: end)
            } else if ownBucket(i) {
                next = closeBucket(at: end)
            } else {
                next = end
            }
        }
        if !members.isEmpty { _ = closeBucket(at: next) }
        numel = buckets.last?.range.upperBound ?? 0
    }

    /// The part of `bucket` that data-parallel rank `rank` owns with the distributed optimizer:
    /// the `rank`-th of `dataParallelSize` equal contiguous pieces, in buffer coordinates.
    public func shard(of bucket: Int, rank: Int, dataParallelSize: Int) -> Range<Int> {
        let range = buckets[bucket].range
        precondition(range.count % dataParallelSize == 0,
                     "bucket \(bucket) of \(range.count) elements does not split into \(dataParallelSize) shards; build the layout with padForDistributedOptimizer")
        let size = range.count / dataParallelSize
        return (range.lowerBound + rank * size)..<(range.lowerBound + (rank + 1) * size)
    }

    /// Where one parameter meets a rank's shard (Megatron's `param_range_map`).
    public struct ShardPiece: Equatable, Sendable {
        public var parameterIndex: Int
        /// The overlap in buffer coordinates.
        public var bufferRange: Range<Int>
        /// The overlap in the parameter's flattened elements.
        public var parameterRange: Range<Int>
        /// The overlap relative to the start of the shard.
        public var shardRange: Range<Int>
    }

    /// The pieces of parameters that fall into `rank`'s shard of `bucket`, in buffer order.
    public func shardPieces(bucket: Int, rank: Int, dataParallelSize: Int) -> [ShardPiece] {
        let shard = shard(of: bucket, rank: rank, dataParallelSize: dataParallelSize)
        return buckets[bucket].parameterIndices.compactMap { i in
            let range = parameterRanges[i].clamped(to: shard)
            guard !range.isEmpty else { return nil }
            let p = parameterRanges[i].lowerBound
            return ShardPiece(parameterIndex: i, bufferRange: range,
                              parameterRange: (range.lowerBound - p)..<(range.upperBound - p),
                              shardRange: (range.lowerBound - shard.lowerBound)..<(range.upperBound - shard.lowerBound))
        }
    }
}

private func roundUp(_ n: Int, _ multiple: Int) -> Int { (n + multiple - 1) / multiple * multiple }

private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

private func lcm(_ a: Int, _ b: Int) -> Int { a / gcd(a, b) * b }
