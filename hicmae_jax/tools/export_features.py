r"""Exports per-clip features of a checkpoint over a prepared split or raw files (.npy + JSON).

  # a prepared split, one view per clip (the evaluation sampler)
  python -m hicmae_jax.tools.export_features --checkpoint=ckpt/hicmae_base \
      --split_dir=/data/crema_d/fold1/test --output_dir=features/crema_test [--per_layer]
  # one long video (its own audio track), cut into 2.56 s windows every 1 s
  python -m hicmae_jax.tools.export_features --checkpoint=model.pth --video=talk.mp4 \
      --window_seconds=2.56 --stride_seconds=1 --output_dir=features/talk
  # a frames folder with its wav; the untrained baseline of a config
  python -m hicmae_jax.tools.export_features --config=configs/learning_check.py --random_init \
      --frames_dir=clip01/ --wav=clip01.wav --output_dir=features/clip01_random

--checkpoint takes a run's workdir, its checkpoints/ folder, a converted checkpoint folder or a
.pth, pre-trained or fine-tuned (see hicmae_jax/representations/features.py for what the feature
is in each case). The model comes from the checkpoint; --config (optional) gives the frame
sampling rate and batch size, else the checkpoint's own training config does. A .pth records
its head counts and input sizes only in the file (our export's model config, the original's
training args); one that does not needs --config, whose model must then be the checkpoint's.
A config nesting experiments (configs/demo.py) gives the experiment of the checkpoint's kind
(with --random_init: the pre-training one).
A raw --video goes through --face=auto (default) as in predict: used as it is when its sampled
frames are face crops already, else aligned by the prepare face step (--face=dlib always,
--face=none never, with a warning on frames that are not face crops); metadata.json's
input.face_choice says which and why. Prepared splits are read as they were stored.
Writes features.npy [N, F], metadata.json (clip ids, labels, windows) and with --per_layer the
per-layer pooled features per modality.
"""
from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from hicmae_jax import cli, runtime
from hicmae_jax.faces import options as face_options
from hicmae_jax.representations.features import export_features

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config (data.sampling_rate, eval_batch_size; with "
    "--random_init also the model). Optional with --checkpoint.", lock_config=False)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "Workdir, checkpoint folder or .pth file.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_RANDOM_INIT = flags.DEFINE_bool("random_init", False, "Use the config's model at its "
                                 "pre-training initialisation (seed config.seed) instead of a "
                                 "checkpoint: the untrained baseline.")
_SPLIT_DIR = flags.DEFINE_string("split_dir", "", "A prepared split folder.")
_VIDEO = flags.DEFINE_string("video", "", "A video file (audio from its track unless --wav).")
_FRAMES_DIR = flags.DEFINE_string("frames_dir", "", "A folder of frames (needs --wav).")
_WAV = flags.DEFINE_string("wav", "", "The audio of --frames_dir (or to replace --video's).")
_LABEL = flags.DEFINE_integer("label", -1, "Class label recorded for a raw clip.")
_CLIP_ID = flags.DEFINE_string("clip_id", "", "Id of a raw clip (default: the file name).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the .npy and metadata.json go.")
_WINDOW = flags.DEFINE_float("window_seconds", 0.0, "Cut clips into windows of this length "
                             "(0: one view per clip, the evaluation sampler).")
_STRIDE = flags.DEFINE_float("stride_seconds", 0.0, "Window start every this many seconds "
                             "(0: the window length).")
_FPS = flags.DEFINE_float("fps", 25.0, "Frame rate of clips that do not record one (frames "
                          "folders).")
_PER_LAYER = flags.DEFINE_bool("per_layer", False, "Also write per-layer pooled features per "
                               "modality and the HFF / fusion pieces.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Clips per forward pass (0: the config's "
                              "eval_batch_size, else 32).")
_LIMIT = flags.DEFINE_integer("limit", 0, "Only the first N clips of the split (0: all).")
face_options.define_flags()
flags.mark_flags_as_required(["output_dir"])


def main(argv):
  del argv
  cli.check_output_dir(_OUTPUT_DIR.value, "--output_dir")
  runtime.setup_logging(None)
  return runtime.json_command(lambda: export_features(
      output_dir=_OUTPUT_DIR.value, checkpoint=_CHECKPOINT.value, step=_STEP.value,
      random_init=_RANDOM_INIT.value, config=_CONFIG.value, split_dir=_SPLIT_DIR.value,
      video=_VIDEO.value, frames_dir=_FRAMES_DIR.value, wav=_WAV.value, label=_LABEL.value,
      clip_id=_CLIP_ID.value, window_seconds=_WINDOW.value, stride_seconds=_STRIDE.value,
      fps=_FPS.value, per_layer=_PER_LAYER.value, batch_size=_BATCH.value,
      limit=_LIMIT.value, face=face_options.from_flags(), face_mode=flags.FLAGS.face))


if __name__ == "__main__":
  cli.run(main)
