/// The register-blocked GEMM micro-kernel: one `GemmTile.rows x GemmTile.cols` tile of C from packed panels.
///
/// Why this shape. The package builds for the default x86-64 target (SSE2: 16 registers of 4 floats,
/// no FMA; `unsafeFlags` for `-mavx2` would make the package unusable as a dependency), so the kernel
/// keeps 6 x 8 accumulators in 12 registers, leaving 4 for two B vectors and temporaries. Products are
/// written `acc += a * b`: `addingProduct` asks for a fused multiply-add, which this target lowers to a
/// `fmaf` library call per lane. A is packed with each element already broadcast to 4 lanes, so the
/// inner loop is only aligned loads, `mulps` and `addps` (a shuffle per broadcast would compete with
/// them for the same FP pipes).
enum GemmTile {
    /// Rows of C per micro-kernel call (A micro-panel height).
    static let rows = 6
    /// Columns of C per micro-kernel call (B micro-panel width).
    static let cols = 8
    /// Floats a packed A micro-panel stores per k step: each of the `rows` values broadcast to 4 lanes.
    static let aStride = rows * 4
}

@inline(__always)
private func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
    UnsafeRawPointer(p).load(as: SIMD4<Float>.self)
}

/// Writes `alpha * acc + beta * C` into 4 consecutive floats of C; C is not read when `beta == 0`.
@inline(__always)
private func update4(_ c: UnsafeMutablePointer<Float>, _ acc: SIMD4<Float>, _ alpha: Float, _ beta: Float) {
    let raw = UnsafeMutableRawPointer(c)
    var v = acc * alpha
    if beta != 0 { v += raw.loadUnaligned(as: SIMD4<Float>.self) * beta }
    raw.storeBytes(of: v, as: SIMD4<Float>.self)
}

/// Computes `C[0..<rows, 0..<cols] = alpha * Apanel * Bpanel + beta * C` for one tile.
///
/// `a` is a packed A micro-panel (`kc` steps of `GemmTile.aStride` floats, 16-byte aligned), `b` a
/// packed B micro-panel (`kc` steps of `GemmTile.cols` floats, 16-byte aligned). Panels are zero
/// padded, so edge tiles (`rows < 6` or `cols < 8`) compute a full tile and store only their part.
@inline(__always)
func gemmMicroKernel(
    kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, cols: Int, alpha: Float, beta: Float
) {
    var c00 = SIMD4<Float>(), c01 = SIMD4<Float>(), c10 = SIMD4<Float>(), c11 = SIMD4<Float>()
    var c20 = SIMD4<Float>(), c21 = SIMD4<Float>(), c30 = SIMD4<Float>(), c31 = SIMD4<Float>()
    var c40 = SIMD4<Float>(), c41 = SIMD4<Float>(), c50 = SIMD4<Float>(), c51 = SIMD4<Float>()
    var pa = a, pb = b
    for _ in 0..<kc {
        let b0 = load4(pb), b1 = load4(pb + 4)
        var t = load4(pa)
        c00 += t * b0; c01 += t * b1
        t = load4(pa + 4)
        c10 += t * b0; c11 += t * b1
        t = load4(pa + 8)
        c20 += t * b0; c21 += t * b1
        t = load4(pa + 12)
        c30 += t * b0; c31 += t * b1
        t = load4(pa + 16)
        c40 += t * b0; c41 += t * b1
        t = load4(pa + 20)
        c50 += t * b0; c51 += t * b1
        pa += GemmTile.aStride
        pb += GemmTile.cols
    }
    // Spilling the accumulators to the stack once per tile is noise next to the kc-long loop above.
    let acc = (c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51)
    withUnsafeBytes(of: acc) { raw in
        let tile = raw.baseAddress!.assumingMemoryBound(to: Float.self)
        if rows == GemmTile.rows && cols == GemmTile.cols {
            storeFullTile(tile, c: c, ldc: ldc, alpha: alpha, beta: beta)
        } else {
            storePartialTile(tile, c: c, ldc: ldc, rows: rows, cols: cols, alpha: alpha, beta: beta)
        }
    }
}

/// Stores a whole tile (row-major, `GemmTile.cols` floats a row) with vector loads and stores.
@inline(__always)
private func storeFullTile(
    _ tile: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float
) {
    var row = c
    for r in 0..<GemmTile.rows {
        let t = tile + r &* GemmTile.cols
        update4(row, load4(t), alpha, beta)
        update4(row + 4, load4(t + 4), alpha, beta)
        row += ldc
    }
}

/// Stores the top-left `rows x cols` part of a tile (edge tiles).
private func storePartialTile(
    _ tile: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int,
    rows: Int, cols: Int, alpha: Float, beta: Float
) {
    for r in 0..<rows {
        let crow = c + r * ldc
        for j in 0..<cols {
            let v = alpha * tile[r * GemmTile.cols + j]
            crow[j] = beta == 0 ? v : v + beta * crow[j]
        }
    }
}
