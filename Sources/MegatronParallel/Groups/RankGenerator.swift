/// Megatron's `RankGenerator`: lays the world out as a grid of parallel axes and lists the rank groups that
/// vary along chosen axes.
///
/// In the order string the leftmost axis varies fastest, so with the default "tp-cp-ep-dp-pp" a rank is
/// `tp + cp·TP + ep·TP·CP + dp·TP·CP·EP + pp·TP·CP·EP·DP`. A group along axes A (e.g. "tp-dp") holds the ranks
/// that differ only in A's coordinates, ordered with A's first axis fastest; groups are enumerated by the
/// other axes' coordinates, again leftmost fastest.
///
/// ```swift
/// let grid = try RankGenerator(sizes: ["tp": 2, "pp": 4, "dp": 2], order: "tp-cp-ep-dp-pp")
/// grid.groups("tp")   // [[0, 1], [2, 3], ...]
/// grid.groups("pp")   // [[0, 4, 8, 12], [1, 5, 9, 13], ...]
/// ```
public struct RankGenerator: Sendable, Equatable {
    /// Axis names, fastest first, and their sizes.
    public let axes: [String]
    public let sizes: [Int]
    public var worldSize: Int { sizes.reduce(1, *) }

    /// `sizes` maps axis names to sizes; an axis of size > 1 missing from `order` is an error, size-1 axes
    /// missing from it are appended (they change no rank).
    public init(sizes: [String: Int], order: String) throws {
        var axes = order.split(separator: "-").map(String.init)
        for (axis, size) in sizes.sorted(by: { $0.key < $1.key }) where !axes.contains(axis) {
            guard size == 1 else {
                throw ParallelLayoutError("axis '\(axis)' has size \(size) but is missing from order '\(order)'")
            }
            axes.append(axis)
        }
        guard Set(axes).count == axes.count else { throw ParallelLayoutError("order '\(order)' repeats an axis") }
        for (axis, size) in sizes where size < 1 {
            throw ParallelLayoutError("axis '\(axis)' has size \(size); sizes must be at least 1")
        }
        self.axes = axes
        self.sizes = axes.map { sizes[$0] ?? 1 }
    }

    /// The groups along `members` ("tp", "tp-pp", "dp-cp", ...), each listing world ranks in group order.
    public func groups(_ members: String) -> [[Int]] {
        let names = Set(members.split(separator: "-").map(String.init))
        precondition(names.isSubset(of: axes), "unknown axis in '\(members)'; axes are \(axes)")
        let strides = RankGenerator.prefixProducts(sizes)
        let inGroup = axes.map { names.contains($0) }
        let memberAxes = axes.indices.filter { inGroup[$0] }
        let otherAxes = axes.indices.filter { !inGroup[$0] }
        let groupSize = memberAxes.map { sizes[$0] }.reduce(1, *)
        return (0..<(worldSize / groupSize)).map { groupIndex in
            let base = offset(of: groupIndex, along: otherAxes, strides: strides)
            return (0..<groupSize).map { base + offset(of: $0, along: memberAxes, strides: strides) }
        }
    }

    /// Decomposes `index` into coordinates along `axisIndices` (first fastest) and returns their world offset.
    private func offset(of index: Int, along axisIndices: [Int], strides: [Int]) -> Int {
        var remaining = index
        var result = 0
        for axis in axisIndices {
            result += (remaining % sizes[axis]) * strides[axis]
            remaining /= sizes[axis]
        }
        return result
    }

    private static func prefixProducts(_ values: [Int]) -> [Int] {
        var products = [1]
        for value in values.dropLast() { products.append(products.last! * value) }
        return products
    }
}

/// A parallel layout that does not fit the world, or an invalid order string.
public struct ParallelLayoutError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
