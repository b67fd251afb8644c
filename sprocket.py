#!/usr/bin/env python3
"""sprocket.py: a Workflow Description Language (WDL) engine in one file of standard-library Python.

A Python implementation of Sprocket (St. Jude's WDL engine) for HPC sites: copy this one file next to a
`sprocket.toml` and run it with the system Python (3.9 or newer). WDL draft-2, 1.0, 1.1, 1.2 and 1.3,
with what Cromwell and miniwdl accept beyond the spec (warned about; errors under `check --strict`).

    python3 sprocket.py check workflow.wdl
    python3 sprocket.py run hello.wdl --target say_hello greeting="Hello"

The module reads top to bottom in the order data flows:

     1. Errors and positions       Source, Span, WdlError and its kinds, format_diagnostic();
                                   write_replacing() (a file written whole, then renamed)
     2. Versions                   the dialect table: what draft-2 and each 1.x allow, and what is
                                   accepted only for compatibility; Dialect, DIALECTS
     3. Lexer                      tokenize(): tokens with positions; strings, placeholders, commands
     4. Syntax tree                Document, Import, StructDef, EnumDef, Task, Workflow, Decl, Call,
                                   Scatter, Conditional and the expression nodes; Node.children(),
                                   the one traversal (free_names() here and lint's iter_nodes()
                                   build on it)
     5. Types                      Type classes, coerces(), unify()
     6. Parser                     Parser.for_source(source): recursive descent, precedence climbing,
                                   a dialect's rules where a construct is met (draft-2 included)
     7. Standard library: types    the signature table of all 55 functions, resolve_call();
                                   translate_regex(): POSIX ERE and what Rust, Java and Python agree on
     8. Document analysis          load(path): imports (paths and http(s) URLs), namespaces, name
                                   resolution, type checking, the workflow graph (each element's `deps`)
     9. Lint and format            LINT_RULES, lint_document(), lint_filter() (`#@ except:`);
                                   format_document(): the tokens re-laid, text kept as written
    10. Values and evaluation      WdlFile, StructValue, EnumValue; coerce(), from_json(),
                                   value_to_json(), evaluate(), render_placeholder(); paths
                                   relative to the document (document_paths); ReadScope: what
                                   a workflow's own standard library calls may read
    11. Standard library: code     IMPLS, the implementation of each function; a call's evaluation
    12. Runtime contracts          Backend (what a backend is: limits, start, adopt, cancel (its
                                   jobs, and with cancel_all those it was to adopt), close;
                                   outlives_engine (its jobs run on without the engine) and detach
                                   (a head job's hand-off); cancel_dead (`sprocket cancel` of a
                                   run whose engine is gone); and its optional parts with
                                   defaults), Job, TaskRequest (one attempt, as a backend gets
                                   it), Adoptable (a dead run's attempt to follow), BACKENDS
                                   (register_backend), Setting (a row of the
                                   settings schema, as backends declare theirs), RunContext (what
                                   the runtime knows of a run), RunSettings; Check (a line of
                                   `doctor`: Backend.doctor() gives a backend's)
    13. Tasks                      TaskRun: inputs (bind_input) -> requirements -> attempts (Attempt,
                                   one record each; the retry policy, retry_decision) -> outputs, kept
                                   in the task's sandbox (OutputSandbox); the runtime keys of
                                   Cromwell-era WDL (normalize_runtime)
    14. Workflows                  Frame (one body instance), WorkflowRun, Scheduler (its workers'
                                   messages: Done, Readmit; its own work for a later round,
                                   Deferred, now or at a time; it owns the counts)
    15. Backends                   LocalBackend (process groups a rerun adopts or kills after a
                                   crash); SlurmApptainerBackend, a facade (the batch script and
                                   sbatch line: placement per task, the site's memory/GPU flags,
                                   conflicting extra arguments refused, job tags; adopting the jobs
                                   of a dead run) over four parts:
                                   SlurmClient (the Slurm commands, without an enclosing job's
                                   SLURM_* variables; retries, their output as records; Slurm's
                                   durations: slurm_duration),
                                   ImageCache (Apptainer pulls), ArrayGatherer (job arrays)
                                   and JobMonitor (each job's state: completion from its exit status
                                   file, a batched status query, queue caps, failures blamed on a
                                   node); node-local scratch (_scratch_lines), bad nodes excluded;
                                   SlurmDoctor (the site's checks, with one test job);
                                   ContainerBackend (`docker`, `podman`: a named container per
                                   attempt, inputs at guest paths, its own files copied out,
                                   adopted by its name) and LocalApptainerBackend
                                   (`apptainer` on this host)
    16. Configuration              sprocket.toml search order and merge, the schema table, the TOML
                                   reader for Python < 3.11; load_config(); YamlReader (_yaml_loads:
                                   the YAML subset of inputs and test files, with positions)
    17. Provenance                 Store: sprocket.db (sessions, runs, tasks, attempts and what each
                                   used), orphan sweep, which run adopted which, head jobs'
                                   hand-offs; its read side (runs, attempts_of)
    18. Runs                       Run: the run directory, call cache, reattach (run_fingerprint,
                                   find_adoptable), logs, progress, trace.tsv (Trace), report.html
                                   (report_html), signals and the cancel request file; the head
                                   job (`run --submit`: the engine as a Slurm job, handing off to
                                   a successor job near its time limit); Recorder (each attempt's
                                   rows in sprocket.db and its line of trace.tsv); what `clean`
                                   removes and keeps (work_directories, KeptPaths)
    19. Tests of WDL (`sprocket test`)
                                   the inputs of a target (assign_inputs, shared with
                                   `run`); Sprocket's YAML test files (load_tests: each test's matrix
                                   of inputs, its assertions, checked against the target with a
                                   diagnostic at the YAML line); TestRun, a Run whose executions are
                                   parts (RunContext.part), one for each test and set of inputs;
                                   the outcome of each (passed, failed, errored), JUnit XML
    20. Command line               main(): check, lint, explain, format, run, validate, inputs, config,
                                   runs, report, status, cancel, retry, clean, doctor, completions,
                                   install (the file compiled, and a launcher), test; the one place
                                   errors become messages

How the runtime fits together (sections 12-18). `cmd_run` reads the inputs (assign_inputs: the
target's own, nested call inputs, requirement overrides) and makes a Run. The Run builds one
RunContext: the RunSettings, the log, the call cache, the backend (make_backend: the class the
BACKENDS registry holds for the `type` of `run.backends.<name>`, given the settings that class
declares, as read_backend_settings() read them), the Recorder of attempts (sprocket.db,
trace.tsv) and the Scheduler. Everything below Run sees only the context: a WorkflowRun starts
a Frame per body (workflow, scatter element, branch); a Frame hands each call of a task to the
Scheduler as a TaskRun; the Scheduler places TaskRuns as the backend's cpu and memory allow and
runs each on a worker thread, where TaskRun.execute() (a retry policy: adopt_or_cached, then
per try attempt_resources and retry_decision) makes an Attempt per try, hands the backend a
TaskRequest (start(), or adopt() for a dead run's job) and waits on the Job it returns; its
workers tell the Scheduler (Done, Readmit), which keeps the counts. A new backend is a Backend
subclass (start(), and what it can do beyond the defaults) with @register_backend and its
SETTINGS (Setting rows): nothing else changes. `sprocket test` makes one TestRun (section 19), a
Run whose every test execution is a part of its context (RunContext.part): its own inputs and
stop flags, the run's backend, scheduler and call cache; a failure in a part ends that part only.
"""

import argparse
import bisect
import collections
import functools
import glob
import json
import math
import os
import posixpath
import queue
import random
import re
import sys
import tempfile
import threading
import time

# sqlite3, subprocess, socket, hashlib and a few more are imported where they are used, so
# that `sprocket check` does not pay for them at start-up.

__version__ = "0.1.0"

# ============================================================================================
# 1. Errors and positions
# ============================================================================================


class Source:
    """A WDL file's text, with the line starts needed to turn offsets into line:col."""

    __slots__ = ("path", "text", "_starts")

    def __init__(self, path, text):
        self.path = path
        self.text = text
        self._starts = None

    def line_col(self, pos):
        if self._starts is None:
            self._starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        i = bisect.bisect_right(self._starts, pos) - 1
        return i + 1, pos - self._starts[i] + 1

    def line_text(self, line):
        lines = self.text.split("\n")
        return lines[line - 1] if 0 < line <= len(lines) else ""


class Span:
    """A position in a source: offset `pos` (line and column computed on demand)."""

    __slots__ = ("source", "pos")

    def __init__(self, source, pos):
        self.source = source
        self.pos = pos

    @property
    def path(self):
        return self.source.path

    @property
    def line(self):
        return self.source.line_col(self.pos)[0]

    @property
    def col(self):
        return self.source.line_col(self.pos)[1]

    def __repr__(self):
        return "%s:%d:%d" % (self.path, self.line, self.col)


class WdlError(Exception):
    """An error in the user's input, with the position it concerns (or none)."""

    kind = "error"

    def __init__(self, message, span=None, rule=None):
        Exception.__init__(self, message)
        self.message = message
        self.span = span
        self.rule = rule  # a warning's lint rule (`sprocket explain RULE`)


class WdlSyntaxError(WdlError):
    pass


class EmptyDocumentError(WdlSyntaxError):
    """A document with nothing but white space and comments, refused under --strict."""


class WdlTypeError(WdlError):
    pass


class EvalError(WdlError):
    pass


class InputError(WdlError):
    pass


class RunError(WdlError):
    """A task or workflow failed while running."""


class RunCancelled(RunError):
    """The run was canceled (Ctrl-C, SIGTERM) or a task stopped because of it."""


class RunHandedOff(RunError):
    """A head job's time limit is near: its engine hands the run, jobs running, to a successor job."""


class ConfigError(WdlError):
    """A problem in a sprocket.toml file or a configuration value."""


class NoneError(EvalError):
    """An evaluation error caused by a None value (a placeholder then renders as "")."""


class WdlErrors(WdlError):
    """Several errors found at once (the checker reports every error of a document)."""

    def __init__(self, errors):
        WdlError.__init__(self, errors[0].message, errors[0].span)
        self.errors = errors


def os_error_text(e):
    """An OSError in one line: what the system said, and the file."""
    text = e.strerror or str(e)
    return "%s: `%s`" % (text, e.filename) if e.filename else text


def write_replacing(path, data, mode=0o666, keep_mode=False):
    """Write a file whole under a temporary name beside it, then rename it over `path`: a reader never
    sees half of one, and a failure (a full or read-only disk) leaves `path` as it was and no
    temporary file behind. `data` is text (UTF-8, newlines as given) or bytes. The umask applies to
    `mode`; with keep_mode, the file gets `path`'s own mode (a file rewritten in place). An OSError names
    the file (a full disk shows at write or close, where the system names none)."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        if keep_mode:
            os.fchmod(fd, os.stat(path).st_mode & 0o7777)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror, path)
        raise


_DIAGNOSTIC_WIDTH = 160  # the most of a source line a diagnostic shows

# How diagnostics look (--color, -m/--report-mode, and common.color/common.report_mode).
DIAGNOSTIC_STYLE = {"color": False, "one_line": False}
_SEVERITY_COLORS = {"error": "1;31", "warning": "1;33", "note": "1;36"}


def format_diagnostic(message, span=None, severity="error"):
    """`path:line:col: error: message`, then the source line and a caret under the spot (only
    the first line in one-line mode). A rule's warning has severity `warning[Rule]`."""
    color = _SEVERITY_COLORS.get(severity.split("[")[0]) if DIAGNOSTIC_STYLE["color"] else None
    word = "\033[%sm%s\033[0m" % (color, severity) if color else severity
    if span is None:
        return "%s: %s" % (word, message)
    line, col = span.source.line_col(span.pos)
    where = "%s:%d:%d" % (span.path, line, col)
    head = "%s: %s: %s" % ("\033[1m%s\033[0m" % where if color else where, word, message)
    if DIAGNOSTIC_STYLE["one_line"]:
        return head
    text = span.source.line_text(line).rstrip("\r")
    start = 0
    if len(text) > _DIAGNOSTIC_WIDTH:  # a window of a long line (a 50 MB one-line file) around the caret
        start = max(0, min(col - 1 - _DIAGNOSTIC_WIDTH // 2, len(text) - _DIAGNOSTIC_WIDTH))
        end = start + _DIAGNOSTIC_WIDTH
        text = ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")
        start -= 3 if start else 0
    # Tabs before the caret keep their width so the caret lines up in a terminal.
    pad = "".join("\t" if c == "\t" else " " for c in text[: col - 1 - start])
    return "%s\n    %s\n    %s%s" % (head, text, pad, "\033[%sm^\033[0m" % color if color else "^")


# ============================================================================================
# 2. Versions
# ============================================================================================
#
# What each version of WDL allows is data, not branches: one row per feature, one column per
# version. `y` the version has it, `-` it does not, `w` it is accepted for compatibility with
# Cromwell and miniwdl (production WDL relies on it) with a warning that names the portable
# form; `--strict` makes every `w` an error. The lexer, parser, checker and evaluator ask a
# document's Dialect, never compare version numbers.

_DIALECT_TABLE = """
feature                   draft-2 1.0 1.1 1.2 1.3
version_statement         -       y   y   y   y     a `version` line opens the document
input_section             -       y   y   y   y     else every unbound declaration is an input
untyped_outputs           y       -   -   -   -     `output { call.out  call.* }`
implicit_outputs          y       y   -   -   -     a workflow without an `output` section outputs every call's outputs
block_comments            y       -   -   -   -     `/* ... */`
dollar_in_heredoc         y       -   -   -   -     `${}` is a placeholder in `<<< >>>` commands
tilde_placeholders        -       y   y   y   y     `~{}` is a placeholder
struct                    -       y   y   y   y
optional_to_required      y       y   -   -   -     `T?` accepted where `T` is required (checked at run time)
primitive_to_string       y       y   w   w   w     Int/Float/Boolean accepted where a String is required
string_to_number          w       w   w   w   w     a String accepted where an Int or Float is required
array_placeholder         y       y   -   -   -     an Array in a placeholder renders space-separated
lone_true_false           y       y   -   -   -     `true=` without `false=` (or the reverse) in a placeholder
compound_placeholder      w       w   w   w   w     a Map, Pair or struct in a placeholder renders as JSON
map_to_pairs              w       w   w   w   w     a Map accepted where an Array of Pairs is required
map_member_access         w       w   w   w   w     `m.key` for `m["key"]` on a Map with String keys
struct_index              w       w   w   w   w     `s["member"]` for `s.member` on a struct or Object
double_optional           w       w   w   w   w     `T??`, read as `T?`
duplicate_keys            w       w   w   -   -     a `runtime` or `meta` key given twice (the last one counts)
sep_on_non_array          w       w   w   w   w     `sep=` on a value that is not an Array
empty_struct              w       w   w   w   w     a struct without members (the grammar allows it; Sprocket refuses it)
optional_for_required     w       w   -   -   -     a `T?` value given to a `T` declaration or call input
placeholder_options       w       w   w   w   w     a placeholder with two options (`default=` and `sep=`)
non_posix_regex           w       w   w   w   w     a literal regex with `(?:`, lazy quantifiers, ...: beyond POSIX ERE
version_as_name           y       y   w   w   w     a declaration, input or member named `version`
workflow_named_like_task  w       w   w   w   w     a workflow with the same name as a task
newer_functions           -       w   -   -   -     a WDL 1.1 function (`sep`, `suffix`, `unzip`, ...) in a 1.0 document
quoted_member_names       w       w   w   w   w     `Runtime {"cpu": 1}`: struct or object member names in quotes
mixed_array_items         w       w   w   w   w     an array literal mixing `T`, `T?`, `Array[T]` and `[]` (`select_first([x, []])`)
boolean_concat            w       w   w   w   w     `"--x " + b` with a Boolean `b` (rendered `true`/`false`)
unbound_call_inputs       y       y   w   w   w     a call that leaves required inputs unbound (given at run time as `wf.call.input`)
duplicate_call_inputs     w       w   w   w   w     a call input given twice (the last one counts, as in Cromwell)
shared_namespace          -       w   w   w   w     two imports under one namespace name, all but one of them only structs
empty_document            w       w   w   w   w     an empty `.wdl` file (Cromwell ignores it)
unbound_declarations      -       w   -   -   -     a declaration without a value outside `input {}` (taken as an input, as miniwdl does)
unknown_runtime_key       y       y   w   w   w     a `runtime` key that is neither a requirement nor a known hint
nested_inputs             y       y   -   -   -     call inputs settable from outside without `allow_nested_inputs`
import_older_minor        -       -   w   w   y     importing a document of an earlier 1.x version
lenient_optional_ops      y       y   -   -   -     `+`, `<`, ... on optional values
after                     -       -   y   y   y     `call a after b`
none_literal              -       -   y   y   y
struct_literal            -       -   y   y   y
abbreviated_call_inputs   -       -   y   y   y     `call t { input: x }`
length_of_any             -       -   -   y   y     `length` of a Map, Object or String; `keys` of a struct
call_inputs_bare          -       -   -   y   y     `call t { x = 1 }` without `input:`
directory                 -       -   -   y   y
env                       -       -   -   y   y
requirements              -       -   -   y   y     `requirements` and `hints` sections
task_variable             -       -   -   y   y     the `task` variable in commands and outputs
multiline_strings         -       -   -   y   y
power                     -       -   -   y   y     `**`
struct_meta               -       -   -   y   y
runtime_deprecated        -       -   -   y   y     the `runtime` section is deprecated
enum                      -       -   -   -   y
else                      -       -   -   -   y     `else if` / `else` in workflows
task_in_requirements      -       -   -   -   y     `task` (with `previous`) in requirements and hints
paths_from_document       -       -   -   y   y     relative paths outside `output` resolve against (and stay in) the document's directory
paths_exist               -       -   -   -   y     a required File/Directory outside `output` must exist when it is created
"""


class Dialect:
    """One version of WDL as the table above describes it: `dialect.after` is true where `after`
    exists (`y`); `dialect.compat` holds the features accepted only for compatibility (`w`,
    none of them under --strict), which the parser and the checker ask about through `lenient()`."""

    def __init__(self, name, level, column, strict=False):
        self.name = name  # "draft-2", "1.0", ...
        self.level = level  # the 1.x version whose standard library this one has
        self.strict = strict
        self.column = column
        self.compat = frozenset() if strict else frozenset(f for f, v in column.items() if v == "w")
        for feature, v in column.items():
            setattr(self, feature, v == "y")
        self._twins = {}

    def accepts(self, feature):
        return getattr(self, feature) or feature in self.compat

    def lenient(self, feature, message, span, warnings):
        """Is a construct accepted? One accepted only for compatibility (never under --strict) adds
        a warning named after its feature to `warnings`. The parser and the checker both ask here."""
        if getattr(self, feature):
            return True
        if feature in self.compat:
            warnings.append(WdlError(message, span, rule_name(feature)))
            return True
        return False

    def first(self, feature):
        """The first version that has `feature` (for "requires WDL 1.1" messages)."""
        return next(name for name in DIALECT_NAMES if _DIALECT_COLUMNS[name][feature] != "-")

    def strictly(self):
        return Dialect(self.name, self.level, self.column, True)

    def with_features(self, *features):
        """This dialect with `features` as if native: to ask whether a compatibility rule would
        make a construct valid (e.g. a coercion with `string_to_number`)."""
        twin = self._twins.get(features)
        if twin is None:
            twin = self._twins[features] = Dialect(self.name, self.level, dict(self.column, **{f: "y" for f in features}))
        return twin

    def __repr__(self):
        return "Dialect(%s%s)" % (self.name, ", strict" if self.strict else "")


def _dialect_columns():
    lines = [x for x in _DIALECT_TABLE.strip().splitlines()]
    names = lines[0].split()[1:]
    columns = {n: {} for n in names}
    for line in lines[1:]:
        cells = line.split()
        for n, v in zip(names, cells[1:1 + len(names)]):
            columns[n][cells[0]] = v
    return names, columns


DIALECT_NAMES, _DIALECT_COLUMNS = _dialect_columns()
_DIALECT_LEVELS = {"draft-2": (1, 0), "1.0": (1, 0), "1.1": (1, 1), "1.2": (1, 2), "1.3": (1, 3)}
DIALECTS = {n: Dialect(n, _DIALECT_LEVELS[n], _DIALECT_COLUMNS[n]) for n in DIALECT_NAMES}
DIALECTS["development"] = DIALECTS["1.3"]


def rule_name(feature):
    """`primitive_to_string` -> `PrimitiveToString`: the lint rule of a compatibility feature."""
    return "".join(w.capitalize() for w in feature.split("_"))


def requires_message(dialect, feature, what):
    return "%s requires WDL %s (this document is %s)" % (what, dialect.first(feature), dialect_text(dialect))


def dialect_text(dialect):
    return "draft-2" if dialect.name == "draft-2" else "version " + dialect.name


# ============================================================================================
# 3. Lexer
# ============================================================================================
#
# Tokens are tuples (kind, value, pos). Kinds: ident, int, float, op, and for text with
# placeholders: sbeg/stext/send (quoted strings), mbeg/mtext/mend (1.2 multi-line strings),
# cbeg/ctext/cend (commands), phbeg/phend (a `~{` / `${` placeholder), and eof.
# A mode stack remembers which text to resume when a placeholder's closing brace is met.

# One match per token, the whitespace and comments before it included. Every position matches
# (`bad` takes a character no token starts with, `eof` the end), so a match never backtracks
# into a comment to find a token there. A `string` without escapes or placeholders is matched
# whole; any other quote starts a string that _scan_text reads.
_TOKEN_RE = re.compile(
    r"""(?:[ \t\r\n]+|\#[^\n]*)*
    (?:(?P<float>(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)
      |(?P<int>0[xX][0-9a-fA-F]+|[0-9]+)
      |(?P<ident>[A-Za-z][A-Za-z0-9_]*)
      |(?P<op><<<|\*\*|==|!=|<=|>=|&&|\|\||[-+*/%!<>=.,:?(){}\[\]])
      |(?P<string>"[^"\\~$\n]*"|'[^'\\~$\n]*')
      |(?P<quote>["'])
      |(?P<eof>\Z)
      |(?P<bad>.))""",
    re.X | re.S,
)
_WS_RE = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")
# draft-2 also has `/* */` comments.
_TOKEN_RE_DRAFT2 = re.compile(_TOKEN_RE.pattern.replace(r"\#[^\n]*", r"\#[^\n]*|/\*.*?\*/", 1), re.X | re.S)
_TOKEN_KINDS = dict((i, kind) for kind, i in _TOKEN_RE.groupindex.items())  # (the same in both)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "~": "~", "$": "$"}
_ESCAPE_RE = re.compile(r"\\(?:([0-7]{3})|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S)


# A `\u`/`\U` escape not followed by its 4/8 hex digits (group 1 is then just the letter); `\\` skipped.
_CODEPOINT_ESCAPE_RE = re.compile(r"\\(\\|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[uU])")


def unescape(text):
    """Apply WDL string escapes; an unknown escape keeps its backslash (regexes rely on it)."""
    if "\\" not in text:
        return text

    def repl(m):
        octal, hex2, u4, u8, other = m.groups()
        if other is not None:
            return _ESCAPES.get(other, "\\" + other)
        return chr(int(octal, 8) if octal else int(hex2 or u4 or u8, 16))

    return _ESCAPE_RE.sub(repl, text)


def tokenize(source, pos=0, dialect=None):
    """Turn WDL source text into a list of tokens, ending with an `eof` token."""
    dialect = dialect or DIALECTS["1.3"]
    text = source.text
    toks = []
    append = toks.append
    stack = []  # one frame per open placeholder: [resume kind, terminator, brace depth]
    finditer = (_TOKEN_RE if dialect.version_statement else _TOKEN_RE_DRAFT2).finditer
    kinds = _TOKEN_KINDS
    while True:
        # finditer runs over plain tokens; the text of a string or command is scanned apart,
        # and a new finditer starts after it.
        for m in finditer(text, pos):
            i = m.lastindex
            kind = kinds[i]
            value = m[i]
            pos = m.end()
            start = pos - len(value)
            if kind == "ident":
                if value == "command":
                    # `command` followed by `{` or `<<<` opens a command section (elsewhere it is a name).
                    w = _WS_RE.match(text, pos).end()
                    if text.startswith("<<<", w) or text.startswith("{", w):
                        append(("ident", value, start))
                        term = ">>>" if text[w] == "<" else "}"
                        append(("cbeg", term, w))
                        pos = _scan_text(source, w + len(term), "c", term, toks, stack, dialect)
                        break
            elif kind == "op":
                if value == "<<<":
                    append(("mbeg", value, start))
                    pos = _scan_text(source, pos, "m", ">>>", toks, stack, dialect)
                    break
                if stack and (value == "{" or value == "}"):
                    frame = stack[-1]
                    if value == "{":
                        frame[2] += 1
                    elif frame[2]:
                        frame[2] -= 1
                    else:
                        stack.pop()
                        append(("phend", value, start))
                        pos = _scan_text(source, pos, frame[0], frame[1], toks, stack, dialect)
                        break
            elif kind == "string":
                append(("sbeg", value[0], start))
                append(("stext", value[1:-1], start + 1))
                append(("send", value[0], pos - 1))
                continue
            elif kind == "quote":
                append(("sbeg", value, start))
                pos = _scan_text(source, pos, "s", value, toks, stack, dialect)
                break
            elif kind == "eof" or kind == "bad":
                return _end_tokens(source, toks, stack, value, start)
            append((kind, value, start))


def _end_tokens(source, toks, stack, value, start):
    """The tokens with `eof` at `start`, the end of the text (`value` empty), where no placeholder
    is open; else the error at `start`."""
    if value:
        raise WdlSyntaxError("unexpected character %r" % value, Span(source, start))
    if stack:
        raise WdlSyntaxError("unterminated placeholder: expected `}`", Span(source, start))
    toks.append(("eof", None, start))
    return toks


@functools.lru_cache(maxsize=None)
def _text_re(term, dollar, tilde, one_line):
    """The pattern that skips text up to what _scan_text must look at: a placeholder's
    opening, the terminator, a newline in a quoted string, or the end (escapes are skipped)."""
    opens = ("~" if tilde else "") + ("$" if dollar else "")
    stops = re.escape("\\" + opens + term[0] + ("\n" if one_line else ""))
    alts = ["[^%s]+" % stops, r"\\.?"]  # `\` skips the next character
    if opens:
        alts.append("[%s](?!\\{)" % re.escape(opens))
    if len(term) > 1:
        alts.append("%s(?!%s)" % (re.escape(term[0]), re.escape(term[1:])))
    return re.compile("(?:%s)*" % "|".join(alts), re.S)


def _scan_text(source, pos, kind, term, toks, stack, dialect):
    """Scan string or command text from `pos` up to its terminator or the next placeholder.

    kind is "s" (quoted string, term is the quote), "m" (multi-line string) or "c" (command,
    term `}` or `>>>`). Emits text tokens; on a placeholder pushes a frame and returns the
    position after `~{`, so normal tokenizing continues inside it.
    """
    text = source.text
    start = pos
    # `${` is a placeholder except in 1.x `command <<< >>>` text (multi-line strings have it); `~{`
    # everywhere but in draft-2.
    dollar = term in ('"', "'", "}") or kind == "m" or dialect.dollar_in_heredoc
    pos = _text_re(term, dollar, dialect.tilde_placeholders, kind == "s").match(text, pos).end()
    c = text[pos:pos + 1]
    if c == "" or c == "\n":
        what = {"s": "string", "m": "multi-line string", "c": "command section"}[kind]
        raise WdlSyntaxError("unterminated %s" % what, Span(source, start - 1))
    toks.append((kind + "text", text[start:pos], start))
    if c == "~" or c == "$":
        toks.append(("phbeg", c + "{", pos))
        stack.append([kind, term, 0])
        return pos + 2
    toks.append((kind + "end", term, pos))
    return pos + len(term)


# ============================================================================================
# 4. Syntax tree
# ============================================================================================
#
# Small node classes. Every node has a `span`; expression nodes get a `type` from the checker.


class Node:
    __slots__ = ("span",)
    _fields = ()

    def __init__(self, span, *args):
        self.span = span
        for name, value in zip(self._fields, args):
            setattr(self, name, value)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(repr(getattr(self, f, None)) for f in self._fields))

    def children(self):
        """The nodes directly under this one, in field order: the one traversal every walker uses
        (a new node kind declares its fields and is walked)."""
        out = []
        for f in self._fields:
            x = getattr(self, f, None)
            if isinstance(x, Node):
                out.append(x)
            elif isinstance(x, (list, tuple, dict)):
                nodes_in(x, out)
        return out


def nodes_in(x, out=None):
    """The outermost nodes in `x` (a node, or lists, tuples and dict values of them), into `out`."""
    out = [] if out is None else out
    if isinstance(x, Node):
        out.append(x)
    elif isinstance(x, (list, tuple, dict)):
        for y in x.values() if isinstance(x, dict) else x:
            if isinstance(y, Node):
                out.append(y)
            elif isinstance(y, (list, tuple, dict)):
                nodes_in(y, out)
    return out


def _node(name, fields, extra=(), base=Node):
    """Define a node class with the given constructor fields (and extra attributes set later)."""
    fields = tuple(fields.split())
    extra = tuple(extra.split()) if extra else ()
    return type(name, (base,), {"__slots__": fields + extra, "_fields": fields})


class Expr(Node):
    __slots__ = ("type",)


# Expressions. Literal.value is a Python int/float/bool/None.
Literal = _node("Literal", "value", base=Expr)
StringLit = _node("StringLit", "parts", base=Expr)  # parts: str or Placeholder
Placeholder = _node("Placeholder", "expr options", base=Expr)  # options: {name: value}
ArrayLit = _node("ArrayLit", "items mixed", base=Expr)  # mixed (False until Checker.mixed_items says so)
MapLit = _node("MapLit", "entries", base=Expr)  # [(key expr, value expr)]
PairLit = _node("PairLit", "left right", base=Expr)
ObjectLit = _node("ObjectLit", "members", base=Expr)  # [(name, expr)]
StructLit = _node("StructLit", "name members", base=Expr)
Ident = _node("Ident", "name", base=Expr)
GetAttr = _node("GetAttr", "expr name", base=Expr)
Index = _node("Index", "expr index", base=Expr)
Apply = _node("Apply", "name args", "fn", base=Expr)  # fn: the resolved stdlib overload
Unary = _node("Unary", "op operand", base=Expr)
Binary = _node("Binary", "op left right", base=Expr)
IfThenElse = _node("IfThenElse", "cond then other", base=Expr)

# Declarations and sections. `type_` is a Type (struct names resolved by the checker).
Decl = _node("Decl", "type_ name expr", "env deps")
StructDef = _node("StructDef", "name members meta parameter_meta", "type_ doc")  # members: [Decl]
EnumDef = _node("EnumDef", "name value_type choices", "type_ doc")  # choices: [(name, expr, span)]
Import = _node("Import", "uri namespace aliases", "doc")  # aliases: {name: alias}
Command = _node("Command", "parts heredoc")
Task = _node(
    "Task",
    "name inputs decls command outputs runtime requirements hints meta parameter_meta",
    "doc dialect runtime_spans",
)
Call = _node("Call", "callee alias afters inputs", "callee_def name deps")  # callee: dotted str
Scatter = _node("Scatter", "variable expr body", "name deps")
Conditional = _node("Conditional", "clauses", "name deps")  # clauses: [(cond expr or None, body)]
Workflow = _node("Workflow", "name inputs body outputs meta parameter_meta hints", "doc dialect")
Document = _node("Document", "source dialect imports structs enums tasks workflow", "namespaces types checked warnings")

class RuntimeBlock(dict):
    """A `runtime`, `requirements` or `hints` section: {key: expression}, with each key's span."""

    __slots__ = ("spans",)

    def __init__(self):
        dict.__init__(self)
        self.spans = {}


# Hints values (1.2): `input { ... }` and `output { ... }` literals.
HintsBlock = _node("HintsBlock", "kind entries", base=Expr)


def free_names(e, out=None):
    """Names an expression reads (the first part of `a.b.c` chains)."""
    if out is None:
        out = set()
    if type(e) is Ident:
        out.add(e.name)
    elif e is not None:
        for c in e.children():
            free_names(c, out)
    return out


# ============================================================================================
# 5. Types
# ============================================================================================
#
# Types are small immutable objects; `opt` marks `T?`. Struct and enum types hold their
# definitions. `AnyType` is the type of `None`, of `[]`'s items, of `read_json()` and of
# anything already reported as an error (so one mistake gives one message).


class Type:
    __slots__ = ("opt",)

    def optional(self, opt=True):
        if self.opt == opt:
            return self
        t = object.__new__(type(self))
        for cls in type(self).__mro__:
            for s in getattr(cls, "__slots__", ()):
                if hasattr(self, s):
                    object.__setattr__(t, s, getattr(self, s))
        t.opt = opt
        return t

    def required(self):
        return self.optional(False)

    def key(self):
        return (type(self).__name__,)

    def params(self):
        """The types inside an Array, Map or Pair type (not a struct's members: they are its own).
        The one walk over type parameters: with_params() rebuilds the type from new ones."""
        return []

    def with_params(self, params):
        return self

    def __eq__(self, other):
        return isinstance(other, Type) and self.key() == other.key() and self.opt == other.opt

    def __hash__(self):
        return hash(self.key())

    def __str__(self):
        return self.base_str() + ("?" if self.opt else "")

    __repr__ = __str__


class PrimType(Type):
    __slots__ = ("name",)

    def __init__(self, name, opt=False):
        self.name = name
        self.opt = opt

    def key(self):
        return ("prim", self.name)

    def base_str(self):
        return self.name


class ArrayType(Type):
    __slots__ = ("item", "nonempty")

    def __init__(self, item, nonempty=False, opt=False):
        self.item = item
        self.nonempty = nonempty
        self.opt = opt

    def key(self):
        return ("array", self.item, self.item.opt, self.nonempty)

    def params(self):
        return [self.item]

    def with_params(self, params):
        return ArrayType(params[0], self.nonempty, self.opt)

    def base_str(self):
        return "Array[%s]%s" % (self.item, "+" if self.nonempty else "")


class _TwoParameterType(Type):
    """Map and Pair: types with two parameters, named by each subclass's slots."""

    __slots__ = ()
    kind = ""

    def __init__(self, first, second, opt=False):
        a, b = type(self).__slots__
        setattr(self, a, first)
        setattr(self, b, second)
        self.opt = opt

    def params(self):
        return [getattr(self, n) for n in type(self).__slots__]

    def with_params(self, params):
        return type(self)(params[0], params[1], self.opt)

    def key(self):
        a, b = self.params()
        return (self.kind, a, a.opt, b, b.opt)

    def base_str(self):
        return "%s[%s, %s]" % ((self.kind,) + tuple(self.params()))


class MapType(_TwoParameterType):
    __slots__ = ("key_type", "value")
    kind = "Map"


class PairType(_TwoParameterType):
    __slots__ = ("left", "right")
    kind = "Pair"


class _NamedType(Type):
    """A type known by its name (structs, enums, and names not yet resolved)."""

    __slots__ = ()
    kind = ""

    def key(self):
        return (self.kind, self.name)

    def base_str(self):
        return self.name


class StructType(_NamedType):
    """A struct; `members` is {name: Type} in definition order."""

    __slots__ = ("name", "members")
    kind = "struct"

    def __init__(self, name, members, opt=False):
        self.name, self.members, self.opt = name, members, opt


class EnumType(_NamedType):
    """A 1.3 enum; `choices` is {name: value expression}, `value_type` its inner type."""

    __slots__ = ("name", "value_type", "choices")
    kind = "enum"

    def __init__(self, name, value_type, choices, opt=False):
        self.name, self.value_type, self.choices, self.opt = name, value_type, choices, opt


class ObjectType(Type):
    __slots__ = ()

    def __init__(self, opt=False):
        self.opt = opt

    def base_str(self):
        return "Object"


class AnyType(Type):
    """`None`'s type (optional), and that of anything unknown or already reported."""

    __slots__ = ()

    def __init__(self, opt=False):
        self.opt = opt

    def base_str(self):
        return "None" if self.opt else "Any"


class CallType(Type):
    """The outputs of a call, reachable as `call_name.output`."""

    __slots__ = ("name", "members")

    def __init__(self, name, members, opt=False):
        self.name, self.members, self.opt = name, members, opt

    def key(self):
        return ("call", self.name, tuple(self.members.items()))

    def base_str(self):
        return "call `%s`" % self.name


class NamedType(_NamedType):
    """A struct or enum name as written, before the checker resolves it."""

    __slots__ = ("name", "span")
    kind = "named"

    def __init__(self, name, span, opt=False):
        self.name, self.span, self.opt = name, span, opt


class TypeVar(_NamedType):
    """A type parameter in a standard library signature: X, Y, or P (primitive)."""

    __slots__ = ("name",)
    kind = "var"

    def __init__(self, name, opt=False):
        self.name, self.opt = name, opt


PRIMITIVES = {n: PrimType(n) for n in ("Boolean", "Int", "Float", "String", "File", "Directory")}
BOOLEAN, INT, FLOAT, STRING, FILE, DIRECTORY = (PRIMITIVES[n] for n in ("Boolean", "Int", "Float", "String", "File", "Directory"))
OBJECT = ObjectType()
ANY = AnyType()
NONE_TYPE = AnyType(opt=True)


def is_numeric(t):
    return isinstance(t, PrimType) and t.name in ("Int", "Float")


def is_primitive(t):
    return isinstance(t, (PrimType, EnumType, AnyType))


def coerces(src, dst, dialect):
    """May a value of type `src` be used where `dst` is expected (the spec's coercion table)?

    Optional to non-optional is allowed where the dialect says so (draft-2 and 1.0, where
    engines accepted it and production workflows depend on it; None fails at run time).
    """
    if isinstance(src, AnyType):
        return not src.opt or dst.opt or isinstance(dst, AnyType) or dialect.optional_to_required
    if isinstance(dst, (AnyType, TypeVar)):
        return True
    if src.opt and not dst.opt and not dialect.optional_to_required:
        return False
    if isinstance(src, PrimType):
        if isinstance(dst, PrimType):
            s, d = src.name, dst.name
            if s == d or (s == "Int" and d == "Float"):
                return True
            if s == "String" and d in ("File", "Directory") or d == "String" and s in ("File", "Directory"):
                return True
            return d == "String" and dialect.primitive_to_string or (
                s == "String" and d in ("Int", "Float") and dialect.string_to_number)
        return False
    if isinstance(src, ArrayType):
        return isinstance(dst, ArrayType) and coerces(src.item, dst.item, dialect)
    if isinstance(src, MapType):
        if isinstance(dst, MapType):
            return coerces(src.key_type, dst.key_type, dialect) and coerces(src.value, dst.value, dialect)
        if isinstance(dst, ObjectType):
            return True
        if isinstance(dst, StructType):  # keys are checked at run time
            return coerces(src.key_type, STRING, dialect) and all(
                coerces(src.value, m, dialect) or isinstance(src.value, AnyType) for m in dst.members.values()
            ) or isinstance(src.value, (AnyType, ObjectType))
        return False
    if isinstance(src, PairType):
        return isinstance(dst, PairType) and coerces(src.left, dst.left, dialect) and coerces(src.right, dst.right, dialect)
    if isinstance(src, StructType):
        if isinstance(dst, StructType):
            if src.name == dst.name:
                return True
            return src.members.keys() == dst.members.keys() and all(
                coerces(src.members[k], dst.members[k], dialect) for k in src.members
            )
        if isinstance(dst, ObjectType):
            return True
        if isinstance(dst, MapType):
            return coerces(STRING, dst.key_type, dialect) and all(coerces(m, dst.value, dialect) for m in src.members.values())
        return False
    if isinstance(src, ObjectType):
        return isinstance(dst, (ObjectType, StructType, MapType))
    if isinstance(src, EnumType):
        return isinstance(dst, EnumType) and dst.name == src.name
    return False


def unify(types, dialect):
    """The common type of array items or if/else branches, or None when there is none."""
    opt = any(t.opt for t in types)
    real = [t for t in types if not (isinstance(t, AnyType) and t.opt)]
    if not real:
        return NONE_TYPE
    # Candidates without Any inside come first, so `[[], [1]]` is Array[Array[Int]]; String
    # comes last, so `["a.txt", some_file]` is an Array[File].
    cands = sorted(real, key=lambda t: ("Any" in str(t), t == STRING))
    for cand in cands:
        c = cand.optional(opt)
        if all(coerces(t.optional(opt) if t.opt else t, c, dialect) for t in real):
            if isinstance(c, ArrayType) and c.nonempty and not all(getattr(t, "nonempty", False) for t in real):
                c = ArrayType(c.item, False, c.opt)
            return c
    return _unify_members(real, opt, dialect)


def _unify_members(types, opt, dialect):
    """Compound types of one kind unify member by member, as Sprocket's common type does:
    `("a", 1.0)` and `(None, 2)` are `Pair[String?, Float]`, which neither of them is."""
    if all(isinstance(t, PairType) for t in types):
        parts = [unify([t.left for t in types], dialect), unify([t.right for t in types], dialect)]
        return None if None in parts else PairType(parts[0], parts[1], opt)
    if all(isinstance(t, ArrayType) for t in types):
        item = unify([t.item for t in types], dialect)
        return None if item is None else ArrayType(item, all(t.nonempty for t in types), opt)
    if all(isinstance(t, MapType) for t in types):
        parts = [unify([t.key_type for t in types], dialect), unify([t.value for t in types], dialect)]
        return None if None in parts else MapType(parts[0], parts[1], opt)
    return None


def contains_type(t, pred):
    """Does type `t` contain (at any depth) a type satisfying `pred`?"""
    if pred(t):
        return True
    inner = t.members.values() if isinstance(t, StructType) else t.params()
    return any(contains_type(x, pred) for x in inner)


# ============================================================================================
# 6. Parser
# ============================================================================================

# (A comment runs to the end of its line: `## Cromwell version support` is no version line.)
_VERSION_RE = re.compile(r"(?:[ \t\r\n]+|#[^\n]*(?![^\n]))*version[ \t]+([^\s#]+)")
_MAX_NESTING = 120  # expressions and types: bounds the recursion of the later passes over them too

_BINARY_PREC = {
    "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4,
    "+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "**": 7,
}
_RUNTIME_SECTIONS = ("runtime", "requirements", "hints")


class Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, source, toks, dialect):
        self.source = source
        self.toks = toks
        self.i = 0
        self.dialect = dialect
        self.depth = 0
        self.blocks = 0  # scatters and conditionals nested (format and the checker walk them too)
        self.warnings = []

    @classmethod
    def for_source(cls, source, strict=False):
        """A parser for a whole document, in the dialect its `version` line names (none: draft-2)."""
        m = _VERSION_RE.match(source.text)
        if m is None:
            toks = tokenize(source, 0, DIALECTS["draft-2"])
            parser = cls(source, toks, DIALECTS["draft-2"].strictly() if strict else DIALECTS["draft-2"])
            if toks[0][0] == "eof" and not parser.lenient(
                    "empty_document", "the document is empty: accepted for compatibility with Cromwell, which ignores "
                    "it; portable WDL has a `version` statement, then tasks or a workflow", toks[0]):
                raise EmptyDocumentError("the document is empty: expected a `version` statement, then tasks or a "
                                     "workflow", Span(source, 0))
            return parser
        elif m.group(1) in DIALECTS and m.group(1) != "draft-2":
            dialect, start = DIALECTS[m.group(1)], m.end()
        else:
            raise WdlSyntaxError("unsupported WDL version `%s` (supported: 1.0, 1.1, 1.2, 1.3, development, and "
                                 "draft-2, which has no `version` line)" % m.group(1), Span(source, m.start(1)))
        if strict:
            dialect = dialect.strictly()
        return cls(source, tokenize(source, start, dialect), dialect)

    def lenient(self, feature, message, tok=None):
        """Is a construct accepted here (see Dialect.lenient)? The warning points at `tok`."""
        return self.dialect.lenient(feature, message, self.span(tok), self.warnings)

    # -- token helpers ---------------------------------------------------------------------
    def span(self, tok=None):
        return Span(self.source, (tok or self.toks[self.i])[2])

    def peek(self, k=0):
        i = self.i + k  # (the parser is at most at the eof token: peek(0) needs no bound)
        return self.toks[i] if i < len(self.toks) else self.toks[-1]

    def at(self, value, k=0):
        tok = self.peek(k) if k else self.toks[self.i]
        return tok[1] == value and tok[0] in ("op", "ident")

    def at_kw(self, *words):
        tok = self.toks[self.i]
        return tok[0] == "ident" and tok[1] in words

    def advance(self):
        tok = self.toks[self.i]
        if tok[0] != "eof":
            self.i += 1
        return tok

    def error(self, message, tok=None):
        raise WdlSyntaxError(message, self.span(tok))

    def describe(self, tok):
        kind, value = tok[0], tok[1]
        if kind == "eof":
            return "end of file"
        if kind in ("sbeg", "mbeg"):
            return "a string"
        if kind == "cbeg":
            return "a command section"
        if kind in ("int", "float"):
            return "number `%s`" % value
        return "`%s`" % value

    def expect(self, value):
        tok = self.toks[self.i]
        if tok[1] != value or tok[0] not in ("op", "ident"):
            self.error("expected `%s`, found %s" % (value, self.describe(tok)))
        self.i += 1
        return tok

    def assigned(self):
        """The expression after `=` when one follows (a declaration's value, a call input's, an
        enum choice's); else None."""
        if not self.at("="):
            return None
        self.advance()
        return self.expr()

    def comma_list(self, item, close):
        """item() for each element of a comma-separated list (a trailing comma allowed) up to
        `close`, which is consumed."""
        items = []
        while not self.at(close):
            items.append(item())
            if not self.at(","):
                break
            self.advance()
        self.expect(close)
        return items

    def ident(self, what="a name"):
        tok = self.toks[self.i]
        if tok[0] != "ident":
            self.error("expected %s, found %s" % (what, self.describe(tok)))
        if tok[1] in _HARD_KEYWORDS and not (tok[1] == "version" and self.lenient(
                "version_as_name", "`version` is a keyword in WDL %s: accepted as a name for compatibility with "
                "Cromwell and miniwdl; a portable document renames it" % self.dialect.name, tok)):
            self.error("expected %s, found the keyword `%s`" % (what, tok[1]))
        self.i += 1
        return tok[1]

    def require(self, feature, what, tok=None):
        """Version gate: `what` exists only where the dialect has `feature`."""
        if not getattr(self.dialect, feature):
            self.error(requires_message(self.dialect, feature, what), tok)

    # -- document --------------------------------------------------------------------------
    def document(self):
        doc = Document(Span(self.source, 0), self.source, self.dialect, [], [], [], [], None)
        while True:
            tok = self.peek()
            if tok[0] == "eof":
                return doc
            if self.at_kw("import"):
                doc.imports.append(self.import_())
            elif self.at_kw("struct"):
                doc.structs.append(self.struct())
            elif self.at_kw("enum"):
                self.require("enum", "`enum`")
                doc.enums.append(self.enum())
            elif self.at_kw("task"):
                doc.tasks.append(self.task())
            elif self.at_kw("workflow"):
                if doc.workflow is not None:
                    self.error("a document may contain only one workflow")
                doc.workflow = self.workflow()
            elif self.at_kw("version"):
                self.error("the `version` statement must come first and only once")
            else:
                self.error("expected `import`, `struct`, `task` or `workflow`, found %s" % self.describe(tok))

    def string_literal(self, what):
        """A quoted string with no placeholders (import URIs, meta values)."""
        tok = self.peek()
        if tok[0] not in ("sbeg",):
            self.error("expected %s (a quoted string), found %s" % (what, self.describe(tok)))
        self.advance()
        text = self.advance()
        if self.peek()[0] != "send":
            self.error("placeholders are not allowed in %s" % what)
        self.advance()
        return unescape(text[1])

    def meta_string(self):
        """A meta string: `~{...}` in it is documentation text, not a placeholder."""
        start = self.advance()[2]
        depth = 1
        while depth:
            tok = self.advance()
            if tok[0] == "eof":
                self.error("unterminated string", tok)
            depth += {"sbeg": 1, "send": -1}.get(tok[0], 0)
        return unescape(self.source.text[start + 1:tok[2]])

    def import_(self):
        span = self.span()
        self.advance()
        uri = self.string_literal("an import path")
        namespace = None
        aliases = {}
        if self.at_kw("as"):
            self.advance()
            namespace = self.ident("a namespace name")
        while self.at_kw("alias"):
            self.advance()
            name = self.ident("a struct name")
            self.expect("as")
            aliases[name] = self.ident("an alias")
        return Import(span, uri, namespace, aliases)

    def struct(self):
        span = self.span()
        self.advance()
        name = self.ident("a struct name")
        self.expect("{")
        members, meta, pmeta = [], None, None
        while not self.at("}"):
            if self.at_kw("meta", "parameter_meta") and self.at("{", 1):
                self.require("struct_meta", "`%s` in a struct" % self.peek()[1])
                if self.advance()[1] == "meta":
                    meta = self.meta_block()
                else:
                    pmeta = self.meta_block()
                continue
            dspan = self.span()
            type_ = self.type_()
            members.append(Decl(dspan, type_, self.ident("a member name"), None))
            if self.at(","):
                self.advance()
        self.advance()
        return StructDef(span, name, members, meta, pmeta)

    def enum(self):
        span = self.span()
        self.advance()
        name = self.ident("an enum name")
        value_type = None
        if self.at("["):
            self.advance()
            value_type = self.type_()
            self.expect("]")
        self.expect("{")
        return EnumDef(span, name, value_type, self.comma_list(self.enum_choice, "}"))

    def enum_choice(self):
        cspan = self.span()
        return self.ident("an enum choice"), self.assigned(), cspan

    # -- types -----------------------------------------------------------------------------
    def type_(self):
        tok = self.peek()
        self.depth += 1
        try:
            return self._type(tok)
        finally:
            self.depth -= 1

    def _type(self, tok):
        if self.depth > _MAX_NESTING:
            self.error("type nested too deeply (more than %d levels)" % _MAX_NESTING)
        name = self.ident("a type")
        span = self.span(tok)
        if name in ("Array", "Map", "Pair"):
            self.expect("[")
            params = [self.type_()]
            while self.at(","):
                self.advance()
                params.append(self.type_())
            self.expect("]")
            want = 1 if name == "Array" else 2
            if len(params) != want:
                self.error("`%s` takes %d type parameter%s" % (name, want, "s" if want > 1 else ""), tok)
            if name == "Array":
                t = ArrayType(params[0])
                if self.at("+"):
                    self.advance()
                    t = ArrayType(params[0], nonempty=True)
            elif name == "Map":
                t = MapType(params[0], params[1])
            else:
                t = PairType(params[0], params[1])
        elif name in PRIMITIVES:
            if name == "Directory":
                self.require("directory", "the `Directory` type", tok)
            t = PRIMITIVES[name]
        elif name == "Object":
            t = OBJECT
        else:
            while self.at(".") and self.peek(1)[0] == "ident":  # namespaced struct name
                self.advance()
                name += "." + self.advance()[1]
            t = NamedType(name, span)
        if self.at("?"):
            self.advance()
            t = t.optional()
            if self.at("?") and self.lenient("double_optional", "`%s?` is read as `%s` for compatibility with "
                                             "Cromwell; portable WDL writes one `?`" % (t, t)):
                self.advance()
        return t

    # -- declarations ----------------------------------------------------------------------
    def decl(self, need_value):
        span = self.span()
        type_ = self.type_()
        name_tok = self.peek()
        name = self.ident("a declaration name")
        if name in _SECTION_KEYWORDS and (name not in ("requirements", "hints") or self.dialect.requirements):
            self.error("`%s` is a section keyword and cannot name a declaration; rename it" % name, name_tok)
        expr = self.assigned()
        if expr is None and need_value:
            tok = self.peek()
            if tok[0] != "ident" and tok[1] != "}":  # `Int x 42`: something other than `=`
                self.error("expected `=` after `%s`, found %s" % (name, self.describe(tok)))
            raise WdlSyntaxError("`%s` needs a value (`= expression`): only inputs may be declared without one" % name, span)
        d = Decl(span, type_, name, expr)
        d.env = False
        return d

    def is_decl_start(self):
        tok = self.peek()
        if tok[0] != "ident":
            return False
        if tok[1] in PRIMITIVES or tok[1] in ("Array", "Map", "Pair", "Object"):
            return True
        if tok[1] in _KEYWORDS:
            return False
        nxt = self.peek(1)  # `Name x`, `Name? x`, `ns.Name x`
        return nxt[0] == "ident" or nxt[1] in ("?",) or (nxt[1] == "." and self.peek(3)[0] == "ident")

    def input_section(self):
        self.advance()
        self.expect("{")
        decls = []
        while not self.at("}"):
            env = self.at_kw("env") and self.peek(1)[0] == "ident" and self.peek(2)[1] not in ("=", "}")
            if env:
                self.require("env", "`env` declarations")
                self.advance()
            d = self.decl(False)
            d.env = env
            decls.append(d)
        self.advance()
        return decls

    def output_section(self, untyped):
        """`untyped`: draft-2 workflow outputs may be `call.out` and `call.*`, comma-separated."""
        self.advance()
        self.expect("{")
        decls = []
        while not self.at("}"):
            if untyped and self.peek()[0] == "ident" and self.at(".", 1):
                decls.append(self.untyped_output())
            elif self.peek()[0] == "ident" and self.at(".", 1) and (self.at("*", 2) or self.peek(3)[0] != "ident"
                                                                    and not self.at("?", 3)):
                self.error("an output needs a type and a name (`String out = %s.%s`); untyped outputs are draft-2 "
                           "only" % (self.peek()[1], self.peek(2)[1]))
            else:
                decls.append(self.decl(True))
            if untyped and self.at(","):
                self.advance()
        self.advance()
        return decls

    def untyped_output(self):
        """draft-2's `call.out` (named `call.out`, typed by the checker) and `call.*` (every
        output of the call; the checker expands it)."""
        span = self.span()
        call = self.advance()[1]
        self.expect(".")
        if self.at("*"):
            self.advance()
            return Decl(span, None, call + ".*", Ident(span, call))
        tok = self.peek()
        name = self.ident("an output of call `%s`" % call)
        return Decl(span, None, call + "." + name, GetAttr(self.span(tok), Ident(span, call), name))

    # -- meta ------------------------------------------------------------------------------
    def meta_block(self):
        self.expect("{")
        out = {}
        while not self.at("}"):
            tok = self.peek()
            if tok[0] != "ident":
                self.error("expected a meta key, found %s" % self.describe(tok))
            key = self.advance()[1]
            if key in out and not self.lenient("duplicate_keys", "meta key `%s` is given twice: the last one counts, as "
                                               "in Cromwell; portable WDL gives each key once" % key, tok):
                self.error("meta key `%s` is given twice" % key, tok)
            self.expect(":")
            out[key] = self.meta_value()
            if self.at(","):
                self.advance()
        self.advance()
        return out

    def meta_value(self):
        tok = self.peek()
        if tok[0] == "sbeg":
            return self.meta_string()
        if tok[0] in ("int", "float"):
            self.advance()
            return _number(tok, self)
        if tok[1] == "-" and self.peek(1)[0] in ("int", "float"):
            self.advance()
            return -_number(self.advance(), self)
        if tok[0] == "ident" and tok[1] in ("true", "false", "null"):
            self.advance()
            return {"true": True, "false": False, "null": None}[tok[1]]
        if tok[1] == "[":
            self.advance()
            return self.comma_list(self.meta_value, "]")
        if tok[1] == "{":
            return self.meta_block()
        self.error("expected a meta value (string, number, boolean, null, array or object), found %s" % self.describe(tok))

    # -- tasks -----------------------------------------------------------------------------
    def task(self):
        span = self.span()
        self.advance()
        name = self.ident("a task name")
        self.expect("{")
        task = Task(span, name, None, [], None, None, None, None, None, None, None)
        task.dialect = self.dialect
        task.runtime_spans = {}
        seen = set()
        while not self.at("}"):
            tok = self.peek()
            word = tok[1] if tok[0] == "ident" else None
            section = word if word in ("input", "output", "command", "meta", "parameter_meta") + _RUNTIME_SECTIONS else None
            if section and (section != "command" and self.at("{", 1) or section == "command" and self.peek(1)[0] == "cbeg"):
                if section in seen:
                    self.error("a task may have only one `%s` section" % section)
                seen.add(section)
                if section == "input":
                    task.inputs = self.input_section()
                elif section == "output":
                    task.outputs = self.output_section(False)
                elif section == "command":
                    self.advance()
                    task.command = self.command()
                elif section in ("meta", "parameter_meta"):
                    self.advance()
                    setattr(task, section, self.meta_block())
                else:
                    if section != "runtime":
                        self.require("requirements", "the `%s` section" % section)
                    task.runtime_spans[section] = self.span()
                    self.advance()
                    setattr(task, section, self.runtime_block(section))
            elif word == "env":
                self.require("env", "`env` declarations")
                self.advance()
                d = self.decl(False)
                d.env = True
                task.decls.append(d)
            elif self.is_decl_start():
                need_value = self.dialect.input_section and not self.dialect.accepts("unbound_declarations")
                task.decls.append(self.decl(need_value))
            else:
                self.error("expected a task section or declaration, found %s" % self.describe(tok))
        self.advance()
        if task.command is None:
            raise WdlSyntaxError("task `%s` has no `command` section" % name, span)
        if not self.dialect.input_section:  # draft-2: every declaration is an input, a bound one with its default
            task.inputs, task.decls = task.decls, []
        else:
            task.inputs, task.decls = self.unbound_inputs(task.inputs, task.decls)
        if "runtime" in seen and ("requirements" in seen or "hints" in seen):
            other = "requirements" if "requirements" in seen else "hints"
            raise WdlSyntaxError("a task may not have both `runtime` and `%s` sections (`runtime` is the older "
                                 "form of both)" % other, task.runtime_spans[max(("runtime", other), key=lambda k: task.runtime_spans[k].pos)])
        return task

    def runtime_block(self, section):
        self.expect("{")
        out = RuntimeBlock()
        while not self.at("}"):
            kspan = self.span()
            ktok = self.peek()
            key = self.ident("a %s key" % section)
            clash = key if key in out else next(
                (k for k in out if _KEY_ALIASES.get(k, k) == _KEY_ALIASES.get(key, key)), None)
            if clash is not None:
                what = ("`%s` key `%s` is given twice" % (section, key) if clash == key
                        else "`%s` and `%s` are the same %s key" % (clash, key, section))
                if not (section == "runtime" and self.lenient(
                        "duplicate_keys", what + ": the last one counts, as in Cromwell; portable WDL gives it once", ktok)):
                    self.error(what + "; give it once", ktok)
                del out[clash]
            out.spans[key] = kspan
            self.expect(":")
            if section == "hints" and self.at_kw("input", "output", "hints") and self.at("{", 1):
                kind = self.advance()[1]
                out[key] = self.hints_block(kind, kspan)
            else:
                out[key] = self.expr()
            if self.at(","):
                self.advance()
        self.advance()
        return out

    def hints_block(self, kind, span):
        self.expect("{")
        entries = []
        while not self.at("}"):
            key = self.ident("a name")
            while self.at("."):
                self.advance()
                key += "." + self.ident("a name")
            self.expect(":")
            if self.at_kw("input", "output", "hints") and self.at("{", 1):
                kspan = self.span()
                k = self.advance()[1]
                entries.append((key, self.hints_block(k, kspan)))
            else:
                entries.append((key, self.expr()))
            if self.at(","):
                self.advance()
        self.advance()
        return HintsBlock(span, kind, entries)

    def command(self):
        tok = self.advance()  # cbeg
        span = self.span(tok)
        heredoc = tok[1] == ">>>"
        # a file edited on Windows: bash would take the `\r` as part of each line's last word
        parts = [p.replace("\r\n", "\n") if isinstance(p, str) else p for p in self.text_parts("c")]
        return Command(span, strip_indent(parts), heredoc)

    def text_parts(self, kind):
        """Text and placeholders up to the closing token of a string or command."""
        parts = []
        while True:
            tok = self.advance()
            if tok[0] == kind + "text":
                if "\0" in tok[1]:  # in a command: a shell cannot run it; in a string: no file name or
                    #                 environment variable can hold it
                    self.error("a NUL byte cannot appear in WDL text", (tok[0], tok[1], tok[2] + tok[1].index("\0")))
                if kind != "c":
                    bad = next((m for m in _CODEPOINT_ESCAPE_RE.finditer(tok[1]) if m.group(1) in ("u", "U")), None)
                    if bad:
                        self.error("`\\%s` must be followed by %d hexadecimal digits" % (
                            bad.group(1), 4 if bad.group(1) == "u" else 8), (tok[0], tok[1], tok[2] + bad.start()))
                if tok[1]:
                    parts.append(tok[1] if kind == "c" else unescape(tok[1]) if kind == "s" else tok[1])
            elif tok[0] == "phbeg":
                parts.append(self.placeholder(tok))
            elif tok[0] == kind + "end":
                return parts
            else:
                self.error("unexpected %s in text" % self.describe(tok), tok)

    def placeholder(self, tok):
        span = self.span(tok)
        options = {}
        while self.peek()[0] == "ident" and self.peek()[1] in ("sep", "true", "false", "default") and self.at("=", 1):
            otok = self.advance()
            self.advance()
            if otok[1] in options:
                self.error("placeholder option `%s` given twice" % otok[1], otok)
            kinds = {"true": "false", "false": "true"}  # `true=`/`false=` are one option
            if any(o != kinds.get(otok[1]) for o in options) and not self.lenient(
                    "placeholder_options", "placeholder options `%s` and `%s` together: accepted as Cromwell and miniwdl "
                    "do, but a placeholder has one option in the spec" % (next(iter(options)), otok[1]), otok):
                self.error("a placeholder cannot have more than one option (here `%s` and `%s`)" % (
                    next(iter(options)), otok[1]), otok)
            vtok = self.peek()
            if vtok[0] == "sbeg":
                value = self.string_literal("a placeholder option")
            elif vtok[0] in ("int", "float"):
                value = _number(self.advance(), self)
            elif vtok[1] in ("true", "false"):
                value = self.advance()[1] == "true"
            else:
                self.error("expected a literal value for placeholder option `%s`" % otok[1])
            options[otok[1]] = value
        if ("true" in options) != ("false" in options) and not self.dialect.lone_true_false:
            self.error("placeholder options `true` and `false` must be given together", tok)
        for name in ("sep", "true", "false"):
            if name in options and not isinstance(options[name], str):
                self.error("placeholder option `%s` must be a String, not %s" % (name, wdl_str_literal(options[name])), tok)
        expr = self.expr()
        if self.peek()[0] != "phend":
            self.error("expected `}` to close the placeholder, found %s" % self.describe(self.peek()))
        self.advance()
        return Placeholder(span, expr, options)

    # -- workflows -------------------------------------------------------------------------
    def workflow(self):
        span = self.span()
        self.advance()
        name = self.ident("a workflow name")
        self.expect("{")
        wf = Workflow(span, name, None, [], None, None, None, None)
        wf.dialect = self.dialect
        seen = set()
        while not self.at("}"):
            tok = self.peek()
            word = tok[1] if tok[0] == "ident" else None
            if word in ("input", "output", "meta", "parameter_meta", "hints") and self.at("{", 1):
                if word in seen:
                    self.error("a workflow may have only one `%s` section" % word)
                seen.add(word)
                if word == "input":
                    wf.inputs = self.input_section()
                elif word == "output":
                    wf.outputs = self.output_section(self.dialect.untyped_outputs)
                elif word == "hints":
                    self.require("requirements", "the workflow `hints` section")
                    self.advance()
                    wf.hints = self.runtime_block("hints")
                else:
                    self.advance()
                    setattr(wf, word, self.meta_block())
            else:
                wf.body.append(self.workflow_element(top=True))
        self.advance()
        if not self.dialect.input_section:
            self.draft2_workflow_inputs(wf)
        else:
            wf.inputs, wf.body = self.unbound_inputs(wf.inputs, wf.body)
        return wf

    def unbound_inputs(self, inputs, decls):
        """A declaration without a value outside `input {}` (where `unbound_declarations` lets the
        parser through) is an input, as Cromwell and miniwdl take it. Returns (inputs, decls)."""
        unbound = [d for d in decls if type(d) is Decl and d.expr is None and not d.env]
        for d in unbound:
            self.warnings.append(WdlError(
                "`%s` has no value and is outside `input {}`: taken as an input for compatibility with Cromwell and "
                "miniwdl; portable WDL declares it in `input {}`" % d.name, d.span, rule_name("unbound_declarations")))
        if not unbound:
            return inputs, decls
        return (inputs or []) + unbound, [d for d in decls if all(d is not u for u in unbound)]

    def draft2_workflow_inputs(self, wf):
        """draft-2 has no `input` section: an unbound declaration is an input, and so (as in
        Cromwell) is one whose value reads no other name, with that value as its default."""
        wf.inputs = [el for el in wf.body if isinstance(el, Decl) and (el.expr is None or not free_names(el.expr))]
        taken = set(map(id, wf.inputs))
        wf.body = [el for el in wf.body if id(el) not in taken]

    def workflow_element(self, top=False):
        tok = self.peek()
        if self.at_kw("call"):
            return self.call()
        if self.at_kw("scatter"):
            return self.scatter()
        if self.at_kw("if"):
            return self.conditional()
        if self.is_decl_start():
            return self.decl(not top or self.dialect.input_section and not self.dialect.accepts("unbound_declarations"))
        self.error("expected a declaration, `call`, `scatter` or `if`, found %s" % self.describe(tok))

    def body(self):
        self.expect("{")
        self.blocks += 1
        if self.blocks > _MAX_NESTING:
            self.error("scatters and conditionals nested too deeply (more than %d levels)" % _MAX_NESTING, self.toks[self.i - 1])
        items = []
        while not self.at("}"):
            if self.peek()[0] == "eof":
                self.error("expected `}`, found end of file")
            items.append(self.workflow_element())
        self.advance()
        self.blocks -= 1
        return items

    def call(self):
        span = self.span()
        self.advance()
        callee = self.ident("a task or workflow name")
        while self.at("."):
            self.advance()
            callee += "." + self.ident("a name")
        alias = None
        if self.at_kw("as"):
            self.advance()
            alias = self.ident("a call alias")
        afters = []
        while self.at_kw("after"):
            self.require("after", "`after`")
            self.advance()
            afters.append((self.ident("a call name"), self.span(self.toks[self.i - 1])))
        inputs = None
        if self.at("{"):
            self.advance()
            inputs = []
            if self.at_kw("input") and self.at(":", 1):
                self.advance()
                self.advance()
            elif not self.at("}"):
                self.require("call_inputs_bare", "call inputs without `input:`")
            inputs = self.comma_list(self.call_input, "}")
        return Call(span, callee, alias, afters, inputs or [])

    def call_input(self):
        ispan = self.span()
        name = self.ident("an input name")
        expr = self.assigned()
        if expr is None:
            self.require("abbreviated_call_inputs", "abbreviated call inputs (`%s` without `= value`)" % name, self.toks[self.i - 1])
        return name, expr, ispan

    def scatter(self):
        span = self.span()
        self.advance()
        self.expect("(")
        var = self.ident("a scatter variable")
        self.expect("in")
        expr = self.expr()
        self.expect(")")
        return Scatter(span, var, expr, self.body())

    def conditional(self):
        span = self.span()
        self.advance()
        self.expect("(")
        cond = self.expr()
        self.expect(")")
        clauses = [(cond, self.body())]
        while self.at_kw("else"):
            self.require("else", "`else` in a workflow")
            self.advance()
            if self.at_kw("if"):
                self.advance()
                self.expect("(")
                c = self.expr()
                self.expect(")")
                clauses.append((c, self.body()))
            else:
                clauses.append((None, self.body()))
                break
        return Conditional(span, clauses)

    # -- expressions -----------------------------------------------------------------------
    def expr(self):
        self.depth += 1
        if self.depth > _MAX_NESTING:
            self.error("expression nested too deeply (more than %d levels)" % _MAX_NESTING)
        try:
            return self.binary(1)
        finally:
            self.depth -= 1

    def binary(self, min_prec):
        left = self.unary()
        while True:
            tok = self.toks[self.i]
            prec = _BINARY_PREC.get(tok[1]) if tok[0] == "op" else None
            if prec is None or prec < min_prec:
                return left
            if tok[1] == "**":
                self.require("power", "the `**` operator")
            self.i += 1
            right = self.binary(prec + 1)
            left = Binary(self.span(tok), tok[1], left, right)

    def unary(self):
        tok = self.toks[self.i]
        if tok[0] == "op" and tok[1] in ("!", "-", "+"):
            self.i += 1
            self.depth += 1
            if self.depth > _MAX_NESTING:
                self.error("expression nested too deeply (more than %d levels)" % _MAX_NESTING)
            try:
                return Unary(self.span(tok), tok[1], self.unary())
            finally:
                self.depth -= 1
        return self.postfix()

    def postfix(self):
        e = self.primary()
        while True:
            tok = self.toks[self.i]
            if tok[0] != "op":
                return e
            if tok[1] == "[":
                self.i += 1
                idx = self.expr()
                self.expect("]")
                e = Index(self.span(tok), e, idx)
            elif tok[1] == "." and self.peek(1)[0] == "ident":
                self.i += 1
                ntok = self.advance()
                e = GetAttr(self.span(ntok), e, ntok[1])
            else:
                return e

    def primary(self):
        tok = self.toks[self.i]
        kind = tok[0]
        span = self.span(tok)
        if kind in ("int", "float"):
            self.i += 1
            return Literal(span, _number(tok, self))
        if kind == "sbeg":
            self.i += 1
            return StringLit(span, self.text_parts("s"))
        if kind == "mbeg":
            self.require("multiline_strings", "multi-line strings (`<<< >>>`)")
            self.i += 1
            return StringLit(span, strip_multiline(self.text_parts("m")))
        if kind == "ident":
            self.i += 1
            return self.word_expr(tok, span)
        if kind == "op" and tok[1] in ("(", "[", "{"):
            self.i += 1
            return self.bracketed(tok[1], span)
        self.error("expected an expression, found %s" % self.describe(tok))

    def bracketed(self, opener, span):
        """After `(`, `[` or `{`: a parenthesized expression or a pair, an array or a map literal."""
        if opener == "(":
            first = self.expr()
            if self.at(","):
                self.advance()
                second = self.expr()
                self.expect(")")
                return PairLit(span, first, second)
            self.expect(")")
            return first
        if opener == "[":
            return ArrayLit(span, self.comma_list(self.expr, "]"), False)
        return MapLit(span, self.comma_list(self.map_entry, "}"))

    def map_entry(self):
        k = self.expr()
        self.expect(":")
        return k, self.expr()

    def word_expr(self, tok, span):
        """After a word: `true`/`false`, `if`, `None`, an object or struct literal, a call, or a name."""
        value = tok[1]
        if value in ("true", "false"):
            return Literal(span, value == "true")
        if value == "if":  # if-then-else is an operand too: `"v" + if d then "-dev" else ""`
            cond = self.expr()
            self.expect("then")
            then = self.expr()
            self.expect("else")
            return IfThenElse(span, cond, then, self.expr())
        if value == "None":
            self.require("none_literal", "the `None` literal", tok)
            return Literal(span, None)
        if value == "object" and self.at("{"):
            return ObjectLit(span, self.members())
        if value in _HARD_KEYWORDS and value != "task" and not (value == "version" and self.dialect.accepts("version_as_name")):
            self.error("expected an expression, found the keyword `%s`" % value, tok)
        if self.at("("):
            self.advance()
            return Apply(span, value, self.comma_list(self.expr, ")"))
        if self.at("{") and (self.at("}", 1) or self.peek(1)[0] == "ident" and self.at(":", 2)
                             or self.peek(1)[0] == "sbeg" and self.peek(3)[0] == "send" and self.at(":", 4)):
            self.require("struct_literal", "struct literals", tok)
            return StructLit(span, value, self.members())
        return Ident(span, value)

    def members(self):
        self.expect("{")
        return self.comma_list(self.member, "}")

    def member(self):
        """`name: value` in an object or struct literal: (name, expression, span)."""
        mspan = self.span()
        if self.peek()[0] == "sbeg":  # `Runtime {"cpu": 1}`
            name = self.string_literal("a member name")
            if not re.match(r"[A-Za-z][A-Za-z0-9_]*\Z", name) or not self.lenient(
                    "quoted_member_names", "member name `%s` in quotes: accepted for compatibility with Cromwell and "
                    "miniwdl; portable WDL writes `%s: ...`" % (name, name), self.toks[self.i - 3]):
                self.error("expected a member name, found a string", self.toks[self.i - 3])
        else:
            name = self.ident("a member name")
        self.expect(":")
        return name, self.expr(), mspan


# Two spellings of one runtime, requirements or hints key.
_KEY_ALIASES = {"docker": "container", "maxRetries": "max_retries", "returnCodes": "return_codes",
                "maxCpu": "max_cpu", "maxMemory": "max_memory", "shortTask": "short_task",
                "localizationOptional": "localization_optional"}

_KEYWORDS = frozenset(
    "alias as call command else enum env false hints if import in input meta None null object output "
    "parameter_meta requirements runtime scatter struct task then true version workflow".split()
)


# Section keywords cannot name a declaration (the spec reserves them; miniwdl refuses them too);
# `requirements` and `hints` are section keywords from 1.2 on.
_SECTION_KEYWORDS = frozenset("input output meta parameter_meta runtime requirements hints".split())

# Words that can never be a name: each starts or splits a construct. The other reserved words
# (`in`, `env`, `alias`, ...) are accepted as names, as other engines do and spec examples need.
_HARD_KEYWORDS = frozenset("call command else if import scatter struct task then version workflow true false None object".split())


def wdl_str_literal(v):
    return ("true" if v else "false") if isinstance(v, bool) else repr(v)


def _number(tok, parser):
    text = tok[1]
    if tok[0] == "float":
        value = float(text)
        if math.isinf(value):
            parser.error("float literal %s is out of range" % text, tok)
        return value
    try:
        value = int(text, 16) if text[:2] in ("0x", "0X") else int(text, 8) if len(text) > 1 and text[0] == "0" else int(text)
    except ValueError:
        parser.error("invalid integer literal %s (a leading 0 makes it octal: digits 0-7 only)" % text, tok)
    if value >= 2 ** 63:
        parser.error("integer literal %s is out of range (64-bit signed)" % text, tok)
    return value


def strip_multiline(parts):
    """1.2 multi-line strings: the spec's five steps (continuations, the whitespace after `<<<`
    and before `>>>`, common indentation), then escapes."""
    return _strip_text(parts, _strip_multiline_text, unescape)


def _strip_multiline_text(flat):
    # 1. An odd number of backslashes before a newline continues the line.
    flat = re.sub(r"(?<!\\)((?:\\\\)*)\\\n[ \t]*", r"\1", flat)
    # 2, 3. Whitespace after `<<<` up to a newline, and before `>>>` back to a newline.
    flat = re.sub(r"^[ \t]*\n?", "", flat, count=1)
    flat = re.sub(r"\n?[ \t]*\Z", "", flat, count=1)
    # 4, 5. Common leading whitespace of the non-blank lines.
    return "\n".join(_dedent(flat.split("\n")))


def strip_indent(parts):
    """The spec's common-leading-whitespace removal for commands. The first line is dropped when
    it holds only whitespace, the last emptied when it does."""
    return _strip_text(parts, _strip_command_text)


def _strip_command_text(flat):
    lines = flat.split("\n")
    if len(lines) > 1 and not lines[0].strip(" \t"):
        lines = lines[1:]
    if len(lines) > 1 and not lines[-1].strip(" \t"):
        lines[-1] = ""
    return "\n".join(_dedent(lines))


def _dedent(lines):
    """`lines` without the common leading whitespace of the non-blank ones (blank ones emptied)."""
    indents = [len(x) - len(x.lstrip(" \t")) for x in lines if x.strip(" \t")]
    cut = min(indents) if indents else 0
    return [x[cut:] if x.strip(" \t") else x.lstrip(" \t") for x in lines]


def _strip_text(parts, strip, finish=None):
    """`parts` (text and placeholders) with strip(text) applied to the text as a whole, each
    placeholder a marker in it (a NUL: text_parts() refuses one), which counts as content;
    finish(piece) then applies to each piece of text."""
    marker = "\0"
    phs = iter([p for p in parts if not isinstance(p, str)])
    flat = strip("".join(p if isinstance(p, str) else marker for p in parts))
    out = []
    for i, text in enumerate(flat.split(marker)):
        if i:
            out.append(next(phs))
        if text:
            out.append(finish(text) if finish else text)
    return out


# ============================================================================================
# 7. Standard library: types
# ============================================================================================
#
# One line per overload: `[version] name(parameter types) -> result type`. X and Y are type
# parameters, P a primitive one. Overloads are tried in order; the first that fits is used.
# Functions whose typing no signature can say (size, length, keys, ...) have a typing hook
# below. The implementations live in section 11, in `IMPLS`, keyed by name.

def parse_type_text(text):
    """A type written in WDL syntax (the standard library table uses this)."""
    src = Source("<stdlib>", text)
    p = Parser(src, tokenize(src), DIALECTS["1.3"])
    t = p.type_()
    return _resolve_vars(t)


def _resolve_vars(t):
    if isinstance(t, NamedType):
        return TypeVar(t.name, t.opt)
    return t.with_params([_resolve_vars(x) for x in t.params()])


_SIGNATURES = """
floor(Float) -> Int
ceil(Float) -> Int
round(Float) -> Int
1.1 min(Int, Int) -> Int
1.1 min(Float, Float) -> Float
1.1 max(Int, Int) -> Int
1.1 max(Float, Float) -> Float
1.2 find(String, String) -> String?
1.2 matches(String, String) -> Boolean
sub(String, String, String) -> String
1.3 split(String, String) -> Array[String]
basename(File) -> String
basename(File, String) -> String
1.2 basename(Directory) -> String
1.2 basename(Directory, String) -> String
1.2 join_paths(File, String) -> String
1.2 join_paths(File, Array[String]+) -> String
1.2 join_paths(Directory, String) -> String
1.2 join_paths(Directory, Array[String]+) -> String
1.2 join_paths(Array[String]+) -> String
glob(String) -> Array[File]
size(X?) -> Float
size(X?, String) -> Float
stdout() -> File
stderr() -> File
read_string(File) -> String
read_int(File) -> Int
read_float(File) -> Float
read_boolean(File) -> Boolean
read_lines(File) -> Array[String]
write_lines(Array[String]) -> File
read_tsv(File) -> Array[Array[String]]
1.2 read_tsv(File, Boolean) -> Array[Object]
1.2 read_tsv(File, Boolean, Array[String]) -> Array[Object]
write_tsv(Array[Array[String]]) -> File
1.2 write_tsv(Array[Array[String]], Boolean, Array[String]) -> File
1.2 write_tsv(Array[X]) -> File
1.2 write_tsv(Array[X], Boolean) -> File
1.2 write_tsv(Array[X], Boolean, Array[String]) -> File
read_map(File) -> Map[String, String]
write_map(Map[String, String]) -> File
read_json(File) -> Any
write_json(X) -> File
read_object(File) -> Object
read_objects(File) -> Array[Object]
write_object(Object) -> File
write_objects(Array[Object]) -> File
prefix(String, Array[P]) -> Array[String]
1.1 suffix(String, Array[P]) -> Array[String]
1.1 quote(Array[P]) -> Array[String]
1.1 squote(Array[P]) -> Array[String]
1.1 sep(String, Array[P]) -> String
length(X) -> Int
range(Int) -> Array[Int]
transpose(Array[Array[X]]) -> Array[Array[X]]
cross(Array[X], Array[Y]) -> Array[Pair[X, Y]]
zip(Array[X], Array[Y]) -> Array[Pair[X, Y]]
1.1 unzip(Array[Pair[X, Y]]) -> Pair[Array[X], Array[Y]]
1.2 contains(Array[P?], P?) -> Boolean
1.2 chunk(Array[X], Int) -> Array[Array[X]]
flatten(Array[Array[X]]) -> Array[X]
select_first(Array[X?]+) -> X
1.2 select_first(Array[X?], X) -> X
select_all(Array[X?]) -> Array[X]
1.1 as_pairs(Map[P, Y]) -> Array[Pair[P, Y]]
1.1 as_map(Array[Pair[P, Y]]) -> Map[P, Y]
1.1 keys(X) -> Array[Any]
1.2 contains_key(X, Y) -> Boolean
1.2 values(Map[P, Y]) -> Array[Y]
1.1 collect_by_key(Array[Pair[P, Y]]) -> Map[P, Array[Y]]
defined(X?) -> Boolean
1.3 value(X) -> Any
"""

_SIG_RE = re.compile(r"(?:(\d\.\d) )?(\w+)\((.*)\) -> (.+)")


class Overload:
    __slots__ = ("name", "version", "params", "result")

    def __init__(self, name, version, params, result):
        self.name, self.version, self.params, self.result = name, version, params, result

    def __str__(self):
        return "%s(%s) -> %s" % (self.name, ", ".join(map(str, self.params)), self.result)


def _split_params(text):
    out, depth, cur = [], 0, ""
    for c in text:
        if c == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += c == "["
        depth -= c == "]"
        cur += c
    return out + [cur.strip()] if cur.strip() else out


def _load_signatures():
    table = {}
    for line in _SIGNATURES.strip().splitlines():
        version, name, params, result = _SIG_RE.match(line).groups()
        version = _DIALECT_LEVELS[version] if version else (1, 0)
        ptypes = [ANY if p == "Any" else parse_type_text(p) for p in _split_params(params)]
        rtype = ANY if result == "Any" else parse_type_text(result)
        table.setdefault(name, []).append(Overload(name, version, ptypes, rtype))
    return table


STDLIB = _load_signatures()


def _bind(param, arg, env, dialect, top=True):
    """Match an argument type against a parameter type, binding type parameters in `env`. Inside
    a compound type X (not P) may be optional: `flatten` of an `Array[Array[File?]]`."""
    if isinstance(param, TypeVar):
        a = arg.required() if param.opt else arg
        if param.name == "P" and not is_primitive(a):
            return False
        if a.opt and not param.opt and (top or param.name == "P") and not dialect.optional_to_required and not isinstance(
                a, AnyType):
            return False
        if param.name in env:
            u = unify([env[param.name], a], dialect)
            if u is None:
                return False
            env[param.name] = u
        else:
            env[param.name] = a
        return True
    if isinstance(arg, AnyType):
        return param.opt or not arg.opt or dialect.optional_to_required
    if arg.opt and not param.opt and not dialect.optional_to_required:
        return False
    if isinstance(param, ArrayType):
        return isinstance(arg, ArrayType) and _bind(param.item, arg.item, env, dialect, False)
    if isinstance(param, MapType):
        return isinstance(arg, MapType) and _bind(param.key_type, arg.key_type, env, dialect, False) and _bind(
            param.value, arg.value, env, dialect, False
        )
    if isinstance(param, PairType):
        return isinstance(arg, PairType) and _bind(param.left, arg.left, env, dialect, False) and _bind(
            param.right, arg.right, env, dialect, False
        )
    return coerces(arg, param, dialect)


def _subst(t, env):
    if isinstance(t, TypeVar):
        bound = env.get(t.name, ANY)
        return bound.optional(True) if t.opt else bound
    return t.with_params([_subst(x, env) for x in t.params()])


def _has_files(t):
    return contains_type(t, lambda x: isinstance(x, (PrimType, AnyType, ObjectType)) and getattr(x, "name", "File") in ("File", "Directory", "String"))


def _typing_hook(name, args, dialect):
    """Typing the signature table cannot express. Returns (result type or None, error or None)."""
    a = args[0] if args else None
    if name == "size":
        ok = _has_files(a) and (len(args) == 1 or coerces(args[1], STRING, dialect))
        return FLOAT, None if ok else "expects a File, Directory or a value holding files, and an optional unit"
    if name == "length":
        if isinstance(a, (ArrayType, AnyType)) or dialect.length_of_any and (
            isinstance(a, (MapType, ObjectType)) or a == STRING
        ):
            if a.opt and not dialect.optional_to_required:
                return None, "expects a non-optional value, not `%s`" % a
            return INT, None
        return None, "expects an Array%s, not `%s`" % (", Map, Object or String" if dialect.length_of_any else "", a)
    if name == "keys":
        if isinstance(a, MapType):
            return ArrayType(a.key_type), None
        if dialect.length_of_any and isinstance(a, (StructType, ObjectType, AnyType)):
            return ArrayType(STRING), None
        return None, "expects a Map%s, not `%s`" % (", Struct or Object" if dialect.length_of_any else "", a)
    if name == "contains_key":
        k = args[1]
        if isinstance(a, MapType) and coerces(k, a.key_type, dialect):
            return BOOLEAN, None
        if isinstance(a, (MapType, StructType, ObjectType, AnyType)) and (
            coerces(k, STRING, dialect) or coerces(k, ArrayType(STRING), dialect)
        ):
            return BOOLEAN, None
        return None, "expects a Map and a key, or a Struct/Object and a String or Array[String] key"
    if name == "value":
        if isinstance(a, EnumType):
            return a.value_type, None
        if isinstance(a, AnyType):
            return ANY, None
        return None, "expects an enum choice, not `%s`" % a
    if name == "write_tsv" and len(args) >= 1 and isinstance(a, ArrayType) and not isinstance(a.item, ArrayType):
        if not isinstance(a.item, (StructType, AnyType)):
            return None, "expects Array[Array[String]] or an Array of structs, not `%s`" % a
    return "", None  # no hook: use the signature


def resolve_call(name, args, dialect):
    """Pick the standard library overload for argument types. Returns (Overload, result type).

    Raises WdlTypeError (without a span; the caller adds it) when nothing fits.
    """
    overloads = STDLIB.get(name)
    if overloads is None:
        raise WdlTypeError("unknown function `%s`" % name)
    level = max(dialect.level, (1, 1)) if dialect.newer_functions else dialect.level
    available = [o for o in overloads if o.version <= level]
    if not available:
        raise WdlTypeError(
            "function `%s` requires WDL %d.%d (this document is %s)" % ((name,) + overloads[0].version + (dialect_text(dialect),))
        )
    arities = sorted({len(o.params) for o in available})
    fitting = [o for o in available if len(o.params) == len(args)]
    if not fitting:
        raise WdlTypeError(
            "function `%s` takes %s argument%s, not %d"
            % (name, " or ".join(map(str, arities)), "" if arities == [1] else "s", len(args))
        )
    result, problem = _typing_hook(name, args, dialect)
    if problem:
        raise WdlTypeError("function `%s` %s" % (name, problem))
    for o in fitting:
        env = {}
        if all(_bind(p, a, env, dialect) for p, a in zip(o.params, args)):
            return o, (result or _subst(o.result, env))
    raise WdlTypeError(
        "function `%s` cannot take arguments of type (%s); expected %s"
        % (name, ", ".join(map(str, args)), " or ".join("(%s)" % ", ".join(map(str, o.params)) for o in fitting))
    )


# -- Regular expressions -> Python re ---------------------------------------------------------
#
# The spec says POSIX ERE; the engines read patterns in their own syntax (Rust's `regex` in Sprocket,
# Java in Cromwell, Python's `re` in miniwdl), and production WDL is written for them. The translation
# takes ERE with the GNU extensions, plus what the three engines agree on; what they would read
# differently, or one of them refuses, is an error naming the construct.
# POSIX meaning kept: `.` matches any character including a newline, `^`/`$` anchor only at the start/end
# of the whole string, `|`, `()`, `* + ? {n} {n,} {n,m}` (and GNU `{,m}`); a `{` that does not start a
# valid interval is literal, as is an unmatched `)`; a quantifier after `*`, `+` or an interval applies to
# the quantified atom (`a**`). Bracket expressions: `]` first is literal, `[:class:]` (ASCII sets), `[=c=]`
# and `[.c.]` (single characters only). GNU escapes: `\s \S \w \W \b \B \< \> \` \'`, and `\n \t \r \f \v`
# (WDL authors write "\\n"); `\` before any other non-alphanumeric character makes it literal.
# What the engines agree on beyond ERE (`_REGEX_EXTENSIONS` names each, for the checker's compatibility
# warning): `(?:...)`, named groups `(?<n>...)`/`(?P<n>...)`, flags `i m s` as `(?i)` at the start of a
# group or alternative and `(?i:...)`, lazy quantifiers `*? +? ?? {n,m}?`, `\d \D \A \z \xhh \x{h..} \uhhhh`,
# and a backslash escaping inside a bracket expression (`[\s,]`, `[\]]`; POSIX reads it as a literal `\`).
# Refused: look-around, back-references (`\1`, `\k<n>`), possessive quantifiers (`a*+`), atomic groups,
# other flags, `\p{..}`, `\Z`, `\Q..\E` and other escapes, nested brackets and class set operations.
# Difference kept: POSIX picks the leftmost-LONGEST match, the engines the leftmost-first alternative
# (`a|ab` on "ab" matches "a" here, "ab" in POSIX). Patterns whose alternatives cannot be prefixes of
# each other behave the same.

_ERE_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "0-9A-Za-z",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "punct": "!-/:-@\\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "cntrl": "\\x00-\\x1f\\x7f",
    "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e",
}
_ERE_ESCAPES = {
    "s": "\\s", "S": "\\S", "w": "\\w", "W": "\\W", "d": "\\d", "D": "\\D",
    "n": "\\n", "t": "\\t", "r": "\\r", "f": "\\f", "v": "\\v",
}
_ERE_ANCHOR_ESCAPES = {"b": "\\b", "B": "\\B", "<": "\\b(?=\\w)", ">": "\\b(?<=\\w)", "`": "\\A", "'": "\\Z",
                       "A": "\\A", "z": "\\Z"}
_ERE_INTERVAL = re.compile(r"\{(\d*)(,(\d*))?\}")
_REGEX_CODEPOINT = re.compile(r"x([0-9A-Fa-f]{2})|x\{([0-9A-Fa-f]{1,6})\}|u([0-9A-Fa-f]{4})")
_REGEX_FLAGS = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")
_REGEX_NAMED_GROUP = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")
# Group openers no engine-independent meaning can be given to, with what they are (checked in order).
_REGEX_REFUSED_GROUPS = (
    ("(?<=", "look-behind `(?<=`"), ("(?<!", "look-behind `(?<!`"), ("(?=", "look-ahead `(?=`"),
    ("(?!", "look-ahead `(?!`"), ("(?>", "atomic group `(?>`"), ("(?#", "comment group `(?#`"),
    ("(?(", "conditional group `(?(`"),
)
# Escapes beyond ERE and GNU, and the name the compatibility warning gives them.
_REGEX_EXTENSIONS = {"d": "`\\d`", "D": "`\\D`", "A": "`\\A`", "z": "`\\z`", "x": "`\\x` escapes", "u": "`\\u` escapes"}


@functools.lru_cache(maxsize=512)
def translate_regex(pattern):
    """(compiled pattern, the constructs beyond POSIX ERE it uses, each named once)."""
    used = []
    try:
        return re.compile(_ere_to_python(pattern, used), re.DOTALL), tuple(used)
    except re.error as e:  # e.msg: the message without a position in the translated pattern
        raise EvalError("invalid regular expression %r: %s" % (pattern, e.msg))
    except (OverflowError, RecursionError):  # `a{9999999999}`, or groups nested too deeply
        raise EvalError("invalid regular expression %r: a repeat count or nesting is too large" % pattern)


def _ere_error(pattern, why):
    return EvalError("invalid regular expression %r: %s" % (pattern, why))


def _refused(pattern, what):
    return _ere_error(pattern, "%s is not read the same way by Rust's regex, Java and Python (Sprocket, Cromwell and "
                               "miniwdl), so it is not supported" % what)


def _used(used, what):
    if what not in used:
        used.append(what)


def _ere_to_python(p, used):
    out = []  # translated pieces; a group is collapsed into one piece when it closes
    opened = []  # per unclosed group: (index of its opener in `out`, closes with its enclosing group, multiline before)
    atom = None  # index of the piece a quantifier would apply to (always the last piece), or None
    quantified = None  # the quantifier just applied, if the previous token was one
    multiline = False  # inside `(?m)`: `^`/`$` anchor at line starts/ends too
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        i += 1
        if c in "*+?{":
            i, atom, quantified = _ere_quantifier(p, i, c, out, atom, quantified, used)
            continue
        quantified = None
        if c == "(":
            if p.startswith("?", i):
                i, multiline = _regex_group(p, i - 1, out, opened, used, multiline)
            else:
                opened.append((len(out), False, multiline))
                out.append("(")
            atom = None
        elif c == ")" and any(not implicit for _, implicit, _ in opened):
            atom = _close_groups(out, opened, True)
            multiline = opened.pop()[2]
            out[atom:] = ["".join(out[atom:]) + ")"]
        elif c == "|" or c == "^":
            out.append(c)
            atom = None
        elif c == "$":
            out.append("$" if multiline else "\\Z")
            atom = None
        elif c == ".":
            atom = len(out)
            out.append(".")
        elif c == "[":
            piece, i = _ere_bracket(p, i, used)
            atom = len(out)
            out.append(piece)
        elif c == "\\":
            if i >= n:
                raise _ere_error(p, "trailing backslash")
            d = p[i]
            if d in _REGEX_EXTENSIONS:
                _used(used, _REGEX_EXTENSIONS[d])
            if d in _ERE_ANCHOR_ESCAPES:
                out.append(_ERE_ANCHOR_ESCAPES[d])
                atom, i = None, i + 1
                continue
            atom = len(out)
            piece, i = _regex_escape(p, i)
            out.append(piece)
        else:
            atom = len(out)
            out.append(re.escape(c))
    _close_groups(out, opened, False)
    if opened:
        raise _ere_error(p, "unmatched (")
    return "".join(out)


def _ere_quantifier(p, i, c, out, atom, quantified, used):
    """The quantifier `c` that ends at p[i] applied to out[atom] (`quantified`: the one just
    applied, if any). Returns (i, atom, quantified) after it; a `{` that starts no interval is a
    literal brace, itself an atom."""
    if c == "{":
        m = _ERE_INTERVAL.match(p, i - 1)
        if not m:
            out.append("\\{")
            return i, len(out) - 1, None
        lo, hi = m.group(1) or "0", m.group(3)
        if m.group(2) and hi and int(hi) < int(lo):
            raise _ere_error(p, "invalid interval {%s}" % m.group(0)[1:-1])
        c = "{%s}" % (lo + (("," + hi) if m.group(2) else ""))
        i = m.end()
    if atom is None:
        raise _ere_error(p, "'%s' has nothing to repeat" % c)
    lazy = len(quantified or "") > 1 and quantified.endswith("?")
    if quantified and not lazy and c in "?+":  # `a*?`, `a{2}+`: the engines' syntax, not ERE stacking
        if c == "+":
            raise _refused(p, "the possessive quantifier `%s+`" % quantified)
        _used(used, "lazy quantifiers (`%s?`)" % quantified)
        out[atom] += "?"
        return i, atom, quantified + "?"
    if quantified:
        out[atom] = "(?:%s)" % out[atom]
    out[atom] += c
    return i, atom, c


def _close_groups(out, opened, explicit):
    """Close the `(?i)` groups that end with their enclosing group (or the pattern); returns where the
    enclosing group's opener is in `out` (when `explicit`)."""
    while opened and opened[-1][1]:
        start = opened.pop()[0]
        out[start:] = ["".join(out[start:]) + ")"]
    return opened[-1][0] if explicit else None


def _regex_group(p, i, out, opened, used, multiline):
    """The `(?` group whose "(" is p[i]: appends its opener to `out` and `opened`; returns (next index,
    multiline inside it). A flag group `(?i)` becomes `(?i:`, closed with its enclosing group (where Rust
    and Java end its effect), so it must come first in the pattern, a group or an alternative."""
    for opener, what in _REGEX_REFUSED_GROUPS:
        if p.startswith(opener, i):
            raise _refused(p, "a " + what)
    m = _REGEX_NAMED_GROUP.match(p, i)
    if m:
        _used(used, "named groups")
        opened.append((len(out), False, multiline))
        out.append("(?P<%s>" % m.group(1))
        return m.end(), multiline
    m = _REGEX_FLAGS.match(p, i)
    if not m:
        raise _refused(p, "the group `%s`" % p[i:i + 3])
    on, off, scoped = m.group(1), m.group(2) or "", m.group(3) == ":"
    flags = on + ("-" + off if off else "")
    if not flags:
        if not scoped:
            raise _ere_error(p, "empty flag group `(?)`")
        _used(used, "non-capturing groups `(?:`")
    else:
        if set(on + off) - set("ims") or set(on) & set(off):
            raise _refused(p, "the flag group `%s`" % m.group(0))
        if not scoped and out and out[-1] != "|" and not (opened and opened[-1][0] == len(out) - 1):
            raise _ere_error(p, "the flag group `(?%s)` must open the pattern, a group or an alternative "
                                "(or write `(?%s:...)`)" % (flags, flags))
        _used(used, "inline flags `(?%s)`" % flags)
    opened.append((len(out), not scoped, multiline))
    out.append("(?%s:" % flags)
    return m.end(), ("m" in on) or (multiline and "m" not in off)


def _regex_escape(p, i):
    """The escape whose letter is p[i] (outside a bracket expression): (Python piece, next index)."""
    d = p[i]
    if d in _ERE_ESCAPES:
        return _ERE_ESCAPES[d], i + 1
    if d in "xu":
        return re.escape(_regex_codepoint(p, i)), _REGEX_CODEPOINT.match(p, i).end()
    if "1" <= d <= "9" or p.startswith("k<", i):
        raise _refused(p, "a back-reference (`\\%s`)" % d)
    if d in "pPZQ":
        raise _refused(p, "`\\%s`" % d)
    if d.isalnum() or d == "_":
        raise _ere_error(p, "unsupported escape \\%s" % d)
    return re.escape(d), i + 1


def _regex_codepoint(p, i):
    """The character of `\\xhh`, `\\x{h..}` or `\\uhhhh` whose letter is p[i]."""
    m = _REGEX_CODEPOINT.match(p, i)
    code = int(next(g for g in m.groups() if g), 16) if m else 0x110000
    if code > 0x10FFFF:
        raise _ere_error(p, "invalid escape \\%s (write \\xhh, \\x{h...} or \\uhhhh)"
                         % (m.group(0) if m else p[i:i + 2]))
    return chr(code)


def _ere_bracket(p, i, used):
    """Translate the bracket expression whose "[" is just before p[i]; returns (piece, next index)."""
    n = len(p)
    negate = i < n and p[i] == "^"
    if negate:
        i += 1
    items = []
    first = True
    while True:
        if i >= n:
            raise _ere_error(p, "unterminated bracket expression")
        c = p[i]
        if c == "]" and not first:
            i += 1
            break
        first = False
        if c == "[" and i + 1 < n and p[i + 1] == ":":
            end = p.find(":]", i + 2)
            name = p[i + 2:end] if end >= 0 else None
            if name not in _ERE_CLASSES:
                raise _ere_error(p, "unknown character class [:%s:]" % (name or p[i + 2:]))
            items.append(_ERE_CLASSES[name])
            i = end + 2
            continue
        if p.startswith(("&&", "~~"), i):
            raise _refused(p, "`%s` in a bracket expression (a set operation in Rust or Java, two characters in "
                              "Python; write `\\%s`)" % (p[i:i + 2], c))
        if c == "\\" and p[i + 1:i + 2] in ("d", "D", "w", "W", "s", "S"):
            _used(used, "backslash escapes in a bracket expression")
            items.append(_ERE_ESCAPES[p[i + 1]])
            i += 2
            continue
        lo, i = _ere_bracket_char(p, i, used)
        if i + 1 < n and p[i] == "-" and p[i + 1] != "]":
            hi, i = _ere_bracket_char(p, i + 1, used)
            if hi < lo:
                raise _ere_error(p, "invalid range %s-%s" % (lo, hi))
            items.append(_class_char(lo) + "-" + _class_char(hi))
        else:
            items.append(_class_char(lo))
    return "[" + ("^" if negate else "") + "".join(items) + "]", i


def _ere_bracket_char(p, i, used):
    """One character of a bracket expression: a plain character, [=c=], [.c.] or a backslash escape."""
    if p[i] == "[" and i + 1 < len(p) and p[i + 1] in "=.:":
        kind = p[i + 1]
        end = p.find(kind + "]", i + 2)
        if kind == ":" or end != i + 3:
            raise _ere_error(p, "unsupported bracket element starting at %r" % p[i:i + 4])
        return p[i + 2], end + 2
    if p[i] == "[":
        raise _refused(p, "a `[` inside a bracket expression (a nested class in Rust and Java, a literal in "
                          "Python; write `\\[`)")
    if p[i] == "\\" and i + 1 < len(p):
        _used(used, "backslash escapes in a bracket expression")
        d = p[i + 1]
        if d in "xu":
            return _regex_codepoint(p, i + 1), _REGEX_CODEPOINT.match(p, i + 1).end()
        if d in "ntrfv":
            return "\n\t\r\f\v"["ntrfv".index(d)], i + 2
        if d.isalnum() or d == "_":
            raise _ere_error(p, "unsupported escape \\%s in a bracket expression" % d)
        return d, i + 2
    return p[i], i + 1


def _class_char(ch):
    return ch if ch.isalnum() or ch == "_" else "\\" + ch


# ============================================================================================
# 8. Document analysis
# ============================================================================================
#
# load(path) parses a document and its imports (each file once per process), resolves names
# and types, checks every expression, and builds the workflow graph: every workflow element
# gets `deps`, the names it reads from its own scope level. Errors are collected, so `check`
# reports all of them; warnings go to `Document.warnings`.

_DOCUMENTS = {}  # (realpath or URL, strict) -> checked Document
_TASK_MEMBERS_12 = {
    "name": STRING, "id": STRING, "container": STRING.optional(), "cpu": FLOAT, "memory": INT,
    "gpu": ArrayType(STRING), "fpga": ArrayType(STRING), "disks": MapType(STRING, INT), "attempt": INT,
    "end_time": INT.optional(), "return_code": INT.optional(), "meta": OBJECT, "parameter_meta": OBJECT, "ext": OBJECT,
}
_REQUIREMENT_MEMBERS = {
    "container": STRING.optional(), "cpu": FLOAT, "memory": INT, "gpu": ArrayType(STRING),
    "fpga": ArrayType(STRING), "disks": MapType(STRING, INT),
}


def task_variable_type(dialect, section):
    """The type of the implicit `task` variable (1.2 command/outputs; 1.3 requirements/hints)."""
    members = dict(_TASK_MEMBERS_12)
    if dialect.task_in_requirements:
        members["max_retries"] = INT
        members["previous"] = StructType("task.previous", dict(
            [(k, t.optional()) for k, t in _REQUIREMENT_MEMBERS.items()] + [("max_retries", INT.optional())]), opt=False)
        if section in _RUNTIME_SECTIONS:  # 1.3's pre-evaluation members: the requirements are being computed
            members = {k: members[k] for k in ("name", "id", "attempt", "previous", "meta", "parameter_meta", "ext")}
    elif section in _RUNTIME_SECTIONS:
        members.pop("end_time")
    members.pop("return_code", None)  # output only (1.2.1, #742; Sprocket refuses it elsewhere)
    if section == "output":
        members["return_code"] = INT
    return StructType("task", members)


def read_source(path, span=None):
    """Read a WDL file as text; every way that can fail is one clear error."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise WdlError("`%s` is a directory, not a WDL file" % path, span)
    except FileNotFoundError:
        raise WdlError("file not found: `%s`" % path, span)
    except OSError as e:
        raise WdlError("cannot read `%s`: %s" % (path, e.strerror or e), span)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WdlError("`%s` is not UTF-8 text (invalid byte at offset %d)" % (path, e.start), span)
    if text.startswith("\ufeff"):
        text = text[1:]
    return Source(path, text)


def load(path, strict=False):
    """Parse and check a WDL document and everything it imports. Raises WdlErrors; the
    document's warnings are in `doc.warnings`. `strict` makes compatibility warnings errors."""
    loader = Loader(strict)
    try:
        doc = loader.load(path, None, ())
    except RecursionError:
        raise WdlError("`%s` is nested too deeply to check" % path)
    if loader.errors:
        raise WdlErrors(loader.errors)
    doc.warnings = loader.warnings
    return doc


_URL_RE = re.compile(r"^https?://", re.I)


def is_url(location):
    return bool(_URL_RE.match(location))


def download(url, under, span=None):
    """Download `url` to `<under>/<hash of the URL>/<its file name>` (written whole, then renamed)
    and return that path. When the network fails, an earlier download is used with a note; the
    result is (path, note or None)."""
    import hashlib
    import urllib.request

    name = re.sub(r"[^A-Za-z0-9._-]", "_", posixpath.basename(url.split("?")[0].rstrip("/")))
    name = "index" if name in ("", ".", "..") else name  # `http://host/..` names no file
    path = os.path.join(under, hashlib.sha256(url.encode()).hexdigest()[:20], name)
    try:
        with urllib.request.urlopen(url, timeout=float(os.environ.get("SPROCKET_URL_TIMEOUT", "30"))) as r:
            data = r.read()
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "code", None) or e
        if os.path.isfile(path):
            return path, "cannot fetch `%s` (%s); using the copy downloaded earlier to `%s`" % (url, reason, path)
        raise WdlError("cannot fetch `%s`: %s" % (url, reason), span)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_replacing(path, data)
    except OSError as e:  # an unwritable $SPROCKET_CACHE_DIR, a full disk
        raise WdlError("cannot save the download of `%s` to `%s`: %s" % (url, path, e.strerror or e), span)
    return path, None


def import_cache_dir():
    """Where imported documents are downloaded: $SPROCKET_CACHE_DIR, else ~/.cache/sprocket."""
    base = os.environ.get("SPROCKET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sprocket")
    return os.path.join(base, "imports")


_WDL_START_RE = re.compile(r"\A\ufeff?(?:\s|#[^\n]*)*(?:version|import|struct|task|workflow)\b")


class Loader:
    """Reads a document and its imports (local paths or http(s) URLs), each once per process."""

    def __init__(self, strict=False):
        self.errors = []
        self.warnings = []
        self.strict = strict

    def warn(self, message, span, rule=None):
        self.warnings.append(WdlError(message, span, rule))

    def read(self, location, span):
        if not is_url(location):
            return read_source(location, span)
        path, note = download(location, import_cache_dir(), span)
        if note:
            self.warn(note, span)
        src = read_source(path, span)
        return Source(location, src.text)  # diagnostics name the URL

    def load(self, location, span, stack):
        key = (location if is_url(location) else os.path.realpath(location), self.strict)
        if key in stack:
            self.errors.append(WdlError("import cycle: `%s` imports itself (through %s)" % (
                location, " -> ".join(posixpath.basename(p[0]) for p in stack[stack.index(key):] + (key,))), span))
            return None
        if key in _DOCUMENTS:
            return _DOCUMENTS[key]
        doc = self.parse(location, span)
        if doc is None:
            return None
        doc.namespaces = {}
        doc.checked = False
        ok = True
        for imp in doc.imports:
            imp.doc = None
            uri = imp.uri[7:] if imp.uri.startswith("file://") else imp.uri
            if re.match(r"[a-z][a-z0-9+.-]*://", uri, re.I) and not is_url(uri):
                self.errors.append(WdlError("imports by `%s` URL are not supported; use a path or an http(s) URL"
                                            % uri.split(":")[0], imp.span))
                ok = False
                continue
            sub = self.load(_import_target(location, uri), imp.span, stack + (key,))
            if sub is None:
                ok = False
                continue
            ok = self.add_import(doc, imp, uri, sub) and ok
        if ok:
            n = len(self.errors)
            checker = Checker(doc, self)
            checker.check()
            doc.checked = len(self.errors) == n
        if doc.checked:
            _DOCUMENTS[key] = doc
        return doc if doc.checked else None

    def parse(self, location, span):
        """The document at `location` parsed (its parser's warnings kept), or None after an error."""
        src = None
        try:
            src = self.read(location, span)
            parser = Parser.for_source(src, self.strict)
            doc = parser.document()
        except WdlError as e:
            if span is not None and src is not None and not _WDL_START_RE.match(src.text) and not isinstance(
                    e, EmptyDocumentError):
                # `import "../../etc/passwd"`: name the file, never echo a line of it
                e = WdlError("`%s` is not a WDL document (it does not begin with `version`, `import`, `struct`, "
                             "`task` or `workflow`)" % location, span)
            self.errors.append(e)
            return None
        self.warnings.extend(parser.warnings)
        return doc

    def add_import(self, doc, imp, uri, sub):
        """Give `doc` the imported document `sub` under its namespace; False after an error."""
        ok = True
        empty = not (sub.imports or sub.structs or sub.enums or sub.tasks or sub.workflow)
        problem = None if empty else import_problem(doc.dialect, sub.dialect)
        if problem == "error":
            self.errors.append(WdlError("a WDL document (%s) cannot import `%s`, which is %s" % (
                dialect_text(doc.dialect), imp.uri, dialect_text(sub.dialect)), imp.span))
            ok = False
        elif problem:
            self.warn("`%s` is %s and this document is %s: accepted, as miniwdl does, but WDL %s only imports "
                      "documents of its own version" % (imp.uri, dialect_text(sub.dialect),
                                                        dialect_text(doc.dialect), doc.dialect.name), imp.span,
                      "ImportOlderMinor")
        imp.doc = sub
        ns = imp.namespace or re.sub(r"\.wdl$", "", posixpath.basename(uri.split("?")[0]))
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", ns):
            self.errors.append(WdlError("`%s` is not a valid namespace name; use `as` to name the import" % ns, imp.span))
            return False
        if ns in doc.namespaces:
            if sum(1 for d in (doc.namespaces[ns], sub) if d.tasks or d.workflow) > 1 or not doc.dialect.accepts(
                    "shared_namespace"):
                self.errors.append(WdlError("namespace `%s` is already imported; use `as` to rename one" % ns, imp.span))
                return False
            # one of them holds only structs, which need no namespace: Cromwell accepts it
            self.warn("namespace `%s` is imported twice, one of them a document of structs only: accepted for "
                      "compatibility with Cromwell; portable WDL renames one with `as`" % ns, imp.span,
                      rule_name("shared_namespace"))
            if not (sub.tasks or sub.workflow):
                return ok
        doc.namespaces[ns] = sub
        return ok


def _import_target(location, uri):
    """Where an import of `uri` by the document at `location` leads."""
    if is_url(location) and not is_url(uri) and not os.path.isabs(uri):
        import urllib.parse

        return urllib.parse.urljoin(location, uri)  # relative to the importing document's URL
    if is_url(uri):
        return uri
    return os.path.join(os.path.dirname(location), uri)


def import_problem(importer, imported):
    """None when `importer` may import `imported`; "warn" for an earlier 1.x minor version (the
    1.1/1.2 text says "the same version", but Sprocket and 1.3 allow it: a portability warning
    that --strict keeps a warning); "error" otherwise."""
    if importer.name == imported.name:
        return None
    if "draft-2" in (importer.name, imported.name) or imported.level > importer.level:
        return "error"
    return None if importer.column["import_older_minor"] == "y" else "warn"


# A standard library call that fits only with one of these features: (feature, why it is accepted).
_LENIENT_CALLS = (
    ("primitive_to_string", "numbers and Booleans taken as text for compatibility; portable WDL converts them first"),
    ("string_to_number", "a String taken as a number for compatibility (converted at run time, failing if it is not "
                         "one); portable WDL converts it explicitly"),
    ("newer_functions", "a WDL 1.1 function, accepted in a 1.0 document for compatibility with miniwdl; portable WDL "
                        "declares `version 1.1`"),
)


class Checker:
    """Resolves names and types in one document whose imports are already checked."""

    def __init__(self, doc, loader):
        self.doc = doc
        self.dialect = doc.dialect
        self.loader = loader
        self.placeholder = 0  # > 0 inside a placeholder, where `+` on optionals is allowed
        self.scopes = {}  # id(workflow body) -> scope_types() of it

    def err(self, message, span):
        self.loader.errors.append(WdlTypeError(message, span))

    def warn(self, message, span, rule=None):
        self.loader.warnings.append(WdlError(message, span, rule))

    def lenient(self, feature, message, span):
        """Is a construct accepted here (see Dialect.lenient)?"""
        return self.dialect.lenient(feature, message, span, self.loader.warnings)

    # -- structs and enums -----------------------------------------------------------------
    def check(self):
        doc = self.doc
        doc.types = {}
        for imp in doc.imports:
            for name, t in imp.doc.types.items():
                if name in imp.aliases.values():
                    continue
                local = imp.aliases.get(name, name)
                prev = doc.types.get(local)
                if prev is not None and prev is not t and not _same_definition(prev, t):
                    self.err("struct `%s` is imported with two different definitions; use `alias` to rename one" % local, imp.span)
                doc.types[local] = t
            for name in imp.aliases:
                if name not in imp.doc.types:
                    self.err("`%s` is not a struct or enum of `%s`" % (name, imp.uri), imp.span)
        for s in doc.structs:
            if any(x.name == s.name for x in doc.structs[: doc.structs.index(s)]):
                self.err("struct `%s` is already defined" % s.name, s.span)
            s.type_ = StructType(s.name, {})
            doc.types[s.name] = s.type_
        for e in doc.enums:
            if e.name in doc.types:
                self.err("`%s` is already defined" % e.name, e.span)
            e.type_ = EnumType(e.name, None, {})
            doc.types[e.name] = e.type_
        others = dict([(t.name, "a task") for t in doc.tasks] + [(ns, "an import namespace") for ns in doc.namespaces]
                      + ([(doc.workflow.name, "the workflow")] if doc.workflow else []))
        for d in doc.structs + doc.enums:
            if d.name in others:
                self.err("%s `%s` has the same name as %s" % ("struct" if d in doc.structs else "enum", d.name,
                                                              others[d.name]), d.span)
        for s in doc.structs:
            if not s.members and not self.lenient("empty_struct", "struct `%s` has no members: accepted as miniwdl "
                                                  "does, but Sprocket refuses it; give it a member" % s.name, s.span):
                self.err("struct `%s` must have at least one member" % s.name, s.span)
            for m in s.members:
                if m.name in s.type_.members:
                    self.err("struct `%s` has two members named `%s`" % (s.name, m.name), m.span)
                s.type_.members[m.name] = self.resolve_type(m.type_, m.span)
            if self._struct_cycle(s.type_, set()):
                self.err("struct `%s` contains itself" % s.name, s.span)
        for e in doc.enums:
            self.check_enum(e)
        names = set()
        for t in doc.tasks:
            if t.name in names:
                self.err("task `%s` is already defined" % t.name, t.span)
            names.add(t.name)
            self.check_task(t)
        if doc.workflow is not None:
            if doc.workflow.name in names and not self.lenient(
                    "workflow_named_like_task", "workflow `%s` has the same name as a task: accepted for compatibility "
                    "with Cromwell; portable WDL gives them different names" % doc.workflow.name, doc.workflow.span):
                self.err("workflow `%s` has the same name as a task" % doc.workflow.name, doc.workflow.span)
            self.check_workflow(doc.workflow)

    def _struct_cycle(self, st, seen):
        if id(st) in seen:  # by identity: an imported struct aliased away may share a local struct's name
            return True
        seen = seen | {id(st)}
        return any(contains_type(m, lambda x: isinstance(x, StructType) and id(x) in seen) or
                   (isinstance(m, StructType) and self._struct_cycle(m, seen)) for m in st.members.values())

    def check_enum(self, e):
        et = e.type_
        declared = self.resolve_type(e.value_type) if e.value_type is not None else None
        types = []
        for name, expr, span in e.choices:
            if name in et.choices:
                self.err("enum `%s` has two choices named `%s`" % (e.name, name), span)
            if expr is None:
                et.choices[name] = None
                continue
            if not _is_constant(expr):
                self.err("enum choice values must be literals (no computed expressions, interpolation or function calls)", expr.span)
                et.choices[name] = None
                continue
            t = self.infer(expr, {})
            types.append((t, expr))
            et.choices[name] = expr
        if declared is not None:
            for t, expr in types:
                if not coerces(t, declared, self.dialect):
                    self.err("enum `%s` value of type `%s` cannot be coerced to `%s`" % (e.name, t, declared), expr.span)
            et.value_type = declared
        elif types:
            u = unify([t for t, _ in types], self.dialect)
            if u is None or len(types) < len(e.choices):
                if u is None or u != STRING:
                    self.err("the value type of enum `%s` cannot be inferred: its values have no common type" % e.name, e.span)
                    u = ANY
            et.value_type = u
        else:
            et.value_type = STRING

    def resolve_type(self, t, span=None):
        if isinstance(t, NamedType):
            found = self.doc.types.get(t.name)
            if found is None:
                self.err("unknown type `%s`" % t.name, t.span)
                return ANY
            return found.optional(t.opt)
        params = []
        for p in t.params():
            r = self.resolve_type(p, span)
            if isinstance(t, MapType) and not params and not is_primitive(r):
                self.err("Map keys must be a primitive type, not `%s`" % r, getattr(p, "span", None) or span or self.doc.span)
            params.append(r)
        return t.with_params(params)

    # -- declarations ------------------------------------------------------------------------
    def declare(self, decls, env, what):
        for d in decls:
            d.type_ = self.resolve_type(d.type_, d.span)
            if d.name in env:
                self.err("`%s` is already declared in %s" % (d.name, what), d.span)
            env[d.name] = d.type_

    def check_decl(self, d, env):
        if d.expr is not None:
            self.check_value(d.expr, d.type_, env, "`%s`" % d.name)

    def check_value(self, expr, want, env, what):
        """Type-check `expr` where a value of type `want` is expected (a declaration, a call
        input, a struct member). A map or object literal given for a struct is checked member by
        member, as the 1.0 spec's `Person a = {"name": "John", "age": 30}` needs, also inside
        array and map literals declared with struct types."""
        w = want.required()
        members = _literal_members(expr) if isinstance(w, StructType) else None
        if members is not None:
            for name, v, span in members:
                if name not in w.members:
                    self.err("struct `%s` has no member `%s`" % (w.name, name), span)
                    self.infer(v, env)
                else:
                    self.check_value(v, w.members[name], env, "member `%s`" % name)
            given = {name for name, _, _ in members}
            missing = [m for m, t in w.members.items() if not t.opt and m not in given]
            if missing:
                self.err("%s lacks member%s %s of struct `%s`" % (
                    what, "s" if len(missing) > 1 else "", ", ".join("`%s`" % m for m in missing), w.name), expr.span)
            expr.type = OBJECT if isinstance(expr, ObjectLit) else MapType(STRING, ANY)
            return
        if isinstance(expr, ArrayLit) and isinstance(w, ArrayType) and expr.items and contains_type(
                w.item, lambda x: isinstance(x, StructType)):
            for x in expr.items:
                self.check_value(x, w.item, env, what)
            expr.type = ArrayType(w.item, nonempty=True)
            return
        if isinstance(expr, MapLit) and isinstance(w, MapType) and expr.entries and contains_type(
                w.value, lambda x: isinstance(x, StructType)):
            for k, v in expr.entries:
                self.expect_coerce(self.infer(k, env), w.key_type, k.span, "a key of %s" % what, k)
                self.check_value(v, w.value, env, what)
            expr.type = MapType(w.key_type, w.value)
            return
        if isinstance(expr, ArrayLit) and not expr.items and isinstance(w, ArrayType) and w.nonempty:
            self.err("%s is declared `%s`, a non-empty array, but given `[]`" % (what, want), expr.span)
            expr.type = ArrayType(ANY)
            return
        self.expect_coerce(self.infer(expr, env), want, expr.span, what, expr)

    def expect_coerce(self, t, want, span, what, expr=None):
        if t.opt and not want.opt and self.dialect.optional_to_required and not isinstance(t, AnyType) and not \
                self.lenient("optional_for_required", "%s is declared `%s` but given a `%s`: accepted in %s (Cromwell "
                             "fails at run time if it is None); miniwdl and Sprocket refuse it: use select_first()"
                             % (what, want, t, dialect_text(self.dialect)), span):
            self.err("%s has type `%s`, but an optional value cannot be used where `%s` is expected" % (what, t, want),
                     span)
            return
        if not coerces(t, want, self.dialect) and not _deserializes(expr, t, want):
            d = self.dialect
            if isinstance(want, ArrayType) and isinstance(t, MapType) and coerces(
                    ArrayType(PairType(t.key_type, t.value)), want, d):
                if self.lenient("map_to_pairs", "%s is declared `%s` but given a `%s`: accepted for compatibility with "
                                "Cromwell (the map's entries as pairs); portable WDL uses `as_pairs()`" % (what, want, t), span):
                    return
            if coerces(t, want, d.with_features("primitive_to_string")):
                if self.lenient("primitive_to_string", "%s is declared `%s` but given a `%s`: accepted for "
                                "compatibility (converted to text); portable WDL uses a placeholder: "
                                "\"~{...}\"" % (what, want, t), span):
                    return
            elif coerces(t, want, d.with_features("primitive_to_string", "string_to_number")):
                if self.lenient("string_to_number", "%s is declared `%s` but given a `%s`: accepted for compatibility "
                                "(Cromwell and miniwdl convert it at run time, failing if it is not a number); portable "
                                "WDL converts it explicitly" % (what, want, t), span):
                    return
            if t.opt and not want.opt and coerces(t.required(), want, self.dialect):
                self.err("%s has type `%s`, but an optional value cannot be used where `%s` is expected" % (what, t, want), span)
            else:
                self.err("%s is declared `%s` but given a value of type `%s`" % (what, want, t), span)

    def check_task(self, task):
        env = {}
        inputs = task.inputs or []
        self.declare(inputs, env, "task `%s`" % task.name)
        self.declare(task.decls, env, "task `%s`" % task.name)
        for d in inputs + task.decls:
            self.check_decl(d, {k: v for k, v in env.items() if k != d.name})
        self.check_decl_cycles(inputs + task.decls, "task `%s`" % task.name)
        cmd_env = dict(env)
        if self.dialect.task_variable:
            cmd_env["task"] = task_variable_type(self.dialect, "command")
        for p in task.command.parts:
            if not isinstance(p, str):
                self.check_placeholder(p, cmd_env)
        for section in _RUNTIME_SECTIONS:
            block = getattr(task, section)
            if block is None:
                continue
            if section == "runtime" and self.dialect.runtime_deprecated:
                self.warn("the `runtime` section is deprecated in WDL 1.2; use `requirements` and `hints`",
                          task.runtime_spans["runtime"], "RequirementsSection")
            renv = dict(env)
            if self.dialect.task_in_requirements:
                renv["task"] = task_variable_type(self.dialect, section)
            for key, expr in block.items():
                if section == "runtime" and key not in _REQUIREMENT_KEYS and key not in _KNOWN_HINTS:
                    self.warn("runtime key `%s` is not known to sprocket.py and is ignored (known keys: the requirements "
                              "and %s)" % (key, ", ".join(sorted(_KNOWN_HINTS))), block.spans[key],
                              rule_name("unknown_runtime_key"))
                if section == "requirements" and key not in _REQUIREMENT_KEYS:
                    self.err("unknown requirement `%s` (requirements are %s; other keys belong in `hints`)" % (
                        key, ", ".join(sorted({k for k in _REQUIREMENT_KEYS if "R" not in k}))), block.spans[key])
                self.check_runtime_value(section, key, expr, renv, names={
                    "input": {d.name for d in inputs}, "output": {d.name for d in task.outputs or []}})
        out_env = dict(cmd_env)
        if self.dialect.task_variable:
            out_env["task"] = task_variable_type(self.dialect, "output")
        outputs = task.outputs or []
        for d in outputs:
            d.type_ = self.resolve_type(d.type_, d.span)
            if any(o.name == d.name for o in outputs[: outputs.index(d)]):
                self.err("output `%s` is already declared in task `%s`" % (d.name, task.name), d.span)
            out_env[d.name] = d.type_
        for d in outputs:
            self.check_decl(d, {k: v for k, v in out_env.items() if k != d.name})
        self.check_decl_cycles(outputs, "the outputs of task `%s`" % task.name)

    def check_runtime_value(self, section, key, expr, env, outer=None, names=None):
        """`outer`: the kind of the hints literal `expr` is in. A `hints` literal holds values, an `input`
        or `output` literal (only at the top of the section) holds `hints` literals keyed by the task's
        input or output names, `name.member` for a struct's member (the member is not checked here)."""
        if isinstance(expr, HintsBlock):
            if outer is not None and (expr.kind != "hints" or outer == "hints"):
                self.err("`%s` literals cannot be nested within `%s` literals" % (expr.kind, outer), expr.span)
            for k, e in expr.entries:
                if outer is None and names and expr.kind in names and k.split(".")[0] not in names[expr.kind]:
                    self.err("`%s` names no %s of this task" % (k, expr.kind), e.span)
                if expr.kind != "hints" and not isinstance(e, HintsBlock):
                    self.err("the members of an `%s` literal must be `hints` literals" % expr.kind, e.span)
                self.check_runtime_value(section, k if expr.kind == "hints" else key, e, env, expr.kind)
            return
        t = self.infer(expr, env)
        want = _HINT_TYPES.get(key) if section == "hints" else _RUNTIME_TYPES.get(key)
        if want and not isinstance(t, AnyType) and not any(coerces(t, w, self.dialect) for w in want):
            self.err("`%s` must be %s, not `%s`" % (key, " or ".join("`%s`" % w for w in want), t), expr.span)

    def check_placeholder(self, ph, env):
        self.placeholder += 1
        try:
            t = self.infer(ph.expr, env)
        finally:
            self.placeholder -= 1
        opts = ph.options
        if "sep" in opts:
            if not isinstance(t, (ArrayType, AnyType)) and not self.lenient(
                    "sep_on_non_array", "placeholder option `sep` on a `%s`, which is not an Array: accepted for "
                    "compatibility (the value is rendered as is); portable WDL drops `sep=`" % t, ph.expr.span):
                self.err("placeholder option `sep` needs an Array, not `%s`" % t, ph.expr.span)
        elif "true" in opts:
            if not coerces(t.required(), BOOLEAN, self.dialect):
                self.err("placeholder options `true`/`false` need a Boolean, not `%s`" % t, ph.expr.span)
        elif not (is_primitive(t) or isinstance(t, AnyType)) and not (isinstance(t, ArrayType) and self.dialect.array_placeholder):
            if not self.lenient("compound_placeholder", "a `%s` in a placeholder: accepted for compatibility (rendered "
                                "as JSON, as Cromwell and miniwdl do); portable WDL converts it first, e.g. with "
                                "`sep()` or `write_json()`" % t, ph.expr.span):
                self.err("a placeholder must be a primitive value, not `%s`" % t, ph.expr.span)

    def check_decl_cycles(self, decls, where):
        by_name = {d.name: d for d in decls}
        graph = {d.name: [n for n in free_names(d.expr) if n in by_name and n != d.name] if d.expr else [] for d in decls}
        for d in decls:
            if d.expr is not None and d.name in free_names(d.expr):
                self.err("`%s` refers to itself (a dependency cycle)" % d.name, d.span)
        cycle = find_cycle(graph)
        if cycle:
            self.err("declarations depend on each other in a cycle in %s: %s" % (where, " -> ".join(cycle)), by_name[cycle[0]].span)

    # -- workflows -------------------------------------------------------------------------
    def check_workflow(self, wf):
        self.wf = wf
        env = {}
        inputs = wf.inputs or []
        self.declare(inputs, env, "workflow `%s`" % wf.name)
        self.nested_ok = allows_nested_inputs(wf)
        names = self.body_names(wf.body, env, set(env))
        env.update(names)
        for d in inputs:
            self.check_decl(d, {k: v for k, v in env.items() if k != d.name})
        self.check_body(wf.body, env)
        for key, expr in (wf.hints or {}).items():
            if not isinstance(expr, HintsBlock) and not _is_constant(expr):
                self.err("workflow hints must be literal values; `%s` is an expression" % key, expr.span)
        self.graph_cycles(inputs + wf.body)
        typed = self.expand_outputs(wf, env)
        out_env = dict(env)
        seen_outputs = set()
        for d in wf.outputs or []:
            if d.name in seen_outputs:
                self.err("workflow output `%s` is already declared" % d.name, d.span)
            seen_outputs.add(d.name)
            if id(d) not in typed:
                d.type_ = self.resolve_type(d.type_, d.span)
                self.check_decl(d, out_env)
            out_env[d.name] = d.type_

    def expand_outputs(self, wf, env):
        """draft-2's untyped `call.out` outputs take the call output's type; `call.*`, and a
        missing output section where the dialect has implicit outputs, stand for every output
        of the call (of every call), named `call.out`."""
        outputs = wf.outputs
        if outputs is None:
            if not self.dialect.implicit_outputs:
                return set()
            outputs = [Decl(c.span, None, c.name + ".*", Ident(c.span, c.name)) for c in walk_calls(wf.body)]
        expanded = []
        for d in outputs:
            if d.type_ is not None:
                expanded.append(d)
                continue
            t = self.infer(d.expr, env)
            if not d.name.endswith(".*"):
                expanded.append(Decl(d.span, t, d.name, d.expr))
            elif isinstance(t, CallType):
                call = d.name[:-2]
                for k, mt in t.members.items():
                    e = GetAttr(d.span, Ident(d.span, call), k)
                    self.infer(e, env)
                    expanded.append(Decl(d.span, mt, "%s.%s" % (call, k), e))
            elif not isinstance(t, AnyType):
                self.err("`%s` is not a call" % d.name[:-2], d.span)
        typed = set()
        for d in expanded:
            d.env = False
            if d not in outputs:
                typed.add(id(d))
        wf.outputs = expanded
        return typed  # the outputs whose type is their expression's, already checked

    def body_names(self, body, outer, taken):
        """Resolve a body's declared types and callees, report names defined twice (`taken`
        holds the names of every level), and return what scope_types() says of it."""
        for el in body:
            if isinstance(el, Decl):
                el.type_ = self.resolve_type(el.type_, el.span)
                self.define(el.name, el.span, taken)
            elif isinstance(el, Call):
                self.resolve_callee(el)
                el.name = el.alias or el.callee.split(".")[-1]
                self.define(el.name, el.span, taken)
            elif isinstance(el, Scatter):
                el.name = "scatter@%d" % el.span.pos
                self.body_names(el.body, outer, taken)
            elif isinstance(el, Conditional):
                el.name = "if@%d" % el.span.pos
                before = set(taken)
                for _, b in el.clauses:  # names may repeat across the clauses of one if/else chain
                    self.body_names(b, outer, set(before))
                    taken.update(n for x in b for n in element_defines(x))
        return self.scope_types(body)

    def scope_types(self, body):
        """The names a body defines, with their types at that body's level: those of a scatter
        inside it are Arrays; those of a conditional are optional, unless an exhaustive
        if/else if/else defines them in every clause (then their common type). The one rule
        for every depth; computed once per body."""
        names = self.scopes.get(id(body))
        if names is not None:
            return names
        names = {}
        for el in body:
            if isinstance(el, Decl):
                names[el.name] = el.type_
            elif isinstance(el, Call):
                names[el.name] = CallType(el.name, dict(el.callee_def.outputs) if el.callee_def is not None else {})
            elif isinstance(el, Scatter):
                for k, t in self.scope_types(el.body).items():
                    names[k] = _wrap(t, lambda x: ArrayType(x))
            elif isinstance(el, Conditional):
                clause_names = [self.scope_types(b) for _, b in el.clauses]
                exhaustive = el.clauses[-1][0] is None
                for k in sorted({k for cn in clause_names for k in cn}):
                    ts = [cn[k] for cn in clause_names if k in cn]
                    every = exhaustive and len(ts) == len(clause_names)
                    if isinstance(ts[0], CallType):
                        names[k] = ts[0] if every else _wrap(ts[0], lambda x: x.optional())
                        continue
                    u = unify(ts, self.dialect)
                    if u is None:
                        self.err("`%s` has no common type across the branches of this conditional (%s)" % (
                            k, ", ".join("`%s`" % t for t in ts)), el.span)
                        u = ANY
                    names[k] = u if every else u.optional()
        self.scopes[id(body)] = names
        return names

    def define(self, name, span, taken):
        if name in taken:
            self.err("`%s` is already defined in workflow `%s`" % (name, self.wf.name), span)
        taken.add(name)

    def resolve_callee(self, call):
        parts = call.callee.split(".")
        call.callee_def = None
        if len(parts) == 1:
            target = next((t for t in self.doc.tasks if t.name == parts[0]), None)
            ns = self.doc.namespaces.get(parts[0])
            if target is None and ns is not None and ns.workflow is not None and ns.workflow.name == parts[0]:
                # `call lib` for an imported `lib.wdl` whose workflow is `lib` (as a spec example does).
                call.callee_def = CalleeInfo(ns.workflow)
                return
            if target is None:
                wf = self.doc.workflow
                if wf is not None and wf.name == parts[0]:
                    self.err("workflow `%s` cannot call itself" % wf.name, call.span)
                else:
                    self.err("unknown task or workflow `%s`" % call.callee, call.span)
                return
        else:
            ns = self.doc
            for part in parts[:-1]:  # `a.b.task`: through the imports of imports, as Cromwell and miniwdl
                ns = ns.namespaces.get(part)
                if ns is None:
                    self.err("unknown namespace `%s` in call to `%s`" % (part, call.callee), call.span)
                    return
            parts = parts[-2:]
            target = next((t for t in ns.tasks if t.name == parts[1]), None)
            if target is None and ns.workflow is not None and ns.workflow.name == parts[1]:
                target = ns.workflow
            if target is None:
                self.err("`%s` has no task or workflow named `%s`" % (parts[0], parts[1]), call.span)
                return
        call.callee_def = CalleeInfo(target)

    def check_body(self, body, env):
        for el in body:
            if isinstance(el, Decl):
                if el.expr is not None and el.name in free_names(el.expr):
                    self.err("`%s` refers to itself (a dependency cycle)" % el.name, el.span)
                    continue
                self.check_decl(el, env)
            elif isinstance(el, Call):
                self.check_call(el, env)
            elif isinstance(el, Scatter):
                t = self.infer(el.expr, env)
                if isinstance(t, AnyType):
                    item = ANY
                elif not isinstance(t, ArrayType) or (t.opt and not self.dialect.optional_to_required):
                    self.err("scatter needs an Array to iterate over, not `%s`" % t, el.expr.span)
                    item = ANY
                else:
                    item = t.item
                if el.variable in env and self.scatter_variable_collides(el):
                    self.err("scatter variable `%s` collides with another name" % el.variable, el.span)
                inner = dict(env)
                inner[el.variable] = item
                inner.update(self.scope_types(el.body))
                self.check_body(el.body, inner)
            elif isinstance(el, Conditional):
                for cond, b in el.clauses:
                    if cond is not None:
                        t = self.infer(cond, env)
                        if not coerces(t, BOOLEAN, self.dialect) and not isinstance(t, AnyType):
                            self.err("the condition must be a Boolean, not `%s`" % t, cond.span)
                    inner = dict(env)
                    inner.update(self.scope_types(b))
                    self.check_body(b, inner)

    def scatter_variable_collides(self, scatter):
        """Is the scatter variable named like an input, declaration or call before the scatter, or one in
        its body? One after it, outside, is not visible in the body (Sprocket's rule): the variable hides it."""
        def defined(body):
            for x in body:
                if isinstance(x, (Decl, Call)):
                    yield x
                else:
                    for b in [x.body] if isinstance(x, Scatter) else [b for _, b in x.clauses]:
                        yield from defined(b)
        inside = {id(d) for d in defined(scatter.body)}
        return any(d.name == scatter.variable and (d.span.pos < scatter.span.pos or id(d) in inside)
                   for d in defined((self.wf.inputs or []) + self.wf.body))

    def check_call(self, call, env):
        info = call.callee_def
        given = set()
        for name, expr, span in call.inputs:
            if expr is None:
                expr = Ident(span, name)
            if name in given and not self.lenient(
                    "duplicate_call_inputs", "input `%s` is given twice in call `%s`: accepted for compatibility with "
                    "Cromwell (the last one counts); portable WDL gives it once" % (name, call.name), span):
                self.err("input `%s` is already given in call `%s`" % (name, call.name), span)
            given.add(name)
            if info is None or name not in info.inputs:
                self.infer(expr, env)
                if info is not None:
                    self.err("call `%s` has no input named `%s`" % (call.callee, name), span)
                continue
            self.check_value(expr, info.inputs[name][0], env, "input `%s` of call `%s`" % (name, call.name))
        for name, span in call.afters:
            if name not in env or not isinstance(env[name], CallType):
                self.err("`after` names `%s`, which is not a call" % name, span)
        if info is not None and not self.nested_ok:
            missing = [n for n, (t, required) in info.inputs.items() if required and n not in given]
            listed = "input%s %s" % ("s" if len(missing) > 1 else "", ", ".join("`%s`" % m for m in missing))
            if missing and not self.lenient(
                    "unbound_call_inputs", "call `%s` leaves required %s unbound: accepted for compatibility with "
                    "Cromwell and miniwdl (they must be given at run time as `%s.%s.<input>`); portable WDL binds them "
                    "in the call or sets `allow_nested_inputs`" % (call.name, listed, self.wf.name, call.name), call.span):
                self.err("call `%s` is missing required %s" % (call.name, listed), call.span)

    def graph_cycles(self, body):
        """Record each element's dependencies and report a cycle among them."""
        level = {}
        for el in body:
            el.deps = sorted(element_refs(el))
            for n in element_defines(el):
                level[n] = el
            if isinstance(el, Scatter):
                self.graph_cycles(el.body)
            elif isinstance(el, Conditional):
                for _, b in el.clauses:
                    self.graph_cycles(b)
        g = {}
        for el in body:
            # (a declaration that reads itself is reported by check_body already)
            g[el.name] = [level[n].name for n in el.deps if n in level and not (level[n] is el and isinstance(el, Decl))]
        cycle = find_cycle(g)
        if cycle and len(cycle) == 2 and cycle[0] == cycle[1]:
            el = next(x for x in body if x.name == cycle[0])
            what = "`%s`" % el.name if isinstance(el, Call) else "this %s" % (
                "scatter" if isinstance(el, Scatter) else "conditional")
            self.err("%s reads a value it defines itself (a dependency cycle)" % what, el.span)
        elif cycle:
            self.err("workflow elements depend on each other in a cycle: %s" % " -> ".join(cycle),
                     next(el for el in body if el.name == cycle[0]).span)

    # -- expressions -----------------------------------------------------------------------
    def infer(self, e, env):
        t = self._infer(e, env)
        e.type = t
        return t

    def _infer(self, e, env):
        infer = _INFER.get(type(e))
        if infer is None:
            raise AssertionError("unknown expression node %r" % e)
        return infer(self, e, env)

    def infer_literal(self, e, env):
        v = e.value
        return BOOLEAN if v is True or v is False else INT if isinstance(v, int) else FLOAT if isinstance(v, float) else NONE_TYPE

    def infer_string(self, e, env):
        for p in e.parts:
            if not isinstance(p, str):
                self.check_placeholder(p, env)
        return STRING

    def infer_ident(self, e, env):
        t = env.get(e.name)
        if t is None:
            self.err("unknown name `%s`" % e.name, e.span)
            return ANY
        return t

    def infer_apply(self, e, env):
        args = [self.infer(a, env) for a in e.args]
        try:
            e.fn, t = resolve_call(e.name, args, self.dialect)
        except WdlTypeError as err:
            found = self.resolve_lenient_call(e, args)
            if found is None:
                e.fn = None
                self.err(err.message, e.span)
                return ANY
            e.fn, t = found
        if e.name == "write_tsv" and len(e.args) == 3 and isinstance(e.args[2], ArrayLit):
            self.check_tsv_header(e, args[0])
        if e.name in ("sub", "matches", "find") and isinstance(e.args[1], StringLit) and _is_constant(e.args[1]):
            self.check_literal_regex(e.args[1])
        return t

    def resolve_lenient_call(self, e, args):
        """(overload, type) of a call the dialect refuses but Cromwell and miniwdl accept (warned
        about as its feature), or None."""
        for feature, why in _LENIENT_CALLS:
            try:
                fn, t = resolve_call(e.name, args, self.dialect.with_features(feature))
            except WdlTypeError:
                continue
            if self.lenient(feature, "function `%s` given (%s): %s" % (e.name, ", ".join(map(str, args)), why), e.span):
                return fn, t
        return None

    def check_literal_regex(self, pattern):
        """A literal pattern that cannot compile fails every run: say so now (a number compiles)."""
        try:
            used = translate_regex("".join(pattern.parts))[1]
        except EvalError as err:
            self.err(err.message, pattern.span)
            used = ()
        if used and not self.lenient("non_posix_regex", "the regular expression uses %s: not POSIX ERE (the "
                                     "spec's syntax), but read the same way by Sprocket, Cromwell and miniwdl"
                                     % ", ".join(used), pattern.span):
            self.err("the regular expression uses %s, which POSIX ERE (the spec's syntax) does not have"
                     % ", ".join(used), pattern.span)

    def infer_unary(self, e, env):
        t = self.infer(e.operand, env)
        if e.op == "!":
            if not coerces(t, BOOLEAN, self.dialect) and not isinstance(t, AnyType):
                self.err("`!` needs a Boolean, not `%s`" % t, e.span)
            return BOOLEAN
        if not (is_numeric(t.required()) or isinstance(t, AnyType)):
            self.err("unary `%s` needs an Int or Float, not `%s`" % (e.op, t), e.span)
            return ANY
        return t

    def infer_array(self, e, env):
        items = [self.infer(x, env) for x in e.items]
        if not items:
            return ArrayType(ANY)
        u = unify(items, self.dialect) or self.mixed_items(e, items)
        if u is None:
            self.err("array items have no common type (%s)" % ", ".join(sorted({"`%s`" % t for t in items})), e.span)
            u = ANY
        return ArrayType(u, nonempty=True)

    def infer_map(self, e, env):
        ks = [self.infer(k, env) for k, _ in e.entries]
        vs = [self.infer(v, env) for _, v in e.entries]
        if not ks:
            return MapType(ANY, ANY)
        bad = [(k, kt) for (k, _), kt in zip(e.entries, ks) if not is_primitive(kt)]
        for k, kt in bad:  # (None is an AnyType, accepted as Sprocket does where the key type is optional)
            self.err("a Map key must be a primitive value, not a `%s`" % kt, k.span)
        ku, vu = ANY if bad else unify(ks, self.dialect), unify(vs, self.dialect)
        if ku is None or vu is None:
            self.err("map %s have no common type" % ("keys" if ku is None else "values"), e.span)
        return MapType(ku or ANY, vu or ANY)

    def infer_pair(self, e, env):
        return PairType(self.infer(e.left, env), self.infer(e.right, env))

    def infer_if(self, e, env):
        c = self.infer(e.cond, env)
        if not coerces(c, BOOLEAN, self.dialect) and not isinstance(c, AnyType):
            self.err("the condition of `if` must be a Boolean, not `%s`" % c, e.cond.span)
        a, b = self.infer(e.then, env), self.infer(e.other, env)
        u = unify([a, b], self.dialect)
        if u is None and unify([a, b], self.dialect.with_features("primitive_to_string")) == STRING.optional(
                a.opt or b.opt) and self.lenient(
                "primitive_to_string", "the branches of `if` are `%s` and `%s`: accepted for compatibility (both "
                "taken as text, as Cromwell and miniwdl do); portable WDL converts with a placeholder" % (a, b),
                e.span):
            u = STRING.optional(a.opt or b.opt)
        if u is None:
            self.err("the branches of `if` have no common type (`%s` and `%s`)" % (a, b), e.span)
            return ANY
        return u

    def infer_object(self, e, env):
        seen = set()
        for name, x, span in e.members:
            if name in seen:
                self.err("member `%s` is already given" % name, span)
            seen.add(name)
            self.infer(x, env)
        return OBJECT

    def infer_hints(self, e, env):
        for _, x in e.entries:
            self.infer(x, env)
        return ANY

    def check_tsv_header(self, e, rows_type):
        """`write_tsv(rows, true, [names])`: a header as wide as each row, where both are known here."""
        width = len(e.args[2].items)
        item = getattr(rows_type, "item", None)
        if isinstance(item, StructType):
            widths = [len(item.members)]
        elif isinstance(e.args[0], ArrayLit):
            widths = [len(r.items) for r in e.args[0].items if isinstance(r, ArrayLit)]
        else:
            widths = []
        bad = next((w for w in widths if w != width), None)
        if bad is not None:
            self.err("write_tsv: the header has %d name%s but a row has %d field%s" % (
                width, "s" * (width != 1), bad, "s" * (bad != 1)), e.args[2].span)

    def infer_struct_literal(self, e, env):
        st = self.doc.types.get(e.name)
        if not isinstance(st, StructType):
            self.err("`%s` literals can only be used within a hints section" % e.name if e.name in (
                "hints", "input", "output") else "unknown struct `%s`" % e.name, e.span)
            for _, x, _ in e.members:
                self.infer(x, env)
            return ANY
        seen = set()
        for name, x, span in e.members:
            if name in seen:
                self.err("member `%s` is already given" % name, span)
            seen.add(name)
            if name not in st.members:
                self.infer(x, env)
                self.err("struct `%s` has no member `%s`" % (st.name, name), span)
                continue
            self.check_value(x, st.members[name], env, "member `%s`" % name)
        missing = [m for m, t in st.members.items() if m not in seen and not t.opt]
        if missing:
            self.err("struct `%s` literal is missing member%s %s" % (
                st.name, "s" if len(missing) > 1 else "", ", ".join("`%s`" % m for m in missing)), e.span)
        return st

    def infer_getattr(self, e, env):
        base = e.expr
        if type(base) is Ident and base.name not in env:
            et = self.doc.types.get(base.name)
            if isinstance(et, EnumType):
                base.type = et
                if e.name not in et.choices:
                    self.err("enum `%s` has no choice `%s`" % (et.name, e.name), e.span)
                return et
        t = self.infer(base, env)
        opt = t.opt
        if isinstance(t, PairType):
            if e.name in ("left", "right"):
                r = getattr(t, e.name)
                return r.optional() if opt else r
            self.err("a Pair has only `left` and `right`, not `%s`" % e.name, e.span)
            return ANY
        if isinstance(t, (StructType, CallType)):
            if e.name not in t.members:
                what = "call `%s` has no output" % t.name if isinstance(t, CallType) else "`%s` has no member" % t.name
                self.err("%s `%s`%s" % (what, e.name, " here: it is only available in `output` sections" if (
                    t.name, e.name) == ("task", "return_code") else ""), e.span)
                return ANY
            r = t.members[e.name]
            return r.optional() if opt else r
        if isinstance(t, (ObjectType, AnyType)):
            return ANY
        if isinstance(t, MapType) and coerces(STRING, t.key_type, self.dialect) and self.lenient(
                "map_member_access", "`.%s` on a `%s`: accepted for compatibility with Cromwell; portable WDL "
                "writes `[\"%s\"]`" % (e.name, t, e.name), e.span):
            return t.value.optional() if opt else t.value
        self.err("`%s` has no members (it is `%s`)" % (e.name, t), e.span)
        return ANY

    def infer_index(self, e, env):
        t = self.infer(e.expr, env)
        i = self.infer(e.index, env)
        if isinstance(t, ArrayType):
            if not coerces(i, INT, self.dialect) and not isinstance(i, AnyType):
                self.err("an Array index must be an Int, not `%s`" % i, e.index.span)
            return t.item
        if isinstance(t, MapType):
            if not coerces(i, t.key_type, self.dialect) and not isinstance(i, AnyType):
                self.err("a `%s` key must be `%s`, not `%s`" % (t, t.key_type, i), e.index.span)
            return t.value
        if isinstance(t, (AnyType, ObjectType)):
            return ANY
        if isinstance(t, StructType) and coerces(i, STRING, self.dialect) and self.lenient(
                "struct_index", "indexing the struct `%s` with a String: accepted for compatibility with Cromwell; "
                "portable WDL names the member (`s.member`)" % t, e.span):
            key = e.index
            if isinstance(key, StringLit) and all(isinstance(p, str) for p in key.parts):
                name = "".join(key.parts)
                if name not in t.members:
                    self.err("`%s` has no member `%s`" % (t.name, name), key.span)
                    return ANY
                return t.members[name]
            return ANY
        self.err("`%s` cannot be indexed" % t, e.span)
        return ANY

    def mixed_items(self, e, items):
        """The item type of an array literal mixing values and arrays, as Cromwell and miniwdl
        accept it: `[x, []]` is an array of x's type whose `[]` stays empty, and `[files, file]`
        an array of arrays in which `file` becomes a one-item array. None if that does not help."""
        arrays = [t for t in items if isinstance(t, ArrayType)]
        values = [t for t in items if not isinstance(t, (ArrayType, AnyType))]
        if not arrays or not values:
            return None
        if all(isinstance(t.item, AnyType) for t in arrays):  # only `[]` beside the values
            u = unify(values, self.dialect)
        else:
            u = unify(arrays + [ArrayType(t.required(), False, t.opt) for t in values], self.dialect)
        if u is None or not self.lenient("mixed_array_items", "array items of types %s: accepted for compatibility "
                                         "with Cromwell and miniwdl (`[]` stays an empty array, a single value in an "
                                         "array of arrays becomes a one-item array); portable WDL gives items of one "
                                         "type" % ", ".join(sorted({"`%s`" % t for t in items})), e.span):
            return None
        e.mixed = True
        return u

    def infer_binary(self, e, env):
        op = e.op
        a, b = self.infer(e.left, env), self.infer(e.right, env)
        if isinstance(a, AnyType) and not a.opt or isinstance(b, AnyType) and not b.opt:
            return BOOLEAN if op in ("==", "!=", "<", "<=", ">", ">=", "&&", "||") else ANY
        lenient = self.placeholder > 0 or self.dialect.lenient_optional_ops
        if op in ("==", "!="):
            if unify([a, b], self.dialect) is None and not (is_numeric(a.required()) and is_numeric(b.required())):
                self.err("cannot compare `%s` and `%s` with `%s`" % (a, b, op), e.span)
            return BOOLEAN
        if (a.opt or b.opt) and not lenient:
            self.err("operator `%s` cannot take an optional value (`%s` %s `%s`)" % (op, a, op, b), e.span)
        opt = a.opt or b.opt
        a, b = a.required(), b.required()
        if op in ("&&", "||"):
            if not (a == BOOLEAN and b == BOOLEAN):
                self.err("`%s` needs Boolean operands, not `%s` and `%s`" % (op, a, b), e.span)
            return BOOLEAN
        if op in ("<", "<=", ">", ">="):
            ok = (is_numeric(a) and is_numeric(b)) or (a == b and isinstance(a, PrimType) and a.name in ("String", "Boolean", "File"))
            if not ok:  # (enums are not ordered)
                self.err("cannot compare `%s` and `%s` with `%s`" % (a, b, op), e.span)
            return BOOLEAN
        if is_numeric(a) and is_numeric(b):
            r = INT if a == INT and b == INT else FLOAT
            return r.optional(opt) if self.placeholder else r
        if op == "+" and isinstance(a, PrimType) and isinstance(b, PrimType):
            stringy = ("String", "File", "Directory")
            if (a.name in stringy and b.name in stringy + ("Int", "Float")) or (b.name in stringy and a.name in ("Int", "Float", "String")):
                r = FILE if a.name == "File" and b.name == "String" else STRING
                return r.optional(opt) if self.placeholder else r
            if BOOLEAN in (a, b) and {a.name, b.name} & set(stringy) and self.lenient(
                    "boolean_concat", "`+` of `%s` and `%s`: accepted for compatibility (the Boolean is written `true` or "
                    "`false`, as Cromwell and miniwdl do); portable WDL uses a placeholder" % (a, b), e.span):
                return STRING.optional(opt) if self.placeholder else STRING
        self.err("operator `%s` cannot take `%s` and `%s`" % (op, a, b), e.span)
        return ANY


def compile_expression(text, names, what, dialect=DIALECTS["1.2"]):
    """Parse and type-check a WDL expression outside any document (configuration conditions);
    `names` maps the names it may use to their types."""
    src = Source("<%s>" % what, text)
    try:
        p = Parser(src, tokenize(src, 0, dialect), dialect)
        expr = p.expr()
        if p.peek()[0] != "eof":
            p.error("unexpected %s after the expression" % p.describe(p.peek()))
    except WdlError as e:
        raise ConfigError("%s: invalid expression `%s`: %s" % (what, text, e.message))
    doc = Document(Span(src, 0), src, dialect, [], [], [], [], None)
    doc.types = {}
    loader = Loader()
    t = Checker(doc, loader).infer(expr, dict(names))
    if loader.errors:
        raise ConfigError("%s: `%s`: %s" % (what, text, loader.errors[0].message))
    if not coerces(t, BOOLEAN, dialect):
        raise ConfigError("%s: `%s` must be a Boolean expression, not `%s`" % (what, text, t))
    return expr


class CalleeInfo:
    """What a call needs to know of the task or workflow it calls."""

    __slots__ = ("target", "inputs", "outputs")

    def __init__(self, target):
        self.target = target
        self.inputs = {}  # name -> (type, required)
        for d in target.inputs or []:
            # An input with a default is implicitly optional: a caller may pass None.
            self.inputs[d.name] = (d.type_.optional() if d.expr is not None else d.type_, d.expr is None and not d.type_.opt)
        self.outputs = {d.name: d.type_ for d in (target.outputs or [])}


# Runtime keys (1.0/1.1) that are requirements, with their 1.2 names; the rest are hints.
_REQUIREMENT_KEYS = {
    "container": "container", "docker": "container", "cpu": "cpu", "memory": "memory", "gpu": "gpu",
    "fpga": "fpga", "disks": "disks", "max_retries": "max_retries", "maxRetries": "max_retries",
    "return_codes": "return_codes", "returnCodes": "return_codes",
}

# Hints production WDL gives in `runtime` (Cromwell's, Google's, miniwdl's and Sprocket's):
# accepted silently; those this engine uses are read in normalize_runtime() and the backends.
_KNOWN_HINTS = frozenset(
    "preemptible bootDiskSizeGb zones cpuPlatform noAddress gpuCount gpuType continueOnReturnCode time_minutes "
    "runtime_minutes max_time_minutes short_task localization_optional inputs outputs cacheable failOnStderr "
    "docker_user dx_instance_type queueArn awsBatchRetryAttempts maxRetries memory_retry_multiplier "
    "max_cpu max_memory maxCpu maxMemory shortTask localizationOptional checkpointFile useDockerImageCache "
    "predefinedMachineType boot_disk_gb nvidiaDriverVersion backend singularity conda time gcp azure "
    "slurm_partition slurm_account slurm_constraint slurm_qos".split())

_RUNTIME_TYPES = {
    "cpu": (INT, FLOAT, STRING), "memory": (INT, STRING), "container": (STRING, ArrayType(STRING)),
    "docker": (STRING, ArrayType(STRING)), "gpu": (BOOLEAN, INT), "fpga": (BOOLEAN, INT),
    "max_retries": (INT, STRING), "maxRetries": (INT, STRING), "return_codes": (INT, ArrayType(INT), STRING),
    "returnCodes": (INT, ArrayType(INT), STRING), "preemptible": (INT, STRING, BOOLEAN),
    "disks": (INT, STRING, ArrayType(STRING)),
}

# The reserved hints of WDL 1.2+ and the types each accepts (in a `hints` section).
_HINT_TYPES = {
    "max_cpu": (INT, FLOAT), "maxCpu": (INT, FLOAT), "max_memory": (INT, STRING), "maxMemory": (INT, STRING),
    "disks": (STRING, MapType(STRING, STRING)), "gpu": (INT, STRING), "fpga": (INT, STRING),
    "short_task": (BOOLEAN,), "shortTask": (BOOLEAN,), "localization_optional": (BOOLEAN,),
    "localizationOptional": (BOOLEAN,),
}


def _deserializes(expr, t, want):
    """The spec's special case: what `read_lines` & co. read from a file may be coerced on to
    another primitive type (`Array[Int] a = read_lines(f)`, `String s = read_int(f)`)."""
    if not (isinstance(expr, Apply) and expr.name in ("read_lines", "read_string", "read_int", "read_float", "read_boolean")):
        return False
    while isinstance(t, ArrayType) and isinstance(want, ArrayType):
        t, want = t.item, want.item
    return isinstance(t, PrimType) and isinstance(want, PrimType)


def _wrap(t, f):
    """Wrap a name's type for the scope outside a scatter (Array) or conditional (optional)."""
    if isinstance(t, CallType):
        return CallType(t.name, {k: f(v) for k, v in t.members.items()})
    return f(t)


# Type inference, one method per expression node class (as evaluation has _EVAL).
_INFER = {
    Literal: Checker.infer_literal, StringLit: Checker.infer_string, Ident: Checker.infer_ident,
    GetAttr: Checker.infer_getattr, Apply: Checker.infer_apply, Binary: Checker.infer_binary,
    Unary: Checker.infer_unary, ArrayLit: Checker.infer_array, MapLit: Checker.infer_map,
    PairLit: Checker.infer_pair, Index: Checker.infer_index, IfThenElse: Checker.infer_if,
    ObjectLit: Checker.infer_object, StructLit: Checker.infer_struct_literal, HintsBlock: Checker.infer_hints,
}


def _same_definition(a, b):
    return isinstance(a, StructType) and isinstance(b, StructType) and list(a.members) == list(b.members) and all(
        str(a.members[k]) == str(b.members[k]) for k in a.members)


def _literal_members(expr):
    """(name, expression, span) of a map literal with literal String keys or an object literal;
    None for anything else."""
    if isinstance(expr, ObjectLit):
        return expr.members
    if isinstance(expr, MapLit) and all(isinstance(k, StringLit) and all(isinstance(p, str) for p in k.parts)
                                        for k, _ in expr.entries):
        for k, _ in expr.entries:
            k.type = STRING
        return [("".join(k.parts), v, k.span) for k, v in expr.entries]
    return None


def _literal_true(expr):
    return isinstance(expr, Literal) and expr.value is True


def allows_nested_inputs(wf):
    """May the inputs of workflow `wf`'s calls be set from outside it? Its version says so (draft-2,
    1.0), or it does: `allow_nested_inputs` (or `allowNestedInputs`) in its meta, or `true` in its hints.
    The checker asks (a call may then leave required inputs unbound) and so does the command line."""
    meta = wf.meta or {}
    return bool(wf.dialect.nested_inputs or meta.get("allowNestedInputs") or meta.get("allow_nested_inputs")
                or _literal_true((wf.hints or {}).get("allow_nested_inputs")))


def _is_constant(e):
    """A literal, or a literal of literals (a negative number is one too)."""
    if type(e) is Unary:
        return e.op == "-" and type(e.operand) is Literal
    return type(e) in _CONSTANT_NODES and all(_is_constant(c) for c in e.children())


# (A string literal's children are its placeholders: one makes it not a constant.)
_CONSTANT_NODES = {Literal, StringLit, ArrayLit, MapLit, PairLit, ObjectLit, StructLit}


def walk_calls(body):
    """Every call in a workflow body, inside scatters and conditionals too, in source order."""
    for el in body:
        if isinstance(el, Call):
            yield el
        inner = [el.body] if isinstance(el, Scatter) else [b for _, b in el.clauses] if isinstance(el, Conditional) else []
        for b in inner:
            for call in walk_calls(b):
                yield call


def find_call(body, name):
    """The call named `name` in a workflow body, looking inside scatters and conditionals."""
    return next((c for c in walk_calls(body) if c.name == name), None)


def element_defines(el):
    """Names a workflow element makes visible at its own level."""
    if isinstance(el, (Decl, Call)):
        return [el.name]
    out = []
    bodies = [el.body] if isinstance(el, Scatter) else [b for _, b in el.clauses]
    for b in bodies:
        for x in b:
            out.extend(element_defines(x))
    return out


def element_refs(el):
    """Names a workflow element reads from outside itself."""
    if isinstance(el, Decl):
        return free_names(el.expr)
    if isinstance(el, Call):
        out = set()
        for name, expr, _ in el.inputs:
            if expr is None:
                out.add(name)
            else:
                free_names(expr, out)
        out.update(n for n, _ in el.afters)
        return out
    if isinstance(el, Scatter):
        out = free_names(el.expr)
        inner = set()
        for x in el.body:
            out |= element_refs(x)
            inner.update(element_defines(x))
        return out - inner - {el.variable} | free_names(el.expr)
    out, inner, conds = set(), set(), set()
    for cond, b in el.clauses:
        if cond is not None:
            free_names(cond, conds)
        for x in b:
            out |= element_refs(x)
            inner.update(element_defines(x))
    return (out - inner) | conds


def find_cycle(graph):
    """A list of nodes forming a cycle in {node: [successors]}, or None."""
    state = {}
    for start in graph:
        if start in state:
            continue
        stack = [(start, iter(graph.get(start, ())))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if nxt not in graph:
                continue
            s = state.get(nxt)
            if s == 1:
                return path[path.index(nxt):] + [nxt]
            if s is None:
                state[nxt] = 1
                stack.append((nxt, iter(graph[nxt])))
                path.append(nxt)
    return None


# ============================================================================================
# 9. Lint and format
# ============================================================================================
#
# `lint` adds rules to what `check` reports: every warning carries a rule name (the
# compatibility warnings are named after their feature in the version table), rules are
# switched off by name (`--except`, `check.except`, `#@ except: Rule` comments), and `explain`
# prints a rule's table entry. `format` re-lays the tokens of a document: strings, commands
# and comments are copied as written, only the space between tokens changes (and imports are
# sorted), so the document means what it meant.

# name: (what it flags, why, how to fix). The compatibility rules come from the version table.
LINT_RULES = {
    "UnusedInput": ("an input that nothing in its task or workflow reads",
                    "callers must still supply or think about it", "use it or remove it"),
    "UnusedDeclaration": ("a private declaration that nothing reads", "dead code hides intent", "remove it"),
    "UnusedCall": ("a call none of whose outputs is used, in a workflow with an `output` section",
                   "its job runs for nothing (or only for its side effects)", "use its outputs, or remove the call"),
    "UnusedImport": ("an import whose tasks, workflows and structs are never used", "it slows checking and confuses "
                     "readers", "remove the import"),
    "ImportSorted": ("imports that are not in lexicographic order of their paths", "a fixed order makes merges and "
                     "reviews easier", "sort them (`sprocket format` does)"),
    "MetaSections": ("a task or workflow without a `meta` section, or with inputs but no `parameter_meta`",
                     "documentation is how others learn to call it", "add the sections"),
    "ParameterMetaMatched": ("an input without a `parameter_meta` entry, or an entry for no input",
                             "the documentation and the interface have drifted apart", "describe every input, "
                             "and only inputs"),
    "MatchingOutputMeta": ("an output without an entry under `meta.outputs`", "outputs deserve documentation as much "
                           "as inputs", "add `outputs: { name: \"...\" }` to `meta`"),
    "SnakeCase": ("a task, workflow, call alias or declaration whose name is not snake_case",
                  "one naming style reads faster", "rename it, e.g. `sampleName` -> `sample_name`"),
    "PascalCase": ("a struct whose name is not PascalCase", "types and values look different at a glance",
                   "rename it, e.g. `read_group` -> `ReadGroup`"),
    "DeprecatedObject": ("the `Object` type", "it is deprecated since WDL 1.1 and is removed in 2.0",
                         "use a struct"),
    "DeprecatedPlaceholder": ("`sep=`, `true=`/`false=` or `default=` placeholder options in WDL 1.1 or later",
                              "they are deprecated", "use `sep()`, `if ... then ... else ...` and `select_first()`"),
    "ExpectedRuntimeKeys": ("a task without a `container` (or `docker`), or `docker` where WDL 1.1+ calls it "
                            "`container`", "without a container a task runs on whatever the host has",
                            "add `container: \"image:tag\"` to `runtime` (1.0, 1.1) or `requirements` (1.2+)"),
    "RequirementsSection": ("a `runtime` section in WDL 1.2 or later", "`runtime` is deprecated in 1.2",
                            "split it into `requirements` and `hints`"),
    "CallInputKeyword": ("`input:` in a call in WDL 1.2 or later", "it is optional since 1.2", "remove `input:`"),
    "ShadowedName": ("a declaration or call named like a standard library function or a struct",
                     "the name hides what readers expect it to mean", "rename it"),
    "HereDocCommands": ("a `command { }` section", "`${` in it is a placeholder, which collides with shell "
                        "variables", "use `command <<< >>>` with `~{}` placeholders"),
    "CommandSectionIndentation": ("a command line indented with both tabs and spaces",
                                  "the common indentation cannot be stripped reliably", "indent with spaces only"),
    "DoubleQuotes": ("a string in single quotes", "one quoting style reads faster", "use double quotes"),
    "Whitespace": ("trailing whitespace, or a line indented with tabs", "it shows up as noise in diffs",
                   "remove it (`sprocket format` does, outside commands)"),
    "LineWidth": ("a line longer than 90 characters (outside commands)", "long lines are hard to review",
                  "break the line"),
    "EndingNewline": ("a document that does not end with exactly one newline", "tools and diffs expect one",
                      "end the file with one newline"),
    "TodoComment": ("a comment with TODO or FIXME", "unfinished work is easy to forget", "finish it, or file an "
                    "issue"),
    "ImportOlderMinor": ("importing a document of an earlier 1.x version", "only WDL 1.3 allows it; other engines "
                         "refuse it", "update the imported document's version"),
}
for _line in _DIALECT_TABLE.strip().splitlines()[1:]:
    _cells = _line.split(None, len(DIALECT_NAMES) + 1)
    if "w" in _cells[1:1 + len(DIALECT_NAMES)] and rule_name(_cells[0]) not in LINT_RULES:
        LINT_RULES[rule_name(_cells[0])] = (
            _cells[-1] if len(_cells) > len(DIALECT_NAMES) + 1 else "a construct of the `%s` kind" % _cells[0],
            "Cromwell or miniwdl accept it, but the WDL specification does not: other engines may refuse it",
            "write the portable form the warning names (`check --strict` makes it an error)")
LINE_WIDTH = 90
_EXCEPT_RE = re.compile(r"#@\s*except\s*:\s*([A-Za-z0-9_,\s]*)")
_SNAKE_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_PASCAL_RE = re.compile(r"^[A-Z][a-zA-Z0-9]*$")


def iter_nodes(x):
    """Every syntax tree node under `x` (a node, or lists, tuples and dicts of them)."""
    for node in nodes_in(x):
        yield node
        for c in node.children():
            for n in iter_nodes(c):
                yield n


def _names_read(x):
    names = set()
    for n in iter_nodes(x):
        if type(n) is Ident:
            names.add(n.name)
        elif type(n) is Call:
            names.update(name for name, expr, _ in n.inputs if expr is None)
            names.update(name for name, _ in n.afters)
    return names


def lint_document(doc):
    """The lint rules' warnings for one checked document (not its imports)."""
    out = []

    def warn(rule, message, span):
        out.append(WdlError(message, span, rule))

    for s in doc.structs:
        if not _PASCAL_RE.match(s.name):
            warn("PascalCase", "struct `%s` is not PascalCase" % s.name, s.span)
    callables = list(doc.tasks) + ([doc.workflow] if doc.workflow else [])
    for unit in callables:
        _lint_documentation(unit, warn)
        _lint_names_and_use(unit, {s.name for s in doc.structs}, warn)
        if isinstance(unit, Task):
            _lint_container(unit, doc.dialect, warn)
    for node in iter_nodes([doc.structs, callables]):
        if type(node) is Decl and node.type_ is not None and _has_object(node.type_):  # (draft-2 `call.*`: None)
            warn("DeprecatedObject", "`Object` is deprecated; use a struct", node.span)
        elif type(node) is Placeholder and node.options and doc.dialect.level >= (1, 1) and doc.dialect.version_statement:
            warn("DeprecatedPlaceholder", "placeholder option%s deprecated" % (
                " %s is" % "".join("`%s=`" % k for k in node.options) if len(node.options) == 1
                else "s %s are" % ", ".join("`%s=`" % k for k in node.options)), node.span)
    _lint_imports(doc, callables, warn)
    out.extend(lint_text(doc))
    return out


def _lint_documentation(unit, warn):
    """MetaSections, ParameterMetaMatched, MatchingOutputMeta."""
    what = "task" if isinstance(unit, Task) else "workflow"
    inputs = unit.inputs or []
    if unit.meta is None or inputs and unit.parameter_meta is None:
        warn("MetaSections", "%s `%s` has no `%s` section" % (
            what, unit.name, "meta" if unit.meta is None else "parameter_meta"), unit.span)
    if unit.parameter_meta is not None:
        for d in inputs:
            if d.name not in unit.parameter_meta:
                warn("ParameterMetaMatched", "input `%s` has no `parameter_meta` entry" % d.name, d.span)
        for key in sorted(set(unit.parameter_meta) - {d.name for d in inputs}):
            warn("ParameterMetaMatched", "`parameter_meta` describes `%s`, which is not an input of %s `%s`" % (
                key, what, unit.name), unit.span)
    outputs = unit.outputs or []
    described = (unit.meta or {}).get("outputs")
    if unit.meta is not None and all(isinstance(d, Decl) for d in outputs):  # (draft-2 outputs may be `call.*`)
        for d in outputs:
            if not isinstance(described, dict) or d.name not in described:
                warn("MatchingOutputMeta", "output `%s` is not described under `meta.outputs`" % d.name, d.span)


def _lint_names_and_use(unit, struct_names, warn):
    """SnakeCase, ShadowedName, UnusedInput, UnusedDeclaration, UnusedCall."""
    task = isinstance(unit, Task)
    what = "task" if task else "workflow"
    if not _SNAKE_RE.match(unit.name):
        warn("SnakeCase", "%s `%s` is not snake_case" % (what, unit.name), unit.span)
    body = [unit.inputs, unit.decls, unit.command, unit.outputs, unit.runtime, unit.requirements, unit.hints] \
        if task else [unit.inputs, unit.body, unit.outputs, unit.hints]
    read = _names_read(body)
    for d in unit.inputs or []:
        if d.name not in read:
            warn("UnusedInput", "%s `%s` never reads its input `%s`" % (what, unit.name, d.name), d.span)
    for d in unit.decls if task else [n for n in iter_nodes(unit.body) if type(n) is Decl]:
        if d.name not in read and not getattr(d, "env", False):
            warn("UnusedDeclaration", "`%s` is declared but never read" % d.name, d.span)
    for d in [n for n in iter_nodes(body) if type(n) is Decl or type(n) is Call and n.alias]:
        if not _SNAKE_RE.match(d.name):
            warn("SnakeCase", "`%s` is not snake_case" % d.name, d.span)
        if d.name in STDLIB or d.name in struct_names:
            warn("ShadowedName", "`%s` is also the name of a %s" % (
                d.name, "standard library function" if d.name in STDLIB else "struct"), d.span)
    if not task and unit.outputs is not None:  # (without an output section every call's outputs are)
        for call in walk_calls(unit.body):
            if getattr(call.callee_def, "outputs", None) and call.name not in read:
                warn("UnusedCall", "no output of call `%s` is used" % call.name, call.span)


def _lint_container(task, dialect, warn):
    """ExpectedRuntimeKeys: a container named, under the name of the task's version."""
    keys = task.runtime if task.runtime is not None else task.requirements
    if not keys or not ({"container", "docker"} & set(keys)):
        warn("ExpectedRuntimeKeys", "task `%s` names no `container`" % task.name,
             task.runtime_spans.get("runtime") or task.runtime_spans.get("requirements") or task.span)
    elif "docker" in keys and dialect.level >= (1, 1) and task.runtime is not None:
        warn("ExpectedRuntimeKeys", "`docker` is called `container` since WDL 1.1", keys.spans["docker"])


def _lint_imports(doc, callables, warn):
    """ImportSorted, UnusedImport (neither a call into the namespace nor a struct from it)."""
    uris = [imp.uri for imp in doc.imports]
    if uris != sorted(uris):
        first = next(i for i, (a, b) in enumerate(zip(uris, sorted(uris))) if a != b)
        warn("ImportSorted", "imports are not sorted: `%s` should come before `%s`" % (sorted(uris)[first], uris[first]),
             doc.imports[first].span)
    called = {c.callee.split(".")[0] for unit in callables if isinstance(unit, Workflow) for c in walk_calls(unit.body)
              if "." in c.callee}
    used_types = set()
    for node in iter_nodes([doc.structs, callables]):
        if type(node) is Decl and node.type_ is not None:
            _named_types(node.type_, used_types)
    for imp in doc.imports:
        ns = next((k for k, v in doc.namespaces.items() if v is imp.doc), None)
        provided = {s.name for s in imp.doc.structs} | set(imp.aliases.values()) if imp.doc else set()
        if ns is not None and ns not in called and not provided & used_types:
            warn("UnusedImport", "nothing of `%s` (namespace `%s`) is used" % (imp.uri, ns), imp.span)


def _named_types(t, out):
    """The struct and enum names in a type, into `out`."""
    if isinstance(t, (StructType, EnumType)):
        out.add(t.name)
    for inner in t.params():
        _named_types(inner, out)


def _has_object(t):
    return isinstance(t, ObjectType) or any(_has_object(inner) for inner in t.params())


def lint_text(doc):
    """The rules about the text itself: whitespace, line width, quotes, comments, commands."""
    out = []
    source = doc.source
    text = source.text
    toks = Parser.for_source(source).toks
    verbatim = []  # (start, end) of each command: its lines are the shell's
    for i, (kind, value, pos) in enumerate(toks):
        if kind == "ident" and value == "input" and toks[i + 1][1] == ":" and doc.dialect.call_inputs_bare:
            out.append(WdlError("`input:` is optional in calls since WDL 1.2", Span(source, pos), "CallInputKeyword"))
        elif kind == "cbeg":
            start = pos
            if value == "}":
                out.append(WdlError("use `command <<< >>>`", Span(source, pos), "HereDocCommands"))
        elif kind == "cend":
            verbatim.append((start, pos))
            line = text.find("\n", start, pos) + 1
            while line > 0:
                indent = re.compile(r"[ \t]*").match(text, line, pos).group()
                if " " in indent and "\t" in indent:
                    out.append(WdlError("this command line mixes tabs and spaces in its indentation",
                                        Span(source, line), "CommandSectionIndentation"))
                line = text.find("\n", line, pos) + 1
        elif kind == "sbeg" and value == "'":
            out.append(WdlError("use double quotes", Span(source, pos), "DoubleQuotes"))
    pos = 0
    for line in text.split("\n"):
        inside = any(a <= pos < b for a, b in verbatim)
        if not inside:
            body = line.rstrip("\r")
            if body != body.rstrip():
                out.append(WdlError("trailing whitespace", Span(source, pos + len(body.rstrip())), "Whitespace"))
            elif body.startswith("\t") or re.match(r" +\t", body):
                out.append(WdlError("a line indented with tabs", Span(source, pos), "Whitespace"))
            if len(body) > LINE_WIDTH:
                out.append(WdlError("the line is %d characters long (the most is %d)" % (len(body), LINE_WIDTH),
                                    Span(source, pos + LINE_WIDTH), "LineWidth"))
        m = re.search(r"#.*\b(TODO|FIXME)\b", line)
        if m and not inside and "#" not in _strings_on(line[:m.start()]):
            out.append(WdlError("a %s comment" % m.group(1), Span(source, pos + m.start(1)), "TodoComment"))
        pos += len(line) + 1
    if text and (not text.endswith("\n") or text.endswith("\n\n")):
        out.append(WdlError("the document should end with exactly one newline", Span(source, max(0, len(text) - 1)),
                            "EndingNewline"))
    return out


def _strings_on(prefix):
    """The text of a line before a `#` with quoted strings removed: a `#` left is a comment."""
    return re.sub(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'", "", prefix)


def lint_exceptions(source):
    """`#@ except: A, B` comments: [(start, end, {rules})] of the text each applies to. One
    before the `version` line covers the document; elsewhere it covers the next line and, when
    that line opens a `{`, everything up to its closing brace."""
    text = source.text
    out = []
    version = _VERSION_RE.match(text)
    for m in _EXCEPT_RE.finditer(text):
        rules = {r for r in re.split(r"[\s,]+", m.group(1)) if r}
        line_end = text.find("\n", m.end())
        if line_end < 0 or version and m.start() < version.start(1):
            out.append((0, len(text), rules))
            continue
        nxt = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*").match(text, line_end).end()
        end = text.find("\n", nxt)
        end = len(text) if end < 0 else end
        brace = text.find("{", nxt, end)
        if brace >= 0:
            depth, i = 0, brace
            for i in range(brace, len(text)):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                if depth == 0:
                    break
            end = i + 1
        out.append((m.start(), end, rules))
    return out


def lint_filter(warnings, excepted):
    """Drop warnings of rules named in `excepted` or in `#@ except:` comments over them."""
    out = []
    comments = {}
    for w in warnings:
        rule = getattr(w, "rule", None)
        if rule in excepted:
            continue
        if rule and w.span is not None:
            src = w.span.source
            if id(src) not in comments:
                comments[id(src)] = lint_exceptions(src)
            if any(a <= w.span.pos < b and rule in rules for a, b, rules in comments[id(src)]):
                continue
        out.append(w)
    return out


# -- format -------------------------------------------------------------------------------
_SECTION_WORDS = frozenset("input output command runtime requirements hints meta parameter_meta".split())
_DEFINITION_WORDS = frozenset("task workflow struct enum".split())
_TIGHT_KEYWORDS = frozenset("if then else in scatter call as after alias import".split())
_BINARY_OPS = frozenset("= == != <= >= < > && || * / % **".split())
_GAP_RE = re.compile(r"\n|#[^\n]*|/\*.*?\*/", re.S)  # what in the space between tokens matters
_Unit = collections.namedtuple("_Unit", "kind text gap")  # gap: the source text before the unit


def _format_units(parser):
    """The document's tokens as units: words, operators, and strings and commands whole (with
    their placeholders), each with the whitespace and comments before it; and the text after
    the last one."""
    toks, text = parser.toks, parser.source.text
    units, i = [], 0
    m = _VERSION_RE.match(text)
    last = m.end() if m and parser.dialect.version_statement else 0
    while toks[i][0] != "eof":
        kind, value, pos = toks[i]
        end = pos + len(value)
        if kind in ("sbeg", "mbeg", "cbeg"):
            depth = 0
            while True:
                k = toks[i][0]
                depth += 1 if k in ("sbeg", "mbeg", "cbeg") else -1 if k in ("send", "mend", "cend") else 0
                if depth == 0:
                    break
                i += 1
            end = toks[i][2] + len(toks[i][1])
            kind = "chunk"
        units.append(_Unit("word" if kind in ("ident", "int", "float") else kind if kind == "chunk" else "op",
                           text[pos:end], text[last:pos]))
        last = end
        i += 1
    return units, text[last:]


def _sorted_imports(units):
    """The imports' statements in order of their paths, each keeping the layout of the place it
    moves to (left as written when a comment sits among them, which would lose its place)."""
    starts = [i for i, u in enumerate(units) if u.kind == "word" and u.text == "import"]
    if len(starts) < 2:
        return units
    end = next((i for i in range(starts[-1] + 1, len(units)) if units[i].kind == "word"
                and units[i].text in _DEFINITION_WORDS), len(units))
    after = units[end].gap.split("\n", 1)[0] if end < len(units) else ""
    if _GAP_RE.search(after) or any(units[i].kind == "word" and units[i].text in _DEFINITION_WORDS or _GAP_RE.search(
            units[i].gap.replace("\n", "")) for i in range(starts[0] + 1, end)):
        return units  # (a comment after the last import is on its line: it stays with it)
    bounds = starts + [end]
    statements = [units[a:b] for a, b in zip(bounds, bounds[1:])]
    moved = [u for st in sorted(statements, key=lambda st: st[1].text if len(st) > 1 else "") for u in st]
    return units[:starts[0]] + [u._replace(gap=units[starts[0] + k].gap) for k, u in enumerate(moved)] + units[end:]


def _value_like(u):
    return u.kind == "chunk" or u.kind == "word" and u.text not in _TIGHT_KEYWORDS or u.text in (")", "]", "}")


def _spacing(prev, prev_role, u, spaced):
    """The space between two units on one line: "" or " ". prev_role says what a `+`, `-` or
    `!` before was: "unary", "binary" or "either" (`Array[T]+ x` or `xs[0] + x`)."""
    p, t, op, prev_op = prev.text, u.text, u.kind == "op", prev.kind == "op"
    as_written = " " if spaced else ""
    if prev_op and p in ("(", "[") or op and t in (",", ")", "]", ":", ".", "?"):
        return ""
    if prev_op and p in (",", ":"):
        return " "
    if prev_op and p == "." or prev_role == "unary":
        return ""
    if prev_role == "either" or op and t == "+" and p == "]":
        return as_written
    after_binary = prev_op and (p in _BINARY_OPS or prev_role == "binary")
    if op and t == "(":
        if prev.kind == "word":
            return " " if p in _TIGHT_KEYWORDS else ""
        return " " if after_binary else as_written
    if op and t == "[":
        return "" if _value_like(prev) else " "
    if op and t == "{":
        return " "
    if op and t == "}" and p == "{":
        return ""
    if op and t in _BINARY_OPS or after_binary or op and t in ("+", "-"):
        return " "
    if not prev_op and not op:
        return " "
    return as_written


def format_document(source):
    """The formatted text of a WDL document (a WdlError when it does not parse): four spaces a
    level, single spaces between tokens, at most one blank line in a row and one before each
    definition and section, imports sorted; strings, commands and comments as written."""
    parser = Parser.for_source(source)
    parser.document()
    units, tail = _format_units(parser)
    units = _sorted_imports(units)
    out = _Layout()
    stack = out.stack
    m = _VERSION_RE.match(source.text)
    prev = None
    if m is not None and parser.dialect.version_statement:
        kw = source.text.rfind("version", 0, m.start(1))
        out.gap(source.text[:kw], False, False, False)
        out.new_line(0, False)
        out.cur.append("version " + m.group(1))
        prev = _Unit("word", m.group(1), "")
    prev_role, after_open, seen_import = None, False, False
    for k, u in enumerate(units):
        depth, word, op = len(stack), u.kind == "word", u.kind == "op"
        closer = op and u.text in (")", "]", "}")
        force = prev is not None and word and (
            depth == 0 and (u.text in _DEFINITION_WORDS or u.text == "import" and not seen_import)
            or depth == 1 and u.text in _SECTION_WORDS and not after_open and prev.text != ":")
        seen_import = seen_import or depth == 0 and word and u.text == "import"
        starts, blank = out.gap(u.gap, force, after_open, closer)
        if starts or prev is None:
            out.new_line(_line_level(stack, prev, prev_role, u, closer), blank)
            out.cur.append(u.text)
        else:
            out.cur.append(_spacing(prev, prev_role, u, u.gap != "") + u.text)
        role = None
        if op and u.text in ("-", "+", "!"):
            role = "unary" if u.text == "!" or not _value_like(prev) else "either" if (
                u.text == "+" and prev.text == "]") else "binary"
        if op and u.text in ("(", "[", "{"):
            stack.append([out.indent + 1, out.indent])
        elif op and u.text == ":" and prev.text == "input" and stack and k + 1 < len(units) and "\n" in units[k + 1].gap:
            stack[-1][0] = out.indent + 1  # `input:` ending its line: the call's inputs go one deeper
        elif closer and stack:
            stack.pop()
        prev, prev_role, after_open = u, role, op and u.text in ("(", "[", "{")
    out.gap(tail, False, False, True)
    return out.text()


def _line_level(stack, prev, prev_role, u, closer):
    """The indent of a line that starts with unit `u`: its bracket's, one more where it continues an
    expression (after or before a binary operator, `then`, `else`)."""
    if closer:
        return stack[-1][1] if stack else 0
    level = stack[-1][0] if stack else 0
    if prev is not None and (prev.kind == "op" and prev_role != "unary" and (
            prev.text in _BINARY_OPS or prev.text in ("+", "-")) or prev.kind == "word" and prev.text in (
            "then", "else", "if") or u.kind == "op" and (u.text in _BINARY_OPS or u.text in ("+", "-"))
            or u.kind == "word" and u.text in ("then", "else")):
        level += 1  # a continued expression
    return level


class _Layout:
    """The lines format_document writes: the line being built (`cur`, its pieces, at `indent`
    levels) and, for each open bracket, [indent of the lines inside it, indent of its closing line]."""

    def __init__(self):
        self.lines, self.cur, self.indent, self.stack = [], [], 0, []

    def new_line(self, indent, blank):
        if self.cur:
            self.lines.append("    " * self.indent + "".join(self.cur))
            del self.cur[:]
        self.indent = indent
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    def end_line(self):
        if self.cur:
            self.new_line(self.indent, False)

    def gap(self, text, force_blank, after_open, before_closer):
        """Lay out the comments and line breaks between two units. Returns (the next unit
        starts a line, with a blank line before it)."""
        newlines = 0
        for m in _GAP_RE.finditer(text):
            item = m.group()
            if item == "\n":
                newlines += 1
                self.end_line()
                continue
            comment = item.rstrip()
            if newlines == 0 and self.cur:  # a comment after a unit, on its line
                self.cur.append(("  " if comment.startswith("#") else " ") + comment)
                continue
            self.new_line(self.stack[-1][0] if self.stack else 0, (newlines >= 2 or force_blank) and not after_open)
            self.cur.append(comment)
            force_blank = after_open = False
            newlines = 0
        blank = (newlines >= 2 or force_blank) and not after_open and not before_closer
        return newlines > 0 or force_blank or not self.cur, blank

    def text(self):
        self.end_line()
        lines = self.lines
        while lines and lines[-1] == "":
            lines.pop()
        return "\n".join(lines) + "\n" if lines else ""


# ============================================================================================
# 10. Values and evaluation
# ============================================================================================
#
# Values are close to Python: Int int, Float float, Boolean bool, String str, None None,
# Array list, Map dict, Pair tuple, File/Directory the str subclasses below, Struct/Object a
# dict that knows its type name, an enum choice an EnumValue. Types travel with
# declarations; coerce() applies them at the boundaries the spec names (declarations, call
# inputs, outputs, JSON).


class WdlFile(str):
    __slots__ = ()


class WdlDir(str):
    __slots__ = ()


class StructValue(dict):
    """A Struct (type_name = its name) or an Object (type_name None); also a call's outputs."""

    __slots__ = ("type_name",)

    def __init__(self, items=(), type_name=None):
        dict.__init__(self, items)
        self.type_name = type_name


class EnumValue:
    __slots__ = ("enum", "name", "value")

    def __init__(self, enum, name, value):
        self.enum, self.name, self.value = enum, name, value

    def __eq__(self, other):
        return isinstance(other, EnumValue) and other.enum == self.enum and other.name == self.name

    def __hash__(self):
        return hash((self.enum, self.name))

    def __repr__(self):
        return "%s.%s" % (self.enum, self.name)


class EvalContext:
    """Where evaluation happens: relative paths resolve in work_dir, write_* go to tmp_dir; the
    read_* functions read at most read_limit bytes (`run.read_limit`). With doc_dir (1.2+, outside
    `output`) a relative path given to the standard library resolves against the document's directory
    and may not leave it; `readable`, a ReadScope, confines what workflow-level calls may read; `written`, a
    list, collects the paths write_* made (a task's, which it may output); `host_path`, given, maps an
    absolute path as a container sees it to this host's before the standard library reads it."""

    __slots__ = ("work_dir", "tmp_dir", "dialect", "stdout", "stderr", "placeholder", "read_limit", "doc_dir",
                 "readable", "written", "host_path")

    def __init__(self, work_dir, tmp_dir, dialect, stdout=None, stderr=None, read_limit=256 * 1024 ** 2,
                 doc_dir=None, readable=None, written=None):
        self.work_dir, self.tmp_dir, self.dialect = work_dir, tmp_dir, dialect
        self.stdout, self.stderr = stdout, stderr
        self.read_limit = read_limit
        self.placeholder = 0
        self.doc_dir, self.readable, self.written = doc_dir, readable, written
        self.host_path = None


class ReadScope(collections.namedtuple("ReadScope", "run_dir doc_dir paths what")):
    """What a workflow-level standard library call may read: a path under the run's directory,
    under the document's directory (1.2+; else doc_dir is None), or under one of `paths` (the
    run's inputs and its calls' outputs; a file admits itself, a directory what is under it).
    `what` names the declaration being evaluated. Paths are real paths (symlinks resolved)."""

    def check(self, fname, path):
        real = os.path.realpath(path)
        p = real
        while True:
            if p in self.paths or p == self.run_dir or p == self.doc_dir:
                return
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        raise EvalError("%s: `%s`%s is none of the files a workflow may read (its inputs, its calls' outputs, what is "
                        "under the run directory%s), in %s" % (
                            fname, path, "" if real == path else " (%s)" % real,
                            " or under the document's directory `%s`" % self.doc_dir if self.doc_dir else "", self.what))


def document_dir(node):
    """The directory of the document that contains `node` (relative paths of 1.2+ resolve there); for a
    document imported by URL, the URL's directory, against which no relative path resolves (local_base)."""
    path = node.span.source.path
    return posixpath.dirname(path) if is_url(path) else os.path.dirname(os.path.abspath(path))


def local_base(base, path, what):
    """`base`, the directory a relative `path` resolves against, unless it is a URL: the engine downloads only
    the run's File inputs given as URLs, so a path relative to a document imported by URL has no file."""
    if is_url(base):
        raise EvalError("%s: the relative path `%s` cannot be resolved: relative paths in a document imported "
                        "by URL (`%s/`) are not supported (give an absolute path, or the file as an input)"
                        % (what, path, base))
    return base


def document_path(base, path, what):
    """A relative path of a 1.2+ document made absolute against its directory `base`, which it may not leave."""
    full = os.path.normpath(os.path.join(local_base(base, path, what), path))
    if full != base and not full.startswith(base.rstrip("/") + "/"):
        raise EvalError("%s: the relative path `%s` leaves the document's directory `%s`" % (what, path, base))
    return full


def wdl_str(v):
    """A primitive value as a placeholder renders it; Float uses 6 decimals ("%f", `~{1.5}` is "1.500000")."""
    if v is None:
        return ""
    if isinstance(v, str):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "%f" % v
    if isinstance(v, EnumValue):
        return v.name
    raise EvalError("cannot convert a compound value (%s) to a String" % _kind(v))


def _kind(v):
    if isinstance(v, StructValue):
        return "Object" if v.type_name is None else v.type_name
    if isinstance(v, dict):
        return "Map"
    if isinstance(v, tuple):
        return "Pair"
    if isinstance(v, list):
        return "Array"
    return type(v).__name__


def value_to_json(v):
    """A WDL value as JSON-ready Python data. Map keys are rendered with wdl_str, a Pair is {"left", "right"}."""
    return _to_json(v, False)


def _to_json(v, string_keys):
    if type(v) is float:  # never a bare NaN or Infinity in the JSON we write
        return finite_float(v)
    if v is None or isinstance(v, (bool, int, float)):
        return v
    if isinstance(v, str):
        return str(v)
    if isinstance(v, EnumValue):
        return v.name
    if isinstance(v, list):
        return [_to_json(x, string_keys) for x in v]
    if isinstance(v, tuple):
        return {"left": _to_json(v[0], string_keys), "right": _to_json(v[1], string_keys)}
    if isinstance(v, dict):
        if string_keys and not isinstance(v, StructValue):
            for k in v:
                if not isinstance(k, str):
                    raise EvalError("a Map with non-String keys (here %s) cannot be written as JSON" % wdl_str(k))
        return {wdl_str(k): _to_json(x, string_keys) for k, x in v.items()}
    raise EvalError("value of type %s cannot be converted to JSON" % type(v).__name__)


def finite_float(f, what="value"):
    """A WDL Float is finite: JSON has no NaN or Infinity (Sprocket's JSON reader refuses them too)."""
    if not math.isfinite(f):
        raise EvalError("%s is %s: a WDL Float must be a finite number" % (what, f))
    return f


def coerce(v, t, what="value"):
    """Coerce a run-time value to type `t` (the spec's coercion rules, checked at run time)."""
    if v is None:
        if t.opt or isinstance(t, AnyType):
            return None
        raise NoneError("%s is None, but `%s` is required" % (what, t))
    to = _COERCE.get(type(t))
    return v if to is None else to(v, t, what)  # (Any, TypeVar: as it is)


def _coerce_prim(v, t, what):
    name = t.name
    if name == "String":
        if isinstance(v, str):
            return v if type(v) is str else str(v)
        if isinstance(v, (int, float, bool, EnumValue)):
            return wdl_str(v)
    elif name == "File":
        if isinstance(v, str) and not isinstance(v, WdlDir):
            return v if type(v) is WdlFile else WdlFile(v)
    elif name == "Directory":
        if isinstance(v, str) and not isinstance(v, WdlFile):
            return v if type(v) is WdlDir else WdlDir(v)
    elif name == "Int":
        if type(v) is int:
            return v
        if isinstance(v, str):  # read_lines & co. may be coerced on (see _deserializes)
            try:
                return int(v.strip())
            except ValueError:
                pass
    elif name == "Float":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return finite_float(float(v), what)
        if isinstance(v, str):
            try:
                f = float(v.strip())
            except ValueError:
                pass
            else:
                return finite_float(f, what)
    elif name == "Boolean":
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
    raise EvalError("%s %s cannot be coerced to `%s`" % (what, _short(v), t))


def _coerce_array(v, t, what):
    if isinstance(v, dict) and not isinstance(v, StructValue) and isinstance(t.item, PairType):
        v = list(v.items())  # a Map where Array[Pair] is declared (accepted for compatibility)
    if not isinstance(v, list):
        raise EvalError("%s %s is not an Array (`%s`)" % (what, _short(v), t))
    if t.nonempty and not v:
        raise EvalError("%s is an empty array, but `%s` must be non-empty" % (what, t))
    it = t.item
    if isinstance(it, AnyType):
        return v
    return [coerce(x, it, what) for x in v]


def _coerce_map(v, t, what):
    if isinstance(v, dict):
        kt, vt = t.key_type, t.value
        return {coerce(k, kt, what + " key"): coerce(x, vt, what) for k, x in v.items()}
    raise EvalError("%s %s is not a Map (`%s`)" % (what, _short(v), t))


def _coerce_pair(v, t, what):
    if isinstance(v, tuple):
        return (coerce(v[0], t.left, what), coerce(v[1], t.right, what))
    if isinstance(v, dict) and set(v) == {"left", "right"}:
        return (coerce(v["left"], t.left, what), coerce(v["right"], t.right, what))
    raise EvalError("%s %s is not a Pair (`%s`)" % (what, _short(v), t))


def _coerce_struct(v, t, what):
    if not isinstance(v, dict):
        raise EvalError("%s %s cannot be coerced to struct `%s`" % (what, _short(v), t.name))
    out = StructValue((), t.name)
    extra = [k for k in v if k not in t.members]
    if extra and not isinstance(v, JsonObject):
        raise EvalError("%s has member%s %s that struct `%s` does not have" % (
            what, "s" if len(extra) > 1 else "", ", ".join("`%s`" % wdl_str(k) for k in extra), t.name))
    for m, mt in t.members.items():
        if m in v:
            out[m] = coerce(v[m], mt, "member `%s`" % m)
        elif mt.opt:
            out[m] = None
        else:
            raise EvalError("%s lacks member `%s` of struct `%s`" % (what, m, t.name))
    return out


def _coerce_object(v, t, what):
    if isinstance(v, dict):
        return v if isinstance(v, StructValue) and v.type_name is None else StructValue(
            ((wdl_str(k), x) for k, x in v.items()), None)
    raise EvalError("%s %s is not an Object" % (what, _short(v)))


def _coerce_enum(v, t, what):
    if isinstance(v, EnumValue) and v.enum == t.name:
        return v
    if isinstance(v, str) and v in t.choices:  # JSON inputs name the choice
        return EnumValue(t.name, v, enum_choice_value(t, v))
    raise EvalError("%s %s is not a choice of enum `%s` (%s)" % (what, _short(v), t.name, ", ".join(t.choices)))


_COERCE = {PrimType: _coerce_prim, ArrayType: _coerce_array, MapType: _coerce_map, PairType: _coerce_pair,
           StructType: _coerce_struct, ObjectType: _coerce_object, EnumType: _coerce_enum}


def paths_in(v):
    """Every File/Directory inside a compound value (Map keys included); plain Strings are not paths."""
    if isinstance(v, (WdlFile, WdlDir)):
        yield v
    elif isinstance(v, (list, tuple)):
        for x in v:
            for p in paths_in(x):
                yield p
    elif isinstance(v, dict):
        for k, x in v.items():
            for p in paths_in(k):
                yield p
            for p in paths_in(x):
                yield p


def map_paths(v, fn):
    """`v` with every File/Directory inside it (Map keys included) replaced by fn(path)."""
    if isinstance(v, (WdlFile, WdlDir)):
        return type(v)(fn(v))
    if isinstance(v, list):
        return [map_paths(x, fn) for x in v]
    if isinstance(v, tuple):
        return tuple(map_paths(x, fn) for x in v)
    if isinstance(v, StructValue):
        return StructValue(((k, map_paths(x, fn)) for k, x in v.items()), v.type_name)
    if isinstance(v, dict):
        return {map_paths(k, fn): map_paths(x, fn) for k, x in v.items()}
    return v


def map_typed_paths(v, t, fn):
    """`v` (of type `t`) with each File/Directory value in it, `p`, replaced by fn(p, its PrimType): the
    type says which are optional (map_paths, without one, cannot)."""
    if v is None:
        return None
    if isinstance(t, PrimType):
        return fn(v, t) if t.name in ("File", "Directory") and isinstance(v, str) else v
    again = lambda x, xt: map_typed_paths(x, xt, fn)  # noqa: E731
    if isinstance(t, ArrayType) and isinstance(v, list):
        return [again(x, t.item) for x in v]
    if isinstance(t, MapType) and isinstance(v, dict):
        return {again(k, t.key_type): again(x, t.value) for k, x in v.items()}
    if isinstance(t, PairType) and isinstance(v, tuple):
        return (again(v[0], t.left), again(v[1], t.right))
    if isinstance(t, StructType) and isinstance(v, dict):
        return StructValue(((k, again(x, t.members[k]) if k in t.members else x) for k, x in v.items()),
                           getattr(v, "type_name", t.name))
    return v


def document_paths(v, t, base, what, must_exist):
    """WDL 1.2+ outside `output {}`: the File/Directory values in `v` (of type `t`) made absolute
    against `base`, the directory of the document that wrote them (see document_path). One that
    does not exist is None where its type is optional; where it is required, an error if
    `must_exist` (1.3: paths are checked when created; 1.2.1: only when they are read)."""
    def resolve(p, pt):
        if "://" in p:
            return p
        path = p if os.path.isabs(p) else document_path(base, p, what)
        kind = "file" if pt.name == "File" else "directory"
        if not os.path.exists(path):
            if pt.opt:
                return None
            if must_exist:
                raise EvalError("%s: %s `%s` does not exist" % (what, kind, path))
        elif must_exist and os.path.isdir(path) != (pt.name == "Directory"):
            raise EvalError("%s: `%s` is not a %s" % (what, path, kind))
        return (WdlFile if pt.name == "File" else WdlDir)(path)

    return map_typed_paths(v, t, resolve)


class JsonObject(dict):
    """An object read_json read. Coerced to a struct, the keys the struct does not have are ignored,
    as Cromwell does (and named in a warning, see ignored_json_keys), where other values are refused."""

    __slots__ = ()


def ignored_json_keys(v, t, what, out=None):
    """Messages naming the keys of the JSON objects in `v` that the structs of `t` do not have."""
    out = [] if out is None else out
    if isinstance(t, StructType) and isinstance(v, JsonObject):
        extra = [k for k in v if k not in t.members]
        if extra:
            out.append("%s: struct `%s` has no member%s %s: ignored, as Cromwell does" % (
                what, t.name, "s" if len(extra) > 1 else "", ", ".join("`%s`" % k for k in extra)))
        for k, mt in t.members.items():
            if k in v:
                ignored_json_keys(v[k], mt, what, out)
    elif isinstance(t, ArrayType) and isinstance(v, list):
        for x in v:
            ignored_json_keys(x, t.item, what, out)
    elif isinstance(t, MapType) and isinstance(v, dict):
        for x in v.values():
            ignored_json_keys(x, t.value, what, out)
    return out


def coerce_decl(v, d, what, base=None, must_exist=False, warn=None):
    """coerce() for a declaration's value; an error points at the declaration. With `base`
    (1.2+, outside `output`), its paths are resolved by document_paths(); `warn(message)` is told
    what coerce() ignored."""
    try:
        if warn is not None:
            for message in ignored_json_keys(v, d.type_, what):
                warn(message)
        v = coerce(v, d.type_, what)
        return v if base is None else document_paths(v, d.type_, base, what, must_exist)
    except EvalError as e:
        if e.span is None:
            e.span = d.span
        raise


def _short(v):
    text = json_dumps(value_to_json(v)) if not isinstance(v, EnumValue) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def json_dumps(data, indent=None):
    return json.dumps(data, indent=indent, ensure_ascii=False)


def enum_choice_value(t, name):
    expr = t.choices[name]
    if expr is None:
        return name
    return coerce(evaluate(expr, {}, None), t.value_type) if t.value_type else evaluate(expr, {}, None)


def _json_excerpt(data, width=60):
    """A JSON value in a message: its start, when it is long (a whole inputs file can be one value)."""
    text = json_dumps(data)
    return text if len(text) <= width else text[:width] + "..."


_NOT_TEXT = re.compile("[\ud800-\udfff]")


def from_json(data, t, base_dir, what, on_extra=None):
    """An input value from JSON data: File paths resolve against base_dir, objects become
    structs, Map keys are parsed to their type, enums are given by choice name. Keys a struct does not
    have are an error, or, given `on_extra`, ignored (as Cromwell does) after telling on_extra(message)."""
    if data is None:
        return coerce(None, t, what)
    if isinstance(data, str) and _NOT_TEXT.search(data):  # JSON's "\ud800", or a file name that is not UTF-8
        raise InputError("%s is not text: %s holds %s (an unpaired surrogate, or a byte of a name that is not UTF-8)" % (
            what, ascii(data), ascii(_NOT_TEXT.search(data).group())))
    read = _FROM_JSON.get(type(t))
    return data if read is None else read(data, t, base_dir, what, on_extra)


def _prim_from_json(data, t, base_dir, what, on_extra):
    if t.name in ("File", "Directory"):
        return _path_from_json(data, t, base_dir, what)
    ok = {"Int": lambda d: type(d) is int, "Float": lambda d: isinstance(d, (int, float)) and not isinstance(d, bool),
          "Boolean": lambda d: isinstance(d, bool), "String": lambda d: isinstance(d, str)}[t.name]
    if t.name == "String" and type(data) is int:
        return str(data)  # an Int for a String input: Sprocket and Cromwell take its digits
    if not ok(data):
        raise InputError("%s must be %s, not %s" % (what, t, _json_excerpt(data)))
    if t.name == "Int" and not _INT_MIN <= data <= _INT_MAX:
        raise InputError("%s: %d does not fit in an Int (64 bits)" % (what, data))
    if t.name == "Float":
        try:
            return finite_float(float(data), what)
        except OverflowError:  # an Int of 309 digits
            raise InputError("%s is too large for a Float" % what)
    return data


def _path_from_json(data, t, base_dir, what):
    if isinstance(data, dict) and "location" in data or isinstance(data, dict) and "path" in data:
        data = data.get("location") or data.get("path")  # 1.2's extended File/Directory form
    if not isinstance(data, str):
        raise InputError("%s must be a path string for `%s`, not %s" % (what, t, _json_excerpt(data)))
    if t.name == "File" and data.endswith("/"):
        raise InputError("%s is a `File`, but `%s` ends with `/`, which names a directory" % (what, data))
    path = data if "://" in data or os.path.isabs(data) else os.path.normpath(os.path.join(base_dir, data))
    return WdlFile(path) if t.name == "File" else WdlDir(path)


def _array_from_json(data, t, base_dir, what, on_extra):
    if not isinstance(data, list):
        raise InputError("%s must be a JSON array for `%s`" % (what, t))
    if t.nonempty and not data:
        raise InputError("%s must be a non-empty array (`%s`)" % (what, t))
    return [from_json(x, t.item, base_dir, what, on_extra) for x in data]


def _map_from_json(data, t, base_dir, what, on_extra):
    if not isinstance(data, dict):
        raise InputError("%s must be a JSON object for `%s`" % (what, t))
    return {_json_key(k, t.key_type, base_dir, what): from_json(x, t.value, base_dir, what, on_extra)
            for k, x in data.items()}


def _pair_from_json(data, t, base_dir, what, on_extra):
    if not (isinstance(data, dict) and set(data) == {"left", "right"}):
        raise InputError('%s must be {"left": ..., "right": ...} for `%s`' % (what, t))
    return (from_json(data["left"], t.left, base_dir, what, on_extra),
            from_json(data["right"], t.right, base_dir, what, on_extra))


def _struct_from_json(data, t, base_dir, what, on_extra):
    if not isinstance(data, dict):
        raise InputError("%s must be a JSON object for struct `%s`" % (what, t.name))
    extra = [k for k in data if k not in t.members]
    if extra and on_extra is None:
        raise InputError("%s: struct `%s` has no member `%s`" % (what, t.name, extra[0]))
    if extra:
        on_extra("%s: struct `%s` has no member%s %s: ignored, as Cromwell does" % (
            what, t.name, "s" * (len(extra) > 1), ", ".join("`%s`" % k for k in extra)))
    out = StructValue((), t.name)
    for m, mt in t.members.items():
        if m not in data and not mt.opt:
            raise InputError("%s lacks member `%s` of struct `%s`" % (what, m, t.name))
        out[m] = from_json(data.get(m), mt, base_dir, "%s.%s" % (what, m), on_extra)
    return out


def _enum_from_json(data, t, base_dir, what, on_extra):
    if not isinstance(data, str) or data not in t.choices:
        raise InputError("%s must be one of %s (enum `%s`)" % (what, ", ".join(t.choices), t.name))
    return EnumValue(t.name, data, enum_choice_value(t, data))


def _object_from_json(data, t, base_dir, what, on_extra):
    if not isinstance(data, dict):
        raise InputError("%s must be a JSON object" % what)
    return StructValue(data.items(), None)


_FROM_JSON = {PrimType: _prim_from_json, ArrayType: _array_from_json, MapType: _map_from_json,
              PairType: _pair_from_json, StructType: _struct_from_json, EnumType: _enum_from_json,
              ObjectType: _object_from_json}


def _json_key(k, t, base_dir, what):
    if isinstance(t, PrimType) and t.name in ("Int", "Float", "Boolean"):
        try:
            return from_json(json.loads(k), t, base_dir, what)
        except ValueError:
            raise InputError("%s: map key %r is not %s" % (what, k, t))
    return from_json(k, t, base_dir, what)


def evaluate(e, env, ctx):
    """The value of expression `e` with names from `env` (a dict)."""
    try:
        return _EVAL[type(e)](e, env, ctx)
    except EvalError as err:
        if err.span is None:
            err.span = e.span
        raise
    except RecursionError:
        raise EvalError("expression nested too deeply", e.span)


def _eval_literal(e, env, ctx):
    return e.value


def _eval_string(e, env, ctx):
    out = []
    for p in e.parts:
        out.append(p if isinstance(p, str) else render_placeholder(p, env, ctx))
    return "".join(out)


def render_placeholder(p, env, ctx):
    """A `~{}` placeholder's text, applying `sep`, `true`/`false` and `default`."""
    if ctx is not None:
        ctx.placeholder += 1
    try:
        v = evaluate(p.expr, env, ctx)
    except NoneError:
        v = None  # the spec: a None that makes the placeholder fail renders as ""
    finally:
        if ctx is not None:
            ctx.placeholder -= 1
    opts = p.options
    if v is None:
        return wdl_str(opts["default"]) if "default" in opts else ""
    if "sep" in opts and isinstance(v, list):
        return opts["sep"].join(wdl_str(x) for x in v)
    if ("true" in opts or "false" in opts) and isinstance(v, bool):
        return wdl_str(opts.get("true" if v else "false", ""))
    if isinstance(v, list) and ctx is not None and ctx.dialect.array_placeholder:
        return " ".join(wdl_str(x) for x in v)  # 1.0 engines joined arrays with spaces
    try:
        return wdl_str(v)
    except EvalError:
        if ctx is not None and ctx.dialect.accepts("compound_placeholder"):
            return json_dumps(value_to_json(v))  # what Cromwell and miniwdl print
        raise EvalError("a placeholder must be a primitive value, not a %s" % _kind(v), p.span)


def _eval_ident(e, env, ctx):
    try:
        return env[e.name]
    except KeyError:
        raise EvalError("`%s` has no value here" % e.name, e.span)


def _eval_getattr(e, env, ctx):
    base = e.expr
    if isinstance(base.type, EnumType) and type(base) is Ident and base.name not in env:
        t = base.type
        return EnumValue(t.name, e.name, enum_choice_value(t, e.name))
    v = evaluate(base, env, ctx)
    if isinstance(v, tuple):
        return v[0] if e.name == "left" else v[1]
    if isinstance(v, dict):
        if e.name in v:
            return v[e.name]
        raise EvalError("no member `%s`" % e.name, e.span)
    if v is None:
        raise NoneError("cannot read member `%s` of None" % e.name, e.span)
    raise EvalError("a %s has no member `%s`" % (_kind(v), e.name), e.span)


def _eval_index(e, env, ctx):
    v = evaluate(e.expr, env, ctx)
    i = evaluate(e.index, env, ctx)
    if isinstance(v, list):
        if not isinstance(i, int) or isinstance(i, bool):
            raise EvalError("an Array index must be an Int", e.index.span)
        if not 0 <= i < len(v):
            raise EvalError("index %d is out of range for an Array of length %d" % (i, len(v)), e.index.span)
        return v[i]
    if isinstance(v, dict):
        kt = getattr(e.expr.type, "key_type", None)
        if kt is not None and not isinstance(kt, AnyType):
            i = coerce(i, kt, "map key")
        try:
            return v[i]
        except (KeyError, TypeError):
            raise EvalError("key %s is not in the Map" % _short(i), e.index.span)
    raise EvalError("a %s cannot be indexed" % _kind(v), e.span)


_INT_MIN, _INT_MAX = -2 ** 63, 2 ** 63 - 1


def _int_result(v):
    """WDL Ints are 64-bit: an Int result outside that range is an error, not a bigger number;
    so is a Float result that is not finite (JSON cannot hold it)."""
    if type(v) is int and not _INT_MIN <= v <= _INT_MAX:
        raise EvalError("Int overflow: the result does not fit in 64 bits")
    if type(v) is float and not math.isfinite(v):
        raise EvalError("Float overflow: the result is not a finite number")
    return v


def _eval_unary(e, env, ctx):
    v = evaluate(e.operand, env, ctx)
    if e.op == "!":
        if not isinstance(v, bool):
            raise EvalError("`!` needs a Boolean", e.span)
        return not v
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EvalError("unary `%s` needs a number" % e.op, e.span)
    return _int_result(-v) if e.op == "-" else v


def _eval_binary(e, env, ctx):
    op = e.op
    if op == "&&" or op == "||":
        return _eval_logical(e, env, ctx)
    a = evaluate(e.left, env, ctx)
    b = evaluate(e.right, env, ctx)
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if a is None or b is None:
        if ctx is not None and ctx.placeholder and op == "+":
            return None  # the spec's concatenation of optional values inside a placeholder
        raise NoneError("operator `%s` got None" % op, e.span)
    if op in ("<", "<=", ">", ">="):
        try:
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        except TypeError:
            raise EvalError("cannot compare these values with `%s`" % op, e.span)
    return _arithmetic(op, a, b, e.span)


def _eval_logical(e, env, ctx):
    """`&&` and `||`, which evaluate their right operand only when it decides."""
    op = e.op
    a = evaluate(e.left, env, ctx)
    if not isinstance(a, bool):
        raise EvalError("`%s` needs Boolean operands" % op, e.span)
    if (op == "&&") != a:  # short-circuit: false && _, true || _
        return a
    b = evaluate(e.right, env, ctx)
    if not isinstance(b, bool):
        raise EvalError("`%s` needs Boolean operands" % op, e.span)
    return b


def _arithmetic(op, a, b, span):
    """`a op b` for + - * ** / % (a String on either side of `+` concatenates); Int results
    must fit in 64 bits, Int division and remainder truncate toward zero."""
    num = isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool)
    if op == "+":
        if num:
            return _int_result(a + b)
        if isinstance(a, str) or isinstance(b, str):
            r = wdl_str(a) + wdl_str(b)
            return WdlFile(r) if isinstance(a, WdlFile) and not isinstance(b, WdlFile) else r
        raise EvalError("`+` cannot add these values", span)
    if not num:
        raise EvalError("operator `%s` needs numbers" % op, span)
    if op == "-":
        return _int_result(a - b)
    if op == "*":
        return _int_result(a * b)
    if op == "**":
        if isinstance(a, int) and isinstance(b, int):
            if b < 0:
                raise EvalError("an Int cannot be raised to a negative power", span)
            if abs(a) > 1 and (abs(a).bit_length() - 1) * b > 64:  # decided before computing a huge number
                raise EvalError("Int overflow: the result does not fit in 64 bits", span)
        try:
            return _int_result(a ** b)
        except OverflowError:
            raise EvalError("`**` overflowed", span)
    if b == 0:
        raise EvalError("division by zero", span)
    if op == "/":
        if isinstance(a, int) and isinstance(b, int):
            q = abs(a) // abs(b)  # integer division truncates toward zero
            return q if (a >= 0) == (b >= 0) else -q
        return a / b
    if isinstance(a, int) and isinstance(b, int):
        return a - b * (abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1))
    return math.fmod(a, b)


def _equal(a, b):
    """WDL equality: like Python's, but Maps are equal only with the same entries in the same order."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(
            _equal(ka, kb) and _equal(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _eval_if(e, env, ctx):
    c = evaluate(e.cond, env, ctx)
    if not isinstance(c, bool):
        raise EvalError("the condition of `if` must be a Boolean", e.cond.span)
    v = evaluate(e.then if c else e.other, env, ctx)
    return coerce(v, e.type) if v is not None and not isinstance(e.type, AnyType) else v


def _eval_array(e, env, ctx):
    items = [evaluate(x, env, ctx) for x in e.items]
    it = e.type.item if isinstance(e.type, ArrayType) else ANY
    if isinstance(it, AnyType):
        return items
    if e.mixed:  # Checker.mixed_items: `[x, []]` keeps its `[]`, `[files, file]` wraps `file`
        items = [[x] if isinstance(it, ArrayType) and x is not None and not isinstance(x, list) else x for x in items]
        return [x if isinstance(x, list) and not isinstance(it, ArrayType) else coerce(x, it, "array item")
                for x in items]
    return [coerce(x, it, "array item") for x in items]


def _eval_map(e, env, ctx):
    out = {}
    t = e.type
    for k, v in e.entries:
        key = evaluate(k, env, ctx)
        val = evaluate(v, env, ctx)
        if isinstance(t, MapType):
            if not isinstance(t.key_type, AnyType):
                key = coerce(key, t.key_type, "map key")
            if not isinstance(t.value, AnyType):
                val = coerce(val, t.value, "map value")
        out[key] = val
    return out


def _eval_pair(e, env, ctx):
    return (evaluate(e.left, env, ctx), evaluate(e.right, env, ctx))


def _eval_object(e, env, ctx):
    return StructValue(((n, evaluate(x, env, ctx)) for n, x, _ in e.members), None)


def _eval_struct(e, env, ctx):
    v = StructValue(((n, evaluate(x, env, ctx)) for n, x, _ in e.members), e.type.name)
    return coerce(v, e.type, "struct `%s`" % e.name)


def _eval_hints(e, env, ctx):
    return StructValue(((k, evaluate(x, env, ctx)) for k, x in e.entries), None)


# (Apply's entry is added in section 11, with the functions a call runs.)
_EVAL = {
    Literal: _eval_literal, StringLit: _eval_string, Ident: _eval_ident, GetAttr: _eval_getattr,
    Index: _eval_index, Unary: _eval_unary, Binary: _eval_binary, IfThenElse: _eval_if,
    ArrayLit: _eval_array, MapLit: _eval_map, PairLit: _eval_pair, ObjectLit: _eval_object,
    StructLit: _eval_struct, HintsBlock: _eval_hints,
}


# ============================================================================================
# 11. Standard library: code
# ============================================================================================
#
# One function per WDL function, fn_<name>(ctx, args), with arguments already coerced to the
# chosen overload's parameter types; IMPLS maps names to them. Regexes are translated in section 7
# (translate_regex), where the checker also finds them.

def _regex(fname, pattern):
    try:
        return translate_regex(pattern)[0]
    except EvalError as e:
        raise EvalError("%s: %s" % (fname, e.message))


# -- helpers ---------------------------------------------------------------------------------


def _resolve(ctx, fname, path):
    if path is None:
        raise EvalError("%s: the path is None" % fname)
    path = str(path)
    if not os.path.isabs(path):
        path = document_path(ctx.doc_dir, path, fname) if ctx.doc_dir else os.path.join(ctx.work_dir, path)
    elif ctx.host_path is not None:
        path = ctx.host_path(path)
    if ctx.readable is not None:
        ctx.readable.check(fname, path)
    return path


def _read_text(ctx, fname, path):
    """A file's text, refused above ctx.read_limit bytes (the spec lets engines cap these reads:
    a huge file would end in MemoryError)."""
    full = _resolve(ctx, fname, path)
    try:
        with open(full, "rb") as f:
            data = f.read(ctx.read_limit + 1)
    except OSError as e:
        raise EvalError("%s: cannot read %s: %s" % (fname, full, e.strerror or e))
    if len(data) > ctx.read_limit:
        raise EvalError("%s: %s is larger than %d bytes, the most the read_* functions read (raise `run.read_limit` "
                        "in sprocket.toml to read it)" % (fname, full, ctx.read_limit))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EvalError("%s: %s is not valid UTF-8 text" % (fname, full))


def _lines(text):
    """Split file contents into lines without their "\\n" / "\\r\\n"; an empty file has no lines."""
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_rows(ctx, fname, path):
    return [line.split("\t") for line in _lines(_read_text(ctx, fname, path))]


def _write_file(ctx, fname, lines, suffix=".txt"):
    """Write each line plus "\\n" (or, given a str, exactly that text) to a new uniquely named
    file in ctx.tmp_dir; return its WdlFile."""
    try:
        os.makedirs(ctx.tmp_dir, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=ctx.tmp_dir, prefix=fname + "_", suffix=suffix)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(lines if isinstance(lines, str) else "".join(line + "\n" for line in lines))
        os.chmod(path, 0o644)  # readable by a container user other than ours
    except OSError as e:
        raise EvalError("%s: cannot write a file in %s: %s" % (fname, ctx.tmp_dir, e.strerror or e))
    if ctx.written is not None:
        ctx.written.append(os.path.abspath(path))
    return WdlFile(os.path.abspath(path))


def _prim_str(fname, v):
    try:
        return wdl_str(v)
    except EvalError as e:
        raise EvalError("%s: %s" % (fname, e.message))


def _tsv_field(fname, v):
    s = _prim_str(fname, v)
    if "\t" in s or "\n" in s:
        raise EvalError("%s: value %r contains a tab or newline, which TSV cannot hold" % (fname, s))
    return s


def _tsv_line(fname, values):
    return "\t".join(_tsv_field(fname, v) for v in values)


def _check_names(fname, names):
    seen = set()
    for name in names:
        if name in seen:
            raise EvalError("%s: duplicate name %r" % (fname, name))
        seen.add(name)


def _objects(fname, names, rows):
    for k, row in enumerate(rows):
        if len(row) != len(names):
            raise EvalError("%s: row %d has %d fields, expected %d" % (fname, k + 1, len(row), len(names)))
    return [StructValue(zip(names, row)) for row in rows]


_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


# -- numeric functions -----------------------------------------------------------------------


def _to_int(fname, x, op):
    try:
        return op(x)
    except (OverflowError, ValueError):
        raise EvalError("%s: cannot convert %r to an Int" % (fname, x))


def fn_floor(ctx, args):
    return _to_int("floor", args[0], math.floor)


def fn_ceil(ctx, args):
    return _to_int("ceil", args[0], math.ceil)


def fn_round(ctx, args):
    """Round half up (toward +infinity): round(2.5) == 3, round(-2.5) == -2."""
    x = args[0]
    low = _to_int("round", x, math.floor)
    return low + 1 if x - low >= 0.5 else low


def fn_min(ctx, args):
    a, b = args
    r = a if a <= b else b
    return float(r) if isinstance(a, float) or isinstance(b, float) else r


def fn_max(ctx, args):
    a, b = args
    r = a if a >= b else b
    return float(r) if isinstance(a, float) or isinstance(b, float) else r


# -- string functions ------------------------------------------------------------------------


def fn_find(ctx, args):
    m = _regex("find", args[1]).search(str(args[0]))
    return m.group(0) if m else None


def fn_matches(ctx, args):
    return _regex("matches", args[1]).search(str(args[0])) is not None


_REPLACEMENT_TOKEN = re.compile(r"(\\[1-9\\])")


def fn_sub(ctx, args):
    """Replace every match; in the replacement `\\1`-`\\9` are groups, `\\\\` is one backslash, all else literal."""
    rx = _regex("sub", args[1])
    parts = _REPLACEMENT_TOKEN.split(str(args[2]))  # odd indexes hold the tokens
    for k in range(1, len(parts), 2):
        token = parts[k][1]
        if token == "\\":
            parts[k] = "\\"
        elif int(token) > rx.groups:
            raise EvalError("sub: the replacement refers to group \\%s, the pattern has %d" % (token, rx.groups))
        else:
            parts[k] = int(token)
    if len(parts) == 1:
        return rx.sub(lambda m: parts[0], str(args[0]))
    return rx.sub(lambda m: "".join(p if isinstance(p, str) else (m.group(p) or "") for p in parts), str(args[0]))


def fn_split(ctx, args):
    """Split at each match of an ERE; empty pieces are kept, no match gives [input] (Rust regex split)."""
    s = str(args[0])
    pieces, last = [], 0
    for m in _regex("split", args[1]).finditer(s):
        pieces.append(s[last:m.start()])
        last = m.end()
    pieces.append(s[last:])
    return pieces


# -- file functions --------------------------------------------------------------------------


def fn_basename(ctx, args):
    path = str(args[0]).rstrip("/")  # a Directory may be written with a trailing "/"
    name = path[path.rfind("/") + 1:]
    if len(args) > 1 and args[1] and name.endswith(args[1]):
        name = name[:-len(args[1])]
    return name


def fn_join_paths(ctx, args):
    """Join paths left to right; only the first may be absolute; a relative result is made absolute
    against ctx.work_dir (the 1.2 rule). Returns a String (1.2.1/1.3), which coerces to File."""
    if len(args) == 1:
        parts = [str(p) for p in args[0]]
    else:
        rest = args[1] if isinstance(args[1], list) else [args[1]]
        parts = [str(args[0])] + [str(p) for p in rest]
    if not parts or (len(args) > 1 and len(parts) == 1):
        raise EvalError("join_paths: the array of paths is empty")
    for p in parts[1:]:
        if p.startswith("/"):
            raise EvalError("join_paths: only the first path may be absolute, got %r" % p)
    joined = posixpath.join(*parts)  # `..` is lexical: the directories need not exist (as Sprocket)
    if joined.startswith("/"):
        return posixpath.normpath(joined)
    return posixpath.normpath(posixpath.join(local_base(ctx.work_dir, joined, "join_paths"), joined))


def fn_glob(ctx, args):
    """Regular files (and symlinks to files, and broken symlinks) matching the pattern, sorted, absolute."""
    pattern = str(args[0])
    if not os.path.isabs(pattern):
        pattern = os.path.join(glob.escape(local_base(ctx.work_dir, pattern, "glob")), pattern)
    found = [p for p in glob.glob(pattern) if os.path.isfile(p) or (os.path.islink(p) and not os.path.exists(p))]
    for p in found if ctx.readable is not None else ():  # in a workflow: its names are a read too
        ctx.readable.check("glob", p)
    return [WdlFile(os.path.abspath(p)) for p in sorted(found)]


def _size_units():
    """Lower-cased unit -> bytes: B; K/KB, M/MB, ... (decimal); Ki/KiB, Mi/MiB, ... (binary), up to E."""
    units = {"b": 1}
    for power, letter in enumerate("kmgtpe", 1):
        units[letter] = units[letter + "b"] = 1000 ** power
        units[letter + "i"] = units[letter + "ib"] = 1024 ** power
    return units


_SIZE_UNITS = _size_units()


def _path_size(ctx, path):
    full = _resolve(ctx, "size", path)
    if os.path.isdir(full):
        total = 0
        for root, _dirs, files in os.walk(full):
            for name in files:
                f = os.path.join(root, name)
                if os.path.isfile(f):
                    total += os.path.getsize(f)
        return total
    try:
        return os.path.getsize(full)
    except OSError as e:
        raise EvalError("size: cannot read %s: %s" % (full, e.strerror or e))


def fn_size(ctx, args):
    """Bytes of a file/directory, or of all Files/Directories in a compound value (None counts 0)."""
    unit = args[1] if len(args) > 1 else "B"
    factor = _SIZE_UNITS.get(unit.strip().lower())
    if factor is None:
        raise EvalError("size: invalid unit %r (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, ...)" % unit)
    v = args[0]
    paths = [v] if isinstance(v, str) else paths_in(v)  # a top-level String names a path
    return sum(_path_size(ctx, p) for p in paths) / factor


def fn_stdout(ctx, args):
    if ctx.stdout is None:
        raise EvalError("stdout() is only available in task outputs")
    return WdlFile(ctx.stdout)


def fn_stderr(ctx, args):
    if ctx.stderr is None:
        raise EvalError("stderr() is only available in task outputs")
    return WdlFile(ctx.stderr)


def fn_read_string(ctx, args):
    """The whole file with any trailing "\\r"/"\\n" characters removed (1.1+ text)."""
    return _read_text(ctx, "read_string", args[0]).rstrip("\r\n")


def _read_single(ctx, fname, path, regex, what):
    text = _read_text(ctx, fname, path).strip()
    if not regex.match(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise EvalError("%s: %s does not contain a single %s (found %r)" % (fname, path, what, shown))
    return text


_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
_BOOL_TEXT = re.compile(r"(?i)(true|false)\Z")


def fn_read_int(ctx, args):
    return int(_read_single(ctx, "read_int", args[0], _INT_TEXT, "integer"))


def fn_read_float(ctx, args):
    return float(_read_single(ctx, "read_float", args[0], _FLOAT_TEXT, "number"))


def fn_read_boolean(ctx, args):
    """"true"/"false", case-insensitively in every version (1.2 made it explicit)."""
    return _read_single(ctx, "read_boolean", args[0], _BOOL_TEXT, "boolean").lower() == "true"


def fn_read_lines(ctx, args):
    return _lines(_read_text(ctx, "read_lines", args[0]))


def fn_write_lines(ctx, args):
    return _write_file(ctx, "write_lines", [_prim_str("write_lines", x) for x in args[0]])


def fn_read_tsv(ctx, args):
    """read_tsv(f) / (f, false): rows; (f, true): Objects keyed by the header; (f, header, names)."""
    rows = _read_rows(ctx, "read_tsv", args[0])
    if len(args) == 1 or (len(args) == 2 and not args[1]):
        return rows
    if len(args) == 3:
        names = list(args[2])
        if args[1]:
            rows = rows[1:]
    elif not rows:
        return []
    else:
        names, rows = rows[0], rows[1:]
    for name in names:
        if not _IDENTIFIER.match(name):
            raise EvalError("read_tsv: %r is not a valid field name" % name)
    _check_names("read_tsv", names)
    return _objects("read_tsv", names, rows)


def fn_write_tsv(ctx, args):
    """Rows of Array[String] or Structs; header written only if the 2nd argument is true."""
    rows = args[0]
    header = len(args) > 1 and args[1]
    names = list(args[2]) if len(args) > 2 else None
    lines = []
    structs = [r for r in rows if isinstance(r, dict)]
    if structs and len(structs) != len(rows):
        raise EvalError("write_tsv: rows mix Arrays and Structs")
    if header and names is None:
        if rows and not structs:
            raise EvalError("write_tsv: a header for Array[Array[String]] needs the column names")
        names = list(structs[0]) if structs else None  # an empty Array[Struct] gives an empty file
    if header and names is not None:
        lines.append(_tsv_line("write_tsv", names))
    for k, row in enumerate(rows):
        values = list(row.values()) if structs else row
        if header and len(values) != len(names):
            raise EvalError("write_tsv: row %d has %d fields, the header %d" % (k + 1, len(values), len(names)))
        lines.append(_tsv_line("write_tsv", values))
    return _write_file(ctx, "write_tsv", lines, ".tsv")


def fn_read_map(ctx, args):
    result = {}
    for k, row in enumerate(_read_rows(ctx, "read_map", args[0])):
        if len(row) != 2:
            raise EvalError("read_map: line %d has %d columns, expected 2" % (k + 1, len(row)))
        if row[0] in result:
            raise EvalError("read_map: duplicate key %r" % row[0])
        result[row[0]] = row[1]
    return result


def fn_write_map(ctx, args):
    lines = [_tsv_field("write_map", k) + "\t" + _tsv_field("write_map", v) for k, v in args[0].items()]
    return _write_file(ctx, "write_map", lines, ".tsv")


def _reject_json_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def _finite_json_float(text):
    f = float(text)
    if not math.isfinite(f):  # 1e400: as Sprocket's JSON reader, "out of range"
        raise ValueError("%s is out of range for a Float" % text)
    return f


def _json_int64(text):
    i = int(text)
    if not _INT_MIN <= i <= _INT_MAX:
        raise ValueError("%s does not fit in an Int (64 bits)" % text)
    return i


def fn_read_json(ctx, args):
    """JSON as Python data (objects are JsonObjects); the caller coerces to the declared type."""
    text = _read_text(ctx, "read_json", args[0])
    try:
        return json.loads(text, parse_constant=_reject_json_constant, parse_float=_finite_json_float,
                          parse_int=_json_int64, object_hook=JsonObject)
    except ValueError as e:
        raise EvalError("read_json: %s is not valid JSON: %s" % (args[0], e))
    except RecursionError:
        raise EvalError("read_json: %s is nested too deeply" % args[0])


def fn_write_json(ctx, args):
    """A Pair is written as {"left": .., "right": ..} (the spec calls Pairs unserializable; engines accept them)."""
    try:
        text = json.dumps(_to_json(args[0], True), ensure_ascii=False)  # _to_json refuses NaN and Infinity
    except EvalError as e:
        raise EvalError("write_json: %s" % e.message)
    return _write_file(ctx, "write_json", text, ".json")  # no newline after the JSON, as Cromwell and miniwdl


def fn_read_object(ctx, args):
    rows = _read_rows(ctx, "read_object", args[0])
    if len(rows) != 2:
        raise EvalError("read_object: the file must have exactly 2 lines, it has %d" % len(rows))
    _check_names("read_object", rows[0])
    return _objects("read_object", rows[0], rows[1:])[0]


def fn_read_objects(ctx, args):
    rows = _read_rows(ctx, "read_objects", args[0])
    if not rows:
        return []
    _check_names("read_objects", rows[0])
    return _objects("read_objects", rows[0], rows[1:])


def _check_object(fname, v):
    if not isinstance(v, dict):
        raise EvalError("%s: expected a Struct or Object, got %s" % (fname, _kind(v)))


def fn_write_object(ctx, args):
    obj = args[0]
    _check_object("write_object", obj)
    lines = [_tsv_line("write_object", obj), _tsv_line("write_object", obj.values())]
    return _write_file(ctx, "write_object", lines, ".tsv")


def fn_write_objects(ctx, args):
    objs = args[0]
    if not objs:
        return _write_file(ctx, "write_objects", [], ".tsv")
    for o in objs:
        _check_object("write_objects", o)
    names = list(objs[0])
    lines = [_tsv_line("write_objects", names)]
    for o in objs:
        if len(o) != len(names) or any(k not in o for k in names):
            raise EvalError("write_objects: all elements must have the same member names")
        lines.append(_tsv_line("write_objects", [o[k] for k in names]))
    return _write_file(ctx, "write_objects", lines, ".tsv")


# -- string array functions ------------------------------------------------------------------


def fn_prefix(ctx, args):
    p = args[0]
    return [p + _prim_str("prefix", x) for x in args[1]]


def fn_suffix(ctx, args):
    s = args[0]
    return [_prim_str("suffix", x) + s for x in args[1]]


def fn_quote(ctx, args):
    return ['"%s"' % _prim_str("quote", x) for x in args[0]]


def fn_squote(ctx, args):
    """Each element in single quotes; an embedded `'` becomes `'\\''` so the shell still reads one word."""
    return ["'%s'" % _prim_str("squote", x).replace("'", "'\\''") for x in args[0]]


def fn_sep(ctx, args):
    return args[0].join(_prim_str("sep", x) for x in args[1])


# -- generic array functions -----------------------------------------------------------------


def fn_length(ctx, args):
    v = args[0]
    if isinstance(v, (list, dict, str)):
        return len(v)
    raise EvalError("length: expected an Array, Map, Object or String, got %s" % _kind(v))


def fn_range(ctx, args):
    n = args[0]
    if n < 0:
        raise EvalError("range: the length must be >= 0, got %d" % n)
    return list(range(n))


def fn_transpose(ctx, args):
    rows = args[0]
    width = len(rows[0]) if rows else 0
    for k, row in enumerate(rows):
        if len(row) != width:
            raise EvalError("transpose: row %d has %d elements, row 1 has %d" % (k + 1, len(row), width))
    return [list(col) for col in zip(*rows)]


def fn_cross(ctx, args):
    return [(x, y) for x in args[0] for y in args[1]]


def fn_zip(ctx, args):
    """Arrays must have equal lengths (1.1+ rule, applied to 1.0 documents too)."""
    a, b = args
    if len(a) != len(b):
        raise EvalError("zip: the arrays have different lengths (%d and %d)" % (len(a), len(b)))
    return list(zip(a, b))


def fn_unzip(ctx, args):
    return ([p[0] for p in args[0]], [p[1] for p in args[0]])


def fn_contains(ctx, args):
    return args[1] in args[0]


def fn_chunk(ctx, args):
    """Consecutive sub-arrays of `size` elements; chunk([], n) is [] (see ERRATA: the spec's [[]] is wrong)."""
    arr, size = args
    if size <= 0:
        raise EvalError("chunk: the chunk size must be > 0, got %d" % size)
    return [arr[k:k + size] for k in range(0, len(arr), size)]


def fn_flatten(ctx, args):
    return [x for inner in args[0] for x in inner]


def fn_select_first(ctx, args):
    for x in args[0]:
        if x is not None:
            return x
    if len(args) > 1:
        return args[1]
    if not args[0]:
        raise EvalError("select_first: the array is empty")
    raise NoneError("select_first: all values are None")


def fn_select_all(ctx, args):
    return [x for x in args[0] if x is not None]


# -- map functions ---------------------------------------------------------------------------


def fn_as_pairs(ctx, args):
    return list(args[0].items())


def fn_as_map(ctx, args):
    result = {}
    for k, v in args[0]:
        if k in result:
            raise EvalError("as_map: duplicate key %r" % (k,))
        result[k] = v
    return result


def fn_keys(ctx, args):
    return list(args[0])


def fn_contains_key(ctx, args):
    """A Map/Struct/Object key, or an Array[String] key path (false when an inner value is not a collection)."""
    coll, key = args
    if not isinstance(coll, dict):
        raise EvalError("contains_key: expected a Map, Struct or Object, got %s" % _kind(coll))
    if not isinstance(key, list):
        return key in coll
    if not key:
        raise EvalError("contains_key: the key path is empty")
    for k in key[:-1]:
        if not isinstance(coll, dict) or k not in coll:
            return False
        coll = coll[k]
    return isinstance(coll, dict) and key[-1] in coll


def fn_values(ctx, args):
    return list(args[0].values())


def fn_collect_by_key(ctx, args):
    result = {}
    for k, v in args[0]:
        result.setdefault(k, []).append(v)
    return result


# -- other functions -------------------------------------------------------------------------


def fn_defined(ctx, args):
    return args[0] is not None


def fn_value(ctx, args):
    if not isinstance(args[0], EnumValue):
        raise EvalError("value: expected an enum choice, got %s" % _kind(args[0]))
    return args[0].value


IMPLS = {
    "floor": fn_floor, "ceil": fn_ceil, "round": fn_round, "min": fn_min, "max": fn_max,
    "find": fn_find, "matches": fn_matches, "sub": fn_sub, "split": fn_split,
    "basename": fn_basename, "join_paths": fn_join_paths, "glob": fn_glob, "size": fn_size,
    "stdout": fn_stdout, "stderr": fn_stderr,
    "read_string": fn_read_string, "read_int": fn_read_int, "read_float": fn_read_float,
    "read_boolean": fn_read_boolean, "read_lines": fn_read_lines, "write_lines": fn_write_lines,
    "read_tsv": fn_read_tsv, "write_tsv": fn_write_tsv, "read_map": fn_read_map, "write_map": fn_write_map,
    "read_json": fn_read_json, "write_json": fn_write_json,
    "read_object": fn_read_object, "read_objects": fn_read_objects,
    "write_object": fn_write_object, "write_objects": fn_write_objects,
    "prefix": fn_prefix, "suffix": fn_suffix, "quote": fn_quote, "squote": fn_squote, "sep": fn_sep,
    "length": fn_length, "range": fn_range, "transpose": fn_transpose, "cross": fn_cross, "zip": fn_zip,
    "unzip": fn_unzip, "contains": fn_contains, "chunk": fn_chunk, "flatten": fn_flatten,
    "select_first": fn_select_first, "select_all": fn_select_all,
    "as_pairs": fn_as_pairs, "as_map": fn_as_map, "keys": fn_keys, "contains_key": fn_contains_key,
    "values": fn_values, "collect_by_key": fn_collect_by_key,
    "defined": fn_defined, "value": fn_value,
}


# A call is evaluated here, beside the implementations it dispatches to (evaluation, above, does
# not know them): _EVAL gets its entry for Apply.
def _eval_apply(e, env, ctx):
    args = [evaluate(a, env, ctx) for a in e.args]
    try:
        for i, p in enumerate(e.fn.params):
            if not isinstance(p, (TypeVar, AnyType)) and not (p.opt and args[i] is None):
                args[i] = coerce(args[i], p, "argument %d" % (i + 1))
        return _int_result(IMPLS[e.name](ctx, args))
    except EvalError as err:
        if not err.message.startswith(e.name):
            err.message = "%s: %s" % (e.name, err.message)
            err.args = (err.message,)
        raise
    except OSError as err:
        raise EvalError("%s: %s" % (e.name, err), e.span)


_EVAL[Apply] = _eval_apply


# ============================================================================================
# 12. Runtime contracts
# ============================================================================================
#
# What the runtime's parts agree on. A backend is a subclass of Backend, registered under its
# `type` (register_backend): the scheduler asks it what a task may have (check, limits), hands
# it each attempt as a TaskRequest (start) and follows the Job it returns; it declares its
# `run.backends.<name>` settings as Setting rows, which the configuration (section 16) makes part
# of CONFIG_SCHEMA. A RunContext is all that Tasks, Workflows and Backends know of the run; Run
# (section 18) builds it once.


def _human_bytes(n):
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return "%.1f %s" % (n / size, unit)
    return "%d B" % n


TaskRequest = collections.namedtuple("TaskRequest", "name key job_name attempt command directory work stdout stderr "
                                     "env requirements hints cpu memory inputs")
TaskRequest.__doc__ = (
    "One attempt, as the engine hands it to a backend: the call's `name` (for messages), the attempt's `key` (its row "
    "in sprocket.db), `job_name` (the same in every run of the workflow) and number (`attempt`); the paths of its "
    "`command` file, its `directory`, its `work` directory, `stdout` and `stderr`; its `env` (the `env` declarations, "
    "as text); its resolved `requirements` and `hints`; the `cpu` and `memory` it runs with; and `inputs`, the host "
    "paths its inputs and private declarations name (which a container must see).")


Adoptable = collections.namedtuple("Adoptable", "key number directory job_id cache_key process_group process_started")
Adoptable.__doc__ = ("An attempt of an orphaned earlier run, to be followed to its end (reattach); a Slurm one by "
                     "its job id, a local one by its process group and its leader's start time.")


class Job:
    """One attempt as a backend runs it. wait() blocks until it ends and returns its exit status
    (128 + N for signal N); the attributes say how it ended, when not by the command's own exit."""

    message = None  # why the backend, not the command, ended it
    final = False  # it would fail again whatever is done: no retries
    retry_free = False  # the infrastructure's fault (a node failed): run again without spending a retry
    out_of_memory = False  # it was killed for running out of memory
    state = None  # the batch system's state while it runs (`PENDING`: queued), for the progress line
    reason = None  # and why it is queued
    job_id = None  # the batch system's id of it (trace.tsv), if any
    image = None  # the id of the container image it runs (trace.tsv), if known

    def wait(self):
        raise NotImplementedError

    def cancel(self):
        raise NotImplementedError

    def usage(self):
        """What it used, as the `attempt_usage` row has it ({} when unknown)."""
        return {}

    def output_path(self, path):
        """The host path of an absolute path an output names, as the command saw it (a container's
        own file is copied out into the attempt's directory and listed in `copied`)."""
        return path

    copied = ()  # the files output_path() copied out of where the command ran: the task made them

    def release(self):
        """The engine is done with it (its outputs are read): the backend may drop what it kept."""


class Setting(collections.namedtuple("Setting", "kind default help check also", defaults=(None, None))):
    """A setting: its kind, its default (None: unset), the help `config init` prints, a check beyond
    the kind's (value -> what is wrong, or None), and `also`: value -> true for a value taken as it
    is, whatever the kind (Sprocket's words beside numbers). Kinds: bool, int (>= 0), str, path (a
    str with ~ and $VAR expanded), size (bytes or "4 GiB"), seconds, multiplier (>= 1), rate
    ("20/1s"), list (of strings), conditionals (Sprocket's sbatch.conditional), or a tuple of the
    allowed strings."""


class Backend:
    """Where and how tasks run; the scheduler never knows which one it talks to. A subclass sets
    `cpu` and `memory` (what tasks may use at once here: the scheduler holds the rest back),
    declares its `run.backends.<name>` settings in SETTINGS (the configuration checks them and
    hands them over with their defaults filled in), and is registered with register_backend().
    start() and adopt() are its own; the rest have defaults a backend overrides when it can do
    more."""

    kind = None  # its `type` in `run.backends.<name>`
    SETTINGS = {}  # {key under run.backends.<name>: Setting}: its rows of CONFIG_SCHEMA
    experimental = False  # it needs `run.experimental_features_enabled = true`
    files_lag = False  # its tasks' files may show late on this host (a shared file system): see wait_visible()
    scatter_limit = None  # scatter elements it takes at once (None: as many as the run allows)
    cpu = memory = float("inf")
    guest_work = None  # where its tasks see their work directory, when not at its own path (outputs map back)
    outlives_engine = False  # its jobs run on when the engine ends (a head job may hand them off: detach())
    jobs_on_engine_host = True  # its jobs run on the engine's host: only there can they be canceled

    def __init__(self, context, name, settings):
        self.context = context
        self.name = name
        self.settings = settings
        self.shell = context.settings.shell
        self.behavior = context.settings.limit_behavior  # {"cpu"/"memory": "deny" or "try_with_max"}

    @classmethod
    def table_keys(cls):
        """The keys its `run.backends.<name>` table may have: `type` and those of its SETTINGS."""
        return ("type",) + tuple(collections.OrderedDict.fromkeys(key.split(".")[0] for key in cls.SETTINGS))

    @classmethod
    def check_settings(cls, name, settings, where):
        """Refuse (ConfigError) what its settings (`run.backends.<name>`, as the files give them) ask
        for that cannot be had; `where(key)` names the files that set a key."""

    def limits(self, requirements, hints):
        """{"cpu": n, "memory": bytes} the most one task may have here (None: no limit)."""
        return {"cpu": self.cpu, "memory": self.memory}

    def limit_text(self, requirements, hints):
        """What the limit is, with %s for the amount (for messages)."""
        return "the host only has %s available"

    def check_target(self, target):
        """Refuse (RunError), before anything runs, what the run's target (a Task or Workflow) asks
        for in literals that cannot be had here."""

    def check(self, name, requirements, hints, cpu, memory):
        """(cpu, memory) a task asking for these runs with: more than limits() allows is refused
        (`deny`) or clamped with a warning (`try_with_max`), as run.task.<cpu|memory>_limit_behavior say."""
        limits, wanted = self.limits(requirements, hints), {"cpu": cpu, "memory": memory}
        for what, fmt in (("cpu", lambda x: "%g" % x), ("memory", _human_bytes)):
            limit, want = limits.get(what), wanted[what]
            if limit is None or want <= limit:
                continue
            where = self.limit_text(requirements, hints) % fmt(limit)
            if self.behavior[what] != "try_with_max":
                raise RunError("task `%s` requires at least %s %s, but %s (set `run.task.%s_limit_behavior = "
                               "\"try_with_max\"` to run it with that)" % (
                                   name, fmt(want), "CPU(s)" if what == "cpu" else "of memory", where, what))
            wanted[what] = limit
            self.context.log.warn("task `%s` requires %s %s, but %s; running it with %s" % (
                name, fmt(want), what, where, fmt(limit)))
        return wanted["cpu"], wanted["memory"]

    def start(self, request):
        """Start one attempt (a TaskRequest); return its Job."""
        raise NotImplementedError

    def adopt(self, request, adopted):
        """Follow the job of an attempt a dead run started (`adopted`, an Adoptable); return its Job."""
        raise NotImplementedError

    def guest_inputs(self, request):
        """{host path: the path the command sees it at} of the attempt's input files and directories
        (of request.inputs, a TaskRequest's) that its command does not see at their own path."""
        return {}

    def find_jobs(self, directories):
        """{attempt directory: the Adoptable fields that name its live job} for attempts a dead
        engine started but had not recorded (reattach); {} when it cannot tell."""
        return {}

    def cancel_jobs(self, jobs):
        """Stop these jobs (in one go where the backend can)."""
        for job in jobs:
            job.cancel()

    def cancel_all(self, jobs, adopted):
        """Stop these jobs and those of the attempts (Adoptable) of an earlier run that the run was to
        adopt but has not followed yet (abort(): a run canceled before it reached them), in one go
        where the backend can."""
        self.cancel_jobs(jobs)
        if adopted:
            try:
                type(self).cancel_dead(self.context, self.settings, adopted, [])
            except RunError as e:
                self.context.log.warn("the jobs of the earlier run were left running: %s" % e.message)

    def explain(self, job):
        """A sentence on why a failed job failed, when the backend can tell; else None."""
        return None

    @classmethod
    def job_states(cls, context, settings, job_ids):
        """{job id: SlurmState} of a live run's jobs as the batch system tells them now, in one
        query (`sprocket status`: why a job waits); {} where there is no queue to ask."""
        return {}

    @classmethod
    def cancel_dead(cls, context, settings, attempts, run_dirs):
        """Stop the jobs of the attempts (Adoptable, their directories absolute) of a run whose engine
        is gone (`sprocket cancel`), and those of attempts below `run_dirs` (the run's and those it
        adopted: absolute) that the engine had no time to record, with one call where the backend can;
        returns how many it stopped or asked to stop. `settings`: read_backend_settings()'s, as for
        doctor()."""
        raise RunError("the %s backend cannot cancel the jobs of a run whose engine is gone" % cls.kind)

    def wait_visible(self, path, is_dir):
        """Whether a missing output shows up after all (files_lag: wait for the shared file system)."""
        return False

    def close(self):
        """The run is over: nothing of it may be left running."""

    def detach(self):
        """The engine hands the run to a successor that adopts its jobs (outlives_engine): submit
        nothing more and cancel nothing."""
        raise NotImplementedError

    @classmethod
    def doctor(cls, context, name, settings, out_dir):
        """`sprocket doctor`: the Checks of this site for the backend as configured (`settings`,
        read_backend_settings()), beyond the output directory (`out_dir`) every backend needs; a
        classmethod, as the backend itself may refuse to be made where a check fails."""
        return []


Check = collections.namedtuple("Check", "what problem fix")
Check.__doc__ = ("One line of `sprocket doctor`: what was checked (and what was found), and, when it failed, what "
                 "is wrong and how to fix it (problem None: it is fine).")


def check_line(check):
    """`ok  <what>` or `FAIL <what>: <what is wrong>; <how to fix it>`."""
    if check.problem is None:
        return "ok  %s" % check.what
    return "FAIL %s: %s; %s" % (check.what, " / ".join(check.problem.splitlines()), check.fix)


BACKENDS = {}  # type -> Backend subclass: what `run.backends.<name>.type` may name


def register_backend(cls):
    """A class decorator: `cls` is the backend of `type = "<cls.kind>"`."""
    BACKENDS[cls.kind] = cls
    return cls


RunSettings = collections.namedtuple("RunSettings", "default_retries memory_retry_multiplier read_limit fail_fast "
                                     "scatter_limit shell container limit_behavior slurm_placement", defaults=(None,))
RunSettings.__doc__ = ("The `run.*` settings the runtime reads, read and checked once (run_settings(), section 18); "
                       "`slurm_placement`: {partition/account/qos/constraint: what `run --slurm-<key>` chose}.")


class RunContext:
    """What Tasks, Workflows and Backends know of a run: its settings and log, the recorder of its
    attempts (sprocket.db, trace.tsv), its call cache, backend and scheduler, its directories, what
    it was given (nested inputs, requirement overrides, jobs of a dead run to adopt) and whether it
    stops (the Scheduler keeps the counts of task runs). Run builds it, then the backend (which may
    refuse), then the rest."""

    def __init__(self, settings, log, recorder=None, cache=None):
        self.settings, self.log, self.recorder, self.cache = settings, log, recorder, cache
        self.backend = self.scheduler = None
        self.uuid = self.run_dir = self.tmp_dir = self.real_run_dir = None
        self.run_name = None  # its readable name (run_name())
        self.readable = set()  # real paths of the inputs and call outputs workflow-level calls may read (ReadScope)
        self.nested_inputs = {}  # call path -> {input: value}
        self.overrides = {}  # call path -> {"requirements"/"hints"/"runtime": {key: value}}
        self.adoptable = {}  # call -> Adoptable: an orphaned twin run's jobs to follow (reattach)
        self.reattach = False  # may a later run adopt this one's jobs (tasks compute their reattach key)
        self.stopping = False  # start nothing new
        self.aborting = False  # and stop what runs
        self.handing_off = False  # and leave what runs to a successor engine (a head job's time limit)
        self.parts = []  # the parts of the run that fail on their own (part())
        self.on_failure = None  # a part's: error -> None, called instead of failing the run
        self.each_round = []  # what the scheduler calls every round (Run's look for a cancel request)

    @property
    def scatter_limit(self):
        limit = self.backend.scatter_limit if self.backend is not None else None
        return min(self.settings.scatter_limit, limit) if limit else self.settings.scatter_limit

    def admit(self, values):
        """The files and directories in `values` (inputs, call outputs) become readable by
        workflow-level standard library calls (ReadScope)."""
        self.readable.update(os.path.realpath(p) for v in values for p in paths_in(v) if "://" not in p)

    def abort(self):
        """Stop everything running now (a cancel, or a failure under `fail = "fast"`); a part stops
        only its own task runs."""
        mine = [self] + self.parts
        for c in mine:
            c.stopping = c.aborting = True
        # the jobs of an earlier run it was to adopt go too: nothing follows them once it stops
        left, self.adoptable = list(self.adoptable.values()), {}
        self.backend.cancel_all([tr.job for tr in list(self.scheduler.running)
                                 if tr.job is not None and tr.context in mine], left)

    def part(self, on_failure):
        """A part of the run that fails on its own (one test of `sprocket test`): it shares the
        run's settings, log, records, call cache, backend and scheduler, has its own inputs,
        overrides, readable files and stop flags, and its failures go to on_failure(error)
        (the Scheduler's fail()) instead of stopping the run."""
        import copy

        part = copy.copy(self)
        part.readable, part.nested_inputs, part.overrides, part.adoptable = set(), {}, {}, {}
        part.stopping = part.aborting = part.reattach = False
        part.parts, part.on_failure = [], on_failure
        self.parts.append(part)
        return part


# ============================================================================================
# 13. Tasks
# ============================================================================================
#
# A TaskRun is one call of a task: its inputs are known; prepare() evaluates the private
# declarations and requirements (on the scheduler thread, which needs cpu and memory to
# place it); execute() runs the attempts and evaluates the outputs (on a worker thread).

_DEFAULT_MEMORY = 2 * 1024 ** 3
_MAX_RETRIES = 100
_INFRASTRUCTURE_RETRIES = 3  # attempts lost to the backend (a node failure), apart from the task's own retries


def parse_memory(v, what="memory"):
    """Bytes from an Int or a string like "4 GiB" / "500M"."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(v)
    m = re.match(r"^\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$", v or "") if isinstance(v, str) else None
    if m is None or m.group(2) and m.group(2).lower() not in _SIZE_UNITS:
        raise EvalError("%s must be a number of bytes or a size like \"4 GiB\", not %s" % (what, _short(v)))
    try:
        return int(float(m.group(1)) * _SIZE_UNITS.get(m.group(2).lower(), 1))
    except ValueError:
        raise EvalError("%s must be a number of bytes or a size like \"4 GiB\", not %s" % (what, _short(v)))


def normalize_runtime(req, hints):
    """The runtime keys of Cromwell-era WDL in the spec's terms: `continueOnReturnCode` (true: any
    code) is `return_codes`, `gpuCount` the number of GPUs, `runtime_minutes` (and Caper's `time`,
    in hours) a time limit, and
    Google's `disks: "local-disk 100 SSD"` a size (a `disks` of GiB)."""
    if "continueOnReturnCode" in hints and "return_codes" not in req:
        v = hints["continueOnReturnCode"]
        req["return_codes"] = "*" if v is True else 0 if v is False else v
    count = hints.get("gpuCount")
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if isinstance(count, int) and not isinstance(count, bool) and count > 0 and "gpu" not in req:
        req["gpu"] = True
        hints.setdefault("gpu", count)
    for key in ("runtime_minutes", "max_time_minutes"):
        if key in hints:
            hints.setdefault("time_minutes", hints[key])
    hours = hints.get("time")  # Caper's (ENCODE's) walltime in hours
    if isinstance(hours, (int, float)) and not isinstance(hours, bool) and hours > 0:
        hints.setdefault("time_minutes", int(math.ceil(hours * 60)))
    if "disks" in req and not isinstance(req["disks"], int):
        req["disks"] = disk_gib(req["disks"])


def check_requirements(req, task_name):
    """Refuse a `cpu` that is not a number >= 0 (made a float) and a `memory` of no bytes."""
    if "cpu" in req:
        c = req["cpu"]
        try:
            c = float(c) if isinstance(c, (int, float, str)) and not isinstance(c, bool) else None
        except ValueError:
            c = None
        if c is None or c < 0:
            raise EvalError("task `%s`: cpu must be a number >= 0, not %s" % (task_name, _short(req["cpu"])))
        req["cpu"] = c
    if "memory" in req and parse_memory(req["memory"], "task `%s`: memory" % task_name) <= 0:
        raise EvalError("task `%s`: memory must be more than 0 bytes, not %s" % (task_name, _short(req["memory"])))


def return_code_ok(req, code, task_name):
    """Whether exit status `code` is a success under the task's `return_codes` ("*", an Int, an
    Array[Int], or an Int written as a string)."""
    rc = req.get("return_codes", 0)
    if rc == "*":
        return True
    if isinstance(rc, list):
        return code in rc
    if isinstance(rc, str):
        try:
            return code == int(rc)
        except ValueError:
            raise EvalError("task `%s`: return_codes must be \"*\", an Int or an Array[Int]" % task_name)
    return code == rc


_DISK_RE = re.compile(r"^\s*(?:(local-disk|/\S*)\s+)?([0-9.]+)\s*((?!SSD|HDD|LOCAL)[A-Za-z]*)\s*(SSD|HDD|LOCAL)?\s*$", re.I)


def disk_gib(v):
    """GiB from a `disks` value: an Int, "100 GiB", "/mnt/data 10 GiB", Google's "local-disk 100
    SSD" (GB), or several of them (an Array, or comma-separated)."""
    if isinstance(v, bool):
        raise EvalError("disks must be a size, not %s" % _short(v))
    if isinstance(v, (int, float)):
        return int(math.ceil(v))
    parts = v if isinstance(v, list) else str(v).split(",")
    total = 0.0
    for part in parts:
        m = _DISK_RE.match(str(part))
        unit = (m.group(3) or ("GB" if m.group(4) else "GiB")).lower() if m else ""  # Google's sizes are GB
        if m is None or unit not in _SIZE_UNITS:
            raise EvalError("disks must be a size like \"10 GiB\", \"/mnt 10 GiB\" or \"local-disk 100 SSD\", "
                            "not %s" % _short(part))
        total += float(m.group(2)) * _SIZE_UNITS[unit] / 1024 ** 3
    return int(math.ceil(total))


def given_value(d, given):
    """Does the caller's value for input `d` apply? `None` for an input whose default is not
    optional (`Int x = 1`) leaves the default in place (the spec's "optional inputs with
    defaults"); for `Int? x = 1` it is the value."""
    return d.name in given and (given[d.name] is not None or d.expr is None or d.type_.opt)


def bind_input(d, given, env, owner):
    """Put input `d` of `owner` (`task `x``, `workflow `y``) in `env`: the caller's value (`given`)
    where it applies, else None for an optional input without a default. False when its default is
    left to evaluate; a required input without a value is an InputError."""
    if given_value(d, given):
        env[d.name] = coerce_decl(given[d.name], d, "input `%s`" % d.name)
    elif d.expr is not None:
        return False
    elif d.type_.opt:
        env[d.name] = None
    else:
        raise InputError("%s is missing required input `%s`" % (owner, d.name), d.span)
    return True


def topo_order(decls):
    """Declarations in an order where each comes after the ones it reads."""
    by_name = {d.name: d for d in decls}
    out, seen = [], set()

    def visit(d):
        if d.name in seen:
            return
        seen.add(d.name)
        for n in sorted(free_names(d.expr)):
            if n in by_name and n != d.name:
                visit(by_name[n])
        out.append(d)

    for d in decls:
        visit(d)
    return out


class Attempt:
    """One try of a call: its call path and number, its directory, its job and how it ended.
    Its name, `<call path>-<number>`, is the same in every run of the workflow (the Slurm job
    name); with the run's id it is its row in sprocket.db (`tasks`, and `attempts`)."""

    __slots__ = ("call", "number", "directory", "name", "key", "job", "status", "exit_code", "message", "final",
                 "out_of_memory", "adopted", "cpu", "memory")

    def __init__(self, tr, number, adopted=None):
        self.call, self.number = tr.name, number
        self.cpu, self.memory = tr.cpu, tr.memory  # what it asked for
        self.adopted = adopted  # the Adoptable record of an earlier run's attempt this one follows
        self.directory = adopted.directory if adopted else os.path.join(tr.call_dir, "attempts", str(number))
        self.name = re.sub(r"[^A-Za-z0-9_.-]", "_", "%s-%d" % (tr.name, number))
        self.key = "%s-%s" % (self.name, tr.context.uuid[:8])
        self.job = self.status = self.exit_code = self.message = None
        self.final = self.out_of_memory = False


def call_family(name):
    """A call (or attempt) name without its scatter indices (and attempt number): `align-3-1` ->
    `align`. Job arrays and the report group scatter elements by it."""
    return re.sub(r"(-\d+)+$", "", name)


Resources = collections.namedtuple("Resources", "cpu memory")
Resources.__doc__ = "The cpu and memory (bytes) the Scheduler holds for a task run while it runs (`TaskRun.reserved`)."

CallStart = collections.namedtuple("CallStart", "adopted cache_key cached")
CallStart.__doc__ = ("Where a call starts: the Adoptable attempt it follows (or None), the call cache key its outputs "
                     "are stored under (None: no caching), and the outputs of a call cache hit (or None).")

RetryDecision = collections.namedtuple("RetryDecision", "action message")
RetryDecision.__doc__ = ("What follows an attempt: `done` (it completed), `free` (run again, spending no retry), "
                         "`retry`, or `fail` with the run's error `message`.")


def retry_decision(status, message, final, number, free, retries, memory_tried):
    """The retry policy (RetryDecision), apart from running anything: attempt `number` ended
    `status` (completed, preempted: the backend lost it and allows another go, or failed, `final`
    when no retry can help), after `free` attempts that spent no retry, of a task allowed `retries`
    (max_retries); `memory_tried` is the memory of each attempt that ran out of it."""
    if status == "completed":
        return RetryDecision("done", None)
    if status == "preempted":
        return RetryDecision("free", message)
    if number - free < retries and not final:
        return RetryDecision("retry", message)
    if len(memory_tried) > 1:
        message += "\n\nmemory tried: %s" % ", ".join(_human_bytes(m) for m in memory_tried)
    return RetryDecision("fail", message)


class TaskRun:
    def __init__(self, context, task, inputs, call_dir, name, overrides):
        self.context = context
        self.task = task
        self.inputs = inputs
        self.call_dir = call_dir
        self.name = name
        self.overrides = overrides  # {"requirements"/"hints"/"runtime": {key: value}}
        self.cpu = 1.0
        self.memory = _DEFAULT_MEMORY
        self.job = None
        self.outcome = None
        self.attempt = None  # the current Attempt
        self.attempt_dirs = []
        self.requirements, self.hints = {}, {}
        self.previous = None  # the `task` value of the attempt before (1.3 `task.previous`)
        self.reattach_key = None  # its call cache key (weak digests), when a later run may adopt its jobs
        self.written = []  # the files its own write_* calls made (outputs it may name)
        self.guest = {}  # its attempt's inputs where its container sees them (Backend.guest_inputs)

    def ctx(self, work_dir=None, stdout=None, stderr=None):
        context = self.context
        return EvalContext(work_dir or context.run_dir, context.tmp_dir, self.task.dialect, stdout, stderr,
                           context.settings.read_limit, written=self.written)

    def prepare(self):
        """Evaluate inputs, private declarations and requirements."""
        task = self.task
        env = {}
        # Relative paths before the command: 1.2 and later resolve them against the document's
        # directory; earlier versions leave them to the execution directory (the first attempt's
        # work/, made by execute()), which is also where join_paths puts a relative result.
        ctx = self.ctx(os.path.join(self.call_dir, "attempts", "0", "work"))
        ctx.doc_dir = doc_dir = document_dir(task) if task.dialect.paths_from_document else None
        decls = (task.inputs or []) + task.decls
        given = self.inputs
        for d in topo_order(decls):  # private declarations have a value: bind_input leaves them to evaluate
            if not bind_input(d, given, env, "task `%s`" % task.name):
                env[d.name] = coerce_decl(evaluate(d.expr, env, ctx), d, "`%s` of task `%s`" % (d.name, task.name),
                                          doc_dir, task.dialect.paths_exist, self.context.log.warn)
        self.env = env
        self.requirements, self.hints = self.eval_requirements(0)
        self.cpu = float(self.requirements.get("cpu", 1))
        self.memory = parse_memory(self.requirements.get("memory", _DEFAULT_MEMORY))

    def eval_requirements(self, attempt):
        task = self.task
        env = dict(self.env)
        if task.dialect.task_in_requirements:
            env["task"] = self.task_value(attempt, None, None)
        ctx = self.ctx()
        req, hints = {}, {}
        if task.runtime is not None:
            for key, expr in task.runtime.items():
                v = evaluate(expr, env, ctx)
                (req if key in _REQUIREMENT_KEYS else hints)[_REQUIREMENT_KEYS.get(key, key)] = v
        for key, expr in (task.requirements or {}).items():
            req[_REQUIREMENT_KEYS.get(key, key)] = evaluate(expr, env, ctx)
        for key, expr in (task.hints or {}).items():
            hints[key] = evaluate(expr, env, ctx)
        for section, values in self.overrides.items():
            for key, v in values.items():
                if section == "hints" or section == "runtime" and key not in _REQUIREMENT_KEYS:
                    hints[key] = v
                else:
                    req[_REQUIREMENT_KEYS.get(key, key)] = v
        normalize_runtime(req, hints)
        check_requirements(req, task.name)
        return req, hints

    def task_value(self, attempt, return_code, end_time):
        """The 1.2 `task` variable."""
        container = self.requirements.get("container")
        if isinstance(container, list):
            container = container[0] if container else None
        return StructValue((
            ("name", self.task.name), ("id", self.name), ("container", container),
            ("cpu", float(self.requirements.get("cpu", self.cpu))),
            ("memory", parse_memory(self.requirements.get("memory", self.memory))),
            ("gpu", []), ("fpga", []), ("disks", {}),
            ("attempt", attempt), ("end_time", end_time), ("return_code", return_code),
            ("meta", StructValue((self.task.meta or {}).items())),
            ("parameter_meta", StructValue((self.task.parameter_meta or {}).items())), ("ext", StructValue()),
            ("max_retries", self.max_retries()),
            ("previous", StructValue(((k, self.previous[k] if self.previous else None)
                                      for k in list(_REQUIREMENT_MEMBERS) + ["max_retries"]), "task.previous")),
        ), "task")

    def max_retries(self):
        v = self.requirements.get("max_retries")
        if v is None:
            return self.context.settings.default_retries
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise EvalError("task `%s`: max_retries must be an Int, not %s" % (self.task.name, _short(v)))
        if n > _MAX_RETRIES:  # Sprocket's cap: 100000 retries would fill the disk with attempt directories
            raise EvalError("task `%s`: task `max_retries` requirement of %d cannot exceed %d" % (self.task.name, n, _MAX_RETRIES))
        return n

    def guest_view(self, env):
        """`env` as the command and the outputs see it: its File/Directory values at the paths where the
        backend's container sees its inputs (self.guest, the attempt's guest_inputs(): Sprocket's, so
        `prefix("-I ", bams)` names them too), and a function of a guest path to its host path (for the
        standard library's reads); (env, None) where the command sees the host's paths."""
        if not self.guest:
            return env, None
        there = sorted(self.guest.items(), key=lambda kv: -len(kv[0]))
        back = sorted(((g, h) for h, g in self.guest.items()), key=lambda kv: -len(kv[0]))
        return ({k: map_paths(v, lambda p: moved_path(os.path.abspath(p), there) or p) for k, v in env.items()},
                lambda p: moved_path(p, back) or p)

    def render_command(self, env, ctx):
        out = []
        for p in self.task.command.parts:
            out.append(p if isinstance(p, str) else render_placeholder(p, env, ctx))
        return "".join(out)

    def execute(self):
        """Run attempts until one succeeds or the retries are spent; return the outputs.

        Sets `outcome` (completed, failed, canceled or cached) for the scheduler."""
        context = self.context
        adopted, key, cached = self.adopt_or_cached()
        if cached is not None:
            return cached
        self.outcome = "failed"
        number = adopted.number if adopted is not None else 0
        free = 0  # attempts lost to the backend, which spend no retry
        retries = self.max_retries()
        asked = self.memory
        tried = []  # the memory of each attempt that ran out of it
        ran_out = None  # the memory the attempt before ran out of (not known of an adopted one's)
        while True:
            if number:
                asked = self.attempt_resources(number, ran_out, asked)
            self.attempt = attempt = Attempt(self, number, adopted)
            adopted = None
            outputs = self.run_attempt(attempt, free < _INFRASTRUCTURE_RETRIES)
            ran_out = self.memory if attempt.out_of_memory else None
            if ran_out is not None:
                tried.append(ran_out)
            action, message = retry_decision(attempt.status, attempt.message, attempt.final, number, free, retries, tried)
            if action == "done":
                self.outcome = "completed"
                if key is not None:
                    context.cache.store(self, key, outputs, attempt.directory)
                return outputs
            if action == "fail":
                raise RunError(message)
            if action == "free":
                free += 1
                context.log.warn("%s; running task `%s` again (this does not count as a retry)" % (message, self.name))
            else:
                context.log.info("retrying execution of task `%s` (retry %d)" % (self.name, number + 1))
                self.previous = self.task_value(number, attempt.exit_code, None)
            number += 1

    def adopt_or_cached(self):
        """Where the call starts (CallStart): the attempt of an orphaned earlier run to follow
        (reattach), when its inputs are the same; else the call cache's outputs, on a hit (the
        call is then over: `cached`)."""
        context = self.context
        adopted = context.adoptable.pop(self.name, None)
        self.reattach_key = context.cache.key(self, "weak") if context.reattach else None
        if adopted is not None and adopted.cache_key != self.reattach_key:
            context.log.info("task `%s`: not adopting the job of the earlier run (its inputs changed)" % self.name)
            adopted = None
        if not context.cache.enabled_for(self):
            return CallStart(adopted, None, None)
        key = self.reattach_key if context.cache.digests == "weak" and self.reattach_key else context.cache.key(self)
        cached = None if adopted is not None else context.cache.lookup(self, key)
        if cached is not None:
            self.outcome = "cached"
            context.recorder.record_cached(self)
        return CallStart(adopted, key, cached)

    def attempt_resources(self, number, ran_out, asked_before):
        """The cpu and memory of attempt `number` (> 0): its requirements evaluated again (1.3
        `task.attempt`, `task.previous`); more memory when the attempt before ran out of `ran_out`
        bytes and the task does not choose its retry's memory (it asks for `asked_before` again);
        readmitted to the scheduler when they differ from what the call holds. Returns what the
        requirements ask for."""
        self.requirements, self.hints = self.eval_requirements(number)
        self.cpu = float(self.requirements.get("cpu", 1))
        asked = self.memory = parse_memory(self.requirements.get("memory", _DEFAULT_MEMORY))
        if ran_out is not None and asked == asked_before:
            self.grow_memory(ran_out, number)
        self.fit()
        if (self.cpu, self.memory) != self.reserved:
            self.context.scheduler.readmit(self)
        return asked

    def fit(self):
        """Its cpu and memory within what the backend allows (deny / try_with_max): `task.cpu` and
        `task.memory` see a clamped value."""
        cpu, memory = self.context.backend.check(self.name, self.requirements, self.hints, self.cpu, self.memory)
        if cpu != self.cpu:
            self.cpu = self.requirements["cpu"] = cpu
        if memory != self.memory:
            self.memory = self.requirements["memory"] = memory

    def grow_memory(self, had, number):
        """The attempt before ran out of `had` bytes: this one gets run.task.memory_retry_multiplier
        times that, within what the backend allows (the partition's max_memory_per_task)."""
        factor = self.context.settings.memory_retry_multiplier
        if factor <= 1:
            return
        limit = self.context.backend.limits(self.requirements, self.hints).get("memory")
        grown = int(math.ceil(had * factor))
        if limit is not None and grown > limit:
            grown = max(limit, had)
        if grown <= had:
            self.context.log.warn("task `%s` ran out of memory with %s, the most it may have; attempt %d gets the same" % (
                self.name, _human_bytes(had), number))
        else:
            self.context.log.warn("task `%s` ran out of memory with %s; attempt %d gets %s (memory_retry_multiplier = %g)" % (
                self.name, _human_bytes(had), number, _human_bytes(grown), factor))
        self.memory = self.requirements["memory"] = max(grown, had)  # `task.memory` says what it got

    def run_attempt(self, attempt, free_retry):
        """One attempt: its directory, its command, its job, its outputs. Sets attempt.status to
        completed, failed or preempted (the cluster ended it; only when `free_retry` allows
        another go), and returns the outputs when completed; raises when the run is canceled or
        the attempt cannot start. Its job is released once its outputs are read, however it ended."""
        try:
            return self.attempt_outcome(attempt, free_retry)
        finally:
            if attempt.job is not None:
                attempt.job.release()

    def attempt_outcome(self, attempt, free_retry):
        context = self.context
        work = os.path.join(attempt.directory, "work")
        self.attempt_dirs.append(attempt.directory)
        stdout, stderr = os.path.join(attempt.directory, "stdout"), os.path.join(attempt.directory, "stderr")
        env = dict(self.env)
        if self.task.dialect.task_variable:
            env["task"] = self.task_value(attempt.number, None, None)
        cmd_path = os.path.join(attempt.directory, "command")
        request = self.request(attempt, cmd_path, work, stdout, stderr)
        self.guest = context.backend.guest_inputs(request)  # (once: the outputs see what the command saw)
        if attempt.adopted is None:
            os.makedirs(work)
            ctx = self.ctx(work)
            there, ctx.host_path = self.guest_view(env)
            command = self.render_command(there, ctx)
            with open(cmd_path, "w") as f:
                f.write(command)
        recorder, backend = context.recorder, context.backend
        recorder.attempt_started(attempt, self.reattach_key)
        if context.aborting:
            if attempt.adopted is not None:  # taken from context.adoptable before abort() looked there
                backend.cancel_all([], [attempt.adopted])
            self.cancelled(attempt, None)
        try:
            if attempt.adopted is None:
                self.job = attempt.job = backend.start(request)
            else:  # an earlier run's job, followed instead of run again
                self.job = attempt.job = backend.adopt(request, attempt.adopted)
            if context.aborting:  # abort() ran while the job started and may not have seen it
                backend.cancel_jobs([self.job])
            code = self.job.wait()
        except RunCancelled:
            self.cancelled(attempt, None)
        except WdlError as e:
            recorder.attempt_ended(attempt, "failed", None, e.message)
            raise
        if context.aborting:
            self.cancelled(attempt, code)
        note = self.job.message  # the scheduler ended it, not the command
        attempt.final = self.job.final
        attempt.out_of_memory = self.job.out_of_memory
        if self.job.retry_free and free_retry:
            recorder.attempt_ended(attempt, "preempted", code, note)
            return None
        if note is None and return_code_ok(self.requirements, code, self.task.name):
            try:
                outputs = self.collect_outputs(env, work, stdout, stderr, code)
            except WdlError as e:
                recorder.attempt_ended(attempt, "failed", code, e.message)
                raise
            recorder.attempt_ended(attempt, "completed", code)
            return outputs
        message = failure_message(self.name, code, stdout, stderr)
        why = note or backend.explain(self.job)
        if why:
            message += "\n\n" + why
        recorder.attempt_ended(attempt, "failed", code, message)
        return None

    def request(self, attempt, command, work, stdout, stderr):
        """The attempt as its backend gets it (TaskRequest)."""
        decls = (self.task.inputs or []) + self.task.decls
        environ = {d.name: _env_text(d.name, self.env[d.name]) for d in decls if d.env}
        return TaskRequest(self.name, attempt.key, attempt.name, attempt.number, command, attempt.directory, work,
                           stdout, stderr, environ, self.requirements, self.hints, self.cpu, self.memory,
                           self.input_paths())

    def input_paths(self):
        """The host paths its inputs and private declarations name."""
        return tuple(p for v in self.env.values() for p in paths_in(v))

    def cancelled(self, attempt, code):
        self.context.recorder.attempt_ended(attempt, "canceled", code, "canceled")
        self.outcome = "canceled"
        raise RunCancelled("task `%s` was canceled" % self.name)

    def collect_outputs(self, env, work, stdout, stderr, code):
        ctx, backend = self.ctx(work, stdout, stderr), self.context.backend
        env = dict(self.guest_view(env)[0])
        ctx.host_path = self.job.output_path  # what the standard library reads is what the command saw
        if self.task.dialect.task_variable:
            env["task"] = self.task_value(len(self.attempt_dirs) - 1, code, int(time.time()))
        out = {}
        # its inputs and private declarations were evaluated before the command: the document's choice, not the command's
        inside = OutputSandbox(work, (stdout, stderr), self.written,
                               [p for d in (self.task.inputs or []) + self.task.decls for p in paths_in(self.env.get(d.name))])
        for d in topo_order(self.task.outputs or []):
            v = evaluate(d.expr, env, ctx)
            v = coerce_decl(v, d, "output `%s`" % d.name, warn=self.context.log.warn)
            what = "output `%s` of task `%s`" % (d.name, self.task.name)
            v = localize_outputs(v, d.type_, work, what, backend.wait_visible if backend.files_lag else None,
                                 backend.guest_work, self.job.output_path)
            inside.admit(self.job.copied)
            inside.check(v, what)
            env[d.name] = out[d.name] = v
        return {d.name: out[d.name] for d in self.task.outputs or []}


class OutputSandbox:
    """Where a task's File/Directory outputs may be, symlinks resolved (as in Sprocket and miniwdl):
    its working directory, its stdout and stderr, the files its own write_* calls made, and what its inputs and
    private declarations name. Any other path (`/etc/passwd`, `../../x`, a link out of the working directory, or
    in a Directory output the working directory holds) fails the task."""

    def __init__(self, work, own_files, written, inputs):
        real = os.path.realpath
        self.made = [real(work)]  # where what is there is the task's: a link in it is checked too
        self.dirs = self.made[:1] + [real(p) for p in inputs if "://" not in p and os.path.isdir(p)]
        self.files = {real(p) for p in list(own_files) + list(inputs) if "://" not in p}
        self.written = written  # the task's write_* files: a list its output section's calls still add to
        self.work = work

    def admit(self, copies):
        """Files and directories the task made where its command ran (its container's own, copied out of
        it): its own, as its working directory's are (the links in a directory too)."""
        for p in map(os.path.realpath, copies):
            if not os.path.isdir(p):
                self.files.add(p)
            elif p not in self.made:
                self.made.append(p)
                self.dirs.append(p)

    def check(self, v, what):
        for p in paths_in(v):
            if "://" in p:
                continue
            self.check_path(p, what)
            if isinstance(p, WdlDir) and self.made_here(p):  # its links too: an index or a later task follows them
                for top, dirs, files in os.walk(p):
                    for name in dirs + files:
                        link = os.path.join(top, name)
                        if os.path.islink(link):
                            self.check_path(link, "%s (in directory `%s`)" % (what, p))

    def made_here(self, p):
        real = os.path.realpath(p)
        return any(real == d or real.startswith(d.rstrip("/") + "/") for d in self.made)

    def check_path(self, p, what):
        real = os.path.realpath(p)
        if real in self.files or real in map(os.path.realpath, self.written):
            return
        if not any(real == d or real.startswith(d.rstrip("/") + "/") for d in self.dirs):
            raise RunError("%s: `%s`%s is outside the task's working directory `%s` and is not one of its "
                           "inputs; a task may output only what it wrote there (copy the file in the command)"
                           % (what, p, " (a link to `%s`)" % real if real != os.path.abspath(p) else "", self.work))


def moved_path(p, pairs):
    """`p` under the first of `pairs` (from, to) whose `from` it is or is under, moved under its
    `to`; None when it is under none (pairs longest `from` first: the deepest mount wins)."""
    for src, dst in pairs:
        if p == src or p.startswith(src.rstrip("/") + "/"):
            return dst + p[len(src):] if p != src else dst
    return None


def _env_text(name, v):
    text = json_dumps(value_to_json(v)) if isinstance(v, (list, dict, tuple)) else wdl_str(v)
    if "\0" in text:
        raise RunError("`env %s` holds a NUL byte, which no environment variable can hold" % name)
    return text


def failure_message(name, code, stdout, stderr):
    """Sprocket's message for a failed task: the exit code, where its output is, its last lines."""
    try:
        with open(stderr, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode("utf-8", "replace").splitlines()[-10:]
    except OSError:
        tail = []
    text = "task `%s` failed: process terminated with exit code %d: see `%s` and `%s` for task output" % (
        name, code, stdout, stderr)
    if tail:
        text += "\n\ntask stderr output (last 10 lines):\n\n" + "\n".join("  " + line for line in tail)
    return text


def localize_outputs(v, t, work, what, visible=None, guest_work=None, host_path=None):
    """Make File/Directory outputs absolute paths in the work directory; a missing one is an
    error unless its type is optional, when it becomes None. `visible(path, is_dir)`, where the
    backend's filesystem may lag, waits for a required one to show. A path under `guest_work`
    (the work directory as a container sees it) is the same path under `work`; any other
    absolute one is where `host_path(p)` (Job.output_path) says."""
    def localize(p, pt):
        named = p  # (what a message shows)
        if guest_work and (p == guest_work or p.startswith(guest_work + "/")):
            p = named = work + p[len(guest_work):]
        elif host_path is not None and os.path.isabs(p):
            p = host_path(p)
        path = p if os.path.isabs(p) or "://" in p else os.path.join(work, p)
        exists = os.path.isfile(path) if pt.name == "File" else os.path.isdir(path)
        if not exists and "://" not in p:
            if pt.opt:
                return None
            if visible is None or not visible(path, pt.name == "Directory"):
                raise RunError("%s: %s `%s` does not exist%s" % (
                    what, "file" if pt.name == "File" else "directory", named,
                    " (waited for the shared filesystem to show it)" if visible else ""))
        return (WdlFile if pt.name == "File" else WdlDir)(path)

    return map_typed_paths(v, t, localize)


# ============================================================================================
# 14. Workflows
# ============================================================================================
#
# The scheduler runs on the main thread. A Frame is one instance of a workflow body (the
# workflow's, or one scatter element's, or a conditional's branch); it starts every element
# whose dependencies are done. Declarations are evaluated at once; calls to tasks go to the
# backend through the Scheduler, whose worker threads report back on one queue.


class Frame:
    def __init__(self, wf_run, body, env, calls_dir, indices, on_done):
        self.wf_run = wf_run
        self.context = wf_run.context
        self.todo = list(body)
        self.env = env
        self.calls_dir = calls_dir
        self.indices = indices  # scatter indices, innermost first
        self.on_done = on_done
        self.level = {}
        for el in body:
            for n in element_defines(el):
                self.level[n] = el
        self.done_names = set()
        self.outstanding = 0
        self.finished = False
        self.advancing = self.again = False

    def advance(self):
        if self.advancing:  # a synchronous completion inside start(): the outer loop rescans
            self.again = True
            return
        self.advancing = True
        try:
            while True:
                self.again = False
                ready = [el for el in self.todo if all(n not in self.level or n in self.done_names for n in el.deps)]
                if self.context.stopping:
                    break
                for el in ready:
                    self.todo.remove(el)
                    self.start(el)
                if not ready and not self.again:
                    break
        finally:
            self.advancing = False
        if not self.todo and self.outstanding == 0 and not self.finished:
            self.finished = True
            self.on_done(self)

    def define(self, values):
        self.env.update(values)
        self.done_names.update(values)

    def ctx(self, what="an expression"):
        """Workflow-level evaluation of `what` (a declaration): relative paths resolve against the run directory
        before 1.2, the document's directory after; what the standard library reads is confined."""
        wf_run = self.wf_run
        doc_dir = wf_run.doc_dir
        context = self.context
        scope = ReadScope(context.real_run_dir, wf_run.real_doc_dir, context.readable,
                          "%s of workflow `%s`" % (what, wf_run.workflow.name))
        return EvalContext(doc_dir or context.run_dir, context.tmp_dir, wf_run.workflow.dialect, doc_dir=doc_dir,
                           readable=scope, read_limit=context.settings.read_limit)

    def start(self, el):
        if isinstance(el, Decl):
            ctx = self.ctx("`%s`" % el.name)
            v = evaluate(el.expr, self.env, ctx)
            v = coerce_decl(v, el, "`%s`" % el.name, ctx.doc_dir, ctx.dialect.paths_exist, self.context.log.warn)
            if id(el) in self.wf_run.defaults:
                self.context.admit([v])
            self.define({el.name: v})
        elif isinstance(el, Call):
            self.start_call(el)
        elif isinstance(el, Scatter):
            self.start_scatter(el)
        else:
            self.start_conditional(el)

    def start_call(self, call):
        target = call.callee_def.target
        callee_inputs = {d.name: d for d in target.inputs or []}
        values = {}
        for name, expr, span in call.inputs:
            ctx = self.ctx("input `%s` of call `%s`" % (name, call.name))
            e = expr if expr is not None else Ident(span, name)
            v = evaluate(e, self.env, ctx)
            if ctx.doc_dir and name in callee_inputs:  # a path the caller wrote is the caller's (1.2+)
                try:
                    v = document_paths(v, callee_inputs[name].type_, ctx.doc_dir, ctx.readable.what,
                                       ctx.dialect.paths_exist)
                except EvalError as err:
                    err.span = err.span or e.span
                    raise
            values[name] = v
        path = self.wf_run.input_path + call.name
        values.update(self.context.nested_inputs.get(path, {}))  # none clash: assign_inputs checked
        call_dir = os.path.join(self.calls_dir, call.name + "".join("-%d" % i for i in self.indices))
        display = self.wf_run.display_prefix + call.name + "".join("-%d" % i for i in self.indices)
        self.outstanding += 1

        def done(outputs):
            self.outstanding -= 1
            self.context.admit(outputs.values())
            self.define({call.name: StructValue(outputs.items(), call.name)})
            self.advance()

        if isinstance(target, Task):
            tr = TaskRun(self.context, target, values, call_dir, display, self.context.overrides.get(path, {}))
            self.context.scheduler.submit(tr, done)
        else:
            sub = WorkflowRun(self.context, target, values, call_dir, path + ".", done, display + ".")
            sub.start()

    def start_scatter(self, sc):
        items = evaluate(sc.expr, self.env, self.ctx("the scatter over `%s`" % sc.variable))
        if not isinstance(items, list):
            raise EvalError("scatter needs an Array", sc.expr.span)
        inner_names = [n for el in sc.body for n in element_defines(el)]
        results = [None] * len(items)
        remaining = [len(items)]
        self.outstanding += 1

        def gather():
            values = {}
            for n in inner_names:
                col = [r[n] for r in results]
                if col and isinstance(col[0], StructValue) and col[0].type_name == n and find_call(sc.body, n):
                    values[n] = StructValue(((k, [c[k] for c in col]) for k in col[0]), n)
                else:
                    values[n] = col
            if not items:
                for n in inner_names:
                    values[n] = self._empty_call(sc.body, n)
            self.outstanding -= 1
            self.define(values)
            self.advance()

        if not items:
            gather()
            return
        limit = self.context.scatter_limit

        def child_done(i):
            def cb(frame):
                results[i] = frame.env
                remaining[0] -= 1
                if pending:  # deferred, so a long scatter never recurses
                    self.context.scheduler.deferred.append(Deferred(lambda j=pending.pop(): launch(j), self.context))
                if remaining[0] == 0:
                    gather()
            return cb

        def launch(i):
            env = dict(self.env)
            env[sc.variable] = items[i]
            Frame(self.wf_run, sc.body, env, self.calls_dir, (i,) + self.indices, child_done(i)).advance()

        order = list(range(len(items)))
        first = order[:limit] if limit else order
        pending = order[len(first):][::-1]
        for i in first:
            launch(i)

    def _empty_call(self, body, name):
        """The value of a name from a scatter over nothing: [] (or a call whose outputs are [])."""
        call = find_call(body, name)
        if call is None:
            return []
        return StructValue(((k, []) for k in call.callee_def.outputs), name)

    def start_conditional(self, cond):
        ctx = self.ctx("a condition")
        chosen = None
        for c, body in cond.clauses:
            v = True if c is None else evaluate(c, self.env, ctx)
            if v is None or not isinstance(v, bool):
                raise EvalError("the condition must be a Boolean", c.span)
            if v:
                chosen = body
                break
        all_names = []
        for _, body in cond.clauses:
            for el in body:
                for n in element_defines(el):
                    if n not in all_names:
                        all_names.append(n)
        self.outstanding += 1

        def done(frame):
            values = {}
            for n in all_names:
                if frame is not None and n in frame.level:
                    values[n] = frame.env[n]
                else:
                    call = next((find_call(b, n) for _, b in cond.clauses if find_call(b, n)), None)
                    values[n] = StructValue(((k, None) for k in call.callee_def.outputs), n) if call else None
            self.outstanding -= 1
            self.define(values)
            self.advance()

        if chosen is None:
            done(None)
        else:
            Frame(self.wf_run, chosen, dict(self.env), self.calls_dir, self.indices, done).advance()


class WorkflowRun:
    """One run of a workflow: its inputs, its body's Frame, then its outputs."""

    def __init__(self, context, workflow, given, calls_root, input_path, on_done, display_prefix=""):
        self.context = context
        self.workflow = workflow
        self.given = given
        self.calls_dir = os.path.join(calls_root, "calls")
        self.input_path = input_path  # `sub.` for the calls of subworkflow call `sub` (nested inputs)
        self.display_prefix = display_prefix  # the same with scatter indices (`sub-1.`), for messages
        self.on_done = on_done
        self.doc_dir = document_dir(workflow) if workflow.dialect.paths_from_document else None
        self.real_doc_dir = os.path.realpath(self.doc_dir) if self.doc_dir and not is_url(self.doc_dir) else None

    def start(self):
        wf = self.workflow
        env = {}
        body = []
        for d in wf.inputs or []:
            if not bind_input(d, self.given, env, "workflow `%s`" % wf.name):
                body.append(d)  # its default, evaluated by the Frame
        self.defaults = {id(d) for d in body}  # inputs by default, at every level: the document's choice
        known = {d.name for d in wf.inputs or []}
        for k in self.given:
            if k not in known:
                raise InputError("workflow `%s` has no input `%s`" % (wf.name, k))
        Frame(self, body + wf.body, env, self.calls_dir, (), self.finish).advance()

    def finish(self, frame):
        env = dict(frame.env)
        outputs = {}
        for d in self.workflow.outputs or []:
            v = coerce_decl(evaluate(d.expr, env, frame.ctx("output `%s`" % d.name)), d, "output `%s`" % d.name,
                            warn=self.context.log.warn)
            env[d.name] = outputs[d.name] = v
        self.on_done(outputs)


def in_call(error, tr):
    """Name the call an evaluation error happened in."""
    error.message = "in call `%s`: %s" % (tr.name, error.message)
    return error


Done = collections.namedtuple("Done", "task_run on_done result error")
Done.__doc__ = ("A worker's message to the Scheduler: a task run is over, with its outputs (`result`, for `on_done`) "
                "or the error that ended it.")
Readmit = collections.namedtuple("Readmit", "task_run granted")
Readmit.__doc__ = ("A worker's message to the Scheduler: its task run's next attempt needs other cpu or memory; the "
                   "worker waits until the threading.Event `granted` is set, once they are reserved.")
Deferred = collections.namedtuple("Deferred", "fn context")
Deferred.__doc__ = ("Scheduler-side work left for the scheduler's next round (so that a long scatter never recurses): "
                    "fn(), under guard() for the part of the run `context` (None: the run itself).")


class Scheduler:
    """Places task runs on the backend as cpu and memory allow; collects their results (Done,
    Readmit from its workers) and keeps the counts of task runs in each state."""

    def __init__(self, context):
        self.context = context
        self.events = queue.Queue()
        self.waiting = []
        self.idle = []  # inboxes of idle worker threads
        self.deferred = collections.deque()  # Deferred
        self.timed = []  # [(time.monotonic() due, Deferred)], soonest first: see defer_until()
        self.running = set()
        self.readmits = []  # Readmit: retries waiting for their new cpu and memory
        self.errors = []
        self.free_cpu = context.backend.cpu
        self.free_memory = context.backend.memory
        self.counts = dict.fromkeys(("waiting", "running", "completed", "failed", "cached"), 0)

    def submit(self, tr, on_done):
        try:
            tr.prepare()
        except EvalError as e:
            raise in_call(e, tr)
        tr.fit()
        self.waiting.append((tr, on_done))
        self.counts["waiting"] += 1
        self.pump()

    def defer_until(self, due, deferred):
        """Deferred work for the first round at or after `due` (time.monotonic()): the scheduler's
        thread waits for it as it waits for its workers' messages, never asleep."""
        self.timed.insert(bisect.bisect([t for t, _ in self.timed], due), (due, deferred))

    def readmit(self, tr):
        """From a worker: the task's next attempt needs other cpu or memory than it holds. Give
        them back and wait until its new amounts fit, as a new task would."""
        granted = threading.Event()
        self.events.put(Readmit(tr, granted))
        while not granted.wait(0.5):
            if self.context.aborting:
                raise RunCancelled("task `%s` was canceled" % tr.name)

    def pump(self):
        """Start waiting task runs that fit, in order, looking a bounded way down the queue
        (so a big task does not block small ones, and a long queue costs no more). A retry
        waiting for new amounts goes first, even while the run stops (it is still running)."""
        for entry in list(self.readmits):
            tr = entry.task_run
            if tr.cpu <= self.free_cpu + 1e-9 and tr.memory <= self.free_memory:
                self.readmits.remove(entry)
                self.reserve(tr)
                entry.granted.set()
        i = 0
        while i < min(len(self.waiting), 64) and not self.context.stopping and self.free_cpu > 1e-9:
            tr, on_done = self.waiting[i]
            if tr.cpu <= self.free_cpu + 1e-9 and tr.memory <= self.free_memory:
                del self.waiting[i]
                self.running.add(tr)
                self.reserve(tr)
                self.hand_to_worker(tr, on_done)
            else:
                i += 1

    def reserve(self, tr):
        tr.reserved = Resources(tr.cpu, tr.memory)
        self.free_cpu -= tr.cpu
        self.free_memory -= tr.memory
        self.counts["waiting"] -= 1
        self.counts["running"] += 1

    def release(self, tr):
        self.free_cpu += tr.reserved.cpu
        self.free_memory += tr.reserved.memory
        tr.reserved = Resources(0, 0)
        self.counts["running"] -= 1

    def task_ended(self, tr):
        """A task run is over: counted by how it ended (canceled ones as failed)."""
        status = tr.outcome or "failed"
        self.counts["failed" if status == "canceled" else status] += 1

    def hand_to_worker(self, tr, on_done):
        """Worker threads are reused; there are never more than tasks running at once."""
        if self.idle:
            self.idle.pop().put((tr, on_done))
            return
        inbox = queue.SimpleQueue()
        inbox.put((tr, on_done))
        threading.Thread(target=self.worker, args=(inbox,), daemon=True).start()

    def worker(self, inbox):
        while True:
            tr, on_done = inbox.get()
            try:
                result, error = tr.execute(), None
            except EvalError as e:
                result, error = None, in_call(e, tr)
            except WdlError as e:
                result, error = None, e
            except Exception as e:  # a bug: carried to the main thread, reported as internal
                import traceback  # only for a bug: importing it costs every start 2 ms

                e.__traceback_text__ = getattr(e, "__traceback_text__", None) or traceback.format_exc()
                result, error = None, e
            self.idle.append(inbox)
            self.events.put(Done(tr, on_done, result, error))

    def loop(self, is_done):
        """Run until is_done() or a failure with nothing left running."""
        while True:
            # what runs is left to the successor (Run.hand_off); a run whose tasks are all over completes
            if self.context.handing_off and not is_done():
                raise RunHandedOff("the run was handed off to a successor")
            now = time.monotonic()
            while self.timed and self.timed[0][0] <= now:
                self.deferred.append(self.timed.pop(0)[1])
            while self.deferred and not self.context.stopping:
                work = self.deferred.popleft()
                self.guard(work.fn, work.context)
            if is_done() or (self.errors or self.context.stopping) and not self.running:
                break
            for look in self.context.each_round:
                look()
            if not self.running and not self.waiting and not self.deferred and not self.timed and self.events.empty():
                raise RunError("the run cannot make progress: nothing is running and nothing can start "
                               "(a bug in sprocket.py's scheduling, or an undetected dependency cycle)")
            try:  # a timeout, so signals, cancellation and timed work are seen promptly
                wait = min(0.5, max(0.0, self.timed[0][0] - time.monotonic())) if self.timed else 0.5
                events = [self.events.get(timeout=wait)]
            except queue.Empty:
                continue
            while True:  # and whatever else has ended meanwhile: their rows go in one commit
                try:
                    events.append(self.events.get_nowait())
                except queue.Empty:
                    break
            ended = []
            for event in events:
                if isinstance(event, Readmit):
                    self.release(event.task_run)
                    self.counts["waiting"] += 1
                    self.readmits.append(event)
                    continue
                tr = event.task_run
                self.running.discard(tr)
                unadmitted = [r for r in self.readmits if r.task_run is tr]  # canceled while it waited
                if unadmitted:
                    self.readmits.remove(unadmitted[0])
                    self.counts["waiting"] -= 1
                else:
                    self.release(tr)
                ended.append(event)
            if all(done.error is None for done in ended):
                self.pump()  # the cpu they freed goes to the next tasks while their rows are committed
            if ended:
                self.context.recorder.flush_now()  # their rows are written before they are reported done
            for done in ended:
                self.task_ended(done.task_run)
                if done.error is not None:
                    self.fail(done.error, done.task_run.context)
                elif not (self.context.stopping or done.task_run.context.stopping):
                    self.guard(lambda: done.on_done(done.result), done.task_run.context)
            self.pump()
        if self.errors:
            real = [e for e in self.errors if not isinstance(e, RunCancelled)]
            raise (real or self.errors)[0]
        if not is_done():
            raise RunCancelled("the run was canceled")

    def guard(self, fn, context=None):
        """Run scheduler-side work (of `context`, a part of the run, or the run's own); a user
        error fails it (fail())."""
        try:
            fn()
        except WdlError as e:
            self.fail(e, context)

    def fail(self, error, context=None):
        """A failure stops the run (running tasks finish; under `fail = "fast"` they are
        canceled), or, in a part of the run (RunContext.part), cancels that part's tasks and goes
        to its on_failure."""
        if context is not None and context.on_failure is not None and isinstance(error, WdlError):  # (a bug: the run's)
            context.abort()
            context.on_failure(error)
            return
        self.errors.append(error)
        self.context.stopping = True
        if self.context.settings.fail_fast:
            self.context.abort()


# ============================================================================================
# 15. Backends
# ============================================================================================
#
# The backends of the contract in section 12 (Backend, Job), each registered under its `type`:
# LocalBackend (process groups on this host), SlurmApptainerBackend (batch jobs running
# Apptainer), ContainerBackend (Docker or Podman containers on this host) and
# LocalApptainerBackend (Apptainer on this host). A new backend is a Backend subclass with @register_backend; nothing else changes.


def oom_kills():
    """How many processes the kernel's out-of-memory killer ended in this process's memory
    cgroup (v2 `memory.events`, v1 `memory.oom_control`), or None where that cannot be read."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    paths = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        path = path.rstrip("/")
        if controllers == "":
            paths += ["/sys/fs/cgroup%s/memory.events" % path, "/sys/fs/cgroup/memory.events"]
        elif "memory" in controllers.split(","):
            paths += ["/sys/fs/cgroup/memory%s/memory.oom_control" % path, "/sys/fs/cgroup/memory/memory.oom_control"]
    for path in paths:
        try:
            with open(path) as f:
                m = re.search(r"^oom_kill (\d+)$", f.read(), re.M)
        except OSError:
            continue
        if m:
            return int(m.group(1))
    return None


def process_start(pid):
    """When process `pid` started, as the kernel tells it (this boot's id and the clock tick of its
    start, from /proc), so that a pid since given to another process is never taken for it; None
    when there is no such process or /proc cannot tell."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # fields from the 3rd (state); starttime is the 22nd
    return None if fields[0] == "Z" else "%s:%s" % (boot, fields[19])


def kill_process_group(pgid, started):
    """SIGKILL the process group `pgid` if its leader is still the process that started at
    `started` (process_start()); True when it was."""
    import signal

    if started is None or process_start(pgid) != started:
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# The local shell sources the command in a subshell, so that `$$` is still the process group's
# leader, then writes its exit status to `<attempt dir>/rc` as a Slurm job does: a run that adopts
# the attempt after the engine died can tell how it ended. (Builtins only: an `mv` would cost a
# task more than the subshell does; the file is read once the process group is gone.)
_LOCAL_WRAPPER = '( set --; . "$0" ); rc=$?; printf "%d\\n" "$rc" > "$1"; exit "$rc"'


LocalProcess = collections.namedtuple("LocalProcess", "process_group process_started")
LocalProcess.__doc__ = "A local task's process group and its leader's start time (process_start()), as in Adoptable."


def task_processes(roots):
    """{attempt dir (real path): LocalProcess} for the live local tasks on this host
    whose attempt directory is one of `roots` or below one, found by their shell's command line
    (`<shell> -c <wrapper> <attempt dir>/command ...`): also those a dead engine started but had not
    yet recorded."""
    roots = tuple(os.path.realpath(r).rstrip("/") + "/" for r in roots)
    out = {}
    for entry in os.listdir("/proc") if roots and os.path.isdir("/proc") else ():
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
            pid = int(entry)
            leader = os.getpgid(pid) == pid
        except (OSError, ValueError):
            continue
        if leader and len(argv) > 3 and argv[1:3] == [b"-c", _LOCAL_WRAPPER.encode()]:
            adir = os.path.dirname(os.path.realpath(os.fsdecode(argv[3])))
            started = process_start(pid)
            if (adir + "/").startswith(roots) and started is not None:
                out[adir] = LocalProcess(pid, started)
    return out


def kill_task_processes(roots, recorded=(), spare=frozenset()):
    """SIGKILL the local tasks of this host below the directories `roots` (found by their command
    line: also those an engine had not recorded) and the process groups `recorded` (LocalProcess),
    but those whose attempt directory (a real path) is in `spare`; each only while its leader is the
    process found or recorded (its start time), never a recycled pid. Returns [(attempt directory,
    or None for one only recorded, process group)] of those killed."""
    groups = {tuple(p): None for p in recorded}
    groups.update((tuple(p), adir) for adir, p in (task_processes(roots) if roots else {}).items())
    return [(adir, pgid) for (pgid, started), adir in sorted(groups.items(), key=lambda g: g[0][0])
            if adir not in spare and kill_process_group(pgid, started)]


class LocalProcessJob(Job):
    """A job of the local backend: a process group on this host, started here or adopted."""

    def running(self):
        """Whether its process group may still run (so close() must kill it)."""
        raise NotImplementedError


class LocalJob(LocalProcessJob):
    """A task attempt as a local process group (so a cancel kills everything it started); the
    group's id and its leader's start time go into sprocket.db, for the run that comes after a crash."""

    def __init__(self, argv, work, stdout, stderr, environ):
        import subprocess

        self.oom_kills = oom_kills()  # a kill by the OOM killer shows as this count going up
        self.figures = {}
        self.started_at = time.time()
        env = dict(os.environ)
        env.update(environ)
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            try:
                self.proc = subprocess.Popen(argv, cwd=work, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                             env=env, start_new_session=True)
            except OSError as e:
                raise RunError("cannot start the task's shell `%s` (set by `run.task.shell`): %s" % (
                    argv[0], e.strerror or e))
        self.pgid, self.process_started = self.proc.pid, process_start(self.proc.pid)

    def wait(self):
        try:  # wait4: the CPU time and peak memory of the task's processes, with its exit status
            _, status, ru = os.wait4(self.proc.pid, 0)
            code = self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.figures = {"cpu_seconds": ru.ru_utime + ru.ru_stime,
                            "peak_memory": ru.ru_maxrss * (1 if sys.platform == "darwin" else 1024)}
        except ChildProcessError:  # close() reaped it first
            code = self.proc.wait()
        self.figures["ended_at"] = time.time()
        code = 128 - code if code < 0 else code  # killed by signal N -> 128 + N
        if code == 137 and self.oom_kills is not None:
            self.out_of_memory = (oom_kills() or 0) > self.oom_kills
        return code

    def usage(self):
        """What it used, as the `attempt_usage` row has it (None: not known)."""
        import socket

        return dict(self.figures, node=socket.gethostname(), started_at=self.started_at)

    def running(self):
        return self.proc.poll() is None  # not yet reaped: its pid is still its own

    def cancel(self):
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class AdoptedLocalJob(LocalProcessJob):
    """An attempt a dead run started on this host, followed to its end: its process group is
    watched (its leader's pid and start time) until it is gone, then its `rc` file read."""

    def __init__(self, adir, pgid, started):
        self.adir, self.pgid, self.started = adir, pgid, started
        self.cancelled = threading.Event()

    def wait(self):
        while self.running() and not self.cancelled.wait(0.2):
            pass
        code = read_exit_status(self.adir)
        if code is None:  # killed with the engine, or canceled now: run it again
            self.message, self.retry_free = "its process ended without an exit status while no engine watched it", True
            return 1
        return code

    def running(self):
        return self.started is not None and process_start(self.pgid) == self.started

    def cancel(self):
        self.cancelled.set()
        kill_process_group(self.pgid, self.started)


def read_exit_status(adir):
    """The exit status a job wrote in `<attempt dir>/rc`, or None while there is none."""
    try:
        with open(os.path.join(adir, "rc")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def host_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024 ** 3


@register_backend
class LocalBackend(Backend):
    """Runs each attempt as `bash command` in its work directory, no container."""

    kind = "local"
    SETTINGS = {
        "cpu": Setting("int", None, "local, docker, podman, apptainer: CPUs tasks may use at once (default: all)"),
        "memory": Setting("size", None, "local, docker, podman, apptainer: memory tasks may use at once (default: all)"),
    }

    def __init__(self, context, name, settings):
        super().__init__(context, self.kind, settings)  # `local` in sprocket.db, whatever the table's name
        self.cpu = float(settings["cpu"] or os.cpu_count() or 1)
        self.memory = int(settings["memory"] or host_memory())
        self.warned_container = False
        self.live = set()  # jobs started and not yet known to be finished
        self.lock = threading.Lock()
        if self.kind == "local":
            context.log.info("the engine is configured to use the local backend: tasks will not be run inside of a container")

    @classmethod
    def check_settings(cls, name, settings, where):
        for k, have in (("cpu", os.cpu_count() or 1), ("memory", host_memory())):
            v = settings.get(k)
            if v is not None and (parse_memory(v) if k == "memory" else v) > have:
                raise ConfigError("`run.backends.%s.%s = %s`%s is more than this host has (%s)" % (
                    name, k, json_dumps(v) if isinstance(v, str) else v, where(k), have if k == "cpu" else _human_bytes(have)))

    def check(self, name, requirements, hints, cpu, memory):
        if requirements.get("container") and not self.warned_container:
            self.warned_container = True
            self.context.log.warn("the local backend runs tasks on this host without a container; `container` requirements are ignored")
        return super().check(name, requirements, hints, cpu, memory)

    def start(self, request):
        rc = os.path.join(request.directory, "rc")
        job = self.start_job([self.shell, "-c", _LOCAL_WRAPPER, request.command, rc], request.work, request.stdout,
                             request.stderr, request.env)
        self.context.recorder.record_process(request, job.pgid, job.process_started)
        return job

    def adopt(self, request, adopted):
        """Follow an attempt of a dead run: one still running (the same process, by its start
        time) is waited for; one that ended is read from its exit status file."""
        job = AdoptedLocalJob(adopted.directory, adopted.process_group, adopted.process_started)
        with self.lock:
            self.live.add(job)
        return job

    def find_jobs(self, adirs):
        """The live tasks of attempts whose process group a dead engine had not yet recorded."""
        found = task_processes(adirs)
        real = {adir: os.path.realpath(adir) for adir in adirs}
        return {adir: found[r]._asdict() for adir, r in real.items() if r in found}

    def start_job(self, argv, work, stdout, stderr, environ):
        job = LocalJob(argv, work, stdout, stderr, environ)
        with self.lock:
            self.live.add(job)
        return job

    def explain(self, job):
        if job.out_of_memory:
            return ("the kernel's out-of-memory killer ended it: raise the task's `memory` requirement (or set "
                    "`run.task.memory_retry_multiplier`)")
        return None

    def close(self):
        """However the run ended (even on a bug), none of its processes is left running."""
        with self.lock:
            live = [j for j in self.live if j.running()]
            self.live.clear()
        self.cancel_jobs(live)

    @classmethod
    def cancel_dead(cls, context, settings, attempts, run_dirs):
        """Kill the process groups of the attempts and those below the run directories that the
        dead engine started but had not recorded (kill_task_processes)."""
        return len(kill_task_processes(run_dirs, [LocalProcess(a.process_group, a.process_started) for a in attempts
                                                  if a.process_group]))

    @classmethod
    def doctor(cls, context, name, settings, out_dir):
        """The shell that runs the commands, and what tasks may use of this host (the configuration
        refused more than it has when it was read)."""
        shell = context.settings.shell
        code, out, err = _run_tool([shell, "-c", "echo ok"], timeout=30)
        if code == 0 and out.strip() == "ok":
            yield Check("the shell `%s` runs commands" % shell, None, None)
        else:
            yield Check("the shell `%s`" % shell, (err or out).strip() or "exit %d" % code,
                        "install it, or set `run.task.shell` to a shell this host has (e.g. \"bash\")")
        cpu, memory = settings["cpu"] or os.cpu_count() or 1, settings["memory"] or host_memory()
        yield Check("tasks may use %s CPU(s) and %s of this host's %d and %s (run.backends.%s.cpu, .memory)" % (
            cpu, _human_bytes(memory), os.cpu_count() or 1, _human_bytes(host_memory()), name), None, None)


def make_backend(context, name, settings):
    """The backend a run uses: the registered class of its `type`, given its `run.backends.<name>`
    settings as the configuration read them (read_backend_settings())."""
    return BACKENDS[settings["type"]](context, name, settings)


# -- Slurm + Apptainer ---------------------------------------------------------------------
#
# Each attempt becomes one `sbatch` job running `apptainer exec`, or one element of a job
# array with the other scatter elements ready at once. Nothing blocks per job on the submit
# host: sbatch runs in a bounded pool, and one monitor thread looks at the jobs' exit status
# files and asks Slurm about every live job with one batched `sacct` per interval (or
# `squeue` + `scontrol` where accounting is off), then wakes the tasks whose jobs ended. The
# attempt is in sprocket.db before its sbatch runs and its job id right after, so a later run
# can adopt the job when this process dies. SlurmApptainerBackend is a facade over four parts:
# SlurmClient (the commands), ImageCache, ArrayGatherer and JobMonitor (the jobs' state).

_SLURM_TERMINAL = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                   "PREEMPTED", "TIMEOUT", "REVOKED")
_SLURM_INFRASTRUCTURE = ("NODE_FAIL", "PREEMPTED", "BOOT_FAIL")  # retried without spending max_retries
_SLURM_NEVER_CLEARS = ("PartitionConfig", "PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints",
                       "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed",
                       "DependencyNeverSatisfied", "ReqNodeNotAvail, UnavailableNodes")
_SBATCH_TRANSIENT = ("Socket timed out", "Resource temporarily unavailable", "Unable to contact slurm controller",
                     "Connection refused", "Connection timed out", "slurm_persist_conn_open", "Zero Bytes were transmitted",
                     "temporarily unable to accept job", "Transport endpoint is not connected",
                     "Connection reset by peer", "Communication connection failure", "Broken pipe",
                     "Slurm controller not responding", "backup controller in standby mode")
_PULL_PERMANENT = ("manifest unknown", "403 (Forbidden)", "403 Forbidden", "unauthorized", "not found: manifest")
_IDS_PER_CALL = 1000  # job ids per sacct/squeue/scancel command line: a default max_queued_jobs in one call
_SBATCH_TRIES = 10  # sbatch calls for one job when the controller does not answer: about 2.5 minutes
_VANISHED_GRACE = 180.0  # seconds a job may be unknown to every source before it is failed
_ACCOUNTING_WAIT = 10.0  # seconds to wait for Slurm to say why a job whose rc file shows a failure ended
_ACCOUNTING_END_WAIT = 3.0  # seconds the end of a run waits for sacct to have the last jobs' usage
_ACCOUNTING_SETTLE = 2.5  # seconds after the last job's end by which slurmdbd has recorded it
_ACCOUNTING_LAG = 0.3  # seconds after a job's end by which slurmdbd has usually recorded it (0.24 s measured)
_FIRST_LOOK = 0.1  # seconds: the shortest time between two looks at a job's exit status file
_GATHER_QUIET = 0.1  # seconds without a new scatter element before the gathered ones go out as an array
_GATHER_MAX = 1.0  # seconds the first of them waits at most
_ARRAY_MIN = 16  # fewer elements go out as jobs of their own: Slurm starts a lone job sooner than an array's
_GATHER_HOLD = 120.0  # seconds they may wait while the queue holds a wave of the run's jobs


_SCRATCH_RE = re.compile(r"^[A-Za-z0-9_./${}~+@%=-]+$")  # words and $VARIABLES: no quote, space, `(` or backtick
_SCRATCH = "$sprocket_scratch"  # in a bind's host path: the attempt's directory on the node's scratch


def _scratch_problem(value):
    """`scratch` is put in the batch script in double quotes, so that the node expands its $VARIABLES:
    nothing else of the shell's may be in it."""
    if _SCRATCH_RE.match(value) is None:
        return ("must be a path, or one with $VARIABLES such as \"$TMPDIR\" or \"/local/$USER\" (letters, digits, "
                "`_./${}~+@%%=-`), not %s" % json.dumps(value))
    return None


_EXCLUDED_NOTE = "node `%s` is excluded from the run's later jobs"  # report_html finds it in the attempts' errors


_PARTITION_KEYS = ("default_slurm_partition", "short_task_slurm_partition", "gpu_slurm_partition", "fpga_slurm_partition")
_PARTITION_SETTINGS = {
    "name": Setting("str", None, "slurm: the partition's name"),
    "max_cpu_per_task": Setting("int", None, "slurm: the most CPUs a task may get there"),
    "max_memory_per_task": Setting("size", None, "slurm: the most memory a task may get there"),
    "scratch": Setting("str", None, "slurm: node-local scratch on the partition's nodes (instead of `scratch`)",
                       _scratch_problem),
    "account": Setting("str", None, "slurm: the account (`--account`) of the jobs sent there"),
    "qos": Setting("str", None, "slurm: the QOS (`--qos`) of the jobs sent there"),
    "constraint": Setting("str", None, "slurm: the node features (`--constraint`) the jobs sent there need"),
    "reservation": Setting("str", None, "slurm: the reservation (`--reservation`) of the jobs sent there"),
    "extra_sbatch_args": Setting("list", [], "slurm: extra sbatch arguments of the jobs sent there"),
}
_SLURM_SETTINGS = dict({  # its `run.backends.<name>` keys (SlurmApptainerBackend.SETTINGS)
    "interval": Setting("int", 60, "slurm: seconds between scheduler queries (pending reasons; jobs that "
                        "ended without writing their exit status file)"),
    "completion_interval": Setting("seconds", 1, "slurm: seconds between looks at the attempts' exit status "
                                   "files (no scheduler call)"),
    "exit_read_timeout": Setting("seconds", 270, "slurm: how long to wait for a job's exit status file and "
                                 "outputs to show on the shared filesystem once Slurm says it ended"),
    "max_queued_jobs": Setting("int", 1000, "slurm: jobs of the run in the queue at once, across every "
                               "scatter (0: no limit)"),
    "submit_rate_limit": Setting("rate", None, 'slurm: at most this many sbatch calls per period, e.g. '
                                 '"20/1s" or "200/1min" (default: no limit)'),
    "max_concurrency": Setting("int", 10, "slurm: sbatch/scancel processes at once"),
    "max_scatter_concurrency": Setting("int", 200, "slurm: scatter elements submitted at once"),
    "job_arrays": Setting("bool", True, "slurm: scatter elements ready at once that get the same sbatch "
                          "options go out as one `sbatch --array`"),
    "sbatch.args": Setting("list", [], "slurm: extra sbatch arguments"),
    "sbatch.conditional": Setting("conditionals", [], "slurm: sbatch arguments added when a condition holds"),
    "extra_sbatch_args": Setting("list", [], "slurm: extra sbatch arguments (the seed's name for sbatch.args)"),
    "job_name_prefix": Setting("str", None, "slurm: prefix of job names (`<prefix>-<task attempt name>`)",
                               lambda v: "must be at most 100 bytes" if len(v.encode()) > 100 else None),
    # Placement (the sbatch line says what was chosen): a task's `slurm_<key>` runtime/hints key >
    # `run --slurm-<key>` > the task's partition table > these.
    "account": Setting("str", None, "slurm: the account (`--account`) jobs are charged to; a task's `slurm_account` "
                       "key, `run --slurm-account` or a partition table's `account` go first"),
    "qos": Setting("str", None, "slurm: the QOS (`--qos`) of the jobs; a task's `slurm_qos` key, `run --slurm-qos` "
                   "or a partition table's `qos` go first"),
    "constraint": Setting("str", None, "slurm: node features (`--constraint`) the jobs need; a task's "
                          "`slurm_constraint` key, `run --slurm-constraint` or a partition table's `constraint` go first"),
    "reservation": Setting("str", None, "slurm: the reservation (`--reservation`) of the jobs; a partition "
                           "table's `reservation` goes first"),
    "memory_flag": Setting(("mem", "mem-per-cpu", "none"), "mem", 'slurm: how a task\'s memory reaches sbatch: "mem" '
                           '(`--mem`), "mem-per-cpu" (`--mem-per-cpu`: the memory over the CPUs, rounded up to a MiB) '
                           'or "none" (the site\'s default)'),
    "gpu_flag": Setting(("gpus-per-task", "gres"), "gpus-per-task", 'slurm: how a task\'s GPUs reach sbatch: '
                        '"gpus-per-task" (`--gpus-per-task=[type:]N`) or "gres" (`--gres=gpu[:type]:N`); the type is '
                        'the task\'s `gpuType` (or a String `gpu` hint)'),
    "apptainer.executable": Setting("str", "apptainer", "slurm: the apptainer (or singularity) command"),
    "apptainer.image_cache_dir": Setting("path", None, "slurm: a shared directory of pulled images"),
    "apptainer.extra_args": Setting("list", [], "slurm: extra `apptainer exec` arguments"),
    "extra_apptainer_exec_args": Setting("list", [], "slurm: extra `apptainer exec` arguments (the seed's name)"),
    "scratch": Setting("str", None, 'slurm: node-local scratch for the container\'s /tmp and TMPDIR: "$TMPDIR", a '
                       'path, or one with $VARIABLES (expanded on the node); a task\'s `disks` becomes --tmp',
                       _scratch_problem),
    "scratch_work": Setting("bool", False, "slurm: the working directory on the scratch too; it is copied back "
                            "(cp -a) to the attempt directory before the exit status is written"),
    "max_excluded_nodes": Setting("int", 5, "slurm: at most this many nodes excluded (--exclude) from the run's "
                                  "later jobs after failures of the node's, not the task's (0: none)"),
    "requeue": Setting("bool", False, "slurm: pass --requeue (preemptible partitions)"),
}, **{"%s.%s" % (p, k): row for p in _PARTITION_KEYS for k, row in _PARTITION_SETTINGS.items()})


def _run_tool(argv, timeout=120, env=None):
    """(exit status, stdout, stderr) of a Slurm or Apptainer command (in `env`, else this process's
    environment); 127 when it is missing."""
    import subprocess

    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, universal_newlines=True, env=env)
    except FileNotFoundError:
        return 127, "", "%s: command not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s timed out after %d s" % (argv[0], timeout)
    return p.returncode, p.stdout, p.stderr


# The `SLURM_*` variables the Slurm commands still get inside a job: where the cluster is.
_SLURM_KEPT_VARIABLES = ("SLURM_CONF", "SLURM_CLUSTERS")


def slurm_command_environment(environ=None):
    """The environment of the Slurm commands the engine runs: this process's (`environ`), without
    the `SLURM_*` variables of a job it runs in (a head job, an salloc). sbatch and srun read them
    as requests of their own (memory, CPUs, tasks, partition, account, name: each task's would be
    the enclosing job's) and pass them on to the job; SLURM_TIME_FORMAT would change what sacct
    prints. SLURM_CONF and SLURM_CLUSTERS say which cluster to talk to, and stay."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if not k.startswith("SLURM_") or k in _SLURM_KEPT_VARIABLES}


def _run_slurm_tool(argv, timeout=120):
    """_run_tool for a Slurm command: in slurm_command_environment()."""
    return _run_tool(argv, timeout, slurm_command_environment())


def slurm_batch_script(apptainer, environ, binds, gpu, extra_args, image, shell, adir, scratch=None, work=None):
    """The batch script of one attempt: `apptainer exec` of its command, then, as its last act
    (the command's output closed), the exit status in `<attempt dir>/rc`, written to `rc.tmp`
    and renamed so that it is never read half-written. With `scratch` (a path the node expands),
    binds whose host path starts with _SCRATCH are in a directory made there for the attempt and
    removed when the job ends; with `work` (scratch_work) the working directory is copied there
    first and back (cp -a) before the exit status is written."""
    import shlex

    for src, dst, _ in binds:
        for path in (dst,) if src.startswith(_SCRATCH + "/") else (src, dst):
            if "," in path or ":" in path:
                raise RunError("`%s` cannot be bound into the container: `apptainer --bind` has no way to write a "
                               "`,` or `:` in a path; rename the file or directory" % path)
    env_prefix = "SINGULARITYENV_" if "singularity" in os.path.basename(apptainer) else "APPTAINERENV_"
    lines = ["#!/usr/bin/env bash"]
    lines += ["export %s%s=%s" % (env_prefix, k, shlex.quote(v)) for k, v in sorted(environ.items())]
    rows = [[apptainer, "exec"], ["--pwd", "/mnt/task/work"], ["--containall", "--cleanenv"]]
    rows += [["--bind", "%s:%s:%s" % (src, dst, mode)] for src, dst, mode in binds]
    if gpu:
        rows.append(["--nv"])
    rows += [[a] for a in extra_args]
    rows += [[image], [shell, "-c", "%s /mnt/task/command > /mnt/task/stdout 2> /mnt/task/stderr" % shell]]
    rc, usage = shlex.quote(os.path.join(adir, "rc")), shlex.quote(os.path.join(adir, "usage"))
    write_rc = 'printf "%%d\\n" "$rc" > %s.tmp && mv -f %s.tmp %s' % (rc, rc, rc)
    if scratch:
        lines += _scratch_lines(scratch, work, write_rc)
    lines.append("start=$(date +%s.%N)")
    # every word quoted (an extra argument `>` is a word, not a redirection); then the redirection
    lines.append(" \\\n    ".join([" ".join(_script_word(a) for a in row) for row in rows] + ["> %s 2> %s" % (
        shlex.quote(os.path.join(adir, "apptainer.stdout")), shlex.quote(os.path.join(adir, "apptainer.stderr")))]))
    lines.append("rc=$?")
    if scratch and work:  # outputs are on the shared file system before the exit status says the job is done
        lines.append('cp -a "%s/work/." %s || { printf "sprocket: copying the working directory back from %%s to %%s '
                     'failed\\n" "$sprocket_scratch" %s >&2; [ "$rc" -ne 0 ] || rc=1; }' % (
                         _SCRATCH, shlex.quote(work), shlex.quote(work)))
    # What the job can tell of itself, for the trace: its node, when it ran, the CPU time of the
    # processes it waited for (`times`, in this shell: its second line); sacct adds the rest.
    lines += ['{ printf "node=%%s\\nstart=%%s\\nend=%%s\\n" "$(hostname)" "$start" "$(date +%%s.%%N)"; '
              'times; } > %s.tmp && mv -f %s.tmp %s' % (usage, usage, usage), write_rc, 'exit "$rc"']
    return "\n".join(lines) + "\n"


def _script_word(a):
    """A word of the batch script, quoted; a bind of the attempt's scratch directory keeps its
    variable unquoted (the node knows where it is)."""
    import shlex

    if _SCRATCH + "/" in a:
        head, _, tail = a.partition(_SCRATCH)
        return "%s\"%s\"%s" % (shlex.quote(head) if head else "", _SCRATCH, shlex.quote(tail))
    return shlex.quote(a)


def _scratch_lines(scratch, work, write_rc):
    """The batch script's lines that make the attempt's directory on the node's scratch (its
    parents too: "/local/$USER" may not exist yet; the directory is removed
    when the job ends, whatever its end) and, with `work`, copy the working directory there. When
    that fails, the job ends at once with exit status 1 and says why on its stderr."""
    import shlex

    def fail(why):
        return '{ echo "sprocket: %s on node $(hostname)" >&2; rc=1; %s; exit 1; }' % (why, write_rc)

    lines = ['sprocket_scratch=$(mkdir -p "%s" && mktemp -d "%s/sprocket.XXXXXX") || %s' % (scratch, scratch, fail(
                 "cannot make a directory in %s (the setting scratch = %s)" % (scratch, scratch.replace("$", "\\$")))),
             "trap 'rm -rf \"$sprocket_scratch\"' EXIT",
             'mkdir -p "%s/tmp" "%s/var_tmp" || %s' % (_SCRATCH, _SCRATCH, fail("cannot write in $sprocket_scratch"))]
    if work:
        lines.append('cp -a %s "%s/work" || %s' % (shlex.quote(work), _SCRATCH,
                                                   fail("cannot copy the working directory to $sprocket_scratch")))
    return lines


def read_usage_file(adir):
    """What a Slurm job wrote of itself in `<attempt dir>/usage`: {node, started_at, ended_at,
    cpu_seconds}; {} when it wrote nothing."""
    try:
        with open(os.path.join(adir, "usage")) as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    fields = dict(line.split("=", 1) for line in lines if "=" in line)
    fields["times"] = ([line for line in lines if "=" not in line] or [""])[-1]
    out = {"node": fields.get("node") or None}
    for key, name in (("started_at", "start"), ("ended_at", "end")):
        try:
            out[key] = float(fields.get(name, ""))
        except ValueError:
            out[key] = None
    times = re.findall(r"(\d+)m([\d.]+)s", fields.get("times", ""))  # children's user and system time
    out["cpu_seconds"] = sum(int(m) * 60 + float(sec) for m, sec in times) if len(times) == 2 else None
    return out


SlurmPlacement = collections.namedtuple("SlurmPlacement", "account qos constraint reservation", defaults=(None,) * 4)
SlurmPlacement.__doc__ = "Where a job goes besides its partition (`--account`, `--qos`, `--constraint`, `--reservation`)."
_SLURM_TASK_KEYS = ("partition", "account", "qos", "constraint")  # a task's `slurm_<key>`, `run --slurm-<key>`
_SLURM_SITE_FLAGS = ("mem", "gpus-per-task", None)  # memory_flag, gpu_flag, the GPU type: the defaults


def literal_partitions(target):
    """{task name: partition} of the tasks the target runs whose `slurm_partition` runtime or hints
    key is a literal string."""
    out, todo, seen = {}, [target], set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Task):
            for section in (node.runtime, node.hints):
                e = (section or {}).get("slurm_partition")
                if type(e) is StringLit and all(isinstance(part, str) for part in e.parts):
                    out[node.name] = "".join(e.parts)
        else:
            todo += [c.callee_def.target for c in walk_calls(node.body) if c.callee_def is not None]
    return out


def placement_args(place):
    return ["--%s=%s" % (field, v) for field, v in zip(SlurmPlacement._fields, place) if v]


def gpu_args(gpu_flag, gpus, gpu_type):
    """`--gpus-per-task=[type:]N` or `--gres=gpu[:type]:N` (gpu_flag) of a task asking for GPUs."""
    n = gpus if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 0 else 1
    typed = "%s:%d" % (gpu_type, n) if gpu_type else str(n)
    return ["--gres=gpu:%s" % typed] if gpu_flag == "gres" else ["--gpus-per-task=%s" % typed]


def memory_args(memory_flag, cpu, memory):
    """`--mem` (MiB, rounded up), `--mem-per-cpu` (the memory over the CPUs, rounded up to a MiB), or none."""
    if memory_flag == "none":
        return []
    if memory_flag == "mem-per-cpu":
        return ["--mem-per-cpu=%dM" % math.ceil(memory / math.ceil(cpu) / 1048576)]
    return ["--mem=%dM" % math.ceil(memory / 1048576)]


def job_comment(run_name, call):
    """`--comment` of a job (what `squeue -o %k` shows admins): the run's name and the call path,
    in words that need no quoting anywhere."""
    return re.sub(r"[^A-Za-z0-9_.:=/-]", "_", "sprocket:%s:%s" % (run_name, call))


def sbatch_argv(partition, gpus, gpu, minutes, extra_args, cpu, memory, place=SlurmPlacement(), flags=_SLURM_SITE_FLAGS,
                *, job_name, adir, script, array=0, comment=None):
    """The `sbatch` command line of one attempt, in Sprocket's order (the placement after the
    partition, the comment before the job name); with `array` = n, of a job array of n elements
    whose element i writes its output in `<adir>/<i>/` (a link to its attempt directory).
    `flags`: the site's (memory_flag, gpu_flag) and the task's GPU type."""
    memory_flag, gpu_flag, gpu_type = flags
    argv = ["sbatch"]
    if partition:
        argv += ["--partition", partition]
    argv += placement_args(place)
    if gpu:
        argv += gpu_args(gpu_flag, gpus, gpu_type)
    if isinstance(minutes, int) and not isinstance(minutes, bool) and minutes > 0:
        argv.append("--time=%d" % minutes)  # miniwdl-slurm's per-task walltime hint
    argv += list(extra_args)
    out_dir = adir.replace("%", "%%")  # sbatch reads `%` in -o/-e as a pattern
    if array:
        argv.append("--array=0-%d" % (array - 1))
        out_dir = os.path.join(out_dir, "%a")
    if comment:
        argv.append("--comment=%s" % comment)
    argv += ["--job-name", job_name, "-o", os.path.join(out_dir, "slurm.stdout"), "-e", os.path.join(out_dir, "slurm.stderr"),
             "--ntasks=1", "--cpus-per-task=%d" % math.ceil(cpu)] + memory_args(memory_flag, cpu, memory) + [script]
    return argv


# sbatch options the engine passes itself, as (the options, when: "always" or the SlurmApptainerBackend
# attribute that says it passes them, the fix): extra arguments that repeat them are refused at start.
_ENGINE_SBATCH_OPTIONS = (
    (("--mem", "--mem-per-cpu", "--mem-per-gpu"), "memory_flag", 'set `memory_flag` ("mem", "mem-per-cpu", or "none" '
     'to pass your own)'),
    (("--cpus-per-task", "-c"), "always", "a task's `cpu` sets it"),
    (("--job-name", "-J"), "always", "set `job_name_prefix`"),
    (("--output", "-o", "--error", "-e"), "always", "sprocket.py writes a job's output into its attempt directory"),
    (("--ntasks", "-n"), "always", "an attempt is one Slurm task"),
    (("--comment",), "always", "sprocket.py tags each job with its run and call"),
    (("--array", "-a"), "always", "sprocket.py sends scatters as job arrays itself (see `job_arrays`)"),
    (("--partition", "-p"), "sets_partition", "set the partition tables' `name`, `run --slurm-partition` or a task's "
     "`slurm_partition`"),
    (("--gres=gpu", "--gpus-per-task", "--gpus", "-G"), "always", 'set `gpu_flag` ("gpus-per-task" or "gres") and a '
     "task's `gpuType`: a task asking for GPUs gets them"),
    (("--account", "-A"), "sets_account", "set `account`, a partition table's `account`, `run --slurm-account` or a "
     "task's `slurm_account`"),
    (("--qos", "-q"), "sets_qos", "set `qos`, a partition table's `qos`, `run --slurm-qos` or a task's `slurm_qos`"),
    (("--constraint", "-C"), "sets_constraint", "set `constraint`, a partition table's `constraint`, "
     "`run --slurm-constraint` or a task's `slurm_constraint`"),
    (("--reservation",), "sets_reservation", "set `reservation` or a partition table's `reservation`"),
)


def sbatch_option_of(arg, options):
    """The option of `options` that the command-line word `arg` gives (`--mem=4G`, `-c4`), or None."""
    for o in options:
        if arg == o or arg.startswith(o + "=") or arg.startswith(o + ":") or (len(o) == 2 and arg.startswith(o) and not arg.startswith("--")):
            return o
    return None


def sbatch_conflict(sources, passes):
    """What is wrong with extra sbatch arguments that repeat an option the engine passes, or None.
    `sources`: [(the setting's name, as the message says it, its arguments)]; `passes(when)`: does the engine pass them."""
    for setting, args in sources:
        for arg in args:
            for options, when, fix in _ENGINE_SBATCH_OPTIONS:
                if sbatch_option_of(arg, options) and (when == "always" or passes(when)):
                    return ("%s has `%s`, which sprocket.py passes to sbatch itself: remove it (%s)" % (setting, arg, fix))
    return None


def slurm_ids(ids):
    """Job ids as few command-line words as possible: an array's elements (`12_3`) as one `12_[3,5-9]`."""
    plain, arrays = [], collections.OrderedDict()
    for i in ids:
        head, sep, index = i.partition("_")
        if sep and index.isdigit():
            arrays.setdefault(head, []).append(int(index))
        else:
            plain.append(i)
    for head, indices in arrays.items():
        indices.sort()
        runs = []
        for n in indices:
            if runs and n == runs[-1][1] + 1:
                runs[-1][1] = n
            else:
                runs.append([n, n])
        plain.append("%s_[%s]" % (head, ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in runs)))
    return plain


def expand_slurm_id(text):
    """The element ids of `12_[3,5-9%2]` (pending elements, as sacct shows them); others as they are."""
    m = re.match(r"^(\d+)_\[([^\]]*)\]$", text)
    if m is None:
        return [text]
    out = []
    for part in m.group(2).split("%")[0].split(","):
        a, _, b = part.partition("-")
        if a.isdigit() and (b.isdigit() or not b):
            out += ["%s_%d" % (m.group(1), n) for n in range(int(a), int(b or a) + 1)]
    return out


SlurmState = collections.namedtuple("SlurmState", "state exit_code reason node", defaults=("",))
SlurmState.__doc__ = ("What Slurm says of a job: its state (`RUNNING`, `CANCELLED by 0`), its exit code "
                      "(`code:signal`; '' where squeue gives none), its reason (why it is pending) and its "
                      "node ('' where none is known yet).")
SlurmAnswer = collections.namedtuple("SlurmAnswer", "states usage")
SlurmAnswer.__doc__ = ("A status query's answer: {job id: SlurmState} for the jobs Slurm knows, and {job id: what "
                       "sacct says it used} for the ended jobs asked about (sacct_job_usage, sacct_step_usage).")
HeldJob = collections.namedtuple("HeldJob", "job_id script")
HeldJob.__doc__ = "A job the controller holds (squeue): its id (`12_3`: element 3 of array 12) and its batch script."


class SlurmClient:
    """The Slurm commands of a run (sbatch, squeue, sacct, scontrol, scancel) and what their output
    means, as records. sbatch and scancel run at most max_concurrency at once, sbatch within
    submit_rate_limit; an sbatch the controller did not answer is retried with backoff, and never
    submitted twice. Jobs are followed with sacct, or with squeue and scontrol where accounting is
    off (`status_source`). `run_tool(argv, timeout=...)` runs a command: _run_slurm_tool (without
    the variables of an enclosing job), or a fake."""

    def __init__(self, log, max_concurrency, rate, run_tool=_run_slurm_tool):
        self.log, self.run_tool = log, run_tool
        self.max_concurrency = max(1, max_concurrency)
        self.slots = threading.BoundedSemaphore(self.max_concurrency)
        self.rate = rate  # (n, period): at most n sbatch calls per period seconds; None: no limit
        self.sbatch_times = collections.deque()  # times of the recent sbatch calls (submit_rate_limit)
        self.rate_lock = threading.Lock()
        self.status_source = "sacct"
        self.max_array = None
        self.exclude_refused = False  # Slurm would not run a job for its --exclude alone: no more are excluded
        self.partition_table = None  # the cluster's partitions (partitions()), once asked
        self.partitions_lock = threading.Lock()
        self.sleep = time.sleep  # the backoff's wait (a test's is instant)

    def check_cluster(self, partitions):
        """The seed's "Common issues" as clear messages: the Slurm commands are on PATH, and each
        configured partition ({who asks for it: its name}) exists."""
        import shutil

        for tool in ("sbatch", "scancel", "squeue"):
            if shutil.which(tool) is None:
                raise RunError("`%s` was not found on PATH: the slurm_apptainer backend runs on a Slurm submit host "
                               "with the Slurm client commands (sbatch, squeue, sacct, scancel) installed" % tool)
        for what, name in partitions.items():
            self.check_partition(name, what)

    def check_partition(self, name, what):
        """Refuse (RunError) a partition the cluster does not have; `what` says who asks for it."""
        try:
            known = self.partitions()
        except RunError as e:
            raise RunError("%s `%s`: the cluster's partitions could not be listed: %s" % (what, name, e.message))
        if name not in known:
            raise RunError("%s `%s`: the cluster has no such partition (it has: %s)" % (
                what, name, ", ".join(sorted(known)) or "none"))

    def partitions(self):
        """{name: {field: value}} of every partition of the cluster (`scontrol show partition`'s
        fields: MaxCPUsPerNode, MaxMemPerNode, MaxTime, State...): one `scontrol` the first time,
        as they do not change within a run. RunError when scontrol fails."""
        with self.partitions_lock:  # a task's computed partition is checked from its worker thread
            if self.partition_table is None:
                code, out, err = self.run_tool(["scontrol", "--all", "--oneliner", "show", "partition"], timeout=20)
                if code != 0:
                    raise RunError((err or out).strip() or "`scontrol show partition` failed (exit %d)" % code)
                table = {}
                for line in out.splitlines():
                    fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                    if fields.get("PartitionName"):
                        table[fields["PartitionName"]] = fields
                self.partition_table = table
            return self.partition_table

    def held_jobs(self):
        """[HeldJob] for every job of the user's that the controller holds, one per array element;
        None when squeue fails."""
        import getpass

        code, text, _ = self.run_tool(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%o"])
        if code != 0:
            return None
        return [HeldJob(*line.partition("|")[::2]) for line in text.splitlines()]

    def find_jobs(self, adirs):
        """{attempt directory: job id} for the jobs of these attempts that the controller holds,
        matched by batch script (an array's element by its link `<i>` in the array's directory)."""
        wanted = {os.path.realpath(d): d for d in adirs}
        out = {}
        for held in self.held_jobs() or ():
            head, _, index = held.job_id.partition("_")
            if os.path.basename(held.script) == "script" and index.isdigit():
                adir = os.path.realpath(os.path.join(os.path.dirname(held.script), index))
            else:
                adir = os.path.dirname(os.path.realpath(held.script))
            if adir in wanted:
                out[wanted[adir]] = held.job_id
        return out

    def jobs_below(self, roots):
        """The ids of the jobs the controller holds (live or just ended) whose batch script is below
        one of the directories `roots` (the attempts and arrays of a run)."""
        below = tuple(os.path.realpath(r).rstrip("/") + "/" for r in roots)
        return [h.job_id for h in self.held_jobs() or () if os.path.realpath(h.script).startswith(below)]

    def sbatch(self, argv, name):
        """The job id of `sbatch argv` (the batch script last), at most max_concurrency at once and
        submit_rate_limit per period; transient failures retried with backoff. `name`: the task's,
        for the messages."""
        delay = 1.0
        script = os.path.realpath(argv[-1])
        excluded = [a for a in argv if a.startswith("--exclude=")]
        for attempt in range(_SBATCH_TRIES):
            if attempt:  # the failed sbatch may have reached the controller: never submit a job twice
                held = self.held_jobs()
                found = [h.job_id.partition("_")[0] for h in held or () if os.path.realpath(h.script) == script]
                if found:
                    return found[0]
                if held is None:  # the controller cannot say yet
                    self.wait_before_retry(name, "squeue failed", delay)
                    delay = min(delay * 2, 30.0)
                    continue
            with self.slots:
                self.wait_for_rate()
                code, out, err = self.run_tool(argv)
            m = re.search(r"Submitted batch job (\d+)", out)
            if code == 0 and m:
                if excluded and excluded[0] not in argv:
                    self.refused_exclude(excluded[0], name, "sbatch refused the job (Requested node configuration is "
                                                            "not available), and took it without")
                return m.group(1)
            text = (err or out).strip()
            if code == 127:
                raise RunError("task `%s`: `sbatch` was not found on PATH" % name)
            if excluded and excluded[0] in argv and "Requested node configuration is not available" in text:
                argv = [a for a in argv if a not in excluded]  # the excluded nodes may be all the job could use
                continue
            if attempt < _SBATCH_TRIES - 1 and any(t in text for t in _SBATCH_TRANSIENT):
                self.wait_before_retry(name, text, delay)
                delay = min(delay * 2, 30.0)
                continue
            raise RunError("task `%s`: failed to submit the Slurm job with `sbatch` (exit %d)\n%s" % (name, code, text))

    def refused_exclude(self, exclude, name, what):
        """Slurm would not run task `name`'s job with `exclude` (`what` it did): the excluded nodes
        are all the job could use, so the run excludes none from now on (said once)."""
        with self.rate_lock:  # (a lock the client holds briefly anyway)
            told, self.exclude_refused = self.exclude_refused, True
        if not told:
            self.log.warn("task `%s`: %s with %s: the excluded nodes are all it could use; the run's jobs may use them "
                          "again" % (name, what, exclude))

    def hold_submissions(self):
        """Wait for the sbatch calls under way, and let no other start (a hand-off)."""
        for _ in range(self.max_concurrency):
            self.slots.acquire()

    def wait_before_retry(self, name, why, delay):
        self.log.warn("sbatch failed for task `%s` (%s); trying again in %g s" % (name, why, delay))
        self.sleep(delay)

    def wait_for_rate(self):
        """Hold an sbatch call until it fits in submit_rate_limit (n calls per period)."""
        if self.rate is None:
            return
        n, period = self.rate
        with self.rate_lock:
            while True:
                now = time.monotonic()
                while self.sbatch_times and now - self.sbatch_times[0] >= period:
                    self.sbatch_times.popleft()
                if len(self.sbatch_times) < n:
                    self.sbatch_times.append(now)
                    return
                time.sleep(period - (now - self.sbatch_times[0]))

    def query(self, ids, usage_of=()):
        """A SlurmAnswer for the ids Slurm knows, in few commands (one word for all the elements of
        an array), with what the jobs among `usage_of` used (sacct only)."""
        heads = list(collections.OrderedDict.fromkeys(i.partition("_")[0] for i in ids))
        if self.status_source == "sacct":
            answer = self.sacct(set(ids), heads, usage_of)
            if answer is not None:
                return answer
        return SlurmAnswer(self.squeue(set(ids), heads), {})

    def sacct(self, wanted, heads, usage_of):
        """sacct's answer for the jobs `heads` (rows of _SACCT_FORMAT: a job's, then its steps'), or
        None when accounting is off: jobs are followed with squeue from then on."""
        states, usage = {}, {}
        for i in range(0, len(heads), _IDS_PER_CALL):
            code, text, err = self.run_tool(["sacct", "-P", "-n", "--format", _SACCT_FORMAT, "-j",
                                             ",".join(heads[i: i + _IDS_PER_CALL])])
            if code != 0:
                if "accounting storage is disabled" in err or code == 127 or "not running a supported accounting" in err:
                    self.status_source = "squeue"
                    self.log.warn("sacct is unavailable (%s); following jobs with squeue and scontrol" % (
                        err.strip() or "exit %d" % code))
                    return None
                raise RunError("sacct failed (exit %d): %s" % (code, err.strip()))
            for line in text.splitlines():
                f = line.split("|")
                if len(f) < 4:
                    continue
                job_id, _, step = f[0].partition(".")
                if step:  # the batch step has what the job's processes used
                    if job_id in usage_of:
                        usage.setdefault(job_id, {}).update(sacct_step_usage(f))
                    continue
                for job_id in expand_slurm_id(f[0]):
                    if job_id in wanted:
                        states[job_id] = SlurmState(f[1], f[2], f[3], _slurm_node(f[12] if len(f) > 12 else ""))
                        if job_id in usage_of:
                            usage.setdefault(job_id, {}).update(sacct_job_usage(f))
        return SlurmAnswer(states, usage)

    def squeue(self, wanted, heads, exit_codes=True):
        """{job id: SlurmState} from squeue (`%i|%T|%r`), with the exit codes of the ended jobs
        from one `scontrol show job` for all jobs the controller holds (unless not `exit_codes`)."""
        states, ended = {}, set()
        for i in range(0, len(heads), _IDS_PER_CALL):
            code, text, err = self.run_tool(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j",
                                             ",".join(heads[i: i + _IDS_PER_CALL])])
            if code != 0 and "Invalid job id" not in err:
                raise RunError("squeue failed (exit %d): %s" % (code, err.strip()))
            for line in text.splitlines():
                f = line.split("|")
                for job_id in expand_slurm_id(f[0]) if len(f) >= 3 else ():
                    if job_id in wanted:
                        states[job_id] = SlurmState(f[1], "", f[2])
                        if f[1].split()[0] in _SLURM_TERMINAL:
                            ended.add(job_id)
        if not ended or not exit_codes:
            return states
        code, text, err = self.run_tool(["scontrol", "-o", "show", "job"])
        for line in text.splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            job_id = fields.get("JobId")
            if fields.get("ArrayTaskId", "N/A") != "N/A":  # an element: JobId is its own number
                job_id = "%s_%s" % (fields.get("ArrayJobId"), fields["ArrayTaskId"])
            if job_id in ended:
                states[job_id] = SlurmState(fields.get("JobState", ""), fields.get("ExitCode", ""), fields.get("Reason", ""),
                                            _slurm_node(fields.get("NodeList", "")))
        return states

    def scancel(self, ids):
        ids = slurm_ids(ids)
        for i in range(0, len(ids), _IDS_PER_CALL):
            with self.slots:
                code, out, err = self.run_tool(["scancel"] + ids[i: i + _IDS_PER_CALL])
            if code != 0:
                self.log.error("scancel failed (exit %d): %s" % (code, err.strip()))

    def node_sizes(self):
        """{partition: (CPUs, memory in bytes) of its largest node} (one `sinfo`). RunError when it fails."""
        code, out, err = self.run_tool(["sinfo", "-h", "-o", "%R %c %m"], timeout=20)
        if code != 0:
            raise RunError((err or out).strip() or "`sinfo` failed (exit %d)" % code)
        sizes = {}
        for fields in (line.split() for line in out.splitlines()):
            if len(fields) == 3:  # `8`, or `4+` where the nodes differ (the smallest, and more)
                cpus, mb = (int(re.match(r"\d*", f).group() or 0) for f in fields[1:])
                have = sizes.get(fields[0], (0, 0))
                sizes[fields[0]] = (max(have[0], cpus), max(have[1], mb * 1048576))
        return sizes

    def max_array_size(self):
        """The cluster's MaxArraySize (one `scontrol show config`, the first time)."""
        if self.max_array is None:
            code, out, _ = self.run_tool(["scontrol", "show", "config"], timeout=30)
            m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M) if code == 0 else None
            self.max_array = int(m.group(1)) if m else 1001  # Slurm's default
        return self.max_array


class ImageCache:
    """The SIF images of the tasks' containers, each pulled once, even across processes sharing the
    cache directory (a file lock, _ExclusiveLock; a temporary file; an atomic rename). A pull that
    failed is not tried again by this run. Without a cache directory, images go in the run's."""

    def __init__(self, apptainer, cache_dir, default_container, log, run_tool=_run_tool):
        self.apptainer, self.cache_dir, self.default_container = apptainer, cache_dir, default_container
        self.log, self.run_tool = log, run_tool
        self.images = {}  # image -> (lock, [path or error])
        self.lock = threading.Lock()

    def image_for(self, wanted, name, run_dir):
        """The SIF image for a task's `container` requirement `wanted` (a list: the first that can be
        pulled; `*`: run.task.container). `name`: the task's, for the message."""
        candidates = wanted if isinstance(wanted, list) else [wanted] if wanted else [self.default_container]
        candidates = [self.default_container if c == "*" else c for c in candidates]
        errors = []
        for image in candidates:
            with self.lock:
                entry = self.images.setdefault(image, (threading.Lock(), []))
            with entry[0]:
                if not entry[1]:
                    try:
                        entry[1].append(self.pull(image, run_dir))
                    except RunError as e:
                        entry[1].append(e)
            if isinstance(entry[1][0], RunError):
                errors.append(entry[1][0].message)
                continue
            return entry[1][0]
        raise RunError("task `%s`: no container image could be pulled:\n  %s" % (name, "\n  ".join(errors)))

    def sif_path(self, image, run_dir):
        """(the URI to pull, the SIF file it becomes); (None, the file) for a local image."""
        m = re.match(r"^([a-z][a-z0-9+.-]*)://(.+)$", image)
        scheme, name = (m.group(1), m.group(2)) if m else ("docker", image)
        if scheme not in ("docker", "library", "oras", "file"):
            raise RunError("unknown container source `%s` (use docker://, library://, oras://, file:// or a .sif path)" % image)
        if scheme == "file" or (not m and name.endswith(".sif")):
            return None, os.path.abspath(name)
        parts = [p for p in re.split(r"[/:]", name) if p not in ("", ".", "..")]
        image_dir = self.cache_dir or os.path.join(run_dir, "apptainer-images")
        return "%s://%s" % (scheme, name), os.path.join(image_dir, scheme, *parts) + ".sif"

    def pull(self, image, run_dir):
        uri, sif = self.sif_path(image, run_dir)
        if uri is None:
            if not os.path.isfile(sif):
                raise RunError("container image `%s` does not exist" % sif)
            return sif
        if os.path.isfile(sif):
            return sif
        os.makedirs(os.path.dirname(sif), exist_ok=True)
        with open(sif + ".lock", "a") as lock, _ExclusiveLock(lock, sif + ".lockdir"):
            if os.path.isfile(sif):  # another sprocket pulled it while we waited
                return sif
            tmp = "%s.%d.partial.sif" % (sif[: -len(".sif")], os.getpid())
            delay = 1.0
            for attempt in range(5):
                self.log.info("pulling `%s` into `%s`" % (uri, sif))
                code, out, err = self.run_tool([self.apptainer, "pull", "--force", tmp, uri], timeout=3600)
                if code == 0 and os.path.isfile(tmp):
                    os.replace(tmp, sif)
                    return sif
                text = (err or out).strip()
                if code == 127:
                    raise RunError("`%s` was not found on PATH of the submit host: it pulls images with "
                                   "`%s pull` (set `apptainer.executable`)" % (self.apptainer, self.apptainer))
                if any(p in text for p in _PULL_PERMANENT) or attempt == 4:
                    break
                time.sleep(delay)
                delay *= 2
            if os.path.exists(tmp):
                os.remove(tmp)
            raise RunError("could not pull container image `%s` (%s pull exit %d): %s" % (
                uri, self.apptainer, code, text[-2000:] or "no output"))


Gathered = collections.namedtuple("Gathered", "job argv options array_name array_comment", defaults=(None,))
Gathered.__doc__ = ("An attempt waiting to go out in a job array: its SlurmJob, its own sbatch line, the sbatch "
                    "options (sbatch_argv's arguments), the job name and the `--comment` its array would get.")


class ArrayGatherer:
    """Collects the attempts of a call's scatter elements that are ready at about the same time and
    need the same sbatch options, and submits them as one job array, from a thread of its own
    (fewer than _ARRAY_MIN go out as jobs of their own). `monitor` follows each job once it has an
    id and says whether the queue holds a wave of the run's jobs; `array_dir(n)` is the directory
    of the run's n-th array; `flush()` puts the attempts on record before their jobs exist."""

    def __init__(self, client, monitor, array_dir, flush, queue_cap):
        self.client, self.monitor, self.array_dir, self.flush = client, monitor, array_dir, flush
        self.queue_cap = queue_cap
        self.cond = threading.Condition()
        self.gathering = {}  # (call family,) + sbatch options -> [Gathered] waiting to go out as one array
        self.gathered_since = {}
        self.last_gathered = 0.0
        self.thread = None
        self.submitting = 0  # arrays whose sbatch is under way
        self.arrays = 0
        self.closed = False

    def gather(self, item, family):
        """Hold the attempt for a moment, to go out with the other elements of its call (`family`)
        that need the same sbatch options as one job array."""
        key = (family,) + item.options
        with self.cond:
            group = self.gathering.setdefault(key, [])
            if not group:
                self.gathered_since[key] = time.monotonic()
            group.append(item)
            self.last_gathered = time.monotonic()
            if self.thread is None:
                self.thread = threading.Thread(target=self.gather_loop, daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def gather_loop(self):
        """Submit each group once no new element came for _GATHER_QUIET (or it waited _GATHER_MAX)."""
        while True:
            with self.cond:
                while not self.gathering and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                quiet_at = self.last_gathered + _GATHER_QUIET  # no new element since then: the group is complete
            now = time.monotonic()
            time.sleep(quiet_at - now if quiet_at > now else _GATHER_QUIET)  # (not up to twice _GATHER_QUIET)
            for members in self.ready(time.monotonic(), self.array_limit()):
                threading.Thread(target=self.submit_array, args=(members,), daemon=True).start()

    def ready(self, now, limit):
        """The groups to submit now, in arrays of at most `limit`. While more of the run's jobs wait
        in the queue than run, the cluster has work of ours to start next, so a group keeps
        gathering (up to _GATHER_HOLD): the elements that a concurrency bound frees one by one go
        out as a few big arrays, not many small ones, and the next array is in the queue before
        the last wave of the one before has ended."""
        with self.cond:
            ready = []
            for key, group in list(self.gathering.items()):
                since = self.gathered_since[key]
                if now - self.last_gathered < _GATHER_QUIET and now - since < _GATHER_MAX and len(group) < limit:
                    continue  # more are coming
                if len(group) < limit and now - since < _GATHER_HOLD and self.monitor.queue_stocked():
                    continue
                del self.gathering[key]
                ready += [group[i: i + limit] for i in range(0, len(group), limit)]
            self.submitting += len(ready)
        return ready

    def array_limit(self):
        """Elements per array: the cluster's MaxArraySize, and max_queued_jobs. The cluster is asked
        only once a group could be an array: smaller ones go out as jobs of their own whatever it is
        (so a small run's first sbatch waits for no probe)."""
        with self.cond:
            biggest = max([len(group) for group in self.gathering.values()] + [0])
        if biggest < _ARRAY_MIN:
            return max(1, min(_ARRAY_MIN, self.queue_cap or _ARRAY_MIN))
        max_array = self.client.max_array_size()
        return max(1, min(max_array, self.queue_cap or max_array))

    def submit_array(self, members):
        """One sbatch for these elements; each keeps its attempt directory (the link `<i>` in the
        array's directory) and becomes job `<array id>_<i>`. Fewer than _ARRAY_MIN go out alone."""
        try:
            if self.closed:  # the run ended while they waited
                for m in members:
                    m.job.finish(143, "canceled")
            members = [m for m in members if not m.job.done.is_set()]  # canceled while they waited
            if len(members) < _ARRAY_MIN:
                self.submit_each(members)
                members = []  # each reported its own failure
            else:
                self.submit_as_array(members)
            self.flush()
        except Exception as e:  # sbatch refused, or a bug: each element's task reports it
            import traceback

            e.__traceback_text__ = traceback.format_exc()
            for m in members:
                m.job.fail(e)
        finally:
            with self.cond:
                self.submitting -= 1
                self.cond.notify_all()

    def submit_each(self, members):
        """The group was too small for an array: each element as a job of its own, at once."""
        for m in members:
            write_sbatch_command(m.job.adir, m.argv)
        self.flush()
        alone = [threading.Thread(target=self.submit_alone, args=(m.job, m.argv)) for m in members]
        for t in alone:
            t.start()
        for t in alone:
            t.join()

    def submit_alone(self, job, argv):
        try:
            self.monitor.submitted(job, self.client.sbatch(argv, job.name))
        except Exception as e:  # sbatch refused, or a bug: the element's task reports it
            import traceback

            e.__traceback_text__ = traceback.format_exc()
            job.fail(e)

    def submit_as_array(self, members):
        with self.cond:
            self.arrays += 1
            root = self.array_dir(self.arrays)
        os.makedirs(root)
        for i, m in enumerate(members):
            os.symlink(m.job.adir, os.path.join(root, str(i)))
        script = os.path.join(root, "script")
        with open(script, "w") as f:
            f.write('#!/usr/bin/env bash\nexec "%s/${SLURM_ARRAY_TASK_ID}/apptainer_command"\n' % root)
        os.chmod(script, 0o770)
        first = members[0]
        argv = sbatch_argv(*first.options, job_name=first.array_name, adir=root, script=script, array=len(members),
                           comment=first.array_comment)
        for i, m in enumerate(members):
            write_sbatch_command(m.job.adir, argv, "# this attempt is element %d of the array\n" % i)
        self.flush()  # the attempts are on record before their jobs exist (reattach)
        array_id = self.client.sbatch(argv, first.job.name)
        for i, m in enumerate(members):
            self.monitor.submitted(m.job, "%s_%d" % (array_id, i))

    def close(self):
        """The run is over: the thread ends; the jobs still gathering are returned (to be canceled)."""
        with self.cond:
            held = [m.job for group in self.gathering.values() for m in group]
            self.gathering.clear()
            self.closed = True
            self.cond.notify_all()
        return held

    def wait_submitted(self):
        """Until no array's sbatch is under way."""
        with self.cond:
            while self.submitting:
                self.cond.wait()


def write_sbatch_command(adir, argv, note=""):
    """`<attempt dir>/sbatch_command`: the sbatch line that submitted the attempt's job."""
    import shlex

    with open(os.path.join(adir, "sbatch_command"), "w") as f:
        f.write(" ".join(shlex.quote(a) for a in argv) + "\n" + note)


class SlurmJob(Job):
    """One attempt's Slurm job; wait() blocks until the JobMonitor sees it end. Its attributes are
    written only by its own methods and by the monitor that follows it. `on_id(job id)` writes down
    the id Slurm gave it (the run's records)."""

    def __init__(self, monitor, adir, key, name, memory, on_id):
        self.monitor = monitor
        self.adir, self.key, self.name = adir, key, name  # its attempt's directory and key, its task's name
        self.memory = memory  # bytes (its --mem)
        self.on_id = on_id
        self.done = threading.Event()
        self.exit_code = None
        self.state = "SUBMITTING"  # Job's other attributes keep their defaults until the monitor sets them
        self.unknown_since = None
        self.file_code = None  # the exit status its rc file gave
        self.asked_since = None  # when its rc file showed a failure and Slurm was first asked why
        self.ended_since = None  # when Slurm said it ended while its rc file was not yet visible
        self.running_since = None  # when Slurm said it runs while its node had not yet opened its output
        self.holds_slot = False
        self.error = None  # why it could not be submitted (a job array's sbatch failed)
        self.lock = threading.Lock()
        self.submitted_at = None  # time.time() when sbatch took it
        self.started = False  # seen to have opened its output file on its node
        self.node = ""  # where Slurm ran it, once it says
        self.launch_failed = False  # RUNNING, but it never started on its node
        self.excluding = None  # its sbatch's --exclude=<nodes>, if any
        self.next_look = 0.0  # time.monotonic() of the next look at its exit status file

    def wait(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.exit_code

    def identified(self, job_id):
        """Slurm's id for it (sbatch's answer, or an earlier run's record), written down."""
        self.job_id = job_id
        self.on_id(job_id)

    def fail(self, error):
        """It was never submitted: wait() raises `error`."""
        with self.lock:
            if self.done.is_set():
                return
            self.error = error
            self.done.set()
        self.release()

    def finish(self, code, message=None, retry_free=False, final=False):
        """The job is over (called by the monitor and by cancellation: the first one counts). A
        failure its node is to blame for is run again elsewhere without spending a retry."""
        if not self.done.is_set() and not final:
            message, blamed = self.monitor.blame_node(self, code, message)
            retry_free = retry_free or blamed
        with self.lock:
            if self.done.is_set():
                return
            self.exit_code, self.message, self.retry_free, self.final = code, message, retry_free, final
            self.done.set()
        self.release()
        if self.job_id:  # what it used: sacct tells once it has ended
            self.monitor.ended(self)

    def release(self):
        with self.lock:
            held, self.holds_slot = self.holds_slot, False
        if held:
            self.monitor.queue_slots.release()

    def cancel(self):
        self.monitor.cancel_jobs([self])

    def usage(self):
        """What the job wrote of itself, and when sbatch took it; sacct adds the rest later."""
        out = dict(read_usage_file(self.adir), submitted_at=self.submitted_at)
        if out.get("started_at") and self.submitted_at:
            out["queue_seconds"] = max(0.0, out["started_at"] - self.submitted_at)
        return out


class JobMonitor:
    """Owns the state of the run's Slurm jobs from sbatch to their end. One thread looks at the live
    jobs' exit status files and asks Slurm (the client) about them, and finishes each job with what
    that means: the command's exit status, or why Slurm ended it (out of memory, time limit, node
    failure, preemption, cancellation, a pending reason that never clears). It holds the
    max_queued_jobs slots, and hands what sacct says the ended jobs used to `record_accounting(key,
    figures)` (False: not yet). `aborting()` says whether the run is being canceled."""

    def __init__(self, client, log, record_accounting, aborting, interval, completion_interval, exit_read_timeout,
                 queue_cap, exclude_node=None):
        self.client, self.log, self.record_accounting, self.aborting = client, log, record_accounting, aborting
        self.exclude_node = exclude_node  # (node, why) -> a note for the attempt, or None: see node_fault
        self.interval = interval  # seconds between queries about all live jobs
        self.completion_interval = completion_interval  # at most this between looks at an exit status file
        self.exit_read_timeout = exit_read_timeout
        self.queue_slots = threading.BoundedSemaphore(queue_cap) if queue_cap else None
        self.jobs = {}  # job id -> SlurmJob, while Slurm may still run it
        self.unaccounted = {}  # job id -> attempt key: ended jobs whose usage sacct has not given yet
        self.last_end = 0.0  # time.monotonic() when the last job ended
        self.accounting = {}  # job id -> what sacct said it used so far
        self.cond = threading.Condition()
        self.thread = None
        self.stopped = threading.Event()

    def take_slot(self, job):
        """Wait until fewer than max_queued_jobs of this run's jobs are in the queue (across every
        scatter and nesting level); a cancel stops the wait."""
        if self.queue_slots is None:
            return
        while not self.queue_slots.acquire(timeout=0.5):
            if self.aborting():
                raise RunCancelled("task `%s` was canceled" % job.name)
        job.holds_slot = True

    def submitted(self, job, job_id):
        """Slurm took the job: write down its id and follow it."""
        with open(os.path.join(job.adir, "job_id"), "w") as f:
            f.write(job_id + "\n")
        self.follow(job, job_id)

    def follow(self, job, job_id):
        job.submitted_at = job.submitted_at or time.time()
        job.state = "SUBMITTED"  # what Slurm makes of it, the next status query tells
        job.identified(job_id)
        if job.done.is_set():  # canceled while sbatch ran
            self.client.scancel([job_id])
            return
        with self.cond:
            self.jobs[job_id] = job
            if self.thread is None:
                self.thread = threading.Thread(target=self.monitor_loop, daemon=True)
                self.thread.start()
            self.cond.notify_all()
        if self.aborting():
            self.cancel_jobs([job])

    def ended(self, job):
        """The job is over: its usage is to be asked for. The time it ended is its exit status
        file's, where it wrote one (the monitor saw it a moment later), within _ACCOUNTING_LAG of
        now (a file server's clock may be off): the closing sacct waits no longer than it must."""
        try:
            age = min(max(0.0, time.time() - os.stat(os.path.join(job.adir, "rc")).st_mtime), _ACCOUNTING_LAG)
        except OSError:
            age = 0.0
        with self.cond:
            self.unaccounted[job.job_id] = job.key
            self.last_end = max(self.last_end, time.monotonic() - age)

    def forget(self, job_id):
        with self.cond:
            self.jobs.pop(job_id, None)

    def live_jobs(self):
        with self.cond:
            return list(self.jobs.values())

    def queue_stocked(self):
        """Whether more of this run's jobs wait in the queue than run: the cluster has a wave of
        our work to start next. A job waits while its node has not opened its output file (a
        stat, no scheduler call; a job seen started is not looked at again)."""
        live = self.live_jobs()
        waiting = 0
        for job in live:
            if not job.started:
                job.started = os.path.exists(os.path.join(job.adir, "slurm.stdout"))
                waiting += not job.started
        return waiting > len(live) - waiting

    # -- status: one batched query per interval ---------------------------------------------
    def monitor_loop(self):
        """Every completion_interval, look at the exit-status files of the live jobs: a stat
        each, no scheduler call. A job whose file shows a failure is asked about at once (to say
        why: out of memory, time limit), and, every `interval`, all live jobs are (pending
        reasons, and jobs that ended without writing the file: killed, preempted, node lost)."""
        last_query = time.monotonic()
        tick = min(_FIRST_LOOK, self.completion_interval)
        while True:
            with self.cond:
                while not self.jobs and not self.stopped.is_set():
                    self.cond.wait()
            if self.stopped.wait(tick):
                return
            with self.cond:
                live = dict(self.jobs)
            now = time.monotonic()
            ask = self.look_at_files(live, now)
            if now - last_query >= self.interval:
                last_query = now
                ask = [j for j in live if j in self.jobs]
            if ask:
                self.ask_slurm(ask, live, now)

    def look_at_files(self, live, now):
        """Finish the jobs whose exit status file tells all; the ids of those to ask Slurm about."""
        ask = []
        for job_id, job in live.items():
            if job.file_code is None and now < job.next_look:
                continue
            # A job is looked at every tenth of its age so far (a short task is seen to end soon
            # after it does: a small run's last jobs are), at least every _FIRST_LOOK and at most
            # every completion_interval (a job older than ten of those: as before).
            age = time.time() - (job.submitted_at or time.time())
            job.next_look = now + min(self.completion_interval, max(_FIRST_LOOK, age / 10))
            code = read_exit_status(job.adir) if job.file_code is None else job.file_code
            if code is None:
                if job.ended_since is not None:
                    self.lagging(job, now)
                continue
            job.file_code = code
            if code == 0 or job.ended_since is not None:
                self.forget(job_id)
                job.finish(code)
            elif job.asked_since is not None and now - job.asked_since > _ACCOUNTING_WAIT:
                self.forget(job_id)  # Slurm still has not told why: the command's own failure
                job.finish(code)
            else:
                job.asked_since = job.asked_since or now
                ask.append(job_id)
        return ask

    def ask_slurm(self, ask, live, now):
        """One status query for these jobs (ended ones ride along for their usage), and what it means."""
        try:
            answer = self.client.query(ask + list(self.unaccounted), self.unaccounted)
        except Exception as e:  # never let the monitor die: report and try again next tick
            self.log.error("querying Slurm failed: %s" % e)
            return
        self.add_usage(answer.usage)
        self.settle_accounting()
        for job_id in ask:
            job = live[job_id]
            info = answer.states.get(job_id)
            if info is None:
                job.unknown_since = job.unknown_since or now
                if now - job.unknown_since > max(_VANISHED_GRACE, 3 * self.interval):
                    self.forget(job_id)
                    job.finish(1, "Slurm job %s vanished: neither %s knows it any more" % (
                        job_id, "sacct" if self.client.status_source == "sacct" else "squeue nor scontrol"))
                continue
            job.unknown_since = None
            self.update(job, info)

    def lagging(self, job, now):
        """Slurm says the job ended normally, but its exit-status file is not visible here yet:
        the shared filesystem may lag (NFS caches attributes). Look again, listing the directory
        to refresh the cache, until exit_read_timeout."""
        try:
            os.listdir(job.adir)
        except OSError:
            pass
        code = read_exit_status(job.adir)
        if code is not None:
            self.forget(job.job_id)
            job.finish(code)
        elif now - job.ended_since > self.exit_read_timeout:
            self.forget(job.job_id)
            job.finish(1, "Slurm job %s ended, but its exit status file `%s` did not appear within %g s "
                          "(exit_read_timeout): the shared filesystem may be lagging, or the job's node lost it" % (
                              job.job_id, os.path.join(job.adir, "rc"), self.exit_read_timeout))

    def update(self, job, info):
        """What Slurm said of a live job (a SlurmState)."""
        base = info.state.split()[0] if info.state else ""
        job.state, job.reason = base, info.reason
        job.node = info.node or job.node
        if base == "RUNNING" and not os.path.exists(os.path.join(job.adir, "slurm.stdout")):
            # Slurm opens the job's output file when the job starts on its node: a job RUNNING
            # this long without it was lost on the way there (the controller went down as it
            # launched it, say); Slurm may never notice.
            job.running_since = job.running_since or time.monotonic()
            if time.monotonic() - job.running_since > self.exit_read_timeout:
                self.forget(job.job_id)
                self.client.scancel([job.job_id])
                job.launch_failed = True
                job.finish(1, "Slurm job %s was RUNNING for %d s but never started on its node (no `slurm.stdout`); "
                              "it was canceled" % (job.job_id, self.exit_read_timeout), retry_free=True)
                return
        else:
            job.running_since = None
        reason = info.reason
        if base == "PENDING" and reason and any(reason == r or reason.startswith(r + " ") for r in _SLURM_NEVER_CLEARS):
            self.forget(job.job_id)
            self.client.scancel([job.job_id])
            job.finish(1, "Slurm can never start job %s: pending with reason `%s` (the request exceeds what the "
                          "partition allows; check `scontrol show job %s` and the partition's limits)" % (
                              job.job_id, reason, job.job_id), final=True)
            return
        if base not in _SLURM_TERMINAL:
            return
        if base == "FAILED" and job.file_code is None and not info.node:
            # It never had a node, so it wrote no exit status: Slurm could not place it (an
            # --exclude of every node it could use, say). Without that, it is run again.
            self.forget(job.job_id)
            if job.excluding:
                self.client.refused_exclude(job.excluding, job.name, "Slurm failed job %s before it started" % job.job_id)
            job.finish(1, "Slurm job %s failed before it started on a node (reason: %s)" % (
                job.job_id, info.reason if info.reason not in ("", "None") else "none given"), retry_free=bool(job.excluding))
            return
        if base in ("COMPLETED", "FAILED") and job.file_code is None:
            # The batch script ran to its end, so it wrote its exit status: wait until it shows.
            job.ended_since = job.ended_since or time.monotonic()
            self.lagging(job, job.ended_since)
            return
        self.forget(job.job_id)
        self.finish_ended(job, base, info)

    def finish_ended(self, job, base, info):
        """A job Slurm says ended (`base`: its state's first word) other than by its command's own
        exit: its exit status, and why, in words that name the fix."""
        code = job.file_code if job.file_code is not None else _slurm_exit_code(info.exit_code)
        if base == "OUT_OF_MEMORY":
            job.out_of_memory = True
            job.finish(code or 137, "Slurm job %s ran out of memory: it used more than its --mem=%dM (raise the task's "
                                    "`memory` requirement, or set `run.task.memory_retry_multiplier`)" % (
                                        job.job_id, math.ceil(job.memory / 1048576)))
        elif base in ("TIMEOUT", "DEADLINE"):
            job.finish(code or 143, "Slurm job %s hit its time limit (sbatch --time, or the partition's MaxTime)" % job.job_id)
        elif base in _SLURM_INFRASTRUCTURE:
            job.finish(code or 1, "Slurm job %s ended with %s (not the task's fault)" % (job.job_id, base), retry_free=True)
        elif base == "CANCELLED":
            job.finish(code or 143, "Slurm job %s was cancelled (%s)" % (job.job_id, info.state))
        elif base == "COMPLETED":
            job.finish(code)
        else:
            job.finish(code if code else 1, None if code else "Slurm job %s ended %s" % (job.job_id, info.state))

    def blame_node(self, job, code, message):
        """A failed job's message, and whether its node is to blame: when it is (node_fault), the
        run's later jobs avoid the node (`exclude_node`) and the message says so."""
        if not code or self.exclude_node is None:
            return message, False
        fault = self.node_fault(job, code)
        node = job.node or read_usage_file(job.adir).get("node")
        note = fault and node and self.exclude_node(node, fault)
        if not note:
            return message, False
        return "%s; %s" % (message or fault, note), True

    def node_fault(self, job, code):
        """Why the job's node, not its task, failed it: Slurm's NODE_FAIL or BOOT_FAIL, a job that
        never started there, or Apptainer's own error (exit 255, `FATAL`) within a second of the
        start (the node cannot run containers); None otherwise."""
        if job.state in ("NODE_FAIL", "BOOT_FAIL"):
            return "Slurm job %s ended with %s" % (job.job_id, job.state)
        if job.launch_failed:
            return "Slurm job %s never started there" % job.job_id
        if code != 255:
            return None
        usage = read_usage_file(job.adir)
        if usage.get("started_at") is None or usage.get("ended_at") is None or usage["ended_at"] - usage["started_at"] >= 1:
            return None
        try:
            with open(os.path.join(job.adir, "apptainer.stderr"), errors="replace") as f:
                fatal = [line for line in f.read()[-4000:].splitlines() if "FATAL" in line]
        except OSError:
            return None
        return "apptainer failed within a second: %s" % fatal[-1].strip() if fatal else None

    # -- what the ended jobs used -------------------------------------------------------------
    def add_usage(self, usage):
        """What sacct said the ended jobs used so far ({job id: figures}), for settle_accounting."""
        with self.cond:
            for job_id, figures in usage.items():
                self.accounting.setdefault(job_id, {}).update(figures)

    def settle_accounting(self, final=False):
        """Hand what sacct said the ended jobs used to the run (once it has their end, or at the
        end of the run whatever it has)."""
        with self.cond:
            for job_id, key in list(self.unaccounted.items()):
                figures = self.accounting.get(job_id, {})
                if figures.get("ended_at") or final:
                    if self.record_accounting(key, {k: v for k, v in figures.items() if v is not None}) or final:
                        del self.unaccounted[job_id]
                        self.accounting.pop(job_id, None)

    def account(self):
        """At the end of the run, one batched sacct for the ended jobs whose usage no status query
        brought yet, _ACCOUNTING_LAG seconds after the last end (slurmdbd has them by then, mostly);
        a second one only for those slurmdbd had not recorded (it lags behind an array's last
        elements), _ACCOUNTING_SETTLE seconds after the last end; both within _ACCOUNTING_END_WAIT."""
        start = time.monotonic()
        first = max(start, self.last_end + _ACCOUNTING_LAG)
        for wait_until in (first, max(first + 0.5, self.last_end + _ACCOUNTING_SETTLE)):
            if not self.unaccounted or self.client.status_source != "sacct":
                break
            time.sleep(max(0.0, min(wait_until, start + _ACCOUNTING_END_WAIT) - time.monotonic()))
            try:
                self.add_usage(self.client.query(list(self.unaccounted), self.unaccounted).usage)
            except WdlError as e:
                self.log.warn("could not ask sacct what the jobs used: %s" % e.message)
                break
            self.settle_accounting()
        self.settle_accounting(final=True)

    # -- the end -------------------------------------------------------------------------------
    def cancel_jobs(self, jobs, more_ids=()):
        """Finish these jobs as canceled and scancel them, with `more_ids` (jobs it does not follow) in the same call."""
        ids = [j.job_id for j in jobs if j.job_id and not j.done.is_set()] + list(more_ids)
        for j in jobs:
            if j.job_id:
                self.forget(j.job_id)
            j.finish(143, "canceled")
        self.client.scancel(ids)

    def stop(self):
        """The run is over: the thread ends."""
        with self.cond:
            self.stopped.set()
            self.cond.notify_all()


def slurm_partitions(settings):
    """The partitions a slurm_apptainer backend's settings configure: {kind (default, short_task,
    gpu, fpga): {name, max_cpu_per_task, ...}} (_PARTITION_SETTINGS), the settings given."""
    partitions = {}
    for key in _PARTITION_KEYS:
        part = {field: settings["%s.%s" % (key, field)] for field in _PARTITION_SETTINGS}
        if any(v not in (None, []) for v in part.values()):
            partitions[key[: -len("_slurm_partition")]] = {k: v for k, v in part.items() if v not in (None, [])}
    return partitions


@register_backend
class SlurmApptainerBackend(Backend):
    """Runs each attempt as a Slurm job of `apptainer exec` (see above), through four parts: the
    SlurmClient (the Slurm commands), the ImageCache (the containers' images), the ArrayGatherer
    (scatter elements as job arrays) and the JobMonitor (each job's state to its end). This facade
    takes the backend's settings, places a task (partition, limits, binds, batch script, sbatch
    line) and explains failures from the attempt's files."""

    kind = "slurm_apptainer"
    SETTINGS = _SLURM_SETTINGS
    guest_work = "/mnt/task/work"
    experimental = True
    files_lag = True  # the shared file system may show a job's files on this host late
    cpu = memory = float("inf")  # the cluster schedules; nothing is held back here
    outlives_engine = True

    def __init__(self, context, name, settings):
        super().__init__(context, name, settings)
        self.partitions = slurm_partitions(settings)
        self.placement = SlurmPlacement(*(settings[k] for k in SlurmPlacement._fields))  # the backend's own
        self.run_placement = context.settings.slurm_placement or {}  # run --slurm-<key>
        self.memory_flag, self.gpu_flag = settings["memory_flag"], settings["gpu_flag"]
        self.sbatch_args = settings["sbatch.args"] + settings["extra_sbatch_args"]
        self.conditionals = [(compile_expression(c["condition"], _CONDITION_NAMES, "sbatch.conditional"), c["args"])
                             for c in settings["sbatch.conditional"]]
        self.job_name_prefix = settings["job_name_prefix"]
        self.scratch, self.scratch_work = settings["scratch"], settings["scratch_work"]
        self.requeue = settings["requeue"]
        self.max_excluded = settings["max_excluded_nodes"]
        self.excluded = []  # nodes the run's later jobs avoid (--exclude), in the order they failed
        self.excluded_lock = threading.Lock()
        self.cap_told = False  # the warning that max_excluded_nodes is reached was given
        self.apptainer = settings["apptainer.executable"]
        cache = settings["apptainer.image_cache_dir"]
        # (the run directory does not exist yet: the backend is set up, and may refuse, before it is made)
        cache = os.path.abspath(cache) if cache else None
        log = context.log
        self.images = ImageCache(self.apptainer, cache, context.settings.container, log)
        self.apptainer_args = settings["apptainer.extra_args"] + settings["extra_apptainer_exec_args"]
        self.scatter_limit = max(1, settings["max_scatter_concurrency"])
        self.job_arrays = settings["job_arrays"]
        self.client = SlurmClient(log, settings["max_concurrency"], settings["submit_rate_limit"])
        # (the run's recorder and directory come after the backend: the parts reach them when they act)
        self.monitor = JobMonitor(self.client, log, lambda key, figures: context.recorder.record_accounting(key, figures),
                                  lambda: context.aborting, settings["interval"], settings["completion_interval"],
                                  settings["exit_read_timeout"], settings["max_queued_jobs"], self.exclude_node)
        self.refuse_conflicts(self.extra_arg_sources(settings), self.passes_anywhere)
        named = {"failed to validate %s_slurm_partition" % kind: part["name"] for kind, part in self.partitions.items()
                 if part.get("name")}
        if self.run_placement.get("partition"):
            named["`run --slurm-partition` asks for the partition"] = self.run_placement["partition"]
        self.client.check_cluster(named)
        self.gatherer = ArrayGatherer(self.client, self.monitor, lambda n: os.path.join(context.run_dir, "arrays", str(n)),
                                      lambda: context.recorder.flush(), settings["max_queued_jobs"])

    # -- placing a task ------------------------------------------------------------------------
    def partition_for(self, req, hints):
        """fpga > gpu > a `short_task` hint > the default partition (Sprocket's order)."""
        for kind, wanted in (("fpga", req.get("fpga") is True), ("gpu", req.get("gpu") is True),
                             ("short_task", hints.get("short_task") is True), ("default", True)):
            if wanted and kind in self.partitions:
                return self.partitions[kind]
        return {}

    def place(self, name, req, hints):
        """(partition, SlurmPlacement, the partition table's extra args) of a task: each from its
        `slurm_<key>` runtime/hints key, else `run --slurm-<key>`, else its partition table (the one
        of its kind, or the one of the partition it names), else the backend's settings. A partition
        the cluster does not have is refused (RunError) before the job is submitted."""
        chosen = {}
        for key in _SLURM_TASK_KEYS:
            v = hints.get("slurm_" + key)
            if v is not None and not isinstance(v, str):
                raise RunError("task `%s`: `slurm_%s` must be a String, not %s" % (name, key, json_dumps(v)))
            chosen[key] = v or self.run_placement.get(key)
        table = self.table_for(req, hints)
        if hints.get("slurm_partition") and hints["slurm_partition"] != table.get("name"):
            self.client.check_partition(chosen["partition"], "task `%s` asks (`slurm_partition`) for the partition" % name)
        place = SlurmPlacement(*(chosen.get(k) or table.get(k) or default for k, default in self.placement._asdict().items()))
        return chosen["partition"] or table.get("name"), place, table.get("extra_sbatch_args", [])

    def check_target(self, target):
        """A partition a task names in a literal `slurm_partition` is refused before any job is submitted."""
        for task, partition in sorted(literal_partitions(target).items()):
            self.client.check_partition(partition, "task `%s` asks (`slurm_partition`) for the partition" % task)

    def passes_for(self, partition, place):
        """Does the engine pass these options to a job so placed (sbatch_conflict's check)."""
        sets = dict(place._asdict(), partition=partition)
        return lambda when: self.memory_flag != "none" if when == "memory_flag" else bool(sets[when[len("sets_"):]])

    def passes_anywhere(self, when):
        """Does the engine pass these options to some job of the run (extra_arg_sources's check)."""
        if when == "memory_flag":
            return self.memory_flag != "none"
        key = when[len("sets_"):]
        return bool(self.run_placement.get(key) or any(p.get("name" if key == "partition" else key)
                                                       for p in self.partitions.values())
                    or (key != "partition" and getattr(self.placement, key)))

    def extra_arg_sources(self, settings):
        """[(the setting's name, its arguments)] of every extra sbatch argument the configuration gives."""
        table = "`run.backends.%s.%%s`" % self.name
        sources = [(table % k, settings[k]) for k in ("sbatch.args", "extra_sbatch_args")]
        sources += [(table % ("%s_slurm_partition.extra_sbatch_args" % kind), part.get("extra_sbatch_args", []))
                    for kind, part in self.partitions.items()]
        return sources + [(table % ("sbatch.conditional[%d].args" % i), c["args"])
                          for i, c in enumerate(settings["sbatch.conditional"])]

    def refuse_conflicts(self, sources, passes):
        problem = sbatch_conflict(sources, passes)
        if problem:
            raise RunError(problem)

    def table_for(self, req, hints):
        """A task's partition table: the one whose `name` its `slurm_partition` key or `run
        --slurm-partition` chose (none: {}), else the one of its kind."""
        named = hints.get("slurm_partition") or self.run_placement.get("partition")
        table = self.partition_for(req, hints)
        if named and named != table.get("name"):
            return next((p for p in self.partitions.values() if p.get("name") == named), {})
        return table

    def limit_text(self, requirements, hints):
        return "partition `%s` has a maximum of %%s" % self.table_for(requirements, hints).get("name", "?")

    def limits(self, requirements, hints):
        part = self.table_for(requirements, hints)
        return {"cpu": part.get("max_cpu_per_task"), "memory": part.get("max_memory_per_task")}

    # -- one attempt ---------------------------------------------------------------------------
    def start(self, request):
        req, hints, name, cpu, memory = request.requirements, request.hints, request.name, request.cpu, request.memory
        adir, cmd_path = request.directory, request.command
        context = self.context
        recorder = context.recorder
        for path in (request.stdout, request.stderr):
            open(path, "a").close()  # they exist on the shared filesystem before the job starts
        os.chmod(cmd_path, 0o770)
        image = self.images.image_for(req.get("container"), name, context.run_dir)
        scratch = self.partition_for(req, hints).get("scratch", self.scratch)
        binds = self.binds(request, context.tmp_dir, scratch)
        gpu = req.get("gpu") is True
        script = os.path.join(adir, "apptainer_command")
        environ = dict(request.env, TMPDIR="/tmp") if scratch else request.env  # /tmp is on the scratch
        with open(script, "w") as f:
            f.write(slurm_batch_script(self.apptainer, environ, binds, gpu, self.apptainer_args, image, self.shell, adir,
                                       scratch, request.work if self.scratch_work else None))
        os.chmod(script, 0o770)
        partition, place, part_args = self.place(name, req, hints)
        extra = self.conditional_args(req, hints, cpu, memory)
        # a task's own keys may pass what the configuration's extra arguments already give
        self.refuse_conflicts([("the extra sbatch arguments of task `%s` (`sbatch.args`, `extra_sbatch_args`, the "
                                "partition's, `sbatch.conditional`)" % name, self.sbatch_args + part_args + extra)],
                              self.passes_for(partition, place))
        gpu_type = hints.get("gpuType") or (hints.get("gpu") if isinstance(hints.get("gpu"), str) else None)
        options = (partition, gpu and hints.get("gpu"), gpu, hints.get("time_minutes", hints.get("max_time_minutes")),
                   tuple(self.tmp_args(req, scratch) + self.node_args() + self.sbatch_args + part_args + extra),
                   cpu, memory, place,
                   (self.memory_flag, self.gpu_flag, gpu and gpu_type or None))
        argv = sbatch_argv(*options, job_name=self.job_name(request.job_name), adir=adir, script=script,
                           comment=job_comment(context.run_name, name))
        job = SlurmJob(self.monitor, adir, request.key, name, memory, functools.partial(recorder.record_job, request))
        job.excluding = next((a for a in argv if a.startswith("--exclude=")), None)
        self.monitor.take_slot(job)
        if self.job_arrays and request.attempt == 0:  # a retry goes alone
            self.gatherer.gather(Gathered(job, argv, options, self.job_name(call_family(request.job_name)),
                                          job_comment(context.run_name, call_family(name))), call_family(name))
            return job
        write_sbatch_command(adir, argv)
        try:
            recorder.flush()  # the attempt is on record before its job exists (reattach)
            job_id = self.client.sbatch(argv, name)
        except BaseException:
            job.release()
            raise
        self.monitor.submitted(job, job_id)
        recorder.flush()
        return job

    def adopt(self, request, adopted):
        """Follow a job an earlier (dead) run submitted, as if this run had: one that ended while
        nobody watched is read from its exit status file, or from Slurm."""
        adir, job_id = adopted.directory, adopted.job_id
        job = SlurmJob(self.monitor, adir, request.key, request.name, request.memory,
                       functools.partial(self.context.recorder.record_job, request))
        code = read_exit_status(adir)
        if code is not None:
            if job_id:
                job.identified(job_id)
            job.finish(code)
            return job
        self.monitor.take_slot(job)
        self.monitor.follow(job, job_id)
        return job

    def find_jobs(self, adirs):
        """{attempt directory: {"job_id": its id}} for the jobs of these attempts that the controller
        still holds (queued, running, or ended within MinJobAge): their sbatch ran but the engine
        died before it wrote down their ids. One squeue of the user's jobs."""
        return {adir: {"job_id": job_id} for adir, job_id in self.client.find_jobs(adirs).items()}

    def job_name(self, name):
        return "%s-%s" % (self.job_name_prefix, name) if self.job_name_prefix else name

    def binds(self, request, tmp_dir, scratch=None):
        """(host path, container path, mode) of what the attempt's container sees; a host path
        under _SCRATCH is on the node's `scratch` (and with `scratch_work` the working directory)."""
        tmp_root = os.path.join(os.path.dirname(os.path.dirname(request.directory)), "tmp")
        binds = []  # /tmp and /var/tmp first: later binds (inputs under /tmp) go on top of them
        for sub, dst in (("container_tmp", "/tmp"), ("container_var_tmp", "/var/tmp")):
            if scratch:
                binds.append(("%s/%s" % (_SCRATCH, sub[len("container_"):]), dst, "rw"))
                continue
            os.makedirs(os.path.join(tmp_root, sub), exist_ok=True)
            binds.append((os.path.join(tmp_root, sub), dst, "rw"))
        binds += [(p, p, "ro") for p in sorted(self.input_paths(request.inputs, tmp_dir))]
        # The work directory is also bound at its own path: values computed before the command
        # (join_paths, glob) may name it by its host path.
        work = request.work
        src = _SCRATCH + "/work" if scratch and self.scratch_work else work
        return binds + [(request.command, "/mnt/task/command", "ro"), (src, "/mnt/task/work", "rw"), (src, work, "rw"),
                        (request.stdout, "/mnt/task/stdout", "rw"), (request.stderr, "/mnt/task/stderr", "rw")]

    def tmp_args(self, req, scratch):
        """`--tmp` (MiB) for a task's `disks` (GiB, its disks summed): the node-local space it needs,
        asked for only where the task uses the node's scratch."""
        disks = req.get("disks")
        if scratch and isinstance(disks, int) and not isinstance(disks, bool) and disks > 0:
            return ["--tmp=%d" % (disks * 1024)]
        return []

    def node_args(self):
        """`--exclude` of the nodes the run's jobs failed on (exclude_node), and `--requeue`."""
        with self.excluded_lock:
            args = ["--exclude=%s" % ",".join(self.excluded)] if self.excluded and not self.client.exclude_refused else []
        return args + (["--requeue"] if self.requeue else [])

    def exclude_node(self, node, why):
        """A job failed for its node's sake (`why`): the run's later jobs avoid the node, up to
        max_excluded_nodes of them. The note for the attempt's message, or None when the node is
        not excluded (already, or the cap is reached)."""
        with self.excluded_lock:
            new = node not in self.excluded and len(self.excluded) < self.max_excluded
            if new:
                self.excluded.append(node)
            tell_cap = not new and node not in self.excluded and self.max_excluded > 0 and not self.cap_told
            self.cap_told = self.cap_told or tell_cap
        if tell_cap:  # once: the cluster may be failing everywhere
            self.context.log.warn("node `%s` failed a job (%s), but %d nodes are excluded already (max_excluded_nodes): "
                                  "no more are" % (node, why, self.max_excluded))
        if not new:
            return None
        note = _EXCLUDED_NOTE % node
        self.context.log.warn("%s: %s" % (note, why))
        return note

    def input_paths(self, inputs, tmp_dir):
        """Files and directories the task reads (`inputs`: the host paths its values name, and the
        run's `tmp_dir` once it holds write_* files): bound read-only at the same path in the
        container (the output directory is on a filesystem shared by the submit and compute hosts)."""
        out = {os.path.abspath(p) for p in inputs if "://" not in p and os.path.exists(p)}
        if os.listdir(tmp_dir):  # write_* files the command may name
            out.add(tmp_dir)
        return out

    def conditional_args(self, req, hints, cpu, memory):
        """The args of the first `sbatch.conditional` entry whose condition holds for this task."""
        disks = req.get("disks")
        env = {"cpu": float(cpu), "memory": int(memory), "gpu": req.get("gpu") is True, "fpga": req.get("fpga") is True,
               "disks": disks if isinstance(disks, int) and not isinstance(disks, bool) else 0,
               "hint": StructValue(hints.items())}
        for expr, args in self.conditionals:
            if evaluate(expr, env, None) is True:
                return list(args)
        return []

    def wait_visible(self, path, is_dir):
        """A declared output missing on the submit host: wait for the shared filesystem to show
        it, up to exit_read_timeout. True when it appeared."""
        deadline = time.monotonic() + self.monitor.exit_read_timeout
        check = os.path.isdir if is_dir else os.path.isfile
        while time.monotonic() < deadline and not self.context.aborting:
            try:
                os.listdir(os.path.dirname(path) or ".")
            except OSError:
                pass
            if check(path):
                return True
            time.sleep(min(1.0, max(0.05, self.monitor.completion_interval)))
        return check(path)

    # -- the end -------------------------------------------------------------------------------
    def cancel_jobs(self, jobs):
        self.monitor.cancel_jobs(jobs)

    def cancel_all(self, jobs, adopted):
        """One scancel: the jobs it follows and those of the attempts it has not adopted yet (each
        with its id: adoptable_of() found those the dead engine had not recorded)."""
        self.monitor.cancel_jobs(jobs, [a.job_id for a in adopted if a.job_id])

    @classmethod
    def client_for(cls, context, settings):
        """The SlurmClient of a command that is no run (`status`, `cancel`, `doctor`): with the
        backend's limits, or one call at a time where there is no backend table (head jobs)."""
        if settings is None:
            return SlurmClient(context.log, 1, None)
        return SlurmClient(context.log, settings["max_concurrency"], settings["submit_rate_limit"])

    @classmethod
    def job_states(cls, context, settings, job_ids):
        """One squeue for all the jobs (an array's elements in one word)."""
        heads = list(collections.OrderedDict.fromkeys(i.partition("_")[0] for i in job_ids))
        return cls.client_for(context, settings).squeue(set(job_ids), heads, exit_codes=False) if heads else {}

    @classmethod
    def cancel_dead(cls, context, settings, attempts, run_dirs, head_jobs=()):
        """One scancel of all the jobs, and of the head jobs `head_jobs` (hand-offs' successors not yet
        started); those whose ids the dead engine had not recorded are found first by their batch
        script below the run directories (one squeue)."""
        client = cls.client_for(context, settings)
        ids = set(a.job_id for a in attempts if a.job_id) | set(head_jobs)
        ids.update(client.jobs_below(run_dirs) if run_dirs else ())
        if ids:
            client.scancel(sorted(ids))
        return len(ids)

    def close(self):
        """At the end of a run, whatever the reason: no job of ours is left in the queue (an
        array's sbatch under way is waited for, and its jobs canceled)."""
        held = self.gatherer.close()
        self.monitor.stop()
        self.monitor.cancel_jobs(held)
        self.gatherer.wait_submitted()
        live = self.monitor.live_jobs()
        if live:
            self.monitor.cancel_jobs(live)
        self.monitor.account()

    def detach(self):
        """A hand-off: an sbatch under way ends (its job is on record for the successor), no other
        starts, and no job is canceled. The jobs still gathering into an array were never submitted:
        the successor starts them."""
        self.gatherer.close()
        self.gatherer.wait_submitted()
        self.client.hold_submissions()
        self.monitor.stop()

    @classmethod
    def doctor(cls, context, name, settings, out_dir):
        client = cls.client_for(context, settings)
        return SlurmDoctor(client, name, settings, out_dir).checks()

    def explain(self, job):
        """What the seed's "Common issues" look like from the attempt's files."""
        def tail(name):
            try:
                with open(os.path.join(job.adir, name), errors="replace") as f:
                    return f.read()[-4000:]
            except OSError:
                return None

        app_err = tail("apptainer.stderr")
        slurm_err = tail("slurm.stderr")
        if job.exit_code == 127 and (app_err is None or "not found" in (slurm_err or "") or "command not found" in (app_err or "")):
            return ("`%s` was not found on the compute node (see `%s`): install it there, or load its module "
                    "through `sbatch.args` (e.g. [\"--export=ALL\"])" % (self.apptainer, os.path.join(job.adir, "slurm.stderr")))
        if slurm_err is None and tail("slurm.stdout") is None and job.exit_code:
            return ("the job wrote nothing to `%s`: the output directory must be on a filesystem the compute nodes "
                    "can write (check its permissions there)" % job.adir)
        if app_err and ("FATAL" in app_err or "permission denied" in app_err.lower()):
            return "apptainer failed: %s" % app_err.strip().splitlines()[-1]
        return None


_DOCTOR_JOB_WAIT = 300.0  # seconds `doctor` waits for its test job to run


def _stderr_text(directory):
    """The last line of a job's slurm.stderr, or None."""
    try:
        with open(os.path.join(directory, "slurm.stderr"), errors="replace") as f:
            lines = f.read()[-4000:].strip().splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


class SlurmDoctor:
    """`sprocket doctor` for a slurm_apptainer backend, through the backend's SlurmClient: the Slurm
    commands and their version, the configured partitions and their limits, one tiny test job
    (Apptainer's version on its node, a file it writes in the output directory and how long this
    host takes to see it), accounting (sacct, asked about that job), the image cache."""

    def __init__(self, client, name, settings, out_dir):
        self.client, self.name, self.settings, self.out_dir = client, name, settings, out_dir
        self.partitions = slurm_partitions(settings)

    def setting(self, key):
        return "`run.backends.%s.%s`" % (self.name, key)

    def checks(self):
        found = self.commands()
        yield found
        if found.problem is not None:
            return  # nothing else can be asked
        partitions = list(self.partition_checks())
        yield from partitions
        if all(c.problem is None for c in partitions):  # else sbatch would only refuse the partition again
            yield from self.test_job()
        yield self.image_cache()

    def commands(self):
        import shutil

        missing = [t for t in ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo") if shutil.which(t) is None]
        if missing:
            return Check("the Slurm commands", "`%s` not found on PATH" % "`, `".join(missing),
                         "run sprocket on a Slurm submit host with the Slurm client commands installed (or load "
                         "their module)")
        _, out, err = self.client.run_tool(["sbatch", "--version"], timeout=20)
        return Check("the Slurm commands (%s)" % ((out or err).strip() or "version unknown"), None, None)

    def partition_checks(self):
        """Each configured partition exists and is up, and its max_cpu_per_task/max_memory_per_task
        fit what a task can get there (the partition's per-node limits and its largest node)."""
        try:
            known, sizes = self.client.partitions(), self.client.node_sizes()
        except RunError as e:
            yield Check("the cluster's partitions", e.message, "check that slurmctld answers (`scontrol ping`) "
                        "and that SLURM_CONF names the cluster's slurm.conf")
            return
        if not self.partitions:
            yield Check("no partition configured: jobs go to the cluster's default partition", None, None)
        for kind, part in sorted(self.partitions.items()):
            key = "%s_slurm_partition" % kind
            name = part.get("name")
            if name is None:
                yield Check("%s" % key, "it has limits but no name", "set %s" % self.setting(key + ".name"))
                continue
            what = "partition `%s` (%s)" % (name, key)
            fields = known.get(name)
            if fields is None:
                yield Check(what, "the cluster has no such partition", "set %s to one it has: %s" % (
                    self.setting(key + ".name"), ", ".join(sorted(known)) or "none"))
                continue
            if fields.get("State", "UP") != "UP":
                yield Check(what, "its state is %s" % fields["State"], "ask the cluster's admins, or choose another")
                continue
            yield self.partition_limits(what, key, part, fields, sizes.get(name, (0, 0)))

    def partition_limits(self, what, key, part, fields, largest):
        """What a task can get in the partition, against max_cpu_per_task and max_memory_per_task."""
        cpus, memory = largest
        cap = fields.get("MaxCPUsPerNode", "UNLIMITED")
        cpus = min(cpus, int(cap)) if cap.isdigit() else cpus
        cap = fields.get("MaxMemPerNode", "UNLIMITED")
        memory = min(memory, int(cap) * 1048576) if cap.isdigit() else memory
        have = "a task can get %d CPU(s) and %s there" % (cpus, _human_bytes(memory))
        for field, want, limit, show in (("max_cpu_per_task", part.get("max_cpu_per_task"), cpus, str),
                                         ("max_memory_per_task", part.get("max_memory_per_task"), memory, _human_bytes)):
            if want is not None and limit and want > limit:
                return Check(what, "%s.%s = %s, but %s" % (key, field, show(want), have), "lower %s to %s" % (
                    self.setting("%s.%s" % (key, field)), show(limit)))
        return Check("%s: %s" % (what, have), None, None)

    def test_job(self):
        """One tiny job in the default partition, submitted as tasks are (sbatch_argv, the extra
        sbatch arguments): it writes Apptainer's version and its node's name into a file in the
        output directory; then accounting is asked about it."""
        import shutil

        try:
            os.makedirs(self.out_dir, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=".sprocket-doctor-", dir=self.out_dir)
        except OSError as e:
            yield Check("the test job", "cannot make a directory in the output directory `%s`: %s" % (
                self.out_dir, os_error_text(e)), "use an output directory (`-o`, run.output_dir) on a shared file "
                "system this host can write")
            return
        try:
            yield from self.run_test_job(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def run_test_job(self, tmp):
        from shlex import quote

        seen, apptainer = os.path.join(tmp, "seen"), self.settings["apptainer.executable"]
        script = os.path.join(tmp, "doctor")
        with open(script, "w") as f:
            f.write("#!/usr/bin/env bash\nversion=$(%s --version 2>&1)\nrc=$?\n%s"
                    '{ printf "node=%%s\\napptainer_rc=%%s\\napptainer=%%s\\n" "$(hostname)" "$rc" "$version"; %s'
                    'printf "written=%%s\\n" "$(date +%%s.%%N)"; } > %s.tmp && mv %s.tmp %s\n' % (
                        quote(apptainer), self.scratch_lines(), 'printf "scratch_rc=%s\\nscratch=%s\\n" "$scratch_rc" '
                        '"$scratch"; ' if self.settings.get("scratch") else "", quote(seen), quote(seen), quote(seen)))
        os.chmod(script, 0o770)
        table = self.partitions.get("default", {})
        place = SlurmPlacement(*(table.get(k) or self.settings[k] for k in SlurmPlacement._fields))  # as a task's
        flags = (self.settings["memory_flag"], self.settings["gpu_flag"], None)
        prefix = self.settings["job_name_prefix"]
        argv = sbatch_argv(table.get("name"), None, False, None,
                           self.settings["sbatch.args"] + self.settings["extra_sbatch_args"] + table.get("extra_sbatch_args", []),
                           1, 100 * 1048576, place, flags, job_name="%s-sprocket-doctor" % prefix if prefix else "sprocket-doctor",
                           adir=tmp, script=script, comment="sprocket:doctor")
        try:
            job_id = self.client.sbatch(argv, "doctor")
        except RunError as e:
            yield Check("a test job", e.message.replace("task `doctor`: ", ""), "the sbatch line was `%s`: fix what "
                        "sbatch says with %s" % (" ".join(argv), self.setting("sbatch.args")))
            return
        found = self.wait_for(job_id, seen)
        if isinstance(found, Check):  # it never showed: why
            yield found
        else:
            yield from self.job_checks(job_id, *found)
        yield self.accounting(job_id)

    def scratch_lines(self):
        """Where the backend has a `scratch` setting and it is set: the test job makes a directory
        there, as a task's job does (the node expands the setting's $VARIABLES), and removes it."""
        scratch = self.settings.get("scratch")
        if not scratch:
            return ""
        return ('scratch=$( { mkdir -p "%s" && mktemp -d "%s/sprocket-doctor.XXXXXX"; } 2>&1 )\nscratch_rc=$?\n'
                '[ "$scratch_rc" -ne 0 ] || rm -rf "$scratch"\n' % (scratch, scratch))

    def wait_for(self, job_id, seen):
        """({field: value} of the test job's file, when it showed here), or a Check that says why it
        never did."""
        deadline, ended, state, last_ask = time.monotonic() + _DOCTOR_JOB_WAIT, None, None, 0.0
        lag_limit = self.settings["exit_read_timeout"]
        while True:
            now = time.monotonic()
            try:
                os.listdir(os.path.dirname(seen))  # refresh an NFS client's view of the directory
                with open(seen) as f:
                    text, shown = f.read(), time.time()
                break
            except OSError:
                pass
            if now - last_ask > 1.0:
                last_ask = now
                try:
                    state = self.client.squeue({job_id}, [job_id]).get(job_id, state)
                except RunError:  # squeue did not answer this time: the file may still show
                    pass
                if state is not None and state.state.split()[0] in _SLURM_TERMINAL and ended is None:
                    ended = now
            if ended is not None and not state.state.startswith("COMPLETED"):
                return Check("a test job (Slurm job %s)" % job_id, "it ended %s: %s" % (state.state, _stderr_text(
                    os.path.dirname(seen)) or "it wrote nothing to slurm.stderr"), "the output directory must be on "
                    "a file system the compute nodes can write")
            if ended is not None and now - ended > lag_limit:
                return Check("a test job (Slurm job %s)" % job_id, "it ended, but the file `%s` it wrote did not show "
                             "here within %g s (%s)" % (seen, lag_limit, self.setting("exit_read_timeout")),
                             "the output directory must be on a file system the compute nodes share with this host")
            if now > deadline:
                self.client.scancel([job_id])
                return Check("the test job (Slurm job %s)" % job_id, "it did not run within %d s (%s)" % (
                    _DOCTOR_JOB_WAIT, "%s, reason %s" % (state.state, state.reason) if state else "unknown to squeue"),
                    "check the partition's queue (`squeue -p`), and its limits and access (sbatch.args)")
            time.sleep(0.05)
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line), shown

    def job_checks(self, job_id, fields, shown):
        """What the test job's file says: its node, Apptainer there, and how late it showed here."""
        node, apptainer = fields.get("node", "?"), self.settings["apptainer.executable"]
        yield Check("a test job ran (Slurm job %s on node %s)" % (job_id, node), None, None)
        if fields.get("apptainer_rc") == "0":
            yield Check("Apptainer on node %s (%s)" % (node, fields.get("apptainer", "").strip()), None, None)
        else:
            yield Check("Apptainer on node %s" % node, "`%s --version` failed there: %s" % (
                apptainer, fields.get("apptainer", "").strip() or "exit %s" % fields.get("apptainer_rc")),
                "install Apptainer on the compute nodes, load its module through %s, or set %s" % (
                    self.setting("sbatch.args"), self.setting("apptainer.executable")))
        if "scratch_rc" in fields:
            what = "scratch %s on node %s" % (self.settings["scratch"], node)
            if fields["scratch_rc"] == "0":
                yield Check("%s (%s) is writable" % (what, os.path.dirname(fields.get("scratch", ""))), None, None)
            else:
                yield Check(what, "cannot make a directory there: %s" % (fields.get("scratch") or "exit %s" % fields[
                    "scratch_rc"]), "set %s to a node-local directory jobs can write (e.g. \"$TMPDIR\")" % self.setting("scratch"))
        try:
            lag = max(0.0, shown - float(fields.get("written")))
        except (TypeError, ValueError):
            lag = None
        limit = self.settings["exit_read_timeout"]
        what = "the output directory's file system: a file written on the node showed here after %s (%s = %g s)" % (
            "?" if lag is None else "%.2f s" % lag, self.setting("exit_read_timeout"), limit)
        if lag is not None and lag > limit / 2:
            yield Check(what, "the shared file system lags close to the limit", "raise %s" % self.setting("exit_read_timeout"))
        else:
            yield Check(what, None, None)

    def accounting(self, job_id):
        """sacct answers (the backend follows jobs with it, and takes what they used from it)."""
        for wait in (0.0, 0.5, 2.0):  # slurmdbd records a job's end a moment after it
            time.sleep(wait)
            try:
                answer = self.client.query([job_id])
            except RunError as e:
                return Check("accounting", e.message, "start slurmdbd, or fix AccountingStorageHost in slurm.conf "
                             "(until then runs cannot tell why a job failed, nor record what it used)")
            state = answer.states.get(job_id)
            if state is None or state.state.split()[0] in _SLURM_TERMINAL:
                break
        if self.client.status_source != "sacct":
            return Check("accounting", "sacct does not answer: accounting storage is disabled", "set "
                         "AccountingStorageType=accounting_storage/slurmdbd in slurm.conf (without it, exit codes "
                         "come from squeue and scontrol and what jobs used is not recorded)")
        return Check("accounting: sacct answers (job %s: %s)" % (job_id, state.state if state else "not recorded yet"),
                     None, None)

    def image_cache(self):
        cache = self.settings["apptainer.image_cache_dir"]
        key = self.setting("apptainer.image_cache_dir")
        if not cache:
            return Check("image cache: none (%s not set: each run pulls its images into its own directory)" % key,
                         None, None)
        cache = os.path.abspath(cache)
        try:
            os.makedirs(cache, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".sprocket-doctor-", dir=cache)
            os.close(fd)
            os.remove(probe)
        except OSError as e:
            return Check("image cache `%s`" % cache, "cannot write there: %s" % os_error_text(e),
                         "make it writable, or set %s to a shared directory you can write" % key)
        return Check("image cache `%s` is writable" % cache, None, None)


class _ExclusiveLock:
    """flock() on a shared filesystem, or where that fails (some NFS/EFS mounts say EBADF or
    ENOLCK), a lock directory: mkdir is atomic everywhere. A lock directory older than an hour
    is taken for the leftover of a killed process."""

    def __init__(self, f, lockdir):
        self.f, self.lockdir, self.held_dir = f, lockdir, False

    def __enter__(self):
        import fcntl

        try:
            fcntl.flock(self.f, fcntl.LOCK_EX)
            return self
        except OSError:
            pass
        while True:
            try:
                os.mkdir(self.lockdir)
                self.held_dir = True
                return self
            except FileExistsError:
                try:
                    if time.time() - os.stat(self.lockdir).st_mtime > 3600:
                        os.rmdir(self.lockdir)
                except OSError:
                    pass
                time.sleep(0.5)

    def __exit__(self, *exc):
        if self.held_dir:
            os.rmdir(self.lockdir)


_CONDITION_NAMES = {"cpu": FLOAT, "memory": INT, "gpu": BOOLEAN, "fpga": BOOLEAN, "disks": INT, "hint": OBJECT}


# sacct's fields: the job's state first (what the monitor needs), then what it used (the trace).
_SACCT_FORMAT = "JobID,State,ExitCode,Reason,Submit,Start,End,Elapsed,TotalCPU,MaxRSS,ReqMem,AllocCPUS,NodeList"


def _sacct_time(text):
    """sacct's local `2026-12-02T00:10:48`: seconds since the epoch, or None (`Unknown`, `None`)."""
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None


def slurm_duration(text):
    """Slurm's durations in seconds (a float): a time limit (sbatch --time, a partition's MaxTime:
    `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`) or what sacct says a job took
    (Elapsed, TotalCPU: the same, its seconds with a fraction: `MM:SS.mmm`); None for anything else
    (`UNLIMITED`, `INVALID`, `NONE`, nothing)."""
    m = re.match(r"^(?:(\d+)-)?(\d+(?::\d+){0,2})(\.\d+)?$", (text or "").strip())
    if m is None:
        return None
    days, parts, fraction = m.group(1), [int(p) for p in m.group(2).split(":")], m.group(3)
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    else:  # MM, MM:SS, HH:MM:SS
        hours, minutes, seconds = {1: [0, parts[0], 0], 2: [0] + parts, 3: parts}[len(parts)]
    if fraction and len(parts) < (3 if days is not None else 2):  # a fraction of what is not seconds
        return None
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds + float(fraction or 0)


def _sacct_size(text):
    """`1234K`, `12M`, `2G`, `0`: bytes, or None (sacct's sizes are powers of 1024)."""
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGTP]?)[nc]?$", text or "")
    return int(float(m.group(1)) * 1024 ** " KMGTP".index(m.group(2) or " ")) if m else None


def _slurm_node(text):
    """A job's node from sacct's or scontrol's NodeList ('' for none: `None assigned`, `(null)`)."""
    return "" if not text or text in ("None assigned", "(null)") else text


def sacct_job_usage(f):
    """The attempt_usage figures of one job row of _SACCT_FORMAT."""
    f = f + [""] * (13 - len(f))
    submitted, started, ended = _sacct_time(f[4]), _sacct_time(f[5]), _sacct_time(f[6])
    return {"submitted_at": submitted, "started_at": started, "ended_at": ended if started else None,
            "queue_seconds": started - submitted if started and submitted else None,
            "wall_seconds": slurm_duration(f[7]) if started else None, "requested_memory": _sacct_size(f[10]),
            "allocated_cpus": int(f[11]) if f[11].isdigit() else None, "slurm_state": f[1].split()[0] if f[1] else None,
            "node": _slurm_node(f[12]) or None}


def sacct_step_usage(f):
    """The figures of a job's batch step row: its CPU time and peak memory."""
    f = f + [""] * (13 - len(f))
    return {k: v for k, v in (("cpu_seconds", slurm_duration(f[8])), ("peak_memory", _sacct_size(f[9])))
            if v is not None}


def _slurm_exit_code(text):
    """Slurm's `code:signal`: the code, or 128 + the signal."""
    m = re.match(r"^(\d+):(\d+)$", text or "")
    if not m:
        return 1
    code, sig = int(m.group(1)), int(m.group(2))
    return 128 + (sig & 0x7F) if sig else code


# -- Containers on this host: Docker, Podman, Apptainer --------------------------------------
#
# Each attempt runs in its task's `container` image on this host, with Sprocket's guest layout
# (SlurmApptainerBackend.binds: the work directory at /mnt/task/work and its own path). Docker and
# Podman: the inputs read-only under /mnt/task/inputs/ (guest_inputs; the command sees those paths,
# outputs map back: ContainerJob.output_path); one attached `run` per attempt, named after the
# attempt's directory (so a later run finds it after the engine died: find_jobs, adopt), kept
# until the engine read its outputs (a file of the container's own is copied out), then removed
# with the others that ended within a round (`cleanup`): per attempt, one runtime command.
# Apptainer: the batch script of the Slurm backend, run as a local process group (LocalBackend's
# adoption), the inputs at their own paths as on Slurm.

# What a failed pull said, and what it means: the first pattern that matches names the cause.
_PULL_CAUSES = (
    (("no such host", "network is unreachable", "dial tcp", "i/o timeout", "TLS handshake timeout",
      "connection refused", "Temporary failure in name resolution", "no route to host"),
     "the registry could not be reached (no network, or a proxy is needed)"),
    (("unauthorized", "authentication required", "denied", "403", "401"),
     "the registry refused access: log in with `%(exe)s login <registry>`, or check the image's name"),
    (("manifest unknown", "not found", "does not exist", "no such image", "short-name", "unknown"),
     "no such image in the registry (check its name and tag)"),
)
_PULL_TRANSIENT = _PULL_CAUSES[0][0]  # worth another try, with backoff
_CONTAINER_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?(?: ?([+-])(\d\d):?(\d\d))?")


def _container_time(text):
    """`inspect`'s times (Docker `2026-12-07T06:55:56.1234Z`, Podman `2026-12-07 07:55:56.1234 +0100 CET`)
    in seconds since the epoch, or None (`0001-01-01`: never started); also sprocket.db's (UTC)."""
    import calendar

    m = _CONTAINER_TIME.match(text or "")
    if m is None or m.group(1).startswith("0001"):
        return None
    whole = calendar.timegm(time.strptime("%s %s" % (m.group(1), m.group(2)), "%Y-%m-%d %H:%M:%S"))
    offset = (int(m.group(5)) * 3600 + int(m.group(6)) * 60) * (-1 if m.group(4) == "-" else 1) if m.group(4) else 0
    return whole - offset + float(m.group(3) or 0)


def container_name(adir):
    """The container of the attempt in `adir`: its call's name, its number, and a hash of the
    directory (unique to the run): found again from the directory alone (find_jobs)."""
    import hashlib

    call = os.path.basename(os.path.dirname(os.path.dirname(adir)))
    digest = hashlib.sha1(os.path.realpath(adir).encode()).hexdigest()[:12]
    return "sprocket-%s-%s-%s" % (re.sub(r"[^A-Za-z0-9_.-]", "_", call)[:80], os.path.basename(adir), digest)


class RuntimeImages(ImageCache):
    """The Docker/Podman images of the tasks' containers: each looked up (`image inspect`) and,
    when absent, pulled at most once per run (ImageCache's locks and fallback list); an image
    is (its reference, its id)."""

    def pull(self, image, run_dir):
        m = re.match(r"^([a-z][a-z0-9+.-]*)://(.+)$", image)
        if m and m.group(1) != "docker":
            raise RunError("container `%s`: `%s` runs OCI images (`name:tag`, `docker://name:tag`); `%s://` is "
                           "for the apptainer backends" % (image, self.apptainer, m.group(1)))
        ref = m.group(2) if m else image
        digest = self.image_id(ref)
        if digest is not None:
            return ref, digest
        delay, text, code = 1.0, "", 0
        for attempt in range(3):  # (podman retries a pull on its own too)
            self.log.info("pulling container image `%s`" % ref)
            code, out, err = self.run_tool([self.apptainer, "pull", ref], timeout=3600)
            if code == 0:
                digest = self.image_id(ref)
                if digest is not None:
                    return ref, digest
            text = (err or out).strip()
            if code == 127:
                raise RunError("`%s` was not found on PATH: install it, or set `executable`" % self.apptainer)
            if not any(p.lower() in text.lower() for p in _PULL_TRANSIENT) or attempt == 2:
                break
            time.sleep(delay)
            delay *= 2
        cause = next((why for patterns, why in _PULL_CAUSES if any(p.lower() in text.lower() for p in patterns)),
                     "the pull failed")
        raise RunError("could not pull container image `%s`: %s (%s pull exit %d: %s)" % (
            ref, cause % {"exe": self.apptainer}, self.apptainer, code, text[-1000:] or "no output"))

    def image_id(self, ref):
        """The id of a local image (`sha256:...`), or None when it is not here."""
        code, out, _ = self.run_tool([self.apptainer, "image", "inspect", "--format", "{{.Id}}", ref])
        digest = out.strip().splitlines()[0] if code == 0 and out.strip() else None
        return digest if digest is None or ":" in digest else "sha256:" + digest


_HOST_CONTAINER_SETTINGS = {  # the rows the docker, podman and apptainer backends share
    "executable": Setting("str", None, "docker, podman, apptainer: the command (default: the `type`'s name)"),
    "extra_args": Setting("list", [], "docker, podman, apptainer: extra `run` (`exec`) arguments"),
}
_CONTAINER_SETTINGS = dict(LocalBackend.SETTINGS, **_HOST_CONTAINER_SETTINGS, **{
    "limit_behavior": Setting(("deny", "try_with_max"), None, "docker/podman: a task asking for more CPU or memory "
                              "than `cpu`/`memory` is refused or run with that (default: run.task.*_limit_behavior)"),
    "cleanup": Setting("bool", True, "docker/podman: remove each container once its attempt ended"),
    "gpu": Setting("bool", False, "docker/podman: the runtime can give containers the host's GPUs (Docker's "
                   "`--gpus all`, Podman's CDI `--device nvidia.com/gpu=all`); else a task asking for one is refused"),
})
_GPU_FLAGS = {"docker": ["--gpus", "all"], "podman": ["--device", "nvidia.com/gpu=all"]}
# After the command, in the container's shell (builtins only: the image may have no tools): its
# exit status, what its processes used (`times`), and from the container's own memory cgroup (v2,
# or v1) how many of them the OOM killer ended and its peak memory: the container's exit alone
# does not say an OOM kill of the command from another 137, and the cgroup is gone once it ended.
_CONTAINER_EPILOGUE = (
    "rc=$?; { echo \"exit=$rc\"; times; "
    "for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do "
    "[ -r $f ] && while read k v; do [ \"$k\" = oom_kill ] && echo \"oom_kill=$v\"; done < $f; done; "
    "for f in /sys/fs/cgroup/memory.peak /sys/fs/cgroup/memory/memory.max_usage_in_bytes; do "
    "[ -r $f ] && read v < $f && echo \"peak_memory=$v\"; done; } > /mnt/task/usage 2> /dev/null; exit $rc")
_GUEST_INPUTS = "/mnt/task/inputs"  # Sprocket's: inputs at <it>/<n>/<name>, one <n> per parent directory
_REAP_ROUND = 1.0  # seconds: the containers that ended within one are removed with one `rm`


def container_run_argv(exe, kind, name, image, binds, environ, cpu, memory, gpu, extra_args, shell, adir):
    """The `docker run`/`podman run` command line of one attempt: attached (its exit is the
    container's), named, as this user, the task's env, limits and mounts, its command's output in
    /mnt/task/stdout and stderr, then what it used (_CONTAINER_EPILOGUE) in the attempt's `usage` file."""
    argv = [exe, "run", "--name", name, "--label", "sprocket.directory=%s" % adir,
            "--user", "%d:%d" % (os.getuid(), os.getgid()), "--workdir", "/mnt/task/work"]
    if kind == "podman" and os.getuid() != 0:  # rootless: the user's own ids inside are theirs outside
        argv.append("--userns=keep-id")
    if cpu:
        argv.append("--cpus=%g" % cpu)
    if memory:  # swap as large as the memory: none beyond it, so that too much is an OOM kill
        argv += ["--memory=%db" % memory, "--memory-swap=%db" % memory]
    if gpu:
        argv += _GPU_FLAGS[kind]
    for src, dst, mode in binds:
        if "," in src or "," in dst:
            raise RunError("`%s` cannot be mounted into the container: `%s run --mount` has no way to write a `,` in "
                           "a path; rename the file or directory" % (src if "," in src else dst, exe))
        argv.append("--mount=type=bind,source=%s,target=%s%s" % (src, dst, ",readonly" if mode == "ro" else ""))
    argv += ["--env=%s=%s" % kv for kv in sorted(environ.items())]
    argv += list(extra_args)
    return argv + [image, shell, "-c", "%s /mnt/task/command > /mnt/task/stdout 2> /mnt/task/stderr; %s" % (
        shell, _CONTAINER_EPILOGUE)]


def _spawn_tool(argv, log):
    """A runtime command that lasts as long as what it runs (an attached `run`): its Popen, its
    output appended to the file `log`, in a session of its own (the terminal's Ctrl-C is the engine's
    to act on, not the runtime's to forward into the container)."""
    import subprocess

    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


class ContainerJob(Job):
    """One attempt's container: started here by an attached `run`, whose exit is the container's (no
    `wait`; `inspect` only for a 137 the command's shell did not see), or adopted and followed with
    `wait` and `inspect`. It stays until the engine has read its outputs (release), which may name
    files of the container's own: output_path() copies them out."""

    def __init__(self, backend, name, adir, memory, image, mounts, host_roots):
        self.backend, self.job_id, self.adir, self.memory, self.image = backend, name, adir, memory, image
        self.mounts = mounts  # [(path in the container, host path)], the deepest first
        self.host_roots = host_roots  # [(p, p)]: the host's paths the engine gives the task (its run's, its
        # attempt's, its inputs)
        self.process = None  # the attached `run`, when this engine started it
        self.cancelled = False
        self.times = {}
        self.copied = []

    def wait(self):
        exe = self.backend.exe
        if self.process is None:
            followed = self.follow()
            if followed is None:
                return 1
            status, oom = followed
        else:
            status, oom = self.process.wait(), False
            self.times["ended_at"] = time.time()
        figures = self.figures()
        if "exit" in figures:  # the command's own status, as the container's shell saw it
            status = figures["exit"]
        elif status in (125, 126, 127) and not self.cancelled:  # the runtime's: the command never ran
            self.message, self.final = "`%s run` failed (exit %d): %s" % (exe, status, self.log_tail()), True
            return status
        elif status == 137 and not oom and self.process is not None:  # its shell was killed: by the OOM killer?
            code, out, _ = self.backend.run_tool([exe, "inspect", "--format", "{{.State.OOMKilled}}", self.job_id])
            oom = code == 0 and out.strip() == "true"
        if oom or status == 137 and figures.get("oom_kill"):
            self.out_of_memory = True
            self.message = ("its container ran out of memory: it used more than its --memory=%s (raise the task's "
                            "`memory` requirement, or set `run.task.memory_retry_multiplier`)" % (
                                _human_bytes(self.memory) if self.memory else "the host's"))
            status = status or 137
        elif self.cancelled:
            self.message = "its container was killed"
        return status

    def follow(self):
        """An adopted container's end: (its exit status, OOMKilled) from `wait` and `inspect`, with its
        times; None when it is gone."""
        tool, exe = self.backend.run_tool, self.backend.exe
        while True:  # (a `wait` ended by a signal, Ctrl-C's in the terminal, is not the container's end)
            tool([exe, "wait", self.job_id], timeout=None)
            code, out, err = tool([exe, "inspect", "--format", "{{.State.ExitCode}}|{{.State.OOMKilled}}|"
                                   "{{.State.StartedAt}}|{{.State.FinishedAt}}|{{.State.Running}}", self.job_id])
            fields = out.strip().split("|")
            if code != 0 or fields[-1] != "true":
                break
            time.sleep(0.5)
        if code != 0 or len(fields) != 5 or not fields[0].lstrip("-").isdigit():
            self.backend.forget(self)
            self.message, self.retry_free = "its container `%s` is gone (%s)" % (
                self.job_id, (err or out).strip()[-300:] or "removed while no engine watched it"), True
            return None
        self.times = {"started_at": _container_time(fields[2]), "ended_at": _container_time(fields[3])}
        return int(fields[0]), fields[1] == "true"

    def figures(self):
        """What the container's epilogue wrote: {"exit": status, "oom_kill": n, "peak_memory": bytes}."""
        try:
            with open(os.path.join(self.adir, "usage")) as f:
                return {k: int(v) for k, v in re.findall(r"^(exit|oom_kill|peak_memory)=(\d+)$", f.read(), re.M)}
        except OSError:
            return {}

    def log_tail(self):
        try:
            with open(os.path.join(self.adir, "container.log"), "rb") as f:
                return f.read().decode("utf-8", "replace").strip()[-1000:] or "no output"
        except OSError:
            return "no output"

    def usage(self):
        import socket

        figures = {"cpu_seconds": read_usage_file(self.adir).get("cpu_seconds"),
                   "peak_memory": self.figures().get("peak_memory")}
        return dict(figures, node=socket.gethostname(), **self.times)

    def output_path(self, path):
        """A host path the engine gave the task is itself; a path in one of the container's mounts is
        what is mounted there; any other is the container's own: copied out into `container_files`."""
        host = moved_path(path, self.host_roots) or moved_path(path, self.mounts)
        if host is not None:
            return host
        copy = os.path.join(self.adir, "container_files", os.path.normpath(path).lstrip("/"))
        if copy not in self.copied and not os.path.lexists(copy):
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            code, _, _ = self.backend.run_tool([self.backend.exe, "cp", "%s:%s" % (self.job_id, path), copy])
            if code == 0:
                self.copied.append(copy)
        return copy

    def cancel(self):
        self.cancelled = True
        for _ in range(50):  # (then close() removes it, whatever its state)
            code, _, _ = self.backend.run_tool([self.backend.exe, "kill", self.job_id])
            if code == 0 or self.process is None or self.process.poll() is not None:
                return
            time.sleep(0.2)  # its attached `run` has not made it yet

    def release(self):
        self.backend.finished(self)


@register_backend
class ContainerBackend(Backend):
    """Runs each attempt in a Docker or Podman container on this host (see above); `type` says
    which, `executable` may name another command that speaks the same. Per attempt: one `run`;
    the containers that ended are removed by a thread of the backend's, one `rm` a round."""

    kind = "docker"
    SETTINGS = _CONTAINER_SETTINGS
    guest_work = "/mnt/task/work"
    rm = ("rm", "-f")  # the removal of containers (any of them may be gone already)

    def __init__(self, context, name, settings, run_tool=_run_tool, spawn=_spawn_tool):
        super().__init__(context, self.kind, settings)  # its type in sprocket.db, as the local backend's
        self.table = name  # (for messages)
        self.exe = settings["executable"] or self.kind
        self.run_tool, self.spawn = run_tool, spawn
        self.cpu = float(settings["cpu"] or os.cpu_count() or 1)
        self.memory = int(settings["memory"] or host_memory())
        if settings["limit_behavior"]:
            self.behavior = {"cpu": settings["limit_behavior"], "memory": settings["limit_behavior"]}
        self.images = RuntimeImages(self.exe, None, context.settings.container, context.log, run_tool)
        self.live = {}  # container name -> ContainerJob not yet released
        self.ended = []  # names of the released containers the reaper removes next round
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.reaper, self.closing = None, False
        code, out, err = run_tool([self.exe, "version"], timeout=60)
        if code != 0:
            raise RunError("`run.backends.%s` runs tasks with `%s`, which %s" % (name, self.exe, (
                "is not on PATH: install it, or set `executable`" if code == 127 else
                "does not work here: %s" % ((err or out).strip()[-500:] or "exit %d" % code))))

    @classmethod
    def check_settings(cls, name, settings, where):
        LocalBackend.check_settings(name, settings, where)

    def check(self, name, requirements, hints, cpu, memory):
        if requirements.get("gpu") is True and not self.settings["gpu"]:
            raise RunError("task `%s` requires a GPU, but `run.backends.%s.gpu` is not set: set it to true where %s "
                           "can give containers the host's GPUs (`%s`)" % (
                               name, self.table, self.exe, " ".join(_GPU_FLAGS[self.kind])))
        return super().check(name, requirements, hints, cpu, memory)

    def guest_inputs(self, request):
        """Sprocket's layout: each input that exists at _GUEST_INPUTS/<n>/<its name>, one <n> per parent
        directory (the spec's files from one directory stay together: an index beside its data); but
        not what is in the attempt's own directory (its working directory is mounted as it is)."""
        own = [(request.directory, request.directory)]
        parents, out = {}, {}
        for p in sorted({os.path.abspath(p) for p in request.inputs if "://" not in p and os.path.exists(p)}):
            if moved_path(p, own) is not None:
                continue
            n = parents.setdefault(os.path.dirname(p), len(parents))
            out[p] = "%s/%d/%s" % (_GUEST_INPUTS, n, os.path.basename(p))
        return out

    def binds(self, request, tmp_dir):
        """(host path, container path, mode) of what the attempt's container sees: the Slurm
        backend's (SlurmApptainerBackend.binds), but the inputs read-only at their guest paths."""
        return (SlurmApptainerBackend.binds(self, request, tmp_dir)
                + [(host, guest, "ro") for host, guest in self.guest_inputs(request).items()]
                + [(os.path.join(request.directory, "usage"), "/mnt/task/usage", "rw")])

    def input_paths(self, inputs, tmp_dir):
        """What SlurmApptainerBackend.binds mounts at its own path: the run's write_* files, which the
        command names by their host path (its inputs are at guest paths)."""
        return {tmp_dir} if os.listdir(tmp_dir) else set()

    def start(self, request):
        adir, context = request.directory, self.context
        for path in (request.stdout, request.stderr, os.path.join(adir, "usage")):
            open(path, "a").close()  # mounted into the container: they must exist
        ref, digest = self.images.image_for(request.requirements.get("container"), request.name, context.run_dir)
        name = container_name(adir)
        binds = self.binds(request, context.tmp_dir)
        argv = container_run_argv(self.exe, self.kind, name, ref, binds, request.env, request.cpu, request.memory,
                                  request.requirements.get("gpu") is True, self.settings["extra_args"], self.shell, adir)
        job = self.job(request, name, digest, binds)
        context.recorder.record_image(request, digest)
        context.recorder.flush()  # the attempt is on record before its container exists (reattach)
        with self.lock:
            self.live[name] = job
        try:
            job.process = self.spawn(argv, os.path.join(adir, "container.log"))
        except OSError as e:
            self.forget(job)
            raise RunError("task `%s`: `%s run` could not start: %s" % (request.name, self.exe, os_error_text(e)))
        job.times["started_at"] = time.time()
        context.recorder.record_job(request, name, "container")
        return job

    def job(self, request, name, image, binds):
        mounts = sorted(((dst, src) for src, dst, _ in binds if src != dst), key=lambda m: -len(m[0]))
        roots = {os.path.abspath(p) for p in request.inputs if "://" not in p}
        roots.update((self.context.run_dir, request.directory))
        return ContainerJob(self, name, request.directory, request.memory, image, mounts,
                            [(p, p) for p in sorted(roots, key=len, reverse=True)])

    def adopt(self, request, adopted):
        code, out, _ = self.run_tool([self.exe, "inspect", "--format", "{{.Image}}", adopted.job_id])
        image = out.strip() if code == 0 and out.strip() else None
        image = "sha256:" + image if image and ":" not in image else image
        if image:
            self.context.recorder.record_image(request, image)
        job = self.job(request, adopted.job_id, image, self.binds(request, self.context.tmp_dir))
        with self.lock:
            self.live[adopted.job_id] = job
        return job

    def find_jobs(self, adirs):
        """The containers of these attempts that still exist (a dead engine started them but had
        not recorded their names): one `ps -a`."""
        names = {container_name(adir): adir for adir in adirs}
        code, out, _ = self.run_tool([self.exe, "ps", "-a", "--format", "{{.Names}}"])
        return {names[n]: {"job_id": n} for n in out.split() if n in names} if code == 0 else {}

    def finished(self, job):
        """The engine is done with a container: removed in the reaper's next round, unless `cleanup = false`."""
        with self.lock:
            self.live.pop(job.job_id, None)
            if not self.settings["cleanup"] or self.closing:
                return
            self.ended.append(job.job_id)
            if self.reaper is None:
                self.reaper = threading.Thread(target=self.reap, name="container-reaper", daemon=True)
                self.reaper.start()
            self.wake.notify()

    def reap(self):
        """The reaper's rounds: wait for a container to end, let others end within _REAP_ROUND, remove them all."""
        while True:
            with self.lock:
                while not self.ended and not self.closing:
                    self.wake.wait()
                deadline = time.time() + _REAP_ROUND
                while not self.closing and time.time() < deadline:
                    self.wake.wait(deadline - time.time())
                if self.closing:
                    return  # close() removes the rest
                names, self.ended = self.ended, []
            self.run_tool([self.exe] + list(self.rm) + names)

    def forget(self, job):
        with self.lock:
            self.live.pop(job.job_id, None)

    def close(self):
        """However the run ended: none of its containers is left, running or stopped."""
        with self.lock:
            names, self.live, self.ended = sorted(self.live) + self.ended, {}, []
            self.closing = True
            self.wake.notify_all()
            reaper = self.reaper
        if reaper is not None:
            reaper.join()  # (its round in progress ends)
        if names:
            self.run_tool([self.exe] + list(self.rm) + names)

    @classmethod
    def cancel_dead(cls, context, settings, attempts, run_dirs):
        """One `rm -f` of the attempts' containers (by name: those not recorded are named after
        their attempt directory; an attempt without a row has no name to find it by)."""
        exe = settings["executable"] or cls.kind
        names = sorted({a.job_id or container_name(a.directory) for a in attempts})
        code, out, err = _run_tool([exe, "rm", "-f", "--ignore"] + names if cls.kind == "podman" else
                                   [exe, "rm", "-f"] + names) if names else (0, "", "")
        if code != 0 and "no such container" not in err.lower():
            raise RunError("`%s rm -f` failed (exit %d): %s" % (exe, code, err.strip()[-500:]))
        return len(names)


@register_backend
class PodmanBackend(ContainerBackend):
    """ContainerBackend, registered as `podman` too (its default command, GPUs by CDI, and its `rm`)."""

    kind = "podman"
    rm = ("rm", "-f", "--ignore")  # (without --ignore, podman 4's `rm -f` of one that is gone removes none)


_APPTAINER_SETTINGS = dict(LocalBackend.SETTINGS, **_HOST_CONTAINER_SETTINGS, **{
    "image_cache_dir": Setting("path", None, "apptainer: a directory of pulled images (default: the run's)"),
})


@register_backend
class LocalApptainerBackend(LocalBackend):
    """Runs each attempt on this host with `apptainer exec` (the Slurm backend's batch script and
    image cache, as a local process group: adopted or killed after a crash as LocalBackend's)."""

    kind = "apptainer"
    SETTINGS = _APPTAINER_SETTINGS
    guest_work = "/mnt/task/work"
    binds = SlurmApptainerBackend.binds
    input_paths = SlurmApptainerBackend.input_paths

    def __init__(self, context, name, settings):
        super().__init__(context, name, settings)
        self.apptainer = settings["executable"] or self.kind
        cache = settings["image_cache_dir"]
        self.images = ImageCache(self.apptainer, os.path.abspath(cache) if cache else None, context.settings.container,
                                 context.log)

    def check(self, name, requirements, hints, cpu, memory):
        return Backend.check(self, name, requirements, hints, cpu, memory)

    def start(self, request):
        adir, context = request.directory, self.context
        for path in (request.stdout, request.stderr):
            open(path, "a").close()
        os.chmod(request.command, 0o770)
        image = self.images.image_for(request.requirements.get("container"), request.name, context.run_dir)
        script = os.path.join(adir, "apptainer_command")
        with open(script, "w") as f:
            f.write(slurm_batch_script(self.apptainer, request.env, self.binds(request, context.tmp_dir),
                                       request.requirements.get("gpu") is True, self.settings["extra_args"], image,
                                       self.shell, adir))
        job = self.start_job([self.shell, "-c", _LOCAL_WRAPPER, script, os.path.join(adir, "rc")], request.work,
                             os.path.join(adir, "apptainer.stdout"), os.path.join(adir, "apptainer.stderr"), {})
        context.recorder.record_process(request, job.pgid, job.process_started)
        return job


# ============================================================================================
# 16. Configuration
# ============================================================================================
#
# sprocket.toml files are merged in Sprocket's order (later wins): next to the program, the
# user config directory, ./sprocket.toml, $SPROCKET_CONFIG, then each --config. Tables merge
# recursively, arrays append, other values replace. One schema table drives validation,
# defaults, error messages and `sprocket config resolve`.


def _toml_loads(text, path):
    """TOML 1.0 -> dict: tomllib where the Python has it (3.11+), else the reader below."""
    try:
        import tomllib  # novermin
    except ImportError:
        tomllib = None
    try:
        return tomllib.loads(text) if tomllib else TomlReader(text, path).document()
    except RecursionError:
        raise ConfigError("invalid TOML: `%s` is nested too deeply" % path)
    except ValueError as e:  # tomllib.TOMLDecodeError
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        span = None
        if m:
            src = Source(path, text)
            lines = text.split("\n")
            line = int(m.group(1))
            span = Span(src, sum(len(x) + 1 for x in lines[: line - 1]) + int(m.group(2)) - 1)
        raise ConfigError("invalid TOML: %s" % re.sub(r"\s*\(at line.*\)$", "", str(e)), span)


_TOML_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_NUMBER = re.compile(
    r"[+-]?(?:inf|nan)|0x[0-9A-Fa-f](?:_?[0-9A-Fa-f])*|0o[0-7](?:_?[0-7])*|0b[01](?:_?[01])*"
    r"|[+-]?(?:0|[1-9](?:_?[0-9])*)(?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?")
_TOML_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})?)?"
    r"|(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?")
_TOML_LINE_END_BACKSLASH = re.compile(r"\\[ \t]*(?:\r\n|\n)(?:[ \t]|\r\n|\n)*")
_TOML_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class TomlReader:
    """A small TOML 1.0 reader for Python 3.9 and 3.10 (small functions over a position, after
    CPython's tomllib). Tables defined once, arrays of tables, inline tables, dotted keys, every
    string and number form, dates and times."""

    def __init__(self, text, path):
        self.src = Source(path, text)
        self.text = text
        self.pos = 0
        self.root = {}
        self.defined = set()  # ids of tables made by a [header] (cannot be reopened)
        self.dotted = set()  # ids of tables made by dotted keys (no [header] may reopen them)
        self.inline = set()  # ids of inline tables and static arrays (frozen)

    def error(self, message, pos=None):
        raise ConfigError("invalid TOML: %s" % message, Span(self.src, self.pos if pos is None else pos))

    def skip_ws(self):
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def skip_comment(self):
        if self.text.startswith("#", self.pos):
            end = self.text.find("\n", self.pos)
            end = len(self.text) if end < 0 else end
            self.check_chars(self.text[self.pos: end].rstrip("\r") if self.text[end - 1: end] == "\r" else
                             self.text[self.pos: end], self.pos)
            self.pos = end

    def check_chars(self, text, pos, newlines=False):
        """TOML forbids control characters (but tab) in strings and comments."""
        for i, c in enumerate(text):
            if (c < " " and c != "\t" and not (newlines and c == "\n")) or c == "\x7f":
                self.error("control character %r is not allowed here" % c, pos + i)

    def end_of_line(self):
        self.skip_ws()
        self.skip_comment()
        if self.pos >= len(self.text):
            return
        if self.text.startswith("\r\n", self.pos):
            self.pos += 2
        elif self.text[self.pos] == "\n":
            self.pos += 1
        else:
            self.error("expected the end of the line")

    def document(self):
        table = self.root
        while True:
            while self.pos < len(self.text) and (self.text[self.pos] in " \t\n" or self.text.startswith("\r\n", self.pos)):
                self.pos += 1
            self.skip_comment()
            if self.pos >= len(self.text):
                return self.root
            c = self.text[self.pos]
            if c in " \t\n":
                continue
            if c == "\r":
                self.error("a carriage return must be followed by a newline")
            if c == "[":
                table = self.header()
            else:
                self.key_value(table)
            self.end_of_line()

    def header(self):
        start = self.pos
        array = self.text.startswith("[[", self.pos)
        self.pos += 2 if array else 1
        self.skip_ws()
        keys = self.key()
        self.skip_ws()
        if not self.text.startswith("]]" if array else "]", self.pos):
            self.error("expected `%s`" % ("]]" if array else "]"))
        self.pos += 2 if array else 1
        parent = self.root
        for k in keys[:-1]:
            parent = self.descend(parent, k, start)
        last = keys[-1]
        if array:
            arr = parent.setdefault(last, [])
            if not isinstance(arr, list) or id(arr) in self.inline:
                self.error("`%s` is not an array of tables" % ".".join(keys), start)
            table = {}
            arr.append(table)
            return table
        existing = parent.get(last)
        if existing is None:
            table = parent[last] = {}
        elif isinstance(existing, dict) and not {id(existing)} & (self.defined | self.inline | self.dotted):
            table = existing
        else:
            self.error("table `%s` is defined more than once" % ".".join(keys), start)
        self.defined.add(id(table))
        return table

    def descend(self, table, key, pos):
        v = table.get(key)
        if v is None:
            v = table[key] = {}
        elif isinstance(v, list) and v and isinstance(v[-1], dict) and id(v) not in self.inline:
            v = v[-1]
        elif not isinstance(v, dict) or id(v) in self.inline:
            self.error("`%s` is already a value, not a table" % key, pos)
        return v

    def key(self):
        keys = [self.simple_key()]
        while True:
            self.skip_ws()
            if not self.text.startswith(".", self.pos):
                return keys
            self.pos += 1
            self.skip_ws()
            keys.append(self.simple_key())

    def simple_key(self):
        c = self.text[self.pos: self.pos + 1]
        if c == '"':
            return self.basic_string()
        if c == "'":
            return self.literal_string()
        m = _TOML_BARE_KEY.match(self.text, self.pos)
        if m is None:
            self.error("expected a key")
        self.pos = m.end()
        return m.group()

    def key_value(self, table):
        start = self.pos
        keys = self.key()
        self.skip_ws()
        if not self.text.startswith("=", self.pos):
            self.error("expected `=` after a key")
        self.pos += 1
        self.skip_ws()
        value = self.value()
        for k in keys[:-1]:
            sub = table.get(k)
            if sub is None:
                sub = table[k] = {}
                self.dotted.add(id(sub))
            elif not isinstance(sub, dict) or id(sub) in self.inline or id(sub) not in self.dotted:
                self.error("`%s` is already defined" % k, start)
            table = sub
        if keys[-1] in table:
            self.error("`%s` is defined more than once" % ".".join(keys), start)
        table[keys[-1]] = value

    def value(self):
        t = self.text
        c = t[self.pos: self.pos + 1]
        if c == '"':
            return self.multiline("\"\"\"", True) if t.startswith('"""', self.pos) else self.basic_string()
        if c == "'":
            return self.multiline("'''", False) if t.startswith("'''", self.pos) else self.literal_string()
        if c == "[":
            return self.array()
        if c == "{":
            return self.inline_table()
        if t.startswith("true", self.pos):
            self.pos += 4
            return True
        if t.startswith("false", self.pos):
            self.pos += 5
            return False
        m = _TOML_DATETIME.match(t, self.pos)
        if m and (m.group(1) or m.group(9)):
            start = self.pos
            self.pos = m.end()
            try:
                return self.datetime(m)
            except ValueError as e:
                self.error("invalid date or time: %s" % e, start)
        m = _TOML_NUMBER.match(t, self.pos)
        if m is None or m.end() == self.pos:
            self.error("expected a value")
        self.pos = m.end()
        text = m.group().replace("_", "")
        if text[:2] in ("0x", "0o", "0b"):
            return int(text[2:], {"x": 16, "o": 8, "b": 2}[text[1]])
        if any(x in text for x in ".eEinfa"):
            return float(text)
        return int(text)

    def datetime(self, m):
        import datetime as dt

        if m.group(9):
            frac = (m.group(12) or "0")[:6].ljust(6, "0")
            return dt.time(int(m.group(9)), int(m.group(10)), int(m.group(11)), int(frac))
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if m.group(4) is None:
            return dt.date(y, mo, d)
        frac = (m.group(7) or "0")[:6].ljust(6, "0")
        tz = m.group(8)
        tzinfo = None
        if tz:
            if tz in "Zz":
                tzinfo = dt.timezone.utc
            else:
                sign = 1 if tz[0] == "+" else -1
                tzinfo = dt.timezone(sign * dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        return dt.datetime(y, mo, d, int(m.group(4)), int(m.group(5)), int(m.group(6)), int(frac), tzinfo)

    def basic_string(self):
        self.pos += 1
        out = []
        t = self.text
        while True:
            if self.pos >= len(t) or t[self.pos] == "\n":
                self.error("unterminated string")
            c = t[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\":
                out.append(self.escape())
                continue
            self.check_chars(c, self.pos)
            out.append(c)
            self.pos += 1

    def escape(self):
        t = self.text
        c = t[self.pos + 1: self.pos + 2]
        if c in _TOML_ESCAPES:
            self.pos += 2
            return _TOML_ESCAPES[c]
        if c in ("u", "U"):
            n = 4 if c == "u" else 8
            digits = t[self.pos + 2: self.pos + 2 + n]
            if not re.match(r"^[0-9A-Fa-f]{%d}$" % n, digits):
                self.error("invalid unicode escape")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                self.error("`\\%s%s` is not a Unicode scalar value" % (c, digits))
            self.pos += 2 + n
            return chr(code)
        self.error("invalid escape `\\%s`" % c)

    def literal_string(self):
        end = self.text.find("'", self.pos + 1)
        nl = self.text.find("\n", self.pos + 1)
        if end < 0 or 0 <= nl < end:
            self.error("unterminated string")
        s = self.text[self.pos + 1: end]
        self.check_chars(s, self.pos + 1)
        self.pos = end + 1
        return s

    def multiline(self, quote, basic):
        t = self.text
        self.pos += 3
        if t.startswith("\r\n", self.pos):
            self.pos += 2
        elif t.startswith("\n", self.pos):
            self.pos += 1
        out = []
        while True:
            if self.pos >= len(t):
                self.error("unterminated multi-line string")
            if t.startswith(quote, self.pos):
                # Up to two quotes right before the closing ones belong to the string.
                extra = 0
                while extra < 2 and t.startswith(quote[0], self.pos + 3 + extra):
                    extra += 1
                out.append(quote[0] * extra)
                self.pos += 3 + extra
                return "".join(out)
            c = t[self.pos]
            if basic and c == "\\":
                m = _TOML_LINE_END_BACKSLASH.match(t, self.pos)
                if m:  # a line-ending backslash trims the following whitespace
                    self.pos = m.end()
                    continue
                out.append(self.escape())
                continue
            if c == "\r" and t.startswith("\r\n", self.pos):  # newlines read as \n, as tomllib does
                self.pos += 1
                continue
            self.check_chars(c, self.pos, newlines=True)
            out.append(c)
            self.pos += 1

    def array(self):
        self.pos += 1
        items = []
        while True:
            self.skip_blank()
            if self.text.startswith("]", self.pos):
                self.pos += 1
                self.inline.add(id(items))
                return items
            items.append(self.value())
            self.skip_blank()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("]", self.pos):
                self.error("expected `,` or `]` in an array")

    def skip_blank(self):
        while True:
            while self.pos < len(self.text) and (self.text[self.pos] in " \t\n" or self.text.startswith("\r\n", self.pos)):
                self.pos += 1
            if not self.text.startswith("#", self.pos):
                return
            self.skip_comment()

    def inline_table(self):
        self.pos += 1
        table = {}
        self.skip_ws()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            self.inline.add(id(table))
            return table
        while True:
            self.skip_ws()
            self.key_value(table)
            self.skip_ws()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                self.freeze(table)
                return table
            if not self.text.startswith(",", self.pos):
                self.error("expected `,` or `}` in an inline table")
            self.pos += 1

    def freeze(self, table):
        self.inline.add(id(table))
        for v in table.values():
            if isinstance(v, dict):
                self.freeze(v)


# YAML: the subset inputs files and `sprocket test` files use (YAML 1.2, core schema), read the way
# TomlReader reads TOML. What is outside it fails with a message naming the construct.
_YAML_UNSUPPORTED = {
    "&": "YAML anchors (`&name`) are not supported: write the value out where it is used",
    "*": "YAML aliases (`*name`) are not supported: write out the value the alias stands for",
    "!": "YAML tags (`!tag`, `!!type`) are not supported: remove the tag (quote a value to make it a string)",
    "?": "YAML complex keys (`? key`, a collection as a key) are not supported: write the key as a plain or "
         "quoted string",
    "%": "YAML directives (`%YAML`, `%TAG`) are not supported: remove the directive",
    "---": "several YAML documents in one file are not supported: put each document in its own file",
}
_YAML_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
                 "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
                 "L": "\u2028", "P": "\u2029"}
_YAML_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
# The core schema (YAML 1.2): `yes`, `no`, `on`, `off` are strings; so are `0777`-style octals of YAML 1.1.
_YAML_WORDS = {"null": None, "Null": None, "NULL": None, "~": None, "": None,
               "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_YAML_WORDS.update((sign + inf, float(sign + "inf")) for sign in ("", "+", "-") for inf in (".inf", ".Inf", ".INF"))
_YAML_WORDS.update((nan, float("nan")) for nan in (".nan", ".NaN", ".NAN"))
_YAML_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_YAML_FLOW_INDICATORS = ",[]{}"
_YAML_PLAIN_END = re.compile(r"\n|:(?=[ \t\n]|$)|[ \t]#")  # what ends a line of a plain scalar
_YAML_FLOW_PLAIN_END = re.compile(r"\n|:(?=[ \t\n,\[\]{}]|$)|[ \t]#|[,\[\]{}]")  # ... inside a flow collection
# Strings a YAML 1.1 reader (PyYAML) takes for booleans, numbers or dates: yaml_dumps quotes them too.
_YAML_1_1_LOOKALIKE = re.compile(r"[yYnN]|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|=|<<|[-+]?\.?[0-9][0-9_:.eE+-]*"
                                 r"|[-+]?0b[01_]+|[-+]?0x[0-9a-fA-F_]+|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*")


_YAML_SUFFIXES = (".yaml", ".yml")  # a file named so is YAML (inputs files; test files, `.yaml` first)


def is_yaml_path(path):
    """Whether a file is YAML by its name (`inputs.YAML` too)."""
    return path.lower().endswith(_YAML_SUFFIXES)


def _yaml_loads(text, path, spans=False):
    """YAML -> Python values: dict (in order), list, str, int, float, bool, None; ConfigError (with
    its Span) for what is not YAML or not in the subset YamlReader reads. With spans, mappings are
    YamlMap and sequences YamlList: they tell where each key, value and item is."""
    try:
        return YamlReader(text, path, spans).document()
    except RecursionError:
        raise ConfigError("invalid YAML: `%s` is nested too deeply" % path)


class YamlMap(dict):
    """A mapping read with spans=True: `span` is where it starts, `spans[key]` where each key is,
    `value_spans[key]` where its value starts (at its key's `:` when the value is left empty)."""

    def __init__(self, span):
        dict.__init__(self)
        self.span = span
        self.spans = {}
        self.value_spans = {}


class YamlList(list):
    """A sequence read with spans=True: `span` is where it starts, `spans[i]` where item i starts (at
    its `-` when the item is left empty)."""

    def __init__(self, span):
        list.__init__(self)
        self.span = span
        self.spans = []


class YamlReader:
    """YAML 1.2 for inputs and test files, small functions over a position as TomlReader: block
    mappings and sequences (a sequence may sit at its key's indentation; `- key: v` starts a mapping),
    flow `[...]` and `{...}`, plain, quoted and block (`|`, `>`, chomping, indentation digit) scalars,
    comments, core-schema scalars, one document (`---`, `...`). Anchors, aliases, tags, directives,
    complex keys and several documents are refused (_YAML_UNSUPPORTED); so are duplicate keys."""

    def __init__(self, text, path, spans=False):
        text = text.replace("\r\n", "\n")
        self.text = text[1:] if text.startswith("\ufeff") else text
        self.src = Source(path, self.text)
        self.pos = 0
        self.with_spans = spans
        self.flow = 0  # depth of flow collections: `,[]{}` end plain scalars there

    def error(self, message, pos=None):
        raise ConfigError("invalid YAML: %s" % message, Span(self.src, self.pos if pos is None else pos))

    def unsupported(self, what, pos=None):
        raise ConfigError(_YAML_UNSUPPORTED[what], Span(self.src, self.pos if pos is None else pos))

    def col(self, pos=None):
        pos = self.pos if pos is None else pos
        return pos - self.text.rfind("\n", 0, pos) - 1

    def blank_at(self, pos):
        return self.text[pos: pos + 1] in ("", " ", "\t", "\n")

    def at_marker(self, marker="---", pos=None):
        """A document marker (`---`, `...`) at the start of a line."""
        pos = self.pos if pos is None else pos
        return self.col(pos) == 0 and self.text.startswith(marker, pos) and self.blank_at(pos + 3)

    def at_entry(self):
        return self.text.startswith("-", self.pos) and self.blank_at(self.pos + 1) and not self.at_marker()

    def skip_space(self):
        while self.text[self.pos: self.pos + 1] in (" ", "\t"):
            self.pos += 1

    def skip_comment(self):
        if self.text.startswith("#", self.pos) and (self.pos == 0 or self.text[self.pos - 1] in " \t\n"):
            end = self.text.find("\n", self.pos)
            self.pos = len(self.text) if end < 0 else end

    def skip_blank(self):
        """Spaces, comments and line breaks up to the next content; a tab may not indent a block's line."""
        t = self.text
        while self.pos < len(t):
            c = t[self.pos]
            if c == "\t" and not self.flow and not t[t.rfind("\n", 0, self.pos) + 1: self.pos].strip(" "):
                end = t.find("\n", self.pos)
                rest = t[self.pos: len(t) if end < 0 else end].strip(" \t")
                if rest and not rest.startswith("#"):
                    self.error("a tab cannot indent a line in YAML: indent with spaces")
            if c in " \t\n":
                self.pos += 1
            elif c == "#" and (self.pos == 0 or t[self.pos - 1] in " \t\n"):
                self.skip_comment()
            else:
                return

    def end_of_line(self):
        self.skip_space()
        self.skip_comment()
        if self.pos < len(self.text) and self.text[self.pos] != "\n":
            self.error("expected the end of the line")

    def new_map(self, pos):
        return YamlMap(Span(self.src, pos)) if self.with_spans else {}

    def new_list(self, pos):
        return YamlList(Span(self.src, pos)) if self.with_spans else []

    def put(self, mapping, key, key_pos, value, value_pos):
        try:
            present = key in mapping
        except TypeError:  # an unhashable key (a flow collection)
            self.unsupported("?", key_pos)
        if present:
            self.error("the key `%s` is given more than once" % (key,), key_pos)
        mapping[key] = value
        if self.with_spans:
            mapping.spans[key] = Span(self.src, key_pos)
            mapping.value_spans[key] = Span(self.src, value_pos)

    def document(self):
        self.skip_blank()
        if self.text.startswith("%", self.pos):
            self.unsupported("%")
        start = self.at_marker()
        if start:
            self.pos += 3
        value, _ = self.block_node(-1, "document" if start else None)
        self.skip_blank()
        if self.at_marker("..."):
            self.pos += 3
            self.skip_blank()
            if self.pos < len(self.text):
                self.unsupported("%" if self.text.startswith("%", self.pos) else "---")
        elif self.at_marker():
            self.unsupported("---")
        elif self.pos < len(self.text):
            self.error("this line is not part of the document's value above: check its indentation")
        return value

    def block_node(self, indent, after):
        """The node after an indicator (`key:`, `-`, `---`; after=None at the document's start), on this
        line or indented on the next ones, as (value, where it starts); content must be right of `indent`.
        A node left empty is null, and is where its indicator is."""
        where = self.pos - 1 if after in ("key", "entry") else self.pos
        self.skip_space()
        self.skip_comment()
        if after is not None and self.pos < len(self.text) and self.text[self.pos] != "\n":
            start = self.pos
            return self.block_content(indent, after), start
        self.skip_blank()
        if self.pos >= len(self.text) or self.at_marker() or self.at_marker("..."):
            return None, where
        start, col = self.pos, self.col()
        if col > indent:
            return self.block_content(indent, None), start
        if after == "key" and col == indent and self.at_entry():  # a sequence at its key's indentation
            return self.block_sequence(col), start
        return None, where

    def block_content(self, indent, after):
        """A node at its first character; `after` is the indicator on its line (None: it starts the line)."""
        t = self.text
        c = t[self.pos]
        if c == "-" and self.blank_at(self.pos + 1):
            if after == "key":
                self.error("a sequence cannot start on the line of its key: start it on the next line")
            return self.block_sequence(self.col())
        if c in "&*!" or (c == "?" and self.blank_at(self.pos + 1)):
            self.unsupported(c)
        if c in "|>":
            return self.block_scalar(indent)
        start = self.pos
        key = self.implicit_key()
        self.pos = start
        if key is not None:
            if after == "key":
                self.error("a mapping cannot start on the line of its key: quote the value if its `: ` is part "
                           "of it, else start the mapping on the next line")
            return self.block_mapping(self.col())
        value = self.flow_node(indent)
        self.skip_space()
        if t.startswith(":", self.pos) and self.blank_at(self.pos + 1):
            if t[start] in "[{":
                self.unsupported("?", start)
            self.error("a key must fit on one line: check this line's indentation, or quote the value")
        self.end_of_line()
        return value

    def implicit_key(self):
        """A one-line key followed by `: `, as (key,) with the position past the `:`; else None."""
        t = self.text
        if t[self.pos] in "'\"":
            start = self.pos
            key = self.quoted()
            if "\n" in t[start: self.pos]:
                return None
        elif t[self.pos] in "[{#":
            return None
        else:
            key = self.plain_line()
            key = _yaml_scalar(key) if key else None
        self.skip_space()
        if t.startswith(":", self.pos) and self.blank_at(self.pos + 1):
            self.pos += 1
            return (key,)
        return None

    def block_mapping(self, col):
        out = self.new_map(self.pos)
        while True:
            key_pos = self.pos
            if self.at_entry():
                self.error("a sequence entry cannot follow the keys of a mapping at the same indentation")
            if self.text[self.pos] == "?" and self.blank_at(self.pos + 1):
                self.unsupported("?")
            if self.text[self.pos] in "&*!":
                self.unsupported(self.text[self.pos])
            key = self.implicit_key()
            if key is None:
                self.pos = key_pos
                self.error("expected `key: value` in a mapping")
            if self.text[key_pos] == ":" and self.blank_at(key_pos + 1):
                self.error("expected a key before `:`", key_pos)
            value, value_pos = self.block_node(col, "key")
            self.put(out, key[0], key_pos, value, value_pos)
            if not self.next_line(col, "mapping"):
                return out

    def block_sequence(self, col):
        out = self.new_list(self.pos)
        while self.at_entry():
            self.pos += 1
            value, value_pos = self.block_node(col, "entry")
            out.append(value)
            if self.with_spans:
                out.spans.append(Span(self.src, value_pos))
            if not self.next_line(col, "sequence"):
                break
        return out

    def next_line(self, col, what):
        """Move to the next item of a block collection at column `col`: True if there is one."""
        self.skip_blank()
        if self.pos >= len(self.text) or self.at_marker() or self.at_marker("..."):
            return False
        here = self.col()
        if here > col:
            self.error("check this line's indentation: the %s here are at column %d" % (
                "keys of the mapping" if what == "mapping" else "entries of the sequence", col + 1))
        return here == col and (what == "mapping" or self.at_entry())

    def flow_node(self, indent):
        """A scalar or a flow collection (in a block or inside a flow collection)."""
        c = self.text[self.pos: self.pos + 1]
        if c == "[":
            return self.flow_sequence()
        if c == "{":
            return self.flow_mapping()
        if c in ("'", '"'):
            return self.quoted()
        if c and (c in "&*!" or (c == "?" and self.blank_at(self.pos + 1))):
            self.unsupported(c)
        if c and c in "|>" and self.flow:
            self.error("a block scalar (`%s`) cannot be inside a flow collection" % c)
        if c and c in "@`%":
            self.error("`%s` cannot start a plain value in YAML: quote the value" % c)
        return _yaml_scalar(self.plain(indent))

    def flow_sequence(self):
        start = self.pos
        out = self.new_list(start)
        self.flow += 1
        self.pos += 1
        while not self.flow_next("]", start, out):
            item_pos = self.pos
            item = self.flow_node(-1)
            self.skip_blank()
            if self.flow_colon(item_pos):  # `[a: 1]`: a mapping of one pair
                pair = self.new_map(item_pos)
                self.put(pair, item, item_pos, *self.flow_value())
                item = pair
            out.append(item)
            if self.with_spans:
                out.spans.append(Span(self.src, item_pos))
        self.flow -= 1
        return out

    def flow_mapping(self):
        start = self.pos
        out = self.new_map(start)
        self.flow += 1
        self.pos += 1
        while not self.flow_next("}", start, out):
            key_pos = self.pos
            if self.text[self.pos] in "[{":
                self.unsupported("?")
            key = self.flow_node(-1)
            self.skip_blank()
            if self.flow_colon(key_pos):
                self.put(out, key, key_pos, *self.flow_value())
            else:  # `{a, b: 1}`: a key without a value is null
                self.put(out, key, key_pos, None, key_pos)
        self.flow -= 1
        return out

    def flow_next(self, close, start, out):
        """Before a flow collection's next item: True at its end (then past the closing bracket)."""
        what = "sequence" if close == "]" else "mapping"
        self.skip_blank()
        if out and self.pos < len(self.text) and not self.text.startswith(close, self.pos):
            if not self.text.startswith(",", self.pos):
                self.error("expected `,` or `%s` in a flow %s" % (close, what))
            self.pos += 1
            self.skip_blank()
        if self.pos >= len(self.text):
            self.error("unterminated flow %s: expected `%s`" % (what, close), start)
        if self.text.startswith(close, self.pos):
            self.pos += 1
            return True
        if self.text.startswith(",", self.pos):
            self.error("expected a value before `,`")
        return False

    def flow_colon(self, key_pos):
        """A `:` after a key in a flow collection (right after a quoted key, as JSON writes it, or before a blank)."""
        t = self.text
        if t.startswith(":", self.pos) and (t[key_pos] in "'\"" or self.blank_at(self.pos + 1) or
                                            t[self.pos + 1] in _YAML_FLOW_INDICATORS):
            self.pos += 1
            return True
        return False

    def flow_value(self):
        self.skip_blank()
        where = self.pos
        if self.text[self.pos: self.pos + 1] in (",", "]", "}"):
            return None, where
        return self.flow_node(-1), where

    def plain_line(self):
        """One line of a plain scalar: up to `: `, ` #`, the line's end (and `,[]{}` in a flow)."""
        m = (_YAML_FLOW_PLAIN_END if self.flow else _YAML_PLAIN_END).search(self.text, self.pos)
        text = self.text[self.pos: m.start() if m else len(self.text)].rstrip(" \t")
        self.pos += len(text)
        return text

    def plain(self, indent):
        """A plain scalar, its lines folded (a break is a space, n empty lines are n newlines)."""
        start = self.pos
        text = self.plain_line()
        if not text:
            self.error("expected a value", start)
        while True:
            save = self.pos
            self.skip_space()
            if not self.text.startswith("\n", self.pos):
                self.pos = save
                return text
            breaks = 0
            while self.text[self.pos: self.pos + 1] in (" ", "\t", "\n"):
                breaks += self.text[self.pos] == "\n"
                self.pos += 1
            if (self.pos >= len(self.text) or self.text[self.pos] == "#" or self.at_marker() or
                    self.at_marker("...") or (not self.flow and self.col() <= indent)):
                self.pos = save
                return text
            line = self.plain_line()
            if not line:
                self.pos = save
                return text
            text += (" " if breaks == 1 else "\n" * (breaks - 1)) + line

    def quoted(self):
        """A single- or double-quoted scalar, its lines folded as a plain scalar's."""
        t = self.text
        q = t[self.pos]
        start = self.pos
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(t):
                self.error("unterminated string: expected a closing `%s`" % q, start)
            c = t[self.pos]
            if c == q:
                if q == "'" and t.startswith("''", self.pos):
                    out.append("'")
                    self.pos += 2
                    continue
                self.pos += 1
                return "".join(out)
            if c == "\\" and q == '"':
                if t.startswith("\n", self.pos + 1):  # an escaped line break joins the lines
                    self.pos += 1
                    out.append("\n" * (self.line_breaks(start, q) - 1))
                    continue
                out.append(self.escape())
                continue
            if c in " \t\n":
                j = self.pos
                while t[j: j + 1] in (" ", "\t"):
                    j += 1
                if t[j: j + 1] != "\n":
                    out.append(t[self.pos: j])
                    self.pos = j
                    continue
                self.pos = j
                breaks = self.line_breaks(start, q)
                out.append(" " if breaks == 1 else "\n" * (breaks - 1))
                continue
            out.append(c)
            self.pos += 1

    def line_breaks(self, start, q):
        """Inside a quoted scalar, at a line break: skip the empty lines and the next line's indentation."""
        breaks = 0
        while self.text[self.pos: self.pos + 1] in (" ", "\t", "\n"):
            breaks += self.text[self.pos] == "\n"
            self.pos += 1
        if self.at_marker() or self.at_marker("..."):
            self.error("unterminated string: expected a closing `%s`" % q, start)
        return breaks

    def escape(self):
        t = self.text
        c = t[self.pos + 1: self.pos + 2]
        if c in _YAML_ESCAPES and c:
            self.pos += 2
            return _YAML_ESCAPES[c]
        n = _YAML_HEX_ESCAPES.get(c)
        digits = t[self.pos + 2: self.pos + 2 + n] if n else ""
        if not n or not re.match(r"^[0-9A-Fa-f]{%d}$" % n, digits):
            self.error("invalid escape `\\%s` in a double-quoted string" % (c + digits[:0]))
        code = int(digits, 16)
        if 0xD800 <= code <= 0xDBFF and re.match(r"\\u[Dd][C-Fc-f][0-9A-Fa-f]{2}", t[self.pos + 6: self.pos + 12]):
            low = int(t[self.pos + 8: self.pos + 12], 16)  # a UTF-16 surrogate pair, as JSON writes one
            self.pos += 12
            return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            self.error("`\\%s%s` is not a Unicode character" % (c, digits))
        self.pos += 2 + n
        return chr(code)

    def block_scalar(self, indent):
        """`|` (literal) or `>` (folded), with a chomping indicator (`-` strip, `+` keep) and an
        indentation digit (relative to the parent's indentation) in either order."""
        t = self.text
        folded = t[self.pos] == ">"
        self.pos += 1
        chomp = digit = None
        for _ in range(2):
            c = t[self.pos: self.pos + 1]
            if c and c in "+-" and chomp is None:
                chomp = c
            elif c and c in "0123456789" and digit is None:
                if c == "0":
                    self.error("a block scalar's indentation digit is 1 to 9")
                digit = int(c)
            else:
                break
            self.pos += 1
        if not self.blank_at(self.pos):
            self.error("expected the end of the line after a block scalar's header (`|` or `>`, then `-` or `+`, "
                       "and an indentation digit)")
        self.end_of_line()
        self.pos += 1
        lines = []  # (empty lines before it, text) for each content line
        blanks = 0
        ind = max(indent, 0) + digit if digit else None  # at the top, from column 0: libyaml's (and PyYAML's) reading
        while self.pos < len(t):
            end = t.find("\n", self.pos)
            end = len(t) if end < 0 else end
            line = t[self.pos: end]
            spaces = len(line) - len(line.lstrip(" "))
            if ind is None and spaces < len(line):
                if spaces <= indent:
                    break
                ind = spaces
            if spaces == len(line) and (ind is None or spaces <= ind):
                blanks += end < len(t)  # an empty line (one of spaces at the very end breaks no line)
            elif ind is None or spaces < ind or (ind == 0 and (self.at_marker() or self.at_marker("..."))):
                break
            else:
                lines.append((blanks, line[ind:]))
                blanks = 0
            self.pos = min(end + 1, len(t))
        if self.pos == len(t) and not t.endswith("\n") and self.pos > 0 and lines and blanks == 0:
            last_break = ""
        else:
            last_break = "\n"
        out = []
        for i, (before, text) in enumerate(lines):
            if i == 0:
                out.append("\n" * before)
            elif folded and lines[i - 1][1][:1] not in (" ", "\t") and text[:1] not in (" ", "\t"):
                out.append(" " if before == 0 else "\n" * before)
            else:
                out.append("\n" * (1 + before))
            out.append(text)
        if chomp != "-" and lines:
            out.append(last_break)
        if chomp == "+":
            out.append("\n" * blanks)
        return "".join(out)


def _yaml_scalar(text):
    """A plain scalar's value in the core schema."""
    if text in _YAML_WORDS:
        return _YAML_WORDS[text]
    if _YAML_INT.fullmatch(text):
        return int(text[2:], 8 if text[1] == "o" else 16) if text[:2] in ("0o", "0x") else int(text)
    if _YAML_FLOAT.fullmatch(text):
        return float(text)
    return text


def yaml_dumps(value):
    """Block-style YAML that _yaml_loads reads back to `value` (JSON's values, and the infinities and
    NaN): a mapping's items one a line, a sequence's as `- ` entries; a string plain where that reads
    back as the same string, else double-quoted."""
    return "\n".join(_yaml_lines(value, ""))


def _yaml_lines(value, indent):
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (indent, _yaml_text(k)))
                out.extend(_yaml_lines(v, indent + "  "))
            else:
                out.append("%s%s: %s" % (indent, _yaml_text(k), _yaml_text(v)))
        return out
    if isinstance(value, list) and value:
        out = []
        for v in value:  # an item's first line follows its `- `; the rest are indented under it
            lines = _yaml_lines(v, indent + "  ")
            out.append(indent + "- " + lines[0][len(indent) + 2:])
            out.extend(lines[1:])
        return out
    return [indent + _yaml_text(value)]


def _yaml_text(value):
    """A scalar (or an empty collection) as YAML text."""
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float):  # `1.0e+16`, not repr's `1e+16`: YAML 1.1 readers need the dot
        return ".nan" if math.isnan(value) else {math.inf: ".inf", -math.inf: "-.inf"}.get(
            value, re.sub(r"^(-?[0-9]+)(?=e)", r"\1.0", repr(value)))
    if isinstance(value, int):
        return str(value)
    if _yaml_plain_ok(value):
        return value
    # JSON's escapes are YAML's too; what is not printable is escaped (YAML 1.1 readers break lines at \x85)
    return re.sub(r"[^\x20-\x7e]", lambda m: m.group() if m.group().isprintable() else
                  "\\U%08x" % ord(m.group()) if ord(m.group()) > 0xFFFF else "\\u%04x" % ord(m.group()),
                  json.dumps(value, ensure_ascii=False))


def _yaml_plain_ok(s):
    """Whether a string written plain reads back as itself (in YAML 1.2, and in YAML 1.1 readers)."""
    return (s != "" and s == s.strip(" ") and s[0] not in "-?:,[]{}#&*!|>'\"%@`" and ": " not in s
            and " #" not in s and not s.endswith(":") and not s.startswith("...") and s.isprintable()
            and isinstance(_yaml_scalar(s), str) and not _YAML_1_1_LOOKALIKE.fullmatch(s))


def _at_least_one(value):
    return "must be at least 1" if value == 0 else None


def _below_100(value):
    return "must be less than 100, not %d" % value if value >= 100 else None


def _is_int(value):
    return isinstance(value, int)


def slurm_time_seconds(text):
    """A time limit in Slurm's format (slurm_duration()) in whole seconds; ValueError for anything
    else (`UNLIMITED`, a fraction of a second, or no time at all)."""
    seconds = slurm_duration(text)
    if not seconds or seconds % 1:
        raise ValueError(text)
    return int(seconds)


def _slurm_time_problem(value):
    try:
        slurm_time_seconds(value)
    except ValueError:
        return ('is %s, not a time limit in Slurm\'s format (minutes, "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM" or '
                '"D-HH:MM:SS", e.g. "2-00:00:00")' % _toml_repr(value))
    return None


# The schema: one row per setting (a Setting, section 12), by dotted key (`*` stands for a backend's
# name). It is the single source of validation, defaults (Config.get), `config resolve` and `config init`.
CONFIG_SCHEMA = {
    "run.output_dir": Setting("path", "./out", "the output directory: runs/, sprocket.db and output.log go here"),
    "run.backend": Setting("str", "default", "the name of the `run.backends` entry to use"),
    "run.strict": Setting("bool", False, "refuse what is accepted only for compatibility with Cromwell and miniwdl "
                          "(`check --strict`)"),
    "run.fail": Setting(("slow", "fast"), "slow",
                        "on a failure or Ctrl-C: `slow` waits for running tasks, `fast` cancels them"),
    "run.experimental_features_enabled": Setting("bool", False, "required for the slurm_apptainer backend"),
    "run.suppress_env_specific_output": Setting("bool", False, "accepted for compatibility (no effect here)"),
    "run.events_capacity": Setting("int", 5000, "accepted for compatibility with Sprocket (no effect here)"),
    "run.workflow.scatter.concurrency": Setting("int", 1000, "scatter elements in flight at once", _at_least_one),
    "run.read_limit": Setting("size", "256 MiB", "the largest file read_string, read_lines, read_json and the other "
                              "read_* functions read (a larger one is an error)"),
    "run.task.retries": Setting("int", 0, "retries for a failed task when it sets no `max_retries` (at most 100)",
                                _below_100, also=lambda v: v == "default"),  # Sprocket's "default": 0
    "run.task.memory_retry_multiplier": Setting("multiplier", 1, "a retry after running out of memory gets this many "
                                                "times the memory (1: the same; capped by the partition's "
                                                "max_memory_per_task)"),
    "run.task.container": Setting("str", "ubuntu:latest", "the container of tasks that name none"),
    "run.task.shell": Setting("str", "bash", "the shell that runs each task's command file (a POSIX shell: locally it "
                              "sources the file with `-c` and writes its exit status)"),
    "run.task.cpu_limit_behavior": Setting(("deny", "try_with_max"), "deny",
                                           "a task asking for more CPUs than available: refuse, or clamp and warn"),
    "run.task.memory_limit_behavior": Setting(("deny", "try_with_max"), "deny", "the same for memory"),
    "run.task.cache": Setting(("off", "on", "explicit"), "off",
                              "call caching: off, on, or only tasks with `hints { cacheable: true }`"),
    "run.task.cache_dir": Setting("path", "system", "the call cache directory (`system`: ~/.cache/sprocket/calls)"),
    "run.task.digests": Setting(("weak", "strongish", "strong"), "weak",
                                "how input files enter cache keys: size+mtime, plus the first 10 MiB, or all content"),
    "run.task.excluded_cache_requirements": Setting("list", [], "requirements left out of cache keys"),
    "run.task.excluded_cache_hints": Setting("list", [], "hints left out of cache keys"),
    "run.task.excluded_cache_inputs": Setting("list", [], "inputs left out of cache keys"),
    "run.http.cache_dir": Setting("path", "system", "accepted for compatibility (http(s) File inputs are downloaded "
                                  "into the run directory)"),
    "run.http.retries": Setting("int", 5, "accepted for compatibility"),
    "run.http.parallelism": Setting("str", "available", "accepted for compatibility", also=_is_int),
    "run.http.hash_algorithm": Setting("str", "sha256", "accepted for compatibility"),
    "run.storage.azure.auth.account_name": Setting("str", None, "accepted for compatibility (no cloud storage here)"),
    "run.storage.azure.auth.access_key": Setting("str", None, "accepted for compatibility"),
    "run.storage.s3.region": Setting("str", None, "accepted for compatibility"),
    "run.storage.s3.auth.access_key_id": Setting("str", None, "accepted for compatibility"),
    "run.storage.s3.auth.secret_access_key": Setting("str", None, "accepted for compatibility"),
    "run.storage.google.auth.access_key": Setting("str", None, "accepted for compatibility"),
    "run.storage.google.auth.secret": Setting("str", None, "accepted for compatibility"),
    # `run --submit`: the engine as a Slurm job of its own (the head job), handing off before its time limit
    "run.head_job.partition": Setting("str", None, "run --submit: the head job's partition (unset: the cluster's "
                                      "default)"),
    "run.head_job.time": Setting("str", None, 'run --submit: the head job\'s time limit in Slurm\'s format (e.g. '
                                 '"2-00:00:00"; unset: the partition\'s); near it the job hands the run to a successor',
                                 _slurm_time_problem),
    "run.head_job.cpus": Setting("int", 1, "run --submit: the head job's CPUs", _at_least_one),
    "run.head_job.memory": Setting("size", "2 GB", "run --submit: the head job's memory"),
    "run.head_job.account": Setting("str", None, "run --submit: the head job's account"),
    "run.head_job.extra_sbatch_args": Setting("list", [], "run --submit: more sbatch arguments for the head job"),
    "run.head_job.handoff_lead": Setting("int", 300, "run --submit: seconds before the time limit at which the head "
                                         "job hands off to a successor job (Slurm's USR1; at most half the limit)",
                                         _at_least_one),
    "run.head_job.max_handoffs": Setting("int", 20, "run --submit: the most hand-offs of one run; at the next time "
                                         "limit it fails"),
    "server.allowed_origins": Setting("list", [], "accepted for compatibility (sprocket.py has no server)"),
    "server.allowed_file_paths": Setting("list", [], "accepted for compatibility"),
    "server.allowed_urls": Setting("list", [], "accepted for compatibility"),
    "server.max_concurrent_runs": Setting("str", "unlimited", "accepted for compatibility", also=_is_int),
    "server.output_dir": Setting("path", "./out", "accepted for compatibility"),
    "server.database.url": Setting("str", "default",
                                   "accepted for compatibility (the database is <output_dir>/sprocket.db)"),
    "server.orphan_timeout_minutes": Setting("int", 5, "a run whose session is silent this long is marked orphaned",
                                             _at_least_one),
    "server.host": Setting("str", "127.0.0.1", "accepted for compatibility"),
    "server.port": Setting("int", 8080, "accepted for compatibility"),
    "test.parallelism": Setting("int", 50, "test executions `sprocket test` runs at once", _at_least_one),
    "test.throttle": Setting("int", 0, "milliseconds between the starts of the first `parallelism` test executions "
                             "(Sprocket's default is 100; here the backend paces its submissions, and a pause "
                             "between starts would split the tests of a task into many Slurm jobs, not one array)"),
    "test.fixtures_dir": Setting("path", None, "the fixtures of `sprocket test`, where relative File inputs of tests "
                                 "are (default: <workspace>/test/fixtures)"),
    "test.run_dir": Setting("path", None, "the output directory of `sprocket test`: its sprocket.db, and each run in "
                            "runs/test/ (default: <workspace>/test)"),
    "common.color": Setting(("auto", "always", "never"), "auto",
                            "colour in diagnostics: `auto` when stderr is a terminal"),
    "common.report_mode": Setting(("full", "one-line"), "full",
                                  "diagnostics with their source line and caret, or one line each"),
    "check.except": Setting("list", [], "lint rules `lint` (and `check`) do not report"),
    "check.deny_warnings": Setting("bool", False, "`check` and `lint` exit 1 on warnings too"),
    "check.deny_notes": Setting("bool", False, "accepted for compatibility (sprocket.py has no notes)"),
    "check.hide_warnings": Setting("bool", False, "`check` and `lint` print no warnings"),
    "check.hide_notes": Setting("bool", False, "accepted for compatibility (sprocket.py has no notes)"),
    "common.wdl.fallback_version": Setting(("none", "1.0", "1.1", "1.2", "1.3"), "none",
                                           "accepted for compatibility (`version development` is read as 1.3)"),
    "common.wdl.feature_flags.wdl_1_3": Setting("bool", True, "accepted for compatibility (1.3 is always on)"),
    "common.wdl.feature_flags.wdl_1_4": Setting("bool", False, "accepted for compatibility (1.4 is not supported)"),
}
# A backend type's own settings, under `run.backends.<name>.` (besides `type`), are the rows its
# class declares (Backend.SETTINGS): the registry is their one source.
CONFIG_SCHEMA["run.backends.*.type"] = Setting(tuple(BACKENDS) + ("tes", "lsf_apptainer"), None,
                                               "the kind of backend")
CONFIG_SCHEMA.update(("run.backends.*." + k, row) for cls in BACKENDS.values() for k, row in cls.SETTINGS.items())
# Sections of Sprocket's sprocket.toml that serve commands sprocket.py does not have.
_FOREIGN_SECTIONS = ("format", "analyzer", "doc", "module", "modules", "lint")
_FOREIGN_TABLES = ("server.engine",)  # tables of Sprocket's that sprocket.py accepts and ignores


def _schema_key(path):
    """The schema key for a dotted path (a backend's name becomes `*`)."""
    parts = path.split(".")
    if len(parts) > 2 and parts[0] == "run" and parts[1] == "backends":
        parts[2] = "*"
    return ".".join(parts)


def _table_value(table, key):
    """The value at dotted `key` in nested tables, or None where there is none (TOML has no null)."""
    for part in key.split("."):
        table = table.get(part) if isinstance(table, dict) else None
    return table


def _schema_prefixes():
    out = set()
    for k in CONFIG_SCHEMA:
        parts = k.split(".")
        for i in range(1, len(parts)):
            out.add(".".join(parts[:i]))
    return out


_SCHEMA_TABLES = _schema_prefixes() | {"run.backends"}


def validate_config_file(data, path):
    """Check one file's keys and values against the schema; errors name the file and the key."""
    def walk(table, prefix):
        for key, value in table.items():
            full = prefix + key
            if not prefix and key in _FOREIGN_SECTIONS or full in _FOREIGN_TABLES:
                continue
            skey = _schema_key(full)
            if skey in CONFIG_SCHEMA:
                check_config_value(full, value, CONFIG_SCHEMA[skey], path)
            elif skey in _SCHEMA_TABLES or full == "run.backends" or skey == "run.backends.*":
                if not isinstance(value, dict):
                    raise ConfigError("`%s` in %s must be a table" % (full, path))
                walk(value, full + ".")
            else:
                parent = prefix[:-1]
                allowed = sorted({k[len(_schema_key(parent)) + 1:].split(".")[0] for k in CONFIG_SCHEMA
                                  if k.startswith(_schema_key(parent) + ".")}) if parent else sorted(
                    {k.split(".")[0] for k in CONFIG_SCHEMA} | set(_FOREIGN_SECTIONS))
                raise ConfigError("unknown key `%s` in %s%s" % (
                    full, path, " (allowed here: %s)" % ", ".join(allowed) if allowed else ""))
    if not isinstance(data, dict):
        raise ConfigError("%s must hold a TOML table" % path)
    walk(data, "")


def check_config_value(key, value, setting, path):
    """Refuse a value that is not of the setting's kind or fails its check, naming the key and the file."""
    if setting.also and setting.also(value):
        return
    where = "`%s` in %s" % (key, path)
    _check_kind(value, setting.kind, where)
    problem = setting.check and setting.check(value)
    if problem:
        raise ConfigError("%s %s" % (where, problem))


def _check_kind(value, kind, where):
    """The rule of a kind of setting (see Setting)."""
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError("%s is %s; allowed: %s" % (where, _toml_repr(value), ", ".join('"%s"' % k for k in kind)))
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError("%s must be true or false, not %s" % (where, _toml_repr(value)))
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError("%s must be a whole number >= 0, not %s" % (where, _toml_repr(value)))
    elif kind in ("str", "path"):
        if not isinstance(value, str):
            raise ConfigError("%s must be a string, not %s" % (where, _toml_repr(value)))
        if "\0" in value:  # no path, argument or environment variable can hold it
            raise ConfigError("%s holds a NUL byte" % where)
    elif kind == "seconds":  # `not x >= 0` also refuses nan; inf is no number of seconds either
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ConfigError("%s must be a number of seconds >= 0, not %s" % (where, _toml_repr(value)))
    elif kind == "multiplier":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < math.inf:
            raise ConfigError("%s must be a number >= 1, not %s" % (where, _toml_repr(value)))
    elif kind == "rate":
        try:
            parse_rate(value)
        except ValueError as e:
            raise ConfigError("%s: %s" % (where, e))
    elif kind == "size":
        try:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise EvalError("")
            parse_memory(value)
        except EvalError:
            raise ConfigError('%s must be a number of bytes or a size like "96 GB", not %s' % (where, _toml_repr(value)))
    elif kind == "list":
        if not isinstance(value, list) or not all(isinstance(x, str) and "\0" not in x for x in value):
            raise ConfigError("%s must be an array of strings, not %s" % (where, _toml_repr(value)))
    elif kind == "conditionals":
        ok = isinstance(value, list) and all(
            isinstance(c, dict) and set(c) == {"condition", "args"} and isinstance(c["condition"], str)
            and isinstance(c["args"], list) and all(isinstance(a, str) for a in c["args"]) for c in value)
        if not ok:
            raise ConfigError('%s must be an array of { condition = "<WDL expression>", args = [...] }' % where)


def parse_rate(text):
    """`"20/1s"`, `"200/1min"`, `"1000/h"`: (calls, seconds)."""
    m = re.match(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|min|m|h)\s*$", text) if isinstance(text, str) else None
    if m is None or int(m.group(1)) < 1:
        raise ValueError('a rate is `N/period`, e.g. "20/1s", "200/1min" or "1000/1h", not %s' % _toml_repr(text))
    return int(m.group(1)), float(m.group(2) or 1) * {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}[m.group(3)]


_SETTING_READERS = {  # a backend's setting of this kind, as it gets it (checked by check_config_value())
    "size": parse_memory,
    "rate": parse_rate,
    "path": lambda v: os.path.expandvars(os.path.expanduser(v)),
}


def _toml_repr(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json_dumps(v)
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "an array"
    return str(v)


def program_dir():
    """The directory of the program the user ran: sprocket.py, the zipapp or the console script."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 and os.path.exists(argv0):
        return os.path.dirname(os.path.realpath(argv0))
    return os.path.dirname(os.path.realpath(__file__))


def config_search_paths(explicit, skip_search):
    """The sprocket.toml files to read, in merge order (later wins)."""
    paths = []
    if not skip_search:
        paths.append(os.path.join(program_dir(), "sprocket.toml"))
        root = os.environ.get("SPROCKET_CONFIG_ROOT")
        if root:
            paths.append(os.path.join(root, "sprocket.toml"))
        else:
            xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
            paths.append(os.path.join(xdg, "sprocket", "sprocket.toml"))
        paths.append(os.path.join(os.getcwd(), "sprocket.toml"))
        env = os.environ.get("SPROCKET_CONFIG")
        if env:
            paths.append(env)
    out, seen = [], set()
    for p, required in [(p, False) for p in paths] + [(p, True) for p in explicit]:
        key = os.path.realpath(p)
        if key not in seen:  # the same file twice (say, cwd is the program's directory) counts once
            seen.add(key)
            out.append((p, required))
    return out


class Config:
    """The merged configuration: get("run.task.shell"), and where each value came from."""

    def __init__(self):
        self.data = {}
        self.sources = {}  # dotted key -> [files]
        self.files = []
        self.warnings = []

    def merge_file(self, path, data):
        self.files.append(path)
        self._merge(self.data, data, "", path)

    def _merge(self, into, data, prefix, path):
        for key, value in data.items():
            full = prefix + key
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                self._merge(into[key], value, full + ".", path)
            elif isinstance(value, dict):
                into[key] = {}
                self._merge(into[key], value, full + ".", path)
            elif isinstance(value, list) and isinstance(into.get(key), list):
                into[key] = into[key] + value  # arrays append
                self.sources.setdefault(full, []).append(path)
            else:
                into[key] = value
                self.sources[full] = [path]

    def get(self, key):
        """A setting's value, else its default. A key with no row in CONFIG_SCHEMA is a bug: KeyError."""
        setting = CONFIG_SCHEMA.get(_schema_key(key))
        if setting is None:
            raise KeyError("`%s` is not a setting of CONFIG_SCHEMA" % key)
        node = _table_value(self.data, key)
        if node is None:
            return setting.default
        return _SETTING_READERS["path"](node) if setting.kind == "path" and isinstance(node, str) else node

    def backends(self):
        """The `run.backends` table: each backend's name -> its settings."""
        return self.data.get("run", {}).get("backends", {})

    def where(self, prefix):
        """` (in FILE)`: the files that set keys under `prefix`, for error messages."""
        files = []
        for key, srcs in self.sources.items():
            if key == prefix or key.startswith(prefix + "."):
                files.extend(f for f in srcs if f not in files)
        return " (in %s)" % ", ".join(files) if files else ""

    def backend(self):
        """(name, settings) of the backend to use, checked against the registry of backend types
        (BACKENDS); the built-in default is `local`."""
        name = self.get("run.backend")
        backends = self.backends()
        if name not in backends:
            if name == "default" and not backends:
                return "default", {"type": "local"}
            raise ConfigError("`run.backend` is \"%s\"%s, but there is no `run.backends.%s` table (%s)" % (
                name, self.where("run.backend"), name,
                "defined: %s" % ", ".join(sorted(backends)) if backends else "no backends are defined"))
        settings = backends[name]
        kind = settings.get("type")
        where = self.where("run.backends.%s" % name)
        known = ", ".join('"%s"' % k for k in BACKENDS)
        if kind is None:
            raise ConfigError("`run.backends.%s.type` is missing%s (allowed: %s)" % (name, where, known))
        if kind not in BACKENDS:
            raise ConfigError("the `%s` backend type of `run.backends.%s`%s is not supported by sprocket.py "
                              "(supported: %s)" % (kind, name, where, known))
        allowed = BACKENDS[kind].table_keys()
        extra = [k for k in settings if k not in allowed]
        if extra:
            raise ConfigError("`run.backends.%s.%s`%s is not a setting of a %s backend (allowed: %s)" % (
                name, extra[0], self.where("run.backends.%s.%s" % (name, extra[0])), kind, ", ".join(allowed)))
        if BACKENDS[kind].experimental and not self.get("run.experimental_features_enabled"):
            raise ConfigError("the %s backend%s is experimental: set "
                              "`run.experimental_features_enabled = true` to use it" % (kind, where))
        return name, settings


def read_backend_settings(table):
    """A `run.backends.<name>` table as its backend gets it: its `type`, and each of the settings
    its registered class declares (Backend.SETTINGS) as given or by default, read by kind."""
    settings = {"type": table["type"]}
    for key, setting in BACKENDS[table["type"]].SETTINGS.items():
        v = _table_value(table, key)
        v = setting.default if v is None else v
        if v is not None and setting.kind in _SETTING_READERS:
            v = _SETTING_READERS[setting.kind](v)
        settings[key] = list(v) if isinstance(v, list) else v
    return settings


def load_config(explicit=(), skip_search=False):
    """Read and merge every sprocket.toml in the search order."""
    config = Config()
    for path, required in config_search_paths(list(explicit), skip_search):
        if not os.path.isfile(path):
            if required or path == os.environ.get("SPROCKET_CONFIG"):
                if required:
                    raise ConfigError("configuration file not found: `%s`" % path)
                config.warnings.append("SPROCKET_CONFIG names `%s`, which does not exist" % path)
            continue
        src = read_source(path)
        data = _toml_loads(src.text, path)
        validate_config_file(data, path)
        config.merge_file(path, data)
    for name, settings in config.backends().items():
        if isinstance(settings, dict) and settings.get("type") in BACKENDS:
            BACKENDS[settings["type"]].check_settings(name, settings, lambda k: config.where("run.backends.%s.%s" % (name, k)))
    return config


def resolve_lines(config):
    """`sprocket config resolve`: every setting, its value, and the file it came from."""
    lines = ["# configuration files, in merge order: %s" % (", ".join(config.files) or "(none)")]
    keys = {}

    def flat(table, prefix):
        for k, v in table.items():
            if isinstance(v, dict):
                flat(v, prefix + k + ".")
            else:
                keys[prefix + k] = v

    flat(config.data, "")
    for k in CONFIG_SCHEMA:
        if "*" not in k and k not in keys:
            keys[k] = None
    defaults = {}  # each configured backend's settings, with their defaults
    for name, table in config.backends().items():
        if isinstance(table, dict) and table.get("type") in BACKENDS:
            defaults.update(("run.backends.%s.%s" % (name, key), row) for key, row in BACKENDS[table["type"]].SETTINGS.items())
    keys.update((k, None) for k in defaults if k not in keys)
    for k in sorted(keys):
        if k in config.sources:  # (a foreign section's key too)
            lines.append("%s = %s  # %s" % (k, _toml_value(keys[k]), ", ".join(config.sources[k])))
        elif (defaults.get(k) or CONFIG_SCHEMA[k]).default is None:
            lines.append("# %s is not set" % k)
        else:
            lines.append("%s = %s  # default" % (k, _toml_value((defaults.get(k) or CONFIG_SCHEMA[k]).default)))
    return lines


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json_dumps(v)
    if isinstance(v, list):
        return "[%s]" % ", ".join(_toml_value(x) for x in v)
    if isinstance(v, dict):
        return "{ %s }" % ", ".join("%s = %s" % (k, _toml_value(x)) for k, x in v.items())
    return str(v)


# ============================================================================================
# 17. Provenance
# ============================================================================================
#
# <output_dir>/sprocket.db with Sprocket's schema: sessions, runs, tasks (one row per attempt).
# Rollback journal (WAL breaks on NFS), a busy timeout, short transactions retried on
# SQLITE_BUSY, so several processes can share one output directory. A run whose process
# died is marked `orphaned` by the next process that opens the database.

_DB_SCHEMA_VERSION = "1"
# Room kept beside sprocket.db (`sprocket.db-reserve`) and given up when the disk fills, so that the
# last writes of a run (its tasks' rows, `failed` and why) still have space for the rollback journal.
_DB_RESERVE_BYTES = 512 * 1024
_DB_SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata (key TEXT PRIMARY KEY UNIQUE NOT NULL, value TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS sessions (id INTEGER PRIMARY KEY, uuid TEXT UNIQUE NOT NULL,
    subcommand TEXT NOT NULL CHECK (subcommand IN ('run', 'server')), created_by TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, heartbeat_at TIMESTAMP NULL);
CREATE INDEX IF NOT EXISTS idx_sessions_heartbeat ON sessions (subcommand, heartbeat_at);
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, uuid TEXT UNIQUE NOT NULL,
    session_id INTEGER NOT NULL REFERENCES sessions (id), name TEXT NOT NULL, source TEXT NOT NULL,
    target TEXT NULL, status TEXT NOT NULL CHECK (status IN ('queued', 'analyzing', 'running', 'completed',
    'failed', 'canceling', 'canceled', 'orphaned')), inputs TEXT NOT NULL, outputs TEXT, error TEXT,
    directory TEXT, index_directory TEXT, started_at TIMESTAMP, completed_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX IF NOT EXISTS idx_runs_session ON runs (session_id);
CREATE INDEX IF NOT EXISTS idx_runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS idx_runs_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS tasks (name TEXT PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id),
    status TEXT NOT NULL CHECK (status IN ('initializing', 'localizing', 'pending', 'running', 'completed',
    'failed', 'canceled', 'preempted', 'cached', 'orphaned')), exit_status INTEGER, error TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, started_at TIMESTAMP, completed_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS task_logs (id INTEGER PRIMARY KEY, task_name TEXT NOT NULL REFERENCES tasks (name),
    source TEXT CHECK (source IN ('stdout', 'stderr')), chunk BLOB NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS index_log (id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs (id),
    link_path TEXT, target_path TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE VIEW IF NOT EXISTS latest_index_entries AS SELECT * FROM (SELECT *, row_number() OVER
    (PARTITION BY link_path ORDER BY created_at DESC) AS rn FROM index_log) WHERE rn = 1;
"""
# sprocket.py's additions to Sprocket's schema, created in any database it opens: the process
# behind each session, with its start time (so a dead one is seen at once, and a pid given out
# again is not taken for it); each attempt with its job (a Slurm job id, a local process group
# and its leader's start time, or a container's name, so a rerun can adopt or kill it), the id
# of the container image it ran, the call cache key of its task and the attempt of an earlier
# run it adopted (reattach); what makes runs the same (document, inputs, configuration), and
# which run adopted which.
_DB_EXTENSIONS = """
CREATE TABLE IF NOT EXISTS session_processes (session_id INTEGER PRIMARY KEY REFERENCES sessions (id),
    hostname TEXT NOT NULL, pid INTEGER NOT NULL, process_started TEXT);
CREATE TABLE IF NOT EXISTS attempts (key TEXT PRIMARY KEY REFERENCES tasks (name), run_id INTEGER NOT NULL
    REFERENCES runs (id), call TEXT NOT NULL, attempt INTEGER NOT NULL, directory TEXT NOT NULL, backend TEXT NOT NULL,
    job_id TEXT, status TEXT NOT NULL, exit_status INTEGER, error TEXT, started_at TIMESTAMP, completed_at TIMESTAMP,
    cache_key TEXT, adopted_from TEXT REFERENCES attempts (key), process_group INTEGER, process_started TEXT,
    image_digest TEXT, UNIQUE (run_id, call, attempt));
CREATE TABLE IF NOT EXISTS run_fingerprints (run_id INTEGER PRIMARY KEY REFERENCES runs (id), fingerprint TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_run_fingerprints ON run_fingerprints (fingerprint);
CREATE TABLE IF NOT EXISTS adoptions (run_id INTEGER PRIMARY KEY REFERENCES runs (id),
    by_run_id INTEGER NOT NULL REFERENCES runs (id), created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS attempt_usage (key TEXT PRIMARY KEY REFERENCES attempts (key), node TEXT,
    submitted_at REAL, started_at REAL, ended_at REAL, queue_seconds REAL, wall_seconds REAL, cpu_seconds REAL,
    requested_cpus REAL, allocated_cpus INTEGER, requested_memory INTEGER, peak_memory INTEGER, slurm_state TEXT);
CREATE TABLE IF NOT EXISTS handoffs (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id),
    job_id TEXT NOT NULL, successor_job_id TEXT, reason TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS cleanups (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id),
    paths TEXT NOT NULL, bytes_freed INTEGER NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS retries (run_id INTEGER PRIMARY KEY REFERENCES runs (id),
    retry_of INTEGER NOT NULL REFERENCES runs (id), created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
"""
# What an attempt used (times are seconds since the epoch; NULL where nothing told): from the
# job itself and, on Slurm, from sacct.
USAGE_COLUMNS = ("node", "submitted_at", "started_at", "ended_at", "queue_seconds", "wall_seconds", "cpu_seconds",
                 "requested_cpus", "allocated_cpus", "requested_memory", "peak_memory", "slurm_state")
_DB_ADDED_COLUMNS = (("attempts", "cache_key", "TEXT"), ("attempts", "adopted_from", "TEXT"),  # since the table came
                     ("attempts", "process_group", "INTEGER"), ("attempts", "process_started", "TEXT"),
                     ("session_processes", "process_started", "TEXT"), ("attempts", "image_digest", "TEXT"))
_HEARTBEAT_SECONDS = 60
AttemptRecord = collections.namedtuple("AttemptRecord", "key number directory job_id status cache_key process_group "
                                       "process_started")
AttemptRecord.__doc__ = "An attempt's row in `attempts` as reattach reads it (its directory relative to its run's)."
RunRef = collections.namedtuple("RunRef", "id directory")
RunRef.__doc__ = "A run by its row id and its directory (relative to the output directory), as reattach follows it."
EngineProcess = collections.namedtuple("EngineProcess", "host pid started")
EngineProcess.__doc__ = "The process that runs a run: its host, pid and start time (process_start()), as engine_dead() takes them."
_LIVE_RUN_STATES = ("queued", "analyzing", "running", "canceling")  # a run not over (or its engine died)
_ENDED_RUN_STATES = ("completed", "failed", "canceled")  # a run over ('orphaned': its engine died; its jobs may run)
_LIVE_RUN_STATES_SQL = "(%s)" % ", ".join("'%s'" % s for s in _LIVE_RUN_STATES)
CLEAN_LOCK = ".clean.lock"  # in the output directory, made with its sprocket.db: see CleanLock (section 18)


class Store:
    """The provenance database of one output directory."""

    def __init__(self, out_dir, orphan_minutes=CONFIG_SCHEMA["server.orphan_timeout_minutes"].default):
        import sqlite3

        self.sqlite3 = sqlite3
        self.path = os.path.join(out_dir, "sprocket.db")
        self.lock = threading.Lock()
        self.queue_lock = threading.Lock()
        self.commit_lock = threading.RLock()
        self.queue = []
        self.flusher = None
        self.closed = False
        self.closed_event = threading.Event()
        self.error = None
        self.orphan_minutes = orphan_minutes
        fresh = not os.path.exists(self.path)
        if not fresh:
            self._check_header()
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout = 30000")
            version = self._metadata_version()  # before anything that could write to a foreign file
            if version not in (None, _DB_SCHEMA_VERSION):
                self.db.close()
                raise RunError("`%s` has schema version %s, but this sprocket.py knows version %s; it was left "
                               "unchanged (use another output directory)" % (self.path, version, _DB_SCHEMA_VERSION))
            self.db.execute("PRAGMA journal_mode = DELETE")
            self.db.execute("PRAGMA foreign_keys = ON")
            if version is None:
                self.write(lambda db: db.executescript("BEGIN IMMEDIATE;" + _DB_SCHEMA + _DB_EXTENSIONS + (
                    "INSERT OR IGNORE INTO metadata (key, value) VALUES ('version', '%s');COMMIT;" % _DB_SCHEMA_VERSION)))
                self._make_clean_lock(out_dir)
            else:
                self.write(lambda db: db.executescript("BEGIN IMMEDIATE;" + _DB_EXTENSIONS + "COMMIT;"))
                self.write(self._add_columns)
        except sqlite3.DatabaseError as e:
            raise RunError("cannot use the provenance database `%s`: %s" % (self.path, e))
        self.sweep_orphans()

    @staticmethod
    def _make_clean_lock(out_dir):
        """The lock file that `clean` and starting runs share, made with the database, so that a run
        later takes its lock without needing room for a new file (a full disk still starts runs)."""
        try:
            os.close(os.open(os.path.join(out_dir, CLEAN_LOCK), os.O_WRONLY | os.O_CREAT, 0o666))
        except OSError:  # CleanLock makes it when it can
            pass

    def _add_columns(self, db):
        """Columns added to sprocket.py's tables after they first shipped, for databases made before."""
        for table, column, kind in _DB_ADDED_COLUMNS:
            if column not in [r[1] for r in db.execute("PRAGMA table_info(%s)" % table)]:
                db.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, column, kind))

    def _check_header(self):
        try:
            with open(self.path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise RunError("cannot read the provenance database `%s`: %s" % (self.path, e.strerror))
        if head and head != b"SQLite format 3\x00":
            raise RunError("`%s` is not a SQLite database; it was left unchanged (use another output directory)" % self.path)

    def _metadata_version(self):
        has = self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'metadata'").fetchone()
        if has is None:
            others = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if others:
                raise RunError("`%s` is a SQLite database of another program; it was left unchanged" % self.path)
            return None
        row = self.db.execute("SELECT value FROM metadata WHERE key = 'version'").fetchone()
        return row[0] if row else None

    def write(self, fn):
        """Run fn(db) in one short transaction, retrying while another process holds the lock."""
        delay = 0.05
        for attempt in range(12):
            with self.lock:
                try:
                    return fn(self.db)
                except self.sqlite3.OperationalError as e:
                    if "locked" not in str(e) and "busy" not in str(e):
                        raise RunError("cannot write the provenance database `%s`: %s" % (self.path, _sqlite_reason(e))) from e
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise RunError("the provenance database `%s` stayed locked by another process" % self.path)

    def execute(self, sql, args=()):
        """One statement in its own transaction (after any queued ones); returns the row id."""
        with self.commit_lock:  # queued statements commit in the order they were queued
            return self.transaction(list(self.take_queued()) + [(sql, args)])

    def transaction(self, statements, then=None):
        """Run `statements` ((sql, args) pairs) in one transaction and then, in the same one, `then(db)`
        when given (a write that depends on what it reads): returns what `then` returns, or else the
        last statement's row id."""
        def run(db):
            db.execute("BEGIN IMMEDIATE")
            try:
                rowid = None
                for sql, args in statements:
                    rowid = db.execute(sql, args).lastrowid
                if then is not None:
                    rowid = then(db)
                db.execute("COMMIT")
                return rowid
            except BaseException:
                if db.in_transaction:  # SQLite ends the transaction itself on some errors (a full disk)
                    db.execute("ROLLBACK")
                raise

        def in_memory_journal(db):
            db.execute("PRAGMA journal_mode = MEMORY")
            try:
                return run(db)
            finally:
                db.execute("PRAGMA journal_mode = DELETE")

        if not statements and then is None:
            return None
        try:
            return self.write(run)
        except RunError as e:
            # A full file system (out of inodes: the journal cannot even be created). The reserve makes
            # room, and the transaction keeps its journal. Once it is gone, updates in place (a run's
            # `failed` and why) go without one, not lost: the few pages they write are the only ones a
            # kill during them could leave half-written.
            cause = e.__cause__
            if not isinstance(cause, self.sqlite3.OperationalError) or not re.search("full|unable to open", str(cause)):
                raise
            try:
                os.unlink(self.path + "-reserve")
                return self.write(run)
            except (OSError, RunError):
                if then is not None or not all(sql.lstrip().upper().startswith("UPDATE") for sql, _ in statements):
                    raise e from None
        return self.write(in_memory_journal)

    def enqueue(self, sql, args=()):
        """Task state changes are batched: a commit costs milliseconds (an fsync), and the hot path
        of a task must not wait for it. A flusher thread writes the queue a few times a second."""
        with self.queue_lock:
            self.queue.append((sql, args))
            if self.flusher is None:
                self.flusher = threading.Thread(target=self._flush_loop, daemon=True)
                self.flusher.start()

    def take_queued(self):
        with self.queue_lock:
            items, self.queue = self.queue, []
        return items

    def flush(self):
        with self.commit_lock:
            self.transaction(self.take_queued())

    def flush_now(self):
        """Write the queue now; a failure is reported when the run ends, as the flusher's are."""
        try:
            self.flush()
        except (RunError, self.sqlite3.Error) as e:
            self.error = e

    def _flush_loop(self):
        while not self.closed:
            time.sleep(0.25)
            self.flush_now()

    def sweep_orphans(self):
        """Runs of sessions whose process is gone (same host) or silent too long become `orphaned`
        (Sprocket's rule; but a silent one may live on: engine_dead() says whose tasks may be killed)."""
        rows = self.db.execute(
            "SELECT s.id, p.hostname, p.pid, p.process_started, (julianday('now') - julianday(coalesce(s.heartbeat_at, s.created_at))) * 1440 "
            "FROM sessions s LEFT JOIN session_processes p ON p.session_id = s.id WHERE s.id IN "
            "(SELECT session_id FROM runs WHERE status IN %s)" % _LIVE_RUN_STATES_SQL).fetchall()
        for sid, hostname, pid, started, silent_minutes in rows:
            if engine_dead(hostname, pid, started) or (silent_minutes or 0) > self.orphan_minutes:
                self.execute("UPDATE runs SET status = 'orphaned', completed_at = CURRENT_TIMESTAMP, error = "
                             "coalesce(error, 'the sprocket process running it ended without finishing it') "
                             "WHERE session_id = ? AND status IN %s" % _LIVE_RUN_STATES_SQL, (sid,))
                for table in ("tasks", "attempts"):
                    self.execute("UPDATE %s SET status = 'orphaned', completed_at = CURRENT_TIMESTAMP WHERE run_id IN "
                                 "(SELECT id FROM runs WHERE session_id = ?) AND status IN "
                                 "('initializing', 'localizing', 'pending', 'running')" % table, (sid,))

    # -- reattach ------------------------------------------------------------------------------
    def adopt_run(self, fingerprint, run_id):
        """The newest orphaned run with this fingerprint that no run adopted yet, now adopted by
        `run_id` (in one transaction, so two runs never adopt the same one): a RunRef, or None.
        A run of this host whose engine lives on (silent: stopped, swapping) is not adopted; one of
        another host silent too long is (its jobs may be Slurm's)."""
        import socket

        host = socket.gethostname()

        def adopt(db):
            row = next((RunRef(*r[:2]) for r in db.execute(
                "SELECT r.id, r.directory, p.hostname, p.pid, p.process_started FROM runs r JOIN run_fingerprints f "
                "ON f.run_id = r.id LEFT JOIN session_processes p ON p.session_id = r.session_id WHERE f.fingerprint = ? "
                "AND r.status = 'orphaned' AND r.id != ? AND r.id NOT IN (SELECT run_id FROM adoptions) "
                "ORDER BY r.id DESC", (fingerprint, run_id)).fetchall() if r[2] != host or engine_dead(*r[2:])), None)
            if row is not None:
                db.execute("INSERT INTO adoptions (run_id, by_run_id) VALUES (?, ?)", (row.id, run_id))
            return row
        with self.commit_lock:  # after the statements queued before it, as execute()
            return self.transaction(self.take_queued(), adopt)

    def run_adopted_by(self, run_id):
        """The run that `run_id` adopted (a RunRef), or None."""
        with self.lock:
            row = self.db.execute("SELECT r.id, r.directory FROM adoptions a JOIN runs r ON r.id = a.run_id "
                                  "WHERE a.by_run_id = ?", (run_id,)).fetchone()
        return RunRef(*row) if row else None

    # -- hand-offs (`run --submit`) ----------------------------------------------------------
    def record_handoff(self, run_id, job_id, successor_job_id, reason, error):
        """Head job `job_id` of run `run_id` handed off (`reason`) to `successor_job_id` (None: it
        could not be submitted). The run becomes `orphaned` (`error` says why), as if its engine had
        died, so that its successor adopts its jobs (reattach); so do its tasks still going."""
        live = "('initializing', 'localizing', 'pending', 'running')"
        statements = [("INSERT INTO handoffs (run_id, job_id, successor_job_id, reason) VALUES (?, ?, ?, ?)",
                       (run_id, job_id, successor_job_id, reason)),
                      ("UPDATE runs SET status = 'orphaned', error = ?, completed_at = CURRENT_TIMESTAMP WHERE id = ?",
                       (error, run_id))]
        statements += [("UPDATE %s SET status = 'orphaned', completed_at = CURRENT_TIMESTAMP WHERE run_id = ? AND "
                        "status IN %s" % (table, live), (run_id,)) for table in ("tasks", "attempts")]
        with self.commit_lock:  # after the statements queued before it, as execute()
            self.transaction(list(self.take_queued()) + statements)

    def handoffs_before(self, run_id):
        """How many hand-offs led to `run_id`: those of the runs it adopted, one after the other."""
        count, run = 0, self.run_adopted_by(run_id)
        while run is not None:
            count += self.query("SELECT count(*) AS n FROM handoffs WHERE run_id = ?", (run.id,))[0]["n"]
            run = self.run_adopted_by(run.id)
        return count

    def successor_jobs(self):
        """{run id: the head job its head job handed off to} (`runs`)."""
        return {r["run_id"]: r["successor_job_id"] for r in self.query(
            "SELECT run_id, successor_job_id FROM handoffs WHERE successor_job_id IS NOT NULL")}

    # -- reading: `sprocket runs`, `sprocket report` ------------------------------------------
    def query(self, sql, args=()):
        with self.lock:
            cur = self.db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def runs(self, run_id=None):
        """Every run (or the one `run_id`), newest first, with its calls done, failed (their last
        attempt) and cached."""
        return self.query(
            "SELECT r.id, r.uuid, r.name, r.target, r.status, r.source, r.inputs, r.outputs, r.error, r.directory, r.started_at, "
            "r.completed_at, (julianday(coalesce(r.completed_at, CURRENT_TIMESTAMP)) - julianday(r.started_at)) * 86400 "
            "AS duration, (SELECT count(DISTINCT call) FROM attempts a WHERE a.run_id = r.id AND a.status = 'completed') "
            "AS done, (SELECT count(*) FROM (SELECT status, max(attempt) FROM attempts a WHERE a.run_id = r.id "
            "GROUP BY call) WHERE status = 'failed') AS failed, (SELECT count(*) FROM tasks t WHERE "
            "t.run_id = r.id AND t.status = 'cached') AS cached FROM runs r WHERE ? IS NULL OR r.id = ? ORDER BY r.id DESC",
            (run_id, run_id))

    def attempts_of(self, run_id):
        """The attempts of a run in the order they started, each with what it used."""
        return self.query(
            "SELECT a.key, a.call, a.attempt, a.status, a.exit_status, a.error, a.job_id, a.directory, a.adopted_from, "
            "a.image_digest, %s FROM attempts a LEFT JOIN attempt_usage u ON u.key = a.key WHERE a.run_id = ? ORDER BY a.rowid" % (
                ", ".join("u." + c for c in USAGE_COLUMNS)), (run_id,))

    def last_attempts(self, run_id):
        """{call: AttemptRecord}: each call's last attempt in the run (call_states())."""
        return {c["call"]: AttemptRecord(*(c["attempt" if f == "number" else f] for f in AttemptRecord._fields))
                for c in self.call_states(run_id)}

    def dead_run_directories(self):
        """The directories (relative to the output directory) of the orphaned runs whose engine is
        verifiably dead (engine_dead): a run orphaned only by its silence may be alive."""
        with self.lock:
            rows = self.db.execute("SELECT r.directory, p.hostname, p.pid, p.process_started FROM runs r JOIN "
                                   "session_processes p ON p.session_id = r.session_id WHERE r.status = 'orphaned' "
                                   "AND r.directory IS NOT NULL").fetchall()
        return [d for d, hostname, pid, started in rows if engine_dead(hostname, pid, started)]

    def followed_directories(self, run_id):
        """The attempt directories (relative to the output directory) of the runs that a run other
        than `run_id` adopted and may still follow (it has not ended, and its engine is not known to
        be dead), with those they adopted in turn. By the adoptions table, written as the run is
        adopted: not only once the adopter schedules the attempt."""
        with self.lock:
            rows = self.db.execute(
                "SELECT a.run_id, a.by_run_id, r.status, p.hostname, p.pid, p.process_started FROM adoptions a JOIN "
                "runs r ON r.id = a.by_run_id LEFT JOIN session_processes p ON p.session_id = r.session_id").fetchall()
        adopted = {by: run for run, by, *_ in rows}
        followed = set()
        for _, by, status, hostname, pid, started in rows:
            live = status in _LIVE_RUN_STATES or status == "orphaned" and not engine_dead(hostname, pid, started)
            run = adopted[by] if live and by != run_id else None
            while run is not None and run not in followed:  # a chain of deaths: what the adopted run adopted
                followed.add(run)
                run = adopted.get(run)
        if not followed:
            return []
        with self.lock:
            return [posixpath.join(r, a) for r, a in self.db.execute(
                "SELECT r.directory, a.directory FROM attempts a JOIN runs r ON r.id = a.run_id WHERE r.directory IS NOT "
                "NULL AND a.run_id IN (%s)" % ", ".join("?" * len(followed)), sorted(followed)).fetchall()]

    # -- reading and writing for `sprocket status`, `cancel`, `retry` and `clean` --------------
    def call_states(self, run_id):
        """Each call's last attempt in a run, in the order they began: its status, job (a job id, a
        process group, a container's name), directory (relative to the run's), error, exit status,
        backend and age (seconds since it began: since it was submitted, on a batch system)."""
        return self.query(
            "SELECT a.key, a.call, a.attempt, a.status, a.job_id, a.process_group, a.process_started, a.directory, "
            "a.error, a.exit_status, a.backend, a.cache_key, (julianday('now') - julianday(a.started_at)) * 86400 AS age "
            "FROM attempts a WHERE a.run_id = ? AND a.attempt = (SELECT max(attempt) FROM attempts b WHERE "
            "b.run_id = a.run_id AND b.call = a.call) ORDER BY a.rowid", (run_id,))

    def engine_of(self, run_id):
        """The EngineProcess that runs (or ran) a run, or None."""
        with self.lock:
            row = self.db.execute("SELECT p.hostname, p.pid, p.process_started FROM runs r JOIN session_processes p "
                                  "ON p.session_id = r.session_id WHERE r.id = ?", (run_id,)).fetchone()
        return EngineProcess(*row) if row else None

    def adopter_of(self, run_id):
        """The id of the run that adopted `run_id` (reattach, a hand-off), or None."""
        with self.lock:
            row = self.db.execute("SELECT by_run_id FROM adoptions WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def handoffs_of(self, run_ids):
        """The hand-offs of these runs (head jobs that passed the run on), oldest first."""
        return self.query("SELECT h.run_id, r.name, h.job_id, h.successor_job_id, h.reason, h.created_at FROM handoffs h "
                          "JOIN runs r ON r.id = h.run_id WHERE h.run_id IN (%s) ORDER BY h.id" % ", ".join(
                              "?" * len(run_ids)), list(run_ids)) if run_ids else []

    def retry_of(self, run_id):
        """The id of the run that `run_id` retries, or None."""
        with self.lock:
            row = self.db.execute("SELECT retry_of FROM retries WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def cleanups_of(self, run_id):
        """What `sprocket clean` removed of a run: [{paths (JSON), bytes_freed, created_at}]."""
        return self.query("SELECT paths, bytes_freed, created_at FROM cleanups WHERE run_id = ? ORDER BY id", (run_id,))

    def record_cleanup(self, run_id, paths, bytes_freed):
        """What was removed of a run (paths relative to the output directory), for cleanups_of()."""
        self.execute("INSERT INTO cleanups (run_id, paths, bytes_freed) VALUES (?, ?, ?)",
                     (run_id, json_dumps(paths), bytes_freed))

    def cleaned_directories(self):
        """The directories (relative to the real output directory) that `sprocket clean` emptied,
        whole or but the files it kept."""
        return {p for c in self.query("SELECT paths FROM cleanups") for p in json.loads(c["paths"])}

    def record_retry(self, run_id, retry_of, retry_name, orphaned):
        """`run_id` retries `retry_of`; an orphaned one is adopted too, in the same transaction (its
        jobs may still run: no other run may adopt them)."""
        def adopt(db):
            if orphaned and not db.execute("INSERT OR IGNORE INTO adoptions (run_id, by_run_id) VALUES (?, ?)",
                                           (retry_of, run_id)).rowcount:
                by = db.execute("SELECT r.name FROM adoptions a JOIN runs r ON r.id = a.by_run_id WHERE a.run_id = ?",
                                (retry_of,)).fetchone()
                raise RunError("run `%s` was adopted meanwhile by run `%s`, which carries its jobs on: retry that one "
                               "once it ends" % (retry_name, by[0] if by else "?"))
            return None

        with self.commit_lock:
            self.transaction(list(self.take_queued()) + [
                ("INSERT INTO retries (run_id, retry_of) VALUES (?, ?)", (run_id, retry_of))], adopt)

    def mark_canceled(self, run_id, why):
        """A run whose engine is gone, its jobs canceled: the run, its tasks and its attempts not
        yet over become `canceled`, in one transaction."""
        over = "('initializing', 'localizing', 'pending', 'running', 'orphaned')"
        statements = [("UPDATE runs SET status = 'canceled', error = ?, completed_at = CURRENT_TIMESTAMP WHERE id = ?",
                       (why, run_id))]
        statements += [("UPDATE %s SET status = 'canceled', error = coalesce(error, 'canceled'), completed_at = "
                         "CURRENT_TIMESTAMP WHERE run_id = ? AND status IN %s" % (table, over), (run_id,))
                       for table in ("tasks", "attempts")]
        with self.commit_lock:
            self.transaction(list(self.take_queued()) + statements)

    def start_session(self):
        import getpass
        import socket
        import uuid

        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        sid = self.execute("INSERT INTO sessions (uuid, subcommand, created_by, heartbeat_at) "
                           "VALUES (?, 'run', ?, CURRENT_TIMESTAMP)", (str(uuid.uuid4()), user))
        self.execute("INSERT INTO session_processes (session_id, hostname, pid, process_started) VALUES (?, ?, ?, ?)",
                     (sid, socket.gethostname(), os.getpid(), process_start(os.getpid())))
        self.session_id = sid
        self.keep_reserve()
        return sid

    def keep_reserve(self):
        """Make `sprocket.db-reserve` (see _DB_RESERVE_BYTES) if it is not there; on a disk already full
        there is no room for it, and the run says so when it writes."""
        reserve = self.path + "-reserve"
        try:
            if os.path.getsize(reserve) >= _DB_RESERVE_BYTES:
                return
        except OSError:
            pass
        try:
            write_replacing(reserve, bytes(_DB_RESERVE_BYTES))
        except OSError:
            pass

    def heartbeat(self):
        self.execute("UPDATE sessions SET heartbeat_at = CURRENT_TIMESTAMP WHERE id = ?", (self.session_id,))

    def keep_alive(self):
        """Beat every min(orphan timeout / 5, 60 s), so other processes never take a live run for
        an orphan (Sprocket's rule)."""
        period = min(self.orphan_minutes * 60 / 5.0, _HEARTBEAT_SECONDS)

        def loop():
            while not self.closed_event.wait(period):
                try:
                    self.heartbeat()
                except (RunError, self.sqlite3.Error) as e:
                    self.error = e
        threading.Thread(target=loop, daemon=True).start()

    def close(self):
        """Write what is queued and stop; a write that failed earlier is reported now."""
        self.closed = True
        self.closed_event.set()
        self.flush()
        if self.error is not None:
            raise RunError("the provenance database `%s` could not be written: %s" % (self.path, self.error))
        with self.lock:
            self.db.close()


def _sqlite_reason(e):
    """What a SQLite error means for the user (its own text says "readonly database" where the
    file or its directory belongs to someone else)."""
    text = str(e)
    if "readonly" in text:
        return "%s (it or its directory is not writable by you: choose your own output directory with -o)" % text
    if "full" in text:
        return "the file system is full"
    return text


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def engine_dead(hostname, pid, started):
    """Whether a session's engine is verifiably gone: it ran on this host and its pid is free, or
    was given to another process since (another start time, where one was recorded). An engine
    only silent (stopped, swapping) is not dead: its tasks are neither killed nor adopted."""
    import socket

    if hostname != socket.gethostname() or pid is None:
        return False
    return not _pid_alive(pid) or (started is not None and process_start(pid) != started)


def run_name():
    """A readable run name, as Sprocket's petnames: adjective-noun-xxxxxx."""
    adjectives = ("brisk", "calm", "eager", "gentle", "keen", "lively", "merry", "nimble", "quiet", "steady", "swift", "witty")
    nouns = ("badger", "falcon", "heron", "lynx", "marten", "otter", "panda", "puffin", "raven", "tapir", "wombat", "yak")
    return "%s-%s-%06x" % (random.choice(adjectives), random.choice(nouns), random.getrandbits(24))


# ============================================================================================
# 18. Runs: the run directory, call cache, reattach, logs, progress, trace, report and signals
# ============================================================================================
#
# <out>/runs/<target>/<timestamp>/ holds inputs.json, outputs.json, output.log, trace.tsv,
# report.html, tmp/, and either the task's attempts/ or the workflow's calls/ (and arrays/ on
# Slurm); <out>/runs/<target>/_latest points at the newest. <out>/output.log gathers every
# invocation's log lines.


CANCEL_REQUEST = "cancel-requested"  # `sprocket cancel` writes it in the run directory; the engine stops as on SIGTERM


class CleanLock:
    """flock() on OUT/.clean.lock: `sprocket clean` holds it exclusive from reading what the runs use
    to its last removal; a run holds it shared while it reads and records its inputs and what it
    adopts (a short hold). So a clean sees every run that may use a file of the runs it cleans, or
    that run starts after it. On a file system without file locks a run goes on (no clean can run
    there), and clean refuses. A run into an output directory not made yet takes no lock (and makes
    nothing: its inputs are checked first): there is no run there whose files a clean could take."""

    def __init__(self, out_dir, exclusive):
        self.path, self.exclusive, self.fd = os.path.join(out_dir, CLEAN_LOCK), exclusive, None

    def __enter__(self):
        import fcntl

        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                print("waiting for %s in `%s`" % ("the runs starting to record their inputs" if self.exclusive else
                                                  "`sprocket clean` to finish", os.path.dirname(self.path)),
                      file=sys.stderr)
                fcntl.flock(self.fd, mode)
        except OSError as e:
            self.__exit__()
            if self.exclusive:
                raise RunError("cannot lock `%s` (%s): `sprocket clean` needs file locks there, so that no run "
                               "starting meanwhile loses a file it uses" % (self.path, os_error_text(e)))
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # (which unlocks it)
            self.fd = None


def run_fingerprint(doc, target, inputs_json, nested, overrides, config):
    """What makes two runs the same run (reattach): the document, the target, every input and
    override, and the whole configuration."""
    import hashlib

    data = [os.path.abspath(doc.source.path), doc.source.text, target.name, inputs_json,
            {path: {k: value_to_json(v) for k, v in values.items()} for path, values in sorted(nested.items())},
            {path: {section: {k: value_to_json(v) for k, v in values.items()} for section, values in sections.items()}
             for path, sections in sorted(overrides.items())},
            resolve_lines(config)]
    return hashlib.sha256(json_dumps(data).encode("utf-8")).hexdigest()


def make_run_dir(out_dir, target, suffix=None):
    """A new run directory, `<timestamp>[_<suffix>]`, never an existing one (mkdir is the arbiter
    between processes)."""
    parent = os.path.join(out_dir, "runs", target)
    os.makedirs(parent, exist_ok=True)
    while True:
        ns = time.time_ns()
        stamp = time.strftime("%Y-%m-%d_%H%M%S", time.gmtime(ns // 10 ** 9)) + "%09d" % (ns % 10 ** 9)
        stamp += "_" + suffix if suffix else ""
        path = os.path.join(parent, stamp)
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        latest = os.path.join(parent, "_latest")
        tmp_link = "%s.%d.tmp" % (latest, os.getpid())
        try:
            os.symlink(stamp, tmp_link)
            os.replace(tmp_link, latest)
        except OSError:
            pass
        return path


def check_run_name_parts(suffix, index_on):
    """--suffix is one path component; --index-on a relative path without `.` or `..` parts; neither
    holds a control character (a newline in a directory name breaks every line-based tool)."""
    control = re.compile(r"[\x00-\x1f\x7f]")
    if suffix is not None and (not suffix or "/" in suffix or suffix in (".", "..") or control.search(suffix)):
        raise InputError("--suffix %s: a suffix must be a non-empty name without `/` or control characters"
                         % json_dumps(suffix))
    if index_on is not None and (not index_on or os.path.isabs(index_on) or control.search(index_on) or any(
            part in ("", ".", "..") for part in index_on.split("/"))):
        raise InputError("--index-on %s: the index path must be relative, without empty, `.` or `..` parts or "
                         "control characters" % json_dumps(index_on))


def _placed_paths(v, place):
    """(place, path) for every File/Directory in an output value; the place (output name, then
    array indices, map keys and member names) keeps equal basenames apart."""
    if isinstance(v, (WdlFile, WdlDir)):
        yield place, v
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            for found in _placed_paths(x, place + [str(i)]):
                yield found
    elif isinstance(v, dict):
        for i, (k, x) in enumerate(v.items()):
            key = str(k) if isinstance(k, str) and not isinstance(k, (WdlFile, WdlDir)) else str(i)
            for found in _placed_paths(x, place + [re.sub(r"[/\0]", "_", key) or str(i)]):
                yield found


def index_location(out_dir, index_on):
    """The directory of `--index-on PATH`, refused where replacing it could delete what sprocket did
    not write: every part of the path below <out>/index must be a real directory (a symlink could
    lead out of the output directory), and an existing index may hold only links and directories that hold
    something (the ones sprocket makes lead to a link; an empty one is a user's)."""
    path = os.path.join(out_dir, "index")
    for part in [""] + index_on.split("/"):
        path = os.path.join(path, part) if part else path
        if os.path.islink(path):
            raise InputError("--index-on `%s`: `%s` is a symbolic link; an index is never written through one "
                             "(remove the link or choose another index path)" % (index_on, path))
        if os.path.lexists(path) and not os.path.isdir(path):
            raise InputError("--index-on `%s`: `%s` is not a directory (move it away or choose another index "
                             "path)" % (index_on, path))
    for dirpath, dirnames, filenames in os.walk(path):  # links to directories are among dirnames, not followed
        strays = [os.path.join(dirpath, n) for n in filenames if not os.path.islink(os.path.join(dirpath, n))]
        if not dirnames and not filenames:  # sprocket never leaves an empty one: a user's
            strays.append(dirpath)
        if strays:
            raise InputError("--index-on `%s`: `%s` was not written by sprocket, and replacing the index "
                             "would delete it (move it away or choose another index path)" % (index_on, strays[0]))
    return path


def _new_hidden_dir(parent, prefix):
    """A fresh directory in parent, made with mkdir so that it follows the umask as the run
    directories do (mkdtemp makes 0700 ones collaborators cannot open)."""
    while True:
        path = os.path.join(parent, "%s%d.%d" % (prefix, os.getpid(), time.time_ns()))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def _remove_index(path):
    """Remove an index that index_location() passed: its links and then its directories, with
    rmdir, which leaves any file that appeared meanwhile (and raises) rather than deleting it."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in dirnames + filenames:
            entry = os.path.join(dirpath, name)
            if os.path.islink(entry):
                os.unlink(entry)
            elif os.path.isdir(entry):
                os.rmdir(entry)
    os.rmdir(path)


def write_index(out_dir, index_on, run_dir, outputs):
    """`--index-on PATH`: <out>/index/PATH/ holds a link to the run's outputs.json and, under each
    output's name, links to its files. It is built aside and swapped in with two renames, so a reader
    sees one complete run's index (or, for that instant, none), never a mix; the old one is then
    removed link by link and rmdir by rmdir, and what its links pointed at is never touched."""
    index = index_location(out_dir, index_on)
    parent = os.path.dirname(index)
    os.makedirs(parent, exist_ok=True)
    tmp = _new_hidden_dir(parent, ".%s.new." % os.path.basename(index))

    def link(target, name):
        os.makedirs(os.path.dirname(name), exist_ok=True)
        os.symlink(os.path.relpath(target, os.path.dirname(os.path.join(index, os.path.relpath(name, tmp)))), name)

    link(os.path.join(run_dir, "outputs.json"), os.path.join(tmp, "outputs.json"))
    for name, value in outputs.items():
        for place, path in _placed_paths(value, [name]):
            link(os.path.abspath(path), os.path.join(tmp, *place, os.path.basename(path.rstrip("/")) or "root"))
    old = None
    if os.path.lexists(index):
        old = os.path.join(parent, ".%s.old.%d.%d" % (os.path.basename(index), os.getpid(), time.time_ns()))
        os.rename(index, old)
    os.rename(tmp, index)
    if old is not None:
        _remove_index(old)  # links only: what they point at stays
    return index


class CallCache:
    """Reuse the outputs of a task run before with the same document, task, inputs (by content
    digest or size+mtime), requirements, hints and backend. Entries are JSON files named by key."""

    def __init__(self, config, backend_name, shell, off=False):
        self.mode = "off" if off else config.get("run.task.cache")
        root = config.get("run.task.cache_dir")
        if root == "system":
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            root = os.path.join(base, "sprocket", "calls")
        self.dir = root
        self.digests = config.get("run.task.digests")
        self.excluded = {k: set(config.get("run.task.excluded_cache_" + k)) for k in ("requirements", "hints", "inputs")}
        self.container = config.get("run.task.container")
        self.backend, self.shell = backend_name, shell
        self.memo = {}
        self.lock = threading.Lock()

    def enabled_for(self, tr):
        cacheable = tr.hints.get("cacheable")
        if self.mode == "on":
            return cacheable is not False
        return self.mode == "explicit" and cacheable is True

    def key(self, tr, digests=None):
        """The key of a task run's entry (reattach asks for one with `weak` digests: they cost a stat)."""
        import hashlib

        task = tr.task
        inputs = {d.name: self.digest_value(tr.env[d.name], digests or self.digests) for d in task.inputs or []
                  if d.name not in self.excluded["inputs"]}
        data = {
            "version": 1, "backend": self.backend, "task": task.name, "shell": self.shell,
            "document": self.file_digest(os.path.abspath(task.span.source.path), "strong"),
            "inputs": inputs,
            "requirements": {k: value_to_json(v) for k, v in sorted(tr.requirements.items())
                             if k not in self.excluded["requirements"]},
            "hints": {k: value_to_json(v) for k, v in sorted(tr.hints.items()) if k not in self.excluded["hints"]},
            "container": None if "container" in tr.requirements else self.container,
        }
        # The files its private declarations name (`File ref = "data/ref.fa"`, resolved against the
        # document from 1.2): a changed one is a new key. Left out when none, so other keys stay.
        private = {d.name: self.digest_value(tr.env[d.name], digests or self.digests) for d in task.decls
                   if any(True for _ in paths_in(tr.env[d.name]))}
        if private:
            data["declarations"] = private
        return hashlib.sha256(json_dumps(data).encode("utf-8")).hexdigest()

    def digest_value(self, v, digests):
        if isinstance(v, (WdlFile, WdlDir)):
            return {"path-digest": self.file_digest(v, digests)}
        if isinstance(v, list):
            return [self.digest_value(x, digests) for x in v]
        if isinstance(v, tuple):
            return {"left": self.digest_value(v[0], digests), "right": self.digest_value(v[1], digests)}
        if isinstance(v, dict):
            return [[self.digest_value(k, digests), self.digest_value(x, digests)] for k, x in v.items()]
        return value_to_json(v)

    def file_digest(self, path, mode):
        """weak: size and mtime; strongish: and the first 10 MiB; strong: all the content."""
        import hashlib

        try:
            st = os.stat(path)
        except OSError:
            return "missing:" + path
        if os.path.isdir(path):
            h = hashlib.sha256()
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    p = os.path.join(root, name)
                    h.update(os.path.relpath(p, path).encode() + b"\0" + self.file_digest(p, mode).encode())
            return h.hexdigest()
        memo_key = (path, mode, st.st_size, st.st_mtime_ns)
        with self.lock:
            if memo_key in self.memo:
                return self.memo[memo_key]
        if mode == "weak":
            digest = "%d:%d" % (st.st_size, st.st_mtime_ns)
        else:
            h = hashlib.sha256()
            limit = 10 * 1024 * 1024 if mode == "strongish" else None
            with open(path, "rb") as f:
                read = 0
                while limit is None or read < limit:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    read += len(chunk)
            digest = ("%d:%d:" % (st.st_size, st.st_mtime_ns) if mode == "strongish" else "") + h.hexdigest()
        with self.lock:
            self.memo[memo_key] = digest
        return digest

    def lookup(self, tr, key):
        """The outputs of a valid entry, or None. An entry whose files changed is ignored."""
        try:
            with open(os.path.join(self.dir, key + ".json")) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            return None
        try:
            for path, stamp in entry["files"].items():
                if self.file_digest(path, "weak") != stamp:
                    return None
            types = {d.name: d.type_ for d in tr.task.outputs or []}
            if set(types) != set(entry["outputs"]):
                return None
            return {k: from_json(entry["outputs"][k], types[k], "/", "cached output `%s`" % k) for k in types}
        except (KeyError, TypeError, AttributeError, WdlError):
            return None

    def store(self, tr, key, outputs, attempt_dir):
        files = {p: self.file_digest(p, "weak") for v in outputs.values() for p in paths_in(v)}
        entry = {"task": tr.task.name, "attempt": attempt_dir, "files": files,
                 "outputs": {k: value_to_json(v) for k, v in outputs.items()}}
        try:
            os.makedirs(self.dir, exist_ok=True)
            write_replacing(os.path.join(self.dir, key + ".json"), json_dumps(entry))
        except OSError as e:
            tr.context.log.warn("could not store the call cache entry of `%s`: %s" % (tr.name, e))


_LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40}


class RunLog:
    """Log lines go to <out>/output.log (every invocation appends) and the run's output.log at
    INFO and above, and to stderr at the chosen verbosity (WARN by default)."""

    def __init__(self, stderr_level):
        self.stderr_level = stderr_level
        self.files = []
        self.name = "-"
        self.lock = threading.RLock()  # re-entrant: a signal handler may log while the main thread logs
        self.progress = None

    def open(self, path):
        try:
            self.files.append(open(path, "a", encoding="utf-8", errors="backslashreplace"))
        except OSError as e:
            raise RunError("cannot open the log `%s`: %s" % (path, e.strerror or e))

    def log(self, level, message, stderr=True):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock:
            if _LEVELS[level] >= _LEVELS["INFO"]:
                for f in list(self.files):
                    try:
                        f.write("%s %-5s [%s] %s\n" % (stamp, level, self.name, message))
                        f.flush()
                    except OSError as e:  # a full file system: the run goes on, its log stops here
                        self.files.remove(f)
                        try:
                            f.close()
                        except OSError:  # the line that failed is still in its buffer
                            pass
                        self.log("WARN", "cannot write the log `%s` any more: %s" % (f.name, e.strerror or e))
            if stderr and _LEVELS[level] >= self.stderr_level:
                if self.progress is not None:
                    self.progress.clear()
                print("%s: %s" % ({"WARN": "warning"}.get(level, level.lower()), message), file=sys.stderr)

    def detach_terminal(self):
        """Write no more to the terminal (it is gone): stdout and stderr, where they are the
        terminal, go to /dev/null; a file or a pipe (`run x.wdl > result.json`) still gets its lines."""
        import stat

        with self.lock:
            self.progress = None
            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                try:
                    if stat.S_ISCHR(os.fstat(fd).st_mode):  # isatty() may fail on a hung-up terminal
                        os.dup2(devnull, fd)
                except OSError:
                    pass
            os.close(devnull)

    def task_stderr(self, name, line):
        """A line a task wrote to its stderr (--show-task-stderr): to stderr at any verbosity."""
        self.log("INFO", "task `%s` stderr: %s" % (name, line), stderr=False)
        with self.lock:
            if self.progress is not None:
                self.progress.clear()
            print("[%s] %s" % (name, line), file=sys.stderr)

    def info(self, message):
        self.log("INFO", message)

    def warn(self, message):
        self.log("WARN", message)

    def error(self, message):
        self.log("ERROR", message)

    def close(self):
        for f in self.files:
            f.close()
        self.files = []


class TaskStderr:
    """--show-task-stderr: the stderr file of every running attempt, followed as it grows; each
    whole line goes to the log as soon as it is seen (4 looks a second)."""

    def __init__(self, log):
        self.log = log
        self.files = {}  # stderr path -> [call name, bytes read, partial last line]
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        threading.Thread(target=self.loop, daemon=True).start()

    def follow(self, name, path):
        with self.lock:
            self.files[path] = [name, 0, b""]

    def drop(self, path):
        """The attempt ended: what it wrote last, including an unfinished last line."""
        with self.lock:
            entry = self.files.pop(path, None)
            if entry is not None:
                self.read(path, entry, True)

    def loop(self):
        while not self.stop_event.wait(0.25):
            with self.lock:
                for path, entry in self.files.items():
                    self.read(path, entry, False)

    def read(self, path, entry, final):
        try:
            with open(path, "rb") as f:
                f.seek(entry[1])
                data = f.read()
        except OSError:  # not there yet (a queued Slurm job)
            return
        entry[1] += len(data)
        lines = (entry[2] + data).split(b"\n")
        entry[2] = lines.pop()
        if final and entry[2]:
            lines.append(entry[2])
        for line in lines:
            self.log.task_stderr(entry[0], line.decode("utf-8", "replace").rstrip("\r"))

    def stop(self):
        self.stop_event.set()


class Progress:
    """One updating stderr line on a terminal; a plain status line every 30 s otherwise."""

    def __init__(self, context, name, tty):
        self.context, self.name = context, name  # the run's, and its target's name
        self.tty = tty
        self.stop_event = threading.Event()
        self.shown = False
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def start(self):
        self.thread.start()

    def loop(self):
        start = time.time()
        interval = 0.25 if self.tty else 30.0
        while not self.stop_event.wait(interval):
            self.show(time.time() - start)

    def line(self, elapsed):
        context = self.context
        c = context.scheduler.counts
        h, rem = divmod(int(elapsed), 3600)
        running = list(context.scheduler.running)
        names = sorted(_progress_name(tr) for tr in running)
        # What the scheduler last said: jobs waiting in its queue are not running yet.
        reasons = collections.Counter(tr.job.reason or "None" for tr in running
                                      if tr.job is not None and tr.job.state == "PENDING")
        queued = sum(reasons.values())
        text = "[%02d:%02d:%02d] %s `%s`: %d waiting, %s%d running, %d completed, %d failed, %d cached" % (
            h, rem // 60, rem % 60, "stopping" if context.stopping else "running", self.name,
            c["waiting"], "%d queued%s, " % (queued, _top_reason(reasons)) if queued else "", c["running"] - queued,
            c["completed"], c["failed"], c["cached"])
        if names:
            text += " - " + ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        return text

    def show(self, elapsed):
        text = self.line(elapsed)
        with self.context.log.lock:
            if self.tty:
                import shutil

                width = shutil.get_terminal_size((100, 20)).columns - 1
                sys.stderr.write("\r\x1b[K" + text[:width])
                self.shown = True
            else:
                sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def clear(self):
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            self.shown = False

    def stop(self):
        self.stop_event.set()
        with self.context.log.lock:
            self.clear()


def _top_reason(reasons):
    """` (mostly Priority)`: the commonest reason Slurm gives for the queued jobs, if any."""
    named = [(n, r) for r, n in reasons.items() if r not in ("None", "")]
    return " (mostly %s)" % max(named)[1] if named else ""


def _progress_name(tr):
    """A running task's name, with Slurm's reason while its job waits in the queue."""
    job = tr.job
    if job is not None and job.state == "PENDING" and job.reason not in (None, "None"):
        return "%s (pending: %s)" % (tr.name, job.reason)
    return tr.name


TRACE_COLUMNS = ("call", "attempt", "status", "exit_code", "job_id", "node", "submit", "start", "end", "queue_wait_s",
                 "wall_s", "cpu_s", "cpu_efficiency", "requested_cpus", "requested_memory", "peak_memory", "directory", "image")


def cpu_efficiency(row):
    """CPU time / (wall time x CPUs asked for), or None."""
    wall, cpu, cpus = row.get("wall_seconds"), row.get("cpu_seconds"), row.get("requested_cpus")
    return cpu / (wall * cpus) if wall and cpus and cpu is not None else None


class Trace:
    """<run dir>/trace.tsv: a line per attempt as it ends (in the spirit of Nextflow's trace), and
    rewritten at the end of the run with what sacct added by then. Times are UTC; sizes bytes."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    @staticmethod
    def line(row):
        stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""  # noqa: E731
        num = lambda v, fmt="%.1f": "" if v is None else fmt % v  # noqa: E731
        efficiency = cpu_efficiency(row)
        cells = [row["call"], str(row["attempt"]), row["status"], num(row["exit_status"], "%d"), row["job_id"] or "",
                 row["node"] or "", stamp(row["submitted_at"]), stamp(row["started_at"]), stamp(row["ended_at"]),
                 num(row["queue_seconds"]), num(row["wall_seconds"]), num(row["cpu_seconds"], "%.2f"),
                 num(efficiency and 100 * efficiency), num(row["requested_cpus"], "%g"), num(row["requested_memory"], "%d"),
                 num(row["peak_memory"], "%d"), row["directory"], row.get("image_digest") or ""]
        return "\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells) + "\n"

    def add(self, row):
        with self.lock:
            new = not os.path.exists(self.path)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(("\t".join(TRACE_COLUMNS) + "\n" if new else "") + self.line(row))

    def rewrite(self, rows):
        with self.lock:
            write_replacing(self.path, "\t".join(TRACE_COLUMNS) + "\n" + "".join(self.line(r) for r in rows))


# -- report.html: one self-contained page (inline style and SVG, no script, no network) ------

_REPORT_BARS = 2000  # attempts drawn one bar each; beyond, a lane per call (scatter elements together)
_REPORT_FAILURES = 50  # failed attempts shown in full
_STATUS_COLORS = {"completed": "#2e8b57", "failed": "#c0392b", "canceled": "#7f8c8d", "preempted": "#e67e22",
                  "running": "#2980b9", "orphaned": "#8e44ad"}


def _median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


def _duration_text(seconds):
    if seconds is None:
        return "-"
    if seconds < 10:
        return "%.1fs" % seconds
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return "%dh%02dm%02ds" % (h, rem // 60, rem % 60) if h else "%dm%02ds" % (rem // 60, rem % 60) if rem >= 60 else "%ds" % rem


def _stderr_tail(directory, lines=20):
    try:
        with open(os.path.join(directory, "stderr"), errors="replace") as f:
            return "\n".join(f.read()[-20000:].splitlines()[-lines:])
    except OSError:
        return ""


_TIMELINE_LABEL_X, _TIMELINE_LEFT = 220, 225  # the labels end at x=220 (`text-anchor:end`); the bars start at 225


def report_timeline(attempts, width=1000):
    """The timeline as SVG: a bar per attempt (queue wait and run time in two colours; failed and
    retried attempts marked); beyond _REPORT_BARS attempts, a lane per call showing how many of
    its attempts ran at each moment (one column per few pixels: downsampled to the screen)."""
    timed = [a for a in attempts if a["started_at"] and a["ended_at"]]
    if not timed:
        return '<p class="note">No attempt has start and end times to draw.</p>'
    t0 = min(a["submitted_at"] or a["started_at"] for a in timed)
    span = max(max(a["ended_at"] for a in timed) - t0, 1e-3)
    x = lambda t: _TIMELINE_LEFT + (t - t0) / span * (width - _TIMELINE_LEFT - 10)  # noqa: E731
    lanes = None
    if len(timed) > _REPORT_BARS:
        lanes = collections.OrderedDict()
        for a in timed:
            lanes.setdefault(call_family(a["call"]), []).append(a)
    bar_h = 30 if lanes else 12
    out = ['<svg class="timeline" width="%d" height="%d" role="img">' % (width, 30 + len(lanes or timed) * (bar_h + 2))]
    for i in range(5):
        t = t0 + span * i / 4
        out.append('<text x="%.1f" y="12" class="axis">%s</text>' % (x(t), _duration_text(t - t0)))
    if lanes:
        columns = (width - _TIMELINE_LEFT - 10) // 3
        for i, (name, group) in enumerate(lanes.items()):
            running = _running_counts(group, t0, span, columns)
            out.extend(_timeline_lane(name, group, 20 + i * (bar_h + 2), bar_h, running))
    else:
        for i, a in enumerate(timed):
            out.extend(_timeline_bar(a, 20 + i * (bar_h + 2), bar_h, x))
    out.append("</svg>")
    return "\n".join(out)


def _running_counts(attempts, t0, span, columns):
    """How many of the attempts were running in each of `columns` equal slices of [t0, t0 + span]."""
    steps = [0] * (columns + 1)  # +1 where an attempt starts running, -1 after it ends
    for a in attempts:
        steps[int((a["started_at"] - t0) / span * (columns - 1))] += 1
        steps[int((a["ended_at"] - t0) / span * (columns - 1)) + 1] -= 1
    running, now = [], 0
    for d in steps[:columns]:
        now += d
        running.append(now)
    return running


def _timeline_lane(name, group, y, bar_h, running):
    """A call's lane: its label, then a column 3 pixels wide per count in `running`, scaled to its peak."""
    import html

    peak = max(running) or 1
    failed = sum(1 for a in group if a["status"] == "failed")
    out = ['<text x="%d" y="%d" class="label">%s</text>' % (_TIMELINE_LABEL_X, y + bar_h - 2, html.escape(
        "%s (%d attempts%s)" % (name[-30:], len(group), ", %d failed" % failed if failed else ""))),
        '<g class="lane"><title>%s: at most %d running at once</title>' % (html.escape(name), peak)]
    for c, n in enumerate(running):
        if n:
            h = max(1.0, bar_h * n / peak)
            out.append('<rect x="%d" y="%.1f" width="3" height="%.1f" fill="%s"/>' % (
                _TIMELINE_LEFT + 3 * c, y + bar_h - h, h, _STATUS_COLORS["failed" if failed else "completed"]))
    out.append("</g>")
    return out


def _timeline_bar(a, y, bar_h, x):
    """An attempt's bar: its label, the queue wait, the run (its status's colour) and a mark if it failed."""
    import html

    name = "%s #%d" % (a["call"], a["attempt"])
    classes = "bar %s%s" % (a["status"], " retry" if a["attempt"] else "")
    tip = html.escape("%s: %s, queued %s, ran %s" % (name, a["status"], _duration_text(
        a["started_at"] - (a["submitted_at"] or a["started_at"])), _duration_text(a["ended_at"] - a["started_at"])))
    out = ['<text x="%d" y="%d" class="label">%s</text>' % (_TIMELINE_LABEL_X, y + bar_h - 2, html.escape(name[-40:]))]
    if a["submitted_at"] and a["submitted_at"] < a["started_at"]:
        out.append('<rect class="queue" x="%.1f" y="%d" width="%.1f" height="%d"><title>%s</title></rect>' % (
            x(a["submitted_at"]), y, max(0.5, x(a["started_at"]) - x(a["submitted_at"])), bar_h, tip))
    out.append('<rect class="%s" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>' % (
        classes, x(a["started_at"]), y, max(1.0, x(a["ended_at"]) - x(a["started_at"])), bar_h,
        _STATUS_COLORS.get(a["status"], "#555"), tip))
    if a["status"] == "failed":
        out.append('<text x="%.1f" y="%d" class="mark">&#x2716;</text>' % (x(a["ended_at"]) + 2, y + bar_h - 2))
    return out


def report_tasks(attempts):
    """Per call (scatter elements together): requested vs used CPU and memory, and a right-sizing
    line where the request is far above what was used."""
    import html

    families = collections.OrderedDict()
    for a in attempts:
        families.setdefault(call_family(a["call"]), []).append(a)
    rows, advice = [], []
    for name, group in families.items():
        peaks = [a["peak_memory"] for a in group if a["peak_memory"] is not None]
        asked_mem = max((a["requested_memory"] or 0) for a in group)
        asked_cpu = max((a["requested_cpus"] or 0) for a in group)
        effs = [e for e in (cpu_efficiency(a) for a in group) if e is not None]
        walls = [a["wall_seconds"] for a in group if a["wall_seconds"] is not None]
        rows.append("<tr><td>%s</td><td>%d</td><td>%g</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            html.escape(name), len(group), asked_cpu, _human_bytes(asked_mem) if asked_mem else "-",
            " / ".join(_human_bytes(v) for v in (min(peaks), _median(peaks), max(peaks))) if peaks else "-",
            "%.0f%%" % (100 * _median(effs)) if effs else "-",
            _duration_text(_median(walls)), _duration_text(max(walls) if walls else None)))
        if peaks and asked_mem and max(peaks) < asked_mem / 2 and asked_mem > 512 * 1024 ** 2:
            advice.append("<li><b>%s</b>: asked %s, peaked at %s in %d of %d attempts</li>" % (
                html.escape(name), _human_bytes(asked_mem), _human_bytes(max(peaks)), len(peaks), len(group)))
        if effs and asked_cpu > 1 and _median(effs) < 0.5:
            advice.append("<li><b>%s</b>: asked %g CPUs, used %.1f on average</li>" % (
                html.escape(name), asked_cpu, asked_cpu * sum(effs) / len(effs)))
    table = ("<table><tr><th>call</th><th>attempts</th><th>CPUs asked</th><th>memory asked</th>"
             "<th>peak memory (min / median / max)</th><th>CPU efficiency (median)</th><th>wall (median)</th>"
             "<th>wall (max)</th></tr>%s</table>" % "".join(rows))
    return table + ('<h3>Right-sizing</h3><ul class="advice">%s</ul>' % "".join(advice) if advice else "")


def report_excluded_nodes(attempts):
    """[(node, the attempt that failed there)] for the nodes a run excluded from its later jobs
    (the Slurm backend's bad nodes: their attempts' errors say so, in _EXCLUDED_NOTE's words)."""
    pattern = re.compile(re.escape(_EXCLUDED_NOTE).replace("%s", "(.+?)"))
    return [(m.group(1), a) for a in attempts for m in [pattern.search(a["error"] or "")] if m]


def report_html(run, attempts):
    """The report of a run (a `runs` row) and its attempts (Store.attempts_of, with absolute directories)."""
    import html

    esc = lambda v: html.escape(str(v if v is not None else "-"))  # noqa: E731
    states = collections.Counter(a["status"] for a in attempts)
    asked_cpu_h = sum((a["requested_cpus"] or 0) * (a["wall_seconds"] or 0) for a in attempts) / 3600
    used = [a["cpu_seconds"] for a in attempts if a["cpu_seconds"] is not None]
    no_memory = bool(attempts) and all(a["peak_memory"] is None for a in attempts)
    failed = [a for a in attempts if a["status"] == "failed"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>sprocket report: %s</title>" % esc(run["name"]), "<style>%s</style></head><body>" % _REPORT_STYLE,
             "<h1>Run <code>%s</code> of <code>%s</code></h1>" % (esc(run["name"]), esc(run["target"])),
             '<section id="summary"><h2>Summary</h2><table class="summary">']
    summary = [("status", '<span class="status %s">%s</span>' % (esc(run["status"]), esc(run["status"]))),
               ("source", "<code>%s</code>" % esc(run["source"])), ("started", esc(run["started_at"]) + " UTC"),
               ("duration", esc(_duration_text(run.get("duration")))),
               ("attempts", esc(", ".join("%d %s" % (n, k) for k, n in sorted(states.items())) or "none")),
               ("tasks", "%d completed, %d failed, %d cached" % (run.get("done") or 0, run.get("failed") or 0,
                                                                 run.get("cached") or 0)),
               ("CPU-hours", "%.2f asked (CPUs x wall time), %s used" % (
                   asked_cpu_h, "%.2f" % (sum(used) / 3600) if used else "unknown")),
               ("run directory", "<code>%s</code>" % esc(run.get("run_dir")))]
    if run.get("error"):
        summary.append(("error", "<pre>%s</pre>" % esc(run["error"])))
    for c in run.get("cleanups") or ():
        paths = json.loads(c["paths"])
        summary.append(("work removed", "%s UTC by <code>sprocket clean</code>: %d <code>work/</code> and "
                        "<code>tmp/</code> directories, %s freed (the outputs a kept run or the call cache uses "
                        "stay)" % (esc(c["created_at"]), len(paths), esc(_human_bytes(c["bytes_freed"])))))
    excluded = report_excluded_nodes(attempts)
    if excluded:
        summary.append(("nodes excluded", "; ".join("<code>%s</code> (%s, attempt %d)" % (esc(node), esc(a["call"]),
                                                                                           a["attempt"])
                                                    for node, a in excluded)))
    parts += ["<tr><th>%s</th><td>%s</td></tr>" % (k, v) for k, v in summary] + ["</table>"]
    if no_memory:
        parts.append('<p class="note">No peak memory figures: the local backend measures them with wait4, and '
                     'Slurm only where accounting (sacct) runs with job accounting gathering.</p>')
    parts += ["</section>", '<section id="timeline"><h2>Timeline</h2>',
              '<p class="legend"><span class="swatch queue"></span> waiting in the queue '
              '<span class="swatch run"></span> running (colour by status; &#x2716; failed)</p>',
              report_timeline(attempts), "</section>",
              '<section id="tasks"><h2>Tasks</h2>', report_tasks(attempts), "</section>",
              '<section id="failures"><h2>Failures</h2>']
    if not failed:
        parts.append("<p>None.</p>")
    for a in failed[:_REPORT_FAILURES]:
        parts.append('<div class="failure"><h3>%s, attempt %d</h3><pre class="message">%s</pre>'
                     "<p>stderr (last lines):</p><pre>%s</pre><p>directory: <code>%s</code></p></div>" % (
                         esc(a["call"]), a["attempt"], esc(a["error"]), esc(_stderr_tail(a["directory"])),
                         esc(a["directory"])))
    if len(failed) > _REPORT_FAILURES:
        parts.append("<p>... and %d more failed attempts (see trace.tsv).</p>" % (len(failed) - _REPORT_FAILURES))
    parts += ["</section>", "<footer>sprocket.py %s</footer></body></html>" % __version__]
    return "\n".join(parts) + "\n"


_REPORT_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
    "th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left;vertical-align:top}code,pre{font-size:90%}"
    "pre{background:#f6f6f6;padding:.5em;overflow-x:auto;max-height:20em}.note{color:#8a6d3b}"
    ".status.completed{color:#2e8b57}.status.failed,.status.canceled{color:#c0392b}"
    "svg.timeline text{font-size:10px}svg.timeline .label{text-anchor:end}svg.timeline .mark{fill:#c0392b}"
    "rect.queue{fill:#d0d7de}rect.retry{stroke:#000;stroke-dasharray:2,1}.swatch{display:inline-block;width:1em;"
    "height:.8em}.swatch.queue{background:#d0d7de}.swatch.run{background:#2e8b57}.failure{border-left:3px solid "
    "#c0392b;padding-left:1em;margin:1em 0}")


def write_report(store, run_id, out_dir, path):
    """Write a run's report.html from sprocket.db (atomically); returns the run's attempts."""
    (run,) = store.runs(run_id)
    run["run_dir"] = os.path.join(out_dir, run["directory"])
    run["cleanups"] = store.cleanups_of(run_id)
    attempts = store.attempts_of(run_id)
    for a in attempts:
        a["directory"] = os.path.normpath(os.path.join(run["run_dir"], a["directory"]))
    write_replacing(path, report_html(run, attempts))
    return attempts


def run_settings(config, slurm_placement=None):
    """The `run.*` settings the runtime reads (RunSettings), from the configuration (and the
    placement `run --slurm-<key>` chose)."""
    retries = config.get("run.task.retries")
    return RunSettings(
        default_retries=0 if retries == "default" else retries,
        memory_retry_multiplier=config.get("run.task.memory_retry_multiplier"),
        read_limit=parse_memory(config.get("run.read_limit"), "run.read_limit"),
        fail_fast=config.get("run.fail") == "fast", scatter_limit=config.get("run.workflow.scatter.concurrency"),
        shell=config.get("run.task.shell"), container=config.get("run.task.container"),
        limit_behavior={"cpu": config.get("run.task.cpu_limit_behavior"),
                        "memory": config.get("run.task.memory_limit_behavior")},
        slurm_placement={k: v for k, v in (slurm_placement or {}).items() if v})


# -- the head job (`run --submit`) -------------------------------------------------------------
# `run --submit` picks the run's name and makes its directory, then submits the engine itself as a
# Slurm job (the head job) that runs the same `sprocket run` there (hidden options name them). The
# job asks for USR1 `handoff_lead` seconds before its time limit; then its engine starts nothing
# new, makes the next directory, submits the same command as its successor (after it ends), records
# the hand-off, leaves the run `orphaned` and exits 0, cancelling nothing. The successor, a run of
# the same name, adopts the jobs of its predecessor as any rerun adopts those of a dead run.
HeadJob = collections.namedtuple("HeadJob", "run_dir name job_id predecessor argv settings")
HeadJob.__doc__ = ("A run as a head job: the directory chosen for it (None: a new one, as it holds a run already: "
                   "the job was requeued) and the name, its Slurm job id (None outside a "
                   "job), the head job it took over from (None: the first), the `sprocket` arguments it runs "
                   "with, and its run.head_job settings (head_job_settings()).")
# sbatch options `run --submit` passes for the head job: run.head_job.extra_sbatch_args may not repeat them.
_HEAD_JOB_SBATCH_OPTIONS = (
    ("--job-name", "-J", "--output", "-o", "--error", "-e", "--chdir", "-D", "--signal", "--dependency", "-d",
     "--time", "-t", "--cpus-per-task", "-c", "--mem", "--partition", "-p", "--account", "-A"))
_HEAD_OPTIONS = ("--head-run-dir=", "--head-run-name=", "--head-predecessor=")  # what a head job's command adds
_HEAD_JOB_FILES = ("head_job.sh", "head_job.stdout", "head_job.stderr")  # what its directory holds before it runs


def head_job_settings(config):
    """The run.head_job.* settings as {key: value} (memory in bytes, `limit`: the time in seconds or
    None), checked together: the hand-off lead is at most half the time limit, and the extra sbatch
    arguments repeat none the engine passes (ConfigError)."""
    settings = {k.rpartition(".")[2]: config.get(k) for k in CONFIG_SCHEMA if k.startswith("run.head_job.")}
    settings["memory"] = parse_memory(settings["memory"], "run.head_job.memory")
    settings["limit"] = slurm_time_seconds(settings["time"]) if settings["time"] else None
    lead, limit = settings["handoff_lead"], settings["limit"]
    if limit is not None and lead * 2 > limit:
        raise ConfigError("`run.head_job.handoff_lead` is %d s, more than half of `run.head_job.time` %s (%d s)%s: the "
                          "head job would hand off before doing half its work; set it to at most %d, or give the job "
                          "more time" % (lead, json_dumps(settings["time"]), limit, config.where("run.head_job"),
                                         limit // 2))
    for arg in settings["extra_sbatch_args"]:
        if sbatch_option_of(arg, _HEAD_JOB_SBATCH_OPTIONS):
            raise ConfigError("`run.head_job.extra_sbatch_args` has `%s`%s, which `run --submit` passes to sbatch "
                              "itself: remove it (use the other run.head_job settings)" % (arg, config.where("run.head_job")))
    return settings


def head_job_command(argv, run_dir, name, predecessor=None):
    """The command of a head job: this program as it was started (the script, the zipapp or the
    launcher, by its absolute path, with this Python) with the `sprocket` arguments `argv` without
    --submit (or its abbreviation) and an earlier head job's options, then the run's directory and
    name (and the head job it takes over from)."""
    program = sys.argv[0] if sys.argv and os.path.isfile(sys.argv[0]) else __file__
    args = [a for a in argv if not a.startswith(_HEAD_OPTIONS) and not (len(a) > 4 and "--submit".startswith(a))]
    tail = [_HEAD_OPTIONS[0] + run_dir, _HEAD_OPTIONS[1] + name] + ([_HEAD_OPTIONS[2] + predecessor] if predecessor else [])
    return [sys.executable, os.path.abspath(program)] + args + tail


def submit_head_job(settings, command, run_dir, name, log, after=None):
    """Submit `command` as the head job of run `name`: its batch script and output in `run_dir`,
    SPROCKET_HEAD_JOB=1 in its environment, USR1 `handoff_lead` seconds before its limit; with
    `after` (a job id), once that job has ended. Returns its job id (RunError if sbatch refuses)."""
    import shlex

    script = os.path.join(run_dir, "head_job.sh")
    with open(script, "w") as f:  # exec: the engine is the batch shell, which Slurm's `B:USR1` signals
        f.write("#!/bin/sh\n# the head job of sprocket run `%s` (`run --submit`)\nSPROCKET_HEAD_JOB=1\n"
                "export SPROCKET_HEAD_JOB\nexec %s\n" % (name, " ".join(shlex.quote(a) for a in command)))
    os.chmod(script, 0o755)
    out = run_dir.replace("%", "%%")  # sbatch reads `%` in -o/-e as a pattern
    argv = ["sbatch", "--job-name", name, "-o", os.path.join(out, "head_job.stdout"), "-e",
            os.path.join(out, "head_job.stderr"), "--chdir", os.getcwd(), "--signal=B:USR1@%d" % settings["handoff_lead"],
            "--cpus-per-task=%d" % settings["cpus"]] + memory_args("mem", settings["cpus"], settings["memory"])
    argv += ["--time=" + settings["time"]] if settings["time"] else []
    argv += ["--partition", settings["partition"]] if settings["partition"] else []
    argv += ["--account", settings["account"]] if settings["account"] else []
    argv += ["--dependency=afterany:%s" % after] if after else []
    try:
        return SlurmClient(log, 1, None).sbatch(argv + settings["extra_sbatch_args"] + [script], name)
    except RunError as e:  # (its message speaks of a task)
        raise RunError("run `%s`: the head job could not be submitted: %s" % (name, e.message.partition(": ")[2]))


def partition_time_limit(client, name):
    """The time limit in seconds of a job without --time in partition `name` (None: the cluster's
    default partition): its DefaultTime, else its MaxTime; None when it has none."""
    table = client.partitions()
    name = name or next((n for n, fields in table.items() if fields.get("Default") == "YES"), None)
    for key in ("DefaultTime", "MaxTime"):
        try:
            return slurm_time_seconds(table.get(name, {}).get(key, ""))
        except ValueError:  # UNLIMITED, NONE
            continue
    return None


def submit_run(config, argv, out_dir, target, suffix, log):
    """`run --submit`: the run's name and directory (a new one: make_run_dir), then its head job.
    Returns (job id, name, directory); the directory goes again if sbatch refuses."""
    import shutil

    settings = head_job_settings(config)
    backend, table = config.backend()
    if not BACKENDS[table["type"]].outlives_engine:
        raise RunError("run --submit: the `%s` backend (type %s) runs tasks inside the engine's own job, so they would "
                       "end with it at its time limit; use a slurm_apptainer backend (`run.backend`)" % (
                           backend, table["type"]))
    if settings["limit"] is None:  # the partition's limit, which the hand-off lead must fit too
        client, partition = SlurmClient(log, 1, None), settings["partition"]
        if partition:
            client.check_partition(partition, "run.head_job.partition names the partition")
        limit = partition_time_limit(client, partition)
        if limit is not None and settings["handoff_lead"] * 2 > limit:
            raise ConfigError("`run.head_job.handoff_lead` is %d s, more than half of the time limit of the head job's "
                              "partition (%d s; run.head_job.time is unset)%s: set it to at most %d" % (
                                  settings["handoff_lead"], limit, config.where("run.head_job"), limit // 2))
    name = run_name()
    run_dir = make_run_dir(os.path.abspath(out_dir), target.name, suffix)
    try:
        job_id = submit_head_job(settings, head_job_command(argv, run_dir, name), run_dir, name, log)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return job_id, name, run_dir


class Recorder:
    """What a run's attempts did, as they happen: their rows in sprocket.db (`tasks`, `attempts`,
    `attempt_usage`), the log, trace.tsv, and the task stderr shown live (--show-task-stderr)."""

    def __init__(self, store, run_id, uuid, run_dir, backend_name, log, task_stderr):
        self.store, self.run_id, self.uuid, self.run_dir = store, run_id, uuid, run_dir
        self.backend_name, self.log, self.task_stderr = backend_name, log, task_stderr
        self.usage_recorded = set()  # attempts whose attempt_usage row is written (sacct may add to it)
        self.trace = Trace(os.path.join(run_dir, "trace.tsv"))

    def flush(self):
        self.store.flush()

    def flush_now(self):
        self.store.flush_now()

    def attempt_started(self, attempt, cache_key=None):
        """An attempt begins: its rows in `tasks` (Sprocket's) and `attempts` (its whole record)."""
        self.store.enqueue("INSERT INTO tasks (name, run_id, status, started_at) VALUES (?, ?, 'running', CURRENT_TIMESTAMP)",
                           (attempt.key, self.run_id))
        adopted = attempt.adopted or Adoptable(*[None] * len(Adoptable._fields))
        self.store.enqueue("INSERT INTO attempts (key, run_id, call, attempt, directory, backend, status, started_at, "
                           "cache_key, adopted_from, process_group, process_started) VALUES (?, ?, ?, ?, ?, ?, 'running', "
                           "CURRENT_TIMESTAMP, ?, ?, ?, ?)",
                           (attempt.key, self.run_id, attempt.call, attempt.number,
                            os.path.relpath(attempt.directory, self.run_dir), self.backend_name, cache_key,
                            adopted.key, adopted.process_group, adopted.process_started))
        if attempt.adopted:
            self.log.info("task `%s` attempt %d adopted from the earlier run (`%s`, %s)" % (
                attempt.call, attempt.number, attempt.directory, "job %s" % adopted.job_id if adopted.job_id else
                "process group %s" % adopted.process_group if adopted.process_group else "ended"))
        else:
            self.log.info("task `%s` attempt %d started in `%s`" % (attempt.call, attempt.number, attempt.directory))
        if self.task_stderr:
            self.task_stderr.follow(attempt.call, os.path.join(attempt.directory, "stderr"))

    def attempt_ended(self, attempt, status, exit_status, error=None):
        """An attempt is over: its rows, what it used, and its line of trace.tsv."""
        attempt.status, attempt.exit_code, attempt.message = status, exit_status, error
        if self.task_stderr:
            self.task_stderr.drop(os.path.join(attempt.directory, "stderr"))
        for table, column in (("tasks", "name"), ("attempts", "key")):
            self.store.enqueue("UPDATE %s SET status = ?, exit_status = ?, error = ?, completed_at = CURRENT_TIMESTAMP "
                               "WHERE %s = ?" % (table, column), (status, exit_status, error, attempt.key))
        usage = dict.fromkeys(USAGE_COLUMNS)
        usage.update(attempt.job.usage() if attempt.job is not None else {})
        usage.update(requested_cpus=attempt.cpu, requested_memory=attempt.memory)
        if usage["started_at"] and usage["ended_at"]:
            usage["wall_seconds"] = max(0.0, usage["ended_at"] - usage["started_at"])
        self.store.enqueue("INSERT OR REPLACE INTO attempt_usage (key, %s) VALUES (?%s)" % (
            ", ".join(USAGE_COLUMNS), ", ?" * len(USAGE_COLUMNS)), [attempt.key] + [usage[c] for c in USAGE_COLUMNS])
        self.usage_recorded.add(attempt.key)
        try:
            self.trace.add(dict(usage, call=attempt.call, attempt=attempt.number, status=status, exit_status=exit_status,
                                job_id=attempt.job.job_id if attempt.job is not None else None,
                                image_digest=attempt.job.image if attempt.job is not None else None,
                                directory=attempt.directory))
        except OSError as e:  # a full disk: the attempt's own outcome matters more (the trace is rewritten at the end)
            self.log.warn("could not add to `%s`: %s" % (self.trace.path, e.strerror or e))

    def record_accounting(self, key, figures):
        """What sacct says an ended attempt used fills in what the job did not tell of itself
        (its state, allocated CPUs, peak memory; the times of a job killed before it wrote
        them): the job's own clock and the engine's are finer than sacct's whole seconds.
        False while the attempt's own row is not written yet (try again later)."""
        if key not in self.usage_recorded:
            return False
        columns = [c for c in USAGE_COLUMNS if c in figures]
        if columns:
            self.store.enqueue("UPDATE attempt_usage SET %s WHERE key = ?" % ", ".join(
                "%s = coalesce(%s, ?)" % (c, c) for c in columns), [figures[c] for c in columns] + [key])
        return True

    def record_process(self, request, pgid, started):
        """A local attempt's process group and its leader's start time, with the attempt's other
        rows (the next batch, within 0.25 s: a commit per task start would cost more than a short
        task does)."""
        self.store.enqueue("UPDATE attempts SET process_group = ?, process_started = ? WHERE key = ?",
                           (pgid, started, request.key))

    def record_job(self, request, job_id, what="Slurm job"):
        self.store.enqueue("UPDATE attempts SET job_id = ? WHERE key = ?", (job_id, request.key))
        self.log.info("task `%s` is %s %s" % (request.name, what, job_id))

    def record_image(self, request, digest):
        """The id of the container image an attempt runs (`sha256:...`)."""
        self.store.enqueue("UPDATE attempts SET image_digest = ? WHERE key = ?", (digest, request.key))

    def record_cached(self, tr):
        key = "%s-cached-%s" % (re.sub(r"[^A-Za-z0-9_.-]", "_", tr.name), self.uuid[:8])
        self.store.enqueue("INSERT INTO tasks (name, run_id, status, started_at, completed_at) VALUES "
                           "(?, ?, 'cached', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)", (key, self.run_id))
        self.log.info("task `%s` reused a call cache entry" % tr.name)


class Run:
    """One `sprocket run`: the target, its directory, its database rows, and the RunContext its
    runtime shares (settings, log, recorder, call cache, backend, scheduler)."""

    def __init__(self, doc, target, config, out_dir, log, inputs_json, no_call_cache=False, fingerprint=None,
                 reattach=True, suffix=None, index_on=None, show_task_stderr=False, overrides=None, slurm_placement=None,
                 head=None, retry_of=None):
        self.target, self.log, self.index_on = target, log, index_on
        self.head, self.suffix, self.handed_off = head, suffix, False  # head: a HeadJob (`run --submit`)
        self.out_dir = out_dir = os.path.abspath(out_dir)
        self.store = self.open_store(config)
        self.name = log.name = head.name if head else run_name()
        self.cancelled = False
        self.interrupts = 0
        self.context = context = RunContext(run_settings(config, slurm_placement), log)
        context.run_name = self.name
        context.overrides = overrides or {}  # call path -> {"requirements"/"hints"/"runtime": {key: value}}
        # and the backend, which may refuse (no sbatch on PATH, an unknown partition), before the run directory
        backend_name, table = config.backend()
        context.backend = make_backend(context, backend_name, read_backend_settings(table))
        self.check_targets(context.backend)
        context.cache = CallCache(config, backend_name, context.settings.shell, off=no_call_cache)
        self.run_dir = context.run_dir = self.create_record(doc, suffix, inputs_json)
        context.uuid = self.uuid
        context.tmp_dir = os.path.join(self.run_dir, "tmp")
        context.real_run_dir = os.path.realpath(self.run_dir)
        self.task_stderr = TaskStderr(log) if show_task_stderr else None
        context.recorder = Recorder(self.store, self.run_id, self.uuid, self.run_dir, context.backend.name, log,
                                    self.task_stderr)
        self.set_up_run_dir(context.tmp_dir)
        # Reattach: a backend whose jobs outlive the engine follows those of an orphaned twin run.
        context.reattach = reattach and fingerprint is not None
        if fingerprint is not None:
            self.store.execute("INSERT INTO run_fingerprints (run_id, fingerprint) VALUES (?, ?)", (self.run_id, fingerprint))
        if retry_of is not None:  # `sprocket retry` (a `runs` row): what that run did is followed, not run again
            try:
                self.store.record_retry(self.run_id, retry_of["id"], retry_of["name"], retry_of["status"] == "orphaned")
            except RunError as e:
                self.record_failure(e)
                raise
            adoptable = self.adoptable_of(RunRef(retry_of["id"], retry_of["directory"]), out_dir)
            # (an attempt whose work/ `clean` emptied, whole or but a few files, runs again)
            root = os.path.realpath(out_dir)
            cleaned = {os.path.join(root, d) for d in self.store.cleaned_directories()}
            context.adoptable = {c: a for c, a in adoptable.items() if os.path.isdir(os.path.join(a.directory, "work"))
                                 and os.path.realpath(os.path.join(a.directory, "work")) not in cleaned}
        elif context.reattach:
            context.adoptable = self.find_adoptable(fingerprint, out_dir)
        self.kill_orphans()
        context.scheduler = Scheduler(context)
        self.progress = None
        self.cancel_request, self.next_look = os.path.join(self.run_dir, CANCEL_REQUEST), 0.0
        context.each_round.append(self.look_for_cancel_request)

    def check_targets(self, backend):
        """What the backend refuses of what the run runs, before its directory exists."""
        backend.check_target(self.target)

    def open_store(self, config):
        """sprocket.db and output.log of the output directory. The database first: one that
        cannot be written (a colleague's) leaves no run directory behind."""
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            store = Store(self.out_dir, config.get("server.orphan_timeout_minutes"))
            store.start_session()
            self.log.open(os.path.join(self.out_dir, "output.log"))
        except OSError as e:
            raise RunError("cannot create the run directory under `%s`: %s" % (self.out_dir, e.strerror or e))
        return store

    def create_record(self, doc, suffix, inputs_json):
        """The run directory and, at once, its record, so that no run directory is left without
        one: the directory goes if the record cannot be written. Returns the directory."""
        import uuid

        try:
            run_dir = self.head and self.head.run_dir or make_run_dir(self.out_dir, self.target.name, suffix)
        except OSError as e:
            raise RunError("cannot create the run directory under `%s`: %s" % (self.out_dir, e.strerror or e))
        self.uuid = str(uuid.uuid4())
        try:
            self.run_id = self.store.execute(
                "INSERT INTO runs (uuid, session_id, name, source, target, status, inputs, directory, started_at) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?, CURRENT_TIMESTAMP)",
                (self.uuid, self.store.session_id, self.name, os.path.abspath(doc.source.path), self.target.name,
                 json_dumps(inputs_json), os.path.relpath(run_dir, self.out_dir)))
        except BaseException:
            try:
                os.rmdir(run_dir)  # empty: only this run made it
            except OSError:
                pass
            raise
        return run_dir

    def set_up_run_dir(self, tmp_dir):
        """Its tmp/ and output.log; the record says `failed` if the directory cannot be set up."""
        try:
            try:
                os.mkdir(tmp_dir)
            except OSError as e:
                raise RunError("cannot set up the run directory `%s`: %s" % (self.run_dir, os_error_text(e)))
            self.log.open(os.path.join(self.run_dir, "output.log"))
        except RunError as e:
            self.record_failure(e)
            raise
        self.log.info("`%s` will be used as the execution directory" % self.run_dir)
        self.store.keep_alive()

    def record_failure(self, e):
        """A run that could not be set up (a RunError) is recorded `failed`, and its store closed."""
        self.store.execute("UPDATE runs SET status = 'failed', error = ?, completed_at = CURRENT_TIMESTAMP "
                           "WHERE id = ?", (e.message, self.run_id))
        self.store.close()

    def find_adoptable(self, fingerprint, out_dir):
        """The attempts of an orphaned run of the same document, inputs and configuration whose
        jobs can still be followed (queued, running, or ended with an exit status file):
        {call: Adoptable}. The rest were lost and run again."""
        found = self.store.adopt_run(fingerprint, self.run_id)
        return {} if found is None else self.adoptable_of(found, out_dir)

    def adoptable_of(self, found, out_dir):
        """{call: Adoptable} of the run `found` (a RunRef) and of those it adopted in turn: the
        attempts whose jobs can still be followed (queued, running, or ended with an exit status
        file); the rest run again."""
        out, seen = {}, set()
        base = os.path.join(out_dir, found.directory)
        while found is not None:  # and what that run adopted but died before it reached (a chain of deaths)
            run_dir = os.path.join(out_dir, found.directory)
            for call, a in self.store.last_attempts(found.id).items():
                if call not in seen and a.status in ("orphaned", "running", "completed") and a.cache_key:
                    out[call] = Adoptable(a.key, a.number, os.path.normpath(os.path.join(run_dir, a.directory)), a.job_id,
                                          a.cache_key, a.process_group, a.process_started)
                seen.add(call)
            found = self.store.run_adopted_by(found.id)
        # the engine died as sbatch ran, or as a local task started
        unknown = [a.directory for a in out.values() if a.job_id is None and a.process_group is None]
        jobs = self.context.backend.find_jobs(unknown) if unknown else {}
        for call, a in list(out.items()):
            if a.job_id is None and a.process_group is None:
                if a.directory in jobs:
                    out[call] = a._replace(**jobs[a.directory])
                elif read_exit_status(a.directory) is None:
                    del out[call]
        self.log.info("adopting %d job(s) of the earlier run in `%s`" % (len(out), base))
        return out

    def kill_orphans(self):
        """The local tasks of dead runs that no run adopts are killed before anything starts again,
        so that no orphan keeps writing into a dead run's directory while its task runs again here.
        They are found on this host by their command line under a dead run's directory (also those
        the dead engine had no time to record); a process group is killed only while its leader is
        the process found (its start time), never a recycled pid."""
        dead = [os.path.join(self.out_dir, d) for d in self.store.dead_run_directories()]
        adopted = {os.path.realpath(a.directory) for a in self.context.adoptable.values()}
        adopted.update(os.path.realpath(os.path.join(self.out_dir, d)) for d in self.store.followed_directories(self.run_id))
        for adir, pgid in kill_task_processes(dead, spare=adopted):
            self.log.warn("killed the processes of the task in `%s` (process group %d), left running by a dead "
                          "run, before running anything again" % (adir, pgid))

    # -- running ---------------------------------------------------------------------------
    def execute(self, inputs, nested_inputs=None):
        """Run the target on its inputs and the nested ones ({call path: {input: value}}) to
        completion; returns its outputs as {name: value}."""
        import signal

        context = self.context
        context.nested_inputs = nested_inputs or {}
        result = []
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {signal.SIGINT: signal.signal(signal.SIGINT, self.on_interrupt),
                        signal.SIGTERM: signal.signal(signal.SIGTERM, self.on_terminate),
                        signal.SIGHUP: signal.signal(signal.SIGHUP, self.on_hangup)}
        tty = sys.stderr.isatty()
        if tty or self.log.stderr_level <= _LEVELS["WARN"]:
            self.progress = self.log.progress = Progress(context, self.target.name, tty)
            self.progress.start()
        for values in [inputs] + list(context.nested_inputs.values()):
            context.admit(values.values())
        scheduler = context.scheduler
        try:
            scheduler.guard(lambda: self.start(inputs, result.append))
            scheduler.loop(lambda: bool(result))
            return result[0]
        finally:
            if self.progress is not None:
                self.progress.stop()
                self.log.progress = None
            for sig, old in handlers.items():
                signal.signal(sig, old)

    def start(self, inputs, on_done):
        """Start the target (on the scheduler's thread): on_done(outputs) when it completes."""
        context = self.context
        if isinstance(self.target, Task):
            tr = TaskRun(context, self.target, inputs, self.run_dir, self.target.name, context.overrides.get("", {}))
            context.scheduler.submit(tr, on_done)
        else:
            WorkflowRun(context, self.target, inputs, self.run_dir, "", on_done).start()

    def on_interrupt(self, signum, frame):
        """Sprocket's Ctrl-C ladder. slow: wait for running tasks, then cancel them, then exit;
        fast: cancel them, then exit."""
        self.interrupts += 1
        step = self.interrupts + (1 if self.context.settings.fail_fast else 0)
        if step == 1:
            self.context.stopping = True
            self.log.error("waiting for executing tasks to complete: use Ctrl-C to cancel executing tasks")
        elif step == 2:
            self.log.error("waiting for executing tasks to cancel: use Ctrl-C to immediately terminate sprocket")
            self.cancel()
        else:
            self.cancel()
            raise KeyboardInterrupt

    def on_hangup(self, signum, frame):
        """The terminal went away (an SSH session to the login node dropped): nothing is lost,
        the run carries on to its end and writes only to its logs from now on."""
        self.log.warn("the terminal went away (SIGHUP): the run carries on; from now on `output.log` "
                      "shows its progress, and `outputs.json` its outputs")
        if self.progress is not None:
            self.progress.stop_event.set()
        self.log.detach_terminal()

    def look_for_cancel_request(self):
        """`sprocket cancel`, from any host that sees the output directory, writes the run's
        CANCEL_REQUEST file: looked for once a second (one stat, also on a shared file system) and
        taken as SIGTERM."""
        import signal

        now = time.monotonic()
        if now < self.next_look:
            return
        self.next_look = now + 1.0
        if os.path.exists(self.cancel_request):
            self.next_look = float("inf")  # once
            self.log.warn("`sprocket cancel` asked this run to stop (`%s`)" % self.cancel_request)
            self.on_terminate(signal.SIGTERM, None)

    def on_terminate(self, signum, frame):
        """SIGTERM (scancel, a batch system's time limit): cancel everything at once."""
        if self.context.handing_off:  # a head job's time limit, after its hand-off: the jobs are the successor's
            return self.log.warn("terminated by a signal after the hand-off: nothing is canceled")
        self.log.error("terminated by a signal: canceling executing tasks")
        self.cancel()

    def on_time_limit(self, signum, frame):
        """USR1 in a head job: its time limit is near (`sbatch --signal`). Start nothing new and hand
        the run to a successor (hand_off(), once the scheduler has stopped); SIGTERM, the limit
        itself, cancels nothing from now on (on_terminate)."""
        if self.context.handing_off:
            return
        if not self.context.backend.outlives_engine:
            self.log.error("the head job's time limit is near, but the `%s` backend's tasks end with it: no hand-off "
                           "(run --submit wants a slurm_apptainer backend)" % self.context.backend.name)
            return
        self.log.warn("the head job's time limit is near (USR1): starting nothing new, handing the run to a successor job")
        self.context.stopping = self.context.handing_off = True

    def hand_off(self):
        """The hand-off (on_time_limit): the successor's directory, the successor job (the same
        command, after this one), the hand-off on record and the run `orphaned`, for the successor to
        adopt; no job is canceled. Past run.head_job.max_handoffs the run fails instead, its jobs
        canceled. Returns the exit status."""
        head, reason = self.head, "time limit (USR1)"
        done = self.store.handoffs_before(self.run_id)
        if done >= head.settings["max_handoffs"] or head.job_id is None:
            error = ("the head job reached its time limit after %d hand-off(s), the most run.head_job.max_handoffs "
                     "allows: the run stops (raise run.head_job.max_handoffs or run.head_job.time)" % done
                     if head.job_id else "the time limit is near, but SLURM_JOB_ID is unset: no successor can wait "
                     "for this job (run --submit submits head jobs)")
            self.context.abort()
            self.finish(error=error)
            print("error: %s" % error, file=sys.stderr)
            return 1
        try:
            successor_dir = make_run_dir(self.out_dir, self.target.name, self.suffix)
            command = head_job_command(head.argv, successor_dir, self.name, head.job_id)
            successor = submit_head_job(head.settings, command, successor_dir, self.name, self.log, after=head.job_id)
            error = "%s: handed off to head job %s, which carries the run on in `%s`" % (reason, successor, successor_dir)
        except (RunError, OSError) as e:
            successor = None
            error = ("the head job reached its time limit, and its successor could not be submitted (%s): the jobs "
                     "run on; run the same command again to follow them" % (e.message if isinstance(e, RunError) else e))
        self.store.record_handoff(self.run_id, head.job_id, successor, reason, error)
        (self.log.info if successor else self.log.error)(error)
        self.handed_off = True
        self.close()
        print("%s: %s" % ("run handed off" if successor else "error", error), file=sys.stderr)
        return 0 if successor else 1

    def cancel(self):
        """The user's cancel (Ctrl-C, SIGTERM): the run ends `canceled`."""
        self.cancelled = True
        self.context.abort()

    def finish(self, outputs=None, error=None):
        """Record how the run ended. A failed run is closed; a completed one's outputs (returned as
        JSON text) are shown before close() (and its closing usage query)."""
        if error is None:
            data = {self.target.name + "." + k: value_to_json(v) for k, v in outputs.items()}
            text = json_dumps(data, indent=2)
            write_replacing(os.path.join(self.run_dir, "outputs.json"), text + "\n")
            self.store.execute("UPDATE runs SET status = 'completed', outputs = ?, error = NULL, "
                               "completed_at = CURRENT_TIMESTAMP WHERE id = ?", (json_dumps(data), self.run_id))
            self.log.info("run completed; outputs were written to `%s`" % os.path.join(self.run_dir, "outputs.json"))
            if self.index_on:
                try:
                    self.log.info("outputs indexed in `%s`" % write_index(self.out_dir, self.index_on, self.run_dir, outputs))
                except (OSError, InputError) as e:
                    self.log.warn("could not index the outputs under `index/%s`: %s" % (self.index_on, e))
            return text
        status = "canceled" if self.cancelled or self.interrupts or isinstance(error, RunCancelled) else "failed"
        self.store.execute("UPDATE runs SET status = ?, error = ?, completed_at = CURRENT_TIMESTAMP WHERE id = ?",
                           (status, error, self.run_id))
        self.store.execute("UPDATE tasks SET status = 'canceled', completed_at = CURRENT_TIMESTAMP "
                           "WHERE run_id = ? AND status IN ('pending', 'running')", (self.run_id,))
        self.log.log("ERROR", "run %s: %s" % (status, error), stderr=False)  # main() prints it
        self.close()
        return None

    def close(self):
        """No job left behind (but those a successor follows); then the report and the final trace,
        from what sprocket.db holds."""
        (self.context.backend.detach if self.handed_off else self.context.backend.close)()
        if self.task_stderr:
            self.task_stderr.stop()
        try:
            self.store.flush()
            self.context.recorder.trace.rewrite(write_report(self.store, self.run_id, self.out_dir, os.path.join(self.run_dir, "report.html")))
        except (OSError, WdlError, self.store.sqlite3.Error) as e:
            self.log.warn("could not write the run's report: %s" % e)
        self.store.close()
        self.log.close()



# -- `sprocket clean`: the work/ and tmp/ directories of finished runs ------------------------


def json_paths(data):
    """The absolute paths a JSON value names (outputs.json, a run's inputs, a call cache entry):
    every string (and key) that starts with `/`; more than its File values, never fewer."""
    if isinstance(data, str):
        if data.startswith("/"):
            yield data
    elif isinstance(data, list):
        for x in data:
            yield from json_paths(x)
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from json_paths(k)
            yield from json_paths(v)


class KeptPaths:
    """What `sprocket clean` must leave: the paths given, each by its name and by what it
    resolves to (a link kept, and what it leads to), everything below them, and the directories
    on the way to them. A path that holds the whole output directory `root` (a String input
    `/scratch`) is no reason to keep everything, and is left out."""

    def __init__(self, paths, root):
        self.keep, self.through = set(), set()
        root = root.rstrip("/") + "/"
        for p in paths:
            p = os.path.normpath(p)
            for form in {p, os.path.realpath(p), os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))}:
                if root.startswith(form.rstrip("/") + "/"):
                    continue
                self.keep.add(form)
                parent = os.path.dirname(form)
                while parent not in self.through and parent != os.path.dirname(parent):
                    self.through.add(parent)
                    parent = os.path.dirname(parent)

    def __contains__(self, path):
        if path in self.through:
            return True
        while path != os.path.dirname(path):
            if path in self.keep:
                return True
            path = os.path.dirname(path)
        return False


def work_directories(run_dir):
    """The directories `sprocket clean` empties in a run directory (a real path): its tmp/, each
    call's tmp/ (a container's /tmp) and each attempt's work/. Symbolic links are neither
    followed nor taken for one of them."""
    found = []
    for dirpath, dirnames, _ in os.walk(run_dir):
        real = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for d in real:
            if d == "tmp" and (dirpath == run_dir or "attempts" in real) or (
                    d == "work" and os.path.basename(os.path.dirname(dirpath)) == "attempts"):
                found.append(os.path.join(dirpath, d))
        dirnames[:] = [d for d in real if os.path.join(dirpath, d) not in found]
    return found


CleanResult = collections.namedtuple("CleanResult", "files bytes kept")
CleanResult.__doc__ = "What remove_work() removed (or would): files (and links), their bytes, and the files it kept."


def remove_work(top, root, kept, dry_run=False):
    """Remove what is in the directory `top` (a real path inside the real directory `root`) but
    the paths in `kept` (KeptPaths), then `top` itself if it is empty. Walked by directory
    descriptors without following a link: a link is removed, never what it points at, and a
    directory swapped for a link meanwhile is not entered."""
    import stat

    if os.path.realpath(top) != top or not top.startswith(root.rstrip("/") + "/"):
        raise RunError("`%s` is not inside the output directory `%s`: it was left" % (top, root))
    files = size = keep = 0
    for dirpath, dirnames, filenames, dirfd in os.fwalk(top, topdown=False):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if path in kept:
                keep += not stat.S_ISDIR(st.st_mode)
            elif stat.S_ISDIR(st.st_mode):
                if not dry_run:
                    _remove_dir(name, dirfd)
            else:
                files, size = files + 1, size + st.st_size
                if not dry_run:
                    os.unlink(name, dir_fd=dirfd)
    if not dry_run and top not in kept:
        _remove_dir(top, None)
    return CleanResult(files, size, keep)


def _remove_dir(name, dirfd):
    """rmdir: a directory emptied, as nothing in it was kept; one where a file appeared meanwhile stays."""
    try:
        os.rmdir(name, dir_fd=dirfd)
    except OSError:
        pass

# ============================================================================================
# 19. Tests of WDL (`sprocket test`)
# ============================================================================================
#
# Sprocket's unit tests for WDL: a YAML file beside a document (or in `test/` beside it) maps
# each task or workflow to its tests; a test's inputs are a matrix (each key a list of values,
# their cartesian product; a `$group` of keys zipped element-wise) and its assertions are checked
# against what each execution did. All executions are parts of ONE run (RunContext.part), so the
# backend sees them at once (Slurm: job arrays, the queue caps) and they share the call cache.
# First the inputs of a target (`run` reads its own the same way).


def _json_keys(value):
    """YAML's values as JSON's: a key written `1` or `true` (a Map[Int, _] input) is the text JSON gives it."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json_dumps(k): _json_keys(v) for k, v in value.items()}
    return [_json_keys(v) for v in value] if isinstance(value, list) else value


def _warn_input(message):
    """What the inputs hold that is ignored (a struct's extra JSON keys): said once, on stderr."""
    print("warning: %s" % message, file=sys.stderr)


GivenInputs = collections.namedtuple("GivenInputs", "target nested overrides")
GivenInputs.__doc__ = ("What the inputs give beyond the target's own: its calls' inputs {call path: {input: value}} "
                       "and requirement overrides {call path: {section: {key: value}}} (call path \"\": the target task's own).")


def assign_inputs(target, items, explicit_target=True):
    """Sort input pairs into the target's own inputs, nested call inputs and overrides: returns
    ({input: value}, GivenInputs). Keys in an inputs file carry the target's name (`main.x`), as
    in every engine, unless --target names it; on the command line (`x=1`) the name may always
    be left out."""
    own, given = {}, GivenInputs(target, {}, {})
    prefix = target.name + "."
    decls = {d.name: d for d in (target.inputs or [])}
    merged = collections.OrderedDict()
    for key, data, base, text in items:
        if key.startswith(prefix):
            key = key[len(prefix):]
        elif not explicit_target and text is None:
            raise InputError("inputs file key `%s` does not start with the name of %s `%s`: write `%s%s`, or name the "
                             "target with `--target %s`" % (key, "workflow" if isinstance(target, Workflow) else "task",
                                                     target.name, prefix, key, target.name))
        prev = merged.get(key)
        if prev is not None and prev[2] is not None and text is not None:  # `t.x=a x=b`: one array
            as_list = (lambda d, t: (d, t) if isinstance(t, list) else ([d], [t]))
            d0, t0 = as_list(prev[0], prev[2])
            d1, t1 = as_list(data, text)
            merged[key] = (d0 + d1, base, t0 + t1)
        else:
            merged[key] = (data, base, text)
    for key, (data, base, text) in merged.items():
        parts = key.split(".")
        if len(parts) == 1:
            d = decls.get(key)
            if d is None:
                raise InputError("`%s` has no input `%s`%s" % (target.name, key, _did_you_mean(key, decls)))
            own[key] = from_json(_cli_value(data, text, d.type_), d.type_, base, "input `%s`" % key,
                                  _warn_input)
            continue
        if isinstance(target, Task):
            if len(parts) == 2 and parts[0] in _RUNTIME_SECTIONS:
                check_override(parts[0], parts[1], data, key)
                given.overrides.setdefault("", {}).setdefault(parts[0], {})[parts[1]] = data
                continue
            raise InputError("`%s` is not an input of task `%s`" % (key, target.name))
        _assign_nested(target, parts, data, base, given, "", key, text)
    return own, given


def check_override(section, key, data, what):
    """A requirement or hint given in the inputs (`main.call.requirements.cpu=4`): a known
    requirement, of a type it can have."""
    if section == "requirements" and key not in _REQUIREMENT_KEYS:
        raise InputError("input `%s`: unknown requirement `%s` (requirements are %s; other keys belong in `hints`)" % (
            what, key, ", ".join(sorted({k for k in _REQUIREMENT_KEYS if "R" not in k}))))
    want = _RUNTIME_TYPES.get(key) if section != "hints" else None
    if want:
        for t in want:
            try:
                from_json(data, t, os.getcwd(), what)
                return
            except InputError:
                pass
        raise InputError("input `%s`: `%s` must be %s, not %s" % (what, key, " or ".join("`%s`" % t for t in want),
                                                                  json_dumps(data)))


def _cli_value(data, text, t):
    """A command-line value shaped for its type: `s=0` for a String is "0", and a single value
    for an Array is a one-item array (as Sprocket does)."""
    if text is None or data is None:
        return data
    if isinstance(t, ArrayType) and not isinstance(data, list):
        return [_cli_value(data, text, t.item)]
    if isinstance(t, ArrayType) and isinstance(text, list):
        return [_cli_value(d, x, t.item) for d, x in zip(data, text)]
    if isinstance(t, PrimType) and t.name in ("String", "File", "Directory") and not isinstance(data, str):
        return text if isinstance(text, str) else data
    return data


def _assign_nested(wf, parts, data, base, given, path, key, text=None):
    call = find_call(wf.body, parts[0])
    if call is None or call.callee_def is None:
        raise InputError("input `%s`: workflow `%s` has no call `%s`" % (key, wf.name, parts[0]))
    if len(parts) == 2 and parts[1] in {n for n, _, _ in call.inputs}:
        raise InputError("input `%s` is set by workflow `%s` in its call and cannot be given again" % (key, wf.name))
    target = call.callee_def.target
    path = path + call.name
    rest = parts[1:]
    if isinstance(target, Task):
        if len(rest) == 2 and rest[0] in _RUNTIME_SECTIONS:
            check_override(rest[0], rest[1], data, key)
            given.overrides.setdefault(path, {}).setdefault(rest[0], {})[rest[1]] = data
            return
        if len(rest) != 1 or rest[0] not in call.callee_def.inputs:
            raise InputError("input `%s`: task `%s` has no input `%s`" % (key, target.name, ".".join(rest)))
        _check_nested_allowed(given.target, key, call.callee_def.inputs[rest[0]][1])
        t = call.callee_def.inputs[rest[0]][0]
        given.nested.setdefault(path, {})[rest[0]] = from_json(
            _cli_value(data, text, t), t, base, "input `%s`" % key, _warn_input)
        return
    if len(rest) == 1:
        if rest[0] not in call.callee_def.inputs:
            raise InputError("input `%s`: workflow `%s` has no input `%s`" % (key, target.name, rest[0]))
        _check_nested_allowed(given.target, key, call.callee_def.inputs[rest[0]][1])
        t = call.callee_def.inputs[rest[0]][0]
        given.nested.setdefault(path, {})[rest[0]] = from_json(
            _cli_value(data, text, t), t, base, "input `%s`" % key, _warn_input)
        return
    _assign_nested(target, rest, data, base, given, path + ".", key, text)


def _check_nested_allowed(wf, key, required):
    """Call inputs may be set from outside when the workflow being run allows it (the spec:
    `allow_nested_inputs` in the top-level workflow), and a required one its call leaves unbound
    must be (`unbound_call_inputs`; the caller has checked that the call does not bind it)."""
    if allows_nested_inputs(wf) or required and wf.dialect.accepts("unbound_call_inputs"):
        return
    raise InputError("input `%s` sets an input of a call, which workflow `%s` does not allow "
                     "(WDL %s needs `allow_nested_inputs: true` in its hints or meta)" % (key, wf.name, wf.dialect.name))


def _did_you_mean(name, names):
    import difflib

    close = difflib.get_close_matches(name, list(names), 1)
    return " (did you mean `%s`?)" % close[0] if close else ""


def check_input_files(values, t, what):
    """Input File/Directory paths must exist before anything runs."""
    if values is None:
        return
    if isinstance(t, PrimType) and t.name in ("File", "Directory"):
        ok = os.path.isfile(values) if t.name == "File" else os.path.isdir(values)
        if "://" not in values and not ok:
            raise InputError("%s: %s `%s` does not exist" % (what, "file" if t.name == "File" else "directory", values))
    elif isinstance(t, ArrayType):
        for x in values:
            check_input_files(x, t.item, what)
    elif isinstance(t, MapType):
        for k, x in values.items():
            check_input_files(k, t.key_type, what)
            check_input_files(x, t.value, what)
    elif isinstance(t, PairType):
        check_input_files(values[0], t.left, what)
        check_input_files(values[1], t.right, what)
    elif isinstance(t, StructType):
        for k, x in values.items():
            check_input_files(x, t.members[k], what)


def check_given_files(target, inputs, nested):
    """The File and Directory inputs given to the target and its calls must exist."""
    decls = {d.name: d for d in target.inputs or []}
    for k, v in inputs.items():
        check_input_files(v, decls[k].type_, "input `%s`" % k)
    for path, values in nested.items():
        call = _find_call_path(target, path)
        for k, v in values.items():
            check_input_files(v, call.callee_def.inputs[k][0], "input `%s.%s`" % (path, k))


def _find_call_path(wf, path):
    call = None
    for part in path.split("."):
        call = find_call(wf.body, part)
        wf = call.callee_def.target
    return call


def missing_required(target, inputs, nested):
    """Required inputs nobody gave: the target's, and (where the workflow leaves them open)
    its calls'."""
    missing = ["%s.%s" % (target.name, d.name) for d in target.inputs or []
               if d.expr is None and not d.type_.opt and d.name not in inputs]
    if isinstance(target, Workflow):
        def walk(body, prefix):
            for el in body:
                if isinstance(el, Call) and el.callee_def is not None:
                    given = {n for n, _, _ in el.inputs} | set(nested.get(prefix + el.name, {}))
                    for n, (t, required) in el.callee_def.inputs.items():
                        if required and n not in given:
                            missing.append("%s.%s%s.%s" % (target.name, prefix, el.name, n))
                    if isinstance(el.callee_def.target, Workflow):
                        walk(el.callee_def.target.body, prefix + el.name + ".")
                elif isinstance(el, Scatter):
                    walk(el.body, prefix)
                elif isinstance(el, Conditional):
                    for _, b in el.clauses:
                        walk(b, prefix)
        walk(target.body, "")
    return missing


# -- test files ------------------------------------------------------------------------------

_TEST_DIR = "test"  # test files may sit in `test/` beside their document; fixtures and runs go in <workspace>/test/


def _is_path_component(name):
    """Whether `name` is one plain component of a path (a test's name names its directory)."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def find_test_file(wdl_path):
    """The YAML test file of a document: `<name>.yaml` or `.yml` beside it, or in `test/` beside
    it (Sprocket's places); None when it has none. Two of them are an error."""
    stem = os.path.splitext(os.path.basename(wdl_path))[0]
    folder = os.path.dirname(wdl_path)
    found = [p for d in (folder, os.path.join(folder, _TEST_DIR)) for ext in _YAML_SUFFIXES
             for p in [os.path.join(d, stem + ext)] if os.path.isfile(p)]
    if len(found) > 1:
        raise InputError("test file `%s` conflicts with test file `%s`: keep one" % (found[1], found[0]))
    return found[0] if found else None


OutputCheck = collections.namedtuple("OutputCheck", "name argument")
OutputCheck.__doc__ = ("An assertion on an output (`StrEquals: x`): its name and argument; the argument of First, "
                       "Last, Left and Right is the OutputCheck applied to that element.")
TestAssertions = collections.namedtuple("TestAssertions", "exit_code should_fail stdout stderr outputs")
TestAssertions.__doc__ = ("A test's assertions: the exit code a task must end with (None: 0), whether the target "
                          "must fail, the regular expressions its stdout and stderr must match ([(text, compiled)]), "
                          "and [(output name, [OutputCheck])].")
TestCase = collections.namedtuple("TestCase", "document target name tags executions assertions")
TestCase.__doc__ = ("One test of a YAML test file: the Document and its target (a Task or Workflow), the test's name "
                    "and tags, its executions (TestInputs, one per element of its input matrix) and assertions.")
TestInputs = collections.namedtuple("TestInputs", "inputs nested overrides given")
TestInputs.__doc__ = ("The inputs of one execution of a test, as assign_inputs() sorts them, and as given in the "
                      "YAML ({key: value}, for messages).")


# The assertions on outputs (Sprocket's OutputAssertion): what each one's argument must be (and a test of
# it), and the kinds of WDL type it applies to (None: any optional type; Array, Map and Pair stand for
# theirs). First, Last, Left and Right take an assertion on that element.
_OUTPUT_ASSERTIONS = {
    "Defined": ("true or false", lambda v: isinstance(v, bool), None),
    "BoolEquals": ("true or false", lambda v: isinstance(v, bool), ("Boolean",)),
    "StrEquals": ("a string", lambda v: isinstance(v, str), ("String",)),
    "IntEquals": ("an integer", lambda v: type(v) is int, ("Int",)),
    "FloatEquals": ("a number", lambda v: type(v) in (int, float), ("Float",)),
    "Contains": ("a string", lambda v: isinstance(v, str), ("String",)),
    "Name": ("a string", lambda v: isinstance(v, str), ("File", "Directory")),
    "Length": ("an integer >= 0", lambda v: type(v) is int and v >= 0, ("String", "Array", "Map")),
    "Empty": ("true or false", lambda v: isinstance(v, bool), ("String", "Array", "Map")),
    "First": ("an assertion", None, ("Array",)),
    "Last": ("an assertion", None, ("Array",)),
    "Left": ("an assertion", None, ("Pair",)),
    "Right": ("an assertion", None, ("Pair",)),
}
# The element an assertion of the second kind looks at, of a type and of a value.
_ELEMENT_TYPE = {"First": lambda t: t.item, "Last": lambda t: t.item, "Left": lambda t: t.left, "Right": lambda t: t.right}
_ELEMENT = {"First": lambda v: v[0], "Last": lambda v: v[-1], "Left": lambda v: v[0], "Right": lambda v: v[1]}
_TEST_FIELDS = ("name", "tags", "inputs", "assertions")
_TEST_ASSERTIONS = ("exit_code", "should_fail", "stdout", "stderr", "outputs")


def _type_kind(t):
    """The kind of a WDL type as _OUTPUT_ASSERTIONS names it: a primitive's name, Array, Map, Pair."""
    if isinstance(t, PrimType):
        return t.name
    return {ArrayType: "Array", MapType: "Map", PairType: "Pair"}.get(type(t), str(t))


class TestFileReader:
    """Reads a YAML test file against its document: every problem is a diagnostic at the line of
    the key it concerns (the YAML reader gives each mapping's key spans), all of them at once."""

    def __init__(self, path, text, doc, fixtures_dir):
        self.doc, self.fixtures_dir = doc, fixtures_dir
        self.source = Source(path, text)
        self.errors, self.warnings = [], []

    def span(self, node, key, default=None):
        """Where key `key` of a YAML mapping, or item `key` of a sequence, is written (the reader's
        YamlMap and YamlList know), else `default`."""
        found = None
        if isinstance(node, YamlMap):
            found = node.spans.get(key)
        elif isinstance(node, YamlList) and isinstance(key, int) and key < len(node.spans):
            found = node.spans[key]
        return found or default or (node.span if isinstance(node, (YamlMap, YamlList)) else Span(self.source, 0))

    def error(self, message, span):
        self.errors.append(InputError(message, span))

    def read(self, data):
        """The TestCases of the file (its errors and warnings in self.errors, self.warnings)."""
        if not isinstance(data, dict):
            self.error("a test file maps task and workflow names to lists of tests", self.span(data, None))
            return []
        targets = {t.name: t for t in self.doc.tasks}
        if self.doc.workflow is not None:
            targets[self.doc.workflow.name] = self.doc.workflow
        cases = []
        for name, tests in data.items():
            span = self.span(data, name)
            target = targets.get(name)
            if target is None:
                self.error("`%s` has no task or workflow named `%s`%s" % (self.doc.source.path, name, _did_you_mean(
                    str(name), targets)), span)
                continue
            if not isinstance(tests, list):
                self.error("the tests of `%s` must be a list (`- name: ...`)" % name, span)
                continue
            seen = set()
            for i, entry in enumerate(tests):
                test_name = entry.get("name") if isinstance(entry, dict) else None
                if isinstance(test_name, str):  # (any other value is test()'s error)
                    if test_name in seen:
                        self.error("test `%s` of `%s` is defined twice" % (test_name, name),
                                   self.span(entry, "name", span))
                    seen.add(test_name)
                case = self.test(target, entry, self.span(tests, i, span))
                if case is not None:
                    cases.append(case)
        return cases

    def test(self, target, entry, entry_span):
        if not isinstance(entry, dict):
            self.error("a test of `%s` must be a mapping with `name`, `tags`, `inputs` and `assertions`" % target.name,
                       entry_span)
            return None
        span = self.span(entry, "name", entry_span)
        for key in entry:
            if key not in _TEST_FIELDS:
                self.error("unknown field `%s` in a test%s; a test has %s" % (key, _did_you_mean(str(key), _TEST_FIELDS),
                                                                          ", ".join(_TEST_FIELDS)), self.span(entry, key, span))
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            self.error("a test needs a `name`, a string%s" % ("" if name is None else ", not %s" % _short(name)), span)
            return None
        if not _is_path_component(name):  # it names the test's directory, which clean-up removes
            self.error("test name %s cannot name a directory: a test's name is one path component, without `/`, "
                       "`\\`, NUL, and not `.` or `..`" % json_dumps(name), span)
            return None
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            self.error("`tags` of test `%s` must be a list of strings, not %s" % (name, _short(tags)),
                       self.span(entry, "tags", span))
            tags = []
        errors = len(self.errors)
        executions = self.executions(target, name, entry.get("inputs", {}), self.span(entry, "inputs", span), span)
        assertions = self.assertions(target, name, entry.get("assertions", {}), self.span(entry, "assertions", span))
        if len(self.errors) > errors:
            return None
        return TestCase(self.doc, target, name, frozenset(tags), executions, assertions)

    # -- inputs: the matrix ----------------------------------------------------------------
    def matrix(self, name, inputs, span):
        """The input matrix: a list of dimensions, each a list of rows [(key, value, span)]: a key's
        values, or a `$group`'s keys zipped element-wise."""
        if not isinstance(inputs, dict):
            self.error("`inputs` of test `%s` must map input names to lists of values" % name, span)
            return []
        dims, seen = [], {}

        def column(mapping, key):
            kspan = self.span(mapping, key, span)
            values = mapping[key]
            if key in seen:
                self.error("test `%s`: input `%s` is given twice" % (name, key), kspan)
            seen[key] = kspan
            if not isinstance(values, list):
                self.error("test `%s`: input `%s` must be a list of values, one for each execution (`%s: [%s]`)" % (
                    name, key, key, _short(values)), kspan)
                return None
            if not values:  # the product would be empty: the test would run nothing and pass
                self.error("test `%s`: input `%s` has no values, so the test would run nothing: give at least one "
                           "(an empty Array is `%s: [[]]`)" % (name, key, key), kspan)
                return None
            return [(key, v, self.span(values, i, kspan), kspan) for i, v in enumerate(values)]

        for key in inputs:
            if not str(key).startswith("$"):
                col = column(inputs, key)
                if col is not None:
                    dims.append([[cell] for cell in col])
                continue
            group, gspan = inputs[key], self.span(inputs, key, span)
            if not isinstance(group, dict) or not group:
                self.error("test `%s`: group `%s` must map input names to lists of values, zipped element-wise" % (
                    name, key), gspan)
                continue
            cols = [c for c in (column(group, k) for k in group) if c is not None]
            if len(cols) < len(group):
                continue
            lengths = sorted({len(c) for c in cols})
            if len(lengths) > 1:
                self.error("test `%s`: the lists of group `%s` have different lengths (%s): they are zipped element-"
                           "wise" % (name, key, ", ".join("`%s`: %d" % (c[0][0], len(c)) for c in cols if c)), gspan)
                continue
            dims.append([list(row) for row in zip(*cols)])
        return dims

    def executions(self, target, name, inputs, span, name_span):
        """TestInputs for each element of the cartesian product of the matrix; each value is read
        (assign_inputs, relative paths in the fixtures directory) and checked once, at its key. A
        required input no execution gives is an error at the test's name (Sprocket's at run time)."""
        import itertools

        errors = len(self.errors)
        dims = self.matrix(name, inputs, span)
        bad, names = set(), {d.name for d in target.inputs or []}
        for dim in dims:
            for row in dim:
                for key, value, vspan, kspan in row:  # an input the target lacks: at its key, else at the value
                    where = kspan if "." not in str(key) and key not in names else vspan
                    if key not in bad and not self.check_input(target, name, key, value, where):
                        bad.add(key)
        if len(self.errors) > errors:
            return []
        out = []
        for combo in itertools.product(*dims):
            cells = [cell for row in combo for cell in row]
            items = [(key, _json_keys(value), self.fixtures_dir, None) for key, value, _, _ in cells]
            try:
                own, given = assign_inputs(target, items)
            except WdlError as e:
                self.error("test `%s`: %s" % (name, e.message), cells[0][2] if cells else span)
                return []
            missing = missing_required(target, own, given.nested)  # (the same keys in every execution)
            if missing:
                self.error("test `%s` does not give the required input%s %s: add %s to its `inputs`" % (
                    name, "s" if len(missing) > 1 else "", ", ".join("`%s`" % m for m in missing),
                    "them" if len(missing) > 1 else "it"), name_span)
                return []
            out.append(TestInputs(own, given.nested, given.overrides, {cell[0]: cell[1] for cell in cells}))
        return out

    def check_input(self, target, name, key, value, span):
        """One value of an input: the target has the input, the value has its type, and the files it
        names exist (a relative path is a fixture)."""
        try:
            own, given = assign_inputs(target, [(str(key), _json_keys(value), self.fixtures_dir, None)])
        except WdlError as e:  # (from_json: InputError, and NoneError or EvalError for a value it cannot take)
            self.error("test `%s`: %s" % (name, e.message), span)
            return False
        try:
            check_given_files(target, own, given.nested)
        except InputError as e:
            self.error("test `%s`: %s (a relative path names a fixture, in `%s`)" % (name, e.message, self.fixtures_dir),
                       span)
            return False
        return True

    # -- assertions --------------------------------------------------------------------------
    def assertions(self, target, name, data, span):
        empty = TestAssertions(None, False, [], [], [])
        if not isinstance(data, dict):
            self.error("`assertions` of test `%s` must be a mapping (%s)" % (name, ", ".join(_TEST_ASSERTIONS)), span)
            return empty
        for key in data:
            if key not in _TEST_ASSERTIONS:
                self.error("unknown assertion `%s`%s; the assertions of a test are %s" % (
                    key, _did_you_mean(str(key), _TEST_ASSERTIONS), ", ".join(_TEST_ASSERTIONS)), self.span(data, key, span))
        exit_code, should_fail = data.get("exit_code"), data.get("should_fail", False)
        if exit_code is not None and type(exit_code) is not int:
            self.error("`exit_code` must be an integer, not %s" % _short(exit_code), self.span(data, "exit_code", span))
        if not isinstance(should_fail, bool):
            self.error("`should_fail` must be true or false, not %s" % _short(should_fail),
                       self.span(data, "should_fail", span))
        if should_fail is True and data.get("outputs"):  # a failed execution has no outputs to check
            self.error("test `%s`: `should_fail: true` and `outputs` cannot be used together (the outputs of a "
                       "failed execution do not exist): make them two tests" % name, self.span(data, "outputs", span))
        if "exit_code" in data and "should_fail" in data:
            self.error("test `%s`: `should_fail` and `exit_code` cannot be used together (`should_fail`: any nonzero "
                       "exit code)" % name, self.span(data, "should_fail", span))
        if isinstance(target, Workflow):
            for key in ("exit_code", "stdout", "stderr"):
                if key in data:
                    self.warnings.append(InputError("`%s` has no effect in a test of a workflow (`%s`)" % (
                        key, target.name), self.span(data, key, span)))
        stdout, stderr = (self.patterns(data, key, span) for key in ("stdout", "stderr"))
        outputs = self.outputs(target, data.get("outputs", {}), self.span(data, "outputs", span))
        return TestAssertions(exit_code, should_fail is True, stdout, stderr, outputs)

    def patterns(self, data, key, span):
        """The regular expressions of `stdout` or `stderr`, compiled (translate_regex)."""
        values, span = data.get(key, []), self.span(data, key, span)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            self.error("`%s` must be a list of regular expressions (strings)" % key, span)
            return []
        out = []
        for i, text in enumerate(values):
            try:
                out.append((text, translate_regex(text)[0]))
            except EvalError as e:
                self.error("`%s`: %s" % (key, e.message), self.span(values, i, span))
        return out

    def outputs(self, target, data, span):
        if not isinstance(data, dict):
            self.error("`outputs` must map output names to lists of assertions (`- StrEquals: ...`)", span)
            return []
        types = {d.name: d.type_ for d in target.outputs or []}
        out = []
        for name, checks in data.items():
            nspan = self.span(data, name, span)
            if name not in types:
                self.error("`%s` has no output `%s`%s" % (target.name, name, _did_you_mean(str(name), types)), nspan)
                continue
            if not isinstance(checks, list):
                self.error("the assertions on output `%s` must be a list (`- StrEquals: ...`)" % name, nspan)
                continue
            parsed = [self.output_check(item, types[name], "output `%s`" % name, self.span(checks, i, nspan))
                      for i, item in enumerate(checks)]
            out.append((name, [c for c in parsed if c is not None]))
        return out

    def output_check(self, item, t, what, span):
        """One assertion (a mapping of one key: `StrEquals: x`, `First: {IntEquals: 1}`) on a value
        of type t."""
        if not isinstance(item, dict) or len(item) != 1:
            self.error("an assertion on %s is a mapping of one key, such as `StrEquals: \"x\"` (one of %s)" % (
                what, ", ".join(_OUTPUT_ASSERTIONS)), span)
            return None
        (name, argument), = item.items()
        span = self.span(item, name, span)
        row = _OUTPUT_ASSERTIONS.get(name)
        if row is None:
            self.error("unknown assertion `%s` on %s%s; the assertions on outputs are %s" % (
                name, what, _did_you_mean(str(name), _OUTPUT_ASSERTIONS), ", ".join(_OUTPUT_ASSERTIONS)), span)
            return None
        wants, ok, kinds = row
        problem = self.type_problem(name, kinds, t)
        if problem:
            self.error("`%s` cannot be used on %s: %s" % (name, what, problem), span)
            return None
        if ok is None:
            inner = self.output_check(argument, _ELEMENT_TYPE[name](t), "the %s element of %s" % (
                name.lower(), what), span)
            return None if inner is None else OutputCheck(name, inner)
        if not ok(argument):
            self.error("`%s` on %s takes %s, not %s" % (name, what, wants, _short(argument)), span)
            return None
        return OutputCheck(name, argument)

    @staticmethod
    def type_problem(name, kinds, t):
        if isinstance(t, (StructType, EnumType, ObjectType)):
            return "assertions on struct, enum and Object values are not supported (`%s`)" % t
        if kinds is None:
            return None if t.opt else "it is of type `%s`, which is not optional (`Defined` is for `T?` outputs)" % t
        if _type_kind(t) not in kinds:
            return "it is of type `%s` (`%s` applies to %s)" % (t, name, ", ".join(kinds))
        return None


def load_tests(path, doc, fixtures_dir):
    """(TestCases, warnings, errors) of a YAML test file for a document, each problem at its line;
    a file that is not YAML (or not the YAML sprocket.py reads) raises."""
    src = read_source(path)
    data = _yaml_loads(src.text, path, spans=True)
    reader = TestFileReader(path, src.text, doc, fixtures_dir)
    cases = reader.read(data)
    return cases, reader.warnings, reader.errors


def select_tests(cases, target=None, name=None, exact=False, include=(), exclude=()):
    """The tests -t/--target, -f/--filter (substrings, or with --exact the whole name),
    -i/--include-tag (any of them) and -e/--exclude-tag choose."""
    def matches(text, wanted):
        return wanted is None or (text == wanted if exact else wanted in text)

    return [c for c in cases if matches(c.target.name, target) and matches(c.name, name)
            and (not include or c.tags & set(include)) and not c.tags & set(exclude)]


# -- checking what an execution did ------------------------------------------------------------


def output_failure(check, v):
    """What is wrong with output value v under an OutputCheck (the value seen), or None."""
    name, arg = check
    said = "`%s`" % name if isinstance(arg, OutputCheck) else "`%s: %s`" % (name, json_dumps(arg))
    if name == "Defined":
        if (v is not None) == arg:
            return None
        return "%s: it is %s" % (said, "undefined (None)" if v is None else "defined: %s" % _short(v))
    if v is None:
        return "%s: it is undefined (None)" % said
    if name in _ELEMENT:
        if name in ("First", "Last") and not v:
            return "%s: the Array is empty" % said
        inner = output_failure(arg, _ELEMENT[name](v))
        return None if inner is None else "%s, %s" % (said, inner)
    if name == "Name":
        seen = os.path.basename(v.rstrip("/"))
        return None if seen == arg else "%s: its name is %s (`%s`)" % (said, json_dumps(seen), v)
    if name == "Length":
        return None if len(v) == arg else "%s: its length is %d: %s" % (said, len(v), _short(v))
    if name == "Empty":
        return None if (len(v) == 0) == arg else "%s: it is %s" % (said, "not empty: %s" % _short(v) if arg else "empty")
    if name == "FloatEquals":
        ok = abs(v - arg) <= 1e-3  # Sprocket's tolerance
    elif name == "Contains":
        ok = arg in v
    else:
        ok = v == arg
    return None if ok else "%s: it is %s" % (said, _short(v))


TestOutcome = collections.namedtuple("TestOutcome", "status message")
TestOutcome.__doc__ = "How an execution of a test ended: passed, failed (the assertion, with the value seen) or errored."


def _stream_failures(patterns, path, stream):
    """The regular expressions of `stdout`/`stderr` the file does not match (searched, as Sprocket does)."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        return ["`%s`: cannot read `%s`: %s" % (stream, path, e.strerror or e)]
    tail = text[-120:].replace("\n", "\\n")
    return ["`%s` does not match `%s` (it ends: \"%s\")" % (stream, p, tail) for p, rx in patterns if not rx.search(text)]


def judge_task(a, attempt, outputs, error):
    """A test of a task: its exit code, then stdout and stderr, then its outputs. `attempt` is the
    task's last (None: none ran); `error` why it failed, if it did."""
    code = attempt.exit_code if attempt is not None and attempt.status in ("completed", "failed") else None
    if code is None:
        return TestOutcome("errored", error.message if error is not None else "the task did not run")
    if a.should_fail and code == 0:
        return TestOutcome("failed", "exited with code 0, but `should_fail` expects a nonzero exit code")
    expected = a.exit_code or 0
    if not a.should_fail and code != expected:
        return TestOutcome("failed", "exited with code %d, but the test expects exit code %d" % (code, expected))
    failures = []
    for stream, patterns in (("stdout", a.stdout), ("stderr", a.stderr)):
        if patterns:
            failures += _stream_failures(patterns, os.path.join(attempt.directory, stream), stream)
    if outputs is None:
        if expected == 0 and not a.should_fail:  # it exited as expected, and yet failed: its outputs
            return TestOutcome("errored", error.message)
    else:
        failures += _output_failures(a, outputs)
    return TestOutcome("failed", "; ".join(failures)) if failures else TestOutcome("passed", None)


def judge_workflow(a, outputs, error):
    """A test of a workflow: it fails or not as `should_fail` says, then its outputs."""
    if error is not None:
        if isinstance(error, RunCancelled):
            return TestOutcome("errored", error.message)
        return TestOutcome("passed", None) if a.should_fail else TestOutcome(
            "failed", "the workflow failed, but the test expects it to succeed: %s" % error.message)
    if a.should_fail:
        return TestOutcome("failed", "the workflow succeeded, but `should_fail` expects it to fail")
    failures = _output_failures(a, outputs)
    return TestOutcome("failed", "; ".join(failures)) if failures else TestOutcome("passed", None)


def _output_failures(a, outputs):
    return ["output `%s`: %s" % (name, message) for name, checks in a.outputs for check in checks
            for message in [output_failure(check, outputs.get(name))] if message]


class TestExecution:
    """One execution of a test (one element of its input matrix): a part of the TestRun, in
    `<run dir>/<target>/<test>/<n>/`; its outcome once it is over."""

    def __init__(self, case, number, inputs, directory, name):
        self.case, self.number, self.inputs, self.directory, self.name = case, number, inputs, directory, name
        self.run = self.task_run = self.outcome = None
        self.started = self.seconds = None

    @property
    def label(self):
        n = len(self.case.executions)
        doc = os.path.splitext(os.path.basename(self.case.document.source.path))[0]
        return "%s::%s::%s%s" % (doc, self.case.target.name, self.case.name, " [%d/%d]" % (self.number, n) if n > 1 else "")

    def start(self, run):
        """Hand the target to the scheduler. A test of a task runs it (its exit code, stdout and
        stderr are asserted, which the call cache does not keep); a test of a workflow shares
        the call cache."""
        self.run, self.started = run, time.monotonic()
        context = run.context.part(self.failed)
        context.nested_inputs, context.overrides = self.inputs.nested, self.inputs.overrides
        for values in [self.inputs.inputs] + list(self.inputs.nested.values()):
            context.admit(values.values())
        scheduler, target = context.scheduler, self.case.target
        if isinstance(target, Task):
            context.cache = run.no_cache
            self.task_run = TaskRun(context, target, self.inputs.inputs, self.directory, self.name,
                                    self.inputs.overrides.get("", {}))
            scheduler.guard(lambda: scheduler.submit(self.task_run, self.completed), context)
        else:
            wf = WorkflowRun(context, target, self.inputs.inputs, self.directory, "", self.completed, self.name + ".")
            scheduler.guard(wf.start, context)

    def completed(self, outputs):
        self.end(outputs, None)

    def failed(self, error):
        if self.outcome is None:
            self.end(None, error)
        else:  # a task of its own, canceled after it failed
            self.run.settle()

    def end(self, outputs, error):
        a = self.case.assertions
        if isinstance(self.case.target, Task):
            self.outcome = judge_task(a, self.task_run.attempt, outputs, error)
        else:
            self.outcome = judge_workflow(a, outputs, error)
        self.seconds = time.monotonic() - self.started
        self.run.ended(self)


TestSuite = collections.namedtuple("TestSuite", "name source")
TestSuite.__doc__ = ("What a TestRun's Run knows as its document and target: the SOURCE tested (`source.path`) and "
                     "the name its run directories go under.")


class TestRun(Run):
    """The run of `sprocket test`: every execution of every test is a part of it, `parallelism`
    at a time (the first ones `throttle` ms apart, as Sprocket starts them), so the backend sees
    them together (Slurm: job arrays of a task's tests, the queue caps). Its outputs are the
    counts of executions passed, failed and errored."""

    def __init__(self, source, executions, config, out_dir, log, parallelism, throttle):
        self.executions, self.parallelism, self.throttle = executions, parallelism, throttle
        self.pending = collections.deque(executions)
        self.ended_count = 0
        self.on_done = None
        suite = TestSuite("test", Source(source, ""))
        Run.__init__(self, suite, suite, config, out_dir, log, {}, reattach=False)
        self.no_cache = CallCache(config, self.context.cache.backend, self.context.settings.shell, off=True)
        for ex in executions:
            ex.directory = os.path.join(self.run_dir, ex.directory)

    def check_targets(self, backend):
        seen = set()
        for ex in self.executions:
            if id(ex.case.target) not in seen:
                seen.add(id(ex.case.target))
                backend.check_target(ex.case.target)

    def start(self, inputs, on_done):
        """The first `parallelism` executions: at once, or `throttle` ms apart, each start deferred to
        its time (the scheduler's thread goes on with its events meanwhile)."""
        self.on_done = on_done
        first = [self.pending.popleft() for _ in range(min(self.parallelism, len(self.pending)))]
        scheduler, now = self.context.scheduler, time.monotonic()
        for i, ex in enumerate(first):
            if i and self.throttle:
                due = now + i * self.throttle / 1000.0
                scheduler.defer_until(due, Deferred(functools.partial(ex.start, self), None))
            else:
                ex.start(self)
        self.settle()

    def ended(self, ex):
        """An execution is over: its line, and the next one starts (deferred: no recursion)."""
        self.ended_count += 1
        self.log.log("INFO", test_line(ex), stderr=False)  # and in output.log
        with self.log.lock:
            if self.log.progress is not None:
                self.log.progress.clear()
            print(test_line(ex))
            sys.stdout.flush()
        if self.pending:
            self.context.scheduler.deferred.append(Deferred(lambda: self.pending.popleft().start(self), None))
        self.settle()

    def settle(self):
        """All executions over, and no task of theirs left (canceled ones end too): the run is done."""
        scheduler = self.context.scheduler
        if self.on_done is not None and self.ended_count == len(self.executions) \
                and not scheduler.running and not scheduler.waiting:
            on_done, self.on_done = self.on_done, None
            counts = collections.Counter(ex.outcome.status for ex in self.executions)
            on_done({k: counts[k] for k in ("passed", "failed", "errored")})


def plan_executions(cases):
    """A TestExecution for each element of each test's input matrix, in `<target>/<test>/<n>`
    (relative to the run directory) and named `<target>-<k>` (k counts every execution of the run:
    a task's tests are one call family, a Slurm job array)."""
    out = []
    for case in cases:
        for i, inputs in enumerate(case.executions, 1):
            out.append(TestExecution(case, i, inputs, os.path.join(case.target.name, case.name, str(i)),
                                     "%s-%d" % (case.target.name, len(out))))
    return out


def test_line(ex):
    """An execution's line as it ends: its outcome and label; what went wrong, the inputs it had
    and its directory below, when it did not pass."""
    o = ex.outcome
    line = "%-7s %s (%.1fs)" % (o.status, ex.label, ex.seconds)
    if o.status != "passed":
        given = ", ".join("%s=%s" % (k, _short(v)) for k, v in ex.inputs.given.items())
        line += "\n    %s%s%s" % (o.message, "\n    inputs: %s" % given if given else "",
                                  "\n    see `%s`" % ex.directory if os.path.isdir(ex.directory) else "")
    return line


def summary_line(executions):
    counts = collections.Counter(ex.outcome.status for ex in executions if ex.outcome is not None)
    return "%d passed, %d failed%s" % (counts["passed"], counts["failed"],
                                       ", %d errored" % counts["errored"] if counts["errored"] else "")


def clean_test_dirs(run_dir, executions, log):
    """Sprocket's clean-up: the directories of passed executions go, and then the directories of
    tests and targets left empty; never a directory whose real path is outside the run directory."""
    root = os.path.realpath(run_dir)
    for ex in executions:
        if ex.outcome is not None and ex.outcome.status == "passed":
            top = os.path.realpath(ex.directory)
            if not remove_tree(top, root, log):
                continue
            for d in (os.path.dirname(top), os.path.dirname(os.path.dirname(top))):
                try:
                    if d.startswith(root + "/"):
                        os.rmdir(d)
                except OSError:  # not empty: a failed execution's directory is in it
                    break


def remove_tree(top, root, log):
    """Remove the directory `top` (a real path) and all in it, without following a link
    (remove_work); a `top` outside the real directory `root` is left, with a warning. Returns
    the CleanResult, or None when it was left (or is not there: a test whose calls were all cached)."""
    if not os.path.isdir(top):
        return None
    try:
        return remove_work(top, root, KeptPaths([], root))
    except RunError as e:
        log.warn(e.message)
        return None


def clean_all(run):
    """--clean-all: the whole run directory goes (never one outside the output directory); the
    run's `_latest` link with it, when it points there; sprocket.db keeps the run's row and says
    what went (cleanups, as `sprocket clean` does)."""
    root = os.path.realpath(run.out_dir)
    top = os.path.realpath(run.run_dir)
    done = remove_tree(top, root, run.log)
    if done is None:
        return
    latest = os.path.join(os.path.dirname(run.run_dir), "_latest")
    try:
        if os.readlink(latest) == os.path.basename(run.run_dir):
            os.remove(latest)
    except OSError:  # no link, or another run's
        pass
    store = Store(run.out_dir)
    try:
        store.record_cleanup(run.run_id, [os.path.relpath(top, root)], done.bytes)
    finally:
        store.close()


def check_junit_target(path):
    """--junit FILE can be written: its directory exists and is writable, and FILE is not a
    directory (checked before the tests run, not after)."""
    folder = os.path.dirname(os.path.abspath(path))
    problem = ("`%s` is a directory" % path if os.path.isdir(path) else
               "the directory `%s` does not exist" % folder if not os.path.isdir(folder) else
               "the directory `%s` is not writable" % folder if not os.access(folder, os.W_OK | os.X_OK) else None)
    if problem:
        raise InputError("--junit %s: cannot write it there: %s" % (path, problem))


def write_junit(path, executions, source):
    """JUnit XML for CI systems: a testsuite per document, a testcase per execution (a failure or
    an error element when it did not pass)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="sprocket test %s" % source)
    suites = collections.OrderedDict()
    for ex in executions:
        suites.setdefault(ex.case.document.source.path, []).append(ex)
    for doc_path, group in suites.items():
        counts = collections.Counter(ex.outcome.status if ex.outcome else "errored" for ex in group)
        suite = ET.SubElement(root, "testsuite", name=doc_path, tests=str(len(group)), failures=str(counts["failed"]),
                              errors=str(counts["errored"]), time="%.3f" % sum(ex.seconds or 0 for ex in group))
        for ex in group:
            case = ET.SubElement(suite, "testcase", classname="%s.%s" % (
                os.path.splitext(os.path.basename(doc_path))[0], ex.case.target.name),
                name=ex.label.split("::", 2)[2], time="%.3f" % (ex.seconds or 0))
            o = ex.outcome or TestOutcome("errored", "did not run (the run was interrupted)")
            if o.status != "passed":
                ET.SubElement(case, "failure" if o.status == "failed" else "error", message=o.message).text = \
                    "%s\ninputs: %s\ndirectory: %s" % (o.message, json_dumps(
                        {k: value_to_json(v) for k, v in ex.inputs.given.items()}), ex.directory)
    write_replacing(path, ET.tostring(root, encoding="unicode") + "\n")


# ============================================================================================
# 20. Command line
# ============================================================================================


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2, without exiting."""

    def error(self, message):
        raise UsageError("%s\n(run `%s --help` for usage)" % (message, self.prog))


class UsageError(Exception):
    pass


# The options every command takes (also before the command); SUPPRESS: an option not given leaves
# no attribute, so one given before the command is not reset by the command's own parser.
_COMMON_OPTIONS = (
    (("-v", "--verbose"), dict(action="count", help="more output on stderr")),
    (("-q", "--quiet"), dict(action="count", help="less output on stderr")),
    (("-c", "--config"), dict(action="append", metavar="PATH", help="a sprocket.toml to merge last (repeatable)")),
    (("-s", "--skip-config-search"), dict(action="store_true", help="read only the --config files")),
    (("--color",), dict(choices=CONFIG_SCHEMA["common.color"].kind,
                        help="colour in diagnostics (default: common.color, auto: when stderr is a terminal)")),
    (("-m", "--report-mode"), dict(choices=CONFIG_SCHEMA["common.report_mode"].kind,
                                   help="diagnostics with their source line and a caret, or one line each "
                                   "(default: common.report_mode, %s)" % CONFIG_SCHEMA["common.report_mode"].default)),
)


def _files_argument(c):
    c.add_argument("files", nargs="+", metavar="FILE", help="WDL files, or directories to search for *.wdl")


def _output_dir_option(c):
    c.add_argument("-o", "--output-dir", help="the output directory (default: run.output_dir, %s)"
                   % CONFIG_SCHEMA["run.output_dir"].default)


def _lint_arguments(c):
    """`lint`'s arguments, and `check`'s but its --lint."""
    _files_argument(c)
    c.add_argument("--strict", action="store_true", default=None,
                   help="make compatibility warnings (constructs Cromwell and miniwdl accept) errors")
    c.add_argument("-e", "--except", action="append", dest="except_rules", default=[], metavar="RULE",
                   help="do not report this rule (repeatable; also check.except in sprocket.toml)")
    c.add_argument("--deny-warnings", action="store_true", default=None, help="exit 1 on warnings too")


def _check_arguments(c):
    _lint_arguments(c)
    c.add_argument("-l", "--lint", action="store_true", help="report the lint rules' warnings too")


def _explain_arguments(c):
    c.add_argument("rule", nargs="?", metavar="RULE")
    c.add_argument("--list", action="store_true", help="list every rule")


def _format_arguments(c):
    _files_argument(c)
    how = c.add_mutually_exclusive_group()
    how.add_argument("--check", action="store_true", help="exit 1 when a file is not formatted; change nothing")
    how.add_argument("--overwrite", action="store_true", help="rewrite the files in place")


def _validate_arguments(c):
    """`validate`'s arguments, and the first of `run`'s."""
    c.add_argument("source", metavar="SOURCE", help="the WDL document")
    c.add_argument("inputs", nargs="*", metavar="INPUTS",
                   help="key=value pairs, and inputs files: @inputs.json, @inputs.yml (or a path ending .json, .yml, .yaml)")
    c.add_argument("-t", "--target", help="the task or workflow (default: the workflow, else the only task)")
    c.set_defaults(retry_of=None)  # `sprocket retry` sets the `runs` row of the run it retries


def _run_arguments(c):
    _validate_arguments(c)
    _output_dir_option(c)
    c.add_argument("--no-call-cache", action="store_true", help="neither use nor fill the call cache")
    c.add_argument("--no-reattach", action="store_true",
                   help="submit every task again, even those whose jobs an earlier run that died left running")
    c.add_argument("--suffix", help="append `_SUFFIX` to the run directory's name")
    c.add_argument("--index-on", metavar="PATH",
                   help="link the outputs (and outputs.json) into OUT/index/PATH/, replacing the earlier index")
    c.add_argument("--show-task-stderr", action="store_true",
                   help="show each task's stderr on the terminal as it is written")
    c.add_argument("--submit", action="store_true", help="submit the engine itself as a Slurm job (run.head_job.*) "
                   "and return at once; near its time limit it hands the run to a successor job")
    for option in _HEAD_OPTIONS:  # a head job's own (run --submit writes them)
        c.add_argument(option[:-1], help=argparse.SUPPRESS)
    for key in _SLURM_TASK_KEYS:
        c.add_argument("--slurm-" + key, metavar=key.upper(), help="slurm_apptainer: the %s of every task's job, unless "
                       "the task's `slurm_%s` key names one (before the partition tables and the backend's settings)" % (
                           key, key))


def _completions_arguments(c):
    c.add_argument("shell", choices=("bash", "zsh", "fish"))


def _inputs_arguments(c):
    c.add_argument("source", metavar="SOURCE")
    c.add_argument("-t", "--target")
    c.add_argument("--yaml", action="store_true", help="print the template as YAML (for `run x.wdl @inputs.yml`)")


def _runs_arguments(c):
    _output_dir_option(c)
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _config_arguments(c):
    c.add_argument("config_command", choices=("resolve", "init"), metavar="{resolve,init}")


def _report_arguments(c):
    c.add_argument("run", nargs="?", metavar="RUN", help="the run's name or directory (default: the newest run)")
    _output_dir_option(c)


def _doctor_arguments(c):
    _output_dir_option(c)


def _test_arguments(c):
    """`test`'s arguments (and `dev test`'s): Sprocket's."""
    c.add_argument("source", nargs="?", default=".", metavar="SOURCE",
                   help="a WDL document, or a directory of them (default: the current directory)")
    c.add_argument("-w", "--workspace", help="where `test/fixtures` and `test/runs` are (default: SOURCE when it is a "
                   "directory, else the current directory)")
    c.add_argument("-t", "--target", help="only the tests of tasks and workflows whose name contains TARGET")
    c.add_argument("-f", "--filter", help="only the tests whose name contains FILTER")
    c.add_argument("--exact", action="store_true", help="-t and -f match whole names")
    tags = c.add_mutually_exclusive_group()
    tags.add_argument("-i", "--include-tag", action="append", default=[], metavar="TAG",
                      help="only the tests with this tag (repeatable)")
    tags.add_argument("-e", "--exclude-tag", action="append", default=[], metavar="TAG",
                      help="not the tests with this tag (repeatable)")
    clean = c.add_mutually_exclusive_group()
    clean.add_argument("--no-clean", action="store_true", help="keep the directories of passed tests too")
    clean.add_argument("--clean-all", action="store_true", help="remove the whole run directory at the end, even "
                       "that of failed tests")
    c.add_argument("-p", "--parallelism", type=int, help="test executions at once (default: test.parallelism, %d)"
                   % CONFIG_SCHEMA["test.parallelism"].default)
    c.add_argument("--fixtures-dir", help="the fixtures (default: test.fixtures_dir, else WORKSPACE/test/fixtures)")
    c.add_argument("--run-dir", help="the output directory of the test runs: their sprocket.db, and each run in "
                   "RUN_DIR/runs/test/ (default: test.run_dir, else WORKSPACE/test)")
    c.add_argument("--junit", metavar="FILE", help="also write the outcomes as JUnit XML to FILE")


def _dev_arguments(c):
    sub = c.add_subparsers(dest="dev_command", metavar="COMMAND")
    sub.required = True
    _test_arguments(sub.add_parser("test", parents=[_common_parser()], help="run the YAML tests of WDL documents"))


def _run_ref_argument(c, default_newest=True):
    c.add_argument("run", nargs="?" if default_newest else None, metavar="RUN",
                   help="the run's name, id (a number or its uuid) or directory%s" % (
                       " (default: the newest run)" if default_newest else ""))
    _output_dir_option(c)


def _status_arguments(c):
    _run_ref_argument(c)
    c.add_argument("--json", action="store_true", help="print JSON instead of text")


def _cancel_arguments(c):
    _run_ref_argument(c, default_newest=False)
    c.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for a live run's engine to finish canceling (default: 120)")


def _retry_arguments(c):
    _run_ref_argument(c, default_newest=False)
    c.add_argument("inputs", nargs="*", metavar="INPUTS", help="key=value pairs or @inputs.json applied on top of "
                   "the run's own inputs")


def _clean_arguments(c):
    _output_dir_option(c)
    which = c.add_mutually_exclusive_group(required=True)
    which.add_argument("--keep-last", type=int, metavar="N", help="keep the N newest finished runs' work")
    which.add_argument("--older-than", metavar="DURATION", help="clean the runs that finished longer ago than this "
                       "(e.g. 7d, 12h, 1d12h, 90m; s, m, h, d, w)")
    c.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")


def _install_arguments(c):
    c.add_argument("dir", metavar="DIR", help="the directory (made if missing; e.g. /shared/software/bin)")


# The commands, in the order `--help` lists them: name, aliases, help, and what adds their arguments.
_COMMANDS = (
    ("check", (), "parse and type-check WDL documents and their imports", _check_arguments),
    ("lint", (), "check, and report the lint rules' warnings too (`sprocket explain --list`)", _lint_arguments),
    ("explain", (), "what a lint rule checks, why, and how to fix it", _explain_arguments),
    ("format", ("fmt",), "format WDL documents (to stdout, or --check, --overwrite)", _format_arguments),
    ("completions", (), "print a completion script for a shell", _completions_arguments),
    ("run", (), "run a task or workflow", _run_arguments),
    ("validate", (), "check a run's inputs without running it", _validate_arguments),
    ("inputs", (), "print an inputs template as JSON (or YAML with --yaml)", _inputs_arguments),
    ("config", (), "show the configuration", _config_arguments),
    ("runs", (), "list the runs recorded in an output directory's sprocket.db", _runs_arguments),
    ("report", (), "write a run's report.html (every run writes one at its end)", _report_arguments),
    ("status", (), "one run's state: its tasks by state, the running and pending ones (and why they wait), the "
     "failed ones, its hand-offs", _status_arguments),
    ("cancel", (), "cancel a run from any shell that sees its output directory (a live engine is asked to stop; "
     "the jobs of a run whose engine is gone are canceled)", _cancel_arguments),
    ("retry", (), "run a run's document again on its inputs (with INPUTS on top), reusing what completed: only "
     "what failed or never ran runs again", _retry_arguments),
    ("clean", (), "delete the work/ and tmp/ directories of finished runs, but what a kept run or the call cache "
     "uses", _clean_arguments),
    ("doctor", (), "check that this host and site can run tasks with the configured backend (one line per check; "
     "the Slurm backend submits one tiny test job)", _doctor_arguments),
    ("test", (), "run the YAML tests of WDL documents (Sprocket's `dev test`)", _test_arguments),
    ("dev", (), "Sprocket's developer commands: `dev test` (the same as `test`)", _dev_arguments),
    ("install", (), "copy sprocket.py into DIR, compiled for this Python, with a `sprocket` launcher that starts "
     "without compiling it", _install_arguments),
)


def _common_parser():
    common = argparse.ArgumentParser(add_help=False)
    for flags, options in _COMMON_OPTIONS:
        common.add_argument(*flags, default=argparse.SUPPRESS, **options)
    return common


def build_parser():
    common = _common_parser()
    p = _ArgumentParser(prog="sprocket", description="A WDL engine (WDL 1.0-1.3) in one Python file.",
                        parents=[common])
    p.add_argument("--version", action="version", version="sprocket %s" % __version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, aliases, help_text, add_arguments in _COMMANDS:
        add_arguments(sub.add_parser(name, aliases=aliases, parents=[common], help=help_text))
    return p


def wdl_files(paths):
    """The files named, with a directory standing for the `*.wdl` files below it (at least one)."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "**", "*.wdl"), recursive=True))
            if not found:
                raise InputError("`%s` is a directory with no `.wdl` file in it" % path)
            out.extend(found)
        else:
            out.append(path)
    return out


def cmd_check(args):
    """`check` and `lint`: exit 0 when only warnings remain (`-q` or check.hide_warnings hides
    them; --deny-warnings fails on them), 1 on any error."""
    config = load_config(args.config, args.skip_config_search)
    strict = args.strict if args.strict is not None else config.get("run.strict")
    lint = args.command == "lint" or getattr(args, "lint", False)
    excepted = set(config.get("check.except")) | set(args.except_rules)
    unknown = sorted(r for r in excepted if r not in LINT_RULES)
    if unknown:
        raise InputError("unknown lint rule%s %s (`sprocket explain --list` lists them)" % (
            "s" if len(unknown) > 1 else "", ", ".join("`%s`" % r for r in unknown)))
    deny = args.deny_warnings or config.get("check.deny_warnings")
    show = args.stderr_level <= _LEVELS["WARN"] and not config.get("check.hide_warnings")
    failed = False
    for path in wdl_files(args.files):
        loader = Loader(strict)
        doc = None
        try:
            doc = loader.load(path, None, ())
        except RecursionError:
            loader.errors.append(WdlError("`%s` is nested too deeply to check" % path))
        warnings = loader.warnings + (lint_document(doc) if lint and doc is not None else [])
        warnings = lint_filter(warnings, excepted)
        warnings.sort(key=lambda w: (w.span.path, w.span.pos) if w.span else ("", 0))
        if show:
            print_warnings(warnings, lint)
        for e in loader.errors:
            print(format_diagnostic(e.message, e.span), file=sys.stderr)
        failed = failed or bool(loader.errors) or bool(deny and warnings)
    return 1 if failed else 0


def cmd_explain(args):
    if args.list or not args.rule:
        width = max(len(r) for r in LINT_RULES)
        for rule in sorted(LINT_RULES):
            print("%-*s  %s" % (width, rule, LINT_RULES[rule][0]))
        return 0
    if args.rule not in LINT_RULES:
        import difflib

        near = difflib.get_close_matches(args.rule, list(LINT_RULES), 3)
        raise InputError("no lint rule is called `%s`%s" % (args.rule, "; did you mean %s?" % ", ".join(
            "`%s`" % r for r in near) if near else " (`sprocket explain --list` lists them)"))
    what, why, fix = LINT_RULES[args.rule]
    print("%s\n\nFlags %s.\nWhy: %s.\nFix: %s.\n\nSwitch it off with `--except %s`, `check.except = [\"%s\"]` in "
          "sprocket.toml, or a `#@ except: %s` comment before the element." % (args.rule, what, why, fix, args.rule,
                                                                             args.rule, args.rule))
    return 0


def cmd_format(args):
    """Formatted text to stdout; --check: exit 1 when a file would change; --overwrite: rewrite
    each file that changes (a new file renamed over the old, so a reader never sees half)."""
    paths = wdl_files(args.files)
    changed = []
    for path in paths:
        source = read_source(path)
        text = format_document(source)
        if args.check:
            if text != source.text:
                changed.append(path)
                print("%s: not formatted" % path, file=sys.stderr)
        elif args.overwrite:
            if text != source.text:
                try:
                    write_replacing(path, text, keep_mode=True)
                except OSError as e:  # a read-only or full file system: the file stays as it was
                    raise WdlError("cannot rewrite `%s`: %s (it was left unchanged)" % (path, e.strerror or e))
                changed.append(path)
        else:
            sys.stdout.write(text)
    if args.overwrite and args.stderr_level <= _LEVELS["INFO"]:
        print("%d of %d file(s) reformatted" % (len(changed), len(paths)), file=sys.stderr)
    return 1 if args.check and changed else 0


def completion_script(shell):
    """A completion script for `sprocket` (and `sprocket.py`), made from the argument parser."""
    from shlex import quote as shlex_quote

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = sorted(sub.choices)
    options = {name: sorted(o for a in p._actions for o in a.option_strings) for name, p in sub.choices.items()}
    if shell == "fish":
        lines = ["complete -c %s -f -n __fish_use_subcommand -a %s" % (prog, shlex_quote(" ".join(commands)))
                 for prog in ("sprocket", "sprocket.py")]
        for name in commands:
            for o in options[name]:
                flag = "-l %s" % o[2:] if o.startswith("--") else "-s %s" % o[1:]
                lines.extend("complete -c %s -n '__fish_seen_subcommand_from %s' %s" % (prog, name, flag)
                             for prog in ("sprocket", "sprocket.py"))
        return "\n".join(lines) + "\n"
    cases = "\n".join('        %s) opts=%s ;;' % (name, shlex_quote(" ".join(options[name]))) for name in commands)
    script = """_sprocket() {
    local cur=${COMP_WORDS[COMP_CWORD]} opts=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W %s -- "$cur"))
        return 0
    fi
    case ${COMP_WORDS[1]} in
%s
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -F _sprocket sprocket sprocket.py
""" % (shlex_quote(" ".join(commands)), cases)
    if shell == "zsh":  # zsh runs the bash function through its bashcompinit layer
        script = "#compdef sprocket sprocket.py\nautoload -U +X bashcompinit && bashcompinit\n" + script
    return script


def cmd_completions(args):
    sys.stdout.write(completion_script(args.shell))
    return 0


_INPUTS_FILE_SUFFIXES = (".json",) + _YAML_SUFFIXES  # a path ending so (any case) is an inputs file, even without `@`


def read_input_items(items, cwd, warn):
    """`key=value` pairs, `@file.json`/`@file.yml`/`@file.yaml` and plain paths ending so, as (key,
    JSON value, base dir). A `.yml`/`.yaml` file is YAML (_yaml_loads), anything else JSON.

    A value is parsed as JSON, else taken as a plain string; a repeated key builds an array.
    File paths in a file resolve against that file's directory, on the command line against cwd.
    Command-line values also carry their text (4th item), so `s=0` can still be the String "0".
    """
    pairs = []
    repeated = {}
    for item in items:
        path = (item[1:] if item.startswith("@") else
                item if "=" not in item and item.lower().endswith(_INPUTS_FILE_SUFFIXES) else None)
        if path is not None:
            data = read_inputs_file(path, warn)
            base = os.path.dirname(os.path.abspath(path))
            pairs.extend([k, v, base] for k, v in data.items())
            continue
        key, eq, text = item.partition("=")
        if not eq or not re.match(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$", key):
            raise InputError("input `%s` is neither `key=value` nor an inputs file (`@inputs.json`, `@inputs.yml`)" % item)
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        except RecursionError:
            raise InputError("input `%s`: the value is nested too deeply" % key)
        if key in repeated:  # a repeated key builds an array
            repeated[key][1].append(value)
            repeated[key][3].append(text)
            continue
        entry = [key, [value], cwd, [text]]
        repeated[key] = entry
        pairs.append(entry)
    out = []
    for entry in pairs:
        if len(entry) == 3:
            out.append(tuple(entry) + (None,))
        else:
            key, values, base, texts = entry
            out.append((key, values[0], base, texts[0]) if len(values) == 1 else (key, values, base, texts))
    return out


def read_inputs_file(path, warn):
    """An inputs file's mapping: YAML for `.yml`/`.yaml` (a key repeated is an error, as YAML says),
    else JSON (a key repeated within one object is warned about; the last value wins, as in every
    JSON reader)."""
    def unique_keys(found):
        counts = collections.Counter(k for k, _ in found)
        for k in sorted(k for k, n in counts.items() if n > 1):
            warn("inputs file `%s`: key `%s` is given more than once; the last value is used" % (path, k))
        return dict(found)

    src = read_source(path)
    if is_yaml_path(path):
        data = _json_keys(_yaml_loads(src.text, path))
        if not isinstance(data, dict):
            raise InputError("a YAML inputs file must hold a mapping of input names to values", Span(src, 0))
        return data
    try:
        data = json.loads(src.text, object_pairs_hook=unique_keys)
    except ValueError as e:
        raise InputError("invalid JSON: %s" % getattr(e, "msg", e), Span(src, getattr(e, "pos", 0)))
    except RecursionError:
        raise InputError("`%s` is nested too deeply" % path)
    if not isinstance(data, dict):
        raise InputError("an inputs file must hold a JSON object", Span(src, 0))
    return data


def choose_target(doc, name):
    """The task or workflow to run: --target, else the workflow, else the only task."""
    if name:
        if doc.workflow is not None and doc.workflow.name == name:
            return doc.workflow
        for t in doc.tasks:
            if t.name == name:
                return t
        names = [t.name for t in doc.tasks] + ([doc.workflow.name] if doc.workflow else [])
        raise InputError("`%s` has no task or workflow named `%s`%s" % (doc.source.path, name, _did_you_mean(name, names)))
    if doc.workflow is not None:
        return doc.workflow
    if len(doc.tasks) == 1:
        return doc.tasks[0]
    raise InputError("`%s` has no workflow and %d tasks; choose one with --target" % (doc.source.path, len(doc.tasks)))


def print_warnings(warnings, rules=False):
    """Each warning as a diagnostic; `lint` names its rule: `warning[RuleName]:`."""
    for w in warnings:
        print(format_diagnostic(w.message, w.span, "warning[%s]" % w.rule if rules and w.rule else "warning"),
              file=sys.stderr)


def prepare_inputs(args, log, strict=False):
    """Load the document, choose the target, and read and check its inputs (shared by `run`
    and `validate`). Returns (doc, target, own inputs, nested inputs, overrides)."""
    doc = load(args.source, strict)
    if log.stderr_level <= _LEVELS["WARN"]:
        print_warnings(doc.warnings)
    target = choose_target(doc, args.target)
    # `sprocket retry`: the inputs that run recorded come first
    recorded = [(k, v, "/", None) for k, v in recorded_json(args.retry_of, "inputs").items()] if args.retry_of else []
    items = recorded + read_input_items(args.inputs, os.getcwd(), log.warn)
    inputs, given = assign_inputs(target, items, bool(args.target))
    check_given_files(target, inputs, given.nested)
    missing = missing_required(target, inputs, given.nested)  # (those its calls leave unbound too)
    if missing:
        raise InputError("missing required input%s: %s" % ("s" if len(missing) > 1 else "", ", ".join(
            "`%s`" % m for m in missing)))
    return doc, target, inputs, given.nested, given.overrides


def download_url_inputs(run, values):
    """File inputs given as http(s) URLs are downloaded into the run directory (`inputs/`), as
    Sprocket does; the run's inputs.json keeps the URLs."""
    def fetch(p):
        if not is_url(p):
            return p
        path, _ = download(p, os.path.join(run.run_dir, "inputs"))
        run.log.info("downloaded `%s` to `%s`" % (p, path))
        return path

    return {k: map_paths(v, fetch) for k, v in values.items()}


def recorded_inputs(target, inputs, nested, overrides):
    """A run's inputs as `runs.inputs` and inputs.json keep them: every key given, with the
    target's name (`wf.x`, `wf.call.x`, `wf.call.requirements.cpu`), as an inputs file gives them."""
    out = {target.name + "." + k: value_to_json(v) for k, v in inputs.items()}
    for path, values in nested.items():
        out.update(("%s.%s.%s" % (target.name, path, k), value_to_json(v)) for k, v in values.items())
    for path, sections in overrides.items():
        for section, values in sections.items():
            out.update((".".join([target.name] + ([path] if path else []) + [section, k]), v) for k, v in values.items())
    return out


def cmd_run(args):
    import signal

    log = RunLog(args.stderr_level)
    config = load_config(args.config, args.skip_config_search)
    retry_of = args.retry_of  # `sprocket retry`: that run's `runs` row
    if retry_of is not None:
        config.merge_file("`sprocket retry`", {"run": {"task": {"cache": "on"}}})
    for w in config.warnings:
        log.warn(w)
    head = head_job_of(args, config)
    in_head_job = head is not None and threading.current_thread() is threading.main_thread()
    early = []  # a head job's USR1 before its run exists (a slow start), kept for it
    if in_head_job:
        signal.signal(signal.SIGUSR1, lambda signum, frame: early.append(signum))
    check_run_name_parts(args.suffix, args.index_on)
    out_dir = args.output_dir or config.get("run.output_dir")
    # from checking the input files to recording them and what it adopts: no `clean` meanwhile
    with CleanLock(os.path.abspath(out_dir), exclusive=False):
        doc, target, inputs, nested, overrides = prepare_inputs(args, log, config.get("run.strict"))
        if args.index_on:
            index_location(os.path.abspath(out_dir), args.index_on)
        inputs_json = {target.name + "." + k: value_to_json(v) for k, v in inputs.items()}
        if args.submit:
            return cmd_run_submit(args, config, out_dir, target, log)
        fingerprint = run_fingerprint(doc, target, inputs_json, nested, overrides, config)
        recorded = recorded_inputs(target, inputs, nested, overrides)
        run = Run(doc, target, config, out_dir, log, recorded, args.no_call_cache, fingerprint,
                  not args.no_reattach or bool(head and head.predecessor), args.suffix, args.index_on,
                  args.show_task_stderr, overrides, {k: getattr(args, "slurm_" + k) for k in _SLURM_TASK_KEYS}, head,
                  retry_of)
    if in_head_job:
        signal.signal(signal.SIGUSR1, run.on_time_limit)  # for the whole run: a late one is ignored
        signal.signal(signal.SIGTERM, run.on_terminate)  # also while it hands off, after execute()
        if head.predecessor:
            log.info("head job %s carries on the run of head job %s" % (head.job_id, head.predecessor))
        if early:
            run.on_time_limit(early[0], None)
    print("run directory: %s" % run.run_dir, file=sys.stderr)
    try:
        write_replacing(os.path.join(run.run_dir, "inputs.json"), json_dumps(recorded, indent=2) + "\n")
        inputs = download_url_inputs(run, inputs)
        text = run.finish(run.execute(inputs, {path: download_url_inputs(run, values) for path, values in nested.items()}))
    except KeyboardInterrupt:
        run.finish(error="interrupted")
        print("error: evaluation was interrupted", file=sys.stderr)
        return 1
    except RunHandedOff:  # a head job's time limit: the successor job carries on
        return run.hand_off()
    except (WdlError, OSError) as e:  # an OSError: the file system refused (full, read-only)
        run.finish(error=e.message if isinstance(e, WdlError) else os_error_text(e))
        raise
    except Exception as e:  # a bug in sprocket.py
        return run_internal_error(run, e)
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `sprocket run | head`: main() ends it quietly
        raise
    except OSError as e:  # `> /dev/full`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is left in the buffer goes nowhere
        raise RunError("the run completed, but its outputs could not be written to stdout (%s); they are in `%s`" % (
            e.strerror or e, os.path.join(run.run_dir, "outputs.json")))
    finally:
        run.close()  # the outputs are out: what the jobs used (a last sacct), the report
    return 0


def run_internal_error(run, e):
    """A bug in sprocket.py ended a run (`run`, `test`): its traceback in the run's log, the run
    `failed` in sprocket.db and closed (no job left behind); the exit status, 70."""
    import traceback

    text = getattr(e, "__traceback_text__", None) or traceback.format_exc()
    run.log.log("ERROR", "internal error: %s\n%s" % (e, text), stderr=False)
    run.finish(error="internal error: %s: %s" % (type(e).__name__, e))
    print("internal error (a bug in sprocket.py, please report it): %s: %s\nthe traceback is in `%s`" % (
        type(e).__name__, e, os.path.join(run.run_dir, "output.log")), file=sys.stderr)
    return 70


def cmd_run_submit(args, config, out_dir, target, log):
    """`run --submit`: the head job submitted; its id, the run's name and directory printed (JSON)."""
    job_id, name, run_dir = submit_run(config, args.argv, out_dir, target, args.suffix, log)
    print("submitted run `%s` as Slurm job %s; its directory: %s" % (name, job_id, run_dir), file=sys.stderr)
    print(json_dumps({"job_id": job_id, "name": name, "directory": run_dir}, indent=2))
    return 0


def head_job_of(args, config):
    """The HeadJob of a run started by run --submit (or a hand-off), None for any other."""
    if args.head_run_dir is None:
        return None
    if not args.head_run_name or not os.path.isdir(args.head_run_dir):
        raise InputError("--head-run-dir and --head-run-name are for the head jobs that `run --submit` submits")
    run_dir = os.path.abspath(args.head_run_dir)
    if set(os.listdir(run_dir)) - set(_HEAD_JOB_FILES):  # a run is never written over another one
        print("warning: `%s` holds a run already (the head job was started again): this one goes in a new "
              "directory" % run_dir, file=sys.stderr)
        run_dir = None
    return HeadJob(run_dir, args.head_run_name, os.environ.get("SLURM_JOB_ID"), args.head_predecessor, args.argv,
                   head_job_settings(config))


def cmd_test(args):
    """`sprocket test`: read every test file first (all their errors at once), then run the tests
    chosen as one run; a line per execution as it ends, the counts at the end; 1 when any did not pass."""
    if args.exact and args.target is None and args.filter is None:
        raise InputError("--exact needs -t/--target or -f/--filter")
    log = RunLog(args.stderr_level)
    config = load_config(args.config, args.skip_config_search)
    for w in config.warnings:
        log.warn(w)
    if not os.path.isdir(args.source):
        read_source(args.source)  # a SOURCE that is not there (or not a WDL file) is refused, as `check` does
    if args.junit:
        check_junit_target(args.junit)
    workspace = args.workspace or (args.source if os.path.isdir(args.source) else os.getcwd())
    fixtures = os.path.abspath(args.fixtures_dir or config.get("test.fixtures_dir")
                               or os.path.join(workspace, _TEST_DIR, "fixtures"))
    out_dir = args.run_dir or config.get("test.run_dir") or os.path.join(workspace, _TEST_DIR)
    cases, errors = [], []
    runs_below = os.path.join(os.path.realpath(out_dir), "")
    for path in wdl_files([args.source]):
        test_file = find_test_file(path)
        if test_file is None or os.path.realpath(path).startswith(runs_below):  # not what a test run left
            continue
        doc = load(path, config.get("run.strict"))
        found, warnings, wrong = load_tests(test_file, doc, fixtures)
        cases, errors = cases + found, errors + wrong
        if log.stderr_level <= _LEVELS["WARN"]:
            print_warnings(doc.warnings + warnings)
    if errors:
        raise WdlErrors(errors)
    chosen = select_tests(cases, args.target, args.filter, args.exact, args.include_tag, args.exclude_tag)
    executions = plan_executions(chosen)
    if not executions:
        print("no tests to run (%d test%s found under `%s`)" % (len(cases), "" if len(cases) == 1 else "s", args.source),
              file=sys.stderr)
        return 0
    parallelism = args.parallelism if args.parallelism is not None else config.get("test.parallelism")
    if parallelism < 1:
        raise InputError("--parallelism must be at least 1")
    run = TestRun(os.path.abspath(args.source), executions, config, out_dir, log, parallelism,
                  config.get("test.throttle"))
    print("run directory: %s" % run.run_dir, file=sys.stderr)
    try:
        run.finish(run.execute({}))
    except KeyboardInterrupt:
        run.finish(error="interrupted")
        print("error: the tests were interrupted", file=sys.stderr)
        return 1
    except (WdlError, OSError) as e:
        run.finish(error=e.message if isinstance(e, WdlError) else os_error_text(e))
        raise
    except Exception as e:  # a bug in sprocket.py
        return run_internal_error(run, e)
    run.close()
    print(summary_line(executions))
    if args.junit:
        try:
            write_junit(args.junit, executions, args.source)
        except OSError as e:
            raise InputError("--junit %s: cannot write it: %s" % (args.junit, e.strerror or e))
    if args.clean_all:
        clean_all(run)
    elif not args.no_clean:
        clean_test_dirs(run.run_dir, executions, log)
    return 0 if all(ex.outcome.status == "passed" for ex in executions) else 1


def cmd_validate(args):
    log = RunLog(args.stderr_level)
    doc, target, inputs, nested, overrides = prepare_inputs(args, log)
    print("the inputs of `%s` are valid" % target.name, file=sys.stderr)
    return 0


def cmd_inputs(args):
    """An inputs template: required inputs first (their type as a placeholder), then the rest
    with their literal defaults (null where the default is computed)."""
    doc = load(args.source)
    target = choose_target(doc, args.target)
    required, optional = {}, {}
    for d in target.inputs or []:
        key = "%s.%s" % (target.name, d.name)
        if d.expr is None and not d.type_.opt:
            required[key] = str(d.type_)
        else:
            optional[key] = value_to_json(evaluate(d.expr, {}, None)) if d.expr is not None and _is_constant(d.expr) else None
    for key in missing_required(target, {}, {}):
        if key not in required:
            call_input = key.split(".")
            call = _find_call_path(target, ".".join(call_input[1:-1]))
            required[key] = str(call.callee_def.inputs[call_input[-1]][0])
    template = dict(list(required.items()) + list(optional.items()))
    print(yaml_dumps(template) if args.yaml else json_dumps(template, indent=2))
    return 0


def cmd_config(args):
    if args.config_command == "resolve":
        config = load_config(args.config, args.skip_config_search)
        for w in config.warnings:
            print("warning: %s" % w, file=sys.stderr)
        print("\n".join(resolve_lines(config)))
        return 0
    if args.config_command == "init":
        print(default_config_text())
        return 0
    raise UsageError("choose a config subcommand: resolve or init")


def cmd_doctor(args):
    """`doctor`: the output directory, then the checks of the configured backend (Backend.doctor),
    one line each as it is done; exit 1 when one failed."""
    config = load_config(args.config, args.skip_config_search)
    for w in config.warnings:
        print("warning: %s" % w, file=sys.stderr)
    name, table = config.backend()
    settings = read_backend_settings(table)
    out_dir = os.path.abspath(args.output_dir or config.get("run.output_dir"))
    print("checking the `%s` backend (type %s) and the output directory `%s`" % (name, settings["type"], out_dir),
          file=sys.stderr)
    context = RunContext(run_settings(config), RunLog(args.stderr_level))
    failed = False
    for checks in ([output_dir_check(out_dir)], BACKENDS[settings["type"]].doctor(context, name, settings, out_dir)):
        for check in checks:  # each printed as soon as it is done
            print(check_line(check), flush=True)
            failed = failed or check.problem is not None
    return 1 if failed else 0


def output_dir_check(out_dir):
    """The output directory can be made and written."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sprocket-doctor-", dir=out_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        return Check("the output directory `%s`" % out_dir, "cannot write there: %s" % os_error_text(e),
                     "make it writable, or choose another with `-o` (or run.output_dir)")
    return Check("the output directory `%s` is writable" % out_dir, None, None)


def open_store(args, ref=None):
    """The sprocket.db of `-o`, else of the output directory above the run directory that RUN
    (`ref`) names (when it names one), else of run.output_dir; it must exist."""
    above = _output_dir_above(ref)
    if ref and os.path.isdir(ref) and not args.output_dir and above is None:
        raise RunError("`%s` is a directory but no run's: a run directory is OUT/runs/<target>/<directory>, with "
                       "sprocket.db in OUT (or give the run's name or id, and OUT with -o)" % ref)
    out_dir = os.path.abspath(args.output_dir or above or load_config(
        args.config, args.skip_config_search).get("run.output_dir"))
    if not os.path.isfile(os.path.join(out_dir, "sprocket.db")):
        raise RunError("`%s` has no sprocket.db: no run used this output directory (choose one with -o)" % out_dir)
    return Store(out_dir), out_dir


def _output_dir_above(path):
    """The output directory holding the run directory `path` (`OUT/runs/<target>/<timestamp>`), or None."""
    if not path or not os.path.isdir(path):
        return None
    out = os.path.realpath(path)
    for _ in range(3):
        out = os.path.dirname(out)
        if os.path.isfile(os.path.join(out, "sprocket.db")):
            return out
    return None


def find_run(store, out_dir, ref):
    """A run (its `runs` row, Store.runs()) by its name, uuid, id or directory; the newest when
    `ref` is None. RunError, with the nearest name, when there is none."""
    runs = store.runs()
    db = os.path.join(out_dir, "sprocket.db")
    if ref is None:
        if not runs:
            raise RunError("`%s` holds no run" % db)
        return runs[0]
    wanted = os.path.realpath(ref) if os.path.isdir(ref) else None
    for r in runs:
        if ref in (r["name"], r["uuid"], str(r["id"])) or wanted and r["directory"] and os.path.realpath(
                os.path.join(out_dir, r["directory"])) == wanted:
            return r
    raise RunError("no run `%s` in `%s`%s (`sprocket runs -o %s` lists them)" % (
        ref, db, _did_you_mean(ref, [r["name"] for r in runs]), out_dir))


def cmd_runs(args):
    """The runs of a database, newest first: a table, or JSON with --json."""
    store, out_dir = open_store(args)
    try:
        runs = store.runs()
        successors = store.successor_jobs()
    finally:
        store.close()
    # a run whose head job handed off (run --submit) is `orphaned` in sprocket.db: shown as `handed-off`
    rows = [{"name": r["name"], "target": r["target"], "status": "handed-off" if r["id"] in successors else r["status"],
             "handed_off_to": successors.get(r["id"]), "started": r["started_at"],
             "duration_s": round(r["duration"], 1) if r["duration"] is not None else None, "done": r["done"],
             "failed": r["failed"], "cached": r["cached"], "directory": os.path.join(out_dir, r["directory"]),
             "error": r["error"]} for r in runs]
    if args.json:
        print(json_dumps(rows, indent=2))
        return 0
    table = [("NAME", "TARGET", "STATUS", "STARTED (UTC)", "DURATION", "DONE", "FAILED", "CACHED", "DIRECTORY")]
    table += [(r["name"], r["target"] or "-", r["status"] + (" to %s" % r["handed_off_to"] if r["handed_off_to"] else ""),
               r["started"] or "-", _duration_text(r["duration_s"]),
               str(r["done"]), str(r["failed"]), str(r["cached"]), r["directory"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def cmd_report(args):
    """Write report.html of a run (by name or directory; default the newest) and print its path."""
    store, out_dir = open_store(args, args.run)
    try:
        chosen = [find_run(store, out_dir, args.run)]
        path = os.path.join(out_dir, chosen[0]["directory"], "report.html")
        if not os.path.isdir(os.path.dirname(path)):
            raise RunError("the directory of run `%s` (`%s`) is gone: there is nowhere to write its report" % (
                chosen[0]["name"], os.path.dirname(path)))
        try:
            write_report(store, chosen[0]["id"], out_dir, path)
        except OSError as e:
            raise RunError("cannot write `%s`: %s" % (path, e.strerror or e))
    finally:
        store.close()
    print(path)
    return 0


def _backend_settings(config, name):
    """read_backend_settings() of the backend a run's attempts name (`attempts.backend`: a table
    of run.backends, or a type: local, docker... record theirs), or None when this configuration
    has no such backend."""
    tables = config.backends()
    table = tables.get(name) if name not in BACKENDS else next(
        (t for t in tables.values() if isinstance(t, dict) and t.get("type") == name), {"type": name})
    return read_backend_settings(table) if isinstance(table, dict) and table.get("type") in BACKENDS else None


def run_status(store, out_dir, run, config, log):
    """What `sprocket status` tells of a run (a `runs` row): a dict, as --json prints it. A live
    run's jobs are asked about in one query of its backend (Slurm: why each waits)."""
    run_dir = os.path.join(out_dir, run["directory"] or "")
    calls = store.call_states(run["id"])
    live = run["status"] in _LIVE_RUN_STATES
    states = {}
    for name in sorted({c["backend"] for c in calls}) if live else ():
        settings = _backend_settings(config, name)
        ids = [c["job_id"] for c in calls if c["backend"] == name and c["status"] == "running" and c["job_id"]]
        if settings is None and ids:
            log.warn("the run's jobs ran on the backend `%s`, which this configuration does not define: give the run's "
                     "configuration with `-c` to see why they wait" % name)
        elif ids:
            try:
                states.update(BACKENDS[settings["type"]].job_states(RunContext(run_settings(config), log), settings, ids))
            except WdlError as e:
                log.warn("could not ask the `%s` backend about the jobs: %s" % (name, e.message))
    counts = collections.Counter()
    out = collections.OrderedDict((k, run[k]) for k in ("name", "id", "uuid", "target", "status", "error"))
    engine = store.engine_of(run["id"]) if live else None
    for k, v in (("started", run["started_at"]), ("completed", run["completed_at"]), ("duration_s", run["duration"]),
                 ("directory", run_dir), ("engine", {"host": engine.host, "pid": engine.pid} if engine else None),
                 ("tasks", None), ("pending", []), ("running", []), ("failed", [])):
        out[k] = v
    for c in calls:
        job = c["job_id"] or ("process group %d" % c["process_group"] if c["process_group"] else None)
        entry = collections.OrderedDict(call=c["call"], attempt=c["attempt"], job_id=job, for_s=c["age"])
        job_state = states.get(c["job_id"])
        status = c["status"]
        if status == "running" and job_state and job_state.state.split()[:1] == ["PENDING"]:
            status = "pending"
            entry["reason"] = job_state.reason
        counts[status] += 1
        if status in ("running", "pending"):
            out[status].append(entry)
        elif status == "failed":
            entry.update(exit_status=c["exit_status"], error=c["error"], stderr=os.path.normpath(
                os.path.join(run_dir, c["directory"], "stderr")))
            del entry["for_s"]
            out["failed"].append(entry)
    counts["cached"] = run["cached"] or 0
    order = ("pending", "running", "completed", "failed", "canceled", "orphaned", "cached")
    out["tasks"] = collections.OrderedDict((k, counts[k]) for k in list(order) + sorted(set(counts) - set(order))
                                           if counts[k])
    chain, before = [], store.run_adopted_by(run["id"])  # the runs it continues (hand-offs, reattach)
    while before is not None and before.id not in chain:
        chain.append(before.id)
        before = store.run_adopted_by(before.id)
    names = {r["id"]: r["name"] for r in store.runs()}
    out["continues"] = [names[i] for i in chain]
    out["handoffs"] = [collections.OrderedDict((k, h[k]) for k in ("name", "job_id", "successor_job_id", "reason",
                                                                      "created_at"))
                       for h in store.handoffs_of([run["id"]] + chain)]
    adopter, retried = store.adopter_of(run["id"]), store.retry_of(run["id"])
    out["adopted_by"] = names.get(adopter)
    out["retry_of"] = names.get(retried)
    out["cleaned"] = store.cleanups_of(run["id"])
    return out


def status_text(st):
    """The text of `sprocket status` (run_status()'s dict)."""
    lines = ["run `%s` (id %d) of `%s`: %s%s" % (st["name"], st["id"], st["target"], st["status"], (
        " %s %s" % ("for" if st["status"] in _LIVE_RUN_STATES else "after", _duration_text(st["duration_s"]))
        if st["duration_s"] is not None else "")),
             "directory: %s" % st["directory"]]
    if st["engine"]:
        lines.append("engine: pid %d on %s" % (st["engine"]["pid"], st["engine"]["host"]))
    lines += ["tasks: %s" % (", ".join("%d %s" % (n, k) for k, n in st["tasks"].items()) or (
        "none yet" if st["status"] in _LIVE_RUN_STATES else "none"))]
    if st["error"]:
        lines.append("error: %s" % st["error"].splitlines()[0])
    for what in ("pending", "running"):
        if st[what]:
            lines.append("%s:" % what)
        for e in st[what]:
            lines.append("  %s  attempt %d  %s  for %s%s" % (e["call"], e["attempt"], e["job_id"] or "(no job yet)",
                                                           _duration_text(e["for_s"]),
                                                           "  (%s)" % e["reason"] if e.get("reason") else ""))
    if st["failed"]:
        lines.append("failed:")
    for e in st["failed"]:
        lines.append("  %s  attempt %d%s: %s" % (e["call"], e["attempt"], "  exit %d" % e["exit_status"]
                                                 if e["exit_status"] is not None else "",
                                                 (e["error"] or "").splitlines()[0] if e["error"] else "failed"))
        lines.append("    stderr: %s" % e["stderr"])
    if st["handoffs"]:
        lines.append("hand-offs:")
    for h in st["handoffs"]:
        lines.append("  %s UTC  run `%s`: head job %s -> %s (%s)" % (h["created_at"], h["name"], h["job_id"],
                                                                   h["successor_job_id"] or "none", h["reason"]))
    for key, label in (("continues", "continues"), ("adopted_by", "adopted by"), ("retry_of", "retry of")):
        value = st[key]
        if value:
            lines.append("%s: %s" % (label, ", ".join("`%s`" % v for v in (value if isinstance(value, list) else [value]))))
    for c in st["cleaned"]:
        lines.append("work removed: %s UTC by `sprocket clean` (%s freed)" % (c["created_at"], _human_bytes(c["bytes_freed"])))
    return "\n".join(lines)


def cmd_status(args):
    """`status [RUN]`: one run (default the newest), as text or --json."""
    config = load_config(args.config, args.skip_config_search)
    store, out_dir = open_store(args, args.run)
    try:
        st = run_status(store, out_dir, find_run(store, out_dir, args.run), config, RunLog(args.stderr_level))
    finally:
        store.close()
    print(json_dumps(st, indent=2) if args.json else status_text(st))
    return 0



def cmd_cancel(args):
    """`cancel RUN`: a run whose engine lives is asked to stop (CANCEL_REQUEST in its directory,
    which it looks for every round, from any host; and SIGTERM when it runs on this host), and
    waited for; a run whose engine is gone has its jobs canceled here (one call per backend) and
    is marked `canceled`. A run adopted by another (a hand-off, reattach) is canceled in the one
    carrying it on."""
    import signal
    import socket

    config = load_config(args.config, args.skip_config_search)
    log = RunLog(args.stderr_level)
    store, out_dir = open_store(args, args.run)
    try:
        run = carried_on(store, find_run(store, out_dir, args.run))
        if run["status"] in _ENDED_RUN_STATES:
            print("run `%s` has already ended: %s" % (run["name"], run["status"]))
            return 0 if run["status"] == "canceled" else 1
        if run["status"] != "orphaned":
            request = os.path.join(out_dir, run["directory"], CANCEL_REQUEST)
            try:
                write_replacing(request, "%s on %s, pid %d, at %s UTC\n" % ("sprocket cancel", socket.gethostname(),
                                                                             os.getpid(), time.strftime(
                                                                                 "%Y-%m-%d %H:%M:%S", time.gmtime())))
            except OSError as e:  # (a signal may still reach it)
                log.warn("could not write `%s`: %s" % (request, os_error_text(e)))
            engine = store.engine_of(run["id"])
            if engine and engine.host == socket.gethostname() and not engine_dead(*engine):
                try:
                    os.kill(engine.pid, signal.SIGTERM)
                except ProcessLookupError:  # it ended meanwhile
                    pass
            print("asked the engine of run `%s` to cancel it (%s)" % (run["name"], "pid %d on %s" % (
                engine.pid, engine.host) if engine else "its engine"), file=sys.stderr)
            run = _wait_for_cancel(store, out_dir, run, args.timeout)
            if run["status"] != "orphaned":
                print("run `%s`: %s" % (run["name"], run["status"]))
                return 0 if run["status"] == "canceled" else 1
        stopped = cancel_dead_run(store, out_dir, run, config, log)
        print("run `%s`: its engine is gone; %d job(s) canceled; marked canceled" % (run["name"], stopped))
        return 0
    finally:
        store.close()


def carried_on(store, run):
    """The run that carries `run` on: the last of the runs that adopted it in turn (a hand-off's
    successor, a reattach), said on stderr; else `run`."""
    seen = {run["id"]}
    adopter = store.adopter_of(run["id"])
    while adopter is not None and adopter not in seen:
        seen.add(adopter)
        (later,) = store.runs(adopter)
        print("run `%s` was adopted by run `%s`" % (run["name"], later["name"]), file=sys.stderr)
        run, adopter = later, store.adopter_of(adopter)
    return run


def _wait_for_cancel(store, out_dir, run, timeout):
    """The run's row once its engine has ended it (or died: `orphaned`), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        store.sweep_orphans()
        (run,) = store.runs(run["id"])
        if run["status"] not in _LIVE_RUN_STATES:
            return run
        if time.monotonic() > deadline:
            raise RunError("the engine of run `%s` has not finished canceling it after %g s (it was asked to: `%s`); "
                           "`sprocket status %s` shows where it is (an engine that died unseen is taken for gone after "
                           "server.orphan_timeout_minutes: cancel it again then)" % (run["name"], timeout, os.path.join(
                               out_dir, run["directory"], CANCEL_REQUEST), run["name"]))
        time.sleep(0.25)


def cancel_dead_run(store, out_dir, run, config, log):
    """Cancel the jobs of a run whose engine is gone and of the runs it adopted in turn (also those
    not recorded yet: found below their run directories), with one call per backend (on Slurm, with
    the successor head jobs of their hand-offs), and mark it `canceled` (the run, its tasks and
    attempts); returns how many jobs were stopped or asked to. Jobs that run on the engine's host
    (local, containers) can only be canceled there: RunError on another host."""
    import socket

    chain, before = [RunRef(run["id"], run["directory"])], store.run_adopted_by(run["id"])
    while before is not None and before not in chain:
        chain.append(before)
        before = store.run_adopted_by(before.id)
    ids = [r.id for r in chain]
    run_dirs = [os.path.join(out_dir, r.directory) for r in chain if r.directory]
    calls = [(r, c) for r in chain for c in store.call_states(r.id)]
    open_calls = [(r, c) for r, c in calls if c["status"] in ("orphaned", "running", "pending", "initializing",
                                                               "localizing")]
    heads = [h["successor_job_id"] for h in store.handoffs_of(ids) if h["successor_job_id"]]
    names = sorted({c["backend"] for _, c in calls}) or [config.backend()[0]]  # (none recorded: the configured one)
    context, engine = RunContext(run_settings(config), log), store.engine_of(run["id"])
    stopped = 0
    for name in names:
        mine = [(r, c) for r, c in open_calls if c["backend"] == name]
        settings = _backend_settings(config, name)
        if settings is None:
            raise RunError("the jobs of run `%s` ran on the backend `%s`, which this configuration does not define: "
                           "give the run's configuration with `-c` (its jobs: %s)" % (
                               run["name"], name, ", ".join(c["job_id"] or str(c["process_group"]) for _, c in mine)))
        backend = BACKENDS[settings["type"]]
        if backend.jobs_on_engine_host and engine and engine.host != socket.gethostname():
            raise RunError("the tasks of run `%s` ran on host `%s` (the %s backend): only there can they be canceled; "
                           "run `sprocket cancel %s` on `%s`" % (run["name"], engine.host, name, run["name"], engine.host))
        attempts = [Adoptable(c["key"], c["attempt"], os.path.normpath(os.path.join(out_dir, r.directory, c["directory"])),
                              c["job_id"], c["cache_key"], c["process_group"], c["process_started"]) for r, c in mine]
        if issubclass(backend, SlurmApptainerBackend):
            stopped += backend.cancel_dead(context, settings, attempts, run_dirs, heads)
            heads = []
        else:
            stopped += backend.cancel_dead(context, settings, attempts, run_dirs)
    if heads:  # the run's tasks ran elsewhere, its head jobs on Slurm
        stopped += SlurmApptainerBackend.cancel_dead(context, None, [], [], heads)
    store.mark_canceled(run["id"], "canceled by `sprocket cancel` after its engine was gone")
    return stopped


def cmd_retry(args):
    """`retry RUN [INPUTS]`: `run` of the run's document and target on the inputs it recorded,
    INPUTS on top, in its output directory, with the call cache on whatever the configuration
    says; what completed in it (or still runs, if its engine is gone) is followed, not run again
    (Run's retry_of), so only what failed or never ran runs. `retries` records which run it retries."""
    store, out_dir = open_store(args, args.run)
    try:
        run = carried_on(store, find_run(store, out_dir, args.run))
        # (a TestRun has no fingerprint: every `run` has one)
        test_run = run["target"] == "test" and not store.query("SELECT 1 FROM run_fingerprints WHERE run_id = ?",
                                                               (run["id"],))
    finally:
        store.close()
    if run["status"] in _LIVE_RUN_STATES:
        raise RunError("run `%s` is still %s: wait for it to end, or cancel it first (`sprocket cancel %s`)" % (
            run["name"], run["status"], run["name"]))
    if test_run:
        raise RunError("run `%s` is a `sprocket test` run: test runs cannot be retried; run `sprocket test` again"
                       % run["name"])
    run_args, _ = build_parser().parse_known_args(["run", run["source"]])
    for k in ("config", "skip_config_search", "stderr_level"):
        setattr(run_args, k, getattr(args, k))
    run_args.target, run_args.output_dir, run_args.inputs = run["target"], out_dir, args.inputs
    run_args.retry_of = run
    print("retrying run `%s` (%s) of `%s`" % (run["name"], run["status"], run["target"]), file=sys.stderr)
    return cmd_run(run_args)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text):
    """`7d`, `12h`, `1d12h`, `90m`, `30s`, `2w`: seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text.strip().replace(" ", ""):
        raise InputError("--older-than %s: a duration is numbers with a unit each (s, m, h, d, w), e.g. 7d, 12h or "
                         "1d12h" % json_dumps(text))
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def clean_choice(store, runs, keep_last, older_than):
    """(the runs whose work goes, [(a run left, why)]): finished runs (an orphaned one counts once
    a finished run adopted it), beyond the newest `keep_last` or finished more than `older_than`
    seconds ago. Live runs, and orphaned ones whose jobs may still run, are never chosen."""
    by_id = {r["id"]: r for r in runs}
    retried_by = {x["retry_of"]: x["run_id"] for x in store.query("SELECT run_id, retry_of FROM retries")}
    finished, left = [], []
    for r in runs:  # newest first
        end, seen = r["id"], set()
        while by_id[end]["status"] == "orphaned" and store.adopter_of(end) in by_id and end not in seen:
            seen.add(end)
            end = store.adopter_of(end)
        retry = by_id.get(retried_by.get(r["id"]))
        problem = run_directory_problem(r, runs) if r["directory"] else None
        if problem:
            left.append((r, problem))
        elif retry is not None and retry["status"] not in _ENDED_RUN_STATES:  # it follows this run's attempts
            left.append((r, "run `%s` retries it and has not ended" % retry["name"]))
        elif by_id[end]["status"] in _ENDED_RUN_STATES and r["directory"]:
            finished.append(r)
        elif end != r["id"]:
            left.append((r, "run `%s` carries it on" % by_id[end]["name"]))
        elif r["status"] == "orphaned":
            left.append((r, "its engine is gone but its jobs may still run: `sprocket cancel %s` first" % r["name"]))
    if keep_last is not None:
        return finished[keep_last:], left
    now = time.time()
    return [r for r in finished if now - _container_time(r["completed_at"] or r["started_at"]) > older_than], left


def run_directory_problem(run, runs):
    """Why `clean` must not take the directory of `run` (a `runs` row) for a run directory, or
    None: a run's is `runs/<target>/<directory>` (make_run_dir's, a `sprocket test` run's too), and
    holds no other run's (a row edited to `runs/wf` would hold them all)."""
    d = run["directory"]
    parts = d.split("/")
    if len(parts) != 3 or parts[0] != "runs" or any(p in ("", ".", "..") for p in parts):
        return "its directory `%s` is not a run directory (runs/<target>/<directory>)" % d
    other = next((o for o in runs if o["id"] != run["id"] and o["directory"] and (
        posixpath.normpath(o["directory"]) + "/").startswith(d + "/")), None)
    if other is not None:
        return "its directory `%s` holds the directory of run `%s`" % (d, other["name"])
    return None


def recorded_json(run, column):
    """A run's `inputs` or `outputs` as sprocket.db keeps them (None: none); a record that is not
    JSON is a RunError that names the run."""
    try:
        value = json.loads(run[column]) if run[column] else None
        if value is not None and not isinstance(value, dict):
            raise ValueError("not an object")
        return value
    except ValueError as e:
        raise RunError("the %s of run `%s` recorded in sprocket.db are not a JSON object (%s): the record was damaged; "
                       "nothing was changed" % (column, run["name"], e))


def kept_paths(store, out_dir, kept_runs, cache_dir):
    """KeptPaths of what a run that keeps its work, the call cache or an index uses: the paths in
    the kept runs' inputs and outputs (outputs.json and sprocket.db), in each call cache entry,
    and what the links of OUT/index lead to."""
    paths = []
    for r in kept_runs:
        for column in ("inputs", "outputs"):
            paths += json_paths(recorded_json(r, column))
        try:
            with open(os.path.join(out_dir, r["directory"] or "", "outputs.json")) as f:
                paths += json_paths(json.load(f))
        except (OSError, ValueError):
            pass
    for entry in glob.glob(os.path.join(glob.escape(cache_dir), "*.json")):
        try:
            with open(entry) as f:
                data = json.load(f)
            paths += list(data.get("files") or ()) + list(json_paths(data.get("outputs")))
        except (OSError, ValueError, AttributeError):
            continue
    for dirpath, dirnames, filenames in os.walk(os.path.join(out_dir, "index")):
        paths += [os.path.realpath(os.path.join(dirpath, n)) for n in dirnames + filenames
                  if os.path.islink(os.path.join(dirpath, n))]
    return KeptPaths(paths, os.path.realpath(out_dir))


def clean_run(store, run, root, kept, dry_run):
    """Empty the work/ and tmp/ directories of one run (`root`: the real output directory), saying
    each, and record them in `cleanups`; returns the run's CleanResult (None: the run was left)."""
    run_dir = os.path.realpath(os.path.join(root, run["directory"]))
    done = CleanResult(0, 0, 0)
    if not run_dir.startswith(root + "/"):
        print("left run `%s`: its directory `%s` is not inside the output directory" % (run["name"], run_dir),
              file=sys.stderr)
        return None
    if len(os.path.relpath(run_dir, root).split("/")) != 3:  # a link in the way leads above the run's own
        print("left run `%s`: its directory leads to `%s`, not a run directory" % (run["name"], run_dir), file=sys.stderr)
        return None
    removed = []
    for top in work_directories(run_dir):
        got = remove_work(top, root, kept, dry_run)
        if not got.files and got.kept:  # what is left is kept (a clean before took the rest)
            continue
        done = CleanResult(*(a + b for a, b in zip(done, got)))
        removed.append(os.path.relpath(top, root))
        verb = ("would empty" if dry_run else "emptied") if got.kept else "would remove" if dry_run else "removed"
        print("%s %s (%d file(s), %s)%s" % (verb, removed[-1], got.files, _human_bytes(got.bytes), (
            "; kept %d file(s) that a kept run, the call cache or an index uses" % got.kept) if got.kept else ""))
    if removed and not dry_run:
        store.record_cleanup(run["id"], removed, done.bytes)
    return done


def cmd_clean(args):
    """`clean`: empty the work/ and tmp/ directories (work_directories) of the finished runs chosen
    (clean_choice), but the files a kept run, the call cache or an index uses; say what goes and
    the bytes freed, and record it in `cleanups` (report.html says so)."""
    config = load_config(args.config, args.skip_config_search)
    older_than = parse_duration(args.older_than) if args.older_than is not None else None
    if args.keep_last is not None and args.keep_last < 0:
        raise InputError("--keep-last %d: give a number of runs >= 0" % args.keep_last)
    store, out_dir = open_store(args)
    total, cleaned = CleanResult(0, 0, 0), 0
    try:
        with CleanLock(out_dir, exclusive=True):  # no run records its inputs meanwhile: what is kept stays true
            runs = store.runs()
            chosen, left = clean_choice(store, runs, args.keep_last, older_than)
            for r, why in left:
                print("left run `%s`: %s" % (r["name"], why), file=sys.stderr)
            ids = {r["id"] for r in chosen}
            kept = kept_paths(store, out_dir, [r for r in runs if r["id"] not in ids], CallCache(config, None, None).dir)
            for r in reversed(chosen):  # oldest first
                done = clean_run(store, r, os.path.realpath(out_dir), kept, args.dry_run)
                if done is not None:
                    cleaned += 1
                    total = CleanResult(*(a + b for a, b in zip(total, done)))
    finally:
        store.close()
    print("%s %d file(s) of %d run(s): %s (%d bytes) %s" % (
        "would remove" if args.dry_run else "removed", total.files, cleaned, _human_bytes(total.bytes), total.bytes,
        "would be freed" if args.dry_run else "freed"))
    return 0


_LAUNCHER_MARK = "# A launcher written by `sprocket.py install`"


def cmd_install(args):
    """`install DIR`: sprocket.py, its bytecode for the running Python, and a `sprocket` launcher
    that imports it, in DIR. A script is compiled on every start (0.15 s for this file); an
    imported module is read from its .pyc."""
    import py_compile

    source = os.path.abspath(__file__)
    if not (source.endswith(".py") and os.path.isfile(source)):
        raise InputError("install copies sprocket.py: run `python3 sprocket.py install DIR` (not from %s)" % source)
    if not sys.executable or re.search(r"\s", sys.executable):
        raise InputError("the launcher's `#!` line names this Python, and its path `%s` cannot be one: run install "
                         "with a Python whose path has no spaces" % sys.executable)
    target = os.path.abspath(args.dir)
    launcher = os.path.join(target, "sprocket")
    if os.path.exists(target) and not os.path.isdir(target):
        raise InputError("cannot install into `%s`: it is not a directory" % args.dir)
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as e:
        raise InputError("cannot install into `%s`: %s" % (args.dir, e.strerror or e))
    if not os.access(target, os.W_OK | os.X_OK):
        raise InputError("cannot install into `%s`: the directory is not writable" % args.dir)
    if os.path.lexists(launcher) and not _is_launcher(launcher):
        raise InputError("`%s` exists and is not a launcher written by `sprocket.py install`: remove it, or "
                         "install into another directory" % launcher)
    dest = os.path.join(target, "sprocket.py")
    text = ("#!%s\n%s; it imports %s, compiled in __pycache__/.\n"
            "import sys\n\nsys.path.insert(0, %r)\nimport sprocket  # noqa: E402\n\nsys.exit(sprocket.main())\n"
            % (sys.executable, _LAUNCHER_MARK, dest, target))
    try:
        if not (os.path.exists(dest) and os.path.samefile(source, dest)):
            with open(source, "rb") as f:
                write_replacing(dest, f.read(), 0o666)
        # A hash-checked .pyc stays valid when the directory is copied (a timestamp would not).
        pyc = os.path.join(target, "__pycache__", "sprocket.%s.pyc" % sys.implementation.cache_tag)
        py_compile.compile(dest, pyc, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        write_replacing(launcher, text.encode("utf-8"), 0o777)
    except (OSError, py_compile.PyCompileError) as e:
        raise InputError("cannot install into `%s`: %s" % (args.dir, getattr(e, "strerror", None) or e))
    print(launcher)
    return 0


def _is_launcher(path):
    """Did `sprocket.py install` write this file (so that it may replace it)?"""
    try:
        with open(path, "rb") as f:
            lines = f.read(4096).split(b"\n")
    except OSError:
        return False
    return len(lines) > 1 and lines[1].startswith(_LAUNCHER_MARK.encode())


def default_config_text():
    lines = ["# sprocket.toml: every setting with its default (sprocket config init)"]
    section = None
    keys = sorted((k for k, v in CONFIG_SCHEMA.items() if "*" not in k and v.default is not None),
                  key=lambda k: (k.rpartition(".")[0], k))
    for key in keys:
        table, _, name = key.rpartition(".")
        if table != section:
            lines.append("\n[%s]" % table)
            section = table
        lines.append("# %s" % CONFIG_SCHEMA[key].help)
        lines.append("%s = %s" % (name, _toml_value(CONFIG_SCHEMA[key].default)))
    return "\n".join(lines)


def set_diagnostic_style(args):
    """--color and -m/--report-mode, else common.color and common.report_mode."""
    color, mode = getattr(args, "color", None), getattr(args, "report_mode", None)
    if color is None or mode is None:
        try:
            config = load_config(args.config, args.skip_config_search)
        except WdlError:  # the command itself reports it
            config = None
        color = color or (config.get("common.color") if config else CONFIG_SCHEMA["common.color"].default)
        mode = mode or (config.get("common.report_mode") if config else CONFIG_SCHEMA["common.report_mode"].default)
    DIAGNOSTIC_STYLE["color"] = color == "always" or color == "auto" and sys.stderr.isatty() and "NO_COLOR" not in os.environ
    DIAGNOSTIC_STYLE["one_line"] = mode == "one-line"


def open_std_fds():
    """Standard descriptors closed by the caller (`2>&-`: cron, daemons) are opened on /dev/null:
    else the next file opened (sprocket.db, a log) takes the number and receives what is printed.
    So is a stdout or stderr open only for reading (what a shell wrapper may leave for `2>&-`)."""
    import fcntl

    fd = os.open(os.devnull, os.O_RDWR)
    while fd <= 2:
        fd = os.open(os.devnull, os.O_RDWR)
    for std in (1, 2):
        if fcntl.fcntl(std, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            os.dup2(fd, std)
    os.close(fd)
    for name, std in (("stdout", 1), ("stderr", 2)):
        if getattr(sys, name) is None:  # Python saw it closed at start-up
            setattr(sys, name, open(std, "w", closefd=False))


def raise_recursion_limit():
    """Valid input can be deeper than Python's 1,000 frames: a flat `1 + 1 + ...` of 400 terms is
    a tree that deep, and each pass walks it with a few frames a level. Allowed is what the C
    stack holds (Python < 3.11 uses it for every call; 1 KB a frame is safe), at most 10,000;
    beyond, input is "nested too deeply", never a crash."""
    import resource

    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    frames = 10000 if stack == resource.RLIM_INFINITY else min(10000, stack // 1024)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), frames))


def main(argv=None):
    """The `sprocket` command. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    open_std_fds()
    raise_recursion_limit()
    try:
        args, extra = build_parser().parse_known_args(argv)
        # Inputs may follow options (`run x.wdl --target t a=1`), which argparse leaves over.
        if extra and (getattr(args, "command", None) not in ("run", "validate", "retry") or any(x.startswith("-") for x in extra)):
            raise UsageError("unrecognized arguments: %s" % " ".join(extra))
        if extra:
            args.inputs.extend(extra)
        verbose, quiet = getattr(args, "verbose", 0), getattr(args, "quiet", 0)
        args.stderr_level = {-1: 10, 0: 20, 1: 30, 2: 40}.get(max(-1, min(2, 1 - verbose + quiet)), 40)
        args.config = getattr(args, "config", [])
        args.argv = list(argv)  # (a head job runs the same command: run --submit)
        args.skip_config_search = getattr(args, "skip_config_search", False)
    except UsageError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    except SystemExit as e:  # --help and --version
        return e.code or 0
    if args.command is None:
        build_parser().print_help(sys.stderr)
        return 2
    try:
        set_diagnostic_style(args)
        return {"check": cmd_check, "lint": cmd_check, "explain": cmd_explain, "format": cmd_format,
                "fmt": cmd_format, "completions": cmd_completions, "run": cmd_run, "validate": cmd_validate,
                "inputs": cmd_inputs, "config": cmd_config, "runs": cmd_runs, "report": cmd_report,
                "doctor": cmd_doctor, "install": cmd_install, "status": cmd_status, "cancel": cmd_cancel,
                "retry": cmd_retry, "clean": cmd_clean, "test": cmd_test, "dev": cmd_test}[args.command](args)
    except WdlErrors as e:
        for err in e.errors:
            print(format_diagnostic(err.message, err.span), file=sys.stderr)
        return 1
    except WdlError as e:
        print(format_diagnostic(e.message, e.span), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sprocket ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the system refused (a full or read-only file system, a file not ours)
        print("error: %s" % os_error_text(e), file=sys.stderr)
        return 1
    except Exception as e:  # a bug in this program, never the user's fault
        print("internal error (a bug in sprocket.py, please report it): %s: %s" % (type(e).__name__, e), file=sys.stderr)
        if os.environ.get("SPROCKET_DEBUG"):
            import traceback

            traceback.print_exc()
        return 70


if __name__ == "__main__":
    sys.exit(main())
