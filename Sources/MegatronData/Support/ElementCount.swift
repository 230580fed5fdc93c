/// The element count of an array of `shape` read from a file, when every dimension is non-negative and the
/// count is at most `limit` (what the file can hold); nil otherwise. The products are checked, so a crafted
/// shape cannot overflow into a small count that passes a size test.
public func boundedElementCount(_ shape: [Int], atMost limit: Int) -> Int? {
    var count = 1
    for n in shape {
        let (product, overflow) = count.multipliedReportingOverflow(by: n)
        guard n >= 0, !overflow, product <= limit else { return nil }
        count = product
    }
    return count
}
