"""The built-in demo (configs/demo.py): pre-train, fine-tune from it, evaluate, report."""
from __future__ import annotations

import json
import logging
import os
import time

from hicmae_jax import train

log = logging.getLogger("hicmae_jax.demo")


def run(config, workdir: str) -> dict:
  """Pre-trains, fine-tunes from it and evaluates; a stop (Ctrl-C, SIGTERM) in either part
  saves and returns at once, and the same command resumes where it stopped."""
  t0 = time.time()
  pre_dir = os.path.join(workdir, "pretrain")
  fine_dir = os.path.join(workdir, "finetune")
  log.info("demo 1/2: pre-training on synthetic data -> %s", pre_dir)
  pre_results = train.run(config.pretrain, pre_dir)
  if "preempted_at_step" in pre_results:
    log.warning("demo stopped during pre-training (checkpoint saved); run the same command "
                "again to resume")
    return pre_results
  finetune = config.finetune
  with finetune.unlocked():
    finetune.init_from = finetune.init_from or pre_dir
  log.info("demo 2/2: fine-tuning from the pre-trained checkpoint -> %s", fine_dir)
  results = train.run(finetune, fine_dir)
  if "preempted_at_step" in results:
    log.warning("demo stopped during fine-tuning (checkpoint saved); run the same command "
                "again to resume")
    return results
  summary = {
      "minutes": round((time.time() - t0) / 60, 1),
      "test": {k: results.get("test", {}).get(k) for k in ("war", "uar", "weighted_f1")},
      "chance_accuracy": 100.0 / finetune.model.num_classes,
      "tensorboard": f"tensorboard --logdir {workdir}",
      "checkpoints": [os.path.join(pre_dir, "checkpoints"), os.path.join(fine_dir, "checkpoints")],
      "results": os.path.join(fine_dir, "results.json"),
      "evaluate_again": ("python -m hicmae_jax.eval_main --config=configs/demo.py "
                         f"--checkpoint={fine_dir}"),
  }
  print(json.dumps(summary, indent=2))
  return summary
