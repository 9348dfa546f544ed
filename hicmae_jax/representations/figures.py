"""Figure output shared by the pictures: PNG files and RGB arrays (for TensorBoard)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from hicmae_jax import io_utils
from hicmae_jax.reconstruction import figure_to_rgb  # the training job renders with it too


def png_bytes(rgb: np.ndarray, *, palette: bool = True) -> bytes:
  """uint8 [H, W, 3] -> PNG bytes; with `palette` reduced to 256 colours (no dithering),
  which keeps plots and these small frames intact at a third of the size."""
  img = Image.fromarray(np.asarray(rgb, np.uint8))
  if palette:
    img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
  buf = io.BytesIO()
  img.save(buf, format="PNG", optimize=True)
  return buf.getvalue()


def save_figure(fig, path: str, *, palette: bool = True) -> None:
  """Writes a Figure as PNG, atomically (a reader never sees half a file)."""
  data = png_bytes(figure_to_rgb(fig), palette=palette)
  io_utils.atomic_write(path, lambda f: f.write(data))
