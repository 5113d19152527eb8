import ArgumentParser
import Glibc
import ToolSupport
import ToolboxCore

/// `toolbox-salloc`: what `salloc --environment=...` does (bin/salloc hands such command lines to
/// it). As with the reference system's salloc support, the allocation's own shell stays on the
/// host; the job steps started in the allocation with bin/srun run in the environment's container
/// without their own `--environment`.
public struct SallocWrapper: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "toolbox-salloc",
        abstract: "Get an allocation whose job steps run in the container an EDF describes (what salloc --environment does).",
        discussion: """
            toolbox-salloc [--salloc REAL-SALLOC] -- [SALLOC-OPTIONS...] [COMMAND [ARGS...]]

            bin/salloc, put before Slurm's salloc in PATH, calls it with the command line as \
            typed (after --). With --environment ENV among salloc's options (ENV an EDF name in \
            EDF_PATH or a path), ENV is checked here (edf-expand: a typo fails now, not after \
            the wait for nodes), then the real salloc runs without the option and with \
            TOOLBOX_SALLOC_ENVIRONMENT=ENV (a path made absolute) in its environment: every \
            srun of the allocation (bin/srun) without its own --environment runs its tasks in \
            ENV's container; srun --environment=OTHER picks another one, and an empty \
            TOOLBOX_SALLOC_ENVIRONMENT none (a batch job submitted from the allocation, \
            ENVIRONMENT=BATCH, ignores it). The allocation's shell itself stays on the host, \
            as with the reference system. Without --environment the real salloc runs \
            unchanged.

            The real salloc: --salloc, else $SALLOC_REAL, else the first salloc on PATH that is \
            not this wrapper.

            Exit status: salloc's, edf-expand's for an environment that does not render, or:
            \(ExitStatus.helpTable([.usage, .commandNotFound], meanings: [
                .usage: "usage error: --environment without a name",
                .commandNotFound: "salloc or edf-expand not found",
            ]))
            """,
        version: toolboxVersion
    )

    @Option(help: "The real salloc (default: $SALLOC_REAL, else salloc on PATH).", completion: .file())
    var salloc: String?

    @Argument(parsing: .postTerminator, help: "salloc's options (--environment among them), then the command and its arguments (after --).")
    var arguments: [String] = []

    public init() {}

    /// The variable that names the allocation's environment to bin/srun and toolbox-srun.
    public static let environmentVariable = "TOOLBOX_SALLOC_ENVIRONMENT"

    public func run() throws {
        let context = ProcessContext.current()
        var environmentVariables = context.environment
        // salloc's options are sbatch's (less --wrap and the batch script's): the same table.
        let line = try SbatchCommandLine.parse(arguments)
        guard let realSalloc = salloc ?? SrunWrapper.findReal("salloc", variable: "SALLOC_REAL", wrapper: "toolbox-salloc", environment: environmentVariables)
        else {
            throw Diagnostic(kind: .commandNotFound, message: "salloc not found", hint: "install Slurm's client commands, or set SALLOC_REAL")
        }
        guard var environment = line.environment else {
            try SrunWrapper.exec([realSalloc] + arguments, environment: environmentVariables)
        }
        // A path, as the steps will see it from wherever they start.
        if environment.hasPrefix("./") || environment.hasPrefix("../") {
            environment = Path.absolute(environment, relativeTo: context.currentDirectory)
        }
        let check = ChildProcess.run([Stages.tool("edf-expand"), environment], environment: environmentVariables)
        if let failure = check.failure {
            throw Diagnostic(kind: .commandNotFound, message: "cannot run edf-expand: \(failure)")
        }
        if check.status != 0 {
            StandardStreams.writeError("toolbox-salloc: error: the environment \(environment) does not render (edf-expand's message above); no allocation was asked for\n")
            Glibc.exit(check.status)
        }
        environmentVariables[Self.environmentVariable] = environment
        var command = [realSalloc] + line.sbatchOptions
        if let program = line.script { command += ["--", program] + line.scriptArguments }
        try SrunWrapper.exec(command, environment: environmentVariables)
    }
}
