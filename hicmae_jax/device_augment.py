"""Fine-tuning's float augmentation inside the train step: normalisation, the random resized
crop, the horizontal flip, random erasing and Mixup/CutMix of the video.

The host draws every random choice in the order of its own path
(`data/transforms/video_augment.py`, `data/transforms/mixing.py`) and sends them with the uint8
RandAugmented frames (a quarter of the bytes of the float clip): per example `aug_crop` (top,
left, h, w), `aug_flip`, `aug_erase` (top, left, h, w; h = 0: none), `aug_seed`; per batch row
`mix_weights` (lam, 1 - lam as float32) and `mix_box` (rows yl:yh, cols xl:xh; empty: Mixup).
The arithmetic is the host's, op for op
(normalisation by the same table, the crop's two-tap lerps (b - a) * w + a in float32, the mix
x * lam + flip(x) * (1 - lam)); XLA fuses those into FMAs (one rounding instead of two), so
the result equals the host's float clip to 1-2 ulp (tests/test_device_augment.py states the
bound). Erasing's N(0, 1) noise comes from
jax.random (seeded by `aug_seed`): the same distribution as the host's numpy draw, not the
same numbers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hicmae_jax import pixels

ERASE_MODES = ("pixel", "rand", "const")
MIX_PARTNER_SCOPE = "mix_partner"


def linear_taps_table(max_in: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """torch `interpolate(bilinear, align_corners=False)` taps for every input size 1..max_in
  (`data.video_augment._linear_taps`, the host's): i0, i1 int32 [max_in + 1, out_size] and
  the second tap's weight float32 [max_in + 1, out_size]; row 0 unused."""
  i0 = np.zeros((max_in + 1, out_size), np.int32)
  i1 = np.zeros((max_in + 1, out_size), np.int32)
  w = np.zeros((max_in + 1, out_size), np.float32)
  for n in range(1, max_in + 1):
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * (n / out_size) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i0[n], i1[n], w[n] = lo, np.minimum(lo + 1, n - 1), (src - lo).astype(np.float32)
  return i0, i1, w


def _lerp_rows(x: jax.Array, start: jax.Array, i0: jax.Array, i1: jax.Array,
               w: jax.Array) -> jax.Array:
  """Rows start + i0 and start + i1 of x [N, ...] mixed as (b - a) * w + a -> [S, ...]."""
  a = x[start + i0]
  b = x[start + i1]
  return (b - a) * w.reshape((-1,) + (1,) * (x.ndim - 1)) + a


def resized_crop(video: jax.Array, crop: jax.Array, out_size: int) -> jax.Array:
  """The host's `video_augment.resize_bilinear` of each example's crop box.

  video: float32 [B, T, H, W, C]; crop: int32 [B, 4] (top, left, h, w) ->
  float32 [B, T, out_size, out_size, C]."""
  tables_h = [jnp.asarray(t) for t in linear_taps_table(video.shape[2], out_size)]
  tables_w = [jnp.asarray(t) for t in linear_taps_table(video.shape[3], out_size)]

  def one(clip, box):
    top, left, h, w = box[0], box[1], box[2], box[3]
    x = jnp.transpose(clip, (1, 0, 2, 3))  # [H, T, W, C]: rows first, as the host
    x = _lerp_rows(x, top, *(t[h] for t in tables_h))  # [S, T, W, C]
    x = jnp.transpose(x, (2, 1, 0, 3))  # [W, T, S, C]
    x = _lerp_rows(x, left, *(t[w] for t in tables_w))  # [S, T, S, C]
    return jnp.transpose(x, (1, 2, 0, 3))  # [T, S, S, C]

  return jax.vmap(one)(video, crop)


def flip(video: jax.Array, flags: jax.Array) -> jax.Array:
  """Left-right flip of the examples whose flag is set. video [B, T, H, W, C], flags bool [B]."""
  return jnp.where(flags[:, None, None, None, None], video[:, :, :, ::-1], video)


def erase(video: jax.Array, boxes: jax.Array, seeds: jax.Array, mode: str = "pixel"
          ) -> jax.Array:
  """Random erasing's fill of each example's box (h = 0: none), the same region in every
  frame: N(0, 1) per pixel ('pixel') or per channel and frame ('rand'), or zeros ('const').

  video float32 [B, T, H, W, C], boxes int32 [B, 4] (top, left, h, w), seeds int32 [B].
  Examples run one after the other (lax.map) so that those not erased (3 in 4 at the
  original's probability) skip drawing the noise: a whole clip of normals is the costly part
  on a CPU (~23 ms for 16 x 160 x 160 x 3 on one core of an AMD EPYC, AVX-512,
  2026-12-03)."""
  if mode not in ERASE_MODES:
    raise ValueError(f"erase mode must be one of {ERASE_MODES}, got {mode!r}")
  _, t, height, width, chan = video.shape
  rows = jnp.arange(height)[None, :, None, None]
  cols = jnp.arange(width)[None, None, :, None]

  def fill(clip, box, seed):
    top, left, h, w = box[0], box[1], box[2], box[3]
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    key = jax.random.key(seed)
    if mode == "pixel":
      noise = jax.random.normal(key, clip.shape, clip.dtype)
    elif mode == "rand":
      noise = jax.random.normal(key, (t, 1, 1, chan), clip.dtype)
    else:
      noise = jnp.zeros((t, 1, 1, chan), clip.dtype)
    return jnp.where(inside, noise, clip)

  def one(args):
    clip, box, seed = args
    return jax.lax.cond(box[2] > 0, fill, lambda c, *_: c, clip, box, seed)

  if jax.sharding.get_abstract_mesh().size > 1:
    # The batch is split over devices: a loop over it would make every device gather every
    # clip (275 MB a step for fine-tuning Base at batch 56 on v5e-8, tools/aot_compile), so
    # each example draws its noise and keeps it only where erased (same values: the noise is
    # keyed per example).
    return jax.vmap(lambda c, b, k: jnp.where(b[2] > 0, fill(c, b, k), c))(video, boxes, seeds)
  return jax.lax.map(one, (video, boxes, seeds))


def mix(video: jax.Array, weights: jax.Array, boxes: jax.Array, block: int) -> jax.Array:
  """Mixup / CutMix of each row with its partner in the flipped block of `block` rows (the
  host pairs rows within its own batch; the global batch is the processes' batches in order).

  video float32 [B, T, H, W, C]; weights float32 [B, 2] (lam, 1 - lam); boxes int32 [B, 4]
  (yl, yh, xl, xh; an empty box: Mixup with the weights, a non-empty one: CutMix)."""
  b = video.shape[0]
  # Named: a block spans the process's devices, so partners are exchanged between them (a
  # collective-permute; tools/aot_compile allows it by this name).
  with jax.named_scope(MIX_PARTNER_SCOPE):
    partner = video.reshape((b // block, block) + video.shape[1:])[:, ::-1].reshape(video.shape)
  lam = weights[:, 0].reshape(-1, 1, 1, 1, 1)
  rest = weights[:, 1].reshape(-1, 1, 1, 1, 1)
  mixed = video * lam + partner * rest
  rows = jnp.arange(video.shape[2])[None, :, None]
  cols = jnp.arange(video.shape[3])[None, None, :]
  yl, yh, xl, xh = (boxes[:, i].reshape(-1, 1, 1) for i in range(4))
  inside = (rows >= yl) & (rows < yh) & (cols >= xl) & (cols < xh)  # [B, H, W]
  cutmix = ((boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2])).reshape(-1, 1, 1, 1, 1)
  cut = jnp.where(inside[:, None, :, :, None], partner, video)
  return jnp.where(cutmix, cut, mixed)


def train_video(batch: dict, input_size: int, *, erase_mode: str = "pixel",
                mix_block: int | None = None) -> jax.Array:
  """A fine-tuning batch's model input video: uint8 RandAugmented frames [B, T, S, S, 3] with
  the host's draws (aug_* and mix_*, see the module docstring) -> normalised, cropped,
  flipped, erased and mixed float32 [B, T, input_size, input_size, 3]. A batch without the
  fields passes through `pixels.model_input` (host-augmented float video). mix_block: rows per
  mixing block (default: the batch over the process count)."""
  video = pixels.model_input(batch["video"])
  if "aug_crop" not in batch:
    return video
  video = resized_crop(video, batch["aug_crop"], input_size)
  video = jax.lax.optimization_barrier(flip(video, batch["aug_flip"]))
  video = erase(video, batch["aug_erase"], batch["aug_seed"], erase_mode)
  # Materialised here: mixing reads every clip twice (itself and its partner), and XLA would
  # otherwise recompute the chain above inside each read.
  video = jax.lax.optimization_barrier(video)
  if "mix_weights" in batch:
    block = mix_block or video.shape[0] // jax.process_count()
    video = mix(video, batch["mix_weights"], batch["mix_box"], block)
  return video
