"""TF-free clu metric writers: event files written by the shim read back record by record."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# Before clu.metric_writers: importing writers installs the shim that lets it load without
# TensorFlow (this file must collect on its own, not only after another test imported it).
from hicmae_jax import writers

# isort: split
from clu import metric_writers  # noqa: E402
from tensorboardX.proto import plugin_hparams_pb2  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summaries(logdir):
  """[(step, Summary.Value)] of every summary value in logdir's event files."""
  return [(e.step, v) for e in writers.read_events(logdir) if e.HasField("summary")
          for v in e.summary.value]


def test_shim_is_installed_without_tensorflow():
  if writers.tensorflow_available():
    pytest.skip("TensorFlow is importable: clu's own writer is used")
  assert writers.SHIMMED
  assert metric_writers.SummaryWriter.__module__ == "clu.metric_writers.summary_writer"
  assert issubclass(metric_writers.SummaryWriter, metric_writers.MetricWriter)
  assert writers.install_shim()   # idempotent


def test_write_and_read_back(tmp_path):
  w = metric_writers.SummaryWriter(str(tmp_path))
  w.write_scalars(1, {"loss": 0.5, "lr": np.float32(1e-3)})
  w.write_scalars(2, {"loss": np.array(0.25)})
  w.write_images(1, {"rgb": np.random.rand(2, 8, 8, 3), "gray": np.zeros((8, 8, 1), np.uint8)})
  w.write_texts(1, {"note": "hello"})
  w.write_hparams({"optim": {"lr": 1e-3, "betas": (0.9, 0.999)}, "model": "base",
                   "remat": False})
  w.write_histograms(2, {"weights": np.random.randn(100)}, num_buckets={"weights": 10})
  w.write_audios(2, {"wave": np.random.uniform(-0.5, 0.5, (1, 1600, 1))}, sample_rate=16000)
  w.write_summaries(3, {"raw": np.arange(6, dtype=np.float32).reshape(2, 3)})
  w.write_videos(3, {"video": np.zeros((1, 2, 4, 4, 3))})   # warns, writes nothing
  w.flush()   # must leave everything on disk (no background queue)

  scalars = writers.read_event_scalars(str(tmp_path))
  assert scalars["loss"] == [(1, 0.5), (2, 0.25)]
  assert scalars["lr"][0][0] == 1 and scalars["lr"][0][1] == pytest.approx(1e-3)

  values = summaries(str(tmp_path))
  kinds = {v.tag: (step, v.WhichOneof("value")) for step, v in values}
  assert kinds["rgb"] == (1, "image") and kinds["gray"] == (1, "image")
  assert kinds["note/text_summary"] == (1, "tensor")
  assert kinds["weights"] == (2, "histo") and kinds["wave"] == (2, "audio")
  assert kinds["raw"] == (3, "tensor")
  assert not any("video" in tag for tag in kinds)
  text = next(v for _, v in values if v.tag == "note/text_summary")
  assert text.tensor.string_val == [b"hello"]
  histo = next(v for _, v in values if v.tag == "weights").histo
  # 10 buckets (tensorboardX prepends an empty one below the minimum).
  assert histo.num == 100 and sum(histo.bucket) == 100 and len(histo.bucket) in (10, 11)
  raw = next(v for _, v in values if v.tag == "raw").tensor
  np.testing.assert_array_equal(np.frombuffer(raw.tensor_content, np.float32).reshape(2, 3),
                                np.arange(6).reshape(2, 3))
  start = next(v for _, v in values if v.tag == "_hparams_/session_start_info")
  hp = plugin_hparams_pb2.HParamsPluginData.FromString(
      start.metadata.plugin_data.content).session_start_info.hparams
  assert hp["optim.lr"].number_value == pytest.approx(1e-3)
  assert hp["optim.betas"].string_value == "(0.9, 0.999)"
  assert hp["model"].string_value == "base" and hp["remat"].bool_value is False
  w.close()


def test_default_writer_and_report_progress(tmp_path):
  from clu import periodic_actions
  w = writers.create_writer(str(tmp_path))
  report = periodic_actions.ReportProgress(num_train_steps=10, every_steps=2, writer=w)
  for step in range(1, 7):
    w.write_scalars(step, {"train/loss": 1.0 / step})
    report(step)
  w.flush()
  scalars = writers.read_event_scalars(str(tmp_path))
  assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
  assert "steps_per_sec" in scalars and "uptime" in scalars
  w.close()


def test_just_logging_writes_no_event_file(tmp_path):
  w = writers.create_writer(str(tmp_path / "run"), just_logging=True)
  w.write_scalars(1, {"loss": 1.0})
  w.flush()
  w.close()
  assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


@pytest.mark.slow
def test_no_shim_when_tensorflow_is_importable(tmp_path):
  """A findable `tensorflow` package disables the shim (clu's own writer is then used)."""
  (tmp_path / "tensorflow").mkdir()
  (tmp_path / "tensorflow" / "__init__.py").write_text("")
  code = textwrap.dedent("""
      import sys
      from hicmae_jax import writers
      assert writers.SHIMMED is False, writers.SHIMMED
      assert "clu.metric_writers.summary_writer" not in sys.modules
      print("ok")
  """)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "ok"
