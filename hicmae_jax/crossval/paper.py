"""The paper's number that an experiment config states in its docstring, e.g.

  Paper result (HiCMAE-B, audio+video): UAR 84.91, WAR 84.89 (averaged over 5 folds).
  Paper result (HiCMAE-B, audio+video): valence PCC 69.23, CCC 64.81.

-> {"model": "HiCMAE-B, audio+video", "text": "UAR 84.91, WAR 84.89 (averaged over 5
folds)", "values": [{"metric": "uar", "dimension": "", "value": 84.91}, ...]}. A qualifier
before a metric (valence) names a regression dimension and holds for the metrics after it.
The docstring is the configs' one statement of the number, so it is read, not copied.
"""
from __future__ import annotations

import ast
import os
import re

_LINE = re.compile(r"Paper result \(([^)]*)\):\s*(.+)")
_METRICS = {"UAR": "uar", "WAR": "war", "F1": "weighted_f1", "PCC": "pcc", "CCC": "ccc"}
_PAIR = re.compile(r"(?:([A-Za-z]+)\s+)?(UAR|WAR|F1|PCC|CCC)\s+(\d+(?:\.\d+)?)")


def paper_result(config_spec: str) -> dict | None:
  """The config file's paper result (config_spec: `path[:arg]`), or None when it states none."""
  path = config_spec.partition(":")[0]
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  m = _LINE.search(doc)
  if not m:
    return None
  text = m.group(2).strip()
  body = text.split("(")[0]  # the numbers; a trailing remark in parentheses is kept in text
  values, qualifier = [], ""
  for q, metric, value in _PAIR.findall(body):
    if q and q.upper() not in _METRICS and q.lower() not in ("weighted", "macro"):
      qualifier = q.lower()
    values.append({"metric": _METRICS[metric], "dimension": qualifier, "value": float(value)})
  return {"model": m.group(1), "text": text.rstrip("."), "values": values,
          "config": os.path.abspath(path)}
