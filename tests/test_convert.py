"""The checkpoint converter command: original .pth -> Orbax -> our models reproduce the original's
outputs; export back to the original layout is exact; bad inputs fail cleanly, writing nothing."""
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from hicmae_jax import checkpointing
from hicmae_jax.checkpoints import torch_format
from hicmae_jax.models import params as params_lib
from hicmae_jax.models.classifier import FinetuneModel
from hicmae_jax.tools import convert_checkpoint as cc
from tests.tolerances import F32_LOGITS, assert_close


def _restore_params(directory):
  step, meta = checkpointing.read_meta(directory)
  mngr = checkpointing.manager(directory, read_only=True)
  raw = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))["params"]
  mngr.close()
  return meta, {k: np.asarray(v) for k, v in raw.items()}


def test_finetune_checkpoint_converts_and_reproduces_logits(tmp_path, data_dir):
  out = str(tmp_path / "ft")
  assert cc.main(["--input", str(data_dir / "finetune_tiny.pth"), "--output", out,
                  "--num_heads", "2"]) == 0
  meta, params = _restore_params(out)
  assert meta["kind"] == "finetune" and meta["model"]["num_classes"] == 5
  assert meta["model"]["video_depth"] == 4 and meta["model"]["dim"] == 32
  cfg = ml_collections.ConfigDict(meta["model"])
  # the fixture's geometry (the converter cannot see input sizes in the tensors)
  cfg.input_size, cfg.audio_frames, cfg.audio_mel_bins = 32, 64, 32
  model = FinetuneModel(cfg, rngs=nnx.Rngs(0))
  params_lib.assign_params(model, {params_lib.path_of(k): v for k, v in params.items()})
  ref = np.load(data_dir / "tiny_reference.npz")
  out_logits = model(jnp.asarray(ref["input/video"].transpose(0, 2, 3, 4, 1)),
                     jnp.asarray(ref["input/audio"][:, 0]))["logits"]
  assert_close(out_logits, ref["finetune/logits"], F32_LOGITS)


def test_pretrain_checkpoint_converts_and_exports_back_exactly(tmp_path, data_dir):
  out = str(tmp_path / "pre")
  assert cc.main(["--input", str(data_dir / "pretrain_tiny.pth"), "--output", out,
                  "--hierarchy_layers", "1,2,3", "--num_heads", "2", "--decoder_heads", "2"]) == 0
  meta, _ = _restore_params(out)
  assert meta["kind"] == "pretrain" and tuple(meta["model"]["hierarchy_layers"]) == (1, 2, 3)
  back = str(tmp_path / "back.pth")
  assert cc.main(["--export", "--input", out, "--output", back]) == 0
  original = torch_format.read_torch_checkpoint(str(data_dir / "pretrain_tiny.pth"))["model"]
  exported = torch_format.read_torch_checkpoint(back)["model"]
  assert set(exported) == set(original)
  for k in original:
    np.testing.assert_array_equal(exported[k], original[k], err_msg=k)


def test_bad_inputs_fail_cleanly_and_write_nothing(tmp_path, data_dir, capsys):
  out = tmp_path / "x"
  assert cc.main(["--input", str(data_dir / "keys_pretrain_base.txt"), "--output", str(out)]) == 2
  assert "not a zip archive" in capsys.readouterr().err
  assert not out.exists()
  # a state dict with a tensor of the wrong shape
  sd = dict(torch_format.read_torch_checkpoint(str(data_dir / "finetune_tiny.pth"))["model"])
  sd["encoder.blocks.0.attn.qkv.weight"] = np.zeros((95, 32), np.float32)
  bad = tmp_path / "bad.pth"
  torch_format.save_state_dict_like_original(str(bad), sd)
  assert cc.main(["--input", str(bad), "--output", str(out)]) == 2
  err = capsys.readouterr().err
  assert "encoder.blocks.0.attn.qkv.weight" in err and "(95, 32)" in err
  assert not out.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".convert-")]
  # refuses to overwrite a non-empty folder
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "keep.txt").write_text("x")
  assert cc.main(["--input", str(data_dir / "finetune_tiny.pth"),
                  "--output", str(tmp_path / "full")]) == 2
  assert (tmp_path / "full" / "keep.txt").exists()


def test_base_sizes_are_inferred_from_the_official_tables(data_dir):
  from tests.test_models import read_keys
  for kind in ("pretrain", "finetune"):
    table = read_keys(data_dir / f"keys_{kind}_base.txt")
    fake = {k: np.empty(s, np.uint8) for k, s in table.items()}
    got_kind, cfg = cc.infer_model_config(fake)
    assert got_kind == kind and cfg.size == "base" and cfg.dim == 512
    assert (cfg.video_depth, cfg.audio_depth, cfg.fusion_depth) == (10, 10, 2)
    if kind == "pretrain":
      assert (cfg.decoder_dim, cfg.decoder_heads, cfg.decoder_depth) == (384, 6, 4)
      assert tuple(cfg.hierarchy_layers) == (3, 6, 9)
    else:
      assert cfg.num_classes == 6
