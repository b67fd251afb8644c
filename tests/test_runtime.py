"""The runtime in-process (sections 13 and 14): TaskRun's retry policy and the Scheduler, driven
through a real Run (its sprocket.db, call cache and log in the test's directory) whose backend is a
fake one: no subprocess, every job ends as the test says, at once. Fast (well under a second each).

The fake is a Backend of the contract (section 12): limits, start, adopt and explain of its own,
the rest the base class's; its jobs are Jobs (wait, cancel; out_of_memory, message, retry_free,
final).
"""

import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import SPROCKET, norm

sys.path.insert(0, str(SPROCKET.parent))
import sprocket as S  # noqa: E402

GiB = 1024 ** 3


pytestmark = pytest.mark.usefixtures("isolated_config")  # no user configuration or cache leaks into a run


# --------------------------------------------------------------------------------------------
# the fake backend and a Run that uses it
# --------------------------------------------------------------------------------------------


class FakeJob(S.Job):
    """Ends with exit status `code` once the backend lets it (`FakeBackend.hold`)."""

    def __init__(self, backend, code=0, out_of_memory=False, message=None, retry_free=False, final=False):
        self.backend, self.code = backend, code
        self.out_of_memory, self.message, self.retry_free, self.final = out_of_memory, message, retry_free, final
        self.cancelled = False

    def wait(self):
        with self.backend.lock:
            self.backend.now += 1
            self.backend.peak = max(self.backend.peak, self.backend.now)
        try:
            self.backend.hold.wait(10)
            time.sleep(0.01)  # long enough for the tasks that may run beside it to start
        finally:
            with self.backend.lock:
                self.backend.now -= 1
        return 137 if self.cancelled else self.code

    def cancel(self):
        self.cancelled = True


class FakeBackend(S.Backend):
    """Each call's attempts end as `outcomes[call]` lists them (FakeJob's keywords, one dict per
    attempt; none left: exit status 0); every attempt's stdout says `said`."""

    kind = "fake"

    def __init__(self, context, cpu=4, memory=8 * GiB, outcomes=None, max_memory=None):
        super().__init__(context, "fake", {})
        self.cpu, self.memory = cpu, memory
        self.outcomes = {k: list(v) for k, v in (outcomes or {}).items()}
        self.max_memory = max_memory
        self.started = []  # (call, attempt number, cpu, memory) of each attempt started
        self.adopted = []  # the Adoptable records followed
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.hold.set()
        self.now = self.peak = 0  # jobs waited for at once

    def limits(self, requirements, hints):
        return {"cpu": self.cpu, "memory": min(self.memory, self.max_memory or self.memory)}

    def limit_text(self, requirements, hints):
        return "the fake has only %s"

    def start(self, request):
        with self.lock:
            self.started.append((request.name, request.attempt, request.cpu, request.memory))
            todo = self.outcomes.get(request.name)
            outcome = todo.pop(0) if todo else {}
        Path(request.stdout).write_text(outcome.pop("said", "said %d\n" % request.attempt))
        Path(request.stderr).write_text("")
        return FakeJob(self, **outcome)

    def adopt(self, request, adopted):
        self.adopted.append(adopted)
        return FakeJob(self)

    def explain(self, job):
        return "the fake ran out of memory" if job.out_of_memory else None


def make_run(tmp_path, source, config="", **backend_args):
    """A Run of the document `source` in tmp_path/out, with a FakeBackend."""
    doc_path = tmp_path / "main.wdl"
    doc_path.write_text(norm(source))
    toml = tmp_path / "sprocket.toml"
    toml.write_text(config)
    doc = S.load(str(doc_path))
    run = S.Run(doc, S.choose_target(doc, None), S.load_config([str(toml)], True), str(tmp_path / "out"),
                S.RunLog(S._LEVELS["ERROR"] + 1), {})
    context = run.context
    context.backend = FakeBackend(context, **backend_args)
    context.scheduler = S.Scheduler(context)
    return run


def attempts(run):
    """The run's attempts rows as (call, attempt, status), in the order they started."""
    run.store.flush()
    assert run.store.error is None
    return [(a["call"], a["attempt"], a["status"]) for a in run.store.attempts_of(run.run_id)]


@pytest.fixture
def finished():
    """Close the runs a test made (their database, their log)."""
    runs = []
    yield runs.append
    for run in runs:
        run.close()


# --------------------------------------------------------------------------------------------
# the retry decision (pure)
# --------------------------------------------------------------------------------------------


def test_retry_decision_a_completed_attempt_is_done():
    assert S.retry_decision("completed", None, False, 0, 0, 3, []) == ("done", None)


def test_retry_decision_retries_a_failure_while_retries_are_left():
    assert S.retry_decision("failed", "boom", False, 0, 0, 1, []) == ("retry", "boom")
    assert S.retry_decision("failed", "boom", False, 1, 0, 1, []) == ("fail", "boom")


def test_retry_decision_a_final_failure_is_not_retried():
    assert S.retry_decision("failed", "no such image", True, 0, 0, 5, []) == ("fail", "no such image")


def test_retry_decision_a_preempted_attempt_runs_again_without_spending_a_retry():
    assert S.retry_decision("preempted", "node failed", False, 4, 0, 0, []) == ("free", "node failed")
    # attempts 0 and 1 were lost to the backend: attempt 2 is the first retry of the task's own
    assert S.retry_decision("failed", "boom", False, 2, 2, 1, []) == ("retry", "boom")
    assert S.retry_decision("failed", "boom", False, 3, 2, 1, []) == ("fail", "boom")


def test_retry_decision_names_the_memory_tried_when_more_than_one_attempt_ran_out():
    assert S.retry_decision("failed", "oom", False, 0, 0, 0, [GiB]) == ("fail", "oom")
    action, message = S.retry_decision("failed", "oom", False, 1, 0, 1, [GiB, 2 * GiB])
    assert action == "fail" and message == "oom\n\nmemory tried: 1.0 GiB, 2.0 GiB"


# --------------------------------------------------------------------------------------------
# TaskRun: attempts, retries, memory, adoption, the call cache
# --------------------------------------------------------------------------------------------

RETRY_TASK = """
    version 1.2

    task t {
      command <<<
        echo hello
      >>>
      requirements {
        max_retries: 2
        memory: "1 GiB"
      }
      output {
        String said = read_string(stdout())
      }
    }
"""


def test_task_run_retries_failed_attempts_until_one_completes(tmp_path, finished):
    run = make_run(tmp_path, RETRY_TASK, outcomes={"t": [dict(code=1), dict(code=2)]})
    finished(run)
    assert run.execute({}) == {"said": "said 2"}
    assert attempts(run) == [("t", 0, "failed"), ("t", 1, "failed"), ("t", 2, "completed")]
    assert run.context.scheduler.counts == dict(waiting=0, running=0, completed=1, failed=0, cached=0)


def test_task_run_fails_with_the_last_attempts_message_once_its_retries_are_spent(tmp_path, finished):
    run = make_run(tmp_path, RETRY_TASK, outcomes={"t": [dict(code=1)] * 3})
    finished(run)
    with pytest.raises(S.RunError, match=r"task `t` failed: process terminated with exit code 1"):
        run.execute({})
    assert [a[2] for a in attempts(run)] == ["failed"] * 3
    assert run.context.scheduler.counts["failed"] == 1 and run.context.scheduler.counts["running"] == 0


def test_task_run_after_out_of_memory_grows_the_memory_within_the_backends_limit(tmp_path, finished):
    """memory_retry_multiplier = 2: 1 GiB, 2 GiB, then the limit (3 GiB); each retry is readmitted
    to the scheduler for its new amount, and all of it is given back at the end."""
    oom = dict(code=137, out_of_memory=True)
    run = make_run(tmp_path, RETRY_TASK, "[run.task]\nmemory_retry_multiplier = 2\n",
                   outcomes={"t": [oom, oom, oom]}, max_memory=3 * GiB)
    finished(run)
    with pytest.raises(S.RunError) as e:
        run.execute({})
    assert [m for _, _, _, m in run.context.backend.started] == [GiB, 2 * GiB, 3 * GiB]
    assert "the fake ran out of memory" in e.value.message
    assert e.value.message.endswith("memory tried: 1.0 GiB, 2.0 GiB, 3.0 GiB")
    assert (run.context.scheduler.free_cpu, run.context.scheduler.free_memory) == (4, 8 * GiB)


def test_task_run_a_preempted_attempt_runs_again_without_spending_a_retry(tmp_path, finished):
    source = RETRY_TASK.replace("max_retries: 2", "max_retries: 0")
    lost = dict(code=1, message="the node failed", retry_free=True)
    run = make_run(tmp_path, source, outcomes={"t": [lost, lost]})
    finished(run)
    assert run.execute({}) == {"said": "said 2"}
    assert attempts(run) == [("t", 0, "preempted"), ("t", 1, "preempted"), ("t", 2, "completed")]


def test_task_run_a_lost_attempt_fails_once_the_infrastructure_retries_are_spent(tmp_path, finished):
    source = RETRY_TASK.replace("max_retries: 2", "max_retries: 0")
    lost = dict(code=1, message="the node failed", retry_free=True)
    run = make_run(tmp_path, source, outcomes={"t": [lost] * (S._INFRASTRUCTURE_RETRIES + 1)})
    finished(run)
    with pytest.raises(S.RunError, match="the node failed"):
        run.execute({})
    statuses = [a[2] for a in attempts(run)]
    assert statuses == ["preempted"] * S._INFRASTRUCTURE_RETRIES + ["failed"]


def _adoptable(run, tmp_path, number, cache_key=None):
    """Attempt `number` of task `t` in an earlier run (its rows in sprocket.db, its stdout in place)."""
    tr = S.TaskRun(run.context, run.target, {}, run.run_dir, "t", {})
    tr.prepare()
    key = cache_key or run.context.cache.key(tr, "weak")
    directory = tmp_path / "earlier" / "attempts" / str(number)
    (directory / "work").mkdir(parents=True)
    (directory / "stdout").write_text("said by the earlier run\n")
    (directory / "stderr").write_text("")
    earlier = run.store.execute("INSERT INTO runs (uuid, session_id, name, source, status, inputs) VALUES "
                                "('earlier', ?, 'earlier', 'main.wdl', 'orphaned', '{}')", (run.store.session_id,))
    run.store.execute("INSERT INTO tasks (name, run_id, status) VALUES ('t-earlier', ?, 'orphaned')", (earlier,))
    run.store.execute("INSERT INTO attempts (key, run_id, call, attempt, directory, backend, status, cache_key) "
                      "VALUES ('t-earlier', ?, 't', ?, ?, 'fake', 'orphaned', ?)", (earlier, number, str(directory), key))
    return S.Adoptable("t-earlier", number, str(directory), None, key, None, None)


def test_task_run_adopts_an_earlier_runs_attempt_that_was_a_retry(tmp_path, finished):
    """Reattach follows attempt 1 of an orphaned run: its requirements are those of attempt 1 (it
    once failed, reading the out-of-memory flag of an attempt this run never ran)."""
    run = make_run(tmp_path, RETRY_TASK)
    finished(run)
    run.context.reattach = True
    run.context.adoptable = {"t": _adoptable(run, tmp_path, 1)}
    assert run.execute({}) == {"said": "said by the earlier run"}
    assert [a.number for a in run.context.backend.adopted] == [1] and run.context.backend.started == []
    assert attempts(run) == [("t", 1, "completed")]
    assert [a["adopted_from"] for a in run.store.attempts_of(run.run_id)] == ["t-earlier"]


def test_task_run_a_failed_adopted_retry_spends_the_retries_after_it(tmp_path, finished):
    """Adopted attempt 1 (of max_retries 2) fails: only attempt 2 is left."""
    run = make_run(tmp_path, RETRY_TASK, outcomes={"t": [dict(code=5)]})
    finished(run)
    run.context.reattach = True
    run.context.adoptable = {"t": _adoptable(run, tmp_path, 1)}
    run.context.backend.adopt = lambda request, adopted: FakeJob(run.context.backend, code=3)
    with pytest.raises(S.RunError, match="exit code 5"):
        run.execute({})
    assert attempts(run) == [("t", 1, "failed"), ("t", 2, "failed")]


def test_task_run_does_not_adopt_an_attempt_whose_inputs_changed(tmp_path, finished):
    run = make_run(tmp_path, RETRY_TASK)
    finished(run)
    run.context.reattach = True
    run.context.adoptable = {"t": _adoptable(run, tmp_path, 1, cache_key="another key")}
    assert run.execute({}) == {"said": "said 0"}
    assert run.context.backend.adopted == [] and attempts(run) == [("t", 0, "completed")]


def test_task_run_reuses_a_call_cache_entry_without_starting_a_job(tmp_path, finished):
    config = '[run.task]\ncache = "on"\ncache_dir = "%s"\n' % (tmp_path / "cache")
    first = make_run(tmp_path, RETRY_TASK, config)
    try:
        assert first.execute({}) == {"said": "said 0"}
    finally:
        first.close()
    second = make_run(tmp_path, RETRY_TASK, config)
    finished(second)
    assert second.execute({}) == {"said": "said 0"}
    assert second.context.backend.started == [] and attempts(second) == []
    assert second.context.scheduler.counts["cached"] == 1


# --------------------------------------------------------------------------------------------
# the Scheduler: what fits, readmission, the counts, failures
# --------------------------------------------------------------------------------------------

SCATTER = """
    version 1.2

    task t {
      input {
        Int i
      }
      command <<<
        echo ~{i}
      >>>
      requirements {
        cpu: 2
        max_retries: 1
      }
      output {
        String said = read_string(stdout())
      }
    }

    workflow w {
      scatter (i in [0, 1, 2, 3]) {
        call t { input: i = i }
      }
      output {
        Array[String] said = t.said
      }
    }
"""


def test_scheduler_runs_no_more_tasks_at_once_than_the_cpus_allow(tmp_path, finished):
    """4 CPUs, 2 a task: the jobs are held until two wait at once; a third never joins them."""
    run = make_run(tmp_path, SCATTER, cpu=4)
    finished(run)
    backend = run.context.backend
    backend.hold.clear()

    def release():
        deadline = time.time() + 10
        while backend.now < 2 and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # room for a third, were the scheduler to let one start
        backend.hold.set()
    threading.Thread(target=release, daemon=True).start()
    assert run.execute({}) == {"said": ["said 0"] * 4}
    assert backend.peak == 2
    assert run.context.scheduler.counts == dict(waiting=0, running=0, completed=4, failed=0, cached=0)
    assert (run.context.scheduler.free_cpu, run.context.scheduler.free_memory) == (4, 8 * GiB)


def test_scheduler_readmits_a_retry_that_needs_more_memory_once_the_others_give_it_back(tmp_path, finished):
    """The retry of t-0 asks for all the memory: it goes on only once the other three ended."""
    source = SCATTER.replace("cpu: 2", 'cpu: 1\n        memory: if task.attempt == 0 then "1 GiB" else "4 GiB"')
    source = source.replace("version 1.2", "version development")
    run = make_run(tmp_path, source, cpu=4, memory=4 * GiB, outcomes={"t-0": [dict(code=1)]})
    finished(run)
    granted = []
    readmit = run.context.scheduler.readmit

    def watching(tr):
        readmit(tr)
        granted.append((run.context.scheduler.counts["running"], run.context.scheduler.free_memory))
    run.context.scheduler.readmit = watching
    assert run.execute({}) == {"said": ["said 1", "said 0", "said 0", "said 0"]}
    assert [(c, n, m) for c, n, _, m in run.context.backend.started if c == "t-0"] == [("t-0", 0, GiB), ("t-0", 1, 4 * GiB)]
    assert granted == [(1, 0)]  # it alone runs, holding all the memory
    assert run.context.scheduler.counts == dict(waiting=0, running=0, completed=4, failed=0, cached=0)
    assert (run.context.scheduler.free_cpu, run.context.scheduler.free_memory) == (4, 4 * GiB)


def test_scheduler_a_failure_stops_the_run_and_counts_it_failed(tmp_path, finished):
    run = make_run(tmp_path, SCATTER, cpu=2, outcomes={"t-1": [dict(code=1), dict(code=1)]})
    finished(run)
    with pytest.raises(S.RunError, match="task `t-1` failed"):
        run.execute({})
    counts = run.context.scheduler.counts
    assert counts["failed"] == 1 and counts["running"] == 0 and counts["completed"] == 1  # t-0 ran before it
    assert not run.context.scheduler.running


def test_scheduler_refuses_a_task_the_backend_cannot_hold(tmp_path, finished):
    run = make_run(tmp_path, SCATTER, cpu=1)
    finished(run)
    with pytest.raises(S.RunError, match=r"task `t-0` requires at least 2 CPU\(s\), but the fake has only 1"):
        run.execute({})
    assert run.context.backend.started == []


def test_bind_input_the_callers_value_none_for_an_optional_one_else_its_default(tmp_path):
    doc_path = tmp_path / "main.wdl"
    doc_path.write_text(norm("""
        version 1.1

        workflow w {
          input {
            Int a
            Int? b
            Int c = 3
            Int d = 4
          }
        }
    """))
    inputs = {d.name: d for d in S.load(str(doc_path)).workflow.inputs}
    env = {}
    given = {"a": 1, "d": None}
    assert [S.bind_input(inputs[n], given, env, "workflow `w`") for n in "abcd"] == [True, True, False, False]
    assert env == {"a": 1, "b": None}
    with pytest.raises(S.InputError, match="workflow `w` is missing required input `a`"):
        S.bind_input(inputs["a"], {}, {}, "workflow `w`")


def test_a_bug_is_an_internal_error_with_its_traceback_in_the_run_log_or_under_sprocket_debug(
        tmp_path, monkeypatch, capsys):
    """A bug (not a WdlError) raised in a Scheduler worker ends `sprocket run` with exit 70 and the
    traceback, formatted where it was raised, in the run's output.log; one in a command prints its
    traceback under SPROCKET_DEBUG. (The module imports `traceback` only then.)"""
    (tmp_path / "t.wdl").write_text("version 1.1\n\ntask t {\n  command <<< true >>>\n}\n")

    def a_bug(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(S.TaskRun, "execute", a_bug)
    assert S.main(["run", str(tmp_path / "t.wdl"), "-o", str(tmp_path / "out")]) == 70
    err = capsys.readouterr().err
    assert "internal error (a bug in sprocket.py, please report it): RuntimeError: a bug" in err, err
    log = tmp_path / "out" / "runs" / "t" / "_latest" / "output.log"
    assert "the traceback is in `%s`" % log.resolve() in err, err
    text = log.read_text()
    assert "Traceback (most recent call last):" in text and "in a_bug" in text and "RuntimeError: a bug" in text, text

    monkeypatch.setattr(S, "cmd_check", a_bug)
    monkeypatch.setenv("SPROCKET_DEBUG", "1")
    assert S.main(["check", str(tmp_path / "t.wdl")]) == 70
    err = capsys.readouterr().err
    assert "internal error (a bug in sprocket.py, please report it): RuntimeError: a bug" in err, err
    assert "Traceback (most recent call last):" in err and "in a_bug" in err, err
