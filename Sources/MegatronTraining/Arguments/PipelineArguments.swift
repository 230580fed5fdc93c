import MegatronCore

extension PretrainArguments {
    /// Which layers each pipeline stage and model chunk builds (`--pipeline-model-parallel-size`, uneven first /
    /// last stages, the embedding and loss counted in the split, virtual stages); a layout Megatron refuses is
    /// an error naming the flags.
    public func pipelinePlacement() throws -> PipelineLayerPlacement {
        do {
            return try PipelineLayerPlacement(layers: numLayers, stages: pipelineModelParallelSize,
                                              virtualStages: try virtualPipelineSize(),
                                              firstStageLayers: decoderFirstPipelineNumLayers,
                                              lastStageLayers: decoderLastPipelineNumLayers,
                                              accountForEmbedding: accountForEmbeddingInPipelineSplit,
                                              accountForLoss: accountForLossInPipelineSplit)
        } catch let error as PipelineScheduleError {
            throw ArgumentError(error.description)
        }
    }

    /// Model chunks per pipeline rank as Megatron's `validate_args` derives them; nil without interleaving
    /// (also for a single chunk).
    public func virtualPipelineSize() throws -> Int? {
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ArgumentError(message()) }
        }
        try require(numLayersPerVirtualPipelineStage == nil || numVirtualStagesPerPipelineRank == nil,
                    "no more than one of --num-layers-per-virtual-pipeline-stage and --num-virtual-stages-per-pipeline-rank can be set")
        var size: Int?
        if let perChunk = numLayersPerVirtualPipelineStage {
            try require(perChunk >= 1, "--num-layers-per-virtual-pipeline-stage must be at least 1, got \(perChunk)")
            try require(decoderFirstPipelineNumLayers == nil && decoderLastPipelineNumLayers == nil,
                        "with uneven pipeline stages (--decoder-first/last-pipeline-num-layers) give the virtual pipeline size "
                            + "as --num-virtual-stages-per-pipeline-rank, not --num-layers-per-virtual-pipeline-stage")
            let layers = numLayers + (accountForEmbeddingInPipelineSplit ? 1 : 0) + (accountForLossInPipelineSplit ? 1 : 0)
            try require(layers % pipelineModelParallelSize == 0,
                        "--num-layers \(layers) is not divisible by --pipeline-model-parallel-size \(pipelineModelParallelSize)")
            let perStage = layers / pipelineModelParallelSize
            try require(perStage % perChunk == 0, "the \(perStage) layers of a pipeline stage do not divide into chunks of "
                + "--num-layers-per-virtual-pipeline-stage \(perChunk)")
            size = perStage / perChunk
        } else if let chunks = numVirtualStagesPerPipelineRank {
            try require(chunks >= 1, "--num-virtual-stages-per-pipeline-rank must be at least 1, got \(chunks)")
            size = chunks
        }
        guard let size, size > 1 else { return nil }
        if overlapP2PCommunication {
            let given = numLayersPerVirtualPipelineStage.map { "--num-layers-per-virtual-pipeline-stage \($0)" }
                ?? "--num-virtual-stages-per-pipeline-rank \(size)"
            try require(pipelineModelParallelSize > 1, "\(given) asks for the interleaved schedule (\(size) virtual stages), "
                + "which needs --pipeline-model-parallel-size greater than 1")
        } else {
            try require(pipelineModelParallelSize > 2, "the interleaved schedule with --no-overlap-p2p-communication needs "
                + "--pipeline-model-parallel-size greater than 2 (two stages would send and receive twice between the same "
                + "ranks in one batch); drop --no-overlap-p2p-communication")
        }
        return size
    }

    /// `--overlap-p2p-communication-warmup-flush` changes the interleaved schedule's overlapped transfers: Megatron
    /// refuses it where they are batched (1F1B, or `--no-overlap-p2p-communication`).
    func validateWarmupFlush() throws {
        guard overlapP2PCommunicationWarmupFlush else { return }
        guard try virtualPipelineSize() != nil else {
            throw ArgumentError("--overlap-p2p-communication-warmup-flush applies to the interleaved pipeline schedule: give "
                + "--num-layers-per-virtual-pipeline-stage or --num-virtual-stages-per-pipeline-rank (1F1B batches its transfers)")
        }
        guard overlapP2PCommunication else {
            throw ArgumentError("--overlap-p2p-communication-warmup-flush needs overlapped transfers: drop --no-overlap-p2p-communication")
        }
    }

    /// Checks that `microBatches` per iteration fit the interleaved schedule's micro-batch groups.
    func validateInterleaving(microBatches: Int) throws {
        guard let chunks = try virtualPipelineSize() else { return }
        do {
            _ = try PipelineSchedule.interleaved(stages: pipelineModelParallelSize, rank: 0, microBatches: microBatches, chunks: chunks,
                                                 groupSize: microbatchGroupSizePerVirtualPipelineStage)
        } catch let error as PipelineScheduleError {
            throw ArgumentError("\(error.description) (--global-batch-size / --micro-batch-size / data-parallel size give "
                + "\(microBatches) micro-batches)")
        }
    }
}
