"""`python -m hicmae_jax.data.verify`, the documented name of the split checker
(data/format/verify.py, where the code and its flags are)."""
import sys

from hicmae_jax.data.format.verify import main

if __name__ == "__main__":
  sys.exit(main())
