"""python -m recbole_lru.compat --convert: a trusted legacy-format file becomes one the safe loader reads."""
import subprocess
import sys

import pytest
import torch

from recbole_lru.compat import CheckpointError, load_checkpoint


@pytest.mark.slow
def test_convert_command_writes_a_loadable_checkpoint(tmp_path):
    src, dst = tmp_path / "legacy.pth", tmp_path / "new.pth"
    torch.save({"w": torch.arange(3.0)}, src, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError):
        load_checkpoint(src)  # the legacy format is refused as it is
    proc = subprocess.run([sys.executable, "-m", "recbole_lru.compat", "--convert", str(src), str(dst)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert torch.equal(load_checkpoint(dst)["w"], torch.arange(3.0))
