import ArgumentParser
import FoundationEssentials
import Glibc
import Hooks
import Runtime
import ToolSupport
import ToolboxCore
import ToolboxModel

/// `hook-run`: runs the site's and the user's hooks against a root file system.
public struct HookRun: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "hook-run",
        abstract: "Run the site's and the user's hooks against a container's root file system.",
        discussion: """
            Hooks are the executable files named *.sh (as enroot; names not starting with .) of \
            $TOOLBOX_SYSCONF_PATH/hooks.d (default /etc/toolbox/hooks.d), then of the user's \
            $ENROOT_CONFIG_PATH/hooks.d (default ${XDG_CONFIG_HOME:-~/.config}/enroot/hooks.d), each directory in \
            lexical order. ns-enter runs hook-run when the root file system and the mounts are \
            ready and the command has not started; run alone, it shows what the hooks would do.

            A hook may say when it has work to do, in lines among its first 4 KiB: \
            "# hook-run-when: annotation KEY" (the container has the annotation), \
            "# hook-run-when: variable NAME" (set and not empty in the environment or the \
            container's variables so far), "# hook-run-when: config FILE NAME" \
            ($TOOLBOX_SYSCONF_PATH/hooks.conf.d/FILE.conf assigns NAME). With such lines it is \
            started only when one holds, and reported as skipped otherwise; without them, always.

            Each hook gets this process's environment plus ENROOT_ROOTFS (the root file system), \
            ENROOT_PID, ENROOT_MOUNTS (an fstab file it may append to: SOURCE TARGET TYPE \
            OPTIONS, TARGET inside the container; x-create=dir|file|auto, bind, rbind, ro, \
            nofail, x-detach, ...), ENROOT_ENVIRON (KEY=VALUE lines, the container's variables \
            so far, which it may append to) and every annotation as \
            OCI_ANNOTATION_<key with . replaced by __>: hooks written for enroot and for the \
            CSCS Container Engine run unchanged. A hook's stdout and stderr go to stderr. \
            Hooks may pipe fstab lines into enroot-mount --root "$ENROOT_ROOTFS" -: when none is \
            installed, hook-run provides it (a link to itself on the hooks' PATH); toolbox-hook \
            (library injection, services) is put on their PATH too. Besides: HOOK_RUN_STATE_DIR \
            (a private directory that lives as long as the container, for the files of the \
            hooks' services; hook-run writes the container's variables into its environ file \
            after the last hook), TOOLBOX_HOOK_PIDS (a file of pids, one per line, of processes a \
            hook started in a session of its own inside the container: stopped, SIGTERM then \
            SIGKILL, when the container ends or a later hook fails), HOOK_RUN_WRITABLE_MOUNTS \
            (the mounts besides the root where the helpers may create files), HOOK_RUN_DEFERRED \
            (a file where toolbox-hook inject asks for the image's linker cache to be refreshed: \
            hook-run runs ldconfig once, after the last hook and its mounts). The site hooks \
            of contrib/hooks.d (GPU, CXI, NCCL, MPI, SSH, Slurm, MPS, DCGM) are written for \
            this protocol.

            Output (stdout): JSON with the hooks (those not started marked skipped), the mounts they asked for (made when \
            --apply is given, inside the current mount namespace), the variables they added and \
            the services they started (with --apply only: the caller stops them).

            Exit status:
            \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .osError, .hookFailed]))
            """,
        version: toolboxVersion
    )

    @Option(help: "The root file system the hooks work on (ENROOT_ROOTFS).", completion: .directory)
    var rootfs: String

    @Option(help: "Annotations: a JSON object of strings, or an environment document (its \"annotations\"); - for stdin.", completion: .file())
    var annotations: String?

    @Option(parsing: .unconditional, help: "ENROOT_PID for the hooks (default: this process).")
    var pid: Int32?

    @Option(name: .customLong("env"), help: "A variable of the container so far (NAME=VALUE), written to ENROOT_ENVIRON before the first hook.")
    var variables: [String] = []

    @Flag(help: "Make the mounts the hooks asked for (in this process's mount namespace).")
    var apply = false

    @Option(parsing: .unconditional, help: "Seconds a hook may run before it is killed (default: HOOK_RUN_TIMEOUT, else 60).")
    var timeout: Double?

    public init() {}

    public func run() throws {
        let context = ProcessContext.current()
        let root = try Inputs.rootDirectory(rootfs, context: context)
        var annotationValues: [String: String] = [:]
        if let annotations { annotationValues = try Self.readAnnotations(annotations, context: context) }
        var containerVariables: [(String, String)] = []
        for variable in variables { containerVariables.append(try Inputs.split(variable, option: "--env")) }
        let timeoutOption = "--timeout"
        let limit = try HookRunner.timeout(option: timeout, optionName: timeoutOption, environment: context.environment)
        var runner = HookRunner(
            hooks: HookDirectories(environment: context.environment).hooks(), rootfs: root, pid: pid ?? getpid(),
            annotations: annotationValues, environment: context.environment, containerVariables: containerVariables,
            timeout: limit)
        runner.timeoutOption = timeoutOption
        let mounter = apply ? FstabMounter(rootfs: try RootFilesystem(path: root), tool: "hook-run") : nil
        let report = try runner.run(mounter: mounter)
        try StandardStreams.writeOutput(try Output.json(report))
    }

    static func readAnnotations(_ argument: String, context: ProcessContext) throws(Diagnostic) -> [String: String] {
        let (text, source) = try Inputs.read(argument, context: context)
        let data = Data(text.utf8)
        if let document = try? JSONDecoder().decode(AnnotatedDocument.self, from: data), let annotations = document.annotations {
            return annotations
        }
        guard let table = try? JSONDecoder().decode([String: Scalar].self, from: data) else {
            throw Diagnostic(
                kind: .syntax, file: source, message: "not a JSON object of strings",
                hint: "give {\"com.hooks.ssh.enabled\": \"true\"} or an environment document")
        }
        var result: [String: String] = [:]
        for (key, value) in table {
            guard let text = value.text else {
                throw Diagnostic(kind: .invalid, file: source, key: key, message: "an annotation's value must be a string")
            }
            result[key] = text
        }
        return result
    }
}

/// A document with annotations (the environment document).
private struct AnnotatedDocument: Decodable {
    var annotations: [String: String]?
}

/// A JSON value of an annotation table: strings, and booleans and numbers written as strings.
private struct Scalar: Decodable {
    var text: String?

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(String.self) {
            text = value
        } else if let value = try? container.decode(Bool.self) {
            text = value ? "true" : "false"
        } else if let value = try? container.decode(Int.self) {
            text = String(value)
        } else if let value = try? container.decode(Double.self) {
            text = String(value)
        } else {
            text = nil
        }
    }
}
