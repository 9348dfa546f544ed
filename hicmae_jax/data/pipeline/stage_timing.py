"""Time per stage of an input pipeline on single records, in this process (no grain).

It runs the pipeline's own recipe (`ds.recipe`: the stage functions and the options the
pipeline was built with, i.e. the config's), one stage at a time: read (ArrayRecord lookup),
decode (msgpack record, frame sampling and the sampled JPEG frames), the recipe's per-view
stages (augment: crops/resize, RandAugment, erasing, normalisation; fbank: audio span,
waveform augmentation, Kaldi fbank; mask: pre-training masks drawn in the pipeline) and its
batch transform (mixup: one batch's cost divided by its size). Used by
`hicmae_jax.data.pipeline_benchmark` and `hicmae_jax.tools.benchmark`.
"""
from __future__ import annotations

import time
from typing import Callable

import grain
import numpy as np

from hicmae_jax.data.format import schema
from hicmae_jax.data.pipeline import batching, records


def _timed(totals: dict[str, float] | None, name: str, fn: Callable, *args):
  t0 = time.perf_counter()
  out = fn(*args)
  if totals is not None:
    totals[name] += time.perf_counter() - t0
  return out


def _decode(recipe, raw: bytes, rng: np.random.Generator):
  return recipe.decode(schema.decode_clip(raw), rng)


def _record(recipe, raw: bytes, rng: np.random.Generator,
            totals: dict[str, float] | None) -> list[dict]:
  """The record's examples, each stage's time added to `totals` (None: untimed)."""
  decoded = _timed(totals, "decode", _decode, recipe, raw, rng)
  return [recipe.assemble(decoded, [_timed(totals, name, fn, decoded, view, rng)
                                    for name, fn in recipe.view_stages()])
          for view in decoded.views]


def time_stages(ds: batching.PipelineDataset, num_records: int) -> dict[str, float]:
  """Mean milliseconds per record for each stage of the pipeline `ds`, in this process (one
  core), over its split's first `num_records` records."""
  recipe = ds.recipe
  source = grain.sources.ArrayRecordDataSource(ds.paths)
  names = ["read", "decode", *(name for name, _ in recipe.view_stages())]
  if recipe.batch_transform is not None:
    names.append("mixup")
  totals = dict.fromkeys(names, 0.0)
  count = min(num_records, len(source))
  # Record 0 runs once untimed first: imports, mel banks and caches warm up.
  _record(recipe, source[0], np.random.default_rng([ds.seed, records.TAG_EXAMPLE, 0]), None)
  for i in range(count):
    rng = np.random.default_rng([ds.seed, records.TAG_EXAMPLE, i])
    raw = _timed(totals, "read", source.__getitem__, i)
    examples = _record(recipe, raw, rng, totals)
    if recipe.batch_transform is not None:
      batch = batching.stack([examples[k % len(examples)] for k in range(ds.batch_size)])
      _timed(totals, "mixup", recipe.batch_transform, batch, rng)
  if recipe.batch_transform is not None:
    totals["mixup"] /= ds.batch_size  # its cost is per batch
  return {k: 1e3 * v / max(count, 1) for k, v in totals.items()}
