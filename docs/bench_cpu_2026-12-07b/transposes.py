import jax, jax.numpy as jnp, time
def bench(f, *a, n=30):
  f = jax.jit(f); jax.block_until_ready(f(*a)); t=time.perf_counter()
  for _ in range(n): r = f(*a)
  jax.block_until_ready(r); return (time.perf_counter()-t)/n*1e3
for shape in [(1600,1536),(1440,1536),(1600,384),(1536,1600)]:
  z = jnp.ones(shape)
  print(shape, "T+0 %.2f" % bench(lambda a: a.T + 0, z), "(a*3).T %.2f" % bench(lambda a: (a*3.0).T, z), "T*3 %.2f" % bench(lambda a: a.T*3.0, z),
        "3d (2,n/2,m) T %.2f" % bench(lambda a: (a.reshape(2, shape[0]//2, shape[1])*3.0).transpose(2,0,1), z))
