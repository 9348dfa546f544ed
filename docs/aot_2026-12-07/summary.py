"""BUILD.md's TPU table from the reports in this folder: python docs/aot_2026-12-07/summary.py"""
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def row(name: str, r: dict) -> str:
  t = r["train"]
  mem, fit, roof = t["memory"], t["fit"], t.get("roofline") or {}
  gathers = t["collectives"].get("all-gather", {"count": 0, "instructions": 0})
  reduces = t["collectives"].get("all-reduce", {"count": 0})
  variant = ", ".join(filter(None, [
      r["model"]["dtype"].replace("bfloat16", "bf16").replace("float32", "f32"),
      "remat" if r["model"]["remat"] else "",
      f"fsdp {r['mesh']['fsdp']}" if r["mesh"]["fsdp"] > 1 else "",
      f"{r['num_slices']} slices" if r["num_slices"] > 1 else ""]))
  peak = mem["peak_bytes"] / 2**30
  verdict = "yes" if fit["fits"] else f"no (+{-fit['headroom_bytes'] / 2**30:.1f})"
  return (f"| {r['kind']} | {r['topology']} ({r['num_chips']} chips) | {variant} | "
          f"{t['global_batch']} ({t['per_chip_batch']:g}) | {peak:.2f} of "
          f"{fit['hbm_bytes'] / 2**30:.0f} | {verdict} | {r.get('max_global_batch', '-')} | "
          f"{roof.get('ideal_step_seconds', 0) * 1e3:.1f} ({roof.get('bound', '-')}) | "
          f"{roof.get('mfu_ceiling', 0):.0%} | {roof.get('clips_per_second_per_chip', 0):.0f} | "
          f"{gathers['count']} / {reduces['count']} | {t['compile_seconds']:.0f} |")


def main() -> None:
  print("| kind | slice | variant | global batch (per chip) | peak GiB per chip of HBM | fits "
        "| max batch | ideal step ms (bound) | MFU ceiling | clips/s per chip | all-gathers / "
        "all-reduces | compile s |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for path in sorted(glob.glob(os.path.join(HERE, "*.json"))):
    with open(path) as f:
      r = json.load(f)
    print(row(os.path.basename(path)[:-5], r))


if __name__ == "__main__":
  main()
