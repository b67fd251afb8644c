"""Front end, semantics: name resolution, type checking, calls, imports, cycles, per version.

Each error case is checked for every version it applies to, and asserts exit 1, the line/column
of the offending construct and a fragment of the message.  Sources are written with the
placeholder ``VERSION``; positions are given as needles (see ``conftest.find_pos``; a ``^``
inside a needle marks the exact character).  A list of needles means "any of these positions".
"""

import json
import re

import pytest

from conftest import assert_diag, assert_ok, find_pos, norm, version_re

ALL = ("1.0", "1.1", "1.2", "1.3")
V11 = ("1.1", "1.2", "1.3")
V12 = ("1.2", "1.3")
V13 = ("1.3",)

DUPLICATE = ("duplicate", "already", "conflict", "redefin", "redeclar", "multiple", "more than once",
             "unique", "clash", "collide")
CYCLE = ("cycle", "cyclic", "circular")


def named(name):
    """A message naming ``name`` in backticks or quotes."""
    return re.compile(r"[`'\"]%s[`'\"]" % re.escape(name))


def word(w):
    """A message containing the WDL type or word ``w`` (e.g. `Int`, `Array[String]`)."""
    return re.compile(r"(?<![A-Za-z_])%s(?![A-Za-z0-9_])" % re.escape(w).replace(r"\ ", r"\s*"))


def unknown(name):
    return re.compile(r"(?i)unknown name [`'\"]%s[`'\"]" % re.escape(name))


class Case:
    """An error case. `strict`: a construct accepted for compatibility with a warning, and an
    error only under `check --strict`."""

    def __init__(self, versions, src, at, fragment=None, also=(), files=None, path=None, strict=False):
        self.strict = strict
        self.versions = versions
        self.src = src
        self.at = at if isinstance(at, (list, tuple)) else [at]
        self.fragment = fragment
        self.also = also
        self.files = files or {}
        self.path = path


def expand(cases):
    for cid, case in cases.items():
        for v in case.versions:
            yield pytest.param(case, v, id="%s-%s" % (cid, v))


def render(text, version):
    return norm(text).replace("VERSION", version)


def run_case(check_wdl, case, version):
    src = render(case.src, version)
    files = {name: render(body, version) for name, body in case.files.items()}
    if case.strict:
        lenient = check_wdl(src, files=files)
        assert lenient.returncode == 0 and "warning:" in lenient.stderr, lenient.stderr
    proc = check_wdl(src, files=files, args=("--strict",) if case.strict else ())
    if case.at == [None]:  # the position is the engine's choice
        lines = cols = None
    else:
        positions = []
        for needle in case.at:
            where = src
            if isinstance(needle, tuple):  # (file name, needle) for errors inside an import
                where, needle = files[needle[0]], needle[1]
            positions.append(find_pos(where, needle))
        lines = {p[0] for p in positions}
        cols = {p[1] for p in positions}
    assert_diag(proc, lines, cols, case.fragment, path=case.path, also=case.also)


TASK_T = """
task t {
  input {
    Int x
    String s = "a"
  }
  String priv = "p"
  command <<< echo ~{x} ~{s} ~{priv} >>>
  output {
    Int out = x
  }
}
"""

# --------------------------------------------------------------------------------------------
# Unknown names
# --------------------------------------------------------------------------------------------

NAMES = {
    "unknown-name-in-declaration": Case(ALL, """
version VERSION

workflow w {
  Int y = x + 1
}
""", "Int y = ^x", unknown("x")),
    "unknown-name-in-command-comment": Case(ALL, """
version VERSION

task bash_comment {
  # String greeting = "hello"
  command <<<
    # printf "~{greeting} John!"
  >>>
}
""", "~{^greeting}", unknown("greeting")),
    "unknown-name-dollar-placeholder-in-brace-command": Case(ALL, """
version VERSION

task bash_variables {
  input {
    String str
  }
  command {
    s=${str}
    printf $s
    printf ${s}
  }
}
""", "${^s}", unknown("s")),
    "unknown-name-in-task-output": Case(ALL, """
version VERSION

task t {
  command <<< >>>
  output {
    Int out = nope
  }
}
""", "= ^nope", unknown("nope")),
    "scatter-variable-outside-scatter": Case(ALL, """
version VERSION

workflow w {
  scatter (i in [1, 2]) {
    Int j = i
  }
  Int k = i + 0
}
""", "Int k = ^i", unknown("i")),
    "unknown-name-in-string-placeholder": Case(ALL, """
version VERSION

workflow w {
  String s = "value: ~{missing}"
}
""", "~{^missing}", unknown("missing")),
    "unknown-name-in-call-input-expression": Case(ALL, """
version VERSION

""" + TASK_T + """
workflow w {
  call t { input: x = undefined_thing }
}
""", "x = ^undefined_thing", unknown("undefined_thing")),
    "unknown-name-in-runtime": Case(("1.0", "1.1"), """
version VERSION

task t {
  command <<< >>>
  runtime {
    docker: image
  }
}
""", "docker: ^image", unknown("image")),
    "unknown-name-in-requirements": Case(V12, """
version VERSION

task t {
  command <<< >>>
  requirements {
    container: image
  }
}
""", "container: ^image", unknown("image")),
    "abbreviated-call-input-without-declaration": Case(V11, """
version VERSION

""" + TASK_T + """
workflow w {
  call t { input: x }
}
""", "input: ^x", unknown("x")),
    "task-input-refers-to-output": Case(ALL, """
version VERSION

task t {
  input {
    Int x = y
  }
  command <<< >>>
  output {
    Int y = 1
  }
}
""", "Int x = ^y", None),
}

# --------------------------------------------------------------------------------------------
# Declarations and coercions
# --------------------------------------------------------------------------------------------

TYPES = {
    "string-to-int": Case(ALL, """
version VERSION

workflow w {
  Int x = "a"
}
""", ["Int x = ^\"a\"", "Int ^x", "^Int x"], word("Int"), also=(word("String"),), strict=True),
    "int-to-string": Case(V11, """
version VERSION

workflow w {
  String s = 1
}
""", ["String s = ^1", "String ^s", "^String s"], word("String"), also=(word("Int"),), strict=True),
    "int-to-boolean": Case(ALL, """
version VERSION

workflow w {
  Boolean b = 1
}
""", ["Boolean b = ^1", "Boolean ^b", "^Boolean b"], word("Boolean"), also=(word("Int"),)),
    "float-to-int": Case(ALL, """
version VERSION

workflow w {
  Int i = 1.5
}
""", ["Int i = ^1.5", "Int ^i", "^Int i"], word("Int"), also=(word("Float"),)),
    "optional-to-required": Case(V11, """
version VERSION

workflow w {
  input {
    Int? y
  }
  Int x = y
}
""", ["Int x = ^y", "Int ^x =", "^Int x ="], word("Int?"), also=(word("Int"),)),
    "array-element-mismatch": Case(ALL, """
version VERSION

workflow w {
  Array[Int] xs = [true, false]
}
""", ["= ^[", "Array[Int] ^xs", "^Array[Int] xs"], word("Array[Int]"), also=(word("Boolean"),)),
    "map-value-mismatch": Case(ALL, """
version VERSION

workflow w {
  Map[String, Int] m = {"a": true}
}
""", ["= ^{", "] ^m =", "^Map["], word("Int"), also=(word("Boolean"),)),
    "pair-mismatch": Case(ALL, """
version VERSION

workflow w {
  Pair[Int, Int] p = (1, true)
}
""", ["= ^(", "] ^p =", "^Pair["], word("Int"), also=(word("Boolean"),)),
    "output-type-mismatch": Case(ALL, """
version VERSION

task t {
  command <<< >>>
  output {
    Boolean n = "many"
  }
}
""", ["Boolean n = ^\"many\"", "Boolean ^n", "^Boolean n"], word("Boolean"), also=(word("String"),)),
    "unknown-type": Case(ALL, """
version VERSION

workflow w {
  input {
    Foo x
  }
}
""", "^Foo x", "Foo"),
    "unknown-type-in-struct": Case(ALL, """
version VERSION

struct S {
  Bar b
}
""", "^Bar b", "Bar"),
    "duplicate-private-declaration": Case(ALL, """
version VERSION

workflow w {
  Int x = 1
  Int x = 2
}
""", ["Int ^x = 2", "^Int x = 2"], DUPLICATE),
    "duplicate-input": Case(ALL, """
version VERSION

workflow w {
  input {
    Int a
    String a
  }
}
""", ["String ^a", "^String a"], DUPLICATE),
    "input-and-private-declaration-clash": Case(ALL, """
version VERSION

workflow w {
  input {
    Int a
  }
  String a = "x"
}
""", ["String ^a", "^String a"], DUPLICATE),
    "duplicate-task-declaration": Case(ALL, """
version VERSION

task t {
  Int a = 1
  Int a = 2
  command <<< >>>
}
""", ["Int ^a = 2", "^Int a = 2"], DUPLICATE),
    "duplicate-task": Case(ALL, """
version VERSION

task t {
  command <<< >>>
}

task t {
  command <<< echo >>>
}
""", ["task ^t {\n  command <<< echo", "^task t {\n  command <<< echo"], DUPLICATE),
    "duplicate-struct": Case(ALL, """
version VERSION

struct S {
  Int a
}

struct S {
  String b
}
""", ["struct ^S {\n  String", "^struct S {\n  String"], DUPLICATE),
    "two-workflows": Case(ALL, """
version VERSION

workflow a {
}

workflow b {
}
""", ["workflow ^b", "^workflow b"], None),
    "private-declaration-without-value": Case(V11, """
version VERSION

workflow w {
  Int x
}
""", ["Int ^x", "^Int x"], None),
    "output-without-value": Case(ALL, """
version VERSION

workflow w {
  output {
    Int x
  }
}
""", ["Int ^x", "^Int x"], None),
    "conditional-declaration-is-optional-outside": Case(V11, """
version VERSION

workflow w {
  input {
    Boolean b = true
  }
  if (b) {
    Int j = 1
  }
  Int k = j
}
""", ["Int k = ^j", "Int ^k", "^Int k"], word("Int?"), also=(word("Int"),)),
    "scatter-declaration-is-array-outside": Case(ALL, """
version VERSION

workflow w {
  scatter (i in [1, 2]) {
    Int j = i
  }
  Int k = j
}
""", ["Int k = ^j", "Int ^k", "^Int k"], word("Array[Int]"), also=(word("Int"),)),
    "call-output-in-conditional-is-optional": Case(V11, """
version VERSION

""" + TASK_T + """
workflow w {
  input {
    Boolean b = true
  }
  if (b) {
    call t { input: x = 1 }
  }
  Int o = t.out
}
""", ["Int o = ^t.out", "Int o = t.^out", "Int ^o", "^Int o"], word("Int?"), also=(word("Int"),)),
}

# --------------------------------------------------------------------------------------------
# Expressions and operators
# --------------------------------------------------------------------------------------------

EXPRESSIONS = {
    "if-condition-not-boolean": Case(ALL, """
version VERSION

workflow w {
  if (1) {
    Int a = 1
  }
}
""", "if (^1)", word("Boolean"), also=(word("Int"),)),
    "scatter-over-non-array": Case(ALL, """
version VERSION

workflow w {
  scatter (i in 5) {
    Int j = i
  }
}
""", "in ^5", "Array", also=(word("Int"),)),
    "ternary-condition-not-boolean": Case(ALL, """
version VERSION

workflow w {
  Int x = if "yes" then 1 else 2
}
""", ["if ^\"yes\"", "= ^if"], word("Boolean"), also=(word("String"),)),
    "ternary-branches-without-common-type": Case(ALL, """
version VERSION

workflow w {
  Int x = if true then 1 else false
}
""", None, None),
    "index-array-with-string": Case(ALL, """
version VERSION

workflow w {
  Array[Int] xs = [1]
  Int y = xs[true]
}
""", None, None),
    "index-non-collection": Case(ALL, """
version VERSION

workflow w {
  Int x = 1
  Int y = x[0]
}
""", None, None),
    "int-minus-string": Case(ALL, """
version VERSION

workflow w {
  Int x = 1 - true
}
""", None, None),
    "logical-not-on-int": Case(ALL, """
version VERSION

workflow w {
  Boolean b = !1
}
""", ["!^1", "= ^!1"], None),
    "negate-boolean": Case(ALL, """
version VERSION

workflow w {
  Int n = -true
}
""", ["-^true", "= ^-true"], None),
    "not-binds-tighter-than-comparison": Case(ALL, """
version VERSION

workflow w {
  Boolean b = !1 > 2
}
""", ["!^1", "= ^!1", "!1 ^>"], None),
    "and-with-int": Case(ALL, """
version VERSION

workflow w {
  Boolean b = true && 1
}
""", None, None),
    "optional-in-arithmetic": Case(V12, """
version VERSION

workflow w {
  input {
    Int? y
  }
  Int z = y + 1
}
""", None, word("Int?")),
    "optional-array-to-length": Case(V12, """
version VERSION

workflow w {
  input {
    Array[Int]? xs
  }
  Int n = length(xs)
}
""", None, None),
    "member-of-int": Case(ALL, """
version VERSION

workflow w {
  Int x = 1
  Int y = x.foo
}
""", None, None),
    "pair-has-no-such-member": Case(ALL, """
version VERSION

workflow w {
  Pair[Int, Int] p = (1, 2)
  Int m = p.middle
}
""", None, "middle"),
}

# --------------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------------

CALLS = {
    "unknown-call-input": Case(ALL, """
version VERSION
""" + TASK_T + """
workflow w {
  call t { input: x = 1, nope = 2 }
}
""", "^nope =", "nope"),
    "missing-required-call-input": Case(V11, """
version VERSION
""" + TASK_T + """
workflow w {
  call t
}
""", ["call ^t\n", "^call t\n"], named("x"), strict=True),
    "missing-required-input-of-subworkflow": Case(V11, """
version VERSION

import "sub.wdl" as sub

workflow w {
  call sub.inner { input: b = 2 }
}
""", ["call ^sub.inner", "^call sub", "call sub.^inner"], named("a"), strict=True, files={"sub.wdl": """
version VERSION

workflow inner {
  input {
    Int a
    Int b = 1
  }
  output {
    Int c = a + b
  }
}
"""}),
    "call-input-type-mismatch": Case(ALL, """
version VERSION
""" + TASK_T + """
workflow w {
  call t { input: x = true }
}
""", ["x = ^true", "^x = true"], word("Int"), also=(word("Boolean"),)),
    "call-input-string-from-int": Case(V11, """
version VERSION
""" + TASK_T + """
workflow w {
  call t { input: x = 1, s = 2 }
}
""", ["s = ^2", "^s = 2"], word("String"), also=(word("Int"),), strict=True),
    "private-declaration-as-call-input": Case(V11, """
version VERSION
""" + TASK_T + """
workflow w {
  call t { input: x = 1, priv = "q" }
}
""", "^priv = \"q\"", "priv"),
    "call-unknown-task": Case(ALL, """
version VERSION

workflow w {
  call nope
}
""", ["call ^nope", "^call nope"], "nope"),
    "call-unknown-task-in-namespace": Case(ALL, """
version VERSION

import "lib.wdl" as lib

workflow w {
  call lib.nope
}
""", ["call ^lib.nope", "call lib.^nope", "^call lib"], "nope", files={"lib.wdl": """
version VERSION

task real {
  command <<< >>>
}
"""}),
    "call-unknown-namespace": Case(ALL, """
version VERSION

workflow w {
  call nolib.t
}
""", ["call ^nolib", "^call nolib"], "nolib"),
    "call-output-unknown": Case(ALL, """
version VERSION
""" + TASK_T + """
workflow w {
  call t { input: x = 1 }
  output {
    Int o = t.nope
  }
}
""", ["t.^nope", "= ^t.nope"], "nope"),
    "call-private-declaration-not-an-output": Case(V11, """
version VERSION
""" + TASK_T + """
workflow w {
  call t { input: x = 1 }
  output {
    String p = t.priv
  }
}
""", ["t.^priv", "= ^t.priv"], "priv"),
    "call-input-not-an-output": Case(ALL, """
version VERSION
""" + TASK_T + """
workflow w {
  call t { input: x = 1 }
  output {
    String p = t.s
  }
}
""", ["t.^s\n", "= ^t.s\n"], None),
    "duplicate-call-name": Case(ALL, """
version VERSION
""" + TASK_T + """
workflow w {
  call t { input: x = 1 }
  call t { input: x = 2 }
}
""", ["call ^t { input: x = 2", "^call t { input: x = 2"], DUPLICATE),
    "duplicate-call-alias": Case(ALL, """
version VERSION
""" + TASK_T + """
workflow w {
  call t as a { input: x = 1 }
  call t as a { input: x = 2 }
}
""", ["as ^a { input: x = 2", "^call t as a { input: x = 2", "call ^t as a { input: x = 2"], DUPLICATE),
    "call-name-clashes-with-declaration": Case(ALL, """
version VERSION
""" + TASK_T + """
workflow w {
  Int t = 1
  call t { input: x = 1 }
}
""", ["^call t", "call ^t", "Int ^t", "^Int t"], None),
    "after-unknown-call": Case(V12, """
version VERSION
""" + TASK_T + """
workflow w {
  call t after nope { x = 1 }
}
""", "after ^nope", "nope"),
    "nested-input-from-workflow": Case(V12, """
version VERSION

import "sub.wdl" as sub

workflow w {
  hints {
    allow_nested_inputs: true
  }
  call sub.inner { inner_task.x = 1 }
}
""", None, None, files={"sub.wdl": """
version VERSION

task inner_task {
  input {
    Int x = 0
  }
  command <<< >>>
}

workflow inner {
  call inner_task
}
"""}),
}

# --------------------------------------------------------------------------------------------
# Standard library: argument types and counts, unknown functions, version gating
# --------------------------------------------------------------------------------------------

FUNCTIONS = {
    "sub-with-int-argument": Case(V11, """
version VERSION

workflow w {
  Int i = 111222333
  String s = sub(i, "2", "4")
}
""", ["sub(^i", "= ^sub("], word("String"), also=(word("Int"),), strict=True),
    "floor-of-boolean": Case(ALL, """
version VERSION

workflow w {
  Int x = floor(true)
}
""", ["floor(^true", "= ^floor"], word("Boolean"), also=(word("Float"),)),
    "length-of-int": Case(ALL, """
version VERSION

workflow w {
  Int n = length(5)
}
""", ["length(^5", "= ^length"], "length"),
    "select-first-of-non-array": Case(ALL, """
version VERSION

workflow w {
  Int x = select_first(5)
}
""", ["select_first(^5", "= ^select_first"], "select_first"),
    "prefix-of-nested-array": Case(ALL, """
version VERSION

workflow w {
  Array[Array[String]] env3 = [["a", "b"], ["c", "d"]]
  Array[String] bad = prefix("-x ", env3)
}
""", ["env3)", "= ^prefix", "\"-x \", ^env3"], "prefix"),
    "too-many-arguments": Case(ALL, """
version VERSION

workflow w {
  Int x = floor(1.5, 2)
}
""", None, "floor"),
    "too-few-arguments": Case(ALL, """
version VERSION

workflow w {
  Array[Int] r = range()
}
""", None, "range"),
    "sub-with-two-arguments": Case(ALL, """
version VERSION

workflow w {
  String s = sub("a", "b")
}
""", None, "sub"),
    "unknown-function": Case(ALL, """
version VERSION

workflow w {
  Int x = frobnicate(1)
}
""", "= ^frobnicate", "frobnicate"),
    "function-result-type-mismatch": Case(ALL, """
version VERSION

workflow w {
  Boolean x = basename("a/b.txt")
}
""", ["= ^basename", "Boolean ^x", "^Boolean x"], word("Boolean"), also=(word("String"),)),
    "as-map-result-to-boolean": Case(V11, """
version VERSION

workflow w {
  Boolean bad = as_map([("a", 1), ("a", 2)])
}
""", ["= ^as_map", "Boolean ^bad", "^Boolean bad"], word("Boolean"), also=("Map",)),
    "defined-wrong-arity": Case(ALL, """
version VERSION

workflow w {
  Boolean b = defined()
}
""", None, "defined"),
}

GATED_FUNCTIONS = [
    # (function call source, document version, version that introduced it)
    ("min(1, 2)", "Int", "1.0", "1.1"),
    ("max(1, 2)", "Int", "1.0", "1.1"),
    ('sep(",", ["a"])', "String", "1.0", "1.1"),
    ('quote(["a"])', "Array[String]", "1.0", "1.1"),
    ('squote(["a"])', "Array[String]", "1.0", "1.1"),
    ('suffix(".x", ["a"])', "Array[String]", "1.0", "1.1"),
    ('keys({"a": 1})', "Array[String]", "1.0", "1.1"),
    ('as_pairs({"a": 1})', "Array[Pair[String, Int]]", "1.0", "1.1"),
    ('as_map([("a", 1)])', "Map[String, Int]", "1.0", "1.1"),
    ('collect_by_key([("a", 1)])', "Map[String, Array[Int]]", "1.0", "1.1"),
    ('unzip([(1, "a")])', "Pair[Array[Int], Array[String]]", "1.0", "1.1"),
    ("chunk([1, 2, 3], 2)", "Array[Array[Int]]", "1.1", "1.2"),
    ("contains([1, 2], 1)", "Boolean", "1.1", "1.2"),
    ('contains_key({"a": 1}, "a")', "Boolean", "1.1", "1.2"),
    ('values({"a": 1})', "Array[Int]", "1.1", "1.2"),
    ('find("abc", "b")', "String?", "1.1", "1.2"),
    ('matches("abc", "b")', "Boolean", "1.1", "1.2"),
    ('join_paths("/a", "b")', "File", "1.1", "1.2"),
    ('split("a,b", ",")', "Array[String]", "1.2", "1.3"),
    ('split("a,b", ",")', "Array[String]", "1.1", "1.3"),
    ("chunk([1], 1)", "Array[Array[Int]]", "1.0", "1.2"),
]


@pytest.mark.parametrize(
    "call, rtype, version, introduced",
    [pytest.param(*g, id="%s-in-%s" % (g[0].split("(")[0], g[2])) for g in GATED_FUNCTIONS])
def test_function_newer_than_document(check_wdl, call, rtype, version, introduced):
    """An error, except a 1.1 function in a 1.0 document: miniwdl has them, so that is a
    NewerFunctions warning, and an error only under --strict."""
    src = "version %s\n\nworkflow w {\n  %s r = %s\n}\n" % (version, rtype, call)
    line, col = find_pos(src, "= ^" + call.split("(")[0])
    if (version, introduced) == ("1.0", "1.1"):
        assert_warns_at(check_wdl(src), line, col, r"a WDL 1\.1 function")
        assert_diag(check_wdl(src, args=("--strict",)), line, col, version_re(introduced))
    else:
        assert_diag(check_wdl(src), line, col, version_re(introduced))


@pytest.mark.parametrize(
    "call, rtype, version",
    [pytest.param(c, r, v, id="%s-in-%s" % (c.split("(")[0], v))
     for c, r, v in sorted({(g[0], g[1], g[3]) for g in GATED_FUNCTIONS})])
def test_function_accepted_from_its_version(check_wdl, call, rtype, version):
    assert_ok(check_wdl("version %s\n\nworkflow w {\n  %s r = %s\n}\n" % (version, rtype, call)))


# --------------------------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------------------------

IMPORTS = {
    "missing-import": Case(ALL, """
version VERSION

import "missing.wdl"

workflow w {
}
""", ["^import \"missing", "import ^\"missing"], "missing.wdl"),
    "missing-import-in-imported-document": Case(ALL, """
version VERSION

import "a.wdl"

workflow w {
}
""", [("a.wdl", "^import \"gone"), ("a.wdl", "import ^\"gone")], "gone.wdl", path="a.wdl", files={
        "a.wdl": """
version VERSION

import "gone.wdl"

task t {
  command <<< >>>
}
"""}),
    "import-cycle": Case(ALL, """
version VERSION

import "a.wdl"

workflow w {
}
""", None, CYCLE, files={
        "a.wdl": """
version VERSION

import "b.wdl"

task ta {
  command <<< >>>
}
""",
        "b.wdl": """
version VERSION

import "a.wdl"

task tb {
  command <<< >>>
}
"""}),
    "self-import": Case(ALL, """
version VERSION

import "main.wdl" as me

workflow w {
}
""", ["^import", "import ^\""], CYCLE),
    "duplicate-namespace": Case(ALL, """
version VERSION

import "a.wdl" as lib
import "b.wdl" as lib

workflow w {
}
""", ["^import \"b.wdl\"", "as ^lib\n\nworkflow", "import ^\"b.wdl\""], "lib", files={
        "a.wdl": "version VERSION\n\ntask ta {\n  command <<< >>>\n}\n",
        "b.wdl": "version VERSION\n\ntask tb {\n  command <<< >>>\n}\n"}),
    "conflicting-imported-structs": Case(V11, """
version VERSION

import "a.wdl"
import "b.wdl"

workflow w {
}
""", None, named("S"), files={
        "a.wdl": "version VERSION\n\nstruct S {\n  Int x\n}\n",
        "b.wdl": "version VERSION\n\nstruct S {\n  String y\n}\n"}),
    "import-of-newer-version": Case(("1.2",), """
version VERSION

import "new.wdl"

workflow w {
}
""", ["^import", "import ^\"new"], "version", files={
        "new.wdl": "version 1.3\n\ntask t {\n  command <<< >>>\n}\n"}),
}

# --------------------------------------------------------------------------------------------
# Structs and member access
# --------------------------------------------------------------------------------------------

PERSON = """
struct Person {
  String name
  Int age
  String? nickname
}
"""

STRUCTS = {
    "unknown-struct-member": Case(ALL, """
version VERSION
""" + PERSON + """
workflow w {
  input {
    Person p
  }
  String n = p.nope
}
""", ["p.^nope", "= ^p.nope"], "nope"),
    "unknown-member-on-imported-struct": Case(V11, """
version VERSION

import "member_access.wdl"

workflow illegal_access {
  input {
    MyType my
  }
  Int i = my.x
}
""", ["my.^x", "= ^my.x"], named("x"), files={"member_access.wdl": """
version VERSION

struct MyType {
  String s
}

task foo {
  command <<< >>>
}
"""}),
    "struct-literal-missing-member": Case(V11, """
version VERSION
""" + PERSON + """
workflow w {
  Person p = Person { name: "a" }
}
""", ["= ^Person {", "= Person ^{"], "age"),
    "struct-literal-unknown-member": Case(V11, """
version VERSION
""" + PERSON + """
workflow w {
  Person p = Person { name: "a", age: 1, height: 2 }
}
""", ["^height:", "= ^Person {"], "height"),
    "struct-literal-member-type": Case(V11, """
version VERSION
""" + PERSON + """
workflow w {
  Person p = Person { name: 1, age: 1 }
}
""", ["name: ^1", "^name: 1", "= ^Person {"], word("String"), also=(word("Int"),), strict=True),
    "struct-literal-of-unknown-struct": Case(V11, """
version VERSION

workflow w {
  Int x = Nope { a: 1 }
}
""", "= ^Nope", "Nope"),
    "struct-assigned-to-wrong-struct": Case(V11, """
version VERSION
""" + PERSON + """
struct Pet {
  String species
}

workflow w {
  Person p = Person { name: "a", age: 1 }
  Pet q = p
}
""", ["Pet q = ^p", "Pet ^q", "^Pet q"], "Pet", also=("Person",)),
}

# --------------------------------------------------------------------------------------------
# Dependency cycles
# --------------------------------------------------------------------------------------------

CYCLES = {
    "two-declarations": Case(ALL, """
version VERSION

workflow circular {
  Int i = j + 1
  Int j = i - 2
}
""", ["Int ^i", "^Int i", "Int ^j", "^Int j", "= ^j + 1", "= ^i - 2"], CYCLE),
    "self-reference": Case(ALL, """
version VERSION

workflow w {
  Int a = a + 1
}
""", ["Int ^a", "^Int a", "= ^a + 1"], CYCLE),
    "through-a-call": Case(ALL, """
version VERSION

task mytask {
  input {
    Int inp
  }
  command <<< >>>
  output {
    Int out = inp * 2
  }
}

workflow cyclic {
  input {
    Int i = j + 1
  }
  Int j = mytask.out - 2
  call mytask { input: inp = i }
}
""", None, CYCLE),
    "between-scatters": Case(ALL, """
version VERSION

workflow my_workflow {
  input {
    Array[Int] as_
    Array[Int] bs
  }
  scatter (a in as_) {
    Int x_a = a
    Array[Int] y_a = y_b
  }
  scatter (b in bs) {
    Array[Int] x_b = x_a
    Int y_b = b + length(x_b)
  }
}
""", None, CYCLE),
    "in-task": Case(ALL, """
version VERSION

task t {
  Int a = b
  Int b = a
  command <<< >>>
}
""", None, CYCLE),
}

# --------------------------------------------------------------------------------------------
# Task sections
# --------------------------------------------------------------------------------------------

SECTIONS = {
    "task-without-command": Case(ALL, """
version VERSION

task t {
  input {
    Int x
  }
}
""", ["task ^t", "^task t"], "command"),
    "two-command-sections": Case(ALL, """
version VERSION

task t {
  command <<< echo a >>>
  command <<< echo b >>>
}
""", "^command <<< echo b", None),
    "two-input-sections": Case(ALL, """
version VERSION

task t {
  input {
    Int a
  }
  input {
    Int b
  }
  command <<< >>>
}
""", None, None),
    "two-output-sections": Case(ALL, """
version VERSION

workflow w {
  output {
    Int a = 1
  }
  output {
    Int b = 2
  }
}
""", None, None),
    "unknown-requirements-key": Case(V12, """
version VERSION

task t {
  command <<< >>>
  requirements {
    cpu: 1
    favourite_colour: "blue"
  }
}
""", "^favourite_colour", "favourite_colour"),
    "requirements-value-of-wrong-type": Case(V12, """
version VERSION

task t {
  command <<< >>>
  requirements {
    cpu: true
  }
}
""", ["cpu: ^true", "^cpu: true"], None),
    "runtime-with-requirements": Case(V12, """
version VERSION

task t {
  command <<< >>>
  requirements {
    cpu: 1
  }
  runtime {
    cpu: 1
  }
}
""", ["^runtime", "^requirements"], None),
    "runtime-with-hints": Case(V12, """
version VERSION

task t {
  command <<< >>>
  runtime {
    cpu: 1
  }
  hints {
    short_task: true
  }
}
""", ["^runtime", "^hints"], None),
    "workflow-hint-with-expression": Case(V12, """
version VERSION

workflow w {
  input {
    Boolean b = true
  }
  hints {
    allow_nested_inputs: b
  }
}
""", ["allow_nested_inputs: ^b", "^allow_nested_inputs"], None),
}

# --------------------------------------------------------------------------------------------
# WDL 1.3: enums and else-if
# --------------------------------------------------------------------------------------------

COLOR = """
enum Color {
  Red,
  Green,
  Blue
}
"""

ENUMS = {
    "enum-without-common-type": Case(V13, """
version VERSION

enum InvalidEnum {
  Number = 42,
  Text = "hello"
}
""", None, None),
    "enum-computed-value": Case(V13, """
version VERSION

enum Bad1 {
  Two = 1 + 1
}
""", None, None),
    "enum-interpolated-value": Case(V13, """
version VERSION

enum Bad2 {
  Greeting = "Hello ~{world}"
}
""", None, None),
    "enum-function-call-value": Case(V13, """
version VERSION

enum Bad3 {
  Three = length([1, 2, 3])
}
""", None, None),
    "typed-enum-value-does-not-coerce": Case(V13, """
version VERSION

enum Bad[Int] {
  First = "one"
}
""", None, None),
    "enum-mixed-values-need-all-explicit": Case(V13, """
version VERSION

enum E {
  A = 1,
  B
}
""", None, None),
    "enum-duplicate-choice": Case(V13, """
version VERSION

enum E {
  A,
  A
}
""", None, None),
    "enum-struct-name-clash": Case(V13, """
version VERSION

struct Color {
  Int x
}
""" + COLOR, None, None),
    "enum-unknown-choice": Case(V13, """
version VERSION
""" + COLOR + """
workflow w {
  Color c = Color.Purple
}
""", ["Color.^Purple", "= ^Color.Purple"], "Purple"),
    "enum-ordering": Case(V13, """
version VERSION
""" + COLOR + """
workflow w {
  Boolean b = Color.Red < Color.Green
}
""", None, None),
    "enum-from-int": Case(V13, """
version VERSION
""" + COLOR + """
workflow w {
  Color c = 1
}
""", None, "Color"),
    "value-of-non-enum": Case(V13, """
version VERSION

workflow w {
  Int v = value(1)
}
""", None, "value"),
    "two-else-clauses": Case(V13, """
version VERSION

workflow w {
  if (true) {
    Int a = 1
  } else {
    Int b = 2
  } else {
    Int c = 3
  }
}
""", "^else {\n    Int c", None),
    "else-if-after-else": Case(V13, """
version VERSION

workflow w {
  input {
    Int n = 1
  }
  if (n > 2) {
    Int a = 1
  } else {
    Int b = 2
  } else if (n > 1) {
    Int c = 3
  }
}
""", "^else if", None),
    "else-if-condition-not-boolean": Case(V13, """
version VERSION

workflow w {
  if (true) {
    Int a = 1
  } else if (2) {
    Int b = 2
  }
}
""", "else if (^2)", word("Boolean"), also=(word("Int"),)),
    "else-clause-types-without-common-type": Case(V13, """
version VERSION

workflow w {
  input {
    Boolean b = true
  }
  if (b) {
    String bad = "foo"
  } else {
    Int bad = 1
  }
}
""", None, None),
}

ALL_ERRORS = {}
for group in (NAMES, TYPES, EXPRESSIONS, CALLS, FUNCTIONS, IMPORTS, STRUCTS, CYCLES, SECTIONS, ENUMS):
    for key, value in group.items():
        assert key not in ALL_ERRORS, key
        ALL_ERRORS[key] = value


@pytest.mark.parametrize("case, version", list(expand(ALL_ERRORS)))
def test_error(check_wdl, case, version):
    run_case(check_wdl, case, version)


# --------------------------------------------------------------------------------------------
# Valid programs: the type rules that must be accepted.
# --------------------------------------------------------------------------------------------

class Valid:
    def __init__(self, versions, src, files=None):
        self.versions = versions
        self.src = src
        self.files = files or {}


VALID = {
    "forward-references": Valid(ALL, """
version VERSION

workflow w {
  Int a = b + 1
  Int b = c * 2
  Int c = 3
  output {
    Int total = a + d
  }
  Int d = a
}
"""),
    "input-default-from-call-output": Valid(ALL, """
version VERSION

task double {
  input {
    Int int_in
  }
  command <<< >>>
  output {
    Int out = int_in * 2
  }
}

workflow input_ref_call {
  input {
    Int x
    Int y = d1.out
  }
  call double as d1 { input: int_in = x }
  call double as d2 { input: int_in = y }
  output {
    Int result = d2.out
  }
}
"""),
    "task-outputs-reference-each-other": Valid(ALL, """
version VERSION

task t {
  input {
    Int x = 1
  }
  Int y = x + 1
  command <<< echo ~{y} >>>
  output {
    Int a = b + 1
    Int b = y * 2
    String s = "~{a}"
  }
}
"""),
    "primitive-coercions": Valid(ALL, """
version VERSION

workflow w {
  Float f = 1
  File file = "a.txt"
  Int? maybe = 5
  Array[Float] floats = [1, 2.5]
  Array[Int?] holes = [1]
  Map[String, Float] m = {"a": 1}
  Pair[Float, File] p = (1, "f.txt")
  Array[Array[Float]] nested = [[1], [2, 3]]
  Array[Int]+ nonempty = [1]
  Array[Int] plain = nonempty
  Array[Int] empty = []
  Map[String, Int] empty_map = {}
  Float sum = 1 + 2.5
  Boolean cmp = 1 < 2.5
}
"""),
    "optional-idioms": Valid(V11, """
version VERSION

workflow w {
  input {
    Int? maybe
    Int i = 1
    String? label
  }
  Int certain = select_first([maybe, 0])
  Boolean d = defined(maybe)
  Boolean eq1 = i == maybe
  Boolean eq2 = maybe == None
  Boolean ne = maybe != i
  String interp = "value=~{maybe} label=~{label}"
  String concat = "~{"--label " + label}"
  Array[Int] present = select_all([maybe, i])
  Int? passthrough = maybe
}
"""),
    "string-interpolation-of-any-primitive": Valid(ALL, """
version VERSION

workflow w {
  input {
    Int i = 1
    Float f = 1.5
    Boolean b = true
    File file = "x.txt"
  }
  String s = "~{i} ~{f} ~{b} ~{file} ~{i + f}"
  File derived = "~{file}.bai"
}
"""),
    "operator-precedence-type-checks": Valid(ALL, """
version VERSION

workflow w {
  Boolean a = true && 1 < 2
  Boolean b = 1 + 2 * 3 == 7
  Boolean c = 1 < 2 == 2 > 1
  Boolean d = !false || 1 + 1 == 3 && false
  Int e = -1 * -2 + 3 % 2
  Boolean f = [1, 2][0] + 1 == 2
}
"""),
    "missing-required-call-input-is-a-workflow-input-in-1.0": Valid(("1.0",), """
version VERSION

task t {
  input {
    Int x
  }
  command <<< echo ~{x} >>>
}

workflow w {
  call t
}
"""),
    "allow-nested-inputs-meta-in-1.1": Valid(("1.1",), """
version VERSION

task t {
  input {
    Int x
  }
  command <<< echo ~{x} >>>
}

workflow w {
  meta {
    allowNestedInputs: true
  }
  call t
}
"""),
    "call-input-coercions": Valid(ALL, """
version VERSION

task t {
  input {
    Float f
    File file
    Array[Float] xs
    Int? maybe
  }
  command <<< >>>
}

workflow w {
  call t { input: f = 1, file = "a.txt", xs = [1, 2], maybe = 3 }
}
"""),
    "optional-call-inputs-may-be-omitted": Valid(ALL, """
version VERSION

task t {
  input {
    Int x = 1
    String? s
  }
  command <<< >>>
  output {
    Int out = x
  }
}

workflow w {
  call t
  call t as t2 { input: x = 2 }
  output {
    Int a = t.out
    Int b = t2.out
  }
}
"""),
    "scatter-and-conditional-gather-types": Valid(ALL, """
version VERSION

task t {
  input {
    Int x
  }
  command <<< >>>
  output {
    Int out = x
  }
}

workflow w {
  input {
    Array[Int] xs = [1, 2, 3]
    Boolean go = true
  }
  scatter (x in xs) {
    call t { input: x = x }
    Int sq = x * x
    if (x > 1) {
      Int big = x
    }
  }
  if (go) {
    call t as single { input: x = 1 }
    Int inner = 5
  }
  output {
    Array[Int] outs = t.out
    Array[Int] squares = sq
    Array[Int?] bigs = big
    Int? maybe_single = single.out
    Int? maybe_inner = inner
    Array[Int] only_big = select_all(big)
  }
}
"""),
    "object-literal-to-struct": Valid(("1.0", "1.1"), """
version VERSION

struct RuntimeAttributes {
  String backend
  Int preemptible_tries
}

workflow w {
  RuntimeAttributes attrs = object {
    backend: "HPC",
    preemptible_tries: 0
  }
  output {
    String b = attrs.backend
  }
}
"""),
    "map-to-struct-and-back": Valid(V11, """
version VERSION

struct Words {
  Int a
  Int b
}

workflow w {
  Words words = {"a": 1, "b": 2}
  Map[String, Int] back = words
  output {
    Int a = words.a
  }
}
"""),
    "struct-to-struct": Valid(V12, """
version VERSION

struct A {
  String s
}

struct C {
  String s
}

workflow w {
  A a = A { s: "x" }
  C c = a
}
"""),
    "identical-structs-from-two-imports": Valid(ALL, """
version VERSION

import "a.wdl"
import "b.wdl"

workflow w {
  input {
    S s
  }
  call a.ta { input: s = s }
  call b.tb { input: s = s }
}
""", files={
        "a.wdl": "version VERSION\n\nstruct S {\n  Int x\n}\n\ntask ta {\n  input {\n    S s\n  }\n  command <<< >>>\n}\n",
        "b.wdl": "version VERSION\n\nstruct S {\n  Int x\n}\n\ntask tb {\n  input {\n    S s\n  }\n  command <<< >>>\n}\n"}),
    "conflicting-structs-resolved-by-alias": Valid(ALL, """
version VERSION

import "a.wdl" alias S as SA
import "b.wdl" alias S as SB

workflow w {
  input {
    SA one
    SB two
  }
  output {
    Int x = one.x
    String y = two.y
  }
}
""", files={
        "a.wdl": "version VERSION\n\nstruct S {\n  Int x\n}\n",
        "b.wdl": "version VERSION\n\nstruct S {\n  String y\n}\n"}),
    "subworkflow-call": Valid(ALL, """
version VERSION

import "sub.wdl" as sub

workflow outer {
  input {
    Int n = 2
  }
  call sub.inner { input: a = n }
  output {
    Int c = inner.c
  }
}
""", files={"sub.wdl": """
version VERSION

workflow inner {
  input {
    Int a
    Int b = 1
  }
  output {
    Int c = a + b
  }
}
"""}),
    "imports-in-subdirectories": Valid(ALL, """
version VERSION

import "lib/tasks.wdl" as tasks

workflow w {
  input {
    S s
  }
  call tasks.t { input: s = s }
}
""", files={
        "lib/tasks.wdl": """
version VERSION

import "../common/structs.wdl"

task t {
  input {
    S s
  }
  command <<< echo ~{s.x} >>>
}
""",
        "common/structs.wdl": "version VERSION\n\nstruct S {\n  Int x\n}\n"}),
    "length-of-string-and-map": Valid(V12, """
version VERSION

workflow w {
  Int a = length("abc")
  Int b = length({"a": 1})
  Int c = length([1, 2])
}
"""),
    "task-variable-in-command-and-output": Valid(V12, """
version VERSION

task t {
  command <<<
    echo ~{task.name} ~{task.cpu} ~{task.memory} ~{task.attempt}
  >>>
  output {
    Int? rc = task.return_code
    Float cpus = task.cpu
  }
}
"""),
    "enum-collections-and-equality": Valid(V13, """
version VERSION

enum Color {
  Red,
  Green
}

workflow w {
  input {
    Color c = Color.Red
  }
  Boolean is_red = c == Color.Red
  Array[Color] all = [Color.Red, Color.Green]
  Map[String, Color] by_name = {"r": Color.Red}
}
"""),
    "exhaustive-conditional-exposes-non-optional": Valid(V13, """
version VERSION

task greet {
  input {
    String time
  }
  command <<< printf "Good ~{time}" >>>
  output {
    String greeting = read_string(stdout())
  }
}

workflow if_else {
  input {
    Boolean is_morning = false
  }
  if (is_morning) {
    call greet { input: time = "morning" }
    String always = "a"
  } else {
    call greet { input: time = "afternoon" }
    String always = "b"
  }
  output {
    String greeting = greet.greeting
    String a = always
  }
}
"""),
}


@pytest.mark.parametrize("valid, version", [
    pytest.param(v, ver, id="%s-%s" % (k, ver)) for k, v in VALID.items() for ver in v.versions])
def test_valid(check_wdl, valid, version):
    files = {name: render(body, version) for name, body in valid.files.items()}
    assert_ok(check_wdl(render(valid.src, version), files=files))


# --------------------------------------------------------------------------------------------
# Whole-document behaviour
# --------------------------------------------------------------------------------------------

def test_error_lists_every_independent_error(check_wdl):
    """Independent errors in one document are all reported (not only the first)."""
    src = """
version 1.1

workflow w {
  Int a = missing_one
  Int b = 2
  Int c = missing_two
}
"""
    proc = check_wdl(src)
    text = norm(src)
    assert_diag(proc, *find_pos(text, "= ^missing_one"), unknown("missing_one"))
    assert_diag(proc, *find_pos(text, "= ^missing_two"), unknown("missing_two"))


def test_error_only_in_unused_task_still_fails(check_wdl):
    src = """
version 1.1

task unused {
  command <<< echo ~{nothing} >>>
}

workflow w {
}
"""
    assert_diag(check_wdl(src), *find_pos(norm(src), "~{^nothing}"), unknown("nothing"))


def test_valid_import_is_checked_once_per_document(wdl, check):
    """The same library imported by two documents: checking both together stays clean."""
    wdl("version 1.1\n\ntask lt {\n  command <<< >>>\n  output {\n    Int o = 1\n  }\n}\n", "lib.wdl")
    a = wdl("version 1.1\n\nimport \"lib.wdl\"\n\nworkflow a {\n  call lib.lt\n}\n", "a.wdl")
    b = wdl("version 1.1\n\nimport \"lib.wdl\" as l\n\nworkflow b {\n  call l.lt\n}\n", "b.wdl")
    assert_ok(check(a, b))


def test_unknown_name_message_format(check_wdl):
    """The exact shape promised to users: unknown name `x`."""
    proc = check_wdl("version 1.2\n\nworkflow w {\n  Int y = xyz\n}\n")
    assert_diag(proc, 4, 11, "unknown name `xyz`")


# ============================================================================================
# Compatibility warnings (accepted with `path:line:col: warning:`, exit 0; an error under
# `check --strict`), import version rules, struct values from map and object literals, and
# draft-2 declarations.
# ============================================================================================

from conftest import diagnostics  # noqa: E402


def assert_warns_at(proc, line, col, fragment=None):
    """Exit 0, no error, and a warning at LINE:COL (whose message holds ``fragment``), followed by
    the source line and a caret."""
    assert proc.returncode == 0, proc.stderr
    assert not diagnostics(proc.stderr), proc.stderr
    lines = proc.stderr.splitlines()
    for _p, wl, wc, msg, idx in diagnostics(proc.stderr, "warning"):
        if (wl, wc) == (line, col) and (fragment is None or re.search(fragment, msg, re.I)):
            assert any("^" in x for x in lines[idx + 1: idx + 4]), "\n".join(lines[idx: idx + 4])
            return msg
    raise AssertionError("no warning at %d:%d matching %r:\n%s" % (line, col, fragment, proc.stderr))


PAIR_PERSON = """
struct P {
  String name
  Int age
}
"""

COMPAT = {
    # id: (source, needle of the warning's position, message fragment)
    "draft2-string-to-int": ("""
workflow w {
  Int n = "5"
}
""", 'Int n = ^"5"', r"`n`.*Int.*String"),
    "1.0-string-to-float": ("""
version 1.0

workflow w {
  Float f = "1.5"
}
""", 'Float f = ^"1.5"', r"`f`.*Float.*String"),
    "1.1-sep-on-non-array": ("""
version 1.1

workflow w {
  Int k = 3
  String j = "~{sep=' ' k}"
}
""", "sep=' ' ^k", r"sep"),
    "1.0-map-in-placeholder": ("""
version 1.0

workflow w {
  Map[String, Int] m = {"a": 1}
  String p = "~{m}"
}
""", "~{^m}", r"Map"),
    "1.1-pair-in-placeholder": ("""
version 1.1

workflow w {
  Pair[Int, String] pr = (1, "a")
  String p = "~{pr}"
}
""", "~{^pr}", r"Pair"),
    "1.1-struct-in-placeholder": ("""
version 1.1
""" + PAIR_PERSON + """
workflow w {
  P x = P { name: "a", age: 1 }
  String p = "~{x}"
}
""", "~{^x}", r"struct|`P`|JSON"),
    "1.0-workflow-named-like-task": ("""
version 1.0

task same {
  command <<< >>>
}

workflow same {
  call same as s
}
""", "^workflow same", r"same"),
    "1.1-double-optional": ("""
version 1.1

workflow w {
  input {
    File?? f
  }
}
""", "File?^? f", r"File\?\?"),
    "1.0-map-as-array-of-pairs": ("""
version 1.0

workflow w {
  Map[String, Int] m = {"a": 1}
  Array[Pair[String, Int]] ps = m
}
""", "ps = ^m", r"Map.*Pair|Pair.*Map"),
    "1.1-map-member-access": ("""
version 1.1

workflow w {
  Map[String, Int] m = {"a": 1}
  Int a = m.a
}
""", "m^.a", r"Map"),
    "1.1-struct-indexed-with-string": ("""
version 1.1
""" + PAIR_PERSON + """
workflow w {
  P x = P { name: "a", age: 1 }
  String n = x["name"]
}
""", 'x^["name"]', r"struct|index"),
    # issue 16: what production WDL does that the spec does not allow
    "1.0-newer-function-sep": ("""
version 1.0

workflow w {
  Array[String] a = ["x", "y"]
  String s = sep(",", a)
}
""", "= ^sep(", r"`sep`.*WDL 1\.1"),
    "1.0-round-of-string-map-value": ("""
version 1.0

workflow w {
  Map[String, String] m = {"k": "1.5"}
  Int r = round(m["k"])
}
""", "= ^round(", r"`round`.*String.*number"),
    "1.1-struct-literal-quoted-member-names": ("""
version 1.1
""" + PAIR_PERSON + """
workflow w {
  P x = P { "name": "a", age: 1 }
}
""", 'P { ^"name"', r"`name` in quotes"),
    "1.0-select-first-of-value-and-empty-array": ("""
version 1.0

workflow w {
  input {
    File? x
  }
  Float s = size(select_first([x, []]))
}
""", "select_first(^[x, []]", r"`Array\[Any\]`.*`File\?`"),
    "1.0-select-first-of-array-and-value": ("""
version 1.0

workflow w {
  input {
    Array[File]? files
    File file
  }
  Array[File] fs = select_first([files, file])
}
""", "select_first(^[files", r"one-item array"),
    "1.1-if-branches-optional-int-and-string": ("""
version 1.1

workflow w {
  input {
    Int? i
    Boolean c = true
  }
  String? s = if c then i else "x"
}
""", "= ^if c", r"`Int\?` and `String`"),
    "1.1-string-plus-optional-boolean-in-placeholder": ("""
version 1.1

workflow w {
  input {
    Boolean? b
  }
  String s = "run ~{"--x " + b}"
}
""", '"--x " ^+ b', r"Boolean"),
    "1.0-declaration-without-value-outside-input": ("""
version 1.0

workflow w {
  input {
    Int a = 1
  }
  Int n
  Int m = n + a
}
""", "^Int n", r"`n`.*taken as an input"),
    "1.1-call-leaves-required-inputs-unbound": ("""
version 1.1

task t {
  input {
    Int a
    String b
    Int c = 1
  }
  command <<< >>>
}

workflow w {
  call t
}
""", "^call t", r"`a`, `b` unbound.*`w\.t\.<input>`"),
    "1.0-call-input-given-twice": ("""
version 1.0

task t {
  input {
    Int a
  }
  command <<< >>>
}

workflow w {
  call t { input: a = 1, a = 2 }
}
""", "a = 1, ^a = 2", r"`a` is given twice.*last one counts"),
}


@pytest.mark.parametrize("cid", sorted(COMPAT))
def test_compat_construct_warns_and_is_an_error_under_strict(check_wdl, cid):
    """Each compatibility construct: accepted with a warning at its position (exit 0); under
    `check --strict` an error at the same place (exit 1)."""
    src, needle, fragment = COMPAT[cid]
    text = norm(src)
    line, col = find_pos(text, needle)
    # Member access may be anchored at the `.`, the member, or the start of the expression.
    accept = {(line, col)}
    if cid == "1.1-map-member-access":
        accept |= {find_pos(text, "= ^m.a"), find_pos(text, "m.^a")}
    if cid == "1.1-struct-indexed-with-string":
        accept |= {find_pos(text, '= ^x["name"]'), find_pos(text, 'x[^"name"]')}
    proc = check_wdl(src)
    warned = {(w[1], w[2]) for w in diagnostics(proc.stderr, "warning")}
    hit = sorted(accept & warned)
    assert hit, "no warning at %s:\n%s" % (sorted(accept), proc.stderr)
    assert_warns_at(proc, hit[0][0], hit[0][1], fragment)
    strict = check_wdl(src, args=("--strict",))
    assert_diag(strict, {p[0] for p in accept}, {p[1] for p in accept})


def test_namespace_shared_with_a_structs_only_import_warns(check_wdl):
    """`import "tasks/cutadapt.wdl"` beside `import "structs/cutadapt.wdl"` (ENCODE's DNase-seq
    pipeline): two imports named `cutadapt`, one holding only structs. Cromwell accepts it: the
    namespace is the one with tasks, the structs are imported as usual. Warned (SharedNamespace);
    an error under --strict, and always when both hold tasks."""
    files = {"tasks/cutadapt.wdl": "version 1.0\n\ntask cutadapt {\n  input {\n    Reads r\n  }\n"
                                   "  command <<< >>>\n}\n\nstruct Reads {\n  String name\n}\n",
             "structs/cutadapt.wdl": "version 1.0\n\nstruct Reads {\n  String name\n}\n"}
    src = ('version 1.0\n\nimport "tasks/cutadapt.wdl"\nimport "structs/cutadapt.wdl"\n\nworkflow w {\n'
           '  input {\n    Reads r\n  }\n  call cutadapt.cutadapt { input: r = r }\n}\n')
    assert_warns_at(check_wdl(src, files=files), 4, 1, r"namespace `cutadapt` is imported twice")
    assert_diag(check_wdl(src, files=files, args=("--strict",)), 4, 1, "namespace `cutadapt` is already imported")
    both = {"structs2/cutadapt.wdl": files["structs/cutadapt.wdl"] + "\ntask other {\n  command <<< >>>\n}\n"}
    assert_diag(check_wdl(src.replace("structs/", "structs2/"), name="main2.wdl", files=both), 4, 1,
                "namespace `cutadapt` is already imported")


@pytest.mark.parametrize("arg", ["Array[Array[File?]+]+", "Array[Array[File?]]", "Array[Array[Int]+]"])
def test_generic_function_given_nonempty_arrays_of_optionals(check_wdl, arg):
    """`flatten` of `Array[Array[File?]+]+` (GATK-SV): a type variable binds an optional item type
    inside an array, and `+` arrays are arrays. Spec-valid, so no warning, also under --strict."""
    item = arg[len("Array[Array["):].split("]")[0]
    src = "version 1.1\n\nworkflow w {\n  input {\n    %s a\n  }\n  Array[%s] f = flatten(a)\n}\n" % (arg, item)
    proc = check_wdl(src, args=("--strict",))
    assert_ok(proc)
    assert not diagnostics(proc.stderr, "warning"), proc.stderr


def test_generic_function_still_refuses_optional_where_a_value_is_required(check_wdl):
    """The binding above is for items: `prefix` needs primitive items, not `String?` ones."""
    src = 'version 1.1\n\nworkflow w {\n  input {\n    Array[String?] a\n  }\n  Array[String] p = prefix("-", a)\n}\n'
    assert_diag(check_wdl(src), 7, 21, "function `prefix` cannot take")


def test_int_given_for_string_is_silent_in_1_0(check_wdl):
    """1.0 converts Int/Float/Boolean to String natively: no warning, and fine under --strict
    (from 1.1 it warns; see `int-to-string` above)."""
    src = 'version 1.0\n\nworkflow w {\n  String s = 1\n  String f = 1.5\n  String b = true\n}\n'
    proc = check_wdl(src)
    assert_ok(proc)
    assert not diagnostics(proc.stderr, "warning"), proc.stderr
    assert_ok(check_wdl(src, args=("--strict",)))


@pytest.mark.parametrize("version", ["1.1", "1.2", "1.3"])
def test_primitive_given_for_string_warns_from_1_1(check_wdl, version):
    """Float and Boolean (as well as Int) given where a String is declared warn from 1.1."""
    src = 'version %s\n\nworkflow w {\n  String f = 1.5\n  String b = true\n}\n' % version
    proc = check_wdl(src)
    assert_warns_at(proc, *find_pos(src, "f = ^1.5"))
    assert_warns_at(proc, *find_pos(src, "b = ^true"))


LIB_10 = 'version 1.0\n\ntask lt {\n  command <<< echo hi >>>\n  output {\n    String o = "x"\n  }\n}\n'


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_importing_a_lower_minor_version_warns_in_1_1_and_1_2_even_strict(check_wdl, version):
    """A 1.1/1.2 document importing a 1.0 one: a warning at the import naming both versions; Sprocket
    accepts it (the same major version, a lower minor one), so --strict accepts it too."""
    src = 'version %s\n\nimport "lib.wdl" as lib\n\nworkflow w {\n  call lib.lt\n}\n' % version
    line, col = find_pos(src, "^import")
    msg = assert_warns_at(check_wdl(src, files={"lib.wdl": LIB_10}), line, col)
    assert version_re("1.0").search(msg) and version_re(version).search(msg), msg
    assert_warns_at(check_wdl(src, files={"lib.wdl": LIB_10}, args=("--strict",)), line, col)


@pytest.mark.parametrize("older", ["1.0", "1.1", "1.2"])
def test_1_3_importing_an_older_document_is_silent(check_wdl, older):
    """WDL 1.3 allows importing earlier 1.x documents: no warning, fine under --strict."""
    lib = LIB_10.replace("version 1.0", "version " + older)
    src = 'version 1.3\n\nimport "lib.wdl" as lib\n\nworkflow w {\n  call lib.lt\n}\n'
    proc = check_wdl(src, files={"lib.wdl": lib})
    assert_ok(proc)
    assert not diagnostics(proc.stderr, "warning"), proc.stderr
    assert_ok(check_wdl(src, files={"lib.wdl": lib}, args=("--strict",)))


@pytest.mark.parametrize("importer, imported", [
    ("version 1.0", "version 1.1"),
    ("version 1.1", "version 1.2"),
    ("version 1.2", "version 1.3"),
    ("", "version 1.0"),          # draft-2 importing 1.0
    ("version 1.0", ""),          # 1.0 importing draft-2
    ("version 1.3", ""),          # 1.3 importing draft-2
], ids=["1.0<-1.1", "1.1<-1.2", "1.2<-1.3", "draft2<-1.0", "1.0<-draft2", "1.3<-draft2"])
def test_importing_a_newer_version_or_mixing_draft2_is_an_error(check_wdl, importer, imported):
    """Importing a newer version, or mixing draft-2 with 1.x either way, is an error at the
    import (without --strict)."""
    if imported:
        lib = LIB_10.replace("version 1.0", imported)
    else:
        lib = 'task lt {\n  command { echo hi }\n  output {\n    String o = "x"\n  }\n}\n'
    head = importer + "\n\n" if importer else ""
    src = head + 'import "lib.wdl" as lib\n\nworkflow w {\n  call lib.lt\n}\n'
    assert_diag(check_wdl(src, files={"lib.wdl": lib}), *find_pos(src, "^import"), "lib.wdl")


def test_map_literal_for_struct_checks_clean_in_1_0(check_wdl):
    """1.0: a map literal with String keys given for a struct is the struct, checked member by
    member, and so is an `object { }` literal -- valid, no warning."""
    src = """
version 1.0

struct Person {
  String name
  Int age
}

workflow w {
  Person a = {"name": "John", "age": 30}
  Person b = object { name: "Jane", age: 31 }
}
"""
    proc = check_wdl(src)
    assert_ok(proc)
    assert not diagnostics(proc.stderr, "warning"), proc.stderr


def test_map_literal_for_struct_inside_array_and_map_literals(check_wdl):
    """A map literal is given for a struct also where it is an element of an Array or a value of
    a Map declared with a struct type: valid in 1.0, no warning, and fine under --strict."""
    src = """
version 1.0

struct Person {
  String name
  Int age
}

workflow w {
  Person a = {"name": "John", "age": 30}
  Array[Person] people = [{"name": "Kim", "age": 2}]
  Array[Person] mixed = [a, {"name": "Kim", "age": 2}]
  Map[String, Person] by_key = {"k": {"name": "Kim", "age": 2}}
}
"""
    proc = check_wdl(src)
    assert_ok(proc)
    assert not diagnostics(proc.stderr, "warning"), proc.stderr
    assert_ok(check_wdl(src, args=("--strict",)))


def test_map_literal_for_struct_unknown_member(check_wdl):
    """A key that is not a member of the struct is an error naming the key, at the key (or the
    literal)."""
    src = 'version 1.0\n\nstruct Person {\n  String name\n  Int age\n}\n\nworkflow w {\n' \
          '  Person a = {"name": "John", "agee": 30, "age": 1}\n}\n'
    assert_diag(check_wdl(src), 9, {find_pos(src, '^"agee"')[1], find_pos(src, "= ^{")[1]}, "agee")


def test_map_literal_for_struct_member_type(check_wdl):
    """A member given a value of the wrong type is an error naming the member and both types."""
    src = 'version 1.0\n\nstruct Person {\n  String name\n  Int age\n}\n\nworkflow w {\n' \
          '  Person a = {"name": "John", "age": [1]}\n}\n'
    assert_diag(check_wdl(src), 9, {find_pos(src, "^[1]")[1], find_pos(src, '^"age"')[1],
                                     find_pos(src, "= ^{")[1]}, "age", also=(word("Int"),))


def test_map_literal_for_struct_missing_member(check_wdl):
    """A required member left out of the literal is an error naming it."""
    src = 'version 1.0\n\nstruct Person {\n  String name\n  Int age\n}\n\nworkflow w {\n' \
          '  Person a = {"name": "John"}\n}\n'
    assert_diag(check_wdl(src), 9, None, named("age"))


def test_object_literal_for_struct_member_type(check_wdl):
    """An `object { }` literal given for a struct is checked member by member as well."""
    src = 'version 1.0\n\nstruct Person {\n  String name\n  Int age\n}\n\nworkflow w {\n' \
          '  Person a = object { name: "J", age: [2] }\n}\n'
    assert_diag(check_wdl(src), 9, None, "age", also=(word("Int"),))


def test_draft2_call_input_checked_against_task_declarations(check_wdl):
    """draft-2: every task declaration is an input, so a call may set a bound one; a name the
    task does not declare is an error at the input's name."""
    src = """
task t {
  String x
  Int n = 3
  command { echo ${x} ${n} }
}

workflow wf {
  call t as a { input: x = "a", n = 4, }
  call t as b { input: x = "b", bogus = 1 }
}
"""
    text = norm(src)
    assert_diag(check_wdl(src), *find_pos(text, "^bogus = 1"), "bogus")


def test_draft2_call_input_type_is_checked(check_wdl):
    """draft-2 call inputs are type-checked against the task declaration: an Array for an Int."""
    src = """
task t {
  Int n = 3
  command { echo ${n} }
}

workflow wf {
  call t { input: n = [1, 2] }
}
"""
    text = norm(src)
    line, c1 = find_pos(text, "n = ^[1, 2]")
    _, c2 = find_pos(text, "^n = [1, 2]")
    assert_diag(check_wdl(src), line, {c1, c2}, word("Int"))


# --------------------------------------------------------------------------------------------
# One rule for the names a body defines, at every depth: a name declared in every clause of an
# exhaustive if/else if/else is not optional right outside it; otherwise it is optional.
# --------------------------------------------------------------------------------------------

NESTED_EXHAUSTIVE = """
version 1.3

workflow w {
  input {
    Boolean b = true
    Array[Int] xs = [1, 2]
  }
  if (b) { Int a = 1 } else if (!b) { Int a = 2 } else { Int a = 3 }
  Int top = a
  scatter (x in xs) {
    if (b) { Int c = x } else { Int c = 0 }
    Int in_scatter = c
  }
  if (b) {
    if (b) { Int d = 1 } else { Int d = 2 }
    Int in_if = d
    scatter (x in xs) {
      if (b) { Int e = x } else { Int e = 0 }
      Int deep = e
    }
  }
  output {
    Int t = top
    Array[Int] cs = in_scatter
    Int? d_out = in_if
    Array[Int]? deep_out = deep
  }
}
"""


def test_exhaustive_conditional_names_are_required_at_every_depth(check_wdl):
    """The same name in every clause of if/else if/else is an `Int` right after it: at the top
    level, inside a scatter, inside an if, and inside a scatter inside an if."""
    assert_ok(check_wdl(NESTED_EXHAUSTIVE))


@pytest.mark.parametrize("where, needle", [
    ("top", "if (b) { Int a = 1 } else if (!b) { Int a = 2 } else { Int a = 3 }"),
    ("scatter", "if (b) { Int c = x } else { Int c = 0 }"),
    ("if", "if (b) { Int d = 1 } else { Int d = 2 }"),
    ("scatter in if", "if (b) { Int e = x } else { Int e = 0 }"),
])
def test_non_exhaustive_conditional_names_are_optional_at_every_depth(check_wdl, where, needle):
    """Without the final `else` the name may be unset: using it as an `Int` is an error at
    every depth, at the declaration that reads it."""
    cut = needle.rsplit(" else ", 1)[0]
    src = NESTED_EXHAUSTIVE.replace(needle, cut)
    reader = {"top": "Int top = ^a", "scatter": "Int in_scatter = ^c", "if": "Int in_if = ^d",
              "scatter in if": "Int deep = ^e"}[where]
    assert_diag(check_wdl(src), *find_pos(norm(src), reader), "optional")


# --------------------------------------------------------------------------------------------
# WDL 1.3's `task` in requirements and hints: only the pre-evaluation members; `task.previous`
# holds every requirement of the previous attempt (and max_retries), all optional.
# --------------------------------------------------------------------------------------------

def test_task_previous_members_1_3(check_wdl):
    """`task.previous.max_retries` and the requirements are `T?` members of task.previous."""
    src = """
version 1.3

task t {
  command <<< echo ~{task.max_retries} >>>
  requirements {
    cpu: select_first([task.previous.cpu, 1.0]) + task.attempt
    memory: select_first([task.previous.memory, 1024])
    max_retries: select_first([task.previous.max_retries, 2])
  }
}
"""
    assert_ok(check_wdl(src))


@pytest.mark.parametrize("member", ["cpu", "memory", "container", "max_retries", "return_code", "end_time"])
def test_task_post_evaluation_members_not_in_requirements_1_3(check_wdl, member):
    """In 1.3's pre-evaluation contexts `task` has only name, id, attempt, previous, meta,
    parameter_meta and ext; a computed requirement is an error there."""
    src = "version 1.3\n\ntask t {\n  command <<< >>>\n  hints {\n    note: task.%s\n  }\n}\n" % member
    assert_diag(check_wdl(src), 6, None, member)


def test_task_return_code_only_in_output_1_3(check_wdl):
    """`task.return_code` exists in `output` only (1.2.1, openwdl#742)."""
    src = "version 1.3\n\ntask t {\n  command <<< echo ~{task.return_code} >>>\n}\n"
    assert_diag(check_wdl(src), 4, None, "return_code")
    ok_src = "version 1.3\n\ntask t {\n  command <<< >>>\n  output {\n    Int rc = task.return_code\n  }\n}\n"
    assert_ok(check_wdl(ok_src))


# --------------------------------------------------------------------------------------------
# Strict where the spec and Sprocket are right: each an error with its own message, in every
# mode (`--strict` or not).
# --------------------------------------------------------------------------------------------

STRICT_ERRORS = {
    "requirements-key-twice": ("1.2", "task t {\n  command <<< >>>\n  requirements {\n    cpu: 1\n    cpu: 2\n  }\n}\n",
                               "    ^cpu: 2", "given twice"),
    "hints-alias-and-name": ("1.2", "task t {\n  command <<< >>>\n  hints {\n    max_cpu: 1\n    maxCpu: 2\n  }\n}\n",
                             "    ^maxCpu", "same hints key"),
    "runtime-key-twice-1.2": ("1.2", "task t {\n  command <<< >>>\n  runtime {\n    cpu: 1\n    cpu: 2\n  }\n}\n",
                              "    ^cpu: 2", "given twice"),
    "meta-key-twice-1.2": ("1.2", "task t {\n  command <<< >>>\n  meta {\n    a: 1\n    a: 2\n  }\n}\n",
                           "    ^a: 2", "given twice"),
    "float-out-of-range": ("1.1", "workflow w {\n  Float f = 1e999\n}\n", "= ^1e999", "out of range"),
    "struct-named-like-task": ("1.1", "struct t {\n  Int a\n}\n\ntask t {\n  command <<< >>>\n}\n", "^struct t",
                               "same name as a task"),
    "struct-named-like-workflow": ("1.1", "struct w {\n  Int a\n}\n\nworkflow w {\n}\n", "^struct w",
                                   "same name as the workflow"),
    "enum-named-like-task": ("1.3", "enum t {\n  A\n}\n\ntask t {\n  command <<< >>>\n}\n", "^enum t",
                             "same name as a task"),
    "map-key-not-primitive": ("1.1", "workflow w {\n  Map[Array[Int], Int] m = {}\n}\n", "^Map[Array",
                              "primitive"),
    "regex-does-not-compile": ("1.1", 'workflow w {\n  String s = sub("a", "(", "b")\n}\n', '"a", ^"("',
                               "regular expression"),
    "regex-look-behind-named": ("1.1", 'workflow w {\n  String s = sub("a", "(?<=x)a", "b")\n}\n',
                                '"a", ^"(?<=', "look-behind `(?<=`"),
    "sep-option-not-a-string": ("1.1", "task t {\n  command <<< echo ~{sep=1 [1, 2]} >>>\n}\n", "echo ^~{",
                                "must be a String"),
    "true-without-false-1.1": ("1.1", 'task t {\n  command <<< echo ~{true="y" true} >>>\n}\n', "echo ^~{",
                               "together"),
}


@pytest.mark.parametrize("case", sorted(STRICT_ERRORS))
def test_strict_error(check_wdl, case):
    version, body, needle, fragment = STRICT_ERRORS[case]
    src = "version %s\n\n%s" % (version, body)
    for args in ((), ("--strict",)):
        assert_diag(check_wdl(src, args=args), *find_pos(src, needle), fragment)


def test_struct_named_like_an_import_namespace(check_wdl):
    lib = "version 1.1\n\ntask x {\n  command <<< >>>\n}\n"
    src = 'version 1.1\n\nimport "lib.wdl"\n\nstruct lib {\n  Int a\n}\n'
    assert_diag(check_wdl(src, files={"lib.wdl": lib}), 5, 1, "same name as an import namespace")


@pytest.mark.parametrize("section", ["runtime", "meta"])
def test_duplicate_runtime_and_meta_keys_before_1_2_warn(check_wdl, section):
    """Production WDL (Cromwell's own tests, GATK's) gives a `runtime` key twice, or `docker`
    beside `container`: before 1.2 the last one counts, with a warning; --strict refuses it."""
    body = ('docker: "a"\n    container: "b"' if section == "runtime" else "a: 1\n    a: 2")
    src = "version 1.0\n\ntask t {\n  command <<< >>>\n  %s {\n    %s\n  }\n}\n" % (section, body)
    proc = check_wdl(src)
    assert proc.returncode == 0 and "warning:" in proc.stderr, proc.stderr
    assert check_wdl(src, args=("--strict",)).returncode == 1


def test_lone_true_option_is_valid_in_1_0(check_wdl):
    """WDL 1.0's grammar allows `true=` alone; the missing one renders as ""."""
    assert_ok(check_wdl('version 1.0\n\ntask t {\n  input {\n    Boolean b = true\n  }\n'
                        '  command <<< echo ~{true="y" b} >>>\n}\n'))


# --------------------------------------------------------------------------------------------
# What the spec allows and was refused (issue 16, item 3); what Sprocket rightly refuses and was
# accepted (item 2); the two suites' other cases (item 5).
# --------------------------------------------------------------------------------------------

SPEC_ALLOWS = {
    # Sprocket's scatter-variable-no-cycle: `foo` is declared in a later scatter, so the first
    # scatter's variable hides nothing it can see, and reads are not a cycle.
    "scatter-variable-named-like-a-later-declaration": ("1.2", """
        task bar {
          input {
            Int foo
          }
          command <<< >>>
          output {
            Int out = foo
          }
        }

        workflow scopes {
          scatter (foo in [1, 2, 3]) {
            call bar { foo }
          }
          scatter (not_foo in bar.out) {
            Int foo = not_foo
            call bar as bar2 { foo }
          }
        }
        """, {}),
    "local-struct-named-like-an-aliased-import": ("1.1", """
        import "foo.wdl" alias X as Y

        struct X {
          Y y
        }

        workflow w {
          X v = X { y: Y { a: 1 } }
          output {
            Int o = v.y.a
          }
        }
        """, {"foo.wdl": "version 1.1\n\nstruct X {\n  Int a\n}\n"}),
    "enum-choices-with-struct-and-compound-values": ("1.3", """
        struct P {
          Int a
        }

        enum G {
          M = P { a: 1 },
          N = P { a: 2 }
        }

        enum H {
          Q = (1, "x"),
          R = (2, "y")
        }

        workflow w {
          output {
            Int p = value(G.N).a
          }
        }
        """, {}),
    # Sprocket's common-types case: the common type of compound literals is found member by member.
    "common-type-of-compound-literals-mixing-none": ("1.1", """
        workflow w {
          Array[Pair[String?, Float]] s = [("x", 1.0), (None, 2), ("y", 3)]
          Map[String, Pair[Array[String?]?, Int]] v = {"a": (["x", None], 1), "b": (None, 2)}
          Array[Map[String, Int?]] m = [{"a": None}, {"b": 1}]
          Pair[String?, Int] p = if true then (None, 1) else ("x", 2)
          Map[String?, String] n = {"a": "b", None: "c"}
        }
        """, {}),
    "reserved-hints-of-each-accepted-type": ("1.2", """
        task t {
          command <<< >>>
          hints {
            maxCpu: 1.0
            max_memory: "1 GiB"
            disks: {"/mnt": "1 GiB"}
            gpu: "a100"
            fpga: 1
            shortTask: false
            localization_optional: true
          }
        }
        """, {}),
    "multi-line-string-in-a-dollar-placeholder-of-a-multi-line-string": ("1.2", """
        workflow w {
          String s = <<<
            a ${<<<inner>>>} b ~{"c"}
          >>>
          output {
            String o = s
          }
        }
        """, {}),
}


@pytest.mark.parametrize("case", sorted(SPEC_ALLOWS))
def test_spec_allows(check_wdl, case):
    version, body, files = SPEC_ALLOWS[case]
    src = "version %s\n\n%s" % (version, norm(body))
    for args in ((), ("--strict",)):
        assert_ok(check_wdl(src, files=files, args=args))


def test_scatter_variable_still_collides_with_an_earlier_or_inner_name(check_wdl):
    src = ("version 1.1\n\nworkflow w {\n  Int x = 1\n  scatter (x in [1]) {\n    Int y = x\n  }\n"
           "  scatter (z in [1]) {\n    Int z = 2\n  }\n}\n")
    proc = check_wdl(src)
    assert_diag(proc, *find_pos(src, "^scatter (x"), "collides")
    assert_diag(proc, *find_pos(src, "^scatter (z"), "collides")


def test_struct_that_contains_itself_is_still_an_error(check_wdl):
    src = "version 1.1\n\nstruct A {\n  B b\n}\n\nstruct B {\n  Array[A] a\n}\n"
    assert_diag(check_wdl(src), *find_pos(src, "^struct B"), "contains itself")


SPROCKET_REFUSES = {
    "non-empty-array-given-an-empty-literal": ("1.1", "workflow w {\n  Array[Int]+ a = []\n}\n", "= ^[]",
                                               "non-empty"),
    "non-empty-array-call-input-given-an-empty-literal": (
        "1.1", "task t {\n  input {\n    Array[Int]+ a\n  }\n  command <<< >>>\n}\n\nworkflow w {\n"
        "  call t { input: a = [] }\n}\n", "a = ^[]", "non-empty"),
    "map-key-struct": ("1.1", "struct S {\n  Int a\n}\n\nworkflow w {\n  S s = S { a: 1 }\n"
                              "  Map[String, Int] m = {s: 1}\n}\n", "{^s: 1", "not a `S`"),
    "unicode-escape-not-4-hex-digits": ("1.1", 'workflow w {\n  String s = "x \\u12"\n}\n', "x ^\\u12",
                                        "4 hexadecimal digits"),
    "unicode-escape-not-8-hex-digits": ("1.1", 'workflow w {\n  String s = "\\U12"\n}\n', '"^\\U12',
                                        "8 hexadecimal digits"),
    "input-named-requirements-1.2": ("1.2", "task t {\n  input {\n    Int requirements\n  }\n  command <<< >>>\n}\n",
                                     "Int ^requirements", "section keyword"),
    "task-return-code-in-command": ("1.2", "task t {\n  command <<< echo ~{task.return_code} >>>\n}\n",
                                    "~{task.^return_code", "only available in `output`"),
    "hints-literal-nested-in-hints": (
        "1.2", "task t {\n  input {\n    Int a\n  }\n  command <<< >>>\n  hints {\n    inputs: input {\n"
        "      a: hints {\n        bad: hints {\n          x: 1\n        }\n      }\n    }\n  }\n}\n",
        "bad: ^hints", "`hints` literals cannot be nested within `hints`"),
    "input-literal-nested-in-output": (
        "1.2", "task t {\n  command <<< >>>\n  hints {\n    outputs: output {\n      g: input {\n      }\n"
        "    }\n  }\n}\n", "g: ^input", "`input` literals cannot be nested within `output`"),
    "input-literal-member-not-hints": (
        "1.2", "task t {\n  input {\n    Int a\n  }\n  command <<< >>>\n  hints {\n    inputs: input {\n"
        "      a: 1\n    }\n  }\n}\n", "a: ^1", "must be `hints` literals"),
    "hints-literal-outside-hints": ("1.2", "workflow w {\n  Int d = hints {\n    a: 1\n  }\n}\n", "= ^hints",
                                    "only be used within a hints section"),
    "write-tsv-header-narrower-than-rows": (
        "1.2", 'workflow w {\n  File f = write_tsv([["a", "b"]], true, ["x"])\n}\n', 'true, ^["x"]',
        "header has 1 name but a row has 2 fields"),
    "write-tsv-header-wider-than-struct-rows": (
        "1.2", 'struct S {\n  Int a\n}\n\nworkflow w {\n  Array[S] ss = [S { a: 1 }]\n'
        '  File f = write_tsv(ss, true, ["x", "y"])\n}\n', 'true, ^["x"', "header has 2 names but a row has 1 field"),
    "reserved-hint-of-the-wrong-type": ("1.2", 'task t {\n  command <<< >>>\n  hints {\n    short_task: "false"\n'
                                        '  }\n}\n', 'short_task: ^"false"', "`short_task` must be `Boolean`"),
    "reserved-hint-of-the-wrong-type-in-an-input-literal": (
        "1.2", 'task t {\n  input {\n    Int a\n  }\n  command <<< >>>\n  hints {\n    inputs: input {\n'
        '      a: hints {\n        max_cpu: true\n      }\n    }\n  }\n}\n', "max_cpu: ^true", "`max_cpu` must be"),
    "hints-input-literal-names-no-input": (
        "1.2", "task t {\n  input {\n    Int a\n  }\n  command <<< >>>\n  hints {\n    inputs: input {\n"
        "      wrong: hints {\n        max_cpu: 1\n      }\n    }\n  }\n}\n", "wrong: ^hints", "names no input"),
    "input-named-runtime-1.0": ("1.0", "task t {\n  input {\n    Int runtime\n  }\n  command <<< >>>\n}\n",
                                "Int ^runtime", "section keyword"),
}


@pytest.mark.parametrize("case", sorted(SPROCKET_REFUSES))
def test_sprocket_refuses(check_wdl, case):
    version, body, needle, fragment = SPROCKET_REFUSES[case]
    src = "version %s\n\n%s" % (version, body)
    assert_diag(check_wdl(src), *find_pos(src, needle), fragment)


def test_input_named_requirements_before_1_2_is_a_name(check_wdl):
    """`requirements` and `hints` are section keywords from WDL 1.2 on only."""
    assert_ok(check_wdl("version 1.1\n\ntask t {\n  input {\n    Int requirements\n  }\n  command <<< >>>\n}\n"))


def test_unicode_escapes_with_their_digits_and_escaped_backslashes_are_fine(check_wdl):
    assert_ok(check_wdl('version 1.1\n\nworkflow w {\n  String a = "\\u00e9 \\U0001F600 \\\\u12"\n}\n'))


def _run(tmp_path, source, *inputs):
    from conftest import ok, sprocket_run, write
    return ok(sprocket_run(write(tmp_path / "main.wdl", source), *inputs, cwd=tmp_path))[0]


def test_spec_allows_values_at_run_time(tmp_path):
    """The multi-line string in `${}` and the enum choices with compound values give their values."""
    outputs = _run(tmp_path, """
        version 1.3

        struct P {
          Int a
        }

        enum G {
          M = P { a: 1 },
          N = P { a: 2 }
        }

        workflow w {
          String s = <<<
            a ${<<<inner>>>} b ~{"c"}
          >>>
          output {
            String o = s
            Int p = value(G.N).a
          }
        }
        """)
    assert outputs == {"w.o": "a inner b c", "w.p": 2}


def test_int_input_for_a_string_is_coerced(tmp_path):
    """Sprocket (and Cromwell) take an Int given for a String input as its digits."""
    (tmp_path / "in.json").write_text('{"w.s": 5}')
    src = "version 1.1\n\nworkflow w {\n  input {\n    String s\n  }\n  output {\n    String o = s\n  }\n}\n"
    assert _run(tmp_path, src, tmp_path / "in.json") == {"w.o": "5"}


def test_task_return_code_in_output_is_fine(check_wdl):
    assert_ok(check_wdl("version 1.2\n\ntask t {\n  command <<< echo ~{task.attempt} >>>\n"
                        "  output {\n    Int r = task.return_code\n  }\n}\n"))


def test_empty_struct_warns_and_strict_refuses(check_wdl):
    """The spec's grammar allows a struct without members and miniwdl accepts it; Sprocket refuses it."""
    src = "version 1.1\n\nstruct E {\n}\n\nworkflow w {\n}\n"
    assert_warns_at(check_wdl(src), 3, 1, "no members")
    assert_diag(check_wdl(src, args=("--strict",)), 3, 1, "at least one member")


def test_json_input_with_extra_struct_keys_warns_and_ignores_them(tmp_path):
    """Cromwell (and miniwdl) ignore JSON keys a struct does not have: a warning naming them."""
    from conftest import sprocket_run, write
    (tmp_path / "in.json").write_text('{"w.s": {"a": 1, "b": 2, "c": 3}}')
    src = "version 1.1\n\nstruct S {\n  Int a\n}\n\nworkflow w {\n  input {\n    S s\n  }\n  output {\n    Int o = s.a\n  }\n}\n"
    proc = sprocket_run(write(tmp_path / "main.wdl", src), tmp_path / "in.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"w.o": 1}
    assert "warning: input `s`: struct `S` has no members `b`, `c`: ignored" in proc.stderr


def test_read_json_with_extra_struct_keys_warns_and_ignores_them(tmp_path):
    """read_json into a struct (in a workflow, in a task declaration and output, nested in an Array):
    the keys the struct does not have are ignored, each object's named in a warning, as Cromwell does;
    a literal with an extra key is still an error."""
    from conftest import sprocket_run, write
    (tmp_path / "p.json").write_text('{"a": 1, "extra": "x"}')
    (tmp_path / "ps.json").write_text('[{"a": 2, "b": 0}, {"a": 3}]')
    src = """version 1.1

struct S {
  Int a
}

task t {
  input {
    File f
  }
  S inner = read_json(f)
  command <<< cat ~{f} >>>
  output {
    S out = read_json(stdout())
    Int sum = inner.a + out.a
  }
}

workflow w {
  input {
    File p
    File ps
  }
  S s = read_json(p)
  Array[S] many = read_json(ps)
  call t { input: f = p }
  output {
    Int o = s.a + many[0].a + many[1].a
    Int from_task = t.sum
  }
}
"""
    proc = sprocket_run(write(tmp_path / "main.wdl", src), "w.p=%s" % (tmp_path / "p.json"),
                        "w.ps=%s" % (tmp_path / "ps.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"w.o": 6, "w.from_task": 2}
    for what, keys in (("`s`", "member `extra`"), ("`many`", "member `b`"), ("`inner` of task `t`", "member `extra`"),
                       ("output `out`", "member `extra`")):
        assert "%s: struct `S` has no %s: ignored, as Cromwell does" % (what, keys) in proc.stderr, proc.stderr
    bad = src.replace("S s = read_json(p)", 'S s = {"a": 1, "extra": 2}')
    proc = sprocket_run(write(tmp_path / "bad.wdl", bad), "w.p=%s" % (tmp_path / "p.json"),
                        "w.ps=%s" % (tmp_path / "ps.json"), cwd=tmp_path)
    assert proc.returncode == 1 and "struct `S` has no member `extra`" in proc.stderr, proc.stderr


def test_file_input_ending_with_a_slash_is_an_error(tmp_path):
    from conftest import assert_sane, sprocket_run, write
    src = "version 1.1\n\nworkflow w {\n  input {\n    File f\n  }\n  output {\n    String o = f\n  }\n}\n"
    proc = sprocket_run(write(tmp_path / "main.wdl", src), "f=%s/" % tmp_path, cwd=tmp_path)
    assert_sane(proc)
    assert proc.returncode == 1 and "ends with `/`, which names a directory" in proc.stderr, proc.stderr


def test_optional_given_for_a_required_1_0_input_warns_and_strict_refuses(check_wdl):
    """WDL 1.0 lets `T?` stand for `T` (Cromwell fails at run time if it is None); miniwdl and Sprocket
    refuse it: a compatibility warning, an error under --strict."""
    src = ("version 1.0\n\ntask t {\n  input {\n    Int x\n  }\n  command <<< >>>\n}\n\n"
           "workflow w {\n  input {\n    Int? y\n  }\n  call t { input: x = y }\n}\n")
    line, col = find_pos(src, "x = ^y")
    assert_warns_at(check_wdl(src), line, col, "select_first")
    assert_diag(check_wdl(src, args=("--strict",)), line, col, "optional value")


def test_two_placeholder_options_warn_and_strict_refuses(check_wdl):
    """`~{default="" sep=" " x}` is common in Cromwell-era WDL (miniwdl accepts it); Sprocket allows one
    option per placeholder, `true=`/`false=` counting as one."""
    src = ('version 1.0\n\ntask t {\n  input {\n    Array[String]? a\n    Boolean? b\n  }\n'
           '  command <<< echo ~{default="x" sep="," a} ~{true="y" false="n" b} >>>\n}\n')
    line, col = find_pos(src, '"x" ^sep=')
    assert_warns_at(check_wdl(src), line, col, "`default` and `sep`")
    assert_diag(check_wdl(src, args=("--strict",)), line, col, "more than one option")


def test_regex_function_given_a_boolean_or_number_pattern_is_checked_not_crashed(check_wdl):
    """`sub(s, false, "-")` (found by the fuzz): a literal pattern that is not a string is a
    Boolean/number given for a String (a compatibility warning from 1.1), never an internal error."""
    src = 'version 1.2\n\nworkflow w {\n  String a = sub("x", false, "-")\n  Boolean b = matches("1", 1)\n}\n'
    proc = check_wdl(src)
    assert proc.returncode == 0 and "internal error" not in proc.stderr, proc.stderr
    assert_warns_at(proc, *find_pos(src, "= ^sub("), "numbers and Booleans taken as text")
    assert check_wdl(src, args=("--strict",)).returncode == 1


def test_type_parameters_are_one_walk():
    """params() is the one walk over a type's parameters and with_params() rebuilds the type from
    new ones (optional and non-empty marks kept): _subst, _resolve_vars, contains_type, lint's
    _named_types and _has_object all use it."""
    from conftest import _import_sprocket
    sp = _import_sprocket()
    person = sp.StructType("Person", {"name": sp.STRING, "pets": sp.ArrayType(sp.OBJECT)})
    t = sp.parse_type_text("Map[String, Pair[Array[Int]+?, X]]?")
    for x in [t, t.value, t.value.left, sp.INT, person, sp.ANY, sp.OBJECT]:
        assert x.with_params(x.params()) == x and str(x.with_params(x.params())) == str(x)
    assert [str(p) for p in t.params()] == ["String", "Pair[Array[Int]+?, X]"]
    assert person.params() == [] and sp.INT.params() == []
    assert str(sp._subst(t, {"X": sp.FILE})) == "Map[String, Pair[Array[Int]+?, File]]?"
    assert sp.contains_type(t, lambda x: x == sp.INT) and not sp.contains_type(t, lambda x: x == sp.FLOAT)
    assert sp.contains_type(sp.ArrayType(person), lambda x: isinstance(x, sp.ObjectType))
    assert sp._has_object(sp.PairType(sp.INT, sp.MapType(sp.STRING, sp.OBJECT))) and not sp._has_object(person)
    names = set()
    sp._named_types(sp.MapType(sp.STRING, sp.ArrayType(person)), names)
    assert names == {"Person"}
