"""The YAML reader (sprocket.py section 16, beside the TOML reader) and YAML inputs files.

What is promised (issue 22 items 1 and 2):

* ``_yaml_loads(text, path)`` reads the subset of YAML 1.2 that inputs files and ``sprocket test``
  files use into dict (in order), list, str, int, float, bool and None: block mappings and
  sequences (``- key: v`` compact mappings, a sequence at its key's indentation), flow ``[...]``
  and ``{...}`` (nested, over several lines), plain, single- and double-quoted scalars (every
  escape), block scalars ``|`` and ``>`` with ``-``/``+`` chomping and an indentation digit,
  comments, the core schema (``yes``/``no``/``on``/``off`` are strings), one document
  (``---``, ``...``). Duplicate keys are an error.
* Anchors, aliases, tags, directives, complex keys and several documents fail with
  ``path:line:col: error:``, a caret, and a message naming the construct.
* With ``spans=True`` mappings are ``YamlMap`` (``.span``, ``.spans[key]``, ``.value_spans[key]``)
  and sequences ``YamlList`` (``.span``, ``.spans[i]``): where each key and item is.
* ``@inputs.yml``/``@inputs.yaml`` (and such a path without ``@``) are inputs files wherever
  ``@inputs.json`` is (``run``, ``validate``); relative paths in them resolve against the file's
  directory; a bad one is ``path:line:col: error:`` with a caret.
* ``yaml_dumps`` writes what ``_yaml_loads`` reads back to the same values (strings quoted where
  needed, also where a YAML 1.1 reader would take them for booleans, numbers or dates), and
  ``sprocket inputs --yaml`` prints the template with it. On the conformance corpus, every
  ``inputs.json`` survives the round trip, and cases run with YAML inputs give the same outputs.

Each accepted document is cross-checked against PyYAML (with YAML 1.2 core-schema resolvers)
where PyYAML happens to be importable; it is never required.
"""

import json
import math
import re
import shlex
import sys

import pytest

from conftest import (REPO, _import_sprocket, assert_diag, fails, ok, run_conformance, shared_dir, sprocket_argv,
                      sprocket_cmd, sprocket_run, write)

sprocket = _import_sprocket()

INF = float("inf")
NAN = float("nan")

# (name, document, expected value)
YAML_CASES = [
    ("block_mapping", "a: 1\nb: two\n", {"a": 1, "b": "two"}),
    ("nested_block_mappings", "a:\n  b:\n    c: 1\n  d: 2\ne: 3\n", {"a": {"b": {"c": 1}, "d": 2}, "e": 3}),
    ("block_sequence", "- 1\n- two\n- 3.5\n", [1, "two", 3.5]),
    ("compact_mappings_in_sequence", "- name: a\n  tags: [x]\n- name: b\n  n: 2\n",
     [{"name": "a", "tags": ["x"]}, {"name": "b", "n": 2}]),
    ("sequence_at_its_keys_indentation", "key:\n- a\n- b\nother: 1\n", {"key": ["a", "b"], "other": 1}),
    ("sequence_indented_under_key", "key:\n  - a\n  - b\n", {"key": ["a", "b"]}),
    ("nested_sequences", "- - a\n  - b\n- - c\n", [["a", "b"], ["c"]]),
    ("sequence_of_mappings_of_sequences", "t:\n  - name: x\n    inputs:\n      n:\n      - 1\n      - 2\n",
     {"t": [{"name": "x", "inputs": {"n": [1, 2]}}]}),
    ("empty_values_are_null", "a:\nb: 1\nc:\n", {"a": None, "b": 1, "c": None}),
    ("empty_sequence_entries", "-\n- 1\n-\n", [None, 1, None]),
    ("entry_on_the_next_line", "-\n  a: 1\n  b: 2\n", [{"a": 1, "b": 2}]),
    ("flow_sequence", "[1, two, 'three', \"four\"]", [1, "two", "three", "four"]),
    ("flow_mapping", "{a: 1, b: [x, y]}", {"a": 1, "b": ["x", "y"]}),
    ("nested_flow", "a: [[1, 2], {b: {c: [d]}}, []]\n", {"a": [[1, 2], {"b": {"c": ["d"]}}, []]}),
    ("multi_line_flow", "a: [\n  1,  # one\n  2,\n]\nb: {\n  c: 1,\n  d: 2 }\n", {"a": [1, 2], "b": {"c": 1, "d": 2}}),
    ("flow_trailing_comma", "[a, b, ]", ["a", "b"]),
    ("json_document", '{"a": [1, 2.5, true, null, "s"], "b": {"c":"d"}}',
     {"a": [1, 2.5, True, None, "s"], "b": {"c": "d"}}),
    ("flow_mapping_key_without_value", "{a, b: 1}", {"a": None, "b": 1}),
    ("flow_pair_in_sequence", "[a: 1, b]", [{"a": 1}, "b"]),
    ("flow_plain_with_colon", "[http://x.org/a, a:b]", ["http://x.org/a", "a:b"]),
    ("plain_scalars", "a: hello world\nb: x#y\nc: http://x.org/p?q=1#frag\nd: -x\ne: ?x\nf: a:b\n",
     {"a": "hello world", "b": "x#y", "c": "http://x.org/p?q=1#frag", "d": "-x", "e": "?x", "f": "a:b"}),
    ("plain_multi_line_folded", "a: one\n  two\n\n  three\nb: 1\n", {"a": "one two\nthree", "b": 1}),
    ("top_level_plain_multi_line", "one\ntwo\n", "one two"),
    ("single_quoted", "a: 'it''s # not a comment'\nb: ''\n", {"a": "it's # not a comment", "b": ""}),
    ("single_quoted_multi_line", "a: 'one\n  two\n\n  three '\n", {"a": "one two\nthree "}),
    ("double_quoted_escapes", r'a: "\0\a\b\t\	\n\v\f\r\e\ \"\/\\\N\_\L\P"' + "\n",
     {"a": "\0\a\b\t\t\n\v\f\r\x1b \"/\\\x85\xa0\u2028\u2029"}),
    ("double_quoted_hex_escapes", r'a: "\x41\u00e9\U0001F600"' + "\n", {"a": "A\u00e9\U0001F600"}),
    ("double_quoted_surrogate_pair", r'a: "\ud83d\ude00"' + "\n", {"a": "\U0001F600"}),
    ("double_quoted_multi_line", 'a: "one\n  two\n\n  three"\n', {"a": "one two\nthree"}),
    ("double_quoted_escaped_line_break", 'a: "one\\\n    two"\n', {"a": "onetwo"}),
    ("quoted_keys", "'a b': 1\n\"c: d\": 2\n", {"a b": 1, "c: d": 2}),
    ("literal_block_clip", "a: |\n  one\n   two\n\n  three\n\nb: 1\n", {"a": "one\n two\n\nthree\n", "b": 1}),
    ("literal_block_strip", "a: |-\n  one\n\n\nb: 1\n", {"a": "one", "b": 1}),
    ("literal_block_keep", "a: |+\n  one\n\n\nb: 1\n", {"a": "one\n\n\n", "b": 1}),
    ("literal_block_explicit_indentation", "a: |2\n    indented\n  x\n", {"a": "  indented\nx\n"}),
    ("literal_block_indicators_either_order", "a: |-1\n  x\nb: |1-\n  y\n", {"a": " x", "b": " y"}),
    ("folded_block", "a: >\n  one\n  two\n\n  three\n    more\n  four\n", {"a": "one two\nthree\n  more\nfour\n"}),
    ("folded_block_strip_and_keep", "a: >-\n  x\n  y\n\nb: >+\n  z\n\nc: 1\n", {"a": "x y", "b": "z\n\n", "c": 1}),
    ("block_scalar_in_sequence", "- |\n  a\n  b\n- x\n", ["a\nb\n", "x"]),
    ("block_scalar_comment_and_end", "a: | # header comment\n  x # kept\n# comment ends it\nb: 1", {"a": "x # kept\n", "b": 1}),
    ("block_scalar_at_end_without_newline", "a: |\n  x", {"a": "x"}),
    ("top_level_block_scalar_indentation_digit", "--- |1\n  x\n", " x\n"),
    ("plain_starting_with_indicators", "- :a: 1\n- ?b\n- -c: d\n", [{":a": 1}, "?b", {"-c": "d"}]),
    ("comments", "# head\na: 1 # after\n  # indented comment\nb: [1, # in a flow\n  2]\n# tail\n",
     {"a": 1, "b": [1, 2]}),
    ("core_booleans", "[true, True, TRUE, false, False, FALSE]", [True, True, True, False, False, False]),
    ("core_nulls", "a: null\nb: Null\nc: NULL\nd: ~\ne:\n", {k: None for k in "abcde"}),
    ("yaml_1_1_words_are_strings", "[yes, no, on, off, y, n, Yes, OFF]", ["yes", "no", "on", "off", "y", "n", "Yes", "OFF"]),
    ("core_integers", "[0, -12, +3, 012, 0o17, 0x1F, 0xff]", [0, -12, 3, 12, 15, 31, 255]),
    ("core_floats", "[1.5, -.5, +2., 1e3, 1.0e-2, 6.02E+23]", [1.5, -0.5, 2.0, 1000.0, 0.01, 6.02e23]),
    ("core_infinities", "[.inf, .Inf, .INF, -.inf, +.inf]", [INF, INF, INF, -INF, INF]),
    ("core_not_a_number", "[.nan, .NaN, .NAN]", [NAN, NAN, NAN]),
    ("numbers_the_core_schema_leaves_strings", "[1_000, 0b101, 1:20, 2001-12-14, -0x1, 0o8, 1e, .]",
     ["1_000", "0b101", "1:20", "2001-12-14", "-0x1", "0o8", "1e", "."]),
    ("quoted_scalars_stay_strings", "['1', \"true\", '', 'null']", ["1", "true", "", "null"]),
    ("non_string_keys", "1: a\nfalse: b\n~: c\n", {1: "a", False: "b", None: "c"}),
    ("document_start", "# comment\n---\na: 1\n", {"a": 1}),
    ("document_start_with_content", "--- [1, 2]\n", [1, 2]),
    ("document_start_and_end", "---\na: 1\n...\n# after the end\n", {"a": 1}),
    ("empty_document", "# only a comment\n", None),
    ("empty_text", "", None),
    ("crlf_line_endings", "a: 1\r\nb:\r\n  - x\r\nc: |\r\n  l1\r\n  l2\r\n", {"a": 1, "b": ["x"], "c": "l1\nl2\n"}),
    ("byte_order_mark", "\ufeffa: 1\n", {"a": 1}),
    ("tabs_as_separation", "a:\t1\t# tab\n", {"a": 1}),
]

# (name, document, line, column, message): what is outside the subset, and what is not YAML
YAML_ERRORS = [
    ("anchor", "a: &x 1\n", 1, 4, "YAML anchors (`&name`) are not supported"),
    ("anchor_on_a_key", "&x a: 1\n", 1, 1, "YAML anchors (`&name`) are not supported"),
    ("alias", "a: 1\nb: *x\n", 2, 4, "YAML aliases (`*name`) are not supported"),
    ("alias_in_flow", "a: [1, *x]\n", 1, 8, "YAML aliases (`*name`) are not supported"),
    ("tag", "a: !!str 1\n", 1, 4, "YAML tags (`!tag`, `!!type`) are not supported"),
    ("local_tag", "- !thing x\n", 1, 3, "YAML tags (`!tag`, `!!type`) are not supported"),
    ("directive", "%YAML 1.2\n---\na: 1\n", 1, 1, "YAML directives (`%YAML`, `%TAG`) are not supported"),
    ("several_documents", "a: 1\n---\nb: 2\n", 2, 1, "several YAML documents in one file are not supported"),
    ("document_after_end", "a: 1\n...\nb: 2\n", 3, 1, "several YAML documents in one file are not supported"),
    ("complex_key", "? a\n: b\n", 1, 1, "YAML complex keys (`? key`, a collection as a key) are not supported"),
    ("collection_as_key", "[a, b]: 1\n", 1, 1, "YAML complex keys"),
    ("collection_as_flow_key", "{[a]: 1}\n", 1, 2, "YAML complex keys"),
    ("duplicate_key", "a: 1\nb: 2\na: 3\n", 3, 1, "invalid YAML: the key `a` is given more than once"),
    ("duplicate_flow_key", "{a: 1, a: 2}", 1, 8, "the key `a` is given more than once"),
    ("tab_indentation", "a:\n\tb: 1\n", 2, 1, "a tab cannot indent a line in YAML"),
    ("unterminated_single_quote", "a: 'x\n", 1, 4, "unterminated string: expected a closing `'`"),
    ("unterminated_double_quote", 'a: "x\n\nb: 1\n', 1, 4, "unterminated string: expected a closing `\"`"),
    ("unterminated_flow_sequence", "a: [1, 2\n", 1, 4, "unterminated flow sequence: expected `]`"),
    ("unterminated_flow_mapping", "a: {b: 1\n", 1, 4, "unterminated flow mapping: expected `}`"),
    ("missing_comma", "[[a] b]", 1, 6, "expected `,` or `]` in a flow sequence"),
    ("empty_flow_item", "[1,,2]", 1, 4, "expected a value before `,`"),
    ("invalid_escape", 'a: "\\q"\n', 1, 5, "invalid escape `\\q`"),
    ("short_unicode_escape", 'a: "\\u12"\n', 1, 5, "invalid escape `\\u`"),
    ("lone_surrogate", 'a: "\\ud800"\n', 1, 5, "is not a Unicode character"),
    ("mapping_on_its_keys_line", "a: b: c\n", 1, 4, "a mapping cannot start on the line of its key"),
    ("sequence_on_its_keys_line", "a: - b\n", 1, 4, "a sequence cannot start on the line of its key"),
    ("over_indented_key", "a:\n  b: 1\n   c: 2\n", 3, 5, "a key must fit on one line"),
    ("less_indented_key", "a:\n    b: 1\n  c: 2\n", 3, 3, "check this line's indentation: the keys of the mapping here "
                                                           "are at column 1"),
    ("over_indented_entry", "- [a]\n  - b\n", 2, 3, "check this line's indentation: the entries of the sequence here "
                                                   "are at column 1"),
    ("entry_after_keys", "a: 1\n- b\n", 2, 1, "a sequence entry cannot follow the keys of a mapping"),
    ("missing_key", "a: 1\n: 2\n", 2, 1, "expected a key before `:`"),
    ("key_after_top_level_sequence", "- a\nb: 1\n", 2, 1, "not part of the document's value above"),
    ("reserved_indicator", "a: @x\n", 1, 4, "`@` cannot start a plain value in YAML: quote the value"),
    ("percent_starting_a_value", "a: 50%\nb: %x\n", 2, 4, "`%` cannot start a plain value in YAML: quote the value"),
    ("indentation_digit_zero", "a: |0\n  x\n", 1, 5, "a block scalar's indentation digit is 1 to 9"),
    ("block_scalar_header_junk", "a: |x\n  y\n", 1, 5, "expected the end of the line after a block scalar's header"),
    ("block_scalar_in_flow", "[|, x]", 1, 2, "a block scalar (`|`) cannot be inside a flow collection"),
    ("text_after_quoted_value", 'a: "x"y\n', 1, 7, "expected the end of the line"),
    ("comment_without_space", 'a: "x"# c\n', 1, 7, "expected the end of the line"),
]


def load(text, spans=False):
    return sprocket._yaml_loads(text, "test.yml", spans=spans)


def canon(v):
    """A value with its types spelled out (1, 1.0 and True differ; NaN equals NaN)."""
    if isinstance(v, dict):
        return ("map", [(canon(k), canon(x)) for k, x in v.items()])
    if isinstance(v, list):
        return ("seq", [canon(x) for x in v])
    if isinstance(v, float) and math.isnan(v):
        return ("nan",)
    return (type(v).__name__, v)


@pytest.mark.parametrize("name,text,expected", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml_reader_reads_each_construct(name, text, expected):
    assert canon(load(text)) == canon(expected)
    assert canon(load(text, spans=True)) == canon(expected)  # the same values, with positions


@pytest.mark.parametrize("name,text,line,col,message", YAML_ERRORS, ids=[c[0] for c in YAML_ERRORS])
def test_yaml_reader_refuses_with_position_and_caret(name, text, line, col, message):
    with pytest.raises(sprocket.ConfigError) as info:
        load(text)
    e = info.value
    assert message in e.message
    assert (e.span.path, e.span.line, e.span.col) == ("test.yml", line, col), sprocket.format_diagnostic(e.message, e.span)
    shown = sprocket.format_diagnostic(e.message, e.span).split("\n")
    assert shown[0].startswith("test.yml:%d:%d: error: " % (line, col))
    assert shown[2] == "    " + " " * (col - 1) + "^"


def test_yaml_reader_nesting_too_deep_is_an_error():
    with pytest.raises(sprocket.ConfigError, match="nested too deeply"):
        load("[" * 100000 + "]" * 100000)


def test_yaml_reader_spans_point_at_keys_values_and_items():
    doc = load("# tests\ntask_a:\n  - name: first\n    inputs:\n      n: [1, 2]\n"
               "      $g: {a: 1}\n    tags:\n    - x\n", spans=True)
    assert isinstance(doc, sprocket.YamlMap) and isinstance(doc["task_a"], sprocket.YamlList)
    where = lambda span: (span.line, span.col)  # noqa: E731
    assert where(doc.span) == (2, 1) and where(doc.spans["task_a"]) == (2, 1)
    assert where(doc.value_spans["task_a"]) == (3, 3)
    test = doc["task_a"][0]
    assert where(doc["task_a"].spans[0]) == (3, 5)
    assert {k: where(s) for k, s in test.spans.items()} == {"name": (3, 5), "inputs": (4, 5), "tags": (7, 5)}
    assert where(test.value_spans["name"]) == (3, 11)
    assert where(test["inputs"].value_spans["n"]) == (5, 10)
    assert [where(s) for s in test["inputs"]["n"].spans] == [(5, 11), (5, 14)]
    assert where(test["inputs"]["$g"].spans["a"]) == (6, 12)
    assert [where(s) for s in test["tags"].spans] == [(8, 7)]
    # a value left empty: its span is the key's `:`
    empty = load("a:\nb:\n- \n- x\n", spans=True)
    assert empty["a"] is None and where(empty.value_spans["a"]) == (1, 2)
    assert empty["b"] == [None, "x"] and [where(s) for s in empty["b"].spans] == [(3, 1), (4, 3)]
    assert json.loads(json.dumps(doc)) == load("# tests\ntask_a:\n  - name: first\n    inputs:\n      n: [1, 2]\n"
                                               "      $g: {a: 1}\n    tags:\n    - x\n")


def pyyaml_core_loader():
    """PyYAML's SafeLoader with the YAML 1.2 core schema's resolvers (PyYAML itself reads YAML 1.1)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: nothing to cross-check with")

    class CoreLoader(yaml.SafeLoader):
        pass

    CoreLoader.yaml_implicit_resolvers = {}
    for tag, regexp, first in [
            ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
            ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
            ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
            ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                      r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+0123456789."))]:
        CoreLoader.add_implicit_resolver("tag:yaml.org,2002:" + tag, re.compile(regexp), first)

    def core_int(loader, node):
        v = node.value
        return int(v[2:], 8 if v[1] == "o" else 16) if v[:2] in ("0o", "0x") else int(v)

    def core_float(loader, node):
        v = node.value
        return float(v.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf").replace(
            ".nan", "nan").replace(".NaN", "nan").replace(".NAN", "nan"))

    CoreLoader.add_constructor("tag:yaml.org,2002:int", core_int)
    CoreLoader.add_constructor("tag:yaml.org,2002:float", core_float)
    return lambda text: yaml.load(text, Loader=CoreLoader)


def random_value(rng, depth=0):
    """JSON-like values with strings full of YAML's indicators, quotes, escapes and line breaks."""
    text = lambda: "".join(rng.choice("ab  :#-?[]{},'\"\\\n\t|>!&*%@`~.01eE+\u00e9 ")  # noqa: E731
                           for _ in range(rng.randint(0, 12)))
    r = rng.random()
    if depth < 4 and r < 0.25:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 4 and r < 0.5:
        return {text(): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if r < 0.6:
        return rng.choice([rng.randint(-100, 100), rng.random() * 10 ** rng.randint(-5, 5), True, False, None])
    return text() if rng.random() < 0.8 else " ".join(text() for _ in range(rng.randint(1, 8)))


def test_yaml_reader_agrees_with_pyyaml_on_what_pyyaml_writes():
    """PyYAML's writer in every style (block, flow, each quote and block scalar style, widths that fold
    lines, indents of 2 to 4, document markers); its complex keys (for long keys) are refused."""
    import random

    pyyaml = pyyaml_core_loader()
    import yaml

    rng = random.Random(22)
    compared = 0
    for _ in range(600):
        value = random_value(rng)
        text = yaml.safe_dump(value, default_flow_style=rng.choice([True, False, None]), width=rng.choice([10, 30, 80]),
                              indent=rng.choice([2, 3, 4]), allow_unicode=rng.choice([True, False]),
                              default_style=rng.choice([None, None, "'", '"', "|", ">"]),
                              explicit_start=rng.random() < 0.2, explicit_end=rng.random() < 0.1)
        if "!!" in text:  # tagged where PyYAML's YAML 1.1 reading would differ
            continue
        try:
            mine = canon(load(text))
        except sprocket.ConfigError as e:
            assert "complex keys" in e.message, text
            continue
        assert mine == canon(pyyaml(text)), text
        compared += 1
    assert compared > 300  # 391 with this seed


# Where PyYAML's reading differs from YAML 1.2 on purpose or by a known limit of PyYAML.
PYYAML_DIFFERS = {
    "double_quoted_surrogate_pair": "PyYAML keeps the two surrogates; JSON and sprocket.py join them",
    "tabs_as_separation": "PyYAML refuses a tab after `:` (YAML 1.2 allows tabs as separation)",
}


@pytest.mark.parametrize("name,text,expected", [c for c in YAML_CASES if c[0] not in PYYAML_DIFFERS],
                         ids=[c[0] for c in YAML_CASES if c[0] not in PYYAML_DIFFERS])
def test_yaml_reader_agrees_with_pyyaml_where_installed(name, text, expected):
    pyyaml = pyyaml_core_loader()
    assert canon(load(text)) == canon(pyyaml(text))


# --------------------------------------------------------------------------------------------
# YAML inputs: `run x.wdl @inputs.yml`, `inputs --yaml`
# --------------------------------------------------------------------------------------------

INPUTS_WDL = """
version 1.1
task t {
  input {
    String s
    Array[Int] n = [1, 2]
    File f
    Map[Int, String] m = {}
    Boolean flag = true
  }
  command <<< cat ~{f}; echo ~{s} ~{sep=" " n} ~{flag} >>>
  output {
    String out = read_string(stdout())
    Map[Int, String] mo = m
  }
}
"""


@pytest.mark.usefixtures("isolated_config")
def test_yaml_inputs_file_runs_like_json_with_paths_relative_to_it(tmp_path):
    write(tmp_path / "x.wdl", INPUTS_WDL)
    write(tmp_path / "sub" / "data.txt", "hello\n")
    write(tmp_path / "sub" / "in.yml", """
        # a Map[Int, _] written with YAML's integer keys; `yes` is a string in YAML 1.2
        t.s: yes
        t.n:
        - 3
        - 4
        t.f: data.txt
        t.m: {1: one, 2: two}
        """)
    (tmp_path / "sub" / "in.json").write_text(json.dumps(
        {"t.s": "yes", "t.n": [3, 4], "t.f": "data.txt", "t.m": {"1": "one", "2": "two"}}))
    expected = {"t.out": "hello\nyes 3 4 true", "t.mo": {"1": "one", "2": "two"}}
    assert ok(sprocket_run("x.wdl", "@sub/in.json", "-o", "out", cwd=tmp_path))[0] == expected
    assert ok(sprocket_run("x.wdl", "@sub/in.yml", "-o", "out", cwd=tmp_path))[0] == expected
    # a path without `@`, a `.yaml` file, and a key=value after it that wins
    (tmp_path / "sub" / "in.yaml").write_text((tmp_path / "sub" / "in.yml").read_text())
    outputs, _ = ok(sprocket_run("x.wdl", "sub/in.yaml", "t.flag=false", "-o", "out", cwd=tmp_path))
    assert outputs["t.out"] == "hello\nyes 3 4 false"
    assert sprocket_cmd("validate", "x.wdl", "@sub/in.yml", cwd=tmp_path).returncode == 0


@pytest.mark.usefixtures("isolated_config")
def test_yaml_inputs_file_suffix_is_recognised_in_any_case(tmp_path):
    """`inputs.YAML` and `in.Yml` are YAML inputs files (with `@` and without), as `.yaml` is."""
    write(tmp_path / "x.wdl", INPUTS_WDL)
    write(tmp_path / "data.txt", "hello\n")
    (tmp_path / "inputs.YAML").write_text("t.s: yes\nt.f: data.txt\nt.n: [3]\n")
    (tmp_path / "in.Yml").write_text((tmp_path / "inputs.YAML").read_text())
    for item in ("@inputs.YAML", "inputs.YAML", "in.Yml"):
        outputs, _ = ok(sprocket_run("x.wdl", item, "-o", "out", cwd=tmp_path))
        assert outputs["t.out"] == "hello\nyes 3 true", item


@pytest.mark.usefixtures("isolated_config")
@pytest.mark.parametrize("name,text,line,col,fragment", [
    ("anchor", "t.s: &a x\n", 1, 6, "YAML anchors (`&name`) are not supported"),
    ("duplicate", "t.s: x\nt.f: a\nt.s: y\n", 3, 1, "the key `t.s` is given more than once"),
    ("unterminated", "t.s: x\nt.n: [1,\n", 2, 6, "unterminated flow sequence"),
    ("not_a_mapping", "# inputs\n- t.s\n", 1, 1, "a YAML inputs file must hold a mapping"),
])
def test_yaml_inputs_file_errors_point_at_the_line(tmp_path, name, text, line, col, fragment):
    write(tmp_path / "x.wdl", INPUTS_WDL)
    (tmp_path / "bad.yml").write_text(text)
    for command in ("run", "validate"):
        proc = sprocket_cmd(command, "x.wdl", "@bad.yml", cwd=tmp_path)
        assert_diag(proc, line, col, fragment, path="bad.yml")
    fails(sprocket_run("x.wdl", "@bad.yml", cwd=tmp_path), "bad.yml:%d:%d" % (line, col))


@pytest.mark.usefixtures("isolated_config")
def test_inputs_yaml_prints_the_template_that_reads_back(tmp_path):
    write(tmp_path / "x.wdl", INPUTS_WDL)
    as_json = sprocket_cmd("inputs", "x.wdl", cwd=tmp_path)
    as_yaml = sprocket_cmd("inputs", "x.wdl", "--yaml", cwd=tmp_path)
    assert as_json.returncode == 0 and as_yaml.returncode == 0, as_yaml.stderr
    assert as_yaml.stdout == "t.s: String\nt.f: File\nt.n:\n  - 1\n  - 2\nt.m: {}\nt.flag: true\n"
    template = json.loads(as_json.stdout)
    assert load(as_yaml.stdout) == template
    # filled in, the YAML template is an inputs file
    filled = as_yaml.stdout.replace("String", "hi").replace("File", "data.txt")
    write(tmp_path / "data.txt", "x\n")
    (tmp_path / "in.yml").write_text(filled)
    assert ok(sprocket_run("x.wdl", "@in.yml", "-o", "out", cwd=tmp_path))[0]["t.out"] == "x\nhi 1 2 true"


YAML_DUMPS_CASES = [
    ("scalars", {"a": 1, "b": -2.5, "c": True, "d": None, "e": "text", "f": 1e16, "g": -0.0}),
    ("strings_that_need_quotes", ["", " lead", "trail ", "1", "0x1F", "true", "True", "null", "~", ".inf", "yes",
                                  "off", "y", "2024-01-01", "1_000", "1:20", "a: b", "a #b", "#c", "- d", "? e",
                                  ": f", "[g]", "{h}", "&i", "*j", "!k", "|l", ">m", "'n'", '"o"', "%p", "@q", "`r",
                                  "s:", "...", "---", "line\nbreak", "tab\there", "\x85", "\u2028", "\x7f",
                                  "0b101", "-0b1", "+0x1F", "-0x1f", "0x1_F"]),
    ("strings_left_plain", ["plain", "a b", "Array[String]+", "x:y", "a#b", "http://x.org/a?b=c#d", "caf\u00e9",
                            "\U0001F600", "a,b", "it's"]),
    ("special_floats", [float("inf"), float("-inf"), float("nan")]),
    ("nesting", {"a": [[1, [2, {"b": [3]}]], {"c": {"d": {}}}, []], "e": {"f": [{"g": 1, "h": [2]}]}}),
    ("empty_mapping", {}),
    ("empty_sequence", []),
    ("odd_keys", {"": 1, " k": 2, "1": 3, "a: b": 4, "yes": 5}),
]


@pytest.mark.parametrize("name,value", YAML_DUMPS_CASES, ids=[c[0] for c in YAML_DUMPS_CASES])
def test_yaml_dumps_reads_back_to_the_same_values(name, value):
    text = sprocket.yaml_dumps(value)
    assert canon(load(text)) == canon(value), text
    if name == "strings_left_plain":
        assert all(line[2:] == v for line, v in zip(text.split("\n"), value)), text
    try:
        import yaml
    except ImportError:
        return
    assert canon(yaml.safe_load(text)) == canon(value), "a YAML 1.1 reader (PyYAML) reads:\n" + text


@pytest.mark.parametrize("text", ["0b101", "-0b1", "+0b1_0", "-0x1f", "+0x1F", "0x1_F"])
def test_yaml_dumps_quotes_what_yaml_1_1_reads_as_a_binary_or_signed_hex_number(text):
    """PyYAML (YAML 1.1) reads `0b101` as 5 and `-0x1f` as -31, which YAML 1.2's core schema reads
    as strings: yaml_dumps quotes them, so that both kinds of reader read the string back."""
    assert sprocket.yaml_dumps(text) == '"%s"' % text
    assert load(sprocket.yaml_dumps(text)) == text


def conformance_inputs():
    """(case id, value) of each case's inputs.json in ../shared/conformance; skips when it is absent."""
    shared = shared_dir()
    if shared is None or not (shared / "conformance" / "cases").is_dir():
        pytest.skip("../shared/conformance is not here (it ships with the project's reference material, not the repo)")
    paths = sorted((shared / "conformance" / "cases").glob("*/*/inputs.json"))
    return [("%s/%s" % (p.parent.parent.name, p.parent.name), json.loads(p.read_text())) for p in paths]


def test_yaml_round_trip_of_the_conformance_corpus_inputs():
    cases = conformance_inputs()
    different = [case for case, value in cases if canon(load(sprocket.yaml_dumps(value))) != canon(value)]
    print("yaml round trip: %d of %d inputs.json files read back equal (%d non-empty)" % (
        len(cases) - len(different), len(cases), sum(bool(v) for _, v in cases)))
    assert len(cases) > 300 and not different


# An engine for ../shared/conformance/run.py: sprocket.py run, with the case's inputs.json given as the
# inputs.yml yaml_dumps writes beside it (so relative paths resolve from the same directory).
YAML_INPUTS_ENGINE = """
import json, os, sys
sys.path.insert(0, %(repo)r)
import sprocket
argv = sys.argv[1:]
for i, arg in enumerate(argv):
    if arg.endswith("inputs.json") and os.path.isfile(arg):
        with open(arg) as f:
            text = sprocket.yaml_dumps(json.load(f))
        with open(arg[:-len(".json")] + ".yml", "w") as f:
            f.write(text + "\\n")
        os.remove(arg)
        argv[i] = "@" + arg[:-len(".json")] + ".yml"
        break
else:
    sys.exit("the YAML engine was given no inputs.json: %%r" %% argv)
os.execv(sys.executable, %(sprocket)r + argv)
"""


def conformance_known():
    lines = (REPO / "tests" / "conformance_known.txt").read_text().splitlines()
    return {line.split()[0] for line in lines if line.strip() and not line.startswith("#")}


def run_with_yaml_inputs(tmp_path, cases=()):
    engine = tmp_path / "yaml_engine.py"
    engine.write_text(YAML_INPUTS_ENGINE % {"repo": str(REPO), "sprocket": sprocket_argv()})
    # `[1].1/name` matches that case alone (run.py takes a filter without glob characters as a substring)
    results = run_conformance(tmp_path, shlex.join([sys.executable, str(engine)]),
                              ["[%s]%s" % (c[0], c[1:]) for c in cases])
    known = conformance_known()
    failed = ["%s: %s %s" % (r["id"], r["status"], r["reason"]) for r in results
              if r["status"] in ("FAIL", "ERROR") and r["id"] not in known]
    passed = sum(r["status"] == "PASS" for r in results)
    print("conformance with YAML inputs: %d passed of %d run" % (passed, len(results)))
    return results, failed


@pytest.mark.usefixtures("isolated_config")
def test_conformance_sample_runs_with_yaml_inputs(tmp_path):
    """Every 8th case whose inputs are not empty (about 17), run with `@inputs.yml`: each passes, as with JSON."""
    known = conformance_known()
    sample = [case for case, value in conformance_inputs() if value and case not in known][::8]
    results, failed = run_with_yaml_inputs(tmp_path, sample)
    assert sorted(r["id"] for r in results) == sorted(sample)
    assert not failed and all(r["status"] in ("PASS", "SKIP") for r in results), failed
    assert sum(r["status"] == "PASS" for r in results) >= len(sample) - 2  # SKIP: a capability (gpu, disks)


@pytest.mark.slow
@pytest.mark.usefixtures("isolated_config")
def test_conformance_corpus_runs_with_yaml_inputs(tmp_path):
    """The whole corpus with `@inputs.yml`: what fails is only what fails with inputs.json (conformance_known.txt)."""
    results, failed = run_with_yaml_inputs(tmp_path)
    assert results and not failed, "cases that fail with YAML inputs:\n" + "\n".join(failed)
