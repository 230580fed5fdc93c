

/// Whether operations record the graph for backward. Scoped per task/thread, never global.
public enum GradMode {
    @TaskLocal static var enabled = true

    /// True unless inside `withoutGrad`.
    public static var isEnabled: Bool { enabled }
}

/// Runs `body` without recording any autograd graph (evaluation, optimizer steps, the first pass of
/// activation checkpointing).
///
/// ```swift
/// let logits = withoutGrad { model(tokens) }
/// ```
public func withoutGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$enabled.withValue(false, operation: body)
}

/// Runs `body` with graph recording on, even inside `withoutGrad`.
public func withGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$enabled.withValue(true, operation: body)
}

/// The device new parameters are placed on, scoped like `withoutGrad` (PyTorch's `with torch.device(...)`).
public enum DevicePlacement {
    @TaskLocal static var device: Device = .cpu

    /// Where `parameter(...)` puts new parameters in this scope.
    public static var current: Device { device }
}

/// Builds modules inside `body` with their parameters on `device`. Parameters are initialized on the CPU
/// and copied, so a seed gives the same weights on every device.
///
/// ```swift
/// let model = onDevice(.cuda(0)) { GPTModel(config: config, vocabSize: 50304, maxSequenceLength: 1024) }
/// ```
public func onDevice<R>(_ device: Device, _ body: () throws -> R) rethrows -> R {
    try DevicePlacement.$device.withValue(device, operation: body)
}
