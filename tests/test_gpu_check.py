"""launch/gpu_check.sh and its tools: the dry run lists the four steps, the CPU mode runs end to
end into summary.json, the parity tool fails beyond its tolerance, the environment check names
the CUDA install when the GPU is missing, and the summary names a failed step."""
import json
import math
import os
import pathlib
import subprocess

import numpy as np
import pytest

from configs import test_pretrain
from hicmae_jax import cli
from hicmae_jax.models.options import geometry
from hicmae_jax.tools import device_env, device_parity, gpu_check_summary

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "launch" / "gpu_check.sh"
STEP_MODULES = {"environment": "hicmae_jax.tools.device_env",
                "benchmark": "hicmae_jax.tools.benchmark",
                "synthetic_split": "hicmae_jax.data.synthetic",
                "input_pipeline": "hicmae_jax.tools.benchmark",
                "parity": "hicmae_jax.tools.device_parity",
                "summary": "hicmae_jax.tools.gpu_check_summary"}


def _script(*args, cwd=REPO, timeout=60):
  # the tests' compilation cache: the input-pipeline step's benchmark compiles the same train
  # step as the benchmark step before it
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.environ.get(
      "HICMAE_TEST_JAX_CACHE", "/tmp/hicmae_jax_test_cache"))
  return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True,
                        text=True, timeout=timeout, env=env)


def _dry_run_commands(*args) -> dict[str, str]:
  out = _script("--dry-run", *args)
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  names = [line[2:] for line in lines if line.startswith("# ")]
  assert names == list(STEP_MODULES), names
  return {line[2:]: lines[i + 1] for i, line in enumerate(lines) if line.startswith("# ")}


# ----------------------------------------------------------------------------- the script --

def test_dry_run_lists_the_four_steps_and_runs_nothing(tmp_path):
  out_dir = tmp_path / "never_made"
  cmds = _dry_run_commands("--cpu", f"--out={out_dir}")
  for name, module in STEP_MODULES.items():
    assert f"-m {module}" in cmds[name], (name, cmds[name])
  assert "--what=step" in cmds["benchmark"] and "--dtype=bfloat16" in cmds["benchmark"]
  assert f"--split_dir={out_dir}/synthetic/pretrain" in cmds["input_pipeline"]
  assert "--what=all" in cmds["input_pipeline"]
  assert "--config=configs/test_pretrain.py" in cmds["parity"]
  assert all("JAX_PLATFORMS=cpu" in cmds[n] for n in STEP_MODULES if n != "summary")
  assert not out_dir.exists()


def test_gpu_dry_run_uses_the_base_config_and_224px_frames():
  cmds = _dry_run_commands("--gpu", "--batch_size=16", "--attention_impl=cudnn")
  assert "--config=configs/pretrain_base.py" in cmds["benchmark"]
  assert "--batch_size=16" in cmds["benchmark"] and "--attention_impl=cudnn" in cmds["benchmark"]
  assert "--frame_size=224" in cmds["synthetic_split"]
  assert "--expect=gpu" in cmds["environment"] and "JAX_PLATFORMS" not in cmds["benchmark"]
  assert "--out=gpu_check_" in cmds["summary"]


@pytest.mark.parametrize("args, message", [
    (["--steps=0"], "--steps=0: give a positive integer"),
    (["--worker_counts=a"], "--worker_counts=a"),
    (["--bogus"], "unknown option --bogus"),
])
def test_bad_options_are_one_line(args, message):
  out = _script("--dry-run", *args)
  assert out.returncode == 2 and message in out.stderr
  assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.slow
def test_cpu_mode_runs_end_to_end(tmp_path):
  out_dir = tmp_path / "check"
  done = _script("--cpu", f"--out={out_dir}", timeout=1200)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  summary = json.loads((out_dir / "summary.json").read_text())
  assert summary["passed"] and summary["mode"] == "cpu" and not summary["failed"]
  assert list(summary["steps"]) == list(gpu_check_summary.STEPS)
  assert all(s["exit_code"] == 0 for s in summary["steps"].values())
  # on a CPU there is no memory limit, chip peak, nvidia-smi or MFU to report
  may_be_null = {"memory_limit_gib", "peak_bf16_tflops", "nvidia_smi", "mfu"}
  for section, fields in gpu_check_summary.SECTIONS.items():
    assert set(summary[section]) == set(fields), section
    missing = [f for f in fields if summary[section][f] is None and f not in may_be_null]
    assert not missing, (section, missing)
  assert summary["environment"]["backend"] == "cpu"
  assert summary["benchmark"]["dtype"] == "bfloat16" and summary["benchmark"]["step_s_median"] > 0
  assert isinstance(summary["input_pipeline"]["input_bound"], bool)
  assert summary["parity"]["passed"] and summary["parity"]["accelerator_dtype"] == "bfloat16"
  assert "PASSED" in done.stdout


# ------------------------------------------------------------------------ device_parity --

def _tiny_config():
  """configs/test_pretrain.py, shallower (one layer per encoder) and shorter (4 frames)."""
  config = test_pretrain.get_config()
  m = config.model
  m.video_depth = m.audio_depth = 1
  m.hierarchy_layers = (0,)
  m.num_frames = 4
  return config


def test_parity_batch_is_deterministic_with_exact_masks():
  config = _tiny_config()
  a = device_parity.host_batch(config, 3, seed=5)
  b = device_parity.host_batch(config, 3, seed=5)
  assert set(a) == {"video", "audio", "mask_video", "mask_audio"}
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  geo = geometry(config.model)
  assert a["video"].dtype == np.uint8 and a["mask_video"].shape == (3, geo.num_video_tokens)
  counts = a["mask_audio"].sum(axis=1)
  assert (counts == counts[0]).all() and 0 < counts[0] < geo.num_audio_tokens
  assert not np.array_equal(device_parity.host_batch(config, 3, seed=6)["audio"], a["audio"])


def test_parity_fails_beyond_an_absurd_tolerance_and_passes_the_bf16_one(tmp_path, capsys):
  """One computation: the CPU stands in for the accelerator (bfloat16 vs float32 there)."""
  out = tmp_path / "parity.json"
  rc = device_parity.run(_tiny_config(), batch_size=2, seed=0, tolerance=1e-9, output=str(out))
  assert rc == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("error: loss on cpu:0 (bfloat16)") and "--tolerance=1e-09" in err[-1]
  report = json.loads(out.read_text())
  assert report["passed"] is False and report["same_device"] is True
  assert report["accelerator"]["dtype"] == "bfloat16" and report["cpu"]["dtype"] == "float32"
  a, c = report["accelerator"]["metrics"]["loss"], report["cpu"]["metrics"]["loss"]
  assert math.isfinite(a) and math.isfinite(c) and a != c
  # the same two losses are within the default bf16 budget
  assert 0 < report["relative_difference"] < 2e-2
  assert device_parity.check(report, 2e-2) is None


def test_parity_check_refuses_a_non_finite_loss():
  side = {"device": "cuda:0", "dtype": "bfloat16", "metrics": {"loss": float("nan")}}
  report = {"accelerator": side, "cpu": dict(side, device="cpu:0", dtype="float32",
                                             metrics={"loss": 1.0}),
            "relative_difference": float("nan")}
  assert device_parity.check(report, 1.0).endswith("not finite")


@pytest.mark.parametrize("args, message", [
    (["--batch_size=1"], "error: --batch_size=1: give 2 or more"),
    (["--tolerance=0"], "error: --tolerance=0.0: give a positive"),
    (["--config=configs/nope.py"], "error: config file 'configs/nope.py' not found"),
    (["--accelerator_dtype=float13"], "float13"),
])
def test_parity_bad_input_is_one_line(args, message, capsys):
  assert device_parity.main(args) == cli.EXIT_BAD_INPUT
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err


@pytest.mark.slow
def test_parity_of_a_finetuning_config():
  report = device_parity.compare(test_pretrain.get_config("finetune"), 2, 0)
  assert set(report["cpu"]["metrics"]) == {"loss", "train_accuracy"}
  assert device_parity.check(report, 2e-2) is None


# --------------------------------------------------------------------------- device_env --

def test_environment_report_and_a_missing_gpu():
  report = device_env.describe()
  assert report["backend"] == "cpu" and report["devices"][0]["platform"] == "cpu"
  assert report["jax"] and report["jaxlib"] and report["host"]["cores"] >= 1
  assert device_env.check(report, "any") is None and device_env.check(report, "cpu") is None
  message = device_env.check(report, "gpu")
  assert "not gpu" in message and "jax[cuda12]" in message
  with_smi = dict(report, nvidia_smi=[{"name": "NVIDIA H100 80GB HBM3"}])
  assert device_env.check(with_smi, "gpu").startswith("nvidia-smi lists 1 GPU(s) but")


# ---------------------------------------------------------------------- gpu_check_summary --

def test_summary_names_the_failed_and_missing_steps(tmp_path):
  (tmp_path / "steps.tsv").write_text("environment\t0\t1\tpython -m x\n"
                                      "benchmark\t1\t30\tpython -m y\n")
  summary = gpu_check_summary.summarise(str(tmp_path), "gpu")
  assert not summary["passed"]
  assert summary["failed"] == ["benchmark (exit 1)", "synthetic_split (not run)",
                               "input_pipeline (not run)", "parity (not run)"]
  assert all(summary[s] is None for s in gpu_check_summary.SECTIONS)
  assert summary["steps"]["benchmark"] == {"exit_code": 1, "seconds": 30.0,
                                           "command": "python -m y"}


def test_summary_without_a_steps_file_names_the_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match="--out=<the folder launch/gpu_check.sh wrote>"):
    gpu_check_summary.summarise(str(tmp_path), "gpu")
