"""What a self-supervised model is used for besides fine-tuning: clip features
(`features`), linear probes on them (`probe`), reconstruction pictures (`reconstruction`),
embedding plots (`embedding`, `figures`), their defaults (`settings`) and the learning check,
pre-trained versus randomly initialised features (`pretrain_vs_random`). The commands are in
`hicmae_jax/tools/` (the learning check's is `tools/learning_check.py`)."""
