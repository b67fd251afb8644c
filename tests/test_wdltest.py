"""`sprocket test` (and `dev test`): Sprocket's YAML unit tests for WDL, driven through the real
command line -- discovery beside a document and in `test/`, the input matrix and `$` groups,
fixtures, every assertion, the outcome of each execution (passed, failed with the value seen,
errored), filters and tags, clean-up, JUnit XML, the `[test]` settings, and the diagnostics a test
file gets at its YAML line. examples/wdl-tests is the suite of a small library; its tests tagged
`fails-on-purpose` fail, each in its own way."""

import os
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from conftest import REPO, assert_sane, db_rows, sprocket_cmd, write

EXAMPLE = REPO / "examples" / "wdl-tests"
LINE_RE = re.compile(r"^(passed|failed|errored) +(\S+)(?: \[(\d+)/(\d+)\])? \(", re.M)

pytestmark = pytest.mark.usefixtures("isolated_config")


def outcomes(proc):
    """{label (with [n/N] when the test has several executions): status} of every execution line."""
    return {m.group(2) + (" [%s/%s]" % (m.group(3), m.group(4)) if m.group(3) else ""): m.group(1)
            for m in LINE_RE.finditer(proc.stdout)}


def sprocket_test(*args, cwd, timeout=300):
    proc = sprocket_cmd("test", *args, cwd=cwd, timeout=timeout)
    assert_sane(proc)
    return proc


TASK = """
    version 1.1

    task echo {
      input {
        Int a = 0
        Int b = 0
        File? f
      }
      command <<<
        echo "a=~{a} b=~{b}"
        echo "to stderr" >&2
        ~{if defined(f) then "cat '" + f + "'" else ""}
      >>>
      output {
        Boolean same = a == b
        Int sum = a + b
      }
    }
    """


# --------------------------------------------------------------------------------------------
# the example suite
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("example-runs")
    junit = runs / "junit.xml"
    proc = sprocket_test(str(EXAMPLE), "--run-dir", runs, "--junit", junit, "-p", "6", cwd=REPO)
    return proc, runs, junit


def test_example_suite_counts_and_failure_messages(example_run):
    """The library's suite: 28 executions (a 2x2 matrix, two zipped groups, fixtures, tests of a
    workflow), of which the ones tagged fails-on-purpose fail with the assertion and the value seen."""
    proc, runs, _ = example_run
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "19 passed, 8 failed, 1 errored"
    got = outcomes(proc)
    assert len(got) == 28
    assert sorted(k for k in got if "greetings_matrix" in k) == ["text::greet::greetings_matrix [%d/4]" % i
                                                                for i in range(1, 5)]
    assert sorted(k for k in got if "zipped_group" in k) == ["text::greet::zipped_group [1/2]",
                                                               "text::greet::zipped_group [2/2]"]
    for message in (
            "exited with code 3, but the test expects exit code 2",
            "exited with code 0, but `should_fail` expects a nonzero exit code",
            "output `quotient`: `FloatEquals: 0.3`: it is 0.333333",
            "`stdout` does not match `^Goodbye`",
            'output `message`: `StrEquals: "Goodbye, World!"`: it is "Hello, World!"',
            'output `message`: `Length: 3`: its length is 13',
            "output `n`: `IntEquals: 4`: it is 3",
            'output `lines`: `First`, `StrEquals: "zero"`: it is "one"',
            "output `word`: `Defined: true`: it is undefined (None)",
            "output `text_and_length`: `Right`, `IntEquals: 11`: it is 10",
            "output `first_is_empty`: `BoolEquals: true`: it is false",
            "the workflow failed, but the test expects it to succeed: index 0 is out of range",
            "output `report` of task `forgets_output`: file `report.txt` does not exist"):
        assert message in proc.stdout, message
    assert got["text::forgets_output::errors_on_purpose"] == "errored"
    assert got["math::divide::by_zero"] == got["math::divide::by_zero_fails"] == "passed"
    assert got["text::summarize::no_files_fails"] == "passed"


def test_example_suite_passes_without_the_failing_tag(tmp_path):
    proc = sprocket_test(str(EXAMPLE), "--run-dir", tmp_path, "-e", "fails-on-purpose", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "19 passed, 0 failed"


def test_one_run_of_many_parts_in_sprocket_db(example_run):
    """All executions are parts of one run: one `runs` row (its outputs the counts), a task row
    for each execution's task (named <target>-<k>, so a task's tests are one call family)."""
    proc, runs, _ = example_run
    rows = db_rows(runs / "sprocket.db", "SELECT id, status, outputs, target FROM runs")
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["target"] == "test"
    assert '"test.passed": 19' in rows[0]["outputs"] and '"test.failed": 8' in rows[0]["outputs"]
    names = [r["call"] for r in db_rows(runs / "sprocket.db", "SELECT call FROM attempts")]
    assert len([n for n in names if re.match(r"^greet-\d+$", n)]) == 8  # 1 + 4 + 2 + 1 executions of greet
    assert any(n.startswith("summarize-") and n.endswith(".greet") for n in names)


def test_clean_keeps_only_what_did_not_pass(example_run):
    proc, runs, _ = example_run
    run_dir = next((runs / "runs" / "test").glob("2*"))
    assert not (run_dir / "greet" / "hello_world").exists()
    assert (run_dir / "greet" / "wrong_greeting" / "1" / "attempts" / "0" / "stdout").is_file()
    assert not (run_dir / "add").exists()  # all of its tests passed: the target's directory goes too
    assert "see `%s`" % (run_dir / "divide" / "inexact" / "1") in proc.stdout


def test_junit_xml_has_a_testcase_per_execution(example_run):
    _, _, junit = example_run
    root = ET.parse(str(junit)).getroot()
    suites = {s.get("name").rsplit("/", 1)[-1]: s for s in root.iter("testsuite")}
    assert set(suites) == {"math.wdl", "text.wdl"}
    assert (suites["math.wdl"].get("tests"), suites["math.wdl"].get("failures")) == ("9", "3")
    assert (suites["text.wdl"].get("tests"), suites["text.wdl"].get("failures"), suites["text.wdl"].get("errors")) == \
        ("19", "5", "1")
    inexact = [c for c in root.iter("testcase") if c.get("name") == "inexact"][0]
    assert inexact.get("classname") == "math.divide"
    assert "FloatEquals: 0.3" in inexact.find("failure").get("message")


# --------------------------------------------------------------------------------------------
# the matrix, groups, fixtures
# --------------------------------------------------------------------------------------------


def test_matrix_is_the_cartesian_product_and_a_group_is_zipped(tmp_path):
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text("""
echo:
  - name: product
    inputs: {a: [1, 2], b: [1, 2]}
    assertions: {outputs: {same: [{BoolEquals: true}]}}
  - name: zipped
    inputs:
      $pairs: {a: [1, 2, 3], b: [1, 2, 3]}
    assertions: {outputs: {same: [{BoolEquals: true}]}}
""")
    proc = sprocket_test(".", cwd=tmp_path)
    got = outcomes(proc)
    assert sorted(v for k, v in got.items() if "product" in k) == ["failed", "failed", "passed", "passed"]
    assert [got["echo::echo::zipped [%d/3]" % i] for i in (1, 2, 3)] == ["passed"] * 3
    assert proc.stdout.strip().splitlines()[-1] == "5 passed, 2 failed"
    assert "inputs: a=1, b=2" in proc.stdout or "inputs: a=2, b=1" in proc.stdout


def test_fixtures_are_where_relative_paths_resolve(tmp_path):
    """A relative File input names a file in <workspace>/test/fixtures, or in --fixtures-dir; the
    tests of a document may sit in test/ beside it."""
    write(tmp_path / "lib" / "echo.wdl", TASK)
    write(tmp_path / "lib" / "test" / "echo.yaml", """
        echo:
          - name: reads_fixture
            inputs: {f: [data.txt]}
            assertions: {stdout: ["fixture text"]}
        """)
    write(tmp_path / "test" / "fixtures" / "data.txt", "fixture text\n")
    write(tmp_path / "elsewhere" / "data.txt", "other text\n")
    proc = sprocket_test("lib/echo.wdl", cwd=tmp_path)  # a file: the workspace is the current directory
    assert proc.returncode == 0 and outcomes(proc) == {"echo::echo::reads_fixture": "passed"}, proc.stdout
    proc = sprocket_test("lib/echo.wdl", "--fixtures-dir", "elsewhere", cwd=tmp_path)
    assert proc.returncode == 1 and "`stdout` does not match `fixture text`" in proc.stdout


# --------------------------------------------------------------------------------------------
# diagnostics of a test file
# --------------------------------------------------------------------------------------------


BAD = """\
echo:
  - name: one
    inputs:
      c: [1]
      a: [1, "two"]
    assertions:
      exitcode: 0
      outputs:
        sum:
          - IntEqual: 3
          - StrEquals: x
        same:
          - BoolEquals: 1
  - name: two
    inputs:
      f: [present.txt, absent.txt]
nosuch:
  - name: x
"""


def test_diagnostics_point_at_the_yaml_line(tmp_path):
    """An input the target lacks, a value of the wrong type, an unknown assertion, an assertion
    on the wrong type of output, an argument of the wrong type, a fixture that does not exist,
    an unknown target: each an error at its line and column, all at once; nothing runs."""
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text(BAD)
    write(tmp_path / "test" / "fixtures" / "present.txt", "x\n")
    proc = sprocket_test(".", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    found = re.findall(r"^\./echo\.yaml:(\d+):(\d+): error: (.*)$", proc.stderr, re.M)
    expected = [
        (4, 7, "test `one`: `echo` has no input `c`"),
        (5, 14, "test `one`: input `a` must be Int, not \"two\""),
        (7, 7, "unknown assertion `exitcode` (did you mean `exit_code`?)"),
        (10, 13, "unknown assertion `IntEqual` on output `sum` (did you mean `IntEquals`?)"),
        (11, 13, "`StrEquals` cannot be used on output `sum`: it is of type `Int`"),
        (13, 13, "`BoolEquals` on output `same` takes true or false, not 1"),
        (16, 24, "test `two`: input `f`: file `%s` does not exist" % (tmp_path / "test" / "fixtures" / "absent.txt")),
        (17, 1, "`./echo.wdl` has no task or workflow named `nosuch`"),
    ]
    assert len(found) == len(expected), proc.stderr
    for (line, col, message), (l, c, m) in zip(expected, found):
        assert (int(l), int(c)) == (line, col) and m.startswith(message), (line, col, message, proc.stderr)
    assert "\n          exitcode: 0\n          ^" in proc.stderr  # the line and a caret under the key
    assert not (tmp_path / "test" / "runs").exists()


NEEDS_S = """
    version 1.1
    task t {
      input {
        String s
        Float x = 1.0
        Array[Int] n = []
      }
      command <<< echo ~{s} >>>
      output { String out = read_string(stdout()) }
    }
    """


def yaml_errors(proc, path="./t.yaml"):
    """[(line, col, message)] of the errors `sprocket test` gave for a test file."""
    return [(int(l), int(c), m) for l, c, m in re.findall(r"^%s:(\d+):(\d+): error: (.*)$" % re.escape(path),
                                                           proc.stderr, re.M)]


def refused(tmp_path, yaml_text):
    """`sprocket test` of NEEDS_S with the test file t.yaml = `yaml_text`, which it must refuse before
    running anything (exit 1, nothing on stdout): its CompletedProcess."""
    write(tmp_path / "t.wdl", NEEDS_S)
    (tmp_path / "t.yaml").write_text(yaml_text)
    proc = sprocket_test(".", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    return proc


@pytest.mark.parametrize("name", ["../../escape", "/tmp/x/victim", "a\\\\b", ".", ".."])
def test_a_test_name_that_is_not_one_path_component_is_refused(tmp_path, name):
    """A test's name names its directory, which clean-up removes: `../../escape` or an absolute
    path would delete outside the run directory. Refused at the name's line; nothing runs."""
    proc = refused(tmp_path, 't:\n  - name: ok\n    inputs: {s: [a]}\n  - name: "%s"\n    inputs: {s: [a]}\n'
                           % name)
    found = yaml_errors(proc)
    assert len(found) == 1 and found[0][:2] == (4, 5), proc.stderr
    assert "cannot name a directory: a test's name is one path component" in found[0][2]
    assert not (tmp_path / "test").exists()


def test_clean_up_never_removes_a_directory_outside_the_run_directory(tmp_path, capsys):
    """clean_test_dirs removes a passed execution's directory only when its real path is inside
    the run directory: not a path outside it, not a link inside it that leads outside."""
    from conftest import _import_sprocket

    S = _import_sprocket()
    run_dir, victim, linked = tmp_path / "run", tmp_path / "victim", tmp_path / "linked"
    for d in (victim / "1", linked / "1", run_dir / "t" / "ok" / "1"):
        write(d / "keep.txt", "x\n")
    (run_dir / "t" / "link").symlink_to(linked)

    class Execution:
        def __init__(self, directory):
            self.directory, self.outcome = str(directory), S.TestOutcome("passed", None)

    executions = [Execution(d) for d in (victim / "1", run_dir / "t" / "link" / "1", run_dir / "t" / "ok" / "1")]
    S.clean_test_dirs(str(run_dir), executions, S.RunLog(30))
    assert (victim / "1" / "keep.txt").is_file() and (linked / "1" / "keep.txt").is_file()
    assert not (run_dir / "t" / "ok").exists()  # inside: removed, and its test's directory left empty
    assert capsys.readouterr().err.count("is not inside the output directory") == 2


def test_a_test_name_or_tags_of_the_wrong_type_is_a_diagnostic(tmp_path):
    """`name: [1]` (a YAML list: not a string, not hashable) and tags that are not a list of
    strings: errors at their lines, not an internal error."""
    proc = refused(tmp_path, "t:\n  - name: [1]\n  - name: {a: 1}\n  - name: ok\n    tags: fast\n"
                           "    inputs: {s: [a]}\n  - name: ok2\n    tags: [[x]]\n    inputs: {s: [a]}\n")
    assert yaml_errors(proc) == [
        (2, 5, "a test needs a `name`, a string, not [1]"),
        (3, 5, 'a test needs a `name`, a string, not {"a": 1}'),
        (5, 5, '`tags` of test `ok` must be a list of strings, not "fast"'),
        (8, 5, '`tags` of test `ok2` must be a list of strings, not [["x"]]'),
    ], proc.stderr


def test_every_value_an_input_cannot_take_is_reported_at_its_line(tmp_path):
    """Values from_json refuses with NoneError or EvalError (a null for a required String, `.inf`
    for a Float), not only InputError: each an error at its value, all of them at once."""
    proc = refused(tmp_path, "t:\n  - name: bad_values\n    inputs:\n      s: [null]\n      x: [.inf]\n")
    found = yaml_errors(proc)
    assert [f[:2] for f in found] == [(4, 11), (5, 11)], proc.stderr
    assert "input `s`" in found[0][2] and "input `x`" in found[1][2] and "finite" in found[1][2]


def test_an_input_with_no_values_is_an_error_at_its_key(tmp_path):
    """`s: []`, or empty lists in a `$group`, would make a test of no executions that passes:
    an error at the key."""
    proc = refused(tmp_path, "t:\n  - name: none\n    inputs:\n      s: []\n"
                           "  - name: group\n    inputs:\n      s: [a]\n      $g:\n        x: []\n")
    found = yaml_errors(proc)
    assert [f[:2] for f in found] == [(4, 7), (9, 9)], proc.stderr
    assert all("has no values, so the test would run nothing" in f[2] for f in found)


def test_should_fail_with_assertions_on_outputs_is_refused(tmp_path):
    """A failed execution has no outputs: `should_fail: true` with `outputs` would pass without
    checking them. An error at `outputs`."""
    proc = refused(tmp_path, "t:\n  - name: contradiction\n    inputs: {s: [a]}\n    assertions:\n"
                           "      should_fail: true\n      outputs:\n        out: [{StrEquals: b}]\n")
    found = yaml_errors(proc)
    assert len(found) == 1 and found[0][:2] == (6, 7), proc.stderr
    assert "`should_fail: true` and `outputs` cannot be used together" in found[0][2]


def test_a_missing_required_input_is_an_error_at_the_test_name(tmp_path):
    """A test that does not give a required input (of the target, or one a workflow's call
    leaves open) is an error at its name when the file is read; nothing runs."""
    proc = refused(tmp_path, "t:\n  - name: given\n    inputs: {s: [a]}\n"
                           "  - name: not_given\n    inputs: {x: [2.0, 3.0]}\n")
    assert yaml_errors(proc) == [(4, 5, "test `not_given` does not give the required input `t.s`: add it to its "
                                        "`inputs`")], proc.stderr


def test_a_test_file_that_is_not_yaml_is_one_diagnostic(tmp_path):
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yml").write_text("echo:\n  - name: &anchor x\n")
    proc = sprocket_test(".", cwd=tmp_path)
    assert proc.returncode == 1 and re.search(r"echo\.yml:2:\d+: error: .*anchor", proc.stderr), proc.stderr


def test_two_test_files_for_one_document_conflict(tmp_path):
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text("echo: []\n")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "echo.yml").write_text("echo: []\n")
    proc = sprocket_test(".", cwd=tmp_path)
    assert proc.returncode == 1 and "conflicts with test file" in proc.stderr


# --------------------------------------------------------------------------------------------
# choosing tests; the settings; the command line
# --------------------------------------------------------------------------------------------

CHOICE = """
echo:
  - name: alpha
    tags: [fast]
  - name: alphabet
    tags: [slow]
  - name: beta
    tags: [fast, nightly]
"""


@pytest.mark.parametrize("args, chosen", [
    ((), ["alpha", "alphabet", "beta"]),
    (("-f", "alpha"), ["alpha", "alphabet"]),
    (("-f", "alpha", "--exact"), ["alpha"]),
    (("-t", "ech"), ["alpha", "alphabet", "beta"]),
    (("-t", "ech", "--exact"), []),
    (("-i", "fast"), ["alpha", "beta"]),
    (("-i", "fast", "-i", "slow"), ["alpha", "alphabet", "beta"]),
    (("-e", "nightly"), ["alpha", "alphabet"]),
])
def test_filters_and_tags_choose_the_tests(tmp_path, args, chosen):
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text(CHOICE)
    proc = sprocket_test(".", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(k.split("::")[2] for k in outcomes(proc)) == chosen
    if not chosen:
        assert "no tests to run (3 tests found" in proc.stderr


def test_dev_test_is_test_and_the_settings_come_from_the_test_table(tmp_path):
    """`dev test` is the same command; `[test] run_dir` and `parallelism` are read from sprocket.toml;
    an unknown key in `[test]` is refused."""
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text(CHOICE)
    (tmp_path / "sprocket.toml").write_text('[test]\nrun_dir = "elsewhere"\nparallelism = 1\nthrottle = 0\n')
    proc = sprocket_cmd("dev", "test", ".", cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 0 and len(outcomes(proc)) == 3, proc.stderr
    assert (tmp_path / "elsewhere" / "sprocket.db").is_file() and not (tmp_path / "test").exists()
    (tmp_path / "sprocket.toml").write_text('[test]\nparalelism = 1\n')
    proc = sprocket_cmd("test", ".", cwd=tmp_path)
    assert proc.returncode == 1 and "unknown key `test.paralelism`" in proc.stderr


def test_parallelism_bounds_the_executions_at_once(tmp_path):
    """-p 1: one execution after another (their task's start and end never interleave); -p 4 at once."""
    write(tmp_path / "nap.wdl", """
        version 1.1
        task nap {
          input { Int i }
          command <<<
            echo "start ~{i} $(date +%s.%N)" >> "~{'LOG'}"
            sleep 0.3
            echo "end ~{i} $(date +%s.%N)" >> "~{'LOG'}"
          >>>
        }
        """.replace("LOG", str(tmp_path / "log")))
    (tmp_path / "nap.yaml").write_text("nap:\n  - name: naps\n    inputs: {i: [1, 2, 3, 4]}\n")
    for p, overlapping in (("1", False), ("4", True)):
        (tmp_path / "log").write_text("")
        proc = sprocket_test(".", "-p", p, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        events = [line.split()[0] for line in (tmp_path / "log").read_text().splitlines()]
        assert len(events) == 8
        interleaved = events != ["start", "end"] * 4
        assert interleaved == overlapping, (p, events)


def test_exact_needs_a_filter(tmp_path):
    write(tmp_path / "echo.wdl", TASK)
    proc = sprocket_test(".", "--exact", cwd=tmp_path)
    assert proc.returncode == 1 and "--exact needs -t/--target or -f/--filter" in proc.stderr


def test_no_clean_keeps_and_clean_all_removes(tmp_path):
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text("echo:\n  - name: ok\n  - name: bad\n    assertions: {exit_code: 1}\n")
    proc = sprocket_test(".", "--no-clean", cwd=tmp_path)
    run_dir = next((tmp_path / "test" / "runs" / "test").glob("2*"))
    assert (run_dir / "echo" / "ok" / "1" / "attempts" / "0" / "stdout").is_file()
    assert (run_dir / "echo" / "bad" / "1").is_dir()
    shutil.rmtree(str(tmp_path / "test"))
    proc = sprocket_test(".", "--clean-all", cwd=tmp_path)
    assert proc.returncode == 1 and "exited with code 0, but the test expects exit code 1" in proc.stdout
    assert list((tmp_path / "test" / "runs" / "test").glob("2*")) == []


def test_a_tasks_tests_go_to_slurm_as_one_job_array(tmp_path):
    """With the slurm_apptainer backend (the fake Slurm commands), the executions of a task's tests
    are one call family started together: sbatch gets job arrays, not a job each."""
    import json
    import subprocess

    from conftest import sprocket_argv
    from test_slurm_parts import fake_slurm_env

    (tmp_path / "sprocket.toml").write_text('run.experimental_features_enabled = true\n[run.backends.default]\n'
                                            'type = "slurm_apptainer"\ndefault_slurm_partition.name = "compute"\n')
    write(tmp_path / "sq.wdl", """
        version 1.1
        task square {
          input { Int x }
          command <<< echo $(( ~{x} * ~{x} )) >>>
          output { Int y = read_int(stdout()) }
          runtime { container: "ubuntu:22.04" }
        }
        """)
    (tmp_path / "sq.yaml").write_text("square:\n  - name: squares\n    inputs: {x: %s}\n"  # 20: an array's worth
                                      "    assertions: {outputs: {y: [{IntEquals: 49}]}}\n" % list(range(20)))
    env, state = fake_slurm_env(tmp_path)
    proc = subprocess.run(sprocket_argv("test", "-s", "-c", str(tmp_path / "sprocket.toml"), "."), env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert_sane(proc)
    assert proc.stdout.strip().splitlines()[-1] == "1 passed, 19 failed", proc.stdout + proc.stderr
    assert "output `y`: `IntEquals: 49`: it is 81" in proc.stdout
    sbatch = [c for c in map(json.loads, (state / "calls").read_text().splitlines()) if c[0] == "sbatch"]
    arrays = [int(a.split("-")[-1]) + 1 for c in sbatch for a in c if a.startswith("--array=")]
    assert arrays and sum(arrays) + len(sbatch) - len(arrays) == 20, sbatch  # (split only on a loaded host)


def test_workflow_tests_share_the_call_cache(tmp_path):
    """With `run.task.cache = "on"`, a workflow's test reuses the calls an earlier test run made
    (a task's own test runs its task: its exit code and streams are what it asserts)."""
    write(tmp_path / "wf.wdl", """
        version 1.1
        task add_one {
          input { Int x }
          command <<< echo $(( ~{x} + 1 )) >>>
          output { Int y = read_int(stdout()) }
        }
        workflow wf {
          input { Int x }
          call add_one { input: x = x }
          output { Int y = add_one.y }
        }
        """)
    (tmp_path / "wf.yaml").write_text("wf:\n  - name: plus_one\n    inputs: {x: [1]}\n"
                                      "    assertions: {outputs: {y: [{IntEquals: 2}]}}\n"
                                      "add_one:\n  - name: direct\n    inputs: {x: [1]}\n")
    (tmp_path / "sprocket.toml").write_text('[run.task]\ncache = "on"\ncache_dir = "%s"\n' % (tmp_path / "calls"))
    for _ in range(2):
        proc = sprocket_test(".", cwd=tmp_path)
        assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "2 passed, 0 failed", proc.stdout
    rows = db_rows(tmp_path / "test" / "sprocket.db", "SELECT run_id, name, status FROM tasks ORDER BY run_id, name")
    second = sorted((re.sub(r"-[0-9a-f]{8}$", "", r["name"]), r["status"]) for r in rows if r["run_id"] == 2)
    assert second == [("add_one-1-0", "completed"), ("wf-0.add_one-cached", "cached")], rows


def test_workspace_option_says_where_the_fixtures_are(tmp_path):
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text('echo:\n  - name: reads\n    inputs: {f: [data.txt]}\n'
                                        '    assertions: {stdout: ["from the workspace"]}\n')
    write(tmp_path / "ws" / "test" / "fixtures" / "data.txt", "from the workspace\n")
    proc = sprocket_test("echo.wdl", "-w", "ws", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ws" / "test" / "sprocket.db").is_file()


def test_a_failing_test_cancels_only_its_own_tasks(tmp_path):
    """A test is a part of the run: when its workflow fails, its other running task is canceled,
    and another test's task runs on to its end and passes."""
    write(tmp_path / "wf.wdl", """
        version 1.1
        task sleepy {
          input { Int seconds }
          command <<< sleep ~{seconds}; echo done >>>
          output { String said = read_string(stdout()) }
        }
        task broken {
          command <<< exit 1 >>>
        }
        workflow wf {
          call sleepy { input: seconds = 30 }
          call broken
          output { String said = sleepy.said }
        }
        """)
    (tmp_path / "wf.yaml").write_text("wf:\n  - name: fails\n"
                                      "sleepy:\n  - name: sleeps\n    inputs: {seconds: [2]}\n"
                                      "    assertions: {outputs: {said: [{StrEquals: done}]}}\n")
    proc = sprocket_test(".", cwd=tmp_path)
    assert outcomes(proc) == {"wf::wf::fails": "failed", "wf::sleepy::sleeps": "passed"}, proc.stdout
    assert "expects it to succeed: task `wf-0.broken` failed: process terminated with exit code 1" in proc.stdout
    rows = db_rows(tmp_path / "test" / "sprocket.db", "SELECT call, status FROM attempts")
    attempts = {r["call"]: r["status"] for r in rows}
    assert attempts["wf-0.sleepy"] == "canceled" and attempts["sleepy-1"] == "completed", attempts
    left = [p for p in os.listdir("/proc") if p.isdigit() and _cwd(p).startswith(str(tmp_path) + "/")]
    assert not left, "a task's process is still there (in the run's directory)"


def _cwd(pid):
    try:
        return os.readlink("/proc/%s/cwd" % pid)
    except OSError:  # gone meanwhile, or not ours to see
        return ""


def test_yaml_map_keys_that_are_not_strings_are_read_as_json_gives_them(tmp_path):
    """`{1: one}` for a Map[Int, String] input: YAML's key 1 is JSON's "1" (as in @inputs.yml)."""
    write(tmp_path / "m.wdl", """
        version 1.1
        task m {
          input { Map[Int, String] m }
          command <<< echo ~{m[1]} >>>
          output { String s = read_string(stdout()) }
        }
        """)
    (tmp_path / "m.yaml").write_text("m:\n  - name: ints\n    inputs:\n      m: [{1: one}]\n"
                                     "    assertions: {outputs: {s: [StrEquals: one]}}\n")
    proc = sprocket_test(".", cwd=tmp_path)
    assert proc.returncode == 0 and outcomes(proc) == {"m::m::ints": "passed"}, proc.stdout + proc.stderr


def test_an_error_in_a_deferred_scatter_element_fails_only_its_test(tmp_path):
    """With `run.workflow.scatter.concurrency = 1` each scatter element after the first starts
    later (deferred): an error there is its test's failure, not the run's."""
    write(tmp_path / "wf.wdl", """
        version 1.1
        task t {
          input { Int i }
          command <<< echo ~{i} >>>
          output { Int o = read_int(stdout()) }
        }
        workflow wf {
          input { Array[Int] divisors }
          scatter (d in divisors) {
            Int q = 12 / d
            call t { input: i = q }
          }
          output { Array[Int] qs = t.o }
        }
        """)
    (tmp_path / "wf.yaml").write_text("wf:\n  - name: fine\n    inputs: {divisors: [[1, 2, 3]]}\n"
                                      "    assertions: {outputs: {qs: [{Last: {IntEquals: 4}}]}}\n"
                                      "  - name: by_zero\n    inputs: {divisors: [[1, 0]]}\n")
    (tmp_path / "sprocket.toml").write_text("[run.workflow.scatter]\nconcurrency = 1\n")
    proc = sprocket_test(".", cwd=tmp_path)
    assert outcomes(proc) == {"wf::wf::fine": "passed", "wf::wf::by_zero": "failed"}, proc.stdout + proc.stderr
    assert "the workflow failed, but the test expects it to succeed: division by zero" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------------------------
# the command: its SOURCE, --junit, --clean-all, a bug, test.throttle
# --------------------------------------------------------------------------------------------


def test_a_missing_source_is_refused_as_check_refuses_it(tmp_path):
    proc = sprocket_test("nope.wdl", cwd=tmp_path)
    assert proc.returncode == 1 and "file not found: `nope.wdl`" in proc.stderr, proc.stderr
    assert "no tests to run" not in proc.stderr and not (tmp_path / "test").exists()


@pytest.mark.parametrize("where", ["missing/junit.xml", "a_file/junit.xml", "a_dir"])
def test_junit_to_a_path_that_cannot_be_written_is_refused_before_the_tests_run(tmp_path, where):
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text("echo:\n  - name: ok\n")
    (tmp_path / "a_file").write_text("x\n")
    (tmp_path / "a_dir").mkdir()
    proc = sprocket_test(".", "--junit", where, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert "error: --junit %s: cannot write it there" % where in proc.stderr, proc.stderr
    assert not (tmp_path / "test").exists()  # nothing ran


def test_clean_all_removes_the_latest_link_and_says_so_in_sprocket_db(tmp_path):
    """--clean-all: the run directory goes, and `runs/test/_latest` with it (not left pointing at
    nothing); sprocket.db keeps the run's row and records what went, as `sprocket clean` does."""
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text("echo:\n  - name: ok\n")
    proc = sprocket_test(".", "--clean-all", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = tmp_path / "test" / "runs" / "test"
    assert list(runs.iterdir()) == [], list(runs.iterdir())
    db = tmp_path / "test" / "sprocket.db"
    run = db_rows(db, "SELECT id, status, directory FROM runs")
    assert len(run) == 1 and run[0]["status"] == "completed"
    cleanups = db_rows(db, "SELECT run_id, paths, bytes_freed FROM cleanups")
    assert [(c["run_id"], c["paths"]) for c in cleanups] == [(run[0]["id"], '["%s"]' % run[0]["directory"])]
    assert cleanups[0]["bytes_freed"] > 0


def test_a_bug_in_a_test_run_is_an_internal_error_with_the_run_closed(tmp_path, monkeypatch, capsys):
    """A bug (not a WdlError) during `sprocket test` ends it as `run` does (run_internal_error):
    exit 70, the traceback in the run's output.log, the run `failed` in sprocket.db, not `running`."""
    from conftest import _import_sprocket

    S = _import_sprocket()
    write(tmp_path / "echo.wdl", TASK)
    (tmp_path / "echo.yaml").write_text("echo:\n  - name: ok\n")

    def a_bug(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(S.TaskRun, "execute", a_bug)
    assert S.main(["test", str(tmp_path), "-q"]) == 70
    err = capsys.readouterr().err
    log = next((tmp_path / "test" / "runs" / "test").glob("2*")) / "output.log"
    assert "internal error (a bug in sprocket.py, please report it): RuntimeError: a bug" in err, err
    assert "the traceback is in `%s`" % log in err, err
    assert "Traceback (most recent call last):" in log.read_text() and "in a_bug" in log.read_text()
    rows = db_rows(tmp_path / "test" / "sprocket.db", "SELECT status, error FROM runs")
    assert [(r["status"], r["error"]) for r in rows] == [("failed", "internal error: RuntimeError: a bug")]


def test_throttle_does_not_stop_the_scheduler_between_starts(tmp_path):
    """`test.throttle` spaces the first starts without the scheduler's thread sleeping: while the
    later executions wait for their turn, the first one's end is seen and its line written. The
    second execution's task (started at 5 s) looks for that line in output.log for 4 s (exit code 3
    if it never comes): a scheduler asleep until the third start (10 s) writes it only after that."""
    log = tmp_path / "test" / "output.log"
    write(tmp_path / "t.wdl", """
        version 1.1
        task t {
          input { Int i }
          command <<<
            [ ~{i} -ne 2 ] && exit 0
            for k in $(seq 40); do grep -q 'passed .*t::t::three \\[1/3\\]' 'LOG' && exit 0; sleep 0.1; done
            exit 3
          >>>
        }
        """.replace("LOG", str(log)))
    (tmp_path / "t.yaml").write_text("t:\n  - name: three\n    inputs: {i: [1, 2, 3]}\n")
    (tmp_path / "sprocket.toml").write_text("[test]\nthrottle = 5000\nparallelism = 3\n")
    proc = sprocket_test(".", cwd=tmp_path)
    assert proc.returncode == 0 and outcomes(proc) == {"t::t::three [%d/3]" % i: "passed" for i in (1, 2, 3)}, \
        proc.stdout + proc.stderr
