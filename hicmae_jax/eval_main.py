r"""Eval binary: restores a checkpoint (ours, a converted or exported one, or a .pth) and
evaluates it.

  python -m hicmae_jax.eval_main --config=configs/finetune_crema_d.py --checkpoint=DIR \
      --config.data.test_dir=/data/crema_d/fold1/test [--results=out.json] \
      [--predictions=out.csv] [--per_view_scores]
  python -m hicmae_jax.eval_main --config=configs/demo.py --checkpoint=workdirs/demo/finetune

Writes the metrics (JSON, confusion-matrix PNG) and every clip's merged scores (CSV: clip id,
label, mean probability per class over the views, predicted class; see clip_predictions.py).
Never creates an optimizer and never writes into the checkpoint folder. The model's sizes come
from the checkpoint's metadata (the config's data and eval settings are used). The demo config
means its fine-tuning part; a config with built-in synthetic data (config.data.synthetic_dir)
evaluates that data's split unless --config.data.<split>_dir says otherwise. The checkpoint and
the results may be in a bucket (gs://...).
"""
import json
import logging
import os

import jax
import ml_collections
from absl import flags
from flax import nnx
from ml_collections import config_flags

from hicmae_jax import checkpointing, cli, evaluate, io_utils, metrics, paths, runtime, sharding
from hicmae_jax.checkpoints import safetensors_io, weights as weights_lib
from hicmae_jax.data.format import schema
from hicmae_jax.models import params as params_lib
from hicmae_jax.models.classifier import FinetuneModel

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=False)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint folder (a run's workdir, its "
                                  "checkpoints/ folder, a converted checkpoint, a folder of "
                                  "tools.export --format=safetensors, or a fine-tuned .pth).")
_STEP = flags.DEFINE_integer("step", None, "Step to restore (default: latest).")
_SPLIT = flags.DEFINE_enum("split", "test", ["val", "test"], "Which split of the config to use.")
_RESULTS = flags.DEFINE_string("results", "", "Where to write the JSON results (default: "
                               "eval_<split>_step<N>.json beside the checkpoint's workdir logs).")
_PREDICTIONS = flags.DEFINE_string("predictions", "", "Where to write the per-clip predictions "
                                   "CSV (default: the results path with _predictions.csv).")
_PER_VIEW = flags.DEFINE_bool("per_view_scores", False, "Also write each view's scores in the "
                              "predictions CSV (the merged scores are always there).")
flags.mark_flags_as_required(["config", "checkpoint"])

log = logging.getLogger("hicmae_jax.eval")


def evaluate_checkpoint(config, checkpoint: str, *, step=None, split="test", results_path="",
                        predictions_path="", per_view_scores=False):
  """Restores weights from `checkpoint` and evaluates `split`; returns the report.

  Writes the report (JSON), its confusion matrix (PNG) and the per-clip predictions (CSV,
  `predictions_path`, default beside the report: clip_predictions.py)."""
  config, directory, split_dir = check_inputs(config, checkpoint, step, split, results_path)
  weights = None
  if paths.isfile(directory) or safetensors_io.looks_exported(directory):
    # An original .pth or a folder of tools.export (no Orbax): read whole, bound below.
    weights = weights_lib.load_weights(directory, model_hint=config)
    meta = {"kind": weights.kind, "model": weights.model.to_dict()}
    step = int(weights.source.get("step") or 0)
  else:
    step, meta = checkpointing.read_meta(directory, step)
  if meta.get("kind") == "pretrain":
    raise ValueError(f"{directory} step {step} is a pre-training checkpoint: it has no "
                     f"classifier. Fine-tune it first (config.init_from) or export features.")
  path = results_path or os.path.join(paths.parent(directory), f"eval_{split}_step{step}.json")
  predictions = predictions_path or default_predictions_path(path)
  inside = os.path.join(paths.absolute(directory).rstrip("/"), "")
  for flag, file in (("--results", path), ("--predictions", predictions)):
    if (paths.absolute(file) + "/").startswith(inside):
      raise ValueError(f"{flag}={file} is inside the checkpoint folder; eval never writes there")
  if not results_path:
    cli.check_output_file(path, "--results (default: beside the checkpoint folder)")
  if not predictions_path:
    cli.check_output_file(predictions, "--predictions (default: beside the results)")
  with config.unlocked():
    config.model = ml_collections.ConfigDict(meta["model"])
    config.model.hierarchy_layers = tuple(config.model.hierarchy_layers)
    config.kind = "finetune"
  runtime.use_compilation_cache(config.get("compilation_cache_dir", ""))
  mesh = sharding.make_mesh(config.mesh)
  model = nnx.eval_shape(lambda: FinetuneModel(config.model, rngs=nnx.Rngs(0)))
  view = params_lib.ParamsView(model)
  abstract = {params_lib.key_of(p): v for p, v in params_lib.flat_params(model).items()}
  shardings = sharding.tree_shardings(abstract, mesh)
  if weights is not None:
    _, flat = weights_lib.bind(weights)  # every tensor of the fine-tuning model, or refused
    params = jax.device_put({k: flat[k] for k in abstract}, shardings)
  else:
    mngr = checkpointing.manager(directory, read_only=True)
    params = checkpointing.restore(mngr, step, params_target=checkpointing.abstract_like(
        abstract, shardings))["params"]
    mngr.close()
  info = schema.DatasetInfo.load(split_dir)
  report = evaluate.run_eval(config, params, view, mesh, split_dir, split,
                             class_names=info.class_names, predictions_path=predictions,
                             per_view_scores=per_view_scores)
  report["checkpoint"] = paths.absolute(directory)
  report["step"] = int(step)
  if jax.process_index() == 0:
    io_utils.write_json(path, report)
    if "confusion_matrix" in report:
      metrics.save_confusion_matrix_png(report["confusion_matrix"], report.get(
          "class_names", info.class_names), os.path.splitext(path)[0] + "_confusion.png")
    log.info("results written to %s (per-clip predictions: %s)", path, predictions)
  return report


def default_predictions_path(results_path: str) -> str:
  """eval_test_step6.json -> eval_test_step6_predictions.csv (beside the results)."""
  return os.path.splitext(results_path)[0] + "_predictions.csv"


def check_inputs(config, checkpoint: str, step: int | None, split: str, results_path: str = "",
                 predictions_path: str = ""):
  """(the config of the evaluated model, the folder of step folders, the split folder), or
  cli.BadInput naming the flag (integrity.ShardError for a damaged shard). Reads no
  checkpoint: file checks only."""
  cli.check_output_file(results_path, "--results")
  cli.check_output_file(predictions_path, "--predictions")
  name = "config"
  if config.get("demo", False):  # the demo's model is its fine-tuning run
    config, name = config.finetune, "config.finetune"
  split_dir = split_folder(config, split, name)
  directory = checkpoint_folder(checkpoint, step)
  schema.DatasetInfo.load(split_dir)  # a split, its shards there at their recorded sizes
  return config, directory, split_dir


def checkpoint_folder(checkpoint: str, step: int | None = None) -> str:
  """The folder holding the step folders (`checkpoint` itself or its checkpoints/), an exported
  folder, or a .pth file as given."""
  if checkpoint.endswith((".pth", ".pt")) and paths.isfile(checkpoint):
    if step is not None:
      raise cli.BadInput(f"--step={step}: {checkpoint} is a .pth (one step); leave --step out")
    return checkpoint  # read as feature export and predict read it (checkpoints/weights.py)
  if not paths.isdir(checkpoint):
    raise cli.BadInput(f"--checkpoint={checkpoint}: no such folder; give a run's workdir, its "
                       f"checkpoints/ folder, a converted checkpoint or an exported folder")
  if not paths.is_remote(checkpoint) and safetensors_io.looks_exported(checkpoint):
    if step is not None:
      raise cli.BadInput(f"--step={step}: {checkpoint} is an exported folder (one step); "
                         f"leave --step out")
    safetensors_io.read_config(checkpoint)  # config.json there and ours
    return checkpoint
  directory = checkpointing.resolve_checkpoint_dir(checkpoint)
  steps = checkpointing.finished_steps(directory)
  if not steps:
    raise cli.BadInput(f"--checkpoint={checkpoint}: no finished checkpoint in {directory} "
                       f"(Orbax step folders such as {directory}/1000)")
  if step is not None and step not in steps:
    raise cli.BadInput(f"--step={step}: {directory} holds steps {sorted(steps)}")
  return directory


def split_folder(config, split: str, name: str = "config") -> str:
  """config.data.<split>_dir, else the split of the config's synthetic data when it exists.

  name: how the config is named in messages ("config.finetune" for the demo)."""
  given = config.data.test_dir if split == "test" else config.data.val_dir
  if given:
    return given
  if config.data.synthetic_dir:
    generated = os.path.join(config.data.synthetic_dir, split)
    if os.path.isdir(generated):
      return generated
    raise cli.BadInput(
        f"{name}.data.{split}_dir is empty and the config's synthetic {split} split "
        f"{generated} does not exist (relative to {os.getcwd()}): run the config's training "
        f"command first, from this folder (it generates the data), or pass "
        f"--{name}.data.{split}_dir=<prepared split>")
  raise cli.BadInput(f"{name}.data.{split}_dir is empty: pass --{name}.data.{split}_dir="
                     f"<prepared split>")


def main(argv):
  if len(argv) > 1:
    raise cli.BadInput(f"unexpected argument {argv[1]!r}: every input is a flag, e.g. "
                       f"--config=configs/demo.py --checkpoint=workdirs/demo/finetune")
  runtime.initialize_distributed()
  try:
    check_inputs(_CONFIG.value, _CHECKPOINT.value, _STEP.value, _SPLIT.value,  # before logging
                 _RESULTS.value, _PREDICTIONS.value)
    runtime.setup_logging(None)
    runtime.banner()
    report = evaluate_checkpoint(_CONFIG.value, _CHECKPOINT.value, step=_STEP.value,
                                 split=_SPLIT.value, results_path=_RESULTS.value,
                                 predictions_path=_PREDICTIONS.value,
                                 per_view_scores=_PER_VIEW.value)
  except Exception as e:
    runtime.exit_now_if_multiprocess(e)
    raise
  print(json.dumps({k: v for k, v in report.items() if not isinstance(v, (list, dict))},
                   indent=2, default=str))


if __name__ == "__main__":
  cli.run(main)
