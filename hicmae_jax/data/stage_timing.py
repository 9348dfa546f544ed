"""Time per stage of an input pipeline on single records, in this process (no grain).

Stages: read (ArrayRecord lookup), decode (msgpack record + the sampled JPEG frames), augment
(sampling, crops/resize, RandAugment, erasing, normalisation), fbank (audio span, waveform
augmentation, Kaldi fbank), mask (pre-training masks) or mixup (fine-tuning, one batch's cost
divided by its size). Used by `hicmae_jax.data.benchmark` and `hicmae_jax.tools.benchmark`.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class StageSettings:
  """What the per-stage timing needs to know of a pipeline (from flags or a config)."""
  pipeline: str = "finetune"          # pretrain | finetune | eval
  num_frames: int = 16
  sampling_rate: int = 4
  input_size: int = 160
  fixed_crop: tuple[int, int, int, int] | None = (0, 160, 32, 192)
  batch_size: int = 8                 # mixup's cost is per batch, reported per record
  rand_augment: str = "rand-m7-n4-mstd0.5-inc1"
  video_mask_ratio: float = 0.9
  audio_mask_ratio: float = 0.8
  host_masks: bool = True             # pre-training masks drawn in the pipeline (else on device)
  patch_size: int = 16
  tubelet_size: int = 2
  audio_tokens: int = 128
  audio_frames: int = 256
  num_mel_bins: int = 128
  seed: int = 0
  multiscale: tuple[float, ...] = (1, .875, .75, .66)  # pre-training crop scales
  erase_prob: float = 0.25                           # fine-tuning random erasing


def stage_fns(st: StageSettings) -> dict[str, Callable]:
  """Per-pipeline stage functions: decode(clip, rng) -> state, then augment/fbank/extra."""
  from hicmae_jax.data import pipeline as P
  from hicmae_jax.data import schema
  from hicmae_jax.data import transforms as T

  nf, rate, size = st.num_frames, st.sampling_rate, st.input_size
  opts = P.AudioOptions(audio_frames=st.audio_frames, num_mel_bins=st.num_mel_bins)
  limit = P.whole_file_limit(opts)

  def audio_span(clip, f0, f1):
    wave = schema.audio_to_float(clip.audio)
    a0, a1 = T.relative_audio_span(f0, f1, clip.num_frames, wave.shape[0])
    return T.cut_audio(wave, a0, a1, whole_if_shorter_than=limit)

  def fbank(state, rng, augment=True):
    return P.audio_features(audio_span(state["clip"], *state["span"]), rng, opts,
                            augment=augment)

  if st.pipeline == "pretrain":
    def decode(raw, rng):
      clip = schema.decode_clip(raw)
      ids, span = T.pretrain_frame_indices(clip.num_frames, rng, num_frames=nf,
                                           sampling_rate=rate)
      return {"clip": clip, "ids": ids, "span": span,
              "images": T.decode_frames(clip.frames, ids)}

    def augment(state, rng):
      frames = T.fixed_crop(T.stack_frames(state["images"], state["ids"]), st.fixed_crop)
      return T.normalize(T.multi_scale_crop(frames, rng, output_size=size,
                                            scales=st.multiscale))

    def extra(state, rng):
      grid = (nf // st.tubelet_size, size // st.patch_size, size // st.patch_size)
      T.tube_mask(rng, grid=grid, mask_ratio=st.video_mask_ratio)
      T.random_mask(rng, num_patches=st.audio_tokens, mask_ratio=st.audio_mask_ratio)

    fns = {"decode": decode, "augment": augment, "fbank": fbank}
    return {**fns, "mask": extra} if st.host_masks else fns

  if st.pipeline == "finetune":
    ra = T.parse_rand_augment(st.rand_augment) if st.rand_augment else None

    def decode(raw, rng):
      clip = schema.decode_clip(raw)
      ids, span = T.segment_frame_indices(clip.num_frames, num_frames=nf, sampling_rate=rate,
                                          rng=rng)
      return {"clip": clip, "ids": ids, "span": span,
              "images": T.decode_frames(clip.frames, ids)}

    def augment(state, rng):
      unique = sorted(state["images"])
      resized = [T.pil_resize(state["images"][i], size, size) for i in unique]
      aug = (T.rand_augment(resized, rng, **ra) if ra
             else np.stack([np.asarray(r) for r in resized]))
      where = {i: k for k, i in enumerate(unique)}
      video = T.normalize(aug[[where[int(i)] for i in state["ids"]]])
      video = T.horizontal_flip(T.random_resized_crop(video, rng, output_size=size), rng)
      return T.random_erasing(video, rng, probability=st.erase_prob) if st.erase_prob else video

    def extra(state, rng):
      b = st.batch_size
      batch = {"video": np.zeros((b, nf, size, size, 3), np.float32),
               "audio": np.zeros((b, st.audio_frames, st.num_mel_bins), np.float32),
               "label": np.zeros(b, np.int32)}
      T.mixup_cutmix(batch, rng, num_classes=4)
      return b  # the caller divides by the batch size

    return {"decode": decode, "augment": augment, "fbank": fbank, "mixup": extra}

  def decode(raw, rng):
    clip = schema.decode_clip(raw)
    segments = T.test_frame_indices(clip.num_frames, num_frames=nf, sampling_rate=rate)
    ids = np.concatenate([s[0] for s in segments])
    return {"clip": clip, "segments": segments, "span": segments[0][1],
            "images": T.decode_frames(clip.frames, ids)}

  def augment(state, rng):
    resized = {i: T.pil_resize(img, size, size) for i, img in state["images"].items()}
    return [T.normalize(T.stack_frames(resized, ids)) for ids, _ in state["segments"]]

  def eval_fbank(state, rng):
    for _, span in state["segments"]:
      P.audio_features(audio_span(state["clip"], *span), None, opts, augment=False)

  return {"decode": decode, "augment": augment, "fbank": eval_fbank}


def time_stages(split_dir: str, settings: StageSettings, num_records: int) -> dict[str, float]:
  """Mean milliseconds per record for each stage, in this process (one core)."""
  import grain
  from hicmae_jax.data import schema

  info = schema.DatasetInfo.load(split_dir)
  source = grain.sources.ArrayRecordDataSource(info.shard_paths(split_dir))
  fns = stage_fns(settings)
  totals: dict[str, float] = {"read": 0.0, **{k: 0.0 for k in fns}}
  count = min(num_records, len(source))
  # Record 0 runs twice, the first time untimed: imports, mel banks and caches warm up.
  for i in [0] + list(range(count)):
    rng = np.random.default_rng([settings.seed, i])
    if i == 0 and not totals.get("_warm"):
      totals["_warm"] = 1.0
      state = fns["decode"](source[0], rng)
      for name, fn in fns.items():
        if name != "decode":
          fn(state, rng)
      continue
    t0 = time.perf_counter()
    raw = source[i]
    totals["read"] += time.perf_counter() - t0
    state = None
    for name, fn in fns.items():
      t0 = time.perf_counter()
      out = fn(raw, rng) if name == "decode" else fn(state, rng)
      dt = time.perf_counter() - t0
      if name == "decode":
        state = out
      totals[name] += dt / out if name == "mixup" else dt
  totals.pop("_warm")
  return {k: 1e3 * v / max(count, 1) for k, v in totals.items()}
