"""Fuzz `check`: thousands of mutated WDL documents, each checked in-process.

For every mutant: ``sprocket.main(["check", path])`` returns 0 or 1 and raises nothing; the
output never holds "internal error" or a traceback; exit 1 comes with at least one
``path:LINE:COL: error:`` line, and exit 0 with none.

Seeds are the conformance corpus' .wdl files (../shared) plus a few documents embedded here,
so the test still runs without shared/; a second test mutates draft-2 documents only (Cromwell's
centaur workflows in ../shared and an embedded one).  Mutations (fixed seed, reproducible): token deletion,
insertion of a WDL token, replacement, swap of adjacent tokens, duplication of a token run,
and truncation.  A failing mutant is saved under the test's tmp dir and named in the failure.

Issue 16's constructs (engine regex syntax, the compatibility leniencies, what the spec allows,
the stricter checks, paths relative to the document) have seeds of their own, mutated again by
a third test with a vocabulary that adds their pieces, their own names and literals swapped for
one another and single characters the lexer turns on: each mutant is checked plainly and with
`--strict` (which never accepts what `check` refuses), and `format_document` either refuses it
(WdlError) or formats it; one that checks clean formats idempotently into a document that checks
clean, and `inputs`/`validate` take it.  A fourth test runs the mutants of task-less workflows of
the same constructs that check clean, in-process.  A fifth builds random regular expressions into
`sub`/`matches`/`find` calls: `check` must flag exactly the patterns that do not compile (under
`--strict` also those beyond POSIX ERE), and the standard library's implementations must return
a value or raise EvalError for each, at run time.
"""

import contextlib
import io
import os
import random
import re
import shutil
import time

import pytest

from conftest import _import_sprocket, shared_dir

N_MUTANTS = int(os.environ.get("SPROCKET_FUZZ_MUTANTS", "5000"))  # raise it for a longer local run
N_DRAFT2 = int(os.environ.get("SPROCKET_FUZZ_DRAFT2_MUTANTS", "2000"))  # draft-2 seeds only
N_ISSUE16 = int(os.environ.get("SPROCKET_FUZZ_ISSUE16_MUTANTS", "1500"))  # issue 16's seeds, also --strict
N_RUN = int(os.environ.get("SPROCKET_FUZZ_RUN_MUTANTS", "2000"))  # task-less workflows, run when they check
N_REGEX = int(os.environ.get("SPROCKET_FUZZ_REGEX_PATTERNS", "6000"))  # random regexes in sub/matches/find
SEED = int(os.environ.get("SPROCKET_FUZZ_SEED", "1234"))
MAX_SEED_BYTES = 6000  # keep each check fast; larger seeds add little
MAX_REPORTED = 15

TOKEN_RE = re.compile(r"""
    \s+                                   # whitespace (kept, so the text round-trips)
  | \#[^\n]*                              # comment
  | "(?:[^"\\\n]|\\.)*"                   # double-quoted string
  | '(?:[^'\\\n]|\\.)*'                   # single-quoted string
  | <<< | >>> | ~\{ | \$\{ | \*\* | [=!<>]= | && | \|\|
  | [A-Za-z_][A-Za-z0-9_]*
  | \d+(?:\.\d*)?(?:[eE][-+]?\d+)?
  | .
""", re.X | re.S)

VOCAB = [
    "{", "}", "(", ")", "[", "]", ",", ":", "=", "==", "!=", "<", ">", "<=", ">=", "+", "-", "*",
    "/", "%", "**", "&&", "||", "!", "?", ".", '"', "'", "~{", "${", "<<<", ">>>", "\\", "@", "$",
    "~", "#", "\n", " ", "version", "1.0", "1.1", "1.2", "1.3", "task", "workflow", "struct", "enum",
    "import", "as", "alias", "call", "after", "input", "input:", "output", "command", "runtime",
    "requirements", "hints", "meta", "parameter_meta", "scatter", "in", "if", "then", "else", "true",
    "false", "None", "null", "object", "env", "left", "right", "Int", "Float", "String", "Boolean",
    "File", "Directory", "Array", "Map", "Pair", "Object", "Array[Int]", "Map[String, Int]", "Int?",
    "x", "y", "task.cpu", "0", "1", "-1", "3.14", "1e9", "9223372036854775808", '"s"', '"~{x}"',
    "length", "select_first", "read_lines", "stdout", "sep", "min", "chunk", "split", "value",
    "defined", "(1, 2)", "[1, 2]", '{"a": 1}', "/*", "*/", "call.*", "??", '"${x}"',
]
# Pieces of issue 16's constructs, added to VOCAB for their seeds' mutants.
ISSUE16_VOCAB = VOCAB + [
    "sub", "matches", "find", '"(?:a|b)+?"', '"\\d{2,}"', '"(?i)x"', '"(?<=a)b"', '"(a)\\1"', '"[[:alpha:]]"',
    "default=", "sep=", "true=", "false=", '"\\u12"', '"\\u00e9"', '"\\U0001F600"', "${<<<", ">>>}",
    "<<<a ~{x}>>>", "hints", "input", "output", "localization_optional", "allow_nested_inputs",
    "write_tsv", '["h"]', "join_paths", '"../x"', '"data.txt"', "Map[File, String]", "Pair[String?, Int]",
    "(None, 1)", "[None]", "P { a: 1 }", '{"a": 1}', "Runtime {\"cpu\": 1}", "Color.Red", "value",
    "G.M", "H.Q", "task.return_code", "task.attempt", "suffix", "unzip", "if c then i else", "+ b",
    '"--x " +', "[x, []]", "select_first", "flatten", "Array[File?]+", "cutadapt", "lib.hello",
]

DRAFT2_SEED = """import "lib2.wdl" as lib

task hello {
  String who
  Int n = 2
  Array[String] extra = []
  /* a block
     comment */
  command <<<
    echo "hi ${who}" ${sep=" " extra} ~{not_a_placeholder}
    for i in $(seq ${n}); do echo $i; done
  >>>
  output {
    String out = read_string(stdout())
    Array[String] lines = read_lines(stdout())
  }
  runtime {
    docker: "ubuntu:latest"
    continueOnReturnCode: true
    disks: "local-disk 10 SSD"
  }
  meta {
    author: "me"
  }
}

workflow wf {
  String who
  Int count = 3
  Array[Int] xs = range(count)
  String version = "1"
  scatter (x in xs) {
    call hello as h { input: who = who + x, n = x, }
  }
  if (count > 1) {
    call lib.t2 { input: s = "${who}-${version}" }
  }
  output {
    h.out
    h.*
    t2.out
    Array[String] all = h.out
  }
}
"""

DRAFT2_LIB = """task t2 {
  String s
  command { echo ${s} }
  output { String out = read_string(stdout()) }
}
"""

EMBEDDED_SEEDS = {
    "seed_1_0.wdl": """version 1.0

import "lib.wdl" as lib

struct Sample {
  String name
  Array[File]+ reads
}

task count {
  input {
    Sample sample
    Int factor = 1
    String? label
  }
  Int doubled = factor * 2
  command <<<
    echo ~{sample.name} ~{length(sample.reads) * factor} ~{default="x" label}
  >>>
  output {
    Int n = read_int(stdout())
  }
  runtime {
    docker: "ubuntu:20.04"
    memory: "~{doubled} GB"
  }
  meta {
    author: "me"
    tags: ["a", {b: null}]
  }
  parameter_meta {
    sample: {help: "sample"}
  }
}

workflow main {
  input {
    Array[Sample] samples
    Boolean go = true
  }
  scatter (s in samples) {
    call count { input: sample = s, factor = 2 }
    if (go && count.n > 1) {
      Int big = count.n
    }
  }
  call lib.hello { input: who = "w" }
  output {
    Array[Int] counts = count.n
    Array[Int?] bigs = big
    String msg = hello.msg
  }
}
""",
    "lib.wdl": """version 1.0

task hello {
  input {
    String who
  }
  command {
    echo "hello ${who}" ~{who}
  }
  output {
    String msg = read_string(stdout())
  }
}
""",
    # what Cromwell and miniwdl accept beyond the spec (issue 16): compatibility warnings
    "seed_compat_1_0.wdl": """version 1.0

import "lib.wdl" as lib
import "empty.wdl"

workflow compat {
  input {
    File? x
    Array[File]? files
    File file
    Boolean? b
    Map[String, String] m = {"k": "1.5"}
  }
  Int n
  Int r = round(m["k"])
  String s = sep(",", suffix(".x", ["a"]))
  Float size_x = size(select_first([x, []]))
  Array[File] fs = select_first([files, file])
  String flag = "~{"--b " + b}"
  call lib.hello
  call lib.hello as again { input: who = "a", who = "b" }
  output {
    Int o = n + r
  }
}
""",
    "seed_compat_1_1.wdl": """version 1.1

struct Runtime {
  Int cpu
  String docker
}

workflow compat {
  input {
    Int? i
    Boolean c = true
    Array[Array[File?]+]+ nested
  }
  Runtime rt = Runtime {"cpu": 2, "docker": "ubuntu"}
  String? either = if c then i else "none"
  Array[File?] flat = flatten(nested)
}
""",
    "empty.wdl": "",
    # 1.0 leniencies: body declarations without values, a namespace shared with a structs-only
    # import, 1.1 functions, Boolean + String, if-then-else String?/String, duplicate and unbound call inputs
    "seed_compat_body_1_0.wdl": r"""version 1.0

import "tasks/cutadapt.wdl"
import "structs/cutadapt.wdl"

task report {
  input {
    String who
    Int n
  }
  Int extra
  command <<<
    echo ~{who} ~{n + extra} ~{sep=", " prefix("-", [who])}
  >>>
  output {
    String o = read_string(stdout())
  }
}

workflow body {
  input {
    Reads r
    Boolean? verbose
    Int? count
  }
  String label
  String count_text = if defined(count) then count else "none"
  String msg = "~{"--verbose " + verbose}" + true
  Array[String] tail = suffix(".txt", [label])
  Pair[Array[String], Array[Int]] un = unzip([("a", 1)])
  call cutadapt.cutadapt { input: r = r }
  call report { input: who = label, who = "again", n = 1 }
  call report as partial { input: who = label }
  output {
    String o = cutadapt.o
    String p = partial.o
  }
}
""",
    "tasks/cutadapt.wdl": r"""version 1.0

struct Reads {
  String name
}

task cutadapt {
  input {
    Reads r
    Int cores
  }
  command <<< echo ~{r.name} >>>
  output {
    String o = read_string(stdout())
  }
}
""",
    "structs/cutadapt.wdl": r"""version 1.0

struct Reads {
  String name
}
""",
    # regexes in the syntax Rust, Java and Python agree on (literal and computed patterns)
    "seed_regex_1_2.wdl": r"""version 1.2

task split_reads {
  input {
    String name = "sample_R1_001.fastq.gz"
    Array[String] ids = ["ID=abc;X=1", "id=Q"]
  }
  String base = sub(name, "_R(?:1|2)_\\d{3}\\.fastq\\.gz$", "")
  String first = sub(name, "^(.*?)\\..*$", "\\1")
  Boolean bam = matches(name, "(?i)\\.bam$")
  String? id = find(ids[0], "ID=[^;\\s]+")
  String? named = find(name, "(?<lane>[0-9]+)-(?P<n>x)")
  Boolean posix = matches(name, "[[:alpha:]_]+\\.f(ast)?q")
  String lazy = sub("<a><b>", "<.+?>", "")
  String hexed = sub("ABC", "\\x41\\x{42}\\u0043", "z")
  command <<<
    echo "~{base}" ~{sub(first, "[\\t\\x41-\\x43]+", "-")} ~{if bam then "bam" else "x"}
  >>>
  output {
    String out = sub(read_string(stdout()), "\\s+$", "")
    String b = base
    Boolean found = defined(find(out, "a{2,}?"))
  }
}

workflow regexes {
  input {
    String sample = "S1"
    String pattern = "(?m)^b$"
  }
  call split_reads { name = sample + "_R2_002.fastq.gz" }
  Boolean dynamic = matches(sample, pattern)
  output {
    String base = split_reads.b
    String upper = sub(sample, "(?i)s(?-i:1)", "X")
  }
}
""",
    # what the spec allows (${} in multi-line strings, None inside compound literals, lexical
    # join_paths), the stricter checks (placeholder options, hints, \u escapes, write_tsv headers) and
    # paths relative to the document (data.txt beside it)
    "seed_spec_1_2.wdl": r"""version 1.2

struct Row {
  String a
  Int b
}

task tsv {
  input {
    Array[Array[String]] rows = [["a", "1"], ["b", "2"]]
    Array[Row] structs = [Row { a: "x", b: 1 }]
    File data = "data.txt"
    Boolean flag = false
    Array[String]? maybe
  }
  File table = write_tsv(rows, true, ["name", "n"])
  File srows = write_tsv(structs)
  Array[String] lines = read_lines("data.txt")
  String escaped = "\u00e9 \U0001F600 \\u12 \x41 \101"
  command <<<
    cat ~{table} ~{data} ~{sep=" " select_first([maybe, []])} ~{true="--yes" false="--no" flag}
    echo ~{default="none" if flag then "y" else None} ~{escaped}
  >>>
  output {
    String text = <<<
      a ${<<<inner ~{"x"}>>>} b ~{"c"}
        ${"d"} \
      end
    >>>
    Array[String] out = read_lines(stdout())
    File kept = "data.txt"
  }
  requirements {
    container: "ubuntu:latest"
    return_codes: [0, 1]
  }
  hints {
    max_cpu: 2
    inputs: input {
      data: hints {
        localization_optional: true
      }
    }
    outputs: output {
      out: hints {
        compress: false
      }
    }
  }
}

workflow spec {
  input {
    Int n = 2
  }
  Array[Pair[String?, Int]] pairs = [(None, 1), ("a", 2)]
  Array[Pair[String?, Float]] mixed = [(None, 1), ("s", 2.5)]
  Map[String, Array[Int?]] m = {"a": [None], "b": [1, None]}
  Array[Array[String?]] nested = [[None], ["x"], []]
  String joined = join_paths("a/b", "../c.txt")
  File doc_relative = "data.txt"
  File? missing = "no-such-file.txt"
  call tsv { flag = n > 1 }
  output {
    String text = tsv.text
    Int first = pairs[1].right
  }
  hints {
    allow_nested_inputs: true
  }
}
""",
    "data.txt": "x\n",
    # enum choices with compound values, Map[File, X] looked up with a path, task.return_code
    "seed_enum_1_3.wdl": r"""version 1.3

struct P {
  Int a
  String s
}

enum G {
  M = P { a: 1, s: "m" },
  N = P { a: 2, s: "n" }
}

enum H {
  Q = (1, "x"),
  R = (2, "y")
}

enum Tags[Array[String]] {
  Short = ["a"],
  Long = ["a", "b", "c"]
}

enum Plain {
  One,
  Two,
}

task t {
  input {
    G g = G.M
    Plain p = Plain.Two
    File f = "data.txt"
    Map[File, String] by_path = {"data.txt": "d"}
  }
  command <<<
    echo ~{p} ~{value(g).s} ~{by_path[f]} ~{task.attempt}
  >>>
  output {
    String out = read_string(stdout())
    Int rc = task.return_code
  }
  requirements {
    cpu: 1
  }
}

workflow enums {
  input {
    H h = H.R
    Tags tags = Tags.Long
  }
  Int a = value(G.N).a
  Pair[Int, String] hv = value(h)
  Array[String] ts = value(tags)
  call t { g = G.N }
  scatter (x in ts) {
    String y = "~{x}-~{h}"
  }
  output {
    String out = t.out
    Array[String] ys = y
    Boolean same = h == H.R
  }
}
""",
    "seed_1_1.wdl": """version 1.1

struct Person {
  String name
  Int age
}

task greet {
  input {
    Person p
    Array[String] xs = ["a", "b"]
    Boolean flag = true
  }
  command {
    echo ${sep=" " xs} ~{true="y" false="n" flag} ~{p.name}
  }
  output {
    String out = read_string(stdout())
  }
}

workflow w {
  input {
    Int? maybe = None
    Map[String, Int] m = {"a": 1}
  }
  Person p = Person { name: "a", age: 1 + 2 * 3 }
  Int sel = select_first([maybe, min(1, 2)])
  Pair[Int, String] pr = (1, "x")
  Array[String] ks = keys(m)
  call greet { input: p }
  output {
    String o = greet.out
    Int l = pr.left
    Boolean b = if sel > 2 then true else false
  }
}
""",
    "seed_1_2.wdl": """version 1.2

task t {
  input {
    env String mode = "fast"
    Directory d
    Int n = 2 ** 3
  }
  command <<<
    echo "$mode" ~{n} ~{d}
  >>>
  output {
    String s = <<<
      multi ~{n}
        line
    >>>
  }
  requirements {
    container: "ubuntu:latest"
    cpu: n
    memory: "1 GiB"
  }
  hints {
    short_task: true
    inputs: input {
      d: hints {
        localization_optional: true
      }
    }
  }
}

workflow w {
  input {
    Directory d
  }
  call t { d }
  call t as t2 after t { d, n = 1 }
  Array[Array[Int]] ch = chunk([1, 2, 3], 2)
  output {
    String s = t2.s
  }
  hints {
    allow_nested_inputs: true
  }
}
""",
    "seed_1_3.wdl": """version 1.3

enum Color {
  Red,
  Green
}

enum Level[Int] {
  Low = 1,
  High = 10,
}

workflow w {
  input {
    Color c = Color.Red
    Int n = 3
  }
  Int lv = value(Level.High)
  Array[String] parts = split("a,b", ",")
  if (n > 5) {
    Int a = 1
  } else if (c == Color.Green) {
    Int b = 2
  } else {
    Int z = 3
  }
  output {
    Int? aa = a
    String name = "~{c}"
  }
}
""",
}


# Workflows without tasks whose values are issue 16's run-time meanings: their mutants that check
# clean are run in-process (fast: nothing is started).
RUN_SEEDS = {
    "run_1_1.wdl": r"""version 1.1

struct Runtime {
  Int cpu
  String docker
}

workflow run11 {
  input {
    File? x
    Array[String]? names
    String name = "a"
    Boolean? b = true
    Int? count
    Map[String, String] m = {"k": "1.5"}
  }
  Int n = 3
  Int r = round(m["k"])
  String s = sep(",", suffix(".x", ["a", name]))
  Array[String] all = select_first([names, [name]])
  Array[String] none = select_first([names, []])
  String flag = "~{"--b " + b}" + true
  String? count_text = if defined(count) then count else "none"
  Runtime rt = Runtime {"cpu": 2, "docker": "ubuntu"}
  String base = sub(name + "_R1_001.fastq.gz", "_R(?:1|2)_\\d{3}\\.fastq\\.gz$", "")
  Pair[Array[String], Array[Int]] un = unzip([("a", 1), ("b", 2)])
  output {
    String o = s + flag + select_first([count_text, ""]) + base
    Int cpu = rt.cpu + r + n
    Array[String] firsts = un.left
  }
}
""",
    "run_1_2.wdl": r"""version 1.2

workflow run12 {
  input {
    Int? i
    Boolean c = true
    File data = "data.txt"
    String sample = "S1"
  }
  String s = <<<
    a ${<<<inner ~{sample}>>>} b ~{"c"}
      ${"d"}
  >>>
  Array[Pair[String?, Int]] pairs = [(None, 1), ("a", 2)]
  Map[String, Array[Int?]] m = {"a": [None], "b": [1, None]}
  String joined = join_paths("a/b", "../c.txt")
  String? e = if c then i else "none"
  Array[String] lines = read_lines("data.txt")
  File? missing = "no-such-file.txt"
  String escaped = "\u00e9 \U0001F600 \\u12 \x41 \101"
  File table = write_tsv([["a", "1"], ["b", "2"]], true, ["name", "n"])
  Boolean bam = matches(sample + ".BAM", "(?i)\\.bam$")
  String? id = find("ID=abc;X=1", "ID=[^;\\s]+")
  String lazy = sub("<a><b>", "<.+?>", "-")
  output {
    String o = s + joined + escaped + select_first([e, "x"])
    Int first = pairs[1].right
    Array[String] read = lines
    Boolean gone = defined(missing)
    Array[String] t = read_lines(table)
    String found = select_first([id, lazy])
  }
}
""",
    "run_1_3.wdl": r"""version 1.3

struct P {
  Int a
  String s
}

enum G {
  M = P { a: 1, s: "m" },
  N = P { a: 2, s: "n" }
}

enum H {
  Q = (1, "x"),
  R = (2, "y")
}

enum Tags[Array[String]] {
  Short = ["a"],
  Long = ["a", "b", "c"]
}

workflow run13 {
  input {
    H h = H.R
    Tags tags = Tags.Long
    G g = G.M
    File f = "data.txt"
  }
  Map[File, String] by_path = {"data.txt": "d"}
  Int a = value(G.N).a
  Pair[Int, String] hv = value(h)
  scatter (x in value(tags)) {
    String y = "~{x}-~{h}-~{value(g).s}"
  }
  if (a > 1) {
    String big = by_path[f]
  } else {
    String small = "s"
  }
  output {
    Array[String] ys = y
    Boolean same = h == H.R
    String? b = big
    Int left = hv.left
  }
}
""",
    "data.txt": "x\n",
}


def _seeds(tmp_path):
    """[(directory holding the seed and its siblings, seed text)], deterministic order."""
    seeds = []
    emb = tmp_path / "embedded"
    emb.mkdir()
    for name, text in EMBEDDED_SEEDS.items():
        (emb / name).parent.mkdir(exist_ok=True)
        (emb / name).write_text(text)
    for name in sorted(EMBEDDED_SEEDS):
        if name.startswith("seed_"):  # the others are what they import or read
            seeds.append((emb, EMBEDDED_SEEDS[name]))
    shared = shared_dir()
    cases = shared / "conformance" / "cases" if shared else None
    if cases and cases.is_dir():
        seen = set()
        for n, case_dir in enumerate(sorted(p for p in cases.glob("*/*") if p.is_dir())):
            wdls = sorted(case_dir.glob("*.wdl"))
            fresh = [(w, w.read_text(encoding="utf-8", errors="replace")) for w in wdls]
            fresh = [(w, t) for w, t in fresh if t not in seen and len(t) <= MAX_SEED_BYTES]
            if not fresh:
                continue
            local = tmp_path / ("case%03d" % n)
            local.mkdir()
            for w in wdls:  # siblings, so imports of the mutant resolve
                shutil.copy(w, local / w.name)
            for w, text in fresh:
                seen.add(text)
                seeds.append((local, text))
    return seeds


def _draft2_seeds(tmp_path):
    """The embedded draft-2 document and the draft-2 workflows of Cromwell's centaur tests."""
    emb = tmp_path / "draft2"
    emb.mkdir()
    (emb / "lib2.wdl").write_text(DRAFT2_LIB)
    seeds = [(emb, DRAFT2_SEED), (emb, DRAFT2_LIB)]
    shared = shared_dir()
    centaur = shared / "workflows" / "realworld" / "broadinstitute__cromwell" / "centaur" if shared else None
    if centaur and centaur.is_dir():
        for n, w in enumerate(sorted(centaur.rglob("*.wdl"))):
            text = w.read_text(encoding="utf-8", errors="replace")
            if len(text) > MAX_SEED_BYTES or re.search(r"^\s*version\s", text, re.M):
                continue
            local = tmp_path / ("d2_%03d" % n)
            local.mkdir()
            for sibling in w.parent.glob("*.wdl"):  # so imports of the mutant resolve
                shutil.copy(sibling, local / sibling.name)
            seeds.append((local, text))
    return seeds


ATOM_RE = re.compile(r"""[A-Za-z_]\w*|\d|["']""")  # a name, a number or a string


LEXER_CHARS = '\\"\'~${}<>#\nu0'  # what the lexer's modes turn on (strings, placeholders, heredocs, escapes)


def _mutate(rng, text, vocab=VOCAB, atoms=None):
    """`atoms` (names and literals): also replace an atom by another, which mostly still parses,
    and insert or delete one character the lexer turns on, inside strings and commands too."""
    tokens = TOKEN_RE.findall(text)
    solid = lambda: [i for i, t in enumerate(tokens) if not t.isspace()]  # noqa: E731
    ops = []
    kinds = ("delete", "insert", "replace", "swap", "duplicate", "truncate")
    if atoms:
        kinds += ("atom",) * 6 + ("char",) * 2
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.choice(kinds)
        idx = solid()
        if not idx:
            op = "insert"
        if op == "char":
            joined = "".join(tokens)
            at = rng.randrange(len(joined) + 1)
            if rng.random() < 0.5 and at < len(joined) and joined[at] in LEXER_CHARS:
                ops.append("delete character %d %r" % (at, joined[at]))
                joined = joined[:at] + joined[at + 1:]
            else:
                c = rng.choice(LEXER_CHARS)
                ops.append("insert %r at character %d" % (c, at))
                joined = joined[:at] + c + joined[at:]
            tokens = TOKEN_RE.findall(joined)
        elif op == "atom":
            idx = [i for i in idx if ATOM_RE.match(tokens[i])] or idx
            i = rng.choice(idx)
            tok = rng.choice(atoms)
            ops.append("replace %r with %r" % (tokens[i], tok))
            tokens[i] = tok
        elif op == "delete":
            i = rng.choice(idx)
            ops.append("delete %r" % tokens[i])
            del tokens[i]
        elif op == "insert":
            i = rng.randrange(len(tokens) + 1)
            tok = rng.choice(vocab)
            if rng.random() < 0.5:
                tok = " " + tok + " "
            ops.append("insert %r" % tok)
            tokens.insert(i, tok)
        elif op == "replace":
            i = rng.choice(idx)
            tok = rng.choice(vocab)
            ops.append("replace %r with %r" % (tokens[i], tok))
            tokens[i] = tok
        elif op == "swap":
            i = rng.choice(idx)
            later = [j for j in idx if j > i]
            if later:
                j = later[0]
                ops.append("swap %r %r" % (tokens[i], tokens[j]))
                tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "duplicate":
            i = rng.randrange(len(tokens))
            k = rng.randint(1, 6)
            ops.append("duplicate %r" % "".join(tokens[i:i + k]))
            tokens[i:i] = tokens[i:i + k]
        else:
            joined = "".join(tokens)
            cut = rng.randrange(len(joined) + 1)
            ops.append("truncate at %d" % cut)
            tokens = TOKEN_RE.findall(joined[:cut])
    return "".join(tokens), ops


def _check(sprocket, path, *flags):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = sprocket.main(["check"] + list(flags) + [str(path)])
    return rc, out.getvalue() + err.getvalue()


ERROR_LINE = re.compile(r":\d+:\d+: error: ", re.M)


def _problem(rc, output):
    if "internal error" in output.lower():
        return "internal error reported"
    if "Traceback" in output:
        return "traceback printed"
    if rc not in (0, 1):
        return "exit code %r" % (rc,)
    if rc == 1 and not ERROR_LINE.search(output):
        return "exit 1 without a `path:LINE:COL: error:` line"
    if rc == 0 and ERROR_LINE.search(output):
        return "exit 0 but an error was printed"
    return None


@pytest.mark.slow
def test_fuzz_check(tmp_path):
    _fuzz(tmp_path, _seeds(tmp_path), N_MUTANTS)


@pytest.mark.slow
def test_fuzz_check_draft2(tmp_path):
    """The same over draft-2 documents (no `version` line): a mode of the same lexer and parser."""
    _fuzz(tmp_path, _draft2_seeds(tmp_path), N_DRAFT2)


ISSUE16_SEEDS = ("seed_compat_1_0.wdl", "seed_compat_1_1.wdl", "seed_compat_body_1_0.wdl", "seed_regex_1_2.wdl",
                 "seed_spec_1_2.wdl", "seed_enum_1_3.wdl")


@pytest.mark.slow
def test_fuzz_check_strict_and_format_over_issue16_constructs(tmp_path):
    """Issue 16's seeds mutated with their constructs' pieces: `check` and `check --strict` behave
    (--strict never accepts what `check` refuses), and `format` refuses the mutant or formats it;
    one that checks clean formats idempotently into a document that still checks clean, and
    `inputs` and `validate` take it without an internal error."""
    emb = [d for d, _ in _seeds(tmp_path) if d.name == "embedded"][0]
    seeds = [(emb, EMBEDDED_SEEDS[name]) for name in ISSUE16_SEEDS]
    _fuzz(tmp_path, seeds, N_ISSUE16, vocab=ISSUE16_VOCAB, strict=True, fmt=True, borrow=True)


@pytest.mark.slow
def test_fuzz_run_workflows_of_issue16_constructs(tmp_path):
    """Mutants of task-less workflows holding issue 16's run-time meanings (regexes, coercions, enum
    values, multi-line strings, document-relative paths): each that checks clean is run in-process,
    and succeeds or fails with a message (exit 1), never an internal error."""
    sprocket = _import_sprocket()
    rng = random.Random(SEED)
    here = tmp_path / "run"
    here.mkdir()
    for name, text in RUN_SEEDS.items():
        (here / name).write_text(text)
    seeds = [RUN_SEEDS[name] for name in sorted(RUN_SEEDS) if name.endswith(".wdl")]
    owns = [sorted({tok for tok in TOKEN_RE.findall(text) if not tok.isspace()}) for text in seeds]
    failures, ran, succeeded = [], 0, 0
    for n in range(N_RUN):
        text, own = seeds[n % len(seeds)], owns[n % len(seeds)]
        vocab = ISSUE16_VOCAB + own
        mutant, ops = _mutate(rng, text, vocab, [tok for tok in vocab if ATOM_RE.match(tok)])
        path = here / ("mutant%05d.wdl" % n)
        path.write_text(mutant, encoding="utf-8")
        try:
            rc, output = _check(sprocket, path)
            problem = _problem(rc, output)
            if not problem and rc == 0:
                ran += 1
                rc, out, err = _run_command(sprocket, "run", str(path), "-o", str(tmp_path / "out"), "--no-call-cache")
                output = out + err
                succeeded += rc == 0
                if "internal error" in output.lower() or "Traceback" in output or rc not in (0, 1):
                    problem = "`run` exited %r" % (rc,)
                elif rc == 1 and "error" not in output:
                    problem = "`run` exited 1 without an error message"
        except Exception as exc:  # noqa: B902 -- anything escaping main() is a bug
            problem, output = "exception escaped", "%s: %s" % (type(exc).__name__, exc)
        if problem:  # the mutant stays in the test's tmp dir
            failures.append("%s: %s\n    mutations: %s\n    output: %s"
                            % (path, problem, "; ".join(ops), output[-800:]))
            if len(failures) >= MAX_REPORTED:
                break
    assert not failures, "\n\n".join(failures[:5])
    assert succeeded > 0, (ran, succeeded)  # some mutants must get as far as running
    print("fuzz: %d mutants, %d checked clean and ran, %d succeeded" % (N_RUN, ran, succeeded))


def _fuzz(tmp_path, seeds, n_mutants, vocab=VOCAB, strict=False, fmt=False, borrow=False):
    """`borrow`: the vocabulary also holds each seed's own tokens, and names and literals are
    replaced by one another, so more mutants parse and reach the type checker."""
    sprocket = _import_sprocket()
    owns = [sorted({tok for tok in TOKEN_RE.findall(text) if not tok.isspace()}) if borrow else [] for _, text in seeds]
    atoms = [[tok for tok in vocab + own if ATOM_RE.match(tok)] if borrow else None for own in owns]
    rng = random.Random(SEED)
    assert seeds
    failures_dir = tmp_path / "failures"
    failures = []
    outcomes = {0: 0, 1: 0}
    start = time.monotonic()
    for n in range(n_mutants):
        directory, text = seeds[n % len(seeds)]
        mutant, ops = _mutate(rng, text, vocab + owns[n % len(seeds)], atoms[n % len(seeds)])
        path = directory / ("mutant%05d.wdl" % n)
        path.write_text(mutant, encoding="utf-8")
        try:
            rc, output = _check(sprocket, path)
            problem = _problem(rc, output)
            if not problem and strict:
                strict_rc, output = _check(sprocket, path, "--strict")
                problem = _problem(strict_rc, output)
                if not problem and strict_rc < rc:
                    problem = "`check --strict` accepts what `check` refuses"
                problem = problem and "--strict: " + problem
            if not problem and fmt:
                problem = _format_problem(sprocket, path, rc)
            if not problem and fmt and rc == 0:
                problem = _inputs_problem(sprocket, path)
        except BaseException as exc:  # noqa: B902 -- anything escaping main() is a bug
            if isinstance(exc, KeyboardInterrupt):
                raise
            rc, output = None, "%s: %s" % (type(exc).__name__, exc)
            problem = "exception escaped: " + output
        if problem:
            failures_dir.mkdir(exist_ok=True)
            keep = failures_dir / path.name
            shutil.copy(path, keep)
            for sibling in directory.iterdir():  # what it imports or reads, so it reproduces
                if not sibling.name.startswith("mutant") and not (failures_dir / sibling.name).exists():
                    (shutil.copytree if sibling.is_dir() else shutil.copy)(sibling, failures_dir / sibling.name)
            failures.append((keep, problem, ops, mutant, output))
            if len(failures) >= MAX_REPORTED:
                break
        else:
            outcomes[rc] += 1
        for done in [path] + [path.with_name(path.stem + suffix) for suffix in ("_formatted.wdl", ".json")]:
            if done.exists():
                done.unlink()
    elapsed = time.monotonic() - start
    if failures:
        parts = ["%d of %d mutants broke `check` (saved in %s):" % (len(failures), n + 1, failures_dir)]
        for keep, problem, ops, mutant, output in failures[:5]:
            parts.append("\n--- %s: %s\n    mutations: %s\n    output: %s\n    source (start):\n%s"
                         % (keep, problem, "; ".join(ops), output.strip()[:600],
                            "\n".join("      " + x for x in mutant[:800].splitlines())))
        raise AssertionError("\n".join(parts))
    assert outcomes[0] + outcomes[1] == n_mutants
    # The mutants must mostly be rejected; a fuzzer whose mutants all pass tests nothing.
    assert outcomes[1] > n_mutants // 3, outcomes
    # ... and some accepted: one whose mutants all fail never reaches the checker's later stages.
    assert outcomes[0] > 0, outcomes
    print("fuzz: %d mutants from %d seeds in %.1f s (%d accepted, %d rejected)"
          % (n_mutants, len(seeds), elapsed, outcomes[0], outcomes[1]))


def _format_problem(sprocket, path, rc):
    """What is wrong with formatting the mutant at `path`, whose `check` exited `rc`; None if nothing."""
    try:
        text = sprocket.format_document(sprocket.read_source(str(path)))
    except sprocket.WdlError:
        return "`format` refuses a document `check` accepts" if rc == 0 else None
    if rc != 0:
        return None
    formatted = path.with_name(path.stem + "_formatted.wdl")
    formatted.write_text(text, encoding="utf-8")
    if sprocket.format_document(sprocket.read_source(str(formatted))) != text:
        return "formatting twice changes it"
    again, output = _check(sprocket, formatted)
    if again != 0:
        return "the formatted document does not check clean:\n" + output
    return None


def _run_command(sprocket, *argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = sprocket.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _inputs_problem(sprocket, path):
    """A mutant that checks clean: `inputs` lists its inputs (or says why not), and `validate` of
    the template it writes, and of no inputs at all, accepts or refuses with a message (the
    template's placeholders are type names), never an internal error."""
    rc, template, err = _run_command(sprocket, "inputs", str(path))
    runs = [("inputs", rc, err)]
    given = path.with_name(path.stem + ".json")
    for text in ([template] if rc == 0 else []) + ["{}"]:
        given.write_text(text, encoding="utf-8")
        rc, out, err = _run_command(sprocket, "validate", str(path), str(given))
        runs.append(("validate " + text[:60], rc, out + err))
    for what, rc, output in runs:
        if "internal error" in output.lower() or "Traceback" in output or rc not in (0, 1):
            return "`%s`: exit %r\n%s" % (what, rc, output[-800:])
        if rc == 1 and "error" not in output:
            return "`%s`: exit 1 without an error message" % what
    return None


# -- regular expressions -------------------------------------------------------------------------

REGEX_ALPHABET = list("ab()[]{}|*+?.^$\\-:,=!<>&~Pkdswbzx0123456789\"'") + [
    "(?:", "(?i)", "(?-i)", "(?m)", "(?s)", "(?i:", "(?<=", "(?<!", "(?=", "(?!", "(?>", "(?#", "(?P<n>", "(?<n>",
    "(?P=n)", "\\k<n>", "[[:alpha:]]", "[[:digit:]", "[^", "\\u00", "\\u0041", "\\x{4", "\\x41", "{2,3}", "{,2}",
    "{2,}?", "*?", "+?", "??", "*+", "\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "\\b", "\\B", "\\A", "\\z", "\\Z",
    "\\p{L}", "\\1", "\\<", "\\>", "&&", "[a-", "-]", "{", "}",
]
REGEX_TEXTS = ["", "ab12 (x)", "sample_R1_001.fastq.gz", "A\nb\nc", "<a><b>", "ID=abc;X=1", "\u00e9\u00e9 xx"]
REGEX_REPLACEMENTS = ["", "x", "\\1", "\\2", "\\9", "\\\\", "$1", "\\g<1>", "\\0", "&", "\\n"]
REGEX_FUNCTIONS = {"1.0": ("sub",), "1.1": ("sub",), "1.2": ("sub", "matches", "find"),
                   "1.3": ("sub", "matches", "find")}
REGEX_DECL = {"sub": "String r%d = sub(s, %s, \"x\")", "matches": "Boolean r%d = matches(s, %s)",
              "find": "String? r%d = find(s, %s)"}
REGEX_PER_DOCUMENT = 25
REGEX_MAX_PIECES = 12


def _wdl_string(text):
    """A WDL string literal whose value is `text`."""
    for c in '\\"~$':
        text = text.replace(c, "\\" + c)
    return '"%s"' % text


def test_fuzz_regex_patterns_check_and_run(tmp_path):
    """Random regular expressions over the engines' syntax, each in a `sub`/`matches`/`find` call of
    1.0-1.3 documents: `check` errs at exactly the patterns that do not compile (`--strict` also at
    those beyond POSIX ERE) and never crashes; at run time `sub`, `matches`, `find` and `split`
    give a value of their type or an EvalError for every pattern, whatever the text and replacement."""
    sprocket = _import_sprocket()
    rng = random.Random(SEED)
    work = tmp_path / "work"
    work.mkdir()
    ctx = sprocket.EvalContext(str(work), str(tmp_path), sprocket.DIALECTS["1.2"])
    failures = []
    documents = 0
    for first in range(0, N_REGEX, REGEX_PER_DOCUMENT):
        version = sorted(REGEX_FUNCTIONS)[documents % len(REGEX_FUNCTIONS)]
        decls, invalid, extended = [], set(), set()
        for k in range(min(REGEX_PER_DOCUMENT, N_REGEX - first)):
            pattern = "".join(rng.choice(REGEX_ALPHABET) for _ in range(rng.randint(1, REGEX_MAX_PIECES)))
            line = 7 + k  # the declaration's line in the document below
            try:
                if sprocket.translate_regex(pattern)[1]:
                    extended.add(line)
            except sprocket.EvalError:
                invalid.add(line)
            fn = rng.choice(REGEX_FUNCTIONS[version])
            decls.append(REGEX_DECL[fn] % (k, _wdl_string(pattern)))
            problem = _regex_run_problem(sprocket, ctx, rng, pattern)
            if problem:
                failures.append("run time, pattern %r: %s" % (pattern, problem))
        path = tmp_path / ("regex%04d.wdl" % documents)
        path.write_text("version %s\n\nworkflow w {\n  input {\n    String s = \"ab12 (x)\"\n  }\n%s\n}\n"
                        % (version, "\n".join("  " + d for d in decls)), encoding="utf-8")
        documents += 1
        for flags, expected in (((), invalid), (("--strict",), invalid | extended)):
            try:
                rc, output = _check(sprocket, path, *flags)
            except Exception as exc:  # noqa: B902 -- anything escaping main() is a bug
                failures.append("%s %s: %s: %s" % (path, flags, type(exc).__name__, exc))
                continue
            problem = _problem(rc, output)
            erred = {int(m.group(1)) for m in re.finditer(r":(\d+):\d+: error: ", output)}
            if not problem and erred != expected:
                problem = "errors at lines %s, expected at %s" % (sorted(erred), sorted(expected))
            if problem:  # the document stays in the test's tmp dir
                failures.append("%s %s: %s\n%s" % (path, " ".join(flags), problem, output[:800]))
        if len(failures) >= MAX_REPORTED:
            break
    assert not failures, "\n\n".join(failures[:8])


def _regex_run_problem(sprocket, ctx, rng, pattern):
    """What is wrong with the standard library's regex functions given `pattern`; None if nothing."""
    text = rng.choice(REGEX_TEXTS)
    calls = (("sub", [text, pattern, rng.choice(REGEX_REPLACEMENTS)], str), ("matches", [text, pattern], bool),
             ("find", [text, pattern], (str, type(None))), ("split", [text, pattern], list))
    for name, args, kind in calls:
        try:
            result = sprocket.IMPLS[name](ctx, args)
        except sprocket.EvalError:
            continue
        except Exception as exc:  # noqa: B902 -- anything but EvalError is a bug
            return "%s(%r): %s: %s" % (name, args, type(exc).__name__, exc)
        if not isinstance(result, kind):
            return "%s(%r) gave %r" % (name, args, result)
    return None
