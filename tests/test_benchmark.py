"""The benchmark tool runs at a tiny size and produces every figure (not a speed test)."""
import json
import os
import subprocess
import sys

import pytest

from hicmae_jax.data.prepare import synthetic
from hicmae_jax.tools import benchmark


@pytest.mark.slow
def test_benchmark_reports_every_figure(tmp_path):
  synthetic.generate(str(tmp_path / "syn"), num_train=8, num_val=0, num_test=0, num_classes=2,
                     frame_size=32, num_frames=24, verbose=False)
  out = tmp_path / "bench.json"
  rc = benchmark.main(["--config=configs/test_pretrain.py", "--what=all", "--batch_size=2",
                       "--steps=2", "--warmup=1", "--peak_tflops=1.0", "--worker_counts=0",
                       "--pipeline_batches=2", "--memory_batch=4", "--find_max_batch",
                       "--memory_limit_gib=0.006", f"--split_dir={tmp_path / 'syn' / 'pretrain'}",
                       f"--out={out}"])
  assert rc == 0
  r = json.loads(out.read_text())
  step = r["train_step"]
  for key in ("compile_s", "step_s_median", "clips_per_s", "model_gflops_per_clip_train",
              "xla_gflops_per_clip_train", "achieved_tflops", "mfu", "peak_memory_gib"):
    assert step[key] is not None and step[key] >= 0, key
  mem = r["memory"]
  assert mem["batch"] == 4 and mem["peak_memory_gib"] > step["peak_memory_gib"] > 0
  assert 0 < mem["peak_memory_gib_remat"] <= mem["peak_memory_gib"]
  # the largest batch (1 device: any batch) under 0.006 GiB, from the timed step's compile
  best, limit = step["max_batch"], int(0.006 * 2**30)
  searched = {int(b): p for b, p in step["max_batch_search"].items()}
  assert best >= 2 and searched[best] <= limit and searched[best + 1] > limit, searched
  assert all(p > limit for b, p in searched.items() if b > best), searched
  assert searched[2] == step["peak_memory_bytes"]  # reused: batch 2 is not compiled again
  # the analytic count and XLA's agree within a factor (XLA also counts elementwise work)
  ratio = step["xla_gflops_per_clip_train"] / step["model_gflops_per_clip_train"]
  assert 0.5 < ratio < 2.0, ratio
  assert r["eval_forward"]["clips_per_s"] > 0
  pipe = r["pipeline"]
  assert pipe["clips_per_s_by_workers"]["0"] > 0 and pipe["clips_per_s_per_worker"]["0"] > 0
  assert set(pipe["stage_ms_per_record"]) >= {"read", "decode", "augment", "fbank"}
  assert all(v > 0 for v in pipe["stage_ms_per_record"].values()), pipe["stage_ms_per_record"]
  assert pipe["stages_records_per_s_one_core"] > 0
  assert r["balance"]["input_processes_needed_per_device"] > 0
  assert r["balance"]["input_cores_needed_per_device"] > 0
  fed = r["step_with_input"]
  bound = (1 + benchmark.INPUT_BOUND_MARGIN) * fed["step_s_fixed_batch"]
  assert isinstance(fed["input_bound"], bool)
  if abs(fed["step_s_with_input"] - bound) > 1e-3:  # the figures are rounded to 0.1 ms
    assert fed["input_bound"] == (fed["step_s_with_input"] > bound)
  # every figure names its machine
  assert r["host"]["cpu"] and r["host"]["cores"] >= 1 and r["date"]


@pytest.mark.slow
def test_benchmark_command_with_grain_worker_processes(tmp_path):
  """As a user runs it: its own process (absl flags unparsed), grain worker processes."""
  synthetic.generate(str(tmp_path / "syn"), num_train=8, num_val=0, num_test=0, num_classes=2,
                     frame_size=32, num_frames=24, verbose=False)
  out = tmp_path / "bench.json"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
      [sys.executable, "-m", "hicmae_jax.tools.benchmark", "--config=configs/test_pretrain.py",
       "--what=pipeline,eval", "--attention_impl=xla", "--steps=1", "--warmup=1",
       "--batch_size=2", "--worker_counts=1", "--pipeline_batches=2",
       "--stage_records=2", f"--split_dir={tmp_path / 'syn' / 'pretrain'}", f"--out={out}"],
      cwd=root, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "pipeline.clips_per_s_by_workers" in proc.stdout  # the printed table
  r = json.loads(out.read_text())
  assert r["pipeline"]["clips_per_s_by_workers"]["1"] > 0
  assert r["attention_impl"] == "xla" and r["eval_forward"]["clips_per_s"] > 0


@pytest.mark.parametrize("args,message", [
    (["--what=steps"], "--what='steps'; allowed"),
    (["--what=pipeline"], "needs --split_dir"),
    (["--attention_impl=flash"], "attention_impl='flash'; allowed"),
    (["--attention_impl=cudnn"], "needs an NVIDIA GPU"),  # the tests run on CPU
    (["--dtype=float8"], "unknown dtype 'float8'"),
])
def test_bad_arguments_are_named(args, message, tmp_path, capsys):
  rc = benchmark.main(["--config=configs/test_pretrain.py", f"--out={tmp_path / 'b.json'}", *args])
  assert rc == 2 and message in capsys.readouterr().err
  assert not (tmp_path / "b.json").exists()


def test_analytic_flops_base():
  from configs import common
  m = common.model_config("base")
  f = benchmark.pretrain_flops_per_clip(m)
  # 80 visible video + 26 audio tokens through 10 blocks of width 512 dominate the encoders;
  # the decoders run on all 800 + 128 tokens at width 384.
  assert 20e9 < f < 60e9, f  # ~29 GFLOPs forward
  m.num_classes = 6
  assert benchmark.finetune_flops_per_clip(m) > f  # full tokens cost more than 10% of them


def test_stage_timing_covers_every_pipeline(tmp_path):
  from configs import test_pretrain
  from hicmae_jax.data.pipeline import factories as pipeline_lib, stage_timing
  synthetic.generate(str(tmp_path / "syn"), num_train=3, num_val=0, num_test=0, num_classes=2,
                     frame_size=32, num_frames=24, verbose=False)

  def dataset(pipeline, split, masks=True):
    """The pipeline a small config builds: 4 frames of 32 px, fbank 64 x 32 (8 tokens)."""
    c = test_pretrain.get_config("pretrain" if pipeline == "pretrain" else "finetune")
    c.model.num_frames, c.model.audio_frames, c.model.audio_mel_bins = 4, 64, 32
    c.data.masks_in_pipeline = masks
    if pipeline == "eval":
      return pipeline_lib.eval_dataset_from_config(c, split, mode="test", batch_size=2,
                                                   shard=(0, 1))
    return pipeline_lib.train_dataset_from_config(c, split, batch_size=2, seed=0, shard=(0, 1))

  expect = {"pretrain": {"read", "decode", "augment", "fbank", "mask"},
            "finetune": {"read", "decode", "augment", "fbank", "mixup"},
            "eval": {"read", "decode", "augment", "fbank"}}
  for pipeline, stages in expect.items():
    split = str(tmp_path / "syn" / ("pretrain" if pipeline == "pretrain" else "train"))
    got = stage_timing.time_stages(dataset(pipeline, split), num_records=2)
    assert set(got) == stages and all(v > 0 for v in got.values()), (pipeline, got)
  no_masks = dataset("pretrain", str(tmp_path / "syn" / "pretrain"), masks=False)
  assert "mask" not in stage_timing.time_stages(no_masks, 1)
