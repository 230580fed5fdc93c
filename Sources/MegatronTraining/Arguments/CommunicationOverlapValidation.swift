import Foundation
import Yams

extension PretrainArguments {
    /// `--tp-comm-overlap` as Megatron checks it: it overlaps the sequence-parallel all-gathers and
    /// reduce-scatters with the GEMMs, so it needs `--sequence-parallel` with tensor parallelism (Megatron turns
    /// sequence parallelism off at TP 1), deterministic runs refuse it, and its `--tp-comm-overlap-cfg` must be
    /// a readable YAML file. The overlap itself is an implementation choice: the run here is the same, unoverlapped.
    func validateCommunicationOverlap() throws {
        guard tpCommOverlap else { return }
        guard effectiveSequenceParallel else {
            throw ArgumentError("--tp-comm-overlap: Tensor parallel communication/GEMM overlap can happen only when sequence "
                + "parallelism is enabled (--sequence-parallel with --tensor-model-parallel-size above 1, got "
                + "\(tensorModelParallelSize)\(sequenceParallel ? "" : " without --sequence-parallel"))")
        }
        if deterministicMode {
            throw ArgumentError("--deterministic-mode requires tp_comm_overlap=False (got True): drop --tp-comm-overlap "
                + "(as in Megatron)")
        }
        if let path = tpCommOverlapCfg { _ = try Self.userbufferConfig(at: path) }
    }

    /// The userbuffers settings of a `--tp-comm-overlap-cfg` file (a YAML mapping, or an empty file).
    static func userbufferConfig(at path: String) throws -> [String: Any] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ArgumentError("--tp-comm-overlap-cfg \(path): cannot read the file (\(error.localizedDescription))")
        }
        let parsed: Any?
        do {
            parsed = try Yams.load(yaml: text)
        } catch {
            throw ArgumentError("--tp-comm-overlap-cfg \(path): not valid YAML (\(error))")
        }
        guard let parsed else { return [:] }
        guard let mapping = parsed as? [String: Any] else {
            throw ArgumentError("--tp-comm-overlap-cfg \(path): expected a YAML mapping of userbuffers settings, got \(type(of: parsed))")
        }
        return mapping
    }
}
