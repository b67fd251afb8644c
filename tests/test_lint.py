"""Section 9: `sprocket lint`, `explain` and `format`.

lint: every rule has a document that triggers it and one that does not (each must check clean:
lint reports on valid WDL); rules are switched off by `--except`, `check.except` in
sprocket.toml and `#@ except:` comments; `--deny-warnings` fails on warnings.
format: over every WDL file of ../shared (production workflows and the conformance corpus) the
result is idempotent, keeps every comment, and parses to the same syntax tree (positions aside;
imports are sorted); `--check` and `--overwrite` behave.
"""

import glob
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from conftest import REPO, assert_sane, norm, shared_dir, sprocket_cmd

sys.path.insert(0, str(REPO))
import sprocket  # noqa: E402  (the section's functions, for the corpus-wide format test)

RULE_RE = re.compile(r"^(.+):(\d+):(\d+): warning\[(\w+)\]: (.+)$", re.M)


def write_files(root, files):
    for name, text in files.items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") or name.endswith(".raw") else norm(text), encoding="utf-8")
    return Path(root) / "main.wdl"


def lint(root, files, *args):
    main = write_files(root, files)
    proc = sprocket_cmd("lint", "-s", main, *args, cwd=root)
    assert_sane(proc)
    return proc, [m.group(4) for m in RULE_RE.finditer(proc.stderr)]


# A task that no rule but the one under test objects to (documented, snake_case, a container).
CLEAN_TASK = """
    task greet {
        meta {
            description: "says hello"
            outputs: { message: "the greeting" }
        }
        parameter_meta {
            name: "who to greet"
        }
        input {
            String name
        }
        command <<<
            echo "hello ~{name}"
        >>>
        output {
            String message = read_string(stdout())
        }
        runtime {
            container: "ubuntu:22.04"
        }
    }
"""


def doc(body, version="1.1", task=True):
    clean = norm(CLEAN_TASK).replace("runtime {", "requirements {" if version >= "1.2" else "runtime {")
    return "version %s\n\n%s%s" % (version, clean + "\n" if task else "", norm(body))


LIB = {"lib.wdl": doc("")}
LIB_10 = {"lib.wdl": doc("", "1.0")}

# rule: (files that trigger it, files that do not). Each main.wdl must check clean.
CASES = {
    "UnusedInput": (
        {"main.wdl": doc("task t {\n  input {\n    Int n\n  }\n  command <<< >>>\n  runtime { container: \"u\" }\n}\n")},
        {"main.wdl": doc("task t {\n  input {\n    Int n\n  }\n  command <<< echo ~{n} >>>\n  runtime { container: \"u\" }\n}\n")}),
    "UnusedDeclaration": (
        {"main.wdl": doc("task t {\n  Int n = 1\n  command <<< >>>\n  runtime { container: \"u\" }\n}\n")},
        {"main.wdl": doc("task t {\n  Int n = 1\n  command <<< echo ~{n} >>>\n  runtime { container: \"u\" }\n}\n")}),
    "UnusedCall": (
        {"main.wdl": doc("workflow w {\n  call greet { input: name = \"a\" }\n  output {\n    Int x = 1\n  }\n}\n")},
        {"main.wdl": doc("workflow w {\n  call greet { input: name = \"a\" }\n  output {\n    String x = greet.message\n  }\n}\n")}),
    "UnusedImport": (
        dict(LIB, **{"main.wdl": doc("import \"lib.wdl\"\n", task=False) + norm(CLEAN_TASK)}),
        dict(LIB, **{"main.wdl": doc("import \"lib.wdl\"\n\nworkflow w {\n  call lib.greet { input: name = \"a\" }\n}\n", task=False)})),
    "ImportSorted": (
        dict(LIB, **{"b.wdl": doc(""), "main.wdl": doc("import \"lib.wdl\"\nimport \"b.wdl\"\n\nworkflow w {\n  call lib.greet as a { input: name = \"a\" }\n  call b.greet as b { input: name = \"a\" }\n}\n", task=False)}),
        dict(LIB, **{"b.wdl": doc(""), "main.wdl": doc("import \"b.wdl\"\nimport \"lib.wdl\"\n\nworkflow w {\n  call lib.greet as a { input: name = \"a\" }\n  call b.greet as b { input: name = \"a\" }\n}\n", task=False)})),
    "MetaSections": (
        {"main.wdl": doc("task t {\n  command <<< >>>\n  runtime { container: \"u\" }\n}\n")},
        {"main.wdl": doc("task t {\n  meta { description: \"d\" }\n  command <<< >>>\n  runtime { container: \"u\" }\n}\n")}),
    "ParameterMetaMatched": (
        {"main.wdl": doc("task t {\n  meta { description: \"d\" }\n  parameter_meta { m: \"?\" }\n  input { Int n }\n  command <<< ~{n} >>>\n  runtime { container: \"u\" }\n}\n")},
        {"main.wdl": doc("task t {\n  meta { description: \"d\" }\n  parameter_meta { n: \"a number\" }\n  input { Int n }\n  command <<< ~{n} >>>\n  runtime { container: \"u\" }\n}\n")}),
    "MatchingOutputMeta": (
        {"main.wdl": doc("task t {\n  meta { description: \"d\" }\n  command <<< >>>\n  output { Int x = 1 }\n  runtime { container: \"u\" }\n}\n")},
        {"main.wdl": doc("task t {\n  meta { outputs: { x: \"one\" } }\n  command <<< >>>\n  output { Int x = 1 }\n  runtime { container: \"u\" }\n}\n")}),
    "SnakeCase": (
        {"main.wdl": doc("workflow myWorkflow {\n  call greet { input: name = \"a\" }\n}\n")},
        {"main.wdl": doc("workflow my_workflow {\n  call greet { input: name = \"a\" }\n}\n")}),
    "PascalCase": (
        {"main.wdl": doc("struct read_group {\n  String id\n}\n")},
        {"main.wdl": doc("struct ReadGroup {\n  String id\n}\n")}),
    "DeprecatedObject": (
        {"main.wdl": doc("workflow w {\n  input {\n    Object o\n  }\n  output {\n    Object p = o\n  }\n}\n", "1.0")},
        {"main.wdl": doc("struct Thing {\n  Int a\n}\n\nworkflow w {\n  input {\n    Thing o\n  }\n  output {\n    Thing p = o\n  }\n}\n", "1.0")}),
    "DeprecatedPlaceholder": (
        {"main.wdl": doc("workflow w {\n  Array[Int] xs = [1, 2]\n  output {\n    String s = \"~{sep=\" \" xs}\"\n  }\n}\n")},
        {"main.wdl": doc("workflow w {\n  Array[Int] xs = [1, 2]\n  output {\n    String s = \"~{sep(\" \", xs)}\"\n  }\n}\n")}),
    "ExpectedRuntimeKeys": (
        {"main.wdl": doc("task t {\n  meta { description: \"d\" }\n  command <<< >>>\n}\n")},
        {"main.wdl": doc("task t {\n  meta { description: \"d\" }\n  command <<< >>>\n  runtime { container: \"ubuntu:22.04\" }\n}\n")}),
    "RequirementsSection": (
        {"main.wdl": doc("task t {\n  command <<< >>>\n  runtime { container: \"u\" }\n}\n", "1.2")},
        {"main.wdl": doc("task t {\n  command <<< >>>\n  requirements { container: \"u\" }\n}\n", "1.2")}),
    "CallInputKeyword": (
        {"main.wdl": doc("workflow w {\n  call greet { input: name = \"a\" }\n}\n", "1.2")},
        {"main.wdl": doc("workflow w {\n  call greet { name = \"a\" }\n}\n", "1.2")}),
    "ShadowedName": (
        {"main.wdl": doc("workflow w {\n  String basename = \"x\"\n  output {\n    String o = basename\n  }\n}\n")},
        {"main.wdl": doc("workflow w {\n  String base_name = \"x\"\n  output {\n    String o = base_name\n  }\n}\n")}),
    "HereDocCommands": (
        {"main.wdl": doc("task t {\n  command {\n    echo hi\n  }\n  runtime { container: \"u\" }\n}\n")},
        {"main.wdl": doc("task t {\n  command <<<\n    echo hi\n  >>>\n  runtime { container: \"u\" }\n}\n")}),
    "CommandSectionIndentation": (
        {"main.wdl": doc("task t {\n  command <<<\n  \techo hi\n  >>>\n  runtime { container: \"u\" }\n}\n")},
        {"main.wdl": doc("task t {\n  command <<<\n    echo hi\n  >>>\n  runtime { container: \"u\" }\n}\n")}),
    "DoubleQuotes": (
        {"main.wdl": doc("workflow w {\n  output {\n    String s = 'x'\n  }\n}\n")},
        {"main.wdl": doc("workflow w {\n  output {\n    String s = \"x\"\n  }\n}\n")}),
    "Whitespace": (
        {"main.wdl": doc("workflow w {  \n  output {\n    Int x = 1\n  }\n}\n")},
        {"main.wdl": doc("workflow w {\n  output {\n    Int x = 1\n  }\n}\n")}),
    "LineWidth": (
        {"main.wdl": doc("# " + "a long comment " * 7 + "\nworkflow w {\n}\n")},
        {"main.wdl": doc("# a short comment\nworkflow w {\n}\n")}),
    "EndingNewline": (
        {"main.wdl.raw": "", "main.wdl": doc("workflow w {\n}\n").rstrip("\n") + "\n\n"},
        {"main.wdl": doc("workflow w {\n}\n")}),
    "TodoComment": (
        {"main.wdl": doc("# TODO: call greet\nworkflow w {\n}\n")},
        {"main.wdl": doc("# greet is called elsewhere\nworkflow w {\n}\n")}),
    "ImportOlderMinor": (
        dict(LIB_10, **{"main.wdl": doc("import \"lib.wdl\"\n\nworkflow w {\n  call lib.greet { input: name = \"a\" }\n}\n", task=False)}),
        dict(LIB, **{"main.wdl": doc("import \"lib.wdl\"\n\nworkflow w {\n  call lib.greet { input: name = \"a\" }\n}\n", task=False)})),
    # the compatibility warnings of the version table, one rule per feature
    "PrimitiveToString": ({"main.wdl": doc("workflow w {\n  String s = 1\n  output { String o = s }\n}\n")},
                          {"main.wdl": doc("workflow w {\n  String s = \"1\"\n  output { String o = s }\n}\n")}),
    "StringToNumber": ({"main.wdl": doc("workflow w {\n  Int n = \"5\"\n  output { Int o = n }\n}\n")},
                       {"main.wdl": doc("workflow w {\n  Int n = 5\n  output { Int o = n }\n}\n")}),
    "CompoundPlaceholder": (
        {"main.wdl": doc("workflow w {\n  Pair[Int, Int] p = (1, 2)\n  output { String o = \"~{p}\" }\n}\n")},
        {"main.wdl": doc("workflow w {\n  Pair[Int, Int] p = (1, 2)\n  output { String o = \"~{p.left}\" }\n}\n")}),
    "MapToPairs": (
        {"main.wdl": doc("workflow w {\n  Map[String, Int] m = {\"a\": 1}\n  Array[Pair[String, Int]] ps = m\n  output { Int o = length(ps) }\n}\n")},
        {"main.wdl": doc("workflow w {\n  Map[String, Int] m = {\"a\": 1}\n  Array[Pair[String, Int]] ps = as_pairs(m)\n  output { Int o = length(ps) }\n}\n")}),
    "MapMemberAccess": (
        {"main.wdl": doc("workflow w {\n  Map[String, Int] m = {\"a\": 1}\n  output { Int o = m.a }\n}\n")},
        {"main.wdl": doc("workflow w {\n  Map[String, Int] m = {\"a\": 1}\n  output { Int o = m[\"a\"] }\n}\n")}),
    "StructIndex": (
        {"main.wdl": doc("struct Thing {\n  Int a\n}\n\nworkflow w {\n  Thing s = Thing { a: 1 }\n  output { Int o = s[\"a\"] }\n}\n")},
        {"main.wdl": doc("struct Thing {\n  Int a\n}\n\nworkflow w {\n  Thing s = Thing { a: 1 }\n  output { Int o = s.a }\n}\n")}),
    "DoubleOptional": (
        {"main.wdl": doc("workflow w {\n  input {\n    Int?? n\n  }\n  output { Int? o = n }\n}\n")},
        {"main.wdl": doc("workflow w {\n  input {\n    Int? n\n  }\n  output { Int? o = n }\n}\n")}),
    "DuplicateKeys": (
        {"main.wdl": doc("task t {\n  command <<< >>>\n  runtime {\n    container: \"u\"\n    cpu: 1\n    cpu: 2\n  }\n}\n")},
        {"main.wdl": doc("task t {\n  command <<< >>>\n  runtime {\n    container: \"u\"\n    cpu: 2\n  }\n}\n")}),
    "SepOnNonArray": (
        {"main.wdl": doc("workflow w {\n  String s = \"x\"\n  output { String o = \"~{sep=\",\" s}\" }\n}\n")},
        {"main.wdl": doc("workflow w {\n  Array[String] s = [\"x\"]\n  output { String o = \"~{sep=\",\" s}\" }\n}\n")}),
    "OptionalForRequired": (
        {"main.wdl": doc("workflow w {\n  input {\n    Int? n\n  }\n  Int m = n\n  output { Int o = m }\n}\n", "1.0",
                         task=False)},
        {"main.wdl": doc("workflow w {\n  input {\n    Int? n\n  }\n  Int m = select_first([n, 1])\n"
                         "  output { Int o = m }\n}\n", "1.0", task=False)}),
    "PlaceholderOptions": (
        {"main.wdl": doc("task p {\n  input {\n    Array[String]? a\n  }\n  command <<< echo ~{default=\"x\" sep=\",\" a} >>>\n"
                         "  runtime { container: \"u\" }\n}\n", task=False)},
        {"main.wdl": doc("task p {\n  input {\n    Array[String]? a\n  }\n  command <<< echo ~{sep=\",\" a} >>>\n"
                         "  runtime { container: \"u\" }\n}\n", task=False)}),
    "EmptyStruct": ({"main.wdl": doc("struct Empty {\n}\n\nworkflow w {\n}\n", task=False)},
                    {"main.wdl": doc("struct Full {\n  Int a\n}\n\nworkflow w {\n}\n", task=False)}),
    "NonPosixRegex": (
        {"main.wdl": doc("workflow w {\n  output { String o = sub(\"a1\", \"(?:a)\\\\d\", \"b\") }\n}\n")},
        {"main.wdl": doc("workflow w {\n  output { String o = sub(\"a1\", \"(a)[0-9]\", \"b\") }\n}\n")}),
    "VersionAsName": (
        {"main.wdl": doc("workflow w {\n  Int version = 2\n  output { Int o = version }\n}\n")},
        {"main.wdl": doc("workflow w {\n  Int release = 2\n  output { Int o = release }\n}\n")}),
    "WorkflowNamedLikeTask": (
        {"main.wdl": doc("workflow greet {\n  call greet as g { input: name = \"a\" }\n}\n")},
        {"main.wdl": doc("workflow greeting {\n  call greet as g { input: name = \"a\" }\n}\n")}),
    "UnknownRuntimeKey": (
        {"main.wdl": doc("task t {\n  command <<< >>>\n  runtime {\n    container: \"u\"\n    colour: \"blue\"\n  }\n}\n")},
        {"main.wdl": doc("task t {\n  command <<< >>>\n  runtime {\n    container: \"u\"\n    cpu: 1\n  }\n}\n")}),
    "NewerFunctions": (
        {"main.wdl": doc("workflow w {\n  Array[String] a = [\"x\"]\n  output { String o = sep(\",\", a) }\n}\n", "1.0")},
        {"main.wdl": doc("workflow w {\n  Array[String] a = [\"x\"]\n  output { String o = \"~{sep=\",\" a}\" }\n}\n", "1.0")}),
    "QuotedMemberNames": (
        {"main.wdl": doc("struct Thing {\n  Int a\n}\n\nworkflow w {\n  Thing s = Thing { \"a\": 1 }\n  output { Int o = s.a }\n}\n")},
        {"main.wdl": doc("struct Thing {\n  Int a\n}\n\nworkflow w {\n  Thing s = Thing { a: 1 }\n  output { Int o = s.a }\n}\n")}),
    "MixedArrayItems": (
        {"main.wdl": doc("workflow w {\n  input {\n    Int? x\n  }\n  output { Int o = select_first([x, []]) }\n}\n")},
        {"main.wdl": doc("workflow w {\n  input {\n    Int? x\n  }\n  output { Int o = select_first([x, 0]) }\n}\n")}),
    "BooleanConcat": (
        {"main.wdl": doc("workflow w {\n  input {\n    Boolean b = true\n  }\n  output { String o = \"--x \" + b }\n}\n")},
        {"main.wdl": doc("workflow w {\n  input {\n    Boolean b = true\n  }\n  output { String o = \"--x ~{b}\" }\n}\n")}),
    "UnboundCallInputs": (
        {"main.wdl": doc("workflow w {\n  call greet\n}\n")},
        {"main.wdl": doc("workflow w {\n  call greet { input: name = \"a\" }\n}\n")}),
    "DuplicateCallInputs": (
        {"main.wdl": doc("workflow w {\n  call greet { input: name = \"a\", name = \"b\" }\n}\n")},
        {"main.wdl": doc("workflow w {\n  call greet { input: name = \"b\" }\n}\n")}),
    "SharedNamespace": (
        dict(LIB, **{"structs/lib.wdl": "version 1.1\n\nstruct Thing {\n  Int a\n}\n", "main.wdl": doc(
            "import \"lib.wdl\"\nimport \"structs/lib.wdl\"\n\nworkflow w {\n  call lib.greet { input: name = \"a\" }\n}\n",
            task=False)}),
        dict(LIB, **{"structs/lib.wdl": "version 1.1\n\nstruct Thing {\n  Int a\n}\n", "main.wdl": doc(
            "import \"lib.wdl\"\nimport \"structs/lib.wdl\" as types\n\nworkflow w {\n  call lib.greet { input: name = \"a\" }\n}\n",
            task=False)})),
    "EmptyDocument": (
        dict({"empty.wdl": "\n"}, **{"main.wdl": doc("import \"empty.wdl\"\n\nworkflow w {\n}\n", task=False)}),
        dict(LIB, **{"main.wdl": doc("import \"lib.wdl\"\n\nworkflow w {\n}\n", task=False)})),
    "UnboundDeclarations": (
        {"main.wdl": doc("workflow w {\n  Int n\n  output { Int o = n }\n}\n", "1.0")},
        {"main.wdl": doc("workflow w {\n  input {\n    Int n\n  }\n  output { Int o = n }\n}\n", "1.0")}),
}
for _bad, _ in CASES.values():
    _bad.pop("main.wdl.raw", None)


def test_every_rule_has_cases(tmp_path):
    """`explain --list` names exactly the rules this file tests."""
    proc = sprocket_cmd("explain", "--list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert listed == set(CASES), "untested: %s; unknown: %s" % (sorted(listed - set(CASES)), sorted(set(CASES) - listed))


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_triggers_and_stays_quiet(tmp_path, rule):
    bad, good = CASES[rule]
    proc, rules = lint(tmp_path / "bad", bad)
    assert proc.returncode == 0, proc.stderr
    assert rule in rules, "%s not reported:\n%s" % (rule, proc.stderr)
    m = next(m for m in RULE_RE.finditer(proc.stderr) if m.group(4) == rule)
    lines = proc.stderr[m.end():].split("\n")
    assert lines[2].strip() == "^", "no caret under the source line:\n" + proc.stderr
    proc, rules = lint(tmp_path / "good", good)
    assert proc.returncode == 0, proc.stderr
    assert rule not in rules, "%s reported on the clean document:\n%s" % (rule, proc.stderr)


TWO_TASKS = """\
version 1.1

#@ except: UnusedInput
task quiet {
    input {
        Int n
    }
    command <<< >>>
    runtime { container: "u" }
}

task loud {
    input {
        Int n
    }
    command <<< >>>
    runtime { container: "u" }
}
"""


def _unused_lines(proc):
    return [int(m.group(2)) for m in RULE_RE.finditer(proc.stderr) if m.group(4) == "UnusedInput"]


def test_except_comment_covers_the_element_after_it(tmp_path):
    proc, _ = lint(tmp_path, {"main.wdl": TWO_TASKS})
    assert _unused_lines(proc) == [14], proc.stderr  # `loud`'s input, not `quiet`'s


def test_except_comment_before_version_covers_the_document(tmp_path):
    proc, rules = lint(tmp_path, {"main.wdl": "#@ except: UnusedInput, MetaSections\n" + TWO_TASKS})
    assert "UnusedInput" not in rules and "MetaSections" not in rules, proc.stderr
    assert "ExpectedRuntimeKeys" not in rules and "SnakeCase" not in rules


def test_except_flag_and_config(tmp_path):
    proc, rules = lint(tmp_path, {"main.wdl": TWO_TASKS}, "-e", "UnusedInput", "--except", "MetaSections")
    assert "UnusedInput" not in rules and "MetaSections" not in rules, proc.stderr
    (tmp_path / "sprocket.toml").write_text('[check]\nexcept = ["UnusedInput"]\n')
    proc = sprocket_cmd("lint", "-c", tmp_path / "sprocket.toml", "-s", tmp_path / "main.wdl", cwd=tmp_path)
    assert proc.returncode == 0 and "UnusedInput" not in proc.stderr and "MetaSections" in proc.stderr, proc.stderr


def test_unknown_rule_is_a_clear_error(tmp_path):
    write_files(tmp_path, {"main.wdl": TWO_TASKS})
    proc = sprocket_cmd("lint", "-s", "-e", "UnusedInputs", "main.wdl", cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 1 and "unknown lint rule `UnusedInputs`" in proc.stderr, proc.stderr


def test_deny_warnings_and_hide_warnings(tmp_path):
    write_files(tmp_path, {"main.wdl": TWO_TASKS})
    proc = sprocket_cmd("lint", "-s", "--deny-warnings", "main.wdl", cwd=tmp_path)
    assert proc.returncode == 1 and "warning[UnusedInput]" in proc.stderr, proc.stderr
    (tmp_path / "sprocket.toml").write_text("[check]\nhide_warnings = true\ndeny_warnings = true\n")
    proc = sprocket_cmd("lint", "-s", "-c", "sprocket.toml", "main.wdl", cwd=tmp_path)
    assert proc.returncode == 1 and "warning" not in proc.stderr, proc.stderr
    clean = write_files(tmp_path / "clean", {"main.wdl": doc("").rstrip("\n") + "\n"})
    proc = sprocket_cmd("lint", "-s", "--deny-warnings", clean, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_check_keeps_plain_warnings_and_lints_with_l(tmp_path):
    write_files(tmp_path, {"main.wdl": TWO_TASKS.replace("Int n\n    }\n    command <<< >>>", "Int n = \"1\"\n    }\n    command <<< ~{n} >>>", 1)})
    proc = sprocket_cmd("check", "-s", "main.wdl", cwd=tmp_path)
    assert proc.returncode == 0 and ": warning: " in proc.stderr and "UnusedInput" not in proc.stderr, proc.stderr
    proc = sprocket_cmd("check", "-s", "-l", "main.wdl", cwd=tmp_path)
    assert "warning[UnusedInput]" in proc.stderr and "warning[StringToNumber]" in proc.stderr, proc.stderr


def test_lint_reports_errors_like_check(tmp_path):
    write_files(tmp_path, {"main.wdl": "version 1.1\n\nworkflow w {\n  Int x = y\n}\n"})
    proc = sprocket_cmd("lint", "-s", "main.wdl", cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 1 and "main.wdl:4:11: error: unknown name `y`" in proc.stderr, proc.stderr


def test_explain(tmp_path):
    proc = sprocket_cmd("explain", "SnakeCase", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("SnakeCase\n") and "Fix:" in proc.stdout, proc.stdout
    proc = sprocket_cmd("explain", "SnakeCas", cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 1 and "did you mean `SnakeCase`" in proc.stderr, proc.stderr


# -- format ------------------------------------------------------------------------------------

MESSY = """\
# the preamble
version 1.1
import "z.wdl" as z
import "a.wdl" as a
task  Hello{
  input{
      String name   # who
    Int n=3
  }


  command <<<
    echo ~{name}   
  >>>
  output { String out=read_string(stdout())+"x" }
}
workflow wf{
  call Hello{input: name="a",n=-1}
  # a comment before a scatter
  scatter(i in [1,2]){Int y=i*2}
}"""

FORMATTED = """\
# the preamble
version 1.1

import "a.wdl" as a
import "z.wdl" as z

task Hello {
    input {
        String name  # who
        Int n = 3
    }

    command <<<
    echo ~{name}   
  >>>

    output { String out = read_string(stdout()) + "x" }
}

workflow wf {
    call Hello {input: name = "a", n = -1}
    # a comment before a scatter
    scatter (i in [1, 2]) {Int y = i * 2}
}
"""


def test_format_lays_out_a_document(tmp_path):
    (tmp_path / "messy.wdl").write_text(MESSY)
    proc = sprocket_cmd("format", "messy.wdl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == FORMATTED


def test_format_check_and_overwrite(tmp_path):
    path = tmp_path / "messy.wdl"
    path.write_text(MESSY)
    os.chmod(path, 0o640)
    proc = sprocket_cmd("fmt", "--check", "messy.wdl", cwd=tmp_path)
    assert proc.returncode == 1 and "messy.wdl" in proc.stderr and proc.stdout == "", proc.stderr
    assert path.read_text() == MESSY
    proc = sprocket_cmd("format", "--overwrite", tmp_path, cwd=tmp_path)  # a directory: its *.wdl files
    assert proc.returncode == 0, proc.stderr
    assert path.read_text() == FORMATTED and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messy.wdl"], "a temporary file was left behind"
    proc = sprocket_cmd("format", "--check", "messy.wdl", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_format_refuses_what_does_not_parse(tmp_path):
    (tmp_path / "bad.wdl").write_text("version 1.1\n\nworkflow w {\n  Int x = \n}\n")
    proc = sprocket_cmd("format", "--overwrite", "bad.wdl", cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 1 and "bad.wdl:5:1: error:" in proc.stderr, proc.stderr
    assert (tmp_path / "bad.wdl").read_text().endswith("Int x = \n}\n")


def _comments(source):
    units, tail = sprocket._format_units(sprocket.Parser.for_source(source))
    return sorted(m.group().rstrip() for gap in [u.gap for u in units] + [tail]
                  for m in sprocket._GAP_RE.finditer(gap) if m.group() != "\n")


def _tree(x):
    """A syntax tree as nested tuples, without positions; imports in sorted order."""
    if isinstance(x, sprocket.Document):
        return (x.dialect.name, sorted(_tree(i) for i in x.imports), _tree(x.structs), _tree(x.enums),
                _tree(x.tasks), _tree(x.workflow))
    if isinstance(x, sprocket.Node):
        return (type(x).__name__,) + tuple(_tree(getattr(x, f, None)) for f in x._fields)
    if isinstance(x, (list, tuple)):
        return tuple(_tree(i) for i in x)
    if isinstance(x, dict):
        return tuple(sorted((repr(k), _tree(v)) for k, v in x.items()))
    if isinstance(x, sprocket.Span):
        return None
    return str(x) if isinstance(x, sprocket.Type) else repr(x)


def _corpus():
    shared = shared_dir()
    if shared is None:
        return []
    return sorted(glob.glob(str(shared / "workflows" / "**" / "*.wdl"), recursive=True)
                  + glob.glob(str(shared / "realworld-more" / "**" / "*.wdl"), recursive=True)
                  + glob.glob(str(shared / "conformance" / "cases" / "**" / "*.wdl"), recursive=True))


@pytest.mark.slow
@pytest.mark.skipif(not _corpus(), reason="../shared (workflows/ and conformance/cases/) is not here")
def test_format_over_the_whole_corpus():
    """Idempotent, every comment kept, the same syntax tree, and it checks the same."""
    formatted = unparsable = 0
    problems = []
    for path in _corpus():
        source = sprocket.read_source(path)
        try:
            before = sprocket.Parser.for_source(source).document()
        except sprocket.WdlError:  # invalid on purpose (Cromwell's failure tests): format refuses it too
            with pytest.raises(sprocket.WdlError):
                sprocket.format_document(source)
            unparsable += 1
            continue
        text = sprocket.format_document(source)
        again = sprocket.Source(path, text)
        if sprocket.format_document(again) != text:
            problems.append((path, "formatting twice changes it"))
        elif _comments(again) != _comments(source):
            problems.append((path, "comments differ"))
        elif _tree(sprocket.Parser.for_source(again).document()) != _tree(before):
            problems.append((path, "the syntax tree differs"))
        formatted += 1
    assert not problems, problems[:10]
    assert formatted > 1000 and unparsable < 20, (formatted, unparsable)


@pytest.mark.slow
@pytest.mark.skipif(not _corpus(), reason="../shared (workflows/ and conformance/cases/) is not here")
def test_formatted_corpus_checks_the_same(tmp_path, monkeypatch):
    """The whole corpus, formatted into a copy of its tree, checks as the original does: the
    same exit status, errors and warnings (counted, per file, in-process; no network)."""
    import shutil

    shared = shared_dir()

    def no_network(url, under, span=None):
        raise sprocket.WdlError("no network in tests: %s" % url, span)

    monkeypatch.setattr(sprocket, "download", no_network)
    for part in ("workflows", "realworld-more", os.path.join("conformance", "cases")):
        shutil.copytree(str(shared / part), str(tmp_path / part), symlinks=True)
    pairs = []
    for path in _corpus():
        copy = tmp_path / os.path.relpath(path, str(shared))
        try:
            copy.write_text(sprocket.format_document(sprocket.read_source(str(copy))), encoding="utf-8")
        except sprocket.WdlError:
            continue
        pairs.append((path, str(copy)))

    def checked(path):
        sprocket._DOCUMENTS.clear()  # each file's imports checked afresh, so warnings are not shared
        loader = sprocket.Loader()
        try:
            loader.load(path, None, ())
        except RecursionError:
            return "too deep"
        return len(loader.errors), len(loader.warnings)

    differ = [(a, checked(a), checked(b)) for a, b in pairs if checked(a) != checked(b)]
    assert not differ, differ[:10]
    assert len(pairs) > 1000


@pytest.mark.slow
@pytest.mark.skipif(shared_dir() is None, reason="../shared (workflows/realworld/, realworld-more/) is not here")
@pytest.mark.slow
def test_lint_over_realworld_never_fails(monkeypatch):
    """Every production document that checks clean lints without an internal error, and each
    warning names a rule that `explain` knows."""
    def no_network(url, under, span=None):
        raise sprocket.WdlError("no network in tests: %s" % url, span)

    monkeypatch.setattr(sprocket, "download", no_network)
    linted = 0
    for path in sorted(glob.glob(str(shared_dir() / "workflows" / "realworld" / "**" / "*.wdl"), recursive=True)
                       + glob.glob(str(shared_dir() / "realworld-more" / "**" / "*.wdl"), recursive=True)):
        loader = sprocket.Loader()
        doc = loader.load(path, None, ())
        if doc is None:
            continue
        for w in sprocket.lint_filter(loader.warnings + sprocket.lint_document(doc), set()):
            assert w.rule is None or w.rule in sprocket.LINT_RULES, (path, w.rule)
        linted += 1
    assert linted > 1300


def test_format_indents_call_inputs_under_input_colon(tmp_path):
    (tmp_path / "calls.wdl").write_text("version 1.0\nworkflow w {\ncall t {\ninput:\na = 1,\nb = 2\n}\ncall t as u { input:\n"
                                        "a = 1\n}\n}\ntask t {\ninput {\nInt a\nInt b = 0\n}\ncommand <<< >>>\n}\n")
    proc = sprocket_cmd("format", "calls.wdl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("version 1.0\n\nworkflow w {\n    call t {\n        input:\n            a = 1,\n"
                                  "            b = 2\n    }\n    call t as u { input:\n        a = 1\n    }\n}\n"), proc.stdout


def test_check_and_lint_take_directories(tmp_path):
    write_files(tmp_path / "pipelines", {"a.wdl": doc("").rstrip("\n") + "\n", "deep/b.wdl": doc("task BadName {\n  command <<< >>>\n  runtime { container: \"u\" }\n}\n")})
    proc = sprocket_cmd("lint", "-s", "pipelines", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [(Path(m.group(1)).name, m.group(4)) for m in RULE_RE.finditer(proc.stderr) if m.group(4) == "SnakeCase"] == [
        ("b.wdl", "SnakeCase")], proc.stderr
    (tmp_path / "pipelines" / "c.wdl").write_text("version 1.1\nworkflow w { Int x = y }\n")
    proc = sprocket_cmd("check", "-s", "pipelines", cwd=tmp_path)
    assert proc.returncode == 1 and "c.wdl:2:22: error: unknown name `y`" in proc.stderr, proc.stderr
