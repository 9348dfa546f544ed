"""python -m hicmae_jax.tools.export: the fixtures' tiny original checkpoints (.pth) as a
safetensors folder (bit-identical round trip, model card, from_pretrained, predict --model), a
jax.export artifact run in a process that does not import hicmae_jax, an ONNX file checked
with ONNX Runtime; and the bad inputs the issue lists, each with its one-line error."""
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import hicmae_jax
from hicmae_jax.checkpoints import safetensors_io, weights as weights_lib
from hicmae_jax.data.prepare import synthetic
from hicmae_jax.models.sizes import model_config_for_tests
from hicmae_jax.prediction import model as prediction_model, runner
from hicmae_jax.representations import features
from hicmae_jax.sharing import exporter, pretrained, stablehlo
from tests.test_cli_errors import assert_one_error_line, run_binary

NAMES = ["anger", "calm", "joy", "fear", "surprise"]  # the tiny fine-tuned fixture: 5 classes
HINT = model_config_for_tests(num_classes=5)  # what the bare fixture .pth files do not record


def _inputs(batch, seed=0):
  """uint8 frames and a normalised fbank of the fixtures' geometry."""
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (batch, 16, 32, 32, 3), dtype=np.uint8),
          rng.standard_normal((batch, 64, 32)).astype(np.float32))


def _reference(weights, outputs=("logits", "feature")):
  """Our own jitted forward of the weights (the exports must give its numbers)."""
  view, params = weights_lib.bind(weights)
  fn = jax.jit(pretrained.forward(view, outputs))
  return lambda video, audio: [np.asarray(x) for x in fn(params, video, audio)]


@pytest.fixture(scope="module")
def finetuned(data_dir):
  return str(data_dir / "finetune_tiny.pth")


@pytest.fixture(scope="module")
def folder(finetuned, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("export") / "finetune_tiny")
  summary = exporter.export_model(checkpoint=finetuned, output=out, format="safetensors",
                                  config=HINT, class_names=NAMES, for_hub=True)
  assert summary["kind"] == "finetune" and summary["names"] == NAMES
  return out


def test_safetensors_round_trip_is_bit_identical(finetuned, folder):
  weights = weights_lib.load_weights(finetuned, model_hint=HINT)
  stored = load_file(os.path.join(folder, "model.safetensors"))  # any safetensors reader
  assert sorted(stored) == sorted(weights.params)
  for name, value in weights.params.items():
    assert stored[name].dtype == value.dtype and np.array_equal(stored[name], value), name
  model = hicmae_jax.from_pretrained(folder)
  assert model.names == NAMES and model.outputs == ("logits", "feature")
  video, audio = _inputs(3)
  out = model(video, audio)
  want = _reference(weights)(video, audio)
  assert np.array_equal(out["logits"], want[0]) and np.array_equal(out["feature"], want[1])
  # The nnx model itself is there too, weights in.
  direct = model.model(video, audio, deterministic=True)["logits"]
  np.testing.assert_allclose(np.asarray(direct), want[0], rtol=0, atol=1e-6)


def test_config_and_model_card(folder):
  config = json.load(open(os.path.join(folder, "config.json")))
  assert config["format"] == "hicmae_jax" and config["kind"] == "finetune"
  assert config["class_names"] == NAMES and config["model"]["num_classes"] == 5
  assert config["weights"]["sha256"] == safetensors_io.sha256_of(
      os.path.join(folder, "model.safetensors"))
  card = open(os.path.join(folder, "README.md")).read()
  assert card.startswith("---\nlibrary_name: hicmae_jax\nlicense: mit\n")  # --for_hub
  assert f"{config['weights']['num_values']:,} parameters" in card
  assert "Information Fusion" in card and "@article{sun2024hicmae" in card
  assert "test results: not recorded" in card  # a bare .pth has no results.json
  assert "`anger`" in card


def test_predict_reads_an_exported_folder(finetuned, folder, tmp_path):
  predictor = prediction_model.load_predictor(folder)
  assert predictor.names == NAMES and predictor.names_source == "the model folder's config.json"
  frames, audio = synthetic.render_clip(1, 4, np.random.default_rng(0), frame_size=64,
                                        num_frames=75)
  video = str(tmp_path / "talk.mp4")
  synthetic.write_mp4(video, frames, audio)
  summary = runner.predict_files(checkpoint=folder, output_dir=str(tmp_path / "out"),
                                 videos=[video], batch_size=2)
  assert summary["names"] == NAMES and summary["inputs"] == 1
  # The same scores as the original .pth read directly.
  experiment = ml_collections.ConfigDict({"model": HINT, "data": {"sampling_rate": 4},
                                          "eval_batch_size": 2})
  original = runner.predict_files(checkpoint=finetuned, output_dir=str(tmp_path / "pth"),
                                  videos=[video], config=experiment, class_names=NAMES)
  assert summary["results"][0]["probabilities"] == original["results"][0]["probabilities"]


def test_stablehlo_runs_without_hicmae_jax(finetuned, tmp_path):
  weights = weights_lib.load_weights(finetuned, model_hint=HINT)
  out = str(tmp_path / "stablehlo")
  summary = exporter.export_model(checkpoint=finetuned, output=out, format="stablehlo",
                                  config=HINT, platforms=["cpu", "cuda", "tpu"])
  assert summary["outputs"] == ["logits", "feature"]
  meta = json.load(open(os.path.join(out, "model.stablehlo.json")))
  assert meta["jax_version"] == jax.__version__ and meta["platforms"] == ["cpu", "cuda", "tpu"]
  assert meta["inputs"][0]["shape"] == ["b", 16, 32, 32, 3]
  assert meta["inputs"][0]["dtype"] == "uint8" and meta["outputs"][0]["shape"] == ["b", 5]
  reference = _reference(weights)
  arrays = {}
  for batch in (1, 4):
    video, audio = _inputs(batch, seed=batch)
    arrays.update({f"video{batch}": video, f"audio{batch}": audio})
  np.savez(tmp_path / "inputs.npz", **arrays)
  script = f"""
import sys, numpy as np, jax
exported = jax.export.deserialize(bytearray(open({out!r} + "/model.stablehlo", "rb").read()))
x = np.load({str(tmp_path / 'inputs.npz')!r})
out = {{}}
for b in (1, 4):
  logits, feature = exported.call(x[f"video{{b}}"], x[f"audio{{b}}"])
  out[f"logits{{b}}"], out[f"feature{{b}}"] = np.asarray(logits), np.asarray(feature)
np.savez({str(tmp_path / 'outputs.npz')!r}, **out)
assert not [m for m in sys.modules if m.startswith("hicmae_jax")]
"""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  done = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True,
                        text=True, timeout=300, env=dict(env, JAX_PLATFORMS="cpu"))
  assert done.returncode == 0, done.stderr[-3000:]
  got = np.load(tmp_path / "outputs.npz")
  for batch in (1, 4):
    logits, feature = reference(arrays[f"video{batch}"], arrays[f"audio{batch}"])
    np.testing.assert_allclose(got[f"logits{batch}"], logits, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got[f"feature{batch}"], feature, rtol=0, atol=1e-6)


def test_stablehlo_from_another_jax_is_refused(finetuned, tmp_path):
  out = str(tmp_path / "stablehlo")
  exporter.export_model(checkpoint=finetuned, output=out, format="stablehlo", config=HINT)
  exported, _ = stablehlo.load(out)
  assert exported.in_avals[0].dtype == np.uint8
  meta_path = os.path.join(out, "model.stablehlo.json")
  meta = json.load(open(meta_path))
  meta.update(jax_version="0.4.14", calling_convention_version=6)
  json.dump(meta, open(meta_path, "w"))
  with pytest.raises(ValueError, match=r"model.stablehlo was exported by JAX 0.4.14 .* export "
                     r"it again with this JAX, or run it with jax==0.4.14"):
    stablehlo.load(out)


def test_pretraining_checkpoint_exports_its_encoders(data_dir, tmp_path):
  pth = str(data_dir / "pretrain_tiny.pth")
  hint = model_config_for_tests()
  out = str(tmp_path / "pretrain")
  exporter.export_model(checkpoint=pth, output=out, format="safetensors", config=hint)
  weights = weights_lib.load_weights(pth, model_hint=hint)
  model = hicmae_jax.from_pretrained(out)
  assert model.outputs == ("feature",) and model.names == []
  assert "no classifier" in open(os.path.join(out, "README.md")).read()
  video, audio = _inputs(2)
  want = features.FeatureExtractor(weights)(video, audio)["feature"]
  assert np.array_equal(model(video, audio)["feature"], want)
  # the encoders as a StableHLO artifact: the same features without the model code
  artifact = str(tmp_path / "pretrain_stablehlo")
  summary = exporter.export_model(checkpoint=pth, output=artifact, format="stablehlo",
                                  config=hint)
  assert summary["outputs"] == ["feature"]
  exported, _ = stablehlo.load(artifact)
  (got,) = exported.call(video, audio)
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-6)
  with pytest.raises(ValueError, match="pre.*no classifier, so no logits.*--outputs=feature"):
    exporter.export_model(checkpoint=out, output=str(tmp_path / "x"), format="stablehlo",
                          outputs=["logits"])
  assert not os.path.exists(tmp_path / "x")


def test_folder_without_config_json(folder, tmp_path):
  bare = tmp_path / "bare"
  bare.mkdir()
  os.link(os.path.join(folder, "model.safetensors"), bare / "model.safetensors")
  with pytest.raises(ValueError, match=r"has no config.json: it is not an exported model"):
    hicmae_jax.from_pretrained(str(bare))
  with pytest.raises(ValueError, match=r"has no config.json"):
    prediction_model.load_predictor(str(bare))  # what predict --model and --checkpoint run


def _copy(folder, to):
  os.makedirs(to)
  for name in os.listdir(folder):
    with open(os.path.join(folder, name), "rb") as src, open(os.path.join(to, name), "wb") as d:
      d.write(src.read())
  return to


def test_tampered_safetensors(folder, tmp_path):
  truncated = _copy(folder, str(tmp_path / "truncated"))
  path = os.path.join(truncated, "model.safetensors")
  os.truncate(path, os.path.getsize(path) - 100)
  with pytest.raises(ValueError, match=r"model.safetensors is damaged .*copy the folder again"):
    hicmae_jax.from_pretrained(truncated)
  # A tensor of another shape: the recorded SHA-256 no longer matches ...
  reshaped = _copy(folder, str(tmp_path / "reshaped"))
  path = os.path.join(reshaped, "model.safetensors")
  params = load_file(path)
  params["head.kernel"] = np.zeros((128, 4), np.float32)
  save_file(params, path)
  with pytest.raises(ValueError, match=r"does not match the SHA-256 that config.json records"):
    hicmae_jax.from_pretrained(reshaped)
  # ... and without the record, the model says which tensor does not fit.
  config = json.load(open(os.path.join(reshaped, "config.json")))
  del config["weights"]["sha256"]
  json.dump(config, open(os.path.join(reshaped, "config.json"), "w"))
  with pytest.raises(ValueError, match=r"head.kernel: checkpoint \(128, 4\), model \(128, 5\)"):
    hicmae_jax.from_pretrained(reshaped)


def test_cli_errors_are_one_line(folder, data_dir, tmp_path):
  encoders = str(tmp_path / "pretrain")
  exporter.export_model(checkpoint=str(data_dir / "pretrain_tiny.pth"), output=encoders,
                        format="safetensors", config=model_config_for_tests())
  done = run_binary("hicmae_jax.tools.export", f"--checkpoint={encoders}", "--format=onnx",
                    "--outputs=logits", f"--output={tmp_path}/o", cwd=str(tmp_path))
  assert_one_error_line(done, "is a pretrain checkpoint: it has no classifier")
  assert not os.path.exists(tmp_path / "o")
  done = run_binary("hicmae_jax.predict", f"--model={tmp_path}", f"--output_dir={tmp_path}/p",
                    "--video=x.mp4", cwd=str(tmp_path))
  assert_one_error_line(done, f"{tmp_path} has no config.json")
  done = run_binary("hicmae_jax.tools.export", f"--checkpoint={folder}", "--format=safetensors",
                    f"--output={folder}", cwd=str(tmp_path))
  assert_one_error_line(done, "exists and is not empty", "--overwrite")


def _onnx_or_skip():
  pytest.importorskip("jax2onnx", reason="pip install --no-deps -r requirements-onnx.txt")
  return pytest.importorskip("onnxruntime")


@pytest.mark.slow  # the conversion of the whole model takes 20-60 s on 2 CPU cores
def test_onnx_matches_our_logits(finetuned, tmp_path):
  ort = _onnx_or_skip()
  out = str(tmp_path / "onnx")
  summary = exporter.export_model(checkpoint=finetuned, output=out, format="onnx", config=HINT,
                                  class_names=NAMES)
  check = summary["check"]
  assert check["tolerance"] == 1e-5 and max(check["max_abs_diff"].values()) <= 1e-5
  meta = json.load(open(os.path.join(out, "model.onnx.json")))
  assert meta["names"] == NAMES and meta["inputs"][0]["dtype"] == "uint8"
  session = ort.InferenceSession(os.path.join(out, "model.onnx"),
                                 providers=["CPUExecutionProvider"])
  video, audio = _inputs(2, seed=7)
  logits, feature = session.run(["logits", "feature"], {"video": video, "audio": audio})
  want = _reference(weights_lib.load_weights(finetuned, model_hint=HINT))(video, audio)
  np.testing.assert_allclose(logits, want[0], rtol=0, atol=1e-5)
  np.testing.assert_allclose(feature, want[1], rtol=0, atol=1e-5)


def test_onnx_names_an_unconvertible_primitive_and_writes_nothing(finetuned, tmp_path,
                                                                  monkeypatch):
  _onnx_or_skip()
  from jax.extend.core import Primitive
  op = Primitive("not_in_onnx")
  op.def_impl(lambda x: x)
  op.def_abstract_eval(lambda x: x)
  monkeypatch.setattr(pretrained, "forward", lambda view, outputs: (
      lambda params, video, audio: (op.bind(audio[:, 0]), audio[:, 1])))
  out = tmp_path / "onnx"
  with pytest.raises(ValueError, match=r"no file written: the model uses the JAX primitive "
                     r"'not_in_onnx', which jax2onnx cannot convert"):
    exporter.export_model(checkpoint=finetuned, output=str(out), format="onnx", config=HINT)
  assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".export")]


@pytest.mark.slow  # trains 2 steps on synthetic data, then evaluates twice
def test_a_run_exports_with_its_results_and_evaluates_the_same(tmp_path):
  from configs import test_pretrain
  from hicmae_jax import eval_main, train
  config = test_pretrain.get_config("finetune")
  config.data.synthetic_dir = str(tmp_path / "synthetic")
  config.num_train_steps = 2
  workdir = str(tmp_path / "ft")
  results = train.run(config, workdir)
  out = str(tmp_path / "export")
  exporter.export_model(checkpoint=workdir, output=out, format="safetensors")
  card = open(os.path.join(out, "README.md")).read()
  assert f"| UAR | {results['test']['uar']:.2f} |" in card
  assert "- dataset: synthetic; fold: not recorded" in card  # the train split's recorded name
  config_json = json.load(open(os.path.join(out, "config.json")))
  assert config_json["step"] == 2 and config_json["class_names"] == results["test"]["class_names"]
  ours = eval_main.evaluate_checkpoint(config, workdir, results_path=str(tmp_path / "a.json"))
  again = eval_main.evaluate_checkpoint(config, out, results_path=str(tmp_path / "b.json"))
  for key in ("uar", "war", "confusion_matrix", "num_samples"):
    assert again[key] == ours[key], key
  # A .pth of the same weights is evaluated too (bound as feature export and predict bind it).
  from hicmae_jax.checkpoints import conversion
  pth = str(tmp_path / "ft.pth")
  conversion.export_to_torch(os.path.join(workdir, "checkpoints"), pth)
  from_pth = eval_main.evaluate_checkpoint(config, pth, results_path=str(tmp_path / "c.json"))
  for key in ("uar", "war", "confusion_matrix", "num_samples"):
    assert from_pth[key] == ours[key], key
