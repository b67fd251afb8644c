"""The command line around `check`: --version, hostile inputs, exit codes, the zipapp, and the
in-process API (``sprocket.main`` / ``sprocket.load``).

Nothing here may ever print a Python traceback.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import (DIAG_RE, REPO, SPROCKET, assert_diag, assert_ok, assert_sane, check_in_process,
                      diagnostics, run_check_subprocess)

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
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd or REPO), stdin=subprocess.DEVNULL)


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
# check: hostile inputs.  Never a traceback; an `error:` and exit 1.
# --------------------------------------------------------------------------------------------

def test_empty_file(tmp_path):
    path = tmp_path / "empty.wdl"
    path.write_bytes(b"")
    assert_error_reported(run_check_subprocess(path))


def test_whitespace_only_file(tmp_path):
    path = tmp_path / "blank.wdl"
    path.write_text("\n\n   \n\t\n")
    assert_error_reported(run_check_subprocess(path))


def test_comment_only_file(tmp_path):
    path = tmp_path / "comment.wdl"
    path.write_text("# just a comment\n")
    assert_error_reported(run_check_subprocess(path))


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

@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    """Build sprocket.pyz as the README documents:

        mkdir build && cp sprocket.py build/
        printf 'import sys, sprocket\\nsys.exit(sprocket.main())\\n' > build/__main__.py
        python3 -m zipapp build -o sprocket.pyz
    """
    tmp = tmp_path_factory.mktemp("zipapp")
    src = tmp / "build"
    src.mkdir()
    shutil.copy(SPROCKET, src / "sprocket.py")
    (src / "__main__.py").write_text("import sys, sprocket\nsys.exit(sprocket.main())\n")
    out = tmp / "sprocket.pyz"
    proc = subprocess.run([sys.executable, "-m", "zipapp", str(src), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


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
