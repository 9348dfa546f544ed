"""A local Google Cloud Storage emulator for the gs:// tests (gcp-storage-emulator, in memory,
on a free loopback port, in its own process) and the environment that points every GCS client
of the stack at it:

  STORAGE_EMULATOR_HOST        gcsfs (epath's gs:// backend) and google-cloud-storage (Orbax's
                               bucket lookups, tensorboardX's event files)
  TENSORSTORE_GCS_HTTP_URL     tensorstore's gcs kvstore driver (Orbax's array files)
  GOOGLE_AUTH_TOKEN_FOR_TESTING  tensorstore's credentials (it asks for a token otherwise)
  gcsfs token 'anon'           (FSSPEC_GCS_TOKEN in a child process, fsspec.config here)
  GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false  gcsfs's bucket-type probe goes to the Storage
                               Control gRPC API, which the emulator does not serve (a 60 s
                               timeout per call otherwise)
  NO_GCE_CHECK, GCE_METADATA_HOST/IP  no credential lookup leaves the loopback interface

One gap of the emulator is filled here (`serve`): its media downloads lack the
x-goog-generation / x-goog-metageneration headers that GCS sends with every object read, and
tensorstore needs them to update an OCDBT manifest ("Malformed StorageGeneration" otherwise).
The emulator also ignores write preconditions (ifGenerationMatch), which only matter with two
writers of one object at once: Orbax gives each process its own OCDBT database.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = "hicmae-test"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def client_env(url: str) -> dict[str, str]:
  """The variables that send every GCS client of the stack to the emulator at `url`."""
  return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
          "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "FSSPEC_GCS_TOKEN": "anon",
          "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "GOOGLE_CLOUD_PROJECT": "test",
          "NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9",
          "GCE_METADATA_IP": "127.0.0.1:9"}


def _use_plain_gcsfs() -> None:
  """gs:// through gcsfs's plain filesystem even if gcsfs was imported before the environment
  was set. gcsfs picks its HNS-aware filesystem at import unless GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT
  is false then, and that one asks a control-plane API which the emulator lacks, through
  google-auth's metadata-server probe and its back-off, on every listing (minutes per test)."""
  if "gcsfs" not in sys.modules:  # it will read the environment at its import
    return
  import fsspec
  import gcsfs.core
  for protocol in ("gs", "gcs"):
    fsspec.register_implementation(protocol, gcsfs.core.GCSFileSystem, clobber=True)
  gcsfs.core.GCSFileSystem.clear_instance_cache()
  from etils.epath import backend  # it caches one filesystem per protocol
  backend.fsspec_backend._get_filesystem.cache_clear()


@contextlib.contextmanager
def running(log_path: str, bucket: str = BUCKET):
  """Starts the emulator with `bucket`, points this process's clients at it; yields the
  environment for child processes (os.environ plus client_env). Stops it at the end."""
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  with open(log_path, "wb") as log:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), f"--port={port}",
                             f"--bucket={bucket}"], stdout=log, stderr=subprocess.STDOUT)
  try:
    _wait_until_up(url, proc, log_path)
    env = client_env(url)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _use_plain_gcsfs()
    import fsspec.config  # the environment variable is read at fsspec's import: set it here
    saved_conf = fsspec.config.conf.get("gcs")
    fsspec.config.conf["gcs"] = {"token": "anon"}
    try:
      yield dict(os.environ)
    finally:
      for k, v in saved.items():
        if v is None:
          os.environ.pop(k, None)
        else:
          os.environ[k] = v
      if saved_conf is None:
        fsspec.config.conf.pop("gcs", None)
      else:
        fsspec.config.conf["gcs"] = saved_conf
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def _wait_until_up(url: str, proc, log_path: str, timeout_s: float = 60) -> None:
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise RuntimeError(f"the GCS emulator exited ({proc.returncode}): see {log_path}")
    try:
      with urllib.request.urlopen(f"{url}/", timeout=2):
        return
    except OSError:
      time.sleep(0.2)
  raise RuntimeError(f"the GCS emulator did not answer at {url} in {timeout_s}s")


def serve(port: int, bucket: str) -> None:
  """The emulator in memory on 127.0.0.1:port with `bucket`, object reads carrying their
  generation headers as GCS's do; runs until terminated."""
  from gcp_storage_emulator.exceptions import NotFound
  from gcp_storage_emulator.handlers import objects
  download = objects.download

  def download_with_generation(request, response, storage, *args, **kwargs):
    download(request, response, storage, *args, **kwargs)
    try:
      obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    except NotFound:
      return
    response["x-goog-generation"] = str(obj["generation"])
    response["x-goog-metageneration"] = str(obj["metageneration"])

  objects.download = download_with_generation  # before the server module binds its routes
  from gcp_storage_emulator import server
  logging.basicConfig(level=logging.ERROR)
  server.create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket).run()


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description="GCS emulator for the tests")
  parser.add_argument("--port", type=int, required=True)
  parser.add_argument("--bucket", default=BUCKET)
  args = parser.parse_args()
  serve(args.port, args.bucket)
