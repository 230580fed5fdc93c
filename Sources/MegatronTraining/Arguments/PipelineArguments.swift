import MegatronCore

extension PretrainArguments {
    /// Which layers each pipeline stage builds (`--pipeline-model-parallel-size`, uneven first / last stages,
    /// the embedding and loss counted in the split); a layout Megatron refuses is an error naming the flags.
    public func pipelinePlacement() throws -> PipelineLayerPlacement {
        do {
            return try PipelineLayerPlacement(layers: numLayers, stages: pipelineModelParallelSize,
                                              firstStageLayers: decoderFirstPipelineNumLayers,
                                              lastStageLayers: decoderLastPipelineNumLayers,
                                              accountForEmbedding: accountForEmbeddingInPipelineSplit,
                                              accountForLoss: accountForLossInPipelineSplit)
        } catch let error as PipelineScheduleError {
            throw ArgumentError(error.description)
        }
    }
}

extension CommandLineParse {
    /// Once the whole line is read: a pipeline-parallel run that saves or loads is refused with the other
    /// unsupported features, since checkpoints of pipeline stages are not written or read yet.
    mutating func refusePipelineCheckpoints() {
        let pp = arguments.pipelineModelParallelSize
        guard pp > 1, arguments.save != nil || arguments.load != nil else { return }
        problems.unsupported.append(UnsupportedFeature(feature: "checkpoints of pipeline stages (--save, --load)",
                                                       usage: "--pipeline-model-parallel-size \(pp)"))
    }
}
