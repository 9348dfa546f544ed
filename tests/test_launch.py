"""launch/ scripts: valid bash, and --dry-run prints the commands without running anything."""
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "launch").iterdir())


def _dry_run(*args):
  out = subprocess.run(["bash", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
  assert out.returncode == 0, out.stderr
  return out.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_bash(script):
  subprocess.run(["bash", "-n", str(script)], check=True)
  if shutil.which("shellcheck"):
    subprocess.run(["shellcheck", "-S", "warning", str(script)], check=True)


def test_local_multiprocess_dry_run_prints_one_command_per_process():
  out = _dry_run("launch/local_multiprocess.sh", "--dry-run", "--num_processes=3",
                 "--devices_per_process=2", "--port=23456", "--",
                 "--config=configs/test_pretrain.py", "--workdir=/tmp/w")
  lines = out.strip().splitlines()
  assert len(lines) == 3
  for i, line in enumerate(lines):
    assert "-m hicmae_jax.main" in line and f"--process_id={i}" in line
    assert "--num_processes=3" in line and "--coordinator_address=127.0.0.1:23456" in line
    assert "xla_force_host_platform_device_count=2" in line and "--workdir=/tmp/w" in line


def test_local_multiprocess_rejects_bad_arguments():
  out = subprocess.run(["bash", "launch/local_multiprocess.sh", "--dry-run", "--port=12x"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
  assert out.returncode == 2 and "positive integers" in out.stderr


def test_slurm_dry_run_prints_the_srun_command():
  out = _dry_run("launch/slurm_gpu.sbatch", "--dry-run", "configs/pretrain_base.py", "/ckpt/x",
                 "--config.global_batch_size=320")
  assert out.startswith("srun ") and "-m hicmae_jax.main" in out
  assert "--config=configs/pretrain_base.py" in out and "--workdir=/ckpt/x" in out
  assert "--config.global_batch_size=320" in out


def test_tpu_pod_dry_run_prints_gcloud_commands():
  out = _dry_run("launch/tpu_pod.sh", "--dry-run", "--zone=us-central2-b", "--type=v4-32",
                 "--config=configs/pretrain_base.py", "--workdir=gs://b/x")
  assert "gcloud compute tpus tpu-vm create" in out
  assert "--worker=all" in out and "hicmae_jax.main" in out and "gs://b/x" in out


def test_tpu_pod_multislice_dry_run_checks_the_compile_and_spans_the_slices():
  out = _dry_run("launch/tpu_pod.sh", "--dry-run", "--aot_check", "--num_slices=2",
                 "--zone=us-east5-b", "--type=v5e-16", "--config=configs/pretrain_base.py",
                 "--workdir=gs://b/x", "--", "--config.model.dtype=bfloat16")
  lines = out.splitlines()
  aot = [line for line in lines if "hicmae_jax.tools.aot_compile" in line]
  assert aot and "--topology=v5e-16" in aot[0] and "--num_slices=2" in aot[0]
  assert "--config.model.dtype=bfloat16" in aot[0] and "dcn_data=2" in aot[0]
  assert lines.index(aot[0]) < min(i for i, line in enumerate(lines) if "gcloud" in line)
  assert any("queued-resources create" in x and "--node-count=2" in x for x in lines)
  starts = [x for x in lines if "hicmae_jax.main" in x]
  assert len(starts) == 2 and all("--config.mesh.dcn_data=2" in x for x in starts)
  assert any("hicmae-0" in x for x in starts) and any("hicmae-1" in x for x in starts)
