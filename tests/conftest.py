"""Shared fixtures and helpers for the sprocket.py test suite.

Conventions used by the front-end tests (`sprocket check`):

* A diagnostic is ``path:LINE:COL: error: MESSAGE`` (or ``warning:``), followed by the source
  line and a line holding a ``^`` caret.  LINE and COL are 1-based; COL points at the first
  character of the offending construct.  Where more than one anchor is reasonable (the operator
  or the start of the binary expression, say) a test accepts any of them.
* ``check`` exits 0 when every document and all of its imports are valid, 1 otherwise.  Any
  other exit code, any Python traceback and any "internal error" is an engine bug.

Fixtures:

* ``repo``          -- Path of the repository root.
* ``shared``        -- Path of ../shared (or $SPROCKET_SHARED); skips the test when absent.
* ``run_check``     -- ``run_check(*paths, timeout=120)`` runs ``sprocket.py check`` in a
                       subprocess and returns a ``subprocess.CompletedProcess`` (text mode).
* ``check``         -- ``check(*paths)`` runs ``check`` in-process (``sprocket.main``) and returns
                       a ``CheckResult`` with the same ``returncode``/``stdout``/``stderr``
                       attributes; set SPROCKET_TEST_SUBPROCESS=1 to run it in a subprocess.
* ``wdl``           -- ``wdl(source, name="main.wdl")`` writes a WDL document (dedented, leading
                       newline removed) into the test's tmp dir and returns its Path.
* ``check_wdl``     -- ``check_wdl(source, name="main.wdl", files={...})`` writes the document
                       (plus extra files, e.g. imports) and checks it.

* ``podman``        -- the name of the test image (``localhost/debian:bookworm``, also tagged ``ubuntu:latest``,
                       ``ubuntu:focal``, ``python:latest``... by .ci/container-image) for tests that run real
                       containers; a test marked ``@pytest.mark.podman`` gets it too. Skips with the reason where
                       podman or the image is absent; under CI=true that is a failure (.ci/run builds the image).

* ``isolated_config`` -- no user configuration or call cache leaks into a test run (the
                       sprocket.toml next to sprocket.py still applies); a module that runs
                       sprocket says ``pytestmark = pytest.mark.usefixtures("isolated_config")``.

Helpers (import from conftest): ``assert_diag``, ``assert_ok``, ``assert_sane``,
``find_pos``, ``norm``, ``diagnostics``, ``version_re``; for `sprocket run` and other
subcommands: ``sprocket_argv`` (the argv every test starts sprocket.py with), ``sprocket_cmd``,
``sprocket_run``, ``run_cmd``, ``write``, ``run_dir_of``, ``ok``,
``fails``, ``exit_status_re``; for what a run leaves behind: ``db_rows`` (rows of a
sprocket.db), ``wait_for`` (poll with a deadline), ``proc_stat``, ``pid_alive``; ``podman_problem`` (why no real
container can run here, or None); and
``http_server`` (a static web server in a thread).
"""

import atexit
import contextlib
import functools
import http.server
import io
import json
import os
import py_compile
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPROCKET = REPO / "sprocket.py"
START = Path(__file__).resolve().parent / "start_sprocket.py"

DIAG_RE = re.compile(r"^(.+):(\d+):(\d+): (error|warning): (.+)$")
CARET_RE = re.compile(r"\^")


def shared_dir():
    """The shared/ reference directory, or None when it is not there."""
    env = os.environ.get("SPROCKET_SHARED")
    path = Path(env) if env else REPO.parent / "shared"
    return path if path.is_dir() else None


def run_conformance(tmp_path, engine, cases=(), timeout=1800):
    """The results (one dict a case: id, status, reason) of ../shared/conformance/run.py with
    `engine` (a command line) on `cases` (all when empty); skips when the corpus is not here."""
    shared = shared_dir()
    if shared is None or not (shared / "conformance" / "run.py").is_file():
        pytest.skip("../shared/conformance is not here (it ships with the project's reference material, not the repo)")
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(shared / "conformance" / "run.py"), "--engine", engine, "-j", "2",
                           "--timeout", "120", "--json", str(report)] + list(cases),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout)
    assert report.is_file(), proc.stdout[-3000:]
    return json.loads(report.read_text())["results"]


def norm(source):
    """Dedent a WDL source written inside a test and drop one leading newline.

    ``wdl``/``check_wdl`` write exactly this text, so ``find_pos(norm(src), ...)`` gives the
    positions the engine must report.
    """
    text = textwrap.dedent(source)
    if text.startswith("\n"):
        text = text[1:]
    return text


def find_pos(text, needle, nth=0):
    """(line, col), both 1-based, of the nth occurrence of ``needle`` in ``text``.

    A ``^`` inside the needle marks the exact character wanted (WDL never uses ``^``):
    ``find_pos(text, "Int x = ^y")`` is the position of ``y``.
    """
    offset = 0
    if "^" in needle:
        offset = needle.index("^")
        needle = needle.replace("^", "", 1)
    idx = -1
    for _ in range(nth + 1):
        idx = text.find(needle, idx + 1)
        if idx < 0:
            raise AssertionError("test bug: %r (occurrence %d) not in source" % (needle, nth))
    idx += offset
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


def version_re(version):
    """Regex matching a message that names WDL ``version`` (e.g. "WDL 1.2" or "version 1.2")."""
    return re.compile(r"(?i)(wdl|version)\s*`?v?%s\b" % re.escape(version))


class CheckResult:
    """The outcome of one `check` run; the same attributes as subprocess.CompletedProcess."""

    def __init__(self, returncode, stdout, stderr, args=None):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.args = args

    def __repr__(self):
        return "CheckResult(rc=%r, stderr=%r)" % (self.returncode, self.stderr[-2000:])


def _import_sprocket():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import sprocket  # noqa: E402  (the module under test)

    return sprocket


def subclasses(cls):
    """`cls` and every class below it (all of the module's syntax tree nodes, or types)."""
    out, todo = [], [cls]
    while todo:
        c = todo.pop()
        todo.extend(c.__subclasses__())
        out.append(c)
    return out


def check_in_process(*paths):
    """Run ``sprocket.main(["check", *paths])`` in this process, capturing its output."""
    sprocket = _import_sprocket()
    out, err = io.StringIO(), io.StringIO()
    exc = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = sprocket.main(["check"] + [str(p) for p in paths])
        except SystemExit as e:  # main() should return, but be precise about what happened
            rc = e.code if isinstance(e.code, int) else 1
            exc = "main() raised SystemExit(%r) instead of returning" % (e.code,)
    if exc:
        raise AssertionError(exc + "\nstderr:\n" + err.getvalue())
    return CheckResult(rc, out.getvalue(), err.getvalue(), ["check"] + [str(p) for p in paths])


def sprocket_argv(*args, prog=SPROCKET, script=False):
    """The argv (for subprocess.run/Popen) of ``python3 PROG ARGS...``; PROG is sprocket.py or a copy of it.

    Every test starts sprocket.py through this. Python compiles a script on every start (0.1 s of CPU
    for sprocket.py, most of what a quick test that runs it costs), so this starts tests/start_sprocket.py,
    which runs PROG as Python runs a script, from bytecode compiled once per session. ``script=True``
    (the README's example) or SPROCKET_TEST_SCRIPT=1 (every test) starts ``python3 PROG`` itself, as
    test_cli.py's tests of --version, install and the zipapp always do.
    """
    if script or os.environ.get("SPROCKET_TEST_SCRIPT"):
        return [sys.executable, str(prog)] + list(args)
    return [sys.executable, str(START), str(prog), _session_pyc()] + list(args)


@functools.lru_cache(maxsize=None)
def _session_pyc():
    """sprocket.py compiled into a hash-checked .pyc in a temporary directory, once per session (a
    test that changes sprocket.py or a copy gets that file compiled by start_sprocket.py)."""
    directory = tempfile.mkdtemp(prefix="sprocket-test-pyc-")
    os.chmod(directory, 0o755)  # tests that run sprocket as another user read it too
    atexit.register(shutil.rmtree, directory, True)
    pyc = os.path.join(directory, "sprocket.pyc")
    try:
        py_compile.compile(str(SPROCKET), pyc, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except py_compile.PyCompileError:
        pass  # no .pyc: each start compiles sprocket.py, and reports its syntax error as the script does
    return pyc


def run_check_subprocess(*paths, timeout=120, cwd=None):
    cmd = sprocket_argv("check", *[str(p) for p in paths])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or str(REPO), stdin=subprocess.DEVNULL)


def diagnostics(output, severity="error"):
    """All diagnostics of one severity: a list of (path, line, col, message, index-of-line)."""
    lines = output.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = DIAG_RE.match(line)
        if m and m.group(4) == severity:
            found.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(5), i))
    return found


def assert_sane(proc):
    """No traceback, no internal error, and an exit code of 0 or 1."""
    text = (proc.stderr or "") + (proc.stdout or "")
    assert "Traceback" not in text, "Python traceback in output:\n" + text
    assert "internal error" not in text.lower(), "engine reported an internal error:\n" + text
    assert proc.returncode in (0, 1), "exit code %r (expected 0 or 1)\n%s" % (proc.returncode, text)


def assert_ok(proc):
    """`check` accepted the document: exit 0, no error diagnostics."""
    assert_sane(proc)
    assert proc.returncode == 0, "expected the document to check clean, got:\n" + proc.stderr
    assert not diagnostics(proc.stderr), "exit 0 but errors printed:\n" + proc.stderr


def _matches(fragment, message):
    if fragment is None:
        return True
    if isinstance(fragment, re.Pattern):
        return bool(fragment.search(message))
    if isinstance(fragment, (tuple, list, set, frozenset)):  # any of the alternatives
        return any(_matches(f, message) for f in fragment)
    return fragment.lower() in message.lower()


def assert_diag(proc, line, col, fragment=None, path=None, also=()):
    """Assert `check` failed with an error at LINE:COL whose message contains ``fragment``.

    * ``line``: an int, a collection of acceptable ints, or None (any line).
    * ``col``: an int, a collection of acceptable ints, or None (any column).
    * ``fragment``: a case-insensitive substring, a compiled regex, a tuple of alternatives
      (any one must match), or None.
    * ``also``: further fragments that must all match the same message.
    * ``path``: when given, the diagnostic's path must end with this file name.
    The diagnostic line must be followed (within 3 lines) by a line holding a ``^`` caret.
    """
    assert_sane(proc)
    err = proc.stderr
    assert proc.returncode == 1, "expected exit 1, got %r:\n%s" % (proc.returncode, err)
    diags = diagnostics(err)
    assert diags, "exit 1 but no `path:LINE:COL: error: ...` line in stderr:\n" + err
    lines_ok = None if line is None else ({line} if isinstance(line, int) else set(line))
    cols_ok = None if col is None else ({col} if isinstance(col, int) else set(col))
    lines = err.splitlines()
    for dpath, dline, dcol, msg, idx in diags:
        if (lines_ok is not None and dline not in lines_ok) or (cols_ok is not None and dcol not in cols_ok):
            continue
        if path is not None and not dpath.endswith(str(path)):
            continue
        if not _matches(fragment, msg) or not all(_matches(f, msg) for f in also):
            continue
        follow = lines[idx + 1: idx + 4]
        assert any(CARET_RE.search(x) for x in follow), (
            "diagnostic not followed by a source line and a caret:\n" + "\n".join(lines[idx: idx + 4]))
        return dpath, dline, dcol, msg
    want = "line %s col %s fragment %r%s" % ("any" if lines_ok is None else sorted(lines_ok),
                                              "any" if cols_ok is None else sorted(cols_ok),
                                              fragment, " also %r" % (also,) if also else "")
    raise AssertionError("no diagnostic matching %s; got:\n%s" % (want, err))


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def shared():
    path = shared_dir()
    if path is None:
        pytest.skip("shared/ reference directory not found (expected ../shared next to the repo, "
                    "or set SPROCKET_SHARED)")
    return path


PODMAN_IMAGE = "localhost/debian:bookworm"


@functools.lru_cache(maxsize=None)
def podman_problem(image=PODMAN_IMAGE):
    """Why a real container cannot run here (None when one can): podman on PATH, the image present,
    and one `podman run` of it that works (a runtime that fails on setrlimit is caught here)."""
    exe = shutil.which("podman")
    if exe is None:
        return "`podman` is not on PATH"
    try:
        have = subprocess.run([exe, "image", "exists", image], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60)
        if have.returncode != 0:
            return "the image %s is not in podman's storage" % image
        probe = subprocess.run([exe, "run", "--rm", image, "true"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        return "`%s` did not answer within %d s" % (" ".join(exc.cmd), exc.timeout)
    if probe.returncode != 0:
        return "`podman run --rm %s true` failed (exit %d): %s" % (image, probe.returncode,
                                                                  probe.stdout.strip()[-300:])
    return None


@pytest.fixture(scope="session")
def podman():
    problem = podman_problem()
    if problem is not None:
        why = "real containers need podman and the test image: %s (build it as root with `bash .ci/container-image`)" \
            % problem
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and " + why, pytrace=False)
        pytest.skip(why)
    return PODMAN_IMAGE


def pytest_collection_modifyitems(config, items):
    # `@pytest.mark.podman` is the same as asking for the `podman` fixture: skip or fail alike.
    for item in items:
        if item.get_closest_marker("podman") is not None and "podman" not in item.fixturenames:
            item.fixturenames.append("podman")


@pytest.fixture
def run_check():
    return run_check_subprocess


@pytest.fixture
def check():
    if os.environ.get("SPROCKET_TEST_SUBPROCESS"):
        return run_check_subprocess
    return check_in_process


@pytest.fixture
def wdl(tmp_path):
    def write(source, name="main.wdl", raw=False):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source if raw else norm(source), encoding="utf-8")
        return path

    return write


@pytest.fixture
def check_wdl(wdl, check):
    """Write ``source`` (plus ``files``: name -> source) and check it; returns a CheckResult."""

    def run(source, name="main.wdl", files=None, args=()):
        for fname, fsrc in (files or {}).items():
            wdl(fsrc, fname)
        return check(*(tuple(args) + (wdl(source, name),)))

    return run


# --------------------------------------------------------------------------------------------
# `sprocket run` helpers (test_engine.py, test_run_cli.py)
# --------------------------------------------------------------------------------------------

RUN_DIR_RE = re.compile(r"^run directory: (.+)$", re.M)


@pytest.fixture
def isolated_config(tmp_path_factory, monkeypatch):
    """No user configuration (~/.config/sprocket, $SPROCKET_CONFIG) or cache leaks into a test run;
    the sprocket.toml next to sprocket.py still applies, as it does for every user."""
    monkeypatch.setenv("SPROCKET_CONFIG_ROOT", str(tmp_path_factory.mktemp("config-root")))
    monkeypatch.delenv("SPROCKET_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache-home")))


def run_cmd(*args):
    """The argv of ``sprocket.py run ARGS...`` (for Popen)."""
    return sprocket_argv("run", *[str(a) for a in args])


def sprocket_cmd(*args, cwd, timeout=120, env=None, script=False):
    """``sprocket.py ARGS...`` in ``cwd``; a CompletedProcess (text). ``script``: see sprocket_argv."""
    cmd = sprocket_argv(*[str(a) for a in args], script=script)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(cwd), timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


def sprocket_run(*args, cwd, timeout=120, env=None, script=False):
    """``sprocket.py run ARGS...`` in ``cwd``; a CompletedProcess (text). ``script``: see sprocket_argv."""
    return sprocket_cmd("run", *args, cwd=cwd, timeout=timeout, env=env, script=script)


def write(path, text, raw=False):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if raw else norm(text), encoding="utf-8")
    return path


def run_dir_of(proc):
    m = RUN_DIR_RE.search(proc.stderr)
    assert m, "no `run directory: PATH` line on stderr:\n" + proc.stderr
    return Path(m.group(1).strip())


def ok(proc):
    """Assert the run succeeded; return (outputs, run directory)."""
    assert_sane(proc)
    assert proc.returncode == 0, "run failed (exit %r):\n%s" % (proc.returncode, proc.stderr)
    try:
        outputs = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("stdout is not JSON:\n" + proc.stdout)
    rd = run_dir_of(proc)
    assert rd.is_dir(), rd
    assert json.loads((rd / "outputs.json").read_text()) == outputs
    return outputs, rd


def exit_status_re(code):
    """The brief's "process exited with status N" or Sprocket's "terminated with exit code N"."""
    return re.compile(r"(exited with status|terminated with exit code) %d\b" % code)


def fails(proc, *fragments):
    """Assert the run failed cleanly (exit 1, no traceback, nothing on stdout) with each fragment."""
    assert_sane(proc)
    assert proc.returncode == 1, "expected exit 1, got %r\nstdout:\n%s\nstderr:\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.strip() == "", "a failed run printed outputs:\n" + proc.stdout
    for f in fragments:
        if isinstance(f, re.Pattern):
            assert f.search(proc.stderr), "%r not in stderr:\n%s" % (f.pattern, proc.stderr)
        else:
            assert str(f).lower() in proc.stderr.lower(), "%r not in stderr:\n%s" % (f, proc.stderr)
    return proc.stderr


# --------------------------------------------------------------------------------------------
# what a run leaves behind: its database, its processes; a web server for URL inputs/imports
# --------------------------------------------------------------------------------------------


def db_rows(db_path, sql, args=()):
    """Rows of ``sql`` on a run's sprocket.db as dicts, read with a fresh read-only connection."""
    con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=30)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, args).fetchall()]
    finally:
        con.close()


def wait_for(predicate, timeout, what, interval=0.05):
    """Poll ``predicate`` until it returns something true (which is returned); after ``timeout``
    seconds fail the test with "timed out ... waiting for WHAT"."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))


def kill_running(*procs):
    """Kill and reap those of `procs` (Popens; None: never started) that still run: a test's clean-up."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            p.communicate()


def proc_stat(pid):
    """(state, pgrp) of a process from /proc/PID/stat, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return fields[0], int(fields[2])


def pid_alive(pid):
    """The process exists and is not a zombie (the container's init may be slow to reap orphans)."""
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.paths.append(self.path)
        return super().do_GET()


@contextlib.contextmanager
def http_server(root):
    """Serve ``root`` on 127.0.0.1 (port 0) in a thread; yields (base URL, list of paths asked)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(root)))
    server.paths = []
    # shutdown() waits for the serving loop to look: every 0.5 s by default, half a second a test
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1], server.paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
