"""`python -m hicmae_jax.data.prepare`: the prepare command (data/prepare/command.py)."""
import sys

from hicmae_jax.data.prepare.command import main

if __name__ == "__main__":
  sys.exit(main())
