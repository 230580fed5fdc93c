/// The three index arrays of a GPTDataset split, as Megatron builds and caches them.
///
/// * `documentIndex` (int32): the split's sequence ids, repeated once per epoch and shuffled.
/// * `sampleIndex` (`[numSamples + 1, 2]`, flattened): per sample boundary, (position in `documentIndex`,
///   token offset). Consecutive samples share one token (the extra label token).
/// * `shuffleIndex`: a permutation of `0..<numSamples`.
public struct GPTIndices: Equatable, Sendable {
    public var documentIndex: [Int32]
    public var sampleIndex: [Int64]
    /// numpy dtype of the sample index: `<i4`, or `<i8` when values may exceed int32.
    public var sampleIndexDType: String
    public var shuffleIndex: [Int64]
    /// numpy dtype of the shuffle index: `<u4`, or `<i8` for 2^32−1 samples or more.
    public var shuffleIndexDType: String

    public var sampleCount: Int { sampleIndex.count / 2 - 1 }
}

/// Inputs of the index build: Megatron's `_build_document_sample_shuffle_indices`.
public struct GPTIndexPlan: Sendable {
    public var sequenceLengths: [Int32]
    public var indices: Range<Int>
    public var numSamples: Int?
    public var sequenceLength: Int
    public var seed: Int
    public var addExtraToken: Bool
    public var dropLastPartialSequence: Bool
    /// For error messages: which dataset and split this is.
    public var label: String

    var add: Int { addExtraToken ? 1 : 0 }

    public func tokensPerEpoch() -> Int {
        indices.reduce(0) { $0 + Int(sequenceLengths[$1]) }
    }

    /// Megatron's `_get_num_epochs`, with its endless loop on an empty split turned into an error.
    public func epochs(tokensPerEpoch: Int) throws -> Int {
        guard let numSamples else { return 1 }
        guard tokensPerEpoch > 0 else {
            throw DatasetError("\(label): the split holds no tokens (\(indices.count) sequences) but \(numSamples) samples are requested; adjust --split or add data")
        }
        // The loop's answer (the fewest epochs holding the requested tokens) by division, with checked products.
        let (product, overflow) = numSamples.multipliedReportingOverflow(by: sequenceLength)
        guard numSamples >= 0, !overflow, product < Int.max - add else {
            throw DatasetError("\(label): \(numSamples) samples of \(sequenceLength) tokens is more than this build can index")
        }
        let requested = product + add
        return max(1, (requested + tokensPerEpoch - 1) / tokensPerEpoch)
    }

    /// Builds the indices exactly as Megatron (same numbers for the same seed).
    public func build() throws -> GPTIndices {
        guard sequenceLength > 1 else { throw DatasetError("\(label): sequence length must be above 1, got \(sequenceLength)") }
        guard seed >= 0 && seed <= Int(UInt32.max) else { throw DatasetError("\(label): seed must be in 0...2^32-1 (numpy's rule), got \(seed)") }
        let tokensPerEpoch = tokensPerEpoch()
        let epochs = try epochs(tokensPerEpoch: tokensPerEpoch)
        guard tokensPerEpoch > 1 else {
            throw DatasetError("\(label): the split holds \(tokensPerEpoch) tokens; at least 2 are needed to make a sample")
        }
        var separateFinalEpoch = false
        var samplesSansFinalEpoch = 0
        if epochs > 1, let numSamples {
            samplesSansFinalEpoch = ((epochs - 1) * tokensPerEpoch - add) / sequenceLength
            let fromFinalEpoch = numSamples - samplesSansFinalEpoch
            let perEpoch = (tokensPerEpoch - add) / sequenceLength
            precondition(fromFinalEpoch >= 0 && fromFinalEpoch <= perEpoch + 1, "Megatron's epoch accounting broke")
            separateFinalEpoch = fromFinalEpoch < Int(0.80 * Double(perEpoch))
        }
        var random = NumpyRandomState(seed: UInt32(seed))
        let documentIndex: [Int32]
        if separateFinalEpoch {
            documentIndex = shuffledDocuments(epochs: epochs - 1, &random) + shuffledDocuments(epochs: 1, &random)
        } else {
            documentIndex = shuffledDocuments(epochs: epochs, &random)
        }
        let sampleIndex = buildSampleIndex(documentIndex, epochs: epochs, tokensPerEpoch: tokensPerEpoch)
        let total = sampleIndex.count / 2 - 1
        let first = separateFinalEpoch ? samplesSansFinalEpoch : total
        var shuffleIndex = shuffled(0..<first, &random)
        if first < total { shuffleIndex += shuffled(first..<total, &random) }
        let maxSampleValue = max(documentIndex.count, Int(sequenceLengths.max() ?? 0))
        return GPTIndices(documentIndex: documentIndex, sampleIndex: sampleIndex,
                          sampleIndexDType: maxSampleValue <= Int(Int32.max) ? "<i4" : "<i8",
                          shuffleIndex: shuffleIndex,
                          shuffleIndexDType: total >= Int(UInt32.max) - 1 ? "<i8" : "<u4")
    }

    private func shuffledDocuments(epochs: Int, _ random: inout NumpyRandomState) -> [Int32] {
        var ids = [Int32]()
        ids.reserveCapacity(epochs * indices.count)
        for _ in 0..<epochs { ids.append(contentsOf: indices.map { Int32($0) }) }
        random.shuffle(&ids)
        return ids
    }

    private func shuffled(_ range: Range<Int>, _ random: inout NumpyRandomState) -> [Int64] {
        var values = range.map { Int64($0) }
        random.shuffle(&values)
        return values
    }

    /// helpers.cpp `build_sample_idx`.
    func buildSampleIndex(_ documentIndex: [Int32], epochs: Int, tokensPerEpoch: Int) -> [Int64] {
        let numSamples: Int
        if dropLastPartialSequence {
            numSamples = (epochs * tokensPerEpoch - add) / sequenceLength
        } else {
            // helpers.cpp divides in single precision: `ceil(float(...) / seq_length)`.
            numSamples = Int((Float(epochs * tokensPerEpoch - add) / Float(sequenceLength)).rounded(.up))
        }
        var out = [Int64]()
        out.reserveCapacity(2 * (numSamples + 1))
        var d = 0, offset = 0
        out += [0, 0]
        for _ in 0..<numSamples {
            var remaining = sequenceLength + add
            while remaining != 0 {
                let documentLength = Int(sequenceLengths[Int(documentIndex[d])]) - offset
                remaining -= documentLength
                if remaining <= 0 {
                    offset += remaining + documentLength - add
                    remaining = 0
                } else if d == documentIndex.count - 1 {
                    offset = Int(sequenceLengths[Int(documentIndex[d])]) - add
                    break
                } else {
                    d += 1
                    offset = 0
                }
            }
            out += [Int64(d), Int64(offset)]
        }
        return out
    }
}

extension GPTIndexPlan {
    /// Why `cached` is not what `build()` gives for the current sequence lengths, or nil when it is: a cache
    /// made before the dataset was written again (same prefix, other contents) must not be used, and no
    /// index in it may point past the data. One pass over the indices (the sample index is recomputed from
    /// the cached document order, the shuffle is checked to be a permutation); the tokens are never read.
    func inconsistency(_ cached: GPTIndices) throws -> String? {
        let tokensPerEpoch = tokensPerEpoch()
        let epochs = try epochs(tokensPerEpoch: tokensPerEpoch)
        let expected = epochs * indices.count
        guard cached.documentIndex.count == expected else {
            return "document_index holds \(cached.documentIndex.count) entries; \(epochs) epoch(s) of the split's "
                + "\(indices.count) sequences make \(expected)"
        }
        var timesSeen = [Int](repeating: 0, count: indices.count)
        for id in cached.documentIndex {
            guard indices.contains(Int(id)) else {
                return "document_index names sequence \(id), outside the split's sequences \(indices.lowerBound)..<\(indices.upperBound)"
            }
            timesSeen[Int(id) - indices.lowerBound] += 1
        }
        guard timesSeen.allSatisfy({ $0 == epochs }) else {
            return "document_index does not hold every sequence of the split \(epochs) time(s)"
        }
        guard cached.sampleIndex == buildSampleIndex(cached.documentIndex, epochs: epochs, tokensPerEpoch: tokensPerEpoch) else {
            return "sample_index does not match the sequence lengths in the .idx"
        }
        var isTaken = [Bool](repeating: false, count: cached.sampleCount)
        guard cached.shuffleIndex.count == cached.sampleCount, cached.shuffleIndex.allSatisfy({ sample in
            guard sample >= 0 && sample < Int64(isTaken.count) && !isTaken[Int(sample)] else { return false }
            isTaken[Int(sample)] = true
            return true
        }) else {
            return "shuffle_index is not a permutation of the \(cached.sampleCount) samples"
        }
        return nil
    }
}
