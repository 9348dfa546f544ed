"""`python -m hicmae_jax.data.pipeline_benchmark`, the documented name of the input-pipeline
benchmark (data/pipeline/pipeline_benchmark.py, where the code and its flags are)."""
from hicmae_jax import cli
from hicmae_jax.data.pipeline import pipeline_benchmark
from hicmae_jax.data.pipeline.pipeline_benchmark import main

if __name__ == "__main__":
  __doc__ = pipeline_benchmark.__doc__  # absl's --help prints the __main__ module's docstring
  cli.run(main)
