"""benchmarks/gpu_check.sh is run on a CUDA machine; without CUDA it must exit 0 and say why."""
import os
import subprocess

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs for real")
def test_gpu_check_skips_cleanly_without_cuda(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "gpu"))
    proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout
    assert not (tmp_path / "gpu").exists()  # nothing written
