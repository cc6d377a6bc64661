#!/usr/bin/env bash
# A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd started by
# hand (no systemd) with a private configuration under DIR.
#   cluster.sh start DIR   -> prints "export SLURM_CONF=DIR/slurm.conf" when the node is idle
#   cluster.sh stop DIR
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
  [ -f "$dir/slurmd.pid" ] && kill "$(cat "$dir/slurmd.pid")" 2>/dev/null || true
  [ -f "$dir/slurmctld.pid" ] && kill "$(cat "$dir/slurmctld.pid")" 2>/dev/null || true
  ;;
esac
