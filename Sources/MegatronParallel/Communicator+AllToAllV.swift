import MegatronTensor

extension Communicator {
    /// All-to-all with uneven row blocks through point-to-point transfers: one `batchSendRecv` of the
    /// non-empty blocks (an NCCL group on the GPU, mailboxes on thread ranks); this rank's own block is copied.
    public func allToAll(_ input: Tensor, inputSplits: [Int], into output: Tensor, outputSplits: [Int]) throws -> CollectiveWork {
        let operation = "allToAll(inputSplits: \(inputSplits), outputSplits: \(outputSplits))"
        guard inputSplits.count == size, outputSplits.count == size, !input.shape.isEmpty,
              input.shape.dropFirst() == output.shape.dropFirst(), input.dtype == output.dtype,
              inputSplits.allSatisfy({ $0 >= 0 }), outputSplits.allSatisfy({ $0 >= 0 }),
              inputSplits.reduce(0, +) == input.size(0), outputSplits.reduce(0, +) == output.size(0),
              input.isContiguous, output.isContiguous
        else {
            throw CommunicatorError(operation, "rank \(rank) of \(size) got input \(input.shape) \(input.dtype) and output "
                + "\(output.shape) \(output.dtype): both contiguous, alike but in dimension 0, with one split per rank "
                + "summing to their rows")
        }
        let inputStarts = Self.starts(inputSplits), outputStarts = Self.starts(outputSplits)
        var transfers: [PointToPoint] = []
        for peer in 0..<size where peer != rank && inputSplits[peer] > 0 {
            transfers.append(.send(input.narrowed(0, start: inputStarts[peer], length: inputSplits[peer]), to: peer))
        }
        for peer in 0..<size where peer != rank && outputSplits[peer] > 0 {
            transfers.append(.recv(into: output.narrowed(0, start: outputStarts[peer], length: outputSplits[peer]), from: peer))
        }
        guard inputSplits[rank] == outputSplits[rank] else {
            throw CommunicatorError(operation, "rank \(rank) sends itself \(inputSplits[rank]) rows but expects \(outputSplits[rank])")
        }
        if inputSplits[rank] > 0 {
            Ops.copy(input.narrowed(0, start: inputStarts[rank], length: inputSplits[rank]),
                     into: output.narrowed(0, start: outputStarts[rank], length: outputSplits[rank]))
        }
        return transfers.isEmpty ? CollectiveWorks([]) : try batchSendRecv(transfers)
    }

    private static func starts(_ splits: [Int]) -> [Int] {
        splits.reduce(into: [0]) { $0.append($0.last! + $1) }
    }
}
