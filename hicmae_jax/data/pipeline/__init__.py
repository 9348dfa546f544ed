"""Stored clips -> model inputs: `options` (frozen option objects from the config), `stages`
(the named stages), `recipes` (the stages composed per job), `records` (this process's
records, epoch order, batch slices), `batching`, `factories` (the grain `make_*_dataset`
pipelines), `windows` (one clip cut into windows for feature export and predict),
`stage_timing`, `pipeline_benchmark`. It never imports prepare/ (tests/test_architecture.py)."""
