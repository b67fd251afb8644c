"""Fault injection (issue 17, item 6): a hostile environment and bad input, driven as a user would
drive them (the real program in a subprocess, in a tmp dir), must give exit 1 and one clear
`error:` line, or succeed where the user's intent is clear; never a traceback or exit 70 (an
internal error). Where a run is involved, sprocket.db must not be left saying `running`.

Each case is a test of its own. Some need what only root has here (a small tmpfs for a full disk,
a read-only remount, another user through `setpriv`); they skip with the reason elsewhere.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import db_rows, http_server, sprocket_argv, write

TASK = """
version 1.1
task t {
  input { Float x = 1.0  Int n = 1  String s = ""  File? f }
  command <<< echo hi >>>
  output { String out = read_string(stdout()) Float y = x }
}
"""

FILL = """
version 1.1
task fill {
  input { Boolean ok = false }
  command <<<
    head -c 20000000 /dev/zero > big || ~{if ok then "true" else "false"}
  >>>
  output { Int n = 1 }
}
"""

ERROR_LINE = re.compile(r"^(\S+:\d+:\d+: )?error: ", re.M)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, isolated_config, monkeypatch):
    monkeypatch.chdir(tmp_path)


def sprocket(*args, shell_redirect=None, env=None, timeout=300, user=None):
    """`python3 sprocket.py ARGS` (through bash when a redirection such as `2>&-` is given, and
    through setpriv as `user`); returns the CompletedProcess (bytes are decoded leniently)."""
    argv = sprocket_argv(*[str(a) for a in args])
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        argv = ["setpriv", "--reuid=%d" % entry.pw_uid, "--regid=%d" % entry.pw_gid, "--clear-groups"] + argv
    if shell_redirect is not None:
        argv = ["bash", "-c", 'exec "$@" %s' % shell_redirect, "bash"] + argv
    r = subprocess.run(argv, capture_output=True, timeout=timeout, env=dict(os.environ, **(env or {})))
    r.stdout, r.stderr = (x.decode("utf-8", "replace") for x in (r.stdout, r.stderr))
    return r


def assert_clean_error(r, *fragments):
    """Exit 1, exactly one error line (naming every fragment), no traceback, no internal error."""
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-3000:]
    lines = [m.group(0) + r.stderr[m.end():].split("\n", 1)[0] for m in ERROR_LINE.finditer(r.stderr)]
    assert len(lines) == 1, r.stderr[-3000:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def run_rows(out):
    """(status, error, directory) of each run in OUT/sprocket.db."""
    rows = db_rows(Path(out) / "sprocket.db", "SELECT status, error, directory FROM runs ORDER BY id")
    return [(r["status"], r["error"], r["directory"]) for r in rows]


def need_root(what):
    if os.geteuid() != 0:
        pytest.skip("%s needs root here" % what)


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size[, inodes]) -> a fresh mount point of that size (and that many inodes); unmounted afterwards."""
    mounts = []

    def make(size="2m", inodes=None):
        need_root("mounting a small file system")
        mnt = tmp_path / ("fs%d" % len(mounts))
        mnt.mkdir()
        options = "size=%s,mode=0777" % size + (",nr_inodes=%d" % inodes if inodes else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.strip())
        mounts.append(mnt)
        return mnt

    yield make
    for mnt in reversed(mounts):
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def remount_read_only(mnt):
    r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot remount read-only: %s" % r.stderr.strip())


# --------------------------------------------------------------------------------------------
# the file system and the database
# --------------------------------------------------------------------------------------------


@pytest.fixture
def shared_dir(monkeypatch):
    """A directory every user can reach (tmp_path's parents are root's alone), as the cwd."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="sprocket-shared-", dir="/tmp"))
    os.chmod(path, 0o777)
    monkeypatch.chdir(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_db_owned_by_a_colleague_in_a_group_writable_output_dir(shared_dir):
    """Another user's sprocket.db in a shared (writable) -o: a clear error, and no run directory
    left behind without a record."""
    need_root("running as another user")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    write("t.wdl", TASK)
    out = shared_dir / "o"
    assert sprocket("run", "t.wdl", "-o", out).returncode == 0  # the colleague's run (root's)
    for p in [out] + list(out.rglob("*")):  # a shared directory: everything writable but the db
        if p.name not in ("sprocket.db",):
            os.chmod(p, 0o777 if p.is_dir() else 0o666)
    probe = sprocket("--version", user="nobody")
    if probe.returncode != 0:
        pytest.skip("user nobody cannot run %s here: %s" % (sys.executable, probe.stderr.strip()))
    before = sorted(os.listdir(out / "runs" / "t"))
    r = sprocket("run", "t.wdl", "-o", out, user="nobody")
    assert_clean_error(r, "sprocket.db", "readonly", "-o")
    assert sorted(os.listdir(out / "runs" / "t")) == before
    assert [row[0] for row in run_rows(out)] == ["completed"]


def test_disk_full_during_a_task_ends_the_run_failed(tmpfs):
    """The output file system fills up during a task: the run ends `failed`, with the task's
    failure as the reason (not "cannot rollback", not left `running`)."""
    out = tmpfs("2m") / "o"
    write("fill.wdl", FILL)
    r = sprocket("run", "fill.wdl", "-o", out)
    assert_clean_error(r, "task `fill` failed")
    (status, error, _), = run_rows(out)
    assert status == "failed" and "task `fill` failed" in error


def test_disk_full_when_the_outputs_are_written_is_rescued_by_the_reserve(tmpfs):
    """The task succeeds and leaves the disk full: sprocket.db's reserve gives up its room, so the
    rows keep their rollback journal (never a journal-less write that a kill would corrupt) and the
    run completes with a whole outputs.json; the trace, which does not fit, is only warned about."""
    out = tmpfs("2m") / "o"
    write("fill.wdl", FILL)
    r = sprocket("run", "fill.wdl", "-o", out, "fill.ok=true")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    (status, error, directory), = run_rows(out)
    assert status == "completed", error
    assert json.loads((out / directory / "outputs.json").read_text()) == {"fill.n": 1}
    assert not (out / "sprocket.db-reserve").exists()  # given up; the next run makes it again
    assert_clean_error(sprocket("run", "fill.wdl", "-o", out, "fill.ok=true"), "full")  # still full


def test_a_run_keeps_a_reserve_beside_sprocket_db(tmp_path):
    write("t.wdl", TASK)
    assert sprocket("run", "t.wdl", "-o", "o").returncode == 0
    assert (tmp_path / "o" / "sprocket.db-reserve").stat().st_size == 512 * 1024


def test_disk_full_before_the_run_starts(tmpfs):
    """A full file system before anything runs: one line, and no run directory."""
    mnt = tmpfs("1m")
    write("t.wdl", TASK)
    with open(mnt / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    r = sprocket("run", "t.wdl", "-o", mnt / "o")
    assert_clean_error(r, "full")
    assert not (mnt / "o" / "runs").exists()


@pytest.mark.parametrize("free", [1, 2, 3])
def test_a_run_directory_is_never_left_without_its_record_when_the_inodes_run_out(tmpfs, free):
    """The file system has room for `free` more files as the second run starts: it fails at one
    step or another of setting up its directory (tmp/, output.log, inputs.json), with one line,
    and each run directory has its row in sprocket.db, which says why the run failed."""
    mnt = tmpfs("8m", inodes=300)
    write("t.wdl", TASK)
    assert sprocket("run", "t.wdl", "-o", mnt / "o").returncode == 0
    fillers = []
    try:
        while True:
            fillers.append(mnt / ("f%d" % len(fillers)))
            fillers[-1].touch()
    except OSError:
        fillers.pop()
    for f in fillers[len(fillers) - free:]:
        f.unlink()
    r = sprocket("run", "t.wdl", "-o", mnt / "o")
    assert_clean_error(r, "No space left on device")
    rows = run_rows(mnt / "o")
    dirs = sorted(p.relative_to(mnt / "o").as_posix() for p in (mnt / "o" / "runs" / "t").iterdir() if p.name != "_latest")
    assert sorted(d for _, _, d in rows) == dirs
    (_, _), (status, error) = [row[:2] for row in rows]
    assert status == "failed" and "No space left on device" in error


def test_report_on_a_read_only_file_system(tmpfs):
    mnt = tmpfs("4m")
    write("t.wdl", TASK)
    assert sprocket("run", "t.wdl", "-o", mnt / "o").returncode == 0
    remount_read_only(mnt)
    r = sprocket("report", "-o", mnt / "o")
    assert_clean_error(r, "report.html", "Read-only file system")


def test_report_on_a_full_disk_leaves_the_old_report_and_no_temporary_file(tmpfs):
    mnt = tmpfs("4m")
    write("t.wdl", TASK)
    assert sprocket("run", "t.wdl", "-o", mnt / "o").returncode == 0
    (_, _, directory), = run_rows(mnt / "o")
    report = mnt / "o" / directory / "report.html"
    before = report.read_bytes()
    try:
        with open(mnt / "filler", "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
    except OSError:
        pass
    r = sprocket("report", "-o", mnt / "o")
    assert_clean_error(r, "report.html", "No space left on device")
    assert report.read_bytes() == before
    assert [p.name for p in report.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_format_overwrite_on_a_read_only_file_system(tmpfs):
    mnt = tmpfs("1m")
    path = write(mnt / "f.wdl", "version 1.1\ntask   t {\ncommand <<< echo >>>\n}\n", raw=True)
    remount_read_only(mnt)
    r = sprocket("format", "--overwrite", path)
    assert_clean_error(r, "cannot rewrite", "f.wdl", "Read-only file system")
    assert path.read_text() == "version 1.1\ntask   t {\ncommand <<< echo >>>\n}\n"


def test_report_of_a_run_whose_directory_was_deleted(tmp_path):
    write("t.wdl", TASK)
    assert sprocket("run", "t.wdl", "-o", "o").returncode == 0
    (_, _, directory), = run_rows("o")
    shutil.rmtree(Path("o") / directory)
    assert_clean_error(sprocket("report", "-o", "o"), "is gone", directory)


def test_output_log_that_is_a_directory(tmp_path):
    write("t.wdl", TASK)
    (tmp_path / "o" / "output.log").mkdir(parents=True)
    r = sprocket("run", "t.wdl", "-o", "o")
    assert_clean_error(r, "output.log", "Is a directory")
    assert not (tmp_path / "o" / "runs").exists()  # no run directory without a record


def test_a_backend_that_refuses_to_start_leaves_no_run_directory(tmp_path):
    """The Slurm backend on a host without sbatch: one line naming the fix, and no run directory."""
    write("t.wdl", TASK)
    write("c.toml", 'run.experimental_features_enabled = true\n[run.backends.default]\ntype = "slurm_apptainer"\n')
    (tmp_path / "empty-path").mkdir()
    r = sprocket("run", "t.wdl", "-o", "o", "-s", "-c", "c.toml", env={"PATH": str(tmp_path / "empty-path")})
    assert_clean_error(r, "`sbatch` was not found on PATH")
    assert not (tmp_path / "o" / "runs").exists()
    assert not (tmp_path / "o" / "_latest").exists()


# --------------------------------------------------------------------------------------------
# standard streams and the terminal
# --------------------------------------------------------------------------------------------


def test_run_with_stdout_on_dev_full(tmp_path):
    """`run > /dev/full`: the run completed; the outputs could not be shown, and the message says
    where they are."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    write("t.wdl", TASK)
    r = sprocket("run", "t.wdl", "-o", "o", shell_redirect="> /dev/full")
    assert_clean_error(r, "outputs could not be written to stdout", "outputs.json")
    (status, _, directory), = run_rows("o")
    assert status == "completed"
    assert json.loads((Path("o") / directory / "outputs.json").read_text())["t.out"] == "hi"


def test_run_with_stderr_closed(tmp_path):
    """`run 2>&-` (cron, daemons): the run finishes properly and prints its outputs."""
    write("t.wdl", TASK)
    r = sprocket("run", "t.wdl", "-o", "o", shell_redirect="2>&-")
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["t.out"] == "hi"
    assert [row[0] for row in run_rows("o")] == ["completed"]


def test_run_with_stdout_closed(tmp_path):
    """`run >&-`: nothing can be shown, as with >/dev/null; the run completes, outputs.json holds them."""
    write("t.wdl", TASK)
    r = sprocket("run", "t.wdl", "-o", "o", shell_redirect=">&-")
    assert r.returncode == 0, r.stderr
    (status, _, directory), = run_rows("o")
    assert status == "completed" and (Path("o") / directory / "outputs.json").is_file()


def test_sighup_keeps_writing_the_outputs_to_a_file(tmp_path):
    """`sprocket run x.wdl > result.json` in an SSH session that drops: the outputs still reach
    result.json (only a terminal that went away is dropped)."""
    write("slow.wdl", """
        version 1.1
        task slow {
          command <<< touch started; sleep 2; echo done >>>
          output { String s = read_string(stdout()) }
        }
    """)
    with open("result.json", "wb") as out, open("err.txt", "wb") as err:
        proc = subprocess.Popen(sprocket_argv("run", "slow.wdl", "-o", "o"), stdout=out,
                                stderr=err, start_new_session=True)
        deadline = time.time() + 60
        while not list(Path("o").glob("runs/slow/*/attempts/0/work/started")) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=120) == 0, Path("err.txt").read_text()
    assert json.loads(Path("result.json").read_text()) == {"slow.s": "done"}
    assert "SIGHUP" in Path("err.txt").read_text()  # stderr is a file too: it keeps its lines


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_nul_byte_in_a_command(tmp_path):
    write("nul.wdl", "version 1.1\ntask t {\n  command <<< echo a\0b >>>\n}\n", raw=True)
    line = assert_clean_error(sprocket("check", "nul.wdl"), "NUL byte")
    assert line.startswith("nul.wdl:3:21: ")


def deep_json(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [990, 100000])
def test_inputs_json_nested_deeply(tmp_path, depth):
    write("t.wdl", TASK)
    Path("in.json").write_text('{"t.x": %s}' % deep_json(depth))
    assert_clean_error(sprocket("run", "t.wdl", "-o", "o", "in.json"), "nested too deeply" if depth > 1000 else "`x`")


def test_inputs_key_value_nested_deeply(tmp_path):
    write("t.wdl", TASK)
    assert_clean_error(sprocket("run", "t.wdl", "-o", "o", "t.x=" + deep_json(20000)), "nested too deeply")


@pytest.mark.parametrize("depth", [990, 100000])
def test_read_json_nested_deeply(tmp_path, depth):
    Path("deep.json").write_text(deep_json(depth))
    write("rj.wdl", """
        version 1.1
        workflow w {
          input { File j }
          output { Int n = length(read_json(j)) }
        }
    """)
    r = sprocket("run", "rj.wdl", "-o", "o", "w.j=deep.json")
    if depth < 1000:  # deep but within reach: it is read
        assert r.returncode == 0 and json.loads(r.stdout) == {"w.n": 1}, r.stderr
    else:
        assert_clean_error(r, "read_json", "nested too deeply")
        assert [row[0] for row in run_rows("o")] == ["failed"]


@pytest.mark.parametrize("depth", [990, 100000])
def test_toml_nested_deeply(tmp_path, depth):
    Path("deep.toml").write_text("[run]\noutput_dir = %s\n" % deep_json(depth))
    r = sprocket("config", "resolve", "-s", "-c", "deep.toml")
    assert_clean_error(r, "deep.toml", "nested too deeply" if depth > 1000 else "must be a string")


def test_format_of_5000_nested_ifs(tmp_path):
    text = "version 1.1\nworkflow w {\n" + "if (true) {\n" * 5000 + "}\n" * 5000 + "}\n"
    write("deep.wdl", text, raw=True)
    for command in ("format", "check"):
        assert_clean_error(sprocket(command, "deep.wdl"), "deep.wdl:123:11: ", "nested too deeply")  # the 121st `{`


def test_lone_surrogate_in_inputs_json(tmp_path):
    write("t.wdl", TASK)
    Path("in.json").write_text('{"t.s": "a\\ud800"}')
    assert_clean_error(sprocket("run", "t.wdl", "-o", "o", "in.json"), "input `s`", "not text", "\\ud800")
    assert not Path("o").exists()


def test_non_utf8_file_name_given_as_key_value(tmp_path):
    write("t.wdl", TASK)
    name = b"a\xff.txt"
    try:
        with open(os.path.join(os.fsencode(tmp_path), name), "w") as f:
            f.write("x")
    except OSError as e:
        pytest.skip("this file system refuses a non-UTF-8 name: %s" % e)
    argv = sprocket_argv("run", "t.wdl", "-o", "o", b"t.f=" + name)
    r = subprocess.run(argv, capture_output=True, timeout=120)
    r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode("utf-8", "replace")
    assert_clean_error(r, "input `f`", "not text")


def test_nul_in_an_env_value(tmp_path):
    write("env.wdl", """
        version 1.2
        task t {
          input { env String e = "a" }
          command <<< echo "$e" >>>
          output { String o = read_string(stdout()) }
        }
    """)
    Path("in.json").write_text('{"t.e": "a\\u0000b"}')
    r = sprocket("run", "env.wdl", "-o", "o", "in.json")
    assert_clean_error(r, "`env e`", "NUL byte")
    assert [row[0] for row in run_rows("o")] == ["failed"]


def test_nul_in_a_toml_string(tmp_path):
    write("t.wdl", TASK)
    Path("nul.toml").write_text('[run]\noutput_dir = "a\\u0000b"\n')
    assert_clean_error(sprocket("run", "t.wdl", "-s", "-c", "nul.toml"), "run.output_dir", "NUL byte")


@pytest.fixture
def http_root(tmp_path):
    """A web server on 127.0.0.1 serving tmp_path/www: yields (root dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    with http_server(root) as (base, _paths):
        yield root, base


def test_url_input_naming_the_parent_directory(tmp_path, http_root):
    """`t.f=http://host/..` names no file: it is downloaded as `index`, not renamed onto a directory."""
    _, base = http_root
    write("t.wdl", TASK)
    r = sprocket("run", "t.wdl", "-o", "o", "t.f=%s/.." % base)
    assert r.returncode == 0, r.stderr
    (_, _, directory), = run_rows("o")
    assert list((Path("o") / directory / "inputs").glob("*/index"))


def test_unwritable_cache_dir_during_an_http_import(tmp_path, http_root):
    root, base = http_root
    write(root / "lib.wdl", TASK)
    write("imp.wdl", 'version 1.1\nimport "%s/lib.wdl" as lib\nworkflow w { call lib.t }\n' % base, raw=True)
    Path("a-file").write_text("")
    r = sprocket("check", "imp.wdl", env={"SPROCKET_CACHE_DIR": str(tmp_path / "a-file" / "cache")})
    assert_clean_error(r, "imp.wdl:2:1: ", "cannot save the download", "Not a directory")


def test_flat_sum_of_400_terms_evaluates(tmp_path):
    write("sum.wdl", "version 1.1\nworkflow w {\n  Int x = %s\n  output { Int y = x }\n}\n" % " + ".join(["1"] * 400),
          raw=True)
    r = sprocket("run", "sum.wdl", "-o", "o")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == {"w.y": 400}


# --------------------------------------------------------------------------------------------
# values that would break the JSON we write
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["NaN", "1e400", "-Infinity"])
def test_non_finite_float_input_is_refused(tmp_path, value):
    """Sprocket's JSON reader refuses NaN and Infinity (and 1e400 is out of range): so do we, on
    the command line and in an inputs file, before any run directory exists."""
    write("t.wdl", TASK)
    assert_clean_error(sprocket("run", "t.wdl", "-o", "o", "t.x=" + value), "input `x`", "finite")
    Path("in.json").write_text('{"t.x": %s}' % value)
    assert_clean_error(sprocket("run", "t.wdl", "-o", "o", "in.json"), "input `x`", "finite")
    assert not Path("o").exists()


def test_computed_non_finite_float_is_an_error_not_bare_json(tmp_path):
    write("inf.wdl", """
        version 1.1
        workflow w {
          Float a = 1e308 * 10.0
          output { Float x = a }
        }
    """)
    r = sprocket("run", "inf.wdl", "-o", "o")
    assert_clean_error(r, "inf.wdl:3:", "Float overflow")
    assert "Infinity" not in r.stdout


def test_int_of_32_digits_is_refused(tmp_path):
    write("t.wdl", TASK)
    big = "12345678901234567890123456789012"
    assert_clean_error(sprocket("run", "t.wdl", "-o", "o", "t.n=" + big), "input `n`", "64 bits")
    Path("in.json").write_text('{"t.n": %s}' % big)
    assert_clean_error(sprocket("run", "t.wdl", "-o", "o", "in.json"), "input `n`", "64 bits")
    r = sprocket("run", "t.wdl", "-o", "o", "t.n=%d" % (2 ** 63 - 1))  # the largest Int is fine
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_memory_retry_multiplier_not_finite_fails_validation(tmp_path, value):
    Path("m.toml").write_text("[run.task]\nmemory_retry_multiplier = %s\n" % value)
    assert_clean_error(sprocket("config", "resolve", "-s", "-c", "m.toml"), "memory_retry_multiplier", value)


# --------------------------------------------------------------------------------------------
# resources
# --------------------------------------------------------------------------------------------


def test_50mb_one_line_syntax_error_shows_a_window_of_the_line(tmp_path):
    """The diagnostic of a 50 MB line shows a window around the caret, not the line (twice)."""
    with open("big.wdl", "w") as f:
        f.write('version 1.1\nworkflow w { String s = "' + "x" * 50000000 + '" Int = 1 }\n')
    r = sprocket("check", "big.wdl")
    assert_clean_error(r, "big.wdl:2:", "expected a declaration name")
    assert len(r.stderr) < 1000
    source, caret = r.stderr.split("\n")[1:3]
    assert source[caret.index("^"):].startswith("= 1 }")


@pytest.mark.parametrize("number, message", [("1e400", "out of range for a Float"),
                                             ("123456789012345678901234567890", "does not fit in an Int")])
def test_read_json_of_a_number_no_wdl_value_can_hold(tmp_path, number, message):
    """read_json refuses what would come out as bare `Infinity` (or a 97-bit Int) in outputs.json."""
    Path("n.json").write_text('{"a": %s}' % number)
    write("obj.wdl", """
        version 1.1
        workflow w {
          input { File j }
          output { Object o = read_json(j) }
        }
    """)
    r = sprocket("run", "obj.wdl", "-o", "o", "w.j=n.json")
    assert_clean_error(r, "obj.wdl:4:", "read_json", message)
    assert [row[0] for row in run_rows("o")] == ["failed"]
