"""The benchmark tool runs at a tiny size and produces every figure (not a speed test)."""
import json

from hicmae_jax.data import synthetic
from hicmae_jax.tools import benchmark


def test_benchmark_reports_every_figure(tmp_path):
  synthetic.generate(str(tmp_path / "syn"), num_train=8, num_val=0, num_test=0, num_classes=2,
                     frame_size=32, num_frames=24, verbose=False)
  out = tmp_path / "bench.json"
  rc = benchmark.main(["--config=configs/test_pretrain.py", "--what=all", "--batch_size=2",
                       "--steps=2", "--warmup=1", "--peak_tflops=1.0", "--worker_counts=0",
                       "--pipeline_batches=2", f"--split_dir={tmp_path / 'syn' / 'pretrain'}",
                       f"--out={out}"])
  assert rc == 0
  r = json.loads(out.read_text())
  step = r["train_step"]
  for key in ("compile_s", "step_s_median", "clips_per_s", "model_gflops_per_clip_train",
              "xla_gflops_per_clip_train", "achieved_tflops", "mfu", "peak_memory_gib"):
    assert step[key] is not None and step[key] >= 0, key
  # the analytic count and XLA's agree within a factor (XLA also counts elementwise work)
  ratio = step["xla_gflops_per_clip_train"] / step["model_gflops_per_clip_train"]
  assert 0.5 < ratio < 2.0, ratio
  assert r["eval_forward"]["clips_per_s"] > 0
  assert r["pipeline"]["clips_per_s_by_workers"]["0"] > 0
  assert r["balance"]["input_processes_needed_per_device"] > 0


def test_analytic_flops_base():
  from configs import common
  m = common.model_config("base")
  f = benchmark.pretrain_flops_per_clip(m)
  # 80 visible video + 26 audio tokens through 10 blocks of width 512 dominate the encoders;
  # the decoders run on all 800 + 128 tokens at width 384.
  assert 20e9 < f < 60e9, f  # ~29 GFLOPs forward
  m.num_classes = 6
  assert benchmark.finetune_flops_per_clip(m) > f  # full tokens cost more than 10% of them
