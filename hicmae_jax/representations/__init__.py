"""What a self-supervised model is used for besides fine-tuning: clip features
(`features`), linear probes on them (`probe`), reconstruction pictures (`reconstruction`),
embedding plots (`embedding`) and the pre-trained-versus-random learning check
(`learning_check`). The commands are in `hicmae_jax/tools/`."""
