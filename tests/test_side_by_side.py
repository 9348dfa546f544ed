"""tools/benchmark --against=original: argument checks, the alternation and ratio, and a tiny
real side-by-side run against the PyTorch stand-in where a torch interpreter is at hand."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from hicmae_jax.tools import benchmark, side_by_side

DEFAULT_TORCH_VENV = pathlib.Path("~/.cache/hicmae_jax/torch-venv/bin/python").expanduser()


def _torch_python() -> str | None:
  """An interpreter that imports torch: $HICMAE_TORCH_PYTHON, the README's venv, or this one."""
  for candidate in (os.environ.get("HICMAE_TORCH_PYTHON", ""), str(DEFAULT_TORCH_VENV),
                    sys.executable):
    if candidate and pathlib.Path(candidate).is_file():
      probe = subprocess.run([candidate, "-c", "import torch, absl, numpy"],
                             capture_output=True, timeout=300)
      if probe.returncode == 0:
        return candidate
  return None


def test_missing_interpreter_is_a_one_line_error(tmp_path):
  with pytest.raises(ValueError, match="--torch_python=.*no executable file"):
    side_by_side.check_interpreter(str(tmp_path / "no" / "python"))
  with pytest.raises(ValueError, match="needs --torch_python"):
    side_by_side.check_interpreter("")


def test_interpreter_without_torch_is_refused(tmp_path):
  fake = tmp_path / "python"
  fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n")
  fake.chmod(0o755)
  with pytest.raises(ValueError, match="cannot import torch.*No module named torch"):
    side_by_side.check_interpreter(str(fake))
  not_executable = tmp_path / "plain.txt"
  not_executable.write_text("")
  with pytest.raises(ValueError, match="no executable file"):
    side_by_side.check_interpreter(str(not_executable))


@pytest.mark.parametrize("args, message", [
    (["--against=original", "--torch_python=/no/such/python"], "no executable file"),
    (["--against=original"], "needs --torch_python"),
    (["--against=original", "--what=eval", "--torch_python=/bin/sh"], "goes with --what=step"),
    (["--torch_python=/bin/sh"], "only used with --against=original"),
])
def test_benchmark_refuses_bad_side_by_side_arguments(args, message, capsys):
  code = benchmark.main(["--config=configs/pretrain_tiny.py", *args])
  assert code == 2
  assert message in capsys.readouterr().err


def test_the_stand_in_needs_the_original_geometry(capsys):
  code = benchmark.main(["--config=configs/test_pretrain.py", "--against=original",
                         "--torch_python=/bin/sh"])
  assert code == 2
  assert "has no stand-in" in capsys.readouterr().err
  config = benchmark.load_experiment("configs/pretrain_tiny.py")
  assert side_by_side.check_config(config) == "tiny"
  with config.unlocked():
    config.model.num_frames = 8
  with pytest.raises(ValueError, match="differs in {'num_frames': 8}"):
    side_by_side.check_config(config)


def test_alternation_order_ratio_and_summary():
  """Real work on both sides (numpy matmuls of two sizes): rounds alternate ours then theirs,
  the ratio is theirs / ours of the measured times (which side is faster is not asserted: a
  shared machine can stall either), and the summary takes the medians."""
  calls = []
  a, b = np.ones((128, 128), np.float32), np.ones((256, 256), np.float32)

  def timed(name, x, reps):
    def run():
      calls.append(name)
      start = time.perf_counter()
      for _ in range(reps):
        x @ x
      return time.perf_counter() - start
    return run

  rows = side_by_side.alternate(timed("ours", a, 3), timed("theirs", b, 20), rounds=3,
                                load=lambda: 0.5)
  assert calls == ["ours", "theirs"] * 3
  assert [r["round"] for r in rows] == [1, 2, 3]
  for r in rows:
    assert r["ratio"] == pytest.approx(r["theirs_s"] / r["ours_s"], rel=1e-3)
  summary = side_by_side.summarize(rows)
  assert summary["ratio"]["median"] == sorted(r["ratio"] for r in rows)[1]
  assert summary["ratio"]["min"] <= summary["ratio"]["median"] <= summary["ratio"]["max"]
  text = side_by_side.table(rows, summary, {"cpu": "some CPU", "isa": "AVX2", "cores": 2},
                            "2026-12-07")
  assert "some CPU, AVX2, 2 cores, 2026-12-07" in text and "NOT the original" in text
  with pytest.raises(ValueError, match="--rounds=0"):
    side_by_side.alternate(timed("ours", a, 1), timed("theirs", a, 1), rounds=0)


@pytest.mark.slow
def test_tiny_side_by_side_real_run(tmp_path, capsys):
  """Ours (Tiny pre-training, batch 1) against the stand-in in a torch interpreter, 2 rounds."""
  python = _torch_python()
  if python is None:
    pytest.skip("no interpreter with torch: set HICMAE_TORCH_PYTHON or make "
                f"{DEFAULT_TORCH_VENV} (python -m venv; pip install torch numpy absl-py)")
  out = tmp_path / "sbs.json"
  code = benchmark.main(["--config=configs/pretrain_tiny.py", "--what=step", "--batch_size=1",
                         "--steps=1", "--warmup=1", "--rounds=2", "--against=original",
                         f"--torch_python={python}", f"--out={out}"])
  assert code == 0
  report = json.loads(out.read_text())
  sbs = report["side_by_side"]
  assert [r["round"] for r in sbs["rows"]] == [1, 2]
  for r in sbs["rows"]:
    assert r["ours_s"] > 0 and r["theirs_s"] > 0
    assert r["ratio"] == pytest.approx(r["theirs_s"] / r["ours_s"], rel=1e-2)
  assert sbs["standin"]["what"].startswith("PyTorch stand-in")
  printed = capsys.readouterr().out
  assert report["host"]["cpu"] in printed and "ours faster by" in printed
