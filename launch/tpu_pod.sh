#!/usr/bin/env bash
# Pre-training on a multi-host TPU VM slice: create (or reuse) the slice, install, copy the
# code and config, start the train binary on every worker, stream worker 0's console
# (~/hicmae/console.log on each worker; the run's own train.log is in the workdir).
#
#   launch/tpu_pod.sh [--dry-run] [--aot_check] [--num_slices=N] --name=hicmae \
#       --zone=us-central2-b --type=v4-32 --config=configs/pretrain_base.py \
#       --workdir=gs://bucket/hicmae_base [-- extra flags]
#
# --aot_check compiles the train step for the slice on this machine first (tools/aot_compile,
# libtpu from requirements-tpu-aot.txt, no TPU) and stops before creating anything when it does
# not fit or the batch does not split. --num_slices=N (multi-slice over DCN) creates N slices
# as one queued resource and passes --config.mesh.dcn_data=N: data parallel across slices, the
# config's mesh within each. Recommended per chip (BUILD.md's table, compiled 2026-12-07):
# pre-training Base in bfloat16 (--config.model.dtype=bfloat16) at the paper's batch 160 fits
# every slice of 8-32 chips without remat or fsdp (5.5 GiB per v5e chip at 10 clips).
#
# The workdir must be one folder every worker sees: a bucket (gs://...; checkpoints, TensorBoard
# events, train.log and results go there, read through gcsfs and tensorstore with the VM's
# service account), or a file system mounted on every worker. The train binary checks this before
# the first step and stops naming the problem otherwise. JAX's compilation cache goes to
# <workdir>/jax_cache (--compilation_cache=DIR to change, --compilation_cache= for none), so a
# restarted job loads its compiled step instead of compiling it again.
set -euo pipefail
dry_run=0; name=hicmae; zone=""; type=v4-32; version=tpu-ubuntu2204-base; config=""; workdir=""
cache="-"; extra=(); slices=1; aot_check=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --aot_check) aot_check=1 ;;
    --num_slices=*) slices="${1#*=}" ;;
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --type=*) type="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --compilation_cache=*) cache="${1#*=}" ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$zone" && -n "$config" && -n "$workdir" ]] || {
  echo "usage: tpu_pod.sh [--dry-run] --zone=Z --config=C --workdir=W [--name=N --type=T]" >&2; exit 2; }
[[ "$slices" =~ ^[1-9][0-9]*$ ]] || { echo "--num_slices=$slices: give 1 or more" >&2; exit 2; }
[[ "$cache" == "-" ]] && cache="${workdir%/}/jax_cache"
[[ $slices -gt 1 ]] && extra=("--config.mesh.dcn_data=${slices}" "${extra[@]}")
[[ -n "$cache" ]] && extra=("--config.compilation_cache_dir=${cache}" "${extra[@]}")
run() { if [[ $dry_run -eq 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }
ssh_all() {  # every worker of every slice
  local node; for node in "${nodes[@]}"; do
    run gcloud compute tpus tpu-vm ssh "$node" --zone="$zone" --worker=all --command="$1"; done; }

if [[ $aot_check -eq 1 ]]; then
  # Overrides that reach the config (--config.*) are compiled too.
  overrides=()
  for f in "${extra[@]}"; do [[ "$f" == --config.* ]] && overrides+=("$f"); done
  run python -m hicmae_jax.tools.aot_compile --config="$config" --topology="$type" \
    --num_slices="$slices" --steps=train "${overrides[@]}" || {
    echo "the train step does not compile for $type x $slices (above); nothing was created" >&2
    exit 2; }
fi
nodes=("$name")
if [[ $slices -gt 1 ]]; then
  nodes=(); for ((i = 0; i < slices; i++)); do nodes+=("${name}-${i}"); done
  # Multi-slice: one queued resource of N slices; JAX joins them over DCN by itself.
  run gcloud compute tpus queued-resources create "$name" --zone="$zone" \
    --accelerator-type="$type" --runtime-version="$version" --node-count="$slices" \
    --node-prefix="$name"
elif [[ $dry_run -eq 1 ]] || ! gcloud compute tpus tpu-vm describe "$name" --zone="$zone" >/dev/null 2>&1; then
  run gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$type" \
    --version="$version"
fi
run tar czf /tmp/hicmae_code.tgz --exclude=.git --exclude=workdirs .
for node in "${nodes[@]}"; do
  run gcloud compute tpus tpu-vm scp /tmp/hicmae_code.tgz "$node":~/ --zone="$zone" --worker=all
done
ssh_all "mkdir -p hicmae && tar xzf hicmae_code.tgz -C hicmae && cd hicmae && pip install -q 'jax[tpu]==0.10.2' && pip install -q -r requirements.txt"
# Every worker runs the same program; jax.distributed.initialize() finds the slice by itself.
flags=""
[[ ${#extra[@]} -gt 0 ]] && flags=$(printf '%q ' "${extra[@]}")
ssh_all "cd hicmae && nohup python -m hicmae_jax.main --config=${config} --workdir=${workdir} ${flags} > console.log 2>&1 &"
run gcloud compute tpus tpu-vm ssh "${nodes[0]}" --zone="$zone" --worker=0 --command="tail -f hicmae/console.log"
