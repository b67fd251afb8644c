#!/usr/bin/env python3
"""Time `sprocket --version` as a script, through the installed launcher and as the README's zipapp.

Usage (from anywhere):
    python3 bench/startup.py [--runs N]

In a temporary directory it runs `python3 sprocket.py install DIR` (the launcher and the compiled
module) and the README's zipapp recipe (Install section), then times N interleaved runs of
`python3 -c pass`, `python3 sprocket.py --version`, `DIR/sprocket --version` and
`python3 sprocket.pyz --version`, all with this Python. It prints, per way of starting, the best
and median wall time, the best CPU time (user + system, steadier on a busy machine) and the best
wall time beyond `python3 -c pass`. Exit status: 0, or 1 when a command fails. Nothing here is
asserted by the tests.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import REPO, SPROCKET  # noqa: E402


def timed(argv, cwd):
    """Run argv; return (wall seconds, CPU seconds of the child, exit status)."""
    start = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
    return wall, usage.ru_utime + usage.ru_stime, p.returncode


def build(tmp):
    """Install into tmp/bin and build tmp/sprocket.pyz as the README says; return the commands."""
    subprocess.run([sys.executable, SPROCKET, "install", os.path.join(tmp, "bin")], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        m = re.search(r"\*\*zipapp\.\*\*.*?```shell\n(.*?)```", f.read(), re.S)
    shutil.copy(SPROCKET, os.path.join(tmp, "sprocket.py"))
    bin_dir = os.path.join(tmp, "python-bin")  # the recipe says `python3`: make it this Python
    os.mkdir(bin_dir)
    os.symlink(sys.executable, os.path.join(bin_dir, "python3"))
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    subprocess.run(["sh", "-ec", textwrap.dedent(m.group(1))], cwd=tmp, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "sprocket.py --version": [sys.executable, SPROCKET, "--version"],
        "launcher --version": [os.path.join(tmp, "bin", "sprocket"), "--version"],
        "zipapp --version": [sys.executable, os.path.join(tmp, "sprocket.pyz"), "--version"],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs of each command (default 20)")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="sprocket-startup-")
    try:
        commands = build(tmp)
        walls = {name: [] for name in commands}
        cpus = {name: [] for name in commands}
        for _ in range(max(args.runs, 1)):
            for name, cmd in commands.items():
                wall, cpu, rc = timed(cmd, tmp)
                if rc != 0:
                    print("FAILED: %s exited %d" % (" ".join(cmd), rc), file=sys.stderr)
                    return 1
                walls[name].append(wall)
                cpus[name].append(cpu)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = min(walls["python3 -c pass"])
    print("python: %s (%s); %d runs each, interleaved" % (sys.executable, sys.version.split()[0], args.runs))
    for name in commands:
        print("%-22s best %5.0f ms  median %5.0f ms  CPU %5.0f ms  beyond `-c pass` %+5.0f ms" % (
            name, min(walls[name]) * 1e3, statistics.median(walls[name]) * 1e3, min(cpus[name]) * 1e3,
            (min(walls[name]) - base) * 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
