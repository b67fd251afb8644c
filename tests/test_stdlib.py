"""The standard library's implementations (section 11 of sprocket.py), function by function."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sprocket as S  # noqa: E402
from sprocket import EnumValue, EvalError, StructValue, WdlDir, WdlFile  # noqa: E402
from conftest import subclasses  # noqa: E402


@pytest.fixture
def ctx(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return S.EvalContext(str(work), str(tmp_path / "tmp"), S.DIALECTS["1.2"])


def call(ctx, name, *args):
    return S.IMPLS[name](ctx, list(args))


def fails(ctx, name, *args, match=None):
    with pytest.raises(EvalError, match=match) as info:
        call(ctx, name, *args)
    return info.value.message


def put(ctx, name, text):
    path = os.path.join(ctx.work_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text)
    return path


def contents(path):
    with open(path, newline="") as f:
        return f.read()


def test_all_55_functions_present():
    names = """floor ceil round min max find matches sub split basename join_paths glob size stdout stderr
    read_string read_int read_float read_boolean read_lines write_lines read_tsv write_tsv read_map write_map
    read_json write_json read_object read_objects write_object write_objects prefix suffix quote squote sep
    length range transpose cross zip unzip contains chunk flatten select_first select_all as_pairs as_map
    keys contains_key values collect_by_key defined value""".split()
    assert len(names) == 55
    assert sorted(S.IMPLS) == sorted(names)


# ---- wdl_str / value_to_json ---------------------------------------------------------------


def test_wdl_str_primitives():
    assert S.wdl_str(5) == "5"
    assert S.wdl_str(-3) == "-3"
    assert S.wdl_str(1.5) == "1.500000"
    assert S.wdl_str(3.141) == "3.141000"  # placeholder_coercion conformance case
    assert S.wdl_str(3.141 * 1e-10) == "0.000000"
    assert S.wdl_str(3.141 * 1e10) == "31410000000.000000"
    assert S.wdl_str(True) == "true" and S.wdl_str(False) == "false"
    assert S.wdl_str("abc") == "abc"
    assert S.wdl_str(WdlFile("/a/b.txt")) == "/a/b.txt" and type(S.wdl_str(WdlFile("x"))) is str
    assert S.wdl_str(WdlDir("/a/dir")) == "/a/dir"
    assert S.wdl_str(None) == ""
    assert S.wdl_str(EnumValue("Color", "Red", "#FF0000")) == "Red"


@pytest.mark.parametrize("v", [[1], {"a": 1}, (1, 2), StructValue({"a": 1}, "P")])
def test_wdl_str_compound_is_error(v):
    with pytest.raises(EvalError, match="compound"):
        S.wdl_str(v)


def test_value_to_json():
    v = {
        "p": (1, WdlFile("/f")),
        "s": StructValue([("b", 2), ("a", [1.5, None, True])], "T"),
        "e": EnumValue("Color", "Red", "#FF0000"),
    }
    assert S.value_to_json(v) == {
        "p": {"left": 1, "right": "/f"},
        "s": {"b": 2, "a": [1.5, None, True]},
        "e": "Red",
    }
    assert list(S.value_to_json(v["s"])) == ["b", "a"]
    assert S.value_to_json({1: "x", 2.5: "y"}) == {"1": "x", "2.500000": "y"}
    assert type(S.value_to_json(WdlFile("/f"))) is str


def test_value_to_json_unknown_type():
    with pytest.raises(EvalError):
        S.value_to_json(object())


# ---- translate_regex ---------------------------------------------------------------------------


@pytest.mark.parametrize("pattern, text, expected", [
    ("e..o", "hello world", "ello"),
    ("late$", "late\nlate", "late"),  # `$` is end of string only
    ("^b", "a\nb", None),  # `^` is start of string only
    ("a.b", "a\nb", "a\nb"),  # `.` matches a newline
    ("[[:alpha:]]+", "12abc3", "abc"),
    ("[[:digit:]]+", "ab123c", "123"),
    ("[[:space:]]+", "a \t\nb", " \t\n"),
    ("[[:upper:]][[:lower:]]+", "xx Hello", "Hello"),
    ("[[:alnum:]_]+", "-a_1-", "a_1"),
    ("[[:punct:]]+", "ab!?.cd", "!?."),
    ("[[:xdigit:]]+", "zz0fAz", "0fA"),
    ("a[[:blank:]]b", "a\tb", "a\tb"),
    ("[[:cntrl:]]", "a\x01b", "\x01"),
    ("[[:print:]]+", "\x01ab c\x02", "ab c"),
    ("[[:graph:]]+", " ab c", "ab"),
    ("[]x]+", "a]x]b", "]x]"),  # "]" first is literal
    ("[^]x]+", "]]abc", "abc"),
    ("[a\\\\]+", "x\\a\\", "\\a\\"),  # a backslash escapes inside a bracket, as in every engine
    ("[a-c-]+", "x-ab-", "-ab-"),
    ("[[.-.]a]+", "x-a-", "-a-"),
    ("[[=e=]]", "xey", "e"),
    (" [:alpha:]{4} ", "I like chocolate", None),  # [:alpha:] outside a bracket: the set {:,a,l,p,h}
    ("a{2}", "caaab", "aa"),
    ("a{2,}", "caaaab", "aaaa"),
    ("a{1,2}", "caaab", "aa"),
    ("ba{,2}", "baaa", "baa"),  # GNU {,m}
    ("x{y", "ax{yb", "x{y"),  # "{" that is not an interval is literal
    ("a}", "a}", "a}"),
    ("a)", "xa)", "a)"),  # unmatched ")" is literal
    ("a**", "aaab", "aaa"),  # stacked quantifiers (POSIX)
    ("(ab)+", "xababy", "abab"),
    ("\\.bam$", "x.bam", ".bam"),
    ("\\.(gz|zip|zstd)", "sample1234_R1.fastq", None),
    ("_R1", "sample1234_R1.fastq", "_R1"),
    ("\\s+", "a \tb", " \t"),
    ("\\S+", "  ab ", "ab"),
    ("\\w+", "--ab_1--", "ab_1"),
    ("\\W+", "ab--cd", "--"),
    ("\\bcat\\b", "concat cat", "cat"),
    ("\\Bcat", "concat", "cat"),
    ("\\<cat\\>", "concat cat!", "cat"),
    ("\\d+", "ab42", "42"),
    ("\\n", "a\nb", "\n"),
    ("\\t", "a\tb", "\t"),
    ("a\\+b", "a+b", "a+b"),
    ("a\\|b", "a|b", "a|b"),
    ("#-~&", "#-~&", "#-~&"),  # characters special elsewhere are literal
    ("[&~-]+", "x&~-y", "&~-"),
    ("a|ab", "ab", "a"),  # leftmost-first (POSIX would give "ab"): documented difference
    ("", "abc", ""),
])
def test_translate_regex_semantics(pattern, text, expected):
    m = S.translate_regex(pattern)[0].search(text)
    assert (m.group(0) if m else None) == expected


def test_translate_regex_is_cached():
    assert S.translate_regex("ab+c")[0] is S.translate_regex("ab+c")[0]


@pytest.mark.parametrize("pattern, message", [
    ("*a", "nothing to repeat"),
    ("a|+b", "nothing to repeat"),
    ("(a", "unmatched"),
    ("[ab", "unterminated bracket"),
    ("[]", "unterminated bracket"),
    ("[[:nope:]]", "unknown character class"),
    ("[z-a]", "invalid range"),
    ("[~--]", "invalid range"),
    ("a{3,1}", "invalid interval"),
    ("ab\\", "trailing backslash"),
    ("\\q", "unsupported escape"),
    ("\\2(a)", "back-reference"),
    ("[[.ab.]]", "unsupported bracket element"),
    ("[a-[:digit:]]", "unsupported bracket element"),
])
def test_translate_regex_errors(pattern, message):
    with pytest.raises(EvalError, match=message) as info:
        S.translate_regex(pattern)[0]
    assert "invalid regular expression" in info.value.message


@pytest.mark.parametrize("pattern, text, expected, construct", [
    ("(?:ab)+c", "xababcy", "ababc", "non-capturing"),
    ("<.+?>", "<a><b>", "<a>", "lazy quantifiers"),
    ("a{2,}?", "aaaa", "aa", "lazy quantifiers"),
    ("a??b", "ab", "ab", "lazy quantifiers"),
    ("(?i)abc|x", "zABC", "ABC", "inline flags `(?i)`"),
    ("a(?i:b)c", "aBc aBC", "aBc", "inline flags `(?i)`"),
    ("(a|(?i)b|c)", "C", "C", "inline flags `(?i)`"),  # to the end of the enclosing group
    ("(?i)(?-i:a)b", "AB aB", "aB", "inline flags `(?-i)`"),
    ("(?m)^b$", "a\nb\nc", "b", "inline flags `(?m)`"),
    ("(?<id>[0-9]+)-(?P<n>x)", "a12-x", "12-x", "named groups"),
    ("\\d+\\.\\d+", "v1.25", "1.25", "`\\d`"),
    ("\\D+", "12ab3", "ab", "`\\D`"),
    ("\\Aab", "abab", "ab", "`\\A`"),
    ("ab\\z", "abab", "ab", "`\\z`"),
    ("\\x41\\x{42}\\u0043", "zABC", "ABC", "`\\x` escapes"),
    ("[\\d,]+", "a1,2b", "1,2", "backslash escapes in a bracket"),
    ("[^\\s\\]]+", "a] bc", "a", "backslash escapes in a bracket"),
    ("[\\t\\x41-\\x43]+", "zA\tCz", "A\tC", "backslash escapes in a bracket"),
    ("[[:alpha:]_]+\\.bam", "x/ab_c.bam", "ab_c.bam", None),  # POSIX classes keep working
])
def test_regex_engine_syntax_all_three_engines_agree_on(pattern, text, expected, construct):
    """What Rust's regex (Sprocket), Java (Cromwell) and Python (miniwdl) all read the same way is
    translated; `translate_regex` names each construct beyond POSIX ERE (for the compatibility warning)."""
    rx, used = S.translate_regex(pattern)
    m = rx.search(text)
    assert (m.group(0) if m else None) == expected
    if construct is None:
        assert used == ()
    else:
        assert any(construct in u for u in used), used


@pytest.mark.parametrize("pattern, construct", [
    ("(?<=a)b", "look-behind `(?<=`"),
    ("(?<!a)b", "look-behind `(?<!`"),
    ("a(?=b)", "look-ahead `(?=`"),
    ("a(?!b)", "look-ahead `(?!`"),
    ("(a)\\1", "back-reference (`\\1`)"),
    ("(?<n>a)\\k<n>", "back-reference"),
    ("a*+", "possessive quantifier `*+`"),
    ("a{2}+", "possessive quantifier `{2}+`"),
    ("(?>a)", "atomic group"),
    ("(?x)a b", "flag group `(?x)`"),
    ("\\p{L}", "`\\p`"),
    ("a\\Z", "`\\Z`"),
    ("[a[b]]", "a `[` inside a bracket expression"),
    ("[a&&b]", "`&&` in a bracket expression"),
])
def test_regex_refuses_what_the_engines_read_differently(pattern, construct):
    with pytest.raises(EvalError) as info:
        S.translate_regex(pattern)[0]
    assert construct in info.value.message and "not read the same way" in info.value.message


def test_regex_flag_group_inside_a_sequence_is_refused():
    """`a(?i)b|c`: Rust scopes the flag to the end of the group, alternatives included; no Python
    translation keeps that, so the flag must open the pattern, a group or an alternative."""
    with pytest.raises(EvalError, match=r"must open the pattern.*\(\?i:\.\.\.\)"):
        S.translate_regex("a(?i)[0]b|c")


def test_sub_with_engine_syntax(ctx):
    assert call(ctx, "sub", "sample_R1_001.fastq.gz", "_R(?:1|2)_\\d{3}\\.fastq\\.gz$", "") == "sample"
    assert call(ctx, "sub", "a.b.c", "^(.*?)\\..*$", "\\1") == "a"
    assert call(ctx, "find", "ID=abc;X=1", "ID=[^;\\s]+") == "ID=abc"
    assert call(ctx, "matches", "FOO.BAM", "(?i)\\.bam$") is True


# ---- numeric ---------------------------------------------------------------------------------


def test_floor_ceil(ctx):
    assert call(ctx, "floor", 2.0) == 2 and call(ctx, "floor", 1.9) == 1 and call(ctx, "floor", -1.1) == -2
    assert call(ctx, "ceil", 2.0) == 2 and call(ctx, "ceil", 2.1) == 3 and call(ctx, "ceil", -1.9) == -1
    assert type(call(ctx, "floor", 2.5)) is int and type(call(ctx, "ceil", 2.5)) is int


def test_round_half_up(ctx):
    assert call(ctx, "round", 2.49) == 2
    assert call(ctx, "round", 2.5) == 3
    assert call(ctx, "round", 3.5) == 4
    assert call(ctx, "round", -2.5) == -2
    assert call(ctx, "round", -2.51) == -3
    assert call(ctx, "round", 0.49999999999999994) == 0
    assert type(call(ctx, "round", 1.2)) is int


@pytest.mark.parametrize("name", ["floor", "ceil", "round"])
def test_rounding_non_finite_is_error(ctx, name):
    fails(ctx, name, float("inf"), match=name)
    fails(ctx, name, float("nan"), match=name)


def test_min_max(ctx):
    assert call(ctx, "min", 1, 2) == 1 and type(call(ctx, "min", 1, 2)) is int
    assert call(ctx, "min", 1, 2.0) == 1.0 and type(call(ctx, "min", 1, 2.0)) is float
    assert call(ctx, "min", 3.0, 2) == 2.0 and type(call(ctx, "min", 3.0, 2)) is float
    assert call(ctx, "max", 1, 2) == 2 and type(call(ctx, "max", 1, 2)) is int
    assert call(ctx, "max", 1, 2.0) == 2.0 and type(call(ctx, "max", 5, 2.0)) is float
    assert call(ctx, "max", -1.5, -2.5) == -1.5


# ---- string functions ------------------------------------------------------------------------


def test_find(ctx):
    assert call(ctx, "find", "hello world", "e..o") == "ello"
    assert call(ctx, "find", "hello world", "goodbye") is None
    assert call(ctx, "find", "hello\tBob", "\\t") == "\t"
    fails(ctx, "find", "x", "(", match="^find: invalid regular expression")


def test_matches(ctx):
    assert call(ctx, "matches", "sample1234_R1.fastq", "_R1") is True
    assert call(ctx, "matches", "sample1234_R1.fastq", "\\.(gz|zip|zstd)") is False
    assert call(ctx, "matches", "abc123", "^a.+3$") is True
    assert call(ctx, "matches", "abc1234", "^a.+3$") is False
    assert call(ctx, "matches", WdlFile("/x/a.gz"), "\\.gz$") is True
    fails(ctx, "matches", "x", "[", match="^matches: ")


def test_sub_spec_example(ctx):
    s = "I like chocolate when\nit's late"
    assert call(ctx, "sub", s, "like", "love") == "I love chocolate when\nit's late"
    assert call(ctx, "sub", s, "late", "early") == "I like chocoearly when\nit's early"
    assert call(ctx, "sub", s, "late$", "early") == "I like chocolate when\nit's early"
    assert call(ctx, "sub", s, "[^ ]late", "early") == "I like chocearly when\nit's late"
    assert call(ctx, "sub", s, " [:alpha:]{4} ", " 4444 ") == s
    assert call(ctx, "sub", s, " [[:alpha:]]{4} ", " 4444 ") == "I 4444 chocolate when\nit's late"
    assert call(ctx, "sub", s, "\\n", " ") == "I like chocolate when it's late"


def test_sub_replacement_rules(ctx):
    assert call(ctx, "sub", "hello", "(l+)(o)", "[\\2\\1]") == "he[oll]"
    assert call(ctx, "sub", "ab", "(a)", "$1\\g<1>") == "$1\\g<1>b"  # no Python/Rust syntax
    assert call(ctx, "sub", "ab", "a", "\\t") == "\\tb"  # unknown escapes stay as written
    assert call(ctx, "sub", "ab", "(a)", "\\\\1") == "\\1b"  # "\\" is one backslash
    assert call(ctx, "sub", "ab", "a", "x\\") == "x\\b"
    assert call(ctx, "sub", "ab", "(x)?a", "[\\1]") == "[]b"  # unmatched group is empty
    assert call(ctx, "sub", "aaa", "a", "b") == "bbb"
    assert call(ctx, "sub", WdlFile("/d/f.data"), "\\.data$", ".index") == "/d/f.index"
    assert call(ctx, "sub", "abc", "", "-") == "-a-b-c-"
    fails(ctx, "sub", "ab", "(a)", "\\2", match="^sub: .*group")
    fails(ctx, "sub", "ab", "a**(", "x", match="^sub: invalid regular expression")


def test_split(ctx):
    text = "Here's an example\nthat takes up multiple lines"
    assert call(ctx, "split", text, " ") == ["Here's", "an", "example\nthat", "takes", "up", "multiple", "lines"]
    assert call(ctx, "split", text, "\\n") == ["Here's an example", "that takes up multiple lines"]
    assert call(ctx, "split", text, "\\s") == ["Here's", "an", "example", "that", "takes", "up", "multiple", "lines"]
    assert call(ctx, "split", "a,b,c", ",") == ["a", "b", "c"]
    assert call(ctx, "split", "abc", ",") == ["abc"]
    assert call(ctx, "split", "", ",") == [""]
    assert call(ctx, "split", ",a,,b,", ",") == ["", "a", "", "b", ""]
    assert call(ctx, "split", "a  b", " +") == ["a", "b"]
    assert call(ctx, "split", "a1b22c", "([0-9])+") == ["a", "b", "c"]  # groups are not returned
    assert call(ctx, "split", "abc", "") == ["", "a", "b", "c", ""]
    fails(ctx, "split", "abc", "(", match="^split: ")


# ---- path functions --------------------------------------------------------------------------


def test_basename(ctx):
    assert call(ctx, "basename", WdlFile("/path/to/file.txt")) == "file.txt"
    assert call(ctx, "basename", WdlFile("/path/to/file.txt"), ".txt") == "file"
    assert call(ctx, "basename", WdlFile("/path/to/file.txt"), ".bam") == "file.txt"
    assert call(ctx, "basename", WdlFile("/path/to/file.txt"), "") == "file.txt"
    assert call(ctx, "basename", WdlDir("/path/to/dir")) == "dir"
    assert call(ctx, "basename", WdlDir("/path/to/dir/")) == "dir"
    assert call(ctx, "basename", WdlFile("file.txt")) == "file.txt"
    assert call(ctx, "basename", "a.tar.gz", ".gz") == "a.tar"


def test_join_paths(ctx):
    assert call(ctx, "join_paths", WdlFile("/usr"), ["bin", "echo"]) == "/usr/bin/echo"
    assert call(ctx, "join_paths", "/usr", ["bin", "echo"]) == "/usr/bin/echo"
    assert call(ctx, "join_paths", ["/usr", "bin", "echo"]) == "/usr/bin/echo"
    assert call(ctx, "join_paths", WdlDir("/usr/"), "bin") == "/usr/bin"
    assert call(ctx, "join_paths", "mydir", "mydata.txt") == os.path.join(ctx.work_dir, "mydir/mydata.txt")
    assert call(ctx, "join_paths", ["bin", "echo"]) == os.path.join(ctx.work_dir, "bin/echo")
    assert call(ctx, "join_paths", ["/only"]) == "/only"


def test_join_paths_dot_dot_is_lexical(ctx):
    """`..` is resolved on the text: the intermediate directory need not exist (Sprocket's case)."""
    assert call(ctx, "join_paths", "/nonexistent/dir", "../x.txt") == "/nonexistent/x.txt"
    assert call(ctx, "join_paths", ["/a", "b/./c", "../../d"]) == "/a/d"
    assert call(ctx, "join_paths", "mydir", "../x.txt") == os.path.join(ctx.work_dir, "x.txt")


def test_join_paths_errors(ctx):
    fails(ctx, "join_paths", "/usr", "/bin", match="^join_paths: only the first path may be absolute")
    fails(ctx, "join_paths", "/usr", ["bin", "/echo"], match="absolute")
    fails(ctx, "join_paths", ["/usr", "/bin"], match="absolute")
    fails(ctx, "join_paths", [], match="empty")
    fails(ctx, "join_paths", "/usr", [], match="empty")


def test_glob(ctx):
    for name in ["a_file_2.txt", "a_file_1.txt", "b.txt", ".a_hidden", "a_dir/a_inner.txt"]:
        put(ctx, name, "x")
    os.symlink(os.path.join(ctx.work_dir, "b.txt"), os.path.join(ctx.work_dir, "a_link"))
    os.symlink(os.path.join(ctx.work_dir, "a_dir"), os.path.join(ctx.work_dir, "a_dirlink"))
    os.symlink(os.path.join(ctx.work_dir, "missing"), os.path.join(ctx.work_dir, "a_broken"))
    result = call(ctx, "glob", "a_*")
    assert result == [os.path.join(ctx.work_dir, n) for n in ["a_broken", "a_file_1.txt", "a_file_2.txt", "a_link"]]
    assert all(type(p) is WdlFile for p in result)
    assert call(ctx, "glob", "a_dir/*.txt") == [os.path.join(ctx.work_dir, "a_dir", "a_inner.txt")]
    assert call(ctx, "glob", os.path.join(ctx.work_dir, "b.*")) == [os.path.join(ctx.work_dir, "b.txt")]
    assert call(ctx, "glob", "nothing*") == []


def test_glob_work_dir_with_glob_characters(tmp_path):
    work = tmp_path / "w[1]"
    work.mkdir()
    (work / "f.txt").write_text("x")
    c = S.EvalContext(str(work), str(tmp_path / "t"), S.DIALECTS["1.2"])
    assert call(c, "glob", "*.txt") == [str(work / "f.txt")]


# ---- size ------------------------------------------------------------------------------------


def test_size_file_and_units(ctx):
    put(ctx, "created_file", "this file is 22 bytes\n")
    f = WdlFile("created_file")
    assert call(ctx, "size", f) == 22.0 and type(call(ctx, "size", f)) is float
    assert call(ctx, "size", f, "B") == 22.0
    assert call(ctx, "size", f, "K") == pytest.approx(0.022)
    assert call(ctx, "size", f, "kb") == pytest.approx(0.022)
    assert call(ctx, "size", f, "KiB") == pytest.approx(22 / 1024)
    assert call(ctx, "size", f, "ki") == pytest.approx(22 / 1024)
    assert call(ctx, "size", f, "MB") == pytest.approx(22e-6)
    assert call(ctx, "size", f, "GiB") == pytest.approx(22 / 1024 ** 3)
    assert call(ctx, "size", f, "tb") == pytest.approx(22e-12)
    assert call(ctx, "size", f, " PB ") == pytest.approx(22e-15)
    assert call(ctx, "size", "created_file") == 22.0  # a String argument names a path
    fails(ctx, "size", f, "KX", match="^size: invalid unit")
    fails(ctx, "size", f, "", match="invalid unit")


def test_size_none_and_compound(ctx):
    put(ctx, "created_file", "this file is 22 bytes\n")
    f = WdlFile(os.path.join(ctx.work_dir, "created_file"))
    assert call(ctx, "size", None) == 0.0
    assert call(ctx, "size", [f, None], "K") == pytest.approx(0.022)
    nested = {"a": (10, f), "b": (50, None)}  # Map[String, Pair[Int, File?]]: keys are not paths
    assert call(ctx, "size", nested) == 22.0
    assert call(ctx, "size", {f: "x"}) == 22.0  # File keys count
    assert call(ctx, "size", StructValue({"x": [f, f], "n": 1}, "S")) == 44.0
    assert call(ctx, "size", []) == 0.0


def test_size_directory(ctx):
    put(ctx, "d/a.txt", "12345")
    put(ctx, "d/sub/b.txt", "123")
    os.symlink(os.path.join(ctx.work_dir, "nowhere"), os.path.join(ctx.work_dir, "d", "broken"))
    assert call(ctx, "size", WdlDir("d")) == 8.0
    assert call(ctx, "size", [WdlDir("d"), WdlFile("d/a.txt")]) == 13.0


def test_size_missing_file_is_error(ctx):
    msg = fails(ctx, "size", WdlFile("nope.txt"), match="^size: ")
    assert os.path.join(ctx.work_dir, "nope.txt") in msg
    fails(ctx, "size", [WdlFile("nope.txt")])


# ---- stdout / stderr -------------------------------------------------------------------------


def test_stdout_stderr(ctx):
    fails(ctx, "stdout", match=r"stdout\(\) is only available in task outputs")
    fails(ctx, "stderr", match=r"stderr\(\) is only available in task outputs")
    ctx.stdout, ctx.stderr = "/w/stdout", "/w/stderr"
    assert call(ctx, "stdout") == "/w/stdout" and type(call(ctx, "stdout")) is WdlFile
    assert call(ctx, "stderr") == "/w/stderr" and type(call(ctx, "stderr")) is WdlFile


# ---- read_* ----------------------------------------------------------------------------------


def test_read_string(ctx):
    put(ctx, "f", "this\nfile\nhas\nfive\nlines\n")
    assert call(ctx, "read_string", WdlFile("f")) == "this\nfile\nhas\nfive\nlines"
    put(ctx, "g", "hello\r\n\n")
    assert call(ctx, "read_string", WdlFile("g")) == "hello"
    put(ctx, "h", "")
    assert call(ctx, "read_string", WdlFile("h")) == ""
    put(ctx, "i", "  a\r\nb  ")
    assert call(ctx, "read_string", WdlFile(os.path.join(ctx.work_dir, "i"))) == "  a\r\nb  "


def test_read_missing_or_bad_files(ctx):
    for name in ["read_string", "read_int", "read_float", "read_boolean", "read_lines", "read_tsv", "read_map",
                 "read_json", "read_object", "read_objects"]:
        msg = fails(ctx, name, WdlFile("missing.txt"), match="^%s: cannot read" % name)
        assert os.path.join(ctx.work_dir, "missing.txt") in msg
    fails(ctx, "read_string", WdlFile("."), match="cannot read")  # a directory
    fails(ctx, "read_string", None, match="None")
    with open(os.path.join(ctx.work_dir, "bin"), "wb") as f:
        f.write(b"\xff\xfe\x00")
    fails(ctx, "read_string", WdlFile("bin"), match="UTF-8")


def test_read_int(ctx):
    put(ctx, "a", "  1  \n")
    assert call(ctx, "read_int", WdlFile("a")) == 1
    put(ctx, "b", "-42")
    assert call(ctx, "read_int", WdlFile("b")) == -42
    for bad in ["", "  \n", "hello", "1.0", "1 2", "1\n2", "1_000", "0x10"]:
        put(ctx, "c", bad)
        fails(ctx, "read_int", WdlFile("c"), match="^read_int: .*integer")


def test_read_float(ctx):
    put(ctx, "a", "  1  \n")
    assert call(ctx, "read_float", WdlFile("a")) == 1.0 and type(call(ctx, "read_float", WdlFile("a"))) is float
    for text, value in [("  2.0  \n", 2.0), ("-1.5e3", -1500.0), (".5", 0.5), ("3.", 3.0), ("+1E-2", 0.01)]:
        put(ctx, "b", text)
        assert call(ctx, "read_float", WdlFile("b")) == value
    for bad in ["", "abc", "1.0 2.0", "nan", "inf", "1e"]:
        put(ctx, "c", bad)
        fails(ctx, "read_float", WdlFile("c"), match="^read_float: ")


def test_read_boolean(ctx):
    for text, value in [("  true  \n", True), ("  FALSE  \n", False), ("True", True), ("false", False)]:
        put(ctx, "b", text)
        assert call(ctx, "read_boolean", WdlFile("b")) is value
    for bad in ["", "yes", "1", "true false", "truex"]:
        put(ctx, "c", bad)
        fails(ctx, "read_boolean", WdlFile("c"), match="^read_boolean: ")


def test_read_lines(ctx):
    put(ctx, "a", "hello world\nhi_world\r\nhello nurse")
    assert call(ctx, "read_lines", WdlFile("a")) == ["hello world", "hi_world", "hello nurse"]
    put(ctx, "b", "")
    assert call(ctx, "read_lines", WdlFile("b")) == []
    put(ctx, "c", "\n\nx\n")
    assert call(ctx, "read_lines", WdlFile("c")) == ["", "", "x"]
    put(ctx, "d", "a\tb \n")
    assert call(ctx, "read_lines", WdlFile("d")) == ["a\tb "]


def test_read_tsv(ctx):
    put(ctx, "nh.tsv", "row1\tvalue1\nrow2\tvalue2\nrow3\tvalue3\n")
    put(ctx, "h.tsv", "header1\theader2\nrow1\tvalue1\nrow2\tvalue2\nrow3\tvalue3\n")
    table = [["row1", "value1"], ["row2", "value2"], ["row3", "value3"]]
    assert call(ctx, "read_tsv", WdlFile("nh.tsv")) == table
    assert call(ctx, "read_tsv", WdlFile("nh.tsv"), False) == table
    objs1 = call(ctx, "read_tsv", WdlFile("nh.tsv"), False, ["name", "value"])
    assert objs1 == [{"name": r[0], "value": r[1]} for r in table]
    assert all(type(o) is StructValue and o.type_name is None for o in objs1)
    objs2 = call(ctx, "read_tsv", WdlFile("h.tsv"), True)
    assert objs2 == [{"header1": r[0], "header2": r[1]} for r in table]
    objs3 = call(ctx, "read_tsv", WdlFile("h.tsv"), True, ["name", "value"])
    assert objs3 == objs1


def test_read_tsv_ragged_and_empty(ctx):
    put(ctx, "r.tsv", "a\tb\tc\nd\n\te\r\n")
    assert call(ctx, "read_tsv", WdlFile("r.tsv")) == [["a", "b", "c"], ["d"], ["", "e"]]
    put(ctx, "e.tsv", "")
    assert call(ctx, "read_tsv", WdlFile("e.tsv")) == []
    assert call(ctx, "read_tsv", WdlFile("e.tsv"), True) == []
    assert call(ctx, "read_tsv", WdlFile("e.tsv"), True, ["a"]) == []
    put(ctx, "ho.tsv", "x\ty\n")
    assert call(ctx, "read_tsv", WdlFile("ho.tsv"), True) == []


def test_read_tsv_errors(ctx):
    put(ctx, "h.tsv", "h1\th2\nv1\n")
    fails(ctx, "read_tsv", WdlFile("h.tsv"), True, match="^read_tsv: row 1 has 1 fields, expected 2")
    put(ctx, "bad.tsv", "h 1\th2\nv1\tv2\n")
    fails(ctx, "read_tsv", WdlFile("bad.tsv"), True, match="not a valid field name")
    put(ctx, "dup.tsv", "h\th\nv1\tv2\n")
    fails(ctx, "read_tsv", WdlFile("dup.tsv"), True, match="duplicate name")
    put(ctx, "ok.tsv", "v1\tv2\n")
    fails(ctx, "read_tsv", WdlFile("ok.tsv"), False, ["a", "a"], match="duplicate")
    fails(ctx, "read_tsv", WdlFile("ok.tsv"), False, ["a"], match="row 1")
    fails(ctx, "read_tsv", WdlFile("ok.tsv"), False, ["1a", "b"], match="valid field name")


def test_read_map(ctx):
    put(ctx, "m", "key1\tvalue1\nkey2\tvalue2\n")
    m = call(ctx, "read_map", WdlFile("m"))
    assert m == {"key1": "value1", "key2": "value2"} and list(m) == ["key1", "key2"]
    put(ctx, "e", "")
    assert call(ctx, "read_map", WdlFile("e")) == {}
    put(ctx, "bad", "a\tb\tc\n")
    fails(ctx, "read_map", WdlFile("bad"), match="^read_map: line 1 has 3 columns")
    put(ctx, "one", "a\n")
    fails(ctx, "read_map", WdlFile("one"), match="line 1 has 1 columns")
    put(ctx, "dup", "a\t1\na\t2\n")
    fails(ctx, "read_map", WdlFile("dup"), match="duplicate key 'a'")


def test_read_json(ctx):
    put(ctx, "p.json", '{"name": "John", "age": 42, "x": [1, 2.5, null, true], "o": {}}')
    v = call(ctx, "read_json", WdlFile("p.json"))
    assert v == {"name": "John", "age": 42, "x": [1, 2.5, None, True], "o": {}}
    assert type(v) is S.JsonObject and type(v["age"]) is int and type(v["x"][1]) is float  # a dict a struct may drop keys of
    put(ctx, "n.json", "null")
    assert call(ctx, "read_json", WdlFile("n.json")) is None
    put(ctx, "a.json", '["a", "b"]\n')
    assert call(ctx, "read_json", WdlFile("a.json")) == ["a", "b"]
    for bad in ["", "{", "NaN", "[Infinity]", "{'a': 1}"]:
        put(ctx, "bad.json", bad)
        fails(ctx, "read_json", WdlFile("bad.json"), match="^read_json: .*not valid JSON")


def test_read_object(ctx):
    put(ctx, "o", "key_0\tkey_1\tkey_2\nvalue_0\tvalue_1\tvalue_2\n")
    o = call(ctx, "read_object", WdlFile("o"))
    assert o == {"key_0": "value_0", "key_1": "value_1", "key_2": "value_2"}
    assert type(o) is StructValue and o.type_name is None and list(o) == ["key_0", "key_1", "key_2"]
    for bad, why in [("", "exactly 2 lines"), ("a\tb\n", "exactly 2 lines"), ("a\nb\nc\n", "exactly 2 lines"),
                     ("a\tb\n1\n", "row 1 has 1 fields"), ("a\ta\n1\t2\n", "duplicate name")]:
        put(ctx, "bad", bad)
        fails(ctx, "read_object", WdlFile("bad"), match="^read_object: .*" + why)


def test_read_objects(ctx):
    put(ctx, "o", "key_0\tkey_1\nA0\tA1\nB0\tB1\n")
    objs = call(ctx, "read_objects", WdlFile("o"))
    assert objs == [{"key_0": "A0", "key_1": "A1"}, {"key_0": "B0", "key_1": "B1"}]
    assert all(type(o) is StructValue for o in objs)
    put(ctx, "e", "")
    assert call(ctx, "read_objects", WdlFile("e")) == []
    put(ctx, "h", "a\tb\n")
    assert call(ctx, "read_objects", WdlFile("h")) == []
    put(ctx, "bad", "a\tb\n1\t2\n3\n")
    fails(ctx, "read_objects", WdlFile("bad"), match="^read_objects: row 2 has 1 fields, expected 2")
    put(ctx, "dup", "a\ta\n1\t2\n")
    fails(ctx, "read_objects", WdlFile("dup"), match="duplicate name")


# ---- write_* ---------------------------------------------------------------------------------


def test_write_lines(ctx):
    f = call(ctx, "write_lines", ["first", "second", "third"])
    assert type(f) is WdlFile and os.path.isabs(f) and os.path.dirname(f) == ctx.tmp_dir
    assert contents(f) == "first\nsecond\nthird\n"
    assert contents(call(ctx, "write_lines", [])) == ""
    g = call(ctx, "write_lines", [WdlFile("/a"), ""])
    assert contents(g) == "/a\n\n" and g != f
    assert call(ctx, "read_lines", f) == ["first", "second", "third"]
    fails(ctx, "write_lines", [[1]], match="^write_lines: ")


def test_write_lines_unwritable_dir(ctx, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ctx.tmp_dir = str(blocker / "sub")
    fails(ctx, "write_lines", ["a"], match="^write_lines: cannot write")


def test_write_tsv_arrays(ctx):
    rows = [["one", "two", "three"], ["un", "deux", "trois"]]
    assert contents(call(ctx, "write_tsv", rows)) == "one\ttwo\tthree\nun\tdeux\ttrois\n"
    f = call(ctx, "write_tsv", rows, True, ["first", "second", "third"])
    assert contents(f) == "first\tsecond\tthird\none\ttwo\tthree\nun\tdeux\ttrois\n"
    assert contents(call(ctx, "write_tsv", [])) == ""
    assert contents(call(ctx, "write_tsv", [], True, ["a", "b"])) == "a\tb\n"
    assert call(ctx, "read_tsv", f, True) == [StructValue(zip(["first", "second", "third"], r)) for r in rows]


def test_write_tsv_structs(ctx):
    def num(a, b, c):
        return StructValue([("first", a), ("second", b), ("third", c)], "Numbers")
    structs = [num("one", "two", "three"), num("un", "deux", "trois")]
    body = "one\ttwo\tthree\nun\tdeux\ttrois\n"
    assert contents(call(ctx, "write_tsv", structs)) == body  # no header unless asked for
    assert contents(call(ctx, "write_tsv", structs, False)) == body
    assert contents(call(ctx, "write_tsv", structs, False, ["x", "y", "z"])) == body
    assert contents(call(ctx, "write_tsv", structs, True)) == "first\tsecond\tthird\n" + body
    assert contents(call(ctx, "write_tsv", structs, True, ["no1", "no2", "no3"])) == "no1\tno2\tno3\n" + body
    mixed = [StructValue([("i", 1), ("f", 1.5), ("b", True), ("n", None)], "M")]
    assert contents(call(ctx, "write_tsv", mixed)) == "1\t1.500000\ttrue\t\n"


def test_write_tsv_errors(ctx):
    rows = [["a", "b"], ["c"]]
    fails(ctx, "write_tsv", rows, True, ["h1", "h2"], match="^write_tsv: row 2 has 1 fields, the header 2")
    fails(ctx, "write_tsv", [["a"]], True, match="needs the column names")
    fails(ctx, "write_tsv", [["a\tb"]], match="tab or newline")
    fails(ctx, "write_tsv", [["a\nb"]], match="tab or newline")
    s = StructValue([("a", "1"), ("b", "2")], "S")
    fails(ctx, "write_tsv", [s], True, ["only_one"], match="row 1 has 2 fields")
    fails(ctx, "write_tsv", [StructValue([("a", [1])], "S")], match="compound")
    fails(ctx, "write_tsv", [s, ["x", "y"]], match="mix")


def test_write_map(ctx):
    f = call(ctx, "write_map", {"key1": "value1", "key2": "value2"})
    assert contents(f) == "key1\tvalue1\nkey2\tvalue2\n"
    assert call(ctx, "read_map", f) == {"key1": "value1", "key2": "value2"}
    assert contents(call(ctx, "write_map", {})) == ""
    fails(ctx, "write_map", {"a\tb": "c"}, match="^write_map: .*tab or newline")


def test_write_json(ctx):
    f = call(ctx, "write_json", {"key1": "value1", "key2": "value2"})
    text = contents(f)
    # Exactly the JSON text, no newline after it (what Cromwell and miniwdl write).
    assert text == '{"key1": "value1", "key2": "value2"}'
    assert json.loads(text) == {"key1": "value1", "key2": "value2"}
    assert list(json.loads(text)) == ["key1", "key2"]
    v = [StructValue([("name", "J\u00f6rg"), ("age", 42)], "Person"), 1.5, None, True, WdlFile("/x"), (1, "a"),
         EnumValue("Color", "Red", "#FF0000")]
    assert json.loads(contents(call(ctx, "write_json", v))) == [
        {"name": "J\u00f6rg", "age": 42}, 1.5, None, True, "/x", {"left": 1, "right": "a"}, "Red"]
    assert call(ctx, "read_json", call(ctx, "write_json", {"a": [1, 2]})) == {"a": [1, 2]}
    assert json.loads(contents(call(ctx, "write_json", {WdlFile("/f"): 1}))) == {"/f": 1}


def test_write_json_errors(ctx):
    fails(ctx, "write_json", (1, {2: "hello"}), match="^write_json: a Map with non-String keys")
    fails(ctx, "write_json", [{1.5: "x"}], match="non-String keys")
    fails(ctx, "write_json", float("nan"), match="^write_json: value is nan: a WDL Float must be a finite number")


def test_write_object(ctx):
    obj = StructValue([("key_1", "value_1"), ("key_2", 2), ("key_3", 3.5)])
    f = call(ctx, "write_object", obj)
    assert contents(f) == "key_1\tkey_2\tkey_3\nvalue_1\t2\t3.500000\n"
    assert call(ctx, "read_object", f) == {"key_1": "value_1", "key_2": "2", "key_3": "3.500000"}
    fails(ctx, "write_object", StructValue([("a", [1])], "S"), match="^write_object: .*compound")
    fails(ctx, "write_object", StructValue([("a", (1, 2))]), match="compound")
    fails(ctx, "write_object", [1], match="expected a Struct or Object")


def test_write_objects(ctx):
    objs = [StructValue([("key_1", "value_%d" % i), ("key_2", i)]) for i in (1, 4, 7)]
    f = call(ctx, "write_objects", objs)
    assert contents(f) == "key_1\tkey_2\nvalue_1\t1\nvalue_4\t4\nvalue_7\t7\n"
    assert call(ctx, "read_objects", f)[1] == {"key_1": "value_4", "key_2": "4"}
    reordered = [StructValue([("a", 1), ("b", 2)]), StructValue([("b", 3), ("a", 4)])]
    assert contents(call(ctx, "write_objects", reordered)) == "a\tb\n1\t2\n4\t3\n"
    assert contents(call(ctx, "write_objects", [])) == ""


def test_write_objects_errors(ctx):
    fails(ctx, "write_objects", [StructValue([("a", 1)]), StructValue([("b", 1)])], match="same member names")
    fails(ctx, "write_objects", [StructValue([("a", 1)]), StructValue([("a", 1), ("b", 2)])], match="same member")
    fails(ctx, "write_objects", [StructValue([("a", {"k": 1})])], match="^write_objects: .*compound")
    fails(ctx, "write_objects", [1], match="expected a Struct or Object")


# ---- string array functions ------------------------------------------------------------------


def test_prefix_suffix_quote_squote(ctx):
    env1 = ["key1=value1", "key2=value2"]
    assert call(ctx, "prefix", "-e ", env1) == ["-e key1=value1", "-e key2=value2"]
    assert call(ctx, "prefix", "-f ", [1, 2, 3]) == ["-f 1", "-f 2", "-f 3"]
    assert call(ctx, "prefix", "x", [1.5, True, WdlFile("/f")]) == ["x1.500000", "xtrue", "x/f"]
    assert call(ctx, "suffix", ".txt", env1) == ["key1=value1.txt", "key2=value2.txt"]
    assert call(ctx, "suffix", ".0", [1, 2]) == ["1.0", "2.0"]
    assert call(ctx, "quote", env1) == ['"key1=value1"', '"key2=value2"']
    assert call(ctx, "quote", [1, 2]) == ['"1"', '"2"']
    assert call(ctx, "squote", env1) == ["'key1=value1'", "'key2=value2'"]
    assert call(ctx, "squote", [3]) == ["'3'"]
    assert call(ctx, "prefix", "x", []) == [] and call(ctx, "quote", []) == []


def test_squote_escapes_an_embedded_single_quote_for_the_shell(ctx):
    import subprocess

    quoted = call(ctx, "squote", ["it's", "a'b'c", "''"])
    assert quoted == ["'it'\\''s'", "'a'\\''b'\\''c'", "''\\'''\\'''"]
    echoed = subprocess.run(["sh", "-c", "printf '%s|' " + " ".join(quoted)], capture_output=True, text=True).stdout
    assert echoed == "it's|a'b'c|''|"


@pytest.mark.parametrize("name, args", [
    ("prefix", ["-x ", [["a", "b"], ["c", "d"]]]),
    ("suffix", ["-z", [["a", "b"]]]),
    ("quote", [[(1, 2)]]),
    ("squote", [[{"a": 1}]]),
    ("sep", [",", [[1]]]),
])
def test_string_array_functions_reject_compound(ctx, name, args):
    fails(ctx, name, *args, match="^%s: cannot convert a compound value" % name)


def test_sep(ctx):
    assert call(ctx, "sep", " ", call(ctx, "prefix", "-i ", ["file_1", "file_2"])) == "-i file_1 -i file_2"
    assert call(ctx, "sep", "", ["a", "b", "c"]) == "abc"
    assert call(ctx, "sep", " ", ["a", "b", "c"]) == "a b c"
    assert call(ctx, "sep", ",", [1]) == "1"
    assert call(ctx, "sep", ",", []) == ""
    assert call(ctx, "sep", ",", [1.0, False]) == "1.000000,false"


# ---- generic array functions -----------------------------------------------------------------


def test_length(ctx):
    assert call(ctx, "length", [1, 2, 3]) == 3
    assert call(ctx, "length", []) == 0
    assert call(ctx, "length", {"a": 1, "b": 2}) == 2
    assert call(ctx, "length", StructValue([("a", 1)])) == 1
    assert call(ctx, "length", "ABCDE") == 5
    assert call(ctx, "length", "\u00e9\u00e9") == 2
    fails(ctx, "length", None, match="^length: ")
    fails(ctx, "length", (1, 2), match="Pair")


def test_range(ctx):
    assert call(ctx, "range", 5) == [0, 1, 2, 3, 4]
    assert call(ctx, "range", 0) == []
    fails(ctx, "range", -1, match="^range: the length must be >= 0")


def test_transpose(ctx):
    assert call(ctx, "transpose", [[0, 1, 2], [3, 4, 5]]) == [[0, 3], [1, 4], [2, 5]]
    assert call(ctx, "transpose", []) == []
    assert call(ctx, "transpose", [[], []]) == []
    assert call(ctx, "transpose", [[1]]) == [[1]]
    fails(ctx, "transpose", [[1, 2], [3]], match="^transpose: row 2 has 1 elements")
    fails(ctx, "transpose", [[], [3]], match="transpose")


def test_cross_zip_unzip(ctx):
    assert call(ctx, "cross", [1, 2, 3], ["a", "b"]) == [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "a"), (3, "b")]
    assert call(ctx, "cross", [], [1]) == [] and call(ctx, "cross", [1], []) == []
    assert call(ctx, "zip", [1, 2, 3], ["a", "b", "c"]) == [(1, "a"), (2, "b"), (3, "c")]
    assert call(ctx, "zip", [], []) == []
    fails(ctx, "zip", [1, 2, 3], ["d", "e"], match="^zip: the arrays have different lengths")
    ctx.dialect = S.DIALECTS["1.0"]
    fails(ctx, "zip", [1], [], match="different lengths")
    assert call(ctx, "unzip", [(0, "hello"), (42, "goodbye")]) == ([0, 42], ["hello", "goodbye"])
    assert call(ctx, "unzip", []) == ([], [])
    assert call(ctx, "unzip", call(ctx, "as_pairs", {"a": 0, "b": 1})) == (["a", "b"], [0, 1])


def test_contains(ctx):
    assert call(ctx, "contains", [None, "foo"], None) is True
    assert call(ctx, "contains", [None, "foo"], "bar") is False
    assert call(ctx, "contains", ["foo"], "foo") is True
    assert call(ctx, "contains", [], 1) is False
    assert call(ctx, "contains", [1, 2], 2) is True
    assert call(ctx, "contains", [WdlFile("/a")], WdlFile("/a")) is True


def test_chunk(ctx):
    s1 = ["a", "b", "c", "d", "e", "f"]
    assert call(ctx, "chunk", s1, 3) == [["a", "b", "c"], ["d", "e", "f"]]
    assert call(ctx, "chunk", s1[:5], 3) == [["a", "b", "c"], ["d", "e"]]
    assert call(ctx, "chunk", ["a", "b"], 3) == [["a", "b"]]
    assert call(ctx, "chunk", [], 3) == []
    assert call(ctx, "flatten", call(ctx, "chunk", s1, 4)) == s1
    fails(ctx, "chunk", [1], 0, match="^chunk: the chunk size must be > 0")
    fails(ctx, "chunk", [1], -2, match="> 0")


def test_flatten(ctx):
    assert call(ctx, "flatten", [[1, 2, 3], [1], [21, 22]]) == [1, 2, 3, 1, 21, 22]
    assert call(ctx, "flatten", [[[1, 2], [3, 4]], [[5, 6]]]) == [[1, 2], [3, 4], [5, 6]]
    assert call(ctx, "flatten", [[], []]) == [] and call(ctx, "flatten", []) == []


def test_select_first(ctx):
    assert call(ctx, "select_first", [5, None, 3]) == 5
    assert call(ctx, "select_first", [None, 5, 3]) == 5
    assert call(ctx, "select_first", [None, False]) is False
    assert call(ctx, "select_first", [], 5) == 5
    assert call(ctx, "select_first", [None], 5) == 5
    assert call(ctx, "select_first", [4], 5) == 4
    fails(ctx, "select_first", [None, None], match="^select_first: all values are None")
    fails(ctx, "select_first", [], match="^select_first: the array is empty")


def test_select_all(ctx):
    assert call(ctx, "select_all", [5, None, 3]) == [5, 3]
    assert call(ctx, "select_all", [None]) == [] and call(ctx, "select_all", []) == []
    assert call(ctx, "select_all", [0, "", False, []]) == [0, "", False, []]


# ---- map functions ---------------------------------------------------------------------------


def test_as_pairs_as_map(ctx):
    assert call(ctx, "as_pairs", {"a": 1, "c": 3, "b": 2}) == [("a", 1), ("c", 3), ("b", 2)]
    assert call(ctx, "as_pairs", {}) == []
    m = call(ctx, "as_map", [("a", 1), ("c", 3), ("b", 2)])
    assert m == {"a": 1, "c": 3, "b": 2} and list(m) == ["a", "c", "b"]
    assert call(ctx, "as_map", [("a", ("a.bam", "a.bai"))]) == {"a": ("a.bam", "a.bai")}
    assert call(ctx, "as_map", []) == {}
    assert call(ctx, "as_map", call(ctx, "zip", ["a", "b"], [1, 2])) == {"a": 1, "b": 2}
    fails(ctx, "as_map", [("a", 1), ("a", 2)], match="^as_map: duplicate key 'a'")


def test_keys_values(ctx):
    assert call(ctx, "keys", {"a": 1, "b": 2, "c": 3}) == ["a", "b", "c"]
    assert call(ctx, "keys", StructValue([("first", "John"), ("last", "Doe")], "Name")) == ["first", "last"]
    assert call(ctx, "keys", {}) == []
    assert call(ctx, "values", {"a": (1, 2), "b": (3, 4)}) == [(1, 2), (3, 4)]
    assert call(ctx, "values", {}) == []


def test_contains_key(ctx):
    m = {"a": 1, "b": 2}
    assert call(ctx, "contains_key", m, "a") is True
    assert call(ctx, "contains_key", m, "c") is False
    assert call(ctx, "contains_key", {None: 1}, None) is True
    assert call(ctx, "contains_key", {1: "x"}, 1) is True
    p1 = StructValue([("name", "John"), ("details", {"phone": "123-456-7890"})], "Person")
    p2 = StructValue([("name", "Agent X"), ("details", None)], "Person")
    assert call(ctx, "contains_key", p1, ["details", "phone"]) is True
    assert call(ctx, "contains_key", p2, ["details", "phone"]) is False
    assert call(ctx, "contains_key", p2, "details") is True  # present though None
    assert call(ctx, "contains_key", p1, ["name", "x"]) is False  # not a collection
    assert call(ctx, "contains_key", p1, ["nope", "x"]) is False
    assert call(ctx, "contains_key", p1, ["details"]) is True
    nested = {"foo": {"bar": StructValue([("baz", 1)])}}
    assert call(ctx, "contains_key", nested, ["foo", "bar", "baz"]) is True
    assert call(ctx, "contains_key", nested, ["foo", "bar", "qux"]) is False
    fails(ctx, "contains_key", m, [], match="^contains_key: the key path is empty")
    fails(ctx, "contains_key", [1], 1, match="^contains_key: expected a Map")


def test_collect_by_key(ctx):
    r = call(ctx, "collect_by_key", [("a", 1), ("b", 2), ("a", 3)])
    assert r == {"a": [1, 3], "b": [2]} and list(r) == ["a", "b"]
    assert call(ctx, "collect_by_key", []) == {}


# ---- other functions -------------------------------------------------------------------------


def test_defined(ctx):
    assert call(ctx, "defined", None) is False
    for v in [0, "", False, [], "John"]:
        assert call(ctx, "defined", v) is True


def test_value(ctx):
    assert call(ctx, "value", EnumValue("Color", "Red", "#FF0000")) == "#FF0000"
    assert call(ctx, "value", EnumValue("Priority", "High", 10)) == 10
    assert call(ctx, "value", EnumValue("C", "A", ["x"])) == ["x"]
    fails(ctx, "value", "Red", match="^value: expected an enum choice")


def test_regex_translation_fuzz_gives_a_pattern_or_an_eval_error():
    """Random patterns over the regex alphabet: each compiles or is an EvalError, never another exception."""
    import random
    rng = random.Random(16)
    alphabet = list("ab()[]{}|*+?.^$\\-:,=!<>&~Pkdswbzx0123456789") + ["(?:", "(?i)", "(?<=", "[[:alpha:]]", "\\u00",
                                                                     "{2,3}", "*?", "(?P<n>", "\\x{4"]
    for _ in range(4000):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        try:
            rx, used = S.translate_regex(pattern)
        except EvalError as e:
            assert "invalid regular expression" in e.message
        else:
            rx.search("ab12 (x)")
            assert isinstance(used, tuple)


def _type_classes():
    return {c for c in subclasses(S.Type) if not c.__name__.startswith("_") and c is not S.Type}


def test_coerce_and_from_json_dispatch_on_every_value_type():
    """coerce() and from_json() dispatch on the type's class through a table (_COERCE, _FROM_JSON):
    every type a value can have is in both; Any, type parameters, call outputs and unresolved names
    pass values through."""
    passed = {S.AnyType, S.TypeVar, S.CallType, S.NamedType}
    assert set(S._COERCE) == set(S._FROM_JSON) == _type_classes() - passed
    person = S.StructType("Person", {"name": S.STRING, "age": S.INT.optional()})
    color = S.EnumType("Color", None, {"Red": None, "Green": None})
    assert S.coerce(["1", " 2 "], S.ArrayType(S.INT)) == [1, 2]
    assert S.coerce({"a": 1}, S.ArrayType(S.PairType(S.STRING, S.FLOAT))) == [("a", 1.0)]
    assert S.coerce({"left": 1, "right": "x"}, S.PairType(S.INT, S.FILE)) == (1, "x")
    assert S.coerce({"name": "n"}, person) == {"name": "n", "age": None}
    assert S.coerce("Red", color) == EnumValue("Color", "Red", "Red")
    assert S.coerce({1: True}, S.OBJECT) == {"1": True}
    assert S.coerce(3, S.ANY) == 3
    for v, t, message in [([1], S.INT, "value [1] cannot be coerced to `Int`"),
                          (1, S.ArrayType(S.INT), "value 1 is not an Array (`Array[Int]`)"),
                          ({"name": "n", "x": 1}, person, "value has member `x` that struct `Person` does not have"),
                          ("Blue", color, 'value "Blue" is not a choice of enum `Color` (Red, Green)')]:
        with pytest.raises(EvalError) as e:
            S.coerce(v, t)
        assert e.value.message == message
    assert S.from_json({"name": "n", "age": 3}, person, "/b", "p") == {"name": "n", "age": 3}
    assert S.from_json({"location": "f.txt"}, S.FILE, "/b", "f") == "/b/f.txt"
    assert S.from_json({"1": [2.5]}, S.MapType(S.INT, S.ArrayType(S.FLOAT)), "/b", "m") == {1: [2.5]}
    assert S.from_json(7, S.STRING, "/b", "s") == "7"
    for data, t, message in [({"name": "n", "x": 1}, person, "p: struct `Person` has no member `x`"),
                             ([], S.ArrayType(S.INT, True), "p must be a non-empty array (`Array[Int]+`)"),
                             ("Blue", color, "p must be one of Red, Green (enum `Color`)"),
                             ("d/", S.FILE, "p is a `File`, but `d/` ends with `/`, which names a directory")]:
        with pytest.raises(S.InputError) as e:
            S.from_json(data, t, "/b", "p")
        assert e.value.message == message
