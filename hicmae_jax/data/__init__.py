"""Clip records and everything around them, by job: `format/` (what a prepared split is and how
it is opened), `prepare/` (raw videos and audio -> shards), `transforms/` (the numpy/PIL
operations on one clip), `pipeline/` (stored clips -> batches, and one clip's windows).
prepare/ and pipeline/ never import each other. The modules here are the commands' documented
names: `python -m hicmae_jax.data.verify`, `.synthetic`, `.tfds_builders`,
`.pipeline_benchmark` (and `python -m hicmae_jax.data.prepare`, the package's `__main__`)."""
