"""The cross-validation report: every fold's test result, mean +- std over the finished folds,
next to the paper's number, as <workdir>/cv_report.md, cv_report.json and cv_report.png.

A fold's result is `test` of <workdir>/fold<k>/results.json (the test split scored on the
selected weights: best validation when the fold has a val split, else the last). The std is
the sample standard deviation (ddof = 1) over the finished folds; none with one fold.
Classification: UAR, WAR, weighted F1; regression: CCC and PCC (means over the target
dimensions, and per named dimension). All in percent, like the paper.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from hicmae_jax import io_utils
from hicmae_jax.crossval import layout

REPORT_NAME = "cv_report"
CLASSIFICATION_METRICS = (("uar", "UAR"), ("war", "WAR"), ("weighted_f1", "F1 (weighted)"))
REGRESSION_METRICS = (("ccc", "CCC"), ("pcc", "PCC"))


def fold_workdir(workdir: str, fold: layout.Fold) -> str:
  return os.path.join(workdir, fold.name)


def _fold_row(workdir: str, fold: layout.Fold) -> dict[str, Any]:
  path = os.path.join(fold_workdir(workdir, fold), "results.json")
  row: dict[str, Any] = {"fold": fold.number, "results": path}
  if not os.path.isfile(path):
    return dict(row, status="not finished")
  results = io_utils.read_json(path)
  if "test" not in results:
    status = ("preempted" if "preempted_at_step" in results else "no test result")
    return dict(row, status=status)
  return dict(row, status="finished", step=results.get("step"),
              test_weights=results.get("test_weights", {}), test=results["test"])


def _dimension_names(fold: layout.Fold) -> list[str]:
  from hicmae_jax.data.format import schema
  info = schema.DatasetInfo.load(fold.train)
  return list(info.extra.get("target_names") or [])


def _columns(task: str, dims: Sequence[str]) -> list[tuple[str, str]]:
  """(key, heading) of every reported value; per-dimension keys are `<dim>/<metric>`."""
  if task == "classification":
    return list(CLASSIFICATION_METRICS)
  cols = list(REGRESSION_METRICS)
  for d in dims:
    cols += [(f"{d}/{k}", f"{d} {h}") for k, h in REGRESSION_METRICS]
  return cols


def _value(test: dict, key: str, dims: Sequence[str]) -> float | None:
  if "/" not in key:
    v = test.get(key)
    return None if v is None else float(v)
  dim, metric = key.split("/")
  per_dim = test.get("per_dim", {})
  entry = per_dim.get(dim) or per_dim.get(f"target{list(dims).index(dim)}")
  return None if entry is None else float(entry[metric])


def _stats(values: list[float]) -> tuple[float | None, float | None]:
  good = [v for v in values if v is not None and math.isfinite(v)]
  if not good:
    return None, None
  mean = float(np.mean(good))
  std = float(np.std(good, ddof=1)) if len(good) > 1 else None
  return mean, std


def build(workdir: str, folds: Sequence[layout.Fold], *, config_spec: str = "",
          folds_root: str = "", paper: dict | None = None) -> dict[str, Any]:
  """The report as a JSON-able dict (see the module docstring)."""
  rows = [_fold_row(workdir, f) for f in folds]
  finished = [r for r in rows if r["status"] == "finished"]
  task = ("classification" if not finished or "uar" in finished[0]["test"] else "regression")
  dims = _dimension_names(folds[0]) if folds and task == "regression" else []
  columns = _columns(task, dims)
  for r in finished:
    r["values"] = {k: _value(r["test"], k, dims) for k, _ in columns}
    r["num_clips"] = r["test"].get("num_clips")
    del r["test"]
  summary = {}
  for key, _ in columns:
    mean, std = _stats([r["values"][key] for r in finished])
    summary[key] = {"mean": mean, "std": std, "n": sum(r["values"][key] is not None
                                                       for r in finished)}
  comparison = []
  for item in (paper or {}).get("values", []):
    key = f"{item['dimension']}/{item['metric']}" if item["dimension"] else item["metric"]
    ours = summary.get(key, {})
    mean = ours.get("mean")
    comparison.append({"metric": key, "paper": item["value"], "mean": mean,
                       "std": ours.get("std"),
                       "difference": None if mean is None else mean - item["value"]})
  return {"config": config_spec, "folds_root": os.path.abspath(folds_root) if folds_root else "",
          "workdir": os.path.abspath(workdir), "task": task,
          "columns": [{"key": k, "heading": h} for k, h in columns],
          "num_folds": len(rows), "num_finished": len(finished), "folds": rows,
          "summary": summary, "paper": paper, "comparison": comparison,
          "std": "sample standard deviation (ddof=1) over the finished folds"}


def _fmt(v: float | None) -> str:
  return "-" if v is None or not math.isfinite(v) else f"{v:.2f}"


def markdown(report: dict[str, Any]) -> str:
  cols = report["columns"]
  name = os.path.basename(report["config"].partition(":")[0]) or "experiment"
  lines = [f"# Cross-validation: {name} ({report['num_finished']} of {report['num_folds']} "
           f"folds finished)", "",
           f"Test split of each fold on its selected weights; percent. Workdir "
           f"`{report['workdir']}`.", "",
           "| fold | " + " | ".join(c["heading"] for c in cols) + " | clips | weights |",
           "|---|" + "---|" * (len(cols) + 2)]
  for r in report["folds"]:
    if r["status"] != "finished":
      lines.append(f"| {r['fold']} | " + " | ".join("-" for _ in cols)
                   + f" | - | {r['status']} |")
      continue
    weights = r.get("test_weights", {}).get("selected_by", "")
    lines.append(f"| {r['fold']} | " + " | ".join(_fmt(r["values"][c["key"]]) for c in cols)
                 + f" | {r.get('num_clips', '-')} | {weights} |")
  s = report["summary"]
  lines.append("| **mean ± std** | " + " | ".join(
      f"**{_fmt(s[c['key']]['mean'])}** ± {_fmt(s[c['key']]['std'])}" for c in cols)
               + " | | |")
  paper = report.get("paper")
  if paper:
    by_key = {c["metric"]: c["paper"] for c in report["comparison"]}
    lines.append(f"| paper ({paper['model']}) | " + " | ".join(
        _fmt(by_key.get(c["key"])) for c in cols) + " | | |")
    lines += ["", f"Paper: {paper['text']} (stated in `{paper['config']}`)."]
    diffs = [f"{c['metric']} {c['difference']:+.2f}" for c in report["comparison"]
             if c["difference"] is not None]
    if diffs:
      lines.append(f"Ours minus paper: {', '.join(diffs)}.")
  else:
    lines += ["", "The config states no paper result."]
  lines += ["", f"std: {report['std']}."]
  return "\n".join(lines) + "\n"


def save_bar_plot(report: dict[str, Any], path: str) -> None:
  """Per metric: a bar per finished fold, the mean with its std, the paper as a black line."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  cols = report["columns"]
  finished = [r for r in report["folds"] if r["status"] == "finished"]
  paper = {c["metric"]: c["paper"] for c in report["comparison"]}
  fig = Figure(figsize=(max(5.0, 1.6 * len(cols) * (len(finished) + 2) / 3), 4.0), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  width = 0.8 / (len(finished) + 1)
  colors = [f"C{i % 10}" for i in range(len(finished))]
  for j, c in enumerate(cols):
    for i, r in enumerate(finished):
      v = r["values"][c["key"]]
      ax.bar(j + i * width, 0 if v is None else v, width, color=colors[i],
             label=f"fold {r['fold']}" if j == 0 else None)
    s = report["summary"][c["key"]]
    x = j + len(finished) * width
    if s["mean"] is not None:
      ax.bar(x, s["mean"], width, color="0.35", yerr=s["std"] or 0, capsize=3,
             label="mean ± std" if j == 0 else None)
    if c["key"] in paper:
      ax.hlines(paper[c["key"]], j - width / 2, x + width / 2, colors="black",
                linestyles="--", label="paper" if not any(
                    k in paper for k in [cc["key"] for cc in cols[:j]]) else None)
  ax.set_xticks([j + len(finished) * width / 2 for j in range(len(cols))],
                labels=[c["heading"] for c in cols])
  ax.set_ylabel("percent")
  name = os.path.basename(report["config"].partition(":")[0]) or "experiment"
  ax.set_title(f"{name}: {report['num_finished']} of {report['num_folds']} folds")
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  fig.tight_layout()
  io_utils.atomic_write(path, lambda f: fig.savefig(f, format="png"))


def write(report: dict[str, Any], workdir: str) -> dict[str, str]:
  """cv_report.json, .md and .png into workdir; -> their paths."""
  paths = {ext: os.path.join(workdir, f"{REPORT_NAME}.{ext}") for ext in ("json", "md", "png")}
  io_utils.write_json(paths["json"], report)
  text = markdown(report)
  io_utils.atomic_write(paths["md"], lambda f: f.write(text.encode("utf-8")))
  save_bar_plot(report, paths["png"])
  return paths
