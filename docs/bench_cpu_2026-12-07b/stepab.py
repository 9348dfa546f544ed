"""Full training step A/B, alternated in one process. python stepab.py --variants=new,old --extra=stepx.py"""
import argparse, importlib.util, statistics, time, os, collections
import jax, numpy as np
from hicmae_jax import host_info
from hicmae_jax.tools import benchmark
p = argparse.ArgumentParser()
p.add_argument("--variants", default="new,old"); p.add_argument("--extra", default="variants_old.py")
p.add_argument("--rounds", type=int, default=4); p.add_argument("--steps", type=int, default=5)
p.add_argument("--config", default="base")
a = p.parse_args()
spec = importlib.util.spec_from_file_location("extra", a.extra); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
print(host_info.describe())
built = {}
for v in a.variants.split(","):
  undo = getattr(m, "v_" + v)() if v != "new" else None
  from configs import pretrain_base, pretrain_small
  cfg = (pretrain_base if a.config == "base" else pretrain_small).get_config()
  compiled, state, data, cs = benchmark.compiled_step(cfg, 2)
  print(v, "compiled", round(cs), flush=True)
  if undo: undo()
  built[v] = [compiled, state, data]
res = collections.defaultdict(list)
for r in range(a.rounds):
  for v, b in built.items():
    times, b[1] = benchmark.time_steps(b[0], b[1], b[2], a.steps, 1)
    res[v].append(statistics.median(times))
    print(f"round {r} {v}: {statistics.median(times):.3f} s/step  load {os.getloadavg()[0]:.1f}", flush=True)
for v in built: print(f"{v}: median {statistics.median(res[v]):.3f} ({min(res[v]):.3f}-{max(res[v]):.3f})")
