"""Transformer building blocks of HiCMAE: q/v-bias attention, cross-attention, MLP, Block, CSBlock.

Conventions shared by every module here:
  * parameters are float32 (`param_dtype`), activations run in `dtype` (float32 or bfloat16;
    float64 for parity tests); LayerNorm statistics and softmax always run in at least float32;
  * randomness (drop path, dropout) comes from an `nnx.Rngs` passed at call time, so a
    training step is a pure function of (params, batch, key) and resumes exactly;
  * parameter names follow the original PyTorch modules (norm1, attn.qkv, attn.q_bias, ...),
    so a reader and the checkpoint converter see the original's structure.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from hicmae_jax.models.matmul import linear_dot_general

Initializer = Callable[..., jax.Array]

xavier_uniform = nnx.initializers.xavier_uniform()
zeros = nnx.initializers.zeros_init()


def linear(in_features: int, out_features: int, **kw) -> nnx.Linear:
  """`nnx.Linear` (kernel [in, out], bias [out]) whose matmul flattens the leading dimensions
  first (`models.matmul`: a backward without transposes on CPU); same parameters, same numbers."""
  return nnx.Linear(in_features, out_features, dot_general=linear_dot_general, **kw)


def gelu_exact(x: jax.Array) -> jax.Array:
  """The exact GELU as the original computes it, x/2 (1 + erf(x / sqrt 2)).

  Not `jax.nn.gelu(approximate=False)`, which goes through erfc: its backward recomputes erfc's
  piecewise approximation (three loop fusions over each [tokens, 4D] activation on CPU); erf is
  one polynomial. Same function (float32 difference < 1e-6); the Base pre-training step measured
  about 1 % faster with it, within the noise (Intel Xeon model 167, AVX-512, 2026-12-07;
  docs/bench_cpu_2026-12-07b)."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def at_least_f32(dtype) -> jnp.dtype:
  """float32 for bfloat16/float16/float32, float64 stays float64 (parity runs)."""
  return jnp.promote_types(dtype, jnp.float32)


def torch_default_uniform(fan_in: int) -> Initializer:
  """PyTorch's default Linear/Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (weights and biases)."""
  bound = 1.0 / (fan_in ** 0.5)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class LayerNorm(nnx.Module):
  """LayerNorm (eps 1e-6) computed in >= float32 and cast back to the activation dtype."""

  def __init__(self, dim: int, *, eps: float, param_dtype, rngs: nnx.Rngs):
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    ct = at_least_f32(x.dtype)
    y = x.astype(ct)
    mean = jnp.mean(y, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(y - mean), axis=-1, keepdims=True)
    y = (y - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale[...].astype(ct) + self.bias[...].astype(ct)
    return y.astype(x.dtype)


def attention_core(q: jax.Array, k: jax.Array, v: jax.Array, implementation: str) -> jax.Array:
  """Softmax attention. q [B, Nq, H, hd] (already scaled), k/v [B, Nk, H, hd] -> [B, Nq, H, hd].

  `implementation`: "native" (einsum, softmax in >= float32; exact in float64, with a
  hand-written backward, see `_native_attention`) or one of jax.nn.dot_product_attention's
  ("xla", "cudnn") for fused kernels on accelerators.
  """
  if implementation == "native":
    return _native_attention(q, k, v)
  return jax.nn.dot_product_attention(q, k, v, scale=1.0, implementation=implementation)


def _to_heads(t: jax.Array) -> jax.Array:
  """[B, N, H, hd] <-> [B, H, N, hd]."""
  return t.transpose(0, 2, 1, 3)


def _native_attention_fwd(q, k, v):
  ct = at_least_f32(q.dtype)
  qh, kh, vh = _to_heads(q), _to_heads(k), _to_heads(v)
  logits = jnp.einsum("bhqd,bhkd->bhqk", qh, kh, preferred_element_type=ct)
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(v.dtype), vh)
  return _to_heads(out), (qh, kh, vh, probs, out)


def _native_attention_bwd(res, d_out):
  """The softmax-attention gradient with every product a plain batched matmul over [B, H, ., .]
  and the softmax correction from rowsum(dO * O) ([B, H, Nq, hd], not [.., Nq, Nk]). Autodiff of
  the einsums measured 1.6x slower on CPU (transposed copies of the [B, H, Nq, Nk] tensors)."""
  qh, kh, vh, probs, out = res
  ct = probs.dtype
  do = _to_heads(d_out)
  dv = jnp.einsum("bhqk,bhqd->bhkd", probs.astype(vh.dtype), do)
  dp = jnp.einsum("bhqd,bhkd->bhqk", do, vh, preferred_element_type=ct)
  delta = jnp.sum(do.astype(ct) * out.astype(ct), axis=-1, keepdims=True)
  ds = (probs * (dp - delta)).astype(qh.dtype)
  dq = jnp.einsum("bhqk,bhkd->bhqd", ds, kh)
  dk = jnp.einsum("bhqk,bhqd->bhkd", ds, qh)
  return _to_heads(dq), _to_heads(dk), _to_heads(dv)


@jax.custom_vjp
def _native_attention(q, k, v):
  return _native_attention_fwd(q, k, v)[0]


_native_attention.defvjp(_native_attention_fwd, _native_attention_bwd)


class Attention(nnx.Module):
  """Multi-head self-attention with one bias-free qkv projection plus separate q_bias, v_bias."""

  def __init__(self, dim: int, num_heads: int, *, kernel_init: Initializer, dtype,
               param_dtype, attention_impl: str, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
    self.num_heads = num_heads
    self.dtype = dtype
    self.attention_impl = attention_impl
    self.qkv = linear(dim, 3 * dim, use_bias=False, kernel_init=kernel_init, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)
    self.q_bias = nnx.Param(jnp.zeros((dim,), param_dtype))
    self.v_bias = nnx.Param(jnp.zeros((dim,), param_dtype))
    self.proj = linear(dim, dim, kernel_init=kernel_init, bias_init=zeros, dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, N, D] -> [B, N, D]."""
    b, n, d = x.shape
    h = self.num_heads
    q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
    # k has no bias in the original (its bias is a fixed zero).
    q = q + self.q_bias[...].astype(self.dtype)
    v = v + self.v_bias[...].astype(self.dtype)
    q = q * ((d // h) ** -0.5)
    q, k, v = (t.reshape(b, n, h, d // h) for t in (q, k, v))
    out = attention_core(q, k, v, self.attention_impl).reshape(b, n, d)
    return self.proj(out)


class CrossAttention(nnx.Module):
  """Cross-attention: queries from x, keys/values from a context (bias: q_bias; k none; v_bias)."""

  def __init__(self, dim: int, num_heads: int, *, context_dim: int, kernel_init: Initializer,
               dtype, param_dtype, attention_impl: str, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
    self.num_heads = num_heads
    self.dtype = dtype
    self.attention_impl = attention_impl
    self.q = linear(dim, dim, use_bias=False, kernel_init=kernel_init, dtype=dtype,
                    param_dtype=param_dtype, rngs=rngs)
    self.kv = linear(context_dim, 2 * dim, use_bias=False, kernel_init=kernel_init,
                     dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.q_bias = nnx.Param(jnp.zeros((dim,), param_dtype))
    self.v_bias = nnx.Param(jnp.zeros((dim,), param_dtype))
    self.proj = linear(dim, dim, kernel_init=kernel_init, bias_init=zeros, dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
    """x [B, Nq, D], context [B, Nk, C] -> [B, Nq, D]."""
    b, nq, d = x.shape
    nk = context.shape[1]
    h = self.num_heads
    q = (self.q(x) + self.q_bias[...].astype(self.dtype)) * ((d // h) ** -0.5)
    k, v = jnp.split(self.kv(context), 2, axis=-1)
    v = v + self.v_bias[...].astype(self.dtype)
    out = attention_core(q.reshape(b, nq, h, d // h), k.reshape(b, nk, h, d // h),
                         v.reshape(b, nk, h, d // h), self.attention_impl)
    return self.proj(out.reshape(b, nq, d))


class Mlp(nnx.Module):
  """fc1 -> exact (erf) GELU -> fc2."""

  def __init__(self, dim: int, hidden: int, *, kernel_init: Initializer, dtype, param_dtype,
               rngs: nnx.Rngs):
    self.fc1 = linear(dim, hidden, kernel_init=kernel_init, bias_init=zeros, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)
    self.fc2 = linear(hidden, dim, kernel_init=kernel_init, bias_init=zeros, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(gelu_exact(self.fc1(x)))


class DropPath(nnx.Module):
  """Stochastic depth: drops the whole residual branch per sample, scaling kept ones by 1/keep."""

  def __init__(self, rate: float):
    self.rate = rate

  def __call__(self, x: jax.Array, rngs: nnx.Rngs | None, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    if rngs is None:
      raise ValueError("drop path is active (training mode, rate > 0) but no rngs were passed")
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(rngs.dropout(), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


class BlockOptions:
  """The per-block settings every Block/CSBlock of a model shares."""

  def __init__(self, *, mlp_ratio: float, eps: float, dtype, param_dtype, attention_impl: str,
               kernel_init: Initializer):
    self.mlp_ratio = mlp_ratio
    self.eps = eps
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.attention_impl = attention_impl
    self.kernel_init = kernel_init

  def replace(self, **kw) -> "BlockOptions":
    new = BlockOptions(mlp_ratio=self.mlp_ratio, eps=self.eps, dtype=self.dtype,
                       param_dtype=self.param_dtype, attention_impl=self.attention_impl,
                       kernel_init=self.kernel_init)
    for k, v in kw.items():
      setattr(new, k, v)
    return new


class Block(nnx.Module):
  """Pre-LN transformer block: x += attn(LN1 x); x += mlp(LN2 x)."""

  def __init__(self, dim: int, num_heads: int, opts: BlockOptions, *, drop_path: float,
               rngs: nnx.Rngs):
    self.norm1 = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.attn = Attention(dim, num_heads, kernel_init=opts.kernel_init, dtype=opts.dtype,
                          param_dtype=opts.param_dtype, attention_impl=opts.attention_impl,
                          rngs=rngs)
    self.norm2 = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * opts.mlp_ratio), kernel_init=opts.kernel_init,
                   dtype=opts.dtype, param_dtype=opts.param_dtype, rngs=rngs)
    self.drop_path = DropPath(drop_path)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None,
               deterministic: bool = True) -> jax.Array:
    """x [B, N, D] -> [B, N, D]."""
    x = x + self.drop_path(self.attn(self.norm1(x)), rngs, deterministic)
    x = x + self.drop_path(self.mlp(self.norm2(x)), rngs, deterministic)
    return x


class CSBlock(nnx.Module):
  """Cross+self block: x += xattn(LN_c1 x, LN_c2 c); x += attn(LN1 x); x += mlp(LN2 x)."""

  def __init__(self, dim: int, num_heads: int, opts: BlockOptions, *, context_dim: int,
               drop_path: float, rngs: nnx.Rngs):
    self.cross_norm1 = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.cross_norm2 = LayerNorm(context_dim, eps=opts.eps, param_dtype=opts.param_dtype,
                                 rngs=rngs)
    self.cross_attn = CrossAttention(dim, num_heads, context_dim=context_dim,
                                     kernel_init=opts.kernel_init, dtype=opts.dtype,
                                     param_dtype=opts.param_dtype,
                                     attention_impl=opts.attention_impl, rngs=rngs)
    self.norm1 = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.attn = Attention(dim, num_heads, kernel_init=opts.kernel_init, dtype=opts.dtype,
                          param_dtype=opts.param_dtype, attention_impl=opts.attention_impl,
                          rngs=rngs)
    self.norm2 = LayerNorm(dim, eps=opts.eps, param_dtype=opts.param_dtype, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * opts.mlp_ratio), kernel_init=opts.kernel_init,
                   dtype=opts.dtype, param_dtype=opts.param_dtype, rngs=rngs)
    self.drop_path = DropPath(drop_path)

  def __call__(self, x: jax.Array, context: jax.Array, *, rngs: nnx.Rngs | None = None,
               deterministic: bool = True) -> jax.Array:
    """x [B, N, D], context [B, M, C] -> [B, N, D]."""
    x = x + self.drop_path(self.cross_attn(self.cross_norm1(x), self.cross_norm2(context)),
                           rngs, deterministic)
    x = x + self.drop_path(self.attn(self.norm1(x)), rngs, deterministic)
    x = x + self.drop_path(self.mlp(self.norm2(x)), rngs, deterministic)
    return x


@jax.custom_vjp
def materialize_cotangent(x: jax.Array) -> jax.Array:
  """Identity whose backward passes the cotangent through an optimization barrier.

  Why: the gradient of the residual stream at block i sums the contributions of every later
  block. XLA:CPU fuses that whole chain of cheap adds into each consumer instead of storing it
  once, so every block's backward recomputes it from the top (quadratic in depth; measured at
  ~40 % of the Base pre-training backward). The barrier makes the cotangent at each block
  boundary a stored buffer. It only acts where the barrier survives to fusion: on CPU the
  training step is compiled with `sharding.compiler_options` (barrier expander off); elsewhere
  XLA removes it and this is a plain identity. Numerically a no-op everywhere."""
  return x


materialize_cotangent.defvjp(lambda x: (x, None),
                             lambda _, g: (jax.lax.optimization_barrier(g),))


def run_block(block: nnx.Module, x: jax.Array, *args, remat: bool, rngs: nnx.Rngs | None,
              deterministic: bool) -> jax.Array:
  """Calls a Block/CSBlock, optionally rematerialised (activations recomputed in backward)."""
  x = materialize_cotangent(x)
  if not remat:
    return block(x, *args, rngs=rngs, deterministic=deterministic)

  def call(blk, x, rngs, *args):
    return blk(x, *args, rngs=rngs, deterministic=deterministic)
  return nnx.remat(call)(block, x, rngs, *args)
