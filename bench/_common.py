"""Helpers shared by the bench/ scripts (stdlib only, Python 3.9+).

bench/.venv is a virtualenv that holds miniwdl (and, for scatter.py, the
miniwdl-backend-bare plugin); the scripts create it and pip-install into it on
first use. Nothing here is used by sprocket.py or its tests.
"""
import os
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
VENV = os.path.join(BENCH, ".venv")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
MINIWDL = os.path.join(VENV, "bin", "miniwdl")
SPROCKET = os.path.join(REPO, "sprocket.py")


def shared_dir():
    """shared/ beside the repository, or $SPROCKET_SHARED."""
    return os.path.abspath(os.environ.get("SPROCKET_SHARED") or os.path.join(REPO, "..", "shared"))


def _venv_has(packages):
    """True when every distribution in `packages` is installed in bench/.venv."""
    if not os.access(VENV_PYTHON, os.X_OK):
        return False
    probe = "import sys, importlib.metadata as m\nfor p in sys.argv[1:]: m.version(p)"
    p = subprocess.run([VENV_PYTHON, "-c", probe] + list(packages),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p.returncode == 0


def ensure_venv(packages=("miniwdl",), executables=(MINIWDL,)):
    """Create bench/.venv and pip-install `packages` into it unless they are all there.

    Raises OSError / subprocess.CalledProcessError on failure, SystemExit when pip
    succeeded but an expected executable is still missing.
    """
    packages = list(packages)
    if all(os.access(x, os.X_OK) for x in executables) and _venv_has(packages):
        return
    print(f"setting up {VENV} with {', '.join(packages)} ...", flush=True)
    if not os.access(VENV_PYTHON, os.X_OK):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run(
        [VENV_PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + packages,
        check=True,
    )
    for x in executables:
        if not os.access(x, os.X_OK):
            raise SystemExit(f"error: pip installed {', '.join(packages)} but {x} is missing")


def tool_version(cmd):
    """First line of `cmd`'s output (for `--version`), or '? (why)'."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"
    return (p.stdout.strip().splitlines() or ["?"])[0]
