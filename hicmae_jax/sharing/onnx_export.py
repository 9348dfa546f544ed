"""The model's forward as an ONNX file (jax2onnx), checked with ONNX Runtime before it is
written.

  model.onnx        (video uint8 [B, T, S, S, 3], audio float32 [B, A, M]) -> logits [B, C],
                    feature [B, F] (the feature alone for pre-trained encoders); B dynamic
  model.onnx.json   the inputs (how to make them, as stablehlo.input_specs), the outputs, the
                    check against our XLA forward (batches, largest difference, TOLERANCE),
                    versions

The check runs ONNX Runtime (CPU) and the jitted JAX forward on the same random inputs at two
batch sizes; a difference above TOLERANCE, or a JAX primitive jax2onnx cannot convert, stops
the export with that message and writes nothing.

jax2onnx is installed apart (`pip install --no-deps -r requirements-onnx.txt`, BUILD.md): its
metadata caps orbax-checkpoint below the version this project pins, which it does not use.
"""
from __future__ import annotations

import importlib.metadata
import logging
import re
from typing import Any, Sequence

import jax
import numpy as np

from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.sharing import pretrained, stablehlo

log = logging.getLogger(__name__)
ONNX_FILENAME = "model.onnx"
METADATA_FILENAME = "model.onnx.json"
# float32 ONNX Runtime vs XLA:CPU, absolute, on logits and features (measured: <= 1e-6 on the
# test model; the original's own float32 noise on logits is 5e-7, tests/data/FIXTURES.md).
TOLERANCE = 1e-5
CHECK_BATCHES = (1, 3)
_PRIMITIVE = re.compile(r"primitive '([^']+)'")
_INSTALL = "pip install --no-deps -r requirements-onnx.txt (see BUILD.md)"


def _converter():
  try:
    for name in ("jax2onnx.plugins.plugin_system", "onnx_ir.serde"):  # optional-plugin noise
      logging.getLogger(name).setLevel(logging.ERROR)
    import onnxruntime
    from jax2onnx import to_onnx
  except ImportError as e:
    raise ValueError(f"--format=onnx needs jax2onnx and onnxruntime ({e}): {_INSTALL}") from e
  return to_onnx, onnxruntime


def convert(fn, specs: list[dict[str, Any]], outputs: Sequence[str]):
  """The ONNX ModelProto of fn(video, audio); an unconvertible primitive -> ValueError."""
  to_onnx, _ = _converter()
  (b,) = jax.export.symbolic_shape("B")
  args = [jax.ShapeDtypeStruct((b,) + tuple(s["shape"][1:]), np.dtype(s["dtype"]))
          for s in specs]
  try:
    return to_onnx(fn, args, model_name="hicmae", input_names=[s["name"] for s in specs],
                   output_names=list(outputs))
  except NotImplementedError as e:
    found = _PRIMITIVE.search(str(e))
    what = f"the JAX primitive '{found.group(1)}'" if found else f"an operation ({e})"
    raise ValueError(f"ONNX export stopped, no file written: the model uses {what}, which "
                     f"jax2onnx cannot convert; ship --format=stablehlo instead") from e


def check(onnx_bytes: bytes, jax_fn, specs, outputs, *, seed: int = 0,
          batches: Sequence[int] = CHECK_BATCHES) -> dict[str, Any]:
  """ONNX Runtime vs the jitted JAX forward on random inputs; raises above TOLERANCE."""
  _, ort = _converter()
  session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
  rng = np.random.default_rng(seed)
  worst = {k: 0.0 for k in outputs}
  for batch in batches:
    feed = {s["name"]: (rng.integers(0, 256, (batch,) + tuple(s["shape"][1:]), dtype=np.uint8)
                        if s["dtype"] == "uint8" else
                        rng.standard_normal((batch,) + tuple(s["shape"][1:])).astype(np.float32))
            for s in specs}
    got = session.run(list(outputs), feed)
    want = jax_fn(*feed.values())
    for k, g, w in zip(outputs, got, want):
      worst[k] = max(worst[k], float(np.max(np.abs(g - np.asarray(w)))))
  bad = {k: v for k, v in worst.items() if not v <= TOLERANCE}
  if bad:
    raise ValueError(f"ONNX export stopped, no file written: ONNX Runtime differs from JAX by "
                     f"{bad} (tolerance {TOLERANCE}); ship --format=stablehlo instead")
  return {"batches": list(batches), "max_abs_diff": worst, "tolerance": TOLERANCE,
          "provider": "CPUExecutionProvider"}


def export_onnx(weights: weights_lib.Weights, output: str, *, outputs: Sequence[str] = (),
                names: Sequence[str] = (), overwrite: bool = False) -> dict[str, Any]:
  """Converts, checks and writes `output`/{model.onnx, model.onnx.json}; returns the
  metadata."""
  outputs = pretrained.outputs_for(weights, outputs)
  _converter()  # before any work: is it installed?
  stablehlo.check_output(output, overwrite)
  view, params = weights_lib.bind(weights)
  forward = pretrained.forward(view, outputs)
  fn = lambda video, audio: forward(params, video, audio)  # noqa: E731 - weights inside
  specs = stablehlo.input_specs(weights.model)
  proto = convert(fn, specs, outputs)
  blob = proto.SerializeToString()
  checked = check(blob, jax.jit(fn), specs, outputs)
  import onnxruntime
  meta = {"format": "onnx", "file": ONNX_FILENAME, "kind": weights.kind, "inputs": specs,
          "outputs": [{"name": k} for k in outputs], "names": list(names), "check": checked,
          "opset": int(proto.opset_import[0].version),
          "versions": {"jax": jax.__version__, "jax2onnx": importlib.metadata.version("jax2onnx"),
                       "onnxruntime": onnxruntime.__version__}}
  stablehlo.write_folder(output, {ONNX_FILENAME: blob}, METADATA_FILENAME, meta, overwrite)
  return meta
