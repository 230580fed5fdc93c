

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
