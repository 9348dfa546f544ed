"""A PyTorch stand-in for the original's pre-training step, for side-by-side CPU timing.

    pip install torch   # into a throwaway venv: torch is not a dependency of this project
    python -m hicmae_jax.tools.torch_standin_step --size=base --batch_size=2 --steps=12

NOT the original's code (that is not ours to copy, and not at hand): a plain PyTorch step
written from SPEC.md with the original's shapes and operations, the way its release writes them
(timm-style Blocks with explicit softmax attention, Conv3d/Conv2d patch embeddings, the
hierarchy, the contrastive loss, the fusion CSBlocks, the decoders with skip connections, the
per-patch normalised targets, torch.optim.AdamW). It is a stand-in: its figure is labelled so
wherever it is published. It prints the median step time after warm-up, as
`tools.benchmark --what=step` does for ours, and the CPU it ran on.

ISA on x86 (to compare with `XLA_FLAGS=--xla_cpu_max_isa=AVX2` on the same machine):
`ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2` caps PyTorch's own kernels and oneDNN.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time

import torch
from absl import flags
from torch import nn
from torch.nn import functional as F

from hicmae_jax import cli

# SPEC.md section 1 (width, heads, decoder width, decoder heads), depths 10/10/2/4.
SIZES = {"tiny": (256, 4, 192, 3), "small": (384, 6, 192, 3), "base": (512, 8, 384, 6)}
ENCODER_DEPTH, FUSION_DEPTH, DECODER_DEPTH, HIERARCHY = 10, 2, 4, (3, 6, 9)
NUM_VIDEO, NUM_AUDIO = 800, 128           # 8x10x10 tubelets, 16x8 fbank patches
KEEP_VIDEO, KEEP_AUDIO = 80, 26           # 0.9 tube mask, 0.8 random mask (SPEC 5.1)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1)


def sinusoid(n: int, d: int) -> torch.Tensor:
  """Fixed 1-D sinusoid table [1, n, d] (interleaved sin/cos)."""
  pos = torch.arange(n, dtype=torch.float64)[:, None]
  j = torch.arange(d, dtype=torch.float64)[None]
  angle = pos / torch.pow(10000.0, 2 * (j // 2) / d)
  table = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle))
  return table.float()[None]


class Attention(nn.Module):
  """qkv without bias plus q_bias / v_bias; q scaled after its bias; explicit softmax."""

  def __init__(self, dim: int, heads: int, context_dim: int | None = None):
    super().__init__()
    self.heads, self.scale = heads, (dim // heads) ** -0.5
    self.cross = context_dim is not None
    if self.cross:
      self.q = nn.Linear(dim, dim, bias=False)
      self.kv = nn.Linear(context_dim, 2 * dim, bias=False)
    else:
      self.qkv = nn.Linear(dim, 3 * dim, bias=False)
    self.q_bias = nn.Parameter(torch.zeros(dim))
    self.v_bias = nn.Parameter(torch.zeros(dim))
    self.proj = nn.Linear(dim, dim)

  def forward(self, x, context=None):
    b, n, d = x.shape
    if self.cross:
      q = F.linear(x, self.q.weight, self.q_bias)
      kv_bias = torch.cat([torch.zeros_like(self.v_bias), self.v_bias])
      k, v = F.linear(context, self.kv.weight, kv_bias).chunk(2, dim=-1)
    else:
      bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
      q, k, v = F.linear(x, self.qkv.weight, bias).chunk(3, dim=-1)
    split = lambda t: t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)
    q, k, v = split(q) * self.scale, split(k), split(v)
    attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
  """Pre-LN block; with context_dim, a CSBlock (cross-attention first)."""

  def __init__(self, dim: int, heads: int, context_dim: int | None = None):
    super().__init__()
    self.cross = context_dim is not None
    if self.cross:
      self.norm_c1, self.norm_c2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(context_dim, eps=1e-6)
      self.cross_attn = Attention(dim, heads, context_dim)
    self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
    self.attn = Attention(dim, heads)
    self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

  def forward(self, x, context=None):
    if self.cross:
      x = x + self.cross_attn(self.norm_c1(x), self.norm_c2(context))
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
  def __init__(self, patch: nn.Module, num_tokens: int, dim: int, heads: int):
    super().__init__()
    self.patch, self.norm = patch, nn.LayerNorm(dim, eps=1e-6)
    self.register_buffer("pos", sinusoid(num_tokens, dim))
    self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(ENCODER_DEPTH))

  def forward(self, x, visible):
    """x: the raw input; visible: int64 [B, K] token indices -> (final [B,K,D], hierarchy)."""
    tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos
    tokens = torch.gather(tokens, 1, visible[..., None].expand(-1, -1, tokens.shape[-1]))
    levels = []
    for i, block in enumerate(self.blocks):
      tokens = block(tokens)
      if i in HIERARCHY:
        levels.append(self.norm(tokens))
    return levels[-1], levels


class Decoder(nn.Module):
  def __init__(self, dim: int, dec_dim: int, heads: int, num_tokens: int, out_dim: int):
    super().__init__()
    self.to_decoder = nn.Linear(dim, dec_dim, bias=False)
    self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
    self.register_buffer("pos", sinusoid(num_tokens, dec_dim))
    self.blocks = nn.ModuleList([Block(dec_dim, heads)] + [
        Block(dec_dim, heads, dec_dim) for _ in range(DECODER_DEPTH - 1)])
    self.norm, self.head = nn.LayerNorm(dec_dim, eps=1e-6), nn.Linear(dec_dim, out_dim)

  def forward(self, fused, levels, visible, masked):
    b = fused.shape[0]
    pos = self.pos.expand(b, -1, -1)
    take = lambda idx: torch.gather(pos, 1, idx[..., None].expand(-1, -1, pos.shape[-1]))
    vis_pos, mask_pos = take(visible), take(masked)
    x = torch.cat([self.to_decoder(fused) + vis_pos,
                   self.mask_token.expand(b, masked.shape[1], -1) + mask_pos], dim=1)
    x = self.blocks[0](x)
    for block, level in zip(self.blocks[1:], reversed(levels)):
      x = block(x, self.to_decoder(level) + vis_pos)
    return self.head(self.norm(x[:, visible.shape[1]:]))


class PretrainModel(nn.Module):
  def __init__(self, size: str):
    super().__init__()
    dim, heads, dec_dim, dec_heads = SIZES[size]
    self.video = Encoder(nn.Conv3d(3, dim, (2, 16, 16), (2, 16, 16)), NUM_VIDEO, dim, heads)
    self.audio = Encoder(nn.Conv2d(1, dim, 16, 16), NUM_AUDIO, dim, heads)
    self.fusion_v = nn.ModuleList(Block(dim, heads, dim) for _ in range(FUSION_DEPTH))
    self.fusion_a = nn.ModuleList(Block(dim, heads, dim) for _ in range(FUSION_DEPTH))
    self.fusion_norm_v = nn.LayerNorm(dim, eps=1e-6)
    self.fusion_norm_a = nn.LayerNorm(dim, eps=1e-6)
    self.decoder_v = Decoder(dim, dec_dim, dec_heads, NUM_VIDEO, 2 * 16 * 16 * 3)
    self.decoder_a = Decoder(dim, dec_dim, dec_heads, NUM_AUDIO, 16 * 16)

  def forward(self, video, audio, vis_v, mask_v, vis_a, mask_a):
    fv, levels_v = self.video(video, vis_v)
    fa, levels_a = self.audio(audio.unsqueeze(1), vis_a)
    contrastive = 0.0
    target = torch.arange(video.shape[0])
    for lv, la in zip(levels_v, levels_a):
      zv, za = F.normalize(lv.mean(1), dim=-1), F.normalize(la.mean(1), dim=-1)
      logits = zv @ za.t() / 0.07
      contrastive = contrastive + 0.5 * (F.cross_entropy(logits, target)
                                         + F.cross_entropy(logits.t(), target))
    for bv, ba in zip(self.fusion_v, self.fusion_a):
      fv, fa = bv(fv, fa), ba(fa, fv)          # simultaneous update
    fv, fa = self.fusion_norm_v(fv), self.fusion_norm_a(fa)
    return (self.decoder_v(fv, levels_v, vis_v, mask_v),
            self.decoder_a(fa, levels_a, vis_a, mask_a), contrastive)


def video_targets(video: torch.Tensor) -> torch.Tensor:
  """[B,3,16,160,160] normalised -> [B, 800, 1536] per-patch normalised, frame-difference."""
  x = video * STD + MEAN
  b = x.shape[0]
  x = x.reshape(b, 3, 8, 2, 10, 16, 10, 16).permute(0, 2, 4, 6, 3, 5, 7, 1)
  x = x.reshape(b, 800, 2, 256, 3)
  mean, std = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), unbiased=True, keepdim=True)
  x = (x - mean) / (std.sqrt() + 1e-6)
  x = torch.cat([x[:, :, :1], x[:, :, 1:] - x[:, :, :1]], dim=2)
  return x.reshape(b, 800, 1536)


def audio_targets(fbank: torch.Tensor) -> torch.Tensor:
  """[B,256,128] -> [B, 128, 256] per-patch normalised."""
  b = fbank.shape[0]
  x = fbank.reshape(b, 16, 16, 8, 16).permute(0, 1, 3, 2, 4).reshape(b, 128, 256)
  return (x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=True, keepdim=True).sqrt() + 1e-6)


def masks(batch: int, generator: torch.Generator):
  """Tube mask over 100 spatial patches x 8 slots, random audio mask: visible/masked indices."""
  spatial = torch.rand(batch, 100, generator=generator).argsort(1)
  keep_s, drop_s = spatial[:, :10].sort(1).values, spatial[:, 10:].sort(1).values
  tube = lambda s: (torch.arange(8)[None, :, None] * 100 + s[:, None]).reshape(
      batch, -1).sort(1).values
  audio = torch.rand(batch, NUM_AUDIO, generator=generator).argsort(1)
  return (tube(keep_s), tube(drop_s), audio[:, :KEEP_AUDIO].sort(1).values,
          audio[:, KEEP_AUDIO:].sort(1).values)


def step(model, optimizer, video, fbank, generator):
  vis_v, mask_v, vis_a, mask_a = masks(video.shape[0], generator)
  with torch.no_grad():
    tv, ta = video_targets(video), audio_targets(fbank)
    tv = torch.gather(tv, 1, mask_v[..., None].expand(-1, -1, tv.shape[-1]))
    ta = torch.gather(ta, 1, mask_a[..., None].expand(-1, -1, ta.shape[-1]))
  pv, pa, contrastive = model(video, fbank, vis_v, mask_v, vis_a, mask_a)
  loss = F.mse_loss(pv, tv) + F.mse_loss(pa, ta) + 0.0025 * contrastive
  optimizer.zero_grad(set_to_none=True)
  loss.backward()
  optimizer.step()
  return float(loss.detach())


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_enum("size", "base", sorted(SIZES), "model size", flag_values=values)
  for name, default, text in (("batch_size", 2, "clips a step"),
                              ("steps", 12, "timed steps (median reported)"),
                              ("warmup", 2, "untimed steps first"),
                              ("threads", 0, "torch threads (0: torch's default)")):
    flags.DEFINE_integer(name, default, text, flag_values=values)
  flags.DEFINE_string("out", "", "JSON file for the figures", flag_values=values)


def main(argv: list[str] | None = None) -> int:
  """The command line (argv without the program name; None: sys.argv[1:]) -> the exit code."""
  return cli.run_own(_define_flags, _main, argv, doc=__doc__)


def _main(args: flags.FlagValues) -> None:
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  generator = torch.Generator().manual_seed(0)
  model = PretrainModel(args.size)
  num_params = sum(p.numel() for p in model.parameters())
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                weight_decay=0.05)
  video = torch.randn(args.batch_size, 3, 16, 160, 160)
  fbank = torch.randn(args.batch_size, 256, 128)
  times = []
  for i in range(args.warmup + args.steps):
    start = time.perf_counter()
    loss = step(model, optimizer, video, fbank, generator)
    if i >= args.warmup:
      times.append(time.perf_counter() - start)
    if not math.isfinite(loss):
      raise SystemExit(f"non-finite loss at step {i}")
  result = {"what": "PyTorch stand-in for the original's pre-training step (NOT the original)",
            "size": args.size, "batch_size": args.batch_size, "parameters": num_params,
            "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "steps": args.steps, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
  print(json.dumps(result, indent=2))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  sys.exit(main())
