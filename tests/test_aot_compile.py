"""Ahead-of-time compiles for TPU slices from this CPU host (tools/aot_compile): slice names,
the HLO collective reader, and the real train step of the test model compiled by libtpu for a
v5e slice: it compiles, the batch is split, fsdp divides the parameter bytes, multi-slice
meshes compile, the data-parallel step gathers nothing but the contrastive negatives, and bad
input is one line. libtpu comes from requirements-tpu-aot.txt (the README's test command
installs it); without it the compile tests fail saying so."""
import json
import os
import subprocess
import sys

import pytest

from hicmae_jax import accelerators, compiled_report, device_augment
from hicmae_jax.tools import aot_compile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=configs/test_pretrain.py", "--frame_size=32", "--config.num_train_steps=4"]


@pytest.mark.parametrize("name,topology,chips", [
    ("v5e-256", "v5e:16x16", 256), ("v5e-4", "v5e:2x2", 4), ("v4-32", "v4:2x2x4", 16),
    ("v5p-128", "v5:4x4x4", 64), ("v6e-64", "v6e:8x8", 64), ("v5e:4x4", "v5e:4x4", 16),
    ("v4:2x2x2", "v4:2x2x2", 8), ("v5p:2x2x4", "v5:2x2x4", 16)])
def test_slice_names(name, topology, chips):
  s = accelerators.parse_slice(name)
  assert (s.topology, s.num_chips) == (topology, chips)


@pytest.mark.parametrize("name,expected", [
    ("v7-8", "unknown --topology='v7-8'"), ("v4-31", "count TensorCores"),
    ("v5e-12", "no v5e slice of 12 chips"), ("v4:4x4", "3D")])
def test_bad_slice_names_say_what_to_use(name, expected):
  with pytest.raises(ValueError, match=expected):
    accelerators.parse_slice(name)


HLO = """\
  %all-gather-start.1 = (bf16[2,512]{1,0}, bf16[8,512]{1,0}) all-gather-start(bf16[2,512]{1,0} %p), channel_id=1, replica_groups=[2,4]<=[8], dimensions={0}, metadata={op_name="jit(step_fn)/jit(main)/contrastive_negatives/dot_general"}
  %all-gather-done.1 = bf16[8,512]{1,0} all-gather-done((bf16[2,512]{1,0}, bf16[8,512]{1,0}) %all-gather-start.1)
  %all-reduce.2 = f32[256,64]{1,0} all-reduce(f32[256,64]{1,0} %x), channel_id=2, replica_groups={{0,1,2,3}}, to_apply=%add, metadata={op_name="jit(step_fn)/transpose(jvp(Encoder))/dot_general"}
  %all-reduce-start.3 = (f32[4]{0}, bf16[6]{0}) all-reduce-start(f32[4]{0} %a, bf16[6]{0} %b), replica_groups={{0,1}}, to_apply=%add
  ROOT %cp = (f32[4]{0}, f32[4]{0}, u32[], u32[]) collective-permute-start(f32[4]{0} %y), source_target_pairs={{0,1}}
  %all-gather.7 = f32[16,2,32]{2,1,0:T(2,128)} all-gather(%param_0.9), channel_id=206, replica_groups=mesh['axis_0'=1,'axis_1'=16,'axis_2'=1] {'axis_1'}, dimensions={0}
  %all-gather.8 = f32[16,2,32]{2,1,0:T(2,128)S(1)} all-gather(%param_0.10), channel_id=206, replica_groups=mesh['axis_0'=1,'axis_1'=16,'axis_2'=1] {'axis_1'}, dimensions={0}
  %fusion.4 = f32[8]{0} fusion(f32[8]{0} %all-gather.9), kind=kLoop
"""


def test_collectives_are_read_from_hlo():
  found = compiled_report.parse_collectives(HLO)
  assert [(c["kind"], c["result_bytes"], c["group_size"]) for c in found] == [
      ("all-gather", 8 * 512 * 2, 4), ("all-reduce", 256 * 64 * 4, 4),
      ("all-reduce", 4 * 4 + 6 * 2, 2), ("collective-permute", 16, 1),
      ("all-gather", 16 * 2 * 32 * 4, 16), ("all-gather", 16 * 2 * 32 * 4, 16)]
  assert found[0]["sent_bytes"] == 8 * 512 * 2 * 3 // 4       # ring all-gather
  assert found[1]["sent_bytes"] == 256 * 64 * 4 * 2 * 3 // 4  # ring all-reduce
  assert found[0]["source"] == "contrastive_negatives/dot_general"
  summary = compiled_report.summarise_collectives(found)
  assert summary["all-reduce"]["count"] == 2
  # the TPU compiler's copies of one collective (one channel id) count once
  assert summary["all-gather"]["count"] == 2 and summary["all-gather"]["instructions"] == 3
  assert summary["all-gather"]["result_bytes"] == 8 * 512 * 2 + 16 * 2 * 32 * 4


def _largest_fitting(peak, limit, step, cap=1 << 12):
  fitting = [b for b in range(step, cap + 1, step) if peak(b) <= limit]
  return max(fitting) if fitting else None


@pytest.mark.parametrize("name, peak", [
    ("linear", lambda b: 1000 + 37 * b),
    ("big fixed cost", lambda b: 5000 + 2 * b),
    ("convex", lambda b: 1000 + 3 * b + b * b // 40),
    ("concave", lambda b: 1000 + int(400 * b ** 0.5)),
    ("jumps", lambda b: 1000 + 30 * b + (2000 if b > 96 else 0)),
])
@pytest.mark.parametrize("start", [4, 8, 64, 4096])
def test_batch_search_finds_the_largest_fit_in_few_compiles(name, peak, start):
  limit, step = 6000, 4
  asked = []

  def counted(batch):
    asked.append(batch)
    return peak(batch)

  best = compiled_report.search_max_batch(counted, limit, step, start)
  assert best == _largest_fitting(peak, limit, step), (name, asked)
  assert len(asked) == len(set(asked)), asked  # a batch is compiled once
  assert all(b % step == 0 for b in asked)
  if best is not None:
    assert best + step in asked  # the next multiple was tried and did not fit
  # a straight line is settled by its first crossing: 4 compiles (doubling then bisecting took
  # 8-10); a curved or stepped one in at most 10
  assert len(asked) <= (4 if name in ("linear", "big fixed cost") else 10), asked


def test_batch_search_when_nothing_or_everything_fits():
  assert compiled_report.search_max_batch(lambda b: 10 * b, 5, 4, 8) is None
  assert compiled_report.search_max_batch(lambda b: 10 * b, 5, 4, 4) is None
  assert compiled_report.search_max_batch(lambda b: 10 * b, 10**9, 4, 8, cap=64) == 64


def test_roofline_and_fit():
  chip = accelerators.CHIPS["v5e"]
  r = compiled_report.roofline(chip, flops_per_chip=197e12, bytes_per_chip=819e9 / 2,
                               model_flops_per_chip=98.5e12, clips_per_chip=10)
  assert r["bound"] == "compute" and r["ideal_step_seconds"] == pytest.approx(1.0)
  assert r["mfu_ceiling"] == pytest.approx(0.5) and r["clips_per_second_per_chip"] == 10
  assert compiled_report.fits(17 * 2**30, chip)["fits"] is False
  assert compiled_report.fits(15 * 2**30, chip)["headroom_bytes"] == 2**30


def _tool(*args, timeout=900):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "hicmae_jax.tools.aot_compile", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _require_libtpu():
  try:
    aot_compile.find_libtpu()
  except Exception as e:  # noqa: BLE001  the message is the point
    pytest.fail(f"libtpu is needed for the TPU compile tests and is not installed: {e}")


def _report(tmp_path, name, *args, base=tuple(TINY)):
  out = tmp_path / f"{name}.json"
  done = _tool(*base, *args, f"--output={out}")
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(out.read_text())


@pytest.mark.slow
def test_data_parallel_step_compiles_for_v5e_and_gathers_only_the_negatives(tmp_path):
  _require_libtpu()
  r = _report(tmp_path, "dp", "--topology=v5e:2x2", "--config.global_batch_size=8")
  t = r["train"]
  assert r["num_chips"] == 4 and r["mesh"] == {"data": 4, "fsdp": 1}
  assert r["device_kind"].startswith("TPU v5")
  assert t["per_chip_batch"] == 2 and t["memory"]["peak_bytes"] > 0 and t["fit"]["fits"]
  assert t["flops_per_chip"]["xla"] > 0 and t["roofline"]["ideal_step_seconds"] > 0
  gathers = t["collectives"].get("all-gather", {"sources": [], "count": 0})
  named = [s for s in gathers["sources"]
           if not any(n in s["source"] for n in aot_compile.ALLOWED_GATHERS)]
  assert not named, f"all-gathers beyond the contrastive negatives: {named}"
  # the pooled features of each modality, once (GSPMD alone split the tiny logits over the
  # devices and exchanged them piecewise: 113 all-gathers for Base on v5e-16)
  assert 1 <= gathers["count"] <= 2, gathers
  assert "collective-permute" not in t["collectives"], t["collectives"]
  assert t["collectives"]["all-reduce"]["count"] >= 1  # the gradients


@pytest.mark.slow
def test_fine_tuning_step_gathers_nothing(tmp_path):
  """Fine-tuning's data-parallel step: the gradients' all-reduce and the Mixup partners'
  exchange (named), no all-gather (erasing looped over the batch gathered every clip on every
  device: 275 MB a step for Base at batch 56 on v5e-8)."""
  _require_libtpu()
  r = _report(tmp_path, "ft", "--topology=v5e:2x2", "--config.global_batch_size=8",
              "--config.data.rand_augment=rand-m7-n4-mstd0.5-inc1",
              base=("--config=configs/test_pretrain.py:finetune", "--frame_size=32"))
  t = r["train"]["collectives"]
  assert "all-gather" not in t, t
  permutes = t.get("collective-permute", {"sources": []})["sources"]
  assert all(device_augment.MIX_PARTNER_SCOPE in s["source"] for s in permutes), permutes
  assert r["eval"]["memory"]["peak_bytes"] > 0 and "all-gather" not in r["eval"]["collectives"]


@pytest.mark.slow
def test_fsdp_divides_the_parameters_and_optimizer_state(tmp_path):
  _require_libtpu()
  wide = ["--topology=v5e:2x2", "--config.global_batch_size=4", "--config.model.dim=128",
          "--steps=train"]
  dp = _report(tmp_path, "dp", *wide)
  fsdp = _report(tmp_path, "fsdp", *wide, "--config.mesh.fsdp=4", "--config.mesh.data=1")
  assert fsdp["mesh"] == {"data": 1, "fsdp": 4}
  assert fsdp["param_bytes_total"] == dp["param_bytes_total"]
  # tensors under sharding.MIN_FSDP_SIZE stay whole: about a quarter, not exactly
  assert fsdp["param_bytes_per_chip"] < 0.35 * dp["param_bytes_per_chip"]
  args = (fsdp["train"]["memory"]["argument_bytes"], dp["train"]["memory"]["argument_bytes"])
  assert args[0] < 0.4 * args[1], args


@pytest.mark.slow
def test_two_slices_compile_with_data_parallelism_across_them(tmp_path):
  _require_libtpu()
  r = _report(tmp_path, "slices", "--topology=v5e:2x2", "--num_slices=2",
              "--config.global_batch_size=8", "--steps=train")
  assert r["num_chips"] == 8 and r["mesh"] == {"data": 8, "fsdp": 1}
  assert r["train"]["per_chip_batch"] == 1


@pytest.mark.parametrize("args,expected", [
    (["--topology=v9-8"], "unknown --topology='v9-8'"),
    (["--topology=v5e:2x2", "--config.global_batch_size=6"],
     "--config.global_batch_size=6 does not split over the 4 chips"),
    (["--topology=v5e:2x2", "--config.mesh.fsdp=3", "--config.mesh.data=1"],
     "does not tile the 4 devices"),
    (["--topology=v5e:2x2", "--steps=train,backward"], "--steps: unknown ['backward']"),
    (["--topology=v5e:2x2", "--steps=train", "--hbm_gib=0.01"],
     "the train step does not fit v5e:2x2")])
def test_bad_input_is_one_line(args, expected):
  if "v9" not in args[0]:
    _require_libtpu()
  done = _tool(*TINY, *args, timeout=300)
  assert done.returncode == 2, done.stderr[-2000:]
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and expected in errors[0], done.stderr[-2000:]


def test_missing_libtpu_names_the_install_command(tmp_path, monkeypatch):
  monkeypatch.delenv("TPU_LIBRARY_PATH", raising=False)
  monkeypatch.setenv("HICMAE_LIBTPU_DIR", str(tmp_path))
  monkeypatch.setattr(aot_compile, "DEFAULT_LIBTPU_DIR", str(tmp_path / "none"))
  with pytest.raises(Exception, match="requirements-tpu-aot.txt"):
    aot_compile.find_libtpu()


@pytest.mark.slow
def test_find_max_batch_gives_the_largest_batch_that_fits(tmp_path):
  _require_libtpu()
  # from a batch near the answer (56 of 0.08 GiB here), so that it takes 2-3 compiles, not 9:
  # the search itself is tested on memory profiles above
  r = _report(tmp_path, "max", "--topology=v5e:2x2", "--config.global_batch_size=48",
              "--steps=train", "--find_max_batch", "--hbm_gib=0.08")
  best, limit = r["max_global_batch"], int(0.08 * 2**30)
  searched = {int(b): p for b, p in r["max_batch_search"].items()}
  assert best and best % 4 == 0 and searched[best] <= limit
  above = [b for b in searched if b > best]
  assert above and all(searched[b] > limit for b in above)
  assert best + 4 in searched  # the next multiple of the chip count was tried and did not fit
  # the reported batch's compile is the search's first point, not compiled again
  assert searched[48] == r["train"]["memory"]["peak_bytes"]
