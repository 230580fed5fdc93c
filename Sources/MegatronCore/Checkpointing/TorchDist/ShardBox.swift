import MegatronTensor

/// A box of a tensor, as PyTorch DCP describes a chunk: an offset and a length per dimension. A sharded
/// checkpoint records the box of every piece a rank wrote; a loading rank reads the boxes it needs and takes
/// what each saved piece overlaps.
public struct ShardBox: Equatable, Sendable, CustomStringConvertible {
    public var offsets: [Int]
    public var sizes: [Int]

    public init(offsets: [Int], sizes: [Int]) { (self.offsets, self.sizes) = (offsets, sizes) }

    /// The box covering all of a tensor of `shape`.
    public init(whole shape: [Int]) { self.init(offsets: [Int](repeating: 0, count: shape.count), sizes: shape) }

    public var count: Int { sizes.reduce(1, *) }
    public var description: String { "offsets \(offsets) sizes \(sizes)" }

    /// The part both boxes cover, or nil when they do not overlap.
    public func intersection(_ other: ShardBox) -> ShardBox? {
        guard other.offsets.count == offsets.count else { return nil }
        var result = ShardBox(offsets: [], sizes: [])
        for d in offsets.indices {
            let start = max(offsets[d], other.offsets[d])
            let end = min(offsets[d] + sizes[d], other.offsets[d] + other.sizes[d])
            guard end > start || (sizes[d] == 0 && other.sizes[d] == 0) else { return nil }
            result.offsets.append(start)
            result.sizes.append(max(0, end - start))
        }
        return result
    }

    /// This box in the coordinates of a box starting at `origin`.
    public func relative(to origin: [Int]) -> ShardBox {
        ShardBox(offsets: zip(offsets, origin).map { $0 - $1 }, sizes: sizes)
    }

    /// The view of `t` this box covers (a box relative to `t`'s own origin).
    public func view(of t: Tensor) -> Tensor {
        var v = t
        for d in offsets.indices { v = v.narrowed(d, start: offsets[d], length: sizes[d]) }
        return v
    }

    /// The fewest boxes (whole rows where possible) that cover the elements `range` of a C-ordered tensor of
    /// `shape`: a distributed-optimizer shard is a contiguous range of a parameter's flattened elements.
    public static func covering(flat range: Range<Int>, of shape: [Int]) -> [ShardBox] {
        guard !range.isEmpty else { return [] }
        guard let rows = shape.first else { return [ShardBox(offsets: [], sizes: [])] }
        let rest = Array(shape.dropFirst())
        let inner = rest.reduce(1, *)
        precondition(range.upperBound <= rows * inner, "flat range \(range) outside shape \(shape)")
        func inRow(_ row: Int, _ part: Range<Int>) -> [ShardBox] {
            covering(flat: part, of: rest).map { ShardBox(offsets: [row] + $0.offsets, sizes: [1] + $0.sizes) }
        }
        var boxes: [ShardBox] = []
        var start = range.lowerBound
        if start % inner != 0 {
            let row = start / inner
            let end = min(range.upperBound, (row + 1) * inner)
            boxes += inRow(row, (start - row * inner)..<(end - row * inner))
            start = end
        }
        let wholeEnd = range.upperBound / inner * inner
        if start < wholeEnd {
            boxes.append(ShardBox(offsets: [start / inner] + rest.map { _ in 0 }, sizes: [(wholeEnd - start) / inner] + rest))
            start = wholeEnd
        }
        if start < range.upperBound {
            let row = start / inner
            boxes += inRow(row, 0..<(range.upperBound - row * inner))
        }
        return boxes
    }
}
