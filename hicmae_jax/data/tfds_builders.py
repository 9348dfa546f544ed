"""`python -m hicmae_jax.data.tfds_builders`, the documented name of the TFDS builders
(data/prepare/tfds_builders.py, where the code and its flags are)."""
import sys

from hicmae_jax.data.prepare.tfds_builders import main

if __name__ == "__main__":
  sys.exit(main())
