import ToolboxCore

/// An `sbatch` command line as a user types it: sbatch's options, the wrapper's own
/// (`--environment`, `--dry-run`; `-v` counts for both), then the batch script and its
/// arguments. sbatch's options end at the first argument that is not an option (the script) or
/// at `--`; no script: sbatch reads it from stdin, or `--wrap` gives a command. Which options take
/// a value is sbatch's own table (Slurm 22.05 to 24.x): `-W` is `--wait` here, not srun's
/// `--wait=SECONDS`.
public struct SbatchCommandLine: Equatable, Sendable {
    public var sbatchOptions: [String] = []
    /// The batch script's path; nil: stdin, or `--wrap`.
    public var script: String?
    public var scriptArguments: [String] = []
    /// `--wrap COMMAND`, when given (it stays among sbatch's options too).
    public var wrap: String?
    /// `--environment NAME|PATH`, when given on the command line.
    public var environment: String?
    public var dryRun = false
    /// How many `-v`/`--verbose` (they stay among sbatch's options too).
    public var verbose = 0

    public init() {}

    static let shortWithValue: Set<Character> = [
        "A", "a", "B", "b", "C", "c", "D", "d", "e", "F", "G", "i", "J", "L", "M", "m", "N", "n", "o", "p", "q", "S", "t", "w",
        "x",
    ]

    /// Options whose value is optional (`--nice[=n]`, `--get-user-env[=t]`) take it only after
    /// `=` and are not here.
    static let longWithValue: Set<String> = [
        "account", "acctg-freq", "array", "batch", "bb", "bbf", "begin", "chdir", "cluster-constraint", "clusters", "cluster",
        "comment", "constraint", "container", "container-id", "core-spec", "cores-per-socket", "cpu-freq", "cpus-per-gpu",
        "cpus-per-task", "deadline", "delay-boot", "dependency", "distribution", "error", "exclude", "export", "export-file",
        "extra", "extra-node-info", "gid", "gpu-bind", "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket", "gpus-per-task",
        "gres", "gres-flags", "hint", "input", "job-name", "licenses", "mail-type", "mail-user", "mcs-label", "mem", "mem-bind",
        "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nodefile", "nodelist", "nodes", "ntasks", "ntasks-per-core",
        "ntasks-per-gpu", "ntasks-per-node", "ntasks-per-socket", "open-mode", "output", "partition", "power", "prefer",
        "priority", "profile", "qos", "reservation", "segment", "signal", "sockets-per-node", "switches", "thread-spec",
        "threads-per-core", "time", "time-min", "tmp", "tres-bind", "tres-per-task", "uid", "wckey", "wrap",
    ]

    /// sbatch's long options without a value (or with one only after `=`), for abbreviations.
    static let longFlags: Set<String> = [
        "contiguous", "exclusive", "get-user-env", "help", "hold", "ignore-pbs", "kill-on-invalid-dep", "nice", "no-kill",
        "no-requeue", "overcommit", "oversubscribe", "parsable", "propagate", "quiet", "reboot", "requeue", "spread-job",
        "test-only", "usage", "use-min-nodes", "verbose", "version", "wait",
    ]

    public static func parse(_ arguments: [String]) throws(Diagnostic) -> SbatchCommandLine {
        let split = try SlurmCommandLine.parse(
            arguments, shortWithValue: shortWithValue, longWithValue: longWithValue, longFlags: longFlags)
        var result = SbatchCommandLine()
        result.sbatchOptions = split.options
        result.script = split.rest.first
        result.scriptArguments = Array(split.rest.dropFirst())
        result.wrap = split.values["wrap"]
        result.environment = split.environment
        result.dryRun = split.dryRun
        result.verbose = split.verbose
        return result
    }

    /// An option with which sbatch submits nothing and reads no script (`--version`, `--help`).
    public var informational: Bool {
        sbatchOptions.contains { ["-V", "--version", "-h", "--help", "-u", "--usage"].contains($0) }
    }

    /// sbatch's options without `--wrap` (the wrapper writes that command into a script).
    public var optionsWithoutWrap: [String] {
        var result: [String] = []
        var index = 0
        while index < sbatchOptions.count {
            let option = sbatchOptions[index]
            index += 1
            if option == "--wrap" {
                index += 1
                continue
            }
            if option.hasPrefix("--wrap=") { continue }
            result.append(option)
        }
        return result
    }
}

/// The `#SBATCH` directives of a batch script: the comment lines sbatch reads as options, from
/// the top of the script to its first line that is neither blank nor a comment.
public struct BatchScript: Equatable, Sendable {
    public var text: String
    /// The interpreter line (`#!/bin/bash`), when the script has one.
    public var interpreter: String?
    /// Each directive line, as written, in order.
    public var directives: [String] = []
    /// `--environment` as a directive gives it (the last one, as sbatch takes the last of an option).
    public var environment: String?

    public init(_ text: String) throws(Diagnostic) {
        self.text = text
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if let first = lines.first, first.hasPrefix("#!") { interpreter = String(first) }
        for line in lines.dropFirst(interpreter == nil ? 0 : 1) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty { continue }
            guard trimmed.hasPrefix("#") else { break }
            guard trimmed.hasPrefix("#SBATCH") else { continue }
            directives.append(String(line))
            // Its words up to a comment: --environment=X or --environment X.
            let words = trimmed.dropFirst("#SBATCH".count).split { $0 == " " || $0 == "\t" }.prefix { !$0.hasPrefix("#") }
            for (position, word) in words.enumerated() {
                if word.hasPrefix("--environment=") {
                    environment = String(word.dropFirst("--environment=".count))
                } else if word == "--environment" {
                    guard position + 1 < words.count else {
                        throw Diagnostic(kind: .invalid, message: "#SBATCH --environment needs a name or a path", hint: "#SBATCH --environment=NAME")
                    }
                    environment = String(words[words.index(words.startIndex, offsetBy: position + 1)])
                }
            }
            if environment?.isEmpty == true {
                throw Diagnostic(kind: .invalid, message: "#SBATCH --environment needs a name or a path", hint: "#SBATCH --environment=NAME")
            }
        }
    }

    /// The directives without `--environment` (sbatch itself rejects the option): a line that
    /// gives only it goes, one that gives more keeps the rest.
    public var otherDirectives: [String] { directives.compactMap(Self.withoutEnvironment) }

    /// The script as sbatch itself can take it (for an environment without an image): the same
    /// text, its directives without `--environment`.
    public var textWithoutEnvironment: String {
        var remaining = directives[...]
        var lines: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if let next = remaining.first, next == line {
                remaining = remaining.dropFirst()
                if let kept = Self.withoutEnvironment(String(line)) { lines.append(Substring(kept)) }
            } else {
                lines.append(line)
            }
        }
        return lines.joined(separator: "\n")
    }

    /// A directive line without `--environment`; nil when nothing else is left of it.
    static func withoutEnvironment(_ line: String) -> String? {
        let trimmed = line.drop { $0 == " " || $0 == "\t" }
        let words = trimmed.dropFirst("#SBATCH".count).split { $0 == " " || $0 == "\t" }
        guard words.contains(where: { $0 == "--environment" || $0.hasPrefix("--environment=") }) else { return line }
        var kept: [Substring] = []
        var index = 0
        while index < words.count {
            let word = words[index]
            index += 1
            if word.hasPrefix("#") {
                kept += words[(index - 1)...]
                break
            }
            if word == "--environment" {
                index += 1
                continue
            }
            if word.hasPrefix("--environment=") { continue }
            kept.append(word)
        }
        return kept.isEmpty || kept.first?.hasPrefix("#") == true ? nil : "#SBATCH " + kept.joined(separator: " ")
    }
}
