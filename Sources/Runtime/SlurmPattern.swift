import Glibc

/// Slurm's `%j` (job id), `%s` (step id), `%N` (node name) and `%%` in a name or path that tasks
/// share, taken from the task's environment: ns-enter's `--name %j.%s.%N` and the block cache's
/// `NS_ENTER_CACHE=.../%j`. `%N` is `$SLURMD_NODENAME`, else the short host name (as in Slurm's
/// file name patterns); it keeps the containers of two nodes apart where the runtime directory is
/// shared (a `TMPDIR` on a cluster file system) or several slurmd share a host.
public enum SlurmPattern {
    public enum Failure: Error, Equatable {
        /// `%x` where x is not j, s, N or %.
        case unknown(String)
        /// The variable for `%j` or `%s` is not set (not a task that Slurm started).
        case unset(String)
    }

    public static func expand(_ text: String, environment: [String: String]) throws(Failure) -> String {
        guard text.contains("%") else { return text }
        var result = ""
        var characters = text.makeIterator()
        while let character = characters.next() {
            guard character == "%" else {
                result.append(character)
                continue
            }
            let code = characters.next()
            let variables: [String]
            switch code {
            case "%": result.append("%"); continue
            case "j": variables = ["SLURM_JOB_ID", "SLURM_JOBID"]
            case "s": variables = ["SLURM_STEP_ID", "SLURM_STEPID"]
            case "N":
                if let node = environment["SLURMD_NODENAME"], !node.isEmpty {
                    result += node
                } else {
                    result += shortHostName()
                }
                continue
            default: throw .unknown(code.map(String.init) ?? "")
            }
            guard let value = variables.lazy.compactMap({ environment[$0] }).first(where: { !$0.isEmpty }) else {
                throw .unset(variables[0])
            }
            result += value
        }
        return result
    }

    /// The host name up to its first dot ("localhost" when it cannot be read).
    static func shortHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.split(separator: ".", omittingEmptySubsequences: false).first.map(String.init) ?? name
    }
}
