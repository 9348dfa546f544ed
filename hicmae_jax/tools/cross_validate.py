r"""The k-fold protocol behind a paper number: every fold trained and tested, then the table.

  python -m hicmae_jax.tools.cross_validate --config=configs/finetune_crema_d.py \
      --folds_root=/data/crema_d_folds --workdir=ckpt/crema_cv --config.init_from=ckpt/hicmae_base
  # a cluster: one training command per fold, or a SLURM array file; afterwards the table
  python -m hicmae_jax.tools.cross_validate ... --print_commands
  python -m hicmae_jax.tools.cross_validate ... --slurm_array=crema_cv.sbatch
  python -m hicmae_jax.tools.cross_validate ... --report_only

--folds_root holds fold1/{train,val,test}, fold2/... (prepared splits, val optional; see
hicmae_jax/crossval/layout.py). Fold k trains in <workdir>/fold<k> through the same trainer as
hicmae_jax.main, one fold after another in this process; running the command again resumes an
interrupted fold and does not train a finished one again. Before any training, every fold is
checked for a speaker in both train and test (CREMA-D and RAVDESS file names carry the id;
--speaker_pattern for other datasets). Writes <workdir>/cv_report.{md,json,png}: per-fold and
mean +- std UAR / WAR / F1 (CCC / PCC for regression) next to the paper's number in the
config's docstring.
"""
from __future__ import annotations

import json
import sys

from absl import flags
from ml_collections import config_flags

from hicmae_jax import cli, runtime

_CONFIG = config_flags.DEFINE_config_file("config", None, "Fine-tuning experiment config.",
                                          lock_config=False)
_FOLDS_ROOT = flags.DEFINE_string("folds_root", None, "Folder of fold<k>/{train,val,test} "
                                  "prepared splits.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Fold k trains in <workdir>/fold<k>; the "
                               "report goes here.")
_FOLDS = flags.DEFINE_list("folds", [], "Only these fold numbers (default: every fold).")
_PRINT = flags.DEFINE_bool("print_commands", False, "Print one training command per fold "
                           "instead of training.")
_SLURM = flags.DEFINE_string("slurm_array", "", "Write a SLURM array script (one fold per "
                             "task) to this file instead of training.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only write the report from the folds "
                                 "that have finished.")
_PATTERN = flags.DEFINE_string("speaker_pattern", "", "Regular expression whose first group "
                               "is the speaker id in a clip's file name (default: the "
                               "dataset's, for CREMA-D and RAVDESS).")
_CHECK = flags.DEFINE_bool("check_leakage", True, "Refuse folds with a speaker in both train "
                           "and test.")
flags.mark_flags_as_required(["config", "folds_root", "workdir"])


def _config_spec(argv: list[str]) -> str:
  """--config's value as given (path[:arg]) and the --config.* overrides, in order."""
  spec, overrides = "", []
  for i, arg in enumerate(argv[1:], start=1):
    if arg.startswith("--config="):
      spec = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      spec = argv[i + 1]
    elif arg.startswith("--config."):
      overrides.append(arg)
  return spec, overrides


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected argument {argv[1]!r}: every input is a flag, e.g. "
                       f"--config=configs/finetune_crema_d.py --folds_root=... --workdir=...")
  from hicmae_jax import config_validation
  from hicmae_jax.crossval import layout, runner
  config, workdir = _CONFIG.value, _WORKDIR.value
  spec, overrides = _config_spec(sys.argv)
  try:
    only = tuple(int(f) for f in _FOLDS.value)
  except ValueError:
    raise cli.BadInput(f"--folds={','.join(_FOLDS.value)}: give fold numbers, e.g. "
                       f"--folds=1,3") from None
  if config.get("kind") not in ("finetune", "linear_probe"):
    raise cli.BadInput(f"--config={spec}: cross-validation trains a fine-tuning (or linear "
                       f"probe) config, e.g. configs/finetune_crema_d.py")
  cli.check_output_dir(workdir, "--workdir")
  cli.check_output_file(_SLURM.value, "--slurm_array")
  folds = layout.discover(_FOLDS_ROOT.value, only)
  runtime.initialize_distributed()
  if _REPORT_ONLY.value:
    report, paths = runner.write_report(workdir, folds, spec, _FOLDS_ROOT.value)
    _print_summary(report, paths)
    return
  config_validation.validate_config(runner.fold_config(config, folds[0]), "config")
  runtime.setup_logging(None)
  if _CHECK.value:
    runner.check_leakage(folds, _PATTERN.value)
  if _PRINT.value or _SLURM.value:
    commands = [runner.fold_command(spec, overrides, f, workdir) for f in folds]
    report_cmd = runner.report_command(spec, _FOLDS_ROOT.value, workdir)
    if _SLURM.value:
      text = runner.slurm_array(commands, report_cmd)
      with open(_SLURM.value, "w") as f:
        f.write(text)
      print(f"wrote {_SLURM.value}: sbatch {_SLURM.value}; afterwards: {report_cmd}")
    if _PRINT.value:
      print("\n".join(commands))
      print(f"# afterwards: {report_cmd}")
    return
  runtime.banner()
  runs = runner.run_folds(config, folds, workdir)
  report, paths = runner.write_report(workdir, folds, spec, _FOLDS_ROOT.value)
  report["runs"] = [{"fold": r.fold, "status": r.status} for r in runs]
  _print_summary(report, paths)


def _print_summary(report: dict, paths: dict) -> None:
  out = {"finished_folds": f"{report['num_finished']} of {report['num_folds']}",
         "mean": {k: v["mean"] for k, v in report["summary"].items()},
         "std": {k: v["std"] for k, v in report["summary"].items()},
         "paper": {c["metric"]: c["paper"] for c in report["comparison"]},
         "report": paths}
  if "runs" in report:
    out["runs"] = report["runs"]
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  cli.run(main)
