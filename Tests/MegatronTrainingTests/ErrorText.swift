/// What `body` throws, as the text a user reads, or "no error": how the argument tests compare refusals.
func errorText(_ body: () throws -> Void) -> String {
    do {
        try body()
        return "no error"
    } catch {
        return "\(error)"
    }
}
