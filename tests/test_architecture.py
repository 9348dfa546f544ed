"""The package's layering and size rules (docs/ARCHITECTURE.md), checked from the source.

Layers only point down: every folder and top-level module sits in one layer of LAYERS and
imports only its own layer and those below; nothing in hicmae_jax imports the command-line
tools or the repository's configs/, neither the trainer nor prediction/ imports representations,
pure maths does not import models, and no two folders import each other; in data/, prepare/
and pipeline/ share only format/ and transforms/. Inside layer 4 the modules follow
LAYER4_ORDER; across the package no chain of module-level imports comes back to where it
started. Modules stay under 600 lines, functions under 80."""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "hicmae_jax"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# docs/ARCHITECTURE.md's table, bottom up: (layer, its folders and top-level modules). Every
# one is listed, so a new module has to be placed (test_every_module_has_a_layer).
LAYERS = (
    ("foundations", {"errors", "log_noise", "cli", "paths", "io_utils", "experiments",
                     "host_info", "preemption", "mask_counts", "patches", "pixels",
                     "device_augment", "accelerators", "barriers"}),
    ("models and maths; faces", {"models", "masking", "targets", "losses", "faces"}),
    ("data", {"data"}),
    ("checkpoints", {"checkpointing", "checkpoints"}),
    ("training and evaluation", {"objectives", "optim", "sharding", "writers", "metrics",
                                 "clip_predictions", "periodic", "config_validation",
                                 "runtime", "compiled_report", "train_state",
                                 "reconstruction", "evaluate", "train", "demo"}),
    ("uses of a trained model", {"representations", "prediction", "crossval", "sharing"}),
    # hicmae_jax: the package's __init__ (from_pretrained, imported on first use).
    ("binaries and tools", {"main", "eval_main", "predict", "tools", "hicmae_jax"}),
)
LAYER_OF = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}
# Layer 4's modules bottom up (docs/ARCHITECTURE.md): each imports only those before it, inside
# functions too.
LAYER4_ORDER = ("objectives", "optim", "sharding", "writers", "metrics", "clip_predictions",
                "periodic", "config_validation", "runtime", "compiled_report", "train_state",
                "reconstruction", "evaluate", "train", "demo")


def _modules():
  return sorted(p for p in PACKAGE.rglob("*.py"))


def _module_name(path: pathlib.Path) -> str:
  rel = path.relative_to(PACKAGE.parent).with_suffix("")
  parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
  return ".".join(parts)


def _imports(path: pathlib.Path, module_level: bool = False) -> set[str]:
  """Every module name `path` imports (absolute; relative imports resolved); with module_level,
  only the imports run when the module is imported (none inside a function)."""
  tree = ast.parse(path.read_text(), str(path))
  here = _module_name(path).split(".")
  package = here if path.name == "__init__.py" else here[:-1]
  out = set()
  for node in (_module_level_nodes(tree) if module_level else ast.walk(tree)):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
      subs = {f"{base}.{a.name}" for a in node.names}
      out.update(subs)
      if not all(_is_module(m) for m in subs):  # a name defined in `base` itself
        out.add(base)
  return out


def _is_module(name: str) -> bool:
  path = PACKAGE.parent.joinpath(*name.split("."))
  return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_level_nodes(tree: ast.AST):
  """The nodes of `tree` outside function bodies (class bodies run at import time)."""
  for child in ast.iter_child_nodes(tree):
    if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      yield child
      yield from _module_level_nodes(child)


def _folder(module: str) -> str:
  """The layer a module belongs to: its sub-package, or the top-level module itself."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else parts[0]


def test_every_module_has_a_layer():
  unplaced = sorted({_folder(_module_name(p)) for p in _modules()} - set(LAYER_OF))
  assert not unplaced, f"add these to LAYERS (and docs/ARCHITECTURE.md): {unplaced}"


def test_imports_point_down():
  upward = []
  for p in _modules():
    src = _folder(_module_name(p))
    for m in _imports(p):
      if m.startswith("hicmae_jax.") and _folder(m) in LAYER_OF:
        dst = _folder(m)
        if LAYER_OF[dst] > LAYER_OF.get(src, len(LAYERS)):
          upward.append(f"{p.relative_to(PACKAGE.parent)} ({LAYERS[LAYER_OF[src]][0]}) imports "
                        f"{m} ({LAYERS[LAYER_OF[dst]][0]})")
  assert not upward, "\n".join(sorted(upward))


def test_no_module_imports_tools_or_configs():
  bad = [f"{p.relative_to(PACKAGE.parent)} imports {m}" for p in _modules()
         if not p.is_relative_to(PACKAGE / "tools")
         for m in _imports(p) if m.startswith(("hicmae_jax.tools", "configs"))]
  assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module, forbidden", [
    ("hicmae_jax/train.py", "hicmae_jax.representations"),
    ("hicmae_jax/prediction", "hicmae_jax.representations"),
    ("hicmae_jax/targets.py", "hicmae_jax.models"),
    ("hicmae_jax/losses.py", "hicmae_jax.models"),
    ("hicmae_jax/masking.py", "hicmae_jax.models"),
])
def test_lower_layers_do_not_import_upper_ones(module, forbidden):
  path = PACKAGE.parent / module
  files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
  assert files, module
  bad = [f"{p.relative_to(PACKAGE.parent)} imports {m}" for p in files for m in _imports(p)
         if m.startswith(forbidden)]
  assert not bad, "\n".join(bad)


# data/'s sub-packages and the others each may import (docs/ARCHITECTURE.md): preparing shards
# and reading them into batches share only the format and the transforms. The modules at
# data/'s top are the commands' documented names (`python -m hicmae_jax.data.verify`, ...).
DATA_SUBPACKAGES = {
    "format": set(),
    "transforms": set(),
    "prepare": {"format", "transforms"},
    "pipeline": {"format", "transforms"},
}


def test_data_subpackages_import_only_what_they_may():
  """Among others, prepare/ and pipeline/ never import each other."""
  data = PACKAGE / "data"
  assert {p.name for p in data.iterdir() if (p / "__init__.py").is_file()} == set(
      DATA_SUBPACKAGES), "add the new sub-package of data/ to DATA_SUBPACKAGES (and the docs)"
  bad = []
  for sub, allowed in DATA_SUBPACKAGES.items():
    for p in sorted((data / sub).rglob("*.py")):
      for m in _imports(p):
        parts = m.split(".")
        if parts[:2] == ["hicmae_jax", "data"] and len(parts) > 2 and parts[2] != sub:
          if parts[2] not in allowed:
            bad.append(f"{p.relative_to(PACKAGE.parent)} imports {m}")
  assert not bad, "\n".join(bad)


def test_no_import_cycle_between_folders():
  edges: dict[str, set[str]] = {}
  for p in _modules():
    src = _folder(_module_name(p))
    for m in _imports(p):
      if m.startswith("hicmae_jax.") and (PACKAGE / m.split(".")[1]).is_dir():
        dst = _folder(m)
        if dst != src and (PACKAGE / src).is_dir():
          edges.setdefault(src, set()).add(dst)
  cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a in edges.get(b, ()))
  assert not cycles, cycles


def test_layer4_modules_follow_their_order():
  assert set(LAYER4_ORDER) == LAYERS[4][1], "LAYER4_ORDER must list layer 4's modules"
  rank = {name: i for i, name in enumerate(LAYER4_ORDER)}
  upward = []
  for name in LAYER4_ORDER:
    for m in _imports(PACKAGE / f"{name}.py"):
      dst = _folder(m) if m.startswith("hicmae_jax.") else None
      if dst in rank and rank[dst] > rank[name]:
        upward.append(f"{name} imports {m}, which LAYER4_ORDER puts above it")
  assert not upward, "\n".join(upward)


def _module_level_graph() -> dict[str, set[str]]:
  """module -> the package modules its import runs (`from pkg import sub` names the submodule;
  a package's __init__ counts only when a name defined there is taken from it)."""
  names = {_module_name(p): p for p in _modules()}
  graph = {}
  for name, path in names.items():
    graph[name] = set()
    for m in _imports(path, module_level=True):
      while m and m not in names:  # ...data.pipeline.options.AudioOptions -> ...pipeline.options
        m = m.rpartition(".")[0]
      if m and m != name:
        graph[name].add(m)
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One import chain per strongly connected group of `graph` (Tarjan), e.g. [a, b, a]."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while not group or group[-1] != v:
        group.append(stack.pop())
        on_stack.discard(group[-1])
      if len(group) > 1:
        out.append(sorted(group) + [min(group)])
  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_cycles_finds_a_circle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycle():
  cycles = _cycles(_module_level_graph())
  assert not cycles, "module-level import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_module_and_function_sizes():
  too_long = []
  for p in _modules():
    text = p.read_text()
    rel = p.relative_to(PACKAGE.parent)
    if len(text.splitlines()) > MAX_MODULE_LINES:
      too_long.append(str(rel))
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > MAX_FUNCTION_LINES:
          too_long.append(f"{rel}:{node.name}")
  assert not too_long, sorted(too_long)
