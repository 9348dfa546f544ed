"""The numpy/PIL operations a clip's inputs are made of, each on its own: `sampling` (frame
indices, audio spans), `frames` (decode, resize), `video_augment`, `rand_augment`, `masks`
(numpy masks), `mixing` (Mixup/CutMix, label smoothing), `fbank` (Kaldi fbank, the
normalisation, waveform augmentations). No jax; no import of prepare/ or pipeline/."""
