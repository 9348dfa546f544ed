"""Weights by name from one model into another (checkpoints/transfer.py)."""
import jax.numpy as jnp
import numpy as np
import pytest

from hicmae_jax.checkpoints import transfer
from hicmae_jax.checkpoints.mapping import MappingError


def _arrays(shapes, fill, dtype=np.float32):
  return {k: np.full(s, fill, dtype) for k, s in shapes.items()}


def test_pretrain_weights_into_the_finetuning_model():
  source = _arrays({"encoder.blocks.0.w": (2, 3), "encoder_fusion.norm.scale": (3,),
                    "decoder.head.kernel": (3, 4), "mask_token": (1, 1, 3)}, 1.0, np.float64)
  target = _arrays({"encoder.blocks.0.w": (2, 3), "encoder_fusion.norm.scale": (3,),
                    "video_layer_weights": (4,), "head.kernel": (12, 6)}, 0.0)
  moved = transfer.transfer_by_name(source, target)
  assert moved.loaded == ["encoder.blocks.0.w", "encoder_fusion.norm.scale"]
  assert moved.dropped == ["decoder.head.kernel", "mask_token"]
  assert moved.missing == ["head.kernel", "video_layer_weights"]
  assert list(moved.params) == list(target)  # the target's names, in its order
  assert (moved.params["encoder.blocks.0.w"] == 1).all()
  assert moved.params["encoder.blocks.0.w"].dtype == np.float32  # cast to the model's dtype
  assert moved.params["head.kernel"] is target["head.kernel"]  # kept as it was
  # jax arrays work alike (the trainer's restored, sharded parameters)
  on_device = transfer.transfer_by_name({k: jnp.asarray(v) for k, v in source.items()},
                                        {k: jnp.asarray(v) for k, v in target.items()})
  assert on_device.params["encoder.blocks.0.w"].dtype == jnp.float32


def test_shape_mismatch_and_missing_required_tensors_are_named():
  target = _arrays({"encoder.blocks.0.w": (2, 3), "encoder_audio.norm.scale": (3,),
                    "head.kernel": (12, 6)}, 0.0)
  bad = _arrays({"encoder.blocks.0.w": (3, 2), "encoder_audio.norm.scale": (3,)}, 1.0)
  with pytest.raises(MappingError, match=r"encoder.blocks.0.w: checkpoint \(3, 2\), model "
                                         r"\(2, 3\)"):
    transfer.transfer_by_name(bad, target)
  no_audio = _arrays({"encoder.blocks.0.w": (2, 3)}, 1.0)
  with pytest.raises(MappingError, match="lacks 1 tensor.*encoder_audio.norm.scale"):
    transfer.transfer_by_name(no_audio, target)
  encoders_only = _arrays({"encoder.blocks.0.w": (2, 3), "encoder_audio.norm.scale": (3,)}, 1.0)
  assert transfer.transfer_by_name(encoders_only, target).missing == ["head.kernel"]
  with pytest.raises(MappingError, match="head.kernel"):  # a fine-tuned model needs them all
    transfer.transfer_by_name(encoders_only, target, required=transfer.ALL)
