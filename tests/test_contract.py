"""The runtime's contracts (sprocket.py section 12), in this process: a backend written against
the Backend and Job base classes runs a workflow through the real Scheduler, Frames and TaskRuns
given only a RunContext (no subprocess, no Run, no sprocket.db); the base classes' defaults; the
registry of backend types as the configuration reads it."""

import os
import re
import subprocess
import textwrap

import pytest

from conftest import _import_sprocket

S = _import_sprocket()


class EchoJob(S.Job):
    """A job that "runs" `echo <words>` by writing the words to the attempt's stdout."""

    def __init__(self, request, fail_first):
        self.request = request
        self.fail_first = fail_first

    def wait(self):
        with open(self.request.command) as f:
            words = re.match(r"^\s*echo (.*)$", f.read().strip()).group(1)
        with open(self.request.stdout, "w") as f:
            f.write(words + "\n")
        open(self.request.stderr, "w").close()
        if self.fail_first and self.request.attempt == 0:
            self.message, self.retry_free = "the fake node went away", True
            return 1
        return 0

    def cancel(self):
        pass


class EchoBackend(S.Backend):
    """The whole of a backend: what it may run, and start()."""

    kind = "echo"
    SETTINGS = {"lanes": S.Setting("int", 2, "echo: tasks at once"), "lane.name": S.Setting("str", "fast", "echo: its lane")}

    def __init__(self, context, name, settings, fail_first=False):
        super().__init__(context, name, settings)
        self.cpu, self.memory = float(settings["lanes"]), 8 * 1024 ** 3
        self.requests = []
        self.fail_first = fail_first

    def start(self, request):
        self.requests.append(request)
        return EchoJob(request, self.fail_first)


class ListRecorder:
    """The recorder's side of the contract, kept in a list instead of sprocket.db."""

    def __init__(self):
        self.events = []

    def attempt_started(self, attempt, cache_key=None):
        self.events.append(("started", attempt.call, attempt.number))

    def attempt_ended(self, attempt, status, exit_status, error=None):
        attempt.status, attempt.exit_code, attempt.message = status, exit_status, error
        self.events.append((status, attempt.call, attempt.number))

    def flush_now(self):
        pass


def _context(tmp_path, backend_class=EchoBackend, **backend_args):
    config = S.load_config(skip_search=True)
    context = S.RunContext(S.run_settings(config), S.RunLog(S._LEVELS["ERROR"]), ListRecorder(),
                           S.CallCache(config, "echo", "bash", off=True))
    context.uuid = "0123456789abcdef"
    context.run_dir = context.real_run_dir = str(tmp_path)
    context.tmp_dir = str(tmp_path / "tmp")
    os.mkdir(context.tmp_dir)
    settings = {key: row.default for key, row in backend_class.SETTINGS.items()}
    context.backend = backend_class(context, "mine", settings, **backend_args)
    context.scheduler = S.Scheduler(context)
    return context


def _run_workflow(context, tmp_path, source, inputs):
    path = tmp_path / "main.wdl"
    path.write_text(textwrap.dedent(source))
    target = S.choose_target(S.load(str(path)), None)
    result = []
    wf = S.WorkflowRun(context, target, inputs, context.run_dir, "", result.append)
    context.scheduler.guard(wf.start)
    context.scheduler.loop(lambda: bool(result))
    return result[0]


SCATTER = """
    version 1.1
    task say {
      input { Int n }
      command <<< echo ~{n * 10} >>>
      output { Int out = read_int(stdout()) }
      runtime { cpu: 1 }
    }
    workflow main {
      input { Array[Int] ns }
      scatter (n in ns) { call say { input: n = n } }
      output { Array[Int] outs = say.out }
    }
"""


def test_a_fake_backend_runs_a_scatter_through_the_real_scheduler_and_task_runs_given_a_run_context(tmp_path, monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError("the fake backend runs nothing in a subprocess")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    context = _context(tmp_path)
    outputs = _run_workflow(context, tmp_path, SCATTER, {"ns": [1, 2, 3]})
    assert outputs == {"outs": [10, 20, 30]}
    requests = sorted(context.backend.requests, key=lambda r: r.name)
    assert [r.name for r in requests] == ["say-0", "say-1", "say-2"]
    first = requests[0]
    assert isinstance(first, S.TaskRequest) and first.attempt == 0 and first.cpu == 1.0
    assert first.key == "say-0-0-01234567" and first.job_name == "say-0-0"
    assert first.directory == str(tmp_path / "calls" / "say-0" / "attempts" / "0")
    assert first.work == os.path.join(first.directory, "work") and first.stdout == os.path.join(first.directory, "stdout")
    assert open(first.command).read().strip() == "echo 10"
    assert context.scheduler.counts["completed"] == 3 and context.scheduler.counts["running"] == 0
    assert sorted(e for e in context.recorder.events if e[0] == "completed") == [
        ("completed", "say-0", 0), ("completed", "say-1", 0), ("completed", "say-2", 0)]


def test_a_job_the_backend_ended_is_run_again_without_spending_a_retry(tmp_path):
    """Job.retry_free and Job.message, set by the backend: the attempt is `preempted` and the
    next one runs, though the task has no retries."""
    context = _context(tmp_path, fail_first=True)
    outputs = _run_workflow(context, tmp_path, SCATTER, {"ns": [4]})
    assert outputs == {"outs": [40]}
    assert context.recorder.events == [("started", "say-0", 0), ("preempted", "say-0", 0),
                                       ("started", "say-0", 1), ("completed", "say-0", 1)]
    assert [r.attempt for r in context.backend.requests] == [0, 1]


def test_the_scatter_limit_is_the_smaller_of_the_run_s_and_the_backend_s(tmp_path):
    class Narrow(EchoBackend):
        scatter_limit = 2

    (tmp_path / "narrow").mkdir()
    context = _context(tmp_path / "narrow", Narrow)
    assert context.settings.scatter_limit == 1000 and context.scatter_limit == 2
    assert _run_workflow(context, tmp_path, SCATTER, {"ns": [1, 2, 3, 4, 5]}) == {"outs": [10, 20, 30, 40, 50]}
    assert _context(tmp_path).scatter_limit == 1000, "a backend that declares none leaves the run's"


def test_the_backend_and_job_base_classes_give_the_optional_parts_defaults(tmp_path):
    context = _context(tmp_path)
    backend = context.backend
    job = S.Job()
    assert (job.message, job.final, job.retry_free, job.out_of_memory, job.state, job.reason, job.job_id) == (
        None, False, False, False, None, None, None)
    assert job.usage() == {}
    with pytest.raises(NotImplementedError):
        job.wait()
    assert backend.find_jobs(["/nowhere"]) == {}
    assert backend.explain(job) is None
    assert backend.wait_visible("/nowhere", False) is False
    assert backend.close() is None
    assert backend.limits({}, {}) == {"cpu": 2.0, "memory": 8 * 1024 ** 3}
    with pytest.raises(NotImplementedError):
        S.Backend.adopt(backend, None, None)
    cancelled = []

    class Cancellable(S.Job):
        def cancel(self):
            cancelled.append(self)

    jobs = [Cancellable(), Cancellable()]
    backend.cancel_jobs(jobs)
    assert cancelled == jobs
    assert EchoBackend.table_keys() == ("type", "lanes", "lane")


def test_the_backend_s_limits_deny_or_clamp_as_the_run_s_settings_say(tmp_path):
    context = _context(tmp_path)
    backend = context.backend
    assert backend.check("t", {}, {}, 2.0, 1024) == (2.0, 1024)
    with pytest.raises(S.RunError) as e:
        backend.check("t", {}, {}, 3.0, 1024)
    assert "task `t` requires at least 3 CPU(s), but the host only has 2 available" in e.value.message
    assert "run.task.cpu_limit_behavior" in e.value.message
    backend.behavior = {"cpu": "try_with_max", "memory": "try_with_max"}
    assert backend.check("t", {}, {}, 3.0, 16 * 1024 ** 3) == (2.0, 8 * 1024 ** 3)


def test_the_registry_of_backend_types_drives_the_configuration(monkeypatch):
    """A registered type is a `type` a `run.backends` table may name, with the keys its class
    declares (read by kind, defaults filled in); the schema's `run.backends.*` rows are the
    registered classes' own."""
    assert set(S.BACKENDS) == {"local", "slurm_apptainer", "docker", "podman", "apptainer"}
    for cls in S.BACKENDS.values():
        for key, row in cls.SETTINGS.items():
            assert S.CONFIG_SCHEMA["run.backends.*." + key] == row
    monkeypatch.setitem(S.BACKENDS, "echo", EchoBackend)
    config = S.Config()
    config.merge_file("x.toml", {"run": {"backend": "e", "backends": {"e": {"type": "echo", "lane": {"name": "slow"}}}}})
    name, table = config.backend()
    assert S.read_backend_settings(table) == {"type": "echo", "lanes": 2, "lane.name": "slow"}
    bad = S.Config()
    bad.merge_file("x.toml", {"run": {"backend": "e", "backends": {"e": {"type": "echo", "cpu": 1}}}})
    with pytest.raises(S.ConfigError) as e:
        bad.backend()
    assert "`run.backends.e.cpu` (in x.toml) is not a setting of a echo backend (allowed: type, lanes, lane)" in e.value.message
    for kind in ("slurm_apptainer", "docker", "podman", "apptainer"):
        monkeypatch.delitem(S.BACKENDS, kind)
    unknown = S.Config()
    unknown.merge_file("x.toml", {"run": {"backend": "k", "backends": {"k": {"type": "kubernetes"}}}})
    with pytest.raises(S.ConfigError) as e:
        unknown.backend()
    assert '(supported: "local", "echo")' in e.value.message


def test_a_backend_reads_its_settings_as_the_configuration_read_them():
    """Sizes in bytes, rates as (calls, seconds), paths expanded; each declared key present."""
    config = S.Config()
    config.merge_file("x.toml", {"run": {"backend": "s", "backends": {"s": {
        "type": "slurm_apptainer", "submit_rate_limit": "20/1min", "apptainer": {"image_cache_dir": "~/images"},
        "gpu_slurm_partition": {"name": "gpu", "max_memory_per_task": "4 GiB"}}}}})
    settings = S.read_backend_settings(config.backends()["s"])
    assert settings["submit_rate_limit"] == (20, 60.0)
    assert settings["apptainer.image_cache_dir"] == os.path.expanduser("~/images")
    assert settings["gpu_slurm_partition.max_memory_per_task"] == 4 * 1024 ** 3
    assert settings["default_slurm_partition.name"] is None and settings["max_queued_jobs"] == 1000
    assert set(settings) == {"type"} | set(S.SlurmApptainerBackend.SETTINGS)
