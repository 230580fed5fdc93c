import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// The GPU optimizer step (multi-tensor AdamW and global norm kernels, tensor-op SGD) against the CPU step.
final class OptimizerGPUTests: XCTestCase {
    /// bf16 and fp32 parameters in two groups (weight decay on one), a loss scale, and clipping that
    /// engages: 3 steps leave the same parameters, masters and norms as the CPU, within fp32 rounding.
    func testMultiTensorAdamWMatchesCPUStep() throws {
        try compareWithCPU(rule: try AdamRule.adamW(beta2: 0.95), half: .bfloat16)
    }

    /// fp16 parameters (`--fp16`): the AdamW kernel updates the fp32 masters, a cast writes the fp16 weights.
    func testMultiTensorAdamWOverFP16ParametersMatchesCPUStep() throws {
        try compareWithCPU(rule: try AdamRule.adamW(beta2: 0.95), half: .float16)
    }

    /// `--optimizer sgd` on a GPU: the norm kernel, then SGD with momentum in tensor ops.
    func testSGDMatchesCPUStep() throws {
        try compareWithCPU(rule: try SGDRule(momentum: 0.9), half: .bfloat16)
    }

    private func compareWithCPU(rule: UpdateRule, half: DType, file: StaticString = #filePath, line: UInt = #line) throws {
        let gpu = try requireGPU("optimizer step GPU test (\(type(of: rule)), \(half) parameters)")
        let config = OptimizerParamScheduler.Configuration(maxLR: 1e-2, lrDecaySteps: 10, lrDecayStyle: .constant,
                                                           startWD: 0.1, endWD: 0.1, wdIncrSteps: 10)
        let scheduler = try OptimizerParamScheduler(config, groups: [ParamGroupOverride(), ParamGroupOverride(wdMult: 0)])
        func make(_ device: Device) -> (MixedPrecisionOptimizer, [Tensor]) {
            let params = onDevice(device) {
                [parameter(Tensor.normal([300, 7], generator: PhiloxGenerator(seed: 1)).cast(to: half)),
                 parameter(Tensor.normal([70_000], generator: PhiloxGenerator(seed: 2))),
                 parameter(Tensor.normal([5], generator: PhiloxGenerator(seed: 3)).cast(to: half))]
            }
            let groups = [ParamGroup(parameters: [("w", params[0]), ("big", params[1])]),
                          ParamGroup(parameters: [("b", params[2])], override: ParamGroupOverride(wdMult: 0))]
            return (MixedPrecisionOptimizer(groups: groups, rule: rule), params)
        }
        let (cpuOptimizer, cpuParams) = make(.cpu)
        let (gpuOptimizer, gpuParams) = make(gpu)
        let lossScale: Float = 1024
        for step in 1...3 {
            cpuOptimizer.zeroGrad()
            gpuOptimizer.zeroGrad()
            for (i, (c, g)) in zip(cpuParams, gpuParams).enumerated() {
                let grad = Tensor.normal(c.shape, std: 3 * lossScale, generator: PhiloxGenerator(seed: UInt64(100 * step + i)))
                // zeroGrad drops the main grads; backward would make them, here the test does.
                Ops.copy(grad, into: c.autograd!.gradBuffer()!)
                Ops.copy(grad.to(gpu), into: g.autograd!.gradBuffer()!)
            }
            let expected = cpuOptimizer.step(scheduler: scheduler, clipGrad: 1, lossScale: lossScale)
            let found = gpuOptimizer.step(scheduler: scheduler, clipGrad: 1, lossScale: lossScale)
            XCTAssertTrue(found.updated, file: file, line: line)
            XCTAssertEqual(found.gradNorm, expected.gradNorm, accuracy: 1e-5 * expected.gradNorm, "norm at step \(step)",
                           file: file, line: line)
        }
        for (c, g) in zip(cpuParams, gpuParams) {
            XCTAssertEqual(g.dtype, c.dtype, file: file, line: line)
            let (expected, found) = (c.floats(), g.floats())
            let tolerance: Float = c.dtype == .bfloat16 ? 8e-3 : c.dtype == .float16 ? 1e-3 : 1e-5
            for (e, f) in zip(expected, found) { XCTAssertEqual(f, e, accuracy: tolerance * max(1, abs(e)), file: file, line: line) }
        }
        let masters = (cpuOptimizer.stateTensors(), gpuOptimizer.stateTensors())
        XCTAssertEqual(Set(masters.0.keys), Set(masters.1.keys), file: file, line: line)
        for (key, expected) in masters.0 {
            let found = masters.1[key]!.floats()
            for (e, f) in zip(expected.floats(), found) {
                XCTAssertEqual(f, e, accuracy: 1e-5 * max(1, abs(e)), key, file: file, line: line)
            }
        }
    }

    /// A non-finite gradient on the GPU skips the step and leaves the parameters alone.
    func testNonFiniteGradientSkipsTheStep() throws {
        try requireGPU("non-finite gradient GPU test")
        let p = onDevice(.cuda(0)) { parameter(Tensor(shape: [3], values: [1, 2, 3]).cast(to: .bfloat16)) }
        let optimizer = MixedPrecisionOptimizer(groups: [ParamGroup(parameters: [("p", p)])], rule: try AdamRule.adamW())
        let scheduler = try OptimizerParamScheduler(
            .init(maxLR: 1, lrDecaySteps: 1, lrDecayStyle: .constant, startWD: 0, endWD: 0, wdIncrSteps: 1))
        optimizer.zeroGrad()
        Ops.copy(Tensor(shape: [3], values: [1, .infinity, 0]).to(.cuda(0)), into: p.autograd!.gradBuffer()!)
        let report = optimizer.step(scheduler: scheduler, clipGrad: 1)
        XCTAssertFalse(report.updated)
        XCTAssertEqual(p.floats(), [1, 2, 3])
    }

    /// The optimizer's main grads exist only from the moment backward reaches each parameter: none after
    /// `zeroGrad` (nor through the forward), an fp32 one after backward, accumulating over micro-batches.
    func testMainGradsAreMadeByBackward() {
        let w = parameter(Tensor.normal([4, 3], generator: PhiloxGenerator(seed: 7)).cast(to: .bfloat16))
        let optimizer = MixedPrecisionOptimizer(groups: [ParamGroup(parameters: [("w", w)])], rule: try! AdamRule.adamW())
        let x = Tensor.normal([5, 3], generator: PhiloxGenerator(seed: 8)).cast(to: .bfloat16)
        optimizer.zeroGrad()
        XCTAssertNil(w.grad, "no gradient memory before backward")
        Functional.linear(x, weight: w, bias: nil).sum().backward()
        let once = w.grad!.floats()
        XCTAssertEqual(w.grad!.dtype, .float32)
        XCTAssertEqual(w.grad!.shape, [4, 3])
        Functional.linear(x, weight: w, bias: nil).sum().backward()
        XCTAssertEqual(w.grad!.floats(), once.map { 2 * $0 }, "a second micro-batch adds into the same main grad")
        optimizer.zeroGrad()
        XCTAssertNil(w.grad)
    }
}
