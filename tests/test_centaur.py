"""Cromwell's own end-to-end tests (centaur) run through `sprocket.py run` on the local backend.

The cases are Cromwell's ``standardTestCases/*.test`` files in ../shared (or $SPROCKET_SHARED):
each is a HOCON document naming a workflow (``files { workflow: ..., inputs: ..., imports: [...] }``)
and the metadata Cromwell must report, among it the expected outputs as flattened keys:

    metadata {
      "outputs.wf.result": 6                  # workflow output `result`
      "outputs.wf.call.out": "hello"          # a call output (a draft-2 workflow without an output
                                              # section, or an old-style `call.out` / `call.*` output)
      "outputs.wf.arr.0": "1"                 # element 0 of an array; `.left`/`.right` of a pair;
      "outputs.wf.m.key": "2"                 # `.key` of a map or object
    }

tests/centaur_local.txt lists the draft-2 cases that can run on a plain machine, and why. For each
one the test stages the workflow (imports next to it under their base names, as centaur's imports
zip does; the inputs file as inputs.json), runs

    python3 sprocket.py run -s --no-call-cache WORKFLOW [inputs.json] -o OUT

and checks that the run succeeds and that every expected ``outputs.<wf>.<name>`` matches the printed
JSON (keys ``<wf>.<name>``), compared as centaur does: as text (Cromwell's metadata holds ``3``,
``"3"``, ``true``, ``null`` and ``5.5`` alike), numbers by value, arrays element by element, and a
path expectation (``<<WORKFLOW_ROOT>>/...`` or a path) by its file name. Any failure of the engine is a
test failure: nothing here is skipped except when the reference material is absent.
"""

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import REPO, ok, shared_dir, sprocket_run

CASES_REL = Path("workflows/realworld/broadinstitute__cromwell/centaur/src/main/resources/standardTestCases")
LIST = REPO / "tests" / "centaur_local.txt"
VERSION_RE = re.compile(r"^[ \t]*version[ \t]+\S+", re.M)

pytestmark = pytest.mark.usefixtures("isolated_config")  # no user configuration or cache leaks into a run

if shared_dir() is None:
    pytest.skip("shared/ reference directory not found (expected ../shared next to the repo, or set "
                "SPROCKET_SHARED); the centaur cases live in shared/%s" % CASES_REL, allow_module_level=True)


# --------------------------------------------------------------------------------------------
# a HOCON subset reader (enough for centaur's .test files)
# --------------------------------------------------------------------------------------------


class HoconError(ValueError):
    pass


class Unquoted(str):
    """An unquoted HOCON scalar: ``6``, ``true``, ``null``, ``Succeeded``, ``a/b.wdl``."""


def parse_hocon(text):
    """Parse the HOCON subset centaur's .test files use into dicts, lists and strings.

    Supported: a root object with or without braces; ``key: value``, ``key = value`` and
    ``key { ... }``; quoted and unquoted keys (a quoted key with dots stays one key; an unquoted
    dotted key is not split into a path, none of the files needs it); nested objects (a repeated
    object key merges); arrays with commas and/or newlines; quoted strings with JSON escapes;
    triple-quoted strings; unquoted values up to the end of the line, ``,``, ``}`` or ``]``; value
    concatenation (``~>"..."``); ``${...}`` substitutions kept as text (never resolved); ``#`` and
    ``//`` comments. Scalars are returned as ``str`` (``Unquoted`` for unquoted ones).
    """
    pos = 0
    n = len(text)

    def err(msg):
        raise HoconError("line %d: %s" % (text.count("\n", 0, pos) + 1, msg))

    def at_comment():
        return text[pos] == "#" or text.startswith("//", pos)

    def skip_ws(newlines=True):
        nonlocal pos
        while pos < n:
            c = text[pos]
            if at_comment():
                while pos < n and text[pos] != "\n":
                    pos += 1
            elif c in " \t\r\ufeff" or (newlines and c == "\n"):
                pos += 1
            else:
                break

    def quoted():
        nonlocal pos
        if text.startswith('"""', pos):
            end = text.find('"""', pos + 3)
            if end < 0:
                err("unterminated triple-quoted string")
            while end + 3 < n and text[end + 3] == '"':  # `"""ab""""` ends at the last three quotes
                end += 1
            s = text[pos + 3:end]
            pos = end + 3
            return s
        pos += 1
        out = []
        while True:
            if pos >= n or text[pos] == "\n":
                err("unterminated string")
            c = text[pos]
            if c == '"':
                pos += 1
                return "".join(out)
            if c == "\\":
                e = text[pos + 1:pos + 2]
                if e == "u":
                    out.append(chr(int(text[pos + 2:pos + 6], 16)))
                    pos += 6
                    continue
                out.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(e, e))
                pos += 2
                continue
            out.append(c)
            pos += 1

    def key():
        nonlocal pos
        if pos < n and text[pos] == '"':
            return quoted()
        start = pos
        while pos < n and text[pos] not in ' \t\r\n:={}[],"#' and not text.startswith("//", pos):
            pos += 1
        if pos == start:
            err("expected a key, got %r" % text[pos:pos + 20])
        return text[start:pos]

    def simple_value():
        nonlocal pos
        parts = []  # (quoted?, text); whitespace between the pieces is kept
        while pos < n and text[pos] not in "\n,}]" and not at_comment():
            if text[pos] == '"':
                parts.append((True, quoted()))
                continue
            start = pos
            while pos < n and text[pos] not in '\n,}]"' and not at_comment():
                if text.startswith("${", pos):  # a substitution, kept as text
                    end = text.find("}", pos)
                    pos = end + 1 if end > 0 else n
                    continue
                pos += 1
            parts.append((False, text[start:pos]))
        if parts and not parts[0][0]:
            parts[0] = (False, parts[0][1].lstrip(" \t\r"))
        if parts and not parts[-1][0]:
            parts[-1] = (False, parts[-1][1].rstrip(" \t\r"))
        s = "".join(p for _, p in parts)
        return Unquoted(s) if all(not q for q, _ in parts) else s

    def value():
        skip_ws()
        if pos >= n:
            err("expected a value")
        if text[pos] == "{":
            return obj(True)
        if text[pos] == "[":
            return arr()
        return simple_value()

    def arr():
        nonlocal pos
        pos += 1
        items = []
        while True:
            skip_ws()
            if pos >= n:
                err("unterminated array")
            if text[pos] == "]":
                pos += 1
                return items
            if text[pos] == ",":
                pos += 1
                continue
            items.append(value())

    def obj(braced):
        nonlocal pos
        if braced:
            pos += 1
        d = {}
        while True:
            skip_ws()
            if pos >= n:
                if braced:
                    err("unterminated object")
                return d
            c = text[pos]
            if c == "}":
                if not braced:
                    err("unexpected `}`")
                pos += 1
                return d
            if c == ",":
                pos += 1
                continue
            k = key()
            skip_ws(newlines=False)
            if pos < n and text[pos] in ":=":
                pos += 1
                v = value()
            elif pos < n and text[pos] == "{":
                v = obj(True)
            else:
                err("expected `:`, `=` or `{` after key %r" % k)
            d[k] = _merge(d[k], v) if isinstance(v, dict) and isinstance(d.get(k), dict) else v

    skip_ws()
    if pos < n and text[pos] == "{":
        result = obj(True)
        skip_ws()
        if pos < n:
            err("text after the root object")
        return result
    return obj(False)


def _merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# --------------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------------


def cases_dir():
    shared = shared_dir()
    return shared / CASES_REL if shared is not None else None


def listed_cases():
    """(test file name, reason) for every line of centaur_local.txt."""
    cases = []
    for line in LIST.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, reason = line.partition("\t")
        cases.append((name.strip(), reason.strip()))
    return cases


class Case:
    """One centaur .test file: its workflow, inputs, imports and expected outputs."""

    def __init__(self, path):
        self.path = Path(path)
        self.doc = parse_hocon(self.path.read_text(encoding="utf-8"))
        root = self.path.parent
        files = self.doc.get("files") or {}
        if not files.get("workflow"):
            raise HoconError("%s: no files.workflow" % self.path.name)
        self.workflow = root / files["workflow"]
        self.inputs = root / files["inputs"] if files.get("inputs") else None
        imports = files.get("imports") or []
        self.imports = [root / p for p in (imports if isinstance(imports, list) else [imports])]
        self.metadata = self.doc.get("metadata") or {}
        # "outputs.wf.name" -> expected value; the key without "outputs." is sprocket's output key
        self.expected = {k[len("outputs."):]: v for k, v in self.metadata.items() if k.startswith("outputs.")}

    def stage(self, into):
        """Copy the workflow, its imports (by base name) and inputs (as inputs.json) into ``into``."""
        into.mkdir(parents=True, exist_ok=True)
        wdl = into / self.workflow.name
        shutil.copyfile(self.workflow, wdl)
        for imp in self.imports:
            shutil.copyfile(imp, into / imp.name)
        inputs = None
        if self.inputs is not None:
            inputs = into / "inputs.json"
            shutil.copyfile(self.inputs, inputs)
        return wdl, inputs


# --------------------------------------------------------------------------------------------
# comparing outputs as centaur does
# --------------------------------------------------------------------------------------------


def flatten(outputs):
    """{key: value} for every output and every element/member below it, Cromwell-metadata style:
    ``k.0``, ``k.1`` for arrays, ``k.left``/``k.right`` for pairs, ``k.name`` for maps and objects."""
    flat = {}

    def walk(key, value):
        flat[key] = value
        if isinstance(value, list):
            for i, v in enumerate(value):
                walk("%s.%d" % (key, i), v)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk("%s.%s" % (key, k), v)

    for k, v in outputs.items():
        walk(k, v)
    return flat


def as_text(value):
    """A JSON output value as Cromwell's flat metadata writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def _number(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def mismatch(expected, actual):
    """None when ``actual`` (from sprocket's JSON) matches the centaur expectation, else why not."""
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return "expected an array of %d, got %r" % (len(expected), actual)
        if len(actual) != len(expected):
            return "expected %d elements %r, got %d: %r" % (len(expected), expected, len(actual), actual)
        for i, (e, a) in enumerate(zip(expected, actual)):
            why = mismatch(e, a)
            if why:
                return "element %d: %s" % (i, why)
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return "expected an object %r, got %r" % (expected, actual)
        for k, e in expected.items():
            if k not in actual:
                return "member %r missing from %r" % (k, actual)
            why = mismatch(e, actual[k])
            if why:
                return "member %r: %s" % (k, why)
        return None
    expected = str(expected)
    if expected.startswith("~>"):  # centaur: the rest is a JSON value
        return mismatch(json.loads(expected[2:]), actual)
    text = as_text(actual)
    if text == expected:
        return None
    en, an = _number(expected), _number(text)
    if en is not None and an is not None and not isinstance(actual, (str, bool)) \
            and math.isclose(en, an, rel_tol=1e-9, abs_tol=1e-12):
        return None
    if "<<" in expected or expected.startswith("/"):  # a path: compare the file name
        want = expected.rstrip("/").rsplit("/", 1)[-1]
        if isinstance(actual, str) and "<<" not in want and os.path.basename(actual.rstrip("/")) == want:
            return None
    return "expected %r, got %r" % (expected, actual)


def compare(expected, outputs):
    """Every mismatch between the expected ``<wf>.<name>`` values and the outputs JSON."""
    flat = flatten(outputs)
    problems = []
    for key, want in expected.items():
        if key not in flat:
            problems.append("%s: missing (outputs are %s)" % (key, sorted(outputs)))
            continue
        why = mismatch(want, flat[key])
        if why:
            problems.append("%s: %s" % (key, why))
    return problems


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------

CASES = listed_cases()


def _require_cases():
    root = cases_dir()
    if not root.is_dir():
        pytest.skip("centaur test cases not found at %s" % root)
    return root


def test_list_is_well_formed():
    names = [name for name, _ in CASES]
    assert len(names) >= 20, "centaur_local.txt lists only %d cases" % len(names)
    assert len(set(names)) == len(names), "a case is listed twice"
    for name, reason in CASES:
        assert name.endswith(".test"), name
        assert reason, "%s is listed without a reason" % name


def test_hocon_reader():
    doc = parse_hocon('''
        # comment
        name: demo   // comment
        testFormat = workflowsuccess
        backends: [Local, "LocalNoDocker"]
        files {
          workflow: demo/demo.wdl
          imports: [
            a.wdl,
            b.wdl
          ]
        }
        files { inputs: demo/demo.inputs }
        metadata {
          "outputs.wf.x": 6
          "outputs.wf.s": "a \\"q\\"\\n${BLAH}"
          "outputs.wf.j": ~>"[1, 2]"
          "outputs.wf.arr": ["1", 2]
          message: """{
            "raw": "text"
          }"""
          status: Succeeded
        }
    ''')
    assert doc["name"] == "demo" and doc["testFormat"] == "workflowsuccess"
    assert doc["backends"] == ["Local", "LocalNoDocker"]
    assert doc["files"] == {"workflow": "demo/demo.wdl", "imports": ["a.wdl", "b.wdl"], "inputs": "demo/demo.inputs"}
    md = doc["metadata"]
    assert md["outputs.wf.x"] == "6" and isinstance(md["outputs.wf.x"], Unquoted)
    assert md["outputs.wf.s"] == 'a "q"\n${BLAH}' and not isinstance(md["outputs.wf.s"], Unquoted)
    assert md["outputs.wf.j"] == '~>[1, 2]'
    assert md["outputs.wf.arr"] == ["1", "2"]
    assert md["message"].startswith("{\n") and '"raw": "text"' in md["message"]
    assert md["status"] == "Succeeded"


def test_comparison_rules():
    outputs = {"wf.i": 3, "wf.f": 5.5, "wf.b": True, "wf.n": None, "wf.a": [1, None],
               "wf.p": {"left": 1, "right": "x"}, "wf.file": "/run/x/call-a/out.txt", "wf.s": "3"}
    ok_cases = {"wf.i": "3", "wf.f": "5.5", "wf.b": "true", "wf.n": "null", "wf.a.0": "1", "wf.a.1": "null",
                "wf.a": ["1", "null"], "wf.p.left": "1", "wf.p.right": "x", "wf.s": "3",
                "wf.file": "<<WORKFLOW_ROOT>>/call-a/execution/out.txt"}
    assert compare(ok_cases, outputs) == []
    assert compare({"wf.i": "4"}, outputs)
    assert compare({"wf.s": "3.0"}, outputs)  # a String is compared as text
    assert compare({"wf.a": ["1"]}, outputs)
    assert compare({"wf.missing": "1"}, outputs)
    assert compare({"wf.file": "<<WORKFLOW_ROOT>>/call-a/execution/other.txt"}, outputs)
    assert compare({"wf.f": "5.50000000001"}, {"wf.f": 5.5}) == []


def test_listed_cases_parse_and_are_draft2():
    """The selection holds: every listed case parses, is draft-2, succeeds and expects outputs."""
    root = _require_cases()
    for name, _ in CASES:
        path = root / name
        assert path.is_file(), "%s is listed but not in %s" % (name, root)
        case = Case(path)
        assert case.workflow.is_file(), case.workflow
        for f in [case.workflow] + case.imports:
            assert not VERSION_RE.search(f.read_text(encoding="utf-8")), "%s has a version line" % f
        assert str(case.doc.get("testFormat", "")).lower() == "workflowsuccess", name
        assert case.metadata.get("status", "Succeeded") == "Succeeded", name
        assert case.expected, "%s expects no outputs" % name


@pytest.mark.parametrize("name", [name for name, _ in CASES])
def test_centaur_case(name, tmp_path):
    root = _require_cases()
    case = Case(root / name)
    assert case.expected, "%s has no `outputs.` expectations" % name
    wdl, inputs = case.stage(tmp_path / "wf")
    args = ["-s", "--no-call-cache", wdl] + ([inputs] if inputs else []) + ["-o", tmp_path / "out"]
    proc = sprocket_run(*args, cwd=tmp_path / "wf", timeout=120)
    outputs, _ = ok(proc)
    problems = compare(case.expected, outputs)
    assert not problems, "%s: outputs differ from centaur's expectations:\n  %s\noutputs:\n%s" % (
        name, "\n  ".join(problems), json.dumps(outputs, indent=2))
