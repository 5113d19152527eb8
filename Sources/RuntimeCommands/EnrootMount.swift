import ArgumentParser
import Glibc
import Hooks
import Runtime
import ToolSupport
import ToolboxCore

/// `enroot-mount`: enroot's helper that hooks pipe fstab lines into
/// (`... | enroot-mount --root "$ENROOT_ROOTFS" -`), provided by hook-run so that such hooks run
/// unchanged: hook-run puts a link named enroot-mount to itself on the hooks' PATH when none is
/// installed, and acts as this command when called by that name. Under hook-run without
/// `--apply` (nothing is mounted) it adds the lines to `$ENROOT_MOUNTS` instead, so that the report
/// shows them.
public struct EnrootMount: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "enroot-mount",
        abstract: "Mount fstab entries inside a container's root file system (enroot's enroot-mount, for hooks).",
        discussion: """
            Reads fstab lines (the dialect of hook-run's ENROOT_MOUNTS: SOURCE TARGET TYPE \
            OPTIONS, TARGET inside the root; x-create=dir|file|auto, bind, rbind, ro, nofail, \
            x-detach, ...) from FSTAB, or stdin when FSTAB is - or missing, and mounts them now, \
            in order, inside ROOT (paths resolved as if ROOT were /).

            Exit status:
            \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .osError]))
            """
    )

    @Option(help: "The container's root file system (ENROOT_ROOTFS).", completion: .directory)
    var root: String

    @Argument(help: "The fstab file (- for stdin).", completion: .file())
    var fstab: String = "-"

    public init() {}

    public func run() throws {
        let context = ProcessContext(environment: ProcessEnvironment.current, currentDirectory: FileReader.currentDirectory())
        let rootPath = try Inputs.rootDirectory(root, context: context)
        let (text, origin) = try Inputs.read(fstab, context: context)
        let entries = try Fstab.parse(text, origin: origin, environment: context.environment)
        // Under `hook-run` without --apply: add the lines to the report instead.
        if context.environment["HOOK_RUN_ENROOT_MOUNT"] == "record", let mounts = context.environment["ENROOT_MOUNTS"] {
            try FileWriter.append(text.hasSuffix("\n") || text.isEmpty ? text : text + "\n", to: mounts)
            return
        }
        let rootfs = try RootFilesystem(path: rootPath)
        rootfs.allowWrites(in: context.environment["HOOK_RUN_WRITABLE_MOUNTS"])
        // The tmpfs mounts an earlier call made: mount points may be made in them too, and this
        // call's are recorded for the next one.
        let state = context.environment["HOOK_RUN_STATE_DIR"]
        if let state { HookRunner.allowRecordedWrites(rootfs, state: state) }
        let before = rootfs.writableMountIDs
        let mounter = FstabMounter(rootfs: rootfs, tool: "enroot-mount")
        defer {
            if let state { HookRunner.recordWrites(rootfs.writableMountIDs.subtracting(before), state: state) }
        }
        for entry in entries { try mounter.perform(entry) }
    }
}

extension HookRun {
    /// The entry point of hook-run's main.swift: enroot-mount when called by that name.
    public static func runByName() -> Never {
        let name = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? ""
        if name == "enroot-mount" { EnrootMount.runAsTool() }
        runAsTool()
    }
}
