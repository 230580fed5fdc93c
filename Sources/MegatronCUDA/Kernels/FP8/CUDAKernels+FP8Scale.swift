extension CUDAKernels {
    /// Delayed scaling's update of one tensor's scale (fp8.cu `fp8_delayed_scale_update`, FP8ScaleMath's
    /// `delayedUpdate`): reads the window `history` (`length` fp32, slot 0 replaced by the fp32 at `amax`) and
    /// the old `scale`, writes the rolled window, the new scale and its inverse. All are device addresses.
    public func fp8DelayedScaleUpdate(newHistory: UInt64, newScale: UInt64, newScaleInverse: UInt64,
                                      history: UInt64, amax: UInt64, scale: UInt64, length: Int,
                                      fp8Max: Float, margin: Float, useMax: Bool, stream: CUDAStream) throws {
        let kernel = "fp8_delayed_scale_update"
        try Self.requirePointers(kernel, ["newHistory": newHistory, "newScale": newScale, "newScaleInverse": newScaleInverse,
                                          "history": history, "amax": amax, "scale": scale])
        guard length > 0 else { throw CUDAError.invalidArgument("\(kernel): the amax history needs at least one slot") }
        try launch("fp8.cu", kernel, grid: .init(1), block: .init(32), stream: stream,
                   [.pointer(newHistory), .pointer(newScale), .pointer(newScaleInverse), .pointer(history), .pointer(amax),
                    .pointer(scale), .int32(Int32(length)), .float32(fp8Max), .float32(margin), .int32(useMax ? 1 : 0)])
    }

    /// Current scaling's scale from the fp32 amax at `amax` (fp8.cu `fp8_current_scale`, FP8ScaleMath's
    /// `currentScale`): writes the scale and its inverse.
    public func fp8CurrentScale(scale: UInt64, scaleInverse: UInt64, amax: UInt64, fp8Max: Float, stream: CUDAStream) throws {
        let kernel = "fp8_current_scale"
        try Self.requirePointers(kernel, ["scale": scale, "scaleInverse": scaleInverse, "amax": amax])
        try launch("fp8.cu", kernel, grid: .init(1), block: .init(32), stream: stream,
                   [.pointer(scale), .pointer(scaleInverse), .pointer(amax), .float32(fp8Max)])
    }
}
