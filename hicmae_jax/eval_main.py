"""Eval binary: restores a checkpoint (ours or a converted original) and evaluates it.

  python -m hicmae_jax.eval_main --config=configs/finetune_crema_d.py --checkpoint=DIR \
      --config.data.test_dir=/data/crema_d/fold1/test [--results=out.json]

Never creates an optimizer and never writes into the checkpoint folder. The model's sizes come
from the checkpoint's metadata (the config's data and eval settings are used).
"""
import json
import logging
import os

from absl import app, flags
from ml_collections import config_flags

from hicmae_jax import runtime

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=False)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint folder (a run's workdir, its "
                                  "checkpoints/ folder, or a converted checkpoint).")
_STEP = flags.DEFINE_integer("step", None, "Step to restore (default: latest).")
_SPLIT = flags.DEFINE_enum("split", "test", ["val", "test"], "Which split of the config to use.")
_RESULTS = flags.DEFINE_string("results", "", "Where to write the JSON results (default: "
                               "eval_<split>_step<N>.json beside the checkpoint's workdir logs).")
flags.mark_flags_as_required(["config", "checkpoint"])

log = logging.getLogger("hicmae_jax.eval")


def evaluate_checkpoint(config, checkpoint: str, *, step=None, split="test", results_path=""):
  """Restores weights from `checkpoint` and evaluates `split`; returns the report."""
  import jax
  import ml_collections
  from flax import nnx

  from hicmae_jax import checkpointing, evaluate, metrics, sharding
  from hicmae_jax.data import schema
  from hicmae_jax.models import params as params_lib
  from hicmae_jax.models.classifier import FinetuneModel

  directory = checkpoint
  if os.path.isdir(checkpointing.checkpoint_dir(directory)):
    directory = checkpointing.checkpoint_dir(directory)
  step, meta = checkpointing.read_meta(directory, step)
  if meta.get("kind") == "pretrain":
    raise ValueError(f"{directory} step {step} is a pre-training checkpoint: it has no "
                     f"classifier. Fine-tune it first (config.init_from) or export features.")
  with config.unlocked():
    config.model = ml_collections.ConfigDict(meta["model"])
    config.model.hierarchy_layers = tuple(config.model.hierarchy_layers)
    config.kind = "finetune"
  split_dir = config.data.test_dir if split == "test" else config.data.val_dir
  if not split_dir:
    raise ValueError(f"config.data.{split}_dir is empty: pass --config.data.{split}_dir=<split>")
  mesh = sharding.make_mesh(config.mesh)
  model = nnx.eval_shape(lambda: FinetuneModel(config.model, rngs=nnx.Rngs(0)))
  view = params_lib.ParamsView(model)
  abstract = {params_lib.key_of(p): v for p, v in params_lib.flat_params(model).items()}
  shardings = sharding.tree_shardings(abstract, mesh)
  mngr = checkpointing.manager(directory, read_only=True)
  params = checkpointing.restore(mngr, step, params_target=checkpointing.abstract_like(
      abstract, shardings))["params"]
  mngr.close()
  info = schema.DatasetInfo.load(split_dir)
  report = evaluate.run_eval(config, params, view, mesh, split_dir, split,
                             class_names=info.class_names)
  report["checkpoint"] = os.path.abspath(directory)
  report["step"] = int(step)
  if jax.process_index() == 0:
    path = results_path or os.path.join(os.path.dirname(os.path.abspath(directory)),
                                        f"eval_{split}_step{step}.json")
    if os.path.commonpath([os.path.abspath(path), os.path.abspath(directory)]) == \
        os.path.abspath(directory):
      raise ValueError(f"--results={path} is inside the checkpoint folder; eval never writes there")
    checkpointing.write_json(path, report)
    if "confusion_matrix" in report:
      metrics.save_confusion_matrix_png(report["confusion_matrix"], report.get(
          "class_names", info.class_names), os.path.splitext(path)[0] + "_confusion.png")
    log.info("results written to %s", path)
  return report


def main(argv):
  del argv
  runtime.initialize_distributed()
  runtime.setup_logging(None)
  runtime.banner()
  try:
    report = evaluate_checkpoint(_CONFIG.value, _CHECKPOINT.value, step=_STEP.value,
                                 split=_SPLIT.value, results_path=_RESULTS.value)
  except Exception as e:
    runtime.exit_now_if_multiprocess(e)
    raise
  print(json.dumps({k: v for k, v in report.items() if not isinstance(v, (list, dict))},
                   indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
