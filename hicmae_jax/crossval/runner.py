"""Every fold of a k-fold protocol: in this process one after another (train.run per fold,
each resuming or skipping what it finished before), or as one training command per fold /
a SLURM array for a cluster; then the report.

Fold k trains in <workdir>/fold<k> with config.data.{train,val,test}_dir set to the fold's
prepared splits (layout.py); everything else is the experiment config as given.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import shlex
from typing import Any, Sequence

import ml_collections

from hicmae_jax.crossval import layout, leakage, paper, report

log = logging.getLogger(__name__)


def fold_config(config: ml_collections.ConfigDict, fold: layout.Fold
                ) -> ml_collections.ConfigDict:
  """The experiment config with the fold's splits (and no synthetic data of its own)."""
  c = copy.deepcopy(config)
  with c.unlocked():
    c.data.train_dir, c.data.val_dir, c.data.test_dir = fold.train, fold.val, fold.test
    c.data.synthetic_dir = ""
  return c


def check_leakage(folds: Sequence[layout.Fold], pattern: str = "") -> list[dict]:
  """leakage.check_fold on every fold (raises LeakageError on the first leaking one)."""
  checked = []
  for fold in folds:
    result = leakage.check_fold(fold.name, fold.train, fold.test, pattern)
    if result["checked"]:
      log.info("%s: no speaker in both train and test (%d train / %d test speakers)",
               fold.name, result["train_speakers"], result["test_speakers"])
    checked.append(dict(result, fold=fold.number))
  if checked and not any(c["checked"] for c in checked):
    log.info("speaker leakage not checked: %s (give a pattern to check)",
             checked[0]["reason"])
  return checked


@dataclasses.dataclass
class FoldRun:
  fold: int
  status: str  # "trained" | "finished earlier"
  results: dict[str, Any]


def _stamp(path: str) -> float | None:
  return os.path.getmtime(path) if os.path.exists(path) else None


def run_folds(config: ml_collections.ConfigDict, folds: Sequence[layout.Fold], workdir: str
              ) -> list[FoldRun]:
  """train.run for each fold in turn. A fold whose run finished before is not trained again
  (train.run returns its results.json); an interrupted one resumes from its checkpoints."""
  from hicmae_jax import runtime, train
  runs = []
  for fold in folds:
    fold_dir = report.fold_workdir(workdir, fold)
    results_path = train.results_path(fold_dir)
    before = _stamp(results_path)
    runtime.setup_logging(fold_dir)  # this fold's train.log (and stderr)
    log.info("==== %s of %d: %s", fold.name, len(folds), fold_dir)
    results = train.run(fold_config(config, fold), fold_dir)
    after = _stamp(results_path)
    status = "finished earlier" if before is not None and before == after else "trained"
    log.info("==== %s %s", fold.name, status)
    runs.append(FoldRun(fold.number, status, results))
  runtime.setup_logging(workdir)
  return runs


# -------------------------------------------------------------------------- cluster runs --

def fold_command(config_spec: str, overrides: Sequence[str], fold: layout.Fold,
                 workdir: str) -> str:
  """The training command of one fold (the user's --config.* overrides kept, in order)."""
  args = ["python", "-m", "hicmae_jax.main", f"--config={config_spec}",
          f"--workdir={report.fold_workdir(workdir, fold)}", *overrides,
          f"--config.data.train_dir={fold.train}", f"--config.data.val_dir={fold.val}",
          f"--config.data.test_dir={fold.test}", "--config.data.synthetic_dir="]
  return " ".join(shlex.quote(a) for a in args)


def report_command(config_spec: str, folds_root: str, workdir: str) -> str:
  args = ["python", "-m", "hicmae_jax.tools.cross_validate", f"--config={config_spec}",
          f"--folds_root={folds_root}", f"--workdir={workdir}", "--report_only"]
  return " ".join(shlex.quote(a) for a in args)


def slurm_array(commands: Sequence[str], report_cmd: str) -> str:
  """An sbatch script whose array task i runs fold i's command (one GPU each)."""
  body = "\n".join(f"  {shlex.quote(c)}" for c in commands)
  return f"""#!/usr/bin/env bash
# One fold per array task: sbatch <this file>; when all have finished:
#   {report_cmd}
#SBATCH --job-name=hicmae-cv
#SBATCH --array=1-{len(commands)}
#SBATCH --ntasks=1
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
#SBATCH --output=hicmae-cv-%A_%a.log
set -euo pipefail
# --signal=TERM@120: the trainer saves a checkpoint before the time limit; a requeued task
# resumes from its fold's workdir.
commands=(
{body}
)
eval "${{commands[$((SLURM_ARRAY_TASK_ID - 1))]}}"
"""


# ---------------------------------------------------------------------------------- report --

def write_report(workdir: str, folds: Sequence[layout.Fold], config_spec: str,
                 folds_root: str) -> tuple[dict[str, Any], dict[str, str]]:
  """Builds and writes cv_report.{json,md,png}; -> (report, paths)."""
  rep = report.build(workdir, folds, config_spec=config_spec, folds_root=folds_root,
                     paper=paper.paper_result(config_spec))
  os.makedirs(workdir, exist_ok=True)
  return rep, report.write(rep, workdir)
