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

extension GemmProblem {
    /// Splits C into one block of rows (or columns, when C is wide) per worker; each worker packs its
    /// own panels, so workers share nothing but read-only A and B.
    func runBlocked() {
        let splitRows = m >= n
        let tile = splitRows ? GemmTile.rows : GemmTile.cols
        let tiles = ((splitRows ? m : n) + tile - 1) / tile
        let flopsPerTile = 2 * tile * (splitRows ? n : m) * k
        let grain = max(1, Self.minFlopsPerWorker / max(1, flopsPerTile))
        parallelChunks(tiles, grain: grain) { chunk in
            let lo = chunk.lowerBound * tile
            if splitRows {
                runBlocked(rows: lo..<min(m, chunk.upperBound * tile), cols: 0..<n)
            } else {
                runBlocked(rows: 0..<m, cols: lo..<min(n, chunk.upperBound * tile))
            }
        }
    }

    /// The blocked loop nest over one block of C, single-threaded.
    func runBlocked(rows: Range<Int>, cols: Range<Int>) {
        let kc = min(GemmBlocking.kc, k)
        let mc = min(GemmBlocking.mc, roundUp(rows.count, GemmTile.rows))
        let nc = min(GemmBlocking.nc, roundUp(cols.count, GemmTile.cols))
        let packedA = alignedFloats(mc * kc * 4)
        let packedB = alignedFloats(nc * kc)
        defer {
            packedA.deallocate()
            packedB.deallocate()
        }
        for j0 in stride(from: cols.lowerBound, to: cols.upperBound, by: nc) {
            let width = min(nc, cols.upperBound - j0)
            for p0 in stride(from: 0, to: k, by: kc) {
                let depth = min(kc, k - p0)
                packGemmB(b, row0: p0, col0: j0, depth: depth, cols: width, into: packedB)
                // Later k blocks add onto what the first one stored.
                let blockBeta: Float = p0 == 0 ? beta : 1
                for i0 in stride(from: rows.lowerBound, to: rows.upperBound, by: mc) {
                    let height = min(mc, rows.upperBound - i0)
                    packGemmA(a, row0: i0, col0: p0, rows: height, depth: depth, into: packedA)
                    multiplyPackedBlock(
                        packedA, packedB, rows: height, cols: width, depth: depth,
                        c: c + i0 * ldc + j0, beta: blockBeta)
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

@inline(__always)
private func roundUp(_ x: Int, _ multiple: Int) -> Int {
    (x + multiple - 1) / multiple * multiple
}

/// Uninitialized floats on a 64-byte (cache line) boundary; the micro-kernel's aligned loads need 16.
private func alignedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
        .bindMemory(to: Float.self, capacity: count)
}
