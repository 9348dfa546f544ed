"""`python -m hicmae_jax.predict` as a function: every input read, scored window by window,
its files written; the summary of the run."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Sequence

from hicmae_jax.faces.options import FaceOptions
from hicmae_jax.prediction import inputs, model, outputs, windows

log = logging.getLogger(__name__)


def per_input_path(path: str, name: str, several: bool) -> str:
  """`path` itself for one input; with several, the input's name before the extension
  (timeline.png -> timeline_<name>.png)."""
  if not path or not several:
    return path
  base, ext = os.path.splitext(path)
  return f"{base}_{name}{ext}"


def _result_text(video: dict[str, Any], task: str) -> str:
  if video["status"] == "no_face":
    return "no face in any window: no result"
  if task == "classification":
    return f"{video['class']} ({video['probability']:.1%})"
  return ", ".join(f"{n} {v:.3f}" for n, v in video["outputs"].items())


def predict_files(*, checkpoint: str, output_dir: str, videos: Sequence[str] = (),
                  frames_dir: str = "", wav: str = "", step: int | None = None, config=None,
                  class_names: Sequence[str] = (), dataset: str = "",
                  face: FaceOptions | None = None, face_mode: str = "",
                  window_seconds: float = 0.0,
                  stride_seconds: float = 1.0, fps: float = 25.0, batch_size: int = 0,
                  timeline: str = "", annotate: str = "",
                  min_window_face_fraction: float = 0.5) -> dict[str, Any]:
  """Predicts on every input; writes <output_dir>/<name>.{json,csv}, summary.{json,csv} and
  the optional pictures; returns the summary. face_mode: the --face value (inputs.load). With
  face options, windows with the face in fewer than min_window_face_fraction of their frames
  are no_face (windows.py)."""
  t0 = time.time()
  sources = inputs.expand(videos, frames_dir, wav)
  predictor = model.load_predictor(checkpoint, step, config=config, class_names=class_names,
                                   dataset=dataset, batch_size=batch_size)
  window_seconds = window_seconds or windows.default_window_seconds(predictor)
  opts = windows.clip_options(predictor, window_seconds, stride_seconds, fps)
  header = {"checkpoint": predictor.source, "names_source": predictor.names_source,
            "options": dataclasses.asdict(opts),
            "face_options": face.to_dict() if face is not None else None}
  os.makedirs(output_dir, exist_ok=True)
  rows = []
  several = len(sources) > 1
  for k, source in enumerate(sources, start=1):
    t_file = time.time()
    log.info("[%d/%d] %s", k, len(sources), source.path)
    loaded = inputs.load(source, face, fps, face_mode)
    choice = {k: loaded.face_choice[k] for k in ("mode", "choice", "reason")}
    log.info("[%d/%d] --face=%s: %s (%s)", k, len(sources), choice["mode"], choice["choice"],
             choice["reason"])
    pred = windows.predict(predictor, loaded, opts, min_window_face_fraction)
    files = outputs.write(pred, header, output_dir)
    if timeline:
      from hicmae_jax.prediction import timeline as timeline_lib
      files["timeline"] = per_input_path(timeline, source.name, several)
      timeline_lib.save(pred, files["timeline"], num_mel_bins=predictor.model.audio_mel_bins)
    if annotate:
      from hicmae_jax.prediction import annotate as annotate_lib
      files["annotated"] = per_input_path(annotate, source.name, several)
      annotate_lib.write(pred, files["annotated"])
    video = outputs.video_result(pred)
    rows.append({"input": os.path.abspath(source.path), "name": source.name,
                 "num_windows": len(pred.windows),
                 "duration_seconds": round(loaded.duration, 4), "face_choice": choice,
                 "video": video, "files": files})
    log.info("[%d/%d] %s: %d windows of %.2f s (%d without a face) -> %s (%.1f s)", k,
             len(sources), source.name, len(pred.windows), window_seconds,
             video["windows_no_face"], _result_text(video, pred.task), time.time() - t_file)
  summary_files = outputs.write_summary(rows, predictor.names, predictor.task, output_dir)
  return {"inputs": len(rows), "task": predictor.task, "names": predictor.names,
          "window_seconds": window_seconds, "stride_seconds": stride_seconds,
          "results": [{"name": r["name"], **r["video"], "files": r["files"]} for r in rows],
          "summary": summary_files, "seconds": round(time.time() - t0, 1)}
