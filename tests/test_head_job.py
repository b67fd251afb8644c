"""The engine as a Slurm job of its own (`run --submit`, section 18's head job, issue 20 items 1-2), through
the fake Slurm commands of test_slurm_parts.py (a job is a local process; --dependency=afterany is
honoured): the head job's sbatch line and settings, the hand-off on USR1 to a successor that adopts the
jobs, SIGTERM after a hand-off, and max_handoffs. The real cluster: tests/test_slurm_head_job.py."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sprocket as S  # noqa: E402
from conftest import db_rows, sprocket_argv, wait_for  # noqa: E402
from test_slurm_parts import fake_slurm_env  # noqa: E402

CONFIG = """run.experimental_features_enabled = true
[run.backends.default]
type = "slurm_apptainer"
default_slurm_partition.name = "compute"
completion_interval = 0.2
interval = 1
[run.head_job]
time = "10:00"
handoff_lead = 60
"""

# Two waves: three tasks of a few seconds, then one that needs their outputs.
WAVES = """version 1.0
task double {
  input { Int x  Int seconds }
  command <<< sleep ~{seconds}; echo $(( ~{x} * 2 )) >>>
  output { Int y = read_int(stdout()) }
  runtime { container: "ubuntu:22.04" }
}
task total {
  input { Array[Int] ys }
  command <<< echo $(( ~{sep=" + " ys} )) >>>
  output { Int n = read_int(stdout()) }
  runtime { container: "ubuntu:22.04" }
}
workflow w {
  input { Int seconds = 4 }
  scatter (i in range(3)) { call double { input: x = i, seconds = seconds } }
  call total { input: ys = double.y }
  output { Array[Int] ys = double.y  Int n = total.n }
}
"""


def setup(tmp_path, config=CONFIG, wdl=WAVES):
    (tmp_path / "sprocket.toml").write_text(config)
    (tmp_path / "main.wdl").write_text(wdl)
    return fake_slurm_env(tmp_path)


def sprocket(tmp_path, env, *args, timeout=60):
    return subprocess.run(sprocket_argv("run", "-s", "-c", "sprocket.toml", "main.wdl", "-o", "out", *args), env=env,
                          cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout)


def calls(state):
    path = state / "calls"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def head_pid(name, predecessor=None):
    """The pid of the engine of head job `name` (the first one, or the successor of `predecessor`)."""
    for pid in os.listdir("/proc"):
        try:
            argv = Path("/proc/%s/cmdline" % pid).read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode() for a in argv]
        if "--head-run-name=" + name in args and (
                predecessor is None and not any(a.startswith("--head-predecessor=") for a in args)
                or "--head-predecessor=%s" % predecessor in args):
            return int(pid)
    return None


def submit(tmp_path, env):
    p = sprocket(tmp_path, env, "--submit")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_run_submit_sends_the_engine_as_a_head_job_that_runs_the_same_command(tmp_path):
    """`run --submit` returns with the job id, the run's name and its directory while the job still runs
    (its tasks wait for a file the test writes after); the job (named after the run, its output in the
    run's directory, USR1 before its limit, the run.head_job settings) runs the same command with this
    Python and this program, and the run completes there."""
    gate = tmp_path / "gate"
    env, state = setup(tmp_path, CONFIG + 'cpus = 2\nmemory = "3 GiB"\naccount = "lab"\npartition = "compute"\n'
                                          'extra_sbatch_args = ["--qos=long"]\n',
                       WAVES.replace("sleep ~{seconds};", "while [ ! -e %s ]; do sleep 0.1; done;" % gate))
    sub = submit(tmp_path, env)
    run_dir = Path(sub["directory"])
    assert not (state / ("%s.rc" % sub["job_id"])).exists() and not (run_dir / "outputs.json").exists()
    gate.write_text("")
    assert run_dir.parent == tmp_path / "out" / "runs" / "w" and run_dir.is_dir()
    first = calls(state)[0]
    assert first == ["sbatch", "--job-name", sub["name"], "-o", str(run_dir / "head_job.stdout"), "-e",
                     str(run_dir / "head_job.stderr"), "--chdir", str(tmp_path), "--signal=B:USR1@60",
                     "--cpus-per-task=2", "--mem=3072M", "--time=10:00", "--partition", "compute", "--account", "lab",
                     "--qos=long", str(run_dir / "head_job.sh")]
    script = (run_dir / "head_job.sh").read_text()
    assert "SPROCKET_HEAD_JOB=1\nexport SPROCKET_HEAD_JOB\nexec %s " % sys.executable in script
    assert " run -s -c sprocket.toml main.wdl -o out --head-run-dir=%s --head-run-name=%s\n" % (run_dir, sub["name"]) in script
    assert "--submit" not in script.splitlines()[-1]
    wait_for(lambda: (state / ("%s.rc" % sub["job_id"])).exists(), 60, "the head job to end")
    assert (state / ("%s.rc" % sub["job_id"])).read_text().strip() == "0", (run_dir / "head_job.stderr").read_text()
    assert json.loads((run_dir / "outputs.json").read_text()) == {"w.ys": [0, 2, 4], "w.n": 6}
    assert json.loads((run_dir / "head_job.stdout").read_text()) == {"w.ys": [0, 2, 4], "w.n": 6}
    rows = db_rows(tmp_path / "out" / "sprocket.db", "SELECT name, status, directory FROM runs")
    assert [(r["name"], r["status"]) for r in rows] == [(sub["name"], "completed")]
    again = submit(tmp_path, env)  # a run never takes an earlier one's directory
    assert again["directory"] != sub["directory"] and again["name"] != sub["name"]
    wait_for(lambda: (state / ("%s.rc" % again["job_id"])).exists(), 60, "the second head job to end")


def test_time_limit_hands_the_run_to_a_successor_that_adopts_the_running_jobs(tmp_path):
    """USR1 in the head job while the first wave runs: no new job, a successor head job submitted after
    it (same command, same name, a new directory), the hand-off in sprocket.db and `runs`, exit 0, no
    scancel; the successor adopts the three running jobs and runs the last task: each task ran once."""
    env, state = setup(tmp_path)
    sub = submit(tmp_path, env)
    wait_for(lambda: len([c for c in calls(state) if c[0] == "sbatch"]) >= 4, 60, "the first wave's jobs")
    pid = wait_for(lambda: head_pid(sub["name"]), 30, "the head job's engine")
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: (state / ("%s.rc" % sub["job_id"])).exists(), 60, "the head job to end")
    run_dir = Path(sub["directory"])
    assert (state / ("%s.rc" % sub["job_id"])).read_text().strip() == "0", (run_dir / "head_job.stderr").read_text()
    successor = [c for c in calls(state) if c[0] == "sbatch" and "--dependency=afterany:%s" % sub["job_id"] in c]
    assert len(successor) == 1 and successor[0][successor[0].index("--job-name") + 1] == sub["name"]
    second_dir = Path(successor[0][-1]).parent
    assert second_dir != run_dir and second_dir.parent == run_dir.parent
    log = (run_dir / "output.log").read_text()
    assert "time limit is near (USR1)" in log and "handed off to head job" in log
    out = tmp_path / "out"
    wait_for(lambda: (second_dir / "outputs.json").exists(), 90, "the successor to finish the run")
    assert json.loads((second_dir / "outputs.json").read_text()) == {"w.ys": [0, 2, 4], "w.n": 6}
    tasks = [c[c.index("--job-name") + 1] for c in calls(state) if c[0] == "sbatch" and "--signal=B:USR1@60" not in c]
    assert sorted(tasks) == ["double-0-0", "double-1-0", "double-2-0", "total-0"]  # each exactly once
    assert not [c for c in calls(state) if c[0] == "scancel"]
    rows = db_rows(out / "sprocket.db", "SELECT id, name, status, error FROM runs ORDER BY id")
    assert [(r["name"], r["status"]) for r in rows] == [(sub["name"], "orphaned"), (sub["name"], "completed")]
    handoffs = db_rows(out / "sprocket.db", "SELECT * FROM handoffs")
    assert [(h["run_id"], h["job_id"], h["reason"]) for h in handoffs] == [(rows[0]["id"], sub["job_id"], "time limit (USR1)")]
    assert "handed off to head job %s" % handoffs[0]["successor_job_id"] in rows[0]["error"]
    assert db_rows(out / "sprocket.db", "SELECT run_id, by_run_id FROM adoptions") == [
        {"run_id": rows[0]["id"], "by_run_id": rows[1]["id"]}]
    adopted = db_rows(out / "sprocket.db", "SELECT call FROM attempts WHERE run_id = ? AND adopted_from IS NOT NULL",
                      (rows[1]["id"],))
    assert sorted(a["call"] for a in adopted) == ["double-0", "double-1", "double-2"]
    p = subprocess.run(sprocket_argv("runs", "-o", "out", "--json"), cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    listed = json.loads(p.stdout)
    assert [(r["status"], r["handed_off_to"]) for r in listed] == [
        ("completed", None), ("handed-off", handoffs[0]["successor_job_id"])]
    p = subprocess.run(sprocket_argv("runs", "-o", "out"), cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    assert "handed-off to %s" % handoffs[0]["successor_job_id"] in p.stdout


def test_sigterm_after_the_hand_off_cancels_nothing(tmp_path):
    """Slurm's SIGTERM at the limit comes after USR1: the engine handing off cancels no job then; the
    jobs carry on and the successor finishes the run."""
    env, state = setup(tmp_path, wdl=WAVES.replace("Int seconds = 4", "Int seconds = 6"))
    sub = submit(tmp_path, env)
    wait_for(lambda: len([c for c in calls(state) if c[0] == "sbatch"]) >= 4, 60, "the first wave's jobs")
    pid = wait_for(lambda: head_pid(sub["name"]), 30, "the head job's engine")
    os.kill(pid, signal.SIGUSR1)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: (state / ("%s.rc" % sub["job_id"])).exists(), 60, "the head job to end")
    assert (state / ("%s.rc" % sub["job_id"])).read_text().strip() == "0"
    assert not [c for c in calls(state) if c[0] == "scancel"]
    log = (Path(sub["directory"]) / "output.log").read_text()
    assert "after the hand-off: nothing is canceled" in log and "canceling executing tasks" not in log
    second = db_rows(tmp_path / "out" / "sprocket.db", "SELECT successor_job_id FROM handoffs")[0]["successor_job_id"]
    wait_for(lambda: (state / ("%s.rc" % second)).exists(), 90, "the successor to end")
    rows = db_rows(tmp_path / "out" / "sprocket.db", "SELECT status FROM runs ORDER BY id")
    assert [r["status"] for r in rows] == ["orphaned", "completed"]


def test_a_chain_past_max_handoffs_fails_with_a_clear_error_and_no_successor(tmp_path):
    """max_handoffs = 1: the first head job hands off, its successor's USR1 ends the run `failed`
    with the reason in sprocket.db and the log; no third head job; its jobs are canceled (in one
    scancel) whether the successor had followed them yet or not (USR1 may come just after it found
    them on record, before its scheduler adopted any: RunContext.abort() cancels those too)."""
    env, state = setup(tmp_path, CONFIG + "max_handoffs = 1\n", WAVES.replace("Int seconds = 4", "Int seconds = 30"))
    sub = submit(tmp_path, env)
    wait_for(lambda: len([c for c in calls(state) if c[0] == "sbatch"]) >= 4, 60, "the first wave's jobs")
    os.kill(wait_for(lambda: head_pid(sub["name"]), 30, "the head job's engine"), signal.SIGUSR1)
    second = wait_for(lambda: db_rows(tmp_path / "out" / "sprocket.db", "SELECT successor_job_id FROM handoffs"), 60,
                      "the hand-off")[0]["successor_job_id"]
    pid = wait_for(lambda: head_pid(sub["name"], sub["job_id"]), 60, "the successor's engine")
    wait_for(lambda: len(db_rows(tmp_path / "out" / "sprocket.db", "SELECT * FROM adoptions")) == 1, 60, "the adoption")
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: (state / ("%s.rc" % second)).exists(), 60, "the successor to end")
    assert (state / ("%s.rc" % second)).read_text().strip() == "1"
    rows = db_rows(tmp_path / "out" / "sprocket.db", "SELECT id, status, error FROM runs ORDER BY id")
    assert [r["status"] for r in rows] == ["orphaned", "failed"]
    assert "after 1 hand-off(s), the most run.head_job.max_handoffs allows" in rows[1]["error"]
    assert len([c for c in calls(state) if c[0] == "sbatch" and any(a.startswith("--dependency=") for a in c)]) == 1
    first_wave = db_rows(tmp_path / "out" / "sprocket.db", "SELECT job_id FROM attempts WHERE run_id = ?",
                         (rows[0]["id"],))
    assert len(first_wave) == 3
    scancels = [c for c in calls(state) if c[0] == "scancel"]
    assert scancels and {i for c in scancels for i in c[1:]} == {a["job_id"] for a in first_wave}
    second_dir = Path(db_rows(tmp_path / "out" / "sprocket.db", "SELECT directory FROM runs ORDER BY id")[1]["directory"])
    assert "max_handoffs" in (tmp_path / "out" / second_dir / "output.log").read_text()


@pytest.mark.parametrize("lines, message", [
    ('time = "2:00"\nhandoff_lead = 61\n', "`run.head_job.handoff_lead` is 61 s, more than half of `run.head_job.time` "
                                           '"2:00" (120 s)'),
    ('time = "2 hours"\n', "`run.head_job.time` in"),
    ('extra_sbatch_args = ["--time=5"]\n', "`run.head_job.extra_sbatch_args` has `--time=5`"),
    ('cpus = 0\n', "`run.head_job.cpus` in"),
])
def test_head_job_settings_are_checked_before_anything_is_submitted(tmp_path, lines, message):
    env, state = setup(tmp_path, CONFIG.split("[run.head_job]")[0] + "[run.head_job]\n" + lines)
    p = sprocket(tmp_path, env, "--submit")
    assert p.returncode == 1 and message in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert calls(state) == [] and not (tmp_path / "out" / "runs").exists()


def test_run_submit_refuses_a_backend_whose_tasks_would_end_with_the_head_job(tmp_path):
    env, state = setup(tmp_path, '[run.head_job]\ntime = "1:00:00"\n')
    p = sprocket(tmp_path, env, "--submit")
    assert p.returncode == 1 and "the `default` backend (type local) runs tasks inside the engine's own job" in p.stderr
    assert calls(state) == []


def test_head_job_settings_in_config_resolve_and_slurm_time_format():
    lines = S.resolve_lines(S.Config())
    for key, value in (("partition", None), ("time", None), ("cpus", "1"), ("memory", '"2 GB"'), ("account", None),
                       ("extra_sbatch_args", "[]"), ("handoff_lead", "300"), ("max_handoffs", "20")):
        assert ("run.head_job.%s = %s  # default" % (key, value) if value else "# run.head_job.%s is not set" % key) in lines
    assert [S.slurm_time_seconds(t) for t in ("2-00:00:00", "90", "1:30", "01:00:00", "1-2", "1-2:03")] == [
        172800, 5400, 90, 3600, 93600, 93780]
    for bad in ("0", "2h", "1:2:3:4", "-1", "UNLIMITED", "INVALID", "1:30.5", "0:00"):
        with pytest.raises(ValueError):
            S.slurm_time_seconds(bad)


def test_head_job_command_is_this_program_without_submit_and_with_the_new_run(monkeypatch, tmp_path):
    program = tmp_path / "sprocket.pyz"
    program.write_text("")
    monkeypatch.setattr(sys, "argv", [str(program), "run", "x.wdl", "--subm"])
    argv = ["-v", "run", "x.wdl", "a=1", "--subm", "--head-run-dir=/o/1", "--head-run-name=n", "--head-predecessor=4"]
    assert S.head_job_command(argv, "/o/2", "n", "5") == [
        sys.executable, str(program), "-v", "run", "x.wdl", "a=1", "--head-run-dir=/o/2", "--head-run-name=n",
        "--head-predecessor=5"]


def test_a_head_job_started_again_never_writes_over_its_run(tmp_path):
    """A head job started a second time (requeued by Slurm, or its head_job.sh run by hand) finds its
    directory holding a run: the new run goes in a directory of its own."""
    env, state = setup(tmp_path, wdl=WAVES.replace("Int seconds = 4", "Int seconds = 0"))
    sub = submit(tmp_path, env)
    wait_for(lambda: (state / ("%s.rc" % sub["job_id"])).exists(), 60, "the head job to end")
    run_dir = Path(sub["directory"])
    before = (run_dir / "outputs.json").read_text()
    p = subprocess.run(["sh", str(run_dir / "head_job.sh")], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "holds a run already (the head job was started again): this one goes in a new directory" in p.stderr
    rows = db_rows(tmp_path / "out" / "sprocket.db", "SELECT name, status, directory FROM runs ORDER BY id")
    assert [(r["name"], r["status"]) for r in rows] == [(sub["name"], "completed")] * 2
    assert rows[0]["directory"] != rows[1]["directory"] and (run_dir / "outputs.json").read_text() == before
    assert json.loads(p.stdout) == json.loads(before)


def test_without_a_time_the_hand_off_lead_must_fit_the_partitions_limit(tmp_path, monkeypatch):
    """run.head_job.time unset: the job gets its partition's DefaultTime (else MaxTime), which the
    lead must fit too; nothing is submitted and no directory made when it does not."""
    from types import SimpleNamespace

    from test_slurm_parts import Log, Runner

    text = ("PartitionName=compute Default=YES DefaultTime=NONE MaxTime=UNLIMITED\n"
            "PartitionName=short Default=NO DefaultTime=00:05:00 MaxTime=00:10:00\n"
            "PartitionName=long Default=NO DefaultTime=NONE MaxTime=2-00:00:00\n")
    client = S.SlurmClient(Log(), 1, None, run_tool=Runner(lambda argv: (0, text, "")))
    assert [S.partition_time_limit(client, p) for p in (None, "short", "long")] == [None, 300, 172800]
    table = S.SlurmClient(Log(), 1, None, run_tool=Runner(lambda argv: (0, text, ""))).partitions()
    monkeypatch.setattr(S.SlurmClient, "partitions", lambda self: table)
    (tmp_path / "sprocket.toml").write_text(CONFIG.replace('time = "10:00"\nhandoff_lead = 60\n', 'partition = "short"\n'))
    config = S.load_config([str(tmp_path / "sprocket.toml")], True)
    with pytest.raises(S.ConfigError, match=r"`run.head_job.handoff_lead` is 300 s, more than half of the time limit of "
                                            r"the head job's partition \(300 s; run.head_job.time is unset\).*at most 150"):
        S.submit_run(config, ["run", "main.wdl", "--submit"], str(tmp_path / "out"), SimpleNamespace(name="w"), None, Log())
    assert not (tmp_path / "out").exists()


def test_run_submit_without_sbatch_is_a_clear_error_and_leaves_no_directory(tmp_path):
    env, state = setup(tmp_path)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "sbatch").exists())
    p = sprocket(tmp_path, env, "--submit")
    assert p.returncode == 1 and "the head job could not be submitted: `sbatch` was not found on PATH" in p.stderr, p.stderr
    assert [d for d in (tmp_path / "out" / "runs" / "w").iterdir() if d.name != "_latest"] == []


def test_run_submit_from_a_zipapp_runs_the_zipapp_in_the_head_job(tmp_path):
    """sprocket.py as a zipapp (the README's recipe, without the bytecode): the head job runs the
    archive itself, by its absolute path, with the same Python."""
    app = tmp_path / "build" / "app"
    app.mkdir(parents=True)
    (app / "sprocket.py").write_bytes(Path(S.__file__).read_bytes())
    (app / "__main__.py").write_text("import sys, sprocket\nsys.exit(sprocket.main())\n")
    subprocess.run([sys.executable, "-m", "zipapp", str(app), "-o", str(tmp_path / "sprocket.pyz")], check=True, timeout=60)
    env, state = setup(tmp_path, wdl=WAVES.replace("Int seconds = 4", "Int seconds = 0"))
    p = subprocess.run([sys.executable, "sprocket.pyz", "run", "-s", "-c", "sprocket.toml", "main.wdl", "-o", "out",
                        "--submit"], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    assert p.returncode == 0, p.stderr
    sub = json.loads(p.stdout)
    script = (Path(sub["directory"]) / "head_job.sh").read_text()
    assert "\nexec %s %s run -s -c sprocket.toml main.wdl -o out --head-run-dir=" % (sys.executable, tmp_path / "sprocket.pyz") in script
    wait_for(lambda: (state / ("%s.rc" % sub["job_id"])).exists(), 60, "the head job to end")
    assert json.loads((Path(sub["directory"]) / "outputs.json").read_text()) == {"w.ys": [0, 2, 4], "w.n": 6}


def test_a_cancel_between_two_head_jobs_cancels_the_queued_successor_with_the_jobs(tmp_path):
    """`sprocket cancel` after a hand-off, while the successor head job waits in the queue (the fake's
    hold): the run (orphaned, no adopter yet) is marked canceled and one scancel takes its three jobs
    and the successor head job, so nothing of the run is left to start."""
    env, state = setup(tmp_path, wdl=WAVES.replace("Int seconds = 4", "Int seconds = 30"))
    (state / "hold").write_text("")
    sub = submit(tmp_path, env)
    wait_for(lambda: len([c for c in calls(state) if c[0] == "sbatch"]) >= 4, 60, "the first wave's jobs")
    os.kill(wait_for(lambda: head_pid(sub["name"]), 30, "the head job's engine"), signal.SIGUSR1)
    wait_for(lambda: (state / ("%s.rc" % sub["job_id"])).exists(), 60, "the head job to hand off and end")
    db = tmp_path / "out" / "sprocket.db"
    second = db_rows(db, "SELECT successor_job_id FROM handoffs")[0]["successor_job_id"]
    try:
        p = subprocess.run(sprocket_argv("cancel", sub["name"], "-o", "out"), cwd=str(tmp_path), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        assert p.returncode == 0 and "its engine is gone; 4 job(s) canceled; marked canceled" in p.stdout, p.stderr
        jobs = [a["job_id"] for a in db_rows(db, "SELECT job_id FROM attempts")]
        assert len(jobs) == 3
        assert [sorted(c[1:]) for c in calls(state) if c[0] == "scancel"] == [sorted(jobs + [second])]
        assert [r["status"] for r in db_rows(db, "SELECT status FROM runs")] == ["canceled"]
    finally:  # the fake's scancel stops nothing: its waiting successor goes here
        for pid in os.listdir("/proc"):
            try:
                if str(state / ("%s.rc" % second)).encode() in Path("/proc/%s/cmdline" % pid).read_bytes().split(b"\0"):
                    os.killpg(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                continue


def test_a_time_limit_as_the_last_outputs_are_made_completes_the_run_without_a_hand_off(tmp_path, isolated_config):
    """USR1 after every task is over, while the workflow's outputs are made: nothing is left to hand
    off, so the scheduler ends with the outputs instead of raising RunHandedOff (and the run
    completes); with a task still to run it hands off."""
    from test_runtime import make_run

    wdl = "version 1.0\ntask t { command <<< echo 1 >>> output { Int n = 1 } }\nworkflow w { call t  output { Int n = t.n } }\n"
    for unfinished in (False, True):
        (tmp_path / str(unfinished)).mkdir()
        run = make_run(tmp_path / str(unfinished), wdl)
        start = run.start

        def time_limit_as_outputs_are_made(inputs, on_done, start=start, run=run, unfinished=unfinished):
            def done(outputs):
                run.context.stopping = run.context.handing_off = True  # as Run.on_time_limit sets them
                if not unfinished:
                    on_done(outputs)
            start(inputs, done)
        run.start = time_limit_as_outputs_are_made
        try:
            if unfinished:
                with pytest.raises(S.RunHandedOff):
                    run.execute({})
            else:
                assert run.execute({}) == {"n": 1}
        finally:
            run.finish(error="test over")


def test_a_time_limit_while_an_array_is_submitted_hands_its_jobs_to_the_successor(tmp_path):
    """USR1 while the sbatch of a scatter's job array is under way (the fake's gate holds it): the
    hand-off is put on record, then the engine waits for that sbatch (Backend.detach) so its job ids
    are on record too; the successor adopts the sixteen elements: each ran once, one array."""
    env, state = setup(tmp_path, wdl=WAVES.replace("range(3)", "range(16)"))
    (state / "array-gate").write_text("")
    sub = submit(tmp_path, env)
    wait_for(lambda: (state / "array-sbatch-started").exists(), 60, "the array's sbatch")
    os.kill(wait_for(lambda: head_pid(sub["name"]), 30, "the head job's engine"), signal.SIGUSR1)
    db = tmp_path / "out" / "sprocket.db"
    second = wait_for(lambda: db_rows(db, "SELECT successor_job_id FROM handoffs"), 60, "the hand-off")[0]["successor_job_id"]
    assert not (state / ("%s.rc" % sub["job_id"])).exists()  # it waits for the array's sbatch
    (state / "array-gate").unlink()
    wait_for(lambda: (state / ("%s.rc" % sub["job_id"])).exists(), 60, "the head job to end")
    assert (state / ("%s.rc" % sub["job_id"])).read_text().strip() == "0"
    wait_for(lambda: (state / ("%s.rc" % second)).exists(), 90, "the successor to end")
    rows = db_rows(db, "SELECT id, status, directory FROM runs ORDER BY id")
    assert [r["status"] for r in rows] == ["orphaned", "completed"]
    assert json.loads((tmp_path / "out" / rows[1]["directory"] / "outputs.json").read_text()) == {
        "w.ys": [2 * i for i in range(16)], "w.n": 240}
    tasks = [c for c in calls(state) if c[0] == "sbatch" and "--signal=B:USR1@60" not in c]
    assert len([c for c in tasks if any(a.startswith("--array=") for a in c)]) == 1 and len(tasks) == 2  # and total
    assert not [c for c in calls(state) if c[0] == "scancel"]
    adopted = db_rows(db, "SELECT call, job_id FROM attempts WHERE run_id = ? AND adopted_from IS NOT NULL", (rows[1]["id"],))
    assert sorted(a["call"] for a in adopted) == sorted("double-%d" % i for i in range(16))
    assert all("_" in a["job_id"] for a in adopted)


def test_abort_cancels_the_jobs_the_run_was_to_adopt_and_its_own_in_one_scancel(tmp_path, monkeypatch):
    """The max_handoffs path (and any cancel) as RunContext.abort() does it, without the race of a
    signal: the successor found the jobs of its predecessor on record (context.adoptable) but had
    adopted none yet; one scancel takes them and those it follows, and nothing is left to adopt."""
    env, state = fake_slurm_env(tmp_path)
    for k in ("PATH", "FAKE_SLURM_DIR"):
        monkeypatch.setenv(k, env[k])
    (tmp_path / "sprocket.toml").write_text(CONFIG)
    config = S.load_config([str(tmp_path / "sprocket.toml")], True)
    name, table = config.backend()
    context = S.RunContext(S.run_settings(config), S.RunLog(S._LEVELS["ERROR"]))
    context.backend = S.make_backend(context, name, S.read_backend_settings(table))
    context.scheduler = S.Scheduler(context)
    followed = S.SlurmJob(context.backend.monitor, str(tmp_path), "k0", "double-0", 2 ** 20, lambda job_id: None)
    context.backend.monitor.submitted(followed, "7")

    class Following:  # a task run of the scheduler with its job (tr.job, tr.context)
        job = followed

    Following.context = context
    context.scheduler.running.add(Following)
    context.adoptable = {"double-1": S.Adoptable("k1", 0, str(tmp_path / "a1"), "41", "c1", None, None),
                         "double-2": S.Adoptable("k2", 0, str(tmp_path / "a2"), "42_3", "c2", None, None)}
    context.abort()
    assert [c for c in calls(state) if c[0] == "scancel"] == [["scancel", "7", "41", "42_[3]"]]
    assert context.adoptable == {} and context.aborting and followed.wait() == 143
    context.backend.monitor.stop()
