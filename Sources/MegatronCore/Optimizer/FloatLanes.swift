import MegatronTensor

/// Eight fp32 lanes: the vector width the optimizer kernels compute in.
///
/// Kernels write `a + b * c`, not `addingProduct`: the package builds for baseline x86-64, which has
/// no FMA instruction, so a fused multiply-add becomes a libm call per lane.
/// torch's AVX2 / AVX-512 kernels do fuse, so results may differ from torch's in the last bit.
typealias FloatLanes = SIMD8<Float>

/// Runs `body(offset, lanes)` over `0..<count` in blocks of `FloatLanes.scalarCount` elements (the last
/// block may be partial), with blocks spread over threads by `parallelChunks`.
///
/// Kernels write their arithmetic once, on `FloatLanes`: a partial block is loaded zero-padded and
/// stored back lane by lane, so the tail needs no scalar twin of the formula.
@inline(__always)
func forEachLaneBlock(_ count: Int, grain: Int = 32_768, _ body: (_ offset: Int, _ lanes: Int) -> Void) {
    let width = FloatLanes.scalarCount
    let blocks = (count + width - 1) / width
    parallelChunks(blocks, grain: max(1, grain / width)) { range in
        for block in range {
            let offset = block * width
            body(offset, min(width, count - offset))
        }
    }
}

@inline(__always)
func loadLanes(_ base: UnsafePointer<Float>, _ offset: Int, _ lanes: Int) -> FloatLanes {
    if lanes == FloatLanes.scalarCount {
        return UnsafeRawPointer(base + offset).loadUnaligned(as: FloatLanes.self)
    }
    var v = FloatLanes()
    for lane in 0..<lanes { v[lane] = base[offset + lane] }
    return v
}

@inline(__always)
func loadLanes(_ base: UnsafeMutablePointer<Float>, _ offset: Int, _ lanes: Int) -> FloatLanes {
    loadLanes(UnsafePointer(base), offset, lanes)
}

@inline(__always)
func storeLanes(_ v: FloatLanes, _ base: UnsafeMutablePointer<Float>, _ offset: Int, _ lanes: Int) {
    if lanes == FloatLanes.scalarCount {
        UnsafeMutableRawPointer(base + offset).storeBytes(of: v, as: FloatLanes.self)
        return
    }
    for lane in 0..<lanes { base[offset + lane] = v[lane] }
}

/// Splits `0..<count` into fixed blocks of `blockSize`, runs `body` on each block (blocks spread over
/// threads) and returns the per-block results in order.
///
/// Reductions combine these partial results in a fixed order, so their value does not depend on the
/// number of threads.
func mapBlocks<T>(_ count: Int, blockSize: Int = 16_384, _ body: (Range<Int>) -> T) -> [T] {
    let blocks = (count + blockSize - 1) / blockSize
    return [T](unsafeUninitializedCapacity: blocks) { out, initialized in
        let base = out.baseAddress!
        parallelChunks(blocks, grain: 1) { range in
            for b in range {
                (base + b).initialize(to: body(b * blockSize..<min(count, (b + 1) * blockSize)))
            }
        }
        initialized = blocks
    }
}
