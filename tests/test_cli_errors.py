"""Bad input to the binaries: one `error:` line naming the thing and the fix, exit code 2, no
traceback, and nothing created (no workdir, no train.log, no synthetic data). Each case runs
the binary as a subprocess in an empty folder; none gets as far as compiling anything."""
import logging
import os
import subprocess
import sys

import pytest
from absl import flags

from hicmae_jax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "demo.py")
TEST_PRETRAIN = os.path.join(REPO, "configs", "test_pretrain.py")
CREMA = os.path.join(REPO, "configs", "finetune_crema_d.py")


def run_binary(module, *args, cwd, devices=1, timeout=120):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  if devices > 1:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}").strip()
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(done, *expected):
  out = done.stdout + done.stderr
  assert done.returncode == 2, out[-3000:]
  assert "Traceback" not in out, out[-3000:]
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
  for text in expected:
    assert text in lines[0], lines[0]
  assert "\\n" not in lines[0] and "\\'" not in lines[0], lines[0]  # no repr escapes
  return lines[0]


# (module, arguments, devices, what the line must say); {tmp} is the test's empty folder,
# {file} a file in it.
CASES = {
    "missing_config_file": (
        "hicmae_jax.main", ["--config=configs/nope.py", "--workdir={tmp}/w"], 1,
        ["--config=configs/nope.py: no such file"]),
    "typo_key": (
        "hicmae_jax.main", [f"--config={TEST_PRETRAIN}", "--workdir={tmp}/w",
                            "--config.data.test_dri=x"], 1,
        ["--config.data.test_dri: no such key", "did you mean --config.data.test_dir?"]),
    "demo_top_level_override": (
        "hicmae_jax.main", [f"--config={DEMO}", "--workdir={tmp}/w",
                            "--config.global_batch_size=3"], 1,
        ["--config.global_batch_size has no effect on", "--config.pretrain.global_batch_size",
         "--config.finetune.global_batch_size"]),
    "batch_not_divisible_by_devices": (
        "hicmae_jax.main", [f"--config={TEST_PRETRAIN}", "--workdir={tmp}/w",
                            "--config.global_batch_size=3"], 2,
        ["config.global_batch_size=3 does not split over the 2 devices",
         "--config.global_batch_size=<a multiple of 2>"]),
    "demo_batch_not_divisible_by_devices": (
        "hicmae_jax.main", [f"--config={DEMO}", "--workdir={tmp}/w",
                            "--config.finetune.global_batch_size=3"], 2,
        ["config.finetune.global_batch_size=3 does not split over the 2 devices"]),
    "batch_not_divisible_by_contrastive_group": (
        "hicmae_jax.main", [f"--config={TEST_PRETRAIN}", "--workdir={tmp}/w",
                            "--config.loss.contrastive_group_size=3"], 1,
        ["config.loss.contrastive_group_size=3 must divide config.global_batch_size=4"]),
    "workdir_is_a_file": (
        "hicmae_jax.main", [f"--config={DEMO}", "--workdir={file}"], 1,
        ["--workdir={file} is a file"]),
    "workdir_under_a_file": (
        "hicmae_jax.main", [f"--config={DEMO}", "--workdir={file}/run"], 1,
        ["--workdir={file}/run cannot be created: {file} is a file"]),
    "workdir_missing": (
        "hicmae_jax.main", [f"--config={DEMO}"], 1, ["--workdir is required"]),
    "unknown_flag": (
        "hicmae_jax.main", [f"--config={DEMO}", "--wrokdir={tmp}/w"], 1,
        ["Unknown command line flag 'wrokdir'"]),
    "eval_empty_test_dir": (
        "hicmae_jax.eval_main", [f"--config={CREMA}", "--checkpoint={tmp}"], 1,
        ["config.data.test_dir is empty: pass --config.data.test_dir=<prepared split>"]),
    "eval_missing_checkpoint_folder": (
        "hicmae_jax.eval_main", [f"--config={CREMA}", "--checkpoint={tmp}/none",
                                 "--config.data.test_dir={tmp}"], 1,
        ["--checkpoint={tmp}/none: no such folder"]),
    "eval_folder_without_checkpoints": (
        "hicmae_jax.eval_main", [f"--config={CREMA}", "--checkpoint={tmp}",
                                 "--config.data.test_dir={tmp}"], 1,
        ["--checkpoint={tmp}: no finished checkpoint"]),
    "eval_demo_before_the_demo_ran": (
        "hicmae_jax.eval_main", [f"--config={DEMO}", "--checkpoint={tmp}"], 1,
        ["config.finetune.data.test_dir is empty and the config's synthetic test split "
         "workdirs/synthetic_demo/test does not exist"]),
    "eval_results_under_a_file": (
        "hicmae_jax.eval_main", [f"--config={CREMA}", "--checkpoint={tmp}",
                                 "--results={file}/r.json"], 1,
        ["--results={file}/r.json cannot be created"]),
    "tool_output_under_a_file": (
        "hicmae_jax.tools.plot_embeddings", ["--features={tmp}", "--output={file}/e.png"], 1,
        ["--output={file}/e.png cannot be created: {file} is a file"]),
    "tool_settings_typo": (
        "hicmae_jax.tools.linear_probe", ["--train={tmp}", "--config.stpes=3"], 1,
        ["--config.stpes: no such key in the --config settings",
         "did you mean --config.steps?"]),
    "tool_workdir_is_a_file": (
        "hicmae_jax.tools.learning_check", [
            f"--config={os.path.join(REPO, 'configs', 'learning_check.py')}:reduced",
            "--workdir={file}"], 1, ["--workdir={file} is a file"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_creates_nothing(case, tmp_path):
  module, args, devices, expected = CASES[case]
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder")
  fill = lambda s: s.format(tmp=tmp_path, file=a_file)  # noqa: E731
  done = run_binary(module, *map(fill, args), cwd=tmp_path, devices=devices)
  assert_one_error_line(done, *map(fill, expected))
  assert sorted(os.listdir(tmp_path)) == ["a_file"]  # no workdir, log or synthetic data


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0500 folder anyway; "
                    "test_unwritable_folder_is_named covers the check in-process")
def test_unwritable_workdir_is_refused(tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir(mode=0o500)
  done = run_binary("hicmae_jax.main", f"--config={DEMO}", f"--workdir={locked}/run",
                    cwd=tmp_path)
  assert_one_error_line(done, f"{locked} is not writable")
  assert os.listdir(locked) == []


def test_unwritable_folder_is_named(tmp_path, monkeypatch):
  locked = tmp_path / "locked"
  locked.mkdir()
  monkeypatch.setattr(cli.os, "access", lambda path, mode: os.fspath(path) != str(locked))
  with pytest.raises(cli.BadInput, match=f"--workdir={locked} is not writable"):
    cli.check_output_dir(str(locked), "--workdir")
  with pytest.raises(cli.BadInput, match=f"cannot be created: {locked} is not writable"):
    cli.check_output_dir(str(locked / "run" / "deeper"), "--workdir")
  with pytest.raises(cli.BadInput, match="cannot be written"):
    cli.check_output_file(str(locked / "out.json"), "--results")
  cli.check_output_dir(str(tmp_path / "new" / "run"), "--workdir")  # creatable: no error
  cli.check_output_dir("gs://bucket/run", "--workdir")  # remote: left to the storage layer
  assert sorted(os.listdir(tmp_path)) == ["locked"]


@pytest.mark.slow
@pytest.mark.parametrize("module,flag", [("hicmae_jax.main", "--workdir:"),
                                         ("hicmae_jax.eval_main", "--checkpoint:"),
                                         ("hicmae_jax.tools.linear_probe", "--train:")])
def test_help_exits_zero(module, flag, tmp_path):
  done = run_binary(module, "--help", cwd=tmp_path)
  assert done.returncode == 0, done.stderr[-2000:]
  assert flag in done.stdout and not done.stderr.strip()


@pytest.mark.slow
def test_full_help_exits_zero(tmp_path):
  done = run_binary("hicmae_jax.tools.plot_embeddings", "--helpfull", cwd=tmp_path)
  assert done.returncode == 0 and "--output" in done.stdout


def test_internal_errors_keep_their_traceback():
  import numpy as np

  from configs import test_pretrain
  from hicmae_jax import config_validation
  with pytest.raises(ValueError) as library_error:
    np.zeros(3).reshape(2, 2)  # a ValueError from a library: not the user's input
  assert not cli.is_bad_input(library_error.value)
  config = test_pretrain.get_config()
  config.nonfinite = "ignore"
  with pytest.raises(ValueError) as own_check:
    config_validation.validate_config(config)  # this project's own check: bad input
  assert cli.is_bad_input(own_check.value)
  assert cli.error_line(own_check.value) == "error: config.nonfinite='ignore'; allowed: stop, skip"
  with pytest.raises(FileNotFoundError) as path_error:
    open("/nonexistent/file.json")
  assert cli.is_bad_input(path_error.value)
  assert not cli.is_bad_input(RuntimeError("x"))
  assert cli.error_line(KeyError("missing 'x'\nsecond")) == "error: missing 'x'; second"


def test_json_command_prints_one_line(capsys, caplog):
  from hicmae_jax import runtime

  def body():
    raise FileNotFoundError("features folder 'x' not found:\ncreate it first")
  with caplog.at_level(logging.INFO):
    assert runtime.json_command(body) == 2
  assert capsys.readouterr().err == "error: features folder 'x' not found: create it first\n"


def _own_flags(values):
  flags.DEFINE_string("name", None, "a name", flag_values=values, required=True)
  flags.DEFINE_integer("count", 1, "how many", lower_bound=1, flag_values=values)
  flags.DEFINE_multi_string("item", [], "repeatable", flag_values=values)


def _own_body(values):
  if values.name == "bad":
    raise cli.BadInput("--name=bad: choose another name")
  if values.name == "crash":
    raise RuntimeError("internal")
  print(f"{values.name} {values.count} {values.item}")
  return 3 if values.name == "three" else None


@pytest.mark.parametrize("argv, code, out, err", [
    (["--name=a", "--count", "2", "--item=x", "--item", "y"], 0, "a 2 ['x', 'y']", ""),
    (["--name", "three"], 3, "three 1 []", ""),
    (["--help"], 0, "the doc", ""),
    ([], 2, "", "error: --name is required (see --help)"),
    (["--name=a", "--count=0"], 2, "", "error: flag --count=0: 0 is not a positive integer"),
    (["--name=a", "--nmae=b"], 2, "", "error: Unknown command line flag 'nmae'"),
    (["--name=a", "extra"], 2, "", "error: unexpected argument 'extra'"),
    (["--name=bad"], 2, "", "error: --name=bad: choose another name"),
])
def test_run_own_parses_its_own_flags_each_call(argv, code, out, err, capsys):
  assert cli.run_own(_own_flags, _own_body, argv, doc="the doc") == code
  captured = capsys.readouterr()
  assert out in captured.out and captured.err.startswith(err)
  assert len(captured.err.splitlines()) == (1 if err else 0)
  assert "name" not in flags.FLAGS  # the binary's flags never reach absl's global FLAGS


def test_run_own_keeps_the_traceback_of_an_internal_error():
  with pytest.raises(RuntimeError, match="internal"):
    cli.run_own(_own_flags, _own_body, ["--name=crash"])
