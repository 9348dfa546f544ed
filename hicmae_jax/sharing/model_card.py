"""The model card (README.md) of an exported model folder, filled from config.json and the run's
results.json: what the model is, the data and fold, the test UAR/WAR, its size, how to load it,
its intended use, the licence and the paper to cite. `for_hub` adds the Hugging Face Hub's
YAML front matter (library, licence, tags, the metrics as model-index)."""
from __future__ import annotations

import json
import os
import re
from typing import Any

PAPER = ("Licai Sun, Zheng Lian, Bin Liu, Jianhua Tao. HiCMAE: Hierarchical Contrastive Masked "
         "Autoencoder for self-supervised audio-visual emotion recognition. Information Fusion "
         "108 (2024) 102382. https://arxiv.org/abs/2401.05698")
BIBTEX = """@article{sun2024hicmae,
  title={HiCMAE: Hierarchical Contrastive Masked Autoencoder for Self-Supervised Audio-Visual
         Emotion Recognition},
  author={Sun, Licai and Lian, Zheng and Liu, Bin and Tao, Jianhua},
  journal={Information Fusion}, volume={108}, pages={102382}, year={2024}
}"""
# The original release (github.com/sunlicai/HiCMAE, LICENSE: MIT) is the default; the terms of
# the data a model was trained on apply as well, so the card says so and --license overrides.
LICENCE = "mit"
_FOLD = re.compile(r"fold[_-]?(\d+)", re.IGNORECASE)


def test_report(results: dict[str, Any] | None, step: int | None) -> tuple[dict, str]:
  """(the test report that belongs to the exported weights, which one it is). A run that
  selected on validation reports `test` on its best weights and `test_last` on its last ones."""
  if not results:
    return {}, ""
  if results.get("test_last") and step is not None and step == results.get("step"):
    return results["test_last"], "test_last (the last weights, the ones exported)"
  if results.get("test"):
    which = "test"
    if results.get("best_val_step") is not None:
      which += f" (the best-validation weights, step {results['best_val_step']})"
    return results["test"], which
  return {}, ""


def data_facts(train_config: dict[str, Any] | None, dataset: str = "") -> dict[str, str]:
  """{dataset, train split folder, fold}: `dataset` (--dataset), else the name the train
  split's dataset_info.json records, else what the training config says."""
  data = (train_config or {}).get("data") or {}
  train_dir = str(data.get("train_dir") or data.get("synthetic_dir") or "")
  info = os.path.join(str(data.get("train_dir") or ""), "dataset_info.json")
  if not dataset and data.get("train_dir") and os.path.isfile(info):
    with open(info) as f:
      dataset = json.load(f).get("name", "")
  fold = _FOLD.search(train_dir)
  return {"dataset": dataset or ("synthetic (the built-in demo)" if data.get("synthetic_dir")
                                 else "not recorded"),
          "train_dir": train_dir or "not recorded",
          "fold": fold.group(1) if fold else "not recorded"}


def _metric_lines(report: dict[str, Any]) -> list[str]:
  keys = [k for k in ("uar", "war", "weighted_f1", "macro_f1", "pcc", "ccc", "mae", "rmse")
          if isinstance(report.get(k), (int, float))]
  return [f"| {k.upper() if len(k) == 3 else k} | {report[k]:.2f} |" for k in keys]


def front_matter(config: dict[str, Any], report: dict[str, Any], facts: dict[str, str],
                 licence: str) -> str:
  lines = ["---", "library_name: hicmae_jax", f"license: {licence}",
           "pipeline_tag: video-classification", "tags:", "- jax", "- flax", "- safetensors",
           "- audio-visual", "- emotion-recognition", "- hicmae"]
  metrics = [(k, report[k]) for k in ("uar", "war") if isinstance(report.get(k), (int, float))]
  if metrics:
    lines += ["model-index:", f"- name: hicmae-{config['model'].get('size', 'custom')}",
              "  results:", "  - task: {type: audio-visual-emotion-recognition}",
              f"    dataset: {{name: \"{facts['dataset']}\", type: \"{facts['dataset']}\"}}",
              "    metrics:"]
    lines += [f"    - {{type: {k}, value: {v:.2f}}}" for k, v in metrics]
  return "\n".join(lines + ["---", ""])


def card(config: dict[str, Any], *, num_params: int, results: dict[str, Any] | None = None,
         train_config: dict[str, Any] | None = None, for_hub: bool = False,
         licence: str = LICENCE, dataset: str = "") -> str:
  """The README.md text of an exported folder (config: its config.json; dataset: --dataset)."""
  model, kind = config["model"], config["kind"]
  report, which = test_report(results, config.get("step"))
  facts = data_facts(train_config, dataset)
  names = config.get("class_names") or config.get("target_names") or []
  what = ("fine-tuned classifier" if kind in ("finetune", "linear_probe") else
          "self-supervised pre-trained encoders (features only, no classifier)")
  out = [front_matter(config, report, facts, licence)] if for_hub else []
  out += [f"# HiCMAE ({model.get('size', 'custom')}), {what}", "",
          f"Audio-visual emotion recognition model in JAX / Flax NNX (hicmae_jax), kind "
          f"`{kind}`, {num_params:,} parameters (width {model.get('dim')}, video and audio "
          f"depth {model.get('video_depth')}/{model.get('audio_depth')}, fusion depth "
          f"{model.get('fusion_depth')}).", "",
          "## Inputs and outputs", "",
          f"- video: {model.get('num_frames')} RGB frames of {model.get('input_size')}x"
          f"{model.get('input_size')} (uint8 0..255, or ImageNet-normalised float32), one "
          f"every {config.get('sampling_rate')} frames of a 25 fps clip;",
          f"- audio: Kaldi fbank, {model.get('audio_mel_bins')} mel bins x "
          f"{model.get('audio_frames')} frames of 10 ms, normalised (x + 4.2677393) / "
          f"(2 x 4.5689974);"]
  if names:
    out.append(f"- outputs ({model.get('task')}): " + ", ".join(f"`{n}`" for n in names) + ".")
  out += ["", "## Training data and results", "",
          f"- dataset: {facts['dataset']}; fold: {facts['fold']}; train split: "
          f"`{facts['train_dir']}`",
          f"- source checkpoint: `{(config.get('source') or {}).get('checkpoint', '')}` step "
          f"{config.get('step')}"]
  if report:
    out += ["", f"Test results ({which}, from results.json):", "", "| metric | % |",
            "|---|---|"] + _metric_lines(report)
  else:
    out += ["- test results: not recorded (no results.json came with the checkpoint)"]
  out += ["", "## Use", "", "```python", "import hicmae_jax",
          "model = hicmae_jax.from_pretrained('<this folder>')",
          "out = model(video, audio)  # {'logits': [B, C], 'feature': [B, F]}" if kind in
          ("finetune", "linear_probe") else "out = model(video, audio)  # {'feature': [B, F]}",
          "```", "", "or `python -m hicmae_jax.predict --model=<this folder> --video=clip.mp4 "
          "--output_dir=out`.", "",
          "Intended use: research on emotion recognition from face videos with speech. Not for "
          "decisions about people (hiring, policing, health): emotion labels of acted datasets "
          "do not transfer to real settings, and accuracy differs across groups of speakers.",
          "", f"## Licence\n\n{licence} (the original HiCMAE release is MIT). The terms of the "
          f"training data ({facts['dataset']}) apply too.", "",
          f"## Citation\n\n{PAPER}\n\n```bibtex\n{BIBTEX}\n```", ""]
  return "\n".join(out)
