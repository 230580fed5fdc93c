import Foundation
import MegatronCore
import MegatronCUDA
import MegatronParallel
import MegatronTensor

/// A lower bound on the memory one rank needs to train: its share of the weight matrices and embeddings
/// (biases and norms left out) with their fp32 gradients, fp32 masters and optimizer state, and one
/// micro-batch's logits. Checked against the device before the model is built, so flags that cannot fit are
/// refused with the sizes that matter, instead of ending in an allocation failure (on the host an abort with
/// no word of the model).
///
/// ```swift
/// try TrainingMemoryFloor(arguments, config: config, vocabSize: 50304).check(capacity: 80 << 30, on: "cuda:0")
/// ```
struct TrainingMemoryFloor {
    /// Weights held by one rank.
    let parameters: Double
    let bytesPerParameter: Double
    let logitsBytes: Double

    var bytes: Double { parameters * bytesPerParameter + logitsBytes }

    init(_ a: PretrainArguments, config: TransformerConfig, vocabSize: Int, tensorParallelSize: Int = 1,
         dataParallelSize: Int = 1) {
        let h = Double(config.hiddenSize), tp = Double(tensorParallelSize), ffn = Double(config.ffnHiddenSize)
        let q = Double(config.kvChannels) * Double(config.numAttentionHeads)
        let kv = Double(config.kvChannels) * Double(config.numQueryGroups)
        let perLayer = h * (q + 2 * kv) + q * h + h * ffn * (config.gatedLinearUnit ? 2 : 1) + ffn * h
        let vocabulary = Double(vocabSize) * h * (a.untieEmbeddingsAndOutputWeights ? 2 : 1)
        let positions = config.positionEmbeddingType == .learnedAbsolute ? Double(a.resolvedMaxPositionEmbeddings) * h : 0
        parameters = (Double(config.numLayers) * perLayer + vocabulary) / tp + positions
        let weight = Double(config.paramsDType.byteSize)
        let master: Double = config.paramsDType == .float32 ? 0 : 4
        let state: Double = a.optimizer == .sgd ? (a.sgdMomentum != 0 ? 4 : 0) : 8
        bytesPerParameter = weight + 4 + (master + state) / (a.useDistributedOptimizer ? Double(dataParallelSize) : 1)
        logitsBytes = Double(a.microBatchSize) * Double(a.seqLength) * Double(vocabSize) / tp * weight
    }

    /// Throws when the bound exceeds `capacity` bytes of the device named `device`.
    func check(capacity: Int, on device: String) throws {
        guard bytes > Double(capacity) else { return }
        throw ArgumentError(
            "the model does not fit: training it needs at least \(Self.format(bytes)) per rank on \(device) "
                + "(\(String(format: "%.3g", parameters)) weights with their gradients and optimizer state, and one "
                + "micro-batch's logits), more than the \(formatBytes(capacity)) there; make the model smaller "
                + "(--num-layers, --hidden-size, --ffn-hidden-size, --max-position-embeddings), or the micro-batch "
                + "(--micro-batch-size, --seq-length), or split it (--tensor-model-parallel-size)")
    }

    /// Checks a run's model on `device` against the memory a rank there can use: the GPU's, or the host's
    /// shared by the thread ranks on it.
    static func check(_ a: PretrainArguments, config: TransformerConfig, vocabSize: Int, device: Device,
                      parallel: ParallelState) throws {
        let capacity: Int
        if let ordinal = device.ordinal {
            guard let context = try? CUDAContext.shared(ordinal: ordinal) else { return }
            capacity = context.device.properties.totalMemoryBytes
        } else {
            let ranks = parallel.world is ThreadCommunicator ? parallel.world.size : 1
            capacity = Int(clamping: ProcessInfo.processInfo.physicalMemory) / ranks
        }
        try TrainingMemoryFloor(a, config: config, vocabSize: vocabSize, tensorParallelSize: parallel.tensor.size,
                                dataParallelSize: parallel.data.size).check(capacity: capacity, on: "\(device)")
    }

    private static func format(_ bytes: Double) -> String {
        bytes < 0x1p62 ? formatBytes(Int(bytes)) : String(format: "%.3g bytes", bytes)
    }
}
