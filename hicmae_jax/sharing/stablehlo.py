"""The model's forward as a serialised `jax.export` artifact (StableHLO): it runs without this
code, on the platforms it was lowered for, at any batch size (the batch is symbolic).

  model.stablehlo        `jax.export.Exported.serialize()`: (video, audio) -> (logits, feature)
                         (or the feature alone for pre-trained encoders), weights inside
  model.stablehlo.json   inputs and outputs (names, shapes with "b" the batch, dtypes, how to
                         make them), platforms, the JAX version and calling convention, sha256

Reading it anywhere (only jax and numpy):

  exported = jax.export.deserialize(open("model.stablehlo", "rb").read())
  logits, feature = exported.call(video_uint8, fbank)

JAX reads artifacts within its calling-convention window (`jax.export.minimum_ /
maximum_supported_calling_convention_version`); `load` checks the recorded version against
it first and names the JAX to use.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import numpy as np
from jax import export as jax_export

from hicmae_jax import pixels
from hicmae_jax.checkpoints import safetensors_io, weights as weights_lib
from hicmae_jax.data.transforms import fbank as audio_lib
from hicmae_jax.sharing import pretrained

ARTIFACT_FILENAME = "model.stablehlo"
METADATA_FILENAME = "model.stablehlo.json"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def input_specs(model_cfg) -> list[dict[str, Any]]:
  """The inputs, "b" the batch: video uint8 frames, audio normalised Kaldi fbank."""
  m = model_cfg
  return [
      {"name": "video", "shape": ["b", m.num_frames, m.input_size, m.input_size, 3],
       "dtype": "uint8", "how": f"RGB frames 0..255 ({m.num_frames} of a clip, one every "
       f"sampling_rate frames, resized to {m.input_size}x{m.input_size}); normalised inside "
       f"by the ImageNet mean {list(pixels.IMAGENET_MEAN)} and std "
       f"{list(pixels.IMAGENET_STD)}"},
      {"name": "audio", "shape": ["b", m.audio_frames, m.audio_mel_bins], "dtype": "float32",
       "how": f"16 kHz mono, mean removed, Kaldi fbank ({m.audio_mel_bins} mel bins, 25 ms "
       f"Hann windows every 10 ms, htk_compat), zero-padded or cut to {m.audio_frames} "
       f"frames, then (x - ({audio_lib.FBANK_MEAN})) / (2 x {audio_lib.FBANK_STD})"}]


def output_specs(exported: jax_export.Exported, outputs: Sequence[str]) -> list[dict[str, Any]]:
  """The outputs as the artifact computes them (the batch dimension written "b")."""
  return [{"name": k, "shape": [d if isinstance(d, int) else str(d) for d in aval.shape],
           "dtype": str(aval.dtype)} for k, aval in zip(outputs, exported.out_avals)]


def parse_platforms(text: str | Sequence[str]) -> tuple[str, ...]:
  names = tuple(p.strip() for p in (text.split(",") if isinstance(text, str) else text)
                if p.strip())
  bad = [p for p in names if p not in PLATFORMS]
  if bad or not names:
    raise ValueError(f"--platforms={','.join(names)}: {bad or 'none given'}; choose among "
                     f"{','.join(PLATFORMS)} (comma separated)")
  return names


def export_artifact(weights: weights_lib.Weights, output: str, *, outputs: Sequence[str] = (),
                    platforms: Sequence[str] = ("cpu",), names: Sequence[str] = (),
                    overwrite: bool = False) -> dict[str, Any]:
  """Lowers the forward of `weights` for `platforms` with a symbolic batch and writes the
  artifact and its metadata into `output`; returns the metadata."""
  outputs = pretrained.outputs_for(weights, outputs)
  check_output(output, overwrite)
  view, params = weights_lib.bind(weights)
  fn = pretrained.forward(view, outputs)
  cfg = weights.model
  (b,) = jax_export.symbolic_shape("b")
  args = [jax.ShapeDtypeStruct((b,) + tuple(s["shape"][1:]), np.dtype(s["dtype"]))
          for s in input_specs(cfg)]
  exported = jax_export.export(jax.jit(lambda v, a: fn(params, v, a)),
                               platforms=tuple(platforms))(*args)
  blob = exported.serialize()
  meta = {"format": "jax.export", "file": ARTIFACT_FILENAME, "kind": weights.kind,
          "inputs": input_specs(cfg), "outputs": output_specs(exported, outputs),
          "platforms": list(exported.platforms), "names": list(names),
          "jax_version": jax.__version__,
          "calling_convention_version": int(exported.calling_convention_version),
          "model": {k: weights.model.get(k) for k in ("size", "dim", "task", "num_classes",
                                                      "num_targets")},
          "source": {k: v for k, v in weights.source.items()
                     if isinstance(v, (str, int, float, type(None)))}}
  write_folder(output, {ARTIFACT_FILENAME: blob}, METADATA_FILENAME, meta, overwrite)
  return meta


def check_output(output: str, overwrite: bool) -> None:
  safetensors_io.check_output(output, overwrite)


def write_folder(output: str, files: dict[str, bytes], meta_name: str, meta: dict[str, Any],
                 overwrite: bool) -> None:
  """`files` and their metadata (with each file's sha256) into `output`, all or nothing."""
  def write(tmp: str) -> None:
    meta["sha256"] = {}
    for name, blob in files.items():
      with open(os.path.join(tmp, name), "wb") as f:
        f.write(blob)
      meta["sha256"][name] = safetensors_io.sha256_of(os.path.join(tmp, name))
    with open(os.path.join(tmp, meta_name), "w") as f:
      json.dump(meta, f, indent=2)
  safetensors_io.write_atomically(output, write, overwrite=overwrite)


def load(folder: str) -> tuple[jax_export.Exported, dict[str, Any]]:
  """(the deserialised artifact, its metadata); an artifact this JAX cannot read is refused
  naming the file and the JAX that wrote it."""
  meta_path = os.path.join(folder, METADATA_FILENAME)
  path = os.path.join(folder, ARTIFACT_FILENAME)
  for p in (meta_path, path):
    if not os.path.isfile(p):
      raise FileNotFoundError(f"{p} is missing: give a folder written by python -m "
                              f"hicmae_jax.tools.export --format=stablehlo")
  with open(meta_path) as f:
    meta = json.load(f)
  version = int(meta.get("calling_convention_version", -1))
  low = jax_export.minimum_supported_calling_convention_version
  high = jax_export.maximum_supported_calling_convention_version
  if not low <= version <= high:
    raise ValueError(f"{path} was exported by JAX {meta.get('jax_version')} (calling "
                     f"convention {version}); this JAX {jax.__version__} reads {low}..{high}: "
                     f"export it again with this JAX, or run it with jax=="
                     f"{meta.get('jax_version')}")
  with open(path, "rb") as f:
    blob = f.read()
  try:
    return jax_export.deserialize(bytearray(blob)), meta
  except Exception as e:  # noqa: BLE001 - any failure of the flatbuffer read is the file's
    raise ValueError(f"{path} cannot be read by JAX {jax.__version__} ({type(e).__name__}: "
                     f"{e}); it was exported by JAX {meta.get('jax_version')}: export it "
                     f"again with this JAX") from e
