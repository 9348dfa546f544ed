"""Mixup / CutMix with label smoothing (timm's Mixup, mode 'batch'): a transform of a whole
fine-tuning batch."""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np


def smooth_one_hot(labels: np.ndarray, num_classes: int, smoothing: float = 0.1) -> np.ndarray:
  """int [B] -> float32 [B, C]: off = smoothing / C, on = 1 - smoothing + off."""
  off = smoothing / num_classes
  out = np.full((labels.shape[0], num_classes), off, dtype=np.float32)
  out[np.arange(labels.shape[0]), labels.astype(np.int64)] = 1.0 - smoothing + off
  return out


@dataclasses.dataclass(frozen=True)
class MixParams:
  """One batch's mixing: lam (label weight of the unflipped batch), whether CutMix, and the
  CutMix box (rows yl:yh, cols xl:xh) or None."""
  lam: float
  use_cutmix: bool
  box: tuple[int, int, int, int] | None


def sample_mix_params(rng: np.random.Generator, height: int, width: int, *,
                      mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                      switch_prob: float = 0.5, prob: float = 1.0,
                      correct_lam: bool = True) -> MixParams:
  """timm `_params_per_batch` + `cutmix_bbox_and_lam` (no minmax): lam ~ Beta(a, a) of the
  chosen method; CutMix box of side sqrt(1 - lam) around a uniform centre, clipped, and lam
  corrected to the kept area."""
  if not (mixup_alpha > 0 or cutmix_alpha > 0) or rng.random() >= prob:
    return MixParams(1.0, False, None)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = bool(rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
  else:
    use_cutmix = cutmix_alpha > 0
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
  lam = float(rng.beta(alpha, alpha))
  if not use_cutmix:
    return MixParams(lam, False, None)
  cut = math.sqrt(1.0 - lam)
  cut_h, cut_w = int(height * cut), int(width * cut)
  cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
  yl, yh = int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height))
  xl, xh = int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width))
  if correct_lam:
    lam = 1.0 - (yh - yl) * (xh - xl) / float(height * width)
  return MixParams(lam, True, (yl, yh, xl, xh))


def _mix_pairs_in_place(video: np.ndarray, lam: np.float32, rest: np.float32) -> np.ndarray:
  """video [B, ...] float32 -> video * lam + video[::-1] * rest, computed pair by pair in
  place (rows i and B-1-i need each other only): the same float32 products and sum."""
  b = video.shape[0]
  for i in range(b // 2):
    j = b - 1 - i
    a, z = video[i] * lam, video[j] * lam
    a += video[j] * rest
    z += video[i] * rest
    video[i], video[j] = a, z
  if b % 2:  # the middle row mixes with itself
    m = b // 2
    video[m] = video[m] * lam + video[m] * rest
  return video


def mixup_cutmix(batch: Mapping[str, np.ndarray], rng: np.random.Generator, *,
                 num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, prob: float = 1.0, label_smoothing: float = 0.1,
                 mix_audio: bool = False, correct_lam: bool = True,
                 in_place: bool = False, video_on_device: bool = False,
                 ) -> dict[str, np.ndarray]:
  """Whole-batch Mixup/CutMix pairing each sample with the flipped batch (timm mode 'batch').

  Mixes `video` [B, T, H, W, 3] (CutMix: the same H x W box in every frame) and, with
  mix_audio, `audio` [B, Ta, F] (linear mix with the final lam for both methods: a
  spectrogram box has no meaning tied to the video box). The original mixes the video only
  but the labels fully (SPEC 11). Adds `targets` float32 [B, C] = lam * smooth(y) +
  (1 - lam) * smooth(flip(y)); the input is not modified unless in_place (for a caller that
  owns the batch: the pipeline's freshly stacked one), which gives the same values without
  the whole-batch copies. video_on_device: the video (uint8 frames before their crop) is
  mixed in the train step (`hicmae_jax.device_augment.mix`); instead the batch gets
  mix_weights float32 [B, 2] (lam, 1 - lam) and mix_box int32 [B, 4] (CutMix's rows yl:yh,
  cols xl:xh; zeros for Mixup or no mixing), from the same draws."""
  out = dict(batch)
  video = np.asarray(batch["video"])
  params = sample_mix_params(rng, video.shape[2], video.shape[3], mixup_alpha=mixup_alpha,
                             cutmix_alpha=cutmix_alpha, switch_prob=switch_prob, prob=prob,
                             correct_lam=correct_lam)
  lam = params.lam
  if video_on_device:
    b = video.shape[0]
    use_box = params.use_cutmix and lam != 1.0
    out["mix_weights"] = np.tile(np.array([lam, 1.0 - lam], np.float32), (b, 1))
    out["mix_box"] = np.tile(np.array(params.box if use_box else (0, 0, 0, 0), np.int32), (b, 1))
  if lam != 1.0 and not video_on_device:
    if params.use_cutmix:
      yl, yh, xl, xh = params.box
      mixed = video if in_place else video.copy()
      mixed[:, :, yl:yh, xl:xh] = video[::-1, :, yl:yh, xl:xh].copy()
    elif in_place and video.dtype == np.float32:
      mixed = _mix_pairs_in_place(video, np.float32(lam), np.float32(1.0 - lam))
    else:
      mixed = video * np.float32(lam) + video[::-1] * np.float32(1.0 - lam)
    out["video"] = mixed.astype(np.float32, copy=False)
  if lam != 1.0:
    if mix_audio:
      audio = np.asarray(batch["audio"])
      out["audio"] = (audio * np.float32(lam) + audio[::-1] * np.float32(1.0 - lam)).astype(
          np.float32, copy=False)
  labels = np.asarray(batch["label"])
  y1 = smooth_one_hot(labels, num_classes, label_smoothing)
  out["targets"] = (y1 * np.float32(lam) + y1[::-1] * np.float32(1.0 - lam)).astype(np.float32)
  return out
