"""Sharded training on 8 fake CPU devices equals single-device training (own process)."""
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_sharded_steps_match_single_device():
  script = os.path.join(os.path.dirname(__file__), "multidevice_check.py")
  env = dict(os.environ)
  # the check sets the device count itself; other flags (an ISA cap, say) pass through
  env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                              if not f.startswith("--xla_force_host_platform_device_count"))
  proc = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  for name, r in result.items():
    # tolerance scaled with the value: |d| <= 2e-5 * (1 + |reference|)
    assert r["max_param_diff_scaled"] < 2e-5, (name, r)
    assert r["loss_diff_scaled"] < 1e-5, (name, r)
  assert result["pretrain/dp2_fsdp4"]["num_sharded_params"] > 0
  assert result["pretrain/dp8"]["num_sharded_params"] == 0
