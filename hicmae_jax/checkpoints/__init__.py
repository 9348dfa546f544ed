"""Checkpoint files other than our Orbax ones (those are hicmae_jax/checkpointing.py):

  pth_format / pth_unpickle / pth_reader / pth_writer   torch.save files without torch
  mapping      original state-dict names and layouts <-> our parameters
  original     a .pth -> our kind, model config and parameters (nothing guessed)
  conversion   .pth -> our checkpoint folder, and ours -> .pth carrying our model config
  transfer     weights by name from one model into another (pre-training -> fine-tuning)
"""
