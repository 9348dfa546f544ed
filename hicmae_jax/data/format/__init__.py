"""What a prepared split is on disk and how it is opened: `schema` (the clip record and
dataset_info.json), `datasets` (the preset datasets), `integrity` (shard sizes, SHA-256, named
open errors), `split_reader` (`open_split`, reading clip by clip), `record_index` (small fields
without decoding), `verify` (the checking command). Both prepare/ and pipeline/ use it."""
