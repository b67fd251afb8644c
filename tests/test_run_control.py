"""Steering runs from another shell (sections 18-19): `sprocket status`, `cancel`, `retry` and `clean`.

Everything drives the real program in subprocesses: runs with the local backend through the conftest
helpers, and with the slurm_apptainer backend through tests/test_slurm_parts.py's fake Slurm commands,
here with a squeue that answers for the fake's jobs and a scancel that kills them (SQUEUE_SCANCEL).

What is promised (issue 20, items 4-7):

* ``status [RUN]``: a run (default the newest; by name, id, uuid or directory) with its tasks by
  state, the running and pending ones (their jobs, for how long, and on Slurm why they wait: one
  squeue for all its jobs, only while it is live), the failed ones (message, stderr path), its
  hand-offs and the runs it continues; an unknown run is one clear error;
* ``cancel RUN``: a live engine is asked to stop (``cancel-requested`` in the run directory, looked
  for every scheduler round, and SIGTERM on this host) and waited for; a run whose engine is gone has
  its jobs canceled with one call (one scancel) and is marked canceled: run, tasks and attempts;
* ``retry RUN [k=v]``: the same document and inputs (overrides on top), only what failed or never ran
  runs again (counted executions, counted sbatch calls); ``retries`` records it;
* ``clean``: the work/ and tmp/ of finished runs go, never a live run's, never what a kept run's
  outputs or the call cache use, never anything outside the output directory.
"""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import db_rows, kill_running, pid_alive, sprocket_argv, sprocket_cmd, sprocket_run, wait_for, write
from test_slurm_parts import FAKE_SLURM, S, fake_slurm_env

pytestmark = pytest.mark.usefixtures("isolated_config")

# Each sleeping task writes its pid (its process group's leader) to DIR/<i>.pid once it runs.
SLEEPERS_WDL = """
    version 1.1

    task nap {
      input {
        Int i
        String dir
      }
      command <<<
        echo $$ > "~{dir}/~{i}.tmp" && mv "~{dir}/~{i}.tmp" "~{dir}/~{i}.pid"
        sleep 60
      >>>
      output {
        Int o = i
      }
    }

    task quick {
      command <<<
        echo hi
      >>>
      output {
        String s = read_string(stdout())
      }
    }

    workflow wf {
      input {
        String dir
      }
      call quick
      scatter (i in range(2)) {
        call nap { input: i = i, dir = dir }
      }
      output {
        Array[Int] os = nap.o
      }
    }
"""

# `a` twice and `b` once; each appends its name to LOG when it runs; `b` fails until MARKER exists.
FLAKY_WDL = """
    version 1.1

    task a {
      input {
        Int i
        String log
      }
      command <<<
        echo a~{i} >> "~{log}"
        head -c 5000 /dev/zero > scratch.bin
        echo ~{i} > o.txt
      >>>
      output {
        File o = "o.txt"
      }
    }

    task b {
      input {
        String marker
        String log
      }
      command <<<
        echo b >> "~{log}"
        echo "no marker yet" >&2
        test -e "~{marker}"
      >>>
      output {
        String s = "ok"
      }
    }

    workflow wf {
      input {
        String marker
        String log
      }
      scatter (i in range(2)) {
        call a { input: i = i, log = log }
      }
      call b { input: marker = marker, log = log }
      output {
        Array[File] os = a.o
        String s = b.s
      }
    }
"""


def start_cmd(tmp_path, *args, env=None):
    """``sprocket.py ARGS...`` started in tmp_path, in its own session (a Popen, bytes)."""
    return subprocess.Popen(sprocket_argv(*[str(a) for a in args]), cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env)


def start_run(tmp_path, doc, *args, env=None):
    return start_cmd(tmp_path, "run", doc, *args, env=env)


def rows(db, sql):
    """db_rows(), or [] while the database or its tables are still being made."""
    try:
        return db_rows(db, sql) if db.exists() else []
    except sqlite3.OperationalError:
        return []


def task_pids(marks, n):
    wait_for(lambda: len(list(marks.glob("*.pid"))) == n, 60, "%d tasks to start" % n)
    return [int(p.read_text()) for p in sorted(marks.glob("*.pid"))]


def kill_groups(pids):
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@contextlib.contextmanager
def sleepers(tmp_path, out):
    """A run of SLEEPERS_WDL into `out` with both naps running (their pids in tmp_path/marks): yields
    `engine` (its Popen), `pids` (the naps' process groups) and `again()` (another engine of the same
    command: a rerun). At the end the naps and every engine started are killed, whatever happened."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    doc = write(tmp_path / "sleepers.wdl", SLEEPERS_WDL)
    engines = []

    def again():
        engines.append(start_run(tmp_path, doc, "dir=%s" % marks, "-o", out))
        return engines[-1]

    run = types.SimpleNamespace(engine=again(), pids=[], again=again)
    try:
        run.pids = task_pids(marks, 2)
        yield run
    finally:
        kill_groups(run.pids)
        kill_running(*engines)


def status_json(tmp_path, *args, env=None):
    r = sprocket_cmd("status", "--json", *args, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assert_canceled_everywhere(db, run_id):
    """The run, and every task and attempt of it that had not ended, say `canceled`."""
    (run,) = db_rows(db, "SELECT status FROM runs WHERE id = ?", (run_id,))
    assert run["status"] == "canceled"
    for table in ("tasks", "attempts"):
        states = {r["status"] for r in db_rows(db, "SELECT status FROM %s WHERE run_id = ?" % table, (run_id,))}
        assert states <= {"completed", "canceled"} and "canceled" in states, (table, states)


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


def test_status_shows_tasks_by_state_running_jobs_failures_and_refuses_an_unknown_run(tmp_path):
    out = tmp_path / "out"
    flaky = write(tmp_path / "flaky.wdl", FLAKY_WDL)
    failed = sprocket_run(flaky, "marker=%s" % (tmp_path / "marker"), "log=%s" % (tmp_path / "log"), "-o", out,
                          cwd=tmp_path)
    assert failed.returncode == 1
    with sleepers(tmp_path, out) as run:
        proc, pids = run.engine, run.pids
        wait_for(lambda: len(db_rows(out / "sprocket.db", "SELECT * FROM attempts WHERE run_id = 2 AND (status = "
                                     "'running' AND process_group IS NOT NULL OR status = 'completed')")) == 3, 30, "the tasks' rows")
        live = status_json(tmp_path, "-o", out)  # the newest run
        assert live["status"] == "running" and live["tasks"] == {"running": 2, "completed": 1}
        assert live["engine"]["pid"] == proc.pid
        assert sorted(e["call"] for e in live["running"]) == ["nap-0", "nap-1"]
        assert sorted(e["job_id"] for e in live["running"]) == sorted("process group %d" % p for p in pids)
        assert all(e["for_s"] >= 0 for e in live["running"]) and live["pending"] == [] and live["failed"] == []
        text = sprocket_cmd("status", "-o", out, cwd=tmp_path).stdout
        assert "running:\n  nap-0  attempt 0  process group" in text and "tasks: 2 running, 1 completed" in text
        assert "engine: pid %d on " % proc.pid in text
    (first,) = db_rows(out / "sprocket.db", "SELECT * FROM runs WHERE id = 1")
    run_dir = out / first["directory"]
    for ref in (first["name"], "1", first["uuid"]):
        st = status_json(tmp_path, ref, "-o", out)
        assert st["name"] == first["name"] and st["status"] == "failed"
        assert st["tasks"] == {"completed": 2, "failed": 1}
        (bad,) = st["failed"]
        assert bad["call"] == "b" and bad["exit_status"] == 1 and "task `b` failed" in bad["error"]
        assert Path(bad["stderr"]).read_text() == "no marker yet\n"
    # by its directory, from anywhere: the output directory is the one above it
    st = status_json(tmp_path.parent, run_dir)
    assert st["name"] == first["name"] and st["directory"] == str(run_dir)
    text = sprocket_cmd("status", first["name"], "-o", out, cwd=tmp_path).stdout
    assert "failed:\n  b  attempt 0  exit 1: task `b` failed" in text and "    stderr: %s" % bad["stderr"] in text
    wrong = first["name"][:-1] + ("0" if first["name"][-1] != "0" else "1")
    r = sprocket_cmd("status", wrong, "-o", out, cwd=tmp_path)
    assert r.returncode == 1 and "no run `%s`" % wrong in r.stderr and "did you mean `%s`?" % first["name"] in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_status_lists_the_hand_offs_and_runs_a_run_continues_and_cancel_follows_the_adopter(tmp_path):
    """Run A dies with its tasks running; run B (the same command) adopts them (reattach). A head
    job's hand-off of A is in `handoffs` (as `run --submit` writes it): B's status lists it, and the
    run it continues; A's says who adopted it; `cancel A` cancels B, which carries A on."""
    out = tmp_path / "out"
    db = out / "sprocket.db"
    with sleepers(tmp_path, out) as run:
        wait_for(lambda: len(db_rows(db, "SELECT * FROM attempts WHERE process_group IS NOT NULL")) == 3, 30, "rows")
        kill_running(run.engine)
        second = run.again()
        wait_for(lambda: [r["status"] for r in db_rows(db, "SELECT status FROM attempts WHERE adopted_from IS NOT NULL "
                                                           "ORDER BY status")] == ["completed", "running", "running"],
                 30, "the second run to adopt the tasks")
        con = sqlite3.connect(str(db), timeout=30)
        with con:
            con.execute("INSERT INTO handoffs (run_id, job_id, successor_job_id, reason) VALUES "
                        "(1, '101', '102', 'time limit (USR1)')")
        con.close()
        a, b = db_rows(db, "SELECT id, name FROM runs ORDER BY id")
        st = status_json(tmp_path, b["name"], "-o", out)
        assert st["continues"] == [a["name"]] and st["tasks"] == {"running": 2, "completed": 1}
        assert [(h["name"], h["job_id"], h["successor_job_id"], h["reason"]) for h in st["handoffs"]] == [
            (a["name"], "101", "102", "time limit (USR1)")]
        assert status_json(tmp_path, a["name"], "-o", out)["adopted_by"] == b["name"]
        text = sprocket_cmd("status", b["name"], "-o", out, cwd=tmp_path).stdout
        assert "hand-offs:\n" in text and "run `%s`: head job 101 -> 102 (time limit (USR1))" % a["name"] in text
        assert "continues: `%s`" % a["name"] in text
        dry = sprocket_cmd("clean", "--keep-last", "0", "--dry-run", "-o", out, cwd=tmp_path)
        assert "left run `%s`: run `%s` carries it on" % (a["name"], b["name"]) in dry.stderr
        assert dry.stdout.strip() == "would remove 0 file(s) of 0 run(s): 0 B (0 bytes) would be freed"
        r = sprocket_cmd("cancel", a["name"], "-o", out, cwd=tmp_path, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "run `%s` was adopted by run `%s`" % (a["name"], b["name"]) in r.stderr
        assert r.stdout.strip() == "run `%s`: canceled" % b["name"]
        second.communicate(timeout=30)
        assert not any(pid_alive(p) for p in run.pids)
        assert_canceled_everywhere(db, b["id"])


# --------------------------------------------------------------------------------------------
# cancel, local backend
# --------------------------------------------------------------------------------------------


def test_cancel_of_a_live_run_from_another_process_stops_it_as_sigterm_does_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with sleepers(tmp_path, out) as naps:
        proc, pids = naps.engine, naps.pids
        (run,) = db_rows(out / "sprocket.db", "SELECT * FROM runs")
        r = sprocket_cmd("cancel", run["name"], "-o", out, cwd=tmp_path, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "run `%s`: canceled" % run["name"]
        assert "asked the engine of run `%s` to cancel it (pid %d on " % (run["name"], proc.pid) in r.stderr
        _, err = proc.communicate(timeout=30)  # it had ended when cancel returned
        assert proc.returncode == 1 and "terminated by a signal: canceling executing tasks" in err.decode()
        assert (out / run["directory"] / "cancel-requested").is_file()
        assert not any(pid_alive(p) for p in pids)
        assert_canceled_everywhere(out / "sprocket.db", run["id"])
        again = sprocket_cmd("cancel", run["name"], "-o", out, cwd=tmp_path)
        assert again.returncode == 0 and again.stdout.strip() == "run `%s` has already ended: canceled" % run["name"]


def test_cancel_of_an_engine_that_does_not_answer_times_out_with_a_clear_message(tmp_path):
    """A stopped engine (SIGSTOP) neither sees the request nor handles SIGTERM: `cancel --timeout 2`
    says so; once it runs again it cancels the run."""
    out = tmp_path / "out"
    with sleepers(tmp_path, out) as run:  # (its clean-up's SIGKILL ends a stopped engine too)
        proc = run.engine
        os.kill(proc.pid, signal.SIGSTOP)
        r = sprocket_cmd("cancel", "1", "--timeout", "2", "-o", out, cwd=tmp_path)
        assert r.returncode == 1 and "has not finished canceling it after 2 s" in r.stderr, r.stderr
        assert "cancel-requested" in r.stderr and "Traceback" not in r.stderr
        os.kill(proc.pid, signal.SIGCONT)
        proc.communicate(timeout=30)
        assert_canceled_everywhere(out / "sprocket.db", 1)


def test_engine_stops_as_on_sigterm_when_the_cancel_request_file_appears_without_a_signal(tmp_path):
    """What `cancel` on another host does: only the file (the engine looks for it once a second)."""
    out = tmp_path / "out"
    with sleepers(tmp_path, out) as naps:
        proc, pids = naps.engine, naps.pids
        (run,) = db_rows(out / "sprocket.db", "SELECT * FROM runs")
        (out / run["directory"] / "cancel-requested").write_text("from another host\n")
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1
        assert "`sprocket cancel` asked this run to stop" in err.decode(), err.decode()
        assert not any(pid_alive(p) for p in pids)
        assert_canceled_everywhere(out / "sprocket.db", run["id"])


def test_cancel_of_an_orphaned_run_kills_its_tasks_by_process_group_and_marks_it_canceled(tmp_path):
    out = tmp_path / "out"
    with sleepers(tmp_path, out) as naps:
        pids = naps.pids
        wait_for(lambda: len(db_rows(out / "sprocket.db", "SELECT * FROM attempts WHERE process_group IS NOT NULL "
                                     "AND call LIKE 'nap%'")) == 2, 30, "the tasks' process groups in sprocket.db")
        kill_running(naps.engine)
        assert all(pid_alive(p) for p in pids), "the tasks died with their engine"
        (run,) = db_rows(out / "sprocket.db", "SELECT * FROM runs")
        r = sprocket_cmd("cancel", run["name"], "-o", out, cwd=tmp_path, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "run `%s`: its engine is gone; 2 job(s) canceled; marked canceled" % run["name"]
        wait_for(lambda: not any(pid_alive(p) for p in pids), 10, "the tasks to be killed")
        assert_canceled_everywhere(out / "sprocket.db", run["id"])
        (row,) = db_rows(out / "sprocket.db", "SELECT error FROM runs")
        assert "engine was gone" in row["error"]


@pytest.mark.podman
def test_cancel_of_an_orphaned_podman_run_removes_its_container_by_name(tmp_path):
    from test_containers import WAIT_GO_WDL, _containers, _end_waiting_runs, _project, _started

    doc = _project(tmp_path, WAIT_GO_WDL)
    (tmp_path / "marks").mkdir()
    out = tmp_path / "out"
    proc = start_run(tmp_path, doc, "marks=%s" % (tmp_path / "marks"), "-o", out)
    try:
        name = _started(tmp_path, out / "sprocket.db", proc)
        proc.kill()
        proc.communicate()
        assert name in _containers(), "the container died with its engine"
        r = sprocket_cmd("cancel", "1", "-o", out, cwd=tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith("its engine is gone; 1 job(s) canceled; marked canceled")
        assert name not in _containers()
        assert_canceled_everywhere(out / "sprocket.db", 1)
    finally:
        _end_waiting_runs(tmp_path, proc)


def test_cancel_refuses_an_unknown_run_and_needs_one(tmp_path):
    ok_run = sprocket_run(write(tmp_path / "flaky.wdl", FLAKY_WDL), "marker=%s" % tmp_path, "log=%s" % (tmp_path / "log"),
                          "-o", tmp_path / "out", cwd=tmp_path)
    assert ok_run.returncode == 0, ok_run.stderr
    r = sprocket_cmd("cancel", "no-such-run", "-o", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 1 and "no run `no-such-run`" in r.stderr and "Traceback" not in r.stderr
    r = sprocket_cmd("cancel", "1", "-o", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout.strip().endswith("has already ended: completed")
    r = sprocket_cmd("cancel", "-o", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 2 and "RUN" in r.stderr


# --------------------------------------------------------------------------------------------
# retry
# --------------------------------------------------------------------------------------------


def test_retry_runs_only_the_failed_task_again_with_overrides_on_top_and_records_it(tmp_path):
    out, log, marker = tmp_path / "out", tmp_path / "log", tmp_path / "marker"
    doc = write(tmp_path / "flaky.wdl", FLAKY_WDL)
    first = sprocket_run(doc, "marker=%s" % (tmp_path / "nowhere"), "log=%s" % log, "-o", out, cwd=tmp_path)
    assert first.returncode == 1 and sorted(log.read_text().split()) == ["a0", "a1", "b"]
    # the override is applied on top of the recorded inputs: `b` sees the marker that now exists
    marker.write_text("")
    r = sprocket_cmd("retry", "1", "marker=%s" % marker, "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(log.read_text().split()) == ["a0", "a1", "b", "b"], "only the failed task ran again"
    outputs = json.loads(r.stdout)
    assert outputs["wf.s"] == "ok" and [Path(p).read_text() for p in outputs["wf.os"]] == ["0\n", "1\n"]
    runs = db_rows(out / "sprocket.db", "SELECT * FROM runs ORDER BY id")
    assert [x["status"] for x in runs] == ["failed", "completed"]
    assert db_rows(out / "sprocket.db", "SELECT run_id, retry_of FROM retries") == [{"run_id": 2, "retry_of": 1}]
    assert json.loads(runs[1]["inputs"]) == {"wf.marker": str(marker), "wf.log": str(log)}
    assert status_json(tmp_path, "-o", out)["retry_of"] == runs[0]["name"]
    # a retry of the retry: everything is reused
    r = sprocket_cmd("retry", runs[1]["name"], "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(log.read_text().split()) == ["a0", "a1", "b", "b"]


def test_retry_after_clean_runs_again_what_clean_took_the_work_of(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log"
    doc = write(tmp_path / "flaky.wdl", FLAKY_WDL)
    assert sprocket_run(doc, "marker=%s" % (tmp_path / "nowhere"), "log=%s" % log, "-o", out, cwd=tmp_path).returncode == 1
    assert sprocket_cmd("clean", "--keep-last", "0", "-o", out, cwd=tmp_path).returncode == 0
    r = sprocket_cmd("retry", "1", "marker=%s" % tmp_path, "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(log.read_text().split()) == ["a0", "a0", "a1", "a1", "b", "b"]
    assert [Path(p).read_text() for p in json.loads(r.stdout)["wf.os"]] == ["0\n", "1\n"]


WAIT_GO_WDL = """
    version 1.1

    task wait_go {
      input {
        String dir
      }
      command <<<
        echo $$ >> "~{dir}/starts"
        while [ ! -e "~{dir}/go" ]; do sleep 0.1; done
        echo done
      >>>
      output {
        String said = read_string(stdout())
      }
    }

    task quick {
      input {
        String dir
      }
      command <<<
        echo quick >> "~{dir}/starts"
      >>>
    }

    workflow wf {
      input {
        String dir
      }
      call quick { input: dir = dir }
      call wait_go { input: dir = dir }
      output {
        String said = wait_go.said
      }
    }
"""


def test_retry_of_an_orphaned_run_follows_its_live_task_instead_of_running_it_again(tmp_path):
    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    db = out / "sprocket.db"
    first = start_run(tmp_path, write(tmp_path / "wait_go.wdl", WAIT_GO_WDL), "dir=%s" % marks, "-o", out)
    retry = None
    try:
        wait_for(lambda: len(rows(db, "SELECT * FROM attempts WHERE process_group IS NOT NULL")) == 2, 30,
                 "both tasks started")
        first.kill()
        first.communicate()
        pid = next(int(x) for x in marks.joinpath("starts").read_text().split() if x.isdigit())
        assert pid_alive(pid)
        retry = start_cmd(tmp_path, "retry", "1", "-o", out)
        wait_for(lambda: db_rows(db, "SELECT * FROM attempts WHERE run_id = 2 AND call = 'wait_go' AND adopted_from IS "
                                     "NOT NULL") or retry.poll() is not None, 30, "the retry to adopt the live task")
        assert retry.poll() is None, retry.communicate()[1].decode()
        (marks / "go").write_text("")
        stdout, stderr = retry.communicate(timeout=60)
        assert retry.returncode == 0, stderr.decode()
        assert json.loads(stdout.decode()) == {"wf.said": "done"}
        assert sorted(marks.joinpath("starts").read_text().split()) == sorted(["quick", str(pid)]), "a task ran again"
        assert db_rows(db, "SELECT run_id, by_run_id FROM adoptions") == [{"run_id": 1, "by_run_id": 2}]
        assert db_rows(db, "SELECT run_id, retry_of FROM retries") == [{"run_id": 2, "retry_of": 1}]
    finally:
        kill_running(first, retry)
        if (marks / "starts").exists():
            kill_groups([int(x) for x in marks.joinpath("starts").read_text().split() if x.isdigit()])


def test_retry_keeps_nested_inputs_and_refuses_a_live_run(tmp_path):
    nested = write(tmp_path / "nested.wdl", """
        version 1.1

        task t {
          input {
            String x = "default"
            String log
          }
          command <<<
            echo ~{x} | tee -a "~{log}"
          >>>
          output {
            String s = read_string(stdout())
          }
        }

        workflow wf {
          meta {
            allow_nested_inputs: true
          }
          input {
            String log
          }
          call t { input: log = log }
          output {
            String s = t.s
          }
        }
    """)
    out, log = tmp_path / "out", tmp_path / "log"
    first = sprocket_run(nested, "log=%s" % log, "wf.t.x=given", "wf.t.requirements.memory=\"200 MiB\"", "-o", out,
                         cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run,) = db_rows(out / "sprocket.db", "SELECT inputs FROM runs")
    assert json.loads(run["inputs"]) == {"wf.log": str(log), "wf.t.x": "given", "wf.t.requirements.memory": "200 MiB"}
    (tmp_path / "log").write_text("")
    r = sprocket_cmd("retry", "1", "wf.t.x=other", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"wf.s": "other"} and log.read_text() == "other\n"
    with sleepers(tmp_path, out):
        r = sprocket_cmd("retry", "3", "-o", out, cwd=tmp_path)
        assert r.returncode == 1 and "is still running: wait for it to end, or cancel it first" in r.stderr


# --------------------------------------------------------------------------------------------
# the fake Slurm: status (squeue), cancel (scancel), retry (sbatch counted)
# --------------------------------------------------------------------------------------------

# Added to the fake Slurm commands: squeue answers for the fake's jobs (`%i|%T|%r`: FAKE_SQUEUE_STATE
# and FAKE_SQUEUE_REASON for those still running; `-u`: their batch scripts), and scancel kills a job's
# processes and marks it.
SQUEUE_SCANCEL = r'''
def fake_job_group(job_id):
    rc = os.path.join(state, job_id + ".rc").encode()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open("/proc/" + pid + "/cmdline", "rb") as f:
                if rc in f.read().split(b"\0") and os.getpgid(int(pid)) == int(pid):
                    return int(pid)
        except OSError:
            continue
if tool == "squeue" and "-j" in args:
    heads = args[args.index("-j") + 1].split(",")
    for job_id in (j for j in jobs if j.split("_")[0] in heads):
        if os.path.exists(os.path.join(state, job_id + ".cancelled")):
            print(job_id + "|CANCELLED|None")
        elif os.path.exists(os.path.join(state, job_id + ".rc")):
            print(job_id + "|COMPLETED|None")
        else:
            st = os.environ.get("FAKE_SQUEUE_STATE", "RUNNING")
            print(job_id + "|" + st + "|" + (os.environ.get("FAKE_SQUEUE_REASON", "None") if st == "PENDING" else "None"))
elif tool == "squeue" and "-u" in args:  # (`%i|%o`: each job with its batch script, as sbatch numbered them)
    with open(os.path.join(state, "calls")) as f:
        sbatches = [c[1:] for c in (json.loads(line) for line in f) if c[0] == "sbatch"]
    for n, c in enumerate(sbatches, 1):
        array = [a.split("-")[-1] for a in c if a.startswith("--array=")]
        for job_id in ["%d_%d" % (n, i) for i in range(int(array[0]) + 1)] if array else [str(n)]:
            print(job_id + "|" + c[-1])
elif tool == "scancel":
    import re, signal
    def named(job_id, word):  # `12`, `12_3` or `12_[0-2,5]`
        head, _, index = job_id.partition("_")
        m = re.match(r"^(\d+)_\[([\d,-]+)\]$", word)
        if m is None:
            return word in (job_id, head)
        spans = [[int(x) for x in part.split("-")] for part in m.group(2).split(",")]
        return head == m.group(1) and index.isdigit() and any(s[0] <= int(index) <= s[-1] for s in spans)
    for word in args:
        for job_id in (j for j in jobs if named(j, word)):
            open(os.path.join(state, job_id + ".cancelled"), "w").close()
            group = fake_job_group(job_id)
            if group:
                os.killpg(group, signal.SIGKILL)
            with open(os.path.join(state, job_id + ".rc"), "w") as f:
                f.write("143\n")
'''

SLURM_SLEEPERS_WDL = """version 1.0
task nap {
  input { Int i }
  command <<< sleep 60 >>>
  output { Int o = i }
  runtime { container: "ubuntu:22.04" }
}
workflow w {
  scatter (i in range(3)) { call nap { input: i = i } }
  output { Array[Int] os = nap.o }
}
"""

SLURM_FLAKY_WDL = """version 1.0
task a {
  input { Int i }
  command <<< echo ~{i} >>>
  output { Int o = read_int(stdout()) }
  runtime { container: "ubuntu:22.04" }
}
task b {
  input { String marker }
  command <<< test -e ~{marker} >>>
  output { String s = "ok" }
  runtime { container: "ubuntu:22.04" }
}
workflow w {
  input { String marker }
  scatter (i in range(2)) { call a { input: i = i } }
  call b { input: marker = marker }
  output { Array[Int] os = a.o  String s = b.s }
}
"""


def slurm_setup(tmp_path, wdl, **env_extra):
    """The fake Slurm commands (with SQUEUE_SCANCEL), a slurm_apptainer configuration and `wdl`:
    (env, fake state dir, the arguments every command takes: -s -c sprocket.toml -o out)."""
    (tmp_path / "sprocket.toml").write_text('run.experimental_features_enabled = true\n[run.backends.default]\n'
                                            'type = "slurm_apptainer"\ninterval = 1\n')
    (tmp_path / "main.wdl").write_text(wdl)
    env, state = fake_slurm_env(tmp_path, **env_extra)
    for tool in ("squeue", "scancel"):
        (tmp_path / "bin" / tool).write_text(FAKE_SLURM % {"python": sys.executable} + SQUEUE_SCANCEL)
    return env, state, ["-s", "-c", str(tmp_path / "sprocket.toml"), "-o", str(tmp_path / "out")]


def fake_calls(state, tool=None):
    path = state / "calls"
    calls = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [c for c in calls if tool is None or c[0] == tool]


def live_fake_jobs(state):
    """The fake's jobs that neither ended nor were canceled, and whose processes still run."""
    return [p.stem for p in state.glob("*.job") if not (state / (p.stem + ".rc")).exists()]


def cancel_leftovers(state):
    """Kill what is left of the fake's jobs (a failed test's): the process groups whose command line
    names a job's exit status file in the fake's state directory."""
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            if any(a.startswith(str(state).encode()) and a.endswith(b".rc") for a in argv):
                os.killpg(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def job_words(words):
    """The job ids that scancel's words name (`12_[0-2]`: three elements)."""
    return sorted(i for w in words for i in S.expand_slurm_id(w))


@contextlib.contextmanager
def slurm_run(tmp_path, env, state, common):
    """slurm_setup's main.wdl run, once its three jobs are submitted: yields (engine, sprocket.db). At the
    end the engine, if it still runs, and what is left of the fake's jobs are killed."""
    proc = start_cmd(tmp_path, "run", *common, tmp_path / "main.wdl", env=env)
    try:
        db = tmp_path / "out" / "sprocket.db"
        wait_for(lambda: proc.poll() is not None or len(rows(db, "SELECT * FROM attempts WHERE job_id IS NOT NULL")) == 3,
                 60, "three jobs submitted")
        assert proc.poll() is None, proc.communicate()[1].decode()
        yield proc, db
    finally:
        kill_running(proc)
        cancel_leftovers(state)


def test_status_of_a_live_slurm_run_asks_squeue_once_why_its_jobs_wait(tmp_path):
    env, state, common = slurm_setup(tmp_path, SLURM_SLEEPERS_WDL, FAKE_SQUEUE_STATE="PENDING",
                                     FAKE_SQUEUE_REASON="Priority")
    with slurm_run(tmp_path, env, state, common) as (proc, db):
        before = len(fake_calls(state, "squeue"))
        st = status_json(tmp_path, *common, env=env)
        squeues = fake_calls(state, "squeue")[before:]
        assert len(squeues) == 1, squeues  # one batched query for all the run's jobs
        ids = sorted(r["job_id"] for r in db_rows(db, "SELECT job_id FROM attempts"))
        assert sorted(squeues[0][squeues[0].index("-j") + 1].split(",")) == sorted({i.split("_")[0] for i in ids})
        assert st["tasks"] == {"pending": 3} and st["running"] == []
        assert sorted(e["job_id"] for e in st["pending"]) == ids
        assert all(e["reason"] == "Priority" and e["for_s"] >= 0 for e in st["pending"])
        text = sprocket_cmd("status", *common, cwd=tmp_path, env=env).stdout
        assert "pending:\n  nap-" in text and "(Priority)" in text
        # cancel from another process: the engine cancels its jobs (one scancel), nothing is left
        r = sprocket_cmd("cancel", st["name"], *common, cwd=tmp_path, env=env, timeout=90)
        assert r.returncode == 0 and r.stdout.strip() == "run `%s`: canceled" % st["name"], r.stderr
        proc.communicate(timeout=30)
        (scancel,) = fake_calls(state, "scancel")  # one call, with every job
        assert job_words(scancel[1:]) == ids
        assert live_fake_jobs(state) == []
        assert_canceled_everywhere(db, 1)
        # an ended run: its jobs are not asked about
        before = len(fake_calls(state, "squeue"))
        assert status_json(tmp_path, *common, env=env)["status"] == "canceled"
        assert len(fake_calls(state, "squeue")) == before


def test_cancel_of_an_orphaned_slurm_run_is_one_scancel_of_all_its_jobs(tmp_path):
    env, state, common = slurm_setup(tmp_path, SLURM_SLEEPERS_WDL)
    with slurm_run(tmp_path, env, state, common) as (proc, db):
        proc.kill()
        proc.communicate()
        assert len(live_fake_jobs(state)) == 3, "the jobs died with the engine"
        r = sprocket_cmd("cancel", "1", *common, cwd=tmp_path, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith("its engine is gone; 3 job(s) canceled; marked canceled")
        (scancel,) = fake_calls(state, "scancel")  # one call, with every job
        ids = sorted(r["job_id"] for r in db_rows(db, "SELECT job_id FROM attempts"))
        assert job_words(scancel[1:]) == ids
        assert live_fake_jobs(state) == []
        squeue = subprocess.run(["squeue", "-h", "-o", "%i|%T|%r", "-j", ",".join(sorted({i.split("_")[0] for i in ids}))],
                                env=env, stdout=subprocess.PIPE, universal_newlines=True).stdout
        assert "RUNNING" not in squeue and "PENDING" not in squeue and squeue.count("CANCELLED") == 3
        assert_canceled_everywhere(db, 1)


def test_retry_through_fake_slurm_submits_only_the_failed_task_again(tmp_path):
    env, state, common = slurm_setup(tmp_path, SLURM_FLAKY_WDL)
    marker = tmp_path / "marker"
    first = subprocess.run(sprocket_argv("run", *common, str(tmp_path / "main.wdl"), "marker=%s" % marker), env=env,
                           cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=120)
    assert first.returncode == 1, first.stderr
    submitted = fake_calls(state, "sbatch")
    assert 2 <= len(submitted) <= 3  # a's two as an array or alone, and b
    marker.write_text("")
    r = subprocess.run(sprocket_argv("retry", "1", *common), env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"w.os": [0, 1], "w.s": "ok"}
    again = fake_calls(state, "sbatch")[len(submitted):]
    assert len(again) == 1 and again[0][again[0].index("--job-name") + 1] == "b-0", again


# --------------------------------------------------------------------------------------------
# clean
# --------------------------------------------------------------------------------------------

# `make` leaves its output and a scratch file in work/; the workflow's write_lines file is in the run's tmp/.
PRODUCE_WDL = """
    version 1.1

    task make {
      input {
        Int i
      }
      command <<<
        head -c 20000 /dev/zero > scratch.bin
        echo ~{i} > out.txt
      >>>
      output {
        File out = "out.txt"
      }
    }

    workflow wf {
      input {
        Int i
      }
      File listing = write_lines(["~{i}"])
      call make { input: i = i }
      output {
        File out = make.out
        String said = read_string(listing)
      }
    }
"""


def files_under(path):
    """{file or link: its size} below `path`, links not followed."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(str(path)):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found[os.path.join(dirpath, name)] = os.lstat(os.path.join(dirpath, name)).st_size
    return found


def produce_runs(out, tmp_path, count):
    """`count` runs of PRODUCE_WDL into `out` (i = 1, 2, ...), each of which must succeed."""
    doc = write(tmp_path / "produce.wdl", PRODUCE_WDL)
    for i in range(1, count + 1):
        r = sprocket_run(doc, "i=%d" % i, "-o", out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr


def test_clean_of_five_runs_removes_only_the_allowed_files_and_every_kept_output_still_resolves(tmp_path):
    """Five runs: r1 and r3 no longer used (their work/ and tmp/ go whole), r2 whose output the call
    cache holds and r4 (kept) reuses (only that file stays of its work/), r4 kept (--keep-last 1), and
    r5 live (untouched). The dry run changes nothing and says the same."""
    out = tmp_path / "out"
    cache_on = tmp_path / "cache.toml"
    cache_on.write_text('[run.task]\ncache = "on"\n')
    doc = write(tmp_path / "produce.wdl", PRODUCE_WDL)
    runs = []
    for args in (["i=1", "--no-call-cache"], ["i=2"], ["i=3", "--no-call-cache"], ["i=2"]):
        r = sprocket_run(doc, *args, "-c", cache_on, "-o", out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout))
    assert runs[3] == runs[1]  # r4 reused r2's call: its output is r2's file
    db = out / "sprocket.db"
    rows = db_rows(db, "SELECT * FROM runs ORDER BY id")
    dirs = [out / r["directory"] for r in rows]
    assert db_rows(db, "SELECT status FROM tasks WHERE run_id = 4") == [{"status": "cached"}]
    with sleepers(tmp_path, out) as naps:
        live_dir = out / db_rows(db, "SELECT directory FROM runs WHERE id = 5")[0]["directory"]
        before = files_under(out)
        used = runs[1]["wf.out"]
        gone = {p: n for p, n in before.items() for d in dirs[:3] if p.startswith(str(d) + "/") and p != used and (
            "work" in Path(p).relative_to(d).parts or Path(p).relative_to(d).parts[0] == "tmp")}
        assert len(gone) == 5 + 3 and used in before  # three runs' scratch.bin, r1/r3's out.txt, three listings
        dry = sprocket_cmd("clean", "--keep-last", "1", "--dry-run", "-o", out, cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert files_under(out) == before
        assert dry.stdout.splitlines()[-1].startswith("would remove %d file(s) of 3 run(s): " % len(gone))
        assert dry.stdout.splitlines()[-1].endswith("(%d bytes) would be freed" % sum(gone.values()))
        r = sprocket_cmd("clean", "--keep-last", "1", "-o", out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1].startswith("removed %d file(s) of 3 run(s): " % len(gone))
        assert r.stdout.splitlines()[-1].endswith("(%d bytes) freed" % sum(gone.values()))
        after = files_under(out)
        assert set(before) - set(after) == set(gone), "only the allowed files go"
        assert "emptied %s (1 file(s)" % os.path.relpath(os.path.dirname(used), out) in r.stdout
        assert "kept 1 file(s) that a kept run, the call cache or an index uses" in r.stdout
        for d in (dirs[0], dirs[2]):  # nothing of theirs is used: their work/ and tmp/ are gone whole
            assert not (d / "tmp").exists() and not list(d.glob("calls/*/attempts/*/work"))
            assert (d / "outputs.json").is_file() and list(d.glob("calls/*/attempts/*/stderr"))
        assert Path(used).read_text() == "2\n" and not (Path(used).parent / "scratch.bin").exists()
        kept = json.loads((dirs[3] / "outputs.json").read_text())  # the kept run's outputs still resolve
        assert Path(kept["wf.out"]).read_text() == "2\n"
        assert (live_dir / "tmp").is_dir() and all(p in after for p in before if p.startswith(str(live_dir)))
        assert all(pid_alive(p) for p in naps.pids)
        cleanups = db_rows(db, "SELECT run_id, paths, bytes_freed FROM cleanups ORDER BY run_id")
        assert [c["run_id"] for c in cleanups] == [1, 2, 3]
        assert sum(c["bytes_freed"] for c in cleanups) == sum(gone.values())
        assert sorted(json.loads(cleanups[0]["paths"])) == sorted(os.path.relpath(str(p), str(out)) for p in (
            dirs[0] / "tmp", dirs[0] / "calls" / "make" / "attempts" / "0" / "work"))
        # report.html and status say the work is gone
        rep = sprocket_cmd("report", rows[0]["name"], "-o", out, cwd=tmp_path)
        assert rep.returncode == 0, rep.stderr
        assert "work removed" in (dirs[0] / "report.html").read_text()
        assert "work removed: " in sprocket_cmd("status", "1", "-o", out, cwd=tmp_path).stdout
        # again: nothing left to remove
        again = sprocket_cmd("clean", "--keep-last", "1", "-o", out, cwd=tmp_path)
        assert again.stdout.splitlines() == ["removed 0 file(s) of 3 run(s): 0 B (0 bytes) freed"], again.stdout
        assert len(db_rows(db, "SELECT * FROM cleanups")) == 3


def test_clean_never_follows_a_symbolic_link_out_of_the_output_directory(tmp_path):
    out = tmp_path / "out"
    produce_runs(out, tmp_path, 2)
    outside = tmp_path / "precious"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "data.txt").write_text("keep me\n")
    (outside / "file.txt").write_text("keep me too\n")
    first = out / db_rows(out / "sprocket.db", "SELECT directory FROM runs WHERE id = 1")[0]["directory"]
    work = first / "calls" / "make" / "attempts" / "0" / "work"
    (work / "to-dir").symlink_to(outside / "sub")
    (work / "to-file").symlink_to(outside / "file.txt")
    # a run's tmp/ swapped for a link to a directory outside: not a directory of the run's, left
    (first / "tmp").rename(first / "tmp.moved")
    (first / "tmp").symlink_to(outside)
    before = files_under(outside)
    r = sprocket_cmd("clean", "--older-than", "0s", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert files_under(outside) == before and (outside / "sub" / "data.txt").read_text() == "keep me\n"
    assert not os.path.lexists(work / "to-dir") and not os.path.lexists(work / "to-file")  # the links went
    assert (first / "tmp").is_symlink() and (first / "tmp.moved").is_dir()
    assert "removed 7 file(s) of 2 run(s)" in r.stdout.splitlines()[-1], r.stdout


def test_clean_older_than_a_duration_and_its_errors(tmp_path):
    out = tmp_path / "out"
    produce_runs(out, tmp_path, 1)
    r = sprocket_cmd("clean", "--older-than", "1d12h", "-o", out, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "removed 0 file(s) of 0 run(s): 0 B (0 bytes) freed", r.stdout
    for bad in ("3x", "12", "h"):
        r = sprocket_cmd("clean", "--older-than", bad, "-o", out, cwd=tmp_path)
        assert r.returncode == 1 and "a duration is numbers with a unit each" in r.stderr and "Traceback" not in r.stderr
    r = sprocket_cmd("clean", "-o", out, cwd=tmp_path)
    assert r.returncode == 2 and "--keep-last" in r.stderr
    r = sprocket_cmd("clean", "--keep-last", "-1", "-o", out, cwd=tmp_path)
    assert r.returncode == 1 and "--keep-last -1" in r.stderr


def test_kept_paths_keep_a_link_and_what_it_leads_to_but_never_the_whole_output_directory(tmp_path):
    out = tmp_path / "out"
    (out / "a" / "dir").mkdir(parents=True)
    (out / "b").mkdir()
    (out / "b" / "link").symlink_to(out / "a" / "dir")
    kept = S.KeptPaths([str(tmp_path), "/", str(out), str(out / "b" / "link"), str(out / "a" / "f.txt")], str(out))
    assert str(out / "a" / "f.txt") in kept and str(out / "a") in kept  # the file, and the way to it
    assert str(out / "b" / "link") in kept and str(out / "a" / "dir" / "x") in kept  # the link, and below its target
    assert str(out / "a" / "g.txt") not in kept and str(out / "c") not in kept  # `/`, tmp_path, out: no reason


# --------------------------------------------------------------------------------------------
# clean beside runs that start, damaged records (the review's items 1, 2, 8 and 10)
# --------------------------------------------------------------------------------------------

CAT_WDL = """
    version 1.1

    task show {
      input {
        File f
      }
      command <<<
        cat "~{f}"
      >>>
      output {
        String s = read_string(stdout())
      }
    }

    workflow wf {
      input {
        File f
      }
      call show { input: f = f }
      output {
        String s = show.s
      }
    }
"""


def hold_lock(path, mode):
    import fcntl

    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, mode)
    return fd


def test_clean_and_a_starting_run_exclude_each_other_so_clean_never_takes_the_new_runs_input(tmp_path):
    """A run takes OUT/.clean.lock shared from checking its inputs to recording them (and what it
    adopts), `clean` exclusive from reading what the runs use to its last removal: here the test
    process holds the lock as the other side would, and each waits for it."""
    import fcntl

    out = tmp_path / "out"
    first = sprocket_run(write(tmp_path / "produce.wdl", PRODUCE_WDL), "i=7", "-o", out, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    used = json.loads(first.stdout)["wf.out"]  # in run 1's work/, which `clean --keep-last 0` may take
    cat = write(tmp_path / "cat.wdl", CAT_WDL)
    db = out / "sprocket.db"
    fd = hold_lock(out / ".clean.lock", fcntl.LOCK_EX)  # a clean at work
    run = start_run(tmp_path, cat, "f=%s" % used, "-o", out)
    try:
        wait_for(lambda: run.poll() is not None or len(rows(db, "SELECT * FROM runs")) > 1, 2, "the run", interval=0.1)
    except AssertionError:
        pass
    assert run.poll() is None and len(rows(db, "SELECT * FROM runs")) == 1, "the run did not wait for clean"
    os.close(fd)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0 and json.loads(stdout.decode()) == {"wf.s": "7"}, stderr.decode()
    assert "waiting for `sprocket clean` to finish" in stderr.decode()
    fd = hold_lock(out / ".clean.lock", fcntl.LOCK_SH)  # a run recording its inputs
    clean = subprocess.Popen(sprocket_argv("clean", "--keep-last", "0", "-o", str(out)), cwd=str(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        clean.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    assert clean.poll() is None and os.path.exists(used), "clean did not wait for the starting run"
    os.close(fd)
    stdout, stderr = clean.communicate(timeout=60)
    assert clean.returncode == 0, stderr.decode()
    assert "waiting for the runs starting to record their inputs" in stderr.decode()


GATE_WDL = """
    version 1.1

    task a {
      command <<<
        echo a > o.txt
      >>>
      output {
        File o = "o.txt"
      }
    }

    task b {
      input {
        String dir
      }
      command <<<
        if [ -e "~{dir}/fail" ]; then exit 1; fi
        while [ ! -e "~{dir}/go" ]; do sleep 0.1; done
      >>>
    }

    workflow wf {
      input {
        String dir
      }
      call a
      call b { input: dir = dir }
      output {
        File o = a.o
      }
    }
"""


def test_clean_leaves_a_run_that_a_live_retry_follows(tmp_path):
    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    (marks / "fail").write_text("")
    doc = write(tmp_path / "gate.wdl", GATE_WDL)
    assert sprocket_run(doc, "dir=%s" % marks, "-o", out, cwd=tmp_path).returncode == 1
    (marks / "fail").unlink()
    db = out / "sprocket.db"
    retry = start_cmd(tmp_path, "retry", "1", "-o", out)
    try:
        wait_for(lambda: rows(db, "SELECT * FROM attempts WHERE run_id = 2 AND call = 'b'") or retry.poll() is not None,
                 30, "the retry to run b")
        assert retry.poll() is None, retry.communicate()[1].decode()
        r = sprocket_cmd("clean", "--keep-last", "0", "-o", out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        name = db_rows(db, "SELECT name FROM runs WHERE id = 2")[0]["name"]
        assert "run `%s` retries it and has not ended" % name in r.stderr
        assert r.stdout.splitlines()[-1].startswith("removed 0 file(s) of 0 run(s)"), r.stdout
        (marks / "go").write_text("")
        stdout, stderr = retry.communicate(timeout=60)
        assert retry.returncode == 0, stderr.decode()
        assert Path(json.loads(stdout.decode())["wf.o"]).read_text() == "a\n"  # followed, and still there
    finally:
        kill_running(retry)


def test_clean_leaves_a_run_whose_recorded_directory_is_not_a_run_directory_or_holds_another_run(tmp_path):
    out = tmp_path / "out"
    produce_runs(out, tmp_path, 4)
    db = out / "sprocket.db"
    runs = db_rows(db, "SELECT * FROM runs ORDER BY id")
    with sqlite3.connect(str(db)) as c:
        c.execute("UPDATE runs SET directory = 'runs/wf' WHERE id = 1")  # the parent of every run's
        c.execute("UPDATE runs SET directory = ? WHERE id = 2", (runs[3]["directory"],))  # the kept run's
    before = files_under(out / runs[3]["directory"])  # run 4's, which run 2 claims too: neither is cleaned
    r = sprocket_cmd("clean", "--keep-last", "0", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "left run `%s`: its directory `runs/wf` is not a run directory" % runs[0]["name"] in r.stderr
    assert "left run `%s`: its directory `%s` holds the directory of run `%s`" % (
        runs[1]["name"], runs[3]["directory"], runs[3]["name"]) in r.stderr
    assert files_under(out / runs[3]["directory"]) == before, "the kept run lost files"
    assert not list((out / runs[2]["directory"]).glob("calls/*/attempts/*/work")), r.stdout  # run 3's work went
    assert " of 1 run(s): " in r.stdout.splitlines()[-1], r.stdout  # the runs it left are not counted
    # a run directory swapped for a link to `..` (runs/: which holds every run)
    moved = out / (runs[2]["directory"] + ".moved")
    (out / runs[2]["directory"]).rename(moved)
    (out / runs[2]["directory"]).symlink_to("..")
    before = files_under(out / "runs")
    r = sprocket_cmd("clean", "--keep-last", "0", "-o", out, cwd=tmp_path)
    assert r.returncode == 0 and "left run `%s`: its directory leads to `%s`, not a run directory" % (
        runs[2]["name"], out / "runs") in r.stderr, r.stderr
    assert files_under(out / "runs") == before


def test_clean_and_retry_of_a_run_with_damaged_recorded_inputs_stop_with_a_clear_error(tmp_path):
    out = tmp_path / "out"
    produce_runs(out, tmp_path, 2)
    db = out / "sprocket.db"
    with sqlite3.connect(str(db)) as c:
        c.execute("UPDATE runs SET inputs = '{' WHERE id = 2")
    name = db_rows(db, "SELECT name FROM runs WHERE id = 2")[0]["name"]
    before = files_under(out)
    r = sprocket_cmd("clean", "--keep-last", "1", "-o", out, cwd=tmp_path)  # run 2 kept: its inputs are kept
    assert r.returncode == 1 and "the inputs of run `%s` recorded in sprocket.db are not a JSON object" % name in r.stderr
    assert files_under(out) == before and not db_rows(db, "SELECT * FROM cleanups")
    r = sprocket_cmd("retry", "2", "-o", out, cwd=tmp_path)
    assert r.returncode == 1 and "the inputs of run `%s`" % name in r.stderr and "internal error" not in r.stderr


# --------------------------------------------------------------------------------------------
# cancel and retry of orphaned, handed-off and cleaned runs (the review's items 3-7, 9, 10)
# --------------------------------------------------------------------------------------------


def test_cancel_of_an_orphaned_run_kills_the_tasks_of_the_runs_it_adopted_and_those_not_recorded(tmp_path):
    """Run A dies with its tasks running; B adopts them and dies before it recorded them (its
    rows deleted), and A's row of one task is gone too (a dead engine had no time to write it).
    `cancel` of the chain kills both tasks (found below the runs' directories), without writing the
    request file for an engine that is gone (here a directory stands in its place, unwritable); on
    another host it refuses, naming the host."""
    out = tmp_path / "out"
    db = out / "sprocket.db"
    with sleepers(tmp_path, out) as run:
        pids = run.pids
        wait_for(lambda: len(db_rows(db, "SELECT * FROM attempts WHERE process_group IS NOT NULL")) == 3, 30, "rows")
        kill_running(run.engine)
        second = run.again()
        wait_for(lambda: len(db_rows(db, "SELECT * FROM attempts WHERE adopted_from IS NOT NULL")) == 3, 30,
                 "the second run to adopt the tasks")
        kill_running(second)
        assert all(pid_alive(p) for p in pids)
        a, b = db_rows(db, "SELECT * FROM runs ORDER BY id")
        assert sprocket_cmd("status", "-o", out, cwd=tmp_path).returncode == 0  # (which sees B is gone: orphaned)
        with sqlite3.connect(str(db)) as c:
            c.execute("DELETE FROM attempts WHERE run_id = 2")
            c.execute("DELETE FROM attempts WHERE run_id = 1 AND call = 'nap-0'")
            c.execute("UPDATE session_processes SET hostname = 'elsewhere' WHERE session_id = "
                      "(SELECT session_id FROM runs WHERE id = 2)")
        (out / b["directory"] / "cancel-requested").mkdir()
        r = sprocket_cmd("cancel", a["name"], "-o", out, cwd=tmp_path, timeout=60)
        assert r.returncode == 1 and "ran on host `elsewhere`" in r.stderr and "on `elsewhere`" in r.stderr, r.stderr
        assert all(pid_alive(p) for p in pids)
        with sqlite3.connect(str(db)) as c:
            c.execute("UPDATE session_processes SET hostname = ? WHERE session_id = (SELECT session_id FROM runs "
                      "WHERE id = 2)", (os.uname().nodename,))
        r = sprocket_cmd("cancel", a["name"], "-o", out, cwd=tmp_path, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "run `%s`: its engine is gone; 2 job(s) canceled; marked canceled" % b["name"]
        wait_for(lambda: not any(pid_alive(p) for p in pids), 10, "the tasks to be killed")
        assert db_rows(db, "SELECT status FROM runs WHERE id = 2") == [{"status": "canceled"}]


def test_cancel_of_a_handed_off_run_cancels_the_queued_successor_head_job_in_the_same_scancel(tmp_path):
    """A hand-off's successor head job (in `handoffs`) that has not started: the run is orphaned with
    no adopter; `cancel` cancels it with the run's jobs, in one scancel, also a job whose attempt row
    the dead engine never wrote (found by its batch script below the run directory)."""
    env, state, common = slurm_setup(tmp_path, SLURM_SLEEPERS_WDL)
    with slurm_run(tmp_path, env, state, common) as (proc, db):
        proc.kill()
        proc.communicate()
        ids = sorted(r["job_id"] for r in db_rows(db, "SELECT job_id FROM attempts"))
        with sqlite3.connect(str(db)) as c:
            c.execute("INSERT INTO handoffs (run_id, job_id, successor_job_id, reason) VALUES (1, '90', '91', 'time limit')")
            c.execute("DELETE FROM attempts WHERE job_id = ?", (ids[0],))
        r = sprocket_cmd("cancel", "1", *common, cwd=tmp_path, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        (scancel,) = fake_calls(state, "scancel")  # one call, with every job and the successor
        assert job_words(scancel[1:]) == sorted(ids + ["91"])
        assert live_fake_jobs(state) == []


def test_retry_of_a_partly_cleaned_run_runs_again_the_attempts_whose_work_clean_emptied(tmp_path):
    """Run 1 fails; run 2 (kept) reads a scratch file of run 1's a-0: `clean` empties a-0's work/
    but that file (its output o.txt goes), and a-1's whole. The retry runs both again."""
    out, log, marker = tmp_path / "out", tmp_path / "log", tmp_path / "marker"
    doc = write(tmp_path / "flaky.wdl", FLAKY_WDL)
    assert sprocket_run(doc, "marker=%s" % marker, "log=%s" % log, "-o", out, cwd=tmp_path).returncode == 1
    run_dir = out / db_rows(out / "sprocket.db", "SELECT directory FROM runs WHERE id = 1")[0]["directory"]
    (scratch,) = [p for p in run_dir.glob("calls/a-0/attempts/0/work/scratch.bin")]
    r = sprocket_run(write(tmp_path / "cat.wdl", CAT_WDL), "f=%s" % scratch, "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = sprocket_cmd("clean", "--keep-last", "1", "-o", out, cwd=tmp_path)
    assert r.returncode == 0 and "emptied " in r.stdout, r.stdout
    assert scratch.exists() and not (scratch.parent / "o.txt").exists()
    marker.write_text("")
    r = sprocket_cmd("retry", "1", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(log.read_text().split()) == ["a0", "a0", "a1", "a1", "b", "b"]
    assert [Path(p).read_text() for p in json.loads(r.stdout)["wf.os"]] == ["0\n", "1\n"]


def test_record_retry_refuses_a_run_another_adopted_meanwhile(tmp_path):
    out = tmp_path / "out"
    produce_runs(out, tmp_path, 3)
    with sqlite3.connect(str(out / "sprocket.db")) as c:
        c.execute("INSERT INTO adoptions (run_id, by_run_id) VALUES (1, 2)")  # a reattach that won the race
    names = [r["name"] for r in db_rows(out / "sprocket.db", "SELECT name FROM runs ORDER BY id")]
    store = S.Store(str(out))
    try:
        with pytest.raises(S.RunError, match="run `%s` was adopted meanwhile by run `%s`" % (names[0], names[1])):
            store.record_retry(3, 1, names[0], True)
        assert store.query("SELECT * FROM retries") == []
    finally:
        store.close()


EMPTY_WDL = """
    version 1.1

    workflow wf {
      output {
        Int n = 1
      }
    }
"""


def test_status_retry_messages_for_an_ended_run_without_tasks_a_test_run_and_a_directory_not_a_run(tmp_path):
    out = tmp_path / "out"
    assert sprocket_run(write(tmp_path / "empty.wdl", EMPTY_WDL), "-o", out, cwd=tmp_path).returncode == 0
    text = sprocket_cmd("status", "-o", out, cwd=tmp_path).stdout
    assert "\ntasks: none\n" in text + "\n", text
    (tmp_path / "somedir").mkdir()
    r = sprocket_cmd("status", str(tmp_path / "somedir"), cwd=tmp_path)
    assert r.returncode == 1 and "is a directory but no run's" in r.stderr, r.stderr
    proj = tmp_path / "proj"
    write(proj / "echo.wdl", "version 1.1\ntask echo {\n  command <<<\n    echo hi\n  >>>\n}\n")
    (proj / "echo.yaml").write_text("echo:\n  - name: ok\n")
    t = sprocket_cmd("test", ".", "--run-dir", str(out), cwd=proj)
    assert t.returncode == 0, t.stdout + t.stderr
    r = sprocket_cmd("retry", "2", "-o", out, cwd=tmp_path)
    assert r.returncode == 1 and "is a `sprocket test` run: test runs cannot be retried" in r.stderr, r.stderr
