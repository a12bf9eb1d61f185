#!/usr/bin/env bash
# A one-node Slurm on this machine, from Debian's packages, for the tests:
#   scripts/slurm-local.sh start   install (if needed), configure and start munge, slurmctld, slurmd
#   scripts/slurm-local.sh stop    stop the daemons
#   scripts/slurm-local.sh status  exit 0 when the node accepts jobs
# Needs root and apt. No systemd: the daemons are started by hand, stdio on /dev/null.
# The node advertises one GPU (a Gres without a device file) so rules asking for
# `gpu: 1` are scheduled as on a GPU cluster.
set -euo pipefail

conf=/etc/slurm/slurm.conf

status() {
  timeout 5 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

munge_ok() { timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
ctld_ok() { timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
slurmd_ok() { pgrep -x slurmd >/dev/null && ! grep -qs defunct "/proc/$(pgrep -x slurmd | head -1)/status"; }

start() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  munge_ok || runuser -u munge -- munged --force </dev/null >/dev/null 2>&1
  munge_ok || { echo "slurm-local: munged did not start" >&2; return 1; }

  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  cat >"$conf" <<CONF
ClusterName=traice-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
ReturnToService=2
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  printf "AutoDetect=off\nNodeName=localhost Name=gpu File=/dev/null\n" >/etc/slurm/gres.conf

  if ctld_ok; then
    timeout 10 scontrol reconfigure >/dev/null 2>&1 || true
  else
    slurmctld </dev/null >/dev/null 2>&1
  fi
  slurmd_ok || slurmd -N localhost </dev/null >/dev/null 2>&1
  for _ in $(seq 30); do
    status && return 0
    timeout 5 scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    sleep 2
  done
  echo "slurm-local: the node did not come up; see /var/log/slurm/" >&2
  return 1
}

stop() {
  pkill -x slurmd || true
  pkill -x slurmctld || true
  pkill -x munged || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
