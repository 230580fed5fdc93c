import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// Multi-tensor AdamW and the global gradient norm against float64 CPU references.
final class OptimizerGPUTests: XCTestCase {
    /// Three tensors in one launch (vectorized, odd-sized, and misaligned by 4 bytes), two steps,
    /// fp32 and bf16 gradients, with and without the bf16 parameter copy.
    func testMultiTensorAdamWMatchesTorchFormula() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 51)
        let counts = [4096, 1001, 333]
        for gradientType in [KernelElementType.float32, .bfloat16] {
            var params = counts.map { random.floats($0) }, m = counts.map { random.floats($0, -0.01, 0.01) }
            var v = counts.map { random.floats($0, 0, 1e-4) }
            let grads = counts.map { random.values($0, gradientType) }
            // +1 element so the third tensor can start 4 bytes in.
            let dP = try params.map { try gpu.upload($0 + [0]) }, dM = try m.map { try gpu.upload($0 + [0]) }
            let dV = try v.map { try gpu.upload($0 + [0]) }, dG = try grads.map { try gpu.upload($0 + [0], as: gradientType) }
            let copies = try counts.map { try gpu.poisoned($0 + 1, as: .bfloat16) }
            defer { (dP + dM + dV + dG + copies).forEach(gpu.allocator.free) }
            let shift: [UInt64] = [0, 0, 4]
            let tensors = counts.indices.map { i in
                AdamWTensor(param: dP[i].address + shift[i], gradient: dG[i].address + shift[i] * UInt64(gradientType.byteCount) / 4,
                            expAvg: dM[i].address + shift[i], expAvgSq: dV[i].address + shift[i],
                            copy: i == 1 ? 0 : copies[i].address + shift[i] / 2, count: counts[i])
            }
            // The misaligned tensor reads its values one element in.
            for i in counts.indices where shift[i] != 0 {
                try gpu.staging.copyToDevice([Float(0)] + params[i], to: dP[i].address, stream: gpu.stream)
                try gpu.staging.copyToDevice([Float(0)] + m[i], to: dM[i].address, stream: gpu.stream)
                try gpu.staging.copyToDevice([Float(0)] + v[i], to: dV[i].address, stream: gpu.stream)
                let shifted = [Float(0)] + grads[i]
                if gradientType == .float32 { try gpu.staging.copyToDevice(shifted, to: dG[i].address, stream: gpu.stream) }
                else { try gpu.staging.copyToDevice(shifted.map(BF16.bits), to: dG[i].address, stream: gpu.stream) }
            }
            let table = try gpu.upload(AdamWTensor.table(tensors))
            defer { gpu.free(table) }
            let device = DeviceTensorTable(address: table.address, tensorCount: tensors.count, largestCount: counts.max()!)
            for step in 1...2 {
                let hyper = AdamWStep(learningRate: 1e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1, step: step,
                                      gradientScale: 0.5)
                try nn.adamW(device, gradientType: gradientType, step: hyper, stream: gpu.stream)
                for i in counts.indices {
                    Self.adamW(&params[i], &m[i], &v[i], grads[i], hyper)
                }
            }
            for i in counts.indices {
                let label = "adamw grad \(gradientType) tensor \(i)"
                let start = Int(shift[i] / 4)
                func read(_ a: DeviceAllocation) throws -> [Float] { Array(try gpu.download(a, count: counts[i] + 1, as: .float32)[start..<start + counts[i]]) }
                assertClose(try read(dP[i]), params[i].map(Double.init), 1e-6, label + " param")
                assertClose(try read(dM[i]), m[i].map(Double.init), 1e-6, label + " exp_avg")
                assertClose(try read(dV[i]), v[i].map(Double.init), 1e-6, label + " exp_avg_sq")
                let copy = try gpu.download(copies[i], count: counts[i] + 1, as: .bfloat16)
                if i == 1 {
                    XCTAssertTrue(copy.allSatisfy(\.isNaN), label + ": no copy requested, none written")
                } else {
                    let gpuParams = try read(dP[i])
                    XCTAssertEqual(Array(copy[start..<start + counts[i]]).map(\.bitPattern),
                                   gpuParams.map { BF16.round($0).bitPattern }, label + " bf16 copy")
                }
            }
        }
    }

    func testGradNormOverManyTensorsIsDeterministicAndFlagsNonFinite() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 52)
        let counts = [1, 1000, 1_000_003, 77, 65_536]
        let values = counts.map { random.floats($0, -2, 2) }
        let buffers = try values.map { try gpu.upload($0) }
        defer { buffers.forEach(gpu.allocator.free) }
        let words = NeuralKernels.normTable(zip(buffers, counts).map { ($0.address, $1) })
        let table = try gpu.upload(words)
        let device = DeviceTensorTable(address: table.address, tensorCount: counts.count, largestCount: counts.max()!)
        let scratch = try gpu.poisoned(nn.gradNormScratchCount(device)), out = try gpu.poisoned(2)
        defer { gpu.free(table, scratch, out) }
        try nn.gradNorm(out.address, table: device, scratch: scratch.address, stream: gpu.stream)
        let result = try gpu.download(out, count: 2, as: Float.self)
        let reference = values.joined().reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertEqual(Double(result[0]), reference, accuracy: 1e-5 * reference)
        XCTAssertEqual(result[1], 0)
        try nn.gradNorm(out.address, table: device, scratch: scratch.address, stream: gpu.stream)
        XCTAssertEqual(try gpu.download(out, count: 2, as: Float.self).map(\.bitPattern), result.map(\.bitPattern), "deterministic")

        for bad in [Float.nan, .infinity] {
            try gpu.staging.copyToDevice([bad], to: buffers[2].address + 4 * 123_457, stream: gpu.stream)
            try nn.gradNorm(out.address, table: device, scratch: scratch.address, stream: gpu.stream)
            let flagged = try gpu.download(out, count: 2, as: Float.self)
            XCTAssertEqual(flagged[1], 1, "\(bad) is flagged")
            XCTAssertFalse(flagged[0].isFinite, "\(bad) makes the norm non-finite")
        }
    }

    /// torch.optim.AdamW's update in float64.
    static func adamW(_ p: inout [Float], _ m: inout [Float], _ v: inout [Float], _ g: [Float], _ h: AdamWStep) {
        let (lr, b1, b2) = (Double(h.learningRate), Double(h.beta1), Double(h.beta2))
        let bc1 = 1 - pow(b1, Double(h.step)), bc2 = 1 - pow(b2, Double(h.step))
        for i in p.indices {
            let grad = Double(g[i]) * Double(h.gradientScale)
            var param = Double(p[i]) * (1 - lr * Double(h.weightDecay))
            let mi = b1 * Double(m[i]) + (1 - b1) * grad, vi = b2 * Double(v[i]) + (1 - b2) * grad * grad
            param -= lr / bc1 * mi / (vi.squareRoot() / bc2.squareRoot() + Double(h.epsilon))
            (p[i], m[i], v[i]) = (Float(param), Float(mi), Float(vi))
        }
    }
}
