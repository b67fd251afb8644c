"""The layout of sprocket.py, read from its source (nothing is run).

What is promised (the module docstring, CONTRIBUTING in the README):

* the module is cut into numbered sections, each opened by a banner -- a ``# N. Title`` line
  between two ``# ====`` lines -- and data flows top to bottom: no section uses a top-level
  name that a later section defines;
* the module docstring's table of contents lists every section banner, with the same number
  and title, in the same order;
* sprocket.py imports only the standard library (it is copied alone onto HPC hosts).
"""

import ast
import collections
import re
import sys
import textwrap

from conftest import SPROCKET

SOURCE = SPROCKET.read_text(encoding="utf-8")

Section = collections.namedtuple("Section", "number title line")
# a use of `name` at `line` in section `section`, whose first module-level binding is in the
# later section `def_section` at `def_line`
ForwardRef = collections.namedtuple("ForwardRef", "line name section def_section def_line")

BANNER_RE = re.compile(r"# (\d+)\. (\S.*?)\s*$")
TOC_ENTRY_RE = re.compile(r"^( {1,8})(\d+)\. (\S.*?)(?: {2,}|$)")


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def banners(source):
    """Every section banner: a `# N. Title` line right after a `# ====` line."""
    lines = source.split("\n")
    found = []
    for i in range(1, len(lines)):
        m = BANNER_RE.match(lines[i])
        if m and lines[i - 1].startswith("# ===="):
            found.append(Section(int(m.group(1)), m.group(2), i + 1))
    return found


def section_of(sections, line):
    """The number of the section holding ``line`` (0: the preamble before the first banner)."""
    number = 0
    for s in sections:
        if s.line <= line:
            number = s.number
    return number


# --------------------------------------------------------------------------------------------
# forward references: a name used in a section before the one that defines it
# --------------------------------------------------------------------------------------------


def _stored_names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}


def module_bindings(tree, sections):
    """name -> (section, line) of the first module-level binding of each top-level name (defs,
    classes, assignments, imports, and those inside a top-level `if`/`try`)."""
    bound = {}

    def bind(name, node):
        bound.setdefault(name, (section_of(sections, node.lineno), node.lineno))

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(node.name, node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                for name in sorted(_stored_names(target)):
                    bind(name, node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bind((alias.asname or alias.name).split(".")[0], node)
        elif isinstance(node, (ast.If, ast.Try)):
            for n in ast.walk(node):
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    bind(n.name, n)
                elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    bind(n.id, n)
                elif isinstance(n, (ast.Import, ast.ImportFrom)):
                    for alias in n.names:
                        bind((alias.asname or alias.name).split(".")[0], n)
    return bound


def _local_names(scope):
    """The names a function, lambda or comprehension binds for itself (minus its `global`s)."""
    names, declared_global = set(), set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = scope.args
        for arg in a.args + a.kwonlyargs + getattr(a, "posonlyargs", []) + [a.vararg, a.kwarg]:
            if arg is not None:
                names.add(arg.arg)
        body = scope.body if isinstance(scope.body, list) else [scope.body]
    else:  # a comprehension: its targets
        body = scope.generators
    for root in body:
        for n in ast.walk(root):
            if isinstance(n, ast.Global):
                declared_global.update(n.names)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                names.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                names.update((al.asname or al.name).split(".")[0] for al in n.names)
            elif isinstance(n, ast.ExceptHandler) and n.name:
                names.add(n.name)
            elif isinstance(n, ast.arg):
                names.add(n.arg)
    return names - declared_global


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def forward_references(source):
    """Every load of a module-level name in a section before the section of its first binding,
    in line order. Names a function, lambda or comprehension binds itself are not the module's."""
    tree = ast.parse(source)
    sections = banners(source)
    bound = module_bindings(tree, sections)
    found = set()

    def visit(node, shadow, section):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            # decorators and defaults are evaluated in the enclosing scope
            for d in getattr(node, "decorator_list", []) + node.args.defaults + [
                    x for x in node.args.kw_defaults if x is not None]:
                visit(d, shadow, section)
            inner = shadow | _local_names(node)
            for b in (node.body if isinstance(node.body, list) else [node.body]):
                visit(b, inner, section)
            return
        if isinstance(node, _COMPREHENSIONS):
            shadow = shadow | _local_names(node)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in shadow and node.id in bound:
                def_section, def_line = bound[node.id]
                if def_section > section:
                    found.add(ForwardRef(node.lineno, node.id, section, def_section, def_line))
        for child in ast.iter_child_nodes(node):
            visit(child, shadow, section)

    for node in tree.body:
        visit(node, frozenset(), section_of(sections, node.lineno))
    return sorted(found)


def describe_forward_references(refs, sections):
    """One line per (section, name): where it is used and the later section that defines it."""
    titles = {s.number: s.title for s in sections}
    uses = collections.OrderedDict()
    for r in refs:
        uses.setdefault((r.section, r.name, r.def_section, r.def_line), []).append(r.line)
    return "\n".join(
        "  section %d (%s) uses `%s` (line %s), defined later in section %d (%s) at line %d"
        % (sec, titles.get(sec, "preamble"), name, ", ".join(map(str, lines)), dsec, titles[dsec], dline)
        for (sec, name, dsec, dline), lines in uses.items())


def test_forward_reference_checker_finds_a_use_before_its_section():
    """The checker itself: a module-level name used in section 1 and defined in section 2 is
    found (in a function body too: the rule is about reading order, not run time); a name a
    function, lambda or comprehension binds for itself is not the module's."""
    source = textwrap.dedent("""\
        # ====
        # 1. First
        # ====
        EARLY = 1
        def f(x=EARLY):
            return LATER + x
        def g(LATER):
            return LATER
        def h():
            LATER = 2
            return [LATER for LATER in range(3)], (lambda LATER: LATER)
        # ====
        # 2. Second
        # ====
        LATER = EARLY
        """)
    assert [tuple(r) for r in forward_references(source)] == [(6, "LATER", 1, 2, 15)]


def test_no_section_uses_a_name_defined_in_a_later_one():
    """Data flows top to bottom: no section of sprocket.py uses a top-level name that a later
    section defines (move the definition up, or the use down)."""
    refs = forward_references(SOURCE)
    assert not refs, "sprocket.py uses names before the section that defines them:\n" + \
        describe_forward_references(refs, banners(SOURCE))


# --------------------------------------------------------------------------------------------
# the table of contents in the module docstring
# --------------------------------------------------------------------------------------------


def table_of_contents(docstring):
    """(number, title) of each entry of the docstring's table of contents: the longest run of
    lines `   N. Title   description`, each entry followed by its more deeply indented
    continuation lines; a run ends at a blank line or any other line (so a short numbered
    list elsewhere in the docstring is not taken for the table)."""
    runs, entries, title_column = [], [], None
    for line in docstring.split("\n"):
        m = TOC_ENTRY_RE.match(line)
        if m:
            entries.append((int(m.group(2)), m.group(3)))
            title_column = m.start(3)
        elif entries and line.strip() and len(line) - len(line.lstrip(" ")) >= title_column:
            continue  # an entry's description, continued
        elif entries:
            runs.append(entries)
            entries = []
    return max(runs + [entries], key=len)


def _same_title(toc_title, banner_title):
    """The banner says the same as the table, or the table's title and then, after a colon,
    what the section holds (`17. Runs: the run directory, ...`)."""
    return banner_title == toc_title or banner_title.startswith(toc_title + ":")


def test_table_of_contents_reader_reads_entries_and_their_continuations():
    doc = textwrap.dedent("""\
        Intro.

             1. Errors          Source, Span,
                                write_replacing()
             2. Two words       the table
            10. Ten             more

             1. not the table
             2. either
        """)
    assert table_of_contents(doc) == [(1, "Errors"), (2, "Two words"), (10, "Ten")]


def test_table_of_contents_lists_every_section_banner_in_order():
    """The module docstring's table of contents names every section banner, with the same
    number and title, in the order of the file; the banners are numbered 1, 2, 3, ..."""
    sections = banners(SOURCE)
    assert [s.number for s in sections] == list(range(1, len(sections) + 1)), \
        "section banners out of sequence: %s" % [(s.number, s.line) for s in sections]
    toc = table_of_contents(ast.get_docstring(ast.parse(SOURCE), clean=False))
    assert toc, "no table of contents (`   N. Title   what it holds` lines) in the module docstring"
    problems = []
    for i in range(max(len(toc), len(sections))):
        entry = toc[i] if i < len(toc) else None
        banner = sections[i] if i < len(sections) else None
        if entry is None:
            problems.append("banner `# %d. %s` (line %d) is not in the table" % (banner.number, banner.title,
                                                                                   banner.line))
        elif banner is None:
            problems.append("the table's `%d. %s` has no banner" % entry)
        elif entry[0] != banner.number or not _same_title(entry[1], banner.title):
            problems.append("the table's `%d. %s` is banner `# %d. %s` (line %d)"
                            % (entry + (banner.number, banner.title, banner.line)))
    assert not problems, "the module docstring's table of contents is not true:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------------------------
# the standard library only
# --------------------------------------------------------------------------------------------

# sys.stdlib_module_names is new in Python 3.10; on 3.9 its 3.11 value (public names), which
# also names the modules sprocket.py imports only on newer Pythons (tomllib).
STDLIB_MODULES = getattr(sys, "stdlib_module_names", None) or frozenset("""
    __future__ abc aifc antigravity argparse array ast asynchat asyncio asyncore atexit audioop base64 bdb
    binascii bisect builtins bz2 cProfile calendar cgi cgitb chunk cmath cmd code codecs codeop collections
    colorsys compileall concurrent configparser contextlib contextvars copy copyreg crypt csv ctypes curses
    dataclasses datetime dbm decimal difflib dis distutils doctest email encodings ensurepip enum errno
    faulthandler fcntl filecmp fileinput fnmatch fractions ftplib functools gc genericpath getopt getpass
    gettext glob graphlib grp gzip hashlib heapq hmac html http idlelib imaplib imghdr imp importlib inspect
    io ipaddress itertools json keyword lib2to3 linecache locale logging lzma mailbox mailcap marshal math
    mimetypes mmap modulefinder msilib msvcrt multiprocessing netrc nis nntplib nt ntpath nturl2path numbers
    opcode operator optparse os ossaudiodev pathlib pdb pickle pickletools pipes pkgutil platform plistlib
    poplib posix posixpath pprint profile pstats pty pwd py_compile pyclbr pydoc pydoc_data pyexpat queue
    quopri random re readline reprlib resource rlcompleter runpy sched secrets select selectors shelve shlex
    shutil signal site smtpd smtplib sndhdr socket socketserver spwd sqlite3 sre_compile sre_constants
    sre_parse ssl stat statistics string stringprep struct subprocess sunau symtable sys sysconfig syslog
    tabnanny tarfile telnetlib tempfile termios textwrap this threading time timeit tkinter token tokenize
    tomllib trace traceback tracemalloc tty turtle turtledemo types typing unicodedata unittest urllib uu
    uuid venv warnings wave weakref webbrowser winreg winsound wsgiref xdrlib xml xmlrpc zipapp zipfile
    zipimport zlib zoneinfo
    """.split())


def imported_modules(source):
    """(line, top-level module) of every import anywhere in ``source`` -- statements, and
    `__import__("m")` / `importlib.import_module("m")` with a literal name; a relative import
    is reported as `.`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." if node.level else node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("__import__", "import_module"):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return sorted(found)


def test_imported_modules_sees_every_kind_of_import():
    source = textwrap.dedent("""\
        import os.path, json
        def f():
            from xml.etree import ElementTree
            import requests
            return importlib.import_module("yaml"), __import__("toml")
        from . import sibling
        """)
    assert imported_modules(source) == [(1, "json"), (1, "os"), (3, "xml"), (4, "requests"), (5, "toml"),
                                        (5, "yaml"), (6, ".")]
    assert [m for _, m in imported_modules(source) if m not in STDLIB_MODULES] == ["requests", "toml", "yaml", "."]


def test_sprocket_imports_only_the_standard_library():
    """sprocket.py is one file of standard-library Python: every import, at the top or inside a
    function, names a standard library module."""
    outside = ["%s (line %d)" % (m, line) for line, m in imported_modules(SOURCE) if m not in STDLIB_MODULES]
    assert not outside, "sprocket.py imports modules outside the standard library: " + ", ".join(outside)
