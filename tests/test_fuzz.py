"""Fuzz `check`: thousands of mutated WDL documents, each checked in-process.

For every mutant: ``sprocket.main(["check", path])`` returns 0 or 1 and raises nothing; the
output never holds "internal error" or a traceback; exit 1 comes with at least one
``path:LINE:COL: error:`` line, and exit 0 with none.

Seeds are the conformance corpus' .wdl files (../shared) plus a few documents embedded here,
so the test still runs without shared/; a second test mutates draft-2 documents only (Cromwell's
centaur workflows in ../shared and an embedded one).  Mutations (fixed seed, reproducible): token deletion,
insertion of a WDL token, replacement, swap of adjacent tokens, duplication of a token run,
and truncation.  A failing mutant is saved under the test's tmp dir and named in the failure.
"""

import contextlib
import io
import os
import random
import re
import shutil
import sys
import time

from conftest import REPO, shared_dir

N_MUTANTS = int(os.environ.get("SPROCKET_FUZZ_MUTANTS", "5000"))  # raise it for a longer local run
N_DRAFT2 = int(os.environ.get("SPROCKET_FUZZ_DRAFT2_MUTANTS", "2000"))  # draft-2 seeds only
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


def _seeds(tmp_path):
    """[(directory holding the seed and its siblings, seed text)], deterministic order."""
    seeds = []
    emb = tmp_path / "embedded"
    emb.mkdir()
    for name, text in EMBEDDED_SEEDS.items():
        (emb / name).write_text(text)
    for name in sorted(EMBEDDED_SEEDS):
        if name not in ("lib.wdl", "empty.wdl"):
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


def _mutate(rng, text):
    tokens = TOKEN_RE.findall(text)
    solid = lambda: [i for i, t in enumerate(tokens) if not t.isspace()]  # noqa: E731
    ops = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.choice(("delete", "insert", "replace", "swap", "duplicate", "truncate"))
        idx = solid()
        if not idx:
            op = "insert"
        if op == "delete":
            i = rng.choice(idx)
            ops.append("delete %r" % tokens[i])
            del tokens[i]
        elif op == "insert":
            i = rng.randrange(len(tokens) + 1)
            tok = rng.choice(VOCAB)
            if rng.random() < 0.5:
                tok = " " + tok + " "
            ops.append("insert %r" % tok)
            tokens.insert(i, tok)
        elif op == "replace":
            i = rng.choice(idx)
            tok = rng.choice(VOCAB)
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


def _check(sprocket, path):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = sprocket.main(["check", str(path)])
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


def test_fuzz_check(tmp_path):
    _fuzz(tmp_path, _seeds(tmp_path), N_MUTANTS)


def test_fuzz_check_draft2(tmp_path):
    """The same over draft-2 documents (no `version` line): a mode of the same lexer and parser."""
    _fuzz(tmp_path, _draft2_seeds(tmp_path), N_DRAFT2)


def _fuzz(tmp_path, seeds, N_MUTANTS):
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import sprocket

    rng = random.Random(SEED)
    assert seeds
    failures_dir = tmp_path / "failures"
    failures = []
    outcomes = {0: 0, 1: 0}
    start = time.monotonic()
    for n in range(N_MUTANTS):
        directory, text = seeds[n % len(seeds)]
        mutant, ops = _mutate(rng, text)
        path = directory / ("mutant%05d.wdl" % n)
        path.write_text(mutant, encoding="utf-8")
        try:
            rc, output = _check(sprocket, path)
            problem = _problem(rc, output)
        except BaseException as exc:  # noqa: B902 -- anything escaping main() is a bug
            if isinstance(exc, KeyboardInterrupt):
                raise
            rc, output = None, "%s: %s" % (type(exc).__name__, exc)
            problem = "exception escaped main(): " + output
        if problem:
            failures_dir.mkdir(exist_ok=True)
            keep = failures_dir / path.name
            shutil.copy(path, keep)
            for sibling in directory.glob("*.wdl"):  # imports, so it reproduces
                if not sibling.name.startswith("mutant") and not (failures_dir / sibling.name).exists():
                    shutil.copy(sibling, failures_dir / sibling.name)
            failures.append((keep, problem, ops, mutant, output))
            if len(failures) >= MAX_REPORTED:
                break
        else:
            outcomes[rc] += 1
        path.unlink()
    elapsed = time.monotonic() - start
    if failures:
        parts = ["%d of %d mutants broke `check` (saved in %s):" % (len(failures), n + 1, failures_dir)]
        for keep, problem, ops, mutant, output in failures[:5]:
            parts.append("\n--- %s: %s\n    mutations: %s\n    output: %s\n    source (start):\n%s"
                         % (keep, problem, "; ".join(ops), output.strip()[:600],
                            "\n".join("      " + x for x in mutant[:800].splitlines())))
        raise AssertionError("\n".join(parts))
    assert outcomes[0] + outcomes[1] == N_MUTANTS
    # The mutants must mostly be rejected; a fuzzer whose mutants all pass tests nothing.
    assert outcomes[1] > N_MUTANTS // 3, outcomes
    print("fuzz: %d mutants from %d seeds in %.1f s (%d accepted, %d rejected)"
          % (N_MUTANTS, len(seeds), elapsed, outcomes[0], outcomes[1]))
