#!/usr/bin/env python3
"""Benchmark a scatter of N trivial tasks in podman containers: sprocket.py's podman backend against
miniwdl's, and both against a bare `podman run` loop.

Usage (from anywhere; needs podman and the test image, see `.ci/container-image`):
    python3 bench/containers.py [--n 100] [--runs 3] [--warmup 1] [--image ubuntu:latest]
                                [--engines sprocket,miniwdl] [--keep]

The workflow is bench/scatter.py's (`echo ~{i}` read back as an Int, over range(N)) with
`container: IMAGE` in the task's runtime. sprocket.py runs it with `-c podman.toml` holding
`run.backends.default.type = "podman"`; miniwdl with `container_backend = podman` in its cfg
(miniwdl is pip-installed into bench/.venv on first use). Every run gets a fresh output directory and
its outputs must be exactly [0, ..., N-1].

miniwdl runs `podman pull IMAGE` before its first task, always, and this machine reaches no container
registry: its `[podman] exe` is a two-line shell wrapper that answers `pull` of an image already in
podman's storage with success and execs podman for everything else (one more exec per podman call,
which counts against miniwdl). A miniwdl run that fails on miniwdl's own race (its podman scheduler's
counts reset by two tasks starting together: MINIWDL_RACE) is run again, and the output says so.

The baseline, "bare podman run": N `podman run --rm -v WORK:/mnt/work -w /mnt/work IMAGE bash -c 'echo 7'`,
os.cpu_count() at a time (each task asks for 1 cpu, so that is the engines' concurrency too), each with
stdout and stderr to a file of its own: the least any engine must spend on the containers.

Measured per run (bench/scatter.py's sampler and definitions): wall; peak tree RSS (the engine and its
descendants, which include the podman client processes but not conmon and the container, which podman
detaches); the engine process's own max RSS. It prints the load before starting, one line per run, a
table of medians, how much cpu other processes took meanwhile, and the issue's targets at the largest N:
sprocket wall <= miniwdl wall, and sprocket's overhead per task over the bare loop,
(sprocket wall - bare wall) / N, <= 50 ms. Exit status: 0 when every run succeeded with the right
outputs (whether or not a target is met), 1 when a run failed, 2 on a setup problem.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (MINIWDL, SPROCKET, VENV, clean_up, ensure_venv, report_others, run_dirs,  # noqa: E402
                     start_timing, tool_version)
from scatter import WORKFLOW, check_outputs, mib, report_failure, run_measured, sampled_pool  # noqa: E402

TARGET_OVERHEAD_MS = 50.0  # sprocket ms per task beyond the bare podman loop, at most
ENGINES = ("sprocket", "miniwdl")
SPROCKET_TOML = '[run.backends.default]\ntype = "podman"\n'
PULL_SHIM = """#!/bin/sh
# miniwdl always pulls; no registry is reachable here: an image podman already has needs no pull.
if [ "$1" = pull ] && podman image exists "$2"; then exit 0; fi
exec podman "$@"
"""


# miniwdl 1.16's podman backend initializes its cpu/memory scheduler in the first task threads without a
# lock: two tasks starting together reset its counts, and one of them fails this assertion. Not a matter
# of speed: such a run is run again (and says so).
MINIWDL_RACE = 'assert 0 <= self._state["used_cpu"] <= self._state["host_cpu"]'
MINIWDL_RACE_TRIES = 4


def container_workflow(image):
    marker = "    cpu: 1\n"
    assert WORKFLOW.count(marker) == 1, "bench/scatter.py's workflow changed: update container_workflow()"
    return WORKFLOW.replace(marker, marker + '    container: "%s"\n' % image)


def bare_podman(podman, image, n, work, workers, sample_period):
    """Wall seconds to run n `podman run --rm` of `echo 7`, `workers` at a time."""

    def one(i):
        with open(os.path.join(work, "stdout.%d" % i), "wb") as out, \
                open(os.path.join(work, "stderr.%d" % i), "wb") as err:
            argv = [podman, "run", "--rm", "-v", "%s:/mnt/work" % work, "-w", "/mnt/work", image,
                    "bash", "-c", "echo 7"]
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err).returncode

    wall, codes = sampled_pool(one, n, workers, sample_period)
    bad = [i for i, c in enumerate(codes) if c != 0]
    if bad:
        with open(os.path.join(work, "stderr.%d" % bad[0]), "rb") as f:
            why = f.read().decode("utf-8", "replace").strip()[-300:]
        raise RuntimeError("%d of %d `podman run` failed (first exit status %d: %s)" % (
            len(bad), n, codes[bad[0]], why))
    with open(os.path.join(work, "stdout.0"), "rb") as f:
        if f.read() != b"7\n":
            raise RuntimeError("bare podman run: unexpected stdout")
    return wall


def setup_problem(podman, image, engines):
    """Why the benchmark cannot run here, or None."""
    if not os.path.isdir("/proc/self"):
        return "/proc is needed to sample process-tree RSS (Linux only)"
    if podman is None:
        return "podman is not on PATH (as root: bash .ci/container-image)"
    if subprocess.run([podman, "image", "exists", image]).returncode != 0:
        return "podman has no image %s (as root: bash .ci/container-image builds and tags it)" % image
    if "sprocket" in engines and not os.path.isfile(SPROCKET):
        return "%s not found" % SPROCKET
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="scatter width N (default 100)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per engine (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per engine at N = 4 first (default 1)")
    ap.add_argument("--image", default="ubuntu:latest", help="the tasks' container (default ubuntu:latest)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, of: sprocket,miniwdl (default both)")
    ap.add_argument("--sample-ms", type=float, default=20.0, help="RSS sampling period in ms (default 20)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the workflow and all run directories")
    args = ap.parse_args(argv)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        ap.error("--engines takes a comma-separated list of: %s" % ", ".join(ENGINES))
    if args.n < 1 or args.runs < 1:
        ap.error("--n and --runs must be at least 1")
    podman = shutil.which("podman")
    problem = setup_problem(podman, args.image, engines)
    if problem:
        print("error: " + problem, file=sys.stderr)
        return 2
    if "miniwdl" in engines:
        try:
            ensure_venv(["miniwdl"], [MINIWDL])
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"error: could not set up miniwdl in {VENV}: {e}", file=sys.stderr)
            return 2

    workers = os.cpu_count() or 1
    period = args.sample_ms / 1000.0
    tmp = tempfile.mkdtemp(prefix="sprocket-bench-containers-")
    wdl = os.path.join(tmp, "scatter.wdl")
    with open(wdl, "w") as f:
        f.write(container_workflow(args.image))
    toml = os.path.join(tmp, "podman.toml")
    with open(toml, "w") as f:
        f.write(SPROCKET_TOML)
    shim = os.path.join(tmp, "podman-nopull")
    with open(shim, "w") as f:
        f.write(PULL_SHIM)
    os.chmod(shim, 0o755)
    cfg = os.path.join(tmp, "miniwdl.cfg")
    with open(cfg, "w") as f:
        f.write('[scheduler]\ncontainer_backend = podman\n[podman]\nexe = ["%s"]\n' % shim)
    base_env = dict(os.environ)
    miniwdl_env = dict(base_env, MINIWDL_CFG=cfg)

    def engine_cmd(name, n, out_dir):
        if name == "sprocket":
            return [sys.executable, SPROCKET, "run", "-c", toml, wdl, f"n={n}", "-o", out_dir], base_env
        return [MINIWDL, "run", wdl, f"n={n}", "-d", out_dir + "/"], miniwdl_env

    fresh_dir = run_dirs(tmp)

    def engine_run(name, n):
        """One measured run in a fresh directory; returns a RunResult or None (failure reported)."""
        for _ in range(MINIWDL_RACE_TRIES):
            d = fresh_dir(f"{name}-n{n}")
            argv, env = engine_cmd(name, n, os.path.join(d, "out"))
            r = run_measured(argv, d, env, d, period)
            if not (name == "miniwdl" and r.rc != 0 and MINIWDL_RACE in r.stderr):
                break
            print(f"  (miniwdl n={n} hit its own scheduler race, {MINIWDL_RACE!r}: run again)", flush=True)
        wrong = r if r.rc != 0 else check_outputs(name, r.stdout, n)
        if wrong is None and name == "miniwdl" and "Podman runtime initialized" not in r.stderr:
            wrong = "its log never says 'Podman runtime initialized': the podman backend was not used"
        if wrong is not None:
            report_failure(f"{name} run n={n} (in {d})", wrong)
            return None
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        return r

    print(f"python:   {sys.executable} ({sys.version.split()[0]})")
    if "sprocket" in engines:
        print(f"sprocket: {tool_version([sys.executable, SPROCKET, '--version'])} (backend: podman)")
    if "miniwdl" in engines:
        print(f"miniwdl:  {tool_version([MINIWDL, '--version'])} (container_backend = podman)")
    print(f"podman:   {tool_version([podman, '--version'])}; image {args.image}")
    print(f"machine:  {workers} cpu(s); the bare podman loop runs {workers} at a time")
    print(f"runs:     {args.runs} timed per engine at N={args.n} (after {args.warmup} warm-up at N=4), "
          f"interleaved; RSS sampled every {args.sample_ms:g} ms")
    started = start_timing(tmp, args.keep, workers)

    status = 1  # until everything has run and been checked
    try:
        for _ in range(max(args.warmup, 0)):
            for name in engines:
                if engine_run(name, min(4, args.n)) is None:
                    return 1
        n = args.n
        results = {name: [] for name in engines}
        bare = []
        for k in range(args.runs):
            for name in engines:
                r = engine_run(name, n)
                if r is None:
                    return 1
                results[name].append(r)
            d = fresh_dir(f"podman-n{n}")
            try:
                bare.append(bare_podman(podman, args.image, n, d, workers, period))
            except (OSError, RuntimeError) as e:
                report_failure(f"bare podman run n={n} (in {d})", str(e))
                return 1
            if not args.keep:
                shutil.rmtree(d, ignore_errors=True)
            print(f"  n={n} run {k + 1}/{args.runs}: "
                  + ", ".join(f"{name} {results[name][-1].wall:.3f} s" for name in engines)
                  + f", bare podman run {bare[-1]:.3f} s", flush=True)
        print()

        wb = statistics.median(bare)
        header = f"{'engine':>16}  {'wall s':>8}  {'ovh ms/task':>11}  {'tree MiB':>8}  {'root MiB':>8}  {'min..max s':>15}"
        print(f"N = {n}")
        print(header)
        print("-" * len(header))
        walls = {}
        for name in engines:
            rs = results[name]
            walls[name] = statistics.median(r.wall for r in rs)
            print(f"{name:>16}  {walls[name]:>8.3f}  {(walls[name] - wb) / n * 1000.0:>11.1f}  "
                  f"{mib(statistics.median(r.peak_tree for r in rs)):>8.1f}  "
                  f"{mib(statistics.median(r.root_maxrss for r in rs)):>8.1f}  "
                  f"{min(r.wall for r in rs):>7.3f}..{max(r.wall for r in rs):.3f}")
        print(f"{'bare podman run':>16}  {wb:>8.3f}  {'':>11}  {'':>8}  {'':>8}  {min(bare):>7.3f}..{max(bare):.3f}")
        print("(medians over the timed runs; 'ovh' = (wall - bare podman run wall) / N; 'tree' = peak summed RSS "
              "of the engine's process tree, 'root' = the engine process's own max RSS)")
        if len(engines) == 2:
            print(f"ratio miniwdl/sprocket wall: {walls['miniwdl'] / walls['sprocket']:.2f}x (> 1: sprocket is faster)")
        print()

        report_others(started, workers)

        if "sprocket" in engines:
            print(f"targets at N={n}:")
            if "miniwdl" in engines:
                ok = walls["sprocket"] <= walls["miniwdl"]
                print(f"  sprocket wall <= miniwdl-podman wall (target): {walls['sprocket']:.3f} s vs "
                      f"{walls['miniwdl']:.3f} s  {'PASS' if ok else 'MISS'}")
            overhead_ms = (walls["sprocket"] - wb) / n * 1000.0
            print(f"  sprocket overhead per task over bare podman run <= {TARGET_OVERHEAD_MS:g} ms (target): "
                  f"{overhead_ms:.1f} ms  {'PASS' if overhead_ms <= TARGET_OVERHEAD_MS else 'MISS'}")
        status = 0
        return status
    finally:
        clean_up(tmp, status, args.keep)


if __name__ == "__main__":
    sys.exit(main())
