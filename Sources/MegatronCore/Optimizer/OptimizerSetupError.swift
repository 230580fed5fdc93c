/// A hyperparameter, schedule setting or saved state that the optimizer library cannot accept.
///
/// The message names the setting (with Megatron's flag name where there is one) and the value found.
public struct OptimizerSetupError: Error, CustomStringConvertible, Equatable {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// Throws `OptimizerSetupError(message())` unless `condition` holds.
func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw OptimizerSetupError(message()) }
}
