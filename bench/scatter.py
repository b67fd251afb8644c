#!/usr/bin/env python3
"""Benchmark `sprocket.py run` against `miniwdl run` on a scatter of N trivial tasks.

Usage (from anywhere):
    python3 bench/scatter.py [--sizes 10,100,1000] [--runs 3] [--warmup 1] [--keep]

The workflow (written to a temp dir) scatters a task `echo ~{i}` whose output is
`Int o = read_int(stdout())` over range(n) and outputs the array. Both engines
run tasks on the host: sprocket.py with its local backend, miniwdl with the
miniwdl-backend-bare plugin (MINIWDL__SCHEDULER__CONTAINER_BACKEND=bare; no
Docker). The first time, it creates a virtualenv at bench/.venv and
pip-installs miniwdl and miniwdl-backend-bare into it.

Each engine first runs once untimed at the smallest size (warm-up; it must
succeed, and miniwdl must be seen using the bare backend). Then, for each N,
`--runs` rounds of: sprocket, miniwdl, and a "bare bash" baseline. Every engine
run gets a fresh output directory and its outputs must be exactly [0, ..., N-1].

Measured per run:
  wall            seconds from spawn to exit of the engine process
  peak tree RSS   max over time of the summed RSS of the engine process and all
                  its descendants, sampled from /proc every --sample-ms (20 ms);
                  (a sum of RSS counts shared pages once per process, except
                  that a child running its parent's executable, i.e. forked
                  but not yet exec'd, is not added; task processes that live
                  less than one sample period can be missed)
  root max RSS    the engine process's own ru_maxrss (os.wait4)
The bare bash baseline runs N `bash cmd` processes (cmd is the task's command,
`echo 7`), os.cpu_count() at a time from a ThreadPoolExecutor (each task asks
for 1 cpu, so that is sprocket's default concurrency), each with stdout and
stderr to a file of its own: the least any engine must spend on the processes.
The RSS sampler runs during the baseline as well, so both pay its small cost.
The workflow and all run directories live in a temp dir under $TMPDIR (removed
at the end unless --keep, kept when a run fails). Other processes competing for
the cpus (or the disk) make every number noisy: the script
prints the load before it starts and, at the end, how much cpu time other
processes took while it ran.

It prints a table of medians: N, wall per engine, ratio miniwdl/sprocket (> 1
means sprocket is faster), peak tree RSS per engine, bare bash wall, and
sprocket's overhead per task = (sprocket wall - bare bash wall) / N. Then the
targets at the largest N (1000 by default): ratio >= 3, overhead <= 1.5 ms/task,
each PASS or MISS. Exit status: 0 when every run succeeded with the right
outputs (whether or not a target is met), 1 when a run failed or gave wrong
outputs (its stderr is printed), 2 on a setup problem.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (MINIWDL, SPROCKET, VENV, clean_up, ensure_venv, report_others, run_dirs,  # noqa: E402
                     start_timing, tool_version)

TARGET_RATIO = 3.0  # miniwdl wall / sprocket wall, at least
TARGET_OVERHEAD_MS = 1.5  # sprocket ms per task beyond bare bash, at most

WORKFLOW = """\
version 1.0

task echo_int {
  input {
    Int i
  }
  command <<<
    echo ~{i}
  >>>
  output {
    Int o = read_int(stdout())
  }
  runtime {
    cpu: 1
  }
}

workflow scatter_bench {
  input {
    Int n
  }
  scatter (i in range(n)) {
    call echo_int { input: i = i }
  }
  output {
    Array[Int] out = echo_int.o
  }
}
"""
OUTPUT_KEY = "scatter_bench.out"
BARE_COMMAND = "echo 7\n"


# ------------------------------------------------------------------------------------------
# Process-tree RSS sampling
# ------------------------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid):
    """(ppid, rss_bytes) of pid from /proc/<pid>/stat, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        # pid (comm) state ppid ... ; comm may hold spaces or parens, so split after the last ')'
        fields = data[data.rindex(b")") + 2:].split()
        # fields[0] is field 3 (state): ppid is field 4, rss (pages) is field 24
        return int(fields[1]), int(fields[21]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


def _exe(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def tree_rss(root):
    """Summed RSS in bytes of `root` and all its descendants right now.

    A descendant that runs the same executable as its parent is a fork that has
    not exec'd yet (or a subshell): its RSS is its parent's pages, shared, so it
    is not added again. Without this a Python engine caught between fork and
    exec of a task would count twice. (Its exe is read before its RSS: both come
    from the same memory map, which exec replaces, so they cannot disagree.)
    """
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                children.setdefault(st[0], []).append(int(name))
    st = _stat(root)
    total = st[1] if st else 0
    stack = [(root, _exe(root))]
    while stack:
        pid, exe = stack.pop()
        for child in children.get(pid, ()):
            child_exe = _exe(child)
            if child_exe is None or child_exe != exe:
                st = _stat(child)
                total += st[1] if st else 0
            stack.append((child, child_exe))
    return total


class TreeSampler(threading.Thread):
    """Samples tree_rss(pid) every `period` seconds until stop(); .peak is the max seen."""

    def __init__(self, pid, period):
        super().__init__(daemon=True)
        self.pid, self.period, self.peak = pid, period, 0
        self._stop_event = threading.Event()

    def run(self):
        while True:
            self.peak = max(self.peak, tree_rss(self.pid))
            if self._stop_event.wait(self.period):
                return

    def stop(self):
        self._stop_event.set()
        self.join()


# ------------------------------------------------------------------------------------------
# Running the engines
# ------------------------------------------------------------------------------------------


class RunResult:
    def __init__(self, wall, rc, stdout, stderr, peak_tree, root_maxrss):
        self.wall, self.rc, self.stdout, self.stderr = wall, rc, stdout, stderr
        self.peak_tree, self.root_maxrss = peak_tree, root_maxrss


def run_measured(argv, cwd, env, log_dir, sample_period):
    """Run argv with stdout/stderr to files in log_dir; return a RunResult."""
    out_path, err_path = os.path.join(log_dir, "stdout"), os.path.join(log_dir, "stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        sampler = TreeSampler(p.pid, sample_period)
        sampler.start()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
        sampler.stop()
    p.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    with open(out_path, "rb") as f:
        stdout = f.read().decode("utf-8", "replace")
    with open(err_path, "rb") as f:
        stderr = f.read().decode("utf-8", "replace")
    return RunResult(wall, p.returncode, stdout, stderr, sampler.peak, usage.ru_maxrss * 1024)


def check_outputs(name, stdout, n):
    """None when the run's outputs are [0..n-1], else what is wrong."""
    try:
        doc = json.loads(stdout)
    except ValueError as e:
        return f"stdout is not JSON ({e}): {stdout[:300]!r}"
    if name == "miniwdl":
        doc = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or OUTPUT_KEY not in doc:
        return f"no {OUTPUT_KEY!r} in outputs: {stdout[:300]!r}"
    got = doc[OUTPUT_KEY]
    if got != list(range(n)):
        shown = got if not isinstance(got, list) or len(got) <= 12 else got[:6] + ["..."] + got[-6:]
        return f"{OUTPUT_KEY} is {shown!r}, expected [0, ..., {n - 1}]"
    return None


def sampled_pool(one, n, workers, sample_period):
    """Run one(0) .. one(n - 1), `workers` at a time: (the wall seconds, their exit statuses). A
    baseline's: the RSS sampler runs here too (on this process's tree, result unused), so that it
    pays the same sampling cost as the engine runs it is compared with."""
    sampler = TreeSampler(os.getpid(), sample_period)
    start = time.perf_counter()
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            codes = list(pool.map(one, range(n)))
    finally:
        wall = time.perf_counter() - start
        sampler.stop()
    return wall, codes


def bare_bash(n, work, workers, shell, sample_period):
    """Wall seconds to run n `bash cmd` processes, `workers` at a time."""
    cmd = os.path.join(work, "command")
    with open(cmd, "w") as f:
        f.write(BARE_COMMAND)

    def one(i):
        with open(os.path.join(work, "stdout.%d" % i), "wb") as out, \
                open(os.path.join(work, "stderr.%d" % i), "wb") as err:
            p = subprocess.Popen([shell, cmd], cwd=work, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 start_new_session=True)
            return p.wait()

    wall, codes = sampled_pool(one, n, workers, sample_period)
    bad = [c for c in codes if c != 0]
    if bad:
        raise RuntimeError(f"bare bash: {len(bad)} of {n} processes failed (first exit status {bad[0]})")
    with open(os.path.join(work, "stdout.0"), "rb") as f:
        if f.read() != b"7\n":
            raise RuntimeError("bare bash: unexpected stdout")
    return wall


# ------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------


def mib(b):
    return b / (1024 * 1024)


def report_failure(what, res_or_msg):
    sys.stdout.flush()
    if isinstance(res_or_msg, RunResult):
        r = res_or_msg
        print(f"FAILED: {what} exited {r.rc}; stderr (last 40 lines):", file=sys.stderr)
        sys.stderr.write("".join(r.stderr.splitlines(True)[-40:]))
        if r.stderr and not r.stderr.endswith("\n"):
            sys.stderr.write("\n")
    else:
        print(f"FAILED: {what}: {res_or_msg}", file=sys.stderr)
    sys.stderr.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000", help="comma-separated scatter widths N (default 10,100,1000)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per engine and N (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per engine at the smallest N first (default 1)")
    ap.add_argument("--sample-ms", type=float, default=20.0, help="RSS sampling period in ms (default 20)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the workflow and all run directories")
    ap.add_argument("--no-drop-caches", dest="drop_caches", action="store_false",
                    help="do not drop the kernel's file caches before each measured run (done by default as root)")
    args = ap.parse_args(argv)

    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers, not {args.sizes!r}")
    if not sizes or min(sizes) < 1:
        ap.error("--sizes needs at least one N, each at least 1")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if not os.path.isdir("/proc/self"):
        print("error: /proc is needed to sample process-tree RSS (Linux only)", file=sys.stderr)
        return 2
    if not os.path.isfile(SPROCKET):
        print(f"error: {SPROCKET} not found", file=sys.stderr)
        return 2
    shell = shutil.which("bash")
    if not shell:
        print("error: bash not found on PATH", file=sys.stderr)
        return 2
    try:
        ensure_venv(["miniwdl", "miniwdl-backend-bare"], [MINIWDL])
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"error: could not set up miniwdl and miniwdl-backend-bare in {VENV}: {e}", file=sys.stderr)
        return 2

    workers = os.cpu_count() or 1
    period = args.sample_ms / 1000.0
    tmp = tempfile.mkdtemp(prefix="sprocket-bench-scatter-")
    wdl = os.path.join(tmp, "scatter.wdl")
    with open(wdl, "w") as f:
        f.write(WORKFLOW)
    # miniwdl reads only this (empty) config file, plus the bare backend from the environment;
    # MINIWDL__FILE_IO__ALLOW_ANY_INPUT does not matter here (the workflow has no File inputs).
    cfg = os.path.join(tmp, "miniwdl.cfg")
    open(cfg, "w").close()
    base_env = dict(os.environ)
    miniwdl_env = dict(base_env, MINIWDL_CFG=cfg, MINIWDL__SCHEDULER__CONTAINER_BACKEND="bare")

    def engine_cmd(name, n, out_dir):
        if name == "sprocket":
            return [sys.executable, SPROCKET, "run", wdl, f"n={n}", "-o", out_dir], base_env
        return [MINIWDL, "run", wdl, f"n={n}", "-d", out_dir + "/"], miniwdl_env

    fresh_dir = run_dirs(tmp)

    def settle():
        """Each run creates thousands of files; the kernel's growing dentry and inode caches make
        every later run slower (seen here: the same run going from 1.6 s to 4.4 s of wall time
        over five repeats). As root, start each measured run from dropped caches, the same for
        every engine and for the bare bash baseline."""
        if args.drop_caches and os.geteuid() == 0:
            os.sync()
            try:
                with open("/proc/sys/vm/drop_caches", "w") as f:
                    f.write("3\n")
            except OSError:
                pass

    def engine_run(name, n):
        """One measured run in a fresh directory; returns a RunResult or None (failure reported)."""
        settle()
        d = fresh_dir(f"{name}-n{n}")
        out_dir = os.path.join(d, "out")
        argv, env = engine_cmd(name, n, out_dir)
        r = run_measured(argv, d, env, d, period)
        if r.rc != 0:
            report_failure(f"{name} run n={n} (in {d})", r)
            return None
        wrong = check_outputs(name, r.stdout, n)
        if wrong:
            report_failure(f"{name} run n={n} (in {d})", wrong)
            return None
        if name == "miniwdl" and "BareContainer" not in r.stderr:
            report_failure(f"miniwdl run n={n} (in {d})",
                           "its log never mentions BareContainer: the bare backend was not used")
            return None
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        return r

    print(f"python:   {sys.executable} ({sys.version.split()[0]})")
    print(f"sprocket: {tool_version([sys.executable, SPROCKET, '--version'])}")
    print(f"miniwdl:  {tool_version([MINIWDL, '--version'])} (backend: bare, miniwdl-backend-bare)")
    print(f"machine:  {workers} cpu(s); bare bash baseline runs {workers} at a time")
    print(f"runs:     {args.runs} timed per engine and N (after {args.warmup} warm-up), interleaved; "
          f"RSS sampled every {args.sample_ms:g} ms")
    started = start_timing(tmp, args.keep, workers)

    status = 1  # until everything has run and been checked
    try:
        for _ in range(max(args.warmup, 0)):
            for name in ("sprocket", "miniwdl"):
                if engine_run(name, min(sizes)) is None:
                    return 1

        results = {}
        for n in sizes:
            spr, mini, bare = [], [], []
            for k in range(args.runs):
                for name, acc in (("sprocket", spr), ("miniwdl", mini)):
                    r = engine_run(name, n)
                    if r is None:
                        return 1
                    acc.append(r)
                settle()
                d = fresh_dir(f"bash-n{n}")
                try:
                    bare.append(bare_bash(n, d, workers, shell, period))
                except (OSError, RuntimeError) as e:
                    report_failure(f"bare bash n={n} (in {d})", str(e))
                    return 1
                if not args.keep:
                    shutil.rmtree(d, ignore_errors=True)
                print(f"  n={n} run {k + 1}/{args.runs}: sprocket {spr[-1].wall:.3f} s, "
                      f"miniwdl {mini[-1].wall:.3f} s, bare bash {bare[-1]:.3f} s", flush=True)
            results[n] = (spr, mini, bare)
        print()

        header = (f"{'N':>6}  {'sprocket s':>10}  {'miniwdl s':>9}  {'mini/spr':>8}  "
                  f"{'spr tree MiB':>12}  {'mini tree MiB':>13}  {'spr root MiB':>12}  {'mini root MiB':>13}  "
                  f"{'bash s':>7}  {'spr ovh ms/task':>15}")
        print(header)
        print("-" * len(header))
        summary = {}
        for n in sizes:
            spr, mini, bare = results[n]
            ws = statistics.median(r.wall for r in spr)
            wm = statistics.median(r.wall for r in mini)
            wb = statistics.median(bare)
            ratio = wm / ws if ws > 0 else float("inf")
            overhead_ms = (ws - wb) / n * 1000.0
            summary[n] = (ratio, overhead_ms)
            print(f"{n:>6}  {ws:>10.3f}  {wm:>9.3f}  {ratio:>7.2f}x  "
                  f"{mib(statistics.median(r.peak_tree for r in spr)):>12.1f}  "
                  f"{mib(statistics.median(r.peak_tree for r in mini)):>13.1f}  "
                  f"{mib(statistics.median(r.root_maxrss for r in spr)):>12.1f}  "
                  f"{mib(statistics.median(r.root_maxrss for r in mini)):>13.1f}  "
                  f"{wb:>7.3f}  {overhead_ms:>15.3f}")
        print("(medians over the timed runs; wall in seconds; 'tree' = peak summed RSS of the process tree, "
              "'root' = the engine process's own max RSS)")
        for n in sizes:
            spr, mini, bare = results[n]
            print(f"  n={n} min..max: sprocket {min(r.wall for r in spr):.3f}..{max(r.wall for r in spr):.3f} s, "
                  f"miniwdl {min(r.wall for r in mini):.3f}..{max(r.wall for r in mini):.3f} s, "
                  f"bare bash {min(bare):.3f}..{max(bare):.3f} s")
        print()

        report_others(started, workers)

        big = max(sizes)
        ratio, overhead_ms = summary[big]
        note = "" if big == 1000 else f" (1000 not in --sizes; shown at N={big})"
        print(f"targets at N={big}{note}:")
        print(f"  ratio miniwdl/sprocket >= {TARGET_RATIO:g} (target): {ratio:.2f}x  "
              f"{'PASS' if ratio >= TARGET_RATIO else 'MISS'}")
        print(f"  sprocket overhead per task <= {TARGET_OVERHEAD_MS:g} ms (target): {overhead_ms:.3f} ms  "
              f"{'PASS' if overhead_ms <= TARGET_OVERHEAD_MS else 'MISS'}")
        status = 0
        return status
    finally:
        clean_up(tmp, status, args.keep)


if __name__ == "__main__":
    sys.exit(main())
