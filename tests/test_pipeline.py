"""grain pipelines on tiny hand-written shards: batch contract, determinism, exact resume,
eval coverage, skipping of corrupt records, worker processes."""
import dataclasses
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image

from hicmae_jax.data.format import schema
from hicmae_jax.data.pipeline import batching, factories as pipeline, options
from hicmae_jax.data.transforms import masks

SIZE = 32  # stored frames and input_size
FRAMES = 8  # clip length (num_frames)
RATE = 2  # sampling_rate
VIDEO = options.VideoOptions(num_frames=FRAMES, sampling_rate=RATE, input_size=SIZE)
# The original's recipe (configs/common.py) at this size: fbank 256 x 128, RandAugment
# rand-m7-n4-mstd0.5-inc1, Mixup/CutMix with smoothing 0.1, masks 0.9 / 0.8 (patch 8 here).
AUDIO = options.AudioOptions(audio_frames=256, num_mel_bins=128, magnitude=True, roll=False)
AUGMENT = options.AugmentOptions(fixed_crop=None, multiscale=(1, .875, .75, .66), num_repeats=1,
                           rand_augment="rand-m7-n4-mstd0.5-inc1", erase_prob=0.25)
LABELS = options.LabelOptions(task=None, num_classes=0, label_smoothing=0.1, mixup_alpha=0.8,
                        cutmix_alpha=1.0, mixup_switch_prob=0.5, mix_audio=False)
MASKS = options.MaskOptions(draw=True, video_ratio=0.9, audio_ratio=0.8, patch_size=8,
                      tubelet_size=2, audio_patch_size=16)
LOADER = options.LoaderOptions(shard_index=0, shard_count=1, read_threads=1)


def _pretrain(split_dir, *, batch_size, seed, num_repeats=1, draw_masks=True, loader=LOADER):
  return pipeline.make_pretrain_dataset(
      split_dir, batch_size=batch_size, seed=seed, video=VIDEO, audio=AUDIO,
      augment=dataclasses.replace(AUGMENT, num_repeats=num_repeats),
      masks=dataclasses.replace(MASKS, draw=draw_masks), loader=loader)


def _finetune(split_dir, *, batch_size, seed, augment=AUGMENT, labels=LABELS, loader=LOADER):
  return pipeline.make_finetune_train_dataset(split_dir, batch_size=batch_size, seed=seed,
                                       video=VIDEO, audio=AUDIO, augment=augment,
                                       labels=labels, loader=loader)


def _eval(split_dir, *, batch_size, mode, loader=LOADER):
  views = options.EvalOptions(mode=mode, num_segments=2, num_crops=2, random_long_val_start=False,
                        magnitude_aug=False)
  return pipeline.make_eval_dataset(split_dir, batch_size=batch_size, seed=0, video=VIDEO,
                             audio=AUDIO, views=views, labels=LABELS, loader=loader)
# Normalised pixel range for x / 255 in [0, 1] with the ImageNet mean/std.


def _jpeg(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def _write_split(split_dir, num_clips, *, frame_counts=(10, 20, 40), num_classes=3,
                 num_targets=0, corrupt=(), num_shards=2, seed=0):
  """Shards of clips with random frames and noise audio; records listed in `corrupt` are
  truncated to half their bytes. Clip i goes to shard i % num_shards."""
  os.makedirs(split_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  names = [schema.SHARD_PATTERN.format(index=i, count=num_shards) for i in range(num_shards)]
  writers = [ArrayRecordWriter(os.path.join(split_dir, n), "group_size:1") for n in names]
  for i in range(num_clips):
    n = frame_counts[i % len(frame_counts)]
    frames = [_jpeg(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(n)]
    samples = int(n / 25 * schema.AUDIO_SAMPLE_RATE)
    clip = schema.Clip(clip_id=f"clip{i:03d}", frames=frames, frame_format="jpeg", height=SIZE,
                       width=SIZE, audio=(rng.standard_normal(samples) * 3000).astype(np.int16),
                       label=i % num_classes if not num_targets else -1,
                       targets=tuple(rng.random(num_targets).tolist()), fps=25.0)
    data = schema.encode_clip(clip)
    if i in corrupt:
      data = data[:len(data) // 2]
    writers[i % num_shards].write(data)
  for w in writers:
    w.close()
  schema.DatasetInfo(
      name="tiny", split=os.path.basename(split_dir), num_clips=num_clips, shards=names,
      class_names=[f"c{k}" for k in range(num_classes)] if not num_targets else [],
      num_targets=num_targets, frame_height=SIZE, frame_width=SIZE).save(split_dir)
  return str(split_dir)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
  root = tmp_path_factory.mktemp("splits")
  return {
      "cls": _write_split(root / "cls", 12),
      "reg": _write_split(root / "reg", 6, num_targets=3, seed=1),
      "bad": _write_split(root / "bad", 12, corrupt=(3,), seed=2),
  }


def _take(ds, n):
  it = iter(ds)
  out = [next(it) for _ in range(n)]
  return it, out


def _assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# --- batch contract -----------------------------------------------------------------------

def test_pretrain_batch_contract(splits):
  ds = _pretrain(splits["cls"], batch_size=4, seed=0)
  _, batches = _take(ds, 3)
  grid_t, grid_hw = FRAMES // 2, (SIZE // 8) ** 2
  spatial_masks = set()
  for b in batches:
    assert set(b) == {"video", "audio", "mask_video", "mask_audio"}
    # uint8 frames: normalised on the device (hicmae_jax.pixels), a quarter of the bytes
    assert b["video"].shape == (4, FRAMES, SIZE, SIZE, 3) and b["video"].dtype == np.uint8
    assert b["audio"].shape == (4, 256, 128) and b["audio"].dtype == np.float32
    assert np.isfinite(b["audio"]).all() and np.abs(b["audio"]).max() < 10
    mv, ma = b["mask_video"], b["mask_audio"]
    assert mv.shape == (4, grid_t * grid_hw) and mv.dtype == np.bool_
    assert ma.shape == (4, 128) and ma.dtype == np.bool_
    assert (mv.sum(1) == grid_t * int(0.9 * grid_hw)).all()
    assert (ma.sum(1) == int(0.8 * 128)).all()
    tubes = mv.reshape(4, grid_t, grid_hw)
    assert (tubes == tubes[:, :1]).all()  # one spatial mask shared over time
    assert len({m.tobytes() for m in ma}) == 4  # each sample its own mask
    spatial_masks.update(t[0].tobytes() for t in tubes)
  assert len(spatial_masks) > 1


def test_finetune_classification_batch_contract(splits):
  ds = _finetune(splits["cls"], batch_size=4, seed=0)
  _, (b,) = _take(ds, 1)
  assert set(b) == {"video", "audio", "label", "targets"}
  assert b["video"].shape == (4, FRAMES, SIZE, SIZE, 3) and b["video"].dtype == np.float32
  assert b["audio"].shape == (4, 256, 128) and b["audio"].dtype == np.float32
  assert b["label"].shape == (4,) and b["label"].dtype == np.int32
  assert b["targets"].shape == (4, 3) and b["targets"].dtype == np.float32
  np.testing.assert_allclose(b["targets"].sum(1), 1.0, rtol=1e-5)
  assert set(b["label"].tolist()) <= {0, 1, 2}
  assert np.isfinite(b["video"]).all()


def test_finetune_regression_batch_contract(splits):
  ds = _finetune(splits["reg"], batch_size=2, seed=0)
  _, (b,) = _take(ds, 1)
  assert set(b) == {"video", "audio", "label", "targets"}
  assert b["targets"].shape == (2, 3) and b["targets"].dtype == np.float32
  assert ((b["targets"] >= 0) & (b["targets"] <= 1)).all()  # the records' values, unmixed


# --- determinism and resume ---------------------------------------------------------------

def test_an_opened_split_is_not_read_again(splits, dataset_info_reads):
  from hicmae_jax.data.format import split_reader
  reads = dataset_info_reads
  split = split_reader.open_split(splits["cls"])
  assert reads == [splits["cls"]] and split.info.num_clips == 12 and len(split.paths) == 2
  for make in (_pretrain, _finetune):
    _take(make(split, batch_size=4, seed=0), 1)
  assert reads == [splits["cls"]]  # the trainer's split: dataset_info.json read once
  _take(_pretrain(splits["cls"], batch_size=4, seed=0), 1)
  assert reads == [splits["cls"]] * 2  # a folder name: opened once by the factory


def test_iterate_clips_stops_at_the_limit(splits):
  from hicmae_jax.data.format import split_reader
  every = [c.clip_id for c in split_reader.iterate_clips(splits["cls"])]
  assert len(every) == 12
  assert [c.clip_id for c in split_reader.iterate_clips(splits["cls"], 5)] == every[:5]


def test_same_seed_same_batches_other_seed_differs(splits):
  _, a = _take(_pretrain(splits["cls"], batch_size=3, seed=7), 2)
  _, b = _take(_pretrain(splits["cls"], batch_size=3, seed=7), 2)
  _, c = _take(_pretrain(splits["cls"], batch_size=3, seed=8), 2)
  _assert_same_batches(a, b)
  assert not np.array_equal(a[0]["video"], c[0]["video"])


@pytest.mark.parametrize("kind", ["pretrain_repeats", "finetune"])
def test_restored_iterator_continues_exactly(splits, kind):
  if kind == "pretrain_repeats":
    # 3 clips per record and batch 4: saved states fall inside a record's group.
    make = lambda: _pretrain(splits["bad"], batch_size=4, seed=3,  # noqa: E731
                             num_repeats=3)
  else:
    make = lambda: _finetune(splits["bad"], batch_size=3, seed=3)  # noqa: E731
  it, _ = _take(make(), 4)
  state = json.loads(json.dumps(it.get_state()))  # must survive a JSON checkpoint
  stats = it.stats
  expected = [next(it) for _ in range(5)]
  it2 = iter(make())
  it2.set_state(state)
  assert it2.stats == stats
  _assert_same_batches(expected, [next(it2) for _ in range(5)])
  assert it2.stats == it.stats


@pytest.mark.parametrize("kind,processes", [("pretrain", 2), ("pretrain", 4),
                                             ("finetune", 3)])
def test_global_batches_do_not_depend_on_the_process_count(splits, kind, processes):
  """Process p's batch is rows [p*B, (p+1)*B) of the one-process global batch (same seed),
  across epoch boundaries (12 records; pre-training: global batch 16 clips = 8 records x 2
  repeats)."""
  global_batch = 16 if kind == "pretrain" else 6

  def make(batch, index, count):
    loader = dataclasses.replace(LOADER, shard_index=index, shard_count=count)
    if kind == "pretrain":
      return _pretrain(splits["cls"], batch_size=batch, seed=5, num_repeats=2, loader=loader)
    return _finetune(splits["cls"], batch_size=batch, seed=5, loader=loader,
                     labels=dataclasses.replace(LABELS, mixup_alpha=0.0, cutmix_alpha=0.0))

  _, whole = _take(make(global_batch, 0, 1), 3)
  parts = [_take(make(global_batch // processes, p, processes), 3)[1] for p in range(processes)]
  for step, reference in enumerate(whole):
    joined = {k: np.concatenate([parts[p][step][k] for p in range(processes)])
              for k in reference}
    _assert_same_batches([reference], [joined])


def test_several_processes_need_whole_records_per_batch(splits):
  with pytest.raises(ValueError, match="multiple of the clips drawn per record"):
    _pretrain(splits["cls"], batch_size=3, seed=0, num_repeats=2, draw_masks=False,
              loader=dataclasses.replace(LOADER, shard_index=0, shard_count=2))


@pytest.mark.slow
def test_worker_process_matches_in_process_and_resumes(splits):
  # One worker walks the whole record stream, so it must give the in-process batches.
  make = lambda workers: _finetune(  # noqa: E731
      splits["cls"], batch_size=2, seed=1, augment=dataclasses.replace(AUGMENT, rand_augment=""),
      loader=dataclasses.replace(LOADER, worker_count=workers))
  _, reference = _take(make(0), 6)
  it, first = _take(make(1), 3)
  _assert_same_batches(reference[:3], first)
  state = it.get_state()
  it.close()
  it2 = iter(make(1))
  it2.set_state(state)
  _assert_same_batches(reference[3:], [next(it2) for _ in range(3)])
  it2.close()


# --- evaluation ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,views", [("val", 1), ("test", 4)])
def test_eval_covers_every_clip_once_per_view(splits, mode, views):
  seen, counts = [], []
  for shard in range(2):  # two processes; 12 clips, 1 corrupt
    ds = _eval(splits["bad"], batch_size=5, mode=mode,
               loader=dataclasses.replace(LOADER, shard_index=shard, shard_count=2))
    it = iter(ds)
    batches = list(it)
    counts.append(len(batches))
    assert len(batches) == ds.num_batches
    for b in batches:
      assert set(b) == {"video", "audio", "label", "clip_index", "view_index", "valid"}
      assert b["video"].shape == (5, FRAMES, SIZE, SIZE, 3) and b["video"].dtype == np.uint8
      assert b["clip_index"].dtype == np.int32 and b["view_index"].dtype == np.int32
      assert b["valid"].dtype == np.bool_
      assert (b["clip_index"][~b["valid"]] == -1).all()
      seen += list(zip(b["clip_index"][b["valid"]].tolist(),
                       b["view_index"][b["valid"]].tolist()))
    assert it.stats["skipped"] == (1 if shard == 1 else 0)
  assert counts[0] == counts[1]  # same number of batches on every process
  # Clip 3 sits in shard file 1 at position 1: record index 6 + 1 = 7 (6 records per file).
  expected = [(c, v) for c in range(12) if c != 7 for v in range(views)]
  assert sorted(seen) == expected


def test_eval_is_deterministic_and_views_match_sampling(splits):
  a = list(iter(_eval(splits["cls"], batch_size=4, mode="test")))
  b = list(iter(_eval(splits["cls"], batch_size=4, mode="test")))
  _assert_same_batches(a, b)
  first = a[0]  # clip 0 (10 frames): both segments and both crops are the same frames
  assert first["clip_index"].tolist() == [0, 0, 0, 0]
  assert first["view_index"].tolist() == [0, 1, 2, 3]
  for v in range(1, 4):
    np.testing.assert_array_equal(first["video"][v], first["video"][0])


def test_eval_regression_has_targets(splits):
  ds = _eval(splits["reg"], batch_size=4, mode="val")
  batches = list(iter(ds))
  assert len(batches) == 2
  assert batches[0]["targets"].shape == (4, 3)
  assert batches[1]["valid"].tolist() == [True, True, False, False]


# --- corrupt records ----------------------------------------------------------------------

def test_corrupt_record_is_skipped_and_counted(splits, caplog):
  ds = _finetune(splits["bad"], batch_size=1, seed=0,
                 loader=dataclasses.replace(LOADER, num_epochs=1))
  it = iter(ds)
  with caplog.at_level("WARNING"):
    batches = list(it)
  assert len(batches) == 11
  assert it.stats == {"records": 12, "skipped": 1, "batches": 11}
  assert "skipping record 7" in caplog.text
  assert ".array_record record" in caplog.text  # the shard file and the index within it
  with pytest.raises(batching.TooManySkippedRecords):
    batching.check_skip_rate(it.stats, max_fraction=0.05, min_records=10)
  batching.check_skip_rate(it.stats, max_fraction=0.1, min_records=10)


# --- masks drawn in the pipeline ------------------------------------------------------------

def test_pipeline_masks_are_checked_as_they_leave_the_pipeline(splits, monkeypatch):
  """The model gathers with fixed counts, so a batch whose masks miss the configured count
  stops with the check's error naming the mask, instead of reaching the model."""
  _take(_pretrain(splits["cls"], batch_size=2, seed=0), 1)  # the drawn masks pass
  monkeypatch.setattr(masks, "tube_mask",
                      lambda rng, *, grid, mask_ratio: np.ones(int(np.prod(grid)), bool))
  with pytest.raises(ValueError, match="mask_video: every sample must mask exactly 56 tokens"):
    _take(_pretrain(splits["cls"], batch_size=2, seed=0), 1)  # 4 x int(0.9 * 16) = 56


# --- the pipeline benchmark command ---------------------------------------------------------

@pytest.mark.slow
def test_pipeline_benchmark_command_times_the_config_pipeline(splits):
  """As a user runs it: the config's evaluation pipeline, its stages and its rate."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
      [sys.executable, "-m", "hicmae_jax.data.pipeline_benchmark",
       "--config=configs/test_pretrain.py:finetune", f"--split_dir={splits['cls']}",
       "--eval_mode=test", "--worker_counts=0", "--num_batches=2", "--batch_size=4",
       "--stage_records=2"],
      cwd=root, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "per-record stages (ms, one core): read" in proc.stdout
  assert "decode" in proc.stdout and "augment" in proc.stdout and "fbank" in proc.stdout
  assert "worker_count=0:" in proc.stdout and "views/s" in proc.stdout
