"""The checkpoint converter: original .pth -> Orbax -> our models reproduce the original's outputs;
ours -> .pth -> ours gives the same model and the same predictions; what no tensor records is
never guessed; bad inputs fail cleanly, writing nothing."""
import json
import os
import pickletools
import types
import zipfile

import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from hicmae_jax import checkpointing
from hicmae_jax.checkpoints import original
from hicmae_jax.checkpoints.conversion import export_to_torch
from hicmae_jax.checkpoints.pth_reader import read_torch_checkpoint
from hicmae_jax.checkpoints.pth_writer import save_state_dict_like_original
from hicmae_jax.models import params as params_lib
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.models.hicmae import PretrainModel
from hicmae_jax.models.sizes import model_config_for_tests
from hicmae_jax.tools import convert_checkpoint as cc
from tests.test_models import read_keys
from tests.tolerances import F32_LOGITS, assert_close

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The fixtures' geometry and heads, which their bare state dicts do not record.
FIXTURE_FLAGS = ["--num_heads=2", "--num_frames=16", "--input_size=32", "--audio_frames=64",
                 "--audio_mel_bins=32"]
FINETUNE_FLAGS = FIXTURE_FLAGS + ["--task=classification", "--head_activation=none"]
PRETRAIN_FLAGS = FIXTURE_FLAGS + ["--decoder_heads=2", "--hierarchy_layers=1,2,3"]
# What torch.load(weights_only=True) accepts among the globals our writer can emit for float32
# tensors and the plain entries: the only globals an export may hold.
WEIGHTS_ONLY_GLOBALS = {"collections OrderedDict", "torch._utils _rebuild_tensor_v2",
                        "torch FloatStorage"}


def _restore_params(directory):
  step, meta = checkpointing.read_meta(directory)
  mngr = checkpointing.manager(directory, read_only=True)
  raw = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))["params"]
  mngr.close()
  return meta, {k: np.asarray(v) for k, v in raw.items()}


def _model_config_as_eval_reads_it(meta):
  """What eval_main builds its model from: the checkpoint meta's model config."""
  cfg = ml_collections.ConfigDict(meta["model"])
  cfg.hierarchy_layers = tuple(cfg.hierarchy_layers)
  return cfg


def test_finetune_checkpoint_converts_and_reproduces_logits(tmp_path, data_dir):
  out = str(tmp_path / "ft")
  assert cc.main(["--input", str(data_dir / "finetune_tiny.pth"), "--output", out]
                 + FINETUNE_FLAGS) == 0
  meta, params = _restore_params(out)
  assert meta["kind"] == "finetune" and meta["model"]["num_classes"] == 5
  assert meta["model"]["video_depth"] == 4 and meta["model"]["dim"] == 32
  assert meta["source"]["unrecorded_values_from"]["input_size"] == "explicit"
  model = FinetuneModel(_model_config_as_eval_reads_it(meta), rngs=nnx.Rngs(0))
  params_lib.assign_params(model, {params_lib.path_of(k): v for k, v in params.items()})
  ref = np.load(data_dir / "tiny_reference.npz")
  out_logits = model(jnp.asarray(ref["input/video"].transpose(0, 2, 3, 4, 1)),
                     jnp.asarray(ref["input/audio"][:, 0]))["logits"]
  assert_close(out_logits, ref["finetune/logits"], F32_LOGITS)


def test_pretrain_checkpoint_converts_and_exports_back_exactly(tmp_path, data_dir):
  config_file = tmp_path / "fixture_model.py"
  config_file.write_text("from hicmae_jax.models.sizes import model_config_for_tests\n\n\n"
                         "def get_config():\n  return model_config_for_tests()\n")
  out = str(tmp_path / "pre")
  assert cc.main(["--input", str(data_dir / "pretrain_tiny.pth"), "--output", out,
                  "--config", str(config_file)]) == 0
  meta, _ = _restore_params(out)
  assert meta["kind"] == "pretrain" and tuple(meta["model"]["hierarchy_layers"]) == (1, 2, 3)
  assert (meta["model"]["num_heads"], meta["model"]["decoder_heads"]) == (2, 2)
  back = str(tmp_path / "back.pth")
  assert cc.main(["--export", "--input", out, "--output", back]) == 0
  original_sd = read_torch_checkpoint(str(data_dir / "pretrain_tiny.pth"))["model"]
  exported = read_torch_checkpoint(back)
  assert set(exported["model"]) == set(original_sd)
  for k in original_sd:
    np.testing.assert_array_equal(exported["model"][k], original_sd[k], err_msg=k)
  assert exported[original.MODEL_CONFIG_KEY] == meta["model"]


def _save_ours(directory, kind, cfg, flat, step):
  """Our checkpoint as training writes it: flat params and meta with the model config."""
  mngr = checkpointing.manager(directory)
  checkpointing.save(mngr, step, params=flat, force=True,
                     meta={"kind": kind, "model": cfg.to_dict(), "step": step})
  mngr.wait_until_finished()
  mngr.close()


def _perturbed_finetune_checkpoint(directory, cfg):
  """Our fine-tuning checkpoint of `cfg` with every tensor moved off its initial value (so a
  mixed-up layer weight or norm shows); returns (model, flat params)."""
  model = FinetuneModel(cfg, rngs=nnx.Rngs(params=1))
  rng = np.random.default_rng(0)
  flat = {k: np.asarray(v) + rng.normal(0, 0.05, v.shape).astype(np.float32)
          for k, v in params_lib.ParamsView(model).flat(model).items()}
  params_lib.assign_params(model, {params_lib.path_of(k): v for k, v in flat.items()})
  _save_ours(directory, "finetune", cfg, flat, step=5)
  return model, flat


def _pickle_globals(pth):
  with zipfile.ZipFile(pth) as zf:
    data = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
  return {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def test_round_trip_through_pth_gives_identical_predictions(tmp_path):
  # Sizes the tensors cannot show and a guess would miss: 2 heads at width 32 (not 32/64),
  # 32-pixel frames, 8 frames, a 64 x 32 spectrogram.
  cfg = model_config_for_tests(num_classes=3, num_frames=8)
  model, _ = _perturbed_finetune_checkpoint(str(tmp_path / "ours"), cfg)
  pth = str(tmp_path / "ft.pth")
  assert cc.main(["--export", "--input", str(tmp_path / "ours"), "--output", pth]) == 0
  assert _pickle_globals(pth) <= WEIGHTS_ONLY_GLOBALS
  assert cc.main(["--input", pth, "--output", str(tmp_path / "back")]) == 0  # nothing else
  meta, params = _restore_params(str(tmp_path / "back"))
  assert json.loads(json.dumps(cfg.to_dict())) == meta["model"]  # the eval path reads this
  assert set(meta["source"]["unrecorded_values_from"].values()) == {
      f"{original.MODEL_CONFIG_KEY!r} entry"}
  back = FinetuneModel(_model_config_as_eval_reads_it(meta), rngs=nnx.Rngs(params=9))
  params_lib.assign_params(back, {params_lib.path_of(k): v for k, v in params.items()})
  rng = np.random.default_rng(1)
  video = jnp.asarray(rng.normal(size=(2, 8, 32, 32, 3)), jnp.float32)
  audio = jnp.asarray(rng.normal(size=(2, 64, 32)), jnp.float32)
  want, got = model(video, audio), back(video, audio)
  for key in ("logits", "feature"):
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=key)


def test_pretrain_round_trip_keeps_the_model_config(tmp_path):
  cfg = model_config_for_tests(hierarchy_layers=(0, 2, 3), decoder_heads=4, input_size=48)
  model = PretrainModel(cfg, rngs=nnx.Rngs(params=2))
  flat = {k: np.asarray(v) for k, v in params_lib.ParamsView(model).flat(model).items()}
  _save_ours(str(tmp_path / "ours"), "pretrain", cfg, flat, step=3)
  pth = str(tmp_path / "pre.pth")
  export_to_torch(str(tmp_path / "ours"), pth)
  read = original.read_original(pth)
  assert read.kind == "pretrain" and read.model.to_dict() == cfg.to_dict()
  for k, v in flat.items():
    np.testing.assert_array_equal(read.params[k], v, err_msg=k)


def test_an_import_that_would_have_to_guess_refuses(tmp_path, data_dir, capsys):
  out = tmp_path / "x"
  assert cc.main(["--input", str(data_dir / "finetune_tiny.pth"), "--output", str(out)]) == 2
  err = capsys.readouterr().err
  needed = "num_heads, num_frames, input_size, audio_frames, audio_mel_bins, task, head_activation"
  assert f"finetune checkpoint's {needed} are recorded neither" in err
  assert "--config=" in err and "--num_heads=... --num_frames=..." in err
  assert len(err.strip().splitlines()) == 1 and not out.exists()
  # Some values given: the rest is still named, nothing else.
  assert cc.main(["--input", str(data_dir / "pretrain_tiny.pth"), "--output", str(out),
                  "--num_heads=2", "--input_size=32"]) == 2
  assert ("pretrain checkpoint's decoder_heads, hierarchy_layers, num_frames, audio_frames, "
          "audio_mel_bins are") in capsys.readouterr().err
  # A config of another model is refused, not used.
  assert cc.main(["--input", str(data_dir / "pretrain_tiny.pth"), "--output", str(out),
                  "--config", os.path.join(REPO, "configs", "demo.py")]) == 2
  assert "is not this checkpoint's model: dim 64 (tensors: 32)" in capsys.readouterr().err
  assert not out.exists()


def test_explicit_values_may_not_contradict_the_file(tmp_path):
  cfg = model_config_for_tests(num_classes=3)
  _perturbed_finetune_checkpoint(str(tmp_path / "ours"), cfg)
  pth = str(tmp_path / "ft.pth")
  export_to_torch(str(tmp_path / "ours"), pth)
  with pytest.raises(original.ConversionError, match=r"--num_heads=4 \(the file records 2\)"):
    original.read_original(pth, explicit={"num_heads": 4})
  with pytest.raises(original.ConversionError, match="--decoder_heads do not apply"):
    original.read_original(pth, explicit={"decoder_heads": 2})
  assert original.read_original(pth, explicit={"num_heads": 2}).model.num_heads == 2


def test_bad_inputs_fail_cleanly_and_write_nothing(tmp_path, data_dir, capsys):
  out = tmp_path / "x"
  assert cc.main(["--input", str(data_dir / "keys_pretrain_base.txt"), "--output", str(out)]) == 2
  assert "not a zip archive" in capsys.readouterr().err
  assert not out.exists()
  # a state dict with a tensor of the wrong shape
  sd = dict(read_torch_checkpoint(str(data_dir / "finetune_tiny.pth"))["model"])
  sd["encoder.blocks.0.attn.qkv.weight"] = np.zeros((95, 32), np.float32)
  bad = tmp_path / "bad.pth"
  save_state_dict_like_original(str(bad), sd)
  assert cc.main(["--input", str(bad), "--output", str(out)] + FINETUNE_FLAGS) == 2
  err = capsys.readouterr().err
  assert "encoder.blocks.0.attn.qkv.weight" in err and "(95, 32)" in err
  assert not out.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".convert-")]
  # refuses to overwrite a non-empty folder
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "keep.txt").write_text("x")
  assert cc.main(["--input", str(data_dir / "finetune_tiny.pth"),
                  "--output", str(tmp_path / "full")] + FINETUNE_FLAGS) == 2
  assert (tmp_path / "full" / "keep.txt").exists()


# The fields of the original's training args (run_mae_pretraining_av.py /
# run_class_finetuning_av.py) that the released Base checkpoints carry.
RELEASED_ARGS = {
    "pretrain": dict(model="pretrain_hicmae_dim512_patch16_160_a256", input_size=160,
                     num_frames=16, input_size_audio=256, num_mel_bins=128,
                     return_intermediate_features=[3, 6, 9], decoder_depth=4),
    "finetune": dict(model="avit_dim512_patch16_160_a256", input_size=160, num_frames=16,
                     num_segments=1, input_size_audio=256, num_mel_bins=128, nb_classes=6,
                     depth=10, depth_audio=10, fusion_depth=2),
}


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_base_model_from_the_official_tables_and_args(kind, data_dir):
  fake = {k: np.empty(s, np.uint8) for k, s in
          read_keys(data_dir / f"keys_{kind}_base.txt").items()}
  got_kind, facts = original.tensor_facts(fake)
  assert got_kind == kind and facts["dim"] == 512 and facts["mlp_ratio"] == 4.0
  assert (facts["video_depth"], facts["audio_depth"], facts["fusion_depth"]) == (10, 10, 2)
  assert (facts["patch_size"], facts["tubelet_size"], facts["audio_patch_size"]) == (16, 2, 16)
  args = types.SimpleNamespace(**RELEASED_ARGS[kind])  # what the reader makes of a Namespace
  values = original.values_from_args(args, kind, facts, "checkpoint-99.pth")
  cfg, origin = original.resolve_model_config(kind, facts, path="checkpoint-99.pth",
                                              record=values, record_source="training args")
  assert set(origin) == set(original.UNRECORDED[kind])
  assert (cfg.size, cfg.num_heads, cfg.input_size, cfg.num_frames) == ("base", 8, 160, 16)
  assert (cfg.audio_frames, cfg.audio_mel_bins) == (256, 128)
  if kind == "pretrain":
    assert (cfg.decoder_dim, cfg.decoder_heads, cfg.decoder_depth) == (384, 6, 4)
    assert tuple(cfg.hierarchy_layers) == (3, 6, 9)
  else:
    assert (cfg.task, cfg.num_classes, cfg.head_activation) == ("classification", 6, "none")
  with pytest.raises(original.ConversionError, match="names a 384-wide model"):
    original.values_from_args(dict(RELEASED_ARGS[kind], model="avit_dim384_patch16_160_a256"),
                              kind, facts, "x.pth")
