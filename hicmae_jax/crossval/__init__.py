"""The k-fold protocol behind the paper's numbers: fold layout, split-file generators for the
datasets whose fold rule is public, the speaker-leakage check, running every fold and the
cross-validation report.

Modules: layout (folds_root/fold{k}/{train,val,test}), splits (CREMA-D and RAVDESS split
files from a folder listing), leakage (no speaker in both train and test), paper (the paper's
numbers stated in a config's docstring), report (per-fold and mean +- std table, JSON, bar
plot), runner (folds in-process through train.run, or one command per fold / a SLURM array).
Commands: `python -m hicmae_jax.tools.cross_validate`, `python -m hicmae_jax.tools.make_splits`.
"""
