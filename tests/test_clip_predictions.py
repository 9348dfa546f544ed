"""Per-clip predictions: a fine-tuning run's final test and the eval binary write every clip's
merged scores, and the metrics recomputed from the file equal results.json."""
import csv
import json
import os

import numpy as np
import pytest

from configs import test_pretrain
from hicmae_jax import clip_predictions, eval_main, train
from hicmae_jax.data.format import record_index, split_reader

# The report values a predictions file must give back exactly.
METRIC_KEYS = ("uar", "war", "weighted_f1", "macro_f1", "per_class_recall", "support",
               "confusion_matrix", "class_names", "num_samples")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A 2-step fine-tuning of the test model on synthetic data (with val and test splits)."""
  root = tmp_path_factory.mktemp("preds")
  config = test_pretrain.get_config("finetune")
  config.data.synthetic_dir = str(root / "synthetic")
  config.num_train_steps = 2
  config.eval_every_epochs = 100  # validation only at the end
  workdir = str(root / "ft")
  results = train.run(config, workdir)
  return config, workdir, results


@pytest.mark.slow
def test_final_test_writes_predictions_that_give_the_results_back(run):
  config, workdir, results = run
  path = os.path.join(workdir, clip_predictions.FILENAME)
  assert results["test"]["predictions_file"] == path
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  again = clip_predictions.report_from_file(path)
  for key in METRIC_KEYS:
    assert again[key] == on_disk["test"][key], key
  # One row per clip, with the split's own clip ids and labels, in clip_index order.
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  clips = list(split_reader.iterate_clips(config.data.test_dir))
  assert [r["clip_id"] for r in rows] == [c.clip_id for c in clips]
  assert [int(r["label"]) for r in rows] == [c.label for c in clips]
  assert [int(r["clip_index"]) for r in rows] == list(range(len(clips)))
  for r in rows:
    scores = [float(r[f"score_{n}"]) for n in again["class_names"]]
    assert sum(scores) == pytest.approx(1.0, abs=1e-12)
    assert int(r["predicted"]) == int(np.argmax(scores))
    assert r["predicted_name"] == again["class_names"][int(r["predicted"])]


@pytest.mark.slow
def test_eval_binary_writes_predictions_with_per_view_scores(run, tmp_path):
  config, workdir, _ = run
  results = str(tmp_path / "eval.json")
  report = eval_main.evaluate_checkpoint(config, workdir, results_path=results,
                                         per_view_scores=True)
  path = str(tmp_path / "eval_predictions.csv")
  assert report["predictions_file"] == path and os.path.exists(path)
  on_disk = json.load(open(results))
  preds = clip_predictions.read_csv(path)
  again = clip_predictions.metrics_report(preds)
  for key in METRIC_KEYS:
    assert again[key] == on_disk[key], key
  # 2 segments x 2 crops: the merged score is the mean of the four views' probabilities.
  assert preds.per_view.shape == (len(preds), 4, len(preds.names))
  np.testing.assert_allclose(preds.per_view.mean(axis=1), preds.scores, rtol=0, atol=1e-15)
  # The same weights as the run's final test (the last step was selected).
  run_preds = clip_predictions.read_csv(os.path.join(workdir, clip_predictions.FILENAME))
  np.testing.assert_allclose(preds.scores, run_preds.scores, rtol=0, atol=1e-6)


def test_views_merge_per_clip_and_round_trip_exactly(tmp_path):
  # Clip 5 has two views, clip 2 one, a padding row is ignored; labels from the first row.
  probs = np.array([[0.2, 0.8], [0.6, 0.4], [1 / 3, 2 / 3], [0.5, 0.5]])
  preds = clip_predictions.from_views(
      "classification", ["a", "b"], clip_index=[5, 5, 2, -1], view_index=[0, 1, 0, -1],
      valid=[True, True, True, False], scores=probs, labels=[1, 1, 0, 0],
      clip_ids=[f"c{i}" for i in range(6)])
  assert preds.clip_ids == ["c2", "c5"] and list(preds.labels) == [0, 1]
  np.testing.assert_allclose(preds.scores, [[1 / 3, 2 / 3], [0.4, 0.6]], rtol=0, atol=1e-15)
  assert np.isnan(preds.per_view[0, 1]).all()
  path = str(tmp_path / "p.csv")
  clip_predictions.write_csv(path, preds, per_view=True)
  back = clip_predictions.read_csv(path)
  np.testing.assert_array_equal(back.scores, preds.scores)  # bit-exact floats
  np.testing.assert_array_equal(back.per_view, preds.per_view)
  assert back.clip_ids == preds.clip_ids and list(back.clip_index) == [2, 5]
  # Regression: targets and the mean outputs.
  reg = clip_predictions.from_views(
      "regression", ["arousal", "valence"], clip_index=[0, 0, 1], view_index=[0, 1, 0],
      valid=[True] * 3, scores=[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
      targets=[[0.5, 0.5], [0.5, 0.5], [1.0, 2.0]])
  clip_predictions.write_csv(path, reg)
  back = clip_predictions.read_csv(path)
  assert back.task == "regression" and back.names == ["arousal", "valence"]
  np.testing.assert_array_equal(back.scores, [[2.0, 3.0], [5.0, 6.0]])
  np.testing.assert_array_equal(back.targets, [[0.5, 0.5], [1.0, 2.0]])
  assert back.clip_ids == ["#0", "#1"]


@pytest.mark.slow
def test_record_index_reads_ids_without_decoding(run):
  config, _, _ = run
  ids = record_index.clip_ids(config.data.test_dir)
  assert ids == [c.clip_id for c in split_reader.iterate_clips(config.data.test_dir)]
