#!/usr/bin/env bash
# A single-node Slurm cluster on loopback (Debian's slurm-wlm and munge) in a directory of its own:
# configuration, state, logs and the munge socket there, nothing written to /etc, ports of its own.
# The tests (Tests/CommandTests/LocalSlurm.swift) and bench/srun.sh use it. Needs root.
#
#   contrib/dev/local-slurm.sh start DIR [CPUS [TASKPROLOG]]   # then: export SLURM_CONF=DIR/slurm.conf
#   contrib/dev/local-slurm.sh stop DIR
set -euo pipefail
command=${1:?start or stop}
d=${2:?the cluster directory}
case "$command" in
start)
    cpus=${3:-8}
    prolog=${4:-}
    mkdir -p "$d/state" "$d/spool" "$d/log" "$d/munge"
    chmod 755 "$d"
    chown munge:munge "$d/munge"
    chmod 755 "$d/munge"
    runuser -u munge -- mungekey --create --keyfile="$d/munge/munge.key"
    runuser -u munge -- munged --socket="$d/munge/munge.socket.2" --key-file="$d/munge/munge.key" \
        --pid-file="$d/munge/munged.pid" --log-file="$d/munge/munged.log" --seed-file="$d/munge/munged.seed" \
        </dev/null >/dev/null 2>&1
    # Two ports below the kernel's ephemeral range (32768 on), where a client connection of another
    # program could hold one; none that something listens on.
    listening=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' || true)
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 12000))
        printf '%s\n' "$listening" | grep -qx -e "$port" -e "$((port + 1))" || break
    done
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
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
${prolog:+TaskProlog=$prolog}
NodeName=localhost CPUs=$cpus RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$d/slurm.conf"
    slurmctld -f "$SLURM_CONF" </dev/null >/dev/null 2>&1
    slurmd -f "$SLURM_CONF" -N localhost </dev/null >/dev/null 2>&1
    # The first srun before the node is idle costs seconds of retries: wait for idle (30 s at most,
    # by the clock: sinfo itself waits when the controller is not there).
    deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        [ "$(timeout 3 sinfo -h -n localhost -o %T 2>/dev/null)" = idle ] && exit 0
        if [ -s "$d/slurmctld.pid" ] && ! kill -0 "$(cat "$d/slurmctld.pid")" 2>/dev/null; then
            echo "local-slurm: error: slurmctld ended at start: $(tail -1 "$d/log/slurmctld.log" 2>/dev/null)" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "local-slurm: error: the node did not become idle in 30 s; see $d/log/slurmctld.log" >&2
    exit 1
    ;;
stop)
    pids=$(cat "$d/slurmd.pid" "$d/slurmctld.pid" "$d/munge/munged.pid" 2>/dev/null || true)
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
