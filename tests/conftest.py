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

# The files whose tests take minutes (multi-process jobs, TPU compiles, the GPU-check script, the
# benchmark, jobs killed and resumed), longest first as measured: they run first, so that under
# the README's `-n 2 --dist loadfile` (pytest.ini keeps xdist from reordering the files) the two
# workers do not end with one of them alone on a long file while the other idles. Every other
# file keeps its place after them.
LONG_FILES_FIRST = ("test_multiprocess.py", "test_aot_compile.py", "test_gpu_check.py",
                    "test_benchmark.py", "test_faults.py", "test_cloud.py", "test_train_e2e.py",
                    "test_multidevice.py", "test_side_by_side.py", "test_representations.py")


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
  first_seen: dict[str, int] = {}
  for item in items:
    first_seen.setdefault(item.path.name, len(first_seen))
  # a stable sort on the file: each file's tests stay together and in their order
  items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), first_seen[item.path.name]))


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
