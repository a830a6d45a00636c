#!/usr/bin/env bash
# A real Slurm in CI (issue 17): starts a single-node cluster (munge, slurmctld, slurmd) bound
# to the loopback address in a temporary folder, without systemd; runs the quick classical
# sweep as a job array of 4 tasks through `sbatch --wait` (`cargo xtask demo --executor
# slurm`); checks that the aggregate equals the local single-process run in every field except
# timing and energy; deletes one shard and checks that `--resume` reruns only that task; tears
# the cluster down on exit, printing the Slurm and task logs if anything failed.
#
# Usage: xtask/ci-slurm.sh [LOCAL_RESULTS]   (default: target/forge-results/ci-quick.json, the
# quick demo run by xtask/ci-demo.sh; run here first if it is missing). Needs root (apt-get,
# daemons as root); installs Debian's slurm-wlm and munge if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
local_results="${1:-target/forge-results/ci-quick.json}"
t_start=$(date +%s)

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq slurm-wlm munge >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; }
fi

tmp=$(mktemp -d /tmp/forge-slurm.XXXXXX)
chmod 700 "$tmp"
host=$(hostname -s)
mkdir -p "$tmp"/{etc,state,spool,log,run,munge}
sweep_dir=target/forge-results/ci-slurm

show_logs() {
  echo "---- Slurm and munge logs ($tmp/log)"
  for f in "$tmp"/log/*; do
    [ -f "$f" ] || continue
    echo "== $f"; tail -n 60 "$f"
  done
  if [ -d "$sweep_dir/logs" ]; then
    for f in "$sweep_dir"/logs/*; do
      [ -f "$f" ] || continue
      echo "== $f"; tail -n 40 "$f"
    done
  fi
  sinfo 2>&1 || true
  squeue 2>&1 || true
}

pids=()
teardown() {
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "ci-slurm: FAILED (exit $rc)"
    show_logs
  fi
  scancel --user=root >/dev/null 2>&1 || true
  # Daemons in reverse order of start, by the process ids this script started.
  for ((k=${#pids[@]}-1; k>=0; k--)); do
    kill "${pids[$k]}" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
  echo "ci-slurm: cluster torn down ($(( $(date +%s) - t_start )) s in all)"
  exit "$rc"
}
trap teardown EXIT

# munge: a fresh key, a private socket.
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/munge.key"
munged --force --foreground \
  --key-file="$tmp/munge/munge.key" \
  --socket="$tmp/munge/munge.socket" \
  --pid-file="$tmp/run/munged.pid" \
  --seed-file="$tmp/munge/munged.seed" \
  --log-file="$tmp/log/munged.log" >>"$tmp/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$tmp/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$tmp/munge/munge.socket" ] || { echo "munged did not start"; exit 1; }

# Unused ports, so a cluster already on this machine is not disturbed.
ctld_port=$(( 20000 + RANDOM % 20000 ))
slurmd_port=$(( ctld_port + 1 ))
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > "$tmp/etc/slurm.conf" <<EOF
ClusterName=forgeci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/run/slurmctld.pid
SlurmdPidFile=$tmp/run/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$tmp/etc/slurm.conf"

slurmctld -D -i -f "$SLURM_CONF" >>"$tmp/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" >>"$tmp/log/slurmd.out" 2>&1 &
pids+=($!)
state=""
for _ in $(seq 120); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
  [ "$state" = "idle" ] && break
  sleep 0.5
done
[ "$state" = "idle" ] || { echo "node $host is not idle (state: ${state:-none})"; exit 1; }
echo "ci-slurm: cluster up in $(( $(date +%s) - t_start )) s (node $host, $cpus CPUs, ${mem_mb} MB)"

if [ ! -f "$local_results" ]; then
  echo "no local results at $local_results: running the local quick demo"
  cargo xtask demo --quick --quiet --save-json "$local_results" >/dev/null
fi

# 1 CPU and 1 GB per task: two tasks run at once on a 2-CPU node. `timeout`: a wedged cluster
# fails CI instead of hanging it (the sweep takes seconds).
limit=600
t0=$(date +%s)
timeout "$limit" cargo xtask demo --quick --quiet --executor slurm --shards 4 --cpus-per-task 1 --mem 1G \
  --time 00:10:00 --sweep-dir "$sweep_dir" --save-json target/forge-results/ci-slurm.json >/dev/null
echo "ci-slurm: sweep through Slurm in $(( $(date +%s) - t0 )) s"
cargo xtask aggregate "$sweep_dir" -o target/forge-results/ci-slurm-aggregate.json \
  --check-equal "$local_results"

# A killed task: its shard is gone; --resume must rerun that one task only.
rm "$sweep_dir/shard-2-of-4.json"
resume_log="$tmp/log/resume.txt"
timeout "$limit" cargo xtask demo --quick --quiet --executor slurm --shards 4 --cpus-per-task 1 --mem 1G \
  --time 00:10:00 --sweep-dir "$sweep_dir" --resume --save-json target/forge-results/ci-slurm.json \
  >/dev/null 2>"$resume_log" || { cat "$resume_log"; exit 1; }
cat "$resume_log"
grep -q "submitting 1 array task(s) \[2\] of 4" "$resume_log" \
  || { echo "--resume did not rerun exactly shard 2"; exit 1; }
cargo xtask aggregate "$sweep_dir" -o target/forge-results/ci-slurm-aggregate.json \
  --check-equal "$local_results"

# A user sweep with the forge CLI through the same cluster (when the shared MiniLM and SST-2
# text are here): full fine-tuning and LoRA r4 on 40 sentences, 1 epoch, as a 2-task array.
if [ -n "${FORGE_MINILM_DIR:-}" ] && [ -n "${FORGE_TEXT_DATA_DIR:-}" ]; then
  # The workspace's test build (.ci/run runs it first) makes target/release/forge with the
  # workspace's unified features; `cargo build -p forge-cli` alone resolves fewer (bytemuck,
  # forge-data/parquet) and would rebuild candle and every crate above it. A no-op in CI.
  cargo test --workspace --release --no-run --quiet
  user="$tmp/user-sweep"
  mkdir -p "$user"
  head -41 "$FORGE_TEXT_DATA_DIR/sst2/train.tsv" > "$user/train.tsv"
  head -21 "$FORGE_TEXT_DATA_DIR/sst2/dev.tsv" > "$user/dev.tsv"
  printf 'train: train.tsv\nval: dev.tsv\nmax_length: 32\nmodels: [%s]\nmethods: [full, lora-r4]\nseeds: [0]\nepochs: [1]\n' \
    "$FORGE_MINILM_DIR" > "$user/sweep.yml"
  t0=$(date +%s)
  timeout "$limit" target/release/forge sweep "$user/sweep.yml" --out "$user/out" \
    --executor slurm --shards 2 --cpus-per-task 1 --mem 2G --time 00:10:00
  test -f "$user/out/sweep.json" || { echo "forge sweep wrote no sweep.json"; exit 1; }
  echo "ci-slurm: forge sweep (2 units) through Slurm in $(( $(date +%s) - t0 )) s"
fi
echo "ci-slurm: OK"
