"""The console scripts of pyproject.toml: one function per command, each starting its binary
as the binary's `python -m` block does (every absl one through cli.run).

`pip install .` puts `hicmae-train`, `hicmae-eval`, ... on PATH; `hicmae-train ARGS` is
`python -m hicmae_jax.main ARGS`. Each function imports only its own binary: absl flags are
defined when a binary is imported, and two binaries may define the same flag name.
"""
from __future__ import annotations

import sys


def _absl(binary) -> None:
  """A binary whose `python -m` block is `cli.run(main)`.

  Its flags are registered under its module's name, not `__main__`'s as with `python -m`:
  they are made key flags of the script too, and its docstring the script's, so that `--help`
  prints what `python -m ... --help` prints."""
  from absl import flags

  from hicmae_jax import cli
  sys.modules["__main__"].__doc__ = binary.__doc__
  for flag in flags.FLAGS.get_key_flags_for_module(binary.__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  cli.run(binary.main)


def _argv(main) -> None:
  """A binary whose `python -m` block is `sys.exit(main())`: its main parses sys.argv itself
  (flags of its own through cli.run_own)."""
  sys.exit(main())


# ----------------------------------------------------------- train, evaluate, predict --

def train() -> None:
  """hicmae-train: python -m hicmae_jax.main."""
  from hicmae_jax import main
  _absl(main)


def evaluate() -> None:
  """hicmae-eval: python -m hicmae_jax.eval_main."""
  from hicmae_jax import eval_main
  _absl(eval_main)


def predict() -> None:
  """hicmae-predict: python -m hicmae_jax.predict."""
  from hicmae_jax import predict as binary
  _absl(binary)


# ------------------------------------------------------------------------------- data --

def prepare() -> None:
  """hicmae-prepare: python -m hicmae_jax.data.prepare."""
  from hicmae_jax.data.prepare import command as binary
  _argv(binary.main)


def verify() -> None:
  """hicmae-verify: python -m hicmae_jax.data.verify."""
  from hicmae_jax.data.format import verify as binary
  _argv(binary.main)


def synthetic() -> None:
  """hicmae-synthetic: python -m hicmae_jax.data.synthetic."""
  from hicmae_jax.data.prepare import synthetic as binary
  _argv(binary.main)


def tfds_build() -> None:
  """hicmae-tfds-build: python -m hicmae_jax.data.tfds_builders."""
  from hicmae_jax.data.prepare import tfds_builders
  _argv(tfds_builders.main)


def pipeline_benchmark() -> None:
  """hicmae-pipeline-benchmark: python -m hicmae_jax.data.pipeline_benchmark."""
  from hicmae_jax.data.pipeline import pipeline_benchmark as binary
  _absl(binary)


# ------------------------------------------------------------------------ checkpoints --

def convert() -> None:
  """hicmae-convert: python -m hicmae_jax.tools.convert_checkpoint."""
  from hicmae_jax.tools import convert_checkpoint
  _argv(convert_checkpoint.main)


def benchmark_convert() -> None:
  """hicmae-benchmark-convert: python -m hicmae_jax.tools.benchmark_convert."""
  from hicmae_jax.tools import benchmark_convert as binary
  _argv(binary.main)


# -------------------------------------------------------- uses of a trained model --

def export() -> None:
  """hicmae-export: python -m hicmae_jax.tools.export."""
  from hicmae_jax.tools import export as binary
  _absl(binary)


def benchmark_export() -> None:
  """hicmae-benchmark-export: python -m hicmae_jax.tools.benchmark_export."""
  from hicmae_jax.tools import benchmark_export as binary
  _argv(binary.main)


def benchmark_faces() -> None:
  """hicmae-benchmark-faces: python -m hicmae_jax.tools.benchmark_faces."""
  from hicmae_jax.tools import benchmark_faces as binary
  _argv(binary.main)


def aot_compile() -> None:
  """hicmae-aot-compile: python -m hicmae_jax.tools.aot_compile."""
  from hicmae_jax.tools import aot_compile as binary
  _argv(binary.main)


def export_features() -> None:
  """hicmae-export-features: python -m hicmae_jax.tools.export_features."""
  from hicmae_jax.tools import export_features as binary
  _absl(binary)


def linear_probe() -> None:
  """hicmae-linear-probe: python -m hicmae_jax.tools.linear_probe."""
  from hicmae_jax.tools import linear_probe as binary
  _absl(binary)


def plot_embeddings() -> None:
  """hicmae-plot-embeddings: python -m hicmae_jax.tools.plot_embeddings."""
  from hicmae_jax.tools import plot_embeddings as binary
  _absl(binary)


def reconstruct() -> None:
  """hicmae-reconstruct: python -m hicmae_jax.tools.reconstruct."""
  from hicmae_jax.tools import reconstruct as binary
  _absl(binary)


def learning_check() -> None:
  """hicmae-learning-check: python -m hicmae_jax.tools.learning_check."""
  from hicmae_jax.tools import learning_check as binary
  _absl(binary)


def make_splits() -> None:
  """hicmae-make-splits: python -m hicmae_jax.tools.make_splits."""
  from hicmae_jax.tools import make_splits as binary
  _absl(binary)


def cross_validate() -> None:
  """hicmae-cross-validate: python -m hicmae_jax.tools.cross_validate."""
  from hicmae_jax.tools import cross_validate as binary
  _absl(binary)


# -------------------------------------------------------------------------- measuring --

def benchmark() -> None:
  """hicmae-benchmark: python -m hicmae_jax.tools.benchmark."""
  from hicmae_jax.tools import benchmark as binary
  _argv(binary.main)


def profile_step() -> None:
  """hicmae-profile-step: python -m hicmae_jax.tools.profile_step."""
  from hicmae_jax.tools import profile_step as binary
  _argv(binary.main)


def matmul_throughput() -> None:
  """hicmae-matmul-throughput: python -m hicmae_jax.tools.matmul_throughput."""
  from hicmae_jax.tools import matmul_throughput as binary
  _argv(binary.main)


def device_env() -> None:
  """hicmae-device-env: python -m hicmae_jax.tools.device_env."""
  from hicmae_jax.tools import device_env as binary
  _argv(binary.main)


def device_parity() -> None:
  """hicmae-device-parity: python -m hicmae_jax.tools.device_parity."""
  from hicmae_jax.tools import device_parity as binary
  _argv(binary.main)


def gpu_check_summary() -> None:
  """hicmae-gpu-check-summary: python -m hicmae_jax.tools.gpu_check_summary."""
  from hicmae_jax.tools import gpu_check_summary as binary
  _argv(binary.main)


def torch_standin_step() -> None:
  """hicmae-torch-standin-step: python -m hicmae_jax.tools.torch_standin_step (needs torch)."""
  from hicmae_jax import cli
  try:
    from hicmae_jax.tools import torch_standin_step as binary
  except ModuleNotFoundError as e:
    if e.name != "torch":
      raise
    cli.fail("hicmae-torch-standin-step needs torch, which is not a dependency of this project: "
             "pip install torch (into a throwaway venv)")
  _argv(binary.main)
