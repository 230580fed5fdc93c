/// A read-only fp32 matrix given by a base pointer and element strides; a transposed GEMM operand is
/// the same storage with the strides swapped.
struct GemmOperandView {
    let base: UnsafePointer<Float>
    let rowStride: Int
    let colStride: Int

    /// The `op(X)` view of a row-major matrix with leading dimension `ld`.
    init(_ base: UnsafePointer<Float>, ld: Int, transposed: Bool) {
        self.base = base
        (rowStride, colStride) = transposed ? (1, ld) : (ld, 1)
    }

    @inline(__always)
    func pointer(_ row: Int, _ col: Int) -> UnsafePointer<Float> {
        base + (row &* rowStride &+ col &* colStride)
    }
}

/// Packs the `rows x depth` block of `a` at (`row0`, `col0`) into `GemmTile.rows`-high micro-panels.
///
/// Each micro-panel holds, for every k step, its rows' values broadcast to 4 lanes each (see
/// `GemmTile`); rows past the block's end are zeros. `dst` needs
/// `ceil(rows / GemmTile.rows) * depth * GemmTile.aStride` floats, 16-byte aligned.
func packGemmA(
    _ a: GemmOperandView, row0: Int, col0: Int, rows: Int, depth: Int, into dst: UnsafeMutablePointer<Float>
) {
    var out = UnsafeMutableRawPointer(dst)
    for panelRow in stride(from: 0, to: rows, by: GemmTile.rows) {
        let height = min(GemmTile.rows, rows - panelRow)
        let src = a.pointer(row0 + panelRow, col0)
        for p in 0..<depth {
            let column = src + p &* a.colStride
            for r in 0..<GemmTile.rows {
                let v: Float = r < height ? column[r &* a.rowStride] : 0
                out.storeBytes(of: SIMD4(repeating: v), as: SIMD4<Float>.self)
                out += 16
            }
        }
    }
}

/// Packs the `depth x cols` block of `b` at (`row0`, `col0`) into `GemmTile.cols`-wide micro-panels:
/// for every k step, the panel's `GemmTile.cols` values of that row; columns past the block's end are
/// zeros. `dst` needs `ceil(cols / GemmTile.cols) * depth * GemmTile.cols` floats, 16-byte aligned.
func packGemmB(
    _ b: GemmOperandView, row0: Int, col0: Int, depth: Int, cols: Int, into dst: UnsafeMutablePointer<Float>
) {
    var out = dst
    for panelCol in stride(from: 0, to: cols, by: GemmTile.cols) {
        let width = min(GemmTile.cols, cols - panelCol)
        let src = b.pointer(row0, col0 + panelCol)
        if width == GemmTile.cols && b.colStride == 1 {
            // Contiguous rows: one unaligned 8-float load per k step.
            for p in 0..<depth {
                let v = UnsafeRawPointer(src + p &* b.rowStride).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(out).storeBytes(of: v, as: SIMD8<Float>.self)
                out += GemmTile.cols
            }
        } else {
            for p in 0..<depth {
                let row = src + p &* b.rowStride
                for j in 0..<GemmTile.cols {
                    out[j] = j < width ? row[j &* b.colStride] : 0
                }
                out += GemmTile.cols
            }
        }
    }
}
