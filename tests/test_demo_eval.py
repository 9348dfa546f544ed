"""The README's second demo command: `eval_main --config=configs/demo.py
--checkpoint=workdirs/demo/finetune` evaluates the demo's fine-tuned model on the demo's
synthetic test split, and neither binary prints the known-benign start-up or restore noise.

The checkpoint comes from a short run of the demo's fine-tuning part (configs/demo.py:finetune,
2 layers per encoder, 1 step, 8 clips), written where the demo writes it, in an empty folder."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # trains a model or starts processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "demo.py")
NOISE = ("Unable to initialize backend", "libtpu", "Given directory is read only",
         "Metadata file does not exist", "setting save_interval_steps=0")


def _run(cwd, module, *args):
  env = dict(os.environ, PYTHONPATH=REPO,
             JAX_COMPILATION_CACHE_DIR=os.environ.get("HICMAE_TEST_JAX_CACHE",
                                                      "/tmp/hicmae_jax_test_cache"))
  env.pop("JAX_PLATFORMS", None)  # as a user runs it: JAX probes every platform
  done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)
  out = done.stdout + done.stderr
  assert done.returncode == 0, out[-4000:]
  for text in NOISE:
    assert text not in out, f"{text!r} printed by {module}:\n{out[-4000:]}"
  return done


def test_eval_main_evaluates_the_demo_finetuned_model(tmp_path):
  _run(tmp_path, "hicmae_jax.main", f"--config={DEMO}:finetune",
       "--workdir=workdirs/demo/finetune", "--config.num_train_steps=1",
       "--config.model.video_depth=2", "--config.model.audio_depth=2",
       "--config.data.synthetic_num_train=8", "--config.data.synthetic_num_val=4",
       "--config.data.synthetic_num_test=4", "--config.global_batch_size=4",
       "--config.eval_batch_size=4")
  done = _run(tmp_path, "hicmae_jax.eval_main", f"--config={DEMO}",
              "--checkpoint=workdirs/demo/finetune")
  summary = json.loads(done.stdout)
  assert summary["split_dir"] == "workdirs/synthetic_demo/test"
  assert summary["num_clips"] == 4 and summary["step"] == 1
  assert 0.0 <= summary["war"] <= 100.0
  report = tmp_path / "workdirs" / "demo" / "finetune" / "eval_test_step1.json"
  assert json.loads(report.read_text())["num_clips"] == 4
