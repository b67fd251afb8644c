#!/usr/bin/env python3
"""Benchmark `sprocket.py check` against `miniwdl check` on real production WDL.

Usage (from anywhere):
    python3 bench/check.py [--runs N] [--tools sprocket,miniwdl] [--script] [WDL ...]

With no WDL files it times the PacBio HiFi human WGS entry points in shared/
(workflows/hifi-human-wgs/workflows/family.wdl and singleton.wdl). shared/ is
found at ../shared relative to the repo root, or at $SPROCKET_SHARED.

sprocket.py runs as installed (`sprocket.py install` into a temporary
directory: the launcher imports the compiled module), as miniwdl runs from its
installed, compiled package; --script times `python3 sprocket.py check`, which
compiles the whole file on every start.

The first time, it creates a virtualenv at bench/.venv and pip-installs
miniwdl into it. Each file is checked once per tool untimed (warm-up, and
the check must succeed), then N timed runs interleaved: sprocket, miniwdl,
sprocket, miniwdl, ... It prints the median wall time per file and tool, the
ratio miniwdl/sprocket (> 1 means sprocket is faster), and an overall line.
Exit status: 0 when every check succeeded, 1 when a check failed (its stderr
is printed), 2 on a setup problem. Nothing here is asserted by the tests.
"""
import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import MINIWDL, REPO, SPROCKET, VENV, ensure_venv, tool_version, shared_dir  # noqa: E402

DEFAULT_FILES = [
    "workflows/hifi-human-wgs/workflows/family.wdl",
    "workflows/hifi-human-wgs/workflows/singleton.wdl",
]


def ensure_miniwdl():
    """Create bench/.venv with miniwdl in it unless it is already there."""
    ensure_venv(["miniwdl"], [MINIWDL])


def run_once(argv, cwd):
    """Run one check; return (seconds, returncode, stderr)."""
    start = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    return elapsed, p.returncode, p.stderr.decode("utf-8", "replace")


def report_failure(name, path, rc, err):
    sys.stdout.flush()
    print(f"FAILED: {name} check {path} exited {rc}; stderr:", file=sys.stderr)
    sys.stderr.write(err if err.endswith("\n") or not err else err + "\n")
    sys.stderr.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="WDL files (default: hifi-human-wgs family.wdl and singleton.wdl)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per tool and file (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per tool and file first (default 1)")
    ap.add_argument("--tools", default="sprocket,miniwdl", help="comma-separated subset of sprocket,miniwdl")
    ap.add_argument("--script", action="store_true",
                    help="time `python3 sprocket.py check` instead of the installed launcher")
    args = ap.parse_args(argv)

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in tools:
        if t not in ("sprocket", "miniwdl"):
            ap.error(f"unknown tool {t!r} (choose from sprocket, miniwdl)")
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    if args.files:
        files = [os.path.abspath(f) for f in args.files]
    else:
        shared = shared_dir()
        files = [os.path.join(shared, f) for f in DEFAULT_FILES]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        print("error: WDL file(s) not found: " + ", ".join(missing), file=sys.stderr)
        print("hint: set SPROCKET_SHARED to the shared/ directory", file=sys.stderr)
        return 2

    commands = {}
    if "sprocket" in tools:
        if not os.path.isfile(SPROCKET):
            print(f"error: {SPROCKET} not found (use --tools miniwdl to time miniwdl alone)", file=sys.stderr)
            return 2
        if args.script:
            commands["sprocket"] = [sys.executable, SPROCKET, "check"]
        else:
            install_dir = tempfile.mkdtemp(prefix="sprocket-bench-")
            subprocess.run([sys.executable, SPROCKET, "install", install_dir], check=True, stdout=subprocess.DEVNULL)
            commands["sprocket"] = [os.path.join(install_dir, "sprocket"), "check"]
    if "miniwdl" in tools:
        try:
            ensure_miniwdl()
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"error: could not set up miniwdl in {VENV}: {e}", file=sys.stderr)
            return 2
        commands["miniwdl"] = [MINIWDL, "check"]

    print(f"python:   {sys.executable} ({sys.version.split()[0]})")
    if "sprocket" in commands:
        how = "python3 sprocket.py" if args.script else "installed launcher"
        print(f"sprocket: {tool_version(commands['sprocket'][:-1] + ['--version'])} ({how})")
    if "miniwdl" in commands:
        print(f"miniwdl:  {tool_version([MINIWDL, '--version'])}")
    print(f"runs:     {args.runs} timed per tool and file (after {args.warmup} warm-up), interleaved")
    print()
    try:
        return run_all(commands, files, args)
    finally:
        if "sprocket" in commands and not args.script:
            shutil.rmtree(os.path.dirname(commands["sprocket"][0]), ignore_errors=True)


def run_all(commands, files, args):
    """Warm up, time, and print the table; return the exit status."""
    # Warm-up, which also checks that every tool accepts every file.
    failed = False
    for path in files:
        for name, cmd in commands.items():
            for _ in range(max(args.warmup, 1)):
                _, rc, err = run_once(cmd + [path], os.path.dirname(path))
                if rc != 0:
                    report_failure(name, path, rc, err)
                    failed = True
                    break
    if failed:
        return 1

    times = {(path, name): [] for path in files for name in commands}
    for path in files:
        for _ in range(args.runs):
            for name, cmd in commands.items():
                elapsed, rc, err = run_once(cmd + [path], os.path.dirname(path))
                if rc != 0:
                    report_failure(name, path, rc, err)
                    return 1
                times[(path, name)].append(elapsed)

    width = max(len(os.path.basename(p)) for p in files)
    ratios = []
    totals = {name: 0.0 for name in commands}
    for path in files:
        meds = {name: statistics.median(times[(path, name)]) for name in commands}
        parts = []
        for name in commands:
            ts = times[(path, name)]
            totals[name] += meds[name]
            parts.append(f"{name} {meds[name]:.3f} s (min {min(ts):.3f}, max {max(ts):.3f})")
        line = f"{os.path.basename(path):<{width}}  " + "  ".join(parts)
        if len(commands) == 2 and meds["sprocket"] > 0:
            ratio = meds["miniwdl"] / meds["sprocket"]
            ratios.append(ratio)
            line += f"  miniwdl/sprocket {ratio:.2f}x"
        print(line)

    overall = "overall: " + "  ".join(f"{name} {totals[name]:.3f} s" for name in commands) + " (sum of medians)"
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        overall += f"  miniwdl/sprocket {totals['miniwdl'] / totals['sprocket']:.2f}x (geometric mean per file {geo:.2f}x)"
    print(overall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
