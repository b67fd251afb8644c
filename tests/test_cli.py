"""The command line around `check`: --version, hostile inputs, exit codes, the zipapp, and the
in-process API (``sprocket.main`` / ``sprocket.load``).

Nothing here may ever print a Python traceback.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import (DIAG_RE, REPO, SPROCKET, assert_diag, assert_ok, assert_sane, check_in_process,
                      diagnostics, run_check_subprocess, sprocket_argv)

VALID = """version 1.1

task hello {
  input {
    String who = "world"
  }
  command <<<
    echo "hello ~{who}"
  >>>
  output {
    String out = read_string(stdout())
  }
}

workflow main {
  call hello
  output {
    String greeting = hello.out
  }
}
"""

INVALID = """version 1.1

workflow main {
  Int x = y + 1
}
"""


def run(args, cwd=None, timeout=120):
    """``python3 ARGS...`` (``python3 sprocket.py`` itself: the tests of how it starts use this)."""
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd or REPO), stdin=subprocess.DEVNULL)


def sprocket(*args, cwd=None, timeout=120, env=None):
    """``python3 sprocket.py ARGS...`` in ``cwd`` (default: the repository)."""
    return subprocess.run(sprocket_argv(*[str(a) for a in args]), capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd or REPO), stdin=subprocess.DEVNULL, env=env)


def assert_error_reported(proc):
    """Exit 1 with at least one `path:LINE:COL: error:` line, no traceback."""
    assert_sane(proc)
    assert proc.returncode == 1, "expected exit 1, got %r\n%s" % (proc.returncode, proc.stderr)
    assert diagnostics(proc.stderr), "no `path:LINE:COL: error: ...` line:\n" + proc.stderr


def assert_file_error(proc, name):
    """Exit 1 with an `error:` about the file itself (a positioned one is fine too)."""
    assert_sane(proc)
    assert proc.returncode == 1, "expected exit 1, got %r\n%s" % (proc.returncode, proc.stderr)
    assert re.search(r"(^|: )error: ", proc.stderr, re.M), proc.stderr
    assert name in proc.stderr, "the message should name %s:\n%s" % (name, proc.stderr)


def assert_diag_or_ok(proc, name):
    """For pathological but conceivably valid input: exit 0, or exit 1 with an error naming the
    file -- `path:LINE:COL: error: ...`, or a file-level `error: ...` such as "nested too deeply"."""
    assert_sane(proc)
    if proc.returncode == 1:
        assert diagnostics(proc.stderr) or re.search(r"^error: .*%s" % re.escape(name), proc.stderr, re.M), (
            "exit 1 without a diagnostic:\n" + proc.stderr)


# --------------------------------------------------------------------------------------------
# --version
# --------------------------------------------------------------------------------------------

VERSION_RE = re.compile(r"^sprocket \d+\.\d+\.\d+\S*$")


def test_version_script():
    proc = run([str(SPROCKET), "--version"])
    assert proc.returncode == 0, proc.stderr
    assert VERSION_RE.match(proc.stdout.strip()), proc.stdout
    assert "Traceback" not in proc.stderr


def test_version_module(repo):
    proc = run(["-m", "sprocket", "--version"], cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert VERSION_RE.match(proc.stdout.strip()), proc.stdout


def test_version_from_another_directory(tmp_path):
    proc = run([str(SPROCKET), "--version"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert VERSION_RE.match(proc.stdout.strip()), proc.stdout


def test_tests_start_sprocket_as_python_runs_the_script(tmp_path, isolated_config):
    """conftest's sprocket_argv (tests/start_sprocket.py, bytecode compiled once a session) and
    `python3 sprocket.py` give the same output and exit status, the sprocket.toml found next to the
    program included; a copy of sprocket.py runs as itself, and an edited copy runs its own text."""
    bad = tmp_path / "bad.wdl"
    bad.write_text(INVALID)
    for args in (["--version"], ["config", "resolve"], ["check", str(bad)], ["run", "--help"]):
        literal, launched = run([str(SPROCKET)] + args, cwd=tmp_path), sprocket(*args, cwd=tmp_path)
        assert (launched.returncode, launched.stdout, launched.stderr) == (
            literal.returncode, literal.stdout, literal.stderr), args
        if args == ["config", "resolve"]:
            assert str(REPO / "sprocket.toml") in launched.stdout.splitlines()[0], launched.stdout
    copy = tmp_path / "bin" / "sprocket.py"
    copy.parent.mkdir()
    shutil.copy(str(SPROCKET), str(copy))
    (copy.parent / "sprocket.toml").write_text('[run.task]\nshell = "from-the-copy"\n')
    proc = subprocess.run(sprocket_argv("config", "resolve", prog=copy), capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 0 and str(copy.parent / "sprocket.toml") in proc.stdout.splitlines()[0], proc.stdout
    assert 'run.task.shell = "from-the-copy"' in proc.stdout, proc.stdout
    copy.write_text(SPROCKET.read_text().replace('__version__ = "', '__version__ = "9.', 1))
    proc = subprocess.run(sprocket_argv("--version", prog=copy), capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.stdout.startswith("sprocket 9."), proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------
# check: ordinary outcomes
# --------------------------------------------------------------------------------------------

def test_check_valid_file(tmp_path):
    path = tmp_path / "ok.wdl"
    path.write_text(VALID)
    proc = run_check_subprocess(path)
    assert_ok(proc)
    assert "error:" not in proc.stderr


def test_check_invalid_file_prints_diagnostic_with_source_and_caret(tmp_path):
    path = tmp_path / "bad.wdl"
    path.write_text(INVALID)
    proc = run_check_subprocess(path)
    dpath, line, col, msg = assert_diag(proc, 4, 11, "unknown name `y`")
    assert dpath.endswith("bad.wdl")
    # the offending source line is shown after the diagnostic
    lines = proc.stderr.splitlines()
    i = next(n for n, x in enumerate(lines) if DIAG_RE.match(x))
    assert any("Int x = y + 1" in x for x in lines[i + 1:i + 3]), proc.stderr


def test_check_several_files_all_valid(tmp_path):
    a, b = tmp_path / "a.wdl", tmp_path / "b.wdl"
    a.write_text(VALID)
    b.write_text(VALID.replace("workflow main", "workflow other"))
    assert_ok(run_check_subprocess(a, b))


def test_check_several_files_one_invalid(tmp_path):
    a, b = tmp_path / "a.wdl", tmp_path / "b.wdl"
    a.write_text(VALID)
    b.write_text(INVALID)
    proc = run_check_subprocess(a, b)
    assert_diag(proc, 4, 11, "unknown name", path="b.wdl")


def test_imports_resolve_relative_to_the_document_not_the_cwd(tmp_path):
    proj = tmp_path / "proj"
    (proj / "lib").mkdir(parents=True)
    (proj / "lib" / "tasks.wdl").write_text(
        "version 1.1\n\ntask t {\n  command <<< echo hi >>>\n  output {\n    Int n = 1\n  }\n}\n")
    (proj / "main.wdl").write_text(
        "version 1.1\n\nimport \"lib/tasks.wdl\"\n\nworkflow w {\n  call tasks.t\n}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_check_subprocess(os.path.relpath(proj / "main.wdl", elsewhere), cwd=str(elsewhere))
    assert_ok(proc)


def test_importing_a_file_that_is_not_wdl_names_it_without_echoing_its_lines(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-LINE:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/bin/false\n")
    main = tmp_path / "proj" / "main.wdl"
    main.parent.mkdir()
    main.write_text('version 1.1\n\nimport "../secret.txt"\n\nworkflow w {\n}\n')
    proc = run_check_subprocess(main)
    assert_diag(proc, 3, 1, "is not a WDL document", path="main.wdl", also=("secret.txt",))
    assert "SECRET" not in proc.stderr and "_apt" not in proc.stderr, proc.stderr
    # an imported WDL document with a syntax error still shows its line
    (tmp_path / "proj" / "lib.wdl").write_text("version 1.1\n\ntask t {\n  command <<< >>>\n  outputs {}\n}\n")
    main.write_text('version 1.1\n\nimport "lib.wdl"\n\nworkflow w {\n}\n')
    proc = run_check_subprocess(main)
    assert_diag(proc, 5, None, None, path="lib.wdl")
    assert "outputs {}" in proc.stderr


def test_warnings_do_not_fail_the_check(tmp_path):
    """Deprecated-but-valid constructs may warn; exit code stays 0 and nothing says `error:`."""
    path = tmp_path / "warn.wdl"
    path.write_text('version 1.1\n\nworkflow w {\n  Int n = 1\n  String s = "n=" + n\n}\n')
    proc = run_check_subprocess(path)
    assert_ok(proc)
    for line in proc.stderr.splitlines():
        if ": warning: " in line:
            assert re.match(r"^(.+):(\d+):(\d+): warning: .+$", line), line


def test_non_ascii_text_is_fine(tmp_path):
    path = tmp_path / "unicode.wdl"
    path.write_text('version 1.1\n\n# café ✓ 日本語\nworkflow w {\n  String s = "héllo ✓ 日本"\n}\n',
                    encoding="utf-8")
    assert_ok(run_check_subprocess(path))


# --------------------------------------------------------------------------------------------
# check: hostile inputs.  Never a traceback; an `error:` and exit 1 (a document with nothing in
# it: a warning, an error under --strict).
# --------------------------------------------------------------------------------------------

def assert_empty_document(path):
    """Nothing in it: a warning (Cromwell ignores such a file), an error under --strict."""
    proc = run_check_subprocess(path)
    assert_sane(proc)
    assert proc.returncode == 0 and diagnostics(proc.stderr, "warning"), proc.stderr
    assert_error_reported(run_check_subprocess("--strict", path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wdl"
    path.write_bytes(b"")
    assert_empty_document(path)


def test_whitespace_only_file(tmp_path):
    path = tmp_path / "blank.wdl"
    path.write_text("\n\n   \n\t\n")
    assert_empty_document(path)


def test_comment_only_file(tmp_path):
    path = tmp_path / "comment.wdl"
    path.write_text("# just a comment\n")
    assert_empty_document(path)


def test_version_only_file(tmp_path):
    """`version 1.1` and nothing else: either accepted or reported, never a crash."""
    path = tmp_path / "version_only.wdl"
    path.write_text("version 1.1\n")
    assert_diag_or_ok(run_check_subprocess(path), path.name)


def test_binary_garbage(tmp_path):
    path = tmp_path / "garbage.wdl"
    path.write_bytes(bytes(range(256)) * 4 + b"\x00\xff\xfe\x80version 1.1\x00")
    assert_file_error(run_check_subprocess(path), path.name)


def test_invalid_utf8_after_a_valid_start(tmp_path):
    path = tmp_path / "latin1.wdl"
    path.write_bytes(b'version 1.1\n\nworkflow w {\n  String s = "caf\xe9"\n}\n')
    assert_file_error(run_check_subprocess(path), path.name)


def test_nul_bytes_in_source(tmp_path):
    path = tmp_path / "nul.wdl"
    path.write_bytes(b"version 1.1\n\nworkflow w {\n  Int x = 1\x00\n}\n")
    assert_error_reported(run_check_subprocess(path))


def test_directory(tmp_path):
    proc = run_check_subprocess(tmp_path)
    assert_sane(proc)
    assert proc.returncode == 1
    assert "error:" in proc.stderr, proc.stderr


def test_missing_path(tmp_path):
    proc = run_check_subprocess(tmp_path / "does_not_exist.wdl")
    assert_sane(proc)
    assert proc.returncode == 1
    assert "error:" in proc.stderr, proc.stderr
    assert "does_not_exist.wdl" in proc.stderr


def test_missing_path_among_valid_ones(tmp_path):
    good = tmp_path / "good.wdl"
    good.write_text(VALID)
    proc = run_check_subprocess(good, tmp_path / "nope.wdl")
    assert_sane(proc)
    assert proc.returncode == 1
    assert "nope.wdl" in proc.stderr


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    path = tmp_path / "secret.wdl"
    path.write_text(VALID)
    path.chmod(0)
    proc = run_check_subprocess(path)
    assert_sane(proc)
    assert proc.returncode == 1 and "error:" in proc.stderr


DEEP = 5000


def _doc(expr):
    return "version 1.1\n\nworkflow w {\n  Int x = %s\n}\n" % expr


DEEP_DOCS = [
    ("parentheses", _doc("(" * DEEP + "1" + ")" * DEEP)),
    ("unclosed-parentheses", _doc("(" * DEEP + "1")),
    ("array-literal-brackets", _doc("length(" + "[" * DEEP + "1" + "]" * DEEP + ")")),
    ("unclosed-brackets", _doc("[" * DEEP)),
    ("map-literals", _doc("length(" + "{1: " * DEEP + "1" + "}" * DEEP + ")")),
    ("logical-not", "version 1.1\n\nworkflow w {\n  Boolean b = " + "!" * DEEP + "true\n}\n"),
    ("unary-minus", _doc("-" * DEEP + "1")),
    ("if-then-else", _doc("if true then " * DEEP + "1" + " else 2" * DEEP)),
    ("function-calls", _doc("length(" * DEEP + "[1]" + ")" * DEEP)),
    ("index-chain", "version 1.1\n\nworkflow w {\n  Array[Int] a = [1]\n  Int x = a" + "[0]" * DEEP + "\n}\n"),
    ("member-chain", "version 1.1\n\nworkflow w {\n  Pair[Int, Int] p = (1, 2)\n  Int x = p" + ".left" * DEEP + "\n}\n"),
    ("string-placeholders", "version 1.1\n\nworkflow w {\n  String s = " + '"~{' * DEEP + '1' + '}"' * DEEP + "\n}\n"),
    ("array-types", "version 1.1\n\nworkflow w {\n  input {\n    " + "Array[" * DEEP + "Int" + "]" * DEEP + " x\n  }\n}\n"),
    ("scatter-blocks", "version 1.1\n\nworkflow w {\n" + "scatter (i in [1]) {\n" * DEEP + "}\n" * DEEP + "}\n"),
    ("if-blocks", "version 1.1\n\nworkflow w {\n" + "if (true) {\n" * DEEP + "}\n" * DEEP + "}\n"),
    ("meta-objects", "version 1.1\n\nworkflow w {\n  meta {\n    a: " + "{b: " * DEEP + "1" + "}" * DEEP + "\n  }\n}\n"),
    ("meta-arrays", "version 1.1\n\nworkflow w {\n  meta {\n    a: " + "[" * DEEP + "]" * DEEP + "\n  }\n}\n"),
]


@pytest.mark.parametrize("name, text", [pytest.param(n, t, id=n) for n, t in DEEP_DOCS])
def test_deep_nesting(tmp_path, name, text):
    path = tmp_path / ("%s.wdl" % name)
    path.write_text(text)
    start = time.monotonic()
    proc = run_check_subprocess(path, timeout=120)
    assert_diag_or_ok(proc, path.name)
    assert time.monotonic() - start < 60, "check took too long on %s" % name


def test_deep_nesting_in_process(tmp_path):
    """In-process too: the engine must not leave the interpreter's recursion limit broken."""
    path = tmp_path / "deep.wdl"
    path.write_text(_doc("(" * DEEP + "1" + ")" * DEEP))
    proc = check_in_process(path)
    assert_diag_or_ok(proc, path.name)
    good = tmp_path / "good.wdl"
    good.write_text(VALID)
    assert_ok(check_in_process(good))


def test_very_long_line(tmp_path):
    path = tmp_path / "long.wdl"
    path.write_text(_doc(" + ".join(["1"] * 20000) + " @"))
    assert_error_reported(run_check_subprocess(path))


def test_huge_string_literal(tmp_path):
    path = tmp_path / "bigstr.wdl"
    path.write_text('version 1.1\n\nworkflow w {\n  String s = "%s"\n}\n' % ("x" * 2_000_000))
    assert_ok(run_check_subprocess(path))


def test_many_tasks(tmp_path):
    parts = ["version 1.1\n"]
    for i in range(400):
        parts.append("task t%d {\n  input {\n    Int x = %d\n  }\n  command <<< echo ~{x} >>>\n"
                     "  output {\n    Int y = x + 1\n  }\n}\n" % (i, i))
    parts.append("workflow w {\n")
    for i in range(400):
        parts.append("  call t%d\n" % i)
    parts.append("  output {\n    Int total = t0.y + t399.y\n  }\n}\n")
    path = tmp_path / "many.wdl"
    path.write_text("".join(parts))
    assert_ok(run_check_subprocess(path))


# --------------------------------------------------------------------------------------------
# In-process API
# --------------------------------------------------------------------------------------------

def test_main_returns_exit_code(tmp_path):
    good, bad = tmp_path / "good.wdl", tmp_path / "bad.wdl"
    good.write_text(VALID)
    bad.write_text(INVALID)
    assert check_in_process(good).returncode == 0
    proc = check_in_process(bad)
    assert_diag(proc, 4, 11, "unknown name `y`")


def test_load_returns_document_and_raises_wdl_error(tmp_path):
    sys.path.insert(0, str(REPO))
    import sprocket

    good, bad = tmp_path / "good.wdl", tmp_path / "bad.wdl"
    good.write_text(VALID)
    bad.write_text(INVALID)
    assert sprocket.load(str(good)) is not None
    with pytest.raises(sprocket.WdlError) as info:
        sprocket.load(str(bad))
    err = info.value
    assert "unknown name" in err.message
    assert (err.span.line, err.span.col) == (4, 11)
    assert str(err.span.path).endswith("bad.wdl")


# --------------------------------------------------------------------------------------------
# zipapp: the single file runs as a .pyz too
# --------------------------------------------------------------------------------------------

def readme_zipapp_recipe():
    """The shell commands of the README's zipapp recipe (Install section)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"\*\*zipapp\.\*\*.*?```shell\n(.*?)```", text, re.S)
    assert m, "README.md has no zipapp recipe under **zipapp.**"
    return textwrap.dedent(m.group(1))


def python3_on_path(tmp):
    """A PATH whose `python3` is the Python running the tests (the README's commands say `python3`)."""
    bin_dir = tmp / "python-bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(sys.executable)
    return "%s%s%s" % (bin_dir, os.pathsep, os.environ.get("PATH", ""))


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    """Build sprocket.pyz with the README's recipe, run as written in a copy of the repository's
    sprocket.py (the recipe's last line runs `sprocket.pyz --version`)."""
    tmp = tmp_path_factory.mktemp("zipapp")
    shutil.copy(SPROCKET, tmp / "sprocket.py")
    env = dict(os.environ, PATH=python3_on_path(tmp))
    proc = subprocess.run(["sh", "-ec", readme_zipapp_recipe()], cwd=str(tmp), env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert VERSION_RE.match(proc.stdout.strip()), proc.stdout
    return tmp / "sprocket.pyz"


def test_zipapp_from_the_readme_recipe_imports_its_bytecode(pyz, tmp_path):
    """zipimport reads `sprocket.pyc` at the top of the archive (never __pycache__/): the module
    comes from there, not from compiling sprocket.py."""
    proc = run(["-c", "import sys; sys.path.insert(0, sys.argv[1]); import sprocket; print(sprocket.__file__)",
                str(pyz)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == os.path.join(str(pyz), "sprocket.pyc")


def test_zipapp_of_another_python_falls_back_to_the_source(pyz, tmp_path):
    """The README's promise: a Python whose bytecode differs (another magic number) ignores the
    archive's sprocket.pyc and compiles the sprocket.py beside it."""
    app = tmp_path / "app"
    shutil.copytree(str(pyz.parent / "build" / "app"), str(app))
    pyc = bytearray((app / "sprocket.pyc").read_bytes())
    pyc[0] ^= 0xFF
    (app / "sprocket.pyc").write_bytes(bytes(pyc))
    other = tmp_path / "other.pyz"
    assert run(["-m", "zipapp", str(app), "-o", str(other)]).returncode == 0
    proc = run([str(other), "--version"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert VERSION_RE.match(proc.stdout.strip()), proc.stdout
    proc = run(["-c", "import sys; sys.path.insert(0, sys.argv[1]); import sprocket; print(sprocket.__file__)",
                str(other)], cwd=tmp_path)
    assert proc.stdout.strip() == os.path.join(str(other), "sprocket.py"), proc.stderr


def test_zipapp_version(pyz, tmp_path):
    proc = run([str(pyz), "--version"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert VERSION_RE.match(proc.stdout.strip()), proc.stdout


def test_zipapp_check_valid(pyz, tmp_path):
    path = tmp_path / "ok.wdl"
    path.write_text(VALID)
    assert_ok(run([str(pyz), "check", str(path)], cwd=tmp_path))


def test_zipapp_check_invalid(pyz, tmp_path):
    path = tmp_path / "bad.wdl"
    path.write_text(INVALID)
    proc = run([str(pyz), "check", str(path)], cwd=tmp_path)
    assert_diag(proc, 4, 11, "unknown name `y`")


# --------------------------------------------------------------------------------------------
# install: sprocket.py, its bytecode and a `sprocket` launcher in a directory
# --------------------------------------------------------------------------------------------

def install(dest, cwd):
    return run([str(SPROCKET), "install", str(dest)], cwd=cwd)


def assert_refused(proc, *fragments):
    """Exit 1 with one `error: ...` line naming what is wrong."""
    assert_sane(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_install_writes_a_launcher_that_imports_the_compiled_module(tmp_path):
    dest = tmp_path / "site" / "bin"  # made, parents too
    proc = install(dest, tmp_path)
    assert proc.returncode == 0, proc.stderr
    launcher = dest / "sprocket"
    assert proc.stdout.strip() == str(launcher)
    assert (dest / "sprocket.py").read_bytes() == SPROCKET.read_bytes()
    pyc = dest / "__pycache__" / ("sprocket.%s.pyc" % sys.implementation.cache_tag)
    assert pyc.is_file()
    assert os.access(str(launcher), os.X_OK)
    assert launcher.read_text().splitlines()[0] == "#!" + sys.executable
    # Run the launcher itself (its #! line), from elsewhere: the import reads the .pyc, which
    # matches the source (verbose import says so), and compiles nothing.
    env = dict(os.environ, PYTHONVERBOSE="1")
    proc = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert VERSION_RE.match(proc.stdout.strip()), proc.stdout
    assert "# %s matches %s" % (pyc, dest / "sprocket.py") in proc.stderr, proc.stderr[-3000:]
    assert "code object from '%s'" % pyc in proc.stderr
    wdl = tmp_path / "ok.wdl"
    wdl.write_text(VALID)
    assert_ok(subprocess.run([str(launcher), "check", str(wdl)], capture_output=True, text=True, timeout=120,
                             cwd=str(tmp_path), stdin=subprocess.DEVNULL))


def test_install_again_replaces_its_own_launcher_and_the_bytecode(tmp_path):
    dest = tmp_path / "bin"
    assert install(dest, tmp_path).returncode == 0
    pyc = dest / "__pycache__" / ("sprocket.%s.pyc" % sys.implementation.cache_tag)
    pyc.write_bytes(b"stale")
    (dest / "sprocket.py").write_text("an older version\n")
    proc = install(dest, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "sprocket.py").read_bytes() == SPROCKET.read_bytes()
    assert pyc.read_bytes() != b"stale"
    # The installed copy installs into its own directory too (compiling in place).
    proc = run([str(dest / "sprocket"), "install", str(dest)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "sprocket.py").read_bytes() == SPROCKET.read_bytes()


def test_install_refuses_to_replace_a_sprocket_file_it_did_not_write(tmp_path):
    dest = tmp_path / "bin"
    dest.mkdir()
    (dest / "sprocket").write_text("#!/bin/sh\nexec something-else\n")
    assert_refused(install(dest, tmp_path), str(dest / "sprocket"), "not a launcher written by")
    assert (dest / "sprocket").read_text() == "#!/bin/sh\nexec something-else\n"
    assert not (dest / "sprocket.py").exists()
    (dest / "sprocket").unlink()
    (dest / "sprocket").mkdir()
    assert_refused(install(dest, tmp_path), "not a launcher written by")


def test_install_refuses_a_directory_it_cannot_write(tmp_path):
    (tmp_path / "a-file").write_text("x")
    assert_refused(install(tmp_path / "a-file", tmp_path), "cannot install into", "not a directory")
    assert_refused(install(tmp_path / "a-file" / "bin", tmp_path), "cannot install into")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            assert_refused(install(locked, tmp_path), "cannot install into", "not writable")
        finally:
            locked.chmod(0o755)


def test_install_is_in_help():
    proc = sprocket("--help")
    assert proc.returncode == 0
    assert re.search(r"^\s+install\s+copy sprocket.py into DIR", proc.stdout, re.M), proc.stdout


# ============================================================================================
# Compatibility warnings on the command line (-q, --strict, run.strict in a config file) and
# imports from http(s) URLs.
# ============================================================================================

import socket  # noqa: E402
import urllib.request  # noqa: E402

from conftest import http_server, sprocket_run  # noqa: E402

WARN_DOC = 'version 1.1\n\nworkflow w {\n  Int n = "5"\n  String s = 1\n}\n'
WARN_AT = [(4, 11), (5, 14)]  # the two values


def _warnings(proc):
    return [(d[1], d[2]) for d in diagnostics(proc.stderr, "warning")]


def test_compat_warnings_printed_with_position_and_exit_0(tmp_path):
    """Each compatibility construct is a `path:LINE:COL: warning: ...` line, then the source line
    and a caret; `check` exits 0."""
    path = tmp_path / "warn.wdl"
    path.write_text(WARN_DOC)
    proc = run_check_subprocess(path)
    assert_ok(proc)
    assert _warnings(proc) == WARN_AT, proc.stderr
    lines = proc.stderr.splitlines()
    for i, line in enumerate(lines):
        if ": warning: " in line:
            assert line.startswith(str(path) + ":"), line
            assert "^" in lines[i + 2], "\n".join(lines[i:i + 3])


@pytest.mark.parametrize("where", ["after", "before"])
def test_quiet_hides_warnings(tmp_path, where):
    """`-q` (before or after `check`) prints no warning and still exits 0."""
    path = tmp_path / "warn.wdl"
    path.write_text(WARN_DOC)
    args = ["check", "-q", str(path)] if where == "after" else ["-q", "check", str(path)]
    proc = sprocket(*args, cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr


def test_quiet_still_prints_errors(tmp_path):
    """`-q` hides warnings, never errors."""
    path = tmp_path / "bad.wdl"
    path.write_text(INVALID)
    proc = sprocket("check", "-q", path, cwd=tmp_path)
    assert_diag(proc, 4, 11, "unknown name `y`")


def test_strict_makes_compat_warnings_errors(tmp_path):
    """`check --strict`: the same constructs are errors at the same positions, exit 1."""
    path = tmp_path / "warn.wdl"
    path.write_text(WARN_DOC)
    proc = sprocket("check", "--strict", path, cwd=tmp_path)
    for line, col in WARN_AT:
        assert_diag(proc, line, col)


@pytest.mark.parametrize("toml, rc", [
    ("run.strict = true\n", 1),
    ("[run]\nstrict = true\n", 1),
    ("run.strict = false\n", 0),
], ids=["dotted-true", "table-true", "false"])
def test_run_strict_in_config_file(tmp_path, toml, rc):
    """`run.strict = true` in a sprocket.toml given with `-c` does what `--strict` does."""
    cfg = tmp_path / "strict.toml"
    cfg.write_text(toml)
    path = tmp_path / "warn.wdl"
    path.write_text(WARN_DOC)
    env = dict(os.environ, SPROCKET_CONFIG_ROOT=str(tmp_path / "cfgroot"))
    env.pop("SPROCKET_CONFIG", None)
    proc = sprocket("check", "-c", cfg, path, cwd=tmp_path, env=env)
    if rc:
        assert_diag(proc, 4, 11)
    else:
        assert_ok(proc)
        assert _warnings(proc) == WARN_AT, proc.stderr


def test_run_strict_in_config_file_applies_to_run(tmp_path):
    """`sprocket run -c strict.toml` refuses a document that only warns, before running it; the
    same run without the config succeeds."""
    cfg = tmp_path / "strict.toml"
    cfg.write_text("run.strict = true\n")
    doc = tmp_path / "main.wdl"
    doc.write_text('version 1.0\n\nworkflow w {\n  Int n = "5"\n  output {\n    Int o = n\n  }\n}\n')
    env = dict(os.environ, SPROCKET_CONFIG_ROOT=str(tmp_path / "cfgroot"))
    env.pop("SPROCKET_CONFIG", None)
    proc = sprocket_run(doc, cwd=tmp_path, env=env)
    assert_sane(proc)
    assert proc.returncode == 0, proc.stderr
    assert '"w.o": 5' in proc.stdout
    proc = sprocket_run("-c", cfg, doc, cwd=tmp_path, env=env)
    assert_sane(proc)
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"main\.wdl:4:11: error:", proc.stderr), proc.stderr
    assert proc.stdout.strip() == ""


def test_unknown_runtime_key_in_1_0_is_never_an_error(tmp_path):
    """1.0: an unknown runtime key warns (one per key and task) and is no error even with
    --strict; known Cromwell/Google keys give no warning."""
    path = tmp_path / "rt.wdl"
    path.write_text('version 1.0\n\ntask t {\n  command <<< >>>\n  runtime {\n    banana: 1\n'
                    '    preemptible: 2\n    zones: "a b"\n    bootDiskSizeGb: 10\n    cpuPlatform: "Intel"\n'
                    '    noAddress: true\n    gpuType: "t4"\n    gpuCount: 1\n    continueOnReturnCode: true\n'
                    '    docker: "ubuntu"\n  }\n}\n\nworkflow w {\n  call t as a\n  call t as b\n}\n')
    for extra in ([], ["--strict"]):
        proc = sprocket("check", *extra, path, cwd=tmp_path)
        assert_ok(proc)
        assert _warnings(proc) == [(6, 5)], proc.stderr
        assert "banana" in proc.stderr


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_unknown_runtime_key_from_1_1_warns_per_key_and_task(tmp_path, version):
    """From 1.1 each unknown runtime key of each task is warned about once, known ones are not."""
    path = tmp_path / "rt.wdl"
    path.write_text('version %s\n\ntask t {\n  command <<< >>>\n  runtime {\n    banana: 1\n    apple: 2\n'
                    '    preemptible: 2\n  }\n}\n\ntask u {\n  command <<< >>>\n  runtime {\n    banana: 1\n  }\n}\n'
                    % version)
    proc = sprocket("check", path, cwd=tmp_path)
    assert_ok(proc)
    keyed = [(d[1], d[2]) for d in diagnostics(proc.stderr, "warning") if "runtime key" in d[3]]
    assert keyed == [(6, 5), (7, 5), (15, 5)], proc.stderr


# ---------------------------------------------------------------- imports from URLs


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LIB_URL_DOC = """version 1.1

import "common/structs.wdl"

task hello {
  input {
    String who
  }
  Person p = Person { name: who }
  command <<< echo ~{p.name} >>>
  output {
    String out = read_string(stdout())
  }
}
"""

STRUCTS_DOC = "version 1.1\n\nstruct Person {\n  String name\n}\n"


def test_url_import_checks_and_resolves_relative_imports_against_the_url(tmp_path, monkeypatch):
    """`import "http://.../lib.wdl" as lib`: the document is fetched, its own relative import
    `common/structs.wdl` is fetched from the server (not read from the local directory, where a
    broken file of that name sits), and a copy lands under $SPROCKET_CACHE_DIR."""
    served = tmp_path / "served"
    (served / "common").mkdir(parents=True)
    (served / "lib.wdl").write_text(LIB_URL_DOC)
    (served / "common" / "structs.wdl").write_text(STRUCTS_DOC)
    local = tmp_path / "local"
    (local / "common").mkdir(parents=True)
    (local / "common" / "structs.wdl").write_text("this is not WDL\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPROCKET_CACHE_DIR", str(cache))
    with http_server(served) as (base, paths):
        main = local / "main.wdl"
        main.write_text('version 1.1\n\nimport "%s/lib.wdl" as lib\n\nworkflow w {\n'
                        '  call lib.hello { input: who = "n" }\n}\n' % base)
        proc = check_in_process(main)
    assert_ok(proc)
    assert sorted(paths) == ["/common/structs.wdl", "/lib.wdl"], paths
    cached = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert cached == ["lib.wdl", "structs.wdl"], cached


def test_url_import_namespace_defaults_to_the_file_name(tmp_path, monkeypatch):
    """Without `as`, a URL import's namespace is its file name without `.wdl`."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "tools.wdl").write_text('version 1.1\n\ntask tt {\n  command <<< >>>\n}\n')
    monkeypatch.setenv("SPROCKET_CACHE_DIR", str(tmp_path / "cache"))
    with http_server(served) as (base, _paths):
        main = tmp_path / "main.wdl"
        main.write_text('version 1.1\n\nimport "%s/tools.wdl"\n\nworkflow w {\n  call tools.tt\n}\n' % base)
        assert_ok(check_in_process(main))


def test_url_import_not_found_is_an_error_naming_the_url(tmp_path, monkeypatch):
    """A 404 is an error at the import that names the URL; exit 1, no traceback."""
    served = tmp_path / "served"
    served.mkdir()
    monkeypatch.setenv("SPROCKET_CACHE_DIR", str(tmp_path / "cache"))
    with http_server(served) as (base, _paths):
        url = "%s/missing.wdl" % base
        main = tmp_path / "main.wdl"
        main.write_text('version 1.1\n\nimport "%s" as lib\n\nworkflow w {\n}\n' % url)
        proc = check_in_process(main)
    assert_diag(proc, 3, None, url)


def test_url_import_connection_refused_is_an_error_naming_the_url(tmp_path):
    """Nothing listening at the URL's port: exit 1, an error naming the URL, no traceback
    (subprocess, with a fresh empty cache)."""
    url = "http://127.0.0.1:%d/lib.wdl" % _free_port()
    main = tmp_path / "main.wdl"
    main.write_text('version 1.1\n\nimport "%s" as lib\n\nworkflow w {\n}\n' % url)
    env = dict(os.environ, SPROCKET_CACHE_DIR=str(tmp_path / "cache"), SPROCKET_URL_TIMEOUT="10")
    proc = sprocket("check", main, cwd=tmp_path, env=env)
    assert_diag(proc, 3, None, url)


def test_https_import_is_fetched_as_https(tmp_path, monkeypatch):
    """An `https://` import is a URL (not a local path): against a plain-HTTP server the TLS
    handshake fails, which is an error naming the URL, exit 1, no traceback."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "lib.wdl").write_text('version 1.1\n\ntask tt {\n  command <<< >>>\n}\n')
    monkeypatch.setenv("SPROCKET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPROCKET_URL_TIMEOUT", "10")
    with http_server(served) as (base, _paths):
        url = base.replace("http://", "https://") + "/lib.wdl"
        main = tmp_path / "main.wdl"
        main.write_text('version 1.1\n\nimport "%s" as lib\n\nworkflow w {\n}\n' % url)
        proc = check_in_process(main)
    assert_diag(proc, 3, None, url)


def test_error_inside_a_url_document_names_the_url(tmp_path, monkeypatch):
    """A type error in a fetched document is reported at its line and column under the URL (not the
    cache path)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "bad.wdl").write_text(INVALID)
    monkeypatch.setenv("SPROCKET_CACHE_DIR", str(tmp_path / "cache"))
    with http_server(served) as (base, _paths):
        main = tmp_path / "main.wdl"
        main.write_text('version 1.1\n\nimport "%s/bad.wdl" as bad\n\nworkflow m {\n}\n' % base)
        proc = check_in_process(main)
    assert_sane(proc)
    assert proc.returncode == 1
    assert any(d[0] == base + "/bad.wdl" and (d[1], d[2]) == (4, 11) for d in diagnostics(proc.stderr)), proc.stderr


def test_documents_without_url_imports_make_no_network_access(tmp_path, monkeypatch):
    """Checking documents with local imports only opens no socket and calls no urlopen."""
    def forbidden(*args, **kwargs):
        raise AssertionError("network access while checking local documents")

    (tmp_path / "lib.wdl").write_text('version 1.1\n\ntask lt {\n  command <<< >>>\n}\n')
    main = tmp_path / "main.wdl"
    main.write_text('version 1.1\n\nimport "lib.wdl" as lib\n\nworkflow w {\n  call lib.lt\n}\n')
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    proc = check_in_process(main)
    assert "network access" not in proc.stderr, proc.stderr
    assert_ok(proc)


def test_url_import_falls_back_to_the_cached_copy_with_a_warning(tmp_path):
    """Once fetched, a URL import that can no longer be fetched uses the cached copy, with a warning
    naming the URL (subprocesses: nothing is remembered in memory between the two checks)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "tools.wdl").write_text('version 1.1\n\ntask tt {\n  command <<< >>>\n}\n')
    env = dict(os.environ, SPROCKET_CACHE_DIR=str(tmp_path / "cache"), SPROCKET_URL_TIMEOUT="10")
    main = tmp_path / "main.wdl"

    def check_it():
        return sprocket("check", main, cwd=tmp_path, env=env)

    with http_server(served) as (base, _paths):
        url = base + "/tools.wdl"
        main.write_text('version 1.1\n\nimport "%s" as tools\n\nworkflow w {\n  call tools.tt\n}\n' % url)
        assert_ok(check_it())
    proc = check_it()  # the server is gone
    assert_ok(proc)
    assert any(url in d[3] for d in diagnostics(proc.stderr, "warning")), proc.stderr


# --------------------------------------------------------------------------------------------
# completions, --color, -m/--report-mode
# --------------------------------------------------------------------------------------------


def _complete(tmp_path, line):
    """What the bash completion script offers for a command line (the last word is completed)."""
    script = tmp_path / "sprocket.bash"
    proc = sprocket("completions", "bash", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    script.write_text(proc.stdout)
    words = line.split(" ")
    probe = 'source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_sprocket\nprintf "%%s\\n" "${COMPREPLY[@]}"\n' % (
        script, " ".join("'%s'" % w for w in words), len(words) - 1)
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True, cwd=str(tmp_path),
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return sorted(x for x in out.stdout.split("\n") if x)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_completes_commands_and_options(tmp_path):
    assert _complete(tmp_path, "sprocket r") == ["report", "retry", "run", "runs"]
    assert _complete(tmp_path, "sprocket va") == ["validate"]
    assert _complete(tmp_path, "sprocket run --sh") == ["--show-task-stderr"]
    assert "--deny-warnings" in _complete(tmp_path, "sprocket lint --")
    (tmp_path / "hello.wdl").write_text("version 1.1\n")
    assert _complete(tmp_path, "sprocket run hel") == ["hello.wdl"]


@pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("bash") is None, reason="tmux or bash is not installed")
def test_bash_completion_in_an_interactive_shell(tmp_path):
    """Typed into a real interactive bash (in tmux): `sprocket ru<TAB>` becomes `sprocket run`
    (run and runs share it) and `sprocket va<TAB>` becomes `sprocket validate `."""
    proc = sprocket("completions", "bash", cwd=tmp_path)
    (tmp_path / "rc").write_text(proc.stdout + "PS1='$ '\n")
    session = "sprocket-completion-%d" % os.getpid()
    tmux = ["tmux", "-L", session]
    subprocess.run(tmux + ["new-session", "-d", "-s", session, "-x", "120", "-y", "20",
                           "bash --noprofile --rcfile %s -i" % (tmp_path / "rc")], check=True,
                   env=dict(os.environ, TMUX=""), timeout=30)

    def typed(keys, want):
        if keys:
            subprocess.run(tmux + ["send-keys", "-t", session] + keys, check=True, timeout=30)
        deadline, screen = time.time() + 10, ""
        while time.time() < deadline and want not in screen:
            time.sleep(0.2)
            screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", session], capture_output=True, text=True,
                                    timeout=30).stdout
        return screen

    try:
        assert "$" in typed([], "$"), "bash did not start in tmux"  # (the completion is loaded before the prompt)
        screen = typed(["sprocket ru", "Tab"], "$ sprocket run")
        assert "$ sprocket run" in screen and "$ sprocket runs" not in screen, screen
        screen = typed(["C-u", "sprocket va", "Tab", "x"], "$ sprocket validate x")
        assert "$ sprocket validate x" in screen, screen
    finally:
        subprocess.run(tmux + ["kill-server"], timeout=30)


@pytest.mark.parametrize("shell, checker", [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])])
def test_zsh_and_fish_completions_parse(tmp_path, shell, checker):
    proc = sprocket("completions", shell, cwd=tmp_path)
    assert proc.returncode == 0 and "run" in proc.stdout and "--show-task-stderr" in proc.stdout.replace(
        "-l show-task-stderr", "--show-task-stderr"), proc.stdout
    if shutil.which(checker[0]) is None:
        pytest.skip("%s is not installed: the script was printed but not parsed" % shell)
    (tmp_path / "script").write_text(proc.stdout)
    out = subprocess.run(checker + [str(tmp_path / "script")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_color_and_report_mode(tmp_path):
    path = tmp_path / "bad.wdl"
    path.write_text(INVALID)
    plain = sprocket("check", path, cwd=tmp_path)
    assert "\033[" not in plain.stderr and "^" in plain.stderr  # not a terminal: no colour
    colored = sprocket("--color", "always", "check", path, cwd=tmp_path)
    assert colored.returncode == 1 and "\033[1;31merror\033[0m" in colored.stderr, colored.stderr
    one = sprocket("check", "-m", "one-line", path, cwd=tmp_path)
    assert one.returncode == 1 and one.stderr.strip().count("\n") == 0 and ":4:11: error: unknown name `y`" in one.stderr
    (tmp_path / "sprocket.toml").write_text('[common]\ncolor = "always"\nreport_mode = "one-line"\n')
    cfg = sprocket("-c", tmp_path / "sprocket.toml", "check", path, cwd=tmp_path)
    assert "\033[1;31merror" in cfg.stderr and "^" not in cfg.stderr, cfg.stderr
    never = sprocket("-c", tmp_path / "sprocket.toml", "--color", "never", "check", path, cwd=tmp_path)
    assert "\033[" not in never.stderr


@pytest.mark.parametrize("version, allow, allowed", [
    ("1.0", "", True), ("1.1", "", False), ("1.1", "meta { allowNestedInputs: true }", True),
    ("1.1", "meta { allow_nested_inputs: true }", True), ("1.2", "hints { allow_nested_inputs: true }", True),
    ("1.2", "hints { allow_nested_inputs: false }", False), ("1.2", "meta { allowNestedInputs: false }", False),
], ids=["1.0", "1.1-none", "1.1-meta-camel", "1.1-meta-snake", "1.2-hints", "1.2-hints-false", "1.2-meta-false"])
def test_nested_inputs_rule_is_one_in_check_and_validate(tmp_path, version, allow, allowed):
    """One rule (allows_nested_inputs) says whether a workflow's calls take inputs from outside: the
    checker (a call may leave a required input unbound: an error under --strict otherwise) and the
    command line (`validate wf.t.x=...` for an input the call leaves) agree on every way of saying so."""
    src = tmp_path / "w.wdl"
    src.write_text("version %s\n\ntask t {\n  input {\n    Int x = 1\n    Int y\n  }\n  command <<< echo ~{x} ~{y} >>>\n}"
                   "\n\nworkflow wf {\n  %s\n  call t\n}\n" % (version, allow))
    checked = sprocket("check", "--strict", src, cwd=tmp_path)
    assert_sane(checked)
    validated = sprocket("validate", src, "wf.t.y=1", "wf.t.x=2", cwd=tmp_path)
    assert_sane(validated)
    if allowed:
        assert (checked.returncode, validated.returncode) == (0, 0), checked.stderr + validated.stderr
    else:
        assert_diag(checked, 13, 3, "call `t` is missing required input `y`")
        assert validated.returncode == 1 and "input `t.x` sets an input of a call, which workflow `wf` does " \
            "not allow" in validated.stderr, validated.stderr


# ============================================================================================
# The argument parser: built from _COMMON_OPTIONS and the _COMMANDS table
# ============================================================================================


def test_command_table_gives_each_command_its_own_arguments():
    from conftest import _import_sprocket

    sprocket = _import_sprocket()
    parser = sprocket.build_parser()
    cases = [
        (["check", "a.wdl", "-l", "-e", "R", "--strict"],
         dict(files=["a.wdl"], lint=True, except_rules=["R"], strict=True)),
        (["lint", "a.wdl", "b.wdl"], dict(files=["a.wdl", "b.wdl"], except_rules=[], strict=None, deny_warnings=None)),
        (["explain", "--list"], dict(rule=None, list=True)),
        (["fmt", "--check", "a.wdl"], dict(command="fmt", check=True, overwrite=False)),
        (["completions", "zsh"], dict(shell="zsh")),
        (["run", "x.wdl", "a=1", "-o", "o", "--suffix", "s", "--no-reattach"],
         dict(source="x.wdl", inputs=["a=1"], output_dir="o", suffix="s", no_reattach=True, no_call_cache=False)),
        (["validate", "x.wdl", "-t", "t"], dict(source="x.wdl", inputs=[], target="t")),
        (["inputs", "x.wdl"], dict(source="x.wdl", target=None)),
        (["-s", "config", "init", "-c", "x.toml", "--color", "never"],
         dict(config_command="init", skip_config_search=True, config=["x.toml"], color="never")),
        (["runs", "--json"], dict(json=True, output_dir=None)),
        (["report", "r1", "-o", "o", "-m", "one-line"], dict(run="r1", output_dir="o", report_mode="one-line")),
        (["install", "d"], dict(dir="d")),
    ]
    for argv, expected in cases:
        args = vars(parser.parse_args(argv))
        assert {k: args.get(k, "<missing>") for k in expected} == expected, argv
    # each command has only its own options
    for argv in (["lint", "--lint", "a.wdl"], ["validate", "-o", "o", "x.wdl"],
                 ["format", "--check", "--overwrite", "a"], ["config", "show"],
                 ["--color", "sometimes", "check", "a"], ["run"]):
        with pytest.raises(sprocket.UsageError):
            parser.parse_args(argv)
    run_help = next(a for a in parser._subparsers._group_actions[0].choices["run"]._actions if a.dest == "output_dir")
    assert run_help.help.endswith("(default: run.output_dir, %s)" % sprocket.CONFIG_SCHEMA["run.output_dir"].default)
