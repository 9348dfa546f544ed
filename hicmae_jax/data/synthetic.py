"""`python -m hicmae_jax.data.synthetic`, the documented name of the synthetic demo data
(data/prepare/synthetic.py, where the code and its flags are)."""
import sys

from hicmae_jax.data.prepare.synthetic import main

if __name__ == "__main__":
  sys.exit(main())
