#!/usr/bin/env bash
# One command on a GPU host, after installing the CUDA build of jax (BUILD.md, "NVIDIA GPU"):
#   1. environment   python/jax/jaxlib versions, devices, kind and memory (tools.device_env)
#   2. benchmark     the bf16 pre-training step: step time, clips/s, MFU (tools.benchmark)
#   3. input         the step fed by its own input pipeline over a synthetic split with 224 px
#                    frames (data.synthetic first): input-bound or not (tools.benchmark)
#   4. parity        one batch's loss on the GPU (bf16) against the CPU (float32)
#                    (tools.device_parity)
# then a short summary (tools.gpu_check_summary). Every step's JSON report and log, and
# summary.json, go to --out (default gpu_check_<date>).
#
#   launch/gpu_check.sh [--out=DIR] [--dry-run] [--cpu|--gpu] [--batch_size=32] [--steps=20] \
#       [--config=configs/pretrain_base.py] [--attention_impl=cudnn] [--clips=64] \
#       [--worker_counts=0,4,8] [--parity_config=configs/test_pretrain.py] [--tolerance=2e-2]
#
# --gpu (the default when nvidia-smi lists a GPU) stops at step 1 unless jax's backend is the
# GPU. --cpu (the default otherwise) runs every step on the CPU with tiny settings
# (configs/test_pretrain.py, 32 px frames, batch 4, 2 steps): the script's own test; parity then
# compares bfloat16 with float32 on the CPU. --config must be a pre-training config (the
# synthetic split read is its unlabeled `pretrain` split). --dry-run prints each command and
# runs none. Exit status: 0 when every step passed, 1 when one failed, 2 on a bad option.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

dry_run=0; mode=""; out=""; batch=""; steps=""; config=""; attention=""; clips=""; workers=""
parity_config="configs/test_pretrain.py"; tolerance="2e-2"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --cpu) mode=cpu ;;
    --gpu) mode=gpu ;;
    --out=*) out="${1#*=}" ;;
    --batch_size=*) batch="${1#*=}" ;;
    --steps=*) steps="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --attention_impl=*) attention="${1#*=}" ;;
    --clips=*) clips="${1#*=}" ;;
    --worker_counts=*) workers="${1#*=}" ;;
    --parity_config=*) parity_config="${1#*=}" ;;
    --tolerance=*) tolerance="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see launch/gpu_check.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
for pair in "batch_size:${batch}" "steps:${steps}" "clips:${clips}"; do
  if [[ -n "${pair#*:}" && ! "${pair#*:}" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: --${pair%%:*}=${pair#*:}: give a positive integer" >&2; exit 2
  fi
done
if [[ -n "$workers" && ! "$workers" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  echo "error: --worker_counts=${workers}: give a comma list of integers, e.g. 0,4,8" >&2; exit 2
fi

if [[ -z "$mode" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    mode=gpu
  else
    mode=cpu
    echo "no GPU listed by nvidia-smi: running the CPU mode (tiny settings; --gpu insists)" >&2
  fi
fi
python="${PYTHON:-python}"
if [[ $mode == gpu ]]; then
  py=("$python")
  expect=gpu; config="${config:-configs/pretrain_base.py}"; batch="${batch:-32}"
  steps="${steps:-20}"; warmup=2; clips="${clips:-64}"; workers="${workers:-0,4,8}"
  frame_size=224; num_frames=64; pipeline_batches=10; stage_records=8
  nproc_=$(nproc 2>/dev/null || echo 2); prepare_workers=$(( nproc_ < 8 ? nproc_ : 8 ))
else
  # The CPU mode is the CPU mode even on a GPU host.
  py=(env JAX_PLATFORMS=cpu "$python")
  expect=cpu; config="${config:-configs/test_pretrain.py}"; batch="${batch:-4}"
  steps="${steps:-2}"; warmup=1; clips="${clips:-8}"; workers="${workers:-0}"
  frame_size=32; num_frames=24; pipeline_batches=2; stage_records=2; prepare_workers=2
fi
out="${out:-gpu_check_$(date +%Y-%m-%d)}"
attn=(); [[ -n "$attention" ]] && attn=(--attention_impl="$attention")

run_step() {  # run_step NAME COMMAND...: runs it, logs to NAME.log, records it in steps.tsv
  local name="$1"; shift
  if [[ $dry_run -eq 1 ]]; then
    echo "# ${name}"; printf '%q ' "$@"; echo; return 0
  fi
  echo "== ${name}: $(printf '%q ' "$@")"
  local t0=$SECONDS rc
  "$@" 2>&1 | tee "${out}/${name}.log"
  rc=${PIPESTATUS[0]}
  printf '%s\t%d\t%d\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$(printf '%q ' "$@")" \
    >> "${out}/steps.tsv"
  return "$rc"
}

if [[ $dry_run -eq 0 ]]; then
  mkdir -p "$out" || { echo "error: --out=${out}: cannot create the folder" >&2; exit 2; }
  # A second run into the same folder reports only its own steps (the synthetic split stays).
  rm -f "${out}/steps.tsv" "${out}"/{env,benchmark_step,benchmark_input,parity,summary}.json
fi
echo "gpu_check: ${mode} mode, reports in ${out}"

if run_step environment "${py[@]}" -m hicmae_jax.tools.device_env --expect="$expect" \
    --output="${out}/env.json"; then
  run_step benchmark "${py[@]}" -m hicmae_jax.tools.benchmark --config="$config" --what=step \
    --dtype=bfloat16 --batch_size="$batch" --steps="$steps" --warmup="$warmup" "${attn[@]}" \
    --out="${out}/benchmark_step.json"
  run_step synthetic_split "${py[@]}" -m hicmae_jax.data.synthetic \
    --output_dir="${out}/synthetic" --num_train="$clips" --num_val=0 --num_test=0 \
    --frame_size="$frame_size" --num_frames="$num_frames" --num_workers="$prepare_workers" &&
  run_step input_pipeline "${py[@]}" -m hicmae_jax.tools.benchmark --config="$config" \
    --what=all --split_dir="${out}/synthetic/pretrain" --dtype=bfloat16 --batch_size="$batch" \
    --steps="$steps" --warmup="$warmup" "${attn[@]}" --worker_counts="$workers" \
    --pipeline_batches="$pipeline_batches" --stage_records="$stage_records" \
    --out="${out}/benchmark_input.json"
  run_step parity "${py[@]}" -m hicmae_jax.tools.device_parity --config="$parity_config" \
    --tolerance="$tolerance" --output="${out}/parity.json"
else
  echo "the environment check failed: the other steps would not run where they should" >&2
fi

summary=("$python" -m hicmae_jax.tools.gpu_check_summary --out="$out" --mode="$mode")
if [[ $dry_run -eq 1 ]]; then
  echo "# summary"; printf '%q ' "${summary[@]}"; echo; exit 0
fi
echo
"${summary[@]}"
