"""The engine as a Slurm job on the real cluster (issue 20 items 1-3): `run --submit` handing off through
its time limits, and the tasks of an engine that runs inside a job getting their own requests. The
cluster and its helpers are test_slurm.py's (`sl`, the `slurm_jobs` check that no job is left)."""

import json
import os
import shlex
import subprocess
import time

import pytest

from conftest import db_rows, sprocket_argv, wait_for
from test_slurm import PART, REAL, _PROBLEM, double_bin, sl, slurm_jobs, squeue_states, wait_job_ended  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM))]

# Four waves of two 90 s tasks, each wave after the one before: six minutes of work, each task longer
# than the minute between two hand-offs.
WAVES = """\
version 1.0
task step {
  input { Int x  Int seconds }
  command <<< sleep ~{seconds}; echo $(( ~{x} + 1 )) >>>
  output { Int y = read_int(stdout()) }
  runtime { container: "ubuntu:latest"  cpu: 1  memory: "100 MB" }
}
workflow chain {
  input { Int seconds = 90 }
  scatter (i in range(2)) { call step as a { input: x = i, seconds = seconds } }
  scatter (y in a.y) { call step as b { input: x = y, seconds = seconds } }
  scatter (y in b.y) { call step as c { input: x = y, seconds = seconds } }
  scatter (y in c.y) { call step as d { input: x = y, seconds = seconds } }
  output { Array[Int] out = d.y }
}
"""


def sacct_jobs(since, workdir):
    """[{field: value}] of the jobs (not their steps) submitted since `since` from `workdir`."""
    fields = "JobID,JobName,State,ExitCode,WorkDir,ReqMem,AllocCPUS"
    p = subprocess.run([REAL["sacct"], "-X", "-P", "-n", "-S", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since)),
                        "--format", fields], stdout=subprocess.PIPE, universal_newlines=True, timeout=60)
    rows = [dict(zip(fields.split(","), line.split("|"))) for line in p.stdout.splitlines()]
    return [r for r in rows if os.path.realpath(r["WorkDir"]) == os.path.realpath(workdir)]


@pytest.mark.slow
def test_run_submit_with_a_two_minute_head_job_hands_off_until_the_workflow_is_done(sl):
    """Acceptance: the head job may live 2 minutes and asks USR1 60 s before (the most allowed: Slurm's
    controller looks at time limits every 30 s, so USR1 came 3-10 s early and SIGTERM 27 s after the
    limit; even 30 s late it would leave the engine time for its hand-off of about a second); the
    workflow needs 6 minutes. It completes with the right outputs through at least two hand-offs;
    sacct shows every task ran exactly once and no job was canceled; each head job ended COMPLETED."""
    cfg = sl.config('[run.head_job]\ntime = "2:00"\nhandoff_lead = 60\npartition = "%s"\nmemory = "500 MB"\n' % PART)
    wdl = sl.wdl(WAVES)
    start = time.time()
    p = subprocess.run(sprocket_argv("run", "-s", "-c", str(cfg), str(wdl), "-o", "out", "--submit"), env=sl.env,
                       cwd=str(sl.tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert p.returncode == 0, p.stderr
    sub = json.loads(p.stdout)
    db = sl.tmp / "out" / "sprocket.db"
    # it returned while its head job waits or runs (the workflow needs minutes)
    assert squeue_states({sub["job_id"]})[sub["job_id"]].state in ("PENDING", "RUNNING", "CONFIGURING")
    assert not os.path.exists(os.path.join(sub["directory"], "outputs.json"))

    def done():
        rows = db_rows(db, "SELECT status, directory FROM runs ORDER BY id") if db.exists() else []
        return rows if rows and rows[-1]["status"] not in ("running", "orphaned") else None
    runs = wait_for(done, 900, "the chain of head jobs to finish the run", interval=2)
    wall = time.time() - start
    assert runs[-1]["status"] == "completed", (runs, (sl.tmp / "out" / runs[-1]["directory"] / "output.log").read_text())
    last = sl.tmp / "out" / runs[-1]["directory"]
    assert json.loads((last / "outputs.json").read_text()) == {"chain.out": [4, 5]}
    handoffs = db_rows(db, "SELECT job_id, successor_job_id FROM handoffs ORDER BY id")
    assert len(handoffs) >= 2 and all(h["successor_job_id"] for h in handoffs), handoffs
    assert [h["job_id"] for h in handoffs[1:]] == [h["successor_job_id"] for h in handoffs[:-1]]  # one chain
    assert [r["status"] for r in runs] == ["orphaned"] * len(handoffs) + ["completed"]
    head_ids = [sub["job_id"]] + [h["successor_job_id"] for h in handoffs]
    for job_id in head_ids:
        wait_job_ended(job_id, 120)

    def accounted():
        jobs = sacct_jobs(start - 5, sl.tmp)
        return jobs if all(j["State"] not in ("RUNNING", "PENDING") for j in jobs) and len(jobs) >= 8 + len(head_ids) else None
    jobs = wait_for(accounted, 120, "sacct to have every job", interval=1)
    heads = [j for j in jobs if j["JobName"] == sub["name"]]
    tasks = [j for j in jobs if j["JobName"] != sub["name"]]
    assert sorted(j["JobID"] for j in heads) == sorted(head_ids)
    assert all(j["State"] == "COMPLETED" for j in heads), heads
    assert sorted(j["JobName"] for j in tasks) == sorted("%s-%d-0" % (c, i) for c in "abcd" for i in range(2)), tasks
    assert all(j["State"] == "COMPLETED" for j in tasks), tasks  # none canceled, none ran twice
    print("\nacceptance: %d hand-offs, %d head jobs, %d task jobs (each once, all COMPLETED), wall %.0f s" % (
        len(handoffs), len(heads), len(tasks), wall))


def test_a_task_submitted_from_inside_a_job_gets_its_own_requests(sl):
    """The engine inside `sbatch --mem=2G -c 2 --wrap "sprocket.py run ..."`: its sbatch sees none of
    the job's SLURM_* variables (but SLURM_CONF), and sacct shows the task's job with its own memory
    and CPU, not the enclosing job's."""
    wrap = sl.tmp / "env-bin"
    wrap.mkdir()
    seen = sl.tmp / "sbatch-env"
    (wrap / "sbatch").write_text('#!/bin/sh\nenv | grep "^SLURM_" > %s\nexec %s "$@"\n' % (
        shlex.quote(str(seen)), shlex.quote(REAL["sbatch"])))
    (wrap / "sbatch").chmod(0o755)
    env = dict(sl.env, PATH=os.pathsep.join([str(wrap), sl.env["PATH"]]))
    wdl = sl.wdl("""\
        version 1.0
        task t {
          command <<< echo hi >>>
          output { String s = read_string(stdout()) }
          runtime { container: "ubuntu:latest"  cpu: 1  memory: "300 MB" }
        }
        workflow w { call t  output { String s = t.s } }
        """)
    engine = sprocket_argv("run", "-s", "-c", str(sl.config()), str(wdl), "-o", str(sl.tmp / "out"))
    p = subprocess.run([REAL["sbatch"], "--parsable", "--mem=2G", "-c", "2", "--partition", PART, "-o",
                        str(sl.tmp / "outer.out"), "-e", str(sl.tmp / "outer.err"), "--chdir", str(sl.tmp), "--wrap", " ".join(shlex.quote(a) for a in engine)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert p.returncode == 0, p.stderr
    outer = p.stdout.strip().split(";")[0]
    wait_for(lambda: (sl.tmp / "outer.out").exists() and "w.s" in (sl.tmp / "outer.out").read_text(), 180,
             "the engine inside the job to finish", interval=1)
    assert json.loads((sl.tmp / "outer.out").read_text()) == {"w.s": "hi"}
    assert seen.read_text().split("=")[0] == "SLURM_CONF" and len(seen.read_text().splitlines()) == 1, seen.read_text()
    task = db_rows(sl.tmp / "out" / "sprocket.db", "SELECT job_id, directory FROM attempts")[0]["job_id"]
    rows = wait_for(lambda: {r["JobID"]: r for r in sacct_jobs(time.time() - 600, sl.tmp)
                             if r["JobID"] in (outer, task) and r["State"] == "COMPLETED"}, 60, "sacct", interval=1)
    assert rows[outer]["ReqMem"] == "2G" and rows[outer]["AllocCPUS"] == "2", rows
    assert rows[task]["ReqMem"] == "287M" and rows[task]["AllocCPUS"] == "1", rows
