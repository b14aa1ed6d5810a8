#!/bin/bash
# A one-node SLURM cluster on this machine, for tests/ddp/slurm_test.ts (as root; Debian packages
# slurmd slurmctld slurm-client munge). `start` writes /etc/slurm/slurm.conf and starts munged,
# slurmctld and slurmd; `stop` ends the three daemons by their pid files.
set -euo pipefail
case "${1:-}" in
start)
  H=$(hostname)
  mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
  [ -f /etc/munge/munge.key ] || mungekey --create
  chown -R munge:munge /run/munge /etc/munge 2>/dev/null || true
  cat >/etc/slurm/slurm.conf <<CONF
ClusterName=choirtest
SlurmctldHost=$H
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmdParameters=config_overrides
ReturnToService=2
SlurmUser=root
SlurmdUser=root
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName=$H CPUs=8 State=UNKNOWN
PartitionName=main Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  munged --force
  slurmctld
  slurmd
  for _ in $(seq 1 50); do sinfo -h -o %t 2>/dev/null | grep -q idle && exit 0; sleep 0.2; done
  echo "slurm did not come up; see /var/log/slurm/" >&2
  exit 1
  ;;
stop)
  for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
