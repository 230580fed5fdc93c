/// An error reading, writing or indexing a dataset; the message names the file and what is wrong.
public struct DatasetError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
