import MegatronCore
import XCTest

/// ParamGroupRule against the grouping Megatron's `_get_param_groups` makes with its standard overrides.
final class OptimizerParamGroupTests: XCTestCase {
    let gpt = [
        ParamDescriptor(name: "embedding.word_embeddings.weight", shape: [512, 64], isEmbeddingOrOutput: true),
        ParamDescriptor(name: "decoder.layers.0.input_layernorm.weight", shape: [64]),
        ParamDescriptor(name: "decoder.layers.0.self_attention.linear_qkv.weight", shape: [192, 64]),
        ParamDescriptor(name: "decoder.layers.0.self_attention.linear_qkv.bias", shape: [192]),
        ParamDescriptor(name: "decoder.layers.0.self_attention.q_layernorm.weight", shape: [16]),
        ParamDescriptor(name: "decoder.layers.0.mlp.linear_fc1.weight", shape: [256, 64]),
        ParamDescriptor(name: "decoder.final_layernorm.weight", shape: [64]),
        ParamDescriptor(name: "output_layer.weight", shape: [512, 64], isEmbeddingOrOutput: true),
    ]

    func testDefaultGroupingSkipsWeightDecayForBiasesAndNorms() throws {
        let groups = try ParamGroupRule().groups(gpt)
        XCTAssertEqual(groups.map(\.parameterIndices), [[0, 2, 5, 7], [1, 3, 4, 6]])
        XCTAssertEqual(groups.map(\.override), [ParamGroupOverride(), ParamGroupOverride(wdMult: 0)])
        XCTAssertTrue(groups.allSatisfy { $0.override.usesDefaultLRSchedule })
    }

    func testQKLayerNormKeepsWeightDecayWhenAsked() throws {
        let groups = try ParamGroupRule(applyWeightDecayToQKLayerNorm: true).groups(gpt)
        XCTAssertEqual(groups.map(\.parameterIndices), [[0, 2, 4, 5, 7], [1, 3, 6]])
    }

    func testDecoupledLRGivesEmbeddingAndOutputTheirOwnGroup() throws {
        let groups = try ParamGroupRule(decoupledLR: 1e-2, decoupledMinLR: 1e-3).groups(gpt)
        // Megatron sorts the override items: ("max_lr", ..), ("min_lr", ..) before ("wd_mult", ..).
        XCTAssertEqual(groups.map(\.parameterIndices), [[2, 5], [0, 7], [1, 3, 4, 6]])
        XCTAssertEqual(groups[1].override, ParamGroupOverride(maxLR: 1e-2, minLR: 1e-3))
        XCTAssertFalse(groups[1].override.usesDefaultLRSchedule)
    }

    func testExtraRulesMergeAndConflictsAreReported() throws {
        let halfDecayForFC1 = ParamGroupRule.Rule(matches: { $0.name.contains("linear_fc1") },
                                                  override: ParamGroupOverride(wdMult: 0.5, lrMult: 2))
        let groups = try ParamGroupRule(extraRules: [halfDecayForFC1]).groups(gpt)
        XCTAssertEqual(groups.map(\.parameterIndices), [[0, 2, 7], [5], [1, 3, 4, 6]])
        XCTAssertEqual(groups[1].override, ParamGroupOverride(wdMult: 0.5, lrMult: 2))

        let clash = ParamGroupRule.Rule(matches: { $0.name.hasSuffix(".bias") }, override: ParamGroupOverride(wdMult: 1))
        XCTAssertThrowsError(try ParamGroupRule(extraRules: [clash]).groups(gpt)) {
            XCTAssertTrue("\($0)".contains("wd_mult"), "\($0)")
        }
    }

    func testExpertParallelParametersGetSeparateGroups() throws {
        let params = [ParamDescriptor(name: "a.weight", shape: [2, 2]),
                      ParamDescriptor(name: "experts.weight", shape: [2, 2], isExpertParallel: true),
                      ParamDescriptor(name: "b.weight", shape: [2, 2])]
        let groups = try ParamGroupRule().groups(params)
        XCTAssertEqual(groups.map(\.parameterIndices), [[0, 2], [1]])
        XCTAssertEqual(groups.map(\.isExpertParallel), [false, true])
    }

    func testSchedulerAppliesGroupMultipliers() throws {
        let config = OptimizerParamScheduler.Configuration(maxLR: 1e-3, lrDecaySteps: 100, lrDecayStyle: .constant,
                                                           startWD: 0.1, endWD: 0.1, wdIncrSteps: 100)
        let scheduler = try OptimizerParamScheduler(
            config, groups: [ParamGroupOverride(), ParamGroupOverride(wdMult: 0.5, lrMult: 2)])
        XCTAssertEqual(scheduler.learningRate(group: 1), 2e-3)
        XCTAssertEqual(scheduler.weightDecay(group: 1), 0.05)
    }
}
