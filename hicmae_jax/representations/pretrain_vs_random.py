"""The learning check: does pre-training give better features than the untrained model?

On the synthetic data (`data/prepare/synthetic.py`): pre-train as the config says, export the clip
features of the pre-trained model and of the same model at its initialisation (the exact
starting point of that pre-training), train the same linear probe on each (same clips, steps,
learning rate, seed) and compare test UAR/WAR.

The synthetic classes are easy enough that a probe with every training label separates them
even on random features, so the check's criterion is label efficiency: a `check.shots`-shot
probe (that many labelled clips per class, the same clips for both models), averaged over
`check.draws` draws of those clips; the pre-trained mean test UAR must win by
`check.min_margin` points. The all-labels probe is reported too, as is the leave-one-out
5-NN accuracy of the test features. Also measures the masked reconstruction error of both
models on the same test clips and masks, and draws the pictures: the reconstruction figure and
a t-SNE of both models' test features.

Writes into the workdir: pretrain/ (the run), features/{pretrained,random}_{train,test}/,
results.json, reconstruction.png, embeddings.png.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hicmae_jax import io_utils, paths, train
from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.data.format import schema, split_reader
from hicmae_jax.data.pipeline import windows
from hicmae_jax.models import params as params_lib
from hicmae_jax.models.hicmae import PretrainModel
from hicmae_jax.representations import embedding, features, figures, probe, reconstruction

log = logging.getLogger(__name__)


def _reconstruction_errors(weights: dict, views, frame_difference: bool, seed: int
                           ) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
  """Mean masked-patch MSE of each {name: Weights} on the same inputs and masks; also the
  first model's full output (for the figure)."""
  video = np.stack([v for _, v, _ in views])
  audio = np.stack([a for _, _, a in views])
  errors, first = {}, None
  fn = None
  for name, w in weights.items():
    if fn is None:
      model = nnx.eval_shape(lambda: PretrainModel(w.model, rngs=nnx.Rngs(0)))
      view = params_lib.ParamsView(model)
      fn = reconstruction.make_reconstruct_fn(view, frame_difference=frame_difference)
    params = {k: jnp.asarray(v) for k, v in w.params.items()}
    out = jax.device_get(fn(params, video, audio, jax.random.key(seed)))
    errors[name] = {"video": float(np.mean(out["loss_video"])),
                    "audio": float(np.mean(out["loss_audio"]))}
    first = first or out
  return errors, first


def run(config, workdir: str) -> dict[str, Any]:
  """Runs the check as `config` says (a pre-training config with `probe` and `check`
  sections, see configs/learning_check.py); returns the results (also results.json), or
  {"preempted_at_step": N} when the pre-training was stopped (run again to resume it)."""
  t0 = time.time()
  if not config.data.synthetic_dir:
    raise ValueError("the learning check runs on the synthetic data: set "
                     "config.data.synthetic_dir")
  paths.makedirs(workdir)  # local or gs://...
  times = {}
  # 1. pre-training (resumes, or does nothing, when the run is already there)
  pre_dir = os.path.join(workdir, "pretrain")
  pretrained = train.run(config, pre_dir)
  if "preempted_at_step" in pretrained:
    return pretrained
  times["pretrain_s"] = round(time.time() - t0, 1)
  weights = {"pretrained": weights_lib.load_weights(pre_dir),
             "random": weights_lib.random_weights(config.model, config.seed)}
  # 2. features of both models, inputs built once
  t1 = time.time()
  sets = _features(config, workdir, weights)
  times["features_s"] = round(time.time() - t1, 1)
  # 3. the same probes on each
  t2 = time.time()
  results = _probes(config, sets)
  times["probe_s"] = round(time.time() - t2, 1)
  # 4. reconstruction error on the test clips (same masks) and the pictures
  t3 = time.time()
  recon_errors = _pictures(config, workdir, weights, sets, results)
  times["pictures_s"] = round(time.time() - t3, 1)

  c = config.check
  pre, rnd = results["pretrained"], results["random"]
  summary = _summary(config, results, weights["pretrained"].source["step"],
                     len(sets["pretrained"]["test"].class_names))
  summary.update(test_reconstruction_mse=recon_errors,
                 times=dict(times, total_s=round(time.time() - t0, 1)))
  full = {"summary": summary, "pretrained": pre, "random": rnd}
  io_utils.write_json(os.path.join(workdir, "results.json"), full)
  log.info("learning check: %d-shot probe test UAR pre-trained %.1f vs random %.1f (margin "
           "%.1f, needed %.1f): %s", c.shots, pre["few_shot"]["test_uar_mean"],
           rnd["few_shot"]["test_uar_mean"], summary["few_shot_uar_margin"], c.min_margin,
           "passed" if summary["passed"] else "FAILED")
  return full


def _features(config, workdir: str, weights: dict) -> dict[str, dict[str, Any]]:
  """{model name: {split: FeatureSet}} for the train and test splits, also written to
  workdir/features/<name>_<split>/."""
  opts = windows.ClipOptions.for_model(config.model, sampling_rate=config.data.sampling_rate)
  extractors = {name: features.FeatureExtractor(w) for name, w in weights.items()}
  sets: dict[str, dict[str, features.FeatureSet]] = {name: {} for name in weights}
  for split in ("train", "test"):
    split_dir = os.path.join(config.data.synthetic_dir, split)
    info_names = schema.DatasetInfo.load(split_dir).class_names
    arrays, rows = windows.apply(extractors, split_reader.iterate_clips(split_dir), opts,
                             batch_size=config.eval_batch_size)
    for name, w in weights.items():
      out_dir = os.path.join(workdir, "features", f"{name}_{split}")
      features.write_features(out_dir, arrays[name], rows, {
          "kind": w.kind, "weights": {k: v for k, v in w.source.items() if k != "config"},
          "input": {"split_dir": os.path.abspath(split_dir)}, "class_names": info_names,
          "model": w.model.to_dict(), "num_clips": len({r["clip_id"] for r in rows})})
      sets[name][split] = features.load_features(out_dir)
  return sets


def _probes(config, sets: dict) -> dict[str, Any]:
  """The same probes on each model's features: all training labels, and few-shot (the same
  labelled clips for both models in each draw), where the features have to carry the
  classes."""
  p, c = config.probe, config.check
  kw = dict(steps=p.steps, learning_rate=p.learning_rate, weight_decay=p.weight_decay,
            batch_size=p.batch_size)
  results: dict[str, Any] = {}
  for name, by_split in sets.items():
    train_set, test_set = by_split["train"], by_split["test"]
    full = probe.run_probe(train_set, {"test": test_set}, seed=p.seed, train_per_class=0, **kw)
    draws = [probe.run_probe(train_set, {"test": test_set}, seed=p.seed + d,
                             train_per_class=c.shots, **kw)["test"]
             for d in range(c.draws)]
    uars = np.array([r["uar"] for r in draws])
    results[name] = {
        "all_labels": full,
        "few_shot": {"per_class": c.shots, "draws": c.draws,
                     "test_uar": [round(float(u), 2) for u in uars],
                     "test_war": [round(float(r["war"]), 2) for r in draws],
                     "test_uar_mean": float(uars.mean()), "test_uar_std": float(uars.std()),
                     "test_war_mean": float(np.mean([r["war"] for r in draws]))}}
  return results


def _pictures(config, workdir: str, weights: dict, sets: dict, results: dict) -> dict:
  """Masked-reconstruction error of both models on the same test clips and masks (returned),
  reconstruction.png and embeddings.png; adds test_knn5_accuracy to `results`."""
  c = config.check
  pretrain_step = weights["pretrained"].source["step"]
  opts = windows.ClipOptions.for_model(config.model, sampling_rate=config.data.sampling_rate)
  test_dir = os.path.join(config.data.synthetic_dir, "test")
  views = list(itertools.islice((v for clip in split_reader.iterate_clips(test_dir)
                                 for v in windows.clip_views(clip, opts)), c.recon_eval_clips))
  recon_errors, out = _reconstruction_errors(
      {"pretrained": weights["pretrained"], "random": weights["random"]}, views,
      config.loss.frame_difference, config.seed)
  shown = {k: v[:c.figure_clips] for k, v in out.items()}
  fig = reconstruction.reconstruction_figure(shown, clip_ids=[r["clip_id"] for r, _, _ in views],
                                max_frames=c.figure_frames,
                                title=f"pre-trained {pretrain_step} steps, test clips")
  figures.save_figure(fig, os.path.join(workdir, "reconstruction.png"))
  panels = []
  for name, title in (("random", "random initialisation"),
                      ("pretrained", f"pre-trained ({pretrain_step} steps)")):
    fs = sets[name]["test"]
    pts, axis = embedding.embed(fs.features, method=c.embedding_method, seed=config.seed)
    knn = 100 * embedding.knn_accuracy(fs.features, fs.labels, 5)
    results[name]["test_knn5_accuracy"] = knn
    few = results[name]["few_shot"]
    panels.append({"points": pts, "labels": fs.labels, "axis": axis,
                   "title": f"{title}\n{c.shots}-shot probe UAR {few['test_uar_mean']:.1f}%, "
                            f"5-NN acc. {knn:.1f}%"})
  fig = embedding.embedding_figure(panels, sets["pretrained"]["test"].class_names,
                           title="test-clip features (synthetic data)")
  figures.save_figure(fig, os.path.join(workdir, "embeddings.png"))
  return recon_errors


def _summary(config, results: dict, pretrain_step: int, num_classes: int) -> dict[str, Any]:
  """The headline numbers and the verdict: the few-shot UAR margin against check.min_margin."""
  p, c = config.probe, config.check
  pre, rnd = results["pretrained"], results["random"]
  margin = pre["few_shot"]["test_uar_mean"] - rnd["few_shot"]["test_uar_mean"]
  return {
      "pretrain_steps": pretrain_step,
      "few_shot_per_class": c.shots, "few_shot_draws": c.draws,
      "few_shot_test_uar": {n: round(r["few_shot"]["test_uar_mean"], 2)
                            for n, r in results.items()},
      "few_shot_test_war": {n: round(r["few_shot"]["test_war_mean"], 2)
                            for n, r in results.items()},
      "all_labels_test_uar": {n: round(r["all_labels"]["test"]["uar"], 2)
                              for n, r in results.items()},
      "all_labels_test_war": {n: round(r["all_labels"]["test"]["war"], 2)
                              for n, r in results.items()},
      "test_knn5_accuracy": {n: round(r["test_knn5_accuracy"], 2) for n, r in results.items()},
      "few_shot_uar_margin": round(margin, 2),
      "min_margin": c.min_margin,
      "passed": bool(margin >= c.min_margin),
      "chance_uar": 100.0 / num_classes,
      "probe": dict(p), "num_test_clips": pre["all_labels"]["test"]["num_clips"],
      "num_train_clips": pre["all_labels"]["settings"]["train_clips"],
  }
