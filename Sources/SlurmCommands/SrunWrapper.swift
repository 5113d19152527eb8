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
            TOOLBOX_ENVIRONMENT --name %j.%s.%N -- COMMAND, with the rendered document in \
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
            \(ExitStatus.helpTable([.usage, .invalidInput, .noInput, .commandNotFound], meanings: [
                .usage: "usage error: an option without its value, --environment without a name, --multi-prog, a heterogeneous step",
                .invalidInput: "the EDF's image file is not a squashfs image, or the rendered environment is over 128 KiB",
                .noInput: "the EDF's image file does not exist or cannot be read",
                .commandNotFound: "srun, or a stage's command (edf-expand, img-pull, ...), not found",
            ]))
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

    /// A heterogeneous step (`srun A : B`): its components after ':' would run outside the container.
    static let heterogeneous = Diagnostic(
        kind: .usage, message: "heterogeneous steps (':' between components) cannot be combined with --environment",
        hint: "start one step per component, each with --environment")

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
        let environmentVariables = ProcessContext.current().environment
        // Without one of its own, the allocation's (salloc --environment: toolbox-salloc); not in
        // a batch job submitted from the allocation, which carries the variable along.
        let allocation =
            environmentVariables["ENVIRONMENT"] == "BATCH"
            ? nil : environmentVariables[SallocWrapper.environmentVariable].flatMap { $0.isEmpty ? nil : $0 }
        line.environment = environment ?? line.environment ?? allocation
        line.dryRun = dryRun || line.dryRun
        line.verbose += verbose
        for _ in 0..<verbose { line.srunOptions.insert("-v", at: 0) }
        // SRUN_REAL=none: no Slurm here, local mode.
        let local = local || (srun == nil && environmentVariables["SRUN_REAL"] == "none")
        let realSrun = local ? nil : (srun ?? Self.findReal("srun", variable: "SRUN_REAL", wrapper: "toolbox-srun", environment: environmentVariables))

        // --environment in a later component of a heterogeneous step (srun A : --environment=E B).
        if line.environment == nil, let colon = line.command.firstIndex(of: ":"),
            line.command[colon...].contains(where: { $0 == "--environment" || $0.hasPrefix("--environment=") })
        {
            throw Self.heterogeneous
        }
        guard let environmentName = line.environment else {
            // Not ours: exactly srun.
            guard let realSrun else {
                throw Diagnostic(kind: .commandNotFound, message: "srun not found", hint: "install Slurm's client commands, or set SRUN_REAL")
            }
            try Self.exec([realSrun] + (wrap ? arguments : line.srunOptions + line.command), environment: environmentVariables)
        }
        // What cannot be put in one container: a program per task, and heterogeneous steps
        // (whose components after ':' would run outside it).
        if line.srunOptions.contains(where: { $0 == "--multi-prog" || $0.hasPrefix("--multi-prog=") }) {
            throw Diagnostic(
                kind: .usage, message: "--multi-prog cannot be combined with --environment",
                hint: "run one program in the container that picks the work by $SLURM_PROCID, e.g. srun --environment=ENV sh -c 'case $SLURM_PROCID in ...'")
        }
        if line.command.contains(":") { throw Self.heterogeneous }
        // TOOLBOX_SRUN_PULL=nodes: the nodes pull (contrib/slurm/task-prolog.sh), not this side.
        let (stages, buildStage) = Stages.list(
            environment: environmentName, quiet: line.verbose == 0,
            pullHere: environmentVariables["TOOLBOX_SRUN_PULL"] != "nodes" || realSrun == nil)
        var taskCommand = [Stages.tool("ns-enter"), "--environment-variable", Self.documentVariable]
        if realSrun != nil { taskCommand += ["--name", "%j.%s.%N"] }
        taskCommand += ["--"] + line.command
        // TOOLBOX_SRUN_CACHE (a site's node-local directory): the steps of a job share the
        // image blocks their FUSE servers decompress, in a directory of the job's own (ns-enter
        // puts the job id for %j; contrib/slurm/epilog.sh removes it when the job ends).
        var blockCache: String?
        if let base = environmentVariables["TOOLBOX_SRUN_CACHE"], base.hasPrefix("/"), environmentVariables["NS_ENTER_CACHE"] == nil {
            blockCache = "\(base)/toolbox-cache-\(getuid())/" + (realSrun == nil ? "local" : "%j")
        }
        let exported = blockCache == nil ? [Self.documentVariable] : [Self.documentVariable, "NS_ENTER_CACHE"]
        var srunOptions = line.srunOptions
        // A new job (not a step of an allocation) is named after the command, as srun names it,
        // not after ns-enter; a name given stays.
        if environmentVariables["SLURM_JOB_ID"] == nil, !namesTheJob(srunOptions, shortWithValue: SrunCommandLine.shortWithValue), environmentVariables["SLURM_JOB_NAME"] == nil,
            environmentVariables["SRUN_JOB_NAME"] == nil, let program = line.command.first
        {
            srunOptions.append("--job-name=" + (program.split(separator: "/").last.map(String.init) ?? program))
        }
        let launcher = realSrun.map { [$0] + Self.exporting(srunOptions, variables: exported, environment: environmentVariables) } ?? []

        if line.dryRun {
            var text = Stages.shellText(stages, build: buildStage) + " > environment.json\n"
            text += "\(Self.documentVariable)=\"$(cat environment.json)\" " + (blockCache.map { "NS_ENTER_CACHE=\($0.shellQuoted) " } ?? "") + (launcher + taskCommand).map(\.shellQuoted).joined(separator: " ") + "\n"
            try StandardStreams.writeOutput(text)
            return
        }

        let (document, timings) = try Stages.run(
            stages, build: buildStage, tool: "toolbox-srun", what: "the step", environment: environmentVariables)
        if line.verbose > 0 { StandardStreams.writeError("toolbox-srun: " + timings.joined(separator: ", ") + "\n") }
        var taskEnvironment = environmentVariables
        taskEnvironment[Self.documentVariable] = String(decoding: document, as: UTF8.self)
        // The tasks run in the container already: an srun they start is not the allocation's.
        taskEnvironment[SallocWrapper.environmentVariable] = nil
        if let blockCache { taskEnvironment["NS_ENTER_CACHE"] = blockCache }

        let leftAside = line.srunOptions.filter { $0 != "-v" && $0 != "--verbose" }
        if realSrun == nil && !leftAside.isEmpty {
            StandardStreams.writeError(
                "toolbox-srun: note: no Slurm here (local mode): one task runs here; srun's options are left aside: \(leftAside.joined(separator: " "))\n")
        }
        let rendered = try? JSONDecoder().decode(EnvironmentDocument.self, from: Data(document))
        if let rendered, rendered.image == nil {
            // An EDF without an image (only annotations or mounts): as the Container Engine does,
            // no container; the step runs as plain srun would run it.
            StandardStreams.writeError("toolbox-srun: note: the environment \(environmentName) names no image: the step runs without a container\n")
            taskEnvironment[Self.documentVariable] = nil
            try Self.exec((realSrun.map { [$0] + srunOptions } ?? []) + line.command, environment: taskEnvironment)
        }
        let squash = rendered?.squash
        guard let squash, squash.temporary else {
            try Self.exec(launcher + taskCommand, environment: taskEnvironment)
        }
        // EDF_IMAGESTORE=void: the image is this step's; it goes when the step ends. srun runs as
        // a child, which gets the signals this process gets (scancel's, timeout's, kill's).
        let result = ChildProcess.runForwardingSignals(launcher + taskCommand, environment: taskEnvironment)
        unlink(squash.path)
        unlink(squash.metadata)
        // The step's own directory of the temporary store goes too, when nothing else is in it,
        // and the job's above it when no other step of the job has one there (the epilog, where
        // a site installs it, cleans up after a step that was killed).
        if let slash = squash.path.lastIndex(of: "/") {
            let run = String(squash.path[..<slash])
            rmdir(run)
            if let up = run.lastIndex(of: "/"), run[run.index(after: up)...].hasPrefix("run-") { rmdir(String(run[..<up])) }
        }
        if let failure = result.failure {
            throw Diagnostic(kind: .commandNotFound, message: "cannot run \((launcher + taskCommand).first ?? ""): \(failure)")
        }
        Glibc.exit(result.status)
    }

    /// srun's options with TOOLBOX_ENVIRONMENT (and `variables`) passed whatever --export says:
    /// added to a list of variables; NONE (or NIL, in any case) becomes just them (Slurm's own
    /// variables are always passed, and NONE passes none of the user's, so the rest of a
    /// `NONE,...` list goes too); ALL is left alone. Without --export, srun takes
    /// $SRUN_EXPORT_ENV, else $SLURM_EXPORT_ENV (which `sbatch --export=NONE` sets in the job):
    /// one of those is made an explicit --export the same way.
    public static func exporting(
        _ options: [String], variables: [String] = [documentVariable], environment: [String: String] = [:]
    ) -> [String] {
        func rewritten(_ list: String) -> String {
            let items = list.split(separator: ",").map(String.init)
            switch items.first?.uppercased() {
            case "NONE", "NIL": return "--export=" + variables.joined(separator: ",")
            case "ALL": return "--export=" + list
            default: return "--export=" + (items + variables).joined(separator: ",")
            }
        }
        var result: [String] = []
        var given = false
        var index = 0
        while index < options.count {
            let option = options[index]
            index += 1
            if option == "--export", index < options.count {
                result.append(rewritten(options[index]))
                index += 1
                given = true
            } else if option.hasPrefix("--export=") {
                result.append(rewritten(String(option.dropFirst("--export=".count))))
                given = true
            } else {
                result.append(option)
            }
        }
        if !given, let inherited = environment["SRUN_EXPORT_ENV"] ?? environment["SLURM_EXPORT_ENV"], !inherited.isEmpty,
            inherited.uppercased() != "ALL"
        {
            result.append(rewritten(inherited))
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

    /// Replaces this process with `arguments`; a bare program name is found on `environment`'s
    /// PATH, as a shell finds it (local mode runs the user's command itself).
    static func exec(_ arguments: [String], environment: [String: String]) throws -> Never {
        let argv = CStrings(arguments)
        let envp = CStrings(environment: environment)
        var program = arguments.first ?? ""
        if !program.contains("/") {
            let path = environment["PATH"] ?? "/usr/bin:/bin"
            program = path.split(separator: ":").map { "\($0)/\(program)" }.first { access($0, X_OK) == 0 } ?? program
        }
        _ = argv.use { pointers in envp.use { execve(program, pointers, $0) } }
        let code = errno
        throw Diagnostic(
            kind: code == ENOENT ? .commandNotFound : .commandNotExecutable,
            message: "cannot run \(program): \(String(cString: strerror(code)))")
    }
}
