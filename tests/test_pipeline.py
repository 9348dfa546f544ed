"""grain pipelines on tiny hand-written shards: batch contract, determinism, exact resume,
eval coverage, skipping of corrupt records, worker processes."""
import io
import json
import os

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image

from hicmae_jax.data import pipeline as P
from hicmae_jax.data import schema

SIZE = 32  # stored frames and input_size
FRAMES = 8  # clip length (num_frames)
RATE = 2  # sampling_rate
COMMON = dict(num_frames=FRAMES, sampling_rate=RATE, input_size=SIZE, shard_index=0,
              shard_count=1, read_threads=1)
# Normalised pixel range for x / 255 in [0, 1] with the ImageNet mean/std.
VIDEO_MIN, VIDEO_MAX = (0 - 0.485) / 0.229 - 1e-4, (1 - 0.406) / 0.225 + 1e-4


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
  ds = P.make_pretrain_dataset(splits["cls"], batch_size=4, seed=0, fixed_crop=None,
                               draw_masks=True, patch_size=8, **COMMON)
  _, batches = _take(ds, 3)
  grid_t, grid_hw = FRAMES // 2, (SIZE // 8) ** 2
  spatial_masks = set()
  for b in batches:
    assert set(b) == {"video", "audio", "mask_video", "mask_audio"}
    assert b["video"].shape == (4, FRAMES, SIZE, SIZE, 3) and b["video"].dtype == np.float32
    assert b["audio"].shape == (4, 256, 128) and b["audio"].dtype == np.float32
    assert VIDEO_MIN <= b["video"].min() and b["video"].max() <= VIDEO_MAX
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
  ds = P.make_finetune_train_dataset(splits["cls"], batch_size=4, seed=0, **COMMON)
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
  ds = P.make_finetune_train_dataset(splits["reg"], batch_size=2, seed=0, **COMMON)
  _, (b,) = _take(ds, 1)
  assert set(b) == {"video", "audio", "label", "targets"}
  assert b["targets"].shape == (2, 3) and b["targets"].dtype == np.float32
  assert ((b["targets"] >= 0) & (b["targets"] <= 1)).all()  # the records' values, unmixed


# --- determinism and resume ---------------------------------------------------------------

def test_same_seed_same_batches_other_seed_differs(splits):
  kw = dict(batch_size=3, fixed_crop=None, draw_masks=True, patch_size=8, **COMMON)
  _, a = _take(P.make_pretrain_dataset(splits["cls"], seed=7, **kw), 2)
  _, b = _take(P.make_pretrain_dataset(splits["cls"], seed=7, **kw), 2)
  _, c = _take(P.make_pretrain_dataset(splits["cls"], seed=8, **kw), 2)
  _assert_same_batches(a, b)
  assert not np.array_equal(a[0]["video"], c[0]["video"])


@pytest.mark.parametrize("kind", ["pretrain_repeats", "finetune"])
def test_restored_iterator_continues_exactly(splits, kind):
  if kind == "pretrain_repeats":
    # 3 clips per record and batch 4: saved states fall inside a record's group.
    make = lambda: P.make_pretrain_dataset(  # noqa: E731
        splits["bad"], batch_size=4, seed=3, fixed_crop=None, num_repeats=3,
        draw_masks=True, patch_size=8, **COMMON)
  else:
    make = lambda: P.make_finetune_train_dataset(  # noqa: E731
        splits["bad"], batch_size=3, seed=3, **COMMON)
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
    common = dict(COMMON, shard_index=index, shard_count=count)
    if kind == "pretrain":
      return P.make_pretrain_dataset(splits["cls"], batch_size=batch, seed=5, fixed_crop=None,
                                     num_repeats=2, draw_masks=True, patch_size=8, **common)
    return P.make_finetune_train_dataset(splits["cls"], batch_size=batch, seed=5,
                                         mixup_alpha=0.0, cutmix_alpha=0.0, **common)

  _, whole = _take(make(global_batch, 0, 1), 3)
  parts = [_take(make(global_batch // processes, p, processes), 3)[1] for p in range(processes)]
  for step, reference in enumerate(whole):
    joined = {k: np.concatenate([parts[p][step][k] for p in range(processes)])
              for k in reference}
    _assert_same_batches([reference], [joined])


def test_several_processes_need_whole_records_per_batch(splits):
  with pytest.raises(ValueError, match="multiple of the clips drawn per record"):
    P.make_pretrain_dataset(splits["cls"], batch_size=3, seed=0, fixed_crop=None,
                            num_repeats=2, **dict(COMMON, shard_index=0, shard_count=2))


def test_worker_process_matches_in_process_and_resumes(splits):
  # One worker walks the whole record stream, so it must give the in-process batches.
  make = lambda workers: P.make_finetune_train_dataset(  # noqa: E731
      splits["cls"], batch_size=2, seed=1, worker_count=workers, rand_augment=None, **COMMON)
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
    ds = P.make_eval_dataset(splits["bad"], batch_size=5, mode=mode, num_frames=FRAMES,
                             sampling_rate=RATE, input_size=SIZE, shard_index=shard,
                             shard_count=2, read_threads=1)
    it = iter(ds)
    batches = list(it)
    counts.append(len(batches))
    assert len(batches) == ds.num_batches
    for b in batches:
      assert set(b) == {"video", "audio", "label", "clip_index", "view_index", "valid"}
      assert b["video"].shape == (5, FRAMES, SIZE, SIZE, 3)
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
  kw = dict(batch_size=4, mode="test", num_frames=FRAMES, sampling_rate=RATE,
            input_size=SIZE, **{k: COMMON[k] for k in ("shard_index", "shard_count")})
  a = list(iter(P.make_eval_dataset(splits["cls"], **kw)))
  b = list(iter(P.make_eval_dataset(splits["cls"], **kw)))
  _assert_same_batches(a, b)
  first = a[0]  # clip 0 (10 frames): both segments and both crops are the same frames
  assert first["clip_index"].tolist() == [0, 0, 0, 0]
  assert first["view_index"].tolist() == [0, 1, 2, 3]
  for v in range(1, 4):
    np.testing.assert_array_equal(first["video"][v], first["video"][0])


def test_eval_regression_has_targets(splits):
  ds = P.make_eval_dataset(splits["reg"], batch_size=4, mode="val", num_frames=FRAMES,
                           sampling_rate=RATE, input_size=SIZE, shard_index=0, shard_count=1)
  batches = list(iter(ds))
  assert len(batches) == 2
  assert batches[0]["targets"].shape == (4, 3)
  assert batches[1]["valid"].tolist() == [True, True, False, False]


# --- corrupt records ----------------------------------------------------------------------

def test_corrupt_record_is_skipped_and_counted(splits, caplog):
  ds = P.make_finetune_train_dataset(splits["bad"], batch_size=1, seed=0, num_epochs=1,
                                     **COMMON)
  it = iter(ds)
  with caplog.at_level("WARNING"):
    batches = list(it)
  assert len(batches) == 11
  assert it.stats == {"records": 12, "skipped": 1, "batches": 11}
  assert "skipping record 7" in caplog.text
  assert ".array_record record" in caplog.text  # the shard file and the index within it
  with pytest.raises(P.TooManySkippedRecords):
    P.check_skip_rate(it.stats, max_fraction=0.05, min_records=10)
  P.check_skip_rate(it.stats, max_fraction=0.1, min_records=10)
