r"""Trains a linear classifier on exported (frozen) features and reports UAR/WAR.

  python -m hicmae_jax.tools.linear_probe --train=features/crema_train \
      --test=features/crema_test [--val=features/crema_val] [--output=probe.json] \
      [--config.steps=1000 --config.learning_rate=3e-3 --config.train_per_class=16]

--train/--val/--test are folders written by `python -m hicmae_jax.tools.export_features` with
the same checkpoint. Hyper-parameters are `feature_probe_config()`
(hicmae_jax/representations/settings.py), each overridable as --config.<name>. Clips cut into
windows are scored per clip (window probabilities averaged). Prints the reports and writes
them as JSON with --output.
(`--config=configs/<finetune>.py --config.kind=linear_probe` with the trainer probes through
the full model with augmentation instead: `python -m hicmae_jax.main`.)
"""
from __future__ import annotations

import json
import sys

from absl import flags

from hicmae_jax import cli, io_utils
from hicmae_jax.representations.probe import probe_feature_dirs
from hicmae_jax.representations.settings import feature_probe_config

_CONFIG = cli.define_config_dict("config", feature_probe_config(), "Probe hyper-parameters.")
_TRAIN = flags.DEFINE_string("train", None, "Features folder of the training split.")
_VAL = flags.DEFINE_string("val", "", "Features folder of the validation split (optional).")
_TEST = flags.DEFINE_string("test", "", "Features folder of the test split (optional).")
_OUTPUT = flags.DEFINE_string("output", "", "Write the reports here as JSON.")
flags.mark_flags_as_required(["train"])


def summary_line(name: str, report: dict) -> str:
  return (f"{name:>6}: UAR {report['uar']:6.2f}  WAR {report['war']:6.2f}  "
          f"({report['num_clips']} clips)")


def main(argv):
  del argv
  cli.check_output_file(_OUTPUT.value, "--output")
  try:
    results = probe_feature_dirs(_TRAIN.value, {"val": _VAL.value, "test": _TEST.value},
                                 _CONFIG.value)
  except (FileNotFoundError, ValueError, KeyError) as e:
    print(cli.error_line(e), file=sys.stderr)
    return cli.EXIT_BAD_INPUT
  for name in ("train", "val", "test"):
    if name in results:
      print(summary_line(name, results[name]))
  if _OUTPUT.value:
    io_utils.write_json(_OUTPUT.value, results)
    print(f"reports written to {_OUTPUT.value}")
  else:
    print(json.dumps(results["settings"]))
  return 0


if __name__ == "__main__":
  cli.run(main)
