import ArgumentParser
import FoundationEssentials
import Glibc
import ToolSupport
import ToolboxCore
import ToolboxModel

/// `toolbox-srun`: what `srun --environment=...` does (bin/srun hands such command lines to it).
/// It renders the environment once, here, on the submitting side (edf-expand), pulls and squashes
/// its image once into the image store (img-pull, img-squash), then runs the real srun with every
/// task in ns-enter: the first task on each node creates the step's container, the others join it.
/// The tasks get the rendered document in an environment variable: nodes neither render nor pull.
public struct SrunWrapper: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "toolbox-srun",
        abstract: "Run a Slurm job step with every task in the container an EDF describes (what srun --environment does).",
        discussion: """
            toolbox-srun --environment ENV [--dry-run] [-v] -- [SRUN-OPTIONS...] COMMAND [ARGS...]

            bin/srun, put before Slurm's srun in PATH, calls it as toolbox-srun --wrap --srun \
            REAL-SRUN -- ARGUMENTS (the command line as typed: --environment, --dry-run and -v \
            are taken from among srun's options; without --environment the real srun runs \
            unchanged). ENV is an EDF name (looked up in EDF_PATH) or a path (./x.toml, \
            /x.toml).

            Stages, each a command of its own: edf-expand ENV | img-pull | img-build | \
            img-squash (the image pulled, the EDF's containerfile built on it when there is \
            one, and squashed once into the image store, EDF_IMAGESTORE; an image already \
            there is reused), then SRUN [SRUN-OPTIONS] ns-enter --environment-variable \
            TOOLBOX_ENVIRONMENT --name %j.%s -- COMMAND, with the rendered document in \
            TOOLBOX_ENVIRONMENT (added to --export when it lists variables). --dry-run prints \
            these commands instead of running them; -v prints each stage's time on stderr (and \
            is passed to srun). Without Slurm (no real srun found), the same pipeline runs one \
            task here: ns-enter with the command (local mode).

            The real srun: --srun, else $SRUN_REAL, else the first srun on PATH that is not \
            this wrapper. With TOOLBOX_SRUN_CACHE=DIR (a node-local directory the site \
            chooses), the tasks get NS_ENTER_CACHE=DIR/toolbox-cache-UID/%j: the steps of a \
            job share the image blocks decompressed on a node (contrib/slurm/epilog.sh removes \
            them at the job's end). With EDF_IMAGESTORE=void the image is a temporary file, removed when \
            the step ends.

            Exit status: the step's (srun's), a failed stage's own, or:
            \(ExitStatus.helpTable([.usage, .invalidInput, .noInput, .osError, .commandNotExecutable, .commandNotFound]))
            """,
        version: toolboxVersion
    )

    @Option(name: .long, help: "The environment: an EDF name (EDF_PATH) or a path.", completion: .file(extensions: ["toml"]))
    var environment: String?

    @Flag(help: "Print each stage's command instead of running it.")
    var dryRun = false

    @Flag(name: .shortAndLong, help: "Print each stage's time (and pass -v to srun).")
    var verbose: Int

    @Option(help: "The real srun (default: $SRUN_REAL, else srun on PATH).", completion: .file())
    var srun: String?

    @Flag(help: "Run one task here, without Slurm (local mode).")
    var local = false

    @Flag(help: "The arguments are an srun command line as typed (what bin/srun passes).")
    var wrap = false

    @Argument(parsing: .postTerminator, help: "srun's options, then the command and its arguments (after --).")
    var arguments: [String] = []

    public init() {}

    /// The variable that carries the rendered document to the tasks.
    public static let documentVariable = "TOOLBOX_ENVIRONMENT"

    public func run() throws {
        var line: SrunCommandLine
        if wrap {
            line = try SrunCommandLine.parse(arguments)
        } else {
            line = SrunCommandLine()
            let parsed = try SrunCommandLine.parse(arguments)
            line.srunOptions = parsed.srunOptions
            line.command = parsed.command
            line.verbose = parsed.verbose
        }
        line.environment = environment ?? line.environment
        line.dryRun = dryRun || line.dryRun
        line.verbose += verbose
        for _ in 0..<verbose { line.srunOptions.insert("-v", at: 0) }
        let environmentVariables = ProcessContext.current().environment
        // SRUN_REAL=none: no Slurm here, local mode.
        let local = local || (srun == nil && environmentVariables["SRUN_REAL"] == "none")
        let realSrun = local ? nil : (srun ?? Self.findReal("srun", variable: "SRUN_REAL", wrapper: "toolbox-srun", environment: environmentVariables))

        guard let environmentName = line.environment else {
            // Not ours: exactly srun.
            guard let realSrun else {
                throw Diagnostic(kind: .commandNotFound, message: "srun not found", hint: "install Slurm's client commands, or set SRUN_REAL")
            }
            try Self.exec([realSrun] + (wrap ? arguments : line.srunOptions + line.command), environment: environmentVariables)
        }
        // TOOLBOX_SRUN_PULL=nodes: the nodes pull (contrib/slurm/task-prolog.sh), not this side.
        let (stages, buildStage) = Stages.list(
            environment: environmentName, quiet: line.verbose == 0,
            pullHere: environmentVariables["TOOLBOX_SRUN_PULL"] != "nodes" || realSrun == nil)
        var taskCommand = [Stages.tool("ns-enter"), "--environment-variable", Self.documentVariable]
        if realSrun != nil { taskCommand += ["--name", "%j.%s"] }
        taskCommand += ["--"] + line.command
        // TOOLBOX_SRUN_CACHE (a site's node-local directory): the steps of a job share the
        // image blocks their FUSE servers decompress, in a directory of the job's own (ns-enter
        // puts the job id for %j; contrib/slurm/epilog.sh removes it when the job ends).
        var blockCache: String?
        if let base = environmentVariables["TOOLBOX_SRUN_CACHE"], base.hasPrefix("/"), environmentVariables["NS_ENTER_CACHE"] == nil {
            blockCache = "\(base)/toolbox-cache-\(getuid())/" + (realSrun == nil ? "local" : "%j")
        }
        let exported = blockCache == nil ? [Self.documentVariable] : [Self.documentVariable, "NS_ENTER_CACHE"]
        let launcher = realSrun.map { [$0] + Self.exporting(line.srunOptions, variables: exported) } ?? []

        if line.dryRun {
            var text = Stages.shellText(stages, build: buildStage) + " > environment.json\n"
            text += "\(Self.documentVariable)=\"$(cat environment.json)\" " + (launcher + taskCommand).map(\.shellQuoted).joined(separator: " ") + "\n"
            try StandardStreams.writeOutput(text)
            return
        }

        let (document, timings) = try Stages.run(
            stages, build: buildStage, tool: "toolbox-srun", what: "the step", environment: environmentVariables)
        if line.verbose > 0 { StandardStreams.writeError("toolbox-srun: " + timings.joined(separator: ", ") + "\n") }
        var taskEnvironment = environmentVariables
        taskEnvironment[Self.documentVariable] = String(decoding: document, as: UTF8.self)
        if let blockCache { taskEnvironment["NS_ENTER_CACHE"] = blockCache }

        let leftAside = line.srunOptions.filter { $0 != "-v" && $0 != "--verbose" }
        if realSrun == nil && !leftAside.isEmpty {
            StandardStreams.writeError(
                "toolbox-srun: note: no Slurm here (local mode): one task runs here; srun's options are left aside: \(leftAside.joined(separator: " "))\n")
        }
        let squash = try? JSONDecoder().decode(EnvironmentDocument.self, from: Data(document)).squash
        guard let squash, squash.temporary else {
            try Self.exec(launcher + taskCommand, environment: taskEnvironment)
        }
        // EDF_IMAGESTORE=void: the image is this step's; it goes when the step ends.
        signal(SIGINT, SIG_IGN)
        signal(SIGQUIT, SIG_IGN)
        let result = ChildProcess.run(launcher + taskCommand, environment: taskEnvironment, inherit: true)
        unlink(squash.path)
        unlink(squash.metadata)
        if let failure = result.failure {
            throw Diagnostic(kind: .commandNotFound, message: "cannot run \((launcher + taskCommand).first ?? ""): \(failure)")
        }
        Glibc.exit(result.status)
    }

    /// srun's options with TOOLBOX_ENVIRONMENT added to an --export that lists variables (NONE
    /// becomes just it: Slurm's own variables are always passed).
    public static func exporting(_ options: [String], variables: [String] = [documentVariable]) -> [String] {
        var result: [String] = []
        var index = 0
        while index < options.count {
            var option = options[index]
            index += 1
            var value: String?
            if option == "--export", index < options.count {
                value = options[index]
                index += 1
            } else if option.hasPrefix("--export=") {
                value = String(option.dropFirst("--export=".count))
            }
            if let list = value {
                let items = list.split(separator: ",").map(String.init)
                if items.first == "NONE" || items.first == "NIL" {
                    option = "--export=" + (variables + items.dropFirst()).joined(separator: ",")
                } else if items.first == "ALL" {
                    option = "--export=" + list
                } else {
                    option = "--export=" + (items + variables).joined(separator: ",")
                }
            }
            result.append(option)
        }
        return result
    }

    /// Slurm's own `command` (srun, sbatch): `$variable` (SRUN_REAL, SBATCH_REAL), else the first
    /// on PATH that is not a toolbox wrapper (a file that names `wrapper` in its first bytes).
    static func findReal(_ command: String, variable: String, wrapper: String, environment: [String: String]) -> String? {
        if let real = environment[variable], !real.isEmpty { return real }
        for directory in (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = String(directory) + "/" + command
            guard access(candidate, X_OK) == 0 else { continue }
            if isWrapper(candidate, naming: wrapper) { continue }
            return candidate
        }
        return nil
    }

    /// Whether a file is a toolbox wrapper (it names `tool` in its first bytes).
    static func isWrapper(_ path: String, naming tool: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 1024)
        let count = head.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return count > 0 && String(decoding: head[0..<count], as: UTF8.self).contains(tool)
    }

    static func exec(_ arguments: [String], environment: [String: String]) throws -> Never {
        let argv = CStrings(arguments)
        let envp = CStrings(environment: environment)
        let program = arguments.first ?? ""
        _ = argv.use { pointers in envp.use { execve(program, pointers, $0) } }
        let code = errno
        throw Diagnostic(
            kind: code == ENOENT ? .commandNotFound : .commandNotExecutable,
            message: "cannot run \(program): \(String(cString: strerror(code)))")
    }
}
