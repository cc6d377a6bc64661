#!/usr/bin/env bash
# A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd started by
# hand (no systemd) with a private configuration under DIR.
#   cluster.sh start DIR   -> prints "export SLURM_CONF=DIR/slurm.conf" when the node is idle
#   cluster.sh stop DIR    -> stops every daemon that start started (munged only if it did)
set -euo pipefail
cmd=$1 dir=$2
conf=$dir/slurm.conf
case $cmd in
start)
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  node=$(hostname -s)
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat > "$conf" <<CONF
ClusterName=uniadtest
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$(( 16817 + RANDOM % 1000 ))
SlurmdPort=$(( 17818 + RANDOM % 1000 ))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
SchedulerType=sched/builtin
KillWait=10
InactiveLimit=0
NodeName=$node CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  if ! pgrep -x munged > /dev/null; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2> /dev/null || true
    runuser -u munge -- munged 2> "$dir/log/munged.err" || munged --force 2>> "$dir/log/munged.err"
    # Ours to stop: remember its pid (a munged that was already running is left alone).
    for _ in $(seq 1 20); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$dir/munged.pid" 2> /dev/null || pgrep -x munged | head -1 > "$dir/munged.pid"
  fi
  slurmctld -f "$conf"
  slurmd -f "$conf"
  for _ in $(seq 1 60); do
    state=$(SLURM_CONF=$conf sinfo -h -o %t 2>/dev/null | head -1 || true)
    [ "$state" = "idle" ] && { echo "export SLURM_CONF=$conf"; exit 0; }
    sleep 0.5
  done
  echo "slurm node did not become idle (state '${state:-none}'); logs in $dir/log" >&2
  exit 1
  ;;
stop)
  # Every daemon this script started, and wait until they are gone.
  pids=()
  for f in slurmd slurmctld munged; do
    [ -s "$dir/$f.pid" ] && pids+=("$(cat "$dir/$f.pid")")
  done
  ((${#pids[@]})) || exit 0
  kill "${pids[@]}" 2> /dev/null || true
  for _ in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null && alive=1; done
    ((alive)) || exit 0
    sleep 0.2
  done
  kill -9 "${pids[@]}" 2> /dev/null || true
  ;;
esac
