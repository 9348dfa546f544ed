r"""Turns a trained model into something to share or ship.

  # a folder to share: model.safetensors + config.json + README.md (model card)
  python -m hicmae_jax.tools.export --checkpoint=ckpt/crema_fold1 --format=safetensors \
      --output=export/crema_fold1 [--for_hub] [--dataset=crema_d]
  # the forward as a jax.export artifact (StableHLO, symbolic batch), no model code needed
  python -m hicmae_jax.tools.export --checkpoint=export/crema_fold1 --format=stablehlo \
      --platforms=cpu,cuda,tpu --output=export/crema_fold1_stablehlo
  # ONNX (jax2onnx), checked with ONNX Runtime before it is written
  python -m hicmae_jax.tools.export --checkpoint=crema_d_fold1.pth --config=configs/\
finetune_crema_d.py --format=onnx --output=export/crema_fold1_onnx

--checkpoint: a run's workdir, its checkpoints/ or best_val/ folder, a converted folder, an
original .pth (one that records no model config needs --config), or an exported safetensors
folder. Fine-tuned checkpoints give logits and the pooled feature, pre-training ones the
feature of their encoders (--outputs picks; logits of a pre-training checkpoint are refused).
The model card is filled from the run's results.json when the checkpoint is a run's.
"""
from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from hicmae_jax import cli, runtime
from hicmae_jax.sharing import exporter, model_card

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Workdir, checkpoint folder, .pth or "
                                  "exported folder.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: the model of a .pth that records none.",
    lock_config=False)
_FORMAT = flags.DEFINE_enum("format", None, list(exporter.FORMATS), "What to write.")
_OUTPUT = flags.DEFINE_string("output", None, "The folder to write (new or empty).")
_OUTPUTS = flags.DEFINE_list("outputs", [], "stablehlo/onnx: logits,feature (default: both "
                             "for a fine-tuned model, feature for pre-trained encoders).")
_PLATFORMS = flags.DEFINE_list("platforms", ["cpu"], "stablehlo: platforms to lower for "
                               "(cpu, cuda, rocm, tpu).")
_CLASS_NAMES = flags.DEFINE_list("class_names", [], "Names of the classes, in label order.")
_DATASET = flags.DEFINE_string("dataset", "", "Dataset preset whose class names to record.")
_FOR_HUB = flags.DEFINE_bool("for_hub", False, "safetensors: add the Hugging Face Hub's front "
                             "matter to the model card.")
_LICENSE = flags.DEFINE_string("license", model_card.LICENCE, "Licence in the model card.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output folder.")
flags.mark_flags_as_required(["checkpoint", "format", "output"])


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected argument {argv[1]!r}: every input is a flag")
  cli.check_output_dir(_OUTPUT.value, "--output")
  runtime.setup_logging(None)
  return runtime.json_command(lambda: exporter.export_model(
      checkpoint=_CHECKPOINT.value, output=_OUTPUT.value, format=_FORMAT.value,
      step=_STEP.value, config=_CONFIG.value, outputs=_OUTPUTS.value,
      platforms=_PLATFORMS.value, class_names=_CLASS_NAMES.value, dataset=_DATASET.value,
      for_hub=_FOR_HUB.value, licence=_LICENSE.value, overwrite=_OVERWRITE.value),
      bad_input=(FileNotFoundError, FileExistsError, ValueError))


if __name__ == "__main__":
  cli.run(main)
