"""A model folder to share: weights as safetensors, config.json, a model card (README.md).

The layout the Hugging Face Hub uses; any safetensors reader opens the weights without this
code (`safetensors.numpy.load_file`, `safetensors.flax.load_file`, Orbax):

  model.safetensors   every parameter by its dotted name (`encoder.blocks.0.attn.qkv.kernel`),
                      float32 as trained, bit for bit
  config.json         {"format": "hicmae_jax", "format_version", "kind", "model": the model
                      config, "class_names" | "target_names", "sampling_rate",
                      "eval_batch_size", "weights": {"file", "sha256", "num_tensors",
                      "num_values"}, "source", "hicmae_jax_version"}
  README.md           the model card (hicmae_jax/sharing/model_card.py)

Writing goes to a temporary folder renamed at the end: no half-written folder is left. Reading
checks what a copy can break (config.json there and readable, the file's header and size, the
SHA-256 recorded at export) and names the file and the fix.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Mapping

import numpy as np

FORMAT = "hicmae_jax"
FORMAT_VERSION = 1
WEIGHTS_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"
CARD_FILENAME = "README.md"


class ExportedFolderError(ValueError):
  """An exported model folder that cannot be read; the message names the file and the fix."""


def looks_exported(path: str) -> bool:
  """True for a folder holding config.json or model.safetensors (our export's files), which no
  Orbax checkpoint folder or run workdir holds."""
  return os.path.isdir(path) and any(
      os.path.isfile(os.path.join(path, n)) for n in (CONFIG_FILENAME, WEIGHTS_FILENAME))


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def check_output(folder: str, overwrite: bool) -> None:
  """`folder` may be written: new, empty, or replaced with `overwrite`."""
  if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)) \
      and not overwrite:
    raise FileExistsError(f"--output={folder} exists and is not empty: choose another folder "
                          f"or pass --overwrite")


def write_atomically(folder: str, write: Callable[[str], Any], *, overwrite: bool) -> Any:
  """Runs write(tmp) on a temporary folder beside `folder` and renames it to `folder` when it
  returns (replacing `folder` with `overwrite`); returns what write returned."""
  check_output(folder, overwrite)
  parent = os.path.dirname(os.path.abspath(folder))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
  os.chmod(tmp, 0o755)  # mkdtemp makes it private; the folder is meant to be shared
  try:
    result = write(tmp)
    if os.path.exists(folder):
      shutil.rmtree(folder) if os.path.isdir(folder) else os.remove(folder)
    os.replace(tmp, folder)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return result


def write_folder(folder: str, params: Mapping[str, Any], config: dict[str, Any], card: str, *,
                 overwrite: bool = False) -> dict[str, Any]:
  """Writes the three files into `folder` (replaced only with `overwrite`); returns the
  config.json written (with its "weights" entry)."""
  from safetensors.numpy import save_file

  def write(tmp: str) -> dict[str, Any]:
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in sorted(params.items())}
    weights = os.path.join(tmp, WEIGHTS_FILENAME)
    save_file(arrays, weights, metadata={"format": FORMAT, "kind": str(config.get("kind"))})
    written = dict(config, format=FORMAT, format_version=FORMAT_VERSION, weights={
        "file": WEIGHTS_FILENAME, "sha256": sha256_of(weights), "num_tensors": len(arrays),
        "num_values": int(sum(a.size for a in arrays.values()))})
    with open(os.path.join(tmp, CONFIG_FILENAME), "w") as f:
      json.dump(written, f, indent=2, sort_keys=True)
    with open(os.path.join(tmp, CARD_FILENAME), "w") as f:
      f.write(card)
    return written
  return write_atomically(folder, write, overwrite=overwrite)


def read_config(folder: str) -> dict[str, Any]:
  """config.json of an exported folder, checked to be ours and of a version this code reads."""
  path = os.path.join(folder, CONFIG_FILENAME)
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{folder}: no such folder; give a folder written by python -m "
                            f"hicmae_jax.tools.export --format=safetensors")
  if not os.path.isfile(path):
    raise ExportedFolderError(f"{folder} has no {CONFIG_FILENAME}: it is not an exported model "
                              f"folder; export one with python -m hicmae_jax.tools.export "
                              f"--format=safetensors, or copy its config.json along")
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ExportedFolderError(f"{path} is not readable JSON ({e}): copy it again from the "
                              f"exported folder") from e
  if not isinstance(config, dict) or config.get("format") != FORMAT:
    raise ExportedFolderError(f"{path} is not a hicmae_jax model config (no \"format\": "
                              f"\"{FORMAT}\"): give a folder written by tools.export")
  if config.get("format_version", 0) > FORMAT_VERSION:
    raise ExportedFolderError(f"{path} has format_version {config['format_version']}, newer "
                              f"than this code reads ({FORMAT_VERSION}): update hicmae_jax")
  if not isinstance(config.get("model"), dict) or config.get("kind") is None:
    raise ExportedFolderError(f"{path} has no \"model\" / \"kind\": export the folder again")
  return config


def read_folder(folder: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(config.json, {dotted name: float32 numpy array}) of an exported folder, the weights
  checked against the size, count and SHA-256 config.json records."""
  from safetensors import SafetensorError
  from safetensors.numpy import load_file
  config = read_config(folder)
  record = config.get("weights") or {}
  path = os.path.join(folder, record.get("file", WEIGHTS_FILENAME))
  fix = "copy the folder again (or export it again)"
  if not os.path.isfile(path):
    raise ExportedFolderError(f"{path} is missing: {fix}")
  try:
    params = load_file(path)
  except (SafetensorError, OSError, ValueError) as e:
    raise ExportedFolderError(f"{path} is damaged (truncated or altered: {e}): {fix}") from e
  if "num_tensors" in record and len(params) != record["num_tensors"]:
    raise ExportedFolderError(f"{path} holds {len(params)} tensors, config.json records "
                              f"{record['num_tensors']}: {fix}")
  if record.get("sha256") and sha256_of(path) != record["sha256"]:
    raise ExportedFolderError(f"{path} does not match the SHA-256 that config.json records "
                              f"(the file was changed after export): {fix}")
  return config, params
