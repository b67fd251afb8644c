"""`sprocket cancel` and `retry` on the real Slurm cluster (tests/test_slurm.py's Cluster, fixtures and
requirements; skipped without a cluster). A few small jobs each: the cluster is shared.

* cancel of a live run from another process, and of a run whose engine was killed: nothing of theirs
  is left in squeue, one scancel each, and sprocket.db says canceled (run, tasks, attempts);
* retry after a failure (its input overridden) submits only the failed task again (sbatch calls
  counted, sacct agrees).
"""

import json
import os
import signal
import subprocess

import pytest

from conftest import db_rows, sprocket_argv
from test_slurm import (_PROBLEM, LIVE_STATES, double_bin, sacct_rows, sl, slurm_jobs,  # noqa: F401 (fixtures)
                        squeue_states, wait_for)
from test_slurm_parts import S

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM))]

NAPS = """\
    version 1.1

    task nap {
      input {
        Int i
      }
      command <<<
        sleep 120
      >>>
      output {
        Int o = i
      }
      runtime {
        container: "ubuntu:latest"
        cpu: 1
        memory: "100 MiB"
      }
    }

    workflow naps {
      scatter (i in range(2)) {
        call nap { input: i = i }
      }
      output {
        Array[Int] os = nap.o
      }
    }
"""

FLAKY = """\
    version 1.1

    task a {
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
        container: "ubuntu:latest"
        memory: "100 MiB"
      }
    }

    task b {
      input {
        Int code
      }
      command <<<
        exit ~{code}
      >>>
      output {
        String s = "ok"
      }
      runtime {
        container: "ubuntu:latest"
        memory: "100 MiB"
      }
    }

    workflow flaky {
      input {
        Int code
      }
      scatter (i in range(2)) {
        call a { input: i = i }
      }
      call b { input: code = code }
      output {
        Array[Int] os = a.o
        String s = b.s
      }
    }
"""


def control(sl, cfg, *args, timeout=120):
    return subprocess.run(sprocket_argv(*args[:1], "-s", "-c", str(cfg), *args[1:]), env=sl.env, cwd=str(sl.tmp),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


def running_jobs(proc, n):
    """The job ids of a run once its `n` jobs are in the queue and one runs."""
    ids = wait_for(lambda: proc.poll() is not None or (lambda f: f if len(f) == n and all(
        p.read_text().strip() for p in f) else None)(list(proc.out_dir.rglob("job_id"))), 90, "%d job ids" % n)
    assert proc.poll() is None, proc.communicate()[1]
    ids = {p.read_text().strip() for p in ids}
    wait_for(lambda: any(j.state == "RUNNING" for j in squeue_states(ids).values()), 90, "a job to run")
    return ids


def scancelled(calls):
    """The job ids the scancel calls named (`12_[0-1]`: both elements)."""
    return sorted(i for c in calls for w in c["argv"] for i in S.expand_slurm_id(w))


def assert_nothing_left(ids, db):
    assert not {i: j for i, j in squeue_states(ids).items() if j.state in LIVE_STATES}
    assert db_rows(db, "SELECT status FROM runs") == [{"status": "canceled"}]
    for table in ("tasks", "attempts"):
        assert {r["status"] for r in db_rows(db, "SELECT status FROM %s" % table)} == {"canceled"}, table


def test_real_cluster_cancel_of_a_live_run_and_of_an_orphaned_run_leave_nothing_in_squeue(sl):
    cfg = sl.config()
    sl.wrap("scancel")
    live = sl.start(sl.wdl(NAPS), cfg=cfg)
    ids = running_jobs(live, 2)
    r = control(sl, cfg, "cancel", "1", "-o", str(live.out_dir))
    assert r.returncode == 0 and r.stdout.strip().endswith(": canceled"), r.stderr
    assert sl.finish(live, timeout=60).rc == 1
    assert_nothing_left(ids, live.out_dir / "sprocket.db")
    assert set(scancelled(sl.calls("scancel"))) == ids  # the engine's own
    canceled_before = len(sl.calls("scancel"))

    dead = sl.start(sl.wdl(NAPS), cfg=cfg)
    ids = running_jobs(dead, 2)
    os.killpg(dead.pid, signal.SIGKILL)
    dead.communicate()
    assert {j.state for j in squeue_states(ids).values()} & {"RUNNING", "PENDING"}, "the jobs died with the engine"
    r = control(sl, cfg, "cancel", "1", "-o", str(dead.out_dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("its engine is gone; 2 job(s) canceled; marked canceled"), r.stdout
    scancels = sl.calls("scancel")[canceled_before:]
    assert len(scancels) == 1 and scancelled(scancels) == sorted(ids), scancels  # one call, both jobs
    wait_for(lambda: not {i: j for i, j in squeue_states(ids).items() if j.state in LIVE_STATES + ("COMPLETING",)},
             30, "the jobs to leave the queue")
    assert_nothing_left(ids, dead.out_dir / "sprocket.db")


def test_real_cluster_retry_submits_only_the_failed_task_again(sl):
    cfg = sl.config()
    sl.wrap("sbatch")
    first = sl.run(sl.wdl(FLAKY), "code=1", cfg=cfg)
    assert first.rc == 1, first.describe()
    before = len(sl.calls("sbatch"))
    assert 2 <= before <= 3  # a's elements (one array, or alone) and b
    r = control(sl, cfg, "retry", "1", "code=0", "-o", str(first.out_dir), timeout=240)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"flaky.os": [0, 1], "flaky.s": "ok"}
    again = sl.calls("sbatch")[before:]
    assert len(again) == 1 and "b-0" in again[0]["argv"], again
    b_jobs = [r["job_id"] for r in db_rows(first.out_dir / "sprocket.db", "SELECT job_id FROM attempts WHERE call = 'b' "
                                          "ORDER BY run_id")]
    assert len(b_jobs) == 2 and len(set(b_jobs)) == 2  # b ran in each run: two jobs
    rows = sacct_rows(b_jobs, "JobID,State")
    assert {rows[j]["State"] for j in b_jobs if j in rows} <= {"FAILED", "COMPLETED"}
