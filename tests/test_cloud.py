"""A workdir, checkpoints and outputs in a bucket (gs://), against a local GCS emulator
(tests/gcs_emulator.py): pre-training stopped and continued from the bucket ends exactly where
an uninterrupted run does; train.log, TensorBoard events, results.json, parameters.txt and the
persistent compilation cache land in the bucket; fine-tuning from a bucket checkpoint
(init_from), the eval binary and feature export on it; the converter reading a .pth from the
bucket and writing there. Nothing here is a local folder named gs:."""
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from configs import test_pretrain
from hicmae_jax import checkpointing, eval_main, paths, runtime, train, writers
from hicmae_jax.checkpoints.pth_reader import read_torch_checkpoint
from hicmae_jax.data.prepare import synthetic
from hicmae_jax.representations import features
from hicmae_jax.tools import convert_checkpoint as cc
from tests import gcs_emulator
from tests.test_convert import FINETUNE_FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = f"gs://{gcs_emulator.BUCKET}"
# Real training runs against the local GCS server: minutes in all.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  """The emulator's environment (for child processes); this process's clients point at it."""
  log = str(tmp_path_factory.mktemp("gcs") / "emulator.log")
  with gcs_emulator.running(log) as env:
    yield env


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("cloud_synthetic"))
  c = test_pretrain.get_config().data
  synthetic.generate(d, num_train=c.synthetic_num_train, num_val=c.synthetic_num_val,
                     num_test=c.synthetic_num_test, num_classes=c.synthetic_num_classes,
                     frame_size=c.synthetic_frame_size, num_frames=c.synthetic_num_frames,
                     seed=0, verbose=False)
  return d


def pretrain_config(synthetic_dir, steps):
  c = test_pretrain.get_config()
  c.data.synthetic_dir = synthetic_dir
  c.num_train_steps = steps
  return c


def _params(directory, step):
  raw = checkpointing.restore_params_as_saved(checkpointing.resolve_checkpoint_dir(directory),
                                              step)
  return {k: np.asarray(v) for k, v in raw.items()}


@pytest.fixture(scope="module")
def bucket_run(gcs, synthetic_dir):
  """gs://.../pretrain: 2 steps by the train binary (its own process), then continued to 4 in
  this process."""
  workdir = f"{BUCKET}/pretrain"
  env = dict(gcs, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=os.environ.get("HICMAE_TEST_JAX_CACHE",
                                                      "/tmp/hicmae_jax_test_cache"))
  cmd = [sys.executable, "-m", "hicmae_jax.main", "--config=configs/test_pretrain.py",
         f"--workdir={workdir}", f"--config.data.synthetic_dir={synthetic_dir}",
         "--config.num_train_steps=2"]
  done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert checkpointing.finished_steps(checkpointing.checkpoint_dir(workdir)) == [2]
  first_log = paths.read_bytes(f"{workdir}/train.log").decode()
  train.run(pretrain_config(synthetic_dir, 4), workdir)
  return workdir, first_log


def test_pretraining_in_a_bucket_resumes_exactly(bucket_run, synthetic_dir, tmp_path):
  workdir, first_log = bucket_run
  full = str(tmp_path / "full")
  train.run(pretrain_config(synthetic_dir, 4), full)
  assert checkpointing.finished_steps(checkpointing.checkpoint_dir(workdir)) == [2, 4]
  a, b = _params(full, 4), _params(workdir, 4)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  first = _params(workdir, 2)
  assert any(not np.array_equal(a[k], first[k]) for k in a)

  # The rest of the workdir is in the bucket too, and nothing went to a local gs: folder.
  assert not os.path.exists(os.path.join(REPO, "gs:")) and not os.path.exists("gs:")
  assert "starting from scratch" in first_log and "step 2/2" in first_log
  assert json.loads(paths.read_bytes(f"{workdir}/results.json"))["step"] == 4
  assert "encoder.patch_embed" in paths.read_bytes(f"{workdir}/parameters.txt").decode()
  losses = writers.read_event_scalars(workdir)["loss"]
  assert sorted(step for step, _ in losses) == [2, 4]  # one event file per part
  assert not paths.exists(f"{workdir}/{runtime.SHARED_CHECK_FOLDER}")


def test_finetune_eval_and_features_from_a_bucket(bucket_run, synthetic_dir):
  pre, _ = bucket_run
  ft = test_pretrain.get_config("finetune")
  ft.data.synthetic_dir = synthetic_dir
  ft.init_from = pre           # weights from the bucket
  ft.num_train_steps = 2
  ft_dir = f"{BUCKET}/finetune"
  results = train.run(ft, ft_dir)
  assert results["test"]["num_clips"] == 8
  assert checkpointing.finished_steps(checkpointing.best_dir(ft_dir)) == [2]

  # The eval binary on the bucket checkpoint: its outputs go beside it, in the bucket.
  ev = test_pretrain.get_config("finetune")
  ev.data.test_dir = os.path.join(synthetic_dir, "test")
  report = eval_main.evaluate_checkpoint(ev, ft_dir)
  assert report["checkpoint"] == f"{ft_dir}/checkpoints"
  saved = json.loads(paths.read_bytes(f"{ft_dir}/eval_test_step2.json"))
  assert saved["num_clips"] == 8 and saved["war"] == pytest.approx(results["test"]["war"])
  assert paths.read_bytes(f"{ft_dir}/eval_test_step2_confusion.png")[:4] == b"\x89PNG"

  out = f"{BUCKET}/features/ft_test"
  summary = features.export_features(output_dir=out, checkpoint=ft_dir,
                                     split_dir=os.path.join(synthetic_dir, "test"))
  assert summary["num_rows"] == 8
  loaded = features.load_features(out)
  assert loaded.features.shape[0] == 8
  assert loaded.meta["weights"]["checkpoint"] == f"{ft_dir}/checkpoints"


def test_converter_reads_and_writes_a_bucket(gcs, data_dir, tmp_path):
  src = f"{BUCKET}/original/finetune_tiny.pth"
  paths.copy_file(str(data_dir / "finetune_tiny.pth"), src)
  out = f"{BUCKET}/converted/finetune_tiny"
  assert cc.main(["--input", src, "--output", out] + FINETUNE_FLAGS) == 0
  local = str(tmp_path / "local")
  assert cc.main(["--input", str(data_dir / "finetune_tiny.pth"), "--output", local]
                 + FINETUNE_FLAGS) == 0
  assert checkpointing.finished_steps(out) == [0]
  step, meta, remote = checkpointing.read_params(out)
  assert meta["source"]["converted_from"] == src
  want = _params(local, 0)
  assert remote.keys() == want.keys()
  for k in want:
    np.testing.assert_array_equal(np.asarray(remote[k]), want[k], err_msg=k)
  # A second conversion to the same folder is refused, as locally.
  assert cc.main(["--input", src, "--output", out] + FINETUNE_FLAGS) == 2

  back = f"{BUCKET}/exported/finetune_tiny.pth"
  assert cc.main(["--export", "--input", out, "--output", back]) == 0
  exported = read_torch_checkpoint(back)["model"]
  original = read_torch_checkpoint(str(data_dir / "finetune_tiny.pth"))["model"]
  assert exported.keys() == original.keys()
  for k in original:
    np.testing.assert_array_equal(exported[k], original[k], err_msg=k)


def test_compilation_cache_in_a_bucket(gcs):
  before = jax.config.jax_compilation_cache_dir
  runtime.use_compilation_cache("")  # config value '': JAX's setting stays
  assert jax.config.jax_compilation_cache_dir == before
  cache = f"{BUCKET}/jax_cache"
  min_time = jax.config.jax_persistent_cache_min_compile_time_secs
  try:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    runtime.use_compilation_cache(cache)
    jax.jit(lambda x: jnp.sin(x) * 3.5 + 0.25)(jnp.arange(7.0)).block_until_ready()
    assert any(name.startswith("jit_") for name in paths.listdir(cache))
  finally:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
    jax.config.update("jax_compilation_cache_dir", before)
    compilation_cache.reset_cache()
  assert jax.config.jax_compilation_cache_dir == before


def test_two_processes_share_a_bucket_workdir(gcs, synthetic_dir, tmp_path):
  """The multi-host command with a bucket workdir, as two local processes
  (launch/local_multiprocess.sh): both pass the shared-workdir check through the bucket and
  write one checkpoint there together."""
  workdir, logs = f"{BUCKET}/two_processes", tmp_path / "logs"
  env = dict(gcs, PYTHON=sys.executable, PYTHONUNBUFFERED="1",
             JAX_COMPILATION_CACHE_DIR=os.environ.get("HICMAE_TEST_JAX_CACHE",
                                                      "/tmp/hicmae_jax_test_cache"))
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  cmd = ["bash", "launch/local_multiprocess.sh", "--num_processes=2", "--devices_per_process=1",
         f"--port={port}", f"--log_dir={logs}", "--", "--config=configs/test_pretrain.py",
         f"--workdir={workdir}", f"--config.data.synthetic_dir={synthetic_dir}",
         "--config.num_train_steps=2", "--heartbeat_timeout_s=60"]
  done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=420)
  log0 = (logs / "process_0.log").read_text()
  assert done.returncode == 0, log0[-3000:] + (logs / "process_1.log").read_text()[-3000:]
  assert "processes: 2" in log0 and "is shared by the 2 processes" in log0
  assert checkpointing.finished_steps(checkpointing.checkpoint_dir(workdir)) == [2]
  assert json.loads(paths.read_bytes(f"{workdir}/results.json"))["step"] == 2
  assert "step 2/2" in paths.read_bytes(f"{workdir}/train.log").decode()
  assert not paths.exists(f"{workdir}/{runtime.SHARED_CHECK_FOLDER}")
