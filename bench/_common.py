"""Helpers shared by the bench/ scripts (stdlib only, Python 3.9+).

bench/.venv is a virtualenv that holds miniwdl (and, for scatter.py, the
miniwdl-backend-bare plugin); the scripts create it and pip-install into it on
first use. Nothing here is used by sprocket.py or its tests.
"""
import os
import shutil
import subprocess
import sys
import time

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


def machine_busy_seconds():
    """CPU seconds all cpus have spent busy since boot (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    busy = sum(int(x) for x in fields[1:4] + fields[6:9])
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    """CPU seconds used by this process and every child it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def start_timing(tmp, keep, workers):
    """End a benchmark's preamble (its temp dir, the load before starting, a warning when the machine
    is busy already); the cpu figures `report_others` compares against at the end."""
    print(f"temp dir: {tmp}{' (kept)' if keep else ''}")
    load1 = os.getloadavg()[0]
    print(f"load:     {load1:.2f} (1-minute average before starting)")
    if load1 > 0.5 * workers:
        print("warning:  the machine is already busy; other processes compete for the cpus and the numbers will be noisy")
    print(flush=True)
    return machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()


def report_others(start, workers):
    """Print how much cpu other processes took since `start_timing` returned `start`."""
    busy0, own0, clock0 = start
    busy1, own1, clock1 = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    if busy0 is not None and busy1 is not None:
        others = max(0.0, (busy1 - busy0) - (own1 - own0))
        share = others / ((clock1 - clock0) * workers) * 100.0
        print(f"other processes used {others:.1f} cpu-s while this ran ({share:.0f}% of the machine's "
              f"{workers} cpus over {clock1 - clock0:.0f} s){'' if share < 5 else ': the numbers are noisy'}")
        print()


def run_dirs(tmp):
    """A function that makes a fresh numbered directory under `tmp`/runs for each run, named by its label."""
    counter = [0]

    def fresh_dir(label):
        counter[0] += 1
        d = os.path.join(tmp, "runs", "%04d-%s" % (counter[0], label))
        os.makedirs(d)
        return d

    return fresh_dir


def clean_up(tmp, status, keep):
    """At a benchmark's end: keep `tmp` (saying so) when it failed, else remove it unless `keep`."""
    if status != 0:
        print(f"run directories kept in {tmp}", file=sys.stderr)
    elif not keep:
        shutil.rmtree(tmp, ignore_errors=True)
