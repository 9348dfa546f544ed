"""Time fwd and fwd+bwd of the Base pre-training loss, alternated across variants; optional op trace.
python fb.py --variants=base,v1 --extra=file.py --rounds=3 --trace=name"""
import argparse, importlib.util, statistics, sys, tempfile, time, json, collections
import jax, jax.numpy as jnp, numpy as np
from ml_collections import config_flags
from hicmae_jax import sharding, train, host_info
from hicmae_jax.tools import benchmark, profile_step
from configs import pretrain_base

p = argparse.ArgumentParser()
p.add_argument("--variants", default="base"); p.add_argument("--extra", default="")
p.add_argument("--rounds", type=int, default=3); p.add_argument("--steps", type=int, default=3)
p.add_argument("--trace", default=""); p.add_argument("--top", type=int, default=40)
p.add_argument("--config", default="base"); p.add_argument("--fwd", type=int, default=1)
a = p.parse_args()
extra = {}
if a.extra:
  spec = importlib.util.spec_from_file_location("extra", a.extra); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); extra = {k[2:]: getattr(m, k) for k in dir(m) if k.startswith("v_")}
print(host_info.describe())

def build(variant):
  undo = extra[variant]() if variant != "base" else None
  from configs import pretrain_base, pretrain_small
  cfg = (pretrain_base if a.config == "base" else pretrain_small).get_config()
  with cfg.unlocked(): cfg.global_batch_size = 2
  mesh = sharding.make_mesh(cfg.mesh)
  view, tx, state, state_sh, _ = train.init_state(cfg, mesh, 1000, 100)
  loss_fn = train.make_loss_fn(cfg, view)
  data = sharding.global_batch(benchmark._synthetic_batch(cfg, 2, np.random.default_rng(0)), mesh)
  key = jax.random.key(0)
  opts = sharding.compiler_options(mesh)
  def fwd(params, batch):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return loss_fn(params, batch, key, False)[0]
  def fb(params, batch):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return jax.grad(lambda p: loss_fn(p, batch, key, False)[0])(params)
  t0 = time.time()
  cf = jax.jit(fwd, compiler_options=opts).lower(state["params"], data).compile()
  cb = jax.jit(fb, compiler_options=opts).lower(state["params"], data).compile()
  print(f"{variant}: compiled in {time.time()-t0:.0f}s", flush=True)
  if undo: undo()
  return cf, cb, state["params"], data

def timeit(f, params, data, n):
  jax.block_until_ready(f(params, data)); ts = []
  for _ in range(n):
    t = time.perf_counter(); c = time.process_time(); jax.block_until_ready(f(params, data)); ts.append((time.perf_counter() - t, time.process_time() - c))
  return statistics.median(x for x, _ in ts), statistics.median(y for _, y in ts)

vs = a.variants.split(",")
built = {v: build(v) for v in vs}
res = collections.defaultdict(list)
for r in range(a.rounds):
  for v in vs:
    cf, cb, params, data = built[v]
    f = timeit(cf, params, data, a.steps) if a.fwd else (0, 0)
    b = timeit(cb, params, data, a.steps)
    res[v].append((f, b))
    import os
    print(f"round {r} {v}: fwd {f[0]:.3f}s (cpu {f[1]:.2f})  fwd+bwd {b[0]:.3f}s (cpu {b[1]:.2f})  load {os.getloadavg()[0]:.1f}", flush=True)
for v in vs:
  print(f"{v}: median fwd {statistics.median(x[0][0] for x in res[v]):.3f}  fwd+bwd {statistics.median(x[1][0] for x in res[v]):.3f}  cpu {statistics.median(x[1][1] for x in res[v]):.2f}")

import re
def group(s):
  g = collections.defaultdict(lambda: [0.0, 0, 0.0])
  for r in s["top_ops"]:
    d = r["dots"][0] if r["dots"] else ""
    m = re.search(r"\(contract (\S+)\)", d)
    key = (r["kind"][:12], r["op"].split(".")[0], m.group(1) if m else "", d.split(" x ")[0] if d else "")
    g[key][0] += r["ms"]; g[key][1] += 1
    if r["gflops_per_s"]: g[key][2] += r["ms"] * r["gflops_per_s"] / 1e3
  return g
def trace(name, c, params, data):
  ops = profile_step.hlo_ops(c.as_text())
  open(f"hlo_{name}.txt", "w").write(c.as_text())
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    for _ in range(2): jax.block_until_ready(c(params, data))
    jax.profiler.stop_trace()
    events = profile_step.trace_op_events(d)
  kind_of = {n: profile_step.op_kind(n, ops.get(n)) for n in {e[0] for e in events}}
  shared = profile_step.concurrent_ns(events, lambda n: kind_of[n].startswith("control flow"))
  s = profile_step.summarize(events, shared, ops, kind_of, 2, 100000)
  json.dump(s, open(f"trace_{name}.json", "w"), indent=1)
  print(name, json.dumps({k: s[k] for k in ("ms_by_kind", "busy_ms", "matmul_gflops_per_s")}))
  return group(s)
if a.trace:
  cf, cb, params, data = built[a.trace]
  gf = trace(a.trace + "_fwd", cf, params, data)
  gb = trace(a.trace + "_fb", cb, params, data)
  keys = sorted(set(gf) | set(gb), key=lambda k: -gb.get(k, [0])[0])
  print(f"{'fb ms':>8} {'fwd ms':>8} {'bwd ms':>8} {'n fb':>5} {'GF/s':>6}")
  for k in keys[:a.top]:
    b = gb.get(k, [0, 0, 0]); f = gf.get(k, [0, 0, 0])
    print(f"{b[0]:8.1f} {f[0]:8.1f} {b[0]-f[0]:8.1f} {b[1]:5d} {b[2]/b[0]*1e3 if b[2] else 0:6.1f}  {k}")
