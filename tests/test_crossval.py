"""The k-fold protocol: split files rebuilt from a folder listing equal the original's (CREMA-D
excerpts in tests/data), the speaker-leakage check, and cross_validate on three synthetic folds
(results per fold, a second call trains nothing, the report's mean is the folds' mean)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import test_pretrain
from hicmae_jax import checkpointing, io_utils
from hicmae_jax.crossval import layout, leakage, paper, report, runner, splits
from hicmae_jax.data.format import schema
from hicmae_jax.data.prepare import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIGINAL_ROOT = "/data/public_datasets/CREMA-D"


def _excerpts(data_dir):
  """{(fold, split, where): [line]} from tests/data/crema_d_split_excerpts.txt."""
  sections, key = {}, None
  for line in (data_dir / "crema_d_split_excerpts.txt").read_text().splitlines():
    if line.startswith("## "):
      file, where = line[3:].split(" ", 1)
      fold, split = int(file[5:7]), file.split("/")[1][:-4]
      key = (fold, split, where)
      sections[key] = []
    elif line and not line.startswith("#"):
      sections[key].append(line)
  return sections


def _name(line):
  return os.path.basename(line.split()[0])


def test_crema_d_split_files_equal_the_originals(tmp_path, data_dir):
  sections = _excerpts(data_dir)
  names = {_name(line) for lines in sections.values() for line in lines}
  assert names.isdisjoint(splits.CREMA_D_BROKEN)
  video_dir, audio_dir = tmp_path / "face_aligned", tmp_path / "AudioWAV"
  audio_dir.mkdir()
  for name in names | set(splits.CREMA_D_BROKEN) | {"1090_DFA_ANG_XX"}:
    (video_dir / name).mkdir(parents=True)
    if name != "1090_DFA_ANG_XX":  # no wav: left out, as the original does
      (audio_dir / f"{name}.wav").write_bytes(b"")
  (video_dir / "README.txt").write_text("not a clip")
  folds = splits.make_folds("crema_d", str(video_dir), str(audio_dir))
  assert sorted(folds) == [1, 2, 3, 4, 5]
  written = splits.write_split_files(str(tmp_path / "splits"), folds)
  for (fold, split, where), expected in sections.items():
    lines = open(written[fold][split]).read().splitlines()
    ours = [line.replace(str(video_dir), f"{ORIGINAL_ROOT}/face_aligned")
                .replace(str(audio_dir), f"{ORIGINAL_ROOT}/AudioWAV") for line in lines]
    first, last = _name(expected[0]), _name(expected[-1])
    # The sections are runs of consecutive lines of sorted files: every generated line whose
    # clip sorts between the run's first and last clip must be exactly the run.
    run = [line for line in ours if first <= _name(line) <= last]
    assert run == expected, (fold, split, where)
  # Every clip is tested in exactly one fold and trained on in the four others; the broken
  # clips and the one without its wav are nowhere.
  tested = [_name(e.video) for k in folds for e in folds[k]["test"]]
  assert sorted(tested) == sorted(names)
  for k in folds:
    assert len(folds[k]["train"]) + len(folds[k]["test"]) == len(names)
    assert {e.speaker for e in folds[k]["test"]}.isdisjoint(e.speaker for e in folds[k]["train"])
  # 91 actors: four folds of 18, the last of 19 (1073 .. 1091).
  assert [splits.crema_d_fold_of(str(a)) for a in (1001, 1018, 1019, 1072, 1073, 1091)] == \
      [1, 1, 2, 4, 5, 5]


def test_ravdess_actor_folds(tmp_path):
  video_dir, audio_dir = tmp_path / "face_aligned", tmp_path / "audio_16k"
  for actor in range(1, 25):
    for take in ("01-03-01-01-01", "01-06-02-02-02"):
      for modality in ("01", "02"):  # audio-visual and video-only copies of one take
        (video_dir / f"Actor_{actor:02d}" / f"{modality}-{take}-{actor:02d}").mkdir(parents=True)
      (audio_dir / f"Actor_{actor:02d}").mkdir(parents=True, exist_ok=True)
      (audio_dir / f"Actor_{actor:02d}" / f"03-{take}-{actor:02d}.wav").write_bytes(b"")
    (video_dir / f"Actor_{actor:02d}" / f"02-02-03-01-01-01-{actor:02d}").mkdir()  # song
  folds = splits.make_folds("ravdess", str(video_dir), str(audio_dir))
  assert sorted(folds) == [1, 2, 3, 4, 5, 6]
  for k, parts in folds.items():
    assert {e.speaker for e in parts["test"]} == {f"{a:02d}" for a in range(4 * k - 3, 4 * k + 1)}
    assert len(parts["test"]) == 8 and len(parts["train"]) == 40
  first = folds[1]["test"][0]
  assert first.video.endswith("Actor_01/02-01-03-01-01-01-01") and first.label == 2
  assert first.audio.endswith("Actor_01/03-01-03-01-01-01-01.wav")
  assert folds[1]["test"][1].label == 5


def _fake_split(split_dir, clips, dataset="crema_d"):
  """A split folder whose dataset_info points at a split file of these clip paths (the
  leakage check reads only that)."""
  os.makedirs(split_dir, exist_ok=True)
  list_file = os.path.join(split_dir, "source.csv")
  with open(list_file, "w") as f:
    f.writelines(f"{c} {c}.wav 0\n" for c in clips)
  schema.DatasetInfo(name=dataset, split=os.path.basename(split_dir), num_clips=len(clips),
                     shards=[], extra={"source_split_file": list_file}).save(split_dir)


@pytest.mark.slow
def test_leakage_check_names_the_shared_speakers(tmp_path):
  root = tmp_path / "folds"
  _fake_split(str(root / "fold1" / "train"), ["/d/1001_DFA_ANG_XX", "/d/1002_DFA_ANG_XX"])
  _fake_split(str(root / "fold1" / "test"), ["/d/1003_DFA_ANG_XX"])
  _fake_split(str(root / "fold2" / "train"), ["/d/1001_DFA_ANG_XX", "/d/1003_IEO_SAD_HI",
                                              "/d/1003_DFA_HAP_XX"])
  _fake_split(str(root / "fold2" / "test"), ["/d/1003_DFA_ANG_XX", "/d/1002_DFA_SAD_XX"])
  folds = layout.discover(str(root))
  assert [f.number for f in folds] == [1, 2] and folds[0].val == ""
  ok = leakage.check_fold("fold1", folds[0].train, folds[0].test)
  assert ok["checked"] and ok["train_speakers"] == 2 and ok["test_speakers"] == 1
  with pytest.raises(leakage.LeakageError,
                     match=r"fold2: 1 speaker id\(s\) in both train .* 1003 \(train 2 clips, "
                           r"test 1\)"):
    runner.check_leakage(folds)
  # A dataset without a known id is not checked, unless a pattern is given.
  _fake_split(str(root / "fold2" / "train"), ["/d/spk3_a"], dataset="custom")
  _fake_split(str(root / "fold2" / "test"), ["/d/spk3_b"], dataset="custom")
  assert not leakage.check_fold("fold2", folds[1].train, folds[1].test)["checked"]
  with pytest.raises(leakage.LeakageError, match="spk3"):
    leakage.check_fold("fold2", folds[1].train, folds[1].test, pattern=r"^(spk\d+)_")

  # The binary stops before anything is trained or printed, with the ids on one line.
  _fake_split(str(root / "fold2" / "train"), ["/d/1004_DFA_ANG_XX"])
  _fake_split(str(root / "fold2" / "test"), ["/d/1004_DFA_SAD_XX"])
  done = subprocess.run(
      [sys.executable, "-m", "hicmae_jax.tools.cross_validate",
       f"--config={REPO}/configs/finetune_crema_d.py", f"--folds_root={root}",
       f"--workdir={tmp_path / 'cv'}", "--print_commands"],
      cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO),
      capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr[-2000:]
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert lines[-1].startswith("error: fold2: 1 speaker id(s) in both train") and "1004" in lines[-1]
  assert not done.stdout.strip() and not (tmp_path / "cv").exists()


def test_paper_numbers_come_from_the_config_docstring():
  crema = paper.paper_result(os.path.join(REPO, "configs", "finetune_crema_d.py"))
  assert crema["model"] == "HiCMAE-B, audio+video"
  assert [(v["metric"], v["value"]) for v in crema["values"]] == [("uar", 84.91),
                                                                   ("war", 84.89)]
  wolf = paper.paper_result(os.path.join(REPO, "configs", "finetune_werewolf_xl.py"))
  assert [(v["dimension"], v["metric"]) for v in wolf["values"]] == [("valence", "pcc"),
                                                                     ("valence", "ccc")]
  assert paper.paper_result(os.path.join(REPO, "configs", "demo.py")) is None


@pytest.fixture(scope="module")
def folds_root(tmp_path_factory):
  """fold1..3, each with its own synthetic train (12 clips) and test (6 clips) split."""
  root = tmp_path_factory.mktemp("cv_folds")
  for k in (1, 2, 3):
    synthetic.generate(str(root / f"fold{k}"), num_train=12, num_val=0, num_test=6,
                       num_classes=3, frame_size=32, num_frames=24, seed=k, num_workers=1,
                       verbose=False)
  return root


def _config():
  c = test_pretrain.get_config("finetune")
  c.num_train_steps = 2
  c.eval_every_epochs = 100
  return c


def _latest_steps(workdir):
  return {k: checkpointing.finished_steps(checkpointing.checkpoint_dir(
      os.path.join(workdir, f"fold{k}"))) for k in (1, 2, 3)}


@pytest.mark.slow
def test_cross_validate_three_folds_resumes_and_reports(folds_root, tmp_path):
  workdir = str(tmp_path / "cv")
  folds = layout.discover(str(folds_root))
  assert [f.number for f in folds] == [1, 2, 3]
  runs = runner.run_folds(_config(), folds, workdir)
  assert [r.status for r in runs] == ["trained"] * 3
  results = [io_utils.read_json(os.path.join(workdir, f"fold{k}", "results.json"))
             for k in (1, 2, 3)]
  assert all(r["test"]["num_clips"] == 6 for r in results)
  assert all(r["test"]["split_dir"] == str(folds_root / f"fold{k}" / "test")
             for k, r in zip((1, 2, 3), results))
  steps = _latest_steps(workdir)
  stamps = [os.path.getmtime(os.path.join(workdir, f"fold{k}", "results.json"))
            for k in (1, 2, 3)]

  # Again: every fold finished before, so nothing is trained, saved or evaluated.
  again = runner.run_folds(_config(), folds, workdir)
  assert [r.status for r in again] == ["finished earlier"] * 3
  assert [r.results for r in again] == results
  assert _latest_steps(workdir) == steps
  assert stamps == [os.path.getmtime(os.path.join(workdir, f"fold{k}", "results.json"))
                    for k in (1, 2, 3)]

  spec = os.path.join(REPO, "configs", "test_pretrain.py") + ":finetune"
  rep, paths = runner.write_report(workdir, folds, spec, str(folds_root))
  assert rep["num_finished"] == 3 and rep["paper"] is None
  for key in ("uar", "war", "weighted_f1"):
    values = [r["test"][key] for r in results]
    assert rep["summary"][key]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
    assert rep["summary"][key]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert [f["values"][key] for f in rep["folds"]] == values
  assert json.load(open(paths["json"]))["summary"] == rep["summary"]
  assert "**mean ± std**" in open(paths["md"]).read()
  assert os.path.getsize(paths["png"]) > 0

  # With a paper number (the CREMA-D config's) the table and the JSON compare against it.
  crema = paper.paper_result(os.path.join(REPO, "configs", "finetune_crema_d.py"))
  with_paper = report.build(workdir, folds, config_spec=spec, paper=crema)
  uar = with_paper["comparison"][0]
  assert uar["metric"] == "uar" and uar["paper"] == 84.91
  assert uar["difference"] == pytest.approx(rep["summary"]["uar"]["mean"] - 84.91)
  assert "| paper (HiCMAE-B, audio+video) | 84.91 | 84.89 | - |" in report.markdown(with_paper)

  # A fold that has not finished is listed and left out of the mean.
  os.rename(os.path.join(workdir, "fold3", "results.json"),
            os.path.join(workdir, "fold3", "results.moved"))
  partial = report.build(workdir, folds, config_spec=spec)
  assert partial["num_finished"] == 2 and partial["folds"][2]["status"] == "not finished"
  assert partial["summary"]["uar"]["mean"] == pytest.approx(
      np.mean([r["test"]["uar"] for r in results[:2]]))


@pytest.mark.slow
def test_commands_and_slurm_array(folds_root, tmp_path):
  folds = layout.discover(str(folds_root), only=(2,))
  command = runner.fold_command("configs/finetune_crema_d.py", ["--config.init_from=ckpt/b"],
                                folds[0], "cv")
  assert command == (f"python -m hicmae_jax.main --config=configs/finetune_crema_d.py "
                     f"--workdir=cv/fold2 --config.init_from=ckpt/b "
                     f"--config.data.train_dir={folds_root}/fold2/train "
                     f"--config.data.val_dir= --config.data.test_dir={folds_root}/fold2/test "
                     f"--config.data.synthetic_dir=")
  script = runner.slurm_array([command, command], "python -m x --report_only")
  assert "#SBATCH --array=1-2" in script and "SLURM_ARRAY_TASK_ID" in script
  path = tmp_path / "cv.sbatch"
  path.write_text(script)
  # bash picks task 2's command out of the array (echo instead of running it).
  done = subprocess.run(["bash", "-c", f"eval() {{ echo \"$@\"; }}; SLURM_ARRAY_TASK_ID=2 "
                                       f"source {path}"], capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == command
  with pytest.raises(FileNotFoundError, match="has no fold"):
    layout.discover(str(folds_root), only=(7,))
