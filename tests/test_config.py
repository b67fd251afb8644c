"""sprocket.toml: the search order, merging, validation, settings honoured by `run`, and the
TOML reader sprocket.py falls back on when Python has no tomllib (3.9 and 3.10).

What is promised (shared/reference/sprocket-behaviour.md section 2, the Slurm guide in
shared/seed/, and sprocket.py section 16, Configuration):

* Files are read in this order, later wins: ``sprocket.toml`` next to the program; the user
  config directory (``$SPROCKET_CONFIG_ROOT/sprocket.toml``, else
  ``$XDG_CONFIG_HOME/sprocket/sprocket.toml``, else ``~/.config/sprocket/sprocket.toml``);
  ``./sprocket.toml``; ``$SPROCKET_CONFIG``; each ``-c/--config`` in order.
  ``-s/--skip-config-search`` keeps only the ``--config`` files.  A missing ``--config`` file is
  an error; a ``$SPROCKET_CONFIG`` that names nothing is only a warning.
* Tables merge recursively, arrays append, other values replace.
* Unknown keys and bad values are an error (exit 1) naming the file, the key and what is allowed;
  never a traceback.
* ``sprocket config resolve`` prints ``# configuration files, in merge order: ...`` and then one
  line per setting, ``key = value  # <source file(s)>`` or ``key = value  # default``.

Every test drives a *copy* of sprocket.py placed in its own tmp ``bin/`` directory (so the
repository's own sprocket.toml, which sits next to the real sprocket.py, is not read unless a
test asks for it), with ``HOME`` pointing into the tmp dir and ``SPROCKET_CONFIG``,
``SPROCKET_CONFIG_ROOT``, ``XDG_CONFIG_HOME`` removed from the environment.

Every TOML document this file writes is also fed to ``sprocket.TomlReader`` and compared with
``tomllib`` (Python 3.11+): the documents are registered at import time in ``TOML_DOCS`` (and
checked by a parametrized test) and again when a test writes them.
"""

import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, RUN_DIR_RE, SPROCKET, _import_sprocket, assert_sane, fails, norm, run_dir_of, write

sprocket = _import_sprocket()

try:
    import tomllib  # novermin
except ImportError:  # Python < 3.11
    tomllib = None

needs_tomllib = pytest.mark.skipif(
    tomllib is None, reason="tomllib is not available (Python < 3.11): nothing to compare TomlReader with")

HELLO = REPO / "examples" / "hello.wdl"
RESOLVE_RE = re.compile(r"^(\S+) = (.*?)  # (.*)$")
HEADER = "# configuration files, in merge order: "
# Stands for a directory in a registered document; the tests substitute their tmp dir.
DIR = "@DIR@"
EXAMPLE_DIR = "/tmp/some dir"

# Environment variables that would let the real user's configuration leak into a test.
CONFIG_ENV = ("SPROCKET_CONFIG", "SPROCKET_CONFIG_ROOT", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")

# Boots sprocket.py as if `import tomllib` failed, so it parses TOML with its own TomlReader
# (what Python 3.9 and 3.10 do).  argv: -c BOOT PROGRAM ARGS...
NO_TOMLLIB_BOOT = ("import sys, runpy; sys.modules['tomllib'] = None; sys.argv = sys.argv[1:]; "
                   "runpy.run_path(sys.argv[0], run_name='__main__')")


# --------------------------------------------------------------------------------------------
# the registry of TOML documents, and comparing TomlReader with tomllib
# --------------------------------------------------------------------------------------------

TOML_DOCS = []  # (name, text): every document this file writes (DIR stands for a directory)


def toml_doc(name, text):
    """Register a TOML document (dedented like a WDL source) and return its text."""
    text = norm(text)
    TOML_DOCS.append((name, text))
    return text


def _canon(v):
    """A comparable form of a TOML value: types are exact (1, 1.0 and true differ), nan equals
    nan (sign kept), -0.0 differs from 0.0, date-times compare their fields and UTC offset."""
    if isinstance(v, dict):
        return ("table", sorted((k, _canon(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("array", [_canon(x) for x in v])
    if isinstance(v, float):
        if math.isnan(v):
            return ("float", "nan", math.copysign(1.0, v))
        return ("float", repr(v))
    if isinstance(v, datetime.datetime):
        return ("datetime", v.replace(tzinfo=None).isoformat(), v.utcoffset())
    if isinstance(v, (datetime.date, datetime.time)):
        return (type(v).__name__, v.isoformat(), getattr(v, "utcoffset", lambda: None)())
    return (type(v).__name__, v)


def reader(text, path="test.toml"):
    return sprocket.TomlReader(text, path).document()


def assert_reader_matches_tomllib(text, path="test.toml"):
    """TomlReader accepts what tomllib accepts (with the same result) and raises ConfigError
    (never anything else) where tomllib raises TOMLDecodeError."""
    try:
        expected = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        with pytest.raises(sprocket.ConfigError):
            reader(text, path)
        return ("invalid", str(e))
    got = reader(text, path)
    assert _canon(got) == _canon(expected), "TomlReader:\n%r\ntomllib:\n%r\ndocument:\n%s" % (got, expected, text)
    return ("valid", got)


def write_toml(path, text, tmp=None):
    """Write a TOML document (DIR replaced by ``tmp``) and cross-check the reader on it."""
    if tmp is not None:
        text = text.replace(DIR, str(tmp))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if tomllib is not None:
        assert_reader_matches_tomllib(text, str(path))
    return path


# --------------------------------------------------------------------------------------------
# running the CLI
# --------------------------------------------------------------------------------------------


def install_copy(directory):
    """Copy sprocket.py into ``directory`` and return the copy's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(str(SPROCKET), str(directory / "sprocket.py"))
    return directory / "sprocket.py"


class Resolved:
    """The parsed output of `sprocket config resolve`."""

    def __init__(self, proc):
        assert_sane(proc)
        assert proc.returncode == 0, "config resolve failed (exit %r):\n%s" % (proc.returncode, proc.stderr)
        lines = proc.stdout.splitlines()
        assert lines and lines[0].startswith(HEADER), "no `%s` line first:\n%s" % (HEADER, proc.stdout)
        files = lines[0][len(HEADER):]
        self.files = [] if files == "(none)" else files.split(", ")
        self.values, self.sources = {}, {}
        for line in lines[1:]:
            m = RESOLVE_RE.match(line)
            if m:
                self.values[m.group(1)] = m.group(2)
                self.sources[m.group(1)] = None if m.group(3) == "default" else m.group(3).split(", ")
            else:
                assert re.match(r"^# \S+ is not set$", line), "unexpected `config resolve` line: %r" % line
        self.proc = proc

    def value(self, key):
        assert key in self.values, "`%s` not in `config resolve` output:\n%s" % (key, self.proc.stdout)
        return self.values[key]

    def source(self, key):
        """The real paths of the files `key` came from, or None for a default."""
        self.value(key)
        src = self.sources[key]
        return None if src is None else [os.path.realpath(s) for s in src]

    def real_files(self):
        return [os.path.realpath(f) for f in self.files]


def q(s):
    """A string as `config resolve` prints it."""
    return json.dumps(s)


def real(*paths):
    return [os.path.realpath(str(p)) for p in paths]


class Sandbox:
    """A tmp dir with a copy of sprocket.py in bin/, a HOME and a working directory."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.home = tmp / "home"
        self.home.mkdir()
        self.bin = tmp / "bin"
        self.prog = install_copy(self.bin)
        self.work = tmp / "work"
        self.work.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k not in CONFIG_ENV}
        self.env["HOME"] = str(self.home)
        self.env["XDG_CACHE_HOME"] = str(tmp / "cache")
        self.env.pop("SPROCKET_DEBUG", None)

    def write(self, rel, text):
        path = Path(rel) if os.path.isabs(str(rel)) else self.tmp / rel
        return write_toml(path, text, self.tmp)

    def run(self, *args, cwd=None, env=None, prog=None, no_tomllib=False, timeout=180):
        e = dict(self.env)
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        prog = str(prog or self.prog)
        head = [sys.executable, "-c", NO_TOMLLIB_BOOT, prog] if no_tomllib else [sys.executable, prog]
        return subprocess.run(head + [str(a) for a in args], capture_output=True, text=True,
                              cwd=str(cwd or self.work), env=e, timeout=timeout, stdin=subprocess.DEVNULL)

    def resolve(self, *args, **kw):
        return Resolved(self.run("config", "resolve", *args, **kw))

    def hello(self, *args, **kw):
        """`run examples/hello.wdl --target say_hello greeting=hi ARGS...`"""
        return self.run("run", HELLO, "--target", "say_hello", "greeting=hi", *args, **kw)


@pytest.fixture
def sb(tmp_path):
    return Sandbox(tmp_path)


def succeeds(proc):
    assert_sane(proc)
    assert proc.returncode == 0, "expected exit 0, got %r:\n%s" % (proc.returncode, proc.stderr)
    return proc


def outputs_of(proc):
    succeeds(proc)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("stdout is not JSON:\n" + proc.stdout)


# --------------------------------------------------------------------------------------------
# 1. the search order
# --------------------------------------------------------------------------------------------

# Level i sets run.task.shell = "shell-Li" and appends "Li" to run.task.excluded_cache_inputs, so
# one `config resolve` shows both who won and every file that was read, in order.
LEVEL_DOC = toml_doc("search-order level", """
    # a search-order level
    [run.task]
    shell = "shell-@LEVEL@"
    excluded_cache_inputs = ["@LEVEL@"]
""")
LEVELS = ("program", "user", "cwd", "env", "config1", "config2")


def make_levels(sb, n, user_dir=None):
    """Create the first ``n`` levels; return (extra args, extra env, [file of each level])."""
    args, env, files = [], {}, []
    user_dir = user_dir or sb.tmp / "config-root"
    env["SPROCKET_CONFIG_ROOT"] = str(user_dir)
    places = {
        "program": sb.bin / "sprocket.toml",
        "user": user_dir / "sprocket.toml",
        "cwd": sb.work / "sprocket.toml",
        "env": sb.tmp / "envconf" / "site.toml",
        "config1": sb.tmp / "cli" / "first.toml",
        "config2": sb.tmp / "cli" / "second.toml",
    }
    for level in LEVELS[:n]:
        path = places[level]
        sb.write(path, LEVEL_DOC.replace("@LEVEL@", level))
        files.append(path)
        if level == "env":
            env["SPROCKET_CONFIG"] = str(path)
        elif level.startswith("config"):
            args += ["-c", str(path)]
    return args, env, files


@pytest.mark.parametrize("n", range(len(LEVELS) + 1), ids=["none"] + ["up-to-" + lv for lv in LEVELS])
def test_each_search_level_overrides_the_previous(sb, n):
    args, env, files = make_levels(sb, n)
    r = sb.resolve(*args, env=env)
    assert r.real_files() == real(*files)
    if n == 0:
        assert r.value("run.task.shell") == q("bash")
        assert r.source("run.task.shell") is None
        assert r.value("run.task.excluded_cache_inputs") == "[]"
        return
    assert r.value("run.task.shell") == q("shell-" + LEVELS[n - 1])
    assert r.source("run.task.shell") == real(files[-1])
    # arrays append across every level, in the search order
    assert r.value("run.task.excluded_cache_inputs") == "[%s]" % ", ".join(q(lv) for lv in LEVELS[:n])
    assert r.source("run.task.excluded_cache_inputs") == real(*files)


def test_program_adjacent_config_is_the_one_next_to_the_program_that_runs(sb):
    """Two copies of sprocket.py, each with its own sprocket.toml: each reads its own."""
    other_bin = sb.tmp / "other-bin"
    other = install_copy(other_bin)
    sb.write(sb.bin / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "bin"))
    sb.write(other_bin / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "other"))
    assert sb.resolve().value("run.task.shell") == q("shell-bin")
    r = sb.resolve(prog=other)
    assert r.value("run.task.shell") == q("shell-other")
    assert r.real_files() == real(other_bin / "sprocket.toml")


def test_repository_sprocket_py_reads_the_repository_sprocket_toml(sb):
    r = sb.resolve(prog=SPROCKET)
    assert real(REPO / "sprocket.toml")[0] in r.real_files()
    assert r.source("run.task.cpu_limit_behavior") == real(REPO / "sprocket.toml")


@pytest.mark.parametrize("how", ["SPROCKET_CONFIG_ROOT", "XDG_CONFIG_HOME", "HOME"])
def test_user_config_directory(sb, how):
    root = sb.tmp / "root"
    xdg = sb.tmp / "xdg"
    sb.write(root / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "root"))
    sb.write(xdg / "sprocket" / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "xdg"))
    sb.write(sb.home / ".config" / "sprocket" / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "home"))
    env = {}
    if how == "SPROCKET_CONFIG_ROOT":
        env = {"SPROCKET_CONFIG_ROOT": str(root), "XDG_CONFIG_HOME": str(xdg)}
        want = root / "sprocket.toml"
    elif how == "XDG_CONFIG_HOME":
        env = {"XDG_CONFIG_HOME": str(xdg)}
        want = xdg / "sprocket" / "sprocket.toml"
    else:
        want = sb.home / ".config" / "sprocket" / "sprocket.toml"
    r = sb.resolve(env=env)
    assert r.real_files() == real(want), "only the one user config file is read"
    assert r.source("run.task.shell") == real(want)


def test_cwd_config_is_the_working_directory_one(sb):
    sub = sb.work / "sub"
    sb.write(sb.work / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "parent"))
    sb.write(sub / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "sub"))
    r = sb.resolve(cwd=sub)
    assert r.real_files() == real(sub / "sprocket.toml"), "parent directories are not searched"
    assert r.value("run.task.shell") == q("shell-sub")


@pytest.mark.parametrize("flags", [("-s",), ("--skip-config-search",)])
def test_skip_config_search_keeps_only_config_files(sb, flags):
    args, env, files = make_levels(sb, len(LEVELS))
    r = sb.resolve(*(list(flags) + args), env=env)
    assert r.real_files() == real(*files[-2:])
    assert r.value("run.task.shell") == q("shell-config2")
    assert r.value("run.task.excluded_cache_inputs") == "[%s, %s]" % (q("config1"), q("config2"))


def test_skip_config_search_without_config_files_gives_the_defaults(sb):
    _, env, _ = make_levels(sb, 4)
    r = sb.resolve("-s", env=env)
    assert r.files == []
    assert r.value("run.task.shell") == q("bash")
    assert all(src is None for src in r.sources.values())


def test_config_options_before_the_subcommand(sb):
    """-c/-s are global options: accepted before `config resolve` as well as after it."""
    a = sb.write("a.toml", LEVEL_DOC.replace("@LEVEL@", "a"))
    b = sb.write("b.toml", LEVEL_DOC.replace("@LEVEL@", "b"))
    _, env, _ = make_levels(sb, 3)
    proc = sb.run("-s", "-c", a, "--config", b, "config", "resolve", env=env)
    r = Resolved(proc)
    assert r.real_files() == real(a, b)
    assert r.value("run.task.shell") == q("shell-b")


def test_later_config_option_wins(sb):
    a = sb.write("a.toml", LEVEL_DOC.replace("@LEVEL@", "a"))
    b = sb.write("b.toml", LEVEL_DOC.replace("@LEVEL@", "b"))
    assert sb.resolve("-s", "-c", a, "-c", b).value("run.task.shell") == q("shell-b")
    assert sb.resolve("-s", "-c", b, "-c", a).value("run.task.shell") == q("shell-a")


def test_relative_config_path_is_relative_to_the_working_directory(sb):
    sb.write(sb.work / "conf" / "x.toml", LEVEL_DOC.replace("@LEVEL@", "rel"))
    r = sb.resolve("-s", "-c", "conf/x.toml")
    assert r.value("run.task.shell") == q("shell-rel")


@pytest.mark.parametrize("skip", [False, True])
def test_missing_config_file_is_an_error(sb, skip):
    ok = sb.write("ok.toml", LEVEL_DOC.replace("@LEVEL@", "ok"))
    missing = sb.tmp / "no-such-dir" / "missing.toml"
    args = (["-s"] if skip else []) + ["-c", ok, "-c", missing]
    fails(sb.run("config", "resolve", *args), str(missing), "not found")
    fails(sb.hello("-o", sb.tmp / "out", *args), str(missing), "not found")
    assert not (sb.tmp / "out").exists() or not list((sb.tmp / "out").glob("runs/*/*"))


def test_config_option_naming_a_directory_is_an_error(sb):
    d = sb.tmp / "adir"
    d.mkdir()
    fails(sb.run("config", "resolve", "-c", d), str(d))


def test_sprocket_config_pointing_nowhere_is_only_a_warning_for_run(sb):
    nowhere = sb.tmp / "nowhere" / "sprocket.toml"
    proc = sb.hello("-o", sb.tmp / "out", env={"SPROCKET_CONFIG": str(nowhere)})
    assert outputs_of(proc) == {"say_hello.message": "hi, world!"}
    assert "warn" in proc.stderr.lower() and str(nowhere) in proc.stderr, proc.stderr


def test_sprocket_config_pointing_nowhere_resolves_to_the_defaults(sb):
    nowhere = sb.tmp / "nowhere.toml"
    r = sb.resolve(env={"SPROCKET_CONFIG": str(nowhere)})
    assert r.files == []
    assert r.value("run.task.shell") == q("bash")


def test_sprocket_config_pointing_nowhere_warns_in_config_resolve(sb):
    nowhere = sb.tmp / "nowhere.toml"
    proc = sb.run("config", "resolve", env={"SPROCKET_CONFIG": str(nowhere)})
    succeeds(proc)
    assert "warn" in proc.stderr.lower() and str(nowhere) in proc.stderr, proc.stderr


def test_empty_sprocket_config_is_ignored(sb):
    proc = sb.run("config", "resolve", env={"SPROCKET_CONFIG": ""})
    r = Resolved(proc)
    assert r.files == []
    assert "warn" not in proc.stderr.lower(), proc.stderr


def test_sprocket_config_is_read_after_the_cwd_config(sb):
    sb.write(sb.work / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "cwd"))
    env_file = sb.write("env.toml", LEVEL_DOC.replace("@LEVEL@", "env"))
    r = sb.resolve(env={"SPROCKET_CONFIG": str(env_file)})
    assert r.value("run.task.shell") == q("shell-env")
    assert r.real_files() == real(sb.work / "sprocket.toml", env_file)


def test_the_same_file_found_twice_is_read_once(sb):
    """Working in the program's own directory: its sprocket.toml is both the program-adjacent and
    the ./sprocket.toml file; read once, its arrays are not doubled."""
    sb.write(sb.bin / "sprocket.toml", LEVEL_DOC.replace("@LEVEL@", "bin"))
    r = sb.resolve(cwd=sb.bin)
    assert r.real_files() == real(sb.bin / "sprocket.toml")
    assert r.value("run.task.excluded_cache_inputs") == "[%s]" % q("bin")


def test_config_search_paths_in_process(sb, monkeypatch):
    """config_search_paths() lists the files in merge order, flagging the --config ones required."""
    monkeypatch.setenv("SPROCKET_CONFIG_ROOT", str(sb.tmp / "root"))
    monkeypatch.setenv("SPROCKET_CONFIG", str(sb.tmp / "env.toml"))
    monkeypatch.chdir(sb.work)
    monkeypatch.setattr(sys, "argv", [str(sb.prog)])
    got = sprocket.config_search_paths([str(sb.tmp / "c1.toml"), str(sb.tmp / "c2.toml")], False)
    assert [(os.path.realpath(p), req) for p, req in got] == [
        (os.path.realpath(str(sb.bin / "sprocket.toml")), False),
        (os.path.realpath(str(sb.tmp / "root" / "sprocket.toml")), False),
        (os.path.realpath(str(sb.work / "sprocket.toml")), False),
        (os.path.realpath(str(sb.tmp / "env.toml")), False),
        (os.path.realpath(str(sb.tmp / "c1.toml")), True),
        (os.path.realpath(str(sb.tmp / "c2.toml")), True),
    ]
    got = sprocket.config_search_paths([str(sb.tmp / "c1.toml")], True)
    assert [(os.path.realpath(p), req) for p, req in got] == [(os.path.realpath(str(sb.tmp / "c1.toml")), True)]


# --------------------------------------------------------------------------------------------
# 2. merging
# --------------------------------------------------------------------------------------------

MERGE_ONE = toml_doc("merge one", """
    run.fail = "fast"
    run.experimental_features_enabled = true

    [run.task]
    shell = "one-shell"
    container = "one:container"
    retries = 1
    excluded_cache_inputs = ["a"]
    excluded_cache_hints = ["h1", "h2"]

    [run.backends.mine]
    type = "local"
    cpu = 1

    [[run.backends.slurm.sbatch.conditional]]
    condition = "cpu > 4"
    args = ["--one"]
""")
MERGE_TWO = toml_doc("merge two", """
    [run]
    fail = "slow"
    task.shell = "two-shell"
    task.excluded_cache_inputs = ["b"]
    task.excluded_cache_requirements = ["r"]

    [run.backends.mine]
    memory = "1 GiB"

    [run.backends.slurm]
    sbatch.conditional = [{ condition = "gpu", args = ["--two"] }]
""")


def test_merge_rules_through_config_resolve(sb):
    one = sb.write("one.toml", MERGE_ONE)
    two = sb.write("two.toml", MERGE_TWO)
    r = sb.resolve("-s", "-c", one, "-c", two)
    # other values replace
    assert r.value("run.fail") == q("slow") and r.source("run.fail") == real(two)
    assert r.value("run.task.shell") == q("two-shell") and r.source("run.task.shell") == real(two)
    # tables merge recursively: what only the first file sets survives
    assert r.value("run.task.container") == q("one:container") and r.source("run.task.container") == real(one)
    assert r.value("run.task.retries") == "1"
    assert r.value("run.experimental_features_enabled") == "true"
    assert r.value("run.backends.mine.type") == q("local") and r.source("run.backends.mine.type") == real(one)
    assert r.value("run.backends.mine.cpu") == "1"
    assert r.value("run.backends.mine.memory") == q("1 GiB") and r.source("run.backends.mine.memory") == real(two)
    # arrays append
    assert r.value("run.task.excluded_cache_inputs") == '["a", "b"]'
    assert r.source("run.task.excluded_cache_inputs") == real(one, two)
    assert r.value("run.task.excluded_cache_hints") == '["h1", "h2"]'
    assert r.source("run.task.excluded_cache_hints") == real(one)
    assert r.value("run.task.excluded_cache_requirements") == '["r"]'
    # ... arrays of tables too
    cond = r.value("run.backends.slurm.sbatch.conditional")
    assert cond.index("--one") < cond.index("--two"), cond
    assert r.source("run.backends.slurm.sbatch.conditional") == real(one, two)


def test_merge_order_reversed(sb):
    one = sb.write("one.toml", MERGE_ONE)
    two = sb.write("two.toml", MERGE_TWO)
    r = sb.resolve("-s", "-c", two, "-c", one)
    assert r.value("run.fail") == q("fast")
    assert r.value("run.task.shell") == q("one-shell")
    assert r.value("run.task.excluded_cache_inputs") == '["b", "a"]'


def test_config_merge_in_process():
    c = sprocket.Config()
    c.merge_file("one.toml", {"run": {"task": {"shell": "s1", "container": "c1", "excluded_cache_inputs": ["a"]},
                                      "fail": "fast"}})
    c.merge_file("two.toml", {"run": {"task": {"shell": "s2", "excluded_cache_inputs": ["b", "c"]}}})
    assert c.files == ["one.toml", "two.toml"]
    assert c.get("run.task.shell") == "s2"
    assert c.get("run.task.container") == "c1"
    assert c.get("run.fail") == "fast"
    assert c.get("run.task.excluded_cache_inputs") == ["a", "b", "c"]
    assert c.sources["run.task.shell"] == ["two.toml"]
    assert c.sources["run.task.container"] == ["one.toml"]
    assert c.sources["run.task.excluded_cache_inputs"] == ["one.toml", "two.toml"]
    # unset keys read as their schema default
    assert c.get("run.task.retries") == 0
    assert c.get("run.task.cpu_limit_behavior") == "deny"
    assert c.get("run.workflow.scatter.concurrency") == 1000
    assert c.get("run.backends.any_name.max_queued_jobs") == 1000, "a backend's settings: under any name"


def test_config_get_refuses_a_key_not_in_the_schema():
    """A key with no row in CONFIG_SCHEMA is a bug in the caller (an internal error), never a silent None."""
    c = sprocket.Config()
    c.merge_file("x.toml", {"run": {"task": {"shell": "sh"}}, "check": {"except": ["x"]}})
    for key in ("no.such.key", "run.task.shel", "run.task", "run.backends", "check", "run.backends.b.nope"):
        with pytest.raises(KeyError, match="not a setting"):
            c.get(key)
    assert c.backends() == {}


def test_config_merge_does_not_alias_the_input():
    first = {"run": {"task": {"excluded_cache_inputs": ["a"]}}}
    c = sprocket.Config()
    c.merge_file("one.toml", first)
    c.merge_file("two.toml", {"run": {"task": {"excluded_cache_inputs": ["b"]}}})
    assert first == {"run": {"task": {"excluded_cache_inputs": ["a"]}}}, "merging changed the first file's data"


def test_config_get_expands_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SPROCKET_TEST_VAR", "expanded")
    c = sprocket.Config()
    c.merge_file("x.toml", {"run": {"output_dir": "~/out/$SPROCKET_TEST_VAR",
                                    "task": {"shell": "$SPROCKET_TEST_VAR", "cache_dir": "${SPROCKET_TEST_VAR}/c"}}})
    assert c.get("run.output_dir") == os.path.join(str(tmp_path), "out", "expanded")
    assert c.get("run.task.cache_dir") == "expanded/c"
    assert c.get("run.task.shell") == "$SPROCKET_TEST_VAR", "only path settings are expanded"


def test_config_backend_in_process():
    c = sprocket.Config()
    assert c.backend() == ("default", {"type": "local"}), "no backends: the built-in default is local"
    c.merge_file("x.toml", {"run": {"backend": "mine", "backends": {"mine": {"type": "local", "cpu": 1}}}})
    assert c.backend() == ("mine", {"type": "local", "cpu": 1})
    c2 = sprocket.Config()
    c2.merge_file("x.toml", {"run": {"backends": {"other": {"type": "local"}}}})
    with pytest.raises(sprocket.ConfigError) as e:
        c2.backend()
    assert "run.backends.default" in e.value.message and "other" in e.value.message


# --------------------------------------------------------------------------------------------
# 3. bad configuration
# --------------------------------------------------------------------------------------------

# (id, document, fragments that must all be in the error).  Each is an error as soon as the file
# is loaded: by `config resolve` and by `run`.  The file is always called bad.toml.
LOAD_ERRORS = [
    ("unknown-top-level", "bogus = 1\n", ["bogus", "run"]),
    ("unknown-top-level-table", "[runn]\nfail = \"fast\"\n", ["runn", "run"]),
    ("unknown-in-run", "[run]\nbogus = 1\n", ["run.bogus", "output_dir", "task"]),
    ("unknown-in-run-task", "[run.task]\nshel = \"bash\"\n", ["run.task.shel", "shell", "retries"]),
    ("unknown-in-run-task-dotted", "run.task.retry = 1\n", ["run.task.retry", "retries"]),
    ("unknown-in-run-workflow", "run.workflow.scatter.concurency = 1\n", ["run.workflow.scatter.concurency", "concurrency"]),
    ("unknown-backend-key", "[run.backends.x]\ntype = \"local\"\nbogus = 1\n", ["run.backends.x.bogus", "cpu", "memory"]),
    ("bad-enum-fail", "[run]\nfail = \"sometimes\"\n", ["run.fail", "sometimes", "slow", "fast"]),
    ("bad-enum-cpu-limit", "run.task.cpu_limit_behavior = \"clamp\"\n", ["run.task.cpu_limit_behavior", "clamp", "deny", "try_with_max"]),
    ("bad-enum-cache", "run.task.cache = \"yes\"\n", ["run.task.cache", "yes", "off", "on", "explicit"]),
    ("bad-enum-digests", "run.task.digests = \"md5\"\n", ["run.task.digests", "md5", "weak", "strongish", "strong"]),
    ("bad-backend-type", "run.backends.x.type = \"kubernetes\"\n", ["run.backends.x.type", "kubernetes", "local", "slurm_apptainer"]),
    ("retries-string", "[run.task]\nretries = \"x\"\n", ["run.task.retries", '"x"', "whole number"]),
    ("retries-100", "[run.task]\nretries = 100\n", ["run.task.retries", "100", "less than 100"]),
    ("retries-negative", "[run.task]\nretries = -1\n", ["run.task.retries", "-1", "whole number"]),
    ("retries-float", "[run.task]\nretries = 1.5\n", ["run.task.retries", "1.5", "whole number"]),
    ("retries-bool", "[run.task]\nretries = true\n", ["run.task.retries", "true", "whole number"]),
    ("bool-as-string", "run.experimental_features_enabled = \"yes\"\n", ["run.experimental_features_enabled", "yes", "true or false"]),
    ("shell-not-string", "run.task.shell = 1\n", ["run.task.shell", "string"]),
    ("list-not-array", "run.task.excluded_cache_inputs = \"a\"\n", ["run.task.excluded_cache_inputs", "array of strings"]),
    ("list-of-ints", "run.task.excluded_cache_inputs = [1]\n", ["run.task.excluded_cache_inputs", "array of strings"]),
    ("scatter-concurrency-0", "run.workflow.scatter.concurrency = 0\n", ["run.workflow.scatter.concurrency", "at least 1"]),
    ("bad-size", "[run.backends.x]\ntype = \"local\"\nmemory = \"lots\"\n", ["run.backends.x.memory", "lots", "96 GB"]),
    ("bad-partition-size", "run.backends.s.default_slurm_partition.max_memory_per_task = \"huge\"\n",
     ["run.backends.s.default_slurm_partition.max_memory_per_task", "huge", "96 GB"]),
    ("run-not-a-table", "run = 3\n", ["run", "table"]),
    ("backend-not-a-table", "[run.backends]\nx = 3\n", ["run.backends.x", "table"]),
    ("task-not-a-table", "run.task = \"fast\"\n", ["run.task", "table"]),
    ("bad-conditional", "run.backends.s.sbatch.conditional = [{ condition = \"cpu > 1\" }]\n",
     ["run.backends.s.sbatch.conditional", "condition", "args"]),
    ("bad-common-color", "[common]\ncolor = \"sometimes\"\n", ["common.color", "auto", "always", "never"]),
    ("bad-fallback-version", "common.wdl.fallback_version = \"2.0\"\n", ["common.wdl.fallback_version", "1.2"]),
    ("unknown-server-key", "[server]\nportt = 1\n", ["server.portt", "port"]),
    ("memory-retry-below-1", "run.task.memory_retry_multiplier = 0.5\n", ["run.task.memory_retry_multiplier", "0.5", ">= 1"]),
    ("memory-retry-string", "run.task.memory_retry_multiplier = \"2x\"\n", ["run.task.memory_retry_multiplier", "2x", ">= 1"]),
    ("job-arrays-not-bool", "run.backends.s.job_arrays = 1\n", ["run.backends.s.job_arrays", "true or false"]),
]
for _id, _text, _ in LOAD_ERRORS:
    TOML_DOCS.append(("load error " + _id, _text))


@pytest.mark.parametrize("command", ["resolve", "run"])
@pytest.mark.parametrize("text,fragments", [pytest.param(t, f, id=i) for i, t, f in LOAD_ERRORS])
def test_bad_configuration_is_an_error_naming_file_key_and_allowed(sb, command, text, fragments):
    bad = sb.write("bad.toml", text)
    args = ("-s", "-c", bad)
    proc = sb.run("config", "resolve", *args) if command == "resolve" else sb.hello("-o", sb.tmp / "out", *args)
    fails(proc, "bad.toml", *fragments)
    if command == "run":
        assert not list((sb.tmp / "out").glob("runs/*/*")), "a run directory was made despite the bad config"


def test_bad_value_in_an_earlier_file_is_an_error_even_when_a_later_file_fixes_it(sb):
    """Each file is validated on its own (as Sprocket deserializes each file)."""
    bad = sb.write("bad.toml", "[run]\nfail = \"sometimes\"\n")
    good = sb.write("good.toml", "[run]\nfail = \"fast\"\n")
    fails(sb.run("config", "resolve", "-s", "-c", bad, "-c", good), "bad.toml", "run.fail")


def test_bad_cwd_config_names_its_path(sb):
    sb.write(sb.work / "sprocket.toml", "[run]\nbogus = true\n")
    fails(sb.run("config", "resolve"), str(sb.work / "sprocket.toml"), "run.bogus")


def test_bad_program_adjacent_config_is_an_error(sb):
    sb.write(sb.bin / "sprocket.toml", "[run]\nfail = 1\n")
    fails(sb.run("config", "resolve"), "run.fail", "slow")
    # and -s skips it
    succeeds(sb.run("config", "resolve", "-s"))


def test_foreign_sections_are_accepted(sb):
    """Sections for Sprocket commands sprocket.py lacks ([format], [test], ...) do not stop it."""
    doc = sb.write("foreign.toml", toml_doc("foreign sections", """
        [format]
        indentation = "spaces"
        max_line_length = 90

        [check]
        except = ["SnakeCase"]

        [test]
        parallelism = 50
        throttle = 100
    """))
    r = sb.resolve("-s", "-c", doc)
    assert r.value("test.parallelism") == "50"
    assert r.source("test.parallelism") == real(doc)


def test_cpu_beyond_the_host_is_an_error(sb):
    bad = sb.write("bad.toml", "[run.backends.x]\ntype = \"local\"\ncpu = %d\n" % ((os.cpu_count() or 1) + 1000))
    fails(sb.run("config", "resolve", "-s", "-c", bad), "run.backends.x.cpu")


# Errors found only when a run picks its backend: (id, document, fragments).
BACKEND_ERRORS = [
    ("backend-names-missing-entry", "[run]\nbackend = \"x\"\n[run.backends.y]\ntype = \"local\"\n",
     ["run.backend", "run.backends.x", "y"]),
    ("lsf-backend", "[run.backends.default]\ntype = \"lsf_apptainer\"\n",
     ["lsf_apptainer", "run.backends.default", "not supported", "local", "docker"]),
    ("tes-backend", "[run]\nbackend = \"t\"\n[run.backends.t]\ntype = \"tes\"\n", ["tes", "run.backends.t", "local"]),
    ("local-backend-with-slurm-key", "[run.backends.default]\ntype = \"local\"\ninterval = 3\n",
     ["run.backends.default.interval", "local", "cpu", "memory"]),
    ("backend-without-type", "[run.backends.default]\ncpu = 1\n", ["run.backends.default.type", "local"]),
    ("slurm-without-experimental", "[run.backends.default]\ntype = \"slurm_apptainer\"\n",
     ["slurm_apptainer", "experimental_features_enabled = true"]),
    ("docker-backend-without-its-command", "[run.backends.default]\ntype = \"docker\"\nexecutable = \"no-such-docker\"\n",
     ["no-such-docker", "run.backends.default", "not on PATH", "executable"]),
]
for _id, _text, _ in BACKEND_ERRORS:
    TOML_DOCS.append(("backend error " + _id, _text))


@pytest.mark.parametrize("text,fragments", [pytest.param(t, f, id=i) for i, t, f in BACKEND_ERRORS])
def test_backend_errors_stop_a_run(sb, text, fragments):
    bad = sb.write("bad.toml", text)
    fails(sb.hello("-o", sb.tmp / "out", "-s", "-c", bad), *fragments)
    # `config resolve` validates keys and values only; whatever it decides, it must be sane
    assert_sane(sb.run("config", "resolve", "-s", "-c", bad))


@pytest.mark.parametrize("text,fragments", [pytest.param(t, f, id=i) for i, t, f in BACKEND_ERRORS[:4]])
def test_backend_errors_name_the_file(sb, text, fragments):
    bad = sb.write("bad.toml", text)
    fails(sb.hello("-o", sb.tmp / "out", "-s", "-c", bad), "bad.toml", *fragments)


def test_cpu_beyond_the_host_error_names_file_and_limit(sb):
    n = os.cpu_count() or 1
    bad = sb.write("bad.toml", "[run.backends.x]\ntype = \"local\"\ncpu = %d\n" % (n + 1000))
    fails(sb.run("config", "resolve", "-s", "-c", bad), "bad.toml", "run.backends.x.cpu", str(n))


def test_backend_default_with_no_backends_is_the_local_backend(sb):
    cfg = sb.write("c.toml", "[run]\nbackend = \"default\"\n")
    outputs_of(sb.hello("-o", sb.tmp / "out", "-s", "-c", cfg))


def test_slurm_with_experimental_features_gets_past_the_experimental_check(sb):
    cfg = sb.write("c.toml", "run.experimental_features_enabled = true\n"
                             "[run.backends.default]\ntype = \"slurm_apptainer\"\n")
    proc = sb.hello("-o", sb.tmp / "out", "-s", "-c", cfg, env={"PATH": str(sb.tmp / "empty-path")}, timeout=120)
    assert_sane(proc)
    assert "experimental_features_enabled" not in proc.stderr, proc.stderr


INVALID_SYNTAX = [
    # (id, document, line of the error)
    ("missing-value", "[run]\nfail = \n", 2),
    ("unclosed-header", "[run\nfail = \"fast\"\n", 1),
    ("duplicate-key", "[run]\nfail = \"slow\"\nfail = \"fast\"\n", 3),
    ("unterminated-string", "[run.task]\n\nshell = \"bash\n", 3),
    ("duplicate-table", "[run]\nfail = \"slow\"\n[run.task]\n[run]\n", 4),
    ("bad-escape", "# c\nrun.task.shell = \"\\q\"\n", 2),
]
for _id, _text, _ in INVALID_SYNTAX:
    TOML_DOCS.append(("invalid syntax " + _id, _text))


@pytest.mark.parametrize("no_tomllib", [False, True], ids=["tomllib", "TomlReader"])
@pytest.mark.parametrize("command", ["resolve", "run"])
@pytest.mark.parametrize("text,line", [pytest.param(t, n, id=i) for i, t, n in INVALID_SYNTAX])
def test_invalid_toml_is_reported_at_file_line_col(sb, text, line, command, no_tomllib):
    if not no_tomllib and tomllib is None:
        pytest.skip("tomllib is not available (Python < 3.11)")
    bad = sb.write("bad.toml", text)
    args = ("-s", "-c", bad)
    if command == "resolve":
        proc = sb.run("config", "resolve", *args, no_tomllib=no_tomllib)
    else:
        proc = sb.hello("-o", sb.tmp / "out", *args, no_tomllib=no_tomllib)
    err = fails(proc, "invalid TOML")
    m = re.search(r"(\S*bad\.toml):(\d+):(\d+): error: invalid TOML", err)
    assert m, "no `bad.toml:LINE:COL: error: invalid TOML...` in:\n" + err
    assert int(m.group(2)) == line, "wrong line:\n" + err
    assert int(m.group(3)) >= 1


def test_out_of_range_date_without_tomllib_is_a_config_error(sb):
    bad = sb.write("bad.toml", "[format]\nwhen = 1979-13-01\n")
    fails(sb.run("config", "resolve", "-s", "-c", bad, no_tomllib=True), "bad.toml")


def test_config_file_that_is_not_utf8(sb):
    bad = sb.tmp / "bad.toml"
    bad.write_bytes(b'run.fail = "\xff"\n')
    fails(sb.run("config", "resolve", "-s", "-c", bad), "bad.toml")


# Settings Sprocket documents (reference section 2) that a Sprocket sprocket.toml may hold.
SPROCKET_KEYS = [
    ("run.output_dir = \"./out\"", None),
    ("run.events_capacity = 5000", None),
    ("run.suppress_env_specific_output = false", None),
    ("run.task.retries = \"default\"", None),
    ("run.task.cache_dir = \"system\"", None),
    ("run.http.retries = 5", None),
    ("run.http.parallelism = 4", None),
    ("run.http.parallelism = \"available\"", None),
    ("run.http.cache_dir = \"system\"", None),
    ("common.report_mode = \"one-line\"", None),
    ("common.wdl.feature_flags.wdl_1_3 = true", None),
    ("server.database.url = \"default\"", None),
    ("server.orphan_timeout_minutes = 5", None),
    ("run.backends.s.apptainer.image_cache_dir = \"/scratch/sif-cache\"", None),
    ("run.backends.s.apptainer.executable = \"singularity\"", None),
    ("run.backends.s.job_name_prefix = \"me\"", None),
    ("run.backends.s.sbatch.args = [\"--time=60\"]", None),
    ("run.backends.s.short_task_slurm_partition = { name = \"short\" }", None),
    ("run.backends.d.cleanup = true", None),
    ("run.storage.s3.region = \"us-east-1\"", "run.storage"),
    ("run.storage.s3.auth.access_key_id = \"AKIA\"", "run.storage"),
    ("run.storage.azure.auth.account_name = \"acct\"", "run.storage"),
    ("run.storage.google.auth.secret = \"s\"", "run.storage"),
    ("server.allowed_origins = [\"http://localhost\"]", "server.allowed_origins"),
    ("server.allowed_file_paths = [\"/data\"]", "server.allowed_file_paths"),
    ("server.allowed_urls = []", "server.allowed_urls"),
    ("server.max_concurrent_runs = \"unlimited\"", "server.max_concurrent_runs"),
]
for _text, _ in SPROCKET_KEYS:
    TOML_DOCS.append(("sprocket key " + _text, _text + "\n"))


def _sprocket_key_param(text, missing):
    return pytest.param(text, id=text.split(" =")[0])


@pytest.mark.parametrize("text", [_sprocket_key_param(t, m) for t, m in SPROCKET_KEYS])
def test_documented_sprocket_settings_are_accepted(sb, text):
    cfg = sb.write("c.toml", text + "\n")
    r = sb.resolve("-s", "-c", cfg)
    key = text.split(" =")[0]
    assert any(k == key or k.startswith(key + ".") for k in r.values), r.proc.stdout


# --------------------------------------------------------------------------------------------
# 4. the seed's example, the repository's sprocket.toml, `config init`
# --------------------------------------------------------------------------------------------

SEED = "seed/000_d110926ea719e399.txt"


def seed_text(shared):
    path = shared / SEED
    if not path.is_file():
        pytest.skip("the seed document %s is not there" % path)
    return path.read_text(encoding="utf-8")


def toml_blocks(markdown):
    return re.findall(r"^```toml\n(.*?)^```", markdown, re.M | re.S)


def seed_backend_example(shared):
    """The seed's "Configuring the backend" block plus its [run.task] block."""
    text = seed_text(shared)
    section = text[text.index("## Configuring the backend"):]
    blocks = toml_blocks(section)
    assert len(blocks) >= 2 and "[run.task]" in blocks[1], "the seed's layout changed"
    return blocks[0] + "\n" + blocks[1]


def uncomment(text):
    """Turn `# run.x = ...` example lines into settings."""
    return re.sub(r"^# (run\.\S+ = )", r"\1", text, flags=re.M)


def test_seed_example_loads(sb, shared):
    cfg = sb.write("seed.toml", seed_backend_example(shared))
    r = sb.resolve("-s", "-c", cfg)
    assert r.value("run.experimental_features_enabled") == "true"
    assert r.value("run.backends.default.type") == q("slurm_apptainer")
    assert r.value("run.backends.default.default_slurm_partition.name") == q("compute")
    assert r.value("run.backends.default.default_slurm_partition.max_cpu_per_task") == "64"
    assert r.value("run.backends.default.default_slurm_partition.max_memory_per_task") == q("96 GB")
    assert r.value("run.task.cpu_limit_behavior") == q("deny") and r.source("run.task.cpu_limit_behavior") == real(cfg)
    assert r.value("run.task.memory_limit_behavior") == q("deny")


@pytest.mark.parametrize("no_tomllib", [False, True], ids=["tomllib", "TomlReader"])
def test_seed_example_with_every_option_uncommented_loads(sb, shared, no_tomllib):
    text = uncomment(seed_backend_example(shared))
    assert "\nrun.backends.default.extra_apptainer_exec_args" in text
    cfg = sb.write("seed.toml", text)
    r = sb.resolve("-s", "-c", cfg, no_tomllib=no_tomllib)
    assert r.value("run.backends.default.extra_sbatch_args") == '["--time=60"]'
    assert r.value("run.backends.default.max_scatter_concurrency") == "200"
    assert r.value("run.backends.default.extra_apptainer_exec_args") == '["--nv"]'
    assert r.value("run.backends.default.gpu_slurm_partition.name") == q("gpu")


def test_every_toml_block_of_the_seed_loads(sb, shared):
    blocks = toml_blocks(seed_text(shared))
    assert len(blocks) >= 4
    for i, block in enumerate(blocks):
        cfg = sb.write("block%d.toml" % i, block)
        Resolved(sb.run("config", "resolve", "-s", "-c", cfg))


def test_seed_example_as_site_config_via_sprocket_config(sb, shared):
    """The seed's two recommended set-ups: next to the program, or named by $SPROCKET_CONFIG;
    a user's ./sprocket.toml still overrides them."""
    site = seed_backend_example(shared)
    sb.write(sb.bin / "sprocket.toml", site)
    env_cfg = sb.write("shared-config/sprocket.toml", site)
    sb.write(sb.work / "sprocket.toml", "[run]\nfail = \"fast\"\n[run.task]\ncpu_limit_behavior = \"try_with_max\"\n")
    r = sb.resolve(env={"SPROCKET_CONFIG": str(env_cfg)})
    assert r.real_files() == real(sb.bin / "sprocket.toml", sb.work / "sprocket.toml", env_cfg)
    # $SPROCKET_CONFIG comes after ./sprocket.toml, so its [run.task] wins there
    assert r.value("run.task.cpu_limit_behavior") == q("deny")
    assert r.value("run.fail") == q("fast")


def test_reference_minimal_slurm_example_loads(sb, shared):
    ref = shared / "reference" / "sprocket-behaviour.md"
    if not ref.is_file():
        pytest.skip("%s is not there" % ref)
    text = ref.read_text(encoding="utf-8")
    block = toml_blocks(text[text.index("### Minimal Slurm example"):])[0]
    cfg = sb.write("slurm.toml", block)
    r = sb.resolve("-s", "-c", cfg)
    assert r.value("run.backend") == q("slurm")
    assert r.value("run.backends.slurm.sbatch.args") == '["--time=60"]'
    assert r.value("run.backends.slurm.default_slurm_partition.max_memory_per_task") == q("96 GB")


@pytest.mark.parametrize("no_tomllib", [False, True], ids=["tomllib", "TomlReader"])
def test_repository_sprocket_toml_loads(sb, no_tomllib):
    r = sb.resolve("-s", "-c", REPO / "sprocket.toml", no_tomllib=no_tomllib)
    assert r.value("run.task.cpu_limit_behavior") == q("deny")
    assert r.value("run.task.memory_limit_behavior") == q("deny")


def test_repository_sprocket_toml_with_its_example_uncommented_loads(sb):
    text = uncomment((REPO / "sprocket.toml").read_text(encoding="utf-8"))
    assert "\nrun.backends.default.type = \"slurm_apptainer\"" in text
    cfg = sb.write("uncommented.toml", text)
    r = sb.resolve("-s", "-c", cfg)
    assert r.value("run.backends.default.type") == q("slurm_apptainer")
    assert r.value("run.backends.default.default_slurm_partition.max_memory_per_task") == q("96 GB")
    assert r.value("run.task.cpu_limit_behavior") == q("deny")


def config_init(sb, **kw):
    proc = sb.run("config", "init", **kw)
    succeeds(proc)
    return proc.stdout


def test_config_init_is_valid_toml(sb):
    text = config_init(sb)
    data = tomllib.loads(text) if tomllib is not None else reader(text)
    assert data["run"]["task"]["shell"] == "bash"
    assert data["run"]["fail"] == "slow"
    if tomllib is not None:
        assert_reader_matches_tomllib(text)


def test_config_init_output_passes_validation_and_holds_the_defaults(sb):
    init = sb.write("init.toml", config_init(sb))
    defaults = sb.resolve("-s")
    r = sb.resolve("-s", "-c", init)
    assert r.values == defaults.values, "`config init` does not print the defaults `config resolve` reports"
    assert all(src == real(init) for src in (r.source(k) for k in r.values)), r.proc.stdout


def test_every_key_sprocket_reads_with_config_get_is_a_setting():
    """Config.get refuses a key with no row only when the call runs; this finds them all in the source."""
    keys = re.findall(r'\b(?:config|self)\.get\("([a-z_]+\.[a-z_.]+)"\)', SPROCKET.read_text(encoding="utf-8"))
    assert len(keys) > 20, keys
    missing = sorted({k for k in keys if sprocket._schema_key(k) not in sprocket.CONFIG_SCHEMA})
    assert not missing, "Config.get of keys CONFIG_SCHEMA has no row for: %s" % missing


def test_every_setting_default_passes_its_own_check():
    for key, setting in sprocket.CONFIG_SCHEMA.items():
        assert setting.help, "`%s` has no help text for `config init`" % key
        if setting.default is not None:
            sprocket.check_config_value(key, setting.default, setting, "CONFIG_SCHEMA")  # raises ConfigError


def test_setting_checks_beyond_the_kind_refuse_what_the_kind_allows():
    schema = sprocket.CONFIG_SCHEMA
    for key, value, message in (("run.task.retries", 100, "less than 100"),
                                ("run.workflow.scatter.concurrency", 0, "at least 1"),
                                ("server.orphan_timeout_minutes", 0, "at least 1"),
                                ("run.http.parallelism", 1.5, "must be a string")):
        with pytest.raises(sprocket.ConfigError, match=message):
            sprocket.check_config_value(key, value, schema[key], "x.toml")
    for key, value in (("run.task.retries", "default"), ("run.http.parallelism", 4),
                       ("server.max_concurrent_runs", 2)):
        sprocket.check_config_value(key, value, schema[key], "x.toml")


def test_config_resolve_prints_every_setting(sb):
    """Every row of the schema: the general ones by default, and a backend's rows once a backend
    of that type sets them (each to its default, which must also pass validation, else to a sample)."""
    sample = {"str": "x", "path": "/shared/images", "int": 1, "size": "1 MiB", "rate": "20/1s"}
    schema = sprocket.CONFIG_SCHEMA
    r = sb.resolve("-s")
    printed = set(r.values) | set(re.findall(r"^# (\S+) is not set$", r.proc.stdout, re.M))
    general = {k for k in schema if "*" not in k}
    assert printed == general, "missing: %s; extra: %s" % (sorted(general - printed), sorted(printed - general))
    for k in general:
        if schema[k].default is not None:
            assert r.value(k) == sprocket._toml_value(schema[k].default) and r.source(k) is None, k
    # each registered backend type's own rows (its class's SETTINGS; some shared by several types)
    backend_rows = {kind: cls.SETTINGS for kind, cls in sprocket.BACKENDS.items()}
    lines = []
    for kind, rows in sorted(backend_rows.items()):
        lines.append('run.backends.%s.type = "%s"' % (kind, kind))
        lines.extend("run.backends.%s.%s = %s" % (kind, k, sprocket._toml_value(
            row.default if row.default is not None else row.kind[0] if isinstance(row.kind, tuple) else sample[row.kind]))
            for k, row in sorted(rows.items()))
    cfg = sb.write("backends.toml", "\n".join(lines) + "\n")
    r = sb.resolve("-s", "-c", cfg)
    for line in lines:
        key, _, value = line.partition(" = ")
        assert r.value(key) == value and r.source(key) == real(cfg), key
    declared = {"run.backends.*." + k for rows in backend_rows.values() for k in rows}
    assert declared | {"run.backends.*.type"} == set(schema) - general, "a row was left out"


def test_config_init_ignores_configuration_files(sb):
    sb.write(sb.work / "sprocket.toml", "this is not TOML\n")
    sb.write(sb.bin / "sprocket.toml", "[run]\nfail = \"fast\"\n")
    text = config_init(sb)
    assert 'fail = "slow"' in text
    assert config_init(sb, cwd=sb.tmp) == text


# --------------------------------------------------------------------------------------------
# 5. settings honoured by `run`
# --------------------------------------------------------------------------------------------

OUTPUT_DIR_DOC = toml_doc("output dir", """
    [run]
    output_dir = "@DIR@/configured-out"
""")


def test_run_output_dir_is_used_without_o(sb):
    cfg = sb.write("c.toml", OUTPUT_DIR_DOC)
    proc = sb.hello("-s", "-c", cfg)
    assert outputs_of(proc) == {"say_hello.message": "hi, world!"}
    rd = run_dir_of(proc)
    assert os.path.realpath(str(rd)).startswith(os.path.realpath(str(sb.tmp / "configured-out" / "runs" / "say_hello")) + os.sep)
    assert not (sb.work / "out").exists(), "the default ./out was used anyway"
    assert (sb.tmp / "configured-out" / "sprocket.db").exists()


def test_o_overrides_run_output_dir(sb):
    cfg = sb.write("c.toml", OUTPUT_DIR_DOC)
    proc = sb.hello("-s", "-c", cfg, "-o", sb.tmp / "explicit")
    outputs_of(proc)
    assert os.path.realpath(str(run_dir_of(proc))).startswith(os.path.realpath(str(sb.tmp / "explicit")) + os.sep)
    assert not (sb.tmp / "configured-out").exists()


def test_default_output_dir_is_dot_out(sb):
    proc = sb.hello("-s")
    outputs_of(proc)
    assert os.path.realpath(str(run_dir_of(proc))).startswith(os.path.realpath(str(sb.work / "out")) + os.sep)


OUTPUT_DIR_VARS_DOC = toml_doc("output dir with ~ and $VAR", """
    run.output_dir = "~/$SPROCKET_TEST_SUBDIR/out"
""")


def test_run_output_dir_expands_home_and_variables(sb):
    cfg = sb.write("c.toml", OUTPUT_DIR_VARS_DOC)
    proc = sb.hello("-s", "-c", cfg, env={"SPROCKET_TEST_SUBDIR": "sub"})
    outputs_of(proc)
    want = sb.home / "sub" / "out" / "runs" / "say_hello"
    assert os.path.realpath(str(run_dir_of(proc))).startswith(os.path.realpath(str(want)) + os.sep)


SHELL_DOC = toml_doc("shell wrapper", """
    [run.task]
    shell = "@DIR@/wrapper.sh"
""")


def test_run_task_shell_runs_each_command(sb):
    marker = sb.tmp / "wrapper-ran"
    wrapper = sb.tmp / "wrapper.sh"
    wrapper.write_text("#!/bin/sh\nprintf '%%s\\n' \"$@\" >> '%s'\nexec bash \"$@\"\n" % marker)
    wrapper.chmod(0o755)
    cfg = sb.write("c.toml", SHELL_DOC)
    proc = sb.hello("-s", "-c", cfg, "-o", sb.tmp / "out")
    assert outputs_of(proc) == {"say_hello.message": "hi, world!"}
    assert marker.exists(), "the configured shell did not run"
    # `shell -c '<source the command, write its exit status>' <command file> <rc file>`
    logged = marker.read_text().splitlines()
    assert len(logged) == 4 and logged[0] == "-c", logged
    assert logged[2].endswith(os.path.join("attempts", "0", "command")), logged
    assert Path(logged[2]).read_text().strip() == 'echo "hi, world!"'
    assert Path(logged[3]).read_text() == "0\n"  # the exit status, for a run that adopts the task after a crash


def test_run_task_shell_that_does_not_exist_is_a_clean_error(sb):
    cfg = sb.write("c.toml", toml_doc("missing shell", """
        run.task.shell = "/nonexistent/shell"
    """))
    fails(sb.hello("-s", "-c", cfg, "-o", sb.tmp / "out"), "/nonexistent/shell")


FAILING_WDL = """
    version 1.2

    task flaky {
      command <<<
        echo "attempt ~{task.attempt}" >&2
        exit 3
      >>>
      output {
        String s = "never"
      }
    }
"""
RECOVERING_WDL = """
    version 1.2

    task recovers {
      command <<<
        echo "attempt ~{task.attempt}"
        exit ~{if task.attempt < 2 then 1 else 0}
      >>>
      output {
        String s = read_string(stdout())
      }
    }
"""
CAPPED_WDL = """
    version 1.2

    task capped {
      command <<<
        exit 3
      >>>
      requirements {
        max_retries: 1
      }
      output {
        String s = "never"
      }
    }
"""
RETRIES_DOC = toml_doc("retries", """
    [run.task]
    retries = 2
""")
RETRIES_3_DOC = toml_doc("retries 3", """
    run.task.retries = 3
""")


def attempts_of(rd):
    return sorted(os.listdir(str(rd / "attempts")), key=int)


def test_run_task_retries(sb):
    wdl = write(sb.work / "flaky.wdl", FAILING_WDL)
    cfg = sb.write("c.toml", RETRIES_DOC)
    proc = sb.run("run", wdl, "-s", "-c", cfg, "-o", sb.tmp / "out")
    fails(proc, "exit code 3")
    rd = run_dir_of(proc)
    assert attempts_of(rd) == ["0", "1", "2"]
    for n in range(3):
        assert (rd / "attempts" / str(n) / "stderr").read_text().strip() == "attempt %d" % n


def test_no_retries_by_default(sb):
    wdl = write(sb.work / "flaky.wdl", FAILING_WDL)
    proc = sb.run("run", wdl, "-s", "-o", sb.tmp / "out")
    fails(proc, "exit code 3")
    assert attempts_of(run_dir_of(proc)) == ["0"]


def test_run_task_retries_lets_a_task_recover(sb):
    wdl = write(sb.work / "recovers.wdl", RECOVERING_WDL)
    cfg = sb.write("c.toml", RETRIES_DOC)
    proc = sb.run("run", wdl, "-s", "-c", cfg, "-o", sb.tmp / "out")
    assert outputs_of(proc) == {"recovers.s": "attempt 2"}
    assert attempts_of(run_dir_of(proc)) == ["0", "1", "2"]


def test_task_max_retries_overrides_run_task_retries(sb):
    wdl = write(sb.work / "capped.wdl", CAPPED_WDL)
    cfg = sb.write("c.toml", RETRIES_3_DOC)
    proc = sb.run("run", wdl, "-s", "-c", cfg, "-o", sb.tmp / "out")
    fails(proc, "exit code 3")
    assert attempts_of(run_dir_of(proc)) == ["0", "1"]


GREEDY_WDL = """
    version 1.2

    task greedy {
      command <<<
        echo "ran with ~{task.cpu} cpu"
      >>>
      requirements {
        cpu: 9999
        memory: "10 MiB"
      }
      output {
        String s = read_string(stdout())
      }
    }
"""
GREEDY_MEMORY_WDL = """
    version 1.1

    task hungry {
      command <<<
        echo ran
      >>>
      runtime {
        memory: "9999 TiB"
      }
      output {
        String s = read_string(stdout())
      }
    }
"""
TRY_WITH_MAX_DOC = toml_doc("cpu try_with_max", """
    [run.task]
    cpu_limit_behavior = "try_with_max"
""")
DENY_DOC = toml_doc("cpu deny", """
    [run.task]
    cpu_limit_behavior = "deny"
    memory_limit_behavior = "try_with_max"
""")
MEMORY_TRY_DOC = toml_doc("memory try_with_max", """
    run.task.memory_limit_behavior = "try_with_max"
""")


def test_cpu_limit_behavior_try_with_max_runs_with_a_warning(sb):
    wdl = write(sb.work / "greedy.wdl", GREEDY_WDL)
    cfg = sb.write("c.toml", TRY_WITH_MAX_DOC)
    proc = sb.run("run", wdl, "-s", "-c", cfg, "-o", sb.tmp / "out")
    out = outputs_of(proc)
    assert out["greedy.s"].startswith("ran with "), out
    assert re.search(r"(?i)warn", proc.stderr) and "9999" in proc.stderr, proc.stderr


def test_cpu_limit_behavior_try_with_max_task_sees_the_clamped_cpu(sb):
    wdl = write(sb.work / "greedy.wdl", GREEDY_WDL)
    cfg = sb.write("c.toml", TRY_WITH_MAX_DOC)
    out = outputs_of(sb.run("run", wdl, "-s", "-c", cfg, "-o", sb.tmp / "out"))
    assert float(out["greedy.s"].split()[2]) <= (os.cpu_count() or 1), "the cpu request was not clamped: %r" % out


@pytest.mark.parametrize("doc", [None, DENY_DOC], ids=["default", "deny"])
def test_cpu_limit_behavior_deny_refuses_the_task(sb, doc):
    wdl = write(sb.work / "greedy.wdl", GREEDY_WDL)
    args = ["-s", "-o", sb.tmp / "out"]
    if doc is not None:
        args += ["-c", sb.write("c.toml", doc)]
    proc = sb.run("run", wdl, *args)
    fails(proc, "cpu_limit_behavior", "9999")
    rd = run_dir_of(proc) if RUN_DIR_RE.search(proc.stderr) else None
    if rd is not None and (rd / "attempts").exists():
        assert not any((rd / "attempts" / a / "stdout").exists() and (rd / "attempts" / a / "stdout").read_text()
                       for a in os.listdir(str(rd / "attempts"))), "the task ran anyway"


def test_memory_limit_behavior(sb):
    wdl = write(sb.work / "hungry.wdl", GREEDY_MEMORY_WDL)
    fails(sb.run("run", wdl, "-s", "-o", sb.tmp / "out1"), "memory_limit_behavior")
    cfg = sb.write("c.toml", MEMORY_TRY_DOC)
    proc = sb.run("run", wdl, "-s", "-c", cfg, "-o", sb.tmp / "out2")
    assert outputs_of(proc) == {"hungry.s": "ran"}
    assert re.search(r"(?i)warn", proc.stderr), proc.stderr


def stamps_wdl(python):
    return """
        version 1.2

        workflow pair {
          scatter (i in [1, 2]) {
            call stamp { input: i = i }
          }
          output {
            Array[Array[String]] times = stamp.times
          }
        }

        task stamp {
          input {
            Int i
          }
          command <<<
            '%s' -c 'import time; print(repr(time.time()))'
            sleep 1.5
            '%s' -c 'import time; print(repr(time.time()))'
          >>>
          requirements {
            cpu: 1
            memory: "10 MiB"
          }
          output {
            Array[String] times = read_lines(stdout())
          }
        }
    """ % (python, python)


BACKEND_CPU_DOC = toml_doc("named local backend", """
    [run]
    backend = "mine"

    [run.backends.mine]
    type = "local"
    cpu = 1
""")


def run_stamps(sb, cpu):
    wdl = write(sb.work / "pair.wdl", stamps_wdl(sys.executable))
    cfg = sb.write("c%d.toml" % cpu, BACKEND_CPU_DOC.replace("cpu = 1", "cpu = %d" % cpu))
    proc = sb.run("run", wdl, "-s", "-c", cfg, "-o", sb.tmp / ("out%d" % cpu))
    times = [[float(x) for x in t] for t in outputs_of(proc)["pair.times"]]
    assert len(times) == 2 and all(len(t) == 2 and t[0] <= t[1] for t in times), times
    return sorted(times)


def test_local_backend_cpu_1_runs_one_task_at_a_time(sb):
    (s1, e1), (s2, e2) = run_stamps(sb, 1)
    assert e1 <= s2, "two 1-cpu tasks overlapped on a 1-cpu backend: %r, %r" % ([s1, e1], [s2, e2])


def test_local_backend_with_two_cpus_overlaps_tasks(sb):
    """The control for the test above: it can see overlapping tasks."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("this host has a single CPU")
    (s1, e1), (s2, e2) = run_stamps(sb, 2)
    assert s2 < e1, "two 1-cpu tasks did not overlap on a 2-cpu backend: %r, %r" % ([s1, e1], [s2, e2])


def test_run_fail_fast_is_accepted_by_run(sb):
    cfg = sb.write("c.toml", toml_doc("fail fast", """
        [run]
        fail = "fast"
    """))
    outputs_of(sb.hello("-s", "-c", cfg, "-o", sb.tmp / "out"))


# --------------------------------------------------------------------------------------------
# 6. the TOML reader
# --------------------------------------------------------------------------------------------

VALID_TOML = [
    ("dotted-keys", 'a.b.c = 1\na.b.d = 2\na . "e f" . g = 3\n'),
    ("dotted-keys-inside-a-table", "[t]\na.b = 1\na.c = 2\n[t.x]\ny = 1\n"),
    ("dotted-key-then-subtable-header", "a.b = 1\n[a.c]\nd = 1\n"),
    ("implicit-super-table-later", "[a.b]\nc = 1\n[a]\nd = 2\n"),
    ("implicit-tables", "[x.y.z]\nw = 1\n[x]\nv = 2\n"),
    ("inline-tables", 'x = { a = 1, b = { c = [1, {d = 2}] }, "q k" = "v" }\nempty = {}\n'),
    ("inline-table-dotted-keys", "a = { b.c = 1, b.d = 2 }\n"),
    ("inline-table-tabs", "a = {\tb = 1\t}\n"),
    ("arrays-of-tables", "[[p]]\nn = 1\n[[p]]\nn = 2\n[p.sub]\nq = 1\n[[p.list]]\nz = 1\n[[p.list]]\nz = 2\n"),
    ("array-of-tables-in-a-table", "[a]\n[[a.b]]\nx = 1\n[[a.b]]\nx = 2\n"),
    ("array-of-tables-subtable-per-element", "[[a]]\n[a.b]\nc = 1\n[[a]]\n[a.b]\nc = 2\n"),
    ("array-of-tables-then-super-table", "[[a.b]]\n[a]\nc = 1\n"),
    ("nested-arrays", 'a = [[1, 2], [3, [4]], ["x", \'y\'], [], [{}], [[[]]]]\n'),
    ("mixed-type-array", 'a = [1, "a", 2.5, true, [1], {x = 1}]\n'),
    ("multi-line-array-with-comments", "a = [\n  1, # one\n  2,\n  # nothing\n]\nb = [\n# only a comment\n]\n"),
    ("array-trailing-comma", "a = [ 1 , 2 , ]\n"),
    ("basic-string-escapes", 's = "a\\tb\\nc\\rd\\be\\ff\\"g\\\\h"\n'),
    ("unicode-escapes", 's = "\\u00e9\\u0041\\U0001F600\\U00000041"\n'),
    ("literal-string", "s = 'C:\\\\Users\\nodejs\\templates'\nt = 'He said \"hi\"'\n"),
    ("multi-line-basic", 's = """\nRoses are red\nViolets are blue"""\n'),
    ("multi-line-basic-line-ending-backslash",
     's = """\nThe quick brown \\\n\n\n  fox jumps over \\\n    the lazy dog."""\nt = """\\\n       ab\\\n       c\\\n       """\n'),
    ("line-ending-backslash-with-trailing-space", 's = """a \\  \n  b"""\n'),
    ("multi-line-basic-quotes", 's = """Here are two quotation marks: "". Simple enough."""\nt = """a""""\nu = """a"""""\nv = """"q""""\n'),
    ("multi-line-literal", "s = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n'''\nre = '''I [dw]on't need \\d{2} apples'''\n"),
    ("multi-line-literal-quotes", "s = '''a''''\nt = '''a'''''\n"),
    ("multi-line-basic-escapes", 's = """\\u00e9 \\t \\\\ \\""""\n'),
    ("empty-strings", "a = \"\"\nb = ''\nc = \"\"\"\"\"\"\nd = ''''''\ne = \"\"\"\n\"\"\"\n"),
    ("tabs-in-strings", "a = \"a\tb\"\nb = 'a\tb'\nc = \"\"\"a\tb\"\"\"\nd = '''a\tb'''\n"),
    ("non-ascii", 'emoji = "😀"\n"ключ" = "значение"\n# комментарий\n'),
    ("integers", "a = 42\nb = +17\nc = -17\nd = 0\ne = +0\nf = -0\ng = 1_000\nh = 5_349_221\ni = 9223372036854775807\nj = -9223372036854775808\n"),
    ("hex-oct-bin", "h = 0xDEAD_beef\nh2 = 0x00ff\no = 0o7_5\no2 = 0o0\nb = 0b1_0\nb2 = 0b0000_0001\n"),
    ("floats", "f = [1.5, -2e10, 3E-2, 6.626e-34, 0.0, -0.0, +0.0, 1_0.0_1, 1e1_0, 2.5e+3, 5e+22, 1e06, -0.01]\n"),
    ("special-floats", "a = inf\nb = +inf\nc = -inf\nd = nan\ne = +nan\nf = -nan\n"),
    ("booleans", "t = true\nf = false\narr = [true, false]\n"),
    ("offset-date-times", "a = 1979-05-27T07:32:00Z\nb = 1979-05-27T00:32:00-07:00\nc = 1979-05-27T00:32:00.999999+07:30\nd = 1979-05-27 07:32:00Z\ne = 1979-05-27t07:32:00z\nf = 1979-05-27T07:32:00-00:00\n"),
    ("fractional-seconds", "a = 1979-05-27T00:32:00.1234567Z\nb = 1979-05-27T07:32:00.5\nc = 10:00:00.123456789\nd = 00:00:00.1\n"),
    ("local-date-times", "a = 1979-05-27T07:32:00\nb = 1979-05-27T00:32:00.999999\n"),
    ("local-dates", "a = 1979-05-27\nb = 2000-02-29\n"),
    ("local-times", "a = 07:32:00\nb = 00:32:00.999999\nc = 23:59:59\n"),
    ("dates-in-arrays", "a = [07:32:00, 1979-05-27, 1979-05-27T07:32:00Z, 1979-05-27T07:32:00]\n"),
    ("comments-everywhere", "# start\n[ a . b ] # after a header\nk = true # after a value\n  # indented\nl = [ # open\n 1, # one\n] # close\n[[c]] # array header\n#end"),
    ("quoted-keys", '"quoted key" = 1\n\'lit key\' = 2\n"a.b" = 3\n"" = 4\nx."y z".w = 5\n"\\u00e9" = 6\n'),
    ("quoted-header-keys", '["a"."b"]\nc = 1\n[\'d\'.e]\nf = 1\n["x y".z]\n'),
    ("bare-keys-that-look-like-values", "1234 = 5\n-_ = 6\ntrue = 7\ninf = 8\nnan = 9\n1979-05-27 = 10\n"),
    ("whitespace-around-keys-and-headers", "  k = 1\n\tl\t=\t2\n  [  a  ]  \n  [[ b ]]\n"),
    ("crlf-line-endings", "a = 1\r\nb = \"x\"\r\n[t]\r\nc = [\r\n 1,\r\n]\r\n"),
    ("no-newline-at-end", "x = 1"),
    ("comment-without-newline-at-end", "x = 1 # end\n#last"),
    ("empty-document", ""),
    ("only-comments", "# a\n\n   # b\n"),
    ("empty-values", "a = {}\nb = []\n"),
    ("header-only-tables", "[x]\n[x.y]\n[x.z]\n"),
    ("deep-dotted-key-in-array-of-tables", "[[a]]\nb.c = 1\n[a.b.d]\n"),
]
INVALID_TOML = [
    ("duplicate-key", "a = 1\na = 2\n"),
    ("duplicate-quoted-key", '"x" = "a"\nx = "b"\n'),
    ("duplicate-literal-key", "'x' = 1\n\"x\" = 2\n"),
    ("redefined-table", "[a]\n[a]\n"),
    ("redefined-super-table", "[a.b]\n[a]\n[a]\n"),
    ("redefined-implicit-table-twice", "[a.b]\nc = 1\n[a]\nb = 1\n"),
    ("key-then-table", "a = 1\n[a]\n"),
    ("inline-table-reopened-by-header", "a = { b = 1 }\n[a]\n"),
    ("inline-table-extended-by-dotted-key", "a = { b = 1 }\na.c = 2\n"),
    ("inline-table-nested-reopened", "a = {b = {c = 1}}\n[a.b]\n"),
    ("inline-table-subtable-by-dotted-header", "a = {b.c = 1}\n[a.b]\n"),
    ("inline-table-duplicate-key", "a = {a = 1, a = 2}\n"),
    ("inline-table-duplicate-dotted-key", "a = { b.c = 1, b.c = 2 }\n"),
    ("inline-table-dotted-extends-inline", "a = { b = {c = 1}, b.d = 2 }\n"),
    ("inline-table-trailing-comma", "a = { b = 1, }\n"),
    ("inline-table-newline", "a = { b = 1\n, c = 2 }\n"),
    ("inline-table-newline-after-comma", "x = {a = 1,\nb = 2}\n"),
    ("static-array-extended-by-array-of-tables", "a = [1]\n[[a]]\n"),
    ("empty-static-array-extended", "a = []\n[[a]]\n"),
    ("inline-array-of-tables-extended", "a = {b = [ ]}\n[[a.b]]\n"),
    ("static-array-of-tables-extended", "[a]\nb = [{c = 1}]\n[[a.b]]\n"),
    ("static-array-of-tables-subtable", "a = [{b = 1}]\n[a.c]\n"),
    ("array-of-tables-then-table", "[[a]]\n[a]\n"),
    ("table-then-array-of-tables", "[a]\n[[a]]\n"),
    ("dotted-key-then-value", "a.b = 1\na.b.c = 2\n"),
    ("dotted-key-table-then-inline", "a.b = 1\na = {}\n"),
    ("table-in-array-element-redefined", "[[a]]\nb = 1\n[a.b]\n"),
    ("value-then-dotted-table", "x = 1\n[x.y]\n"),
    ("header-after-dotted-key-in-table", "[a]\nb.c = 1\n[a.b]\n"),
    ("header-after-dotted-key-in-table-deeper", "[a]\nb.c.d = 1\n[a.b]\n"),
    ("header-after-dotted-key-top-level", "a.b.c = 1\n[a.b]\nd = 1\n"),
    ("super-header-after-dotted-key", "a.b.c = 1\n[a]\nd = 1\n"),
    ("header-after-dotted-key-in-named-table", "[t]\na.b = 1\n[t.a]\n"),
    ("unterminated-basic-string", 's = "abc\n'),
    ("unterminated-literal-string", "s = 'abc\n"),
    ("unterminated-multi-line-basic", 's = """abc\n'),
    ("unterminated-multi-line-literal", "s = '''abc\n"),
    ("newline-in-quoted-key", '"a\nb" = 1\n'),
    ("bad-escape", 's = "\\q"\n'),
    ("bad-escape-x", 'x = "\\x41"\n'),
    ("bad-escape-e", 'x = "\\e"\n'),
    ("bad-escape-space", 'k = "\\ "\n'),
    ("short-unicode-escape", 's = "\\u12"\n'),
    ("backslash-space-in-multi-line", 'a = """\\ x"""\n'),
    ("missing-value", "a = \n"),
    ("missing-value-eof", "a ="),
    ("missing-key", "= 1\n"),
    ("missing-equals", "a 1\n"),
    ("two-keys", " a b = 1\n"),
    ("two-pairs-on-a-line", "a = 1 b = 2\n"),
    ("two-strings", 'a = "x" "y"\n'),
    ("trailing-dot-key", "a.  = 1\n"),
    ("empty-header", "[]\n"),
    ("unclosed-header", "[a\n"),
    ("unbalanced-header", "[a]]\n"),
    ("unbalanced-array-header", "[[a]\n"),
    ("space-in-array-header-brackets", "[[a] ]\n"),
    ("space-in-array-header-open", "[ [a]]\n"),
    ("array-missing-comma", "a = [1 2]\n"),
    ("array-double-comma", "a = [1,,2]\n"),
    ("array-only-comma", "a = [,]\n"),
    ("leading-zero", "a = 01\n"),
    ("leading-zero-underscore", "x = 0_1\n"),
    ("double-underscore", "a = 1__0\n"),
    ("leading-underscore", "a = _1\n"),
    ("trailing-underscore", "a = 1_\n"),
    ("hex-trailing-underscore", "x = 0xABC_\n"),
    ("empty-hex", "a = 0x\n"),
    ("signed-hex", "a = +0x1\n"),
    ("uppercase-hex-prefix", "x = 0X10\n"),
    ("bad-octal-digit", "a = 0o8\n"),
    ("bad-binary-digit", "x = 0b102\n"),
    ("float-trailing-dot", "a = 1.\n"),
    ("float-leading-dot", "a = .1\n"),
    ("float-dot-exponent", "x = 1.e1\n"),
    ("float-empty-exponent", "a = 1e\n"),
    ("float-fractional-exponent", "x = 1e1.5\n"),
    ("float-two-dots", "x = 1.5.5\n"),
    ("double-sign", "x = --1\n"),
    ("inf-suffix", "a = inf1\n"),
    ("infinity", "x = infinity\n"),
    ("nan-underscore", "x = nan_\n"),
    ("uppercase-true", "a = TRUE\n"),
    ("true-suffix", "a = true1\n"),
    ("truefalse", "x = truefalse\n"),
    ("partial-true", "x = tru\n"),
    ("date-time-without-seconds", "a = 1979-05-27T07:32\n"),
    ("date-time-empty-fraction", "x=1979-05-27T07:32:00.Z\n"),
    ("short-month", "x = 1979-5-27\n"),
    ("date-with-trailing-t", "x = 1979-05-27T\n"),
    ("date-space-partial-time", "x = 1979-05-27 07:32\n"),
]
# Invalid documents the reader accepts, or chokes on with something other than ConfigError.
INVALID_TOML += [
    ("month-13", "a = 1979-13-01\n"),
    ("february-30", "a = 1979-02-30\n"),
    ("hour-25", "a = 25:00:00\n"),
    ("hour-24", "x = 1979-05-27T24:00:00\n"),
    ("minute-60", "x = 07:60:00\n"),
    ("second-60", "x = 1979-05-27T07:32:60Z\n"),
    ("offset-25-hours", "a = 2000-01-01T00:00:00+25:00\n"),
    ("unicode-escape-beyond-max", 'a = "\\U00110000"\n'),
    ("surrogate-escape", 'x = "\\ud800"\n'),
    ("control-char-in-basic-string", 'k = "a\x01b"\n'),
    ("control-char-in-literal-string", "a = 'x\x7fy'\n"),
    ("control-char-in-multi-line-basic", 'x = """ \x7f """\n'),
    ("control-char-in-multi-line-literal", "x = '''a\x1bb'''\n"),
    ("nul-in-comment", "a = 1 # \x00\n"),
    ("control-char-in-comment", "# \x08\na = 1\n"),
    ("lone-cr-at-end", "a = 1\r\n\r"),
    ("lone-cr-between-keys", "a = 1\rb = 2\n"),
    ("lone-cr-in-multi-line-string", "a = '''x\ry'''\n"),
    ("lone-cr-after-line-ending-backslash", 'a = """x\\\n  \ry"""\n'),
]
# Valid documents the reader reads differently from tomllib.
VALID_TOML += [
    ("crlf-in-multi-line-strings", "a = '''x\r\ny'''\r\nb = \"\"\"\r\nu\r\nv\"\"\"\r\n"),
]


def _param(name, text):
    return pytest.param(text, id=name)


@needs_tomllib
@pytest.mark.parametrize("text", [_param(n, t) for n, t in VALID_TOML])
def test_reader_reads_valid_toml_like_tomllib(text):
    assert assert_reader_matches_tomllib(text)[0] == "valid", "tomllib rejects this corpus document"


@needs_tomllib
@pytest.mark.parametrize("text", [_param(n, t) for n, t in INVALID_TOML])
def test_reader_rejects_invalid_toml_like_tomllib(text):
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)
    with pytest.raises(sprocket.ConfigError):
        reader(text)


@pytest.mark.parametrize("text", [_param(n, t) for n, t in INVALID_TOML])
def test_reader_errors_are_config_errors_with_a_position(text):
    """Without tomllib to compare with: the reader's error is a ConfigError at a line of the file."""
    with pytest.raises(sprocket.ConfigError) as e:
        reader(text, "corpus.toml")
    err = e.value
    assert "invalid TOML" in err.message
    assert err.span is not None, "no position"
    text_out = sprocket.format_diagnostic(err.message, err.span)
    m = re.match(r"^corpus\.toml:(\d+):(\d+): error: ", text_out)
    assert m, text_out
    assert 1 <= int(m.group(1)) <= text.count("\n") + 1


def test_reader_values_without_tomllib():
    """A spot check of the reader that runs on every Python (no tomllib needed)."""
    doc = reader(norm("""
        a.b = 1
        s = "\\u00e9\\t"
        m = \"\"\"
        x \\
           y\"\"\"
        l = 'C:\\\\n'
        n = [0x1F, 0o17, 0b101, 1_000, -0.5, 1e3, inf]
        t = { k = true, d = 1979-05-27, w = 1979-05-27T07:32:00Z, lt = 07:32:00 }
        [[arr]]
        x = 1
        [[arr]]
        x = 2
        [tab."q k"]
        z = nan
    """))
    assert doc["a"] == {"b": 1}
    assert doc["s"] == "\u00e9\t"
    assert doc["m"] == "x y"
    assert doc["l"] == "C:\\\\n"
    assert doc["n"][:6] == [31, 15, 5, 1000, -0.5, 1000.0] and math.isinf(doc["n"][6])
    assert type(doc["n"][5]) is float and type(doc["n"][0]) is int
    assert doc["t"]["k"] is True
    assert doc["t"]["d"] == datetime.date(1979, 5, 27)
    assert doc["t"]["w"] == datetime.datetime(1979, 5, 27, 7, 32, tzinfo=datetime.timezone.utc)
    assert doc["t"]["lt"] == datetime.time(7, 32)
    assert doc["arr"] == [{"x": 1}, {"x": 2}]
    assert math.isnan(doc["tab"]["q k"]["z"])


def _repo_toml_files():
    return sorted(p for p in REPO.rglob("*.toml") if ".git" not in p.parts and "node_modules" not in p.parts)


@needs_tomllib
@pytest.mark.parametrize("path", _repo_toml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_reader_matches_tomllib_on_repository_toml_files(path):
    assert assert_reader_matches_tomllib(path.read_text(encoding="utf-8"), str(path))[0] == "valid"


def test_repository_has_a_sprocket_toml():
    assert any(p.name == "sprocket.toml" for p in _repo_toml_files())


@needs_tomllib
@pytest.mark.parametrize("name,text", TOML_DOCS, ids=[n for n, _ in TOML_DOCS])
def test_reader_matches_tomllib_on_every_document_written_here(name, text):
    """(The corpus documents below have their own tests.)"""
    assert_reader_matches_tomllib(text.replace(DIR, EXAMPLE_DIR))


@needs_tomllib
def test_reader_matches_tomllib_on_the_seed(shared):
    text = seed_text(shared)
    for block in toml_blocks(text):
        assert assert_reader_matches_tomllib(block)[0] == "valid"
    for doc in (seed_backend_example(shared), uncomment(seed_backend_example(shared))):
        assert assert_reader_matches_tomllib(doc)[0] == "valid"


@needs_tomllib
def test_reader_matches_tomllib_on_config_init(sb):
    assert assert_reader_matches_tomllib(config_init(sb))[0] == "valid"


@needs_tomllib
def test_reader_matches_tomllib_on_the_uncommented_repository_sprocket_toml():
    text = uncomment((REPO / "sprocket.toml").read_text(encoding="utf-8"))
    assert assert_reader_matches_tomllib(text)[0] == "valid"


def test_toml_loads_without_tomllib_uses_the_reader(monkeypatch):
    """_toml_loads falls back on TomlReader when `import tomllib` fails (Python 3.9/3.10)."""
    monkeypatch.setitem(sys.modules, "tomllib", None)
    assert sprocket._toml_loads("[run.task]\nshell = \"zsh\"\n", "x.toml") == {"run": {"task": {"shell": "zsh"}}}
    with pytest.raises(sprocket.ConfigError):
        sprocket._toml_loads("[run]\nfail = \n", "x.toml")


def test_toml_loads_without_tomllib_bad_date_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tomllib", None)
    with pytest.raises(sprocket.ConfigError):
        sprocket._toml_loads("when = 1979-02-30\n", "x.toml")


def test_toml_loads_error_has_a_position():
    with pytest.raises(sprocket.ConfigError) as e:
        sprocket._toml_loads("a = 1\n[run]\nfail = \n", "x.toml")
    out = sprocket.format_diagnostic(e.value.message, e.value.span)
    assert re.match(r"^x\.toml:3:\d+: error: invalid TOML", out), out
