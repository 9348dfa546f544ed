"""Shared pytest setup: CPU-only JAX, parsed absl flags (grain needs them), fixture paths."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

import jax  # noqa: E402
import pytest  # noqa: E402

# Identical programs compiled by several tests (e.g. the same train step in a run and its
# resumed run) are compiled once.
jax.config.update("jax_compilation_cache_dir",
                  os.environ.get("HICMAE_TEST_JAX_CACHE", "/tmp/hicmae_jax_test_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

DATA_DIR = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
  return DATA_DIR


@pytest.fixture
def dataset_info_reads(monkeypatch) -> list:
  """The split folders whose dataset_info.json is read (DatasetInfo.load) while the test runs,
  in order: a test asserts how often a split is opened."""
  from hicmae_jax.data.format import schema
  reads = []
  real = schema.DatasetInfo.load.__func__

  def load(cls, split_dir, check_shards=True):
    reads.append(split_dir)
    return real(cls, split_dir, check_shards)
  monkeypatch.setattr(schema.DatasetInfo, "load", classmethod(load))
  return reads


@pytest.fixture
def x64():
  """Float64 enabled for one test (parity runs), and disabled again after it."""
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)
