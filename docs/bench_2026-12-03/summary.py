import json, re, statistics, sys, glob, os
d = sys.argv[1]
def med(xs): return statistics.median(xs), min(xs), max(xs)
for kind in ("pre", "ft"):
  rs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/{kind}_r*.json"))]
  if not rs: continue
  st = {k: med([r["pipeline"]["stage_ms_per_record"][k] for r in rs]) for k in rs[0]["pipeline"]["stage_ms_per_record"]}
  core = med([r["pipeline"]["stages_records_per_s_one_core"] for r in rs])
  w0 = med([r["pipeline"]["clips_per_s_by_workers"]["0"] for r in rs])
  print(kind, "stages ms:", {k: "%.2f (%.2f-%.2f)" % v for k, v in st.items()})
  print(kind, "one core records/s: %.1f (%.1f-%.1f)" % core, " w0 clips/s: %.1f (%.1f-%.1f)" % w0)
ev = sorted(glob.glob(f"{d}/eval_r*.txt"))
if ev:
  stg, tot, rate = [], [], []
  for f in ev:
    t = open(f).read()
    m = re.search(r"per-record stages \(ms, one core\): (.*) \| total ([\d.]+) -> ([\d.]+) records/s", t)
    stg.append(dict((kv.split()[0], float(kv.split()[1])) for kv in m.group(1).split(", ")))
    tot.append(float(m.group(3)))
    rate.append(float(re.search(r"worker_count=0: ([\d.]+) views/s", t).group(1)))
  st = {k: med([s[k] for s in stg]) for k in stg[0]}
  print("eval stages ms:", {k: "%.2f (%.2f-%.2f)" % v for k, v in st.items()})
  r = med(tot); print("eval one core records/s: %.1f (%.1f-%.1f) = views/s x4: %.0f (%.0f-%.0f)" % (r + tuple(4*x for x in r)))
  print("eval w0 views/s: %.1f (%.1f-%.1f)" % med(rate))
