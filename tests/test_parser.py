"""Front end, syntax: documents that must check clean (the grammar of WDL 1.0-1.3), then syntax
errors and version gating, each with its position.

Every document asserted valid here is valid per the spec of its version (shared/spec/).  The
1.0-1.2 ones were also cross-checked with miniwdl 1.16 where miniwdl supports the feature.
"""

import pytest

from conftest import _import_sprocket, assert_diag, assert_ok, find_pos, norm, subclasses, version_re

# --------------------------------------------------------------------------------------------
# Valid documents.  Each entry: id -> source, or id -> (source, {import_name: source}).
# --------------------------------------------------------------------------------------------

VALID = {}

# ---------------------------------------------------------------- WDL 1.0

VALID["1.0-minimal-task"] = """
version 1.0

task t {
  command {
    echo hello
  }
}
"""

VALID["1.0-comments-everywhere"] = """
# Comments are allowed before the version statement.
#
version 1.0  # and after it

# a comment between definitions
task t {  # after a brace
  input {  # here
    Int n  # after a declaration
  }
  # before the command
  command <<<
    # inside the command this is bash, not a WDL comment: ~{n}
    echo ~{n}
  >>>
  output {  # here too
    Int out = n  # and here
  }
}
# trailing comment
"""

VALID["1.0-task-every-section"] = """
version 1.0

task everything {
  input {
    File infile
    String? label
    Array[String] flags = ["-a", "-b"]
    Boolean verbose = false
    Int threads = 4
    Map[String, Int] sizes = {"a": 1, "b": 2}
    Array[File]+ more
    Pair[String, Array[Int?]]? pair_in
  }

  Int mem_gb = threads * 2
  String prefix = basename(infile, ".txt")

  command {
    set -e
    echo ${prefix} ${sep=" " flags} ${true="--verbose" false="--quiet" verbose}
    echo ~{default="unlabelled" label} $HOME
    cat ${infile} > out.txt
  }

  output {
    File out = "out.txt"
    Array[String] lines = read_lines(stdout())
    Int n = length(lines)
    File err = stderr()
  }

  runtime {
    docker: "ubuntu:20.04"
    memory: "~{mem_gb} GB"
    cpu: threads
    disks: "local-disk 10 SSD"
    preemptible: 2
  }

  meta {
    author: "Jane Doe"
    version: 1.1
    count: -3
    tags: ["a", "b"]
    nested: {key: "value", list: [1, 2.5, true, null]}
    empty_obj: {}
    empty_list: []
  }

  parameter_meta {
    infile: {help: "input file", patterns: ["*.txt"]}
    label: "optional label"
    flags: {help: "flags", suggestions: ["-a", "-b", "-c"]}
  }
}
"""

VALID["1.0-heredoc-command"] = """
version 1.0

task heredoc {
  input {
    File infile
    Array[Int] nums = [1, 2]
  }
  command <<<
    python <<CODE
      with open("~{infile}") as fp:
        for line in fp:
          if not line.startswith('#'):
            print(line.strip())
    CODE
    echo "~{sep=',' nums}" | tr , ' ' >> log.txt
    for f in *.txt; do { echo "$f"; }; done
    awk '{ print $1 }' log.txt
  >>>
  output {
    Array[String] lines = read_lines(stdout())
  }
}
"""

VALID["1.0-expressions"] = """
version 1.0

workflow exprs {
  input {
    Int i = 3
    Float f = 2.5
    String s = "text"
    Array[Int] xs = [1, 2, 3]
    Map[String, Int] m = {"a": 1, "b": 2}
    Pair[Int, String] p = (1, "one")
    Boolean flag = true
    Int? maybe
  }

  Int arith = 1 + 2 * 3 - 4 / 2 % 3
  Float mixed = i * f + 1
  Boolean prec = 1 + 2 * 3 == 7
  Boolean cmp_then_eq = 1 < 2 == true
  Boolean logic = !flag || flag && i >= 2 && f <= 3.0 && i != 4 && f > 1 && i < 10
  Boolean prec2 = 1 + 2 > 2 && 3 * 2 == 6
  Int neg = -i + -(2 * 3)
  Int idx = xs[0] + xs[length(xs) - 1]
  Int mv = m["a"]
  Int pl = p.left
  String pr = p.right
  String tern = if flag then "yes" else "no"
  String concat = "a" + if flag then "b" else "c"
  Int paren = (1 + 2) * (3 + 4)
  Float sci = 1.5e3 + 2E-2 + .5 + 0.25
  String interp = "i=~{i} f=${f} s=~{s + "!"} nested=~{if flag then "t" else "f"}"
  String esc = "tab\\tnewline\\nquote\\"backslash\\\\ single'"
  String single = 'it "works"'
  Array[Array[Int]] nested = [[1, 2], [], [3]]
  Array[Pair[String, Int]] pairs = [("a", 1), ("b", 2)]
  Map[Int, Array[String]] mm = {1: ["a"], 2: ["b", "c"]}
  Int sel = select_first([maybe, i])
  Boolean def = defined(maybe)
  Array[Int] r = range(i)
  Array[Pair[Int, String]] z = zip(xs, ["a", "b", "c"])
  Array[Pair[Int, Int]] cr = cross(xs, xs)
  Array[Array[Int]] t = transpose(nested)
  Array[Int] fl = flatten(nested)
  Array[String] pre = prefix("-f ", xs)
  Int rounded = floor(f) + ceil(f) + round(f)
  String sb = sub(s, "t", "T")
  Array[Int] all_present = select_all([maybe, 1])
  Int nested_index = nested[0][1]
  Int pair_index = pairs[1].right
}
"""

VALID["1.0-workflow-scatter-if-import"] = ("""
version 1.0

import "lib.wdl" as lib

struct Sample {
  String name
  Array[File]+ reads
  Map[String, String] attrs
  Pair[Int, Float]? score
}

task count {
  input {
    Sample sample
    Int factor = 1
  }
  command <<<
    echo ~{sample.name} ~{length(sample.reads) * factor}
  >>>
  output {
    Int n = read_int(stdout())
  }
}

workflow main {
  input {
    Array[Sample] samples
    Boolean run_extra = false
  }

  scatter (s in samples) {
    call count { input: sample = s, factor = 2 }
    Int doubled = count.n * 2
    if (run_extra) {
      call count as extra { input: sample = s }
      Int tripled = extra.n * 3
    }
  }

  call lib.hello as greet { input: who = "world" }
  call lib.hello {
    input:
      who = "again"
  }

  Array[Int] counts = count.n
  Array[Int?] maybe = tripled
  Array[Int] present = select_all(maybe)

  output {
    Array[Int] all_counts = counts
    Array[Int] all_doubled = doubled
    Array[Int] extras = present
    String greeting = greet.msg
    String greeting2 = hello.msg
  }

  meta {
    description: "test workflow"
    allowNestedInputs: false
  }
  parameter_meta {
    samples: "the samples"
  }
}
""", {"lib.wdl": """
version 1.0

task hello {
  input {
    String who
  }
  command {
    echo "hello ~{who}"
  }
  output {
    String msg = read_string(stdout())
  }
}
"""})

VALID["1.0-import-default-namespace-and-struct-alias"] = ("""
version 1.0

import "structs.wdl" alias Person as Human alias Pet as Animal
import "sub/tasks.wdl" as t

workflow w {
  input {
    Human h
    Animal a
  }
  call t.describe { input: who = h }
  output {
    String n = h.name
    String species = a.species
    String d = describe.out
  }
}
""", {
    "structs.wdl": """
version 1.0

struct Person {
  String name
  Int age
}

struct Pet {
  String species
}
""",
    "sub/tasks.wdl": """
version 1.0

import "../structs.wdl"

task describe {
  input {
    Person who
  }
  command <<<
    echo "~{who.name} is ~{who.age}"
  >>>
  output {
    String out = read_string(stdout())
  }
}
""",
})

VALID["1.0-subworkflow"] = ("""
version 1.0

import "sub.wdl" as sub

workflow outer {
  call sub.inner { input: x = 1 }
  output {
    Int y = inner.y
  }
}
""", {"sub.wdl": """
version 1.0

workflow inner {
  input {
    Int x
  }
  output {
    Int y = x + 1
  }
}
"""})

VALID["1.0-object-literal-to-struct"] = """
version 1.0

struct Attrs {
  String backend
  Int tries
}

workflow w {
  Attrs a = object {
    backend: "HPC",
    tries: 3
  }
  output {
    String b = a.backend
  }
}
"""

VALID["1.0-nested-scatter-and-conditionals"] = """
version 1.0

workflow nest {
  input {
    Array[Array[Int]] matrix = [[1, 2], [3]]
    Boolean go = true
  }
  scatter (row in matrix) {
    scatter (x in row) {
      if (go) {
        if (x > 1) {
          Int big = x
        }
      }
      Int sq = x * x
    }
  }
  output {
    Array[Array[Int]] squares = sq
    Array[Array[Int?]] bigs = big
  }
}
"""

# ---------------------------------------------------------------- WDL 1.1

VALID["1.1-struct-literal-none-abbreviated-call"] = """
version 1.1

struct Person {
  String name
  Int age
  String? nickname
}

task greet {
  input {
    Person who
    String greeting = "Hello"
    Int? times
  }
  command <<<
    for i in $(seq 1 ~{select_first([times, 1])}); do
      echo "~{greeting} ~{who.name}" >> out.txt
    done
    echo "${HOME}" > /dev/null
  >>>
  output {
    Array[String] lines = read_lines("out.txt")
  }
  runtime {
    container: "ubuntu:latest"
    cpu: 1
    memory: "1 GiB"
    maxRetries: 1
    returnCodes: [0, 1]
  }
}

workflow main {
  input {
    String greeting = "Hi"
    Int? times = None
  }
  Person p = Person { name: "Ann", age: 30 }
  call greet { input: who = p, greeting, times }
  call greet as greet2 {
    input:
      who = Person {
        name: "Bob",
        age: 4,
        nickname: "B"
      }
  }
  call greet as greet3 after greet2 { input: who = p }
  call greet as greet4 after greet after greet3 { input: who = p }
  output {
    Array[String] a = greet.lines
    Array[String] b = greet2.lines
    Array[String] c = greet3.lines
  }
}
"""

VALID["1.1-new-functions"] = """
version 1.1

workflow fns {
  input {
    Array[Int] xs = [3, 1, 2]
    Map[String, Int] m = {"a": 1, "b": 2}
    Array[Pair[String, Int]] prs = [("a", 1), ("a", 2), ("b", 3)]
    Array[String?] maybe_strs = ["x", None]
  }
  Int lo = min(1, 2)
  Float hi = max(1, 2.5)
  String joined = sep(",", ["a", "b"])
  Array[String] q = quote(xs)
  Array[String] sq = squote(xs)
  Array[String] suf = suffix(".txt", ["a", "b"])
  Pair[Array[String], Array[Int]] unz = unzip(prs)
  Array[Pair[String, Int]] ap = as_pairs(m)
  Map[String, Int] am = as_map([("x", 1), ("y", 2)])
  Array[String] ks = keys(m)
  Map[String, Array[Int]] grouped = collect_by_key(prs)
  Array[String] present = select_all(maybe_strs)
  Int n = length(xs)
  String deprecated_concat = "n=" + n
  String escaped = "literal \\~{not_a_placeholder} and \\${not_one_either}"
  String unicode = "\\x41\\101\\u0041\\U00000041"
  Boolean is_none = maybe_strs[1] == None
}
"""

VALID["1.1-object"] = """
version 1.1

workflow objs {
  Object o = object {
    a: 1,
    b: "two"
  }
  output {
    Object copy = o
  }
}
"""

VALID["1.1-old-command-and-placeholder-options"] = """
version 1.1

task opts {
  input {
    Array[String] xs = ["a", "b"]
    Boolean flag = true
    String? maybe
    Int n = 2
  }
  command {
    echo ${sep=" " xs} ~{sep=", " xs}
    echo ${true="--yes" false="--no" flag} ~{default="none" maybe}
    echo ${n * 2} $PATH
  }
  output {
    String s = "~{sep=':' xs}"
    String opt = "~{"--x=" + maybe}"
  }
}
"""

VALID["1.1-workflow-with-meta-values"] = """
version 1.1

workflow meta_values {
  meta {
    authors: ["Jim", "Bob"]
    version: 1.1
    citation: {
      year: 2020,
      doi: "1234/10.1010"
    }
    nothing: null
    flag: true
    number: 1e3
  }
  parameter_meta {
    x: {help: "x", choices: [1, 2, 3], extra: {deep: [{a: null}]}}
  }
  input {
    Int x = 1
  }
}
"""

VALID["1.1-allow-nested-inputs-meta"] = """
version 1.1

task t {
  input {
    Int required
  }
  command <<< echo ~{required} >>>
}

workflow w {
  meta {
    allowNestedInputs: true
  }
  call t
}
"""

# ---------------------------------------------------------------- WDL 1.2

VALID["1.2-task-requirements-hints-env"] = """
version 1.2

struct Sample {
  String name
  File? reads

  meta {
    description: "A sample"
  }

  parameter_meta {
    name: "sample name"
    reads: { help: "reads file" }
  }
}

task align {
  input {
    Sample sample
    env String mode = "fast"
    Directory ref_dir
    Int threads = 2
  }

  env String label = "~{sample.name}-~{mode}"
  Int mem = 2 ** 10

  command <<<
    echo "$mode ${label}" ~{threads}
    ls ~{ref_dir}
  >>>

  output {
    String out = read_string(stdout())
    Directory d = ref_dir
  }

  requirements {
    container: ["ubuntu:latest", "debian:stable"]
    cpu: threads
    memory: "~{mem} MiB"
    gpu: false
    fpga: false
    disks: "10 GiB"
    max_retries: 2
    return_codes: "*"
  }

  hints {
    max_cpu: 8
    max_memory: "16 GiB"
    short_task: true
    localization_optional: false
    disks: "SSD"
    inputs: input {
      sample.reads: hints {
        localization_optional: true
      },
      ref_dir: hints {
        localization_optional: true
      }
    }
    outputs: output {
      out: hints {
        max_length: 10
      }
    }
    my_cluster: hints {
      queue: "short"
    }
  }

  meta {
    description: "aligns"
  }

  parameter_meta {
    sample: "the sample"
  }
}

task noop {
  command <<< >>>
}

workflow main {
  input {
    Array[Sample] samples
    Directory ref_dir
  }

  scatter (s in samples) {
    call align { sample = s, ref_dir }
  }

  call noop
  call noop as noop2 after noop
  call align as first after noop after noop2 {
    input: sample = samples[0], ref_dir = ref_dir
  }
  call noop as noop3 {}

  output {
    Array[String] outs = align.out
    String first_out = first.out
  }

  hints {
    allow_nested_inputs: true
  }

  meta {
    author: "me"
  }
}
"""

VALID["1.2-expressions"] = """
version 1.2

workflow exprs12 {
  input {
    Array[Int] xs = [1, 2, 3, 4, 5]
    Map[String, Int] m = {"a": 1}
    String s = "hello world"
  }
  Int pw = 2 ** 3 ** 2
  Float fp = 2.0 ** 0.5
  Int mixed_prec = -2 ** 2 * 3 + 1
  Boolean pw_prec = 2 * 3 ** 2 == 18
  Array[Array[Int]] ch = chunk(xs, 2)
  Boolean has = contains(xs, 3)
  Boolean hk = contains_key(m, "a")
  Array[Int] vs = values(m)
  String? fnd = find(s, "wor+")
  Boolean mt = matches(s, "^hello")
  Int slen = length(s)
  Int mlen = length(m)
  File jp = join_paths("/tmp", "a.txt")
  String ml = <<<
    first line
      indented ~{s}
    last line \\
    continued
  >>>
  String ml_one = <<<single line>>>
  String ml_quotes = <<<
    'single' and "double" quotes and ${s} placeholder, ~{length(xs)} too
  >>>
  output {
    Int out = pw
  }
}
"""

VALID["1.2-struct-to-struct-and-literals"] = """
version 1.2

struct A {
  String s
}

struct B {
  A a_struct
  Int i
}

struct C {
  String s
}

struct D {
  C a_struct
  Int i
}

workflow struct_to_struct {
  B my_b = B {
    a_struct: A { s: 'hello' },
    i: 10
  }
  Pair[Int, Map[String, Array[Float]]] deep = (1, {"k": [1.0, 2]})
  Object legacy = object { x: 1 }
  Int? nothing = None

  output {
    D my_d = my_b
    Int i = my_b.i
    String s = my_d.a_struct.s
  }
}
"""

VALID["1.2-call-forms"] = ("""
version 1.2

import "lib.wdl" as lib

workflow calls {
  input {
    Int i
    String s = "x"
  }
  call lib.repeat as r1 { i }
  call lib.repeat as r2 { i = i }
  call lib.repeat as r3 {
    input:
      i
  }
  call lib.repeat as r4 {
    input:  # optional (for backward compatibility)
      i = i,
      opt_string = s
  }
  call lib.repeat as r5 { i, opt_string = s }
  call lib.repeat as r6 after r1 after r2 { i = 1 }
  output {
    Array[String] lines = flatten([r1.lines, r2.lines, r3.lines, r4.lines, r5.lines, r6.lines])
  }
}
""", {"lib.wdl": """
version 1.2

task repeat {
  input {
    Int i = 0
    String? opt_string
  }
  command <<<
    for n in $(seq 1 ~{i}); do echo ~{select_first([opt_string, "default"])}; done
  >>>
  output {
    Array[String] lines = read_lines(stdout())
  }
}
"""})

VALID["1.2-task-variable"] = """
version 1.2

task runtime_info {
  meta {
    description: "uses the implicit task variable"
  }
  command <<<
    echo "~{task.name} ~{task.id} ~{task.cpu} ~{task.memory} ~{task.attempt}"
    echo "~{task.meta.description} ~{task.container}"
  >>>
  output {
    Int? rc = task.return_code
    Boolean enough = task.memory >= 2 * 1024 * 1024 * 1024
  }
  requirements {
    memory: "2 GiB"
    return_codes: [0, 1]
  }
}
"""

# ---------------------------------------------------------------- WDL 1.3

VALID["1.3-enums-else-if-split"] = """
version 1.3

enum Color {
  Red,
  Green,
  Blue
}

enum Priority[Int] {
  Low = 1,
  High = 10,
}

enum Hex[String] { R = "#ff0000", G = "#00ff00" }

enum Contigs[Array[String]] {
  Canonical = ["chr1", "chr2"],
  All = ["chr1", "chr2", "chrM"]
}

enum FavoriteNumber {
  ThreePointOh = 3,
  FourPointOh = 4.0
}

struct Pixel {
  Color color
  Int x
}

task paint {
  input {
    Color color = Color.Red
    Priority p = Priority.High
  }
  command <<<
    echo "~{color} ~{value(p)}"
  >>>
  output {
    String name = "~{color}"
  }
  requirements {
    cpu: task.attempt + 1
    max_retries: 1
  }
}

workflow art {
  input {
    Color c = Color.Green
    Int n = 5
    Color? maybe_color
  }
  Pixel px = Pixel { color: Color.Blue, x: 1 }
  Boolean same = c == Color.Green
  Boolean differ = c != px.color
  String hex = value(Hex.R)
  Int pv = value(Priority.Low)
  Float fav = value(FavoriteNumber.ThreePointOh)
  Array[String] chrs = value(Contigs.All)
  Array[String] parts = split("a,b,c", ",")
  Color chosen = select_first([maybe_color, Color.Red])

  if (n > 10) {
    call paint as big { color = c }
    Int size = 3
  } else if (n > 3) {
    call paint as medium
  } else if (n > 1) {
    Int tiny = 1
  } else {
    Int none_at_all = 0
  }

  if (same) {
    String always = "x"
  } else {
    String always = "y"
  }

  output {
    String? big_name = big.name
    Int? maybe_size = size
    String a = always
    Array[String] p = parts
  }
}
"""

VALID["1.3-imports-1.2"] = ("""
version 1.3

import "old.wdl" as old

workflow w {
  call old.t { x = 1 }
  output {
    Int y = t.y
  }
}
""", {"old.wdl": """
version 1.2

task t {
  input {
    Int x
  }
  command <<< >>>
  output {
    Int y = x * 2
  }
}
"""})

VALID["1.3-task-previous"] = """
version 1.3

task retrying {
  requirements {
    cpu: task.attempt + 1
    memory: "~{256 * (2 ** task.attempt)} MB"
    max_retries: 1
  }
  command <<<
    echo "~{select_first([task.previous.cpu, 0])} ~{task.max_retries}"
  >>>
  output {
    Float? previous_cpu = task.previous.cpu
    Int? previous_memory = task.previous.memory
  }
}
"""


def _entries():
    for key, value in VALID.items():
        src, files = value if isinstance(value, tuple) else (value, {})
        yield pytest.param(src, files, id=key)


@pytest.mark.parametrize("src, files", _entries())
def test_valid_document(check_wdl, src, files):
    assert_ok(check_wdl(src, files=files))


def test_valid_documents_in_one_call(wdl, check):
    """Several documents on one command line: exit 0 when all are valid."""
    paths = []
    for n, key in enumerate(["1.0-minimal-task", "1.1-new-functions", "1.2-expressions"]):
        paths.append(wdl(VALID[key], "doc%d.wdl" % n))
    assert_ok(check(*paths))


def test_task_only_document_in_every_version(wdl, check):
    for v in ("1.0", "1.1", "1.2", "1.3"):
        path = wdl("version %s\n\ntask t {\n  command <<<\n    echo hi\n  >>>\n}\n" % v, "t%s.wdl" % v)
        assert_ok(check(path))


def test_crlf_line_endings(wdl, check):
    src = norm(VALID["1.1-struct-literal-none-abbreviated-call"]).replace("\n", "\r\n")
    assert_ok(check(wdl(src, raw=True)))


def test_no_trailing_newline(wdl, check):
    src = norm(VALID["1.0-minimal-task"]).rstrip("\n")
    assert_ok(check(wdl(src, raw=True)))


def test_tabs_as_whitespace(wdl, check):
    src = "version 1.1\n\ntask t {\n\tinput {\n\t\tInt\tx\t=\t1\n\t}\n\tcommand <<<\n\techo ~{x}\n\t>>>\n}\n"
    assert_ok(check(wdl(src, raw=True)))


def test_deeply_nested_but_reasonable_expression(check_wdl):
    """A 50-deep parenthesised expression is perfectly valid and must check."""
    expr = "(" * 50 + "1" + ")" * 50
    assert_ok(check_wdl("version 1.1\nworkflow w {\n  Int x = %s\n}\n" % expr))


def test_long_flat_expression(check_wdl):
    """Long chains of binary operators must not hit a recursion limit either."""
    expr = " + ".join(["1"] * 300)
    assert_ok(check_wdl("version 1.1\nworkflow w {\n  Int x = %s\n}\n" % expr))


# --------------------------------------------------------------------------------------------
# Syntax errors, with positions.
# Each: id -> (source, line, col-or-cols-or-None, fragment-or-None).  ``line``/``col`` may be
# given as a needle string: the position of its first occurrence in the normalised source.
# --------------------------------------------------------------------------------------------

SYNTAX_ERRORS = {
    "unsupported-version": ("""
version 9.9

workflow w {
}
""", 1, (1, 9), ("version", "9.9")),
    "version-not-first": ("""
workflow w {
}
version 1.1
""", (1, 3), 1, "version"),
    "second-version-statement": ("""
version 1.1
version 1.1

workflow w {
}
""", 2, 1, None),
    "missing-closing-brace-before-workflow": ("""
version 1.1

task t {
  command <<< echo hi >>>

workflow w {
  call t
}
""", "workflow", (1, 12), None),
    "bad-token-at": ("""
version 1.1

workflow w {
  Int x = 1 @ 2
}
""", "@", None, None),
    "bad-token-backtick": ("""
version 1.1

workflow w {
  Int x = `1`
}
""", "`", None, None),
    "missing-equals": ("""
version 1.1

workflow w {
  Int x 42
}
""", "42", None, None),
    "extra-closing-brace": ("""
version 1.1

workflow w {
}
}
""", ("}", 1), None, None),
    "missing-comma-in-array": ("""
version 1.1

workflow w {
  Array[Int] xs = [1 2]
}
""", "2]", None, None),
    "empty-placeholder": ("""
version 1.1

workflow w {
  String s = "a ~{} b"
}
""", 4, None, None),
    "keyword-as-declaration-name": ("""
version 1.1

workflow w {
  Int scatter = 1
}
""", "scatter", None, None),
    "keyword-as-task-name": ("""
version 1.1

task workflow {
  command <<< >>>
}
""", 3, (1, 6), None),
    "struct-member-initializer": ("""
version 1.1

struct Invalid {
  String myString = "Cannot do this"
  Int myInt
}
""", 4, None, None),
    "declaration-at-top-level": ("""
version 1.1

Int x = 1

workflow w {
}
""", 3, 1, None),
    "call-input-missing-expression": ("""
version 1.1

task t {
  input {
    Int x
  }
  command <<< >>>
}

workflow w {
  call t { input: x = }
}
""", "}\n}", None, None),
    "unclosed-array-type": ("""
version 1.1

workflow w {
  Array[Int x = [1]
}
""", "x =", None, None),
    "bare-expression-statement": ("""
version 1.1

workflow w {
  select_first([1])
}
""", 4, None, None),
    "scatter-missing-in": ("""
version 1.1

workflow w {
  scatter (x [1, 2]) {
  }
}
""", "[1, 2]", None, None),
    "if-without-parentheses": ("""
version 1.1

workflow w {
  if true {
  }
}
""", "true", None, None),
    "nested-input-name-in-call": ("""
version 1.2

import "sub.wdl" as sub

workflow w {
  call sub.inner { inner_task.x = 1 }
}
""", 6, None, None),
}

# Errors whose exact position is the parser's choice: only the line (or a set of lines) is fixed.
SYNTAX_ERRORS_LOOSE = {
    "missing-closing-brace-at-eof": ("""
version 1.1

workflow w {
  Int x = 1
""", (4, 5)),
    "unterminated-string": ("""
version 1.1

workflow w {
  String s = "abc
  Int x = 1
}
""", (4,)),
    "unterminated-single-quoted-string": ("""
version 1.1

workflow w {
  String s = 'abc
}
""", (4,)),
    "dangling-operator": ("""
version 1.1

workflow w {
  Int x = 1 +
}
""", (4, 5)),
    "unterminated-heredoc-command": ("""
version 1.1

task t {
  command <<<
    echo hi
}
""", (4, 5, 6, 7)),
    "unterminated-placeholder": ("""
version 1.1

workflow w {
  String s = "a ~{1 + 2"
}
""", (4, 5)),
    "unclosed-paren": ("""
version 1.1

workflow w {
  Int x = (1 + 2
}
""", (4, 5)),
}


def _resolve(text, line, col):
    """``line`` may be a needle (or (needle, nth)); then ``col`` defaults to the needle's column."""
    if isinstance(line, str):
        line = (line, 0)
    if isinstance(line, tuple) and line and isinstance(line[0], str):
        line, c = find_pos(text, line[0], line[1])
        if col is None:
            col = c
    return line, col


@pytest.mark.parametrize("src, line, col, fragment",
                         [pytest.param(*v, id=k) for k, v in SYNTAX_ERRORS.items()])
def test_syntax_error(check_wdl, src, line, col, fragment):
    if "sub.wdl" in src:
        files = {"sub.wdl": "version 1.2\nworkflow inner {\n  call inner_task\n}\n"
                            "task inner_task {\n  input {\n    Int x = 0\n  }\n  command <<< >>>\n}\n"}
    else:
        files = None
    proc = check_wdl(src, files=files)
    line, col = _resolve(norm(src), line, col)
    assert_diag(proc, line, col, fragment)


@pytest.mark.parametrize("src, lines", [pytest.param(*v, id=k) for k, v in SYNTAX_ERRORS_LOOSE.items()])
def test_syntax_error_loose_position(check_wdl, src, lines):
    proc = check_wdl(src)
    assert_diag(proc, lines, None)


def test_unterminated_string_points_at_the_string(check_wdl):
    src = """
version 1.1

workflow w {
  String s = "abc
}
"""
    text = norm(src)
    line, quote_col = find_pos(text, '"abc')
    eol_col = quote_col + len('"abc')
    assert_diag(check_wdl(src), line, (quote_col, eol_col))


def test_error_in_imported_document_names_that_file(check_wdl):
    lib = """
version 1.1

task broken {
  command <<< >>>
  Int x = = 1
}
"""
    main = """
version 1.1

import "lib.wdl"

workflow w {
  call lib.broken
}
"""
    proc = check_wdl(main, files={"lib.wdl": lib})
    line, _ = find_pos(norm(lib), "= = 1")
    assert_diag(proc, line, None, path="lib.wdl")


def test_several_files_report_the_bad_one(wdl, check):
    good = wdl(VALID["1.0-minimal-task"], "good.wdl")
    bad = wdl("version 1.1\n\nworkflow w {\n  Int x = 1 @ 2\n}\n", "bad.wdl")
    proc = check(good, bad)
    assert_diag(proc, 4, 13, path="bad.wdl")
    assert all(not d.split(":")[0].endswith("good.wdl") for d in proc.stderr.splitlines()
               if ": error: " in d)


# --------------------------------------------------------------------------------------------
# Version gating: a construct newer than the document's version is an error that names the
# version that introduced it.  Each: id -> (source, needle(s) where the error may point, version).
# A needle may be a list of alternatives (e.g. the operator or the start of the expression).
# --------------------------------------------------------------------------------------------

GATED = {
    "exponent-in-1.1": ("""
version 1.1

workflow w {
  Int x = 2 ** 3
}
""", ["**", "2 **"], "1.2"),
    "exponent-in-1.0": ("""
version 1.0

workflow w {
  Int x = 2 ** 3
}
""", ["**", "2 **"], "1.2"),
    "else-in-1.2": ("""
version 1.2

workflow w {
  if (true) {
    Int a = 1
  } else {
    Int b = 2
  }
}
""", ["else"], "1.3"),
    "else-if-in-1.2": ("""
version 1.2

workflow w {
  input {
    Int n = 1
  }
  if (n > 2) {
    Int a = 1
  } else if (n > 1) {
    Int b = 2
  }
}
""", ["else"], "1.3"),
    "enum-in-1.2": ("""
version 1.2

enum Color {
  Red,
  Green
}

workflow w {
}
""", ["enum"], "1.3"),
    "typed-enum-in-1.1": ("""
version 1.1

enum E[String] {
  A = "a"
}
""", ["enum"], "1.3"),
    "env-input-in-1.1": ("""
version 1.1

task t {
  input {
    env String greeting = "hi"
  }
  command <<< echo $greeting >>>
}
""", ["env"], "1.2"),
    "env-private-in-1.1": ("""
version 1.1

task t {
  env String greeting = "hi"
  command <<< echo $greeting >>>
}
""", ["env"], "1.2"),
    "requirements-in-1.1": ("""
version 1.1

task t {
  command <<< >>>
  requirements {
    cpu: 1
  }
}
""", ["requirements"], "1.2"),
    "task-hints-in-1.1": ("""
version 1.1

task t {
  command <<< >>>
  hints {
    short_task: true
  }
}
""", ["hints"], "1.2"),
    "workflow-hints-in-1.1": ("""
version 1.1

workflow w {
  hints {
    allow_nested_inputs: true
  }
}
""", ["hints"], "1.2"),
    "multiline-string-in-1.1": ("""
version 1.1

workflow w {
  String s = <<<
    text
  >>>
}
""", ["<<<"], "1.2"),
    "directory-in-1.1": ("""
version 1.1

workflow w {
  input {
    Directory d
  }
}
""", ["Directory"], "1.2"),
    "after-in-1.0": ("""
version 1.0

task t {
  command <<< >>>
}

workflow w {
  call t
  call t as t2 after t
}
""", ["after"], "1.1"),
    "call-without-input-keyword-in-1.1": ("""
version 1.1

task t {
  input {
    Int x
  }
  command <<< >>>
}

workflow w {
  call t { x = 1 }
}
""", ["x = 1", "{ x"], "1.2"),
    "struct-meta-in-1.1": ("""
version 1.1

struct S {
  Int x
  meta {
    description: "s"
  }
}
""", ["meta"], "1.2"),
    "struct-literal-in-1.0": ("""
version 1.0

struct P {
  String name
}

workflow w {
  P p = P { name: "a" }
}
""", ["P { name", "{ name"], "1.1"),
    "abbreviated-call-input-in-1.0": ("""
version 1.0

task t {
  input {
    Int x
  }
  command <<< >>>
}

workflow w {
  Int x = 1
  call t { input: x }
}
""", ["x }"], "1.1"),
}


@pytest.mark.parametrize("src, needles, version", [pytest.param(*v, id=k) for k, v in GATED.items()])
def test_version_gating(check_wdl, src, needles, version):
    text = norm(src)
    positions = [find_pos(text, n) for n in needles]
    lines = {p[0] for p in positions}
    cols = {p[1] for p in positions}
    assert_diag(check_wdl(src), lines, cols, version_re(version))


def test_none_in_1_0_is_an_error(check_wdl):
    """WDL 1.0 has no `None` literal (added in 1.1): either a gating error or an unknown name."""
    src = """
version 1.0

workflow w {
  Int? x = None
}
"""
    line, col = find_pos(norm(src), "None")
    assert_diag(check_wdl(src), line, col, (version_re("1.1"), "unknown name"))


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2", "1.3"])
def test_same_construct_accepted_from_its_version(check_wdl, version):
    """The gated constructs above are fine from the version that introduced them on."""
    parts = ["version %s" % version, "", "workflow w {"]
    if version >= "1.1":
        parts.append("  Int? n = None")
    if version >= "1.2":
        parts += ["  Int x = 2 ** 3", "  String s = <<<", "    text", "  >>>"]
    if version >= "1.3":
        parts += ["  if (true) {", "    Int a = 1", "  } else {", "    Int b = 2", "  }"]
    parts.append("}")
    assert_ok(check_wdl("\n".join(parts) + "\n"))


# ============================================================================================
# WDL draft-2 (no `version` line) as Cromwell and miniwdl read it; block comments; documents
# that hold nothing; `version` as a name.
# ============================================================================================

from conftest import diagnostics  # noqa: E402


def _warnings(proc):
    return diagnostics(proc.stderr, "warning")


DRAFT2_FULL = """
/* A draft-2 document: no version line,
   block comments, ${} placeholders. */
task greet {
  String who
  String greeting = "hello"   /* a bound declaration: an input with a default */
  Int? times
  command {
    echo "${greeting} ${who}" ${times}
  }
  output {
    String out = read_string(stdout())
  }
}

task heredoc {
  String x
  command <<<
    echo ${x} | tr a-z A-Z
  >>>
  output {
    String out = read_string(stdout())
  }
}

workflow wf {
  String name
  String suffix = "!"
  String full = name + suffix
  call greet as a { input: who = full, }
  call heredoc { input: x = "s${name}" }
  scatter (i in [1, 2]) {
    call greet as many { input: who = "n${i}" }
  }
  output {
    a.out
    heredoc.*
    many.out
  }
}
"""


def test_draft2_document_checks_clean(check_wdl):
    """A draft-2 document using `${}` in strings and both command forms, `/* */` comments, task
    declarations without `input {}`, `call ... as ... { input: ..., }` with a trailing comma and
    untyped `call.out` / `call.*` outputs is valid, with no errors."""
    assert_ok(check_wdl(DRAFT2_FULL))


def test_draft2_string_placeholder_is_an_expression(check_wdl):
    """In draft-2 `${}` inside a quoted string is a placeholder: an unknown name in it is reported
    at the name's position."""
    src = """
workflow wf {
  String s = "a${nope}b"
}
"""
    assert_diag(check_wdl(src), *find_pos(norm(src), "${^nope}"), "nope")


def test_draft2_brace_command_placeholder_is_an_expression(check_wdl):
    """In a draft-2 `command { }` the `${x}` is a placeholder checked against the task's names."""
    src = """
task t {
  String x
  command {
    echo ${x} ${missing}
  }
}
"""
    assert_diag(check_wdl(src), *find_pos(norm(src), "${^missing}"), "missing")


def test_draft2_heredoc_command_dollar_is_a_placeholder(check_wdl):
    """In a draft-2 `command <<< >>>`, unlike 1.x, `${}` is a placeholder too."""
    src = """
task t {
  command <<<
    echo ${undefined_here}
  >>>
}
"""
    assert_diag(check_wdl(src), *find_pos(norm(src), "${^undefined_here}"), "undefined_here")


def test_draft2_tilde_brace_is_literal_text(check_wdl):
    """`~{` opens no placeholder in draft-2: `~{nope}` in a heredoc command and in a string is
    plain text, so a name that does not exist there is no error."""
    src = """
task t {
  String s = "~{nope}"
  command <<<
    echo '~{also_nope}' ${s}
  >>>
}
"""
    assert_ok(check_wdl(src))


def test_tilde_brace_is_a_placeholder_in_1_0(check_wdl):
    """The contrast: the same `~{nope}` in WDL 1.0 is a placeholder and an unknown name."""
    src = """
version 1.0

task t {
  input {
    String s = "~{nope}"
  }
  command <<< echo ~{s} >>>
}
"""
    assert_diag(check_wdl(src), *find_pos(norm(src), "~{^nope}"), "nope")


def test_draft2_block_comments_anywhere(check_wdl):
    """`/* */` comments may span lines, sit between tokens, and hold braces, quotes and a
    `version 1.0` text without effect."""
    src = """
/* version 1.0 */
task /* inline */ t {
  /* { " ' } */
  Int n = /* here too */ 1
  command {
    echo ${n}
  }
  /*
   multi
   line
  */
}
"""
    assert_ok(check_wdl(src))


def test_block_comment_is_an_error_in_1_0(check_wdl):
    """`/* */` comments are draft-2 only: in a 1.0 document `/*` is a syntax error at the `/`."""
    src = """
version 1.0

/* not a comment in 1.0 */
workflow w {
}
"""
    assert_diag(check_wdl(src), *find_pos(norm(src), "/*"))


def test_draft2_untyped_output_of_unknown_member_is_an_error(check_wdl):
    """An untyped `call.out` output names a real output of the call: `a.nope` is an error that
    names `nope`."""
    src = """
task t {
  command { echo hi }
  output {
    String out = "x"
  }
}

workflow wf {
  call t as a
  output {
    a.nope
  }
}
"""
    text = norm(src)
    (line, c1), (_, c2) = find_pos(text, "^a.nope"), find_pos(text, "a.^nope")
    proc = check_wdl(src)
    assert_diag(proc, line, {c1, c2}, "nope")
    assert len(diagnostics(proc.stderr)) == 1, "the one error is reported more than once:\n" + proc.stderr


def test_untyped_outputs_are_an_error_in_1_0(check_wdl):
    """`output { a.out }` without a type is draft-2 only; a 1.0 document gets an error."""
    src = """
version 1.0

task t {
  command <<< >>>
  output {
    String out = "x"
  }
}

workflow wf {
  call t as a
  output {
    a.out
  }
}
"""
    line = find_pos(norm(src), "    ^a.out")[0]
    # the offending `a.out`, or the token after it where a declaration name was expected
    assert_diag(check_wdl(src), {line, line + 1}, None)


@pytest.mark.parametrize("header", ["", "version 1.0\n\n"], ids=["draft-2", "1.0"])
def test_version_as_a_declaration_name_is_plain_in_draft2_and_1_0(check_wdl, header):
    """`version` is an ordinary name in draft-2 and 1.0: as a task declaration and a workflow
    declaration it checks clean, without a warning."""
    if header:
        task = 'task t {\n  input {\n    String version = "1"\n  }\n  command <<< echo ~{version} >>>\n}\n'
    else:
        task = 'task t {\n  String version = "1"\n  command { echo ${version} }\n}\n'
    src = header + task + "\nworkflow w {\n  Int version = 2\n  call t { input: version = \"v\" }\n}\n"
    proc = check_wdl(src)
    assert_ok(proc)
    assert not _warnings(proc), proc.stderr


@pytest.mark.parametrize("version", ["1.1", "1.2", "1.3"])
def test_version_as_a_declaration_name_warns_from_1_1(check_wdl, version):
    """From 1.1 `version` is a keyword: a declaration named `version` is accepted with a warning at
    the name, and is an error under `check --strict`."""
    src = "version %s\n\nworkflow w {\n  Int version = 2\n}\n" % version
    line, col = find_pos(src, "Int ^version")
    proc = check_wdl(src)
    assert_ok(proc)
    assert [(w[1], w[2]) for w in _warnings(proc)] == [(line, col)], proc.stderr
    assert "version" in _warnings(proc)[0][3]
    assert_diag(check_wdl(src, args=("--strict",)), line, col)


# --------------------------------------------------------------------------------------------
# The lexer's modes, token by token: each text mode (quoted string, `<<< >>>` string, `{ }` and
# `<<< >>>` command) jumps to its next placeholder, terminator or newline with one pattern; these
# pin what it stops at, what it steps over, and the position of every token and error.
# --------------------------------------------------------------------------------------------

LEXER_TOKENS = {
    # `\` steps over the next character: `\"` and `\$` are text, `~{` and `${` open placeholders.
    "string-escapes-and-both-placeholders": ("1.0", r'"a\"~{x}\${y}${z}"', [
        ("sbeg", '"', 0), ("stext", 'a\\"', 1), ("phbeg", "~{", 4), ("ident", "x", 6), ("phend", "}", 7),
        ("stext", "\\${y}", 8), ("phbeg", "${", 13), ("ident", "z", 15), ("phend", "}", 16), ("stext", "", 17),
        ("send", '"', 17), ("eof", None, 18)]),
    # Plain strings are read in one match; a lone `~` or `$` sends a string the long way round,
    # with the same tokens.
    "plain-strings-and-a-lone-tilde-and-dollar": ("1.0", '"a~b$c" \'\' "d"', [
        ("sbeg", '"', 0), ("stext", "a~b$c", 1), ("send", '"', 6), ("sbeg", "'", 8), ("stext", "", 9),
        ("send", "'", 9), ("sbeg", '"', 11), ("stext", "d", 12), ("send", '"', 13), ("eof", None, 14)]),
    "draft-2-strings-tilde-is-text-dollar-opens": ("draft-2", """"~{x}" '${y}'""", [
        ("sbeg", '"', 0), ("stext", "~{x}", 1), ("send", '"', 5), ("sbeg", "'", 7), ("stext", "", 8),
        ("phbeg", "${", 8), ("ident", "y", 10), ("phend", "}", 11), ("stext", "", 12), ("send", "'", 12),
        ("eof", None, 13)]),
    "a-quote-ends-only-its-own-kind": ("1.0", """'a"}b' "c'\"""", [
        ("sbeg", "'", 0), ("stext", 'a"}b', 1), ("send", "'", 5), ("sbeg", '"', 7), ("stext", "c'", 8),
        ("send", '"', 10), ("eof", None, 11)]),
    # In a 1.x heredoc command `${` is text, and `>`/`>>` do not end it.
    "heredoc-command-1.0": ("1.0", "command <<< a ${x} ~{y} > b >> c >>>", [
        ("ident", "command", 0), ("cbeg", ">>>", 8), ("ctext", " a ${x} ", 11), ("phbeg", "~{", 19),
        ("ident", "y", 21), ("phend", "}", 22), ("ctext", " > b >> c ", 23), ("cend", ">>>", 33),
        ("eof", None, 36)]),
    # draft-2: `${` is a placeholder there too, and `~{` is text.
    "heredoc-command-draft-2": ("draft-2", "command <<< a ${x} ~{y} >>>", [
        ("ident", "command", 0), ("cbeg", ">>>", 8), ("ctext", " a ", 11), ("phbeg", "${", 14), ("ident", "x", 16),
        ("phend", "}", 17), ("ctext", " ~{y} ", 18), ("cend", ">>>", 24), ("eof", None, 27)]),
    "brace-command-escaped-brace": ("1.0", r"command { echo ${x} \} ~{y} }", [
        ("ident", "command", 0), ("cbeg", "}", 8), ("ctext", " echo ", 9), ("phbeg", "${", 15), ("ident", "x", 17),
        ("phend", "}", 18), ("ctext", " \\} ", 19), ("phbeg", "~{", 23), ("ident", "y", 25), ("phend", "}", 26),
        ("ctext", " ", 27), ("cend", "}", 28), ("eof", None, 29)]),
    "command-keyword-then-a-comment-then-the-brace": ("1.0", "command\n# c\n{ x }", [
        ("ident", "command", 0), ("cbeg", "}", 12), ("ctext", " x ", 13), ("cend", "}", 16), ("eof", None, 17)]),
    "command-as-a-name": ("1.0", "command = 1", [
        ("ident", "command", 0), ("op", "=", 8), ("int", "1", 10), ("eof", None, 11)]),
    "multi-line-string-with-a-string-placeholder": ("1.2", 'x = <<< a ~{"s"} >>>', [
        ("ident", "x", 0), ("op", "=", 2), ("mbeg", "<<<", 4), ("mtext", " a ", 7), ("phbeg", "~{", 10),
        ("sbeg", '"', 12), ("stext", "s", 13), ("send", '"', 14), ("phend", "}", 15), ("mtext", " ", 16),
        ("mend", ">>>", 17), ("eof", None, 20)]),
    "string-in-a-placeholder-in-a-string": ("1.0", '"a~{"b~{c}"}d"', [
        ("sbeg", '"', 0), ("stext", "a", 1), ("phbeg", "~{", 2), ("sbeg", '"', 4), ("stext", "b", 5),
        ("phbeg", "~{", 6), ("ident", "c", 8), ("phend", "}", 9), ("stext", "", 10), ("send", '"', 10),
        ("phend", "}", 11), ("stext", "d", 12), ("send", '"', 13), ("eof", None, 14)]),
    # Braces inside a placeholder are counted: only its own `}` closes it.
    "map-literal-in-a-placeholder": ("1.0", '"~{ {"a": 1}["a"] }"', [
        ("sbeg", '"', 0), ("stext", "", 1), ("phbeg", "~{", 1), ("op", "{", 4), ("sbeg", '"', 5), ("stext", "a", 6),
        ("send", '"', 7), ("op", ":", 8), ("int", "1", 10), ("op", "}", 11), ("op", "[", 12), ("sbeg", '"', 13),
        ("stext", "a", 14), ("send", '"', 15), ("op", "]", 16), ("phend", "}", 18), ("stext", "", 19),
        ("send", '"', 19), ("eof", None, 20)]),
    "comments-hide-braces-and-quotes-but-not-in-strings": ("1.0", '# } "\nx # {\n"a # b" # c', [
        ("ident", "x", 6), ("sbeg", '"', 12), ("stext", "a # b", 13), ("send", '"', 18), ("eof", None, 23)]),
    "draft-2-block-comments": ("draft-2", 'a /* } " */ b /* x', [
        ("ident", "a", 0), ("ident", "b", 12), ("op", "/", 14), ("op", "*", 15), ("ident", "x", 17),
        ("eof", None, 18)]),
    "escaped-newline-in-a-string": ("1.0", '"a\\\nb"', [
        ("sbeg", '"', 0), ("stext", "a\\\nb", 1), ("send", '"', 5), ("eof", None, 6)]),
    "trailing-whitespace-then-eof": ("1.0", "a \n\t ", [("ident", "a", 0), ("eof", None, 5)]),
}

LEXER_ERRORS = {
    "newline-in-a-string": ("1.0", '"a\nb"', "unterminated string", 0),
    "backslash-at-the-end": ("1.0", 'x "abc\\', "unterminated string", 2),
    "unterminated-brace-command": ("1.0", "command { a", "unterminated command section", 8),
    "unterminated-multi-line-string": ("1.2", "x = <<< a >> ", "unterminated multi-line string", 6),
    "bad-character-after-a-comment": ("1.0", "# c\n  @", "unexpected character '@'", 6),
    "unterminated-placeholder": ("1.0", '"~{x', "unterminated placeholder: expected `}`", 4),
}


def _tokenize(dialect, text):
    sprocket = _import_sprocket()
    return sprocket.tokenize(sprocket.Source("t.wdl", text), 0, sprocket.DIALECTS[dialect])


@pytest.mark.parametrize("name", sorted(LEXER_TOKENS))
def test_lexer_modes_token_by_token(name):
    dialect, text, expected = LEXER_TOKENS[name]
    assert _tokenize(dialect, text) == expected


@pytest.mark.parametrize("name", sorted(LEXER_ERRORS))
def test_lexer_errors_and_their_positions(name):
    dialect, text, message, pos = LEXER_ERRORS[name]
    with pytest.raises(_import_sprocket().WdlSyntaxError) as e:
        _tokenize(dialect, text)
    assert (e.value.message, e.value.span.pos) == (message, pos)


@pytest.mark.parametrize("text", ["", "\n\n  \n", "# only a comment\n", "/* only a block comment */\n",
                                  "# one\n/* two\n three */\n"],
                         ids=["empty", "blank", "line-comment", "block-comment", "both-comments"])
def test_empty_document_warns_and_is_an_error_under_strict(wdl, check, text):
    """A document that is empty or holds only comments (a draft-2 document with nothing in it):
    Cromwell ignores it, so `check` accepts it with an EmptyDocument warning (exit 0); under
    `--strict` it is an error, exit 1, reported as `path:LINE:COL: error:` with a caret."""
    path = wdl(text, raw=True)
    proc = check(path)
    assert proc.returncode == 0, proc.stderr
    assert [w[3] for w in _warnings(proc)] == [
        "the document is empty: accepted for compatibility with Cromwell, which ignores it; portable WDL has a "
        "`version` statement, then tasks or a workflow"], proc.stderr
    assert_diag(check("--strict", path), 1, 1, "the document is empty")


def test_empty_document_imported_is_accepted_with_a_warning(check_wdl):
    """An empty `.wdl` file imported by a 1.0 document (left behind in production repositories)
    is no draft-2 document of another version: the importer checks clean, warned; `--strict`
    refuses it."""
    src = 'version 1.0\n\nimport "empty.wdl"\n\nworkflow w {\n}\n'
    proc = check_wdl(src, files={"empty.wdl": ""})
    assert proc.returncode == 0, proc.stderr
    assert [(w[0].rsplit("/", 1)[-1], w[1], w[2]) for w in _warnings(proc)] == [("empty.wdl", 1, 1)], proc.stderr
    assert_diag(check_wdl(src, files={"empty.wdl": ""}, args=("--strict",)), 1, 1, "the document is empty",
                path="empty.wdl")


def _node_classes(sprocket):
    """Every syntax tree node class the module defines."""
    return [c for c in subclasses(sprocket.Node) if c._fields]


def test_every_node_class_children_cover_its_fields():
    """children() is the one traversal of the tree (free_names, iter_nodes, lint, _is_constant):
    for every node class, a node put in any field, bare or inside lists, tuples and dicts, is a
    child, in field order; plain values (names, spans, types, Python literals) are not."""
    sprocket = _import_sprocket()
    classes = _node_classes(sprocket)
    assert {sprocket.Literal, sprocket.Placeholder, sprocket.HintsBlock, sprocket.Decl, sprocket.Task} <= set(classes)
    for cls in classes:
        marks = [sprocket.Ident(None, "m%d" % i) for i in range(2 * len(cls._fields))]
        wrapped = [[("name", marks[2 * i], None), {"k": marks[2 * i + 1], "plain": "text"}]
                   for i in range(len(cls._fields))]
        node = cls(None, *wrapped)
        assert list(node.children()) == marks, cls.__name__
        assert list(cls(None, *["text"] * len(cls._fields)).children()) == [], cls.__name__


def test_every_expression_node_class_is_inferred_and_evaluated():
    """A new expression node kind is added where its own behaviour lives: the checker's _INFER and
    evaluation's _EVAL tables each have an entry for every expression class (Placeholder is
    checked and rendered by its string)."""
    sprocket = _import_sprocket()
    exprs = {c for c in _node_classes(sprocket) if issubclass(c, sprocket.Expr)} - {sprocket.Placeholder}
    assert set(sprocket._INFER) == exprs
    assert set(sprocket._EVAL) == exprs


def test_free_names_reads_every_kind_of_expression():
    """free_names, built on children(), finds the names under every expression kind: placeholders,
    literals of each compound kind, calls, operators, `if`, indexes and member access."""
    sprocket = _import_sprocket()
    src = ('version 1.1\nworkflow w {\n  input {\n    Int a\n  }\n  Int x = if n1 then [n2[n3], n4.m + -n5] else '
           '[length([n6]), select_first([n7])]\n  Map[String, Int] y = {"~{n8}": n9}\n  Object z = object { f: n10 }\n'
           '  Pair[Int, Int] p = (n11, n12)\n}\n')
    doc = sprocket.Parser.for_source(sprocket.Source("t.wdl", src)).document()
    decls = {d.name: d.expr for d in doc.workflow.body}
    names = set()
    for e in decls.values():
        sprocket.free_names(e, names)
    assert names == {"n%d" % i for i in range(1, 13)}
    assert sprocket._names_read(doc.workflow.body) == names
    for text, constant in [('"t"', True), ('"~{a}"', False), ('[1, -2]', True), ('{"k": (1, "v")}', True),
                           ('[1, -a]', False), ('object { f: [a] }', False), ('-(1)', True), ('!true', False)]:
        parser = sprocket.Parser.for_source(sprocket.Source("t.wdl", "version 1.1\n" + text))
        assert sprocket._is_constant(parser.expr()) is constant, text


@pytest.mark.parametrize("parts, command, multiline", [
    (["  \n    a\n      b\n  "], ["a\n  b\n"], ["a\n  b"]),
    (["\n\tx ", "PH", "\n\t  y\\n\n"], ["x ", "PH", "\n  y\\n\n"], ["x ", "PH", "\n  y\n"]),
    (["a\\\n   b", "PH", "  \n   \n  c  "], ["a\\\n   b", "PH", "  \n\n  c  "], ["ab", "PH", "  \n\n  c"]),
    (["   \n", "PH", "\n      q\n   "], ["PH", "\n      q\n"], ["PH", "\n      q"]),
    (["line\\\\\\\n   next"], ["line\\\\\\\n   next"], ["line\\next"]),
    ([], [], []),
], ids=["blank-ends", "placeholder-as-content", "continuation", "placeholder-line", "odd-backslashes", "empty"])
def test_strip_indent_and_strip_multiline(parts, command, multiline):
    """Commands and 1.2 multi-line strings share the common-indentation removal (placeholders count
    as content); a multi-line string also joins continued lines, trims its ends and unescapes."""
    sprocket = _import_sprocket()
    ph = sprocket.Placeholder(None, sprocket.Ident(None, "x"), {})
    given = [ph if p == "PH" else p for p in parts]
    shown = lambda out: ["PH" if p is ph else p for p in out]  # noqa: E731
    assert shown(sprocket.strip_indent(given)) == command
    assert shown(sprocket.strip_multiline(given)) == multiline


_LISTS_WDL = '''version 1.3
enum Color { %s }
struct P { Int a Int b }
task t { input { Int x = 1 Int y = 2 } command <<< >>> meta { m: %s } }
workflow w {
  Array[Int] arr = %s
  Map[String, Int] mp = %s
  Int mx = %s
  Object o = %s
  P p = %s
  call t { %s }
}
'''
_LISTS_GOOD = ["Red, Green,", "[1, 2,]", "[1, 2,]", '{"a": 1,}', "max(1, 2,)", "object { a: 1, }", "P { a: 1, b: 2, }",
               "x = 1, y = 2,"]


@pytest.mark.parametrize("index, bad, line, col, message", [
    (0, "Red Green", 2, 18, "expected `}`, found `Green`"), (1, "[1 2]", 4, 69, "expected `]`, found number `2`"),
    (2, "[1 2]", 6, 23, "expected `]`, found number `2`"), (3, '{"a": 1 "b": 2}', 7, 33, "expected `}`, found a string"),
    (4, "max(1 2)", 8, 18, "expected `)`, found number `2`"), (5, "object { a: 1 b: 2 }", 9, 28, "expected `}`, found `b`"),
    (6, "P { a: 1 b: 2 }", 10, 18, "expected `}`, found `b`"), (7, "x = 1 y = 2", 11, 18, "expected `}`, found `y`"),
], ids=["enum", "meta-array", "array", "map", "call-arguments", "object", "struct", "call-inputs"])
def test_comma_lists_take_a_trailing_comma_and_need_the_others(check_wdl, index, bad, line, col, message):
    """Every comma-separated list of the parser (one comma_list()) accepts a trailing comma and
    stops, with the same message, where a comma is missing."""
    assert_ok(check_wdl(_LISTS_WDL % tuple(_LISTS_GOOD)))
    given = list(_LISTS_GOOD)
    given[index] = bad
    assert_diag(check_wdl(_LISTS_WDL % tuple(given), name="bad.wdl"), line, col, message)


def test_parser_and_checker_compatibility_rules_are_one_lenient(check_wdl):
    """Dialect.lenient is the one answer to "is this construct accepted?": a construct the parser
    meets (`Int??`) and one the checker meets (an Int where a String is declared) each warn under
    their rule's name, and both are errors under --strict; a construct the version lacks outright
    (a duplicate meta key in 1.2) is an error either way."""
    src = "version 1.1\n\nworkflow w {\n  input {\n    Int?? a\n  }\n  String s = 1\n}\n"
    proc = check_wdl(src)
    assert proc.returncode == 0, proc.stderr
    assert [(w[1], w[2], w[3].split(":")[0]) for w in _warnings(proc)] == [
        (5, 9, "`Int??` is read as `Int?` for compatibility with Cromwell; portable WDL writes one `?`"),
        (7, 14, "`s` is declared `String` but given a `Int`")], proc.stderr
    assert_diag(check_wdl(src, name="strict.wdl", args=("--strict",)), 5, 9, "expected a declaration name, found `?`")
    strict = check_wdl(src.replace("Int??", "Int?"), name="strict2.wdl", args=("--strict",))
    assert_diag(strict, 7, 14, "`s` is declared `String` but given a value of type `Int`")
    assert not _warnings(strict), strict.stderr
    dup = check_wdl("version 1.2\n\nworkflow w {\n  meta {\n    a: 1\n    a: 2\n  }\n}\n", name="dup.wdl")
    assert_diag(dup, 6, 5, "meta key `a` is given twice")
