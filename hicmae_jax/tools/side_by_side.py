"""Our training step side by side with the PyTorch stand-in of the original's
(`tools/torch_standin_step.py`), alternated round by round on one machine:
`tools.benchmark --what=step --against=original --torch_python=/venv/bin/python`.

The stand-in runs in another interpreter (torch is not a dependency of this project: make a
throwaway venv, `python -m venv ~/.cache/hicmae_jax/torch-venv` and `pip install torch numpy
absl-py` in it), as a child process started in this repository's root so it imports this
package's copy. Ours is compiled once and timed in this process. Rounds alternate ours, theirs,
ours, theirs, ... so a shared or throttled machine's slow minutes fall on both; each round's
ratio is theirs / ours (above 1: ours is faster), with the load average beside it.
"""
from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import tempfile
from typing import Any, Callable

from hicmae_jax.models.options import geometry

# The package's parent: the folder the child interpreter must start in to import this copy.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# What the stand-in has built in (SPEC.md sections 1 and 5.1): 16 frames of 160 px in 2x16x16
# tubelets, a 256 x 128 fbank in 16 x 16 patches, depths 10/10/2/4, hierarchy (3, 6, 9),
# masks 0.9 (tubes) and 0.8.
STANDIN_GEOMETRY = {"num_frames": 16, "input_size": 160, "tubelet_size": 2, "patch_size": 16,
                    "audio_frames": 256, "audio_mel_bins": 128, "video_depth": 10,
                    "audio_depth": 10, "fusion_depth": 2, "decoder_depth": 4,
                    "hierarchy_layers": (3, 6, 9), "video_mask_ratio": 0.9,
                    "audio_mask_ratio": 0.8}
STANDIN_SIZES = ("tiny", "small", "base")


def check_interpreter(python: str) -> str:
  """The absolute path of a Python interpreter that imports torch; ValueError naming the
  problem and the fix otherwise."""
  if not python:
    raise ValueError("--against=original needs --torch_python=/path/to/python of a venv with "
                     "torch (python -m venv ~/.cache/hicmae_jax/torch-venv; pip install torch "
                     "numpy absl-py)")
  path = pathlib.Path(python).expanduser()
  if not path.is_file() or not os.access(path, os.X_OK):
    raise ValueError(f"--torch_python={python}: no executable file there; give the python of "
                     "a venv with torch installed")
  try:
    probe = subprocess.run([str(path), "-c", "import torch, absl, numpy"], capture_output=True,
                           text=True, timeout=300)
  except OSError as e:
    raise ValueError(f"--torch_python={python} cannot run ({e}); give a Python interpreter") \
        from None
  if probe.returncode:
    last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
    raise ValueError(f"--torch_python={python} cannot import torch, absl and numpy ({last}); "
                     "pip install torch numpy absl-py into that venv")
  return str(path.absolute())


def check_config(config) -> str:
  """The stand-in's size for an experiment config; ValueError when the config is not the
  original's pre-training geometry, which the stand-in has built in."""
  m = config.model
  if config.kind != "pretrain":
    raise ValueError(f"--against=original times pre-training only; this config's kind is "
                     f"{config.kind!r}: use configs/pretrain_base.py (or _small, _tiny)")
  if m.size not in STANDIN_SIZES:
    raise ValueError(f"--against=original: model size {m.size!r} has no stand-in; use one of "
                     f"{', '.join(STANDIN_SIZES)} (configs/pretrain_base.py, _small, _tiny)")
  differs = {k: m[k] for k, v in STANDIN_GEOMETRY.items()
             if (tuple(m[k]) if isinstance(v, tuple) else m[k]) != v}
  if differs:
    raise ValueError(f"--against=original: the stand-in has the original's geometry "
                     f"{STANDIN_GEOMETRY}; this config differs in {differs}")
  geometry(m)  # the config's own checks
  return m.size


def run_standin(python: str, size: str, batch: int, steps: int, warmup: int,
                threads: int = 0, timeout_s: float = 3600.0) -> dict[str, Any]:
  """One run of the stand-in in `python` (a child process): its JSON result."""
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "standin.json"
    cmd = [python, "-m", "hicmae_jax.tools.torch_standin_step", f"--size={size}",
           f"--batch_size={batch}", f"--steps={steps}", f"--warmup={warmup}",
           f"--threads={threads}", f"--out={out}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH", "")] if p])}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    if done.returncode or not out.exists():
      tail = " | ".join(done.stderr.strip().splitlines()[-3:])
      raise RuntimeError(f"the stand-in failed (exit {done.returncode}): {tail}")
    return json.loads(out.read_text())


def alternate(ours: Callable[[], float], theirs: Callable[[], float], rounds: int,
              load: Callable[[], float] = lambda: os.getloadavg()[0]) -> list[dict[str, Any]]:
  """`rounds` rounds of ours() then theirs() (each: seconds per step); per round both times,
  the ratio theirs / ours and the 1-minute load average after the round."""
  if rounds < 1:
    raise ValueError(f"--rounds={rounds}: give at least 1")
  rows = []
  for i in range(rounds):
    ours_s = ours()
    theirs_s = theirs()
    rows.append({"round": i + 1, "ours_s": float(f"{ours_s:.5g}"),
                 "theirs_s": float(f"{theirs_s:.5g}"), "ratio": float(f"{theirs_s / ours_s:.4g}"),
                 "load": round(load(), 2)})
  return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Medians and ranges over the rounds."""
  def med(key):
    values = [r[key] for r in rows]
    return {"median": float(f"{statistics.median(values):.5g}"), "min": min(values),
            "max": max(values)}
  return {"rounds": len(rows), "ours_s": med("ours_s"), "theirs_s": med("theirs_s"),
          "ratio": med("ratio")}


def table(rows: list[dict[str, Any]], summary: dict[str, Any], host: dict[str, Any],
          date: str) -> str:
  """The side-by-side as text: machine, rounds, medians."""
  lines = [f"side by side on {host['cpu']}, {host['isa'] or 'no x86 ISA'}, {host['cores']} "
           f"cores, {date}: ours vs the PyTorch stand-in of the original (NOT the original)",
           "round  ours s/step  stand-in s/step  ours faster by  load"]
  for r in rows:
    lines.append(f"{r['round']:5d}  {r['ours_s']:11.3f}  {r['theirs_s']:15.3f}  "
                 f"{r['ratio']:13.2f}x  {r['load']:4.1f}")
  s = summary
  lines.append(f"median {s['ours_s']['median']:10.3f}  {s['theirs_s']['median']:15.3f}  "
               f"{s['ratio']['median']:13.2f}x  (ratio {s['ratio']['min']:.2f}-"
               f"{s['ratio']['max']:.2f}x over {s['rounds']} rounds)")
  return "\n".join(lines)
