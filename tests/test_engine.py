"""Running workflows and tasks end to end on the local backend.

Each test writes a small WDL document into its tmp dir and runs the real program in a subprocess
(``python3 sprocket.py run ...``, cwd = tmp dir, so outputs go to ``tmp_path/out``), then looks at
the outputs printed on stdout and at the run directory:

    <out>/runs/<target>/<timestamp>/
        inputs.json  outputs.json  tmp/
        attempts/<n>/{command,stdout,stderr,work/}                     (a task target)
        calls/<alias>[-<scatter index>...]/attempts/<n>/...            (a workflow's calls;
                                                                        indices innermost first)
        calls/<subworkflow alias>[-idx]/calls/...                      (subworkflows nest)

Timing tests never assert wall-clock bounds: tasks write their own start/end times and the tests
compare those intervals.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (RUN_DIR_RE, assert_diag, db_rows, exit_status_re, fails, find_pos, http_server, norm, ok,
                      run_dir_of, sprocket_argv, sprocket_cmd, sprocket_run, write)

PY = sys.executable  # tasks that need a clock use the Python running the tests

pytestmark = pytest.mark.usefixtures("isolated_config")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def run_wdl(tmp_path, source, *inputs, name="main.wdl", raw=False):
    """Write ``source`` (dedented unless ``raw``) into tmp_path and run it there."""
    return sprocket_run(write(tmp_path / name, source, raw=raw), *inputs, cwd=tmp_path)


def run_ok(tmp_path, source, *inputs, **kw):
    return ok(run_wdl(tmp_path, source, *inputs, **kw))


def call_dirs(rd):
    calls = rd / "calls"
    return sorted(p.name for p in calls.iterdir()) if calls.is_dir() else []


def assert_attempt(adir):
    """An attempt directory holds command, stdout, stderr and work/."""
    adir = Path(adir)
    assert adir.is_dir(), "missing attempt directory %s" % adir
    for f in ("command", "stdout", "stderr"):
        assert (adir / f).is_file(), "missing %s" % (adir / f)
    assert (adir / "work").is_dir(), "missing %s" % (adir / "work")


def attempts(call_dir):
    a = Path(call_dir) / "attempts"
    return sorted(int(p.name) for p in a.iterdir()) if a.is_dir() else []


# --------------------------------------------------------------------------------------------
# scatter, call directories, subworkflows
# --------------------------------------------------------------------------------------------

IJ_TASK = """
task t {
  input {
    Int i
    Int j = -1
  }
  command <<< echo "i=~{i} j=~{j}" >>>
  output { String s = read_string(stdout()) }
}
"""


def test_scatter_call_dirs_and_nested_indices_innermost_first(tmp_path):
    src = "version 1.1\n" + IJ_TASK + """
workflow w {
  scatter (i in [10, 20, 30]) {
    call t as single { input: i = i }
  }
  scatter (a in [0, 1]) {
    scatter (b in [0, 1, 2]) {
      call t as nested { input: i = a, j = b }
    }
  }
  output {
    Array[String] s = single.s
    Array[Array[String]] n = nested.s
  }
}
"""
    outputs, rd = run_ok(tmp_path, src, raw=True)
    assert outputs == {
        "w.s": ["i=10 j=-1", "i=20 j=-1", "i=30 j=-1"],
        "w.n": [["i=0 j=0", "i=0 j=1", "i=0 j=2"], ["i=1 j=0", "i=1 j=1", "i=1 j=2"]],
    }
    expected = ["single-0", "single-1", "single-2"] + ["nested-%d-%d" % (b, a) for a in (0, 1) for b in (0, 1, 2)]
    assert call_dirs(rd) == sorted(expected)
    assert (rd / "calls" / "single-1" / "attempts" / "0" / "stdout").read_text() == "i=20 j=-1\n"
    # innermost index first: nested-<b>-<a>
    assert (rd / "calls" / "nested-2-1" / "attempts" / "0" / "stdout").read_text() == "i=1 j=2\n"
    assert (rd / "calls" / "nested-1-0" / "attempts" / "0" / "stdout").read_text() == "i=0 j=1\n"
    for d in expected:
        assert_attempt(rd / "calls" / d / "attempts" / "0")


def test_call_dirs_alias_and_conditionals(tmp_path):
    src = "version 1.1\n" + IJ_TASK + """
workflow w {
  call t { input: i = 1 }
  call t as aliased { input: i = 2 }
  if (true) {
    call t as in_if { input: i = 3 }
  }
  if (false) {
    call t as skipped { input: i = 4 }
  }
  scatter (k in [0, 1, 2]) {
    if (k == 1) {
      call t as cond_in_scatter { input: i = k }
    }
  }
  output {
    Array[String?] c = cond_in_scatter.s
  }
}
"""
    outputs, rd = run_ok(tmp_path, src, raw=True)
    assert outputs == {"w.c": [None, "i=1 j=-1", None]}
    # calls in `if` blocks get no suffix of their own; inside a scatter they carry its index
    assert call_dirs(rd) == sorted(["t", "aliased", "in_if", "cond_in_scatter-1"])
    assert (rd / "calls" / "aliased" / "attempts" / "0" / "stdout").read_text() == "i=2 j=-1\n"


SUB_WDL = """
version 1.1

task t {
  input { Int i }
  command <<< echo ~{i} >>>
  output { Int o = read_int(stdout()) }
}

workflow inner {
  input { Int base }
  scatter (k in [0, 1]) {
    call t { input: i = base + k }
  }
  output { Array[Int] os = t.o }
}
"""


def test_subworkflow_calls_nest(tmp_path):
    write(tmp_path / "sub.wdl", SUB_WDL)
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        import "sub.wdl" as s

        workflow outer {
          call s.inner as first { input: base = 10 }
          scatter (x in [100, 200]) {
            call s.inner as many { input: base = x }
          }
          output {
            Array[Int] a = first.os
            Array[Array[Int]] b = many.os
          }
        }
        """)
    assert outputs == {"outer.a": [10, 11], "outer.b": [[100, 101], [200, 201]]}
    assert call_dirs(rd) == ["first", "many-0", "many-1"]
    for sub in ("first", "many-0", "many-1"):
        # the subworkflow's own calls: a fresh scope, so only its own scatter index
        assert call_dirs(rd / "calls" / sub) == ["t-0", "t-1"], sub
        for t in ("t-0", "t-1"):
            assert_attempt(rd / "calls" / sub / "calls" / t / "attempts" / "0")
    assert (rd / "calls" / "many-1" / "calls" / "t-1" / "attempts" / "0" / "stdout").read_text() == "201\n"
    assert (rd / "calls" / "first" / "calls" / "t-0" / "attempts" / "0" / "stdout").read_text() == "10\n"


def test_subworkflow_call_without_alias_uses_workflow_name(tmp_path):
    write(tmp_path / "sub.wdl", SUB_WDL)
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        import "sub.wdl" as s
        workflow outer {
          call s.inner { input: base = 1 }
          output { Array[Int] a = inner.os }
        }
        """)
    assert outputs == {"outer.a": [1, 2]}
    assert call_dirs(rd) == ["inner"]
    assert call_dirs(rd / "calls" / "inner") == ["t-0", "t-1"]


def test_outputs_gathered_from_scatter(tmp_path):
    src = """
        version 1.1
        task sq {
          input { Int x }
          command <<< echo $(( ~{x} * ~{x} )) >>>
          output { Int y = read_int(stdout()) }
        }
        workflow w {
          input { Array[Int] xs }
          scatter (x in xs) {
            call sq { input: x = x }
            Int plus = x + 1
            Pair[Int, Int] both = (x, sq.y)
          }
          output {
            Array[Int] squares = sq.y
            Array[Int] pluses = plus
            Array[Pair[Int, Int]] pairs = both
            Int total = length(squares)
          }
        }
        """
    outputs, rd = run_ok(tmp_path, src, "xs=[1, 2, 3]")
    assert outputs == {
        "w.squares": [1, 4, 9], "w.pluses": [2, 3, 4], "w.total": 3,
        "w.pairs": [{"left": 1, "right": 1}, {"left": 2, "right": 4}, {"left": 3, "right": 9}],
    }
    assert call_dirs(rd) == ["sq-0", "sq-1", "sq-2"]


def test_scatter_over_empty_array(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task sq {
          input { Int x }
          command <<< echo ~{x} >>>
          output { Int y = read_int(stdout()) }
        }
        workflow w {
          input { Array[Int] xs = [] }
          scatter (x in xs) {
            call sq { input: x = x }
            Int plus = x + 1
          }
          output {
            Array[Int] squares = sq.y
            Array[Int] pluses = plus
          }
        }
        """)
    assert outputs == {"w.squares": [], "w.pluses": []}
    assert call_dirs(rd) == []


def test_scatter_feeding_a_later_call(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        task echo_n {
          input { Int n }
          command <<< echo ~{n} >>>
          output { Int o = read_int(stdout()) }
        }
        task sum {
          input { Array[Int] ns }
          command <<< echo $(( ~{sep(" + ", ns)} )) >>>
          output { Int total = read_int(stdout()) }
        }
        workflow w {
          scatter (n in range(5)) {
            call echo_n { input: n = n }
          }
          call sum { input: ns = echo_n.o }
          output { Int total = sum.total }
        }
        """)
    assert outputs == {"w.total": 10}


# --------------------------------------------------------------------------------------------
# conditionals
# --------------------------------------------------------------------------------------------

COND_WDL = """
version 1.1
task t {
  input { Int i }
  command <<< echo ~{i} >>>
  output { Int o = read_int(stdout()) }
}
workflow w {
  input { Boolean go }
  if (go) {
    call t { input: i = 5 }
    Int doubled = t.o * 2
  }
  if (!go) {
    Int other = 1
  }
  output {
    Int? o = t.o
    Int? d = doubled
    Int? other_o = other
    Int chosen = select_first([doubled, other])
  }
}
"""


def test_conditional_outputs_none_when_false(tmp_path):
    outputs, rd = run_ok(tmp_path, COND_WDL, "go=false")
    assert outputs == {"w.o": None, "w.d": None, "w.other_o": 1, "w.chosen": 1}
    assert call_dirs(rd) == []


def test_conditional_outputs_when_true(tmp_path):
    outputs, rd = run_ok(tmp_path, COND_WDL, "go=true")
    assert outputs == {"w.o": 5, "w.d": 10, "w.other_o": None, "w.chosen": 10}
    assert call_dirs(rd) == ["t"]


ELSE_IF_WDL = """
version 1.3
task t {
  input { String tag }
  command <<< echo ~{tag} >>>
  output { String o = read_string(stdout()) }
}
workflow w {
  input { Int n }
  if (n < 0) {
    call t as neg { input: tag = "negative" }
    String which = "neg"
  } else if (n == 0) {
    call t as zero { input: tag = "zero" }
    String which = "zero"
  } else {
    call t as pos { input: tag = "positive" }
    String which = "pos"
  }
  output {
    String which_out = which
    String? neg_o = neg.o
    String? zero_o = zero.o
    String? pos_o = pos.o
  }
}
"""


@pytest.mark.parametrize("n, which, tag", [(-3, "neg", "negative"), (0, "zero", "zero"), (7, "pos", "positive")])
def test_if_else_if_else(tmp_path, n, which, tag):
    outputs, rd = run_ok(tmp_path, ELSE_IF_WDL, "n=%d" % n)
    expected = {"w.which_out": which, "w.neg_o": None, "w.zero_o": None, "w.pos_o": None}
    expected["w.%s_o" % which] = tag
    assert outputs == expected
    assert call_dirs(rd) == [which]  # only the chosen clause ran


def test_else_if_later_conditions_not_evaluated(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.3
        workflow w {
          input { Array[Int] xs = [1] }
          if (length(xs) == 1) {
            String which = "first"
          } else if (xs[10] == 1) {
            String which = "second"
          } else {
            String which = "third"
          }
          output { String o = which }
        }
        """)
    assert outputs == {"w.o": "first"}


def test_else_branch_with_same_call_in_each_clause(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.3
        task greet {
          input { String who }
          command <<< echo "hi ~{who}" >>>
          output { String greeting = read_string(stdout()) }
        }
        workflow w {
          input { Boolean morning }
          if (morning) {
            call greet { input: who = "morning" }
          } else {
            call greet { input: who = "evening" }
          }
          output { String g = greet.greeting }
        }
        """, "morning=false")
    assert outputs == {"w.g": "hi evening"}
    assert call_dirs(rd) == ["greet"]


# --------------------------------------------------------------------------------------------
# compound inputs from JSON
# --------------------------------------------------------------------------------------------


def test_struct_inputs_from_json_objects(tmp_path):
    write(tmp_path / "in.json", json.dumps({
        "w.p": {"name": "Ann", "age": 30},
        "w.people": [{"name": "Bo", "age": 4}, {"name": "Cy", "age": 5, "nick": "c"}],
    }), raw=True)
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        struct Person {
          String name
          Int age
          String? nick
        }
        task describe {
          input { Person p }
          command <<< echo "~{p.name} is ~{p.age}" >>>
          output { String s = read_string(stdout()) }
        }
        workflow w {
          input {
            Person p
            Array[Person] people
          }
          call describe { input: p = p }
          output {
            String s = describe.s
            Person same = p
            Array[String] names = [people[0].name, people[1].name]
            Int total_age = p.age + people[0].age + people[1].age
            String? nick0 = people[0].nick
            String? nick1 = people[1].nick
          }
        }
        """, "@in.json")
    assert outputs["w.s"] == "Ann is 30"
    assert outputs["w.same"] in ({"name": "Ann", "age": 30, "nick": None}, {"name": "Ann", "age": 30})
    assert outputs["w.names"] == ["Bo", "Cy"]
    assert outputs["w.total_age"] == 39
    assert outputs["w.nick0"] is None and outputs["w.nick1"] == "c"


def test_struct_input_missing_member_is_an_error(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        struct Person {
          String name
          Int age
        }
        workflow w {
          input { Person p }
          output { String n = p.name }
        }
        """, 'p={"name": "Ann"}')
    fails(proc, "age")


def test_struct_file_member_resolves_against_inputs_file(tmp_path):
    write(tmp_path / "data" / "sample.txt", "sample content\n", raw=True)
    write(tmp_path / "data" / "in.json", json.dumps({"w.s": {"id": "x", "reads": "sample.txt"}}), raw=True)
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        struct Sample {
          String id
          File reads
        }
        workflow w {
          input { Sample s }
          output { String content = read_string(s.reads) }
        }
        """, "@data/in.json")
    assert outputs == {"w.content": "sample content"}


def test_struct_input_extra_member_warns_and_is_ignored(tmp_path):
    """Cromwell and miniwdl ignore JSON keys a struct does not have (issue 16): a warning names them."""
    proc = run_wdl(tmp_path, """
        version 1.1
        struct Person {
          String name
        }
        workflow w {
          input { Person p }
          output { String n = p.name }
        }
        """, 'p={"name": "Ann", "bogus": 1}')
    outputs, _ = ok(proc)
    assert outputs == {"w.n": "Ann"}
    assert "struct `Person` has no member `bogus`: ignored" in proc.stderr


def test_map_inputs(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        task t {
          input {
            Map[String, Int] m
            Map[Int, String] im
            Map[String, String] sm
          }
          command <<<
            cat ~{write_map(sm)}
          >>>
          output {
            Array[String] lines = read_lines(stdout())
            Map[String, Int] same = m
            String one = im[1]
            Int b = m["b"]
            Array[String] ks = keys(m)
          }
        }
        """, 'm={"a": 1, "b": 2}', 'im={"1": "one", "2": "two"}', 'sm={"x": "1", "y": "two words"}')
    assert outputs == {
        "t.lines": ["x\t1", "y\ttwo words"],
        "t.same": {"a": 1, "b": 2},
        "t.one": "one",
        "t.b": 2,
        "t.ks": ["a", "b"],
    }


def test_pair_inputs(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        workflow w {
          input {
            Pair[Int, String] p
            Array[Pair[String, Float]] ps
          }
          output {
            Int l = p.left
            String r = p.right
            Pair[Int, String] same = p
            Array[String] lefts = [ps[0].left, ps[1].left]
          }
        }
        """, 'p={"left": 1, "right": "x"}', 'ps=[{"left": "a", "right": 1.5}, {"left": "b", "right": 2}]')
    assert outputs == {
        "w.l": 1, "w.r": "x", "w.same": {"left": 1, "right": "x"}, "w.lefts": ["a", "b"],
    }


def test_file_inputs_relative_to_inputs_file_vs_cwd(tmp_path):
    src = write(tmp_path / "main.wdl", """
        version 1.1
        workflow w {
          input { File f }
          output {
            String content = read_string(f)
            File same = f
          }
        }
        """)
    write(tmp_path / "data.txt", "cwd copy\n", raw=True)
    write(tmp_path / "conf" / "data.txt", "inputs-dir copy\n", raw=True)
    write(tmp_path / "conf" / "in.json", json.dumps({"w.f": "data.txt"}), raw=True)
    out_json, _ = ok(sprocket_run(src, "@conf/in.json", cwd=tmp_path))
    assert out_json["w.content"] == "inputs-dir copy"
    assert Path(out_json["w.same"]).resolve() == (tmp_path / "conf" / "data.txt").resolve()
    out_kv, _ = ok(sprocket_run(src, "f=data.txt", cwd=tmp_path))
    assert out_kv["w.content"] == "cwd copy"
    assert Path(out_kv["w.same"]).resolve() == (tmp_path / "data.txt").resolve()


def test_missing_input_file_is_an_error_before_anything_runs(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task t {
          input { File f }
          command <<< cat "~{f}" >>>
          output { String s = read_string(stdout()) }
        }
        workflow w {
          input { File f }
          call t { input: f = f }
          output { String s = t.s }
        }
        """, "f=does_not_exist.txt")
    fails(proc, "does_not_exist.txt")
    assert not list(tmp_path.rglob("attempts")), "a task ran although its input file is missing"


def test_directory_input_and_outputs(tmp_path):
    write(tmp_path / "indir" / "a.txt", "a", raw=True)
    write(tmp_path / "indir" / "b.txt", "b", raw=True)
    outputs, rd = run_ok(tmp_path, """
        version 1.2
        task t {
          input { Directory d }
          command <<<
            ls "~{d}"
            mkdir outdir && echo x > outdir/f
          >>>
          output {
            Array[String] names = read_lines(stdout())
            Directory o = "outdir"
            Directory? none = "no_such_dir"
          }
        }
        """, "d=indir")
    assert outputs["t.names"] == ["a.txt", "b.txt"]
    assert Path(outputs["t.o"]) == rd / "attempts" / "0" / "work" / "outdir"
    assert outputs["t.none"] is None


def test_missing_directory_input_is_an_error(tmp_path):
    write(tmp_path / "plain_file", "not a directory", raw=True)
    src = """
        version 1.2
        task t {
          input { Directory d }
          command <<< ls "~{d}" >>>
        }
        """
    fails(run_wdl(tmp_path, src, "d=no_such_dir"), "no_such_dir")
    fails(run_wdl(tmp_path, src, "d=plain_file"), "plain_file")
    assert not list(tmp_path.rglob("attempts/*/command"))


def test_missing_nested_input_file_of_a_call_is_an_error_before_anything_runs(tmp_path):
    write(tmp_path / "data.txt", "hi\n", raw=True)
    src = """
        version 1.0
        task first {
          command <<< echo first >>>
          output { String o = read_string(stdout()) }
        }
        task t {
          input { File f }
          command <<< cat "~{f}" >>>
          output { String s = read_string(stdout()) }
        }
        workflow w {
          call first
          call t
          output { String o = t.s }
        }
        """
    assert run_ok(tmp_path, src, "w.t.f=data.txt")[0] == {"w.o": "hi"}
    proc = run_wdl(tmp_path, src, "w.t.f=missing.txt")
    fails(proc, "missing.txt")
    m = RUN_DIR_RE.search(proc.stderr)
    if m:
        assert not list(Path(m.group(1).strip()).rglob("attempts")), "tasks ran although an input file is missing"


def test_missing_input_file_of_a_call_in_a_subworkflow_is_an_error_before_anything_runs(tmp_path):
    write(tmp_path / "sub.wdl", """
        version 1.0
        task t {
          input { File f }
          command <<< cat "~{f}" >>>
          output { String s = read_string(stdout()) }
        }
        workflow inner {
          call t
          output { String s = t.s }
        }
        """)
    write(tmp_path / "data.txt", "hi\n", raw=True)
    src = """
        version 1.0
        import "sub.wdl" as s
        task first {
          command <<< echo first >>>
          output { String o = read_string(stdout()) }
        }
        workflow outer {
          call first
          call s.inner as sub
          output { String o = sub.s }
        }
        """
    assert run_ok(tmp_path, src, "outer.sub.t.f=data.txt")[0] == {"outer.o": "hi"}
    proc = run_wdl(tmp_path, src, "outer.sub.t.f=missing.txt")
    fails(proc, "missing.txt")
    m = RUN_DIR_RE.search(proc.stderr)
    if m:
        assert not list(Path(m.group(1).strip()).rglob("attempts")), "tasks ran although an input file is missing"


def test_missing_required_call_input_in_wdl_1_0(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.0
        task t {
          input { Int x }
          command <<< echo ~{x} >>>
          output { Int o = read_int(stdout()) }
        }
        workflow w {
          call t
          output { Int o = t.o }
        }
        """)
    fails(proc, "missing required input: `w.t.x`")  # before anything runs, named as the inputs take it
    assert not list(tmp_path.rglob("attempts")), "a task ran although a required input is missing"


# --------------------------------------------------------------------------------------------
# retries and return codes
# --------------------------------------------------------------------------------------------


READS = """
    version 1.1
    workflow w {
      input { File f }
      output {
        String s = read_string(f)
        Int n = length(read_lines(f))
      }
    }
    """


def test_read_functions_refuse_a_file_above_run_read_limit(tmp_path):
    big = write(tmp_path / "big.txt", "x" * 2000 + "\n")
    config = write(tmp_path / "limit.toml", 'run.read_limit = "1 KiB"\n')
    wdl = write(tmp_path / "main.wdl", READS)
    proc = sprocket_run(wdl, "f=%s" % big, "-c", config, cwd=tmp_path)
    fails(proc, "read_string", "big.txt", "larger than 1024 bytes", "run.read_limit")
    outputs, _ = ok(sprocket_run(wdl, "f=%s" % big, cwd=tmp_path))  # the default (256 MiB) reads it
    assert outputs["w.s"] == "x" * 2000 and outputs["w.n"] == 1


def test_max_retries_above_100_is_refused_as_in_sprocket(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task t {
          command <<< exit 1 >>>
          runtime { maxRetries: 100000 }
        }
        """)
    fails(proc, "`max_retries` requirement of 100000 cannot exceed 100")
    assert not list((tmp_path / "out").rglob("attempts/1")), "a refused max_retries was retried"


def test_a_crlf_edited_command_runs_without_its_carriage_returns(tmp_path):
    src = "version 1.1\r\ntask t {\r\n  command <<<\r\n    echo hi > out.txt\r\n    echo there\r\n  >>>\r\n" \
          "  output {\r\n    File f = \"out.txt\"\r\n    String s = read_string(stdout())\r\n  }\r\n}\r\n"
    outputs, rd = run_ok(tmp_path, src, raw=True)
    assert Path(outputs["t.f"]).read_text() == "hi\n" and outputs["t.s"] == "there"
    assert "\r" not in (rd / "attempts" / "0" / "command").read_text()


def test_retry_with_counter_file(tmp_path):
    counter = tmp_path / "counter"
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task flaky {
          input { String counter }
          command <<<
            n=$(cat "~{counter}" 2>/dev/null || echo 0)
            echo $((n + 1)) > "~{counter}"
            if [ "$n" -eq 0 ]; then echo "first try fails" >&2; exit 4; fi
            echo "succeeded on try $n"
          >>>
          runtime { maxRetries: 3 }
          output { String s = read_string(stdout()) }
        }
        """, "counter=%s" % counter)
    assert outputs == {"flaky.s": "succeeded on try 1"}
    assert attempts(rd) == [0, 1]
    assert_attempt(rd / "attempts" / "0")
    assert_attempt(rd / "attempts" / "1")
    assert (rd / "attempts" / "0" / "stderr").read_text() == "first try fails\n"
    assert (rd / "attempts" / "1" / "stdout").read_text() == "succeeded on try 1\n"
    assert counter.read_text().strip() == "2"


def test_retry_with_task_attempt_in_a_workflow(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.2
        task flaky {
          command <<<
            echo "attempt ~{task.attempt}"
            if [ ~{task.attempt} -lt 2 ]; then exit 1; fi
          >>>
          requirements { max_retries: 5 }
          output {
            String s = read_string(stdout())
            Int a = task.attempt
          }
        }
        workflow w {
          call flaky
          output {
            String s = flaky.s
            Int a = flaky.a
          }
        }
        """)
    assert outputs == {"w.s": "attempt 2", "w.a": 2}
    cd = rd / "calls" / "flaky"
    assert attempts(cd) == [0, 1, 2]
    for n in (0, 1, 2):
        assert_attempt(cd / "attempts" / str(n))
        assert (cd / "attempts" / str(n) / "stdout").read_text() == "attempt %d\n" % n
        assert "attempt %d" % n in (cd / "attempts" / str(n) / "command").read_text()


def test_retries_exhausted(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.2
        task hopeless {
          command <<< echo "try ~{task.attempt}" >&2; exit 2 >>>
          requirements { max_retries: 2 }
        }
        """)
    fails(proc, "task `hopeless` failed", exit_status_re(2), "try 2")
    rd = run_dir_of(proc)
    assert attempts(rd) == [0, 1, 2]
    # the message points at the last attempt
    assert str(rd / "attempts" / "2" / "stderr") in proc.stderr


def test_each_attempt_gets_a_fresh_work_dir(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.2
        task t {
          command <<<
            if [ -e marker ]; then echo "reused"; else echo "fresh"; fi
            touch marker
            exit ~{if task.attempt == 0 then 1 else 0}
          >>>
          requirements { max_retries: 1 }
          output {
            String s = read_string(stdout())
            File m = "marker"
          }
        }
        """)
    assert outputs["t.s"] == "fresh"
    assert Path(outputs["t.m"]) == rd / "attempts" / "1" / "work" / "marker"
    assert (rd / "attempts" / "0" / "work" / "marker").is_file()


def test_a_retry_that_needs_more_memory_waits_for_it(tmp_path):
    """The backend has 1 GiB. `big` fails its first attempt (400 MiB); its retry asks for 800 MiB
    (1.3: requirements see `task.attempt`), which does not fit beside `other` (400 MiB, running
    3 s): the retry goes back through the scheduler and starts only once `other` has ended."""
    cfg = write(tmp_path / "local.toml", """
        [run.backends.default]
        type = "local"
        memory = "1 GiB"
        """)
    outputs, rd = run_ok(tmp_path, """
        version 1.3
        task big {
          command <<<
            if [ ~{task.attempt} -eq 0 ]; then exit 1; fi
            %(py)s -c 'import time; print(time.time())'
          >>>
          requirements { memory: if task.attempt == 0 then "400 MiB" else "800 MiB"  max_retries: 1 }
          output { Float started = read_float(stdout()) }
        }
        task other {
          command <<< sleep 3; %(py)s -c 'import time; print(time.time())' >>>
          requirements { memory: "400 MiB" }
          output { Float ended = read_float(stdout()) }
        }
        workflow w {
          call big
          call other
          output { Float retry_started = big.started  Float other_ended = other.ended }
        }
        """ % {"py": PY}, "-c", cfg)
    assert outputs["w.retry_started"] >= outputs["w.other_ended"], outputs
    assert attempts(rd / "calls" / "big") == [0, 1]


def test_max_retries_override_on_the_command_line(tmp_path):
    src = """
        version 1.2
        task t {
          command <<< exit ~{if task.attempt == 0 then 1 else 0} >>>
          requirements { max_retries: 1 }
          output { Int a = task.attempt }
        }
        """
    assert run_ok(tmp_path, src)[0] == {"t.a": 1}
    proc = run_wdl(tmp_path, src, "t.requirements.max_retries=0")
    fails(proc, exit_status_re(1))
    assert attempts(run_dir_of(proc)) == [0]


def test_no_retry_by_default(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task once {
          command <<< exit 1 >>>
        }
        """)
    fails(proc, "once")
    assert attempts(run_dir_of(proc)) == [0]


RC_TASK = """
version 1.2
task t {
  input { Int code }
  command <<< echo out; exit ~{code} >>>
  requirements { return_codes: %s }
  output { String s = read_string(stdout()) }
}
"""


@pytest.mark.parametrize("codes, code, succeeds", [
    ('"*"', 7, True),
    ('"*"', 0, True),
    ("3", 3, True),
    ("3", 0, False),
    ("[0, 4]", 4, True),
    ("[0, 4]", 0, True),
    ("[0, 4]", 5, False),
])
def test_return_codes(tmp_path, codes, code, succeeds):
    proc = run_wdl(tmp_path, RC_TASK % codes, "code=%d" % code)
    if succeeds:
        outputs, _ = ok(proc)
        assert outputs == {"t.s": "out"}
    else:
        fails(proc, "task `t` failed", exit_status_re(code))


def test_return_codes_wdl_1_1_runtime(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        task t {
          command <<< echo fine; exit 3 >>>
          runtime { returnCodes: [1, 3] }
          output { String s = read_string(stdout()) }
        }
        """)
    assert outputs == {"t.s": "fine"}


# --------------------------------------------------------------------------------------------
# failures
# --------------------------------------------------------------------------------------------


def test_failure_message_content(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task t {
          command <<<
            echo "something on stdout"
            for i in $(seq 1 30); do echo "stderr line $i" >&2; done
            exit 9
          >>>
        }
        workflow w {
          call t as failing
        }
        """)
    err = fails(proc, "failing", exit_status_re(9), "stderr line 30", "stderr line 29")
    rd = run_dir_of(proc)
    adir = rd / "calls" / "failing" / "attempts" / "0"
    assert str(adir / "stdout") in err
    assert str(adir / "stderr") in err
    assert "stderr line 1\n" not in err + "\n", "the whole stderr was dumped, not its last lines"
    assert "Traceback" not in err
    assert not (rd / "outputs.json").exists()


def test_failure_in_scatter_names_the_element(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task t {
          input { Int i }
          command <<< if [ ~{i} -eq 2 ]; then echo "element two broke" >&2; exit 1; fi >>>
        }
        workflow w {
          scatter (i in [0, 1, 2, 3]) {
            call t { input: i = i }
          }
        }
        """)
    fails(proc, "element two broke", exit_status_re(1))
    rd = run_dir_of(proc)
    assert str(rd / "calls" / "t-2" / "attempts" / "0" / "stderr") in proc.stderr


def test_killed_by_signal_is_a_failure(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task t {
          command <<< kill -9 $$ >>>
        }
        """)
    fails(proc, "t")


# --------------------------------------------------------------------------------------------
# task outputs: files, globs, stdout/stderr
# --------------------------------------------------------------------------------------------


def test_optional_missing_output_is_null(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task t {
          command <<< echo present > here.txt >>>
          output {
            File? missing = "nope.txt"
            File? present = "here.txt"
            File required = "here.txt"
          }
        }
        """)
    work = rd / "attempts" / "0" / "work"
    assert outputs["t.missing"] is None
    assert Path(outputs["t.present"]) == work / "here.txt"
    assert Path(outputs["t.required"]) == work / "here.txt"
    assert Path(outputs["t.required"]).is_absolute()


def test_required_missing_output_is_an_error(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task t {
          command <<< echo nothing written >>>
          output { File f = "never_written.txt" }
        }
        """)
    fails(proc, "never_written.txt")


ESCAPING_OUTPUTS = """
    version 1.1
    task t {
      input { String which }
      command <<<
        echo x > ../../../../outside.txt
        ln -s /etc/hostname link
      >>>
      output {
        Array[File] f = if which == "abs" then ["/etc/passwd"] else if which == "up" then ["../../../../outside.txt"]
                        else if which == "link" then ["link"] else glob("/etc/host*")
      }
    }
    """


@pytest.mark.parametrize("which, shown", [("abs", "`/etc/passwd`"), ("up", "outside.txt"),
                                          ("link", "a link to `/etc/hostname`"), ("glob", "`/etc/host")])
def test_outputs_outside_the_working_directory_fail_the_task(tmp_path, which, shown):
    if not os.path.exists("/etc/hostname"):
        pytest.skip("no /etc/hostname to link to")
    proc = run_wdl(tmp_path, ESCAPING_OUTPUTS, "which=" + which)
    fails(proc, "output `f` of task `t`", shown, "outside the task's working directory")


def test_links_inside_a_directory_output_are_contained(tmp_path):
    """A Directory output holding a link out of the working directory fails the task, naming the output and
    the link; a link to a file inside it is fine."""
    proc = run_wdl(tmp_path, """
        version 1.2
        task t {
          command <<<
            mkdir -p d/sub && echo x > d/x.txt && ln -s ../x.txt d/sub/ok && ln -s /etc d/sub/link
          >>>
          output { Directory o = "d" }
        }
        """)
    fails(proc, "output `o` of task `t`", "d/sub/link", "a link to `/etc`", "outside the task's working directory")
    outputs, _ = run_ok(tmp_path, """
        version 1.2
        task t {
          command <<< mkdir -p d/sub && echo x > d/x.txt && ln -s ../x.txt d/sub/ok >>>
          output { Directory o = "d" }
        }
        """)
    assert Path(outputs["t.o"], "sub", "ok").read_text() == "x\n"


def test_a_task_may_not_output_files_another_write_call_made(tmp_path):
    """Only the task's own write_* files are admitted, not the run-wide directory where the workflow's are."""
    proc = run_wdl(tmp_path, """
        version 1.1
        workflow w {
          File mine = write_lines(["the workflow's"])
          call t { input: path = "~{mine}" }
        }
        task t {
          input { String path }
          command <<< true >>>
          output {
            File own = write_lines(["the task's"])
            File other = path
          }
        }
        """)
    fails(proc, "output `other` of task `t`", "write_lines_", "outside the task's working directory")


def test_outputs_may_be_stdout_inputs_links_to_inputs_and_own_absolute_paths(tmp_path):
    given = write(tmp_path / "data" / "given.txt", "given\n")
    write(tmp_path / "data" / "dir" / "inner.txt", "inner\n")
    outputs, rd = run_ok(tmp_path, """
        version 1.2
        task t {
          input {
            File given
            Directory dir
          }
          command <<<
            ln -s "~{given}" linked
            pwd > here
            echo out
          >>>
          output {
            File same = given
            File inner = dir + "/inner.txt"
            File linked = "linked"
            File absolute = read_string("here") + "/here"
            File out = stdout()
            File written = write_lines(["a"])
          }
        }
        """, "given=%s" % given, "dir=%s" % (tmp_path / "data" / "dir"))
    assert Path(outputs["t.same"]).read_text() == Path(outputs["t.linked"]).read_text() == "given\n"
    assert Path(outputs["t.inner"]).read_text() == "inner\n"
    assert Path(outputs["t.out"]).read_text() == "out\n"
    assert Path(outputs["t.absolute"]).parent == rd / "attempts" / "0" / "work"


def test_outputs_may_be_files_a_private_declaration_names(tmp_path):
    """A 1.2 private declaration's document-relative file was the document's choice, not the command's."""
    write(tmp_path / "data" / "ref.txt", "ref\n")
    outputs, _ = run_ok(tmp_path, """
        version 1.2
        task t {
          File ref = "data/ref.txt"
          command <<< true >>>
          output { File same = ref }
        }
        """)
    assert Path(outputs["t.same"]).read_text() == "ref\n"


def test_file_outputs_of_calls_live_in_the_call_work_dir(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task make {
          input { String name }
          command <<< mkdir -p sub && echo "~{name}" > sub/~{name}.txt >>>
          output { File f = "sub/~{name}.txt" }
        }
        task consume {
          input { File f }
          command <<< tr a-z A-Z < "~{f}" >>>
          output { String s = read_string(stdout()) }
        }
        workflow w {
          call make { input: name = "abc" }
          call consume { input: f = make.f }
          output {
            File f = make.f
            String s = consume.s
          }
        }
        """)
    assert outputs["w.s"] == "ABC"
    assert Path(outputs["w.f"]) == rd / "calls" / "make" / "attempts" / "0" / "work" / "sub" / "abc.txt"
    assert Path(outputs["w.f"]).read_text() == "abc\n"


def test_glob_outputs(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task t {
          command <<<
            echo 1 > b.txt
            echo 2 > a.txt
            echo 3 > c.log
            mkdir -p d && echo 4 > d/e.txt
          >>>
          output {
            Array[File] txt = glob("*.txt")
            Array[File] nested = glob("d/*.txt")
            Array[File] none = glob("*.csv")
          }
        }
        """)
    work = rd / "attempts" / "0" / "work"
    assert sorted(Path(p).name for p in outputs["t.txt"]) == ["a.txt", "b.txt"]
    for p in outputs["t.txt"] + outputs["t.nested"]:
        assert Path(p).is_absolute() and Path(p).is_file()
        assert str(Path(p)).startswith(str(work) + os.sep)
    assert [Path(p).name for p in outputs["t.nested"]] == ["e.txt"]
    assert outputs["t.none"] == []


def test_stdout_and_stderr_functions(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task t {
          command <<<
            echo "to out"
            echo "to err" >&2
          >>>
          output {
            File o = stdout()
            File e = stderr()
            String os = read_string(stdout())
            String es = read_string(stderr())
          }
        }
        """)
    a0 = rd / "attempts" / "0"
    assert Path(outputs["t.o"]) == a0 / "stdout"
    assert Path(outputs["t.e"]) == a0 / "stderr"
    assert outputs["t.os"] == "to out"
    assert outputs["t.es"] == "to err"


def test_command_runs_in_work_dir(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task t {
          command <<< pwd -P >>>
          output { String cwd = read_string(stdout()) }
        }
        """)
    assert Path(outputs["t.cwd"]) == (rd / "attempts" / "0" / "work").resolve()


def test_write_lines_lands_under_run_tmp(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task t {
          input { Array[String] xs }
          command <<<
            echo "~{write_lines(xs)}"
          >>>
          output {
            String path = read_string(stdout())
            Array[String] back = read_lines(path)
          }
        }
        """, "xs=a", "xs=b c")
    assert outputs["t.back"] == ["a", "b c"]
    p = Path(outputs["t.path"])
    assert p.is_file()
    assert str(p).startswith(str(rd / "tmp") + os.sep), p


def test_write_lines_in_workflow_lands_under_run_tmp(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        task count {
          input { File f }
          command <<< wc -l < "~{f}" >>>
          output { Int n = read_int(stdout()) }
        }
        workflow w {
          File listed = write_lines(["x", "y", "z"])
          call count { input: f = listed }
          output {
            File f = listed
            Int n = count.n
          }
        }
        """)
    assert outputs["w.n"] == 3
    p = Path(outputs["w.f"])
    assert str(p).startswith(str(rd / "tmp") + os.sep), p
    assert p.read_text() == "x\ny\nz\n"


# --------------------------------------------------------------------------------------------
# environment variables (1.2 `env`)
# --------------------------------------------------------------------------------------------


def test_env_declarations_exported(tmp_path):
    tricky = "a b; $HOME `true` \"q\""
    write(tmp_path / "in.json", json.dumps({"t.greeting": tricky}), raw=True)
    outputs, rd = run_ok(tmp_path, """
        version 1.2
        task t {
          input {
            env String greeting
            Int n = 2
            String not_env = "hidden"
          }
          env String who = "world ~{n}"
          command <<<
            printf '%s|%s|%s\\n' "$greeting" "$who" "${not_env:-unset}"
            echo "~{who}" > interpolated.txt
          >>>
          output {
            String s = read_string(stdout())
            String interp = read_string("interpolated.txt")
          }
        }
        """, "@in.json")
    assert outputs["t.s"] == tricky + "|world 2|unset"
    # `env` does not change how the declaration interpolates in the command
    assert outputs["t.interp"] == "world 2"
    assert "world 2" in (rd / "attempts" / "0" / "command").read_text()


def test_env_declaration_through_a_call(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.2
        task test {
          input { env String greeting }
          command <<< echo "$greeting" >>>
          output { String out = read_string(stdout()) }
        }
        workflow environment_variable_should_echo {
          input { String greeting }
          call test { input: greeting = greeting }
          output { String out = test.out }
        }
        """, "greeting=hello")
    assert outputs == {"environment_variable_should_echo.out": "hello"}


# --------------------------------------------------------------------------------------------
# evaluation errors
# --------------------------------------------------------------------------------------------


def test_evaluation_error_in_workflow_decl_has_position(tmp_path):
    src = """
        version 1.1
        workflow w {
          Array[Int] xs = [1, 2]
          Int y = xs[5]
          output { Int o = y }
        }
        """
    proc = run_wdl(tmp_path, src)
    text = norm(src)
    line, col = find_pos(text, "xs[5]")
    cols = {col, find_pos(text, "xs^[5]")[1], find_pos(text, "xs[^5]")[1]}
    assert_diag(proc, line, cols, path="main.wdl")
    assert proc.stdout.strip() == ""


def test_evaluation_error_in_task_decl_has_position(tmp_path):
    src = """
        version 1.1
        task t {
          input { Int d = 0 }
          Int q = 10 / d
          command <<< echo ~{q} >>>
          output { Int o = read_int(stdout()) }
        }
        """
    proc = run_wdl(tmp_path, src)
    text = norm(src)
    line, col = find_pos(text, "10 / d")
    cols = {col, find_pos(text, "10 ^/ d")[1], find_pos(text, "10 / ^d")[1]}
    assert_diag(proc, line, cols, path="main.wdl")
    assert not list(tmp_path.rglob("attempts/*/command")), "the command ran after an evaluation error"


def test_evaluation_error_in_call_input_has_position(tmp_path):
    src = """
        version 1.1
        task t {
          input { Int i }
          command <<< echo ~{i} >>>
          output { Int o = read_int(stdout()) }
        }
        workflow w {
          Array[Int] xs = [1]
          call t { input: i = xs[9] }
          output { Int o = t.o }
        }
        """
    proc = run_wdl(tmp_path, src)
    text = norm(src)
    line, col = find_pos(text, "xs[9]")
    cols = {col, find_pos(text, "xs^[9]")[1], find_pos(text, "xs[^9]")[1]}
    assert_diag(proc, line, cols, path="main.wdl")
    assert not list(tmp_path.rglob("attempts"))


def test_evaluation_error_in_command_has_position(tmp_path):
    src = """
        version 1.1
        task t {
          input { Array[Int] xs = [1] }
          command <<< echo ~{xs[3]} >>>
          output { String s = read_string(stdout()) }
        }
        """
    proc = run_wdl(tmp_path, src)
    line, _ = find_pos(norm(src), "xs[3]")
    assert_diag(proc, line, None, path="main.wdl")
    assert not list(tmp_path.rglob("attempts/*/stdout")), "the command ran"


def test_evaluation_error_in_workflow_output_has_position(tmp_path):
    src = """
        version 1.1
        workflow w {
          input { Map[String, Int] m = {"a": 1} }
          output { Int o = m["zzz"] }
        }
        """
    proc = run_wdl(tmp_path, src)
    line, _ = find_pos(norm(src), 'm["zzz"]')
    assert_diag(proc, line, None, path="main.wdl")


# --------------------------------------------------------------------------------------------
# scheduling: after, parallelism, resources
# --------------------------------------------------------------------------------------------

CLOCK = "\"%s\" -c 'import time; print(repr(time.time()))'" % PY


def test_after_orders_independent_calls(tmp_path):
    src = """
version 1.1
task first {
  command <<<
    sleep 1
    %s
  >>>
  runtime { cpu: 1 }
  output { Float end = read_float(stdout()) }
}
task second {
  command <<<
    %s
  >>>
  runtime { cpu: 1 }
  output { Float start = read_float(stdout()) }
}
workflow w {
  call first
  call second after first
  output {
    Float first_end = first.end
    Float second_start = second.start
  }
}
""" % (CLOCK, CLOCK)
    outputs, _ = run_ok(tmp_path, src, raw=True)
    assert outputs["w.second_start"] >= outputs["w.first_end"], outputs


INTERVAL_TASK = """
task span {
  input { String tag }
  command <<<
    %s > start
    sleep 1
    %s > end
  >>>
  runtime {
    cpu: %%d
    memory: "%%s"
  }
  output {
    Float start = read_float("start")
    Float end = read_float("end")
  }
}
""" % (CLOCK, CLOCK)

TWO_SPANS = """
workflow w {
  call span as a { input: tag = "a" }
  call span as b { input: tag = "b" }
  output {
    Array[Float] a_span = [a.start, a.end]
    Array[Float] b_span = [b.start, b.end]
  }
}
"""


def _spans(tmp_path, cpu, memory):
    src = "version 1.1\n" + INTERVAL_TASK % (cpu, memory) + TWO_SPANS
    outputs, _ = run_ok(tmp_path, src, raw=True)
    return outputs["w.a_span"], outputs["w.b_span"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a host with at least 2 cpus")
def test_independent_tasks_run_in_parallel(tmp_path):
    (a0, a1), (b0, b1) = _spans(tmp_path, 1, "64 MiB")
    assert a0 < b1 and b0 < a1, "the two 1-cpu tasks did not overlap: a=%r b=%r" % ((a0, a1), (b0, b1))


def test_tasks_that_do_not_fit_together_run_one_after_the_other(tmp_path):
    n = os.cpu_count() or 1
    (a0, a1), (b0, b1) = _spans(tmp_path, n, "64 MiB")
    assert a1 <= b0 or b1 <= a0, "two tasks each asking for all %d cpus overlapped: a=%r b=%r" % (
        n, (a0, a1), (b0, b1))


def _host_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def test_tasks_whose_memory_does_not_fit_together_run_one_after_the_other(tmp_path):
    mem = _host_memory()
    if not mem:
        pytest.skip("cannot read the host's memory size")
    (a0, a1), (b0, b1) = _spans(tmp_path, 1, "%d B" % int(mem * 0.6))
    assert a1 <= b0 or b1 <= a0, "two tasks each asking for 60%% of memory overlapped: a=%r b=%r" % (
        (a0, a1), (b0, b1))


def test_scatter_elements_run_in_parallel(tmp_path):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs a host with at least 2 cpus")
    src = "version 1.1\n" + INTERVAL_TASK % (1, "64 MiB") + """
workflow w {
  scatter (tag in ["a", "b"]) {
    call span { input: tag = tag }
  }
  output {
    Array[Float] starts = span.start
    Array[Float] ends = span.end
  }
}
"""
    outputs, rd = run_ok(tmp_path, src, raw=True)
    (a0, b0), (a1, b1) = outputs["w.starts"], outputs["w.ends"]
    assert a0 < b1 and b0 < a1, "scatter elements did not overlap"
    assert call_dirs(rd) == ["span-0", "span-1"]


def test_cpu_over_host_count_is_an_error(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task t {
          command <<< echo ran >>>
          runtime { cpu: %d }
          output { String s = read_string(stdout()) }
        }
        workflow w {
          call t
          output { String s = t.s }
        }
        """ % ((os.cpu_count() or 1) * 4 + 1))
    fails(proc, "cpu_limit_behavior")
    assert not list(tmp_path.rglob("attempts/*/stdout")), "the task ran anyway"


def test_container_warning_exactly_once(tmp_path):
    proc = run_wdl(tmp_path, """
        version 1.1
        task a {
          command <<< echo a >>>
          runtime { docker: "ubuntu:latest" }
          output { String s = read_string(stdout()) }
        }
        task b {
          command <<< echo b >>>
          runtime { container: "ubuntu:22.04" }
          output { String s = read_string(stdout()) }
        }
        workflow w {
          call a
          call b
          output { String s = a.s + b.s }
        }
        """)
    outputs, _ = ok(proc)
    assert outputs == {"w.s": "ab"}
    lines = [line for line in proc.stderr.splitlines() if line.lower().startswith("warning")]
    assert len([line for line in lines if "container" in line.lower()]) == 1, proc.stderr


# --------------------------------------------------------------------------------------------
# values through the whole pipeline
# --------------------------------------------------------------------------------------------


def test_workflow_inputs_with_defaults_and_expressions(tmp_path):
    outputs, rd = run_ok(tmp_path, """
        version 1.1
        workflow w {
          input {
            Int a = 2
            Int b = a * 10
            String? maybe
          }
          Int c = b + 1
          output {
            Int sum = a + b + c
            String m = select_first([maybe, "none"])
          }
        }
        """, "a=3")
    assert outputs == {"w.sum": 3 + 30 + 31, "w.m": "none"}
    assert call_dirs(rd) == []


def test_forward_references_and_outputs_reading_outputs(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        task t {
          input { Int i }
          command <<< echo ~{i} >>>
          output { Int o = read_int(stdout()) }
        }
        workflow w {
          call t { input: i = later }
          Int later = base * 2
          Int base = 21
          output {
            Int a = t.o
            Int b = a + 1
          }
        }
        """)
    assert outputs == {"w.a": 42, "w.b": 43}


def test_call_outputs_chain(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.0
        task add {
          input {
            Int x
            Int y = 1
          }
          command <<< echo $(( ~{x} + ~{y} )) >>>
          output { Int z = read_int(stdout()) }
        }
        workflow w {
          input { Int start }
          call add as one { input: x = start }
          call add as two { input: x = one.z, y = 10 }
          call add as three { input: x = two.z, y = one.z }
          output { Int result = three.z }
        }
        """, "w.start=1")
    assert outputs == {"w.result": 14}


def test_task_outputs_json_types(tmp_path):
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        task t {
          command <<<
            printf '1\\n2\\n3\\n' > nums
            echo '{"k": [1, 2], "s": "v"}' > obj.json
            printf 'a\\tb\\nc\\td\\n' > table.tsv
          >>>
          output {
            Array[String] nums = read_lines("nums")
            Map[String, String] m = read_map("table.tsv")
            Array[Array[String]] rows = read_tsv("table.tsv")
            Boolean b = true
            Float f = 1.5
          }
        }
        """)
    assert outputs == {
        "t.nums": ["1", "2", "3"], "t.m": {"a": "b", "c": "d"}, "t.rows": [["a", "b"], ["c", "d"]],
        "t.b": True, "t.f": 1.5,
    }


# ============================================================================================
# WDL draft-2 runs, compatibility conversions at run time, Cromwell/Google runtime keys,
# struct values from map literals, and tasks imported from an http:// URL.
# ============================================================================================

import conftest  # noqa: E402


def _sprocket():
    return conftest._import_sprocket()


DRAFT2_TASK = """
task greet {
  String who
  String greeting = "hello"
  command {
    echo "${greeting} ${who}"
  }
  output {
    String out = read_string(stdout())
  }
}
"""


def test_draft2_run_placeholders_and_overridable_task_default(tmp_path):
    """draft-2 end to end: `${}` in a brace command, a bound task declaration used as a default
    and overridden through the call (`wf.b.greeting`), untyped outputs named `wf.call.out`."""
    outputs, rd = run_ok(tmp_path, DRAFT2_TASK + """
        workflow wf {
          String name
          call greet as a { input: who = name, }
          call greet as b { input: who = "${name}2" }
          output {
            a.out
            b.out
          }
        }
        """, "wf.name=Ann", "wf.b.greeting=hi")
    assert outputs == {"wf.a.out": "hello Ann", "wf.b.out": "hi Ann2"}
    assert call_dirs(rd) == ["a", "b"]


def test_draft2_tilde_is_literal_and_dollar_is_placeholder_in_heredoc(tmp_path):
    """draft-2 `command <<< >>>`: `${x}` is replaced, `~{x}` is left as typed."""
    outputs, _ = run_ok(tmp_path, """
        task t {
          String x
          command <<<
            echo '~{x}' ${x}
          >>>
          output {
            String out = read_string(stdout())
          }
        }
        """, "t.x=val")
    assert outputs == {"t.out": "~{x} val"}


def test_draft2_block_comments_at_run(tmp_path):
    """`/* */` comments in draft-2 are dropped, also next to a command; the command is unchanged."""
    outputs, _ = run_ok(tmp_path, """
        /* header
           comment */
        task t {
          Int n = 2 /* the default */
          command {
            echo ${n}
          }
          output { Int out = read_int(stdout()) }
        }
        """)
    assert outputs == {"t.out": 2}


def test_draft2_untyped_outputs_star_and_scatter_arrays(tmp_path):
    """`output { a.out  b.*  s.out }`: each named `call.out` (JSON key `wf.call.out`), `b.*` every
    output of `b`, and a call in a scatter gives an Array."""
    outputs, _ = run_ok(tmp_path, """
        task two {
          String x
          command {
            echo ${x}
          }
          output {
            String out = read_string(stdout())
            Int len = 3
          }
        }
        workflow wf {
          call two as a { input: x = "A" }
          call two as b { input: x = "B" }
          scatter (i in [1, 2]) {
            call two as s { input: x = "s${i}" }
          }
          output {
            a.out
            b.*
            s.out
          }
        }
        """)
    assert outputs == {"wf.a.out": "A", "wf.b.out": "B", "wf.b.len": 3, "wf.s.out": ["s1", "s2"]}


def test_draft2_workflow_declarations_as_inputs(tmp_path):
    """draft-2 workflow declarations: unbound ones are required inputs, one bound to an expression
    reading no other name is an input with a default, one reading another name is computed (not
    an input: giving it is an error)."""
    src = """
        workflow wf {
          String name
          String suffix = "!"
          String full = name + suffix
          output {
            String o = full
          }
        }
        """
    outputs, _ = run_ok(tmp_path, src, "wf.name=x")
    assert outputs == {"wf.o": "x!"}
    outputs, _ = run_ok(tmp_path, src, "wf.name=x", "wf.suffix=?")
    assert outputs == {"wf.o": "x?"}
    fails(run_wdl(tmp_path, src, "wf.name=x", "wf.full=no"), "full")
    fails(run_wdl(tmp_path, src), "name")


@pytest.mark.parametrize("header", ["", "version 1.0\n"], ids=["draft-2", "1.0"])
def test_workflow_without_output_section_outputs_every_call_output(tmp_path, header):
    """draft-2 and 1.0: a workflow with no `output` section outputs every output of every call,
    as `wf.call.out` (an Array for a call in a scatter)."""
    if header:
        task = ("task t {\n  input {\n    String x\n  }\n  command <<< echo ~{x} >>>\n"
                "  output {\n    String out = read_string(stdout())\n    Int k = 1\n  }\n}\n")
    else:
        task = ("task t {\n  String x\n  command { echo ${x} }\n"
                "  output {\n    String out = read_string(stdout())\n    Int k = 1\n  }\n}\n")
    src = header + task + ('workflow wf {\n  call t as a { input: x = "A" }\n'
                           '  scatter (i in [1, 2]) {\n    call t as s { input: x = "s" }\n  }\n}\n')
    outputs, _ = run_ok(tmp_path, src, raw=True)
    assert outputs == {"wf.a.out": "A", "wf.a.k": 1, "wf.s.out": ["s", "s"], "wf.s.k": [1, 1]}


def test_workflow_without_output_section_outputs_nothing_in_1_1(tmp_path):
    """From 1.1 a workflow with no `output` section has no outputs."""
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        task t {
          command <<< echo a >>>
          output { String out = read_string(stdout()) }
        }
        workflow wf {
          call t
        }
        """)
    assert outputs == {}


@pytest.mark.parametrize("header", ["", "version 1.0\n"], ids=["draft-2", "1.0"])
def test_nested_call_inputs_from_inputs_json(tmp_path, header):
    """draft-2 and 1.0 accept `wf.call.x` in the inputs JSON for a call input the workflow does
    not set (a required one and a defaulted one)."""
    if header:
        task = ('task t {\n  input {\n    String x\n    String y = "dy"\n  }\n'
                '  command <<< echo ~{x} ~{y} >>>\n  output {\n    String out = read_string(stdout())\n  }\n}\n')
    else:
        task = ('task t {\n  String x\n  String y = "dy"\n  command { echo ${x} ${y} }\n'
                '  output {\n    String out = read_string(stdout())\n  }\n}\n')
    src = header + task + "workflow wf {\n  call t as c\n  output {\n    String o = c.out\n  }\n}\n"
    write(tmp_path / "inputs.json", json.dumps({"wf.c.x": "X", "wf.c.y": "Y"}), raw=True)
    outputs, _ = run_ok(tmp_path, src, "inputs.json", raw=True)
    assert outputs == {"wf.o": "X Y"}


def test_version_as_declaration_name_runs(tmp_path):
    """A 1.0 task input and workflow declaration named `version` work at run time."""
    outputs, _ = run_ok(tmp_path, """
        version 1.0
        task t {
          input { String version = "v1" }
          command <<< echo ~{version} >>>
          output { String out = read_string(stdout()) }
        }
        workflow w {
          String version = "v2"
          call t { input: version = version }
          output { String o = t.out }
        }
        """)
    assert outputs == {"w.o": "v2"}


# ---------------------------------------------------------------- conversions at run time


def test_string_given_for_int_converts_at_run_time(tmp_path):
    """`Int n = "5"` (a compatibility warning) runs: `n` is the Int 5, `Float f = "2.5"` 2.5."""
    outputs, _ = run_ok(tmp_path, """
        version 1.0
        workflow w {
          Int n = "5"
          Float f = "2.5"
          output {
            Int o = n + 1
            Float g = f * 2
          }
        }
        """)
    assert outputs == {"w.o": 6, "w.g": 5.0}


def test_non_numeric_string_given_for_int_fails_naming_the_declaration(tmp_path):
    """`Int n = "abc"` is accepted by check with a warning, and the run fails naming `n`."""
    fails(run_wdl(tmp_path, """
        version 1.0
        workflow w {
          Int n = "abc"
          output { Int o = n }
        }
        """), "`n`", "abc")


def test_compound_values_in_placeholders_render_as_json(tmp_path):
    """A Map, Pair or struct in a placeholder renders as JSON (Cromwell and miniwdl do)."""
    outputs, _ = run_ok(tmp_path, """
        version 1.0
        struct P {
          String name
          Int age
        }
        task t {
          input {
            Map[String, Int] m = {"a": 1, "b": 2}
            Pair[Int, String] pr = (1, "x")
            P p = {"name": "n", "age": 3}
          }
          command <<<
            echo '~{m}' > m.json
            echo '~{pr}' > pr.json
            echo '~{p}' > p.json
          >>>
          output {
            String m_text = read_string("m.json")
            String pr_text = read_string("pr.json")
            String p_text = read_string("p.json")
          }
        }
        """)
    assert json.loads(outputs["t.m_text"]) == {"a": 1, "b": 2}
    assert json.loads(outputs["t.pr_text"]) in ({"left": 1, "right": "x"}, [1, "x"])
    assert json.loads(outputs["t.p_text"]) == {"name": "n", "age": 3}


def test_map_as_pairs_and_map_member_access_at_run_time(tmp_path):
    """A Map given for Array[Pair] gives its entries as pairs in order; `m.key` reads `m["key"]`;
    `s["member"]` reads a struct member."""
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        struct P {
          String name
        }
        workflow w {
          Map[String, Int] m = {"a": 1, "b": 2}
          Array[Pair[String, Int]] ps = m
          P p = P { name: "nm" }
          output {
            Array[String] ks = [ps[0].left, ps[1].left]
            Int b = m.b
            String n = p["name"]
          }
        }
        """)
    assert outputs == {"w.ks": ["a", "b"], "w.b": 2, "w.n": "nm"}


def test_struct_from_map_and_object_literals_runs_in_1_0(tmp_path):
    """1.0: `Person a = {"name": "John", "age": 30}` and `Person b = object {...}` are struct
    values at run time: member access works and the outputs are JSON objects."""
    outputs, _ = run_ok(tmp_path, """
        version 1.0
        struct Person {
          String name
          Int age
        }
        workflow w {
          Person a = {"name": "John", "age": 30}
          Person b = object { name: "Jane", age: 31 }
          output {
            Person pa = a
            Person pb = b
            Int total = a.age + b.age
          }
        }
        """)
    assert outputs == {"w.pa": {"name": "John", "age": 30}, "w.pb": {"name": "Jane", "age": 31},
                       "w.total": 61}


# ---------------------------------------------------------------- runtime keys


CROC_TASK = """
version 1.0
task t {
  input { Int code }
  command <<< echo out; exit ~{code} >>>
  runtime { %s }
  output { String s = read_string(stdout()) }
}
"""


@pytest.mark.parametrize("runtime, code, succeeds", [
    ("continueOnReturnCode: true", 3, True),
    ("continueOnReturnCode: true", 0, True),
    ("continueOnReturnCode: false", 0, True),
    ("continueOnReturnCode: false", 1, False),
    ("continueOnReturnCode: 1", 1, True),
    ("continueOnReturnCode: 1", 0, False),
    ("continueOnReturnCode: [0, 1]", 1, True),
    ("continueOnReturnCode: [0, 1]", 2, False),
    ("returnCodes: 4", 4, True),
    ("returnCodes: [0, 4]", 5, False),
])
def test_continue_on_return_code_and_return_codes(tmp_path, runtime, code, succeeds):
    """Cromwell's `continueOnReturnCode` (true: any exit code succeeds; an Int or Array: those
    codes) and `returnCodes` decide which exit codes are success."""
    proc = run_wdl(tmp_path, CROC_TASK % runtime, "t.code=%d" % code)
    if succeeds:
        outputs, _ = ok(proc)
        assert outputs == {"t.s": "out"}
    else:
        fails(proc, "task `t` failed", exit_status_re(code))


def test_docker_runtime_key_is_the_container(tmp_path):
    """`docker` is the container requirement: on the local backend it brings the one "container
    is ignored" warning, which a task with no container does not get."""
    proc = run_wdl(tmp_path, 'version 1.0\ntask t {\n  command <<< echo a >>>\n  runtime { docker: "ubuntu:22.04" }\n}\n',
                   raw=True)
    ok(proc)
    assert "container" in proc.stderr.lower(), proc.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = run_wdl(plain, 'version 1.0\ntask t {\n  command <<< echo a >>>\n}\n', raw=True)
    ok(proc)
    assert "container" not in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize("value, gib", [
    ("local-disk 100 SSD", 94),          # Google's sizes are GB: 100e9 bytes = 93.1 GiB, rounded up
    ("local-disk 10 HDD", 10),
    ("local-disk 100 SSD, /mnt/extra 50 SSD", 140),  # 150e9 bytes = 139.7 GiB
    ("/mnt/data 10 GiB", 10),
    ("100 GiB", 100),
    (["/a 1 GiB", "/b 2 GiB"], 3),
    (7, 7),
])
def test_disk_gib(value, gib):
    """`disk_gib` turns a `disks` value (Google's "local-disk N SSD", a mount with a size, several
    comma-separated or in an Array, an Int) into GiB."""
    assert _sprocket().disk_gib(value) == gib


def test_disk_gib_comma_separated_equals_array():
    """Comma-separated disks are the same as an Array of them."""
    s = _sprocket()
    assert s.disk_gib("local-disk 20 SSD, /tmp 3 GiB") == s.disk_gib(["local-disk 20 SSD", "/tmp 3 GiB"])


@pytest.mark.parametrize("bad", ["local-disk banana SSD", "lots", True])
def test_disk_gib_rejects_nonsense(bad):
    """A `disks` value that is not a size is an evaluation error that shows the value."""
    s = _sprocket()
    with pytest.raises(s.EvalError) as e:
        s.disk_gib(bad)
    assert "disks" in str(e.value)


def test_normalize_runtime_gpu_count_and_minutes():
    """`gpuCount: 2` makes the task ask for a GPU (2 of them); `runtime_minutes` is the time limit
    (`time_minutes`); `continueOnReturnCode: true` is `return_codes: "*"`; Google disks are GiB."""
    s = _sprocket()
    req, hints = {"disks": "local-disk 100 SSD"}, {"gpuCount": 2, "runtime_minutes": 30,
                                                   "continueOnReturnCode": True}
    s.normalize_runtime(req, hints)
    assert req["gpu"] is True and hints["gpu"] == 2
    assert hints["time_minutes"] == 30
    assert req["return_codes"] == "*"
    assert req["disks"] == 94
    req, hints = {}, {"time_minutes": 12, "gpuCount": 0}
    s.normalize_runtime(req, hints)
    assert hints["time_minutes"] == 12 and "gpu" not in req


def test_google_runtime_keys_run(tmp_path):
    """A task with Google/Cromwell runtime keys (disks "local-disk", gpuCount 0, preemptible, zones,
    bootDiskSizeGb, runtime_minutes) runs on the local backend without an error."""
    outputs, _ = run_ok(tmp_path, """
        version 1.0
        task t {
          command <<< echo ok >>>
          runtime {
            disks: "local-disk 1 SSD"
            preemptible: 2
            zones: "us-central1-a us-central1-b"
            bootDiskSizeGb: 10
            cpuPlatform: "Intel Skylake"
            noAddress: true
            runtime_minutes: 5
          }
          output { String s = read_string(stdout()) }
        }
        """)
    assert outputs == {"t.s": "ok"}


def test_bad_google_disks_fails_the_task(tmp_path):
    """A `disks` value that is no size fails the run with a message about `disks`, no traceback."""
    fails(run_wdl(tmp_path, """
        version 1.0
        task t {
          command <<< echo ok >>>
          runtime { disks: "local-disk lots SSD" }
        }
        """), "disks")


def test_unknown_runtime_key_warns_once_per_key_and_task_at_run(tmp_path):
    """1.0: unknown runtime keys never fail a run; each (key, task) is warned about exactly once
    even when the task is called several times and in a scatter; known Cromwell keys are silent."""
    proc = run_wdl(tmp_path, """
        version 1.0
        task t {
          command <<< echo a >>>
          runtime {
            banana: 1
            apple: "x"
            preemptible: 1
            gpuType: "nvidia-tesla-t4"
          }
        }
        task u {
          command <<< echo b >>>
          runtime { banana: 1 }
        }
        workflow w {
          call t as one
          call t as two
          scatter (i in [1, 2, 3]) {
            call t as many
          }
          call u
        }
        """)
    ok(proc)
    warned = re.findall(r"runtime key `(\w+)`", proc.stderr)
    assert sorted(warned) == ["apple", "banana", "banana"], proc.stderr


# ---------------------------------------------------------------- imports from a URL


def test_run_workflow_whose_task_comes_from_a_url_import(tmp_path):
    """`import "http://127.0.0.1:PORT/lib.wdl" as lib` in a workflow that is then run: the task
    (which itself imports `structs.wdl` relative to its URL) is fetched into $SPROCKET_CACHE_DIR
    and runs."""
    served = tmp_path / "served"
    write(served / "lib.wdl", """
        version 1.0
        import "common/structs.wdl"
        task hello {
          input { String who }
          command <<< echo "hi ~{who}" >>>
          output { String out = read_string(stdout()) }
        }
        """)
    write(served / "common" / "structs.wdl", """
        version 1.0
        struct Unused {
          Int n
        }
        """)
    work = tmp_path / "work"
    cache = tmp_path / "cache"
    with http_server(served) as (base, _paths):
        write(work / "main.wdl", """
            version 1.0
            import "%s/lib.wdl" as lib
            workflow w {
              call lib.hello { input: who = "url" }
              output { String o = hello.out }
            }
            """ % base)
        env = dict(os.environ, SPROCKET_CACHE_DIR=str(cache))
        proc = sprocket_run(work / "main.wdl", cwd=work, env=env)
    outputs, _ = ok(proc)
    assert outputs == {"w.o": "hi url"}
    cached = sorted(p.name for p in cache.rglob("*.wdl"))
    assert cached == ["lib.wdl", "structs.wdl"], cached


@pytest.mark.parametrize("where, decl", [("task", 'File ref = "data.txt"'),
                                         ("workflow", 'String s = read_string("data.txt")'),
                                         ("workflow", 'Array[File] g = glob("*.txt")')])
def test_relative_paths_in_a_document_imported_by_url_are_refused(tmp_path, where, decl):
    """A 1.2 document fetched by URL has no directory on disk: a relative path in it is a clear error naming
    the path, never a path under `<cwd>/http:/host/...`. An absolute one still works."""
    served = tmp_path / "served"
    write(served / "data.txt", "served\n")
    write(served / "lib.wdl", """
        version 1.2
        workflow sub {
          %s
        }
        task t {
          %s
          command <<< true >>>
        }
        """ % (decl if where == "workflow" else "", decl if where == "task" else ""))
    work = tmp_path / "work"
    with http_server(served) as (base, _paths):
        write(work / "main.wdl", """
            version 1.2
            import "%s/lib.wdl" as lib
            workflow w {
              call lib.%s
            }
            """ % (base, "sub" if where == "workflow" else "t"))
        env = dict(os.environ, SPROCKET_CACHE_DIR=str(tmp_path / "cache"))
        proc = sprocket_run(work / "main.wdl", cwd=work, env=env)
    fails(proc, "`data.txt`" if "glob" not in decl else "`*.txt`", "relative paths in a document imported by URL",
          base + "/")
    absolute = write(tmp_path / "abs.txt", "absolute\n")
    write(served / "lib.wdl", """
        version 1.2
        task t {
          File ref = "%s"
          command <<< cat ~{ref} >>>
          output { String s = read_string(stdout()) }
        }
        """ % absolute)
    with http_server(served) as (base, _paths):
        write(work / "main.wdl", 'version 1.2\nimport "%s/lib.wdl" as lib\nworkflow w {\n  call lib.t\n'
              '  output { String s = t.s }\n}\n' % base)
        outputs, _ = ok(sprocket_run(work / "main.wdl", cwd=work, env=dict(os.environ, SPROCKET_CACHE_DIR=str(
            tmp_path / "cache2"))))
    assert outputs == {"w.s": "absolute"}


def test_exhaustive_conditional_names_at_every_depth_run(tmp_path):
    """The names of an exhaustive if/else chain have a value after it at every depth."""
    from test_types import NESTED_EXHAUSTIVE

    outputs, _ = run_ok(tmp_path, NESTED_EXHAUSTIVE)
    assert outputs == {"w.t": 1, "w.cs": [1, 2], "w.d_out": 1, "w.deep_out": [1, 2]}


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_write_lines_and_write_tsv_take_numbers(tmp_path, version):
    """Int/Float elements given to write_lines/write_tsv are written as text, as Cromwell does
    (valid in 1.0; accepted with a warning from 1.1)."""
    proc = run_wdl(tmp_path, """
        version %s
        workflow w {
          File lines = write_lines([1, 2])
          File tsv = write_tsv([[1, 2], [3, 4]])
          output {
            String l = read_string(lines)
            Array[Array[String]] t = read_tsv(tsv)
          }
        }
        """ % version)
    outputs, _ = ok(proc)
    assert outputs["w.l"] == "1\n2" and outputs["w.t"] == [["1", "2"], ["3", "4"]]
    assert ("warning:" in proc.stderr) == (version != "1.0"), proc.stderr


# --------------------------------------------------------------------------------------------
# Bugs found by running other engines' test material (issue: "Run the WDL people have", item 6)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_none_for_an_input_with_a_default_takes_the_default(tmp_path, version):
    """The spec's table (1.2 "Optional inputs with defaults"): `None` for `Int x = 1` gives 1,
    for `Int? y = 1` gives None; in 1.0 too."""
    outputs, _ = run_ok(tmp_path, """
        version %s
        task t {
          input {
            Int x = 1
            Int? y = 1
          }
          command <<< echo "~{x} ~{default="none" y}" >>>
          output { String o = read_string(stdout()) }
        }
        workflow w {
          input { Int? unset }
          call t { input: x = unset, y = unset }
          output { String o = t.o }
        }
        """ % version)
    assert outputs["w.o"] == "1 none"


def test_optional_to_required_message_names_the_types_in_order(tmp_path):
    """1.1: "`x` has type `Int?`, but an optional value cannot be used where `Int` is expected"."""
    write(tmp_path / "m.wdl", "version 1.1\nworkflow w {\n  input {\n    Int? y\n  }\n  Int x = y\n}\n", raw=True)
    proc = subprocess.run(sprocket_argv("check", str(tmp_path / "m.wdl")), capture_output=True, text=True)
    assert proc.returncode == 1
    assert "has type `Int?`, but an optional value cannot be used where `Int` is expected" in proc.stderr, proc.stderr


def test_struct_literal_with_a_lower_case_struct_name(tmp_path):
    """`person { name: "a" }` is a struct literal whatever the case of the struct's name."""
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        struct person { String name }
        workflow w {
          person p = person { name: "a" }
          output { String n = p.name }
        }
        """)
    assert outputs == {"w.n": "a"}


def test_placeholders_in_meta_strings_are_text(tmp_path):
    """`~{...}` and `${...}` in meta and parameter_meta strings are documentation, kept as written."""
    src = write(tmp_path / "m.wdl", """
        version 1.1
        workflow w {
          meta { description: "reads ~{x} and ${y}" }
          parameter_meta { x: "the ~{x} input" }
          input { Int x = 1 }
          output { Int o = x }
        }
        """)
    outputs, _ = ok(sprocket_run(src, cwd=tmp_path))
    assert outputs == {"w.o": 1}


def test_write_json_writes_only_the_json_text(tmp_path):
    """No newline after the JSON (Cromwell and miniwdl write exactly the text)."""
    outputs, _ = run_ok(tmp_path, """
        version 1.1
        workflow w {
          File f = write_json({"a": [1, 2]})
          output { File o = f }
        }
        """)
    with open(outputs["w.o"], "rb") as fh:
        assert fh.read() == b'{"a": [1, 2]}'


def test_http_file_input_is_downloaded_into_the_run_directory(tmp_path):
    """A File input given as an http:// URL is fetched into <run dir>/inputs/ and the task reads
    the local copy; inputs.json keeps the URL. A URL that cannot be fetched fails the run cleanly."""
    served = tmp_path / "srv"
    served.mkdir()
    (served / "data.txt").write_text("from the server\n")
    with http_server(served) as (base, _paths):
        url = base + "/data.txt"
        src = write(tmp_path / "t.wdl", """
            version 1.1
            task t {
              input { File f }
              command <<< cat ~{f} >>>
              output { String s = read_string(stdout()) }
            }
            """)
        outputs, rd = ok(sprocket_run(src, "t.f=" + url, "-o", tmp_path / "out", cwd=tmp_path))
        assert outputs == {"t.s": "from the server"}
        assert list((rd / "inputs").rglob("data.txt"))
        assert url in (rd / "inputs.json").read_text()
        fails(sprocket_run(src, "t.f=" + url + ".missing", "-o", tmp_path / "out", cwd=tmp_path),
              "cannot fetch", url + ".missing")


# --------------------------------------------------------------------------------------------
# Paths as WDL 1.2.1 and 1.3 define them (issue 16, item 4); workflow-level reads confined
# (issue 17, item 2). The document sits in its own directory, apart from the cwd and `-o`.
# --------------------------------------------------------------------------------------------

PATHS_TASK = """
    task t {
      input {
        File f
        File g = "data/hello.txt"
      }
      File h = "data/hello.txt"
      String from_decl = read_string("data/hello.txt")
      command <<<
        cat ~{f} ~{g} ~{h} > out.txt
      >>>
      output {
        File o = "out.txt"
        String text = read_string(o)
        String decl = from_decl
      }
    }
"""


def paths_doc(tmp_path, version, body, tasks=PATHS_TASK):
    """`doc/main.wdl` (version, tasks, then `body`) beside `doc/data/hello.txt`; cwd is tmp_path."""
    write(tmp_path / "doc" / "data" / "hello.txt", "hello\n", raw=True)
    return write(tmp_path / "doc" / "main.wdl", "version %s\n%s\n%s" % (version, norm(tasks), norm(body)), raw=True)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_relative_paths_outside_output_resolve_against_the_document_directory(tmp_path, version):
    doc = paths_doc(tmp_path, version, """
        workflow w {
          input {
            File rel = "data/hello.txt"
          }
          File decl = "data/../data/hello.txt"
          String read = read_string("data/hello.txt")
          call t { input: f = "data/hello.txt" }
          output {
            String rel_path = rel
            String decl_path = decl
            String read_text = read
            String task_text = t.text
            String task_decl = t.decl
            String task_output = t.o
          }
        }
        """)
    outputs, rd = ok(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))
    hello = str((tmp_path / "doc" / "data" / "hello.txt").absolute())
    assert outputs["w.rel_path"] == outputs["w.decl_path"] == hello
    assert outputs["w.read_text"] == outputs["w.task_decl"] == "hello"
    assert outputs["w.task_text"] == "hello\nhello\nhello"
    # inside `output {}` a relative path is the task's working directory's
    assert outputs["w.task_output"] == str(rd / "calls" / "t" / "attempts" / "0" / "work" / "out.txt")


@pytest.mark.parametrize("where, text", [
    ("workflow declaration", 'File f = "../secret.txt"'),
    ("workflow input default", 'input { File f = "data/../../secret.txt" }'),
    ("call input", 'call t { input: f = "../secret.txt" }'),
    ("stdlib argument", 'String s = read_string("../secret.txt")'),
])
def test_relative_path_leaving_the_document_directory_is_an_error(tmp_path, where, text):
    write(tmp_path / "secret.txt", "secret\n", raw=True)
    doc = paths_doc(tmp_path, "1.2", "workflow w {\n  %s\n}\n" % text)
    err = fails(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path), "secret.txt",
                "leaves the document's directory")
    assert "main.wdl:" in err
    assert not list(tmp_path.rglob("attempts")), where


def test_relative_path_leaving_the_document_directory_in_a_task_is_an_error(tmp_path):
    write(tmp_path / "secret.txt", "secret\n", raw=True)
    doc = paths_doc(tmp_path, "1.2", "", tasks="""
        task t {
          String s = read_string("../secret.txt")
          command <<< echo ~{s} >>>
          output { String o = read_string(stdout()) }
        }
        """)
    fails(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path), "read_string", "../secret.txt",
          "leaves the document's directory")


def test_relative_paths_before_1_2_keep_todays_behaviour(tmp_path):
    """1.0/1.1: a relative File stays as written in a workflow, and a task's resolves in its working directory."""
    doc = paths_doc(tmp_path, "1.1", """
        workflow w {
          File rel = "data/hello.txt"
          File? missing = "data/nope.txt"
          call t { input: f = rel }
          output {
            String rel_path = rel
            Boolean missing_defined = defined(missing)
          }
        }
        """, tasks="""
        task t {
          input { File f }
          command <<< mkdir -p data && echo here > data/hello.txt && cat ~{f} >>>
          output { String text = read_string(stdout()) }
        }
        """)
    outputs, _ = ok(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))
    assert outputs == {"w.rel_path": "data/hello.txt", "w.missing_defined": True}


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_missing_path_makes_optional_file_and_directory_none(tmp_path, version):
    doc = paths_doc(tmp_path, version, """
        workflow w {
          input {
            File? in_missing = "data/nope.txt"
          }
          File? missing = "data/nope.txt"
          Directory? missing_dir = "nodir"
          Directory? present_dir = "data"
          Array[File?] mixed = ["data/hello.txt", "/nonexistent/x.txt"]
          call t { input: f = "data/hello.txt", maybe = "data/nope.txt" }
          output {
            Array[Boolean] defined = [defined(in_missing), defined(missing), defined(missing_dir),
                                      defined(present_dir), defined(mixed[0]), defined(mixed[1])]
            Boolean task_maybe = t.maybe_defined
          }
        }
        """, tasks="""
        task t {
          input {
            File f
            File? maybe
            File? private_default = "data/nope.txt"
          }
          command <<< true >>>
          output { Boolean maybe_defined = defined(maybe) || defined(private_default) }
        }
        """)
    outputs, _ = ok(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))
    assert outputs == {"w.defined": [False, False, False, True, True, False], "w.task_maybe": False}


@pytest.mark.parametrize("body, name", [
    ('File f = "data/nope.txt"', "`f`"),
    ('input { Directory d = "nodir" }', "`d`"),
    ('call t { input: f = "data/nope.txt" }', "input `f` of call `t`"),
])
def test_missing_required_path_is_an_error_when_created_in_1_3(tmp_path, body, name):
    doc = paths_doc(tmp_path, "1.3", "workflow w {\n  %s\n}\n" % body)
    missing = str(tmp_path / "doc" / ("nodir" if "nodir" in body else "data/nope.txt"))
    fails(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path), name, missing, "does not exist")
    assert not list(tmp_path.rglob("attempts")), "a task ran although a path it names is missing"


def test_missing_required_file_in_a_1_3_task_declaration_is_an_error(tmp_path):
    doc = paths_doc(tmp_path, "1.3", "", tasks="""
        task t {
          File ref = "data/ref.fa"
          command <<< cat ~{ref} >>>
          output { String o = read_string(stdout()) }
        }
        """)
    fails(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path), "`ref` of task `t`",
          str(tmp_path / "doc" / "data" / "ref.fa"), "does not exist")


def test_missing_required_file_in_1_2_is_an_error_only_when_read(tmp_path):
    """1.2.1: a path need not exist until it is read (the conformance cases rely on it)."""
    doc = paths_doc(tmp_path, "1.2", """
        workflow w {
          File f = "data/nope.txt"
          output { String p = f }
        }
        """)
    outputs, _ = ok(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))
    assert outputs == {"w.p": str(tmp_path / "doc" / "data" / "nope.txt")}
    doc.write_text(doc.read_text().replace("String p = f", "String p = read_string(f)"))
    fails(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path), "read_string", "nope.txt")


def _cache_config(tmp_path):
    cfg = tmp_path / "cache.toml"
    cfg.write_text('[run.task]\ncache = "on"\ncache_dir = "%s"\n' % (tmp_path / "cache"))
    return cfg


def _task_statuses(out):
    rows = db_rows(out / "sprocket.db", "SELECT status FROM tasks WHERE run_id = (SELECT max(id) FROM runs)")
    return [r["status"] for r in rows]


def test_call_cache_key_covers_the_resolved_relative_paths(tmp_path):
    doc = paths_doc(tmp_path, "1.2", "", tasks="""
        task t {
          input { File g = "data/hello.txt" }
          File h = "data/other.txt"
          command <<< cat ~{g} ~{h} >>>
          output { String o = read_string(stdout()) }
        }
        """)
    other = write(tmp_path / "doc" / "data" / "other.txt", "one\n", raw=True)
    args = (doc, "-o", tmp_path / "out", "-c", _cache_config(tmp_path))
    assert ok(sprocket_run(*args, cwd=tmp_path))[0] == {"t.o": "hello\none"}
    assert ok(sprocket_run(*args, cwd=tmp_path))[0] == {"t.o": "hello\none"}
    assert _task_statuses(tmp_path / "out") == ["cached"]
    other.write_text("two\n")  # a private declaration's file
    assert ok(sprocket_run(*args, cwd=tmp_path))[0] == {"t.o": "hello\ntwo"}
    write(tmp_path / "doc" / "data" / "hello.txt", "hi again\n", raw=True)  # an input default's file
    assert ok(sprocket_run(*args, cwd=tmp_path))[0] == {"t.o": "hi again\ntwo"}
    assert _task_statuses(tmp_path / "out") == ["completed"]


def test_call_cache_does_not_serve_deleted_or_changed_outputs(tmp_path):
    doc = write(tmp_path / "main.wdl", """
        version 1.2
        task t {
          command <<< mkdir d && echo made > out.txt && echo inside > d/x.txt >>>
          output {
            File o = "out.txt"
            Directory d = "d"
          }
        }
        """)
    args = (doc, "-o", tmp_path / "out", "-c", _cache_config(tmp_path))
    first, _ = ok(sprocket_run(*args, cwd=tmp_path))
    assert ok(sprocket_run(*args, cwd=tmp_path))[0] == first
    assert _task_statuses(tmp_path / "out") == ["cached"]
    os.remove(first["t.o"])  # deleted: run again, the new outputs elsewhere
    second, _ = ok(sprocket_run(*args, cwd=tmp_path))
    assert _task_statuses(tmp_path / "out") == ["completed"]
    assert second["t.o"] != first["t.o"] and Path(second["t.o"]).read_text() == "made\n"
    with open(os.path.join(second["t.d"], "x.txt"), "a") as f:  # changed, inside a Directory output
        f.write("changed\n")
    third, _ = ok(sprocket_run(*args, cwd=tmp_path))
    assert _task_statuses(tmp_path / "out") == ["completed"]
    assert Path(third["t.d"], "x.txt").read_text() == "inside\n"


def test_input_defaults_are_readable_at_every_workflow_level(tmp_path):
    """A sub-workflow's `File ref = "/abs/x"` default is its own input, readable by its stdlib calls as the same
    default in the top-level workflow is; a path the caller computes into it is not."""
    default = write(tmp_path / "elsewhere" / "default.txt", "by default\n", raw=True)
    write(tmp_path / "elsewhere" / "other.txt", "other\n", raw=True)
    write(tmp_path / "doc" / "sub.wdl", """
        version 1.1
        workflow sub {
          input { File ref = "%s" }
          output { String r = read_string(ref) }
        }
        """ % default)
    doc = paths_doc(tmp_path, "1.1", """
        import "sub.wdl"
        workflow w {
          input { Boolean given = false }
          if (!given) {
            call sub.sub
          }
          if (given) {
            call sub.sub as sub2 { input: ref = "%s" }
          }
          output { String? r = if given then sub2.r else sub.r }
        }
        """ % (tmp_path / "elsewhere" / "other.txt"), tasks="")
    assert ok(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))[0] == {"w.r": "by default"}
    fails(sprocket_run(doc, "given=true", "-o", tmp_path / "out", cwd=tmp_path), "read_string", "other.txt",
          "may read")


def test_workflow_level_stdlib_reads_are_confined(tmp_path):
    """Inputs, call outputs, the run directory and (1.2+) the document's directory; nothing else."""
    outside = write(tmp_path / "elsewhere" / "secret.txt", "secret\n", raw=True)
    given = write(tmp_path / "elsewhere" / "given.txt", "given\n", raw=True)
    write(tmp_path / "elsewhere" / "dir" / "x.txt", "in dir\n", raw=True)
    body = """
        workflow w {
          input {
            File given
            Directory dir
          }
          call t { input: f = given }
          String a = read_string(given)
          String b = read_string(dir + "/x.txt")
          String c = read_string(t.o)
          Float d = size(t.o) + size(given)
          Array[String] e = read_lines(write_lines(["written"]))
          String f = read_string("%s")
          output { Array[String] all = [a, b, c, e[0], f] }
        }
        """ % (tmp_path / "doc" / "data" / "hello.txt")
    doc = paths_doc(tmp_path, "1.2", body)
    args = (doc, "given=%s" % given, "dir=%s" % (tmp_path / "elsewhere" / "dir"), "-o", tmp_path / "out")
    outputs, _ = ok(sprocket_run(*args, cwd=tmp_path))
    assert outputs["w.all"] == ["given", "in dir", "given\nhello\nhello", "written", "hello"]
    # 1.1: the document's directory is not among them
    hello = tmp_path / "doc" / "data" / "hello.txt"
    doc11 = paths_doc(tmp_path, "1.1", 'workflow w {\n  String f = read_string("%s")\n}\n' % hello, tasks="")
    fails(sprocket_run(doc11, "-o", tmp_path / "out", cwd=tmp_path), "read_string", str(hello),
          "`f` of workflow `w`", "may read")
    # an input's default is one of the run's inputs (`sprocket inputs` lists it), read where it is
    default = write(tmp_path / "elsewhere" / "default.txt", "by default\n", raw=True)
    doc11 = paths_doc(tmp_path, "1.1", """
        workflow w {
          input { File ref = "%s" }
          Float gb = size(ref, "GB")
          output { String r = read_string(ref) }
        }
        """ % default, tasks="")
    assert ok(sprocket_run(doc11, "-o", tmp_path / "out", cwd=tmp_path))[0] == {"w.r": "by default"}
    # a host file, directly, through a symlink in the document's directory, and by glob
    (tmp_path / "doc" / "link.txt").symlink_to(outside)
    for text, fname in (('read_string("%s")' % outside, "read_string"), ('read_string("link.txt")', "read_string"),
                        ('size("/etc/passwd")', "size"), ('length(glob("%s/*.txt"))' % outside.parent, "glob")):
        doc = paths_doc(tmp_path, "1.2", "workflow w {\n  String x = %s\n}\n" % text)
        fails(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path), fname, "`x` of workflow `w`", "may read")
    # task-level reads are the task's business (its container), not confined here
    doc = paths_doc(tmp_path, "1.2", "", tasks="""
        task t {
          String s = read_string("%s")
          command <<< echo ~{s} >>>
          output { String o = read_string(stdout()) }
        }
        """ % outside)
    assert ok(sprocket_run(doc, "-o", tmp_path / "out", cwd=tmp_path))[0] == {"t.o": "secret"}


# Compatibility constructs at run time (issue 16): what Cromwell and miniwdl make of them
# --------------------------------------------------------------------------------------------


def test_compat_round_of_string_map_value_converts_at_run_time(tmp_path):
    """`round(m["k"])` with a `Map[String, String]` (GATK-SV's MELT.wdl reads metrics with
    `read_map`): the String is parsed as a number when the call runs; one that is no number
    fails the run with a message naming the value."""
    src = """
    version 1.0
    workflow w {
      input {
        Map[String, String] m = {"len": "151.6", "bad": "n/a"}
        String key = "len"
      }
      Int r = round(m[key])
      Float f = floor(m[key])
      output {
        Int rounded = r
        Float floored = f
      }
    }
    """
    outputs, _ = run_ok(tmp_path, src)
    assert outputs == {"w.rounded": 152, "w.floored": 151.0}
    proc = run_wdl(tmp_path, src, "key=bad")
    fails(proc, "n/a")


def test_compat_newer_functions_run_in_a_1_0_document(tmp_path):
    """`sep`, `suffix`, `unzip` and `min` in a 1.0 document run as in 1.1 (miniwdl has them)."""
    outputs, _ = run_ok(tmp_path, """
    version 1.0
    workflow w {
      input {
        Array[String] a = ["x", "y"]
      }
      output {
        String joined = sep(",", a)
        Array[String] suffixed = suffix(".bam", a)
        Pair[Array[Int], Array[String]] unzipped = unzip([(1, "a"), (2, "b")])
        Int smaller = min(3, 2)
      }
    }
    """)
    assert outputs == {"w.joined": "x,y", "w.suffixed": ["x.bam", "y.bam"],
                       "w.unzipped": {"left": [1, 2], "right": ["a", "b"]}, "w.smaller": 2}


def test_compat_struct_literal_with_quoted_member_names_runs(tmp_path):
    """`Runtime {"cpu": n, ...}` (AWS HealthOmics' mutec2.wdl) builds the struct as unquoted names do."""
    outputs, _ = run_ok(tmp_path, """
    version 1.1
    struct Runtime {
      String docker
      Int cpu
    }
    workflow w {
      input {
        Int n = 4
      }
      Runtime r = Runtime {"docker": "ubuntu", "cpu": n}
      output {
        Runtime out = r
      }
    }
    """)
    assert outputs == {"w.out": {"docker": "ubuntu", "cpu": 4}}


MIXED_ARRAYS = """
version 1.0
workflow w {
  input {
    File? x
    Array[File]? files
    File file
  }
  Float size_of_x = size(select_first([x, []]))
  Array[File] fs = select_first([files, file])
  output {
    Float s = size_of_x
    Array[String] names = [basename(fs[0])]
    Int n = length(fs)
  }
}
"""


@pytest.mark.parametrize("given, want", [
    ((), {"w.s": 0.0, "w.names": ["b.txt"], "w.n": 1}),
    (("x=a.txt", 'files=["a.txt", "b.txt"]'), {"w.s": 3.0, "w.names": ["a.txt"], "w.n": 2}),
], ids=["none-given", "all-given"])
def test_compat_array_literal_mixing_values_and_arrays(tmp_path, given, want):
    """`select_first([x, []])` (GATK-SV's MainVcfQc.wdl): with `x` None it is the empty array, and
    `size` of it is 0. `select_first([files, file])`: with `files` None it is `[file]`."""
    (tmp_path / "a.txt").write_text("abc")
    (tmp_path / "b.txt").write_text("")
    outputs, _ = run_ok(tmp_path, MIXED_ARRAYS, "file=b.txt", *given)
    assert outputs == want


def test_compat_string_plus_optional_boolean_in_placeholder(tmp_path):
    """`~{"--x " + b}` with `b: Boolean?`: `--x true` when set, nothing when None (as a placeholder
    with an undefined operand renders)."""
    src = """
    version 1.1
    workflow w {
      input {
        Boolean? b
        Int? i
        Boolean c = true
      }
      output {
        String flag = "cmd ~{"--x " + b}"
        String? either = if c then i else "none"
      }
    }
    """
    outputs, _ = run_ok(tmp_path, src, "b=false", "i=7")
    assert outputs == {"w.flag": "cmd --x false", "w.either": "7"}
    outputs, _ = run_ok(tmp_path, src, "c=false")
    assert outputs == {"w.flag": "cmd ", "w.either": "none"}


def test_compat_declaration_without_value_outside_input_is_an_input(tmp_path):
    """A 1.0 workflow's `Int n` outside `input {}` is an input: `inputs` lists it, `run` demands it
    by name, and the value given is used."""
    src = write(tmp_path / "main.wdl", """
    version 1.0
    workflow w {
      input {
        Int a = 1
      }
      Int n
      output {
        Int sum = a + n
      }
    }
    """)
    proc = sprocket_cmd("inputs", src, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"w.a": 1, "w.n": "Int"}
    fails(sprocket_run(src, cwd=tmp_path), "missing required input: `w.n`")
    outputs, _ = ok(sprocket_run(src, "n=41", cwd=tmp_path))
    assert outputs == {"w.sum": 42}


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_compat_call_leaving_required_inputs_unbound(tmp_path, version):
    """A call that leaves required inputs unbound (PANOPLY's spectronaut): they are required inputs
    of the workflow, `w.call.input`: `inputs` lists them, `validate` and `run` demand each by name,
    and given they reach the task."""
    src = write(tmp_path / "main.wdl", """
    version %s
    task t {
      input {
        Int a
        String b
        Int c = 1
      }
      command <<< echo "~{a} ~{b} ~{c}" >>>
      output {
        String o = read_string(stdout())
      }
    }
    workflow w {
      call t
      output {
        String o = t.o
      }
    }
    """ % version)
    proc = sprocket_cmd("inputs", src, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"w.t.a": "Int", "w.t.b": "String"}
    proc = sprocket_cmd("validate", src, cwd=tmp_path)
    assert proc.returncode == 1 and "missing required inputs: `w.t.a`, `w.t.b`" in proc.stderr, proc.stderr
    fails(sprocket_run(src, "w.t.a=2", cwd=tmp_path), "missing required input: `w.t.b`")
    outputs, _ = ok(sprocket_run(src, "w.t.a=2", "w.t.b=x", cwd=tmp_path))
    assert outputs == {"w.o": "2 x 1"}
    if version != "1.0":  # an input the call leaves optional still needs `allow_nested_inputs`
        fails(sprocket_run(src, "w.t.a=2", "w.t.b=x", "w.t.c=3", cwd=tmp_path), "allow_nested_inputs")


def test_compat_call_input_given_twice_keeps_the_last(tmp_path):
    """Cromwell keeps the last of two values for one call input (Cromwell's own Mutect2 test)."""
    outputs, _ = run_ok(tmp_path, """
    version 1.0
    task t {
      input {
        Int a
      }
      command <<< echo ~{a} >>>
      output {
        Int o = read_int(stdout())
      }
    }
    workflow w {
      call t { input: a = 1, a = 2 }
      output {
        Int o = t.o
      }
    }
    """)
    assert outputs == {"w.o": 2}


def test_workflow_named_like_the_task_it_imports(tmp_path):
    """`import "tasks/align.wdl"` into `workflow align { call align.align }`: the namespace, the
    imported task, the call and the workflow share a name; the call runs the imported task (not
    the workflow itself), and its outputs are the call's."""
    write(tmp_path / "tasks" / "align.wdl", """
    version 1.0
    task align {
      input {
        String s = "task"
      }
      command <<< echo ~{s} >>>
      output {
        String o = read_string(stdout())
      }
    }
    """)
    src = """
    version 1.0
    import "tasks/align.wdl"
    workflow align {
      call align.align
      output {
        String o = align.o
      }
    }
    """
    outputs, rd = run_ok(tmp_path, src, "align.align.s=given")
    assert outputs == {"align.o": "given"}
    assert call_dirs(rd) == ["align"]
