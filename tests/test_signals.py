"""Signals sent to `sprocket run` (Sprocket's Ctrl-C ladder, SIGTERM) and resuming a canceled run
through the call cache.

Each test starts the real program with subprocess.Popen in its own session (so a signal reaches
sprocket alone, as a terminal's Ctrl-C would reach only the foreground job's leader here), waits
until the tasks run (every task writes the PID of its shell, which leads the task's process group,
and of its `sleep` into files), signals it, and checks the processes and the database.

The ladder (shared/reference/sprocket-behaviour.md section 1):

* run.fail = "slow" (default): 1st Ctrl-C -> no new tasks, wait for the running ones; 2nd ->
  cancel (kill) the running ones; 3rd -> exit at once ("evaluation was interrupted");
* run.fail = "fast": 1st Ctrl-C -> cancel the running tasks; 2nd -> exit;
* SIGTERM (scancel, a batch system's limit): cancel everything at once, in both modes.

Whatever the way it is stopped, the run ends 'canceled' in `<out>/sprocket.db`, the exit status is
1, and no process of the run is left behind.
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import SPROCKET, assert_sane, db_rows, pid_alive as alive, proc_stat, run_cmd, wait_for, write

pytestmark = [pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs to run 2 tasks at once"),
              pytest.mark.usefixtures("isolated_config")]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def group_members(pgid):
    """Live (non-zombie) processes whose process group is pgid, from /proc/*/stat."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None and st[1] == pgid and st[0] != "Z":
                found.append(int(entry))
    return found


def assert_gone(pids, pgids, within=5.0):
    """Every pid dead (os.kill(pid, 0) -> ProcessLookupError, or a zombie) and no process left in
    the groups."""
    deadline = time.time() + within
    while time.time() < deadline:
        if not any(alive(p) for p in pids) and not any(group_members(g) for g in pgids):
            break
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            raise AssertionError("process %d of the run is still alive" % pid)
    for pgid in pgids:
        left = group_members(pgid)
        assert not left, "processes %s are still in the task's process group %d" % (left, pgid)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise AssertionError("process group %d still exists" % pgid)


SLEEPERS_WDL = """
    version 1.1

    task sleeper {
      input {
        Int i
        String dir
        Int secs
      }
      command <<<
        sleep ~{secs} &
        echo $! > "~{dir}/~{i}.child.tmp" && mv "~{dir}/~{i}.child.tmp" "~{dir}/~{i}.child"
        echo $$ > "~{dir}/~{i}.pid.tmp" && mv "~{dir}/~{i}.pid.tmp" "~{dir}/~{i}.pid"
        wait
        echo ~{i}
      >>>
      output {
        Int o = read_int(stdout())
      }
      runtime {
        cpu: 1
        memory: "100 MiB"
      }
    }

    workflow w {
      input {
        String dir
        Int secs
        Int n = 2
      }
      scatter (i in range(n)) {
        call sleeper { input: i = i, dir = dir, secs = secs }
      }
      output {
        Array[Int] done = sleeper.o
      }
    }
"""


class Started:
    """A `sprocket run` of SLEEPERS_WDL with its n tasks' first two running."""

    def __init__(self, tmp_path, secs, fail="slow", n=2):
        self.tmp = tmp_path
        self.doc = write(tmp_path / "w.wdl", SLEEPERS_WDL)
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.out = tmp_path / "out"
        self.db = self.out / "sprocket.db"
        cfg = tmp_path / "sprocket-test.toml"
        # two CPUs for tasks whatever the host has, so exactly two of them run at a time
        cfg.write_text('[run]\nfail = "%s"\n\n[run.backends.default]\ntype = "local"\ncpu = 2\n' % fail)
        self.proc = subprocess.Popen(
            run_cmd(self.doc, "dir=%s" % self.marks, "secs=%d" % secs, "n=%d" % n, "-o", self.out, "-c", cfg),
            cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.started = time.time()
        self.stdout = self.stderr = None
        wait_for(lambda: all((self.marks / ("%d.pid" % i)).exists() for i in range(min(n, 2))) or
                 self.proc.poll() is not None, 30, "the tasks to start")
        assert self.proc.poll() is None, "sprocket ended early:\n%s" % self.proc.stderr.read().decode()

    def pids(self):
        return [int(p.read_text()) for p in sorted(self.marks.glob("*.pid"))]

    def children(self):
        return [int(p.read_text()) for p in sorted(self.marks.glob("*.child"))]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout, self.stderr = out.decode(), err.decode()
        return self.proc.returncode

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        for pgid in self.pids():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def run_row(self):
        (run,) = db_rows(self.db, "SELECT * FROM runs")
        return run

    def task_rows(self):
        return db_rows(self.db, "SELECT * FROM tasks ORDER BY name")

    def assert_canceled(self, rc):
        text = self.stderr or ""
        assert "Traceback" not in text and "internal error" not in text.lower(), text
        assert rc == 1, "exit status %r:\n%s" % (rc, text)
        assert self.stdout.strip() == "", self.stdout
        run = self.run_row()
        assert run["status"] == "canceled", run
        assert run["completed_at"], run
        assert run["outputs"] is None


@pytest.fixture
def started(tmp_path):
    runs = []

    def start(**kw):
        s = Started(tmp_path, **kw)
        runs.append(s)
        return s

    yield start
    for s in runs:
        s.cleanup()


# --------------------------------------------------------------------------------------------
# D. the Ctrl-C ladder and SIGTERM
# --------------------------------------------------------------------------------------------


def test_one_sigint_under_slow_waits_for_running_tasks(started):
    s = started(secs=3, n=3)  # two run, the third waits for a CPU
    time.sleep(0.2)
    s.signal(signal.SIGINT)
    time.sleep(1.0)
    assert s.proc.poll() is None, "sprocket exited after one Ctrl-C under run.fail = \"slow\""
    pids = s.pids()
    assert len(pids) == 2
    assert all(alive(p) for p in pids), "a running task was killed after one Ctrl-C under \"slow\""
    rc = s.wait(30)
    s.assert_canceled(rc)
    assert "waiting for executing tasks to complete" in s.stderr, s.stderr
    # no new task started after the Ctrl-C
    assert not (s.marks / "2.pid").exists()
    tasks = s.task_rows()
    assert len(tasks) == 2, tasks
    for t in tasks:
        assert (t["status"], t["exit_status"]) == ("completed", 0), t
    assert_gone(pids + s.children(), pids)


def test_two_sigints_under_slow_kill_running_tasks(started):
    s = started(secs=30)
    pids, children = s.pids(), s.children()
    time.sleep(0.2)
    s.signal(signal.SIGINT)
    time.sleep(0.5)
    assert s.proc.poll() is None
    s.signal(signal.SIGINT)
    rc = s.wait(15)
    assert time.time() - s.started < 15
    s.assert_canceled(rc)
    assert "waiting for executing tasks to cancel" in s.stderr, s.stderr
    assert_gone(pids + children + [s.proc.pid], pids)
    tasks = s.task_rows()
    assert len(tasks) == 2
    assert {t["status"] for t in tasks} == {"canceled"}, tasks


def test_more_sigints_under_slow_still_end_canceled(started):
    # With the local backend the 2nd Ctrl-C kills the tasks at once, so sprocket is usually gone
    # before a 3rd; when a 3rd does arrive it must end the run just as cleanly.
    s = started(secs=30)
    pids, children = s.pids(), s.children()
    time.sleep(0.2)
    sent = 0
    for _ in range(3):
        if s.proc.poll() is not None:
            break
        s.signal(signal.SIGINT)
        sent += 1
        time.sleep(0.3)
    rc = s.wait(15)
    assert sent >= 2
    s.assert_canceled(rc)
    if sent == 3:
        assert "interrupted" in s.stderr, s.stderr
    assert_gone(pids + children + [s.proc.pid], pids)
    assert {t["status"] for t in s.task_rows()} == {"canceled"}


@pytest.mark.parametrize("fail", ["slow", "fast"])
def test_sigterm_cancels_everything(started, fail):
    s = started(secs=30, fail=fail)
    pids, children = s.pids(), s.children()
    time.sleep(0.2)
    s.signal(signal.SIGTERM)
    rc = s.wait(15)
    assert time.time() - s.started < 15
    s.assert_canceled(rc)
    assert_gone(pids + children + [s.proc.pid], pids)
    tasks = s.task_rows()
    assert len(tasks) == 2
    assert {t["status"] for t in tasks} == {"canceled"}, tasks


def test_one_sigint_under_fast_cancels_running_tasks(started):
    s = started(secs=30, fail="fast", n=3)
    pids, children = s.pids(), s.children()
    time.sleep(0.2)
    s.signal(signal.SIGINT)
    rc = s.wait(15)
    assert time.time() - s.started < 15
    s.assert_canceled(rc)
    assert_gone(pids + children + [s.proc.pid], pids)
    assert not (s.marks / "2.pid").exists()
    tasks = s.task_rows()
    assert len(tasks) == 2
    assert {t["status"] for t in tasks} == {"canceled"}, tasks


# --------------------------------------------------------------------------------------------
# E. resume through the call cache after SIGTERM
# --------------------------------------------------------------------------------------------

TWENTY_WDL = """
    version 1.1

    task t {
      input {
        Int i
        String secs
      }
      command <<<
        sleep ~{secs}
        echo ~{i}
      >>>
      output {
        Int o = read_int(stdout())
      }
      runtime {
        cpu: 1
        memory: "100 MiB"
      }
    }

    workflow twenty {
      input {
        String secs = "0.5"
      }
      scatter (i in range(20)) {
        call t { input: i = i, secs = secs }
      }
      output {
        Array[Int] os = t.o
      }
    }
"""

CALL_RE = re.compile(r"^(t-\d+)-")


def _call_of(task_name):
    m = CALL_RE.match(task_name)
    assert m, "unexpected task attempt name %r" % task_name
    return m.group(1)


@pytest.mark.slow
def test_resume_after_sigterm_reuses_completed_tasks(tmp_path):
    doc = write(tmp_path / "twenty.wdl", TWENTY_WDL)
    cfg = tmp_path / "cache.toml"
    # `secs` does not change a task's result: leaving it out of the key lets the last runs be quick
    cfg.write_text('[run.task]\ncache = "on"\ncache_dir = "%s"\nexcluded_cache_inputs = ["secs"]\n\n'
                   '[run.backends.default]\ntype = "local"\ncpu = 2\n' % (tmp_path / "cache"))
    out = tmp_path / "out"
    db = out / "sprocket.db"
    cmd = run_cmd(doc, "-o", out, "-c", cfg)
    expected = {"twenty.os": list(range(20))}

    # 1. start, SIGTERM once about half of the tasks are done
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        def half_done():
            if proc.poll() is not None or not db.exists():
                return proc.poll() is not None
            try:
                rows = db_rows(db, "SELECT count(*) AS n FROM tasks WHERE status = 'completed'")
            except sqlite3.OperationalError:
                return False
            return rows[0]["n"] >= 8

        wait_for(half_done, 60, "half of the tasks to complete", interval=0.1)
        assert proc.poll() is None, "the first run ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        out1, err1 = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err1 = err1.decode()
    assert proc.returncode == 1, err1
    assert "Traceback" not in err1
    assert out1.decode().strip() == ""
    (run1,) = db_rows(db, "SELECT * FROM runs")
    assert run1["status"] == "canceled", run1
    rows1 = db_rows(db, "SELECT * FROM tasks WHERE run_id = ?", (run1["id"],))
    done1 = {_call_of(t["name"]) for t in rows1 if t["status"] == "completed"}
    assert 8 <= len(done1) < 20, rows1
    assert all(t["status"] in ("completed", "canceled") for t in rows1), rows1

    # 2. the same command again: only the unfinished tasks run
    p2 = subprocess.run(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert_sane(p2)
    assert p2.returncode == 0, p2.stderr
    assert json.loads(p2.stdout) == expected
    run2 = db_rows(db, "SELECT * FROM runs ORDER BY id")[1]
    assert run2["status"] == "completed"
    rows2 = db_rows(db, "SELECT * FROM tasks WHERE run_id = ?", (run2["id"],))
    cached2 = {_call_of(t["name"]) for t in rows2 if t["status"] == "cached"}
    ran2 = {_call_of(t["name"]) for t in rows2 if t["status"] == "completed"}
    assert len(rows2) == 20, rows2
    assert cached2 == done1
    assert ran2 == {"t-%d" % i for i in range(20)} - done1
    assert len(cached2) + len(ran2) == 20
    rd2 = out / run2["directory"]
    with_attempts = {p.name for p in (rd2 / "calls").iterdir() if (p / "attempts").is_dir()}
    assert with_attempts == ran2

    # 3. --no-call-cache runs all twenty again
    fast = ["secs=0.05"]
    p3 = subprocess.run(cmd + fast + ["--no-call-cache"], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, timeout=120)
    assert_sane(p3)
    assert p3.returncode == 0, p3.stderr
    assert json.loads(p3.stdout) == expected
    run3 = db_rows(db, "SELECT * FROM runs ORDER BY id")[2]
    rows3 = db_rows(db, "SELECT * FROM tasks WHERE run_id = ?", (run3["id"],))
    assert len(rows3) == 20
    assert {t["status"] for t in rows3} == {"completed"}, rows3
    rd3 = out / run3["directory"]
    assert len([p for p in (rd3 / "calls").iterdir() if (p / "attempts").is_dir()]) == 20

    # 4. and without the flag everything comes from the cache
    p4 = subprocess.run(cmd + fast, cwd=str(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                        timeout=120)
    assert_sane(p4)
    assert p4.returncode == 0, p4.stderr
    assert json.loads(p4.stdout) == expected
    run4 = db_rows(db, "SELECT * FROM runs ORDER BY id")[3]
    rows4 = db_rows(db, "SELECT * FROM tasks WHERE run_id = ?", (run4["id"],))
    assert len(rows4) == 20
    assert {t["status"] for t in rows4} == {"cached"}, rows4
    rd4 = out / run4["directory"]
    assert not list(rd4.glob("calls/*/attempts"))


# --------------------------------------------------------------------------------------------
# a task failure goes down the same ladder: slow waits for the running tasks, fast cancels them
# --------------------------------------------------------------------------------------------

ONE_FAILS_WDL = """
    version 1.1

    task job {
      input {
        Int i
        String dir
        Int secs
      }
      command <<<
        if [ ~{i} -eq 0 ]; then
          for k in $(seq 100); do [ -e "~{dir}/1.pid" ] && break; sleep 0.1; done
          echo "failing on purpose" >&2
          exit 7
        fi
        sleep ~{secs} &
        echo $! > "~{dir}/~{i}.child.tmp" && mv "~{dir}/~{i}.child.tmp" "~{dir}/~{i}.child"
        echo $$ > "~{dir}/~{i}.pid.tmp" && mv "~{dir}/~{i}.pid.tmp" "~{dir}/~{i}.pid"
        wait
        echo ~{i}
      >>>
      output {
        Int o = read_int(stdout())
      }
      runtime {
        cpu: 1
        memory: "100 MiB"
      }
    }

    workflow w {
      input {
        String dir
        Int secs
      }
      scatter (i in range(2)) {
        call job { input: i = i, dir = dir, secs = secs }
      }
      output {
        Array[Int] done = job.o
      }
    }
"""


def _start_one_fails(tmp_path, fail, secs):
    doc = write(tmp_path / "w.wdl", ONE_FAILS_WDL)
    marks = tmp_path / "marks"
    marks.mkdir()
    cfg = tmp_path / "sprocket-test.toml"
    cfg.write_text('[run]\nfail = "%s"\n\n[run.backends.default]\ntype = "local"\ncpu = 2\n' % fail)
    proc = subprocess.Popen(run_cmd(doc, "dir=%s" % marks, "secs=%d" % secs, "-o", tmp_path / "out", "-c", cfg),
                            cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    return proc, marks, tmp_path / "out" / "sprocket.db"


def _cleanup(proc, marks):
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    for p in marks.glob("*.pid"):
        try:
            os.killpg(int(p.read_text()), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            pass


def _rows_by_call(db):
    rows = db_rows(db, "SELECT * FROM tasks")
    by = {}
    for t in rows:
        m = re.match(r"^(job-\d+)-", t["name"])
        assert m, t["name"]
        by.setdefault(m.group(1), []).append(t)
    return by


def test_task_failure_under_slow_waits_for_running_tasks(tmp_path):
    proc, marks, db = _start_one_fails(tmp_path, "slow", 2)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        _cleanup(proc, marks)
    err = err.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert out.decode().strip() == ""
    assert "exit code 7" in err, err
    (run,) = db_rows(db, "SELECT * FROM runs")
    assert run["status"] == "failed", run
    assert "exit code 7" in run["error"]
    by = _rows_by_call(db)
    assert [(t["status"], t["exit_status"]) for t in by["job-0"]] == [("failed", 7)]
    assert [(t["status"], t["exit_status"]) for t in by["job-1"]] == [("completed", 0)]


def test_task_failure_under_fast_cancels_running_tasks(tmp_path):
    proc, marks, db = _start_one_fails(tmp_path, "fast", 30)
    try:
        wait_for(lambda: (marks / "1.pid").exists() or proc.poll() is not None, 30, "the second task to start")
        pids = [int((marks / "1.pid").read_text()), int((marks / "1.child").read_text())]
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            raise AssertionError("sprocket still waits for the running task 5 s after another failed "
                                 "under run.fail = \"fast\"")
        err = err.decode()
        assert proc.returncode == 1, err
        assert "Traceback" not in err
        assert "exit code 7" in err, err
        assert_gone(pids, pids[:1])
        (run,) = db_rows(db, "SELECT * FROM runs")
        assert run["status"] == "failed", run
        assert "exit code 7" in run["error"]
        by = _rows_by_call(db)
        assert [(t["status"], t["exit_status"]) for t in by["job-0"]] == [("failed", 7)]
        assert [t["status"] for t in by["job-1"]] == ["canceled"]
    finally:
        _cleanup(proc, marks)


# --------------------------------------------------------------------------------------------
# a cancel that lands while an attempt is being started
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_while_an_attempt_starts_is_not_lost(tmp_path):
    """SIGTERM right as the attempt's files appear (before or after its process is spawned): the
    task must still be canceled at once. Random small delays; several tries to hit the window."""
    import random

    doc = write(tmp_path / "t.wdl", """
        version 1.1
        task s {
          input {
            String pidfile
            Int secs
          }
          command <<<
            echo $$ > "~{pidfile}"
            sleep ~{secs}
          >>>
          output {
            Int d = secs
          }
          runtime {
            memory: "100 MiB"
          }
        }
    """)
    for k in range(15):
        out = tmp_path / ("out%d" % k)
        pidfile = tmp_path / ("task%d.pid" % k)
        proc = subprocess.Popen(run_cmd(doc, "pidfile=%s" % pidfile, "secs=20", "-o", out), cwd=str(tmp_path),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            deadline = time.time() + 30
            while not list(out.glob("runs/s/*/attempts/0/command")):
                assert proc.poll() is None and time.time() < deadline, "the attempt never started"
                time.sleep(0.0005)
            time.sleep(random.uniform(0, 0.004))
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=3)
            except subprocess.TimeoutExpired:
                raise AssertionError("try %d: sprocket still runs 3 s after SIGTERM (the attempt was not canceled)" % k)
            assert proc.returncode == 1
            (run,) = db_rows(out / "sprocket.db", "SELECT status FROM runs")
            assert run["status"] == "canceled"
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text:  # (empty: the shell was killed between creating the file and writing to it)
                pgid = int(text)
                assert_gone([pgid], [pgid])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            if list(out.glob("runs/s/*/attempts/0/command")):
                try:
                    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 1, "the task's pid")
                except AssertionError:
                    pass
            if pidfile.exists() and pidfile.read_text().strip():
                try:
                    os.killpg(int(pidfile.read_text()), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


# --------------------------------------------------------------------------------------------
# G. after a crash of the engine (SIGKILL) on the local backend: the rerun adopts or kills
# --------------------------------------------------------------------------------------------

WAIT_GO_WDL = """
    version 1.1

    task wait_go {
      input {
        String dir
      }
      command <<<
        echo $$ >> "~{dir}/starts"
        echo $$ > "~{dir}/pid.tmp" && mv "~{dir}/pid.tmp" "~{dir}/pid"
        while [ ! -e "~{dir}/go" ]; do sleep 0.1; done
        echo "done by $$"
      >>>
      output {
        String said = read_string(stdout())
      }
    }
"""


def _crashed_run(tmp_path, wait_for_record=True, source=WAIT_GO_WDL):
    """A run of `source` (WAIT_GO_WDL) whose engine was SIGKILLed while its task runs, once the task's process
    group is recorded (or at once): (command, marks dir, the orphaned task's pid). The task lives on: it is in
    its own session."""
    doc = write(tmp_path / "wait_go.wdl", source)
    marks = tmp_path / "marks"
    marks.mkdir()
    cmd = run_cmd(doc, "dir=%s" % marks, "-o", tmp_path / "out")
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    db = tmp_path / "out" / "sprocket.db"

    def recorded():  # the task's process group is in sprocket.db (with the next batch of rows)
        return db.exists() and db_rows(db, "SELECT * FROM attempts WHERE process_group = ?",
                                       (int((marks / "pid").read_text()),))

    try:
        wait_for(lambda: (marks / "pid").exists() and (recorded() or not wait_for_record) or proc.poll() is not None,
                 30, "the task to start")
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.communicate()
    pid = int((marks / "pid").read_text())
    assert alive(pid), "the task died with the engine"
    return cmd, marks, pid


def test_a_rerun_after_a_crash_adopts_the_live_local_task_and_waits_for_it(tmp_path):
    cmd, marks, pid = _crashed_run(tmp_path)
    try:
        rerun = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
        db = tmp_path / "out" / "sprocket.db"
        wait_for(lambda: len(db_rows(db, "SELECT * FROM attempts WHERE adopted_from IS NOT NULL")) == 1, 30,
                 "the rerun to adopt the task")
        assert alive(pid) and rerun.poll() is None, "the adopted task was not waited for"
        (marks / "go").write_text("")
        out, err = rerun.communicate(timeout=60)
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    assert rerun.returncode == 0, err.decode()
    assert json.loads(out.decode()) == {"wait_go.said": "done by %d" % pid}
    assert (marks / "starts").read_text().split() == [str(pid)], "the task ran again"
    first, second = db_rows(db, "SELECT * FROM runs ORDER BY id")
    assert first["status"] == "orphaned" and second["status"] == "completed"
    (adopted,) = db_rows(db, "SELECT * FROM attempts WHERE run_id = ?", (second["id"],))
    (orphan,) = db_rows(db, "SELECT * FROM attempts WHERE run_id = ?", (first["id"],))
    assert adopted["adopted_from"] == orphan["key"] and orphan["process_group"] == pid
    assert adopted["status"] == "completed" and adopted["exit_status"] == 0


WAIT_GO_RETRY_WDL = WAIT_GO_WDL.replace("version 1.1", "version 1.2").replace("""      command <<<
""", """      requirements {
        max_retries: 1
      }
      command <<<
        if [ ! -e "~{dir}/failed" ]; then touch "~{dir}/failed"; exit 3; fi
""")


def test_a_rerun_after_a_crash_adopts_a_live_retry_of_the_task_and_waits_for_it(tmp_path):
    """The engine dies while the task's retry (attempt 1) runs: the rerun adopts that attempt, as
    the retry it is (it once failed at once, reading the out-of-memory flag of an attempt it never ran)."""
    cmd, marks, pid = _crashed_run(tmp_path, source=WAIT_GO_RETRY_WDL)
    try:
        rerun = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
        db = tmp_path / "out" / "sprocket.db"
        wait_for(lambda: db_rows(db, "SELECT * FROM attempts WHERE adopted_from IS NOT NULL") or rerun.poll() is not None,
                 30, "the rerun to adopt the retry")
        assert rerun.poll() is None, "the adopted retry was not waited for: %s" % rerun.communicate()[1].decode()
        assert alive(pid)
        (marks / "go").write_text("")
        out, err = rerun.communicate(timeout=60)
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    assert rerun.returncode == 0, err.decode()
    assert json.loads(out.decode()) == {"wait_go.said": "done by %d" % pid}
    assert (marks / "starts").read_text().split() == [str(pid)], "the retry ran again"
    first, second = db_rows(db, "SELECT * FROM runs ORDER BY id")
    (adopted,) = db_rows(db, "SELECT * FROM attempts WHERE run_id = ?", (second["id"],))
    orphan = db_rows(db, "SELECT * FROM attempts WHERE run_id = ? AND attempt = 1", (first["id"],))[0]
    assert adopted["attempt"] == 1 and adopted["adopted_from"] == orphan["key"] and orphan["process_group"] == pid
    assert adopted["status"] == "completed" and adopted["exit_status"] == 0


def test_a_rerun_that_cannot_adopt_kills_the_orphaned_task_before_running_it_again(tmp_path):
    """Found by its command line under the dead run's directory: also when the engine died before
    it wrote the task's rows (killed here the moment the task starts)."""
    cmd, marks, pid = _crashed_run(tmp_path, wait_for_record=False)
    try:
        rerun = subprocess.Popen(cmd + ["--no-reattach"], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        wait_for(lambda: len((marks / "starts").read_text().split()) == 2 or rerun.poll() is not None, 30,
                 "the task to start again")
        assert_gone([pid], [pid])  # killed before the task started again, not after
        (marks / "go").write_text("")
        out, err = rerun.communicate(timeout=60)
    finally:
        for p in [pid] + [int(x) for x in (marks / "starts").read_text().split()]:
            try:
                os.killpg(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    assert rerun.returncode == 0, err.decode()
    second = int((marks / "starts").read_text().split()[1])
    assert json.loads(out.decode()) == {"wait_go.said": "done by %d" % second}
    assert "killed the processes of the task in" in err.decode() and str(pid) in err.decode(), err.decode()


def test_an_orphaned_task_whose_adopter_died_too_is_killed_by_the_next_run_that_cannot_adopt_it(tmp_path):
    """Run 1 dies, run 2 adopts its task and dies too: the task is no longer followed, so run 3
    (which does not adopt) kills it before running it again."""
    cmd, marks, pid = _crashed_run(tmp_path)
    db = tmp_path / "out" / "sprocket.db"
    third = None
    try:
        second = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_for(lambda: len(db_rows(db, "SELECT * FROM attempts WHERE adopted_from IS NOT NULL")) == 1, 30,
                     "the second run to adopt the task")
        finally:
            second.kill()
            second.communicate()
        assert alive(pid)
        third = subprocess.Popen(cmd + ["--no-reattach"], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        wait_for(lambda: len((marks / "starts").read_text().split()) == 2 or third.poll() is not None, 30,
                 "the task to start again")
        assert_gone([pid], [pid])
        (marks / "go").write_text("")
        out, err = third.communicate(timeout=60)
    finally:
        if third is not None and third.poll() is None:
            third.kill()
            third.communicate()
        for p in [pid] + [int(x) for x in (marks / "starts").read_text().split()]:
            try:
                os.killpg(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    assert third.returncode == 0, err.decode()
    assert "killed the processes of the task in" in err.decode() and str(pid) in err.decode(), err.decode()


def test_a_rerun_runs_again_a_local_task_of_the_dead_run_that_ended_without_an_exit_status(tmp_path):
    cmd, marks, pid = _crashed_run(tmp_path)
    os.killpg(pid, signal.SIGKILL)  # as a reboot would: no `rc` file
    wait_for(lambda: not alive(pid), 10, "the orphan to die")
    (marks / "go").write_text("")
    rerun = subprocess.run(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    starts = (marks / "starts").read_text().split()
    assert len(starts) == 2 and json.loads(rerun.stdout) == {"wait_go.said": "done by %s" % starts[1]}
    assert "without an exit status" in rerun.stderr, rerun.stderr


def test_a_rerun_neither_kills_nor_adopts_the_task_of_a_live_engine_taken_for_an_orphan_by_its_silence(tmp_path):
    """An engine stopped (SIGSTOP) past the orphan timeout is marked `orphaned`, but it lives: a run
    in the same output directory leaves its task alone (no kill, no adoption), and once resumed it
    finishes."""
    doc = write(tmp_path / "wait_go.wdl", WAIT_GO_WDL)
    marks = tmp_path / "marks"
    marks.mkdir()
    cmd = run_cmd(doc, "dir=%s" % marks, "-o", tmp_path / "out")
    first = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    db = tmp_path / "out" / "sprocket.db"
    second = None
    try:
        wait_for(lambda: (marks / "pid").exists() and db.exists() and db_rows(
            db, "SELECT * FROM attempts WHERE process_group IS NOT NULL") or first.poll() is not None, 30, "the task to start")
        assert first.poll() is None, first.stderr.read().decode()
        pid = int((marks / "pid").read_text())
        first.send_signal(signal.SIGSTOP)
        with sqlite3.connect(str(db), timeout=30) as con:  # silent for an hour, as a long stop would leave it
            con.execute("UPDATE sessions SET heartbeat_at = datetime('now', '-60 minutes')")
        second = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True)
        wait_for(lambda: len((marks / "starts").read_text().split()) == 2 or second.poll() is not None, 30,
                 "the second run's task to start")
        assert alive(pid), "the task of a live engine was killed"
        (run1, run2) = db_rows(db, "SELECT * FROM runs ORDER BY id")
        assert run1["status"] == "orphaned"  # by Sprocket's rule: silent too long
        assert not db_rows(db, "SELECT * FROM adoptions") and not db_rows(
            db, "SELECT * FROM attempts WHERE adopted_from IS NOT NULL"), "the task of a live engine was adopted"
        first.send_signal(signal.SIGCONT)
        (marks / "go").write_text("")
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.communicate()
        for p in [int(x) for x in (marks / "starts").read_text().split()] if (marks / "starts").exists() else []:
            try:
                os.killpg(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    assert first.returncode == 0, err1.decode()
    assert json.loads(out1.decode()) == {"wait_go.said": "done by %d" % pid}
    assert second.returncode == 0, err2.decode()
    assert "killed the processes" not in err2.decode(), err2.decode()


def test_an_orphan_whose_pid_was_recycled_is_never_killed():
    """The start time recorded with a process group is checked: a live process that does not
    match it (a pid the kernel gave out again) is left alone."""
    sys.path.insert(0, str(SPROCKET.parent))
    import sprocket as S

    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        started = S.process_start(other.pid)
        assert started is not None
        boot, _, tick = started.rpartition(":")
        assert not S.kill_process_group(other.pid, "%s:%d" % (boot, int(tick) - 1))
        assert not S.kill_process_group(other.pid, None)
        assert other.poll() is None, "a process that is not the recorded one was killed"
        assert S.kill_process_group(other.pid, started)
        assert other.wait(timeout=10) == -signal.SIGKILL
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def _local_backend(S):
    """A local backend as a run with the default settings makes it (in this process)."""
    config = S.load_config(skip_search=True)
    name, table = config.backend()
    return S.make_backend(S.RunContext(S.run_settings(config), S.RunLog(S._LEVELS["ERROR"])), name,
                          S.read_backend_settings(table))


def test_a_live_local_task_is_found_by_its_attempt_directory_with_its_process_group_and_start_time(tmp_path):
    """task_processes() names each task a LocalProcess; the local backend's find_jobs() gives the
    Adoptable fields of those under the attempt directories asked for (also through a symlink)."""
    sys.path.insert(0, str(SPROCKET.parent))
    import sprocket as S

    adir = tmp_path / "run" / "attempts" / "0"
    adir.mkdir(parents=True)
    (adir / "command").write_text("sleep 30\n")
    (tmp_path / "link").symlink_to(tmp_path / "run")
    task = subprocess.Popen(["bash", "-c", S._LOCAL_WRAPPER, str(adir / "command"), str(adir / "rc")],
                            start_new_session=True)
    try:
        wait_for(lambda: S.task_processes([tmp_path]), 10, "the task to be found")
        found = S.task_processes([tmp_path / "run"])
        assert found == {os.path.realpath(adir): S.LocalProcess(task.pid, S.process_start(task.pid))}
        assert found[os.path.realpath(adir)].process_group == task.pid
        linked = str(tmp_path / "link" / "attempts" / "0")
        jobs = _local_backend(S).find_jobs([linked, str(tmp_path / "elsewhere")])
        assert jobs == {linked: {"process_group": task.pid, "process_started": S.process_start(task.pid)}}
        assert S.Adoptable(*[None] * 7)._replace(**jobs[linked]).process_group == task.pid
    finally:
        os.killpg(task.pid, signal.SIGKILL)
        task.wait()


def test_closing_the_local_backend_kills_its_running_and_adopted_tasks_and_nothing_else(tmp_path):
    """close() asks each job whether it runs (LocalProcessJob.running): a started task still running
    and an adopted one whose leader is the recorded process are killed; an ended task and an
    adopted one whose pid now belongs to another process are left alone."""
    sys.path.insert(0, str(SPROCKET.parent))
    import sprocket as S

    backend = _local_backend(S)
    out, err = str(tmp_path / "out"), str(tmp_path / "err")
    running = backend.start_job(["sleep", "30"], str(tmp_path), out, err, {})
    ended = backend.start_job(["true"], str(tmp_path), out, err, {})
    assert ended.wait() == 0
    followed = subprocess.Popen(["sleep", "30"], start_new_session=True)
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        started = S.process_start(stranger.pid)
        boot, _, tick = started.rpartition(":")
        adopted = backend.adopt(None, S.Adoptable(None, None, str(tmp_path), None, None, followed.pid,
                                                  S.process_start(followed.pid)))
        recycled = backend.adopt(None, S.Adoptable(None, None, str(tmp_path), None, None, stranger.pid,
                                                   "%s:%d" % (boot, int(tick) - 1)))
        assert [j.running() for j in (running, ended, adopted, recycled)] == [True, False, True, False]
        backend.close()
        assert running.wait() == 137 and followed.wait(timeout=10) == -signal.SIGKILL
        assert stranger.poll() is None, "a process that is not the adopted one was killed"
    finally:
        for p in (followed, stranger):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_an_engine_is_dead_only_when_its_pid_is_free_or_another_process_has_it():
    """engine_dead(): a live engine is not dead however silent; its pid given to another process
    (another start time) is; an engine of another host is never known to be dead."""
    sys.path.insert(0, str(SPROCKET.parent))
    import socket
    import sprocket as S

    host = socket.gethostname()
    other = subprocess.Popen(["sleep", "30"])
    try:
        started = S.process_start(other.pid)
        boot, _, tick = started.rpartition(":")
        assert not S.engine_dead(host, other.pid, started)
        assert not S.engine_dead(host, other.pid, None)  # no start time recorded: alive is alive
        assert S.engine_dead(host, other.pid, "%s:%d" % (boot, int(tick) - 1))  # the pid was given out again
        assert not S.engine_dead(host + ".elsewhere", other.pid, "x")
    finally:
        other.kill()
        other.wait()
    assert S.engine_dead(host, other.pid, started)


def test_a_task_row_is_written_before_the_next_task_starts(tmp_path):
    """Kill the engine the moment the second task starts: the first one's rows say completed
    (they are written before the attempt is reported done, not by a later batch)."""
    doc = write(tmp_path / "chain.wdl", """
        version 1.1

        task first {
          command <<< echo 1 >>>
          output { Int n = read_int(stdout()) }
        }

        task second {
          input {
            Int n
            String dir
          }
          command <<<
            echo $$ > "~{dir}/pid.tmp" && mv "~{dir}/pid.tmp" "~{dir}/pid"
            sleep 30
          >>>
        }

        workflow chain {
          input { String dir }
          call first
          call second { input: n = first.n, dir = dir }
        }
    """)
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen(run_cmd(doc, "dir=%s" % marks, "-o", tmp_path / "out"), cwd=str(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for(lambda: (marks / "pid").exists() or proc.poll() is not None, 30, "the second task to start",
                 interval=0.005)
        proc.kill()
        proc.communicate()
    finally:
        if (marks / "pid").exists():
            try:
                os.killpg(int((marks / "pid").read_text()), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    rows = db_rows(tmp_path / "out" / "sprocket.db", "SELECT call, status, exit_status FROM attempts ORDER BY call")
    assert {"call": "first", "status": "completed", "exit_status": 0} in rows, rows
