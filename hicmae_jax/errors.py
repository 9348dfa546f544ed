"""What counts as bad input, its exit code, and the one line it is printed as.

Bad input is a command line that cannot work: a flag refused, a config file that does not
exist, an override naming no key, a path error (FileNotFoundError, ...), or a ValueError raised
by this project's own checks (hicmae_jax/, configs/). Anything else is an internal error and
keeps its traceback (exit code 1). cli.py (one process) and runtime.py (a process of a
multi-process job) both answer bad input through here.
"""
from __future__ import annotations

import os
import sysconfig

EXIT_BAD_INPUT = 2

# Errors about the user's paths, whoever raised them: their message names the path.
PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN_CODE = tuple(os.path.join(_REPO, d) + os.sep for d in ("hicmae_jax", "configs"))
_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep
_SITE = tuple({sysconfig.get_paths()[k] + os.sep for k in ("purelib", "platlib")})


class BadInput(ValueError):
  """A command-line value that cannot work; the message names the flag and the fix."""


def is_bad_input(error: BaseException) -> bool:
  """True for errors the user fixes on the command line (see the module docstring)."""
  if isinstance(error, (BadInput,) + PATH_ERRORS):
    return True
  return isinstance(error, ValueError) and _raised_by_own_code(error)


def _raised_by_own_code(error: BaseException) -> bool:
  """The innermost frame outside the standard library is this project's code."""
  origin, tb = "", error.__traceback__
  while tb is not None:
    name = tb.tb_frame.f_code.co_filename
    stdlib = name.startswith("<") or (name.startswith(_STDLIB) and not name.startswith(_SITE))
    if not stdlib:
      origin = name
    tb = tb.tb_next
  return origin.startswith(_OWN_CODE)


def error_line(error: BaseException | str) -> str:
  """`error: <message>` on one line (a KeyError's message without its repr quotes)."""
  if isinstance(error, KeyError) and error.args:
    text = str(error.args[0])
  else:
    text = str(error) or type(error).__name__
  return "error: " + one_line(text)


def one_line(text: str) -> str:
  """The lines of `text` joined: after punctuation by a space, else by "; "."""
  out = ""
  for line in (line.strip() for line in str(text).splitlines()):
    if line:
      out += ("" if not out else " " if out[-1] in ":;,.?!" else "; ") + line
  return out
