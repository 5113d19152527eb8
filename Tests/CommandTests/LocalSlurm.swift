import Foundation
import Testing

/// A real single-node Slurm cluster on loopback (Debian's slurm-wlm and munge), started for a test
/// and stopped with it; nothing is written to /etc: its configuration, state, logs and munge
/// socket live in a directory of its own, and the commands find it through SLURM_CONF.
final class LocalSlurm {
    let directory: URL
    var configuration: String { directory.appendingPathComponent("slurm.conf").path }
    var environment: [String: String] { ["SLURM_CONF": configuration] }

    /// nil (with the reason printed) when this machine cannot run one.
    static func start(taskProlog: String? = nil) throws -> LocalSlurm? {
        guard getuid() == 0 else {
            print("skipped: not root (the Slurm daemons run as root)")
            return nil
        }
        for tool in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/srun"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            print("skipped: \(tool) is not installed (apt-get install slurm-wlm munge)")
            return nil
        }
        return try LocalSlurm(taskProlog: taskProlog)
    }

    private init(taskProlog: String?) throws {
        directory = URL(fileURLWithPath: try shell("mktemp -d /tmp/toolbox-slurm-XXXXXX").trimmingCharacters(in: .whitespacesAndNewlines))
        let d = directory.path
        // Ports of its own, so that it never meets another cluster on this machine.
        let port = 20000 + Int.random(in: 0..<20000)
        try Self.startDaemons("""
            set -e
            mkdir -p \(d)/state \(d)/spool \(d)/log \(d)/munge
            chmod 755 \(d); chown munge:munge \(d)/munge; chmod 755 \(d)/munge
            runuser -u munge -- mungekey --create --keyfile=\(d)/munge/munge.key
            runuser -u munge -- munged --socket=\(d)/munge/munge.socket.2 --key-file=\(d)/munge/munge.key \
              --pid-file=\(d)/munge/munged.pid --log-file=\(d)/munge/munged.log --seed-file=\(d)/munge/munged.seed \
              </dev/null >/dev/null 2>&1
            """)
        try """
            ClusterName=toolbox
            SlurmctldHost=localhost
            SlurmctldPort=\(port)
            SlurmdPort=\(port + 1)
            SlurmUser=root
            SlurmdUser=root
            AuthType=auth/munge
            CredType=cred/munge
            AuthInfo=socket=\(d)/munge/munge.socket.2
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core
            SlurmdParameters=config_overrides
            ReturnToService=2
            StateSaveLocation=\(d)/state
            SlurmdSpoolDir=\(d)/spool
            SlurmctldPidFile=\(d)/slurmctld.pid
            SlurmdPidFile=\(d)/slurmd.pid
            SlurmctldLogFile=\(d)/log/slurmctld.log
            SlurmdLogFile=\(d)/log/slurmd.log
            AccountingStorageType=accounting_storage/none
            JobAcctGatherType=jobacct_gather/none
            \(taskProlog.map { "TaskProlog=" + $0 } ?? "")
            NodeName=localhost CPUs=8 RealMemory=4000 State=UNKNOWN
            PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP

            """.write(toFile: configuration, atomically: true, encoding: .utf8)
        // Daemons: their stdio away from shell()'s pipes, which would otherwise never close.
        try Self.startDaemons("slurmctld -f \(configuration) && slurmd -f \(configuration) -N localhost", environment: environment)
        // The first srun before the node is idle costs seconds of retries: wait for idle.
        for _ in 0..<300 {
            if (try? shell("sinfo -h -n localhost -o %T", environment: environment))?.trimmingCharacters(in: .whitespacesAndNewlines) == "idle" {
                return
            }
            usleep(100_000)
        }
        let log = (try? String(contentsOfFile: d + "/log/slurmctld.log", encoding: .utf8)) ?? ""
        stop()
        throw ShellError(description: "the test cluster's node did not become idle in 30 s; slurmctld.log:\n\(log.suffix(2000))")
    }

    /// Runs a shell command that starts daemons, through system(3) with its output on /dev/null:
    /// a daemon would keep a pipe open for ever, and Foundation's Process did not see this shell end.
    static func startDaemons(_ command: String, environment: [String: String] = [:]) throws {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("slurm-start-\(UUID().uuidString).sh")
        let exports = environment.map { "export \($0.key)='\($0.value)'\n" }.joined()
        try (exports + command + "\n").write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        let status = system("/bin/bash \(script.path) </dev/null >/dev/null 2>&1")
        guard status == 0 else { throw ShellError(description: "\(command): status \(status)") }
    }

    deinit { stop() }

    func stop() {
        let d = directory.path
        _ = try? shell("""
            for pid in $(cat \(d)/slurmd.pid \(d)/slurmctld.pid \(d)/munge/munged.pid 2>/dev/null); do kill $pid 2>/dev/null || true; done
            for i in $(seq 100); do
                alive=0
                for pid in $(cat \(d)/slurmd.pid \(d)/slurmctld.pid \(d)/munge/munged.pid 2>/dev/null); do kill -0 $pid 2>/dev/null && alive=1; done
                [ $alive = 0 ] && break
                sleep 0.05
            done
            rm -rf \(d)
            """)
    }
}
