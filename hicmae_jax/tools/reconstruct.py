r"""Draws a pre-trained model's reconstructions of a few clips (frames and spectrogram) as PNG.

  python -m hicmae_jax.tools.reconstruct --checkpoint=workdirs/demo/pretrain \
      --split_dir=workdirs/synthetic_demo/test --num_clips=3 --output=reconstruction.png
  python -m hicmae_jax.tools.reconstruct --checkpoint=checkpoint-99.pth --video=talk.mp4 \
      --window_seconds=2.56 --num_clips=2 --output=talk_reconstruction.png

Per clip: the original frames, the masked input (masked patches grey) and the reconstruction
(visible patches as given, masked ones predicted: frame difference undone, un-normalised with
each true patch's mean and std as VideoMAE shows it), each row with its spectrogram; the
masked-patch MSE (the pre-training loss terms) is written beside the reconstruction. Masks are
drawn at the checkpoint's ratios from --seed. --checkpoint must be a pre-training checkpoint
(ours or an original .pth): fine-tuned models have no decoders.
"""
from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from hicmae_jax import cli, runtime
from hicmae_jax.representations.reconstruction import reconstruction_png

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config (data.sampling_rate, loss.frame_difference). Optional: "
    "the checkpoint's own training config is used otherwise.", lock_config=False)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Pre-training workdir, checkpoint "
                                  "folder or .pth.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_SPLIT_DIR = flags.DEFINE_string("split_dir", "", "A prepared split: its first clips are drawn.")
_VIDEO = flags.DEFINE_string("video", "", "A video file (audio from its track unless --wav).")
_FRAMES_DIR = flags.DEFINE_string("frames_dir", "", "A folder of frames (needs --wav).")
_WAV = flags.DEFINE_string("wav", "", "The audio of --frames_dir (or to replace --video's).")
_WINDOW = flags.DEFINE_float("window_seconds", 0.0, "Raw input: cut into windows of this "
                             "length and draw the first --num_clips (0: one view).")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", 3, "Clips (windows) to draw.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 8, "Frames shown per clip (evenly spaced).")
_SEED = flags.DEFINE_integer("seed", 0, "Mask draw.")
_OUTPUT = flags.DEFINE_string("output", None, "PNG path.")
flags.mark_flags_as_required(["checkpoint", "output"])


def main(argv):
  del argv
  cli.check_output_file(_OUTPUT.value, "--output")
  runtime.setup_logging(None)
  return runtime.json_command(lambda: reconstruction_png(
      checkpoint=_CHECKPOINT.value, output=_OUTPUT.value, config=_CONFIG.value,
      step=_STEP.value, split_dir=_SPLIT_DIR.value, video=_VIDEO.value,
      frames_dir=_FRAMES_DIR.value, wav=_WAV.value, window_seconds=_WINDOW.value,
      num_clips=_NUM_CLIPS.value, max_frames=_MAX_FRAMES.value, seed=_SEED.value))


if __name__ == "__main__":
  cli.run(main)
