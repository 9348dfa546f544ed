"""Running a fine-tuned model on raw videos: `python -m hicmae_jax.predict`.

Modules: model (a fine-tuned checkpoint of any kind -> probabilities or regression outputs,
with class names), inputs (a video with its audio, or frames + wav -> the clip the model reads,
through the prepare face step with --face), windows (2.56 s windows every stride, scored in
batches; the per-video result), outputs (JSON and CSV), timeline (probabilities over time,
log-mel spectrogram, face thumbnails: PNG), annotate (the video with the aligned face box and
the running top class: mp4 with its audio).
"""
