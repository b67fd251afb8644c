"""The provenance database `<out>/sprocket.db`, the logs and the progress line of `sprocket run`.

Everything drives the real program in subprocesses (``python3 sprocket.py run ...``) on small WDL
documents written into the test's tmp dir (also the working directory).

What is promised (shared/reference/sprocket-behaviour.md sections 3, 4 and 6; sprocket.py sections
17-18, Provenance and Runs):

* ``<out>/sprocket.db`` is SQLite with a rollback journal (``journal_mode`` DELETE), a ``metadata``
  row ``version = "1"`` and Sprocket's tables (metadata, sessions, runs, tasks, task_logs, index_log);
* one ``sessions`` row per invocation (subcommand 'run', created_by = the user), one ``runs`` row
  (status, target, inputs/outputs JSON with ``target.x`` keys, directory relative to the output
  dir, started_at/completed_at), one ``tasks`` row per task attempt;
* several processes may share one output directory at once;
* a run whose process died is marked 'orphaned' by the next process opening the database; a
  session that is alive keeps its heartbeat fresh so it is never taken for dead;
* a file that is not our database is refused (exit 1) and left byte-for-byte unchanged;
* ``<out>/output.log`` gathers every invocation's log lines (timestamp, ``[run name]``); each run
  directory has its own ``output.log``;
* the progress line is drawn on a terminal only; stdout carries only the outputs JSON.
"""

import collections
import getpass
import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import (SPROCKET, assert_sane, db_rows, ok, run_cmd, run_dir_of, sprocket_cmd, sprocket_run, wait_for,
                      write)

LOG_LINE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?)\s+\S+\s+\[([^\]]+)\]\s+\S")
PROGRESS_RE = re.compile(r"\[00:00:0\d\] running `wf`: \d+ waiting, \d+ running, \d+ completed, \d+ failed, \d+ cached")

pytestmark = pytest.mark.usefixtures("isolated_config")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


SCATTER_WDL = """
    version 1.1

    task t {
      input {
        Int i
        String secs = "0.2"
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

    workflow wf {
      input {
        Int x = 5
      }
      scatter (i in range(x)) {
        call t { input: i = i }
      }
      output {
        Array[Int] os = t.o
      }
    }
"""

FAILING_WDL = """
    version 1.1

    task bad {
      input {
        Int code
      }
      command <<<
        echo "about to fail" >&2
        exit ~{code}
      >>>
      output {
        Int o = 1
      }
      runtime {
        maxRetries: 2
        memory: "100 MiB"
      }
    }

    workflow wf {
      input {
        Int code = 3
      }
      call bad { input: code = code }
      output {
        Int o = bad.o
      }
    }
"""

SLEEP_WDL = """
    version 1.1

    task s {
      input {
        String dir
        Int secs
      }
      command <<<
        echo $$ > "~{dir}/task.pid.tmp" && mv "~{dir}/task.pid.tmp" "~{dir}/task.pid"
        sleep ~{secs}
      >>>
      output {
        Int d = secs
      }
      runtime {
        memory: "100 MiB"
      }
    }
"""

TABLES = {"metadata", "sessions", "runs", "tasks", "task_logs", "index_log"}


# --------------------------------------------------------------------------------------------
# A. the rows of a run
# --------------------------------------------------------------------------------------------


def test_successful_workflow_run_rows(tmp_path):
    doc = write(tmp_path / "wf.wdl", SCATTER_WDL)
    out = tmp_path / "out"
    outputs, rd = ok(sprocket_run(doc, "wf.x=3", "-o", out, cwd=tmp_path))
    assert outputs == {"wf.os": [0, 1, 2]}
    db = out / "sprocket.db"
    assert db.is_file()
    with open(db, "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"

    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "delete"
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()
    assert TABLES <= tables, "missing tables: %s" % sorted(TABLES - tables)
    assert not (out / "sprocket.db-wal").exists()
    assert db_rows(db, "SELECT value FROM metadata WHERE key = 'version'") == [{"value": "1"}]

    sessions = db_rows(db, "SELECT * FROM sessions")
    assert len(sessions) == 1
    assert sessions[0]["subcommand"] == "run"
    assert sessions[0]["created_by"] == getpass.getuser()
    assert sessions[0]["uuid"]

    runs = db_rows(db, "SELECT * FROM runs")
    assert len(runs) == 1
    run = runs[0]
    assert run["session_id"] == sessions[0]["id"]
    assert run["status"] == "completed", run
    assert run["target"] == "wf"
    assert run["name"] and run["uuid"]
    assert json.loads(run["inputs"]) == {"wf.x": 3}
    assert json.loads(run["outputs"]) == {"wf.os": [0, 1, 2]}
    assert run["error"] is None
    assert run["started_at"] and run["completed_at"]
    assert run["completed_at"] >= run["started_at"]
    assert re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", run["started_at"]), run["started_at"]
    assert not os.path.isabs(run["directory"])
    assert re.match(r"^runs/wf/\d{4}-\d{2}-\d{2}_\d{6}\d+$", run["directory"]), run["directory"]
    assert (out / run["directory"]).resolve() == rd.resolve()
    assert run["source"] and run["source"].endswith("wf.wdl")

    tasks = db_rows(db, "SELECT * FROM tasks ORDER BY name")
    assert len(tasks) == 3, tasks
    assert len({t["name"] for t in tasks}) == 3
    for t in tasks:
        assert t["run_id"] == run["id"]
        assert t["status"] == "completed", t
        assert t["exit_status"] == 0, t
        assert t["started_at"] and t["completed_at"], t
    # one attempt directory per row
    assert len(list(rd.glob("calls/*/attempts/*"))) == 3


def test_task_target_run_rows(tmp_path):
    doc = write(tmp_path / "one.wdl", """
        version 1.1
        task hello {
          input {
            String who
          }
          command <<<
            echo "hello ~{who}"
          >>>
          output {
            String s = read_string(stdout())
          }
        }
    """)
    out = tmp_path / "out"
    outputs, rd = ok(sprocket_run(doc, "who=world", "-o", out, cwd=tmp_path))
    assert outputs == {"hello.s": "hello world"}
    db = out / "sprocket.db"
    (run,) = db_rows(db, "SELECT * FROM runs")
    assert run["status"] == "completed" and run["target"] == "hello"
    assert json.loads(run["inputs"]) == {"hello.who": "world"}
    assert json.loads(run["outputs"]) == {"hello.s": "hello world"}
    assert run["directory"].startswith("runs/hello/")
    (task,) = db_rows(db, "SELECT * FROM tasks")
    assert (task["status"], task["exit_status"], task["run_id"]) == ("completed", 0, run["id"])


def test_failing_task_with_retries_rows(tmp_path):
    doc = write(tmp_path / "wf.wdl", FAILING_WDL)
    out = tmp_path / "out"
    proc = sprocket_run(doc, "-o", out, cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip() == ""
    db = out / "sprocket.db"
    (run,) = db_rows(db, "SELECT * FROM runs")
    assert run["status"] == "failed", run
    assert run["error"] and "exit code 3" in run["error"], run["error"]
    assert run["outputs"] is None
    assert run["completed_at"]
    tasks = db_rows(db, "SELECT * FROM tasks")
    assert len(tasks) == 3, tasks  # the first attempt and 2 retries
    for t in tasks:
        assert (t["status"], t["exit_status"]) == ("failed", 3), t
        assert t["completed_at"]
    rd = run_dir_of(proc)
    assert sorted(p.name for p in rd.glob("calls/bad/attempts/*")) == ["0", "1", "2"]


def test_output_log_accumulates_every_invocation(tmp_path):
    doc = write(tmp_path / "wf.wdl", SCATTER_WDL)
    out = tmp_path / "out"
    _, rd1 = ok(sprocket_run(doc, "wf.x=1", "-o", out, cwd=tmp_path))
    _, rd2 = ok(sprocket_run(doc, "wf.x=2", "-o", out, cwd=tmp_path))
    names = [r["name"] for r in db_rows(out / "sprocket.db", "SELECT name FROM runs ORDER BY id")]
    assert len(names) == 2 and names[0] != names[1]

    def parsed(path):
        lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        assert lines, "%s is empty" % path
        found = []
        for line in lines:
            m = LOG_LINE_RE.match(line)
            assert m, "log line without a timestamp and a [run name]: %r" % line
            found.append(m.group(2))
        return found

    top = parsed(out / "output.log")
    assert set(top) == set(names), (set(top), names)
    # every line of the first invocation comes before every line of the second
    last_first = max(i for i, n in enumerate(top) if n == names[0])
    first_second = min(i for i, n in enumerate(top) if n == names[1])
    assert last_first < first_second
    assert set(parsed(rd1 / "output.log")) == {names[0]}
    assert set(parsed(rd2 / "output.log")) == {names[1]}
    assert "\x1b[" not in (out / "output.log").read_text(encoding="utf-8")
    # the run's own log names its execution directory
    assert str(rd2) in (rd2 / "output.log").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# B. several processes on one output directory
# --------------------------------------------------------------------------------------------


def test_four_concurrent_runs_share_one_database(tmp_path):
    doc = write(tmp_path / "wf.wdl", SCATTER_WDL)
    out = tmp_path / "out"
    procs = [subprocess.Popen(run_cmd(doc, "wf.x=5", "-o", out), cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=120)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    dirs = set()
    for r in results:
        outputs, rd = ok(r)
        assert outputs == {"wf.os": [0, 1, 2, 3, 4]}
        dirs.add(rd.resolve())
    assert len(dirs) == 4

    db = out / "sprocket.db"
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "delete"
    finally:
        con.close()
    assert db_rows(db, "SELECT value FROM metadata WHERE key = 'version'") == [{"value": "1"}]
    assert len(db_rows(db, "SELECT id FROM sessions")) == 4
    runs = db_rows(db, "SELECT * FROM runs")
    assert len(runs) == 4
    assert {r["status"] for r in runs} == {"completed"}
    assert len({r["session_id"] for r in runs}) == 4
    assert {(out / r["directory"]).resolve() for r in runs} == dirs
    tasks = db_rows(db, "SELECT * FROM tasks")
    assert len(tasks) == 4 * 5, len(tasks)
    assert {t["status"] for t in tasks} == {"completed"}
    per_run = {}
    for t in tasks:
        per_run[t["run_id"]] = per_run.get(t["run_id"], 0) + 1
    assert sorted(per_run.values()) == [5, 5, 5, 5]
    # the shared log has the lines of all four runs
    logged = set(LOG_LINE_RE.match(l).group(2) for l in (out / "output.log").read_text().splitlines() if l.strip())
    assert logged == {r["name"] for r in runs}


# --------------------------------------------------------------------------------------------
# C. orphans, foreign files
# --------------------------------------------------------------------------------------------


def test_killed_run_is_marked_orphaned_by_the_next_process(tmp_path):
    doc = write(tmp_path / "s.wdl", SLEEP_WDL)
    out = tmp_path / "out"
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen(run_cmd(doc, "dir=%s" % marks, "secs=30", "-o", out), cwd=str(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    task_pid = None
    try:
        wait_for(lambda: (marks / "task.pid").exists(), 30, "the task to start")
        task_pid = int((marks / "task.pid").read_text())
        db = out / "sprocket.db"
        # task rows are written in batches: wait until the attempt's row is in
        wait_for(lambda: db_rows(db, "SELECT * FROM tasks WHERE status = 'running'"), 10, "the running task row")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        (run,) = db_rows(db, "SELECT * FROM runs")
        assert run["status"] == "running"
        # the next process that opens the database sweeps it
        ok(sprocket_run(doc, "dir=%s" % tmp_path, "secs=0", "-o", out, cwd=tmp_path))
        runs = db_rows(db, "SELECT * FROM runs ORDER BY id")
        assert [r["status"] for r in runs] == ["orphaned", "completed"]
        tasks = db_rows(db, "SELECT * FROM tasks WHERE run_id = ?", (runs[0]["id"],))
        assert len(tasks) == 1
        assert tasks[0]["status"] == "orphaned"
        assert db_rows(db, "SELECT status FROM tasks WHERE run_id = ?", (runs[1]["id"],)) == [{"status": "completed"}]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if task_pid is not None:
            kill_group(task_pid)


@pytest.mark.slow
def test_live_session_keeps_its_heartbeat_fresh(tmp_path):
    # Sprocket refreshes a session's heartbeat every min(orphan_timeout / 5, 60 s): 12 s for 1 minute.
    doc = write(tmp_path / "s.wdl", SLEEP_WDL)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[server]\norphan_timeout_minutes = 1\n")
    out = tmp_path / "out"
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen(run_cmd(doc, "dir=%s" % marks, "secs=15", "-o", out, "-c", cfg), cwd=str(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        db = out / "sprocket.db"
        wait_for(lambda: (marks / "task.pid").exists(), 30, "the task to start")
        (first,) = db_rows(db, "SELECT coalesce(heartbeat_at, created_at) AS hb FROM sessions")

        def refreshed():
            (row,) = db_rows(db, "SELECT coalesce(heartbeat_at, created_at) AS hb FROM sessions")
            return row["hb"] != first["hb"] or proc.poll() is not None

        wait_for(refreshed, 30, "the heartbeat or the end of the run", interval=0.5)
        (row,) = db_rows(db, "SELECT coalesce(heartbeat_at, created_at) AS hb FROM sessions")
        assert row["hb"] > first["hb"], "the heartbeat of a live session was never refreshed"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if (marks / "task.pid").exists():
            kill_group(int((marks / "task.pid").read_text()))


def _refused_unchanged(tmp_path, db_bytes_maker, *fragments):
    doc = write(tmp_path / "wf.wdl", SCATTER_WDL)
    out = tmp_path / "out"
    out.mkdir()
    db = out / "sprocket.db"
    db_bytes_maker(db)
    before = db.read_bytes()
    proc = sprocket_run(doc, "wf.x=1", "-o", out, cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip() == ""
    text = proc.stderr.lower()
    assert "sprocket.db" in proc.stderr, proc.stderr
    for frag in fragments:
        assert frag.lower() in text, "expected %r in:\n%s" % (frag, proc.stderr)
    assert db.read_bytes() == before, "the foreign database file was modified"
    # and no task ran; no run directory was made, so `_latest` still names the last real run
    assert not list(out.glob("runs/*/*/calls/*/attempts"))
    assert not (out / "runs").exists(), "a refused run made a run directory: %s" % list(out.rglob("*"))
    return proc


def test_garbage_database_file_is_refused_and_left_unchanged(tmp_path):
    _refused_unchanged(tmp_path, lambda p: p.write_bytes(b"this is not a database\x00\xff\xfe" * 100),
                       "not a sqlite database")


def _sqlite_with_version(path, version, wal=False):
    con = sqlite3.connect(str(path))
    if wal:
        con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, something TEXT)")
    con.execute("INSERT INTO metadata VALUES ('version', ?)", (version,))
    con.commit()
    con.close()
    for suffix in ("-wal", "-shm"):
        assert not Path(str(path) + suffix).exists()


def test_future_schema_version_is_refused_and_left_unchanged(tmp_path):
    _refused_unchanged(tmp_path, lambda p: _sqlite_with_version(p, "999"), "999")


def test_future_schema_version_in_wal_mode_is_left_unchanged(tmp_path):
    _refused_unchanged(tmp_path, lambda p: _sqlite_with_version(p, "999", wal=True), "999")


def test_a_database_made_before_the_process_columns_gets_them(tmp_path):
    """attempts.process_group and process_started (what a rerun needs to adopt or kill a local
    task of a dead run) are added to a database whose attempts table predates them."""
    from conftest import _import_sprocket

    out = tmp_path / "out"
    out.mkdir()
    con = sqlite3.connect(str(out / "sprocket.db"))
    con.executescript(_import_sprocket()._DB_SCHEMA)
    con.execute("INSERT INTO metadata (key, value) VALUES ('version', '1')")
    con.execute("CREATE TABLE attempts (key TEXT PRIMARY KEY REFERENCES tasks (name), run_id INTEGER NOT NULL "
                "REFERENCES runs (id), call TEXT NOT NULL, attempt INTEGER NOT NULL, directory TEXT NOT NULL, "
                "backend TEXT NOT NULL, job_id TEXT, status TEXT NOT NULL, exit_status INTEGER, error TEXT, "
                "started_at TIMESTAMP, completed_at TIMESTAMP, UNIQUE (run_id, call, attempt))")
    con.commit()
    con.close()
    doc = write(tmp_path / "wf.wdl", SCATTER_WDL)
    proc = sprocket_run(doc, "wf.x=1", "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = db_rows(out / "sprocket.db", "SELECT * FROM attempts")
    assert rows and all(r["process_group"] > 0 and r["process_started"] and r["cache_key"] for r in rows), rows


def test_sqlite_database_of_another_program_is_refused_and_left_unchanged(tmp_path):
    def make(path):
        con = sqlite3.connect(str(path))
        con.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
        con.execute("INSERT INTO accounts (owner) VALUES ('me')")
        con.commit()
        con.close()

    _refused_unchanged(tmp_path, make)


# --------------------------------------------------------------------------------------------
# F. the progress line
# --------------------------------------------------------------------------------------------

PROGRESS_WDL = SCATTER_WDL.replace('String secs = "0.2"', 'String secs = "1.2"')


def test_no_progress_line_when_stderr_is_not_a_terminal(tmp_path):
    doc = write(tmp_path / "wf.wdl", PROGRESS_WDL)
    proc = sprocket_run(doc, "wf.x=2", "-o", tmp_path / "out", cwd=tmp_path)
    outputs, _ = ok(proc)
    assert outputs == {"wf.os": [0, 1]}
    assert "\r" not in proc.stderr, repr(proc.stderr)
    assert "\x1b[" not in proc.stderr, repr(proc.stderr)
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout


def test_progress_line_on_a_terminal(tmp_path):
    doc = write(tmp_path / "wf.wdl", PROGRESS_WDL)
    master, slave = pty.openpty()
    chunks = []

    def reader():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the slave side is closed everywhere
                return
            if not data:
                return
            chunks.append(data)

    env = dict(os.environ, COLUMNS="200", LINES="40", TERM="xterm")
    proc = subprocess.Popen(run_cmd(doc, "wf.x=2", "-o", tmp_path / "out"), cwd=str(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    t.join(5)
    os.close(master)
    err = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(stdout.decode()) == {"wf.os": [0, 1]}, stdout
    assert PROGRESS_RE.search(err), "no progress line on the terminal:\n%r" % err
    assert "\r" in err
    # stdout holds nothing else: no progress, no log lines
    assert b"\r" not in stdout and b"running `wf`" not in stdout


# --------------------------------------------------------------------------------------------
# E. what ran: usage per attempt, trace.tsv, `sprocket runs`, report.html
# --------------------------------------------------------------------------------------------

RETRY_WDL = """
    version 1.2

    task flaky {
      command <<<
        echo "trying" >&2
        exit ~{if task.attempt == 0 then 3 else 0}
      >>>
      requirements { max_retries: 1  memory: "100 MiB" }
      output { Int a = task.attempt }
    }

    task broken {
      command <<<
        echo "the input was bad" >&2
        exit 4
      >>>
      requirements { memory: "100 MiB" }
    }

    workflow wf {
      input { Boolean fail = true }
      scatter (i in range(3)) {
        call flaky
      }
      if (fail) {
        call broken
      }
      output { Array[Int] as = flaky.a }
    }
"""


def test_usage_rows_and_trace_for_every_attempt(tmp_path):
    doc = write(tmp_path / "wf.wdl", RETRY_WDL)
    proc = sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    rd = run_dir_of(proc)
    rows = db_rows(tmp_path / "out" / "sprocket.db", "SELECT a.call, a.attempt, a.status, u.* FROM attempts a "
                   "JOIN attempt_usage u ON u.key = a.key ORDER BY a.call, a.attempt")
    assert [(r["call"], r["attempt"], r["status"]) for r in rows] == [
        ("broken", 0, "failed")] + [("flaky-%d" % i, n, s) for i in range(3) for n, s in ((0, "failed"), (1, "completed"))]
    for r in rows:
        assert r["node"] and r["started_at"] <= r["ended_at"] and r["wall_seconds"] >= 0, r
        assert r["cpu_seconds"] is not None and r["peak_memory"] > 0, r  # wait4
        assert r["requested_cpus"] == 1 and r["requested_memory"] == 100 * 2 ** 20, r
        assert r["queue_seconds"] is None and r["slurm_state"] is None, r  # no queue, no sacct: NULL, not 0
    lines = (rd / "trace.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header[:4] == ["call", "attempt", "status", "exit_code"] and "cpu_efficiency" in header
    body = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    assert sorted((b["call"], b["attempt"], b["status"], b["exit_code"]) for b in body) == sorted(
        [("broken", "0", "failed", "4")] + [("flaky-%d" % i, n, s, c) for i in range(3)
                                            for n, s, c in (("0", "failed", "3"), ("1", "completed", "0"))])
    assert all(b["queue_wait_s"] == "" and b["job_id"] == "" for b in body)
    assert all(Path(b["directory"]).is_dir() for b in body)


def test_report_is_self_contained_with_a_bar_per_attempt_and_the_failure(tmp_path):
    doc = write(tmp_path / "wf.wdl", RETRY_WDL)
    proc = sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path)
    rd = run_dir_of(proc)
    page = (rd / "report.html").read_text()
    for absent in ("<script", "http://", "https://", " src=", "<link"):
        assert absent not in page, absent
    assert page.count('class="bar ') == 7
    assert page.count('class="bar failed') == 4 and page.count(" retry") == 3
    assert "the input was bad" in page and str(rd / "calls" / "broken" / "attempts" / "0") in page
    assert 'id="summary"' in page and "1 failed" in page
    # `sprocket report` writes the same page again, by name or by directory
    (run,) = db_rows(tmp_path / "out" / "sprocket.db", "SELECT name FROM runs")
    (rd / "report.html").unlink()
    for ref in (run["name"], rd):
        r = sprocket_cmd("report", ref, "-o", tmp_path / "out", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.strip() == str(rd / "report.html"), r.stderr
        assert (rd / "report.html").read_text().count('class="bar ') == 7
    r = sprocket_cmd("report", "no-such-run", "-o", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 1 and "no run `no-such-run`" in r.stderr and "Traceback" not in r.stderr


def test_report_of_10000_attempts_stays_small_and_aggregated():
    """In-process: 10,000 attempts of one scattered call and a few others give a page of a few
    hundred KB, with one timeline lane per call (how many ran at each moment)."""
    sys.path.insert(0, str(SPROCKET.parent))
    import sprocket as S

    t0 = 1.8e9
    attempts = [dict(call="align-%d" % i, attempt=0, status="completed", exit_status=0, error=None, job_id=str(i),
                     directory="/x/%d" % i, submitted_at=t0 + i * 0.01, started_at=t0 + i * 0.01 + 1,
                     ended_at=t0 + i * 0.01 + 30, queue_seconds=1.0, wall_seconds=29.0, cpu_seconds=20.0,
                     requested_cpus=4, requested_memory=16 * 2 ** 30, peak_memory=(1 + i % 3) * 2 ** 28, node="n1",
                     allocated_cpus=4, slurm_state="COMPLETED") for i in range(10000)]
    run = {"name": "r", "target": "wf", "status": "completed", "source": "wf.wdl", "started_at": "2027-01-01 00:00:00",
           "duration": 160.0, "done": 10000, "failed": 0, "cached": 0, "run_dir": "/x", "error": None}
    page = S.report_html(run, attempts)
    assert len(page) < 1_000_000, len(page)
    assert page.count('class="bar ') == 0 and page.count('class="lane"') == 1 and "align (10000 attempts)" in page
    assert "asked 16.0 GiB, peaked at 768.0 MiB in 10000 of 10000 attempts" in page
    assert "asked 4 CPUs, used 0.7 on average" in page


def test_report_timeline_draws_bars_then_lanes_of_running_counts(monkeypatch):
    """In-process: a bar per attempt (queue wait, retry and failure marked); beyond _REPORT_BARS, a
    lane per call whose columns count the attempts running in each slice of the run's span."""
    sys.path.insert(0, str(SPROCKET.parent))
    import sprocket as S

    def attempt(call, start, end, number=0, status="completed", submitted=None):
        return dict(call=call, attempt=number, status=status, submitted_at=submitted, started_at=start, ended_at=end)

    # 10 columns over [0, 10]: an attempt runs from column int(start * 0.9) to column int(end * 0.9)
    assert S._running_counts([attempt("a", 0, 10), attempt("a", 0, 2), attempt("a", 6, 8)], 0, 10, 10) == [
        2, 2, 1, 1, 1, 2, 2, 2, 1, 1]
    attempts = [attempt("align-0", 1, 10, submitted=0.5), attempt("align-1", 2, 5, 1, "failed"),
                attempt("sort", 5, 9), attempt("never", None, None)]
    svg = S.report_timeline(attempts)
    assert svg.count('class="bar ') == 3 and svg.count('class="queue"') == 1 and svg.count('class="mark"') == 1
    assert 'class="bar failed retry"' in svg and "align-1 #1: failed" in svg and "never" not in svg
    monkeypatch.setattr(S, "_REPORT_BARS", 2)
    svg = S.report_timeline(attempts)
    assert svg.count('class="bar ') == 0 and svg.count('class="lane"') == 2, svg
    assert "align (2 attempts, 1 failed)" in svg and "sort (1 attempts)" in svg
    assert "align: at most 2 running at once" in svg and "sort: at most 1 running at once" in svg
    assert S.report_timeline([attempt("never", None, None)]).startswith('<p class="note">')


@pytest.mark.slow
def test_runs_lists_four_concurrent_runs_and_a_killed_one(tmp_path):
    doc = write(tmp_path / "s.wdl", SLEEP_WDL)
    out = tmp_path / "out"
    marks = [tmp_path / ("m%d" % i) for i in range(5)]
    procs = []
    try:
        for m in marks:
            m.mkdir()
            procs.append(subprocess.Popen(run_cmd(doc, "dir=%s" % m, "secs=8", "-o", out), cwd=str(tmp_path),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          start_new_session=True))
        wait_for(lambda: all((m / "task.pid").exists() for m in marks), 60, "five tasks to start")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        r = sprocket_cmd("runs", "-o", out, "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        runs = json.loads(r.stdout)
        assert len(runs) == 5 and sorted(x["status"] for x in runs) == ["orphaned"] + ["running"] * 4, runs
        assert [x["started"] for x in runs] == sorted((x["started"] for x in runs), reverse=True)  # newest first
        table = sprocket_cmd("runs", "-o", out, cwd=tmp_path).stdout.splitlines()
        assert table[0].split()[:3] == ["NAME", "TARGET", "STATUS"] and len(table) == 6, table
        for p in procs[1:]:
            p.communicate(timeout=120)
        runs = json.loads(sprocket_cmd("runs", "-o", out, "--json", cwd=tmp_path).stdout)
        assert sorted(x["status"] for x in runs) == ["completed"] * 4 + ["orphaned"], runs
        assert all(x["done"] == 1 and x["failed"] == 0 for x in runs if x["status"] == "completed"), runs
        assert all(Path(x["directory"]).is_dir() for x in runs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for m in marks:
            if (m / "task.pid").exists():
                kill_group(int((m / "task.pid").read_text()))


def test_runs_without_a_database_is_a_clear_error(tmp_path):
    r = sprocket_cmd("runs", "-o", tmp_path / "nothing", cwd=tmp_path)
    assert r.returncode == 1 and "has no sprocket.db" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "nothing").exists()


def _chromium():
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def png_pixels(data):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA PNG: enough of a decoder
    to look at a screenshot without a library."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return width, height, rows


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (Debian: apt-get install chromium); "
                                                 ".ci/run installs it")
def test_report_renders_in_headless_chromium(tmp_path):
    """The report of a real run with a failed and a retried task, rendered by Chromium: the DOM
    has the summary, one timeline bar per attempt and the failure; the screenshot shows the bars
    in their colours; the console reports no error."""
    doc = write(tmp_path / "wf.wdl", RETRY_WDL)
    rd = run_dir_of(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))
    url = (rd / "report.html").as_uri()
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--enable-logging=stderr", "--v=0", "--user-data-dir=%s" % (tmp_path / "chrome-profile")]
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-3000:]
    assert 'id="summary"' in dom.stdout and "Run <code>" in dom.stdout
    assert dom.stdout.count('class="bar ') == 7, dom.stdout[:2000]
    assert "the input was bad" in dom.stdout and "broken, attempt 0" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    png = tmp_path / "report.png"
    shot = subprocess.run(base + ["--screenshot=%s" % png, "--window-size=1200,1400", "--hide-scrollbars", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-3000:]
    width, height, rows = png_pixels(png.read_bytes())
    assert (width, height) == (1200, 1400)
    colours = collections.Counter(px for row in rows for px in row)
    green, red = (0x2e, 0x8b, 0x57), (0xc0, 0x39, 0x2b)  # completed and failed bars
    assert colours[green] > 100 and colours[red] > 100, colours.most_common(8)
    assert len(colours) > 50  # text and bars, not a blank page
