#!/usr/bin/env bash
# Starts N processes of the train binary on this machine as one jax.distributed job (CPU
# devices with gloo collectives, several fake devices each) — the path the multi-process tests
# use. Process i logs to <log_dir>/process_<i>.log; process 0's log is followed here.
#
#   launch/local_multiprocess.sh [--dry-run] [--num_processes=2] [--devices_per_process=4] \
#       [--port=12355] [--log_dir=/tmp/hicmae_mp] -- --config=configs/test_pretrain.py \
#       --workdir=/tmp/mp
#
# Exit status: 0 when every process exits 0, else the first non-zero status. If one process
# dies, the others stop by themselves within --heartbeat_timeout_s (a train flag).
set -euo pipefail
dry_run=0; n=2; per=1; port=12355; log_dir=/tmp/hicmae_mp; args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --num_processes=*) n="${1#*=}" ;;
    --devices_per_process=*) per="${1#*=}" ;;
    --port=*) port="${1#*=}" ;;
    --log_dir=*) log_dir="${1#*=}" ;;
    --) shift; args=("$@"); break ;;
    *) echo "unknown option $1 (train flags go after --)" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ "$n" =~ ^[1-9][0-9]*$ && "$per" =~ ^[1-9][0-9]*$ && "$port" =~ ^[1-9][0-9]*$ ]]; then
  echo "--num_processes, --devices_per_process and --port must be positive integers" >&2; exit 2
fi
python="${PYTHON:-python}"
cmds=()
for ((i = 0; i < n; i++)); do
  cmd=(env JAX_PLATFORMS=cpu "XLA_FLAGS=--xla_force_host_platform_device_count=${per}"
       "${python}" -m hicmae_jax.main --coordinator_address="127.0.0.1:${port}"
       --num_processes="${n}" --process_id="${i}" "${args[@]}")
  if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "${cmd[@]}"; echo "> ${log_dir}/process_${i}.log 2>&1 &"
  else
    cmds+=("$(printf '%q ' "${cmd[@]}")")
  fi
done
[[ $dry_run -eq 1 ]] && exit 0
mkdir -p "${log_dir}"
pids=()
for ((i = 0; i < n; i++)); do
  eval "${cmds[$i]}" > "${log_dir}/process_${i}.log" 2>&1 &
  pids+=($!)
done
echo "started ${n} processes (pids ${pids[*]}); logs in ${log_dir}/process_*.log"
tail -n +1 -f "${log_dir}/process_0.log" &
tail_pid=$!
trap 'kill "${pids[@]}" "${tail_pid}" 2>/dev/null || true' INT TERM
status=0
for pid in "${pids[@]}"; do
  rc=0; wait "$pid" || rc=$?
  if [[ $rc -ne 0 && $status -eq 0 ]]; then status=$rc; fi
done
kill "$tail_pid" 2>/dev/null || true
exit "$status"
