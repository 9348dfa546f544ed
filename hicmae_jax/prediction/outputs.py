"""Prediction files: per input <name>.json (everything) and <name>.csv (one row per window),
and for the whole run summary.json / summary.csv (one row per input).

<name>.json: {input, checkpoint, task, names, names_source, options, fps, num_frames,
duration_seconds, face_choice (--face: mode, choice as_is / align, reason, the sampled
frames; faces/auto.py), face (the face step's report, or null), windows: [{window, start_frame,
end_frame, start_seconds, end_seconds, scores: {name: value}, top, top_score}], video:
{class, probability, probabilities: {name: mean}} (regression: video: {outputs: {name:
mean}})}. Scores are probabilities (classification) or outputs (regression).
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Sequence

from hicmae_jax import io_utils
from hicmae_jax.prediction.windows import Prediction


def video_result(pred: Prediction) -> dict[str, Any]:
  mean = pred.mean
  if pred.task == "classification":
    return {"class": pred.names[pred.top], "class_index": pred.top,
            "probability": float(mean[pred.top]),
            "probabilities": {n: float(v) for n, v in zip(pred.names, mean)}}
  return {"outputs": {n: float(v) for n, v in zip(pred.names, mean)}}


def to_dict(pred: Prediction, header: dict[str, Any]) -> dict[str, Any]:
  loaded = pred.loaded
  windows = []
  for row, scores in zip(pred.windows, pred.scores):
    top = int(scores.argmax())
    windows.append(dict(row, scores={n: float(v) for n, v in zip(pred.names, scores)},
                        top=pred.names[top], top_score=float(scores[top])))
  return {"input": os.path.abspath(loaded.source.path),
          "wav": os.path.abspath(loaded.source.wav) if loaded.source.wav else "",
          **header, "task": pred.task, "names": pred.names, "fps": loaded.fps,
          "num_frames": loaded.num_frames, "duration_seconds": round(loaded.duration, 4),
          "face_choice": loaded.face_choice,
          "face": loaded.face.report if loaded.face is not None else None,
          "windows": windows, "video": video_result(pred)}


def windows_csv(pred: Prediction) -> str:
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(["window", "start_seconds", "end_seconds", "start_frame", "end_frame"]
             + list(pred.names) + ["top"])
  for row, scores in zip(pred.windows, pred.scores):
    w.writerow([row["window"], row["start_seconds"], row["end_seconds"], row["start_frame"],
                row["end_frame"]] + [repr(float(v)) for v in scores]
               + [pred.names[int(scores.argmax())]])
  return out.getvalue()


def write(pred: Prediction, header: dict[str, Any], output_dir: str) -> dict[str, str]:
  """<output_dir>/<name>.json and .csv; -> their paths."""
  name = pred.loaded.source.name
  paths = {"json": os.path.join(output_dir, f"{name}.json"),
           "csv": os.path.join(output_dir, f"{name}.csv")}
  io_utils.write_json(paths["json"], to_dict(pred, header))
  text = windows_csv(pred)
  io_utils.atomic_write(paths["csv"], lambda f: f.write(text.encode("utf-8")))
  return paths


def write_summary(rows: Sequence[dict[str, Any]], names: Sequence[str], task: str,
                  output_dir: str) -> dict[str, str]:
  """summary.json and summary.csv: one row per input (its per-video result and files)."""
  paths = {"json": os.path.join(output_dir, "summary.json"),
           "csv": os.path.join(output_dir, "summary.csv")}
  io_utils.write_json(paths["json"], {"task": task, "names": list(names), "inputs": list(rows)})
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  key = "probabilities" if task == "classification" else "outputs"
  w.writerow(["input", "name", "windows", "duration_seconds"]
             + (["class", "probability"] if task == "classification" else []) + list(names))
  for r in rows:
    v = r["video"]
    w.writerow([r["input"], r["name"], r["num_windows"], r["duration_seconds"]]
               + ([v["class"], repr(v["probability"])] if task == "classification" else [])
               + [repr(v[key][n]) for n in names])
  text = out.getvalue()
  io_utils.atomic_write(paths["csv"], lambda f: f.write(text.encode("utf-8")))
  return paths
