"""The Slurm backend's parts (section 15), in-process, without a cluster: the SlurmClient driven by a
fake command runner (samples of real sbatch/squeue/sacct/scontrol output, see shared/slurm/NOTES.md),
the ImageCache with a fake `apptainer pull`, the ArrayGatherer and the JobMonitor with a fake client.
The real thing, on a cluster, is tests/test_slurm.py (`-m slurm`)."""

import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sprocket as S  # noqa: E402
from conftest import db_rows, sprocket_argv, wait_for  # noqa: E402


class Log:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(("info", text))

    def warn(self, text):
        self.lines.append(("warn", text))

    def error(self, text):
        self.lines.append(("error", text))


class Runner:
    """A fake `run_tool`: answers each command from `answer(argv)` -> (status, stdout, stderr) and
    keeps the command lines."""

    def __init__(self, answer):
        self.answer, self.calls, self.lock = answer, [], threading.Lock()

    def __call__(self, argv, timeout=120):
        with self.lock:
            self.calls.append(list(argv))
        return self.answer(list(argv))

    def tools(self):
        return [c[0] for c in self.calls]


def client(answer, rate=None):
    log = Log()
    c = S.SlurmClient(log, 10, rate, run_tool=Runner(answer))
    c.sleeps = []
    c.sleep = c.sleeps.append  # the backoff, without the wait
    return c, log


# -- the client ---------------------------------------------------------------------------------

TRANSIENT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"


def test_client_retries_a_transient_sbatch_failure_with_backoff(tmp_path):
    script = tmp_path / "apptainer_command"
    answers = iter([(1, "", TRANSIENT), (0, "", ""), (1, "", TRANSIENT), (0, "", ""),
                    (0, "Submitted batch job 42\n", "")])
    c, log = client(lambda argv: next(answers))
    assert c.sbatch(["sbatch", "--job-name", "t", str(script)], "hello") == "42"
    # after each failure, one squeue of the user's jobs (was it submitted after all?), then sbatch again
    assert c.run_tool.tools() == ["sbatch", "squeue", "sbatch", "squeue", "sbatch"]
    assert c.sleeps == [1.0, 2.0]
    assert log.lines == [("warn", "sbatch failed for task `hello` (%s); trying again in %g s" % (TRANSIENT, d))
                         for d in (1, 2)]


def test_client_finds_an_sbatch_whose_answer_was_lost_instead_of_submitting_twice(tmp_path):
    script = tmp_path / "apptainer_command"
    answers = iter([(1, "", TRANSIENT), (0, "7|/elsewhere/script\n51|%s\n" % script, "")])
    c, _ = client(lambda argv: next(answers))
    assert c.sbatch(["sbatch", str(script)], "hello") == "51"
    assert c.run_tool.tools() == ["sbatch", "squeue"]
    assert c.run_tool.calls[1][:6] == ["squeue", "-h", "-r", "-t", "all", "-u"]


def test_client_permanent_sbatch_failure_and_missing_sbatch_are_clear_errors(tmp_path):
    c, _ = client(lambda argv: (1, "", "sbatch: error: invalid partition specified: nope"))
    with pytest.raises(S.RunError) as e:
        c.sbatch(["sbatch", str(tmp_path / "s")], "hello")
    assert e.value.message == ("task `hello`: failed to submit the Slurm job with `sbatch` (exit 1)\n"
                               "sbatch: error: invalid partition specified: nope")
    assert c.run_tool.tools() == ["sbatch"] and c.sleeps == []
    c, _ = client(lambda argv: (127, "", "sbatch: command not found"))
    with pytest.raises(S.RunError, match="`sbatch` was not found on PATH"):
        c.sbatch(["sbatch", str(tmp_path / "s")], "hello")


def test_slurm_commands_run_without_the_slurm_variables_of_an_enclosing_job(tmp_path, monkeypatch):
    """Inside a job (a head job) sbatch would take the job's SLURM_MEM_PER_NODE, SLURM_CPUS_PER_TASK,
    ... as its own requests: the client's commands get the environment without them, but with
    SLURM_CONF (where the cluster is) and everything else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\nenv > "%s"\necho "Submitted batch job 5"\n' % (tmp_path / "env"))
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    for k, v in {"SLURM_JOB_ID": "77", "SLURM_MEM_PER_NODE": "2048", "SLURM_CPUS_PER_TASK": "4", "SLURM_JOB_NAME": "head",
                 "SLURM_JOB_PARTITION": "long", "SLURM_TIME_FORMAT": "relative", "SLURM_CONF": "/etc/site/slurm.conf",
                 "SPROCKET_HEAD_JOB": "1"}.items():
        monkeypatch.setenv(k, v)
    assert S.SlurmClient(Log(), 1, None).sbatch(["sbatch", str(tmp_path / "script")], "t") == "5"
    seen = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert sorted(k for k in seen if k.startswith("SLURM_")) == ["SLURM_CONF"]
    assert seen["SLURM_CONF"] == "/etc/site/slurm.conf" and seen["SPROCKET_HEAD_JOB"] == "1"
    assert seen["PATH"].startswith(str(bin_dir))
    assert os.environ["SLURM_MEM_PER_NODE"] == "2048"  # the engine's own environment is left as it is


def test_client_rate_limit_holds_the_next_sbatch():
    c, _ = client(lambda argv: (0, "Submitted batch job 1\n", ""), rate=(2, 0.3))
    start = time.monotonic()
    for _ in range(3):
        c.sbatch(["sbatch", "s"], "t")
    assert time.monotonic() - start >= 0.29  # the third waited for the period of the first


def sacct_row(*fields):
    return "|".join(fields + ("",) * (13 - len(fields)))


def test_client_parses_sacct_rows_of_jobs_arrays_and_steps():
    rows = [sacct_row("1", "COMPLETED", "0:0", "None", "2027-01-01T10:00:00", "2027-01-01T10:00:05",
                      "2027-01-01T10:01:05", "00:01:00", "00:00:00", "", "100M", "2", "vm"),
            sacct_row("1.batch", "COMPLETED", "0:0", "", "", "", "", "00:01:00", "00:30.500", "1024K"),
            sacct_row("3", "CANCELLED by 0", "0:0", "None"),
            sacct_row("3.batch", "CANCELLED", "0:15"),
            sacct_row("12_[3,5-6%2]", "PENDING", "0:0", "Priority"),  # an array's pending elements, as one row
            sacct_row("12_1", "RUNNING", "0:0", "None"),
            "garbage"]
    c, _ = client(lambda argv: (0, "\n".join(rows) + "\n", ""))
    answer = c.query(["1", "3", "12_1", "12_5", "12_6"], usage_of={"1": "key-1"})
    assert c.run_tool.calls == [["sacct", "-P", "-n", "--format", S._SACCT_FORMAT, "-j", "1,3,12"]]
    assert answer.states == {"1": S.SlurmState("COMPLETED", "0:0", "None", "vm"),
                             "3": S.SlurmState("CANCELLED by 0", "0:0", "None"),
                             "12_1": S.SlurmState("RUNNING", "0:0", "None"),
                             "12_5": S.SlurmState("PENDING", "0:0", "Priority"),
                             "12_6": S.SlurmState("PENDING", "0:0", "Priority")}
    usage = answer.usage["1"]  # only the jobs asked about for their usage
    assert list(answer.usage) == ["1"] and usage["wall_seconds"] == 60 and usage["queue_seconds"] == 5
    assert usage["cpu_seconds"] == 30.5 and usage["peak_memory"] == 2 ** 20 and usage["node"] == "vm"


def test_slurm_duration_reads_every_form_of_sbatch_times_and_sacct_figures():
    """One parser (section 15) for sacct's Elapsed/TotalCPU and, through slurm_time_seconds, the head
    job's and partitions' time limits."""
    forms = {"90": 5400, "1:30": 90, "01:00:00": 3600, "1-2": 93600, "1-2:03": 93780, "1-02:03:04": 93784,
             "00:30.500": 30.5, "1:00:00.250": 3600.25, "1-00:00:02": 86402, " 5 ": 300}
    assert {t: S.slurm_duration(t) for t in forms} == forms
    for other in ("UNLIMITED", "INVALID", "NONE", "", None, "1:2:3:4", "2h", "1.5", "1-2.5", "1-2:30.5", "-1"):
        assert S.slurm_duration(other) is None, other
    job = S.sacct_job_usage(["1", "RUNNING", "0:0", "None", "2027-01-01T10:00:00", "2027-01-01T10:00:05", "Unknown",
                             "1-00:00:01", "INVALID", "", "1G", "1", "vm"])
    assert job["wall_seconds"] == 86401 and S.sacct_step_usage(["1.batch", "RUNNING", "0:0", "", "", "", "", "",
                                                                "INVALID", ""]) == {}


def test_client_ids_per_command_line_and_sacct_failure():
    c, _ = client(lambda argv: (0, "", ""))
    c.query(["%d" % i for i in range(S._IDS_PER_CALL + 5)] + ["7_1", "7_2"])
    assert [len(call[-1].split(",")) for call in c.run_tool.calls] == [S._IDS_PER_CALL, 5]
    c, _ = client(lambda argv: (1, "", "sacct: error: slurm_persist_conn_open_without_init: failed"))
    with pytest.raises(S.RunError, match="sacct failed .exit 1.: sacct: error: slurm_persist_conn_open"):
        c.query(["1"])
    assert c.status_source == "sacct"


SCONTROL = ("JobId=15 ArrayJobId=12 ArrayTaskId=3 JobName=t JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0\n"
            "JobId=20 JobName=u JobState=CANCELLED Reason=None ExitCode=0:15\n"
            "JobId=21 JobName=v JobState=COMPLETED Reason=None ExitCode=0:0\n")


def test_client_without_accounting_follows_jobs_with_squeue_and_scontrol():
    def answer(argv):
        if argv[0] == "sacct":
            return 1, "", "sacct: error: Slurm accounting storage is disabled\n"
        if argv[0] == "squeue":
            return 0, "12_3|FAILED|NonZeroExitCode\n12_4|PENDING|Resources\n20|CANCELLED|None\n", ""
        return 0, SCONTROL, ""

    c, log = client(answer)
    answer = c.query(["12_3", "12_4", "20"])
    assert answer.states == {"12_3": S.SlurmState("FAILED", "3:0", "NonZeroExitCode"),
                             "12_4": S.SlurmState("PENDING", "", "Resources"),
                             "20": S.SlurmState("CANCELLED", "0:15", "None")}
    assert answer.usage == {}
    assert c.run_tool.calls[1] == ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", "12,20"]
    assert c.run_tool.calls[2] == ["scontrol", "-o", "show", "job"]
    assert c.status_source == "squeue"
    assert log.lines == [("warn", "sacct is unavailable (sacct: error: Slurm accounting storage is disabled); "
                                  "following jobs with squeue and scontrol")]
    c.query(["21"])  # from then on, no sacct; and no scontrol while no job has ended
    assert c.run_tool.tools()[3:] == ["squeue"]


def test_client_scancel_sends_an_array_as_one_word_and_finds_jobs_by_batch_script(tmp_path):
    c, log = client(lambda argv: (1, "", "scancel: error: Invalid job id 9") if argv[0] == "scancel" else (
        0, "12_0|%s/arrays/1/script\n12_1|%s/arrays/1/script\n9|%s/b/apptainer_command\n" % ((tmp_path,) * 3), ""))
    c.scancel(["12_3", "12_4", "9"])
    assert c.run_tool.calls == [["scancel", "9", "12_[3-4]"]]
    assert log.lines == [("error", "scancel failed (exit 1): scancel: error: Invalid job id 9")]
    for d in ("a", "b", "arrays/1"):
        (tmp_path / d).mkdir(parents=True)
    os.symlink(str(tmp_path / "a"), str(tmp_path / "arrays" / "1" / "1"))
    assert c.find_jobs([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")]) == {
        str(tmp_path / "a"): "12_1", str(tmp_path / "b"): "9"}
    assert c.held_jobs()[2] == S.HeldJob("9", "%s/b/apptainer_command" % tmp_path)


def test_client_reads_max_array_size_once():
    c, _ = client(lambda argv: (0, "AccountingStorageType   = accounting_storage/none\nMaxArraySize            = 40\n", ""))
    assert c.max_array_size() == 40 and c.max_array_size() == 40
    assert c.run_tool.calls == [["scontrol", "show", "config"]]
    c, _ = client(lambda argv: (1, "", "error"))
    assert c.max_array_size() == 1001  # Slurm's default


# -- the image cache ------------------------------------------------------------------------------

def test_image_cache_pulls_an_image_once_under_concurrency(tmp_path):
    def pull(argv):
        time.sleep(0.2)
        Path(argv[3]).write_text("sif")
        return 0, "", ""

    runner, log = Runner(pull), Log()
    cache = S.ImageCache("apptainer", str(tmp_path / "cache"), "ubuntu:22.04", log, run_tool=runner)
    got = []
    threads = [threading.Thread(target=lambda w=w: got.append(cache.image_for(w, "t", str(tmp_path / "run"))))
               for w in ("ubuntu:22.04", None, "*", ["ubuntu:22.04"]) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sif = str(tmp_path / "cache" / "docker" / "ubuntu" / "22.04.sif")
    assert got == [sif] * 12 and Path(sif).read_text() == "sif"
    assert len(runner.calls) == 1 and runner.calls[0][:3] == ["apptainer", "pull", "--force"]
    assert runner.calls[0][4] == "docker://ubuntu:22.04"
    assert log.lines == [("info", "pulling `docker://ubuntu:22.04` into `%s`" % sif)]
    # a second cache (another run) finds the file
    other = S.ImageCache("apptainer", str(tmp_path / "cache"), None, log, run_tool=runner)
    assert other.image_for("docker://ubuntu:22.04", "t", "/nowhere") == sif and len(runner.calls) == 1


def test_image_cache_keeps_a_failed_pull_and_tries_the_next_candidate(tmp_path):
    runner = Runner(lambda argv: (255, "", "FATAL: manifest unknown") if "nope" in argv[4] else (
        Path(argv[3]).write_text("sif") and (0, "", "")))
    cache = S.ImageCache("apptainer", None, None, Log(), run_tool=runner)
    run_dir = str(tmp_path / "run")
    assert cache.image_for(["nope:1", "ok:2"], "t", run_dir) == run_dir + "/apptainer-images/docker/ok/2.sif"
    with pytest.raises(S.RunError) as e:
        cache.image_for("nope:1", "t", run_dir)
    assert e.value.message == ("task `t`: no container image could be pulled:\n  could not pull container image "
                               "`docker://nope:1` (apptainer pull exit 255): FATAL: manifest unknown")
    assert [c[4] for c in runner.calls] == ["docker://nope:1", "docker://ok:2"]  # a permanent error: no retry
    with pytest.raises(S.RunError, match="unknown container source `ftp://x`"):
        cache.image_for("ftp://x", "t", run_dir)


# -- the array gatherer ---------------------------------------------------------------------------

class FakeMonitor:
    """What the gatherer and a SlurmJob need of the JobMonitor."""

    def __init__(self):
        self.queue_slots, self.ids, self.stocked = None, {}, False

    def submitted(self, job, job_id):
        self.ids[job.key] = job_id

    def queue_stocked(self):
        return self.stocked

    def ended(self, job):
        pass


def gather(tmp_path, n, options=("compute", None, False, None, (), 1, 2 ** 30)):
    sbatch_ids = iter(range(100, 200))
    c, _ = client(lambda argv: (0, "Submitted batch job %d\n" % next(sbatch_ids), "") if argv[0] == "sbatch" else
                  (0, "MaxArraySize = 1001\n", ""))
    monitor, flushes = FakeMonitor(), []
    g = S.ArrayGatherer(c, monitor, lambda i: str(tmp_path / "arrays" / str(i)), lambda: flushes.append(1), 0)
    jobs = []
    for i in range(n):
        adir = tmp_path / ("call-align-%d" % i) / "attempt-0"
        adir.mkdir(parents=True)
        job = S.SlurmJob(monitor, str(adir), "key-%d" % i, "align-%d" % i, 2 ** 30, lambda job_id: None)
        argv = S.sbatch_argv(*options, job_name="align-%d-0" % i, adir=str(adir), script=str(adir / "apptainer_command"))
        g.gather(S.Gathered(job, argv, options, "align"), "align")
        jobs.append(job)
    wait_for(lambda: len(monitor.ids) == n and not g.submitting, 5, "the gathered jobs to be submitted", interval=0.01)
    return c, g, monitor, jobs


def test_gatherer_sends_a_scatter_ready_at_once_as_one_job_array(tmp_path):
    c, g, monitor, jobs = gather(tmp_path, 20)
    sbatch = [call for call in c.run_tool.calls if call[0] == "sbatch"]
    assert len(sbatch) == 1 and "--array=0-19" in sbatch[0] and sbatch[0][-1] == str(tmp_path / "arrays" / "1" / "script")
    assert sbatch[0][sbatch[0].index("--job-name") + 1] == "align"
    assert monitor.ids == {"key-%d" % i: "100_%d" % i for i in range(20)}
    assert os.path.realpath(str(tmp_path / "arrays" / "1" / "7")) == jobs[7].adir
    assert (Path(jobs[7].adir) / "sbatch_command").read_text().endswith("# this attempt is element 7 of the array\n")
    g.close()


def test_gatherer_sends_a_small_group_as_jobs_of_their_own(tmp_path):
    c, g, monitor, jobs = gather(tmp_path, 3)
    sbatch = [call for call in c.run_tool.calls if call[0] == "sbatch"]
    assert len(sbatch) == 3 and not any(a.startswith("--array") for call in sbatch for a in call)
    assert sorted(monitor.ids.values()) == ["100", "101", "102"]
    assert (Path(jobs[0].adir) / "sbatch_command").read_text().startswith("sbatch --partition compute")
    assert [call[0] for call in c.run_tool.calls] == ["sbatch"] * 3  # too few for an array: no MaxArraySize probe
    g.close()


def test_gatherer_close_returns_the_jobs_still_gathering(tmp_path):
    c, _ = client(lambda argv: (0, "MaxArraySize = 1001\n", ""))
    monitor = FakeMonitor()
    monitor.stocked = True  # the queue holds a wave of ours: the group keeps gathering
    g = S.ArrayGatherer(c, monitor, lambda i: str(tmp_path / str(i)), lambda: None, 0)
    job = S.SlurmJob(monitor, str(tmp_path), "k", "t", 1, lambda job_id: None)
    g.gather(S.Gathered(job, ["sbatch", "s"], ("p",), "t"), "t")
    time.sleep(0.3)
    assert g.close() == [job] and not monitor.ids
    g.wait_submitted()


# -- the job monitor ------------------------------------------------------------------------------

class FakeClient:
    """The monitor's view of Slurm: `states` {job id: SlurmState}, changed by the test."""

    def __init__(self):
        self.states, self.usage, self.queries, self.cancelled = {}, {}, [], []
        self.status_source = "sacct"

    def query(self, ids, usage_of=()):
        self.queries.append(list(ids))
        return S.SlurmAnswer(dict((i, self.states[i]) for i in ids if i in self.states),
                             dict((i, self.usage[i]) for i in ids if i in self.usage and i in usage_of))

    def scancel(self, ids):
        self.cancelled += ids

    def refused_exclude(self, exclude, name, what):
        self.refused = (exclude, name, what)


@pytest.fixture
def monitor(tmp_path):
    fake, log, accounted = FakeClient(), Log(), {}

    def record(key, figures):
        accounted[key] = figures
        return True

    m = S.JobMonitor(fake, log, record, lambda: False, 0, 0.02, 0.5, 2)
    m.fake, m.log, m.accounted, m.tmp = fake, log, accounted, tmp_path
    yield m
    m.stop()


def follow(monitor, job_id, output=True):
    adir = monitor.tmp / job_id
    adir.mkdir()
    if output:
        (adir / "slurm.stdout").write_text("")  # its node opened its output: it started
    ids = []
    job = S.SlurmJob(monitor, str(adir), "key-" + job_id, "task-" + job_id, 100 * 2 ** 20, ids.append)
    monitor.take_slot(job)
    monitor.submitted(job, job_id)
    assert ids == [job_id] and (adir / "job_id").read_text() == job_id + "\n" and job.state == "SUBMITTED"
    return job


def test_monitor_follows_a_job_from_pending_to_running_to_its_exit_file(monitor):
    monitor.fake.states["7"] = S.SlurmState("PENDING", "0:0", "Priority")
    job = follow(monitor, "7")
    wait_for(lambda: job.state == "PENDING" and job.reason == "Priority", 5, "PENDING", interval=0.01)
    monitor.fake.states["7"] = S.SlurmState("RUNNING", "0:0", "None")
    wait_for(lambda: job.state == "RUNNING", 5, "RUNNING", interval=0.01)
    assert not job.done.is_set()
    monitor.fake.usage["7"] = {"ended_at": 1.0, "node": "vm", "peak_memory": None}
    (Path(job.adir) / "rc").write_text("0\n")
    assert job.wait() == 0 and job.message is None and not job.retry_free
    assert monitor.jobs == {} and monitor.queue_slots.acquire(blocking=False)  # its slot is free again
    monitor.fake.states["8"] = S.SlurmState("RUNNING", "0:0", "None")
    follow(monitor, "8")  # the next status query brings the ended job's usage along
    wait_for(lambda: "key-7" in monitor.accounted, 5, "the usage of job 7", interval=0.01)
    assert monitor.accounted["key-7"] == {"ended_at": 1.0, "node": "vm"} and not monitor.unaccounted


@pytest.mark.parametrize("state, code, message, retry_free, final", [
    (S.SlurmState("NODE_FAIL", "0:0", "None"), 1, "Slurm job 9 ended with NODE_FAIL (not the task's fault)", True, False),
    (S.SlurmState("PREEMPTED", "0:0", "None"), 1, "Slurm job 9 ended with PREEMPTED (not the task's fault)", True, False),
    (S.SlurmState("CANCELLED by 1000", "0:0", "None"), 143, "Slurm job 9 was cancelled (CANCELLED by 1000)", False, False),
    (S.SlurmState("TIMEOUT", "0:0", "None"), 143,
     "Slurm job 9 hit its time limit (sbatch --time, or the partition's MaxTime)", False, False),
    (S.SlurmState("OUT_OF_MEMORY", "0:0", "None"), 137,
     "Slurm job 9 ran out of memory: it used more than its --mem=100M (raise the task's `memory` requirement, or set "
     "`run.task.memory_retry_multiplier`)", False, False),
    (S.SlurmState("PENDING", "0:0", "PartitionConfig"), 1,
     "Slurm can never start job 9: pending with reason `PartitionConfig` (the request exceeds what the partition "
     "allows; check `scontrol show job 9` and the partition's limits)", False, True),
])
def test_monitor_finishes_a_job_slurm_ended_with_why(monitor, state, code, message, retry_free, final):
    monitor.fake.states["9"] = state
    job = follow(monitor, "9")
    assert job.wait() == code and job.message == message
    assert (job.retry_free, job.final, job.out_of_memory) == (retry_free, final, state.state == "OUT_OF_MEMORY")
    assert monitor.fake.cancelled == (["9"] if state.state == "PENDING" else [])


def test_monitor_asks_at_once_why_an_exit_file_shows_a_failure(monitor):
    monitor.interval = 3600  # no periodic query: only the failure makes it ask
    job = follow(monitor, "5")
    (Path(job.adir) / "rc").write_text("3\n")
    monitor.fake.states["5"] = S.SlurmState("FAILED", "3:0", "NonZeroExitCode")
    assert job.wait() == 3 and job.message is None
    assert monitor.fake.queries == [["5"]]


def test_monitor_waits_for_the_exit_file_of_a_job_slurm_says_completed(monitor):
    monitor.fake.states["6"] = S.SlurmState("COMPLETED", "0:0", "None")
    job = follow(monitor, "6")
    wait_for(lambda: job.ended_since is not None, 5, "Slurm to say it completed", interval=0.01)
    assert not job.done.is_set()  # the shared filesystem lags: its rc file is not here yet
    (Path(job.adir) / "rc").write_text("0\n")
    assert job.wait() == 0 and job.message is None
    lost = follow(monitor, "16")  # and one whose file never shows fails after exit_read_timeout
    monitor.fake.states["16"] = S.SlurmState("COMPLETED", "0:0", "None")
    assert lost.wait() == 1 and "did not appear within 0.5 s (exit_read_timeout)" in lost.message


def test_monitor_cancels_a_job_running_without_ever_starting_on_its_node(monitor):
    monitor.fake.states["4"] = S.SlurmState("RUNNING", "0:0", "None")
    job = follow(monitor, "4", output=False)
    assert job.wait() == 1 and job.retry_free and monitor.fake.cancelled == ["4"]
    assert "was RUNNING for 0 s but never started on its node" in job.message


def test_monitor_cancellation_finishes_the_jobs_and_scancels_them_in_one_call(monitor):
    monitor.fake.states.update({"1": S.SlurmState("RUNNING", "0:0", "None"), "2": S.SlurmState("PENDING", "0:0", "None")})
    one, two = follow(monitor, "1"), follow(monitor, "2")
    monitor.cancel_jobs([one, two])
    assert one.wait() == two.wait() == 143 and one.message == "canceled"
    assert monitor.fake.cancelled == ["1", "2"] and monitor.live_jobs() == []
    two.cancel()  # a second time: nothing more
    assert monitor.fake.cancelled == ["1", "2"]


def test_monitor_queue_slots_bound_the_jobs_in_the_queue_and_a_cancel_stops_the_wait(monitor):
    monitor.fake.states.update({"1": S.SlurmState("PENDING", "0:0", "None"), "2": S.SlurmState("PENDING", "0:0", "None")})
    one, _ = follow(monitor, "1"), follow(monitor, "2")
    third = S.SlurmJob(monitor, str(monitor.tmp), "k3", "task-3", 1, lambda job_id: None)
    took = threading.Thread(target=monitor.take_slot, args=(third,))
    took.start()
    time.sleep(0.2)
    assert took.is_alive()  # two of two slots are held
    monitor.cancel_jobs([one])
    took.join(2)
    assert not took.is_alive() and third.holds_slot
    monitor.aborting = lambda: True
    with pytest.raises(S.RunCancelled, match="task `task-4` was canceled"):
        monitor.take_slot(S.SlurmJob(monitor, str(monitor.tmp), "k4", "task-4", 1, lambda job_id: None))


def test_monitor_fails_a_job_that_vanished(monitor):
    S_grace = S._VANISHED_GRACE
    try:
        S._VANISHED_GRACE = 0.1
        job = follow(monitor, "3")
        assert job.wait() == 1 and job.message == "Slurm job 3 vanished: neither sacct knows it any more"
    finally:
        S._VANISHED_GRACE = S_grace


# -- the facade, end to end through fake Slurm commands ---------------------------------------------

FAKE_SLURM = r'''#!%(python)s
"""sbatch/squeue/sacct/scontrol/scancel for one test: a job runs at once as a local process (with
--dependency=afterany:<id>, once that one has ended), SLURM_JOB_ID set; each call is logged as a
JSON line to $FAKE_SLURM_DIR/calls; while $FAKE_SLURM_DIR/hold exists, a job with a dependency waits
too (a test's successor head job held in the queue), and while $FAKE_SLURM_DIR/array-gate exists, the
sbatch of an array does not return (it writes array-sbatch-started first). The first $FAKE_NODE_FAILS jobs (default none)
never run: sacct says they ended NODE_FAIL on node `bad<n>`."""
import fcntl, json, os, subprocess, sys, time
state, tool, args = os.environ["FAKE_SLURM_DIR"], os.path.basename(sys.argv[0]), sys.argv[1:]
if tool == "sbatch" and any(a.startswith("--array=") for a in args):
    open(os.path.join(state, "array-sbatch-started"), "w").close()
    while os.path.exists(os.path.join(state, "array-gate")):
        time.sleep(0.1)
lock = open(os.path.join(state, "lock"), "w")
fcntl.flock(lock, fcntl.LOCK_EX)  # one call at a time, as the controller answers them: sbatches at once get their own ids
with open(os.path.join(state, "calls"), "a") as f:
    f.write(json.dumps([tool] + args) + "\n")
if tool == "sacct" and os.environ.get("FAKE_STDOUT"):  # what the engine had printed by then
    with open(os.environ["FAKE_STDOUT"]) as out, open(os.path.join(state, "stdout-at-sacct"), "w") as f:
        f.write(out.read())
jobs = sorted(n[:-4] for n in os.listdir(state) if n.endswith(".job"))
if tool == "sbatch":
    n = 1 + len(set(j.split("_")[0] for j in jobs))
    array = [a.split("-")[-1] for a in args if a.startswith("--array=")]
    after = [os.path.join(state, a.split(":")[-1] + ".rc") for a in args if a.startswith("--dependency=afterany:")]
    for i in range(int(array[0]) + 1) if array else [None]:
        job_id, env = ("%%d_%%d" %% (n, i), dict(os.environ, SLURM_ARRAY_TASK_ID=str(i))) if array else (str(n), os.environ)
        env = dict(env, SLURM_JOB_ID=str(n))
        out = [args[args.index(o) + 1].replace("%%a", str(i)).replace("%%%%", "%%") for o in ("-o", "-e")]
        open(os.path.join(state, job_id + ".job"), "w").close()
        if n <= int(os.environ.get("FAKE_NODE_FAILS", "0")):
            continue
        subprocess.Popen(["bash", "-c", 'while [ -n "$5" ] && { [ ! -e "$5" ] || [ -e "$6" ]; }; do sleep 0.1; done; '
                          'bash "$1" > "$2" 2> "$3"; echo $? > "$4"', "-", args[-1]] + out
                         + [os.path.join(state, job_id + ".rc")] + (after[:1] + [os.path.join(state, "hold")] if after else []),
                         env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("Submitted batch job %%d" %% n)
elif tool == "sacct":
    heads = args[args.index("-j") + 1].split(",")
    for job_id in (j for j in jobs if j.split("_")[0] in heads):
        if int(job_id.split("_")[0]) <= int(os.environ.get("FAKE_NODE_FAILS", "0")):
            print("|".join([job_id, "NODE_FAIL", "0:0", "None", "2027-01-01T10:00:00", "2027-01-01T10:00:01",
                            "2027-01-01T10:00:02", "00:00:01", "", "", "100M", "1", "bad" + job_id]))
            continue
        try:
            code = int(open(os.path.join(state, job_id + ".rc")).read())
            row = ["COMPLETED" if code == 0 else "FAILED", "%%d:0" %% code, "None", "2027-01-01T10:00:00",
                   "2027-01-01T10:00:01", "2027-01-01T10:00:03", "00:00:02", "", "", "100M", "1", "node1"]
        except (OSError, ValueError):
            row = ["RUNNING", "0:0", "None", "2027-01-01T10:00:00", "2027-01-01T10:00:01", "Unknown", "00:00:01",
                   "", "", "100M", "1", "node1"]
        print("|".join([job_id] + row))
        print("|".join([job_id + ".batch", row[0], row[1], "", "", "", "", "", "00:00:00.250", "2048K", "", "", ""]))
elif tool == "scontrol" and args[:2] == ["show", "config"]:
    print("MaxArraySize = 1001")
elif tool == "scontrol" and args[-2:] == ["show", "partition"]:
    for name in os.environ.get("FAKE_SLURM_PARTITIONS", "compute").split():
        print("PartitionName=%%s MaxCPUsPerNode=UNLIMITED MaxMemPerNode=UNLIMITED State=UP TotalCPUs=8" %% name)
'''

FAKE_APPTAINER = r'''#!%(python)s
"""apptainer pull (an empty image) and exec (the command on this host, the paths bound under
/mnt/task replaced by their sources in the arguments and --pwd; the other binds are the same path)."""
import os, sys
args = sys.argv[1:]
if args[0] == "pull":
    open(args[2], "w").close()
    sys.exit(0)
binds, pwd, rest = [], None, args[1:]
while rest[0].startswith("-"):
    flag = rest.pop(0)
    if flag == "--bind":
        binds.append(rest.pop(0).split(":")[:2])
    elif flag == "--pwd":
        pwd = rest.pop(0)
rest = rest[1:]  # the image
for src, dst in binds:
    if dst.startswith("/mnt/task/"):
        rest, pwd = [a.replace(dst, src) for a in rest], pwd.replace(dst, src)
os.chdir(pwd)
os.execvp(rest[0], rest)
'''


def fake_slurm_env(tmp_path, **extra):
    """The fake Slurm commands and apptainer above, installed in `tmp_path`/bin: (the environment
    that finds them first, with `extra` variables, and the fake's state dir)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    for d in (bin_dir, state):
        d.mkdir(exist_ok=True)
    for tool in ("sbatch", "squeue", "sacct", "scontrol", "scancel"):
        (bin_dir / tool).write_text(FAKE_SLURM % {"python": sys.executable})
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "apptainer").write_text(FAKE_APPTAINER % {"python": sys.executable})
    (bin_dir / "apptainer").chmod(0o755)
    env = dict(os.environ, PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]), FAKE_SLURM_DIR=str(state),
               SPROCKET_CONFIG_ROOT=str(tmp_path / "config-root"), XDG_CACHE_HOME=str(tmp_path / "cache"), **extra)
    env.pop("SPROCKET_CONFIG", None)
    return env, state


def test_facade_runs_a_scatter_as_one_job_array_through_fake_slurm_commands(tmp_path):
    """The backend's parts wired together by the facade (`sprocket run` in a subprocess): a scatter
    of 20 goes out as one array, the next call as a job of its own, each job is seen to end from its
    exit status file, and one sacct at the end brings what they used, after the outputs are printed."""
    import json
    import subprocess

    (tmp_path / "sprocket.toml").write_text('run.experimental_features_enabled = true\n[run.backends.default]\n'
                                            'type = "slurm_apptainer"\ndefault_slurm_partition.name = "compute"\n')
    (tmp_path / "main.wdl").write_text("""version 1.0
task square {
  input { Int x }
  command <<< echo $(( ~{x} * ~{x} )) >>>
  output { Int y = read_int(stdout()) }
  runtime { container: "ubuntu:22.04" }
}
task count {
  input { Array[Int] ys }
  command <<< wc -l < ~{write_lines(ys)} >>>
  output { Int n = read_int(stdout()) }
  runtime { container: "ubuntu:22.04" }
}
workflow w {
  scatter (i in range(20)) { call square { input: x = i } }
  call count { input: ys = square.y }
  output { Array[Int] ys = square.y  Int n = count.n }
}
""")
    env, state = fake_slurm_env(tmp_path, FAKE_STDOUT=str(tmp_path / "stdout"))
    with open(str(tmp_path / "stdout"), "w") as stdout:
        p = subprocess.run(sprocket_argv("run", "-s", "-c", str(tmp_path / "sprocket.toml"),
                                         str(tmp_path / "main.wdl"), "-o", str(tmp_path / "out")), env=env,
                           cwd=str(tmp_path), stdout=stdout, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert p.returncode == 0, p.stderr
    outputs = (tmp_path / "stdout").read_text()
    assert json.loads(outputs) == {"w.ys": [i * i for i in range(20)], "w.n": 20}
    assert (state / "stdout-at-sacct").read_text() == outputs  # printed before the closing usage query
    calls = [json.loads(line) for line in (state / "calls").read_text().splitlines()]
    # the cluster probed once (its partitions), and MaxArraySize asked once a group could be an array
    assert calls[:2] == [["scontrol", "--all", "--oneliner", "show", "partition"], ["scontrol", "show", "config"]]
    # the scatter as one array (as several, or some alone, only where a loaded host paused its threads)
    sbatch, rest = [c for c in calls[2:] if c[0] == "sbatch"], [c[0] for c in calls[2:] if c[0] != "sbatch"]
    arrays = [int(a.split("-")[-1]) + 1 for c in sbatch for a in c if a.startswith("--array=")]
    assert arrays and sum(arrays) + len(sbatch) - len(arrays) - 1 == 20
    assert sbatch[-1][sbatch[-1].index("--job-name") + 1] == "count-0"
    # each job tagged with the run and its call; an array with the scatter's call
    comments = [[a for a in c if a.startswith("--comment=")] for c in sbatch]
    assert re.match(r"^--comment=sprocket:[a-z]+-[a-z]+-[0-9a-f]{6}:count$", comments[-1][0]), comments
    prefix = comments[-1][0][:-len("count")]
    for c, argv in zip(comments[:-1], sbatch[:-1]):
        array = any(a.startswith("--array=") for a in argv)
        assert re.match("^%s%s$" % (re.escape(prefix), "square" if array else r"square-\d+"), c[0]), comments
    assert rest == ["sacct"]  # jobs seen to end from their exit status files; one sacct, for their usage
    rows = db_rows(tmp_path / "out" / "sprocket.db",
                   "SELECT a.job_id, u.node, u.peak_memory FROM attempts a JOIN attempt_usage u ON u.key = a.key")
    assert len(rows) == 21 and all(r["node"] and r["peak_memory"] == 2 ** 21 for r in rows)  # sacct's peak memory
    if arrays == [20]:
        assert sorted(r["job_id"] for r in rows) == sorted(["1_%d" % i for i in range(20)] + ["2"])


def fake_slurm_run(tmp_path, config, wdl, **env_extra):
    """`sprocket run` of `wdl` with the slurm_apptainer backend (its settings: `config` lines) through
    the fake Slurm commands and apptainer above; (the process, its sbatch command lines, the output dir)."""
    import json
    import subprocess

    (tmp_path / "sprocket.toml").write_text('run.experimental_features_enabled = true\n[run.backends.default]\n'
                                            'type = "slurm_apptainer"\n' + config)
    (tmp_path / "main.wdl").write_text(wdl)
    env, state = fake_slurm_env(tmp_path, **env_extra)
    p = subprocess.run([sys.executable, str(Path(S.__file__)), "run", "-c", str(tmp_path / "sprocket.toml"),
                        str(tmp_path / "main.wdl"), "-o", str(tmp_path / "out")], env=env, cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    calls = [json.loads(line) for line in (state / "calls").read_text().splitlines()] if (state / "calls").exists() else []
    return p, [c for c in calls if c[0] == "sbatch"], tmp_path / "out"


SCRATCH_WDL = """version 1.0
task t {
  command <<<
    pwd > where.txt
    echo "$TMPDIR" > tmpdir.txt
    head -c 1000000 /dev/zero > big.tmp
    echo made > out.txt
  >>>
  output { File o = "out.txt"  String where = read_string("where.txt")  String tmpdir = read_string("tmpdir.txt") }
  runtime { container: "ubuntu:22.04"  disks: "local-disk 2 HDD" }
}
workflow w { call t  output { File o = t.o  String where = t.where  String tmpdir = t.tmpdir } }
"""


def test_scratch_work_runs_in_a_node_scratch_directory_and_copies_the_outputs_back(tmp_path):
    """`scratch` (a $VARIABLE the node expands) with `scratch_work`: the batch script makes a directory
    there, binds /tmp, /var/tmp and the working directory to it, sets TMPDIR, copies the working
    directory back before the exit status file, and removes the directory; `disks` is --tmp (MiB),
    `requeue` is --requeue."""
    import json

    node_scratch = tmp_path / "node-local"
    node_scratch.mkdir()
    p, sbatch, out = fake_slurm_run(tmp_path, 'scratch = "$NODE_SCRATCH"\nscratch_work = true\nrequeue = true\n',
                                    SCRATCH_WDL, NODE_SCRATCH=str(node_scratch))
    assert p.returncode == 0, p.stderr
    outputs = json.loads(p.stdout)
    assert outputs["w.where"].startswith(str(node_scratch) + "/sprocket.") and outputs["w.where"].endswith("/work")
    assert Path(outputs["w.o"]).read_text() == "made\n" and not Path(outputs["w.o"]).is_relative_to(node_scratch)
    work = Path(outputs["w.o"]).parent
    assert (work / "big.tmp").stat().st_size == 1000000  # the whole working directory came back
    assert list(node_scratch.iterdir()) == []  # and the node's directory went when the job ended
    (argv,) = sbatch
    assert "--tmp=2048" in argv and "--requeue" in argv and not any(a.startswith("--exclude") for a in argv)
    script = Path(argv[-1]).read_text()
    assert 'sprocket_scratch=$(mkdir -p "$NODE_SCRATCH" && mktemp -d "$NODE_SCRATCH/sprocket.XXXXXX")' in script
    assert "--bind \"$sprocket_scratch\"/tmp:/tmp:rw" in script and "export APPTAINERENV_TMPDIR=/tmp" in script
    assert "--bind \"$sprocket_scratch\"/work:/mnt/task/work:rw" in script
    copy_back, rc = script.index('cp -a "$sprocket_scratch/work/."'), script.rindex('"$rc" > ')
    assert copy_back < rc  # outputs on the shared file system before the exit status says the job is done


def test_scratch_without_scratch_work_keeps_the_working_directory_shared_and_a_bad_scratch_is_refused(tmp_path):
    import json

    node_scratch = tmp_path / "node-local"
    node_scratch.write_text("a file, not a directory\n")
    p, sbatch, out = fake_slurm_run(tmp_path, 'scratch = "$NODE_SCRATCH/x"\n', SCRATCH_WDL, NODE_SCRATCH=str(node_scratch))
    # the scratch must be writable on the node: the job says so and ends at once
    assert p.returncode == 1
    said = "sprocket: cannot make a directory in %s/x (the setting scratch = $NODE_SCRATCH/x) on node" % node_scratch
    assert any(said in f.read_text() for f in out.glob("**/slurm.stderr"))
    node_scratch.unlink()  # made on the node, parents and all
    tmp2 = tmp_path / "again"
    tmp2.mkdir()
    p, sbatch, out = fake_slurm_run(tmp2, 'scratch = "$NODE_SCRATCH/x"\n', SCRATCH_WDL, NODE_SCRATCH=str(node_scratch))
    assert p.returncode == 0, p.stderr
    outputs = json.loads(p.stdout)
    assert not outputs["w.where"].startswith(str(node_scratch)) and "--requeue" not in sbatch[0]
    assert list((node_scratch / "x").iterdir()) == []  # made, used for /tmp, and emptied at the job's end
    script = Path(sbatch[0][-1]).read_text()
    assert "--bind \"$sprocket_scratch\"/tmp:/tmp:rw" in script and "cp -a" not in script
    bad = tmp_path / "bad"
    bad.mkdir()
    p, _, _ = fake_slurm_run(bad, 'scratch = "$(rm -rf ~)"\n', SCRATCH_WDL)
    assert p.returncode == 1 and "`run.backends.default.scratch`" in p.stderr and "must be a path" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_nodes_are_excluded_from_later_jobs_up_to_the_cap_and_shown_in_the_report(tmp_path):
    """The first two jobs end NODE_FAIL (on bad1, then bad2): bad1 is excluded from the retries
    (--exclude), bad2 is not (max_excluded_nodes = 1, said once); report.html names bad1."""
    import json

    p, sbatch, out = fake_slurm_run(tmp_path, "interval = 1\nmax_excluded_nodes = 1\n",
                                    "version 1.0\ntask t { command <<< echo hi >>> output { String s = read_string(stdout()) }"
                                    ' runtime { container: "ubuntu:22.04" } }\nworkflow w { call t  output { String s = t.s } }\n',
                                    FAKE_NODE_FAILS="2")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"w.s": "hi"}
    excludes = [[a for a in argv if a.startswith("--exclude")] for argv in sbatch]
    assert excludes == [[], ["--exclude=bad1"], ["--exclude=bad1"]]
    assert p.stderr.count("node `bad1` is excluded from the run's later jobs: Slurm job 1 ended with NODE_FAIL") == 1
    assert p.stderr.count("node `bad2` failed a job (Slurm job 2 ended with NODE_FAIL), but 1 nodes are excluded "
                          "already (max_excluded_nodes): no more are") == 1
    report = out / "runs" / "w" / "_latest" / "report.html"
    text = report.read_text()
    assert "<th>nodes excluded</th><td><code>bad1</code> (t, attempt 0)" in text and "<code>bad2</code>" not in text


@pytest.mark.parametrize("case", ["apptainer_fatal", "launch_failure", "node_fail", "task_failure", "slow_fatal"])
def test_monitor_blames_the_node_for_infrastructure_failures_only(monitor, case):
    """NODE_FAIL, a job that never started on its node, and Apptainer's own error (exit 255, FATAL)
    within a second: the node is handed to exclude_node and the retry is free; the task's own
    failure, or a FATAL after a long run, is not the node's fault."""
    blamed = []
    monitor.exclude_node = lambda node, why: blamed.append((node, why)) or "node `%s` is excluded" % node
    monitor.interval = 3600 if case in ("apptainer_fatal", "task_failure", "slow_fatal") else 0
    job = follow(monitor, "9", output=case != "launch_failure")
    adir = Path(job.adir)
    if case == "node_fail":
        monitor.fake.states["9"] = S.SlurmState("NODE_FAIL", "0:0", "None", "n7")
    elif case == "launch_failure":
        monitor.fake.states["9"] = S.SlurmState("RUNNING", "0:0", "None", "n7")
    else:
        (adir / "apptainer.stderr").write_text("INFO: x\nFATAL:   container creation failed: mount hook function failure\n"
                                               if case != "task_failure" else "boom\n")
        (adir / "usage").write_text("node=n7\nstart=100.0\nend=%s\n0m0.0s 0m0.0s\n0m0.1s 0m0.0s\n" % (
            "100.4" if case != "slow_fatal" else "160.0"))
        monitor.fake.states["9"] = S.SlurmState("FAILED", "255:0", "NonZeroExitCode", "n7")
        (adir / "rc").write_text("255\n")
    code = job.wait()
    if case in ("task_failure", "slow_fatal"):
        assert blamed == [] and not job.retry_free and code == 255
        return
    assert [b[0] for b in blamed] == ["n7"] and job.retry_free and job.message.endswith("; node `n7` is excluded")
    why = {"node_fail": "Slurm job 9 ended with NODE_FAIL", "launch_failure": "Slurm job 9 never started there",
           "apptainer_fatal": "apptainer failed within a second: FATAL:   container creation failed: mount hook "
                              "function failure"}[case]
    assert blamed[0][1] == why


def test_client_submits_without_exclude_when_the_excluded_nodes_are_all_the_job_could_use(tmp_path):
    refusal = "sbatch: error: Batch job submission failed: Requested node configuration is not available"
    c, log = client(lambda argv: (1, "", refusal) if any(a.startswith("--exclude=") for a in argv)
                    else (0, "Submitted batch job 8\n", "") if argv[0] == "sbatch" else (0, "", ""))
    assert c.sbatch(["sbatch", "--exclude=n1,n2", str(tmp_path / "s")], "t") == "8"
    assert [a for a in c.run_tool.calls if a[0] == "sbatch"] == [["sbatch", "--exclude=n1,n2", str(tmp_path / "s")],
                                                                ["sbatch", str(tmp_path / "s")]]
    assert c.exclude_refused and log.lines == [("warn", "task `t`: sbatch refused the job (Requested node configuration is "
                                                        "not available), and took it without with --exclude=n1,n2: the "
                                                        "excluded nodes are all it could use; the run's jobs may use them again")]
    c, _ = client(lambda argv: (1, "", refusal) if argv[0] == "sbatch" else (0, "", ""))  # not the exclusion's fault
    with pytest.raises(S.RunError, match="Requested node configuration is not available"):
        c.sbatch(["sbatch", "--exclude=n1", str(tmp_path / "s")], "t")
    assert not c.exclude_refused


def test_monitor_a_job_slurm_failed_before_it_had_a_node_is_not_waited_for(monitor):
    """FAILED with no node: it never ran, so no exit status file will come; with an --exclude
    (all the nodes it could use) it runs again without, as the client is told."""
    job = follow(monitor, "4", output=False)
    job.excluding = "--exclude=n1"
    monitor.fake.states["4"] = S.SlurmState("FAILED", "0:0", "None", "")
    assert job.wait() == 1 and job.retry_free
    assert job.message == "Slurm job 4 failed before it started on a node (reason: none given)"
    assert monitor.fake.refused == ("--exclude=n1", "task-4", "Slurm failed job 4 before it started")


def test_a_partition_table_scratch_is_used_for_the_tasks_placed_there(tmp_path):
    """`<partition>.scratch` for the tasks placed on that partition's nodes, instead of `scratch`."""
    import json

    node_scratch = tmp_path / "gpu-local"
    p, sbatch, _ = fake_slurm_run(tmp_path, 'scratch = "/nowhere/$USER"\ndefault_slurm_partition.name = "compute"\n'
                                  'default_slurm_partition.scratch = "$NODE_SCRATCH"\nscratch_work = true\n',
                                  SCRATCH_WDL, NODE_SCRATCH=str(node_scratch))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["w.where"].startswith(str(node_scratch) + "/sprocket.")
    assert 'mktemp -d "$NODE_SCRATCH/sprocket.XXXXXX"' in Path(sbatch[0][-1]).read_text()
    bad = tmp_path / "bad"
    bad.mkdir()
    p, _, _ = fake_slurm_run(bad, 'default_slurm_partition.scratch = "/a b"\n', SCRATCH_WDL)
    assert p.returncode == 1 and "`run.backends.default.default_slurm_partition.scratch`" in p.stderr, p.stderr


# -- sprocket doctor (SlurmDoctor), with fake Slurm commands -----------------------------------------

PARTITION_LINE = ("PartitionName=compute AllowGroups=ALL Default=YES MaxCPUsPerNode=4 MaxMemPerNode=8000 State=UP "
                  "TotalCPUs=8 TRES=cpu=8,mem=16000M,node=1")


def doctor_lines(tmp_path, monkeypatch, table, sacct=(0, "7|COMPLETED|0:0|None\n", ""), scratch=None):
    """The check lines of a SlurmDoctor whose client runs fake commands; its test job's script runs
    at once on this host (`sbatch`), with a fake `apptainer` that says its version."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo"):  # found on PATH, never run
        (bin_dir / tool).write_text("#!/bin/sh\nexit 99\n")
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "fake-apptainer").write_text("#!/bin/sh\necho 'apptainer version 1.3.0'\n")
    (bin_dir / "fake-apptainer").chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ["PATH"]]))

    def answer(argv):
        if argv == ["sbatch", "--version"]:
            return 0, "slurm 23.02.1\n", ""
        if argv[0] == "scontrol":
            return 0, PARTITION_LINE + "\n", ""
        if argv[0] == "sinfo":
            return 0, "compute 8 16000\n", ""
        if argv[0] == "sbatch":  # the node: the script runs here
            subprocess.run(["bash", argv[-1]], check=True)
            return 0, "Submitted batch job 7\n", ""
        if argv[0] == "squeue":
            return 0, "7|COMPLETED|None\n", ""
        if argv[0] == "sacct":
            return sacct
        raise AssertionError(argv)

    c, _ = client(answer)
    table = dict({"type": "slurm_apptainer", "apptainer": {"executable": str(bin_dir / "fake-apptainer")}}, **table)
    settings = S.read_backend_settings(table)
    if scratch is not None:  # the `scratch` setting (issue 21 item 3), where the backend has it
        settings["scratch"] = scratch
    doctor = S.SlurmDoctor(c, "hpc", settings, str(tmp_path / "out"))
    return [S.check_line(check) for check in doctor.checks()], c


def test_doctor_check_lines_with_a_fake_client_all_ok(tmp_path, monkeypatch):
    lines, c = doctor_lines(tmp_path, monkeypatch, {"default_slurm_partition": {"name": "compute", "max_cpu_per_task": 4},
                                                    "apptainer": {"executable": str(tmp_path / "bin" / "fake-apptainer"),
                                                                  "image_cache_dir": str(tmp_path / "images")}})
    host = os.uname()[1]
    assert lines[:5] == [
        "ok  the Slurm commands (slurm 23.02.1)",
        "ok  partition `compute` (default_slurm_partition): a task can get 4 CPU(s) and 7.8 GiB there",
        "ok  a test job ran (Slurm job 7 on node %s)" % host,
        "ok  Apptainer on node %s (apptainer version 1.3.0)" % host,
        "ok  the output directory's file system: a file written on the node showed here after %s (`run.backends."
        "hpc.exit_read_timeout` = 270 s)" % lines[4].split("after ")[1].split(" (")[0]]
    assert lines[5:] == ["ok  accounting: sacct answers (job 7: COMPLETED)",
                         "ok  image cache `%s` is writable" % (tmp_path / "images")]
    sbatch = [call for call in c.run_tool.calls if call[0] == "sbatch" and call[1] != "--version"]
    assert len(sbatch) == 1 and sbatch[0][:3] == ["sbatch", "--partition", "compute"]  # one job, as tasks go
    assert os.listdir(str(tmp_path / "out")) == []  # its directory is gone


def test_doctor_check_lines_name_what_is_wrong_and_the_fix(tmp_path, monkeypatch):
    lines, c = doctor_lines(tmp_path, monkeypatch, {"default_slurm_partition": {"name": "compute", "max_memory_per_task": "16 GiB"}},
                            sacct=(1, "", "sacct: error: Problem talking to the database: Connection refused\n"))
    assert lines[1] == ("FAIL partition `compute` (default_slurm_partition): default_slurm_partition.max_memory_per_task "
                        "= 16.0 GiB, but a task can get 4 CPU(s) and 7.8 GiB there; lower "
                        "`run.backends.hpc.default_slurm_partition.max_memory_per_task` to 7.8 GiB")
    assert not any("test job" in line for line in lines)  # not submitted where the partition is wrong
    assert [call[0] for call in c.run_tool.calls] == ["sbatch", "scontrol", "sinfo"]


def test_doctor_check_lines_when_the_job_finds_no_apptainer_and_sacct_fails(tmp_path, monkeypatch):
    lines, _ = doctor_lines(tmp_path, monkeypatch, {"apptainer": {"executable": "no-such-apptainer"}},
                            sacct=(1, "", "sacct: error: Problem talking to the database: Connection refused\n"))
    assert lines[1] == "ok  no partition configured: jobs go to the cluster's default partition"
    assert lines[3].startswith("FAIL Apptainer on node ") and "no-such-apptainer: command not found" in lines[3]
    assert lines[3].endswith("; install Apptainer on the compute nodes, load its module through "
                             "`run.backends.hpc.sbatch.args`, or set `run.backends.hpc.apptainer.executable`")
    assert lines[5] == ("FAIL accounting: sacct failed (exit 1): sacct: error: Problem talking to the database: "
                        "Connection refused; start slurmdbd, or fix AccountingStorageHost in slurm.conf (until then "
                        "runs cannot tell why a job failed, nor record what it used)")
    assert lines[6].startswith("ok  image cache: none")


def test_doctor_check_line_format():
    assert S.check_line(S.Check("the thing", None, None)) == "ok  the thing"
    assert S.check_line(S.Check("the thing", "it broke\nbadly", "mend it")) == "FAIL the thing: it broke / badly; mend it"


def test_doctor_checks_the_scratch_setting_on_the_node(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCTOR_SCRATCH", str(tmp_path / "node-local"))
    lines, _ = doctor_lines(tmp_path, monkeypatch, {}, scratch="$DOCTOR_SCRATCH/sprocket")
    host = os.uname()[1]
    assert lines[4] == "ok  scratch $DOCTOR_SCRATCH/sprocket on node %s (%s) is writable" % (
        host, tmp_path / "node-local" / "sprocket"), lines
    assert os.listdir(str(tmp_path / "node-local" / "sprocket")) == []  # what it made there is gone
    (tmp_path / "again").mkdir()
    lines, _ = doctor_lines(tmp_path / "again", monkeypatch, {}, scratch="/proc/no-scratch")
    assert lines[4].startswith("FAIL scratch /proc/no-scratch on node %s: cannot make a directory there: mkdir: " % host)
    assert lines[4].endswith('; set `run.backends.hpc.scratch` to a node-local directory jobs can write (e.g. "$TMPDIR")')
