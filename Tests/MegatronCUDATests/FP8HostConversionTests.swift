import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTensor
import MegatronTestSupport

/// The GPU's fp8 conversions (Kernels/fp8.cuh) compiled for the host with a C++ compiler, so their
/// agreement with the CPU's bit for bit is checked on every machine, GPU or not. Skips where no C++
/// compiler is installed.
final class FP8HostConversionTests: XCTestCase {
    /// Every fp32 whose low 16 bits are 0, 1, 0x8000 or 0xFFFF (all exponents, exact ties and the values
    /// just around them for both formats), plus 2^16 random bit patterns: encoded to e4m3 and e5m2 against
    /// the CPU's cast.
    func testEncodingMatchesTheCPU() throws {
        var generator = SplitMix64(seed: 8)
        var inputs: [UInt32] = []
        for top in UInt32(0)..<65536 { for low: UInt32 in [0, 1, 0x8000, 0xFFFF] { inputs.append(top << 16 | low) } }
        for _ in 0..<65536 { inputs.append(UInt32(truncatingIfNeeded: generator.next())) }
        let harness = try HostHarness()
        let gpuCodes = try harness.run(mode: "encode", inputs: inputs)   // 2 bytes per input
        let values = Tensor(shape: [inputs.count], values: inputs.map { Float(bitPattern: $0) })
        for (column, dtype) in [DType.float8E4M3, .float8E5M2].enumerated() {
            let cpu = values.cast(to: dtype)
            let cpuCodes = UnsafeBufferPointer(start: cpu.pointer(as: UInt8.self), count: inputs.count)
            var mismatches = 0
            for i in inputs.indices where gpuCodes[i * 2 + column] != cpuCodes[i] {
                if mismatches < 5 {
                    XCTFail("\(dtype): 0x\(String(inputs[i], radix: 16)) (\(Float(bitPattern: inputs[i]))) is "
                            + "0x\(String(gpuCodes[i * 2 + column], radix: 16)) on the GPU path, 0x\(String(cpuCodes[i], radix: 16)) on the CPU")
                }
                mismatches += 1
            }
            XCTAssertEqual(mismatches, 0, "\(dtype)")
        }
    }

    /// All 256 codes of both formats decode to the CPU's fp32 bits (NaN codes to 0x7fc00000 with their sign).
    func testDecodingMatchesTheCPUBitForBit() throws {
        let harness = try HostHarness()
        let out = try harness.run(mode: "decode", inputs: (0..<256).map { UInt32($0) })   // two fp32 per code
        for code in 0..<256 {
            let word = { (k: Int) in (0..<4).reduce(UInt32(0)) { $0 | UInt32(out[(code * 2 + k) * 4 + $1]) << (8 * $1) } }
            XCTAssertEqual(word(0), FloatFormats.float(float8E4M3Bits: UInt8(code)).bitPattern, "e4m3 0x\(String(code, radix: 16))")
            XCTAssertEqual(word(1), FloatFormats.float(float8E5M2Bits: UInt8(code)).bitPattern, "e5m2 0x\(String(code, radix: 16))")
        }
    }
}

/// fp8.cuh wrapped in a small C++ program: CUDA's bit-cast intrinsics as memcpy, `__device__` as plain
/// inline; it reads little-endian uint32 inputs from a file and writes the kernels' results.
private struct HostHarness {
    let executable: URL

    init() throws {
        guard let header = EmbeddedKernels.sources["fp8.cuh"] else { throw XCTSkip("fp8.cuh is not embedded") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fp8-host-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let source = directory.appendingPathComponent("harness.cpp")
        executable = directory.appendingPathComponent("harness")
        try (Self.prelude + header + Self.main).write(to: source, atomically: true, encoding: .utf8)
        // -ffp-contract=off: the device code has no a*b+c to fuse either; exactness must not rest on it.
        let status = try Self.shell(["c++", "-std=c++17", "-O1", "-ffp-contract=off", source.path, "-o", executable.path])
        guard status == 0 else { throw XCTSkip("no working C++ compiler (c++) to build the fp8.cuh host harness") }
    }

    /// Runs the harness over `inputs`; returns its output bytes.
    func run(mode: String, inputs: [UInt32]) throws -> [UInt8] {
        let inputFile = executable.deletingLastPathComponent().appendingPathComponent("\(mode).in")
        let outputFile = executable.deletingLastPathComponent().appendingPathComponent("\(mode).out")
        try inputs.withUnsafeBytes { try Data($0).write(to: inputFile) }
        let status = try Self.shell([executable.path, mode, inputFile.path, outputFile.path])
        XCTAssertEqual(status, 0, "harness \(mode)")
        return [UInt8](try Data(contentsOf: outputFile))
    }

    private static func shell(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    private static let prelude = """
        #include <cmath>
        #include <cstdio>
        #include <cstring>
        #define __device__
        #define __forceinline__ inline
        static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
        static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }

        """

    private static let main = """

        int main(int argc, char **argv) {
            if (argc != 4) return 2;
            FILE *in = std::fopen(argv[2], "rb"), *out = std::fopen(argv[3], "wb");
            if (!in || !out) return 3;
            const bool encode = std::strcmp(argv[1], "encode") == 0;
            unsigned int word;
            while (std::fread(&word, 4, 1, in) == 1) {
                if (encode) {
                    const float x = __uint_as_float(word);
                    const unsigned char codes[2] = {float_to_e4m3(x), float_to_e5m2(x)};
                    std::fwrite(codes, 1, 2, out);
                } else {
                    const float values[2] = {e4m3_to_float((unsigned char)word), e5m2_to_float((unsigned char)word)};
                    std::fwrite(values, 4, 2, out);
                }
            }
            std::fclose(out);
            return 0;
        }

        """
}
