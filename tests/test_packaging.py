"""The package as pip installs it (pyproject.toml): its pins are requirements.txt's, every
console script names a function that starts a binary, every binary has a script, and every
documented `python -m` command names a module that runs."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hicmae_jax"
SCRIPTS = PACKAGE / "tools" / "scripts.py"


def _pyproject() -> dict:
  return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement_pins() -> list[str]:
  lines = (line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").open())
  return [line for line in lines if line]


def test_pyproject_pins_are_requirements_pins():
  project = _pyproject()["project"]
  runtime, test = project["dependencies"], project["optional-dependencies"]["test"]
  pins = _requirement_pins()
  assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==\S+", p) for p in runtime + test + pins)
  assert len(set(runtime + test)) == len(runtime + test), "a pin is listed twice"
  assert sorted(runtime + test) == sorted(pins), (
      f"pyproject.toml (dependencies + test extra) and requirements.txt differ: only in "
      f"pyproject {sorted(set(runtime + test) - set(pins))}, only in requirements.txt "
      f"{sorted(set(pins) - set(runtime + test))}")


def test_console_scripts_resolve_to_callables():
  scripts = _pyproject()["project"]["scripts"]
  for name in ("hicmae-train", "hicmae-eval", "hicmae-predict", "hicmae-prepare",
               "hicmae-verify", "hicmae-convert"):
    assert name in scripts, name
  for name, target in scripts.items():
    module, _, attr = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attr, None)), (name, target)


def test_ci_runs_the_readme_test_command():
  ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
  assert "ruff check ." in ci and "pytest" in ci, ci
  assert ci.replace("pip install -q ", "pip install ") in (ROOT / "README.md").read_text(), (
      f".ci/run runs `{ci}`, which README.md's test command (Set up and run, 2) should say")


def _binaries() -> set[str]:
  """Modules of the package with a `python -m` block (and a top-level `main`). An entry module
  that keeps a command's documented name (`hicmae_jax.data.verify`, `data/prepare/__main__`)
  imports its `main` from the binary and counts as that binary."""
  out, entries = set(), {}
  for path in PACKAGE.rglob("*.py"):
    text = path.read_text()
    if re.search(r'^if __name__ == "__main__":', text, re.M):
      tree = ast.parse(text)
      name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
      if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
        out.add(name)
        continue
      imported = [n.module for n in tree.body if isinstance(n, ast.ImportFrom)
                  and any(a.name == "main" and a.asname is None for a in n.names)]
      assert len(imported) == 1, path  # neither a main nor one binary's main
      entries[name] = imported[0]
  assert set(entries.values()) <= out, (entries, "entry modules must run a binary's main")
  return out


def _script_binaries() -> dict[str, str]:
  """scripts.py's public functions -> the one binary module each imports."""
  out = {}
  for node in ast.parse(SCRIPTS.read_text()).body:
    if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
      found = {f"{n.module}.{a.name}" for n in ast.walk(node) if isinstance(n, ast.ImportFrom)
               for a in n.names if n.module.startswith("hicmae_jax")} - {"hicmae_jax.cli"}
      assert len(found) == 1, (node.name, found)
      out[node.name] = found.pop()
  return out


def test_every_binary_has_a_console_script():
  by_function = _script_binaries()
  assert set(by_function.values()) == _binaries(), (
      "binaries without a function in hicmae_jax/tools/scripts.py (add one and its line in "
      f"pyproject.toml's [project.scripts]): {sorted(_binaries() - set(by_function.values()))}")
  targets = {t.partition(":")[2] for t in _pyproject()["project"]["scripts"].values()}
  assert targets == set(by_function), sorted(targets ^ set(by_function))


def _documented_commands() -> set[str]:
  """Every `python -m hicmae_jax...` module named in the docs, launch scripts, configs, tools
  and the package's own messages."""
  files = [ROOT / "README.md", ROOT / "BUILD.md", *ROOT.glob("docs/**/*.md"),
           *ROOT.glob("docs/**/*.sh"), *ROOT.glob("launch/*.sh"), *ROOT.glob("configs/*.py"),
           *PACKAGE.rglob("*.py")]
  found = set()
  for f in files:
    found.update(re.findall(r"""-m["', ]+(hicmae_jax(?:\.[a-z_0-9]+)+)""", f.read_text()))
  return found


def test_every_documented_command_is_a_runnable_module():
  commands = _documented_commands()
  assert {"hicmae_jax.data.prepare", "hicmae_jax.data.verify", "hicmae_jax.main"} <= commands
  missing = []
  for name in sorted(commands):
    spec = importlib.util.find_spec(name)
    if spec is None or (spec.submodule_search_locations is not None and importlib.util.find_spec(
        f"{name}.__main__") is None):
      missing.append(name)
  assert not missing, f"documented `python -m` commands that do not run: {missing}"


@pytest.mark.slow
def test_every_console_script_answers_help_from_another_folder(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  for name, target in sorted(_pyproject()["project"]["scripts"].items()):
    module, _, attr = target.partition(":")
    if attr == "torch_standin_step" and importlib.util.find_spec("torch") is None:
      continue  # needs torch, which is not a dependency
    code = (f"import sys; sys.argv[0] = {name!r}; import {module} as m; m.{attr}()")
    done = subprocess.run([sys.executable, "-c", code, "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, (name, out[-2000:])
    assert "usage" in out.lower() or "flags:" in out, (name, out[-2000:])
