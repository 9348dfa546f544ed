"""Writing shards from raw videos, frames and audio (`python -m hicmae_jax.data.prepare`, the
`__main__` of this package): `split_file` (parse a split file), `video_io` (frames folders,
videos, JPEG), `audio_io` (audio files and tracks), `clip_loader` (one entry or raw files -> one
`Clip`), `shard_writer` (resumable shards, skip report), `worker_pool` (processes, progress
line), `command` (one split's steps and the command line), `synthetic` (demo data),
`tfds_builders`. It never imports pipeline/ (tests/test_architecture.py)."""
