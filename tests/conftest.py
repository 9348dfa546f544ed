"""Shared pytest setup: CPU-only JAX, parsed absl flags (grain needs them), fixture paths."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

from absl import flags  # noqa: E402

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

import pytest  # noqa: E402

DATA_DIR = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
  return DATA_DIR
