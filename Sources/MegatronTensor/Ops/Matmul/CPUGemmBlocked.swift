import Foundation

/// Cache blocking of the packed GEMM path (GotoBLAS / BLIS loop nest).
///
/// A `kc`-deep B micro-panel (8 KiB) stays in L1 while the micro-kernel walks down a packed A block;
/// the A block (`mc x kc`, broadcast 4-wide: 384 KiB) stays in L2; the B panel (`kc x nc`, 2 MiB) in L3.
enum GemmBlocking {
    static let kc = 256
    static let mc = 96   // a multiple of GemmTile.rows
    static let nc = 2048 // a multiple of GemmTile.cols
}

extension CPUGemmProblem {
    /// The packed loop nest. For each `kc x nc` B panel, the workers first pack it together, then claim
    /// (A block, column slab) items from a shared counter: a worker slowed by other processes on its
    /// core takes fewer items instead of holding up the others at the end.
    func runBlocked() {
        let workers = max(1, min(availableCores, flops / Self.minFlopsPerWorker))
        let kc = min(GemmBlocking.kc, k)
        let mc = GemmWorkItems.maxRows(m: m, workers: workers)
        let nc = min(GemmBlocking.nc, roundUp(n, GemmTile.cols))
        let packedB = alignedFloats(nc * kc)
        let packedA = (0..<workers).map { _ in alignedFloats(mc * kc * 4) }
        defer {
            packedB.deallocate()
            packedA.forEach { $0.deallocate() }
        }
        for j0 in stride(from: 0, to: n, by: nc) {
            let width = min(nc, n - j0)
            let items = GemmWorkItems(m: m, width: width, workers: workers)
            for p0 in stride(from: 0, to: k, by: kc) {
                let depth = min(kc, k - p0)
                onWorkers(workers) { w in
                    let panels = (width + GemmTile.cols - 1) / GemmTile.cols
                    let first = panels * w / workers, end = panels * (w + 1) / workers
                    guard first < end else { return }
                    let col = first * GemmTile.cols
                    packGemmB(b, row0: p0, col0: j0 + col, depth: depth,
                              cols: min(width, end * GemmTile.cols) - col, into: packedB + col * depth)
                }
                // Later k blocks add onto what the first one stored.
                let blockBeta: Float = p0 == 0 ? beta : 1
                let counter = WorkCounter(items.count)
                onWorkers(workers) { w in
                    while let item = counter.next() {
                        let (rows, cols) = items[item]
                        packGemmA(a, row0: rows.lowerBound, col0: p0, rows: rows.count, depth: depth,
                                  into: packedA[w])
                        multiplyPackedBlock(
                            packedA[w], packedB + cols.lowerBound * depth, rows: rows.count, cols: cols.count,
                            depth: depth, c: c + rows.lowerBound * ldc + j0 + cols.lowerBound, beta: blockBeta)
                    }
                }
            }
        }
    }

    /// Runs the micro-kernel over every tile of one packed `rows x depth` A block times `depth x cols` B panel.
    private func multiplyPackedBlock(
        _ packedA: UnsafePointer<Float>, _ packedB: UnsafePointer<Float>,
        rows: Int, cols: Int, depth: Int, c: UnsafeMutablePointer<Float>, beta: Float
    ) {
        for jr in stride(from: 0, to: cols, by: GemmTile.cols) {
            let bPanel = packedB + jr * depth
            let tileCols = min(GemmTile.cols, cols - jr)
            for ir in stride(from: 0, to: rows, by: GemmTile.rows) {
                let aPanel = packedA + (ir / GemmTile.rows) * depth * GemmTile.aStride
                gemmMicroKernel(
                    kc: depth, a: aPanel, b: bPanel, c: c + ir * ldc + jr, ldc: ldc,
                    rows: min(GemmTile.rows, rows - ir), cols: tileCols, alpha: alpha, beta: beta)
            }
        }
    }
}

/// The units of work over one `m x width` block of C: a block of rows (at most `GemmBlocking.mc`) times
/// a slab of columns.
///
/// Row blocks hold whole micro-tiles, spread evenly, and their number is a multiple of the worker
/// count: 1024 rows in 96-row blocks would make 11 items, so one of 2 workers would do 6 while the
/// other waited after 5. Columns are split into slabs only when there are too few row blocks to keep
/// every worker busy.
private struct GemmWorkItems {
    let m: Int, width: Int
    let tiles: Int, rowBlocks: Int, slabs: Int, slabWidth: Int

    init(m: Int, width: Int, workers: Int) {
        (self.m, self.width) = (m, width)
        tiles = (m + GemmTile.rows - 1) / GemmTile.rows
        rowBlocks = Self.rowBlocks(tiles: tiles, workers: workers)
        let wanted = workers == 1 ? 1 : (3 * workers + rowBlocks - 1) / rowBlocks
        slabWidth = roundUp((width + wanted - 1) / wanted, GemmTile.cols)
        slabs = (width + slabWidth - 1) / slabWidth
    }

    static func rowBlocks(tiles: Int, workers: Int) -> Int {
        let tilesPerBlock = GemmBlocking.mc / GemmTile.rows
        return min(tiles, roundUp((tiles + tilesPerBlock - 1) / tilesPerBlock, workers))
    }

    /// The most rows an item has: the height of a packed A buffer.
    static func maxRows(m: Int, workers: Int) -> Int {
        let tiles = (m + GemmTile.rows - 1) / GemmTile.rows
        let blocks = rowBlocks(tiles: tiles, workers: workers)
        return (tiles + blocks - 1) / blocks * GemmTile.rows
    }

    var count: Int { rowBlocks * slabs }

    /// Rows of C and columns within the block, for item `i`.
    subscript(i: Int) -> (rows: Range<Int>, cols: Range<Int>) {
        let block = i / slabs, s0 = (i % slabs) * slabWidth
        let firstTile = tiles * block / rowBlocks, endTile = tiles * (block + 1) / rowBlocks
        return (firstTile * GemmTile.rows..<min(m, endTile * GemmTile.rows), s0..<min(width, s0 + slabWidth))
    }
}

/// Hands out `0..<count` one index at a time to whichever worker asks first.
private final class WorkCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var nextIndex = 0
    private let count: Int

    init(_ count: Int) { self.count = count }

    func next() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard nextIndex < count else { return nil }
        nextIndex += 1
        return nextIndex - 1
    }
}

/// Runs `body(w)` for `w` in `0..<workers`, concurrently when `workers > 1`, and returns when all are done.
private func onWorkers(_ workers: Int, _ body: (Int) -> Void) {
    if workers == 1 {
        body(0)
    } else {
        DispatchQueue.concurrentPerform(iterations: workers, execute: body)
    }
}

@inline(__always)
private func roundUp(_ x: Int, _ multiple: Int) -> Int {
    (x + multiple - 1) / multiple * multiple
}

/// Uninitialized floats on a 64-byte (cache line) boundary; the micro-kernel's aligned loads need 16.
private func alignedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
        .bindMemory(to: Float.self, capacity: count)
}
