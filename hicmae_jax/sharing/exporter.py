"""`python -m hicmae_jax.tools.export` as a function: one checkpoint, one format, one folder."""
from __future__ import annotations

import time
from typing import Any, Sequence

from hicmae_jax.checkpoints import weights as weights_lib
from hicmae_jax.sharing import model_card, pretrained

FORMATS = ("safetensors", "stablehlo", "onnx")


def export_model(*, checkpoint: str, output: str, format: str,  # noqa: A002 - the flag's name
                 step: int | None = None, config=None, outputs: Sequence[str] = (),
                 platforms: Sequence[str] = ("cpu",), class_names: Sequence[str] = (),
                 dataset: str = "", for_hub: bool = False,
                 licence: str = model_card.LICENCE, overwrite: bool = False) -> dict[str, Any]:
  """Exports `checkpoint` (any checkpoint weights_lib.load_weights reads, or an exported folder)
  as `format` into `output`; returns a JSON-able summary."""
  t0 = time.time()
  if format not in FORMATS:
    raise ValueError(f"--format={format}: choose one of {', '.join(FORMATS)}")
  if format == "safetensors":
    if outputs:
      raise ValueError("--outputs applies to stablehlo and onnx; a safetensors folder holds "
                       "every parameter")
    summary = pretrained.export_safetensors(
        checkpoint, output, step=step, model_hint=config, class_names=class_names,
        dataset=dataset, for_hub=for_hub, licence=licence, overwrite=overwrite)
    return dict(summary, seconds=round(time.time() - t0, 1))
  weights = weights_lib.load_weights(checkpoint, step, model_hint=config)
  names = pretrained.export_config(weights, class_names=class_names, dataset=dataset).get(
      "class_names") or []
  if format == "stablehlo":
    from hicmae_jax.sharing import stablehlo
    meta = stablehlo.export_artifact(weights, output, outputs=outputs,
                                     platforms=stablehlo.parse_platforms(platforms),
                                     names=names, overwrite=overwrite)
  else:
    from hicmae_jax.sharing import onnx_export
    meta = onnx_export.export_onnx(weights, output, outputs=outputs, names=names,
                                   overwrite=overwrite)
  return {"format": format, "kind": weights.kind, "output": output,
          "outputs": [o["name"] for o in meta["outputs"]], "inputs": meta["inputs"],
          "check": meta.get("check"), "platforms": meta.get("platforms"),
          "seconds": round(time.time() - t0, 1)}
