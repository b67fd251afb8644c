"""The slurm_apptainer backend on a real Slurm cluster (shared/reference/sprocket-behaviour.md section 5,
the seed's "Running Sprocket on a Slurm cluster" walkthrough).

Every test runs the real program (`sprocket.py run -s -c <sprocket.toml>`) against the cluster named
by $SLURM_CONF, with the Apptainer stand-in (shared/slurm/apptainer-double) as `apptainer`. The double
logs each call as one JSON line to $APPTAINER_DOUBLE_LOG, so the tests can see the exact `pull` and
`exec` calls (binds, --pwd, flags) that the generated `apptainer_command` scripts made inside the jobs.

Requirements, else the module skips with the reason:

* `sbatch` on PATH and `sinfo` answering within a few seconds (SLURM_CONF exported);
* the apptainer double: $SPROCKET_TEST_APPTAINER_DOUBLE, ../shared/slurm/apptainer-double, or an
  `apptainer` on PATH whose --version says "+double". It is copied into a per-session bin directory
  put first on PATH (also as `singularity`, a wrapper that logs to $APPTAINER_DOUBLE_LOG.singularity).

Site knobs: SPROCKET_TEST_SLURM_PARTITION (default "compute"), SPROCKET_TEST_SLURM_SHORT_PARTITION
("short", MaxTime must allow 1 minute), SPROCKET_TEST_SLURM_GPU_PARTITION ("gpu"). The output
directories live under pytest's tmp_path, which must be on a filesystem the compute nodes share
(/tmp is fine on a one-node cluster; elsewhere use `pytest --basetemp=/shared/...`).

No test may leave a job of its own in the queue: the autouse `slurm_jobs` fixture collects the job ids
of the test (every attempts/*/job_id file under tmp_path, and any queued job whose batch script lives
under tmp_path), waits for them to leave the queue, and scancels and reports any still PENDING or
RUNNING after the test's sprocket processes have exited.

Some behaviours cannot be produced on the CI cluster (TaskPlugin=task/none, no cgroups, no GRES),
so a few tests put small wrapper scripts first on PATH in front of the real Slurm commands; each
such test says why. Wrapper scripts log each call (argv, start and end time, exit status) as JSON.
"""

import functools
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, RUN_DIR_RE, db_rows, shared_dir, sprocket_argv, wait_for

PART = os.environ.get("SPROCKET_TEST_SLURM_PARTITION", "compute")
SHORT_PART = os.environ.get("SPROCKET_TEST_SLURM_SHORT_PARTITION", "short")
GPU_PART = os.environ.get("SPROCKET_TEST_SLURM_GPU_PARTITION", "gpu")
TOOLS = ("sbatch", "sacct", "squeue", "scontrol", "scancel")
REAL = {tool: shutil.which(tool) for tool in TOOLS + ("sinfo",)}
LIVE_STATES = ("PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
               "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD")


def _cluster_problem():
    if REAL["sbatch"] is None:
        return "`sbatch` is not on PATH: these tests need a Slurm submit host (export SLURM_CONF)"
    if REAL["sinfo"] is None:
        return "`sinfo` is not on PATH"
    try:
        p = subprocess.run([REAL["sinfo"], "-h"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "`sinfo` did not answer within 5 s: no reachable Slurm controller"
    if p.returncode != 0:
        return "`sinfo` failed (exit %d): %s" % (p.returncode, p.stderr.strip()[:300])
    missing = [t for t in TOOLS if REAL[t] is None]
    if missing:
        return "Slurm client commands missing from PATH: %s" % ", ".join(missing)
    return None


_PROBLEM = _cluster_problem()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM))]


# --------------------------------------------------------------------------------------------
# helpers: the apptainer double, wrappers, configs, running sprocket
# --------------------------------------------------------------------------------------------


def _find_double():
    env = os.environ.get("SPROCKET_TEST_APPTAINER_DOUBLE")
    if env and os.path.isfile(env):
        return env
    shared = shared_dir()
    if shared is not None and (shared / "slurm" / "apptainer-double").is_file():
        return str(shared / "slurm" / "apptainer-double")
    found = shutil.which("apptainer")
    if found:
        try:
            out = subprocess.run([found, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 universal_newlines=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        if "double" in out:
            return found
    return None


def _write_exec(path, text):
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(scope="session")
def double_bin(tmp_path_factory):
    """A directory holding `apptainer` (the double) and `singularity` (the double, logging elsewhere)."""
    src = _find_double()
    if src is None:
        pytest.skip("the apptainer double (shared/slurm/apptainer-double) is not available; these tests "
                    "assert on its call log (set SPROCKET_TEST_APPTAINER_DOUBLE)")
    d = tmp_path_factory.mktemp("double-bin")
    shutil.copy(src, str(d / "apptainer"))
    (d / "apptainer").chmod(0o755)
    _write_exec(d / "singularity", textwrap.dedent("""\
        #!/bin/sh
        # the double again, logging to $APPTAINER_DOUBLE_LOG.singularity so tests see which name ran
        if [ -n "$APPTAINER_DOUBLE_LOG" ]; then
            APPTAINER_DOUBLE_LOG="$APPTAINER_DOUBLE_LOG.singularity"; export APPTAINER_DOUBLE_LOG
        fi
        exec %s "$@"
        """ % shlex.quote(str(d / "apptainer"))))
    return d


# A wrapper in front of a real Slurm command: logs each call as JSON (tool, argv, start, end, rc, n =
# 0-based call number) to LOG and runs the real command, optionally after failing the first calls,
# sleeping, dropping arguments, or rewriting sacct's answer.
_WRAPPER = r'''#!%(python)s
import fcntl, json, os, subprocess, sys, time
TOOL = %(tool)r
REAL = %(real)r
LOG = %(log)r
OPTS = %(opts)r


def call_number():
    with open(LOG + "." + TOOL + ".count", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = len(f.read())
        f.write("x")
        return n


def formats(args):
    for i, a in enumerate(args):
        if a in ("--format", "-o") and i + 1 < len(args):
            return args[i + 1].split(",")
        if a.startswith("--format="):
            return a.split("=", 1)[1].split(",")
    return ["JobID", "State", "ExitCode"]


def job_ids(args):
    for i, a in enumerate(args):
        if a in ("-j", "--jobs") and i + 1 < len(args):
            return [x for x in args[i + 1].split(",") if x]
        if a.startswith("--jobs="):
            return [x for x in a.split("=", 1)[1].split(",") if x]
    return []


def rewrite_sacct(args, mode):
    """sacct's answer, changed: mode `pending` reports every job PENDING with reason PartitionConfig;
    `oom` turns every ended job into OUT_OF_MEMORY 0:125; `node_fail_first` turns the first job
    ever asked about into NODE_FAIL once it has ended."""
    cols = [c.split("%%")[0].lower() for c in formats(args)]
    if mode == "pending":
        values = {"jobid": None, "state": "PENDING", "exitcode": "0:0", "reason": "PartitionConfig"}
        for jid in job_ids(args):
            sys.stdout.write("|".join(jid if c == "jobid" else values.get(c, "") for c in cols) + "\n")
        return 0
    p = subprocess.run([REAL] + args, stdout=subprocess.PIPE, universal_newlines=True)
    first = None
    if mode == "node_fail_first":
        with open(LOG + ".first", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            first = f.read().strip()
            if not first and job_ids(args):
                first = job_ids(args)[0]
                f.write(first)
    ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
    for line in p.stdout.splitlines():
        f = line.split("|")
        if len(f) == len(cols) and "state" in cols and "." not in f[cols.index("jobid")]:
            i = cols.index("state")
            if f[i].split()[0] in ended and (mode == "oom" or f[cols.index("jobid")] == first):
                f[i] = "OUT_OF_MEMORY" if mode == "oom" else "NODE_FAIL"
                if "exitcode" in cols:
                    f[cols.index("exitcode")] = "0:125" if mode == "oom" else "0:0"
        sys.stdout.write("|".join(f) + "\n")
    return p.returncode


start = time.time()
n = call_number()
args = sys.argv[1:]
sys.stdout.flush()
if n < OPTS.get("fail_first", 0):
    sys.stderr.write(OPTS["fail_text"] + "\n")
    rc = OPTS.get("fail_rc", 1)
elif n < OPTS.get("lose_answer_first", 0):  # the command works but its answer is lost on the way back
    subprocess.call([REAL] + args, stdout=subprocess.DEVNULL)
    sys.stderr.write(OPTS["fail_text"] + "\n")
    rc = 1
elif OPTS.get("disabled"):
    sys.stderr.write("sacct: error: Slurm accounting storage is disabled\n")
    rc = 1
else:
    if OPTS.get("sleep"):
        time.sleep(OPTS["sleep"])
    if OPTS.get("sacct_mode"):
        rc = rewrite_sacct(args, OPTS["sacct_mode"])
    else:
        drop = tuple(OPTS.get("drop", ()))
        rc = subprocess.call([REAL] + [a for a in args if not (drop and a.startswith(drop))])
end = time.time()
with open(LOG, "a") as f:
    f.write(json.dumps({"tool": TOOL, "argv": args, "start": start, "end": end, "rc": rc, "n": n}) + "\n")
sys.exit(rc)
'''


class Result:
    def __init__(self, proc, out_dir, elapsed):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.out_dir = Path(out_dir)
        self.elapsed = elapsed
        m = RUN_DIR_RE.search(self.stderr or "")
        self.run_dir = Path(m.group(1).strip()) if m else None

    @property
    def outputs(self):
        assert self.rc == 0, self.describe()
        return json.loads(self.stdout)

    def describe(self):
        return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (self.rc, self.stdout[-3000:], self.stderr[-6000:])

    def job_ids(self):
        return sorted({p.read_text().strip() for p in self.out_dir.rglob("job_id")},
                      key=lambda i: [int(x) for x in i.split("_")])  # `12_3`: element 3 of array 12

    def attempt_dirs(self):
        return sorted(p.parent for p in self.out_dir.rglob("apptainer_command"))

    def db_rows(self, sql, args=()):
        return db_rows(self.out_dir / "sprocket.db", sql, args)


class Cluster:
    """Per-test helper: writes configs and WDL, puts wrappers on PATH, runs sprocket."""

    def __init__(self, tmp_path, double_bin):
        self.tmp = tmp_path
        self.double_bin = double_bin
        self.wrap_bin = tmp_path / "wrap-bin"
        self.wrap_log = tmp_path / "slurm-calls.log"
        self.double_log = tmp_path / "apptainer-double.log"
        self.procs = []
        self.env = dict(os.environ)
        for k in ("SPROCKET_CONFIG", "APPTAINER_DOUBLE_PULL_FAIL", "APPTAINER_DOUBLE_MODE"):
            self.env.pop(k, None)
        self.env.update(SPROCKET_CONFIG_ROOT=str(tmp_path / "config-root"), XDG_CACHE_HOME=str(tmp_path / "cache-home"),
                        APPTAINER_DOUBLE_LOG=str(self.double_log), PYTHONDONTWRITEBYTECODE="1")
        self.env["PATH"] = os.pathsep.join([str(self.wrap_bin), str(double_bin), os.environ.get("PATH", "")])
        self.n_out = 0

    # -- files --------------------------------------------------------------------------------
    def config(self, extra="", partition=PART, interval=1, name="sprocket.toml", backend="slurm_apptainer"):
        lines = ["run.experimental_features_enabled = true", 'run.backends.default.type = "%s"' % backend]
        if backend == "slurm_apptainer":
            if partition:
                lines.append('run.backends.default.default_slurm_partition.name = "%s"' % partition)
            if interval is not None:
                lines.append("run.backends.default.interval = %d" % interval)
        path = self.tmp / name
        path.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra), encoding="utf-8")
        return path

    def wdl(self, source, name="main.wdl"):
        path = self.tmp / name
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
        return path

    def wrap(self, tool, **opts):
        """Put a logging wrapper for `tool` first on PATH (see _WRAPPER for opts)."""
        self.wrap_bin.mkdir(exist_ok=True)
        _write_exec(self.wrap_bin / tool, _WRAPPER % dict(python=sys.executable, tool=tool, real=REAL[tool],
                                                          log=str(self.wrap_log), opts=opts))

    def calls(self, tool=None):
        if not self.wrap_log.exists():
            return []
        calls = [json.loads(line) for line in self.wrap_log.read_text().splitlines() if line.strip()]
        return [c for c in calls if tool is None or c["tool"] == tool]

    def double_calls(self, cmd=None, log=None):
        path = Path(log or self.double_log)
        if not path.exists():
            return []
        calls = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [c for c in calls if cmd is None or c["cmd"] == cmd]

    # -- running -----------------------------------------------------------------------------
    def argv(self, wdl, inputs=(), cfg=None, target=None, out=None):
        if out is None:
            self.n_out += 1
            out = self.tmp / ("out%d" % self.n_out)
        argv = sprocket_argv("run", "-s", "-c", str(cfg or self.config()), str(wdl), "-o", str(out))
        if target:
            argv += ["--target", target]
        return argv + [str(i) for i in inputs], Path(out)

    def run(self, wdl, *inputs, cfg=None, target=None, out=None, env=None, timeout=240):
        argv, out = self.argv(wdl, inputs, cfg, target, out)
        start = time.time()
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              env=env or self.env, cwd=str(self.tmp), timeout=timeout)
        return Result(proc, out, time.time() - start)

    def start(self, wdl, *inputs, cfg=None, target=None, out=None, env=None):
        argv, out = self.argv(wdl, inputs, cfg, target, out)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                env=env or self.env, cwd=str(self.tmp), start_new_session=True)
        proc.out_dir, proc.started = out, time.time()
        self.procs.append(proc)
        return proc

    def finish(self, proc, timeout=240):
        stdout, stderr = proc.communicate(timeout=timeout)
        return Result(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), proc.out_dir,
                      time.time() - proc.started)


# most predicates here ask slurmctld (squeue, sacct): poll at half conftest's rate
wait_for = functools.partial(wait_for, interval=0.1)


def squeue_states(ids=None):
    """{job id: Job} for every job the controller holds (finished ones too, for MinJobAge); an
    array's elements each as `<array id>_<index>`."""
    p = subprocess.run([REAL["squeue"], "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%P|%j|%o"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    out, rows = {}, {}
    for line in p.stdout.decode("utf-8", "replace").splitlines():
        f = line.split("|", 5)
        if len(f) == 6:
            rows[f[0]] = f
            if ids is None or f[0] in ids:
                out[f[0]] = Job(*f)
    # The elements of an array that never started are, once canceled, one record under the
    # array's own id.
    for job_id in ids or ():
        head = job_id.partition("_")[0]
        if job_id not in out and head != job_id and head in rows:
            out[job_id] = Job(job_id, *rows[head][1:])
    return out


class Job:
    def __init__(self, job_id, state, reason, partition, name, script):
        self.id, self.state, self.reason, self.partition, self.name, self.script = (
            job_id, state, reason, partition, name, script)

    def __repr__(self):
        return "<job %s %s (%s) %s %s>" % (self.id, self.state, self.reason, self.partition, self.name)


def sacct_rows(ids, fields="JobID,State,ExitCode,Submit,Start,End"):
    """{job id: {field: value}} from the real sacct (job level only). Right after a job ends sacct
    may still show a placeholder record (JobName `allocation`, no partition): use squeue for those."""
    if not ids:
        return {}
    p = subprocess.run([REAL["sacct"], "-X", "-P", "-n", "--format", fields, "-j", ",".join(ids)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    names = fields.split(",")
    return {f[0]: dict(zip(names, f)) for f in (line.split("|") for line in p.stdout.splitlines()) if f[0] in ids}


def wait_job_ended(job_id, timeout=30):
    """The controller's record of a job once it has ended."""
    def ended():
        job = squeue_states({job_id}).get(job_id)
        return job if job and job.state not in LIVE_STATES + ("COMPLETING",) else None
    return wait_for(ended, timeout, "job %s to end" % job_id, interval=0.3)


@pytest.fixture
def sl(tmp_path, double_bin):
    return Cluster(tmp_path, double_bin)


@pytest.fixture(autouse=True)
def slurm_jobs(tmp_path, sl):
    """Every job this test submitted must be out of the queue when it ends; leftovers are scancelled."""
    seen = set()
    yield seen
    killed = False
    for proc in sl.procs:
        if proc.poll() is None:
            killed = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.communicate()
    root = str(tmp_path)
    seen.update(p.read_text().strip() for p in tmp_path.rglob("job_id"))

    def live():
        states = squeue_states()
        ours = {i: j for i, j in states.items() if i in seen or j.script.startswith(root)}
        seen.update(ours)
        return {i: j for i, j in ours.items() if j.state in LIVE_STATES + ("COMPLETING",)}

    left = live()
    deadline = time.time() + 30
    while left and all(j.state == "COMPLETING" for j in left.values()) and time.time() < deadline:
        time.sleep(0.5)
        left = live()
    if left:
        subprocess.run([REAL["scancel"]] + sorted(left), timeout=60)
        if not killed:
            pytest.fail("the test left Slurm jobs in the queue (now scancelled): %s" % sorted(left.values(), key=lambda j: j.id))


HELLO_SLEEP = """\
version 1.3

task say_hello {
    input {
        String greeting
    }

    command <<<
        sleep 3
        echo "~{greeting}, world!"
    >>>

    output {
        String message = read_string(stdout())
    }

    requirements {
        container: "ubuntu:latest"
    }
}
"""

# The seed's sprocket.toml (its uncommented lines), with the partition adapted and interval = 1 so
# the test does not wait the default 30 s between status queries.
SEED_CONFIG = """\
run.experimental_features_enabled = true
run.backends.default.type = "slurm_apptainer"
run.backends.default.default_slurm_partition.name = "%s"
run.backends.default.default_slurm_partition.max_cpu_per_task = 64
run.backends.default.default_slurm_partition.max_memory_per_task = "96 GB"
run.backends.default.interval = 1
"""


def read(path):
    return Path(path).read_text(encoding="utf-8")


def exec_calls_for(sl, attempt_dir, log=None):
    """The double's `exec` calls made by one attempt (matched by its command bind)."""
    cmd = os.path.realpath(str(Path(attempt_dir) / "command"))
    return [c for c in sl.double_calls("exec", log) if any(b[0] == cmd for b in c["binds"])]


# --------------------------------------------------------------------------------------------
# 1. the seed walkthrough
# --------------------------------------------------------------------------------------------


def test_seed_walkthrough_runs_through_sbatch_like_the_local_backend(sl):
    hello = REPO / "examples" / "hello.wdl"
    cfg = sl.tmp / "seed.toml"
    cfg.write_text(SEED_CONFIG % PART)
    r = sl.run(hello, "greeting=Hello", cfg=cfg, target="say_hello")
    assert r.rc == 0, r.describe()
    assert r.outputs == {"say_hello.message": "Hello, world!"}
    local = sl.run(hello, "greeting=Hello", cfg=sl.config(backend="local", name="local.toml"), target="say_hello")
    assert local.outputs == r.outputs

    # the seed's run directory, plus the Slurm attempt files (reference section 3)
    assert r.run_dir is not None and r.run_dir.parent == r.out_dir / "runs" / "say_hello", r.describe()
    assert (r.out_dir / "sprocket.db").is_file() and (r.out_dir / "output.log").is_file()
    assert json.loads(read(r.run_dir / "inputs.json")) == {"say_hello.greeting": "Hello"}
    assert json.loads(read(r.run_dir / "outputs.json")) == r.outputs
    attempt = r.run_dir / "attempts" / "0"
    for name in ("command", "stdout", "stderr", "apptainer_command", "sbatch_command", "job_id", "slurm.stdout",
                 "slurm.stderr", "apptainer.stdout", "apptainer.stderr"):
        assert (attempt / name).is_file(), name
    assert (attempt / "work").is_dir()
    assert read(attempt / "stdout") == "Hello, world!\n"
    assert 'echo "Hello, world!"' in read(attempt / "command")

    # it really ran as that Slurm job, through `apptainer exec` of the pulled image
    job_id = read(attempt / "job_id")
    assert re.match(r"^\d+\n$", job_id), job_id
    job = wait_job_ended(job_id.strip())
    assert job.state == "COMPLETED" and job.partition == PART and job.script == str(attempt / "apptainer_command"), job
    assert sacct_rows([job.id])[job.id]["ExitCode"] == "0:0"
    assert shlex.split(read(attempt / "sbatch_command"))[0] == "sbatch"
    sif = r.run_dir / "apptainer-images" / "docker" / "ubuntu" / "latest.sif"
    assert sif.is_file() and read(sif).startswith("APPTAINER-DOUBLE-SIF")
    pulls = sl.double_calls("pull")
    assert [p["uri"] for p in pulls] == ["docker://ubuntu:latest"]
    execs = exec_calls_for(sl, attempt)
    assert len(execs) == 1 and execs[0]["image"] == str(sif), sl.double_calls()
    runs = r.db_rows("SELECT status, target FROM runs")
    assert runs == [{"status": "completed", "target": "say_hello"}]


def test_job_is_visible_in_squeue_while_the_task_runs(sl):
    wdl = sl.wdl(HELLO_SLEEP)
    proc = sl.start(wdl, "greeting=Hi", cfg=sl.config())
    job_file = wait_for(lambda: next(iter(proc.out_dir.rglob("job_id")), None), 60, "the job_id file")
    job_id = wait_for(lambda: job_file.read_text().strip(), 10, "the job id")
    job = squeue_states({job_id}).get(job_id)
    assert job is not None and job.state in ("PENDING", "RUNNING", "CONFIGURING"), job
    assert job.name.startswith("say_hello"), job
    listed = subprocess.run([REAL["squeue"], "-h", "-o", "%j"], stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert job.name in listed.split()
    assert job.script == str(job_file.parent / "apptainer_command")
    r = sl.finish(proc)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"say_hello.message": "Hi, world!"}
    assert wait_job_ended(job_id).state == "COMPLETED"


# --------------------------------------------------------------------------------------------
# 2. the sbatch command line (reference section 5.2)
# --------------------------------------------------------------------------------------------

TWO_SIZES = """\
version 1.2

task sized {
    input {
        String memory
        Float cpu
    }
    command <<<
        echo "~{memory}"
    >>>
    output {
        String out = read_string(stdout())
    }
    requirements {
        container: "ubuntu:latest"
        memory: memory
        cpu: cpu
    }
}

workflow w {
    call sized as big { input: memory = "2 GB", cpu = 1.5 }
    call sized as small { input: memory = "500 MB", cpu = 1 }
    output {
        String big_out = big.out
        String small_out = small.out
    }
}
"""


def sbatch_argv(sl, attempt_dir):
    """The argv the real sbatch got for one attempt (from the wrapper log), checked against the
    attempt's `sbatch_command` file."""
    script = str(Path(attempt_dir) / "apptainer_command")
    calls = [c for c in sl.calls("sbatch") if c["argv"] and c["argv"][-1] == script]
    assert len(calls) == 1, sl.calls("sbatch")
    argv = ["sbatch"] + calls[0]["argv"]
    assert shlex.split(read(Path(attempt_dir) / "sbatch_command")) == argv
    return argv


def test_sbatch_argument_order_extra_args_prefix_and_conditionals(sl):
    sl.wrap("sbatch")
    cfg = sl.config("""\
        run.backends.default.sbatch.args = ["--time=10", "--nice=0"]
        run.backends.default.extra_sbatch_args = ["--begin=now"]
        run.backends.default.job_name_prefix = "pfx"
        run.backends.default.sbatch.conditional = [
            { condition = "memory > 1000000000", args = ["--nice=1"] },
            { condition = "cpu < 100.0", args = ["--nice=2"] },
        ]
        """)
    r = sl.run(sl.wdl(TWO_SIZES), cfg=cfg)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.big_out": "2 GB", "w.small_out": "500 MB"}
    calls = r.run_dir / "calls"
    for call, cpus, mem, cond in (("big", 2, 1908, "--nice=1"), ("small", 1, 477, "--nice=2")):
        adir = calls / call / "attempts" / "0"
        argv = sbatch_argv(sl, adir)
        # 2 GB = 2e9 bytes = 1907.35 MiB -> 1908M; 500 MB -> 476.84 MiB -> 477M; cpu 1.5 -> 2
        assert argv[:7] == ["sbatch", "--partition", PART, "--time=10", "--nice=0", "--begin=now", cond], argv
        assert re.match(r"^--comment=sprocket:[a-z]+-[a-z]+-[0-9a-f]{6}:%s$" % call, argv[7]) and argv[8] == "--job-name"
        name = argv[9]
        assert re.match(r"^pfx-%s\b" % call, name), name
        assert argv[10:] == ["-o", str(adir / "slurm.stdout"), "-e", str(adir / "slurm.stderr"), "--ntasks=1",
                            "--cpus-per-task=%d" % cpus, "--mem=%dM" % mem, str(adir / "apptainer_command")], argv
        job = wait_job_ended(read(adir / "job_id").strip())
        assert job.state == "COMPLETED" and job.name == name and job.partition == PART, job


def test_cpu_and_memory_limits_of_the_partition(sl):
    wdl = sl.wdl("""\
        version 1.2
        task big {
            command <<< echo ok >>>
            output { String out = read_string(stdout()) }
            requirements { container: "ubuntu:latest"  cpu: 6  memory: "3 GiB" }
        }
        """)
    limits = """\
        run.backends.default.default_slurm_partition.max_cpu_per_task = 4
        run.backends.default.default_slurm_partition.max_memory_per_task = "1 GiB"
        """
    denied = sl.run(wdl, cfg=sl.config(limits, name="deny.toml"))
    assert denied.rc == 1, denied.describe()
    assert "requires at least 6 CPU" in denied.stderr and "maximum of 4" in denied.stderr, denied.describe()
    assert denied.job_ids() == []
    sl.wrap("sbatch")
    clamped = sl.run(wdl, cfg=sl.config(limits + """\
        run.task.cpu_limit_behavior = "try_with_max"
        run.task.memory_limit_behavior = "try_with_max"
        """, name="clamp.toml"))
    assert clamped.rc == 0, clamped.describe()
    argv = sbatch_argv(sl, clamped.run_dir / "attempts" / "0")
    assert "--cpus-per-task=4" in argv and "--mem=1024M" in argv, argv


GPU_TASK = """\
version 1.2

task gpu_task {
    command <<<
        echo gpu
    >>>
    output {
        String out = read_string(stdout())
    }
    requirements {
        container: "ubuntu:latest"
        gpu: true
    }
    hints {
        gpu: 2
    }
}

task short_task {
    command <<<
        echo short
    >>>
    output {
        String out = read_string(stdout())
    }
    requirements {
        container: "ubuntu:latest"
    }
    hints {
        short_task: true
    }
}

workflow w {
    call gpu_task
    call short_task
    output {
        String gpu = gpu_task.out
        String short = short_task.out
    }
}
"""


def _partition_exists(name):
    return subprocess.run([REAL["scontrol"], "show", "partition", name], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def test_gpu_and_short_task_partitions(sl):
    for name in (GPU_PART, SHORT_PART):
        if not _partition_exists(name):
            pytest.skip("partition `%s` does not exist on this cluster" % name)
    # The CI cluster has no GPUs (no GRES), so the real sbatch refuses --gpus-per-task: the wrapper
    # records the argv sprocket passed and drops that one argument before submitting.
    sl.wrap("sbatch", drop=["--gpus-per-task"])
    cfg = sl.config("""\
        run.backends.default.gpu_slurm_partition.name = "%s"
        run.backends.default.short_task_slurm_partition.name = "%s"
        run.backends.default.sbatch.args = ["--nice=0"]
        """ % (GPU_PART, SHORT_PART))
    r = sl.run(sl.wdl(GPU_TASK), cfg=cfg)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.gpu": "gpu", "w.short": "short"}
    gpu_dir = r.run_dir / "calls" / "gpu_task" / "attempts" / "0"
    short_dir = r.run_dir / "calls" / "short_task" / "attempts" / "0"
    gpu_argv = sbatch_argv(sl, gpu_dir)
    assert gpu_argv[:5] == ["sbatch", "--partition", GPU_PART, "--gpus-per-task=2", "--nice=0"]
    short_argv = sbatch_argv(sl, short_dir)
    assert short_argv[:4] == ["sbatch", "--partition", SHORT_PART, "--nice=0"]
    assert not any(a.startswith("--gpus") for a in short_argv)
    assert wait_job_ended(read(gpu_dir / "job_id").strip()).partition == GPU_PART
    assert wait_job_ended(read(short_dir / "job_id").strip()).partition == SHORT_PART
    # --nv for the GPU task only
    (gpu_exec,) = exec_calls_for(sl, gpu_dir)
    (short_exec,) = exec_calls_for(sl, short_dir)
    assert gpu_exec["nv"] is True and short_exec["nv"] is False
    assert "--nv" in read(gpu_dir / "apptainer_command") and "--nv" not in read(short_dir / "apptainer_command")


# --------------------------------------------------------------------------------------------
# 3. the `apptainer exec` call (reference section 5.8), seen by the double
# --------------------------------------------------------------------------------------------

ENV_VALUE = "two words, 'single' \"double\" $HOME `date` ü"

CONTAINED = r"""
version 1.2

task contained {
    input {
        File data
        env String GREETING
        env String DATA = data
    }
    command <<<
        set -u
        cat "$DATA" > copy.txt
        printf '%s' "$GREETING" > env.txt
        printf '%s' "${FROM_EXTRA:-unset}" > extra.txt
        if (echo more >> "$DATA") 2>/dev/null; then echo writable; else echo read-only; fi > input_mode.txt
        echo in-tmp > /tmp/t && cat /tmp/t > tmp.txt
        pwd > pwd.txt
        echo "to stderr" >&2
        echo "to stdout"
    >>>
    output {
        String copy = read_string("copy.txt")
        String env_value = read_string("env.txt")
        String extra = read_string("extra.txt")
        String input_mode = read_string("input_mode.txt")
        String tmp = read_string("tmp.txt")
        String pwd = read_string("pwd.txt")
        String out = read_string(stdout())
        String err = read_string(stderr())
    }
    requirements {
        container: "ubuntu:latest"
    }
}
"""


def check_contained(sl, r, data, log=None, env_prefix="APPTAINERENV_", executable="apptainer"):
    assert r.rc == 0, r.describe()
    assert r.outputs == {"contained.copy": "some data", "contained.env_value": ENV_VALUE, "contained.extra": "1",
                         "contained.input_mode": "read-only", "contained.tmp": "in-tmp",
                         "contained.pwd": "/mnt/task/work", "contained.out": "to stdout",
                         "contained.err": "to stderr"}
    adir = r.run_dir / "attempts" / "0"
    script = read(adir / "apptainer_command")
    assert re.search(r"^export %sGREETING=" % env_prefix, script, re.M), script
    assert re.search(r"^%s exec\b" % re.escape(executable), script, re.M), script
    (call,) = exec_calls_for(sl, adir, log)
    assert call["pwd"] == "/mnt/task/work" and call["containall"] and call["cleanenv"], call
    binds = {(dst, mode): src for src, dst, mode in call["binds"]}
    real = lambda p: os.path.realpath(str(p))
    assert binds.get(("/mnt/task/command", "ro")) == real(adir / "command"), call["binds"]
    assert binds.get(("/mnt/task/work", "rw")) == real(adir / "work"), call["binds"]
    assert binds.get(("/mnt/task/stdout", "rw")) == real(adir / "stdout"), call["binds"]
    assert binds.get(("/mnt/task/stderr", "rw")) == real(adir / "stderr"), call["binds"]
    assert ("/tmp", "rw") in binds and ("/var/tmp", "rw") in binds, call["binds"]
    assert binds[("/tmp", "rw")].startswith(real(r.run_dir)) and binds[("/var/tmp", "rw")].startswith(real(r.run_dir))
    # the input: bound read-only (itself or a directory holding it)
    ro = [src for (dst, mode), src in binds.items() if mode == "ro"]
    assert any(real(data) == s or real(data).startswith(s + os.sep) for s in ro), call["binds"]
    # extra args: --no-home from apptainer.extra_args, --env from the seed's extra_apptainer_exec_args
    assert call["no_home"] is True and call["env"] == {"FROM_EXTRA": "1"}, call
    return call


EXTRA_ARGS = """\
    run.backends.default.apptainer.extra_args = ["--no-home"]
    run.backends.default.extra_apptainer_exec_args = ["--env=FROM_EXTRA=1"]
    """


def test_apptainer_exec_flags_binds_extra_args_and_env(sl):
    data = sl.tmp / "inputs" / "data.txt"
    data.parent.mkdir()
    data.write_text("some data")
    r = sl.run(sl.wdl(CONTAINED), "data=%s" % data, "GREETING=%s" % ENV_VALUE, cfg=sl.config(EXTRA_ARGS))
    check_contained(sl, r, data)
    assert read(data) == "some data"


def test_singularity_executable(sl):
    data = sl.tmp / "data.txt"
    data.write_text("some data")
    cfg = sl.config(EXTRA_ARGS + 'run.backends.default.apptainer.executable = "singularity"\n')
    r = sl.run(sl.wdl(CONTAINED), "data=%s" % data, "GREETING=%s" % ENV_VALUE, cfg=cfg)
    sing_log = str(sl.double_log) + ".singularity"
    check_contained(sl, r, data, log=sing_log, env_prefix="SINGULARITYENV_", executable="singularity")
    assert "APPTAINERENV_" not in read(r.run_dir / "attempts" / "0" / "apptainer_command")
    assert [c["cmd"] for c in sl.double_calls(log=sing_log)] == ["pull", "exec"]
    assert sl.double_calls() == [], "`apptainer` ran although apptainer.executable = \"singularity\""


def test_output_dir_with_spaces_quotes_dollar_and_unicode(sl):
    weird = "out dir 'q' $x ü"
    data = sl.tmp / ("in dir 'q' $y ü") / "data file.txt"
    data.parent.mkdir()
    data.write_text("some data")
    out = sl.tmp / weird
    r = sl.run(sl.wdl(CONTAINED), "data=%s" % data, "GREETING=%s" % ENV_VALUE, cfg=sl.config(EXTRA_ARGS), out=out)
    check_contained(sl, r, data)
    assert str(r.run_dir).startswith(str(out) + os.sep)
    adir = r.run_dir / "attempts" / "0"
    assert read(adir / "stdout") == "to stdout\n"
    job = wait_job_ended(read(adir / "job_id").strip())
    assert job.state == "COMPLETED", job


# --------------------------------------------------------------------------------------------
# 4. images (reference section 5.7)
# --------------------------------------------------------------------------------------------

ECHO_TASK = """\
version 1.2

task echo_task {
    command <<<
        echo ok
    >>>
    output {
        String out = read_string(stdout())
    }
    requirements {
        container: "ubuntu:latest"
    }
}
"""


def test_image_cache_dir_is_shared_between_runs(sl):
    cache = sl.tmp / "sif cache"
    cfg = sl.config('run.backends.default.apptainer.image_cache_dir = "%s"\n' % cache)
    wdl = sl.wdl(ECHO_TASK)
    first = sl.run(wdl, cfg=cfg)
    second = sl.run(wdl, cfg=cfg)
    for r in (first, second):
        assert r.outputs == {"echo_task.out": "ok"}
        assert not (r.run_dir / "apptainer-images").exists()
    sif = cache / "docker" / "ubuntu" / "latest.sif"
    assert sif.is_file() and read(sif).startswith("APPTAINER-DOUBLE-SIF")
    pulls = sl.double_calls("pull")
    assert [c["uri"] for c in pulls] == ["docker://ubuntu:latest"], pulls  # once, by the first run
    assert os.path.dirname(pulls[0]["dest"]) == str(sif.parent)  # (into a temporary name, then renamed)
    assert [c["image"] for c in sl.double_calls("exec")] == [str(sif), str(sif)]


def test_local_sif_file_uri_and_container_array(sl):
    local = sl.tmp / "images" / "my image.sif"
    local.parent.mkdir()
    subprocess.run([str(sl.double_bin / "apptainer"), "pull", str(local), "docker://debian:12"], check=True,
                   env=dict(sl.env, APPTAINER_DOUBLE_LOG=str(sl.tmp / "setup.log")), stderr=subprocess.DEVNULL)
    wdl = sl.wdl("""\
        version 1.2

        task t {
            input {
                Array[String] container
            }
            command <<<
                echo ok
            >>>
            output {
                String out = read_string(stdout())
            }
            requirements {
                container: container
            }
        }

        workflow w {
            call t as local_path { input: container = ["%(local)s"] }
            call t as file_uri { input: container = ["file://%(local)s"] }
            call t as fallback { input: container = ["%(missing)s", "docker://ubuntu:latest"] }
            output {
                Array[String] outs = [local_path.out, file_uri.out, fallback.out]
            }
        }
        """ % dict(local=local, missing=sl.tmp / "images" / "missing.sif"))
    r = sl.run(wdl)
    assert r.outputs == {"w.outs": ["ok", "ok", "ok"]}, r.describe()
    pulled = r.run_dir / "apptainer-images" / "docker" / "ubuntu" / "latest.sif"
    assert [c["uri"] for c in sl.double_calls("pull")] == ["docker://ubuntu:latest"]
    images = {call: exec_calls_for(sl, r.run_dir / "calls" / call / "attempts" / "0")[0]["image"]
              for call in ("local_path", "file_uri", "fallback")}
    assert images == {"local_path": str(local), "file_uri": str(local), "fallback": str(pulled)}
    assert pulled.is_file()


def test_pull_failure_names_the_image(sl):
    r = sl.run(sl.wdl(ECHO_TASK), env=dict(sl.env, APPTAINER_DOUBLE_PULL_FAIL="1"))
    assert r.rc == 1, r.describe()
    assert "docker://ubuntu:latest" in r.stderr and "pull" in r.stderr, r.describe()
    assert "simulated network failure" in r.stderr, r.describe()
    assert "Traceback" not in r.stderr
    assert r.job_ids() == [] and not list(r.out_dir.rglob("sbatch_command"))
    assert r.db_rows("SELECT status FROM runs") == [{"status": "failed"}]


def test_two_runs_pulling_one_image_into_a_shared_cache_pull_once(sl):
    # a slow pull (2 s) so that the two runs really overlap while the image is being pulled
    slow = sl.tmp / "slow-bin"
    slow.mkdir()
    _write_exec(slow / "apptainer", '#!/bin/sh\nif [ "$1" = pull ]; then sleep 2; fi\nexec %s "$@"\n'
                % shlex.quote(str(sl.double_bin / "apptainer")))
    env = dict(sl.env, PATH=os.pathsep.join([str(slow), sl.env["PATH"]]))
    cache = sl.tmp / "cache"
    cfg = sl.config('run.backends.default.apptainer.image_cache_dir = "%s"\n' % cache)
    wdl = sl.wdl(ECHO_TASK)
    procs = [sl.start(wdl, cfg=cfg, env=env) for _ in range(2)]
    results = [sl.finish(p) for p in procs]
    for r in results:
        assert r.outputs == {"echo_task.out": "ok"}, r.describe()
    pulls = sl.double_calls("pull")
    assert len(pulls) == 1, pulls
    sif = cache / "docker" / "ubuntu" / "latest.sif"
    assert [c["image"] for c in sl.double_calls("exec")] == [str(sif)] * 2
    assert sorted(os.listdir(str(sif.parent))) in (["latest.sif"], ["latest.sif", "latest.sif.lock"])


# --------------------------------------------------------------------------------------------
# 5. status and faults, on the real cluster
# --------------------------------------------------------------------------------------------

EXIT_CODE_TASK = """\
version 1.2

task exits {
    input {
        Int code
        Int sleep = 0
    }
    command <<<
        sleep ~{sleep}
        echo "exiting with ~{code}"
        exit ~{code}
    >>>
    output {
        String out = read_string(stdout())
    }
    requirements {
        container: "ubuntu:latest"
        return_codes: [0, 3]
        memory: "100 MB"
    }
}
"""


def test_without_accounting_squeue_and_scontrol_give_the_exit_codes(sl):
    # sacct answers like a cluster with AccountingStorageType=accounting_storage/none
    sl.wrap("sacct", disabled=True)
    for tool in ("squeue", "scontrol"):
        sl.wrap(tool)
    wdl = sl.wdl(EXIT_CODE_TASK)
    cfg = sl.config()
    ok, bad = sl.start(wdl, "code=3", cfg=cfg), sl.start(wdl, "code=4", cfg=cfg)
    ok, bad = sl.finish(ok), sl.finish(bad)
    assert ok.rc == 0, ok.describe()
    assert ok.outputs == {"exits.out": "exiting with 3"}
    assert bad.rc == 1, bad.describe()
    assert "exit code 4" in bad.stderr or "exit status 4" in bad.stderr, bad.describe()
    assert sl.calls("sacct") and all(c["rc"] == 1 for c in sl.calls("sacct")), "sacct was never tried"
    for r in (ok, bad):
        (job_id,) = r.job_ids()
        assert any(job_id in c["argv"][-1].split(",") for c in sl.calls("squeue")), sl.calls("squeue")
    assert any("job" in c["argv"] and "show" in c["argv"] for c in sl.calls("scontrol")), sl.calls("scontrol")
    for r in (ok, bad):
        (job_id,) = r.job_ids()
        assert wait_job_ended(job_id).state == "FAILED", job_id
    assert bad.db_rows("SELECT status FROM runs") == [{"status": "failed"}]


def _wait_running(proc, timeout=60):
    job_file = wait_for(lambda: next(iter(proc.out_dir.rglob("job_id")), None), timeout, "a job_id file")
    job_id = wait_for(lambda: job_file.read_text().strip(), 10, "the job id")
    wait_for(lambda: getattr(squeue_states({job_id}).get(job_id), "state", None) == "RUNNING", timeout,
             "job %s to run" % job_id, interval=0.2)
    return job_id


def test_job_scancelled_from_outside_fails_the_run(sl):
    proc = sl.start(sl.wdl(EXIT_CODE_TASK), "code=0", "sleep=60", cfg=sl.config())
    job_id = _wait_running(proc)
    subprocess.run([REAL["scancel"], job_id], check=True)
    r = sl.finish(proc, timeout=60)
    assert r.rc == 1, r.describe()
    assert re.search(r"cancel+ed", r.stderr, re.I) and job_id in r.stderr, r.describe()
    assert r.elapsed < 40, "the cancellation took %.0f s to be noticed" % r.elapsed
    assert wait_job_ended(job_id).state == "CANCELLED"
    assert r.db_rows("SELECT status FROM runs") == [{"status": "failed"}]


def test_out_of_memory_message(sl):
    # This cluster (TaskPlugin=task/none, no cgroups, no JobAcctGatherParams=OverMemoryKill) does
    # not enforce --mem: a job with --mem=96M that touches 300 MB ends COMPLETED (checked by hand:
    # MaxRSS 629 MB under --mem=100M). So sacct is wrapped to report what an enforcing cluster
    # reports for such a job: State OUT_OF_MEMORY, ExitCode 0:125, once the job has really ended.
    # The command exits 137 as the kernel's kill of the hog makes it there; its exit status file
    # says 137, and the engine asks Slurm at once why the job failed.
    sl.wrap("sacct", sacct_mode="oom")
    wdl = sl.wdl("""\
        version 1.2
        task hog {
            command <<<
                python3 -c 'x = bytearray(300 * 1024 * 1024); print(len(x))'
                exit 137
            >>>
            output { String out = read_string(stdout()) }
            requirements { container: "ubuntu:latest"  memory: "100 MB" }
        }
        """)
    r = sl.run(wdl)
    assert r.rc == 1, r.describe()
    (job_id,) = r.job_ids()
    assert "ran out of memory" in r.stderr and job_id in r.stderr, r.describe()
    assert "--mem=96M" in r.stderr, r.describe()  # 100 MB = 95.4 MiB, rounded up


@pytest.mark.slow
def test_time_limit_message(sl):
    if not _partition_exists(SHORT_PART):
        pytest.skip("partition `%s` does not exist on this cluster" % SHORT_PART)
    cfg = sl.config('run.backends.default.sbatch.args = ["--time=00:01:00"]\n', partition=SHORT_PART)
    r = sl.run(sl.wdl(EXIT_CODE_TASK), "code=0", "sleep=200", cfg=cfg, timeout=400)
    assert r.rc == 1, r.describe()
    (job_id,) = r.job_ids()
    assert "time limit" in r.stderr and job_id in r.stderr, r.describe()
    assert r.elapsed < 190, "the run waited for the whole sleep: %.0f s" % r.elapsed
    assert wait_job_ended(job_id).state == "TIMEOUT"


def test_transient_sbatch_failures_are_retried(sl):
    sl.wrap("sbatch", fail_first=2, fail_rc=1,
            fail_text="sbatch: error: Batch job submission failed: Socket timed out on send/recv operation")
    r = sl.run(sl.wdl(ECHO_TASK))
    assert r.rc == 0, r.describe()
    assert r.outputs == {"echo_task.out": "ok"}
    calls = sl.calls("sbatch")
    assert [c["rc"] for c in calls] == [1, 1, 0], calls
    assert len(r.job_ids()) == 1


def test_an_sbatch_whose_answer_was_lost_is_not_submitted_twice(sl):
    """sbatch reaches the controller, which queues the job, but the reply never comes back: before
    trying again the engine asks squeue, finds the job by its batch script and follows that one."""
    sl.wrap("sbatch", lose_answer_first=1,
            fail_text="sbatch: error: Batch job submission failed: Connection reset by peer")
    r = sl.run(sl.wdl(ECHO_TASK))
    assert r.rc == 0, r.describe()
    assert r.outputs == {"echo_task.out": "ok"}
    assert [c["rc"] for c in sl.calls("sbatch")] == [1], sl.calls("sbatch")
    (job_id,) = r.job_ids()
    assert wait_job_ended(job_id).state == "COMPLETED"


def test_permanent_sbatch_failure_is_a_clear_error(sl):
    sl.wrap("sbatch")
    cfg = sl.config('run.backends.default.sbatch.args = ["--constraint=no_such_feature"]\n')
    r = sl.run(sl.wdl(ECHO_TASK), cfg=cfg)
    assert r.rc == 1, r.describe()
    assert "sbatch" in r.stderr and "Invalid feature specification" in r.stderr, r.describe()
    assert "Traceback" not in r.stderr
    assert len(sl.calls("sbatch")) == 1, "a permanent failure was retried: %s" % sl.calls("sbatch")
    assert r.job_ids() == []
    assert r.db_rows("SELECT status FROM runs") == [{"status": "failed"}]


ESCAPE_TASK = """\
version 1.2

task escape {
    input {
        String which
    }
    command <<<
        ln -s /etc/hostname link
        echo fine > fine.txt
    >>>
    output {
        File f = if which == "abs" then "/etc/passwd" else if which == "link" then "link" else "fine.txt"
    }
    requirements {
        container: "ubuntu:latest"
    }
}
"""


@pytest.mark.parametrize("which, shown", [("abs", "`/etc/passwd`"), ("link", "a link to `/etc/hostname`")])
def test_job_outputs_outside_the_working_directory_fail_the_task(sl, which, shown):
    """The rule of the local backend holds for a Slurm job's outputs: a host path, or a link out of
    the working directory, fails the task with a message naming the output and the path."""
    wdl = sl.wdl(ESCAPE_TASK)
    r = sl.run(wdl, "which=" + which)
    assert r.rc == 1, r.describe()
    for fragment in ("output `f` of task `escape`", shown, "outside the task's working directory"):
        assert fragment in r.stderr, r.describe()
    assert "Traceback" not in r.stderr
    fine = sl.run(wdl, "which=fine")
    assert fine.rc == 0, fine.describe()
    assert Path(json.loads(fine.stdout)["escape.f"]).read_text() == "fine\n"


SCATTER_SLEEP = """\
version 1.2

task nap {
    input {
        Int i
        Int seconds
    }
    command <<<
        sleep ~{seconds}
        echo ~{i}
    >>>
    output {
        Int out = read_int(stdout())
    }
    requirements {
        container: "ubuntu:latest"
        cpu: 1
        memory: "100 MB"
    }
}

workflow w {
    input {
        Int n
        Int seconds
    }
    scatter (i in range(n)) {
        call nap { input: i = i, seconds = seconds }
    }
    output {
        Array[Int] outs = nap.out
    }
}
"""


def test_sigterm_cancels_every_queued_and_running_job(sl):
    proc = sl.start(sl.wdl(SCATTER_SLEEP), "n=20", "seconds=60", cfg=sl.config())
    ids = wait_for(lambda: (lambda f: f if len(f) == 20 and all(p.read_text().strip() for p in f) else None)(
        list(proc.out_dir.rglob("job_id"))), 90, "20 job ids")
    ids = {p.read_text().strip() for p in ids}
    states = wait_for(lambda: (lambda s: s if len(s) == 20 and any(j.state == "RUNNING" for j in s.values())
                               else None)(squeue_states(ids)), 60, "the jobs in the queue")
    assert all(j.state in ("PENDING", "RUNNING", "CONFIGURING") for j in states.values()), states
    os.kill(proc.pid, signal.SIGTERM)
    r = sl.finish(proc, timeout=60)
    assert r.rc != 0, r.describe()
    left = {i: j for i, j in squeue_states(ids).items() if j.state in LIVE_STATES}
    assert not left, left
    assert r.db_rows("SELECT status FROM runs") == [{"status": "canceled"}]
    ended = {i: wait_job_ended(i).state for i in ids}
    assert set(ended.values()) == {"CANCELLED"}, ended


def test_fail_fast_scancels_the_sibling_job(sl):
    wdl = sl.wdl("""\
        version 1.2
        import "exits.wdl"
        workflow w {
            call exits.exits as failing { input: code = 1, sleep = 1 }
            call exits.exits as sibling { input: code = 0, sleep = 40 }
        }
        """)
    (sl.tmp / "exits.wdl").write_text(EXIT_CODE_TASK)
    proc = sl.start(wdl, cfg=sl.config('run.fail = "fast"\n'))
    r = sl.finish(proc, timeout=120)
    assert r.rc == 1, r.describe()
    sibling = read(r.run_dir / "calls" / "sibling" / "attempts" / "0" / "job_id").strip()
    failing = read(r.run_dir / "calls" / "failing" / "attempts" / "0" / "job_id").strip()
    assert "exit code 1" in r.stderr, r.describe()
    assert wait_job_ended(failing).state == "FAILED"
    assert wait_job_ended(sibling).state == "CANCELLED"
    assert r.elapsed < 30, "the run waited %.0f s for the sibling" % r.elapsed


def test_pending_reason_that_never_clears_fails_the_task(sl):
    # With EnforcePartLimits=ALL this cluster refuses such requests at submit time, so a job that
    # pends forever (PartitionConfig) is shown through a wrapped sacct; the real job is sleeping and
    # must be scancelled by sprocket.
    sl.wrap("sacct", sacct_mode="pending")
    r = sl.run(sl.wdl(EXIT_CODE_TASK), "code=0", "sleep=60", cfg=sl.config(), timeout=120)
    assert r.rc == 1, r.describe()
    (job_id,) = r.job_ids()
    assert "PartitionConfig" in r.stderr and job_id in r.stderr, r.describe()
    assert r.elapsed < 40
    assert wait_job_ended(job_id).state == "CANCELLED"
    assert len(r.attempt_dirs()) == 1  # no retry: it would pend forever again


def test_held_job_waits_until_released(sl):
    sl.wrap("sacct")
    proc = sl.start(sl.wdl(EXIT_CODE_TASK), "code=0", cfg=sl.config('run.backends.default.sbatch.args = ["--hold"]\n'))
    job_file = wait_for(lambda: next(iter(proc.out_dir.rglob("job_id")), None), 60, "the job_id file")
    job_id = wait_for(lambda: job_file.read_text().strip(), 10, "the job id")
    job = squeue_states({job_id})[job_id]
    assert job.state == "PENDING" and job.reason == "JobHeldUser", job
    wait_for(lambda: len(sl.calls("sacct")) >= 3, 30, "three status queries")
    assert proc.poll() is None, "sprocket gave up on a held job"
    subprocess.run([REAL["scontrol"], "release", job_id], check=True)
    r = sl.finish(proc, timeout=120)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"exits.out": "exiting with 0"}


def test_node_fail_is_retried_without_spending_a_retry(sl):
    # NODE_FAIL cannot be caused on a one-node test cluster without breaking it for everyone. The
    # first attempt's job is killed from outside while it runs, so it writes no exit status file
    # (as on a lost node), and the wrapped sacct reports it NODE_FAIL once it has really ended.
    sl.wrap("sacct", sacct_mode="node_fail_first")
    doc = sl.wdl(EXIT_CODE_TASK.replace("sleep ~{sleep}", 'sleep ~{if task.attempt == 0 then "300" else "0"}'))
    proc = sl.start(doc, "code=0", cfg=sl.config())
    subprocess.run([REAL["scancel"], _wait_running(proc)], check=True)
    r = sl.finish(proc, timeout=120)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"exits.out": "exiting with 0"}
    assert len(r.job_ids()) == len(r.attempt_dirs()) == (2 if "sbatch refused" in r.stderr else 3), r.describe()
    assert "NODE_FAIL" in r.stderr + read(r.run_dir / "output.log")
    # its node was excluded, but it is the cluster's only one: sbatch refused the retry with --exclude
    # and took it without, or took it and Slurm failed it before it started (then it ran again
    # without); said once, and the run excludes no node from then on
    assert r.stderr.count(" with --exclude=vm: the excluded nodes are all it could use; the run's jobs may use them "
                          "again") == 1


def test_sbatch_missing_from_path(sl, tmp_path):
    bin_dir = tmp_path / "no-sbatch-bin"
    bin_dir.mkdir()
    for tool in ("squeue", "scancel", "scontrol", "sacct", "sinfo", "bash", "sh", "env"):
        real = REAL.get(tool) or shutil.which(tool)
        if real:
            os.symlink(real, str(bin_dir / tool))
    env = dict(sl.env, PATH=os.pathsep.join([str(bin_dir), str(sl.double_bin)]))
    r = sl.run(sl.wdl(ECHO_TASK), env=env)
    assert r.rc == 1, r.describe()
    assert "`sbatch` was not found" in r.stderr, r.describe()
    assert "Traceback" not in r.stderr
    assert r.job_ids() == []


def test_unknown_partition_is_reported_at_start(sl):
    r = sl.run(sl.wdl(ECHO_TASK), cfg=sl.config(partition="nope"))
    assert r.rc == 1, r.describe()
    assert "failed to validate default_slurm_partition `nope`: the cluster has no such partition (it has: " in r.stderr, \
        r.describe()
    r = sl.run(sl.wdl(ECHO_TASK), cfg=sl.config('run.backends.default.gpu_slurm_partition.name = "nope2"\n',
                                                name="gpu.toml"))
    assert r.rc == 1, r.describe()
    assert "failed to validate gpu_slurm_partition `nope2`" in r.stderr, r.describe()
    assert r.job_ids() == []


def test_apptainer_missing_on_the_compute_node(sl):
    # The submit host has `apptainer` (the pull works), but the job's PATH does not: sbatch's
    # --export sets the job's PATH to the submit PATH without any directory holding an apptainer,
    # as on a compute node where it is not installed.
    dirs = sl.env["PATH"].split(os.pathsep)
    has = lambda d: d and (os.access(os.path.join(d, "apptainer"), os.X_OK))
    job_path = os.pathsep.join(d for d in dirs if d and not has(d))
    if shutil.which("apptainer", path=job_path):
        pytest.skip("apptainer is installed in a system directory here")
    env = dict(sl.env, PATH=os.pathsep.join([str(sl.double_bin), job_path]))
    cfg = sl.config('run.backends.default.sbatch.args = ["--export=ALL,PATH=%s"]\n' % job_path)
    r = sl.run(sl.wdl(ECHO_TASK), cfg=cfg, env=env)
    assert r.rc == 1, r.describe()
    assert [c["cmd"] for c in sl.double_calls()] == ["pull"]
    assert "not found on the compute node" in r.stderr and "apptainer" in r.stderr, r.describe()
    (job_id,) = r.job_ids()
    assert wait_job_ended(job_id).state == "FAILED"


# --------------------------------------------------------------------------------------------
# 6. load on the scheduler: how many Slurm commands, how many jobs at once
# --------------------------------------------------------------------------------------------


def _wrap_all(sl, **sbatch_opts):
    for tool in TOOLS:
        sl.wrap(tool, **(sbatch_opts if tool == "sbatch" else {}))


def _max_overlap(intervals):
    events = sorted([(s, 1) for s, e in intervals] + [(e, -1) for s, e in intervals], key=lambda x: (x[0], x[1]))
    best = now = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def test_scatter_of_30_uses_batched_sacct_and_no_squeue(sl):
    _wrap_all(sl)
    r = sl.run(sl.wdl(SCATTER_SLEEP), "n=30", "seconds=3", cfg=sl.config("run.backends.default.job_arrays = false\n",
                                                                          interval=2))
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.outs": list(range(30))}
    assert len(sl.calls("sbatch")) == 30
    assert len(r.job_ids()) == 30
    sacct = sl.calls("sacct")
    limit = r.elapsed / 2 + 3
    assert 1 <= len(sacct) <= limit, "%d sacct calls in %.1f s with interval = 2 (limit %.1f)" % (
        len(sacct), r.elapsed, limit)
    assert max(len(c["argv"][c["argv"].index("-j") + 1].split(",")) for c in sacct) > 1, "sacct is not batched"
    assert sl.calls("squeue") == []
    probes = [c for c in sl.calls("scontrol") if c["argv"][-2:] == ["show", "partition"]]
    assert len(probes) == 1 and len(sl.calls("scontrol")) == 1  # the cluster probed once for the run
    assert sl.calls("scancel") == []


def test_max_scatter_concurrency_bounds_the_jobs_in_the_queue(sl):
    cfg = sl.config("run.backends.default.max_scatter_concurrency = 5\n")
    proc = sl.start(sl.wdl(SCATTER_SLEEP), "n=12", "seconds=2", cfg=cfg)
    root = str(sl.tmp)
    most = 0
    seen = set()
    while proc.poll() is None:
        ours = [j for j in squeue_states().values() if j.script.startswith(root)]
        seen.update(j.id for j in ours)
        live = [j for j in ours if j.state in LIVE_STATES + ("COMPLETING",)]
        most = max(most, len(live))
        assert len(live) <= 5, live
        time.sleep(0.2)
    r = sl.finish(proc)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.outs": list(range(12))}
    assert len(seen) == 12, seen
    assert most == 5, "at most %d jobs at once: the limit was not reached" % most


def test_max_concurrency_bounds_the_sbatch_processes(sl):
    sl.wrap("sbatch", sleep=0.7)  # slow submissions, so that concurrent ones overlap
    cfg = sl.config("run.backends.default.max_concurrency = 2\nrun.backends.default.job_arrays = false\n")
    r = sl.run(sl.wdl(SCATTER_SLEEP), "n=8", "seconds=0", cfg=cfg)
    assert r.rc == 0, r.describe()
    calls = sl.calls("sbatch")
    assert len(calls) == 8
    most = _max_overlap([(c["start"], c["end"]) for c in calls])
    assert most <= 2, "%d sbatch processes at once" % most
    assert most == 2, "submissions were not concurrent at all"


# --------------------------------------------------------------------------------------------
# 7. the spec's examples through slurm_apptainer
# --------------------------------------------------------------------------------------------

CONFORMANCE_CASES = (
    "1.2/hello", "1.2/hello_parallel", "1.2/test_scatter", "1.2/nested_scatter", "1.2/copy_input",
    "1.2/file_output_task", "1.2/file_sizes_task", "1.2/glob_task", "1.2/gen_files_task",
    "1.2/read_write_primitives_task", "1.2/read_tsv_task", "1.2/read_person", "1.2/write_json_task",
    "1.2/write_lines_task", "1.2/all_return_codes_task", "1.2/multi_return_code_fail_task",
    "1.2/environment_variable_should_echo", "1.3/test_task_previous", "1.3/relative_paths_context",
)


def test_conformance_subset_through_slurm(sl):
    shared = shared_dir()
    if shared is None or not (shared / "conformance" / "run.py").is_file():
        pytest.skip("../shared/conformance is not here")
    work = sl.tmp / "cases"
    work.mkdir()
    report = sl.tmp / "report.json"
    engine = shlex.join(sprocket_argv("-s", "-c", str(sl.config())))
    proc = subprocess.run([sys.executable, str(shared / "conformance" / "run.py"), "--engine", engine, "-j", "4",
                           "--timeout", "120", "--tmpdir", str(work), "--keep", "--json", str(report)]
                          + list(CONFORMANCE_CASES),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=sl.env,
                          timeout=900)
    assert report.is_file(), proc.stdout[-3000:]
    results = json.loads(report.read_text())["results"]
    assert sorted(r["id"] for r in results) == sorted(CONFORMANCE_CASES), proc.stdout[-3000:]
    bad = ["%s: %s %s" % (r["id"], r["status"], r.get("reason", "")) for r in results if r["status"] != "PASS"]
    assert not bad, "\n".join(bad) + "\n" + proc.stdout[-3000:]
    # they really ran as Slurm jobs, in the apptainer double
    assert len(list(work.rglob("job_id"))) >= len(CONFORMANCE_CASES) - 1
    assert sl.double_calls("exec")


def test_draft2_workflow_through_slurm(sl):
    """A draft-2 workflow (Cromwell-era: `${}` placeholders, no input section, untyped outputs,
    `continueOnReturnCode`) runs through sbatch with the local backend's outputs."""
    doc = sl.wdl("""
        task greet {
          String who
          Int n = 2
          command <<<
            for i in $(seq ${n}); do echo "hi ${who}"; done
            exit 3
          >>>
          output { Array[String] lines = read_lines(stdout()) }
          runtime {
            docker: "ubuntu:latest"
            continueOnReturnCode: [0, 3]
            disks: "local-disk 10 SSD"
          }
        }

        workflow wf {
          Array[String] names
          scatter (name in names) {
            call greet { input: who = name }
          }
          output {
            greet.lines
          }
        }
        """, "draft2.wdl")
    r = sl.run(doc, 'wf.names=["a","b"]', "wf.greet.n=1")
    assert r.rc == 0, r.describe()
    assert r.outputs == {"wf.greet.lines": [["hi a"], ["hi b"]]}
    local = sl.run(doc, 'wf.names=["a","b"]', "wf.greet.n=1", cfg=sl.config(backend="local", name="local.toml"))
    assert local.outputs == r.outputs


# --------------------------------------------------------------------------------------------
# Completion from the job itself: the exit status file, the slow query, the filesystem's lag,
# the caps a site sets, and the terminal going away.
# --------------------------------------------------------------------------------------------

def test_batch_script_and_sbatch_line_are_built_by_pure_functions(tmp_path):
    """The batch script ends by writing the exit status to rc.tmp and renaming it to rc; the
    sbatch line has Sprocket's order; a bind path with `,` or `:` is refused clearly."""
    import sprocket as S

    adir = str(tmp_path / "attempt")
    text = S.slurm_batch_script("apptainer", {"X": "1"}, [("/in", "/in", "ro")], True, ["--extra"],
                                "img.sif", "bash", adir)
    lines = text.splitlines()
    assert lines[0] == "#!/usr/bin/env bash" and "export APPTAINERENV_X=1" in lines
    assert lines[-4] == "rc=$?" and lines[-3].startswith('{ printf "node=%s')  # then what the job used
    assert lines[-3].endswith("> %s/usage.tmp && mv -f %s/usage.tmp %s/usage" % ((adir,) * 3))
    assert lines[-2:] == ['printf "%%d\\n" "$rc" > %s/rc.tmp && mv -f %s/rc.tmp %s/rc' % ((adir,) * 3), 'exit "$rc"']
    assert "--nv" in text and "--bind /in:/in:ro" in text
    options = ("compute", 2, True, 30, ["--qos=x"], 1.5, 100 * 2 ** 20)
    argv = S.sbatch_argv(*options, job_name="job", adir=adir, script="script")
    assert argv == ["sbatch", "--partition", "compute", "--gpus-per-task=2", "--time=30", "--qos=x", "--job-name",
                    "job", "-o", adir + "/slurm.stdout", "-e", adir + "/slurm.stderr", "--ntasks=1",
                    "--cpus-per-task=2", "--mem=100M", "script"]
    # a job array's elements write into <dir>/<index>/; a `%` of the path is not a pattern
    argv = S.sbatch_argv(*options, job_name="job", adir="/o/100%/arrays/1", script="s", array=20)
    assert argv[argv.index("--qos=x") + 1:argv.index("--ntasks=1")] == [
        "--array=0-19", "--job-name", "job", "-o", "/o/100%%/arrays/1/%a/slurm.stdout",
        "-e", "/o/100%%/arrays/1/%a/slurm.stderr"]
    assert S.slurm_ids(["7", "12_3", "12_4", "12_5", "12_9", "8_0"]) == ["7", "12_[3-5,9]", "8_[0]"]
    assert S.expand_slurm_id("12_[3,5-7%2]") == ["12_3", "12_5", "12_6", "12_7"]
    assert S.expand_slurm_id("12_4") == ["12_4"] and S.expand_slurm_id("12") == ["12"]
    # sacct's figures (sacct_job_usage: a job row of _SACCT_FORMAT; sacct_step_usage: its batch step)
    job = S.sacct_job_usage(["12_3", "COMPLETED", "0:0", "None", "2027-01-01T10:00:00", "2027-01-01T10:00:05",
                             "2027-01-01T10:01:05", "00:01:00", "00:30.500", "", "100M", "2", "node7"])
    assert job["queue_seconds"] == 5 and job["wall_seconds"] == 60 and job["allocated_cpus"] == 2
    assert job["node"] == "node7" and job["requested_memory"] == 100 * 2 ** 20 and job["slurm_state"] == "COMPLETED"
    assert S.sacct_step_usage(["12_3.batch", "COMPLETED", "0:0", "", "", "", "", "00:01:00", "1-00:00:02",
                               "1024K"]) == {"cpu_seconds": 86402.0, "peak_memory": 2 ** 20}
    pending = S.sacct_job_usage(["13", "PENDING", "0:0", "Priority", "2027-01-01T10:00:00", "Unknown", "Unknown",
                                 "00:00:00", "00:00:00", "", "1G", "1", "None assigned"])
    assert pending["started_at"] is None and pending["ended_at"] is None and pending["node"] is None
    for bad in ("/data/a,b.txt", "/data/a:b.txt"):
        with pytest.raises(S.RunError, match="cannot be bound"):
            S.slurm_batch_script("apptainer", {}, [(bad, bad, "ro")], False, [], "img", "bash", adir)


def test_batch_script_quotes_every_extra_argument_even_a_redirection_operator(tmp_path):
    """An `apptainer_args` entry that is exactly `>` or `2>` reaches apptainer as a word; only the
    script's own redirection of apptainer's output is one."""
    import sprocket as S

    adir = tmp_path / "attempt"
    adir.mkdir()
    fake = tmp_path / "apptainer"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n')
    fake.chmod(0o755)
    text = S.slurm_batch_script(str(fake), {}, [], False, [">", "2>", "it's"], "img.sif", "bash", str(adir))
    script = tmp_path / "script"
    script.write_text(text)
    assert subprocess.run(["bash", str(script)], cwd=str(tmp_path)).returncode == 0
    args = (adir / "apptainer.stdout").read_text().splitlines()
    assert ["[>]", "[2>]", "[it's]", "[img.sif]"] == args[args.index("[>]"):args.index("[img.sif]") + 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apptainer", "attempt", "script"], "a redirection made a file"


def test_seed_hello_finishes_from_its_exit_file_without_a_status_query(sl):
    """With the seed's configuration (no `interval`: one query a minute), a one-second job is
    seen to end from its exit status file, with no status query while it runs: the one sacct
    comes after it ended, at the end of the run, for what it used (the trace)."""
    _wrap_all(sl)
    cfg = sl.tmp / "seed-default.toml"
    cfg.write_text(SEED_CONFIG.replace("run.backends.default.interval = 1\n", "") % PART)
    r = sl.run(REPO / "examples" / "hello.wdl", "greeting=Hello", cfg=cfg, target="say_hello")
    assert r.rc == 0, r.describe()
    assert r.outputs == {"say_hello.message": "Hello, world!"}
    attempt = r.run_dir / "attempts" / "0"
    assert read(attempt / "rc") == "0\n" and not (attempt / "rc.tmp").exists()
    assert sl.calls("squeue") == [], sl.calls()
    (sacct,) = sl.calls("sacct")
    assert "MaxRSS" in ",".join(sacct["argv"]) and sacct["start"] > os.stat(attempt / "rc").st_mtime, sacct
    (row,) = r.db_rows("SELECT u.* FROM attempt_usage u")
    assert row["node"] and row["started_at"] <= row["ended_at"] and row["queue_seconds"] is not None, row
    trace = read(r.run_dir / "trace.tsv").splitlines()
    assert trace[0].split("\t")[:3] == ["call", "attempt", "status"] and len(trace) == 2, trace


def _fake_mv(sl, delay):
    """An `mv` first on the jobs' PATH that renames an exit status file `delay` seconds late (or,
    with delay None, never): the shared filesystem lagging behind the compute node."""
    sl.wrap_bin.mkdir(exist_ok=True)
    later = "exit 0" if delay is None else '(sleep %d; exec /bin/mv "$@") >/dev/null 2>&1 &\n    exit 0' % delay
    _write_exec(sl.wrap_bin / "mv", '#!/bin/bash\ncase "$3" in\n  */rc)\n    %s;;\nesac\nexec /bin/mv "$@"\n' % later)


def test_exit_file_that_shows_late_is_waited_for(sl):
    """Slurm says the job COMPLETED, its exit status file shows 4 s later: the run waits and
    succeeds."""
    _fake_mv(sl, 4)
    r = sl.run(sl.wdl(EXIT_CODE_TASK), "code=0", cfg=sl.config(interval=1))
    assert r.rc == 0, r.describe()
    assert r.outputs == {"exits.out": "exiting with 0"}


def test_exit_file_that_never_shows_fails_after_exit_read_timeout(sl):
    """No exit status file within exit_read_timeout: the task fails, saying what was missing and
    that the filesystem may lag."""
    _fake_mv(sl, None)
    cfg = sl.config("run.backends.default.exit_read_timeout = 3\n", interval=1)
    r = sl.run(sl.wdl(EXIT_CODE_TASK), "code=0", cfg=cfg)
    assert r.rc == 1, r.describe()
    assert "exit status file" in r.stderr and "lagging" in r.stderr, r.describe()


def test_max_queued_jobs_caps_the_queue_across_scatters(sl):
    """max_queued_jobs bounds this run's jobs in the queue at once, over two scatters."""
    doc = sl.wdl(SCATTER_SLEEP.replace("workflow w {", "workflow w {\n    scatter (j in range(2)) {\n"
                                       "        call nap as other { input: i = j, seconds = 2 }\n    }", 1))
    proc = sl.start(doc, "n=6", "seconds=2", cfg=sl.config("run.backends.default.max_queued_jobs = 3\n"))
    root, most = str(sl.tmp), 0
    while proc.poll() is None:
        ours = [j for j in squeue_states().values() if j.script.startswith(root) and j.state in LIVE_STATES]
        most = max(most, len(ours))
        assert len(ours) <= 3, ours
        time.sleep(0.2)
    r = sl.finish(proc)
    assert r.rc == 0, r.describe()
    assert len(r.job_ids()) == 8 and most == 3, (r.job_ids(), most)


def test_submit_rate_limit_is_held(sl):
    """submit_rate_limit = "2/1s": no second window holds more than 2 counted sbatch calls."""
    _wrap_all(sl)
    cfg = sl.config('run.backends.default.submit_rate_limit = "2/1s"\nrun.backends.default.job_arrays = false\n')
    r = sl.run(sl.wdl(SCATTER_SLEEP), "n=6", "seconds=0", cfg=cfg)
    assert r.rc == 0, r.describe()
    starts = sorted(c["start"] for c in sl.calls("sbatch"))
    assert len(starts) == 6
    for i in range(len(starts) - 2):
        assert starts[i + 2] - starts[i] >= 0.95, starts  # a third call only a second after the first
    assert starts[-1] - starts[0] >= 1.9, starts


def test_sighup_does_not_stop_the_run(sl):
    """The terminal goes away (SIGHUP) with jobs queued: the run carries on to the end, the
    outputs are in outputs.json, and output.log says what happened."""
    proc = sl.start(sl.wdl(SCATTER_SLEEP), "n=6", "seconds=3", cfg=sl.config())
    wait_for(lambda: len(list(proc.out_dir.rglob("job_id"))) >= 2, 60, "two jobs")
    proc.send_signal(signal.SIGHUP)
    r = sl.finish(proc, timeout=180)
    assert r.rc == 0, r.describe()
    outputs = json.loads(read(r.run_dir / "outputs.json"))
    assert outputs == {"w.outs": list(range(6))}
    assert "SIGHUP" in read(r.run_dir / "output.log")
    assert r.db_rows("SELECT status FROM runs") == [{"status": "completed"}]


def _stop_daemon(name):
    """Stop one daemon of the test cluster (its pid file in $SLURM_CI_DIR/run); skip the test when
    this cluster is not ours to stop and restart."""
    state = os.environ.get("SLURM_CI_DIR")
    start = shared_dir() / "slurm" / "start-slurm.sh" if shared_dir() else None
    if not state or not start or not start.is_file():
        pytest.skip("needs the cluster started by shared/slurm/start-slurm.sh ($SLURM_CI_DIR)")
    pidfile = Path(state) / "run" / ("%s.pid" % name)
    if not pidfile.is_file():
        pytest.skip("%s is not running here (%s)" % (name, pidfile))
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists("/proc/%d" % pid), 30, "%s to stop" % name)
    return start, state


def _restart_cluster(start, state):
    env = dict(os.environ, SLURM_CI_ACCOUNTING=os.environ.get("SLURM_CI_ACCOUNTING", "slurmdbd"),
               SLURM_CI_CPUS=os.environ.get("SLURM_CI_CPUS", "8"))
    subprocess.run(["bash", str(start), state], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=180)


@pytest.mark.parametrize("daemon, seconds", [("slurmdbd", 30), ("slurmctld", 40)])
def test_a_slurm_daemon_down_mid_run_loses_nothing(sl, daemon, seconds):
    """slurmdbd (accounting) or slurmctld (the controller) stops for a while with jobs queued and
    running: sacct, squeue and sbatch fail meanwhile; the run still completes with the right
    outputs once the daemon is back."""
    # (a job the controller launched as it went down may never start: after exit_read_timeout
    # it is canceled and submitted again, which this short timeout keeps quick)
    cfg = sl.config("run.backends.default.exit_read_timeout = 20\n", interval=2)
    proc = sl.start(sl.wdl(SCATTER_SLEEP), "n=12", "seconds=8", cfg=cfg)
    wait_for(lambda: len(list(proc.out_dir.rglob("job_id"))) >= 2, 60, "two jobs")
    start, state = _stop_daemon(daemon)
    try:
        time.sleep(seconds)
    finally:
        _restart_cluster(start, state)
    r = sl.finish(proc, timeout=400)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.outs": list(range(12))}


def test_progress_line_tells_queued_from_running():
    """Jobs Slurm reports PENDING are `queued`, with the commonest reason; the rest run."""
    import collections
    import types

    import sprocket as S

    def tr(name, state, reason=None):
        return types.SimpleNamespace(name=name, job=types.SimpleNamespace(state=state, reason=reason))

    running = [tr("a", "PENDING", "Priority"), tr("b", "PENDING", "Priority"), tr("c", "PENDING", "Resources"),
               tr("d", "RUNNING"), tr("e", "SUBMITTED")]
    counts = collections.Counter(waiting=1, running=5, completed=2, failed=0, cached=0)
    context = types.SimpleNamespace(stopping=False, scheduler=types.SimpleNamespace(running=running, counts=counts))
    line = S.Progress(context, "w", False).line(61)
    assert "1 waiting, 3 queued (mostly Priority), 2 running, 2 completed" in line, line
    assert "a (pending: Priority)" in line


# --------------------------------------------------------------------------------------------
# job arrays, reattach, more memory after an OOM
# --------------------------------------------------------------------------------------------


def _array_size(argv):
    """The elements of an `sbatch --array=0-N` call (1 for a plain job)."""
    spec = [a.split("=", 1)[1] for a in argv if a.startswith("--array=")]
    return int(spec[0].split("-")[1]) + 1 if spec else 1


def test_scatter_goes_out_as_one_job_array(sl):
    """20 elements ready at once with the same options: one `sbatch --array`, each element in its
    own attempt directory with its own Slurm output, job id `<array>_<i>` and result."""
    _wrap_all(sl)
    r = sl.run(sl.wdl(SCATTER_SLEEP), "n=20", "seconds=1", cfg=sl.config())
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.outs": list(range(20))}
    (call,) = sl.calls("sbatch")
    assert "--array=0-19" in call["argv"], call
    ids = r.job_ids()
    assert len(ids) == 20 and len({i.split("_")[0] for i in ids}) == 1, ids
    for adir in r.attempt_dirs():
        assert (adir / "slurm.stdout").is_file() and read(adir / "rc").strip() == "0", adir
        assert "--array=0-19" in read(adir / "sbatch_command")
    rows = wait_for(lambda: (lambda r: r if sorted(r) == sorted(ids) else None)(sacct_rows(ids, "JobID,State")), 30,
                    "sacct to have every element (slurmdbd lags behind an array)")
    assert {v["State"] for v in rows.values()} == {"COMPLETED"}, rows


def test_job_arrays_false_submits_one_job_per_element(sl):
    _wrap_all(sl)
    r = sl.run(sl.wdl(SCATTER_SLEEP), "n=5", "seconds=0", cfg=sl.config("run.backends.default.job_arrays = false\n"))
    assert r.rc == 0, r.describe()
    calls = sl.calls("sbatch")
    assert len(calls) == 5 and all(_array_size(c["argv"]) == 1 for c in calls), calls


FLAKY_SCATTER = """\
version 1.2

task flaky {
    input {
        Int i
    }
    command <<<
        # element 3 fails its first attempt
        if [ ~{i} -eq 3 ] && [ ~{task.attempt} -eq 0 ]; then exit 5; fi
        echo ~{i}
    >>>
    output {
        Int out = read_int(stdout())
    }
    requirements {
        container: "ubuntu:latest"
        memory: "100 MB"
        max_retries: 1
    }
}

workflow w {
    input {
        Int n
    }
    scatter (i in range(n)) {
        call flaky { input: i = i }
    }
    output {
        Array[Int] outs = flaky.out
    }
}
"""


def test_array_element_that_fails_is_retried_alone(sl):
    _wrap_all(sl)
    r = sl.run(sl.wdl(FLAKY_SCATTER), "n=16", cfg=sl.config())
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.outs": list(range(16))}
    sizes = [_array_size(c["argv"]) for c in sl.calls("sbatch")]
    assert sizes == [16, 1], sizes
    retry = [c for c in sl.calls("sbatch") if _array_size(c["argv"]) == 1][0]
    assert any(a.endswith("flaky-3/attempts/1/apptainer_command") for a in retry["argv"]), retry


def test_sigterm_cancels_whole_arrays(sl):
    proc = sl.start(sl.wdl(SCATTER_SLEEP), "n=16", "seconds=60", cfg=sl.config())
    ids = wait_for(lambda: (lambda f: f if len(f) == 16 and all(p.read_text().strip() for p in f) else None)(
        list(proc.out_dir.rglob("job_id"))), 60, "16 job ids")
    ids = {p.read_text().strip() for p in ids}
    assert len({i.split("_")[0] for i in ids}) == 1, ids
    wait_for(lambda: any(j.state == "RUNNING" for j in squeue_states(ids).values()), 60, "a running element")
    proc.send_signal(signal.SIGTERM)
    r = sl.finish(proc, timeout=120)
    assert r.rc == 1, r.describe()
    assert [j for j in squeue_states(ids).values() if j.state in LIVE_STATES] == []


def test_fail_fast_cancels_the_whole_array(sl):
    """run.fail = "fast": element 0 of a 16-element array fails at once (the first Slurm starts, once
    the node is idle) while the others sleep 300 s; the run cancels the array (its other elements,
    queued or running), none of which gets to complete, and leaves nothing in squeue."""
    wait_for(lambda: set(subprocess.run([REAL["sinfo"], "-h", "-o", "%T"], stdout=subprocess.PIPE,
                                        universal_newlines=True, timeout=30).stdout.split()) == {"idle"},
             120, "an idle node (the jobs of earlier tests gone)", interval=0.5)
    wdl = sl.wdl(FLAKY_SCATTER.replace("[ ~{i} -eq 3 ] && [ ~{task.attempt} -eq 0 ]; then exit 5; fi",
                                       "[ ~{i} -eq 0 ]; then exit 5; fi\n        sleep 300")
                 .replace("max_retries: 1", "max_retries: 0"))
    proc = sl.start(wdl, "n=16", cfg=sl.config('run.fail = "fast"\n'))
    r = sl.finish(proc, timeout=240)
    assert r.rc == 1 and "flaky-0" in r.stderr, r.describe()
    ids = r.job_ids()
    assert len(ids) == 16 and len({i.split("_")[0] for i in ids}) == 1, ids
    assert [j for j in squeue_states(ids).values() if j.state in LIVE_STATES] == []
    ended = {i: wait_job_ended(i).state for i in ids}
    assert ended.pop(read(r.run_dir / "calls" / "flaky-0" / "attempts" / "0" / "job_id").strip()) == "FAILED"
    assert set(ended.values()) == {"CANCELLED"}, ended


def test_out_of_memory_retry_doubles_the_memory(sl):
    """run.task.memory_retry_multiplier = 2: an attempt Slurm ended OUT_OF_MEMORY (sacct wrapped:
    this cluster does not enforce --mem) is retried with twice its --mem."""
    sl.wrap("sacct", sacct_mode="oom")
    sl.wrap("sbatch")
    wdl = sl.wdl("""\
        version 1.2
        task hog {
            command <<< exit 137 >>>
            requirements { container: "ubuntu:latest"  memory: "100 MB"  max_retries: 2 }
        }
        """)
    cfg = sl.config("run.task.memory_retry_multiplier = 2\n")
    r = sl.run(wdl, cfg=cfg)
    # sacct says OUT_OF_MEMORY for every ended job, so the second attempt is taken for one too
    mems = [[a for a in c["argv"] if a.startswith("--mem=")][0] for c in sl.calls("sbatch")]
    assert mems[:2] == ["--mem=96M", "--mem=191M"], mems
    assert "attempt 1 gets 190.7 MiB" in r.stderr, r.describe()
    assert len(mems) == 3 and mems[2] == "--mem=382M", mems
    assert r.rc == 1 and "memory tried: 95.4 MiB, 190.7 MiB, 381.5 MiB" in r.stderr, r.describe()


def test_out_of_memory_retry_stays_within_the_partition(sl):
    sl.wrap("sacct", sacct_mode="oom")
    sl.wrap("sbatch")
    wdl = sl.wdl("""\
        version 1.2
        task hog {
            command <<< exit 137 >>>
            requirements { container: "ubuntu:latest"  memory: "100 MB"  max_retries: 2 }
        }
        """)
    cfg = sl.config("run.task.memory_retry_multiplier = 3\n"
                    'run.backends.default.default_slurm_partition.max_memory_per_task = "200 MiB"\n')
    r = sl.run(wdl, cfg=cfg)
    assert r.rc == 1, r.describe()
    mems = [[a for a in c["argv"] if a.startswith("--mem=")][0] for c in sl.calls("sbatch")]
    assert mems == ["--mem=96M", "--mem=200M", "--mem=200M"], mems
    assert "the most it may have" in r.stderr, r.describe()


def _kill_when(proc, predicate, timeout, what):
    wait_for(predicate, timeout, what, interval=0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def _ran_once(ids):
    """Every task of the run ran in exactly one job: sacct rows per attempt directory."""
    return wait_for(lambda: (lambda r: r if sorted(r) == sorted(ids) else None)(sacct_rows(ids, "JobID,State")), 30,
                    "sacct to have every job of the run, once")


def test_reattach_after_the_engine_is_killed(sl):
    """A 30-task scatter of 20 s tasks; with max_queued_jobs = 16 the first 16 go out as one array
    and the rest wait. Once 8 run and some ended, sprocket.py gets SIGKILL. The same command on
    the same -o adopts the jobs submitted (ended ones read from their exit files, running ones
    followed) and submits only those never submitted; every task ran exactly once."""
    _wrap_all(sl)
    cfg = sl.config("run.backends.default.max_queued_jobs = 16\n")
    wdl = sl.wdl(SCATTER_SLEEP)
    out = sl.tmp / "out-kill"
    proc = sl.start(wdl, "n=30", "seconds=20", cfg=cfg, out=out)

    def ready():
        rcs = list(out.rglob("rc"))
        running = [j for j in squeue_states().values() if j.script.startswith(str(sl.tmp)) and j.state == "RUNNING"]
        return len(rcs) >= 1 and len(running) >= 7
    _kill_when(proc, ready, 120, "8 running jobs and one ended")
    time.sleep(1)  # an sbatch the engine started just before its death still logs its call
    first = sum(_array_size(c["argv"]) for c in sl.calls("sbatch"))
    assert 16 <= first < 30, first
    before = len(sl.calls("sbatch"))
    r = sl.run(wdl, "n=30", "seconds=20", cfg=cfg, out=out, timeout=400)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.outs": list(range(30))}
    again = sl.calls("sbatch")[before:]
    assert sum(_array_size(c["argv"]) for c in again) == 30 - first, (first, again)
    adopted = r.db_rows("SELECT a.call, a.adopted_from, a.status, a.job_id FROM attempts a JOIN runs r ON "
                        "r.id = a.run_id WHERE r.status = 'completed'")
    assert len(adopted) == 30 and sum(1 for a in adopted if a["adopted_from"]) == first, adopted
    ids = [a["job_id"] for a in adopted]  # (a job whose id its dead run never wrote down is found in squeue)
    assert None not in ids and len(set(ids)) == 30, ids
    _ran_once(ids)
    runs = r.db_rows("SELECT r.id, r.status, a.by_run_id FROM runs r LEFT JOIN adoptions a ON a.run_id = r.id ORDER BY r.id")
    assert [x["status"] for x in runs] == ["orphaned", "completed"] and runs[0]["by_run_id"] == runs[1]["id"], runs


def test_reattach_after_a_kill_during_the_array_submission(sl):
    """The engine dies while `sbatch --array` runs (the wrapper holds it 3 s): the array is
    submitted but its id never written down. The next run finds its elements in squeue by their
    batch script and submits nothing."""
    _wrap_all(sl, sleep=3)
    wdl = sl.wdl(SCATTER_SLEEP)
    out = sl.tmp / "out-kill"
    cfg = sl.config()
    proc = sl.start(wdl, "n=16", "seconds=5", cfg=cfg, out=out)
    _kill_when(proc, lambda: (sl.wrap_log.parent / (sl.wrap_log.name + ".sbatch.count")).exists(), 60, "the sbatch call")
    assert not list(out.rglob("job_id"))
    wait_for(lambda: sl.calls("sbatch"), 30, "the array's sbatch to return")
    sl.wrap("sbatch")  # no more delay
    r = sl.run(wdl, "n=16", "seconds=5", cfg=cfg, out=out)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.outs": list(range(16))}
    assert len(sl.calls("sbatch")) == 1, sl.calls("sbatch")
    log = read(r.run_dir / "output.log")
    assert "adopting 16 job(s)" in log, log


def test_no_reattach_submits_again(sl):
    wdl = sl.wdl(SCATTER_SLEEP)
    out = sl.tmp / "out-kill"
    cfg = sl.config()
    proc = sl.start(wdl, "n=2", "seconds=3", cfg=cfg, out=out)
    _kill_when(proc, lambda: len(list(out.rglob("job_id"))) == 2, 60, "two jobs")
    old = {p.read_text().strip() for p in out.rglob("job_id")}
    argv, _ = sl.argv(wdl, ["n=2", "seconds=3"], cfg, out=out)
    p = subprocess.run(argv + ["--no-reattach"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=sl.env, cwd=str(sl.tmp), timeout=120)
    assert p.returncode == 0, p.stderr
    assert len({q.read_text().strip() for q in out.rglob("job_id")} - old) == 2


def test_reattach_survives_the_adopting_run_dying_too(sl):
    """Killed, re-run, killed again as it adopts, re-run: the third run still finds every job of
    the first (through the second's adoption) and nothing is submitted twice."""
    _wrap_all(sl)
    wdl = sl.wdl(SCATTER_SLEEP)
    out = sl.tmp / "out-kill"
    cfg = sl.config()
    first = sl.start(wdl, "n=16", "seconds=8", cfg=cfg, out=out)
    _kill_when(first, lambda: len(list(out.rglob("job_id"))) == 16, 60, "16 jobs")
    second = sl.start(wdl, "n=16", "seconds=8", cfg=cfg, out=out)
    _kill_when(second, lambda: "adopting 16 job(s)" in (out / "output.log").read_text(), 60, "the adoption")
    r = sl.run(wdl, "n=16", "seconds=8", cfg=cfg, out=out)
    assert r.rc == 0, r.describe()
    assert r.outputs == {"w.outs": list(range(16))}
    assert len(sl.calls("sbatch")) == 1, sl.calls("sbatch")
    assert len(r.job_ids()) == 16
    runs = r.db_rows("SELECT r.status, a.by_run_id FROM runs r LEFT JOIN adoptions a ON a.run_id = r.id ORDER BY r.id")
    assert [x["status"] for x in runs] == ["orphaned", "orphaned", "completed"], runs
    assert [x["by_run_id"] for x in runs] == [2, 3, None], runs


def test_usage_of_every_attempt_from_the_job_and_sacct(sl):
    """Every attempt has its usage row: node, times and CPU time from the job itself, and what
    sacct adds (state, allocated CPUs, queue wait), fetched with the status queries and one
    batched sacct at the end, never one call per job. trace.tsv and report.html show them."""
    _wrap_all(sl)
    r = sl.run(sl.wdl(SCATTER_SLEEP), "n=4", "seconds=1", cfg=sl.config())
    assert r.rc == 0, r.describe()
    rows = r.db_rows("SELECT a.call, a.job_id, u.* FROM attempts a JOIN attempt_usage u ON u.key = a.key")
    assert len(rows) == 4
    for row in rows:
        assert row["node"] and row["started_at"] <= row["ended_at"] and row["cpu_seconds"] is not None, row
        assert row["slurm_state"] == "COMPLETED" and row["allocated_cpus"] == 1, row
        assert row["queue_seconds"] is not None and row["queue_seconds"] >= 0, row
    sacct = sl.calls("sacct")
    assert len(sacct) <= r.elapsed / 1 + 2, len(sacct)  # interval = 1, and the end of the run
    assert len(sl.calls("sbatch")) == 4 and sl.calls("squeue") == []  # 4 elements: too few for an array
    trace = read(r.run_dir / "trace.tsv").splitlines()
    assert len(trace) == 5 and all(line.split("\t")[4] for line in trace[1:]), trace  # job ids
    page = read(r.run_dir / "report.html")
    assert page.count('class="bar ') == 4


def test_usage_without_accounting_is_null_and_the_report_says_so(sl):
    sl.wrap("sacct", disabled=True)
    r = sl.run(sl.wdl(SCATTER_SLEEP), "n=2", "seconds=0", cfg=sl.config())
    assert r.rc == 0, r.describe()
    rows = r.db_rows("SELECT u.* FROM attempt_usage u")
    assert len(rows) == 2
    for row in rows:
        assert row["node"] and row["started_at"] is not None, row  # what the job wrote of itself
        assert row["slurm_state"] is None and row["peak_memory"] is None and row["allocated_cpus"] is None, row
    assert "No peak memory figures" in read(r.run_dir / "report.html")


# --------------------------------------------------------------------------------------------
# fitting a site: node-local scratch, bad nodes
# --------------------------------------------------------------------------------------------

SCRATCH_TASK = """\
version 1.2

task big_tmp {
    command <<<
        head -c 20000000 /dev/zero > "$TMPDIR/big.tmp"
        wc -c < "$TMPDIR/big.tmp" > size.txt
        echo "$TMPDIR" > tmpdir.txt
        echo done > result.txt
    >>>
    output {
        File result = "result.txt"
        Int size = read_int("size.txt")
        String tmpdir = read_string("tmpdir.txt")
    }
    requirements {
        container: "ubuntu:latest"
    }
}
"""


def test_scratch_work_writes_temporary_files_on_the_node_and_the_outputs_arrive(sl):
    """`scratch` with a variable the node expands ($SLURM_JOB_ID) and `scratch_work = true`: the
    container's /tmp (TMPDIR) and working directory are bound from a directory made there (the
    double makes binds real), a 20 MB temporary file never touches the run directory, the outputs
    are copied back before the exit status, and the node's directory is gone after the job."""
    node = sl.tmp / "node-local"
    cfg = sl.config('run.backends.default.scratch = "%s/$SLURM_JOB_ID"\nrun.backends.default.scratch_work = true\n' % node)
    r = sl.run(sl.wdl(SCRATCH_TASK), cfg=cfg)
    out = r.outputs
    assert out["big_tmp.size"] == 20000000 and out["big_tmp.tmpdir"] == "/tmp"
    assert read(out["big_tmp.result"]) == "done\n" and str(r.run_dir) in out["big_tmp.result"]
    (adir,) = r.attempt_dirs()
    job_id = read(adir / "job_id").strip()
    (call,) = exec_calls_for(sl, adir)
    binds = {dst: src for src, dst, _ in call["binds"]}
    scratch = os.path.realpath(str(node / job_id))
    assert binds["/tmp"].startswith(scratch + "/sprocket.") and binds["/mnt/task/work"].startswith(scratch + "/sprocket.")
    assert not [p for p in r.out_dir.rglob("big.tmp")]  # the temporary file was never on the shared file system
    assert list((node / job_id).iterdir()) == []  # the attempt's scratch directory went with the job
    assert "mktemp -d" in read(adir / "apptainer_command")


def test_a_node_that_failed_a_job_is_excluded_from_the_retry_and_shown(sl):
    # NODE_FAIL cannot be caused on a one-node cluster without breaking it for everyone: as in
    # test_node_fail_is_retried_without_spending_a_retry, the first job is killed from outside and
    # the wrapped sacct says NODE_FAIL on its node. The cluster's only node cannot be excluded for
    # real, so the wrapped sbatch logs the engine's --exclude and drops it before the real sbatch.
    sl.wrap("sacct", sacct_mode="node_fail_first")
    sl.wrap("sbatch", drop=["--exclude"])
    doc = sl.wdl(EXIT_CODE_TASK.replace("sleep ~{sleep}", 'sleep ~{if task.attempt == 0 then "300" else "0"}'))
    proc = sl.start(doc, "code=0", cfg=sl.config("run.backends.default.requeue = true\n"))
    first = _wait_running(proc)
    node = subprocess.run([REAL["squeue"], "-h", "-j", first, "-o", "%N"], stdout=subprocess.PIPE,
                          universal_newlines=True, timeout=60).stdout.strip()
    subprocess.run([REAL["scancel"], first], check=True)
    r = sl.finish(proc, timeout=120)
    assert r.outputs == {"exits.out": "exiting with 0"}
    argvs = [c["argv"] for c in sl.calls("sbatch")]
    assert len(argvs) == 2 and all("--requeue" in a for a in argvs)
    assert [[a for a in argv if a.startswith("--exclude")] for argv in argvs] == [[], ["--exclude=%s" % node]]
    warning = "node `%s` is excluded from the run's later jobs: Slurm job %s ended with NODE_FAIL" % (node, first)
    assert r.stderr.count(warning) == 1
    assert "<th>nodes excluded</th><td><code>%s</code> (exits, attempt 0)" % node in read(r.run_dir / "report.html")


# fitting the site (issue 21): placement per task, the site's memory flag, job tags
# --------------------------------------------------------------------------------------------

SITE_ACCOUNT, SITE_QOS, SITE_PART, SITE_FEATURE = "sprocket_lab", "sprocket_high", "sprocket_feat", "sprocket_feat"


def _admin(*argv):
    return subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=60)


@pytest.fixture
def site():
    """An account and a QOS (sacctmgr; the current user associated with both), a second partition
    over every node and a node feature, added only where missing (harmless to other tests, left in
    place: a partition made with `scontrol create` goes with the next slurmctld restart)."""
    import getpass

    if shutil.which("sacctmgr") is None:
        pytest.skip("`sacctmgr` is not on PATH")
    user = getpass.getuser()
    if not _admin("sacctmgr", "-n", "-P", "show", "account", SITE_ACCOUNT, "format=account").stdout.strip():
        p = _admin("sacctmgr", "-i", "add", "account", SITE_ACCOUNT, "Description=sprocket tests", "Organization=ci")
        assert p.returncode == 0, p.stdout
    if not _admin("sacctmgr", "-n", "-P", "show", "qos", SITE_QOS, "format=name").stdout.strip():
        assert _admin("sacctmgr", "-i", "add", "qos", SITE_QOS).returncode == 0
    assoc = _admin("sacctmgr", "-n", "-P", "show", "assoc", "where", "user=" + user, "format=account,qos").stdout
    if SITE_ACCOUNT not in [line.split("|")[0] for line in assoc.splitlines()]:
        assert _admin("sacctmgr", "-i", "add", "user", user, "account=" + SITE_ACCOUNT).returncode == 0
        assoc = ""
    if any(SITE_QOS not in line.split("|")[1].split(",") for line in assoc.splitlines()) or not assoc:
        p = _admin("sacctmgr", "-i", "modify", "user", "where", "user=" + user, "set", "qos+=" + SITE_QOS)
        assert p.returncode == 0, p.stdout
    if _admin("scontrol", "show", "partition", SITE_PART).returncode != 0:
        p = _admin("scontrol", "create", "PartitionName=" + SITE_PART, "Nodes=ALL", "State=UP")
        assert p.returncode == 0, p.stdout
    for node in _admin("sinfo", "-h", "-N", "-o", "%N").stdout.split():
        shown = _admin("scontrol", "show", "node", node).stdout
        have = re.search(r"AvailableFeatures=(\S*)", shown).group(1)
        features = [f for f in have.split(",") if f and f != "(null)"]
        if SITE_FEATURE not in features:
            features = ",".join(features + [SITE_FEATURE])
            p = _admin("scontrol", "update", "NodeName=" + node, "AvailableFeatures=" + features,
                       "ActiveFeatures=" + features)
            assert p.returncode == 0, p.stdout


SITE_WDL = """
version 1.0
task where {
  input { String tag  Int seconds = 0 }
  command <<< sleep ~{seconds}; echo ~{tag} >>>
  output { String out = read_string(stdout()) }
  runtime { container: "ubuntu:22.04" }
}
task acct {
  command <<< echo acct >>>
  runtime { container: "ubuntu:22.04"  slurm_account: "root" }
}
task qos {
  command <<< echo qos >>>
  runtime { container: "ubuntu:22.04"  slurm_qos: "%(qos)s" }
}
task part {
  command <<< echo part >>>
  runtime { container: "ubuntu:22.04"  slurm_partition: "%(part)s" }
}
task feat {
  command <<< echo feat >>>
  runtime { container: "ubuntu:22.04"  slurm_constraint: "%(feature)s" }
}
task mem {
  command <<< echo mem >>>
  runtime { container: "ubuntu:22.04"  cpu: 2  memory: "1000 MiB" }
}
workflow w {
  call where { input: tag = "flag", seconds = 4 }
  call acct
  call qos
  call part
  call feat
  call mem
  output { String out = where.out }
}
""" % dict(qos=SITE_QOS, part=SITE_PART, feature=SITE_FEATURE)


def test_site_placement_lands_each_job_where_asked_and_mem_per_cpu_gives_reqmem(sl, site):
    """Each task key (and `run --slurm-account`) lands its job where asked, as sacct says;
    `memory_flag = "mem-per-cpu"` asks for the memory over the CPUs; every job carries its run and
    call in `--comment` (squeue's %k: this cluster's accounting does not keep comments)."""
    cfg = sl.config('run.backends.default.memory_flag = "mem-per-cpu"\nrun.backends.default.job_name_prefix = "site"\n')
    proc = sl.start(sl.wdl(SITE_WDL), "--slurm-account", SITE_ACCOUNT, cfg=cfg)
    comment = wait_for(lambda: [line for line in _admin(REAL["squeue"], "-h", "-o", "%j|%k").stdout.splitlines()
                                if line.startswith("site-where-0|")], 60, "the job of `where` in the queue")
    r = sl.finish(proc)
    assert r.rc == 0, r.describe()
    name = r.db_rows("SELECT name FROM runs")[0]["name"]
    assert comment == ["site-where-0|sprocket:%s:where" % name]
    ids = r.job_ids()
    fields = "JobID,JobName,Account,QOS,Partition,Constraints,ReqMem"
    rows = wait_for(lambda: (lambda got: got if len(got) == 6 and all(x["Partition"] for x in got.values()) else None)(
        sacct_rows(ids, fields)), 60, "sacct rows of the 6 jobs")
    by_name = {row["JobName"]: row for row in rows.values()}
    print("\n".join("|".join(row[f] for f in fields.split(",")) for row in rows.values()))  # the report's figures
    got = {n: (row["Account"], row["QOS"], row["Partition"], row["Constraints"]) for n, row in by_name.items()}
    assert got == {
        "site-where-0": (SITE_ACCOUNT, "normal", PART, ""),  # run --slurm-account
        "site-acct-0": ("root", "normal", PART, ""),  # the task's key beats the run's flag
        "site-qos-0": (SITE_ACCOUNT, SITE_QOS, PART, ""),
        "site-part-0": (SITE_ACCOUNT, "normal", SITE_PART, ""),
        "site-feat-0": (SITE_ACCOUNT, "normal", PART, SITE_FEATURE),
        "site-mem-0": (SITE_ACCOUNT, "normal", PART, ""),
    }
    assert by_name["site-mem-0"]["ReqMem"] in ("1000M", "500Mc")  # 2 CPUs x 500 MiB (older sacct: per CPU)
    mem_dir = [d for d in r.attempt_dirs() if "/mem/" in str(d)][0]
    assert "--mem-per-cpu=500M" in (mem_dir / "sbatch_command").read_text().split()


def test_site_partition_the_cluster_lacks_is_refused_before_submission(sl, site):
    r = sl.run(sl.wdl(SITE_WDL.replace('slurm_partition: "%s"' % SITE_PART, 'slurm_partition: "nosuch"')))
    assert r.rc == 1 and "Traceback" not in r.stderr, r.describe()
    assert re.search(r"task `part` asks \(`slurm_partition`\) for the partition `nosuch`: the cluster has no such "
                     r"partition \(it has: [^)]*%s[^)]*\)" % SITE_PART, r.stderr), r.stderr
    assert not any("nosuch" in p.read_text() for p in r.out_dir.rglob("sbatch_command"))


# -- the closing usage query and `sprocket doctor` (issue 21) ---------------------------------


def test_outputs_are_printed_before_the_closing_usage_query(sl):
    """A small run's outputs (and outputs.json) are out before the closing sacct (what the jobs
    used): the wrapped sacct takes 3 s, and stdout has the outputs while it runs."""
    sl.wrap("sacct", sleep=3)
    proc = sl.start(sl.wdl(ECHO_TASK), cfg=sl.config(interval=60))  # no status query during the run
    lines = []
    while not lines or lines[-1] != "}\n":
        line = proc.stdout.readline()
        assert line, "stdout ended without the outputs"
        lines.append(line)
    shown = time.time()
    assert proc.poll() is None  # still closing
    r = sl.finish(proc)
    assert r.rc == 0 and json.loads("".join(lines)) == {"echo_task.out": "ok"}, r.describe()
    closing = sl.calls("sacct")[-1]
    assert "--format" in closing["argv"] and shown < closing["end"] - 1.0, (shown, closing)
    assert (r.run_dir / "outputs.json").stat().st_mtime < closing["end"] - 1.0


def _doctor(sl, cfg, env=None):
    p = subprocess.run(sprocket_argv("doctor", "-s", "-c", str(cfg), "-o", str(sl.tmp / "out")),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=env or sl.env, cwd=str(sl.tmp), timeout=400)
    return p.returncode, p.stdout.splitlines(), p.stderr


def test_doctor_on_the_cluster_every_check_ok(sl):
    image_cache = sl.tmp / "images"
    code, lines, err = _doctor(sl, sl.config('run.backends.default.apptainer.image_cache_dir = "%s"\n' % image_cache))
    assert code == 0 and lines and all(line.startswith("ok  ") for line in lines), (lines, err)
    text = "\n".join(lines)
    for what in ("the output directory `%s` is writable" % (sl.tmp / "out"), "the Slurm commands (slurm",
                 "partition `%s` (default_slurm_partition): a task can get" % PART, "a test job ran (Slurm job",
                 "Apptainer on node", "+double)", "a file written on the node showed here after",
                 "accounting: sacct answers (job", "image cache `%s` is writable" % image_cache):
        assert what in text, (what, text)
    assert [p.name for p in (sl.tmp / "out").iterdir()] == []  # the test job's directory is gone


def test_doctor_with_the_partition_misnamed(sl):
    code, lines, err = _doctor(sl, sl.config(partition="nope"))
    assert code == 1, (lines, err)
    assert ("FAIL partition `nope` (default_slurm_partition): the cluster has no such partition; set "
            "`run.backends.default.default_slurm_partition.name` to one it has: ") in "\n".join(lines), lines
    assert not any("test job" in line for line in lines)  # sbatch would only refuse the partition again


def test_doctor_without_apptainer_on_the_nodes(sl):
    """The apptainer stand-in removed from PATH (a job inherits the submit host's PATH): the job
    runs, and the Apptainer check fails with its remedy."""
    path = [d for d in sl.env["PATH"].split(os.pathsep) if d and not os.path.exists(os.path.join(d, "apptainer"))]
    code, lines, err = _doctor(sl, sl.config(), env=dict(sl.env, PATH=os.pathsep.join(path)))
    assert code == 1, (lines, err)
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL Apptainer on node "), lines
    assert "apptainer: command not found" in failed[0] and "install Apptainer on the compute nodes" in failed[0]
    assert any(line.startswith("ok  a test job ran") for line in lines)


def test_doctor_with_accounting_down(sl):
    """slurmdbd down, as sacct sees it: the shared cluster's slurmdbd is NOT stopped (other tests use
    it); a wrapper `sacct` first on PATH fails the way sacct does when slurmdbd does not answer."""
    sl.wrap("sacct", fail_first=1000, fail_text="sacct: error: slurm_persist_conn_open_without_init: failed to open "
            "persistent connection to host:localhost:6819: Connection refused")
    code, lines, err = _doctor(sl, sl.config())
    assert code == 1, (lines, err)
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed == ["FAIL accounting: sacct failed (exit 1): sacct: error: slurm_persist_conn_open_without_init: "
                      "failed to open persistent connection to host:localhost:6819: Connection refused; start "
                      "slurmdbd, or fix AccountingStorageHost in slurm.conf (until then runs cannot tell why a job "
                      "failed, nor record what it used)"], lines
