import CCUDA
import Foundation

/// A compiled kernel image and where it came from.
public struct KernelImage: Sendable {
    public enum Format: String, Sendable { case cubin, ptx }
    public var bytes: [UInt8]
    public var format: Format
    /// True when the image was read from the disk cache instead of compiled.
    public var fromCache: Bool
}

/// Compiles CUDA C++ with NVRTC for one architecture (the device's own, e.g. `sm_90a`), to CUBIN,
/// or to PTX when this NVRTC cannot emit CUBIN for it; results are cached on disk. NVRTC compiles
/// independent programs in parallel, so several threads may call `compile` at once.
///
///     let compiler = try KernelCompiler(architecture: device.properties.architecture)
///     let image = try compiler.compile(source: src, name: "fill.cu")
///     let module = try CUDAModule(device: device, image: image)
public struct KernelCompiler {
    public let architecture: String
    public let cache: KernelCache?
    /// "major.minor" of the loaded NVRTC.
    public let compilerVersion: String
    private let nvrtc: CCUDANVRTC

    /// Options every compilation gets: C++17, fast device-only code, line info for profilers.
    public static let baseOptions = ["--std=c++17", "-default-device", "-lineinfo"]

    public init(architecture: String, cache: KernelCache? = KernelCache.defaultCache()) throws {
        let nvrtc = try CUDALibraries.nvrtc()
        var major: Int32 = 0, minor: Int32 = 0
        _ = nvrtc.nvrtcVersion(&major, &minor)
        self.nvrtc = nvrtc
        self.architecture = architecture
        self.cache = cache
        self.compilerVersion = "\(major).\(minor)"
    }

    /// Compiles `source` (or fetches it from the cache). `name` appears in error messages.
    /// Throws `CUDAError.compilation` with NVRTC's log when the source does not compile.
    public func compile(source: String, name: String, options: [String] = []) throws -> KernelImage {
        let allOptions = Self.baseOptions + options
        let key = KernelCache.key(source: source, options: allOptions, architecture: architecture,
                                  compilerVersion: compilerVersion)
        if let bytes = cache?.load(key: key) {
            return KernelImage(bytes: bytes, format: Self.format(of: bytes), fromCache: true)
        }
        // Storing inside the guard lets a compilation that exit waits for still reach the cache.
        return try CompilationExitGuard.process.run(prepare: warmUp) {
            let image = try compileUncached(source: source, name: name, options: allOptions)
            cache?.store(key: key, image: image.bytes)
            return image
        }
    }

    /// An ELF image starts with 0x7f 'E' 'L' 'F'; anything else we stored is PTX text.
    static func format(of bytes: [UInt8]) -> KernelImage.Format {
        bytes.starts(with: [0x7f, 0x45, 0x4c, 0x46]) ? .cubin : .ptx
    }

    /// Compiles a trivial kernel for this architecture (or, failing that, NVRTC's default), so NVRTC
    /// has set up its process-wide state before `CompilationExitGuard` registers its exit handler.
    private func warmUp() {
        for options in [["--gpu-architecture=\(architecture)"], []] {
            guard let program = try? NVRTCProgram(nvrtc, source: "extern \"C\" __global__ void warm_up() {}", name: "warm_up.cu")
            else { return }
            if (try? program.compile(options, kernel: "warm_up.cu")) == true { return }
        }
    }

    private func compileUncached(source: String, name: String, options: [String]) throws -> KernelImage {
        // NVRTC_ERROR_INVALID_OPTION (5): this NVRTC does not know the real architecture; fall back
        // to PTX for the virtual one, which the driver compiles at load time.
        let realTarget = "--gpu-architecture=\(architecture)"
        do {
            let program = try NVRTCProgram(nvrtc, source: source, name: name)
            if try program.compile(options + [realTarget], kernel: name) {
                if let cubin = try program.output(size: nvrtc.nvrtcGetCUBINSize, bytes: nvrtc.nvrtcGetCUBIN) {
                    return KernelImage(bytes: cubin, format: .cubin, fromCache: false)
                }
                return KernelImage(bytes: try program.ptx(), format: .ptx, fromCache: false)
            }
        }
        let virtualTarget = "--gpu-architecture=" + architecture.replacingOccurrences(of: "sm_", with: "compute_")
        let program = try NVRTCProgram(nvrtc, source: source, name: name)
        guard try program.compile(options + [virtualTarget], kernel: name) else {
            throw CUDAError.nvrtc(call: "nvrtcCompileProgram", message: "neither \(realTarget) nor \(virtualTarget) is supported by NVRTC \(compilerVersion)")
        }
        return KernelImage(bytes: try program.ptx(), format: .ptx, fromCache: false)
    }
}

/// One nvrtcProgram, destroyed with its owner.
private final class NVRTCProgram {
    let nvrtc: CCUDANVRTC
    let handle: nvrtcProgram

    init(_ nvrtc: CCUDANVRTC, source: String, name: String) throws {
        var program: nvrtcProgram?
        let status = nvrtc.nvrtcCreateProgram(&program, source, name, 0, nil, nil)
        guard status == 0, let program else {
            throw CUDAError.nvrtc(call: "nvrtcCreateProgram", message: String(cString: nvrtc.nvrtcGetErrorString(status)))
        }
        self.nvrtc = nvrtc
        self.handle = program
    }

    deinit {
        var program: nvrtcProgram? = handle
        _ = nvrtc.nvrtcDestroyProgram(&program)
    }

    /// Returns false when NVRTC rejects an option (so the caller may retry with others); throws
    /// with the compile log when the source itself fails.
    func compile(_ options: [String], kernel: String) throws -> Bool {
        let cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { free($0) } }
        let status = cOptions.map { UnsafePointer($0!) }.withUnsafeBufferPointer {
            nvrtc.nvrtcCompileProgram(handle, Int32(options.count), $0.baseAddress)
        }
        if status == 0 { return true }
        if status == 5 { return false }  // NVRTC_ERROR_INVALID_OPTION
        throw CUDAError.compilation(kernel: kernel, options: options, log: log())
    }

    func ptx() throws -> [UInt8] {
        guard let bytes = try output(size: nvrtc.nvrtcGetPTXSize, bytes: nvrtc.nvrtcGetPTX) else {
            throw CUDAError.nvrtc(call: "nvrtcGetPTX", message: "no PTX produced")
        }
        return bytes
    }

    /// Reads one of NVRTC's outputs; nil when this program has none of that kind.
    func output(size: PFN_nvrtcGetSize, bytes: PFN_nvrtcGetBytes) throws -> [UInt8]? {
        var count = 0
        guard size(handle, &count) == 0, count > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: count)
        let status = buffer.withUnsafeMutableBytes { bytes(handle, $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        try check(status, "nvrtcGetOutput")
        return buffer
    }

    func log() -> String {
        var count = 0
        guard nvrtc.nvrtcGetProgramLogSize(handle, &count) == 0, count > 1 else { return "(no log)" }
        var buffer = [CChar](repeating: 0, count: count)
        _ = nvrtc.nvrtcGetProgramLog(handle, &buffer)
        return String(cString: buffer)
    }

    private func check(_ status: nvrtcResult, _ call: String) throws {
        guard status != 0 else { return }
        throw CUDAError.nvrtc(call: call, message: String(cString: nvrtc.nvrtcGetErrorString(status)))
    }
}
