import Glibc
import Hooks
import ToolboxCore
@testable import Runtime
import Testing
import ToolboxModel

@Suite struct ContainerEnvironmentTests {
    @Test func imageThenEDFThenHooks() {
        var environment = ContainerEnvironment(
            imageEnv: ["PATH=/image/bin", "A=image", "B=image", "EMPTY=", "=bad", "NOEQUALS"],
            edf: ["B": "edf", "C": "edf", "A": ""])
        for (name, value) in [("C", "hook"), ("D", "hook")] { environment.assign(name, value) }
        #expect(environment.set == ["PATH": "/image/bin", "B": "edf", "C": "hook", "D": "hook", "EMPTY": ""])
        #expect(environment.unset == ["A"])
        let applied = environment.applied(to: [
            "A": "host", "HOST": "host", "PATH": "/host/bin", "LD_LIBRARY_PATH": "/host/lib", "LD_PRELOAD": "x", "LC_ALL": "de_DE.UTF-8", "LANG": "de",
            "LANGUAGE": "de",
        ])
        #expect(applied == ["PATH": "/image/bin", "B": "edf", "C": "hook", "D": "hook", "EMPTY": "", "HOST": "host"])
    }

    @Test func defaultPathWhenNobodySetsOne() {
        let applied = ContainerEnvironment(imageEnv: [], edf: [:]).applied(to: ["PATH": "/host/bin"])
        #expect(applied["PATH"] == ContainerEnvironment.defaultPath)
        let unset = ContainerEnvironment(imageEnv: ["PATH=/x"], edf: ["PATH": ""]).applied(to: ["PATH": "/host/bin"])
        #expect(unset["PATH"] == nil, "an EDF may unset PATH on purpose")
    }
}

@Suite struct FstabTests {
    @Test func fullAndShortForms() throws {
        let text = """
            # a comment

            /src/lib /usr/lib/x none x-create=file,bind,ro,nosuid
            /only
            /a /b
            tmpfs /scratch
            /c /d bind
            /with\\040space ${TARGET}/dst none rbind 0 0
            """
        let entries = try Fstab.parse(text, origin: "f", environment: ["TARGET": "/t"])
        #expect(entries.map(\.source) == ["/src/lib", "/only", "/a", "tmpfs", "/c", "/with space"])
        #expect(entries.map(\.target) == ["/usr/lib/x", "/only", "/b", "/scratch", "/d", "/t/dst"])
        #expect(entries.map(\.type) == ["none", "none", "none", "tmpfs", "none", "none"])
        #expect(entries[0].options == ["x-create=file", "bind", "ro", "nosuid"])
        #expect(entries[1].options == ["rbind", "x-create=auto"])
        #expect(entries[3].options == ["x-create=dir"])
        #expect(entries[4].options == ["bind"])
        #expect(entries[0].origin == "f:3")
    }

    /// enroot-mount's guesses for lines with a field of options in place of the target or the
    /// type (50-slurm-pmi.sh writes "SRC OPTIONS"), and its rounds: a line whose pass is not 0 is
    /// not the hooks'.
    @Test func enrootMountsShortFormsAndPasses() throws {
        let text = """
            /pmix x-create=dir,bind,rw,nofail
            /src bind
            /src /dst x-create=dir,bind,ro
            none /sys/fs/cgroup none rbind,remount,ro,nofail,silent
            none /tmp none rslave
            tmpfs /x tmpfs x-create=dir 0 -1
            tmpfs /y tmpfs x-create=dir 1
            tmpfs /z none x-create=dir
            """
        let entries = try Fstab.parse(text, origin: "f", environment: [:])
        #expect(entries.map(\.source) == ["/pmix", "/src", "/src", "none", "none", "tmpfs"])
        #expect(entries.map(\.target) == ["/pmix", "/src", "/dst", "/sys/fs/cgroup", "/tmp", "/z"])
        #expect(entries.map(\.type) == ["none", "none", "none", "none", "none", "tmpfs"])
        #expect(entries.map(\.options) == [
            ["x-create=dir", "bind", "rw", "nofail"], ["bind"], ["x-create=dir", "bind", "ro"], ["rbind", "remount", "ro", "nofail", "silent"],
            ["rslave"], ["x-create=dir"],
        ])
    }

    @Test func undefinedVariablesAndTooManyFields() throws {
        #expect(throws: (any Error).self) { try Fstab.parse("/a ${NOPE}", origin: "f", environment: [:]) }
        #expect(throws: (any Error).self) { try Fstab.parse("a b c d e f g", origin: "f", environment: [:]) }
        // Fields 5 and 6 are numbers: a comment after the options is not a comment.
        #expect(try Fstab.parse("/a /b none bind 0 0", origin: "f", environment: [:]).count == 1)
        do {
            _ = try Fstab.parse("/a /b none bind # note", origin: "f", environment: [:])
            Issue.record("a comment after the options was taken")
        } catch {
            #expect(error.message == "'#' is not a number (fields 5 and 6 of an fstab line are dump and pass)")
        }
    }

    @Test func environFiles() {
        let parsed = EnvironFile.parse("""
            # comment
            A=1
            export B="two words"
            C='single'
            ENROOT_SECRET=dropped
            1BAD=dropped
            NOEQUALS
            D=a=b
            """)
        #expect(parsed.map(\.0) == ["A", "B", "C", "D"])
        #expect(parsed.map(\.1) == ["1", "two words", "single", "a=b"])
    }
}

@Suite struct MountOptionTests {
    @Test func parsing() throws {
        let options = try MountOptions.parse(["ro", "bind", "nosuid", "rprivate"], allowData: false).get()
        #expect(options.readOnly && !options.recursive && options.nosuid && !options.nodev)
        #expect(throws: UnsupportedOption.self) { try MountOptions.parse(["size=1G"], allowData: false).get() }
        let tmpfs = try MountOptions.parse(["size=1G", "mode=0700", "noexec"], allowData: true).get()
        #expect(tmpfs.data == ["size=1G", "mode=0700"] && tmpfs.noexec)
    }

    @Test func arguments() throws {
        #expect(try Launcher.arguments(command: ["a"], entrypoint: true, config: (["/ep"], ["cmd"])) == ["/ep", "a"])
        #expect(try Launcher.arguments(command: [], entrypoint: true, config: (["/ep"], ["cmd"])) == ["/ep", "cmd"])
        #expect(try Launcher.arguments(command: ["a"], entrypoint: false, config: (["/ep"], ["cmd"])) == ["a"])
        #expect(try Launcher.arguments(command: [], entrypoint: false, config: (nil, ["cmd"])) == ["cmd"])
        #expect(throws: (any Error).self) { try Launcher.arguments(command: [], entrypoint: false, config: (nil, nil)) }
        #expect(HookRunner.annotationVariable("com.hooks.dcgm.enabled") == "OCI_ANNOTATION_com__hooks__dcgm__enabled")
    }
}

@Suite struct SharedStateTests {
    @Test func roundTrip() throws {
        var environment = ContainerEnvironment(imageEnv: ["A=1=2", "MULTI=line one\nline two", "UNI=ünï"], edf: ["GONE": ""])
        environment.workdir = "/work dir"
        let state = SharedContainer.State(environment: environment, privileged: true, image: "/images/a b.sqsh")
        let decoded = try #require(SharedContainer.State(decoding: state.encoded))
        #expect(decoded.image == "/images/a b.sqsh")
        #expect(decoded == state)
        #expect(SharedContainer.State(decoding: Array("something else\0".utf8)) == nil)
        #expect(SharedContainer.State(decoding: []) == nil)
    }
}

@Suite struct HookConditionTests {
    @Test func declarationsParseAndHold() {
        let conditions = HookConditions.parse("""
            #!/bin/bash
            # hook-run-when: annotation com.hooks.ssh.enabled
            # hook-run-when: variable NVIDIA_VISIBLE_DEVICES
            # hook-run-when: config cxi CXI_HOOK_DEFAULT
            echo hi
            """)
        #expect(conditions.conditions == [.annotation("com.hooks.ssh.enabled"), .variable("NVIDIA_VISIBLE_DEVICES"), .config(file: "cxi", variable: "CXI_HOOK_DEFAULT")])
        let none: [String: String] = [:]
        #expect(!conditions.hold(annotations: none, environment: ["TOOLBOX_SYSCONF_PATH": "/nonexistent"]) { none })
        #expect(conditions.hold(annotations: ["com.hooks.ssh.enabled": "false"], environment: none) { none })
        #expect(conditions.hold(annotations: none, environment: ["NVIDIA_VISIBLE_DEVICES": "0"]) { none })
        #expect(conditions.hold(annotations: none, environment: ["TOOLBOX_SYSCONF_PATH": "/nonexistent"]) { ["NVIDIA_VISIBLE_DEVICES": "all"] })
        #expect(!conditions.hold(annotations: none, environment: ["NVIDIA_VISIBLE_DEVICES": "", "TOOLBOX_SYSCONF_PATH": "/nonexistent"]) { none })
        // No declaration: always; a declaration that does not parse: always (the hook decides).
        #expect(HookConditions.parse("#!/bin/sh\necho\n").hold(annotations: none, environment: none) { none })
        #expect(HookConditions.parse("# hook-run-when: annotation\n").hold(annotations: none, environment: none) { none })
        #expect(HookConditions.parse("# hook-run-when: config ../x Y\n").conditions.isEmpty)
    }
}

/// The caller's entries in the image's /etc/passwd and /etc/group.
@Suite struct AccountTests {
    static let user = Account(name: "alice", uid: 1000, gid: 100, groupName: "users", gecos: "Alice", home: "/home/alice", shell: "/bin/sh")

    @Test func appendedWhenAbsent() {
        #expect(Self.user.updated("passwd", "root:x:0:0:root:/root:/bin/sh\n")
            == "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:100:Alice:/home/alice:/bin/sh\n")
        #expect(Self.user.updated("group", "root:x:0:") == "root:x:0:\nusers:x:100:\n")
    }

    @Test func anEntryWithTheCallersIdOrNameIsReplaced() {
        let image = "root:x:0:0:root:/root:/bin/sh\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\nalice:x:1234:1234::/home/old:/bin/false\nbob:x:1001:1001::/:/bin/sh\n"
        #expect(Self.user.updated("passwd", image)
            == "root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1001::/:/bin/sh\nalice:x:1000:100:Alice:/home/alice:/bin/sh\n")
        // Already exactly there: nothing to write.
        #expect(Self.user.updated("passwd", "alice:x:1000:100:Alice:/home/alice:/bin/sh\n") == nil)
    }

    @Test func rootIsKept() {
        let root = Account(name: "root", uid: 0, gid: 0, groupName: "root", gecos: "", home: "/root", shell: "/bin/sh")
        #expect(root.updated("passwd", "root:x:0:0:Super User:/root:/bin/bash\n") == nil)
        #expect(root.updated("group", "root:x:0:\n") == nil)
    }
}

/// System.stop's view of a process: a zombie (exited, not yet reaped by its parent) has stopped.
@Suite struct StoppedProcessTests {
    @Test func aZombieIsNotRunning() throws {
        let child = fork()
        if child == 0 { _exit(0) }
        try #require(child > 0)
        defer { var status: Int32 = 0; waitpid(child, &status, 0) }
        var stopped = false
        for _ in 0..<200 where !stopped {
            stopped = !System.running(child)
            if !stopped { usleep(5_000) }
        }
        #expect(stopped, "an exited child that nobody reaped counts as stopped")
        #expect(kill(child, 0) == 0, "it is a zombie still")
        #expect(System.running(getpid()))
    }
}

@Suite struct SlurmPatternTests {
    @Test func jobStepAndNode() throws {
        let task = ["SLURM_JOB_ID": "12", "SLURM_STEP_ID": "3", "SLURMD_NODENAME": "nid001234"]
        #expect(try SlurmPattern.expand("%j.%s.%N", environment: task) == "12.3.nid001234")
        #expect(try SlurmPattern.expand("100%%-%j", environment: ["SLURM_JOBID": "7"]) == "100%-7")
        #expect(try SlurmPattern.expand("plain", environment: [:]) == "plain")
        // No slurmd: the short host name, as Slurm's %N in file names.
        var buffer = [CChar](repeating: 0, count: 256)
        #expect(gethostname(&buffer, 255) == 0)
        let host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let short = String(host.split(separator: ".", omittingEmptySubsequences: false).first ?? "")
        #expect(try SlurmPattern.expand("%N", environment: ["SLURMD_NODENAME": ""]) == short)
        #expect(!short.isEmpty && !short.contains("."))
        #expect(throws: SlurmPattern.Failure.unset("SLURM_STEP_ID")) { try SlurmPattern.expand("%j.%s", environment: ["SLURM_JOB_ID": "1"]) }
        #expect(throws: SlurmPattern.Failure.unknown("n")) { try SlurmPattern.expand("%n", environment: task) }
        #expect(throws: SlurmPattern.Failure.unknown("")) { try SlurmPattern.expand("50%", environment: task) }
    }
}

/// A program that does not finish in time is killed (ldconfig on an image whose linker
/// configuration holds a fifo waits for ever).
@Suite struct ChildProcessTimeoutTests {
    @Test func aProgramPastItsTimeoutIsKilled() {
        let result = ChildProcess.run(["/bin/sh", "-c", "echo started; exec sleep 600"], environment: [:], captureErrors: true, timeout: 0.5)
        #expect(result.status == -1)
        #expect(result.failure == "did not finish within 0.5 s and was killed")
        #expect(String(decoding: result.output, as: UTF8.self) == "started\n")
        let quick = ChildProcess.run(["/bin/echo", "done"], environment: [:], timeout: 30)
        #expect(quick.status == 0 && quick.failure == nil && quick.output == Array("done\n".utf8))
    }
}
