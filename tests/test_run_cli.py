"""`sprocket run` on the command line: targets, inputs, the run directory, `_latest`, errors.

Everything here drives the real program in a subprocess (``python3 sprocket.py run ...``) with the
test's tmp dir as the working directory, so the default output directory is ``tmp_path/out``.

What a run promises (README, shared/reference/sprocket-behaviour.md section 3):

* success: the outputs as pretty JSON on stdout (keys ``target.name``), exit 0, and
  ``run directory: PATH`` on stderr;
* failure: a message on stderr, exit 1, never a traceback;
* ``<out>/runs/<target>/<UTC YYYY-MM-DD_HHMMSS><9 digits of ns>/`` holding inputs.json,
  outputs.json, tmp/ and attempts/<n>/{command,stdout,stderr,work/} for a task target;
  ``<out>/runs/<target>/_latest`` is a relative symlink to the newest one; no run reuses a directory.
"""

import datetime
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import (REPO, assert_sane, exit_status_re, fails, ok, run_dir_of, sprocket_argv, sprocket_run,
                      write)

STAMP_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})_(\d{2})(\d{2})(\d{2})(\d{9})$")

pytestmark = pytest.mark.usefixtures("isolated_config")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def attempt_dirs(root):
    """Every attempts/<n> directory below root."""
    return sorted(p for p in Path(root).rglob("attempts/*") if p.is_dir())


def commands_run(root):
    """Every attempts/<n>/command written below root (a command was about to run)."""
    return sorted(Path(root).rglob("attempts/*/command"))


ECHO_TASK = """
version 1.1

task echo {
  input {
    String s
  }
  command <<<
    echo "~{s}"
  >>>
  output {
    String out = read_string(stdout())
  }
}
"""


# --------------------------------------------------------------------------------------------
# the README example
# --------------------------------------------------------------------------------------------


def test_readme_example(tmp_path):
    proc = sprocket_run(REPO / "examples" / "hello.wdl", "--target", "say_hello", "greeting=Hello", cwd=tmp_path,
                        script=True)
    outputs, rd = ok(proc)
    assert outputs == {"say_hello.message": "Hello, world!"}
    # pretty-printed (indented), not a one-line dump
    assert "\n" in proc.stdout.strip() and "  " in proc.stdout
    # the seed's tree
    assert rd.parent == tmp_path / "out" / "runs" / "say_hello"
    assert STAMP_RE.match(rd.name), rd.name
    assert (rd / "inputs.json").is_file()
    assert (rd / "outputs.json").is_file()
    assert (rd / "tmp").is_dir()
    a0 = rd / "attempts" / "0"
    for f in ("command", "stdout", "stderr"):
        assert (a0 / f).is_file(), f
    assert (a0 / "work").is_dir()
    assert not (rd / "attempts" / "1").exists()
    assert not (rd / "calls").exists()
    assert (a0 / "stdout").read_text() == "Hello, world!\n"
    assert "Hello" in (a0 / "command").read_text()
    assert json.loads((rd / "outputs.json").read_text()) == outputs
    inputs = json.loads((rd / "inputs.json").read_text())
    assert inputs in ({"say_hello.greeting": "Hello"}, {"greeting": "Hello"}), inputs


def test_readme_example_short_target_flag_and_options_after_inputs(tmp_path):
    outputs, _ = ok(sprocket_run(REPO / "examples" / "hello.wdl", "greeting=Hi", "-t", "say_hello", cwd=tmp_path,
                                 script=True))
    assert outputs == {"say_hello.message": "Hi, world!"}


# --------------------------------------------------------------------------------------------
# the run directory
# --------------------------------------------------------------------------------------------


def test_run_dir_name_is_utc_timestamp_with_nanoseconds(tmp_path):
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    before = datetime.datetime.now(datetime.timezone.utc)
    _, rd = ok(sprocket_run(src, "s=x", cwd=tmp_path))
    after = datetime.datetime.now(datetime.timezone.utc)
    m = STAMP_RE.match(rd.name)
    assert m, "run dir name %r is not YYYY-MM-DD_HHMMSS + 9 digits" % rd.name
    y, mo, d, h, mi, s, _ns = (int(x) for x in m.groups())
    stamp = datetime.datetime(y, mo, d, h, mi, s, tzinfo=datetime.timezone.utc)
    # UTC, not local time: the stamp lies between the two clock readings (to the second)
    assert before.replace(microsecond=0) - datetime.timedelta(seconds=2) <= stamp
    assert stamp <= after + datetime.timedelta(seconds=2)
    assert rd == (tmp_path / "out" / "runs" / "echo" / rd.name)


def test_latest_symlink_is_relative_and_follows_newest(tmp_path):
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    _, rd1 = ok(sprocket_run(src, "s=one", cwd=tmp_path))
    latest = tmp_path / "out" / "runs" / "echo" / "_latest"
    assert latest.is_symlink()
    assert os.readlink(str(latest)) == rd1.name  # relative: the bare directory name
    _, rd2 = ok(sprocket_run(src, "s=two", cwd=tmp_path))
    assert rd1 != rd2
    assert rd1.is_dir() and rd2.is_dir()
    assert rd2.name > rd1.name  # timestamps sort in time order
    assert latest.is_symlink()
    assert os.readlink(str(latest)) == rd2.name
    assert latest.resolve() == rd2.resolve()
    assert json.loads((latest / "outputs.json").read_text()) == {"echo.out": "two"}
    # the first run is untouched
    assert json.loads((rd1 / "outputs.json").read_text()) == {"echo.out": "one"}
    runs = sorted(p.name for p in latest.parent.iterdir())
    assert runs == sorted([rd1.name, rd2.name, "_latest"])


def test_latest_survives_moving_the_output_dir(tmp_path):
    """A relative link keeps working when the whole output directory is moved."""
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    ok(sprocket_run(src, "s=x", cwd=tmp_path))
    os.rename(str(tmp_path / "out"), str(tmp_path / "moved"))
    latest = tmp_path / "moved" / "runs" / "echo" / "_latest"
    assert (latest / "outputs.json").is_file()


def test_concurrent_runs_never_share_a_directory(tmp_path):
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    cmd = sprocket_argv("run", str(src))
    procs = [subprocess.Popen(cmd + ["s=run-%d" % i], cwd=str(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) for i in range(4)]
    dirs = []
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=120)
        proc = subprocess.CompletedProcess(cmd, p.returncode, out, err)
        outputs, rd = ok(proc)
        assert outputs == {"echo.out": "run-%d" % i}
        assert json.loads((rd / "outputs.json").read_text()) == {"echo.out": "run-%d" % i}
        dirs.append(rd)
    assert len(set(dirs)) == 4


def test_default_output_dir_is_out_in_cwd(tmp_path):
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _, rd = ok(sprocket_run(src, "s=x", cwd=elsewhere))
    assert rd.parent == elsewhere / "out" / "runs" / "echo"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["-o", "--output-dir"])
def test_output_dir_option(tmp_path, flag):
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    _, rd = ok(sprocket_run(src, "s=x", flag, "results/proj", cwd=tmp_path))
    assert rd.parent == tmp_path / "results" / "proj" / "runs" / "echo"
    assert rd.is_absolute()
    assert (tmp_path / "results" / "proj" / "runs" / "echo" / "_latest").is_symlink()
    assert not (tmp_path / "out").exists()


def test_workflow_run_dir_has_calls_not_attempts(tmp_path):
    src = write(tmp_path / "w.wdl", ECHO_TASK + """
        workflow main {
          call echo { input: s = "hi" }
          output { String o = echo.out }
        }
        """.replace("\n        ", "\n"), raw=True)
    outputs, rd = ok(sprocket_run(src, cwd=tmp_path))
    assert outputs == {"main.o": "hi"}
    assert rd.parent == tmp_path / "out" / "runs" / "main"
    assert (rd / "inputs.json").is_file() and (rd / "outputs.json").is_file() and (rd / "tmp").is_dir()
    assert not (rd / "attempts").exists()
    a0 = rd / "calls" / "echo" / "attempts" / "0"
    for f in ("command", "stdout", "stderr"):
        assert (a0 / f).is_file()
    assert (a0 / "work").is_dir()


# --------------------------------------------------------------------------------------------
# choosing the target
# --------------------------------------------------------------------------------------------

TWO_TASKS = """
version 1.1

task a {
  command <<< echo A >>>
  output { String out = read_string(stdout()) }
}

task b {
  command <<< echo B >>>
  output { String out = read_string(stdout()) }
}
"""


def test_target_inferred_only_task(tmp_path):
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    outputs, rd = ok(sprocket_run(src, "s=x", cwd=tmp_path))
    assert outputs == {"echo.out": "x"}
    assert rd.parent.name == "echo"


def test_target_inferred_workflow_over_tasks(tmp_path):
    src = write(tmp_path / "w.wdl", TWO_TASKS + "\nworkflow w {\n  call a\n  output { String o = a.out }\n}\n",
                raw=True)
    outputs, rd = ok(sprocket_run(src, cwd=tmp_path))
    assert outputs == {"w.o": "A"}
    assert rd.parent.name == "w"


def test_target_ambiguous_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", TWO_TASKS)
    fails(sprocket_run(src, cwd=tmp_path), "--target")
    assert not (tmp_path / "out" / "runs").exists() or not attempt_dirs(tmp_path / "out")


def test_target_chooses_a_task_of_many(tmp_path):
    src = write(tmp_path / "t.wdl", TWO_TASKS)
    outputs, rd = ok(sprocket_run(src, "--target", "b", cwd=tmp_path))
    assert outputs == {"b.out": "B"}
    assert rd.parent.name == "b"


def test_target_chooses_a_task_next_to_a_workflow(tmp_path):
    src = write(tmp_path / "w.wdl", TWO_TASKS + "\nworkflow w {\n  call a\n}\n", raw=True)
    outputs, _ = ok(sprocket_run(src, "--target", "b", cwd=tmp_path))
    assert outputs == {"b.out": "B"}


def test_unknown_target_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", TWO_TASKS)
    err = fails(sprocket_run(src, "--target", "nope", cwd=tmp_path), "nope")
    assert not attempt_dirs(tmp_path)
    assert err


def test_missing_source_is_an_error(tmp_path):
    fails(sprocket_run(tmp_path / "absent.wdl", cwd=tmp_path), "absent.wdl")


def test_invalid_document_is_reported_with_position(tmp_path):
    src = write(tmp_path / "bad.wdl", """
        version 1.1
        task t {
          command <<< echo >>>
          output { Int x = "not an int" + }
        }
        """)
    err = fails(sprocket_run(src, cwd=tmp_path))
    assert re.search(r"bad\.wdl:\d+:\d+: error:", err), err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# inputs on the command line
# --------------------------------------------------------------------------------------------

TYPES_TASK = """
version 1.1

task t {
  input {
    Int n
    String s = "default"
    Boolean flag = false
    Array[String] names = []
    Float f = 0.5
    Map[String, Int] m = {}
  }
  command <<< true >>>
  output {
    Int n_out = n
    String s_out = s
    Boolean flag_out = flag
    Array[String] names_out = names
    Float f_out = f
    Map[String, Int] m_out = m
  }
}
"""


def test_key_value_without_and_with_target_prefix(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    out1, _ = ok(sprocket_run(src, "n=3", "s=hello", cwd=tmp_path))
    out2, _ = ok(sprocket_run(src, "t.n=3", "t.s=hello", cwd=tmp_path))
    assert out1 == out2
    assert out1["t.n_out"] == 3 and out1["t.s_out"] == "hello"
    # defaults apply to what is not given
    assert out1["t.flag_out"] is False and out1["t.names_out"] == [] and out1["t.f_out"] == 0.5


def test_key_value_values_are_json_else_strings(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    outputs, _ = ok(sprocket_run(src, "n=7", "flag=true", "f=2.25", 'names=["x","y z"]', 'm={"a":1,"b":2}',
                                 "s=plain words, not JSON", cwd=tmp_path))
    assert outputs == {
        "t.n_out": 7, "t.s_out": "plain words, not JSON", "t.flag_out": True, "t.names_out": ["x", "y z"],
        "t.f_out": 2.25, "t.m_out": {"a": 1, "b": 2},
    }


def test_key_value_json_string(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    outputs, _ = ok(sprocket_run(src, "n=1", 's="quoted"', cwd=tmp_path))
    assert outputs["t.s_out"] == "quoted"


def test_repeated_key_builds_an_array(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    outputs, _ = ok(sprocket_run(src, "n=1", "names=a", "names=b", "names=c", cwd=tmp_path))
    assert outputs["t.names_out"] == ["a", "b", "c"]


def test_repeated_key_with_and_without_prefix_builds_one_array(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    proc = sprocket_run(src, "n=1", "names=a", "t.names=b", cwd=tmp_path)
    # either one array of both, or an error for giving the input twice; never silently one of them
    assert_sane(proc)
    if proc.returncode == 0:
        assert json.loads(proc.stdout)["t.names_out"] == ["a", "b"]
    else:
        assert "names" in proc.stderr


def test_single_value_for_an_array_input_is_wrapped(tmp_path):
    """Sprocket (v0.24+) wraps a scalar given for an Array[T] input."""
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    outputs, _ = ok(sprocket_run(src, "n=1", "names=only", cwd=tmp_path))
    assert outputs["t.names_out"] == ["only"]


def test_number_like_value_for_a_string_input_stays_text(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    outputs, _ = ok(sprocket_run(src, "n=1", "s=007", "names=1", "names=2", cwd=tmp_path))
    assert outputs["t.names_out"] == ["1", "2"]


def test_inputs_file_at_sign_and_plain_json_path(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    write(tmp_path / "in.json", json.dumps({"t.n": 5, "t.s": "from file", "t.names": ["p", "q"]}), raw=True)
    out1, rd1 = ok(sprocket_run(src, "@in.json", cwd=tmp_path))
    out2, _ = ok(sprocket_run(src, "in.json", cwd=tmp_path))
    assert out1 == out2
    assert out1["t.n_out"] == 5 and out1["t.s_out"] == "from file" and out1["t.names_out"] == ["p", "q"]
    inputs = json.loads((rd1 / "inputs.json").read_text())
    assert 5 in inputs.values() and "from file" in inputs.values()


def test_inputs_file_and_key_value_together(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    write(tmp_path / "in.json", json.dumps({"t.n": 5}), raw=True)
    outputs, _ = ok(sprocket_run(src, "@in.json", "s=extra", cwd=tmp_path))
    assert outputs["t.n_out"] == 5 and outputs["t.s_out"] == "extra"


def test_inputs_file_keys_carry_the_target_name(tmp_path):
    """In an inputs file every key names the target (`t.s`), as in Sprocket, Cromwell and
    miniwdl; a bare key is an error that says how to write it, unless --target names it."""
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    write(tmp_path / "in.json", json.dumps({"t.n": 5, "s": "bare"}), raw=True)
    fails(sprocket_run(src, "@in.json", cwd=tmp_path), "`s`", "`t.s`", "--target")
    outputs, _ = ok(sprocket_run(src, "@in.json", "--target", "t", cwd=tmp_path))
    assert outputs["t.s_out"] == "bare"


def test_later_inputs_override_earlier_ones(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    write(tmp_path / "in.json", json.dumps({"t.n": 5, "t.s": "file"}), raw=True)
    outputs, _ = ok(sprocket_run(src, "@in.json", "n=6", cwd=tmp_path))
    assert outputs["t.n_out"] == 6 and outputs["t.s_out"] == "file"
    outputs, _ = ok(sprocket_run(src, "n=6", "@in.json", cwd=tmp_path))
    assert outputs["t.n_out"] == 5


def test_missing_inputs_file_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    fails(sprocket_run(src, "@nothere.json", cwd=tmp_path), "nothere.json")
    assert not attempt_dirs(tmp_path)


def test_invalid_json_inputs_file_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    write(tmp_path / "in.json", '{"t.n": 5,,}', raw=True)
    fails(sprocket_run(src, "@in.json", cwd=tmp_path), "json")
    assert not attempt_dirs(tmp_path)


def test_inputs_file_must_hold_an_object(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    write(tmp_path / "in.json", "[1, 2]", raw=True)
    fails(sprocket_run(src, "@in.json", cwd=tmp_path))


def test_malformed_input_item_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    fails(sprocket_run(src, "justaword", "n=1", cwd=tmp_path), "justaword")


def test_unknown_input_key_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    fails(sprocket_run(src, "n=1", "nmae=x", cwd=tmp_path), "nmae")
    assert not attempt_dirs(tmp_path)


def test_unknown_input_key_of_a_workflow_is_an_error(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.1
        workflow w {
          input { Int x = 1 }
          output { Int o = x }
        }
        """)
    fails(sprocket_run(src, "w.y=2", cwd=tmp_path), "y")


def test_missing_required_input_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    fails(sprocket_run(src, "s=x", cwd=tmp_path), "missing required input: `t.n`")
    assert not commands_run(tmp_path)


def test_missing_required_workflow_input_is_an_error(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.1
        workflow w {
          input { Int needed }
          output { Int o = needed }
        }
        """)
    fails(sprocket_run(src, cwd=tmp_path), "needed")


def test_input_of_the_wrong_type_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    fails(sprocket_run(src, "n=notanumber", cwd=tmp_path), "n")
    assert not attempt_dirs(tmp_path)


def test_optional_inputs_may_be_omitted_or_null(tmp_path):
    src = write(tmp_path / "t.wdl", """
        version 1.1
        task t {
          input { String? maybe }
          command <<< true >>>
          output { Boolean given = defined(maybe) }
        }
        """)
    assert ok(sprocket_run(src, cwd=tmp_path))[0] == {"t.given": False}
    assert ok(sprocket_run(src, "maybe=null", cwd=tmp_path))[0] == {"t.given": False}
    assert ok(sprocket_run(src, "maybe=yes", cwd=tmp_path))[0] == {"t.given": True}


# --------------------------------------------------------------------------------------------
# File inputs
# --------------------------------------------------------------------------------------------

FILE_TASK = """
version 1.1

task t {
  input {
    File f
  }
  command <<< cat "~{f}" >>>
  output {
    String content = read_string(stdout())
    String path = "~{f}"
  }
}
"""


def test_relative_file_input_in_json_resolves_against_the_json_dir(tmp_path):
    src = write(tmp_path / "t.wdl", FILE_TASK)
    write(tmp_path / "inputs" / "data.txt", "from the inputs dir\n", raw=True)
    write(tmp_path / "data.txt", "from the cwd\n", raw=True)
    write(tmp_path / "inputs" / "in.json", json.dumps({"t.f": "data.txt"}), raw=True)
    outputs, _ = ok(sprocket_run(src, "@inputs/in.json", cwd=tmp_path))
    assert outputs["t.content"] == "from the inputs dir"
    assert Path(outputs["t.path"]).resolve() == (tmp_path / "inputs" / "data.txt").resolve()


def test_relative_file_input_on_command_line_resolves_against_cwd(tmp_path):
    src = write(tmp_path / "t.wdl", FILE_TASK)
    write(tmp_path / "work" / "data.txt", "from the cwd\n", raw=True)
    write(tmp_path / "data.txt", "from the document dir\n", raw=True)
    outputs, _ = ok(sprocket_run(src, "f=data.txt", cwd=tmp_path / "work"))
    assert outputs["t.content"] == "from the cwd"
    assert Path(outputs["t.path"]).resolve() == (tmp_path / "work" / "data.txt").resolve()


def test_absolute_file_input(tmp_path):
    src = write(tmp_path / "t.wdl", FILE_TASK)
    data = write(tmp_path / "d" / "abs.txt", "absolute\n", raw=True)
    outputs, _ = ok(sprocket_run(src, "f=%s" % data, cwd=tmp_path))
    assert outputs["t.content"] == "absolute"


def test_missing_input_file_is_an_error_before_anything_runs(tmp_path):
    src = write(tmp_path / "t.wdl", FILE_TASK)
    err = fails(sprocket_run(src, "f=no_such_file.txt", cwd=tmp_path), "no_such_file.txt")
    assert not attempt_dirs(tmp_path), "a task ran although an input file is missing"
    assert "Traceback" not in err


def test_missing_input_file_in_json_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", FILE_TASK)
    write(tmp_path / "in" / "in.json", json.dumps({"t.f": "gone.txt"}), raw=True)
    write(tmp_path / "gone.txt", "the cwd has it, the inputs dir does not\n", raw=True)
    fails(sprocket_run(src, "@in/in.json", cwd=tmp_path), "gone.txt")
    assert not attempt_dirs(tmp_path)


def test_missing_file_in_array_input_is_an_error(tmp_path):
    src = write(tmp_path / "t.wdl", """
        version 1.1
        task t {
          input { Array[File] fs }
          command <<< cat ~{sep(" ", fs)} >>>
          output { String s = read_string(stdout()) }
        }
        """)
    write(tmp_path / "a.txt", "a\n", raw=True)
    fails(sprocket_run(src, "fs=a.txt", "fs=b.txt", cwd=tmp_path), "b.txt")
    assert not attempt_dirs(tmp_path)


def test_missing_input_file_of_a_workflow_is_an_error_before_anything_runs(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.1
        task first {
          command <<< echo ran >>>
          output { String s = read_string(stdout()) }
        }
        workflow w {
          input { File f }
          call first
          output { String o = first.s + read_string(f) }
        }
        """)
    fails(sprocket_run(src, "f=nope.txt", cwd=tmp_path), "nope.txt")
    assert not attempt_dirs(tmp_path)


# --------------------------------------------------------------------------------------------
# nested call inputs and requirement overrides
# --------------------------------------------------------------------------------------------


def nested_wf(version, meta="", hints=""):
    return """
version %s

task t {
  input {
    Int x = 1
  }
  command <<< echo ~{x} >>>
  output { Int out = read_int(stdout()) }
}

workflow wf {
  %s
  %s
  call t
  output { Int o = t.out }
}
""" % (version, meta, hints)


def test_nested_call_input_in_wdl_1_0(tmp_path):
    src = write(tmp_path / "w.wdl", nested_wf("1.0"), raw=True)
    assert ok(sprocket_run(src, cwd=tmp_path))[0] == {"wf.o": 1}
    assert ok(sprocket_run(src, "wf.t.x=42", cwd=tmp_path))[0] == {"wf.o": 42}
    assert ok(sprocket_run(src, "t.x=43", cwd=tmp_path))[0] == {"wf.o": 43}


def test_nested_call_input_in_wdl_1_0_from_json(tmp_path):
    src = write(tmp_path / "w.wdl", nested_wf("1.0"), raw=True)
    write(tmp_path / "in.json", json.dumps({"wf.t.x": 9}), raw=True)
    assert ok(sprocket_run(src, "in.json", cwd=tmp_path))[0] == {"wf.o": 9}


def test_nested_call_input_rejected_in_wdl_1_1_by_default(tmp_path):
    src = write(tmp_path / "w.wdl", nested_wf("1.1"), raw=True)
    fails(sprocket_run(src, "wf.t.x=42", cwd=tmp_path), "t.x")
    assert not attempt_dirs(tmp_path)


def test_nested_call_input_allowed_in_wdl_1_1_with_meta(tmp_path):
    src = write(tmp_path / "w.wdl", nested_wf("1.1", meta="meta { allowNestedInputs: true }"), raw=True)
    assert ok(sprocket_run(src, "wf.t.x=42", cwd=tmp_path))[0] == {"wf.o": 42}


def test_nested_call_input_allowed_in_wdl_1_2_with_hints(tmp_path):
    src = write(tmp_path / "w.wdl", nested_wf("1.2", hints="hints { allow_nested_inputs: true }"), raw=True)
    assert ok(sprocket_run(src, "wf.t.x=42", cwd=tmp_path))[0] == {"wf.o": 42}


def test_nested_call_input_rejected_in_wdl_1_2_without_hints(tmp_path):
    src = write(tmp_path / "w.wdl", nested_wf("1.2"), raw=True)
    fails(sprocket_run(src, "wf.t.x=42", cwd=tmp_path), "t.x")


def test_nested_input_the_workflow_already_sets_is_an_error(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.0
        task t {
          input { Int x = 1 }
          command <<< echo ~{x} >>>
          output { Int out = read_int(stdout()) }
        }
        workflow wf {
          call t { input: x = 5 }
          output { Int o = t.out }
        }
        """)
    fails(sprocket_run(src, "wf.t.x=42", cwd=tmp_path), "x")


def test_nested_input_for_unknown_call_is_an_error(tmp_path):
    src = write(tmp_path / "w.wdl", nested_wf("1.0"), raw=True)
    fails(sprocket_run(src, "wf.nocall.x=1", cwd=tmp_path), "nocall")


def test_nested_input_for_unknown_call_input_is_an_error(tmp_path):
    src = write(tmp_path / "w.wdl", nested_wf("1.0"), raw=True)
    fails(sprocket_run(src, "wf.t.nope=1", cwd=tmp_path), "nope")


OVERRIDE_TASK_10 = """
version 1.0

task t {
  command <<< echo ran >>>
  runtime {
    cpu: %s
  }
  output { String s = read_string(stdout()) }
}
"""


def test_runtime_override_for_a_task_target(tmp_path):
    # the document asks for far more cpus than any host has; the override brings it down
    src = write(tmp_path / "t.wdl", OVERRIDE_TASK_10 % "100000", raw=True)
    fails(sprocket_run(src, cwd=tmp_path), "cpu_limit_behavior")
    assert ok(sprocket_run(src, "t.runtime.cpu=1", cwd=tmp_path))[0] == {"t.s": "ran"}


def test_runtime_override_raising_cpu_is_checked(tmp_path):
    src = write(tmp_path / "t.wdl", OVERRIDE_TASK_10 % "1", raw=True)
    fails(sprocket_run(src, "t.runtime.cpu=100000", cwd=tmp_path), "cpu_limit_behavior")


def test_requirements_override_visible_as_task_cpu(tmp_path):
    src = write(tmp_path / "t.wdl", """
        version 1.2
        task t {
          command <<< echo ~{task.cpu} >>>
          requirements {
            cpu: 100000
          }
          output { Float c = task.cpu }
        }
        """)
    outputs, rd = ok(sprocket_run(src, "t.requirements.cpu=1", cwd=tmp_path))
    assert outputs == {"t.c": 1.0}
    assert (rd / "attempts" / "0" / "stdout").read_text().strip() in ("1", "1.0", "1.000000")


def test_runtime_override_for_a_call(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.1
        task t {
          command <<< echo ran >>>
          runtime { cpu: 1 }
          output { String s = read_string(stdout()) }
        }
        workflow wf {
          call t
          output { String o = t.s }
        }
        """)
    assert ok(sprocket_run(src, cwd=tmp_path))[0] == {"wf.o": "ran"}
    fails(sprocket_run(src, "wf.t.runtime.cpu=100000", cwd=tmp_path), "cpu_limit_behavior")


def test_requirements_override_for_a_call_visible_as_task_cpu(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.2
        task t {
          command <<< true >>>
          requirements { cpu: 100000 }
          output { Float c = task.cpu }
        }
        workflow wf {
          call t
          output { Float o = t.c }
        }
        """)
    assert ok(sprocket_run(src, "wf.t.requirements.cpu=1", cwd=tmp_path))[0] == {"wf.o": 1.0}


def test_requirements_override_for_a_call_inside_scatter_and_conditional(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.2
        task t {
          command <<< true >>>
          requirements { cpu: 100000 }
          output { Float c = task.cpu }
        }
        workflow wf {
          scatter (i in [1, 2]) {
            if (i > 0) {
              call t
            }
          }
          output { Array[Float?] o = t.c }
        }
        """)
    fails(sprocket_run(src, cwd=tmp_path), "cpu_limit_behavior")
    assert ok(sprocket_run(src, "wf.t.requirements.cpu=1", cwd=tmp_path))[0] == {"wf.o": [1.0, 1.0]}


# --------------------------------------------------------------------------------------------
# resources and the container warning
# --------------------------------------------------------------------------------------------


def test_cpu_over_host_is_an_error_naming_cpu_limit_behavior(tmp_path):
    src = write(tmp_path / "t.wdl", """
        version 1.2
        task big {
          command <<< echo should not run >>>
          requirements { cpu: %d }
          output { String s = read_string(stdout()) }
        }
        """ % ((os.cpu_count() or 1) + 1))
    fails(sprocket_run(src, cwd=tmp_path), "cpu_limit_behavior")
    for a in attempt_dirs(tmp_path):
        assert not (a / "stdout").exists() or "should not run" not in (a / "stdout").read_text()


def test_memory_over_host_is_an_error_naming_memory_limit_behavior(tmp_path):
    src = write(tmp_path / "t.wdl", """
        version 1.2
        task big {
          command <<< echo should not run >>>
          requirements { memory: "100000 TiB" }
          output { String s = read_string(stdout()) }
        }
        """)
    fails(sprocket_run(src, cwd=tmp_path), "memory_limit_behavior")


def test_container_warning_once_per_run(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.2
        task a {
          command <<< echo a >>>
          requirements { container: "ubuntu:latest" }
          output { String s = read_string(stdout()) }
        }
        task b {
          command <<< echo b >>>
          requirements { container: "debian:stable" }
          output { String s = read_string(stdout()) }
        }
        workflow w {
          call a
          call b
          scatter (i in [1, 2]) {
            call a as a2
          }
          output { String o = a.s + b.s }
        }
        """)
    proc = sprocket_run(src, cwd=tmp_path)
    outputs, _ = ok(proc)
    assert outputs == {"w.o": "ab"}
    warnings = [line for line in proc.stderr.splitlines() if line.lower().startswith("warning")]
    container_warnings = [line for line in warnings if "container" in line.lower()]
    assert len(container_warnings) == 1, proc.stderr
    assert proc.stderr.lower().count("container` requirement") + proc.stderr.lower().count(
        "container requirement") <= 1, proc.stderr


def test_no_container_warning_without_containers(tmp_path):
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    proc = sprocket_run(src, "s=x", cwd=tmp_path)
    ok(proc)
    assert not [line for line in proc.stderr.splitlines() if line.lower().startswith("warning")], proc.stderr


# --------------------------------------------------------------------------------------------
# failures: exit 1, the message, nothing on stdout
# --------------------------------------------------------------------------------------------


def test_failed_task_message_and_exit_code(tmp_path):
    src = write(tmp_path / "t.wdl", """
        version 1.1
        task boom {
          command <<<
            echo "to stdout"
            for i in $(seq 1 15); do echo "err-line-$i" >&2; done
            exit 5
          >>>
          output { String s = read_string(stdout()) }
        }
        """)
    proc = sprocket_run(src, cwd=tmp_path)
    err = fails(proc, "task `boom` failed", exit_status_re(5), "err-line-15")
    assert proc.stdout.strip() == ""
    rd = run_dir_of(proc)
    assert str(rd / "attempts" / "0" / "stdout") in err
    assert str(rd / "attempts" / "0" / "stderr") in err
    # only the last lines of stderr, not the whole of it
    assert "err-line-14" in err
    assert not (rd / "outputs.json").exists()


def test_failed_call_in_a_workflow_exits_1(tmp_path):
    src = write(tmp_path / "w.wdl", """
        version 1.1
        task boom {
          command <<< echo "bad thing" >&2; exit 3 >>>
        }
        workflow w {
          call boom
        }
        """)
    proc = sprocket_run(src, cwd=tmp_path)
    fails(proc, "task `boom` failed", exit_status_re(3), "bad thing")
    assert proc.stdout.strip() == ""


def test_usage_error_for_run_without_source(tmp_path):
    proc = sprocket_run(cwd=tmp_path)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2, proc.stderr


def test_run_help(tmp_path):
    proc = subprocess.run(sprocket_argv("run", "--help"), capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 0
    assert "--target" in proc.stdout and "--output-dir" in proc.stdout


def test_unknown_option_is_a_usage_error(tmp_path):
    src = write(tmp_path / "t.wdl", ECHO_TASK)
    proc = sprocket_run(src, "s=x", "--no-such-flag", cwd=tmp_path)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert not (tmp_path / "out").exists()


def test_requirement_overrides_in_the_inputs_are_checked(tmp_path):
    """`t.requirements.x` must name a requirement, and its value must have a type a requirement
    of that name can have; hints are free-form."""
    src = write(tmp_path / "t.wdl", TYPES_TASK)
    fails(sprocket_run(src, "t.n=1", "t.requirements.colour=1", cwd=tmp_path), "unknown requirement", "colour")
    fails(sprocket_run(src, "t.n=1", "t.runtime.cpu=true", cwd=tmp_path), "`cpu`", "true")
    ok(sprocket_run(src, "t.n=1", "t.runtime.cpu=1", "t.hints.anything=true", cwd=tmp_path))


def test_a_duplicate_key_in_an_inputs_file_is_warned_about(tmp_path):
    wdl = write(tmp_path / "make.wdl", OUTPUT_FILES)
    inputs = write(tmp_path / "in.json", '{"make.word": "first", "make.word": "second"}')
    proc = sprocket_run(wdl, inputs, cwd=tmp_path)
    assert ok(proc)[0]["make.text"] == "second"
    assert "key `make.word` is given more than once; the last value is used" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------------------------
# --suffix, --index-on, --show-task-stderr
# --------------------------------------------------------------------------------------------

OUTPUT_FILES = """
version 1.1

task make {
    input {
        String word
    }
    command <<<
        echo ~{word} > one.txt
        mkdir -p sub && echo ~{word} > sub/one.txt
    >>>
    output {
        File single = "one.txt"
        Array[File] same_names = ["one.txt", "sub/one.txt"]
        String text = word
    }
}
"""


def test_suffix_ends_the_run_directory_name(tmp_path):
    wdl = write(tmp_path / "make.wdl", OUTPUT_FILES)
    first = run_dir_of(sprocket_run(wdl, "word=a", "--suffix", "trial", cwd=tmp_path))
    second = run_dir_of(sprocket_run(wdl, "word=b", "--suffix", "trial", cwd=tmp_path))
    for rd in (first, second):
        assert rd.name.endswith("_trial") and STAMP_RE.match(rd.name[:-len("_trial")]), rd.name
    assert first != second and (first / "outputs.json").is_file() and (second / "outputs.json").is_file()
    assert json.loads((first / "outputs.json").read_text())["make.text"] == "a"  # not overwritten
    assert os.readlink(str(tmp_path / "out" / "runs" / "make" / "_latest")) == second.name


def test_index_on_links_the_outputs_and_moves_to_the_newest_run(tmp_path):
    wdl = write(tmp_path / "make.wdl", OUTPUT_FILES)
    _, first = ok(sprocket_run(wdl, "word=a", "--index-on", "project/latest", cwd=tmp_path))
    index = tmp_path / "out" / "index" / "project" / "latest"
    assert json.loads((index / "outputs.json").read_text()) == json.loads((first / "outputs.json").read_text())
    assert (index / "single" / "one.txt").read_text() == "a\n"
    assert (index / "same_names" / "0" / "one.txt").read_text() == "a\n"
    assert (index / "same_names" / "1" / "one.txt").read_text() == "a\n"
    assert all(not os.path.isabs(os.readlink(str(p))) for p in index.rglob("*") if p.is_symlink())
    _, second = ok(sprocket_run(wdl, "word=b", "--index-on", "project/latest", cwd=tmp_path))
    assert (index / "single" / "one.txt").read_text() == "b\n"
    assert os.path.realpath(str(index / "outputs.json")) == str(second / "outputs.json")
    # the earlier run is untouched: its outputs and files are still there
    assert json.loads((first / "outputs.json").read_text())["make.text"] == "a"
    assert Path(json.loads((first / "outputs.json").read_text())["make.single"]).read_text() == "a\n"
    assert sorted(p.name for p in index.parent.iterdir()) == ["latest"], "a temporary index was left behind"


def test_index_on_refuses_to_replace_an_index_holding_a_users_file(tmp_path):
    wdl = write(tmp_path / "make.wdl", OUTPUT_FILES)
    ok(sprocket_run(wdl, "word=a", "--index-on", "proj/final", cwd=tmp_path))
    notes = write(tmp_path / "out" / "index" / "proj" / "final" / "notes.txt", "mine\n")
    fails(sprocket_run(wdl, "word=b", "--index-on", "proj/final", cwd=tmp_path), "--index-on", "notes.txt")
    assert notes.read_text() == "mine\n"
    assert len(list((tmp_path / "out" / "runs" / "make").iterdir())) == 2, "a refused run made a run directory"


def test_index_on_refuses_to_replace_an_index_holding_a_users_empty_directory(tmp_path):
    wdl = write(tmp_path / "make.wdl", OUTPUT_FILES)
    ok(sprocket_run(wdl, "word=a", "--index-on", "proj/final", cwd=tmp_path))
    empty = tmp_path / "out" / "index" / "proj" / "final" / "mine" / "empty"
    empty.mkdir(parents=True)
    fails(sprocket_run(wdl, "word=b", "--index-on", "proj/final", cwd=tmp_path), "--index-on", "mine/empty",
          "not written by sprocket")
    assert empty.is_dir()


def test_index_on_never_writes_or_deletes_through_a_symlink(tmp_path):
    wdl = write(tmp_path / "make.wdl", OUTPUT_FILES)
    ext = tmp_path / "ext"
    keep = write(ext / "final" / "keep.txt", "precious\n")
    (tmp_path / "out" / "index").mkdir(parents=True)
    os.symlink(str(ext), str(tmp_path / "out" / "index" / "proj"))
    fails(sprocket_run(wdl, "word=a", "--index-on", "proj/final", cwd=tmp_path), "--index-on", "symbolic link")
    assert keep.read_text() == "precious\n" and sorted(p.name for p in ext.rglob("*")) == ["final", "keep.txt"]
    # the index directory itself a link: refused too
    os.unlink(str(tmp_path / "out" / "index" / "proj"))
    (tmp_path / "out" / "index" / "proj").mkdir()
    os.symlink(str(ext / "final"), str(tmp_path / "out" / "index" / "proj" / "final"))
    fails(sprocket_run(wdl, "word=a", "--index-on", "proj/final", cwd=tmp_path), "symbolic link")
    assert keep.read_text() == "precious\n"


def test_index_directories_follow_the_umask_as_run_directories_do(tmp_path):
    wdl = write(tmp_path / "make.wdl", OUTPUT_FILES)
    cmd = "umask 022; exec %s" % shlex.join(sprocket_argv("run", str(wdl), "word=a", "--index-on", "proj/final"))
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    _, rd = ok(proc)
    index = tmp_path / "out" / "index" / "proj" / "final"
    for d in [index, index / "single", index.parent, rd]:
        assert oct(d.stat().st_mode & 0o777) == oct(0o755), d


@pytest.mark.parametrize("flag, value", [("--index-on", "../elsewhere"), ("--index-on", "/abs"),
                                         ("--index-on", "a/./b"), ("--suffix", "a/b"), ("--suffix", ""),
                                         ("--suffix", "two\nlines"), ("--index-on", "a/b\rc")])
def test_bad_suffix_or_index_path_is_refused_before_the_run(tmp_path, flag, value):
    wdl = write(tmp_path / "make.wdl", OUTPUT_FILES)
    proc = sprocket_run(wdl, "word=a", flag, value, cwd=tmp_path)
    fails(proc, flag)
    assert not (tmp_path / "out").exists()


STDERR_TASK = """
version 1.1

task talk {
    input {
        String go
    }
    command <<<
        echo "early line" >&2
        while [ ! -e "~{go}" ]; do sleep 0.1; done
        echo "late line" >&2
    >>>
}
"""


def test_show_task_stderr_streams_lines_as_they_are_written(tmp_path):
    import threading

    wdl = write(tmp_path / "talk.wdl", STDERR_TASK)
    go = tmp_path / "go"
    proc = subprocess.Popen(sprocket_argv("run", str(wdl), "go=%s" % go, "--show-task-stderr"),
                            cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    lines, seen = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "early line" in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(60), "the task's first stderr line was not shown while it ran:\n" + "".join(lines)
        go.write_text("")
        assert proc.wait(60) == 0, "".join(lines)
    finally:
        go.write_text("")
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    text = "".join(lines)
    assert "[talk] early line" in text and "[talk] late line" in text, text
    log = (tmp_path / "out" / "output.log").read_text()
    assert "task `talk` stderr: late line" in log
    quiet = sprocket_run(wdl, "go=%s" % go, cwd=tmp_path)
    assert quiet.returncode == 0 and "early line" not in quiet.stderr


# -- sprocket doctor, local backend ----------------------------------------------------------------


def test_doctor_local_backend_every_check_ok(tmp_path):
    from conftest import sprocket_cmd

    proc = sprocket_cmd("doctor", "-s", "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "ok  the output directory `%s` is writable" % (tmp_path / "out")
    assert lines[1] == "ok  the shell `bash` runs commands"
    assert lines[2].startswith("ok  tasks may use %d CPU(s) and " % os.cpu_count()) and len(lines) == 3, lines
    assert "checking the `default` backend (type local)" in proc.stderr


def test_doctor_local_backend_a_bad_shell_and_an_unwritable_output_directory(tmp_path):
    from conftest import sprocket_cmd

    (tmp_path / "file").write_text("not a directory")
    write(tmp_path / "sprocket.toml", 'run.task.shell = "no-such-shell"\n')
    proc = sprocket_cmd("doctor", "-s", "-c", tmp_path / "sprocket.toml", "-o", tmp_path / "file" / "out", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("FAIL the output directory `%s`: cannot write there: " % (tmp_path / "file" / "out"))
    assert lines[0].endswith("; make it writable, or choose another with `-o` (or run.output_dir)")
    assert lines[1] == ("FAIL the shell `no-such-shell`: no-such-shell: command not found; install it, or set "
                        "`run.task.shell` to a shell this host has (e.g. \"bash\")")
    assert "Traceback" not in proc.stderr
