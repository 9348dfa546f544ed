"""What every absl binary shares on the command line: start-up through `cli.run(main)` (flags in
absl's global FLAGS) or `cli.run_own` (flags of its own, a main callable in-process),
`--help` that exits 0, bad input answered with one `error: ...` line and exit code 2 (no
traceback), and output-folder checks that create nothing. What counts as bad input, and the
line it is printed as, is errors.py (its names are re-exported here: cli.BadInput, ...).
"""
from __future__ import annotations

import functools
import os
import re
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags

from hicmae_jax.errors import (
  EXIT_BAD_INPUT,
  BadInput,
  error_line,
  is_bad_input,
  one_line,
)
from hicmae_jax.log_noise import quiet_known_noise


def run(main: Callable[[list[str]], int | None]) -> None:
  """absl's app.run(main) with this module's flag parsing and error handling."""
  quiet_known_noise()  # before anything starts a backend or opens a checkpoint
  app.run(functools.partial(_guarded, main), flags_parser=_parse_flags)


def _guarded(main, argv):
  try:
    return main(argv)
  except Exception as e:  # noqa: BLE001 - sorted into bad input (one line) or re-raised
    if not is_bad_input(e):
      raise
    print(error_line(e), file=sys.stderr)
    return EXIT_BAD_INPUT


def run_own(define: Callable[[flags.FlagValues], None],
            body: Callable[[flags.FlagValues], int | None],
            argv: Sequence[str] | None = None, *, doc: str = "") -> int:
  """cli.run for a binary whose flags live in a FlagValues of its own, made by `define` when it
  runs: its `main(argv)` then works in-process (as the tests call it) as it does from the
  shell, and binaries imported into one process never share a flag name. The answers are
  cli.run's: `--help` prints `doc` and the flags (exit 0); a bad flag or bad input is one
  `error:` line (exit 2); anything else keeps its traceback.

  argv: the arguments without the program name (None: sys.argv[1:]). Returns body's exit code
  (0 when it returns None)."""
  quiet_known_noise()
  values = flags.FlagValues()
  define(values)
  args = list(sys.argv[1:] if argv is None else argv)
  if any(a in ("--help", "-h", "--helpshort", "--helpfull", "-?") for a in args):
    print(f"{doc.strip()}\n\nflags:\n{values.get_help(include_special_flags=False)}")
    return 0
  try:
    rest = values([sys.argv[0]] + args)
  except flags.Error as e:
    print(error_line(_flag_error_message(str(e))), file=sys.stderr)
    return EXIT_BAD_INPUT
  if len(rest) > 1:
    print(error_line(f"unexpected argument {rest[1]!r}: every input is a flag (see --help)"),
          file=sys.stderr)
    return EXIT_BAD_INPUT
  if not flags.FLAGS.is_parsed():  # grain and absl.logging read absl's own flags
    flags.FLAGS.mark_as_parsed()
  code = _guarded(body, values)
  return 0 if code is None else code


def fail(message: str) -> NoReturn:
  """Ends the process on bad input found before main() runs."""
  print(error_line(message), file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


# ------------------------------------------------------------------------- output folders --

def check_output_dir(path: str, flag: str) -> None:
  """`path` is, or can become, a folder this user writes into. Creates nothing.

  flag: how the user gave it, e.g. "--workdir". Remote paths (gs://...) are left to the
  storage layer."""
  if not path or "://" in path:
    return
  if os.path.exists(path) and not os.path.isdir(path):
    raise BadInput(f"{flag}={path} is a file, not a folder: give a folder path (new or "
                   f"existing)")
  if os.path.isdir(path):
    if not os.access(path, os.W_OK | os.X_OK):
      raise BadInput(f"{flag}={path} is not writable by this user: choose another folder or "
                     f"make it writable")
    return
  _check_creatable(path, flag)


def check_output_file(path: str, flag: str) -> None:
  """`path` can be written as a file: not a folder, and its folder is (or can become)
  writable. Creates nothing."""
  if not path or "://" in path:
    return
  if os.path.isdir(path):
    raise BadInput(f"{flag}={path} is a folder: give a file path")
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
    raise BadInput(f"{flag}={path} cannot be written: {folder} is not writable by this user; "
                   f"choose another location")
  _check_creatable(path, flag)


def _check_creatable(path: str, flag: str) -> None:
  """The nearest existing folder above `path` is a writable folder."""
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise BadInput(f"{flag}={path} cannot be created: {parent} is a file; give a path under "
                   f"a folder")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise BadInput(f"{flag}={path} cannot be created: {parent} is not writable by this user; "
                   f"choose another location")


# ---------------------------------------------------------------------------- flag parsing --

def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with bad flags as one `error:` line (exit 2) and help as exit 0."""
  for name in _config_file_flags():
    value = _flag_value(argv, name)
    if value is not None and not os.path.isfile(value.split(":", 1)[0]):
      fail(f"--{name}={value}: no such file (relative paths start at {os.getcwd()}; the "
           f"configs are in the repository's configs/ folder)")
  try:
    return flags.FLAGS(argv)
  except SystemExit as e:
    # absl's --help/--helpshort/--helpfull/--helpxml print the help, then exit 1 from
    # inside parsing; asking for help is not a failure.
    raise SystemExit(0 if e.code == 1 else e.code) from None
  except flags.Error as e:
    fail(_flag_error_message(str(e)))
  except (AttributeError, KeyError) as e:
    message = _override_error_message(e, argv)
    if message is None:
      raise
    fail(message)


def _config_file_flags() -> list[str]:
  from ml_collections.config_flags import config_flags  # the module: its parser class
  return [name for name in flags.FLAGS
          if isinstance(getattr(flags.FLAGS[name], "parser", None),
                        config_flags.ConfigFileFlagParser)]


def _flag_value(argv: list[str], name: str) -> str | None:
  """The last value given to --name (as --name=V or --name V) in argv."""
  value = None
  for i, arg in enumerate(argv[1:], start=1):
    if arg in (f"--{name}", f"-{name}") and i + 1 < len(argv):
      value = argv[i + 1]
    elif arg.startswith((f"--{name}=", f"-{name}=")):
      value = arg.split("=", 1)[1]
  return value


def _flag_error_message(text: str) -> str:
  # config_flags wraps a TypeError/ValueError of get_config() with its whole traceback.
  if "Error whilst parsing config file" in text:
    head = text.split("Error whilst parsing config file", 1)[0].strip()
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    return f"{head} {last}"
  required = re.search(r"Flag --(\S+) must have a value other than None", text)
  if required:
    return f"--{required.group(1)} is required (see --help)"
  return one_line(text) + " (see --help)"


def _override_error_message(error: BaseException, argv: list[str]) -> str | None:
  """config_flags' refusal of --config.<path> naming no key, rewritten as one line with the
  key(s) to use instead; None when the error is not about an override."""
  from ml_collections.config_flags import config_flags  # the module: its parser class
  for name in flags.FLAGS:
    flag = flags.FLAGS[name]
    if config_flags.is_config_flag(flag):
      message = _unknown_key_message(error, argv, name, functools.partial(
          _config_for_hint, name, argv))
      if message:
        return message
  return None


def _unknown_key_message(error: BaseException, argv: list[str], name: str,
                         load_config: Callable[[], object]) -> str | None:
  """One line for an override --<name>.<path> whose path is not in the config (`error` is
  config_flags' AttributeError/KeyError); None when no override of `name` matches it."""
  inner = error.args[0] if error.args else ""
  text = str(inner.args[0]) if isinstance(inner, KeyError) and inner.args else str(inner)
  first, _, rest = text.partition("\n")
  key = first.strip().strip("'\"")
  suggestion = re.search(r'Did you mean "([^"]+)"', rest)
  for arg in argv[1:]:
    m = re.match(rf"^--?(?:no)?{re.escape(name)}\.([^=]+)", arg)
    if not m or key not in m.group(1).split("."):
      continue
    path = m.group(1)
    source = _flag_value(argv, name) or f"the --{name} settings"
    if suggestion:
      fixed = ".".join(suggestion.group(1) if p == key else p for p in path.split("."))
      return f"--{name}.{path}: no such key in {source}; did you mean --{name}.{fixed}?"
    where = _paths_below(load_config(), path)
    if where:
      use = " / ".join(f"--{name}.{p}" for p in where)
      return f"--{name}.{path} has no effect on {source} (no such key at its top): use {use}"
    return f"--{name}.{path}: no such key in {source} (the config lists its keys)"
  return None


def _config_for_hint(name: str, argv: list[str]):
  from ml_collections.config_flags import config_flags  # the module: its parser class
  flag = flags.FLAGS[name]
  if isinstance(flag.parser, config_flags.ConfigFileFlagParser):
    try:
      return config_flags.ConfigFileFlagParser(name=name).parse(_flag_value(argv, name))
    except Exception:  # noqa: BLE001 - only a hint: the error line stands without it
      return None
  return flag.value


def define_config_dict(name: str, config, help_string: str):
  """config_flags.DEFINE_config_dict, whose --<name>.<key> overrides are applied right here,
  at definition (import) time: a bad one is answered like any other bad flag."""
  from ml_collections import config_flags
  try:
    return config_flags.DEFINE_config_dict(name, config, help_string)
  except flags.Error as e:
    fail(_flag_error_message(str(e)))
  except (AttributeError, KeyError) as e:
    message = _unknown_key_message(e, sys.argv, name, lambda: config)
    if message is None:
      raise
    fail(message)


def _paths_below(config, path: str) -> list[str]:
  """`<section>.<path>` for each top-level section of `config` that has `path`."""
  import ml_collections
  if config is None:
    return []
  found = []
  for section, node in config.items():
    for part in path.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        break
      node = node[part]
    else:
      found.append(f"{section}.{path}")
  return found
