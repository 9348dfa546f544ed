"""Metrics against hand-computed examples (and sklearn when it happens to be installed)."""
import json
import os
import stat

import numpy as np
import pytest

from hicmae_jax import io_utils, metrics

# Example A, 3 classes:
#   labels 0 0 0 1 1 2
#   preds  0 0 1 1 2 2
# confusion (rows true): [[2,1,0],[0,1,1],[0,0,1]]
# recall 2/3, 1/2, 1 -> UAR 13/18; accuracy 4/6.
# F1 = 2 tp / (predicted + true): 4/(2+3) = 0.8, 2/(2+2) = 0.5, 2/(2+1) = 2/3
# weighted F1 (support 3,2,1) = (2.4 + 1 + 2/3) / 6 = 61/90; macro F1 = (0.8+0.5+2/3)/3 = 59/90
A_LABELS = np.array([0, 0, 0, 1, 1, 2])
A_PREDS = np.array([0, 0, 1, 1, 2, 2])

# Example B, 4 classes, class 2 never occurs, class 3 is predicted but never true:
#   labels 0 0 1 1
#   preds  0 3 1 1
# recall: class 0 1/2, class 1 1 -> UAR over present classes = 3/4 (balanced accuracy).
# F1: class 0 2/(1+2) = 2/3, class 1 4/(2+2) = 1, class 3 0/(1+0) = 0, class 2 unseen.
# macro over seen {0,1,3} = 5/9; weighted (support 2,2) = (4/3 + 2)/4 = 5/6.
B_LABELS = np.array([0, 0, 1, 1])
B_PREDS = np.array([0, 3, 1, 1])


def test_confusion_matrix():
  np.testing.assert_array_equal(metrics.confusion_matrix(A_LABELS, A_PREDS, 3),
                                [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
  with pytest.raises(ValueError, match="outside"):
    metrics.confusion_matrix([0, 3], [0, 1], 3)


def test_classification_hand_examples():
  assert metrics.uar(A_LABELS, A_PREDS) == pytest.approx(13 / 18)
  assert metrics.war(A_LABELS, A_PREDS) == pytest.approx(4 / 6)
  assert metrics.weighted_f1(A_LABELS, A_PREDS) == pytest.approx(61 / 90)
  assert metrics.macro_f1(A_LABELS, A_PREDS) == pytest.approx(59 / 90)
  # Absent classes: UAR averages over the classes present in the labels only.
  assert metrics.uar(B_LABELS, B_PREDS, 4) == pytest.approx(3 / 4)
  assert metrics.macro_f1(B_LABELS, B_PREDS, 4) == pytest.approx(5 / 9)
  assert metrics.weighted_f1(B_LABELS, B_PREDS, 4) == pytest.approx(5 / 6)
  np.testing.assert_array_equal(metrics.per_class_recall(B_LABELS, B_PREDS, 4),
                                [0.5, 1.0, np.nan, np.nan])


def test_classification_report():
  # Logits whose argmax is A_PREDS.
  logits = np.eye(3)[A_PREDS] * 2.0 - 1.0
  r = metrics.classification_report(A_LABELS, logits, ["anger", "happy", "sad"])
  assert r["uar"] == pytest.approx(100 * 13 / 18)
  assert r["war"] == pytest.approx(100 * 4 / 6)
  assert r["weighted_f1"] == pytest.approx(100 * 61 / 90)
  assert r["macro_f1"] == pytest.approx(100 * 59 / 90)
  assert r["per_class_recall"] == pytest.approx({"anger": 200 / 3, "happy": 50.0, "sad": 100.0})
  assert r["support"] == {"anger": 3, "happy": 2, "sad": 1}
  assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
  json.dumps(r)   # plain Python types only
  r = metrics.classification_report(B_LABELS, np.eye(4)[B_PREDS], list("abcd"))
  assert r["per_class_recall"]["c"] is None


def test_against_sklearn_if_installed():
  skm = pytest.importorskip("sklearn.metrics", reason="optional cross-check with sklearn: "
                            "pip install scikit-learn")
  rng = np.random.default_rng(0)
  for _ in range(5):
    labels = rng.integers(0, 5, 200)
    preds = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 5, 200))
    assert metrics.uar(labels, preds) == pytest.approx(skm.balanced_accuracy_score(labels, preds))
    assert metrics.war(labels, preds) == pytest.approx(skm.accuracy_score(labels, preds))
    assert metrics.weighted_f1(labels, preds) == pytest.approx(
        skm.f1_score(labels, preds, average="weighted", zero_division=0))
    assert metrics.macro_f1(labels, preds) == pytest.approx(
        skm.f1_score(labels, preds, average="macro", zero_division=0))
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, preds, 5),
                                  skm.confusion_matrix(labels, preds, labels=range(5)))


def test_average_views():
  # Clip 5: views 0, 1; clip 7: views 0, 1, 2; last row is padding (clip 0) and is skipped.
  clip = np.array([7, 5, 7, 5, 7, 0])
  view = np.array([0, 0, 1, 1, 2, 0])
  probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [1.0, 0.0], [0.3, 0.7], [9.0, 9.0]],
                   np.float32)
  valid = np.array([True, True, True, True, True, False])
  ids, mean = metrics.average_views(clip, view, probs, valid)
  np.testing.assert_array_equal(ids, [5, 7])
  assert mean.dtype == np.float64
  # clip 5: (0.6 + 1.0)/2 = 0.8, (0.4 + 0)/2 = 0.2; clip 7: (0.2+0.4+0.3)/3 = 0.3, 0.7
  np.testing.assert_allclose(mean, [[0.8, 0.2], [0.3, 0.7]], rtol=1e-7)
  # The same (clip, view) twice among valid rows is an error, not a silent re-weighting.
  with pytest.raises(ValueError, match="more than once"):
    metrics.average_views([1, 1], [0, 0], probs[:2], [True, True])


def test_softmax64():
  p = metrics.softmax64(np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]], np.float32))
  assert p.dtype == np.float64
  np.testing.assert_allclose(p, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-7)


# Regression example: t = 1 2 3 4, p = 2 2 4 5.
# means 2.5, 3.25; dt = -1.5 -0.5 0.5 1.5; dp = -1.25 -1.25 0.75 1.75
# sum dt dp = 5.5, sum dt^2 = 5, sum dp^2 = 6.75 -> PCC = 5.5 / sqrt(33.75)
# CCC (ddof 1): 2 (5.5/3) / (5/3 + 6.75/3 + 0.75^2) = (11/3) / (215/48) = 176/215
#   (with ddof 0 it would be 2.75 / 3.5 = 0.7857: the two conventions differ here)
# |t - p| = 1 0 1 1 -> MAE 0.75, RMSE sqrt(3/4)
REG_T = np.array([1.0, 2.0, 3.0, 4.0])
REG_P = np.array([2.0, 2.0, 4.0, 5.0])


def test_regression_hand_example():
  np.testing.assert_allclose(metrics.pcc(REG_T, REG_P), [5.5 / np.sqrt(33.75)], rtol=1e-12)
  np.testing.assert_allclose(metrics.ccc(REG_T, REG_P), [176 / 215], rtol=1e-12)
  np.testing.assert_allclose(metrics.mae(REG_T, REG_P), [0.75], rtol=1e-12)
  np.testing.assert_allclose(metrics.rmse(REG_T, REG_P), [np.sqrt(0.75)], rtol=1e-12)
  # Perfect agreement: both 1; a constant offset keeps PCC 1 but lowers CCC.
  np.testing.assert_allclose(metrics.ccc(REG_T, REG_T), [1.0])
  assert metrics.pcc(REG_T, REG_T + 1)[0] == pytest.approx(1.0)
  assert metrics.ccc(REG_T, REG_T + 1)[0] < 1.0


def test_regression_report_per_dimension():
  targets = np.stack([REG_T, REG_T], axis=1)
  preds = np.stack([REG_P, REG_T], axis=1)
  r = metrics.regression_report(targets, preds, ["arousal", "valence"])
  assert r["per_dim"]["arousal"]["ccc"] == pytest.approx(100 * 176 / 215)
  assert r["per_dim"]["valence"]["ccc"] == pytest.approx(100.0)
  assert r["per_dim"]["arousal"]["mae"] == pytest.approx(0.75)
  assert r["ccc"] == pytest.approx((100 * 176 / 215 + 100) / 2)
  assert r["pcc"] == pytest.approx((100 * 5.5 / np.sqrt(33.75) + 100) / 2)
  assert r["rmse"] == pytest.approx(np.sqrt(0.75) / 2)
  json.dumps(r)


def test_regression_against_numpy_and_scipy():
  rng = np.random.default_rng(1)
  t = rng.normal(size=(50, 3))
  p = t + rng.normal(scale=0.5, size=(50, 3)) + 0.2
  want_pcc = [np.corrcoef(t[:, k], p[:, k])[0, 1] for k in range(3)]
  np.testing.assert_allclose(metrics.pcc(t, p), want_pcc, rtol=1e-10)
  cov = [np.cov(t[:, k], p[:, k], ddof=1) for k in range(3)]
  want_ccc = [2 * c[0, 1] / (c[0, 0] + c[1, 1] + (t[:, k].mean() - p[:, k].mean()) ** 2)
              for k, c in enumerate(cov)]
  np.testing.assert_allclose(metrics.ccc(t, p), want_ccc, rtol=1e-10)


def test_write_json_atomic(tmp_path):
  path = tmp_path / "sub" / "report.json"
  io_utils.write_json(path, {"a": np.float32(1.5), "b": np.arange(3), "c": np.int64(2)})
  assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": 2}
  io_utils.write_json(path, {"a": 2})
  assert json.loads(path.read_text()) == {"a": 2}
  assert [p.name for p in path.parent.iterdir()] == ["report.json"]   # no temp files left
  with pytest.raises(TypeError):
    io_utils.write_json(path, {"a": object()})
  assert json.loads(path.read_text()) == {"a": 2}   # a failed write keeps the old file
  assert [p.name for p in path.parent.iterdir()] == ["report.json"]
  assert not hasattr(metrics, "write_json")   # one implementation: io_utils


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_usual_permissions(tmp_path, umask):
  old = os.umask(umask)
  try:
    io_utils.write_json(tmp_path / "r.json", {"a": 1})
    metrics.save_confusion_matrix_png(np.eye(2, dtype=int), ["a", "b"], tmp_path / "cm.png")
  finally:
    os.umask(old)
  for name in ("r.json", "cm.png"):
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name


def test_confusion_matrix_png(tmp_path):
  path = tmp_path / "cm.png"
  metrics.save_confusion_matrix_png(np.array([[2, 1, 0], [0, 1, 1], [0, 0, 1]]),
                                    ["anger", "happy", "sad"], path, title="fold 1")
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
