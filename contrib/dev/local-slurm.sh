#!/usr/bin/env bash
# A Slurm cluster on loopback (Debian's slurm-wlm and munge) in a directory of its own:
# configuration, state, logs and the munge socket there, nothing written to /etc, ports of its own.
# The tests (Tests/CommandTests/LocalSlurm.swift) and bench/srun.sh use it. Needs root.
#
#   contrib/dev/local-slurm.sh start DIR [CPUS [TASKPROLOG [NODES]]]   # then: export SLURM_CONF=DIR/slurm.conf
#   contrib/dev/local-slurm.sh stop DIR
#
# One node, "localhost", by default. NODES > 1 starts that many slurmd on this host (n1, n2, ...,
# each with CPUS, a port, spool directory and log of its own): a multi-node job step on one machine.
set -euo pipefail
command=${1:?start or stop}
d=${2:?the cluster directory}
case "$command" in
start)
    cpus=${3:-8}
    prolog=${4:-}
    nodes=${5:-1}
    case "$nodes" in ''|*[!0-9]*|0) echo "local-slurm: error: NODES must be a positive number, not '$nodes'" >&2; exit 64 ;; esac
    mkdir -p "$d/state" "$d/spool" "$d/log" "$d/munge"
    chmod 755 "$d"
    chown munge:munge "$d/munge"
    chmod 755 "$d/munge"
    runuser -u munge -- mungekey --create --keyfile="$d/munge/munge.key"
    runuser -u munge -- munged --socket="$d/munge/munge.socket.2" --key-file="$d/munge/munge.key" \
        --pid-file="$d/munge/munged.pid" --log-file="$d/munge/munged.log" --seed-file="$d/munge/munged.seed" \
        </dev/null >/dev/null 2>&1
    # NODES + 1 ports below the kernel's ephemeral range (32768 on), where a client connection of
    # another program could hold one; none that something listens on.
    listening=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' || true)
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 12000))
        taken=0
        for p in $(seq "$port" "$((port + nodes))"); do
            printf '%s\n' "$listening" | grep -qx -e "$p" && taken=1
        done
        [ "$taken" = 0 ] && break
    done
    if [ "$nodes" = 1 ]; then
        names=localhost
        node_lines="NodeName=localhost CPUs=$cpus RealMemory=8000 State=UNKNOWN"
    else
        names=$(seq -s, -f 'n%g' 1 "$nodes")
        node_lines=$(for i in $(seq "$nodes"); do
            echo "NodeName=n$i NodeHostname=localhost Port=$((port + i)) CPUs=$cpus RealMemory=4000 State=UNKNOWN"
        done)
    fi
    cat >"$d/slurm.conf" <<CONF
ClusterName=toolbox
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket.2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/%n
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd-%n.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
${prolog:+TaskProlog=$prolog}
$node_lines
PartitionName=debug Nodes=$names Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$d/slurm.conf"
    slurmctld -f "$SLURM_CONF" </dev/null >/dev/null 2>&1
    for name in ${names//,/ }; do
        mkdir -p "$d/spool/$name"
        slurmd -f "$SLURM_CONF" -N "$name" </dev/null >/dev/null 2>&1
    done
    # The first srun before the nodes are idle costs seconds of retries: wait for idle (30 s at
    # most, by the clock: sinfo itself waits when the controller is not there).
    deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        [ "$(timeout 3 sinfo -h -o %T 2>/dev/null | sort -u)" = idle ] && exit 0
        if [ -s "$d/slurmctld.pid" ] && ! kill -0 "$(cat "$d/slurmctld.pid")" 2>/dev/null; then
            echo "local-slurm: error: slurmctld ended at start: $(tail -1 "$d/log/slurmctld.log" 2>/dev/null)" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "local-slurm: error: the nodes did not become idle in 30 s; see $d/log/slurmctld.log" >&2
    exit 1
    ;;
stop)
    pids=$(cat "$d"/slurmd*.pid "$d/slurmctld.pid" "$d/munge/munged.pid" 2>/dev/null || true)
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 100); do
        alive=0
        for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.05
    done
    rm -rf "$d"
    ;;
*)
    echo "local-slurm: error: say start or stop" >&2
    exit 64
    ;;
esac
