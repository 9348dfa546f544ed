#!/usr/bin/env bash
# Starts N processes of the train binary on this machine (one jax.distributed job, CPU devices
# with gloo collectives, or one GPU each) — the same path the multi-process tests use.
#
#   launch/local_multiprocess.sh [--dry-run] [--num_processes=2] [--devices_per_process=4] \
#       [--port=12355] -- --config=configs/test_pretrain.py --workdir=/tmp/mp
set -euo pipefail
dry_run=0; n=2; per=1; port=12355; args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --num_processes=*) n="${1#*=}" ;;
    --devices_per_process=*) per="${1#*=}" ;;
    --port=*) port="${1#*=}" ;;
    --) shift; args=("$@"); break ;;
    *) echo "unknown option $1 (train flags go after --)" >&2; exit 2 ;;
  esac
  shift
done
pids=()
for ((i = 0; i < n; i++)); do
  cmd=(env "XLA_FLAGS=--xla_force_host_platform_device_count=${per}"
       python -m hicmae_jax.main --coordinator_address="127.0.0.1:${port}"
       --num_processes="${n}" --process_id="${i}" "${args[@]}")
  if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "${cmd[@]}"; echo
  else
    "${cmd[@]}" > "/tmp/hicmae_process_${i}.log" 2>&1 &
    pids+=($!)
  fi
done
[[ $dry_run -eq 1 ]] && exit 0
echo "started ${n} processes; logs in /tmp/hicmae_process_*.log (following process 0)"
tail -f /tmp/hicmae_process_0.log &
tail_pid=$!
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
kill "$tail_pid" 2>/dev/null || true
exit "$status"
