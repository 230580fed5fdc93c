extension GPTBatch {
    /// Throws when a token or label id lies outside the model's vocabulary `0..<vocabularySize`, naming the
    /// dataset, the document it came from, the id and the vocabulary. Such ids trap the CPU's embedding and
    /// turn GPU rows into NaN, so a batch is checked where it is built: one pass over a few thousand ids.
    ///
    /// ```swift
    /// let batch = GPTBatch(sampleIDs: ids, samples: ids.map { train.sample($0) })
    /// try batch.checkTokenIDs(below: model.vocabSize, source: train, data: "training data")
    /// ```
    public func checkTokenIDs(below vocabularySize: Int, source: any GPTSampleSource, data: String) throws {
        var lowest = Int32.max, highest = Int32.min
        for id in tokens {
            lowest = Swift.min(lowest, id)
            highest = Swift.max(highest, id)
        }
        for id in labels {
            lowest = Swift.min(lowest, id)
            highest = Swift.max(highest, id)
        }
        guard lowest < 0 || Int(highest) >= vocabularySize else { return }
        let bad = lowest < 0 ? lowest : highest
        let place = sampleIDs.lazy.compactMap { sample in
            source.pieces(ofSample: sample).first { $0.tokens.contains(bad) }.map { piece in
                "document \(piece.sequence) of \(piece.datasetPath ?? "the mock data") (sample \(sample) of the \(data))"
            }
        }.first ?? "samples \(sampleIDs.first ?? 0)...\(sampleIDs.last ?? 0) of the \(data)"
        let saturated = bad == Int32.max ? " or above (an int64 id beyond int32)" : ""
        throw DatasetError("token id \(bad)\(saturated) in \(place) is outside the model's vocabulary 0..<\(vocabularySize): "
            + "was the dataset made with another tokenizer? Run preprocess-data with this run's tokenizer flags, "
            + "or give the tokenizer (--vocab-size) the data was made with")
    }
}
