import glob, json, re, statistics as st, os
def med(xs): return f"{st.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})" if xs else "-"
for side in ("before", "after"):
  for kind in ("pre", "precrop", "ft", "ftdev", "ft160", "ftdev160"):
    fs = sorted(glob.glob(f"docs/bench_2026-12-03_pm/{side}/{kind}_r*.json"))
    if not fs: continue
    rs, stages, bw = [], [], []
    for f in fs:
      d = json.load(open(f))
      p = d.get("pipeline", d)
      rs.append(p["stages_records_per_s_one_core"]); stages.append(p["stage_ms_per_record"])
      bw.append(list(p["clips_per_s_by_workers"].values())[0])
    keys = stages[0].keys()
    sm = {k: round(st.median(s[k] for s in stages), 1) for k in keys}
    print(side, kind, "records/s one core", med(rs), "| in process", med(bw), "| ms", sm)
  ev = []
  for f in sorted(glob.glob(f"docs/bench_2026-12-03_pm/{side}/eval_r*.txt")):
    t = open(f).read()
    m = re.search(r"per-record stages \(ms, one core\): (.*) \| total ([\d.]+) -> ([\d.]+) records/s", t)
    v = re.search(r"worker_count=0: ([\d.]+) views/s", t)
    ev.append((float(m.group(3)) * 4, float(v.group(1)), m.group(1)))
  print(side, "eval views/s (stage sum)", med([e[0] for e in ev]), "| in process", med([e[1] for e in ev]), "|", ev[len(ev)//2][2])
