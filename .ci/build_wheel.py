"""Build the wheel from the checkout's own files into DIST (``python .ci/build_wheel.py DIST``),
offline: no build isolation, no index. The build runs on a copy holding only what it reads (tracked
or new files, never build/ or *.egg-info left by an earlier build), so stale files cannot slip in."""
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUTS = ["setup.cfg", "pyproject.toml", "README.md", "recbole_lru", "properties"]


def _inputs() -> list[str]:
    """The build's input files: git's view of them (tracked or new, not ignored), or, outside a git
    checkout, every file under INPUTS but caches and earlier build outputs."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *INPUTS],
                             capture_output=True, check=True, cwd=REPO).stdout.decode()
        return [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for top in INPUTS:
            if os.path.isfile(os.path.join(REPO, top)):
                files.append(top)
            for root, dirs, names in os.walk(os.path.join(REPO, top)):
                dirs[:] = [d for d in dirs if d != "__pycache__" and not d.endswith(".egg-info")]
                files += [os.path.relpath(os.path.join(root, n), REPO) for n in names if not n.endswith(".pyc")]
        return files


def build(dist: str) -> str:
    listed = _inputs()
    with tempfile.TemporaryDirectory() as src:
        for f in listed:
            if os.path.isfile(os.path.join(REPO, f)):
                os.makedirs(os.path.join(src, os.path.dirname(f)), exist_ok=True)
                shutil.copy2(os.path.join(REPO, f), os.path.join(src, f))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", dist, src], check=True)
    (wheel,) = [f for f in os.listdir(dist) if f.startswith("recbole_lru-") and f.endswith(".whl")]
    return os.path.join(dist, wheel)


if __name__ == "__main__":
    print(build(os.path.abspath(sys.argv[1])))
