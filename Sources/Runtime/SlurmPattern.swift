/// Slurm's `%j` (job id), `%s` (step id) and `%%` in a name or path that tasks share, taken from
/// the task's environment: ns-enter's `--name %j.%s` and the block cache's `NS_ENTER_CACHE=.../%j`.
public enum SlurmPattern {
    public enum Failure: Error, Equatable {
        /// `%x` where x is not j, s or %.
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
            default: throw .unknown(code.map(String.init) ?? "")
            }
            guard let value = variables.lazy.compactMap({ environment[$0] }).first(where: { !$0.isEmpty }) else {
                throw .unset(variables[0])
            }
            result += value
        }
        return result
    }
}
