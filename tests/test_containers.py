"""Section 15: the container backends on this host (`type = "docker"`, `"podman"`, `"apptainer"`).

In-process tests drive the backend with a fake runtime command (the `run` line, limits, GPUs, images,
reattach by name); the rest run real containers with podman and the image `localhost/debian:bookworm`
(skipped, with the reason, where either is absent), and local apptainer with the stand-in."""

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import _import_sprocket, db_rows, kill_running, ok, run_cmd, run_dir_of, sprocket_run, wait_for, write

S = _import_sprocket()
IMAGE = "localhost/debian:bookworm"

pytestmark = pytest.mark.usefixtures("isolated_config")


# --------------------------------------------------------------------------------------------
# in process: a fake runtime command
# --------------------------------------------------------------------------------------------


class FakeTool:
    """Answers the runtime's commands as told; keeps every argv."""

    def __init__(self, local=(IMAGE,), pull_error=None):
        self.calls, self.local, self.pull_error = [], set(local), pull_error
        self.exit = 0  # what an attached `run` exits with

    def spawn(self, argv, log):
        self.calls.append(list(argv))
        return FakeProcess(self.exit)

    def __call__(self, argv, timeout=120):
        self.calls.append(list(argv))
        verb = argv[1:3] if argv[1] == "image" else argv[1:2]
        if verb == ["image", "inspect"]:
            return (0, "sha256:abc\n", "") if argv[-1] in self.local else (125, "", "Error: %s: image not known" % argv[-1])
        if verb == ["pull"]:
            if self.pull_error:
                return 125, "", self.pull_error
            self.local.add(argv[-1])
            return 0, "", ""
        if verb == ["inspect"] and hasattr(self, "inspect"):
            return self.inspect
        if verb == ["ps"]:
            return 0, "other\n%s\n" % getattr(self, "running", ""), ""
        if verb == ["kill"] and getattr(self, "kills", None):
            return self.kills.pop(0)
        return 0, "", ""

    def verbs(self, verb):
        return [c for c in self.calls if c[1] == verb]


class FakeProcess:
    """An attached `run` that has ended with `code`."""

    def __init__(self, code):
        self.code = code

    def wait(self):
        return self.code

    def poll(self):
        return self.code


class Recorder:
    def __init__(self):
        self.images, self.jobs = [], []

    def record_image(self, request, digest):
        self.images.append(digest)

    def record_job(self, request, job_id, what="Slurm job"):
        self.jobs.append((job_id, what))

    def flush(self):
        pass


def _backend(tmp_path, kind="podman", tool=None, **settings):
    config = S.load_config(skip_search=True)
    context = S.RunContext(S.run_settings(config), S.RunLog(S._LEVELS["ERROR"]), Recorder())
    context.run_dir = str(tmp_path)
    context.tmp_dir = str(tmp_path / "tmp")
    os.makedirs(context.tmp_dir, exist_ok=True)
    values = {key: row.default for key, row in S.BACKENDS[kind].SETTINGS.items()}
    values.update(settings)
    tool = tool or FakeTool()
    spawn = {"spawn": tool.spawn} if hasattr(tool, "spawn") else {}
    return S.BACKENDS[kind](context, "box", values, run_tool=tool, **spawn)


def _request(tmp_path, requirements=None, cpu=2.0, memory=512 * 1024 ** 2, inputs=(), number=0):
    adir = tmp_path / "calls" / "t" / "attempts" / str(number)
    (adir / "work").mkdir(parents=True)
    (adir / "command").write_text("echo hi\n")
    return S.TaskRequest("t", "t-0-key", "t-0", 0, str(adir / "command"), str(adir), str(adir / "work"),
                         str(adir / "stdout"), str(adir / "stderr"), {"GREETING": "hello there"},
                         dict({"container": IMAGE}, **(requirements or {})), {}, cpu, memory, list(inputs))


def test_the_run_command_line_of_an_attempt_in_a_podman_container(tmp_path):
    """Attached and named after the attempt; as this user; --cpus/--memory from the task; its env; the
    guest layout (inputs read-only under /mnt/task/inputs/, the files of one directory together, the
    work directory at /mnt/task/work and its own path, with what is in it); the task's shell runs the
    command; one `run`."""
    tool = FakeTool()
    backend = _backend(tmp_path, tool=tool)
    data, index, other = tmp_path / "data.txt", tmp_path / "data.txt.fai", tmp_path / "sub" / "data.txt"
    other.parent.mkdir()
    for f in (data, index, other):
        f.write_text("x")
    mine = tmp_path / "calls" / "t" / "attempts" / "0" / "work" / "mine.txt"  # (the attempt's own: not an input)
    request = _request(tmp_path, inputs=[str(data), str(index), str(other), str(tmp_path / "absent.txt"), str(mine)])
    mine.write_text("x")
    job = backend.start(request)
    assert [c[1] for c in tool.calls] == ["version", "image", "run"]
    (run,) = tool.verbs("run")
    adir, work = request.directory, request.work
    name = S.container_name(adir)
    assert job.job_id == name and name.startswith("sprocket-t-0-")
    tmp_root = str(tmp_path / "calls" / "t" / "tmp")
    assert run == [
        "podman", "run", "--name", name, "--label", "sprocket.directory=%s" % adir,
        "--user", "%d:%d" % (os.getuid(), os.getgid()), "--workdir", "/mnt/task/work",
        "--cpus=2", "--memory=536870912b", "--memory-swap=536870912b",
        "--mount=type=bind,source=%s/container_tmp,target=/tmp" % tmp_root,
        "--mount=type=bind,source=%s/container_var_tmp,target=/var/tmp" % tmp_root,
        "--mount=type=bind,source=%s,target=/mnt/task/command,readonly" % request.command,
        "--mount=type=bind,source=%s,target=/mnt/task/work" % work,
        "--mount=type=bind,source=%s,target=%s" % (work, work),
        "--mount=type=bind,source=%s,target=/mnt/task/stdout" % request.stdout,
        "--mount=type=bind,source=%s,target=/mnt/task/stderr" % request.stderr,
        "--mount=type=bind,source=%s,target=/mnt/task/inputs/0/data.txt,readonly" % data,
        "--mount=type=bind,source=%s,target=/mnt/task/inputs/0/data.txt.fai,readonly" % index,
        "--mount=type=bind,source=%s,target=/mnt/task/inputs/1/data.txt,readonly" % other,
        "--mount=type=bind,source=%s/usage,target=/mnt/task/usage" % adir,
        "--env=GREETING=hello there",
        IMAGE, "bash", "-c", "bash /mnt/task/command > /mnt/task/stdout 2> /mnt/task/stderr; " + S._CONTAINER_EPILOGUE]
    assert backend.context.recorder.images == ["sha256:abc"]
    assert backend.context.recorder.jobs == [(name, "container")]
    backend.close()
    assert tool.calls[-1] == ["podman", "rm", "-f", "--ignore", name], "close() leaves a container behind"


def test_the_backend_s_own_cpu_and_memory_limit_tasks_with_deny_or_try_with_max(tmp_path):
    backend = _backend(tmp_path, cpu=2, memory=1024 ** 3)
    assert backend.check("t", {}, {}, 2.0, 1024 ** 3) == (2.0, 1024 ** 3)
    with pytest.raises(S.RunError) as e:
        backend.check("t", {}, {}, 4.0, 1024)
    assert "task `t` requires at least 4 CPU(s), but the host only has 2 available" in e.value.message
    clamping = _backend(tmp_path, cpu=2, memory=1024 ** 3, limit_behavior="try_with_max")
    assert clamping.check("t", {}, {}, 4.0, 4 * 1024 ** 3) == (2.0, 1024 ** 3)


@pytest.mark.parametrize("kind,flag", [("docker", ["--gpus", "all"]), ("podman", ["--device", "nvidia.com/gpu=all"])])
def test_a_gpu_task_is_refused_unless_the_backend_has_gpus_then_gets_the_runtime_s_own_flag(tmp_path, kind, flag):
    with pytest.raises(S.RunError) as e:
        _backend(tmp_path, kind).check("t", {"gpu": True}, {}, 1.0, 1024)
    assert "task `t` requires a GPU, but `run.backends.box.gpu` is not set" in e.value.message
    assert " ".join(flag) in e.value.message
    tool = FakeTool()
    backend = _backend(tmp_path, kind, tool=tool, gpu=True)
    assert backend.check("t", {"gpu": True}, {}, 1.0, 1024) == (1.0, 1024)
    backend.start(_request(tmp_path, {"gpu": True}))
    (run,) = tool.verbs("run")
    i = run.index(flag[0])
    assert run[0] == kind and run[i:i + 2] == flag


def test_an_image_is_pulled_at_most_once_per_run_and_a_local_one_not_at_all(tmp_path):
    """The fallback list is tried in order (`*`: run.task.container); a local image is inspected, not pulled."""
    tool = FakeTool(local=())
    backend = _backend(tmp_path, tool=tool)
    for _ in range(3):
        assert backend.images.image_for(["docker://ubuntu:latest"], "t", str(tmp_path)) == ("ubuntu:latest", "sha256:abc")
    assert tool.verbs("pull") == [["podman", "pull", "ubuntu:latest"]]
    tool.local.add(IMAGE)
    assert backend.images.image_for("*", "t", str(tmp_path)) == ("ubuntu:latest", "sha256:abc")  # run.task.container
    local = FakeTool()
    images = _backend(tmp_path, tool=local).images
    assert images.image_for(IMAGE, "t", str(tmp_path))[0] == IMAGE and not local.verbs("pull")


@pytest.mark.parametrize("said,cause", [
    ('Error: initializing source docker://nosuchimage:1: pinging container registry registry-1.docker.io: Get '
     '"https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host',
     "the registry could not be reached (no network"),
    ("Error: initializing source docker://quay.io/me/x:1: reading manifest 1 in quay.io/me/x: manifest unknown",
     "no such image in the registry"),
    ("Error: initializing source docker://ghcr.io/me/private:1: reading manifest: unauthorized: authentication required",
     "the registry refused access: log in with `podman login <registry>`"),
])
def test_a_failed_pull_says_why_and_the_fallback_list_is_tried_in_order(tmp_path, monkeypatch, said, cause):
    monkeypatch.setattr(S.time, "sleep", lambda s: None)
    tool = FakeTool(local=(), pull_error=said)
    backend = _backend(tmp_path, tool=tool)
    with pytest.raises(S.RunError) as e:
        backend.images.image_for(["nosuchimage:1"], "t", str(tmp_path))
    assert "task `t`: no container image could be pulled" in e.value.message
    assert "could not pull container image `nosuchimage:1`: " + cause in e.value.message, e.value.message
    pulls = len(tool.verbs("pull"))
    with pytest.raises(S.RunError):
        backend.images.image_for(["nosuchimage:1"], "t", str(tmp_path))
    assert len(tool.verbs("pull")) == pulls, "a failed pull is tried again in the same run"
    tool.local.add(IMAGE)
    assert backend.images.image_for(["nosuchimage:1", IMAGE], "t", str(tmp_path))[0] == IMAGE


@pytest.mark.parametrize("exit,usage,inspect,code,oom", [
    (3, "exit=3\n", None, 3, False),
    (0, "exit=137\noom_kill=1\n", None, 137, True),  # the command was killed, its shell said why
    (137, "", "true", 137, True),  # the shell itself was killed: inspect says why
    (137, "", "false", 137, False),
])
def test_an_attached_container_s_end_is_its_shell_s_word_and_inspect_only_explains_a_bare_137(
        tmp_path, exit, usage, inspect, code, oom):
    tool = FakeTool()
    tool.exit, tool.inspect = exit, (0, "%s\n" % inspect, "")
    backend = _backend(tmp_path, tool=tool)
    request = _request(tmp_path)
    job = backend.start(request)
    write(tmp_path / "calls" / "t" / "attempts" / "0" / "usage", usage + "0m0.01s 0m0.02s\n0m1.50s 0m0.50s\npeak_memory=4096\n")
    assert job.wait() == code and job.out_of_memory is oom
    assert ("ran out of memory: it used more than its --memory=512.0 MiB" in (job.message or "")) is oom
    assert len(tool.verbs("inspect")) == (inspect is not None)
    used = job.usage()
    assert used["cpu_seconds"] == 2.0 and used["peak_memory"] == 4096 and used["ended_at"] >= used["started_at"]


def test_a_run_that_fails_before_the_command_says_what_the_runtime_said(tmp_path):
    tool = FakeTool()
    tool.exit = 125
    backend = _backend(tmp_path, tool=tool)
    job = backend.start(_request(tmp_path))
    write(tmp_path / "calls" / "t" / "attempts" / "0" / "container.log", "Error: crun: mount failed\n")
    assert job.wait() == 125 and job.final
    assert job.message == "`podman run` failed (exit 125): Error: crun: mount failed"


def test_a_cancel_before_the_attached_run_made_its_container_kills_it_once_it_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(S.time, "sleep", lambda s: None)
    tool = FakeTool()
    tool.exit = None  # the attached `run` goes on
    tool.kills = [(125, "", "Error: no container with name or ID found: no such container")] * 2 + [(0, "", "")]
    job = _backend(tmp_path, tool=tool).start(_request(tmp_path))
    job.cancel()
    assert len(tool.verbs("kill")) == 3 and job.cancelled


@pytest.mark.parametrize("cleanup", [True, False])
def test_released_containers_are_removed_one_rm_a_round_and_none_is_left_at_the_end(tmp_path, cleanup):
    tool = FakeTool()
    backend = _backend(tmp_path, tool=tool, cleanup=cleanup)
    jobs = [backend.start(_request(tmp_path, number=n)) for n in range(4)]
    for job in jobs[:3]:
        job.wait()
        job.release()
    if cleanup:
        wait_for(lambda: tool.verbs("rm"), 10, "the reaper's round")
        assert tool.verbs("rm") == [["podman", "rm", "-f", "--ignore"] + [j.job_id for j in jobs[:3]]]
    backend.close()  # the one still running is removed too
    assert tool.verbs("rm")[-1] == ["podman", "rm", "-f", "--ignore", jobs[3].job_id]
    assert len(tool.verbs("rm")) == (2 if cleanup else 1)


def test_an_adopted_container_that_is_gone_is_run_again_without_spending_a_retry(tmp_path):
    tool = FakeTool()
    backend = _backend(tmp_path, tool=tool)
    request = _request(tmp_path)
    tool.inspect = (125, "", "Error: no such container")
    adopted = S.Adoptable("k", 0, request.directory, S.container_name(request.directory), None, None, None)
    job = backend.adopt(request, adopted)
    assert job.wait() == 1 and job.retry_free and "no such container" in job.message


def test_a_live_container_is_found_again_by_the_name_its_attempt_directory_gives(tmp_path):
    tool = FakeTool()
    backend = _backend(tmp_path, tool=tool)
    mine, gone = str(tmp_path / "run" / "calls" / "a" / "attempts" / "0"), str(tmp_path / "run" / "calls" / "b" / "attempts" / "0")
    tool.running = S.container_name(mine)
    assert backend.find_jobs([mine, gone]) == {mine: {"job_id": S.container_name(mine)}}
    assert S.container_name(mine) != S.container_name(str(tmp_path / "other" / "calls" / "a" / "attempts" / "0"))


def test_a_runtime_that_does_not_answer_is_refused_when_the_run_starts(tmp_path):
    with pytest.raises(S.RunError) as e:
        _backend(tmp_path, "docker", tool=lambda argv, timeout=120: (1, "", "Cannot connect to the Docker daemon"))
    assert "`run.backends.box` runs tasks with `docker`, which does not work here: Cannot connect" in e.value.message


def test_the_runtimes_times_are_read_in_any_zone():
    at = 1796626556.25  # 2026-12-07T06:55:56.25Z
    assert S._container_time("2026-12-07T06:55:56.25Z") == at
    assert S._container_time("2026-12-07 07:55:56.25 +0100 CET") == at
    assert S._container_time("2026-12-07 01:55:56.25 -0500 EST") == at
    assert S._container_time("0001-01-01 00:00:00 +0000 UTC") is None


def test_outputs_named_by_their_path_in_the_container_are_the_work_directory_s_files(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    v = S.localize_outputs("/mnt/task/work/x.txt", S.PrimType("File"), str(tmp_path), "output", None, "/mnt/task/work")
    assert v == str(tmp_path / "x.txt")


def test_an_output_path_is_the_engine_s_own_a_mounted_one_or_copied_out_of_the_container(tmp_path):
    """Host paths the engine gave the task stay; a guest path is what is mounted there (inputs, /tmp);
    any other is the container's own file, copied out into the attempt's directory (`cp`)."""
    tool = FakeTool()
    backend = _backend(tmp_path, tool=tool)
    data = write(tmp_path / "elsewhere" / "data.txt", "x")
    request = _request(tmp_path, inputs=[str(data)])
    job = backend.start(request)
    tmp_root = tmp_path / "calls" / "t" / "tmp"
    assert job.output_path(str(data)) == str(data)
    assert job.output_path(request.stdout) == request.stdout
    assert job.output_path("/mnt/task/inputs/0/data.txt") == str(data)
    assert job.output_path("/mnt/task/work/a/b.txt") == request.work + "/a/b.txt"
    assert job.output_path("/tmp/scratch.txt") == str(tmp_root / "container_tmp" / "scratch.txt")
    assert not tool.verbs("cp") and not job.copied
    copy = str(tmp_path / "calls" / "t" / "attempts" / "0" / "container_files" / "root" / ".bashrc")
    assert job.output_path("/root/.bashrc") == copy
    assert tool.verbs("cp") == [["podman", "cp", "%s:/root/.bashrc" % job.job_id, copy]] and job.copied == [copy]


# --------------------------------------------------------------------------------------------
# real podman
# --------------------------------------------------------------------------------------------


def _project(tmp_path, source, backend_extra=""):
    write(tmp_path / "sprocket.toml", '[run]\nbackend = "box"\n[run.backends.box]\ntype = "podman"\n' + backend_extra)
    return write(tmp_path / "main.wdl", source)


def _containers():
    return set(subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split())


def _left_behind(run_dir):
    """The containers of this run's attempts that still exist."""
    names = {S.container_name(str(a)) for a in run_dir.glob("**/attempts/*")}
    return names & _containers()


@pytest.fixture(scope="module")
def image_tool(podman):
    """An image with a tool this host lacks (`sprocket-image-tool`), made from the test image."""
    assert shutil.which("sprocket-image-tool") is None
    name, tag = "sprocket-test-maker-%d" % os.getpid(), "localhost/sprocket-test-tool:1"
    subprocess.run(["podman", "run", "--name", name, IMAGE, "sh", "-c", "printf '#!/bin/sh\\necho only in the image: [$1]\\n' "
                    "> /usr/local/bin/sprocket-image-tool && chmod 755 /usr/local/bin/sprocket-image-tool"], check=True)
    try:
        subprocess.run(["podman", "commit", "-q", name, tag], check=True, capture_output=True)
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
    yield tag
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True)


@pytest.mark.podman
def test_a_task_runs_its_image_s_tool_as_this_user_with_read_only_inputs(tmp_path, image_tool):
    """The tool exists only in the image (a local one: no pull); the file the task writes is the user's;
    its input cannot be written; the work directory's path in the container names an output; the image's
    id is in sprocket.db and trace.tsv; the container is gone afterwards."""
    doc = _project(tmp_path, """
        version 1.2
        task t {
          input { File f }
          command <<<
            sprocket-image-tool "$GREETING"
            echo made > made.txt
            if echo more >> ~{f}; then echo writable; else echo read-only; fi
            echo "$(pwd)/made.txt"
          >>>
          output {
            Array[String] said = read_lines(stdout())
            File made = "made.txt"
            File by_guest_path = said[2]
          }
          requirements { container: "%s" }
        }
    """ % image_tool)
    data = write(tmp_path / "in.txt", "data\n")
    proc = sprocket_run(doc, "f=%s" % data, "-o", tmp_path / "out", cwd=tmp_path, timeout=120,
                        env=dict(os.environ, GREETING="from the host"))
    outputs, rd = ok(proc)
    assert outputs["t.said"][0] == "only in the image: []", outputs  # the host's environment stays out
    assert outputs["t.said"][1:] == ["read-only", "/mnt/task/work/made.txt"]
    assert outputs["t.by_guest_path"] == outputs["t.made"] == str(rd / "attempts" / "0" / "work" / "made.txt")
    st = os.stat(outputs["t.made"])
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert data.read_text() == "data\n"
    digest = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image_tool], capture_output=True,
                            text=True).stdout.strip()
    (row,) = db_rows(tmp_path / "out" / "sprocket.db", "SELECT * FROM attempts")
    assert row["image_digest"] == "sha256:" + digest and row["backend"] == "podman"
    assert row["job_id"] == S.container_name(str(rd / "attempts" / "0"))
    header, line = (rd / "trace.tsv").read_text().splitlines()
    trace = dict(zip(header.split("\t"), line.split("\t")))
    assert trace["image"] == "sha256:" + digest and trace["job_id"] == row["job_id"]
    assert trace["start"] and trace["end"] and trace["peak_memory"]
    assert not _left_behind(rd)


@pytest.mark.podman
def test_inputs_are_read_only_under_mnt_task_inputs_with_their_directory_s_files_and_outputs_map_back(tmp_path):
    """Sprocket's layout: an input at /mnt/task/inputs/<n>/<name>, one <n> per parent directory (the
    index beside its data); the command's and the outputs' values are those paths (through `prefix` too),
    while the standard library reads the host's files; a File output with a guest path is the input's host path."""
    doc = _project(tmp_path, """
        version 1.2
        task t {
          input { File data  File index  File other  Directory d }
          command <<<
            echo ~{data}
            echo ~{other}
            echo ~{d}
            ls "$(dirname ~{data})" | tr '\\n' ' '; echo
            cat ~{d}/z.txt; echo ~{read_string(index)} ~{size(data)} ~{read_string("~{index}")}
            echo ~{sep(" ", prefix("-I ", [data, other]))}
            if echo more >> ~{data}; then echo writable; else echo read-only; fi
          >>>
          output {
            Array[String] said = read_lines(stdout())
            File back = said[0]
            Directory d_back = said[2]
            String as_seen = data
            String content = read_string(data)
            File same = data
          }
          requirements { container: "%s" }
        }
    """ % IMAGE)
    data, index = write(tmp_path / "in" / "x.bam", "bam\n"), write(tmp_path / "in" / "x.bam.bai", "bai\n")
    other, d = write(tmp_path / "more" / "x.bam", "other\n"), tmp_path / "dir"
    write(d / "z.txt", "z\n")
    outputs, rd = ok(sprocket_run(doc, "data=%s" % data, "index=%s" % index, "other=%s" % other, "d=%s" % d,
                                  "-o", tmp_path / "out", cwd=tmp_path, timeout=120))
    assert outputs["t.said"] == ["/mnt/task/inputs/1/x.bam", "/mnt/task/inputs/2/x.bam", "/mnt/task/inputs/0/dir",
                                 "x.bam x.bam.bai ", "z", "bai 4.000000 bai",
                                 "-I /mnt/task/inputs/1/x.bam -I /mnt/task/inputs/2/x.bam", "read-only"]
    assert outputs["t.back"] == outputs["t.same"] == str(data) and outputs["t.d_back"] == str(d)
    assert outputs["t.as_seen"] == "/mnt/task/inputs/1/x.bam" and outputs["t.content"] == "bam"
    assert data.read_text() == "bam\n"
    assert not _left_behind(rd)


CONTAINER_OWN_WDL = """
    version 1.2
    task t {
      command <<<
        echo made > made.txt
      >>>
      output {
        File bashrc = "/root/.bashrc"
        File? absent = "/no/such/file"
      }
      requirements { container: "%s" }
    }
""" % IMAGE


@pytest.mark.podman
def test_a_file_of_the_container_s_own_comes_out_of_it_and_the_local_backend_refuses_it(tmp_path):
    """The spec's relative_and_absolute_task: `/root/.bashrc` names the container's file, copied into the
    attempt's directory, never the host's; without a container it is outside the task's reach."""
    doc = _project(tmp_path, CONTAINER_OWN_WDL)
    outputs, rd = ok(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))
    copy = rd / "attempts" / "0" / "container_files" / "root" / ".bashrc"
    assert outputs == {"t.bashrc": str(copy), "t.absent": None}
    inside = subprocess.run(["podman", "run", "--rm", IMAGE, "cat", "/root/.bashrc"], capture_output=True).stdout
    assert copy.read_bytes() == inside
    assert not _left_behind(rd)
    write(tmp_path / "sprocket.toml", "")
    local = sprocket_run(doc, "-o", tmp_path / "out2", cwd=tmp_path)
    assert local.returncode == 1 and "`/root/.bashrc` is outside the task's working directory" in local.stderr


@pytest.mark.podman
@pytest.mark.skipif(os.getuid() != 0, reason="the task writes outside its mounts: it must be root in its container")
def test_a_directory_copied_out_of_the_container_may_not_link_to_the_host_s_files(tmp_path):
    doc = _project(tmp_path, """
        version 1.2
        task t {
          command <<<
            mkdir /made && echo hi > /made/f && ln -s /etc/passwd /made/pw
          >>>
          output { Directory made = "/made" }
          requirements { container: "%s" }
        }
    """ % IMAGE)
    proc = sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "(a link to `/etc/passwd`) is outside the task's working directory" in proc.stderr, proc.stderr
    assert not _left_behind(run_dir_of(proc))


@pytest.mark.podman
def test_one_rm_removes_the_run_s_containers_even_when_one_of_them_is_gone_already(tmp_path):
    name = "sprocket-test-rm-%d" % os.getpid()
    subprocess.run(["podman", "create", "--name", name, IMAGE, "true"], check=True, capture_output=True)
    backend = _backend(tmp_path, tool=S._run_tool)
    backend.live = {"sprocket-test-gone-%d" % os.getpid(): None, name: None}
    backend.close()
    assert name not in _containers()


@pytest.mark.podman
def test_the_readme_s_minimal_sprocket_toml_runs_tasks_in_podman(tmp_path):
    readme = (Path(S.__file__).parent / "README.md").read_text()
    section = readme[readme.index("## Containers on a workstation"):]
    toml = section[section.index("```toml\n") + 8:section.index("```\n", section.index("```toml\n") + 8)]
    write(tmp_path / "sprocket.toml", toml, raw=True)
    doc = write(tmp_path / "main.wdl", """
        version 1.2
        task t {
          input { File f }
          command <<< echo ~{f}; cat /etc/lsb-release | grep CODENAME >>>
          output { Array[String] said = read_lines(stdout()) }
          requirements { container: "ubuntu:focal" }
        }
    """)
    f = write(tmp_path / "in.txt", "x\n")
    outputs, rd = ok(sprocket_run(doc, "f=%s" % f, "-o", tmp_path / "out", cwd=tmp_path))
    assert outputs == {"t.said": ["/mnt/task/inputs/0/in.txt", "DISTRIB_CODENAME=focal"]}
    assert not _left_behind(rd)


@pytest.mark.podman
def test_a_task_s_env_and_the_default_container_reach_the_container(tmp_path):
    doc = _project(tmp_path, """
        version 1.2
        task t {
          input { String greeting = "hello there" }
          env String GREETING = greeting
          command <<< echo "$GREETING from $(cat /etc/debian_version | cut -c1-2)" >>>
          output { String said = read_string(stdout()) }
        }
    """)
    write(tmp_path / "sprocket.toml", (tmp_path / "sprocket.toml").read_text() + '[run.task]\ncontainer = "%s"\n' % IMAGE)
    outputs, _ = ok(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))
    assert outputs == {"t.said": "hello there from 12"}


OOM_WDL = """
    version 1.2
    task big {
      command <<<
        python3 -c 'x = bytearray(150 * 1024 * 1024); print(len(x) // 1024 // 1024)'
      >>>
      output { Int mib = read_int(stdout()) }
      requirements { container: "%s" memory: "64 MiB" max_retries: 1 }
    }
""" % IMAGE


@pytest.mark.podman
def test_a_container_out_of_memory_says_so_and_is_retried_with_more_memory(tmp_path):
    doc = _project(tmp_path, OOM_WDL)
    no_retry = sprocket_run(doc, "-o", tmp_path / "out1", cwd=tmp_path)
    assert no_retry.returncode == 1 and "Traceback" not in no_retry.stderr
    assert "its container ran out of memory: it used more than its --memory=64.0 MiB" in no_retry.stderr
    assert "run.task.memory_retry_multiplier" in no_retry.stderr
    write(tmp_path / "sprocket.toml", (tmp_path / "sprocket.toml").read_text() + "[run.task]\nmemory_retry_multiplier = 4\n")
    outputs, rd = ok(sprocket_run(doc, "-o", tmp_path / "out2", cwd=tmp_path))
    assert outputs == {"big.mib": 150}
    rows = db_rows(tmp_path / "out2" / "sprocket.db", "SELECT a.status, u.requested_memory FROM attempts a JOIN "
                   "attempt_usage u ON u.key = a.key ORDER BY a.attempt")
    assert [(r["status"], r["requested_memory"]) for r in rows] == [("failed", 64 * 1024 ** 2), ("completed", 256 * 1024 ** 2)]
    assert not _left_behind(rd)


FAST_WDL = """
    version 1.2
    task t {
      input { Int n }
      command <<<
        if [ ~{n} = 0 ]; then sleep 1; exit 7; fi
        sleep 60
      >>>
      requirements { container: "%s" }
    }
    workflow w {
      scatter (n in [0, 1]) { call t { input: n = n } }
    }
""" % IMAGE


@pytest.mark.podman
def test_fail_fast_kills_the_running_containers_and_leaves_none_behind(tmp_path):
    doc = _project(tmp_path, FAST_WDL)
    write(tmp_path / "sprocket.toml", '[run]\nbackend = "box"\nfail = "fast"\n[run.backends.box]\ntype = "podman"\n')
    proc = sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path, timeout=50)
    assert proc.returncode == 1 and "exit code 7" in proc.stderr, proc.stderr
    rd = run_dir_of(proc)
    assert len(list(rd.glob("calls/*/attempts/0"))) == 2
    assert not _left_behind(rd)
    statuses = sorted(r["status"] for r in db_rows(tmp_path / "out" / "sprocket.db", "SELECT status FROM attempts"))
    assert statuses == ["canceled", "failed"]


WAIT_GO_WDL = """
    version 1.2
    task wait_go {
      input { Directory marks }
      command <<<
        echo started
        while [ ! -e ~{marks}/go ]; do sleep 0.1; done
        echo "done"
      >>>
      output { Array[String] said = read_lines(stdout()) }
      requirements { container: "%s" }
    }
""" % IMAGE


def _started(tmp_path, db, proc):
    """Wait until the run's container is recorded and running; its name."""
    def recorded():
        try:
            rows = db.exists() and db_rows(db, "SELECT job_id FROM attempts WHERE job_id IS NOT NULL")
        except sqlite3.OperationalError:  # the run is still making its tables
            return None
        return rows and rows[-1]["job_id"] in _containers() and rows[-1]["job_id"]

    wait_for(lambda: recorded() or proc.poll() is not None, 60, "the container to start")
    assert proc.poll() is None, proc.communicate()[1]
    return recorded()


def _end_waiting_runs(tmp_path, *procs):
    """The clean-up of a test of WAIT_GO_WDL (tmp_path/marks, -o tmp_path/out), whatever happened: its
    engines killed, the go file made (a task still waiting, or whose container is only starting, ends by
    itself), and every container of an attempt below out/ removed, also one whose name the test never
    learned (`_started` gave up before it ran)."""
    kill_running(*procs)
    if (tmp_path / "marks").is_dir():
        (tmp_path / "marks" / "go").write_text("")
    left = [S.container_name(str(a)) for a in (tmp_path / "out").glob("**/attempts/*")]
    if left:
        subprocess.run(["podman", "rm", "-f", "--ignore"] + left, capture_output=True)


@contextlib.contextmanager
def _waiting_run(tmp_path, **popen):
    """`sprocket run` of WAIT_GO_WDL in a subprocess (Popen's `popen` arguments), once its container
    runs: (the process, the container's name); after, the process is killed and the containers removed."""
    doc = _project(tmp_path, WAIT_GO_WDL)
    (tmp_path / "marks").mkdir()
    proc = subprocess.Popen(run_cmd(doc, "marks=%s" % (tmp_path / "marks"), "-o", tmp_path / "out"), cwd=str(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)
    try:
        yield proc, _started(tmp_path, tmp_path / "out" / "sprocket.db", proc)
    finally:
        _end_waiting_runs(tmp_path, proc)


@pytest.mark.podman
def test_sigterm_cancels_the_run_and_leaves_no_container(tmp_path):
    with _waiting_run(tmp_path) as (proc, name):
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "Traceback" not in err, err
        assert name not in _containers()


@pytest.mark.podman
def test_ctrl_c_waits_for_the_running_container_and_a_second_one_kills_it_leaving_none(tmp_path):
    """Ctrl-C reaches the engine's whole process group (not its attached `podman run`, in a session of its own,
    which would forward it into the container): the first one lets the running task go on, the second kills
    its container."""
    with _waiting_run(tmp_path, start_new_session=True) as (proc, name):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(1.5)
        assert proc.poll() is None and name in _containers(), "one Ctrl-C ended the running task"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "Traceback" not in err, err
        assert name not in _containers()


@pytest.mark.podman
def test_a_rerun_after_a_crash_adopts_the_live_container_by_its_name(tmp_path):
    doc = _project(tmp_path, WAIT_GO_WDL)
    marks = tmp_path / "marks"
    marks.mkdir()
    db = tmp_path / "out" / "sprocket.db"
    cmd = run_cmd(doc, "marks=%s" % marks, "-o", tmp_path / "out")
    first = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    rerun = None
    try:
        name = _started(tmp_path, db, first)
        first.kill()  # the engine dies; its container lives on
        first.communicate()
        assert name in _containers()
        rerun = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        wait_for(lambda: db_rows(db, "SELECT * FROM attempts WHERE adopted_from IS NOT NULL") or rerun.poll() is not None,
                 60, "the rerun to adopt the container")
        assert rerun.poll() is None, rerun.communicate()[1]
        (marks / "go").write_text("")
        out, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        assert json.loads(out) == {"wait_go.said": ["started", "done"]}
        assert not list(run_dir_of(subprocess.CompletedProcess([], 0, out, err)).glob("attempts/*")), "it ran again"
        adopted = db_rows(db, "SELECT * FROM attempts ORDER BY rowid")[-1]
        assert adopted["job_id"] is None and adopted["adopted_from"] is not None and adopted["status"] == "completed"
        assert adopted["image_digest"] == db_rows(db, "SELECT image_digest FROM attempts ORDER BY rowid")[0]["image_digest"]
        assert name not in _containers(), "the adopted container was not removed"
    finally:
        _end_waiting_runs(tmp_path, first, rerun)


# --------------------------------------------------------------------------------------------
# local apptainer, with the stand-in
# --------------------------------------------------------------------------------------------


def test_the_local_apptainer_backend_runs_apptainer_exec_on_this_host(tmp_path, shared):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(str(shared / "slurm" / "apptainer-double"), str(bin_dir / "apptainer"))
    doc = write(tmp_path / "main.wdl", """
        version 1.2
        task t {
          input { File f }
          env String GREETING = "hi"
          command <<<
            echo "$GREETING $(cat ~{f})"
            echo out > made.txt
            pwd
          >>>
          output { Array[String] said = read_lines(stdout()) File made = "made.txt" }
          requirements { container: "ubuntu:22.04" }
        }
    """)
    write(tmp_path / "sprocket.toml", '[run]\nbackend = "a"\n[run.backends.a]\ntype = "apptainer"\n')
    data = write(tmp_path / "in.txt", "data\n")
    log = tmp_path / "apptainer.log"
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]), APPTAINER_DOUBLE_LOG=str(log))
    outputs, rd = ok(sprocket_run(doc, "f=%s" % data, "-o", tmp_path / "out", cwd=tmp_path, env=env))
    assert outputs["t.said"] == ["hi data", "/mnt/task/work"]
    assert outputs["t.made"] == str(rd / "attempts" / "0" / "work" / "made.txt")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["cmd"] for c in calls] == ["pull", "exec"], calls
    assert (rd / "apptainer-images" / "docker" / "ubuntu" / "22.04.sif").is_file()
    (row,) = db_rows(tmp_path / "out" / "sprocket.db", "SELECT * FROM attempts")
    assert row["backend"] == "apptainer" and row["process_group"]
