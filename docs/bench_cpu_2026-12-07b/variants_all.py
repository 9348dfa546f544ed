import importlib.util
def _load(p):
  spec = importlib.util.spec_from_file_location(p, p); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m
sx = _load("variants_old.py"); e2 = _load("variants_flat_wgrad.py")
v_old = sx.v_old; v_oldlin = sx.v_oldlin; v_eignob = e2.v_eignob; v_eig = e2.v_eig
