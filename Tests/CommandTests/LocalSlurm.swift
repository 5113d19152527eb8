import Foundation
import Testing

/// A real Slurm cluster on loopback (one node, or several slurmd on this host) (Debian's slurm-wlm and munge), started for a test
/// and stopped with it; nothing is written to /etc: its configuration, state, logs and munge
/// socket live in a directory of its own, and the commands find it through SLURM_CONF.
final class LocalSlurm {
    private(set) var directory = URL(fileURLWithPath: "/nonexistent")
    var configuration: String { directory.appendingPathComponent("slurm.conf").path }
    var environment: [String: String] { ["SLURM_CONF": configuration] }

    /// nil (with the reason printed) when this machine cannot run one.
    static func start(taskProlog: String? = nil, nodes: Int = 1) throws -> LocalSlurm? {
        guard getuid() == 0 else {
            print("skipped: not root (the Slurm daemons run as root)")
            return nil
        }
        for tool in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/srun"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            print("skipped: \(tool) is not installed (apt-get install slurm-wlm munge)")
            return nil
        }
        return try LocalSlurm(taskProlog: taskProlog, nodes: nodes)
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("contrib/dev/local-slurm.sh").path

    private init(taskProlog: String?, nodes: Int) throws {
        // Up to three tries: each picks other ports (one may have been taken meanwhile).
        var failure = ""
        for _ in 0..<3 {
            directory = URL(fileURLWithPath: try shell("mktemp -d /tmp/toolbox-slurm-XXXXXX").trimmingCharacters(in: .whitespacesAndNewlines))
            // system(3), its output on /dev/null: the daemons would keep a pipe open for ever (and
            // Foundation's Process did not see such a shell end).
            let status = system("\(Self.script) start \(directory.path) 8 '\(taskProlog ?? "")' \(nodes) </dev/null >/dev/null 2>&1")
            if status == 0 { return }
            let log = (try? String(contentsOfFile: directory.path + "/log/slurmctld.log", encoding: .utf8)) ?? ""
            failure = "status \(status); slurmctld.log:\n\(log.suffix(2000))"
            stop()
        }
        throw ShellError(description: "the test cluster did not start in three tries (\(failure))")
    }

    deinit { stop() }

    func stop() {
        _ = system("\(Self.script) stop \(directory.path) </dev/null >/dev/null 2>&1")
    }
}
