#!/usr/bin/env python3
"""Scale test of sprocket.py's slurm_apptainer backend against miniwdl + miniwdl-slurm on a real Slurm cluster.

Usage (from anywhere):
    python3 bench/slurm_scale.py [--sizes 10,200,1000] [--engines sprocket,miniwdl] [--interval 2]

Engines: floor (bare sbatch, below), sprocket (sprocket.py as configured by default: job arrays
on), sprocket-noarrays (the same with job_arrays = false), miniwdl (miniwdl-slurm).

It follows the peers' recipe in shared/bench/slurm-peers/ (RESULTS.md, run.sh): the
workload is their wdl/scatter.wdl (version 1.1; `scatter (i in range(n))` over a task
`echo ~{i}` with cpu 1, memory "100 MB", docker ubuntu:latest; output the array of the
stdouts, which must be exactly ["0", ..., "n-1"]). For each N in --sizes it runs
sprocket.py, then miniwdl (interleaved per N), each once, in a fresh run directory:

  WORK/install/sprocket -s -c CFG run scatter.wdl inputs.json -o RUN/out
      (the launcher `sprocket.py install WORK/install` writes, which starts from the compiled file, as
      the README advises for HPC sites; with --script: python3 sprocket.py, compiled on every start)
      CFG: run.backends.default.type = "slurm_apptainer", partition "compute",
      interval = --interval (default: sprocket's), max_scatter_concurrency = --scatter-concurrency
      (default: sprocket's, 200),
      apptainer.image_cache_dir = WORK/sif-cache
  miniwdl run scatter.wdl -i inputs.json --dir RUN/run --cfg shared/bench/slurm-peers/miniwdl.cfg --verbose
      (the miniwdl-slurm README configuration: container_backend = slurm_singularity,
      task_concurrency = 200; image cache WORK/sif-cache-miniwdl)

shared/ is ../shared relative to the repo root, or $SPROCKET_SHARED. The cluster is the
one $SLURM_CONF points at (default: --slurm-dir/etc/slurm.conf); when `sinfo` fails it is
started with shared/slurm/start-slurm.sh (SLURM_CI_CPUS=8 SLURM_CI_ACCOUNTING=slurmdbd).
miniwdl and miniwdl-slurm are pip-installed into bench/.venv on first use.

Both engines run with WORK/bin first on PATH. It holds counting wrappers for sbatch, squeue,
sacct, scontrol, scancel, srun and sinfo (each call appends a line to the run's
slurm_calls.log, then execs the real /usr/bin command) and the apptainer stand-in
(shared/slurm/apptainer-double) as `apptainer` and `singularity`, behind a shim that drops
`--no-mount X` (the double lacks it; miniwdl's README run_options pass it) and logs the
call. A Slurm job inherits PATH, so every logged call also records whether a `slurmstepd`
is among its ancestors: only calls from outside jobs (the engine side) are counted as the
engine's Slurm calls; job-side calls are shown separately (apptainer exec runs there).

Measured per run: wall time (spawn to exit of the engine), for sprocket also outputs_s (spawn
to its outputs.json, written just before the outputs are printed and the closing usage query
runs), exit status, output
correctness, engine-side calls per Slurm command, the engine process's own max RSS
(wait4), and, sampled every --sample-ms (500) from /proc, the peak summed RSS and peak
process count of the submit-side tree (the engine process and all its descendants; Slurm
jobs run under slurmstepd, outside it). The summed RSS counts shared pages once per
process, as the peers' sample_tree.py does, except that a child still running its
parent's executable (forked, not yet exec'd: its pages are the parent's) is not added,
as in bench/scatter.py; result.json also has the plain sum. Also recorded: the most
`sbatch` processes alive at once, the run's jobs still in squeue right after the engine
exited, and the run's jobs per final state (sacct). For sprocket, "status calls" =
sacct + squeue + scontrol calls, against the bound wall / interval + 5.

Before each run it cancels the leftover jobs of this script's earlier runs (those submitted
from under --work; with --cancel-all, ALL of the current user's jobs, for a dedicated test
cluster), waits until they are gone, then waits up to --drain-wait s for everybody else's
jobs to leave the queue too; jobs of others that ran meanwhile are counted per run (sacct)
because they compete for the node. Run directories are kept in --work
(default /tmp/sprocket-slurm-scale/runs/ENGINE-nN, replaced on the next run of the same
cell); each has cmd.txt, inputs.json, stdout.txt, stderr.txt, slurm_calls.log, result.json.

It prints a table like RESULTS.md's and a verdict block at N=1000 (else the largest N):
sprocket's wall <= miniwdl-slurm's (measured in this run if possible, else RESULTS.md's
figure), submit side < 150 MB and < 20 processes, status calls <= wall/interval + 5 at every
N (so they do not grow with N). Exit status: 0 when every run succeeded with the right
outputs (whether or not a target is met), 1 when a run failed or gave wrong outputs,
2 on a setup problem.
"""
import argparse
import glob
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import MINIWDL, REPO, SPROCKET, VENV, VENV_PYTHON, ensure_venv, tool_version, shared_dir  # noqa: E402

SLURM_CMDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "srun", "sinfo")
STATUS_CMDS = ("sacct", "squeue", "scontrol")
SPROCKETS = ("sprocket", "sprocket-noarrays")  # sprocket.py with job arrays (the default), and without
ENGINES = ("floor",) + SPROCKETS + ("miniwdl",)
STATUS_SLACK = 5  # status calls allowed beyond wall / interval
TARGET_TREE_MB = 150.0  # submit-side peak summed RSS, below
TARGET_PROCS = 20  # submit-side peak process count, below
# miniwdl + miniwdl-slurm wall seconds on this cluster, from shared/bench/slurm-peers/RESULTS.md
# (scatterN rows; single runs): the fallback when this run did not measure miniwdl at that N.
PEERS_MINIWDL_WALL = {10: 12.32, 50: 10.98, 200: 44.64, 1000: 151.96}
OUTPUT_KEY = "scatter_echo.outs"

SPROCKET_CFG = """\
run.experimental_features_enabled = true
run.backends.default.type = "slurm_apptainer"
run.backends.default.default_slurm_partition.name = "compute"
run.backends.default.apptainer.image_cache_dir = {cache}
{extra}"""
DEFAULT_INTERVAL = 60  # sprocket.py's default run.backends.*.interval
BIG_N = 5000  # from this N on only sprocket runs, arrays on and off (the floor is estimated from N = 1000)

# The bare-sbatch floor: N `sbatch --wrap` jobs of the same task (its `echo` in the container),
# 10 submissions at a time, then `squeue` every 0.5 s until none of them is left. What any engine
# must at least spend.
FLOOR_SCRIPT = r"""
import subprocess, sys, threading, time
n, out = int(sys.argv[1]), sys.argv[2]
ids, lock, todo = [], threading.Lock(), list(range(n))
def submit():
    while True:
        with lock:
            if not todo:
                return
            i = todo.pop(0)
        # the same task as the engines': `echo i` in the container, through the apptainer stand-in
        p = subprocess.run(["sbatch", "--parsable", "--partition", "compute", "--ntasks=1", "--cpus-per-task=1",
                            "--mem=100M", "-o", "%s/floor-%d.out" % (out, i), "--wrap",
                            "apptainer exec --containall --cleanenv docker://ubuntu:latest bash -c 'echo %d'" % i],
                           stdout=subprocess.PIPE, universal_newlines=True, check=True)
        with lock:
            ids.append(p.stdout.strip().split(";")[0])
threads = [threading.Thread(target=submit) for _ in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wanted = set(ids)
while True:
    p = subprocess.run(["squeue", "-h", "-o", "%i"], stdout=subprocess.PIPE, universal_newlines=True)
    if p.returncode == 0 and not wanted & set(p.stdout.split()):
        break
    time.sleep(0.5)
print('{"floor.jobs": %d}' % len(ids))
"""

# Counting wrapper for one Slurm command (bash 5: $EPOCHREALTIME). Log line:
#   <epoch seconds> <command> <engine|job> <first argument>
# "job" when a slurmstepd is among the caller's ancestors (the call came from inside a job).
WRAPPER = """\
#!/bin/bash
# counting wrapper written by bench/slurm_scale.py: log the call, then exec the real command
if [ -n "${{SLURM_CALL_LOG:-}}" ]; then
    side=engine p=$PPID
    while [ "${{p:-0}}" -gt 1 ] && read -r line < "/proc/$p/stat"; do
        comm=${{line#*\\(}}; comm=${{comm%\\)*}}
        [ "$comm" = slurmstepd ] && {{ side=job; break; }}
        f=(${{line##*\\) }}); p=${{f[1]}}
    done 2>/dev/null
    printf '%s %s %s %s\\n' "$EPOCHREALTIME" {name} "$side" "${{1:-}}" >> "$SLURM_CALL_LOG"
fi
{body}
"""
SLURM_BODY = 'exec {real} "$@"'
# The apptainer stand-in does not implement `--no-mount X` (real apptainer >= 1.0 does and
# miniwdl's README run_options pass `--no-mount hostfs`), so the shim drops it, as run.sh's does.
APPTAINER_BODY = """\
args=(); skip=0
for a in "$@"; do
    if [ $skip = 1 ]; then skip=0; continue; fi
    case $a in --no-mount) skip=1; continue ;; --no-mount=*) continue ;; esac
    args+=("$a")
done
exec "$(dirname "$0")/apptainer-double.py" "${args[@]}\""""


def log(msg):
    print("[slurm_scale %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Cluster
# ------------------------------------------------------------------------------------------


def real_slurm(cmd):
    """The real Slurm command (never the wrapper)."""
    return shutil.which(cmd, path="/usr/local/bin:/usr/bin:/bin")


def slurm(args, timeout=60):
    """Run a real Slurm command (not logged); return (rc, stdout, stderr)."""
    exe = real_slurm(args[0])
    if exe is None:
        return 127, "", "%s not found" % args[0]
    try:
        p = subprocess.run([exe] + list(args[1:]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", "%s timed out after %d s" % (args[0], timeout)
    return p.returncode, p.stdout, p.stderr


def ensure_cluster(shared, slurm_dir):
    """Make sure `sinfo` answers; start the cluster with start-slurm.sh if not. Returns an error or None."""
    if not os.environ.get("SLURM_CONF"):
        os.environ["SLURM_CONF"] = os.path.join(slurm_dir, "etc", "slurm.conf")
    if slurm(["sinfo", "-h"], timeout=10)[0] == 0:
        return None
    script = os.path.join(shared, "slurm", "start-slurm.sh")
    if not os.path.isfile(script):
        return "sinfo fails and %s is missing" % script
    log("sinfo fails: starting Slurm in %s (SLURM_CI_CPUS=8 SLURM_CI_ACCOUNTING=slurmdbd)" % slurm_dir)
    env = dict(os.environ)
    env.setdefault("SLURM_CI_CPUS", "8")
    env.setdefault("SLURM_CI_ACCOUNTING", "slurmdbd")
    p = subprocess.run(["bash", script, slurm_dir], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, universal_newlines=True)
    if p.returncode != 0:
        return "%s %s exited %d" % (script, slurm_dir, p.returncode)
    for line in p.stdout.splitlines():  # `export SLURM_CONF=...` lines, meant for eval
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            k, v = words[1].split("=", 1)
            os.environ[k] = v
    code, _, err = slurm(["sinfo", "-h"], timeout=10)
    return None if code == 0 else "no cluster after start-slurm.sh: sinfo: %s" % err.strip()


def user():
    return pwd.getpwuid(os.getuid()).pw_name


def _under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def queue(all_users=False):
    """[(job id, state, name, work dir)] in squeue now (this user's jobs unless all_users); None if squeue fails."""
    args = ["squeue", "-h", "-o", "%i|%T|%Z|%j"] + ([] if all_users else ["-u", user()])
    code, out, _ = slurm(args, timeout=30)
    if code != 0:
        return None
    rows = []
    for line in out.splitlines():
        f = line.split("|", 3)
        if len(f) == 4:
            rows.append((f[0], f[1], f[3], f[2]))
    return rows


def ours(jobs, root):
    """The jobs (from queue()) that were submitted from under root."""
    return None if jobs is None else [j for j in jobs if _under(j[3], root)]


def sacct_window(since_epoch, run_dir, work, expected):
    """({state: count} of the jobs submitted from under run_dir, number of other jobs) active since since_epoch.

    Other jobs: anybody's jobs from outside `work` (this script's dir), i.e. other work competing
    for the node while this run was measured. sacct's time-window query shows a job about a second
    after it ended, so this asks again (for up to 10 s) until it sees `expected` jobs of the run.
    ({}, None) if sacct fails (no accounting).
    """
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since_epoch - 1))
    deadline = time.monotonic() + 10
    while True:
        time.sleep(1)
        code, out, _ = slurm(["sacct", "-n", "-X", "-P", "-a", "-S", since, "-E", "now", "-o", "State,WorkDir"],
                             timeout=60)
        if code != 0:
            return {}, None
        counts, others = {}, 0
        for line in out.splitlines():
            f = line.split("|", 1)
            if len(f) != 2 or not f[0].strip():
                continue
            if _under(f[1], run_dir):
                st = f[0].split()[0]
                counts[st] = counts.get(st, 0) + 1
            elif not _under(f[1], work):
                others += 1
        if sum(counts.values()) >= expected or time.monotonic() > deadline:
            return counts, others


def quiesce(work, cancel_all=False, limit=180, drain=120):
    """Cancel the leftover jobs of this script's runs (all of the user's with cancel_all) and wait until they
    are gone; then wait up to `drain` s for the whole queue to empty (other people's jobs compete for
    the node). Returns the number of jobs still in the queue (None if squeue fails)."""
    mine = queue() if cancel_all else ours(queue(), work)
    if mine:
        log("cancelling %d leftover job(s)%s" % (len(mine), " of user %s" % user() if cancel_all else " from " + work))
        if cancel_all:
            slurm(["scancel", "--user=" + user()])
        else:
            ids = [j[0] for j in mine]
            for i in range(0, len(ids), 400):
                slurm(["scancel"] + ids[i:i + 400])
    deadline = time.monotonic() + limit
    while True:
        mine = queue() if cancel_all else ours(queue(), work)
        if mine == [] or time.monotonic() > deadline:
            break
        time.sleep(1)
    if mine:
        log("warning: %d of our job(s) still in squeue after %d s" % (len(mine), limit))
    deadline = time.monotonic() + drain
    announced = False
    while True:
        q = queue(all_users=True)
        if not q or time.monotonic() > deadline:
            break
        if not announced:
            log("waiting up to %d s for %d job(s) of others to leave the queue" % (drain, len(q)))
            announced = True
        time.sleep(1)
    if q:
        log("warning: going ahead with %d other job(s) in the queue (they compete for the node)" % len(q))
    return None if q is None else len(q)


# ------------------------------------------------------------------------------------------
# Wrappers
# ------------------------------------------------------------------------------------------


def write_bin(bin_dir, shared):
    """Counting wrappers and the apptainer/singularity shims in bin_dir. Returns an error or None."""
    os.makedirs(bin_dir, exist_ok=True)
    for c in SLURM_CMDS:
        real = real_slurm(c)
        if real is None:
            return "no `%s` in /usr/local/bin:/usr/bin:/bin" % c
        _write_exe(os.path.join(bin_dir, c), WRAPPER.format(name=c, body=SLURM_BODY.format(real=shlex.quote(real))))
    double = os.path.join(shared, "slurm", "apptainer-double")
    if not os.path.isfile(double):
        double = "/tmp/sbin/apptainer"
    if not os.path.isfile(double):
        return "apptainer stand-in not found (%s/slurm/apptainer-double)" % shared
    shutil.copyfile(double, os.path.join(bin_dir, "apptainer-double.py"))
    os.chmod(os.path.join(bin_dir, "apptainer-double.py"), 0o755)
    for name in ("apptainer", "singularity"):
        _write_exe(os.path.join(bin_dir, name), WRAPPER.format(name=name, body=APPTAINER_BODY))
    return None


def _write_exe(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def read_calls(path):
    """{(command, side): count} from a slurm_calls.log."""
    counts = {}
    try:
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) >= 3:
                    counts[(w[1], w[2])] = counts.get((w[1], w[2]), 0) + 1
    except OSError:
        pass
    return counts


# ------------------------------------------------------------------------------------------
# Process-tree sampling (as the peers' tools/sample_tree.py, but including the engine process)
# ------------------------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def _exe(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def _snapshot(root):
    """[(pid, comm, rss bytes, forked)] of root and all its descendants.

    forked: the process runs its parent's executable, i.e. it was forked (or vforked) and has
    not exec'd yet; its RSS is its parent's pages, shared (as in bench/scatter.py's tree_rss).
    """
    kids, info = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                data = f.read()
        except OSError:
            continue
        try:
            comm = data[data.index(b"(") + 1:data.rindex(b")")].decode("utf-8", "replace")
            fields = data[data.rindex(b")") + 2:].split()
            ppid, rss = int(fields[1]), int(fields[21]) * PAGE
        except (ValueError, IndexError):
            continue
        pid = int(name)
        info[pid] = (comm, rss)
        kids.setdefault(ppid, []).append(pid)
    if root not in info:
        return []
    out, todo = [], [(root, None)]
    while todo:
        p, parent_exe = todo.pop()
        if p not in info:
            continue
        exe = _exe(p)
        out.append((p, info[p][0], info[p][1], parent_exe is not None and exe == parent_exe))
        todo.extend((k, exe) for k in kids.get(p, ()))
    return out


class TreeSampler(threading.Thread):
    """Peak summed RSS (forked-not-exec'd children not added; also the plain sum, as the peers'
    sample_tree.py computes it) and peak process count of a process tree, sampled every period s."""

    def __init__(self, pid, period):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_rss = self.peak_rss_plain = self.peak_procs = self.samples = 0
        self.peak_per_comm, self.at_peak_procs, self.rss_at_peak_rss = {}, {}, {}
        self._stop_event = threading.Event()

    def run(self):
        while True:
            snap = _snapshot(self.pid)
            if snap:
                self.samples += 1
                rss = sum(r for _, _, r, forked in snap if not forked)
                self.peak_rss_plain = max(self.peak_rss_plain, sum(r for _, _, r, _ in snap))
                by, rss_by = {}, {}
                for _, c, r, forked in snap:
                    by[c] = by.get(c, 0) + 1
                    key = c + " (forked)" if forked else c
                    rss_by[key] = rss_by.get(key, 0) + r
                if rss > self.peak_rss:
                    self.peak_rss = rss
                    self.rss_at_peak_rss = {k: round(v / 1048576.0, 1) for k, v in rss_by.items()}
                for c, k in by.items():
                    self.peak_per_comm[c] = max(k, self.peak_per_comm.get(c, 0))
                if len(snap) > self.peak_procs:
                    self.peak_procs, self.at_peak_procs = len(snap), by
            if self._stop_event.wait(self.period):
                return

    def stop(self):
        self._stop_event.set()
        self.join()


# ------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------


def check_outputs(engine, stdout, n):
    """None when the outputs are ["0", ..., "n-1"], else what is wrong."""
    try:
        doc = json.loads(stdout[stdout.index("{"):])
    except ValueError as e:
        return "stdout is not JSON (%s): %r" % (e, stdout[:200])
    if engine == "miniwdl" and isinstance(doc, dict):
        doc = doc.get("outputs")
    if not isinstance(doc, dict) or OUTPUT_KEY not in doc:
        return "no %r in the outputs: %r" % (OUTPUT_KEY, stdout[:200])
    got = doc[OUTPUT_KEY]
    if got != [str(i) for i in range(n)]:
        shown = got if not isinstance(got, list) or len(got) <= 12 else got[:6] + ["..."] + got[-6:]
        return "%s is %r, expected [\"0\", ..., \"%d\"]" % (OUTPUT_KEY, shown, n - 1)
    return None


def run_engine(engine, n, ctx):
    """One measured run; returns a result dict (also written to RUN/result.json)."""
    rd = os.path.join(ctx["work"], "runs", "%s-n%d" % (engine, n))
    shutil.rmtree(rd, ignore_errors=True)
    os.makedirs(rd)
    inputs = os.path.join(rd, "inputs.json")
    with open(inputs, "w") as f:
        json.dump({"scatter_echo.n": n}, f)
        f.write("\n")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([ctx["bin"], os.path.join(VENV, "bin"), env.get("PATH", "")])
    env["SLURM_CALL_LOG"] = os.path.join(rd, "slurm_calls.log")
    env["SINGULARITY_CACHEDIR"] = env["APPTAINER_CACHEDIR"] = os.path.join(ctx["work"], "sing-cache")
    if engine in SPROCKETS:
        argv = ctx["sprocket"] + ["-s", "-c", ctx["sprocket_cfg"][engine], "run", ctx["wdl"], inputs,
                "-o", os.path.join(rd, "out")]
    elif engine == "floor":
        argv = [sys.executable, ctx["floor"], str(n), rd]
    else:
        argv = [MINIWDL, "run", ctx["wdl"], "-i", inputs, "--dir", os.path.join(rd, "run"),
                "--cfg", ctx["miniwdl_cfg"], "--verbose"]
        env["MINIWDL__SINGULARITY__IMAGE_CACHE"] = os.path.join(ctx["work"], "sif-cache-miniwdl")
    with open(os.path.join(rd, "cmd.txt"), "w") as f:
        f.write(" ".join(shlex.quote(a) for a in argv) + "\n")

    queued_at_start = quiesce(ctx["work"], ctx["cancel_all"], drain=ctx["drain"])
    load1 = os.getloadavg()[0]
    log("%s n=%d: %s" % (engine, n, " ".join(shlex.quote(a) for a in argv)))
    timed_out = [False]
    out_path, err_path = os.path.join(rd, "stdout.txt"), os.path.join(rd, "stderr.txt")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start, start_epoch = time.monotonic(), time.time()
        p = subprocess.Popen(argv, cwd=rd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             start_new_session=True)
        sampler = TreeSampler(p.pid, ctx["period"])
        sampler.start()

        def on_timeout():  # SIGTERM the engine's own process group, SIGKILL it 15 s later
            timed_out[0] = True
            log("%s n=%d: timed out after %d s; sending SIGTERM to process group %d" % (engine, n, ctx["timeout"], p.pid))
            try:
                os.killpg(p.pid, signal.SIGTERM)
                time.sleep(15)
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass

        timer = threading.Timer(ctx["timeout"], on_timeout)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:  # Ctrl-C: the engine runs in its own session, so stop it (it cancels its jobs)
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
            raise
        wall = time.monotonic() - start
        timer.cancel()
        sampler.stop()
    p.returncode = rc = os.waitstatus_to_exitcode(status)
    left = ours(queue(), rd)  # this run's jobs still queued right after the engine exited
    with open(out_path, "rb") as f:
        stdout = f.read().decode("utf-8", "replace")
    wrong = None if rc == 0 else "exited %d%s" % (rc, " (timed out)" if timed_out[0] else "")
    if wrong is None and engine != "floor":
        wrong = check_outputs(engine, stdout, n)
    calls = read_calls(env["SLURM_CALL_LOG"])
    states, other_jobs = sacct_window(start_epoch, rd, ctx["work"], n)  # a job array is one sbatch for many jobs
    eng = {c: calls.get((c, "engine"), 0) for c in SLURM_CMDS + ("apptainer", "singularity")}
    job_side = {c: calls.get((c, "job"), 0) for c in SLURM_CMDS + ("apptainer", "singularity") if calls.get((c, "job"))}
    res = {
        "engine": engine, "n": n, "rc": rc, "wall_s": round(wall, 2), "timed_out": timed_out[0],
        "main_maxrss_mb": round(usage.ru_maxrss / 1024.0, 1),
        "tree_peak_rss_mb": round(sampler.peak_rss / 1048576.0, 1), "tree_peak_procs": sampler.peak_procs,
        "tree_peak_rss_plain_mb": round(sampler.peak_rss_plain / 1048576.0, 1),
        "mb_by_comm_at_peak_rss": sampler.rss_at_peak_rss,
        "peak_sbatch_procs": sampler.peak_per_comm.get("sbatch", 0), "samples": sampler.samples,
        "by_comm_at_peak_procs": sampler.at_peak_procs,
        "calls": eng, "job_side_calls": job_side,
        "containers": eng["apptainer"] + eng["singularity"],
        "correct": wrong is None, "problem": wrong,
        "squeue_after_exit": None if left is None else len(left),
        "left_jobs": [] if not left else [list(j) for j in left[:20]],
        "sacct_states": states, "other_jobs": other_jobs, "queued_at_start": queued_at_start,
        "load1_at_start": round(load1, 2),
        "run_dir": rd,
    }
    if engine in SPROCKETS:
        written = [os.stat(p).st_mtime for p in set(os.path.realpath(p) for p in glob.glob(  # not _latest/ again
            os.path.join(rd, "out", "runs", "*", "*", "outputs.json")))]
        res["outputs_s"] = round(written[0] - start_epoch, 2) if len(written) == 1 else None
        res["status_calls"] = sum(eng[c] for c in STATUS_CMDS)
        res["status_bound"] = round(wall / ctx["interval"] + STATUS_SLACK, 1)
        res["status_calls_per_min"] = round(res["status_calls"] * 60.0 / wall, 2) if wall else None
    with open(os.path.join(rd, "result.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
        f.write("\n")
    if wrong:
        with open(err_path, "rb") as f:
            tail = f.read().decode("utf-8", "replace").splitlines()[-25:]
        print("FAILED: %s n=%d (%s): %s; stderr (last lines):" % (engine, n, rd, wrong), file=sys.stderr)
        sys.stderr.write("".join("  " + line + "\n" for line in tail))
        sys.stderr.flush()
    log("%s n=%d: rc %d, %.2f s, %s%s; its jobs per sacct: %s; other jobs meanwhile: %s" % (
        engine, n, rc, wall, "correct" if wrong is None else "WRONG",
        "" if not left else ", %d job(s) left in squeue" % len(left),
        ", ".join("%s %d" % kv for kv in sorted(states.items())) if states else "?",
        "?" if other_jobs is None else other_jobs))
    return res


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------

COLUMNS = ["engine", "n", "rc", "wall_s", "outputs_s", "main_maxrss_mb", "tree_peak_rss_mb", "tree_peak_procs",
           "peak_sbatch_procs"] + list(SLURM_CMDS) + ["apptainer", "correct", "squeue_after_exit",
                                                     "status_calls", "status_bound", "load1", "other_jobs"]


def cell(res, col):
    if col in SLURM_CMDS:
        return str(res["calls"][col])
    if col == "apptainer":  # engine side / job side (the stand-in is installed as apptainer and singularity)
        js = res["job_side_calls"].get("apptainer", 0) + res["job_side_calls"].get("singularity", 0)
        return "%d+%d" % (res["containers"], js)
    if col == "correct":
        return "yes" if res["correct"] else "no"
    if col == "load1":
        return "%.1f" % res["load1_at_start"]
    if col == "wall_s":
        return "%.2f" % res["wall_s"]
    v = res.get(col)
    return "-" if v is None else str(v)


def print_table(results):
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in results:
        print("| " + " | ".join(cell(r, c) for c in COLUMNS) + " |")


def print_floor_ratios(results):
    """Each engine's wall time as a multiple of the bare-sbatch floor at the same N (at N >= BIG_N
    the floor is estimated as N/1000 times the floor at 1000)."""
    floors = {r["n"]: r["wall_s"] for r in results if r["engine"] == "floor" and r["correct"]}
    for r in results:
        if r["engine"] == "floor":
            continue
        floor, how = floors.get(r["n"]), "measured"
        if floor is None and 1000 in floors and r["n"] >= BIG_N:
            floor, how = floors[1000] * r["n"] / 1000.0, "estimated from N=1000"
        ratio = "%.2fx the floor (%.2f s, %s)" % (r["wall_s"] / floor, floor, how) if floor else "no floor"
        extra = ""
        if r["engine"] in SPROCKETS:
            extra = "; %d sbatch calls; %d status calls (%.2f per minute; bound %.1f); submit side %.1f MB peak" % (
                r["calls"]["sbatch"], r["status_calls"], r["status_calls_per_min"] or 0, r["status_bound"],
                r["tree_peak_rss_mb"])
        if r.get("outputs_s") and floor:
            extra = "; outputs after %.2f s (%.2fx the floor)%s" % (r["outputs_s"], r["outputs_s"] / floor, extra)
        print("%s N=%d: %.2f s, %s%s" % (r["engine"], r["n"], r["wall_s"], ratio, extra))


def verdict(results, interval, sizes):
    big = 1000 if 1000 in sizes else max(sizes)
    spr = [r for r in results if r["engine"] == "sprocket"]
    s = next((r for r in spr if r["n"] == big), None)
    m = next((r for r in results if r["engine"] == "miniwdl" and r["n"] == big), None)
    note = "" if big == 1000 else " (1000 not in --sizes; shown at the largest N)"
    print("verdict at N=%d%s, interval %g s:" % (big, note, interval))
    if s is None:
        print("  sprocket did not run at N=%d" % big)
        return
    ok = lambda b: "PASS" if b else "MISS"
    if not s["correct"]:
        print("  sprocket run FAILED (%s): %s; the targets below describe a failed run" % (s["run_dir"], s["problem"]))
    if m is not None and m["correct"]:
        ref, src = m["wall_s"], "miniwdl-slurm measured in this run"
    elif big in PEERS_MINIWDL_WALL:
        ref = PEERS_MINIWDL_WALL[big]
        src = "miniwdl-slurm from shared/bench/slurm-peers/RESULTS.md" + (
            "; this run's miniwdl failed" if m is not None else "; miniwdl not run here")
    else:
        ref, src = None, "no miniwdl-slurm figure at this N"
    if ref is None:
        print("  wall time <= miniwdl-slurm's: %.2f s vs ? (%s)  n/a" % (s["wall_s"], src))
    else:
        print("  wall time <= miniwdl-slurm's: %.2f s vs %.2f s (%s)  %s" % (s["wall_s"], ref, src, ok(s["wall_s"] <= ref)))
    print("  submit-side peak RSS < %g MB: %.1f MB (at that sample, MB: %s; plain sum counting forked "
          "children again: %.1f MB; engine process's own max RSS %.1f MB)  %s" % (
              TARGET_TREE_MB, s["tree_peak_rss_mb"],
              ", ".join("%s %g" % kv for kv in sorted(s["mb_by_comm_at_peak_rss"].items())),
              s["tree_peak_rss_plain_mb"], s["main_maxrss_mb"], ok(s["tree_peak_rss_mb"] < TARGET_TREE_MB)))
    print("  submit-side peak processes < %d: %d (%s)  %s" % (
        TARGET_PROCS, s["tree_peak_procs"],
        ", ".join("%s %d" % kv for kv in sorted(s["by_comm_at_peak_procs"].items())), ok(s["tree_peak_procs"] < TARGET_PROCS)))
    print("  status calls <= wall/interval + %d: %d (sacct %d, squeue %d, scontrol %d) vs %.1f  %s" % (
        STATUS_SLACK, s["status_calls"], s["calls"]["sacct"], s["calls"]["squeue"], s["calls"]["scontrol"],
        s["status_bound"], ok(s["status_calls"] <= s["status_bound"])))
    within = all(r["status_calls"] <= r["status_bound"] for r in spr)
    per_n = ", ".join("N=%d: %d calls in %.0f s (%.2f per interval)" % (
        r["n"], r["status_calls"], r["wall_s"], r["status_calls"] * interval / r["wall_s"] if r["wall_s"] else 0)
        for r in spr)
    print("  status calls independent of N (within the bound at every N): %s  %s" % (per_n, ok(within)))
    print("  jobs left in squeue right after exit: %s" % (", ".join(
        "N=%d: %s" % (r["n"], "-" if r["squeue_after_exit"] is None else r["squeue_after_exit"]) for r in spr)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,1000", help="comma-separated scatter widths N (default 10,1000); from "
                    "N = %d on only sprocket and sprocket-noarrays run" % BIG_N)
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help="comma-separated subset of floor (bare sbatch), sprocket (job arrays on, the default), "
                    "sprocket-noarrays (job_arrays = false), miniwdl")
    ap.add_argument("--interval", type=int, default=None,
                    help="sprocket's run.backends.default.interval in s (default: not set, sprocket's default %d)"
                    % DEFAULT_INTERVAL)
    ap.add_argument("--scatter-concurrency", type=int, default=None,
                    help="sprocket's run.backends.default.max_scatter_concurrency (default: not set, sprocket's "
                    "default 200, which also caps an array at 200 elements; 1000 lets max_queued_jobs bind)")
    ap.add_argument("--work", default="/tmp/sprocket-slurm-scale",
                    help="scratch dir: wrappers, image caches, run dirs (default /tmp/sprocket-slurm-scale)")
    ap.add_argument("--slurm-dir", default=os.environ.get("SLURM_DIR", "/tmp/slurm-dev"),
                    help="cluster state dir when $SLURM_CONF is unset, and where to start one if sinfo fails "
                         "(default $SLURM_DIR or /tmp/slurm-dev)")
    ap.add_argument("--cancel-all", action="store_true",
                    help="between runs cancel ALL of this user's Slurm jobs (default: only jobs submitted from under --work)")
    ap.add_argument("--drain-wait", type=int, default=120,
                    help="seconds to wait before each run for other jobs to leave the queue (default 120)")
    ap.add_argument("--script", action="store_true",
                    help="run `python3 sprocket.py` instead of the launcher `sprocket.py install` writes")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds before a run is killed (default 1800)")
    ap.add_argument("--sample-ms", type=float, default=500.0, help="process-tree sampling period in ms (default 500)")
    args = ap.parse_args(argv)

    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error("--sizes must be comma-separated integers, not %r" % args.sizes)
    if not sizes or min(sizes) < 1:
        ap.error("--sizes needs at least one N, each at least 1")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        ap.error("--engines must be a comma-separated subset of %s" % ",".join(ENGINES))
    engines = [e for e in ENGINES if e in engines]  # the floor first for each N
    if args.scatter_concurrency is not None and args.scatter_concurrency < 1:
        ap.error("--scatter-concurrency must be at least 1")
    if args.interval is not None and args.interval < 1:
        ap.error("--interval must be at least 1")
    interval = args.interval or DEFAULT_INTERVAL

    shared = shared_dir()
    peers = os.path.join(shared, "bench", "slurm-peers")
    wdl = os.path.join(peers, "wdl", "scatter.wdl")
    miniwdl_cfg = os.path.join(peers, "miniwdl.cfg")
    for path in (SPROCKET, wdl, miniwdl_cfg):
        if not os.path.isfile(path):
            print("error: %s not found (shared/ is %s; set SPROCKET_SHARED)" % (path, shared), file=sys.stderr)
            return 2
    if not os.path.isdir("/proc/self"):
        print("error: /proc is needed to sample the process tree (Linux only)", file=sys.stderr)
        return 2
    if "miniwdl" in engines:
        try:
            ensure_venv(["miniwdl", "miniwdl-slurm"], [MINIWDL])
        except (OSError, subprocess.CalledProcessError) as e:
            print("error: could not set up miniwdl and miniwdl-slurm in %s: %s" % (VENV, e), file=sys.stderr)
            return 2
    err = ensure_cluster(shared, os.path.abspath(args.slurm_dir))
    if err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    work = os.path.abspath(args.work)
    bin_dir = os.path.join(work, "bin")
    os.makedirs(os.path.join(work, "runs"), exist_ok=True)
    err = write_bin(bin_dir, shared)
    if err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    sprocket_cfg = {}
    for engine, extra in (("sprocket", ""), ("sprocket-noarrays", "run.backends.default.job_arrays = false\n")):
        sprocket_cfg[engine] = os.path.join(work, "%s.toml" % engine)
        with open(sprocket_cfg[engine], "w") as f:
            f.write(SPROCKET_CFG.format(cache=json.dumps(os.path.join(work, "sif-cache")), extra=extra + (
                "run.backends.default.interval = %d\n" % args.interval if args.interval else "") + (
                "run.backends.default.max_scatter_concurrency = %d\n" % args.scatter_concurrency
                if args.scatter_concurrency else "")))
    floor = os.path.join(work, "floor.py")
    with open(floor, "w") as f:
        f.write(FLOOR_SCRIPT)

    code, sacct_out, sacct_err = slurm(["sacct", "-n", "-X", "-S", "now-1minutes", "-o", "JobID"], timeout=30)
    _, nodes, _ = slurm(["sinfo", "-h", "-N", "-o", "%N %c %t"])
    nodes = "; ".join(sorted(set(line.strip() for line in nodes.splitlines() if line.strip())))
    print("python:    %s (%s)" % (sys.executable, sys.version.split()[0]))
    sprocket = [sys.executable, SPROCKET]
    if not args.script and any(e in SPROCKETS for e in engines):
        subprocess.run([sys.executable, SPROCKET, "install", os.path.join(work, "install")], check=True,
                       stdout=subprocess.DEVNULL)
        sprocket = [os.path.join(work, "install", "sprocket")]
    print("sprocket:  %s (%s)" % (tool_version(sprocket + ["--version"]), " ".join(sprocket)))
    if "miniwdl" in engines:
        probe = "import importlib.metadata as m; print(m.version('miniwdl-slurm'))"
        print("miniwdl:   %s + miniwdl-slurm %s (config %s)" % (
            tool_version([MINIWDL, "--version"]), tool_version([VENV_PYTHON, "-c", probe]), miniwdl_cfg))
    print("slurm:     %s; SLURM_CONF=%s; node(s): %s; sacct %s" % (
        tool_version([real_slurm("sinfo"), "--version"]), os.environ.get("SLURM_CONF"),
        nodes + " (name cpus state)",
        "works" if code == 0 else "FAILS (%s)" % sacct_err.strip()))
    print("machine:   %d cpu(s), load %.2f (1-minute average before starting)" % (os.cpu_count() or 1, os.getloadavg()[0]))
    print("workload:  %s, N = %s; engines %s, interleaved per N" % (wdl, ", ".join(map(str, sizes)), ", ".join(engines)))
    print("sprocket:  config %s (interval = %d s%s)" % (sprocket_cfg["sprocket"], interval, "" if args.interval else ", the default"))
    print("work dir:  %s (wrappers in %s)" % (work, bin_dir))
    print(flush=True)

    ctx = {"work": work, "bin": bin_dir, "sprocket": sprocket, "wdl": wdl, "miniwdl_cfg": miniwdl_cfg, "sprocket_cfg": sprocket_cfg,
           "interval": interval, "floor": floor, "timeout": args.timeout, "period": args.sample_ms / 1000.0,
           "cancel_all": args.cancel_all, "drain": args.drain_wait}
    results = []
    try:
        for n in sizes:
            for engine in engines:
                if n < BIG_N or engine.startswith("sprocket"):  # the floor and miniwdl are estimated or left out there
                    results.append(run_engine(engine, n, ctx))
    finally:
        quiesce(work, args.cancel_all, drain=0)  # leave none of our jobs behind
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")

    print()
    print_table(results)
    print()
    print_floor_ratios(results)
    print()
    print("wall_s: spawn to exit of the engine; outputs_s: spawn to sprocket's outputs.json (its outputs printed); main_maxrss_mb: the engine process's own max RSS; tree_*: peak over "
          "%g s samples of the summed RSS / number of processes of the engine and its descendants (submit side; "
          "a child forked but not yet exec'd shares its parent's pages and is not added to the RSS); "
          "peak_sbatch_procs: most sbatch processes alive in one sample; sbatch..sinfo: engine-side calls through "
          "the counting wrappers; apptainer: engine-side + job-side calls of the stand-in (apptainer or singularity); "
          "squeue_after_exit: the run's jobs in squeue right after the engine exited; status_calls (sprocket): "
          "sacct + squeue + scontrol, vs status_bound = wall/interval + %d; load1: 1-minute load average at the "
          "start; other_jobs: jobs not from this script that Slurm ran during the run (per sacct; they compete "
          "for the node)." % (args.sample_ms / 1000.0, STATUS_SLACK))
    stray = [(r["engine"], r["n"], r["job_side_calls"]) for r in results
             if any(c in SLURM_CMDS for c in r["job_side_calls"])]
    print("Slurm commands called from inside jobs (not counted above): %s" % (
        "none" if not stray else "; ".join("%s n=%d %s" % s for s in stray)))
    print("run dirs: %s/runs/ENGINE-nN (results.json in %s)" % (work, work))
    print()
    verdict(results, interval, sizes)
    failed = [r for r in results if not r["correct"]]
    if failed:
        print()
        for r in failed:
            print("FAILED: %s n=%d: %s (%s)" % (r["engine"], r["n"], r["problem"], r["run_dir"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
