"""Prediction files: per input <name>.json (everything) and <name>.csv (one row per window),
and for the whole run summary.json / summary.csv (one row per input).

<name>.json: {input, checkpoint, task, names, names_source, options, fps, num_frames,
duration_seconds, face_choice (--face: mode, choice as_is / align, reason, the sampled
frames; faces/auto.py), face (the face step's report, or null), shots (with --face: [{shot,
start/end frame and second}]), windows: [{window, start_frame, end_frame, start_seconds,
end_seconds, face_fraction, status ("ok" | "no_face"), scores: {name: value}, top,
top_score}], video: {class, class_index, probability, probabilities: {name: mean},
windows_used, windows_no_face} (regression: video: {outputs: {name: mean}, windows_used,
windows_no_face})}. Scores are probabilities (classification) or outputs (regression); a
no_face window's scores, top and top_score are null, and so is the video's result when no
window has a face (status "no_face").
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Sequence

from hicmae_jax import io_utils
from hicmae_jax.prediction.windows import Prediction


def video_result(pred: Prediction) -> dict[str, Any]:
  """The per-video result over the used windows, with the counts of used and no_face ones."""
  mean, used = pred.mean, pred.used
  counts = {"windows_used": int(used.sum()), "windows_no_face": int((~used).sum()),
            "status": "ok" if mean is not None else "no_face"}
  if mean is None:
    if pred.task == "classification":
      return {"class": None, "class_index": None, "probability": None, "probabilities": None,
              **counts}
    return {"outputs": None, **counts}
  if pred.task == "classification":
    return {"class": pred.names[pred.top], "class_index": pred.top,
            "probability": float(mean[pred.top]),
            "probabilities": {n: float(v) for n, v in zip(pred.names, mean)}, **counts}
  return {"outputs": {n: float(v) for n, v in zip(pred.names, mean)}, **counts}


def _window_scores(row: dict[str, Any], scores, names: Sequence[str]) -> dict[str, Any]:
  if row.get("status", "ok") != "ok":
    return {"scores": None, "top": None, "top_score": None}
  top = int(scores.argmax())
  return {"scores": {n: float(v) for n, v in zip(names, scores)}, "top": names[top],
          "top_score": float(scores[top])}


def to_dict(pred: Prediction, header: dict[str, Any]) -> dict[str, Any]:
  loaded = pred.loaded
  windows = [dict(row, **_window_scores(row, scores, pred.names))
             for row, scores in zip(pred.windows, pred.scores)]
  shots = None
  if loaded.face is not None:
    shots = [dict(s, start_seconds=round(s["start_frame"] / loaded.fps, 4),
                  end_seconds=round(s["end_frame"] / loaded.fps, 4))
             for s in loaded.face.report.get("shots", [])]
  return {"input": os.path.abspath(loaded.source.path),
          "wav": os.path.abspath(loaded.source.wav) if loaded.source.wav else "",
          **header, "task": pred.task, "names": pred.names, "fps": loaded.fps,
          "num_frames": loaded.num_frames, "duration_seconds": round(loaded.duration, 4),
          "face_choice": loaded.face_choice,
          "face": loaded.face.report if loaded.face is not None else None,
          "shots": shots, "windows": windows, "video": video_result(pred)}


def windows_csv(pred: Prediction) -> str:
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(["window", "start_seconds", "end_seconds", "start_frame", "end_frame",
              "face_fraction", "status"] + list(pred.names) + ["top"])
  for row, scores in zip(pred.windows, pred.scores):
    ok = row.get("status", "ok") == "ok"
    w.writerow([row["window"], row["start_seconds"], row["end_seconds"], row["start_frame"],
                row["end_frame"], row.get("face_fraction", 1.0), row.get("status", "ok")]
               + ([repr(float(v)) for v in scores] if ok else [""] * len(scores))
               + [pred.names[int(scores.argmax())] if ok else ""])
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
  w.writerow(["input", "name", "windows", "windows_no_face", "duration_seconds"]
             + (["class", "probability"] if task == "classification" else []) + list(names))
  for r in rows:
    v = r["video"]
    if v.get(key) is None:  # no window with a face: no class
      values = [""] * ((2 if task == "classification" else 0) + len(names))
    else:
      values = (([v["class"], repr(v["probability"])] if task == "classification" else [])
                + [repr(v[key][n]) for n in names])
    w.writerow([r["input"], r["name"], r["num_windows"], v.get("windows_no_face", 0),
                r["duration_seconds"]] + values)
  text = out.getvalue()
  io_utils.atomic_write(paths["csv"], lambda f: f.write(text.encode("utf-8")))
  return paths
