import ToolboxCore

/// An `srun` command line as a user types it, split into srun's options, the wrapper's own
/// (`--environment`, `--dry-run`; `-v` counts for both) and the command. srun's options end at
/// the first argument that is not an option (or at `--`); which options take a value, and so
/// consume the next argument, is srun's own table (Slurm 22.05 to 24.x). An option the table
/// does not know is taken as a flag: give its value as `--option=value`.
public struct SrunCommandLine: Equatable, Sendable {
    public var srunOptions: [String] = []
    public var command: [String] = []
    /// `--environment NAME|PATH`, when given.
    public var environment: String?
    public var dryRun = false
    /// How many `-v`/`--verbose` (they stay among srun's options too).
    public var verbose = 0

    public init() {}

    /// srun's short options that take a value (`-n 4`, `-n4`).
    static let shortWithValue: Set<Character> = [
        "A", "B", "b", "C", "c", "D", "d", "e", "F", "G", "i", "J", "L", "M", "m", "N", "n", "o", "p", "q", "r", "S", "T", "t",
        "W", "w", "x",
    ]

    /// srun's long options that take a value (`--ntasks 4`, `--ntasks=4`). Those whose value is
    /// optional (`--exclusive[=user]`, `--nice[=n]`, `--bcast[=dest]`, `--resv-ports[=count]`)
    /// take it only after `=` and are not here.
    static let longWithValue: Set<String> = [
        "account", "acctg-freq", "bb", "bbf", "bcast-exclude", "begin", "cpus-per-task", "comment", "container",
        "container-id", "cpu-freq", "dependency", "deadline", "delay-boot", "chdir", "export", "error", "epilog", "gres",
        "gres-flags", "input", "jobid", "job-name", "licenses", "clusters", "cluster", "distribution", "mail-type", "mail-user",
        "mcs-label", "mpi", "ntasks", "ntasks-per-node", "nodes", "output", "het-group", "partition", "power", "priority",
        "prolog", "profile", "qos", "relative", "core-spec", "signal", "slurmd-debug", "switches", "task-epilog",
        "task-prolog", "thread-spec", "threads", "time", "time-min", "wait", "wckey", "cluster-constraint", "constraint",
        "mem", "mincpus", "reservation", "tmp", "nodelist", "nodefile", "exclude", "mem-per-cpu", "sockets-per-node",
        "cores-per-socket", "threads-per-core", "extra-node-info", "ntasks-per-core", "ntasks-per-socket",
        "ntasks-per-gpu", "cpus-per-gpu", "gpus", "gpu-bind", "gpu-freq", "gpus-per-node", "gpus-per-socket",
        "gpus-per-task", "mem-per-gpu", "cpu-bind", "mem-bind", "hint", "network", "tres-per-task", "tres-bind", "uid",
        "gid", "accel-bind", "open-mode", "stepmgr", "segment",
    ]

    /// srun's long options without a value (or with one only after `=`): with `longWithValue`,
    /// what an abbreviation (`--part`, `--multi`) may stand for, as srun's getopt_long allows.
    static let longFlags: Set<String> = [
        "bcast", "compress", "contiguous", "disable-status", "exact", "exclusive", "external-launcher", "help", "immediate",
        "kill-on-bad-exit", "label", "multi-prog", "nice", "no-allocate", "no-kill", "overcommit", "overlap", "oversubscribe",
        "propagate", "pty", "quiet", "quit-on-interrupt", "reboot", "resv-ports", "send-libs", "spread-job", "test-only",
        "unbuffered", "usage", "use-min-nodes", "verbose", "version", "whole", "x11",
    ]

    public static func parse(_ arguments: [String]) throws(Diagnostic) -> SrunCommandLine {
        let split = try SlurmCommandLine.parse(
            arguments, shortWithValue: shortWithValue, longWithValue: longWithValue, longFlags: longFlags)
        var result = SrunCommandLine()
        result.srunOptions = split.options
        result.command = split.rest
        result.environment = split.environment
        result.dryRun = split.dryRun
        result.verbose = split.verbose
        return result
    }
}

/// Whether Slurm options (a command line's, or the words of `#SBATCH` directives) name the job:
/// --job-name, or -J alone or in a cluster of short options (`-lJname`; in `-oJ` the J is -o's
/// value).
func namesTheJob(_ options: [String], shortWithValue: Set<Character>) -> Bool {
    options.contains { option in
        if option == "--job-name" || option.hasPrefix("--job-name=") { return true }
        guard option.hasPrefix("-"), !option.hasPrefix("--") else { return false }
        for letter in option.dropFirst() {
            if letter == "J" { return true }
            if shortWithValue.contains(letter) { return false }
        }
        return false
    }
}

/// A Slurm command line (srun's, sbatch's) split as the wrappers need it: the command's options,
/// which end at the first argument that is not an option (or at `--`), then the rest (srun's
/// command, sbatch's script and its arguments). `--environment` and `--dry-run` are the
/// wrappers' and are taken out; `-v`/`--verbose` count and stay. Which options consume the next
/// argument is the command's own table; an option it does not know is taken as a flag (its
/// value must then be written `--option=value`).
struct SlurmCommandLine {
    var options: [String] = []
    var rest: [String] = []
    var environment: String?
    var dryRun = false
    var verbose = 0
    /// The last value of each long option with a value (`--wrap`, ...).
    var values: [String: String] = [:]

    static func parse(
        _ arguments: [String], shortWithValue: Set<Character>, longWithValue: Set<String>, longFlags: Set<String> = []
    ) throws(Diagnostic) -> SlurmCommandLine {
        // The long options, the wrappers' own among them: a unique prefix stands for the option
        // (getopt_long's rule); it is passed on spelled out.
        let longNames = longWithValue.union(longFlags).union(["environment", "dry-run"])
        func fullName(_ name: String) -> String {
            if longNames.contains(name) || name.isEmpty { return name }
            let candidates = longNames.filter { $0.hasPrefix(name) }
            return candidates.count == 1 ? candidates.first ?? name : name
        }
        var result = SlurmCommandLine()
        var index = 0
        func next(for option: String) throws(Diagnostic) -> String {
            guard index < arguments.count else {
                if option == "--environment" {
                    throw Diagnostic(kind: .usage, message: "--environment needs a name or a path", hint: "--environment=NAME, ./FILE.toml or /path/FILE.toml")
                }
                throw Diagnostic(kind: .usage, message: "\(option) needs a value", hint: "give it after the option (\(option) VALUE), before the command")
            }
            index += 1
            return arguments[index - 1]
        }
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--" {
                result.rest = Array(arguments[index...])
                return result
            }
            guard argument.hasPrefix("-"), argument != "-" else {
                result.rest = Array(arguments[(index - 1)...])
                return result
            }
            if argument.hasPrefix("--") {
                let body = argument.dropFirst(2)
                let given = String(body.prefix { $0 != "=" })
                let name = fullName(given)
                let inline = body.contains("=") ? String(body.drop { $0 != "=" }.dropFirst()) : nil
                let argument = name == given ? argument : "--" + name + (inline.map { "=" + $0 } ?? "")
                switch name {
                case "environment":
                    let value: String
                    if let inline { value = inline } else { value = try next(for: "--environment") }
                    // Not the next option: `--environment -n 1` forgot the name.
                    guard !value.isEmpty, inline != nil || !value.hasPrefix("-") else {
                        throw Diagnostic(kind: .usage, message: "--environment needs a name or a path", hint: "--environment=NAME, ./FILE.toml or /path/FILE.toml")
                    }
                    result.environment = value
                    continue
                case "dry-run":
                    result.dryRun = true
                    continue
                case "verbose":
                    result.verbose += 1
                default:
                    break
                }
                result.options.append(argument)
                if let inline {
                    result.values[name] = inline
                } else if longWithValue.contains(name) {
                    let value = try next(for: "--" + name)
                    result.options.append(value)
                    result.values[name] = value
                }
                continue
            }
            // A cluster of short options: -lv, -n4, -n 4.
            result.options.append(argument)
            var letters = argument.dropFirst()
            while let letter = letters.first {
                letters = letters.dropFirst()
                if letter == "v" { result.verbose += 1 }
                if shortWithValue.contains(letter) {
                    if letters.isEmpty { result.options.append(try next(for: "-" + String(letter))) }
                    break
                }
            }
        }
        return result
    }
}

extension String {
    /// The string as one word for a POSIX shell.
    var shellQuoted: String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%")
        if !isEmpty && allSatisfy({ safe.contains($0) }) { return self }
        return "'" + replacing("'", with: "'\\''") + "'"
    }
}
