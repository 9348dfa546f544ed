r"""Run a fine-tuned model on your own videos: per-window class probabilities and a per-video
result.

  python -m hicmae_jax.predict --checkpoint=ckpt/crema_fold1 --video=talk.mp4 \
      --output_dir=predictions --face=dlib --timeline=talk.png --annotate=talk_annotated.mp4
  python -m hicmae_jax.predict --checkpoint=crema_d_fold1.pth --dataset=crema_d \
      --video=clips/ --output_dir=predictions        # every video of a folder (or a,b,c)
  python -m hicmae_jax.predict --checkpoint=ckpt/x --frames_dir=clip01/ --wav=clip01.wav \
      --output_dir=predictions
  python -m hicmae_jax.predict --model=export/crema_fold1 --video=talk.mp4 --output_dir=out

--checkpoint: a fine-tuning run's workdir, a converted checkpoint folder, or an original .pth
read directly (one recording no model config needs --config); --model: a folder written by
tools.export --format=safetensors (weights, config.json with the class names). A video is read
with its own audio track (or --wav). --face=auto (default) looks at 5 frames of a video: when
the main face fills them like an aligned crop they are used as they are, otherwise the face step
aligns the face (faces/auto.py; frames folders are used as they are); --face=dlib always
aligns (the same flags as prepare: --face_size, --face_scale, ...); --face=none never does,
and warns when the frames are not face crops. The JSON says which and why. Windows of
--window_seconds (default num_frames x sampling_rate / 25 fps: 2.56 s) start every
--stride_seconds, the last one ending at the video's end; each is scored with the
evaluation's input path, in batches. Per video: the mean of the window probabilities, its
argmax and value (regression: the mean outputs). With --face, a window whose frames show the
face in fewer than --min_window_face_fraction (0.5) of them is no_face: no class, left out of
the mean (counted in the JSON), grey on the timeline, "no face" in the annotated video. Class
names from --class_names, --dataset, or the checkpoint's training config.

Writes <output_dir>/<name>.json (all of it) and <name>.csv (one row per window) per input,
and summary.json / summary.csv. --timeline=out.png: probabilities over time above the
log-mel spectrogram and a strip of the frames (face crops) the model reads; --annotate=out.mp4:
the video with the aligned face box and the running top class, audio kept. With several
inputs their name goes before the extension (out_<name>.png).
"""
from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from hicmae_jax import cli, runtime
from hicmae_jax.faces import options as face_options

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Fine-tuned checkpoint: workdir, "
                                  "checkpoint folder, .pth or exported folder.")
_MODEL = flags.DEFINE_string("model", "", "An exported model folder (tools.export "
                             "--format=safetensors: model.safetensors + config.json); instead "
                             "of --checkpoint, no Orbax involved.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Optional experiment config: the model of a .pth that records none, the "
    "frame sampling rate, the batch size.", lock_config=False)
_VIDEO = flags.DEFINE_list("video", [], "Video files and/or folders of videos (comma "
                           "separated); also taken from the positional arguments.")
_FRAMES_DIR = flags.DEFINE_string("frames_dir", "", "A folder of frames (with --wav).")
_WAV = flags.DEFINE_string("wav", "", "The audio of --frames_dir, or to replace one video's.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the JSON and CSV files go.")
_WINDOW = flags.DEFINE_float("window_seconds", 0.0, "Window length (0: num_frames x "
                             "sampling_rate / 25 fps, 2.56 s for the paper's models).")
_STRIDE = flags.DEFINE_float("stride_seconds", 1.0, "A window starts every this many seconds.")
_FPS = flags.DEFINE_float("fps", 25.0, "Frame rate of a frames folder (videos know theirs).")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Windows per forward pass (0: the config's "
                              "eval_batch_size, else 32).")
_CLASS_NAMES = flags.DEFINE_list("class_names", [], "Names of the classes, in label order.")
_DATASET = flags.DEFINE_string("dataset", "", "Dataset preset whose class names to use "
                               "(crema_d, ravdess, mafw, ...).")
_TIMELINE = flags.DEFINE_string("timeline", "", "Write the timeline picture here (PNG).")
_ANNOTATE = flags.DEFINE_string("annotate", "", "Write the annotated video here (mp4).")
_MIN_WINDOW_FACE = flags.DEFINE_float(
    "min_window_face_fraction", 0.5, "With --face: a window whose frames have the face in "
    "fewer than this share of them is reported as no_face, without a class, and left out of "
    "the video's result.")
face_options.define_flags()
flags.mark_flags_as_required(["output_dir"])


def model_source(checkpoint: str | None, model: str) -> str:
  """The checkpoint to read: --checkpoint or --model (exactly one; --model an exported
  folder, checked before anything loads)."""
  if bool(checkpoint) == bool(model):
    raise cli.BadInput("give one of --checkpoint=<workdir, checkpoint folder or .pth> and "
                       "--model=<exported folder>")
  if model:
    from hicmae_jax.checkpoints import safetensors_io
    safetensors_io.read_config(model)
  return checkpoint or model


def main(argv):
  from hicmae_jax.prediction import runner
  checkpoint = model_source(_CHECKPOINT.value, _MODEL.value)
  cli.check_output_dir(_OUTPUT_DIR.value, "--output_dir")
  cli.check_output_file(_TIMELINE.value, "--timeline")
  cli.check_output_file(_ANNOTATE.value, "--annotate")
  if _ANNOTATE.value and not _ANNOTATE.value.lower().endswith(".mp4"):
    raise cli.BadInput(f"--annotate={_ANNOTATE.value}: the annotated video is an mp4; give a "
                       f"path ending in .mp4")
  if not 0.0 <= _MIN_WINDOW_FACE.value <= 1.0:
    raise cli.BadInput(f"--min_window_face_fraction={_MIN_WINDOW_FACE.value} must be in "
                       f"[0, 1]")
  face = face_options.from_flags()
  runtime.setup_logging(None)
  summary = runner.predict_files(
      checkpoint=checkpoint, output_dir=_OUTPUT_DIR.value,
      videos=list(_VIDEO.value) + list(argv[1:]), frames_dir=_FRAMES_DIR.value,
      wav=_WAV.value, step=_STEP.value, config=_CONFIG.value, class_names=_CLASS_NAMES.value,
      dataset=_DATASET.value, face=face, face_mode=flags.FLAGS.face,
      window_seconds=_WINDOW.value,
      stride_seconds=_STRIDE.value, fps=_FPS.value, batch_size=_BATCH.value,
      timeline=_TIMELINE.value, annotate=_ANNOTATE.value,
      min_window_face_fraction=_MIN_WINDOW_FACE.value)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  cli.run(main)
