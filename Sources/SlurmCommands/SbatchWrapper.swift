import ArgumentParser
import FoundationEssentials
import Glibc
import ToolSupport
import ToolboxCore
import ToolboxModel

/// `toolbox-sbatch`: what `sbatch --environment=...` and `#SBATCH --environment=...` do
/// (bin/sbatch hands such command lines to it). As with the reference system's sbatch support,
/// the whole batch script runs in the container: the environment is rendered, pulled and
/// squashed here, once, when the job is submitted; the job's batch script becomes a small shell
/// script that carries the rendered document and the user's script, and on the batch node runs
/// the user's script in the container with ns-enter.
public struct SbatchWrapper: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "toolbox-sbatch",
        abstract: "Submit a batch job whose batch script runs in the container an EDF describes (what sbatch --environment does).",
        discussion: """
            toolbox-sbatch [--sbatch REAL-SBATCH] -- [SBATCH-OPTIONS...] [SCRIPT [ARGS...]]

            bin/sbatch, put before Slurm's sbatch in PATH, calls it with the command line as \
            typed (after --). The environment: --environment ENV among sbatch's options, else an \
            #SBATCH --environment=ENV directive of the script (read from SCRIPT, from stdin when \
            there is none, or made from --wrap COMMAND as sbatch makes it). Neither: the real \
            sbatch runs unchanged. ENV is an EDF name (EDF_PATH) or a path.

            With an environment: edf-expand ENV | img-pull | img-build | img-squash run here, \
            once (as for srun --environment); then the real sbatch gets, instead of SCRIPT, a \
            shell script with SCRIPT's #SBATCH directives (without --environment) that runs \
            ns-enter --environment-variable TOOLBOX_ENVIRONMENT -- SCRIPT on the batch node: \
            SCRIPT, with its own #! interpreter, runs in the container (on a descriptor opened \
            on the node: the image needs no shell or writable /tmp of its own), its output \
            goes where sbatch's -o/-e say. The document and the \
            script travel inside that batch script: nothing is rendered or pulled on the node.

            Caveats (as the reference system's): the batch script's interpreter must exist in \
            the image; srun inside the script needs Slurm's commands in the container (the \
            site's 87-slurm.sh hook); its steps run on their nodes outside any container unless \
            they give --environment themselves, which needs the toolbox's srun inside too and \
            starts a container from within one. Prefer srun --environment in a plain batch \
            script. --dry-run prints the stages and the batch script instead of submitting; -v \
            prints each stage's time (and is passed to sbatch).

            The real sbatch: --sbatch, else $SBATCH_REAL, else the first sbatch on PATH that is \
            not this wrapper.

            Exit status: sbatch's, a failed stage's own, or:
            \(ExitStatus.helpTable([.usage, .invalidInput, .noInput, .ioError, .commandNotFound], meanings: [
                .usage: "usage error: an option without its value, --environment without a name",
                .invalidInput: "a script without #! or larger than 120 KiB, EDF_IMAGESTORE=void, an image file that is not squashfs",
                .noInput: "the script, or the EDF's image file, does not exist or cannot be read",
                .ioError: "the batch script for sbatch could not be written (TMPDIR)",
                .commandNotFound: "sbatch, or a stage's command (edf-expand, img-pull, ...), not found",
            ]))
            """,
        version: toolboxVersion
    )

    @Option(help: "The real sbatch (default: $SBATCH_REAL, else sbatch on PATH).", completion: .file())
    var sbatch: String?

    @Argument(parsing: .postTerminator, help: "sbatch's options (--environment among them), then the script and its arguments (after --).")
    var arguments: [String] = []

    public init() {}

    /// The variable that carries the user's batch script into the container.
    static let scriptVariable = "TOOLBOX_BATCH_SCRIPT"
    /// Environment variables and command lines are limited to 128 KiB each (MAX_ARG_STRLEN).
    static let largestScript = 120 << 10

    public func run() throws {
        let environmentVariables = ProcessContext.current().environment
        let line = try SbatchCommandLine.parse(arguments)
        let realSbatch = sbatch ?? SrunWrapper.findReal("sbatch", variable: "SBATCH_REAL", wrapper: "toolbox-sbatch", environment: environmentVariables)

        // The batch script, when the environment may be in it: its bytes as they are (any
        // encoding, as sbatch takes it), one character per byte (see `latin1`).
        var text: String?
        if let command = line.wrap {
            text = Self.latin1(Array(("#!/bin/sh\n" + command + "\n").utf8))
        } else if let script = line.script {
            do {
                text = Self.latin1(try FileReader.readBytes(script))
            } catch {
                // Without --environment, an unreadable script is the real sbatch's to report.
                if line.environment != nil { throw error }
            }
        } else if line.environment != nil || (isatty(STDIN_FILENO) == 0 && !line.informational) {
            // No script named: sbatch reads it from stdin (not for --version, --help, --usage).
            text = Self.latin1(try FileReader.readBytes("-", displayName: "<stdin>"))
        }
        let batch = try text.map { text throws(Diagnostic) in try BatchScript(text) }
        guard let environmentName = line.environment ?? batch?.environment.map(Self.utf8FromLatin1) else {
            // Not ours: exactly sbatch (a script read from stdin is handed on in a file).
            guard let realSbatch else { throw Self.noSbatch }
            guard line.script == nil && line.wrap == nil, let text else {
                try SrunWrapper.exec([realSbatch] + arguments, environment: environmentVariables)
            }
            // Named "sbatch", as sbatch names a script from stdin, not after the file it is handed on in.
            var options = line.sbatchOptions
            if let name = Self.jobName(line, options: options, directives: batch?.directives ?? [], environment: environmentVariables) {
                options.append(name)
            }
            try Self.submit([realSbatch] + options, script: text, arguments: [], environment: environmentVariables)
        }
        guard let batch else { throw Diagnostic(kind: .software, message: "no batch script") }
        guard batch.interpreter != nil else {
            throw Diagnostic(
                kind: .invalid, file: line.script ?? "<stdin>", message: "the batch script does not start with #! and an interpreter",
                hint: "begin it with a line such as #!/bin/bash (the interpreter must be in the image: the script runs in the container)")
        }
        guard batch.text.unicodeScalars.count <= Self.largestScript, !batch.text.contains("\0") else {
            throw Diagnostic(
                kind: .invalid, file: line.script ?? "<stdin>",
                message: "the batch script is larger than \(Self.largestScript >> 10) KiB, too large to travel in the job for --environment",
                hint: "keep the batch script small and have it run a larger one from a mounted directory")
        }

        var options = line.optionsWithoutWrap
        if let name = Self.jobName(line, options: options, directives: batch.directives, environment: environmentVariables) {
            options.append(name)
        }
        for _ in 0..<line.verbose where !options.contains("-v") && !options.contains("--verbose") { options.insert("-v", at: 0) }
        let (stages, build) = Stages.list(environment: environmentName, quiet: line.verbose == 0, pullHere: true)
        if line.dryRun {
            var out = Stages.shellText(stages, build: build) + " > environment.json\n"
            out += ([realSbatch ?? "sbatch"] + options + ["BATCH-SCRIPT"] + line.scriptArguments).map(\.shellQuoted).joined(separator: " ") + "\n"
            out += "# BATCH-SCRIPT:\n"
            try StandardStreams.writeOutput(bytes: Array(out.utf8) + Self.bytes(ofLatin1: Self.batchScript(batch, document: nil, environmentName: environmentName)))
            return
        }
        guard let realSbatch else { throw Self.noSbatch }
        // A temporary image would be gone, or on another node, by the time the job runs: said
        // before any stage runs.
        if environmentVariables["EDF_IMAGESTORE"] == "void" { throw Self.voidStore }
        let (document, timings) = try Stages.run(stages, build: build, tool: "toolbox-sbatch", what: "the job", environment: environmentVariables)
        if line.verbose > 0 { StandardStreams.writeError("toolbox-sbatch: " + timings.joined(separator: ", ") + "\n") }
        let rendered = try? JSONDecoder().decode(EnvironmentDocument.self, from: Data(document))
        if let rendered, rendered.image == nil {
            // An EDF without an image: no container, the script is submitted as it is.
            StandardStreams.writeError("toolbox-sbatch: note: the environment \(environmentName) names no image: the job runs without a container\n")
            try Self.submit([realSbatch] + options, script: batch.textWithoutEnvironment, arguments: line.scriptArguments, environment: environmentVariables)
        }
        // As the reference system warns when --environment is used outside srun (spec 1.14).
        StandardStreams.writeError(
            "toolbox-sbatch: warning: the whole batch script runs in the container (experimental, as in the reference system); srun --environment in a plain batch script is the supported form\n")
        if let squash = rendered?.squash, squash.temporary {
            // A file for this process only: gone, or on another node, by the time the job runs.
            unlink(squash.path)
            unlink(squash.metadata)
            throw Self.voidStore
        }
        let script = Self.batchScript(batch, document: Self.latin1(document), environmentName: environmentName)
        try Self.submit([realSbatch] + options, script: script, arguments: line.scriptArguments, environment: environmentVariables)
    }

    /// `--job-name=NAME` as sbatch names a job (the script's file name, "wrap", "sbatch" for a
    /// script on stdin), for a script the wrapper hands on in a file of its own; nil when a name
    /// is given on the command line, in a directive or in SBATCH_JOB_NAME.
    static func jobName(_ line: SbatchCommandLine, options: [String], directives: [String], environment: [String: String]) -> String? {
        let directiveWords = directives.flatMap { $0.split { $0 == " " || $0 == "\t" }.map(String.init) }
        guard !namesTheJob(options, shortWithValue: SbatchCommandLine.shortWithValue),
            !namesTheJob(directiveWords, shortWithValue: SbatchCommandLine.shortWithValue), environment["SBATCH_JOB_NAME"] == nil
        else { return nil }
        let name = line.wrap != nil ? "wrap" : line.script.map { $0.split(separator: "/").last.map(String.init) ?? $0 } ?? "sbatch"
        return "--job-name=" + name
    }

    /// The job's batch script: the user's directives, then the document and the user's script
    /// in variables, then ns-enter, which runs the script in the container.
    /// `document` nil: where it would be (--dry-run).
    static func batchScript(_ batch: BatchScript, document: String?, environmentName: String) -> String {
        let nsEnter = Stages.tool("ns-enter")
        // On the batch node, outside the container: the script into a file of the job's TMPDIR,
        // opened on descriptor 9 and removed, then ns-enter, which runs the script's interpreter
        // (and the one argument a #! line may give it) on /dev/fd/9 in the container: the image
        // needs no shell of its own and no writable /tmp, and the batch script is the job's
        // process itself, so that the signals Slurm sends it (scancel --batch --signal,
        // --signal=B:...) reach its traps.
        let (interpreter, argument) = Self.interpreter(batch.interpreter ?? "#!/bin/sh")
        let run = [latin1(Array(nsEnter.utf8)), "--environment-variable", SrunWrapper.documentVariable, "--", interpreter] + (argument.map { [$0] } ?? [])
        var lines = ["#!/bin/sh"] + batch.otherDirectives
        lines.append("# Made by toolbox-sbatch for --environment=\(latin1(Array(environmentName.utf8))): the batch script below runs in its container.")
        lines.append("\(SrunWrapper.documentVariable)=" + (document?.shellQuoted ?? "\"$(cat environment.json)\""))
        lines.append("\(scriptVariable)=" + batch.text.shellQuoted)
        lines.append("export \(SrunWrapper.documentVariable)")
        lines.append("script=$(mktemp \"${TMPDIR:-/tmp}/toolbox-batch-script.XXXXXX\") || exit 1")
        lines.append("printf '%s' \"$\(scriptVariable)\" > \"$script\" || { rm -f \"$script\"; exit 1; }")
        lines.append("exec 9< \"$script\"")
        lines.append("rm -f \"$script\"")
        lines.append("unset \(scriptVariable) script")
        lines.append("exec " + run.map(\.shellQuoted).joined(separator: " ") + " /dev/fd/9 \"$@\"")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Bytes as text with one character per byte (ISO 8859-1): a batch script in any encoding is
    /// read (its directives are ASCII) and written back byte for byte; the batch script handed
    /// to sbatch is such text throughout (`bytes(ofLatin1:)` writes it).
    static func latin1(_ bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.append(contentsOf: bytes.map { Unicode.Scalar($0) })
        return String(scalars)
    }

    static func bytes(ofLatin1 text: String) -> [UInt8] {
        text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }
    }

    /// A name read from a script's directive, as the UTF-8 text it most likely is.
    static func utf8FromLatin1(_ text: String) -> String {
        String(decoding: bytes(ofLatin1: text), as: UTF8.self)
    }

    /// The interpreter of a `#!` line and the one argument Linux gives it (the rest of the line,
    /// blanks at its ends removed), as the kernel reads the line.
    static func interpreter(_ line: String) -> (String, String?) {
        var rest = Substring(line.hasPrefix("#!") ? String(line.dropFirst(2)) : line)
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        rest = rest.drop(while: blank)
        while let last = rest.last, blank(last) { rest = rest.dropLast() }
        guard let space = rest.firstIndex(where: blank) else { return (String(rest), nil) }
        let argument = rest[space...].drop(while: blank)
        return (String(rest[..<space]), argument.isEmpty ? nil : String(argument))
    }

    /// Runs the real sbatch on `script`, written to a file of its own for the submission (sbatch
    /// copies it), and exits with sbatch's status.
    static func submit(_ command: [String], script: String, arguments: [String], environment: [String: String]) throws -> Never {
        // $TMPDIR, else /tmp (sbatch itself needs neither: one that cannot be written is passed by).
        let directories = (environment["TMPDIR"].flatMap { $0.hasPrefix("/") && $0 != "/tmp" ? [$0] : nil } ?? []) + ["/tmp"]
        var created: (Int32, String)?
        var failures: [String] = []
        for directory in directories where created == nil {
            switch FileWriter.createUnique(in: directory, prefix: "toolbox-sbatch") {
            case .success(let made): created = made
            case .failure(let error): failures.append("\(directory): \(error.reason)")
            }
        }
        guard let (fd, path) = created else {
            throw Diagnostic(kind: .output, message: "cannot create a file for the batch script (\(failures.joined(separator: "; ")))")
        }
        defer { unlink(path) }
        do {
            defer { close(fd) }
            try Self.bytes(ofLatin1: script).withUnsafeBytes { raw in
                Result { () throws(Diagnostic) in
                    try FileWriter.writeAll(fd, raw) { code in
                        Diagnostic(kind: .output, file: path, message: "cannot write the batch script: \(String(cString: strerror(code)))")
                    }
                }
            }.get()
        }
        // sbatch --wait may take long: the signals this process gets are its (^C reaches it from
        // the terminal by itself).
        let result = ChildProcess.runForwardingSignals(command + [path] + arguments, environment: environment)
        unlink(path)
        if let failure = result.failure {
            throw Diagnostic(kind: .commandNotFound, message: "cannot run \(command.first ?? "sbatch"): \(failure)")
        }
        Glibc.exit(result.status)
    }

    static let voidStore = Diagnostic(
        kind: .invalid, key: "EDF_IMAGESTORE",
        message: "void (a temporary image) cannot serve a batch job, which runs later and maybe elsewhere",
        hint: "unset EDF_IMAGESTORE for the image store, or set it to a directory the compute nodes see")

    static let noSbatch = Diagnostic(kind: .commandNotFound, message: "sbatch not found", hint: "install Slurm's client commands, or set SBATCH_REAL")
}
