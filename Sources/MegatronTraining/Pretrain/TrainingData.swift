import MegatronCore
import MegatronData
import MegatronTensor

/// Where a run's micro-batches come from: global sample ids in order, as Megatron's pretraining sampler.
protocol TrainingData {
    var count: Int { get }
    func batch(startingAt first: Int, size: Int) throws -> TrainingBatch
}

/// Samples of a Megatron dataset split (GPTDataset, BlendedDataset or mock) as training batches, whose token
/// ids are checked against the model's vocabulary as each batch is made.
struct DatasetSplitData: TrainingData {
    let source: any GPTSampleSource
    /// The model's (padded) vocabulary size.
    let vocabularySize: Int
    /// The split, as messages name it.
    let name: String

    var count: Int { source.count }

    func batch(startingAt first: Int, size: Int) throws -> TrainingBatch {
        let ids = (first..<(first + size)).map { $0 % source.count }
        let b = GPTBatch(sampleIDs: ids, samples: ids.map { source.sample($0) })
        try b.checkTokenIDs(below: vocabularySize, source: source, data: name)
        return TrainingBatch(tokens: Tensor(shape: b.shape, ints: b.tokens.map(Int.init)),
                             labels: Tensor(shape: b.shape, ints: b.labels.map(Int.init)),
                             lossMask: Tensor(shape: b.shape, values: b.lossMask))
    }
}

/// The tokenizer the run's flags name, with its options (nil for the embedded corpus). Without
/// `--tokenizer-type`, Megatron data means GPT2BPETokenizer, `pretrain_gpt.py`'s default.
func runTokenizer(_ a: PretrainArguments) throws -> (any Tokenizer, TokenizerOptions)? {
    if a.usesEmbeddedCorpus { return nil }
    let options = TokenizerOptions(type: a.tokenizerType ?? .gpt2BPE, vocabFile: a.vocabFile,
                                   mergeFile: a.mergeFile, tokenizerModel: a.tokenizerModel, vocabSize: a.vocabSize,
                                   tiktokenPattern: a.tiktokenPattern, tiktokenNumSpecialTokens: a.tiktokenNumSpecialTokens)
    do {
        return (try buildTokenizer(options), options)
    } catch let error as TokenizerError {
        let implied = a.tokenizerType == nil ? "no --tokenizer-type, so pretrain_gpt.py's default: " : ""
        throw ArgumentError(implied + error.description)
    }
}

/// Train and validation splits of Megatron datasets for this run, sized as Megatron sizes them.
/// `vocabularySize` is the model's (padded) vocabulary, which every token id must lie below; `log` receives
/// a line for each index cache that no longer fit its dataset and was built again.
func megatronDatasetSplits(_ a: PretrainArguments, tokenizer: any Tokenizer, options: TokenizerOptions,
                           trainIters: Int, globalBatchSize: Int, vocabularySize: Int,
                           log: @escaping (String) -> Void) throws -> (TrainingData, TrainingData?, TrainingData?) {
    var config = GPTDatasetConfig(sequenceLength: a.seqLength, tokenizer: DatasetTokenizerInfo(tokenizer, options: options),
                                  randomSeed: a.seed)
    config.mock = a.mockData
    config.blend = try a.dataPath.map { try DataBlend(arguments: $0) }
    if a.trainDataPath != nil || a.validDataPath != nil || a.testDataPath != nil {
        config.blendPerSplit = try [a.trainDataPath, a.validDataPath, a.testDataPath].map { try $0.map { try DataBlend(arguments: $0) } }
    }
    config.split = a.split
    config.pathToCache = a.dataCachePath
    config.eodMaskLoss = a.eodMaskLoss
    let evalInterval = a.evalInterval ?? trainIters
    let sizes = [a.trainSamples ?? trainIters * globalBatchSize,
                 (trainIters / evalInterval + 1) * a.evalIters * globalBatchSize,
                 a.evalIters * globalBatchSize]
    var builder = BlendedDatasetBuilder(config: config, sizes: sizes)
    builder.log = log
    let (train, valid, test) = try builder.buildSplits()
    guard let train else { throw ArgumentError("the data flags give an empty training split") }
    func data(_ source: any GPTSampleSource, _ name: String) -> DatasetSplitData {
        DatasetSplitData(source: source, vocabularySize: vocabularySize, name: name)
    }
    return (data(train, "training data"), valid.map { data($0, "validation data") }, test.map { data($0, "test data") })
}
