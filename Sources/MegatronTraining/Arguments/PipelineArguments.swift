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
