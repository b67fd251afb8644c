"""`sprocket.py check` on real production WDL: every `.wdl` file under
../shared/workflows/realworld/ and ../shared/realworld-more/ (see their README.md and
MANIFEST.tsv) must check clean.

"Checks clean" means exit status 0; warnings are allowed. One test per repository directory, so
a failure names the repository and lists every file in it that did not check clean, with its
first error. Exceptions:

* files listed in tests/realworld_known.txt (``relative/path/from/shared<TAB>reason``) are
  expected to fail; the test also fails when a listed file starts passing, so the list stays true;
* files that import by ``http://``/``https://`` URL, directly or through their (local) imports,
  are skipped: the tests use no network. They are found by scanning import statements, and
  their number is pinned per corpus (URL_IMPORTERS) so a change in shared/ or in the scan is
  noticed;
* Cromwell's own centaur tests: a workflow whose imports its ``.test`` file supplies (Cromwell
  gets them as a zip, laid out flat) is checked with them staged beside it; and a workflow that
  only ``workflowfailure``/``submitfailure`` tests name is Cromwell's deliberately invalid input,
  so it may fail (it must still fail cleanly: one diagnostic, no traceback).

The checks run in-process (the ``check`` fixture, i.e. ``sprocket.main``), one call per file;
the whole corpus takes a few seconds. sprocket.py caches checked documents per process
(``_DOCUMENTS``), so shared imports are checked once.
"""

import re
from pathlib import Path

import pytest

from conftest import REPO, shared_dir
from test_centaur import Case, HoconError

KNOWN_FILE = REPO / "tests" / "realworld_known.txt"
KNOWN_MAX = 13  # the known list must have fewer entries than this (at most 12 real defects)

# The corpora, as paths under shared/, and their files whose import graph reaches an http(s)
# URL: (directly or not, directly). In workflows/realworld 21 import one directly, 20 more (the
# wilds pipelines' testrun*.wdl and two cromwell recursive_imports_no_subwf files) only through
# a local import of such a file; in realworld-more, 7 Human Pangenome files import one directly.
CORPORA = {"workflows/realworld": (41, 21), "realworld-more": (7, 7)}

_SHARED = shared_dir()
REALWORLD = _SHARED / "workflows" / "realworld" if _SHARED else None

# `import "uri"` (or 'uri') at the start of a line; Python `import x` lines in command
# sections never have a quoted string there.
IMPORT_RE = re.compile(r"""^[ \t]*import[ \t]+(["'])(.*?)\1""", re.M)
URL_RE = re.compile(r"(?i)^https?://")


def _skip_reason():
    if _SHARED is None:
        return ("shared/ reference directory not found (expected ../shared next to the repo, "
                "or set SPROCKET_SHARED)")
    for corpus in CORPORA:
        if not (_SHARED / corpus).is_dir():
            return "%s not found (shared/ has no such real-world WDL corpus)" % (_SHARED / corpus)
    return None


SKIP_REASON = _skip_reason()


def _repos():
    """(corpus, repository directory) pairs, one test each."""
    if SKIP_REASON:
        return [pytest.param(None, None, id="no-realworld", marks=pytest.mark.skip(reason=SKIP_REASON))]
    return [pytest.param(corpus, p.name, id="%s/%s" % (corpus.split("/")[-1], p.name))
            for corpus in CORPORA for p in sorted((_SHARED / corpus).iterdir())
            if p.is_dir() and not p.name.startswith(".")]


def _wdl_files(root):
    return sorted(p for p in root.rglob("*.wdl") if p.is_file())


def _imports(path):
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [m.group(2) for m in IMPORT_RE.finditer(text)]


_URL_MEMO = {}


def imports_url(path, _stack=()):
    """True when ``path`` imports an http(s) URL, directly or through its local imports."""
    key = Path(path).resolve()
    if key in _URL_MEMO:
        return _URL_MEMO[key]
    if key in _stack:  # an import cycle: the check reports it; no URL on this path
        return False
    found = False
    for uri in _imports(key):
        if URL_RE.match(uri):
            found = True
            break
        if uri.startswith("file://"):
            uri = uri[len("file://"):]
        if imports_url(key.parent / uri, _stack + (key,)):
            found = True
            break
    _URL_MEMO[key] = found
    return found


def imports_url_directly(path):
    return any(URL_RE.match(uri) for uri in _imports(Path(path)))


def read_known():
    """The known list: a list of (line number, relative path, reason)."""
    entries = []
    if not KNOWN_FILE.is_file():
        return entries
    for n, line in enumerate(KNOWN_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rel, _, reason = line.partition("\t")
        entries.append((n, rel.strip(), reason.strip()))
    return entries


def _first_error(stderr):
    lines = [x for x in stderr.splitlines() if x.strip()]
    for x in lines:
        if ": error: " in x or x.startswith("error:") or "internal error" in x:
            return x
    return lines[0] if lines else "(no output)"


CENTAUR = "broadinstitute__cromwell/centaur/src/main/resources"
FAILURE_FORMATS = ("workflowfailure", "submitfailure")
_CENTAUR_MEMO = {}


def centaur_cases():
    """{workflow path: [Case, ...]} for every centaur .test file that names a workflow."""
    if not _CENTAUR_MEMO:
        for test in sorted((REALWORLD / CENTAUR).glob("*/*.test")):
            try:
                case = Case(test)
            except (HoconError, OSError, UnicodeDecodeError):
                continue
            _CENTAUR_MEMO.setdefault(case.workflow.resolve(), []).append(case)
    return _CENTAUR_MEMO


def centaur_verdict(path, check, tmp_dir):
    """For a centaur workflow that failed to check: "passed" when it checks clean with the
    imports its .test supplies, "invalid" when only failure tests name it, else None."""
    cases = centaur_cases().get(Path(path).resolve(), [])
    for n, case in enumerate(c for c in cases if c.imports):
        wdl, _ = case.stage(tmp_dir / ("staged%d" % n))
        if check(wdl).returncode == 0:
            return "passed"
    formats = {str(c.doc.get("testFormat", "")).lower() for c in cases}
    if formats and formats <= set(FAILURE_FORMATS):
        return "invalid"
    return None


@pytest.mark.parametrize("corpus,repo_dir", _repos())
def test_realworld_repo_checks_clean(corpus, repo_dir, check, tmp_path):
    root = _SHARED / corpus / repo_dir
    known = {rel: reason for _, rel, reason in read_known()}
    unexpected, now_passing, skipped, passed, invalid = [], [], 0, 0, 0
    files = _wdl_files(root)
    assert files, "no .wdl files under %s" % root
    for path in files:
        rel = path.relative_to(_SHARED).as_posix()
        if imports_url(path):
            skipped += 1
            continue
        proc = check(path)
        verdict = None
        if proc.returncode != 0 and path.is_relative_to(REALWORLD / CENTAUR):
            assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
            verdict = centaur_verdict(path, check, tmp_path / rel)
        if verdict == "invalid":
            invalid += 1
        elif proc.returncode == 0 or verdict == "passed":
            passed += 1
            if rel in known:
                now_passing.append(rel)
        elif rel not in known:
            err = _first_error(proc.stderr).replace(str(_SHARED) + "/", "")
            unexpected.append("%s (exit %s): %s" % (rel, proc.returncode, err))
    problems = []
    if unexpected:
        problems.append("%d of %d file(s) did not check clean (fix sprocket.py, or list a real defect "
                        "in tests/realworld_known.txt with a reason):\n  %s"
                        % (len(unexpected), len(files) - skipped, "\n  ".join(unexpected)))
    if now_passing:
        problems.append("listed in tests/realworld_known.txt but now check clean (remove them):\n  "
                        + "\n  ".join(now_passing))
    if problems:
        pytest.fail("%s: %d passed, %d skipped (URL imports), %d of Cromwell's invalid test inputs rejected\n%s" % (
            repo_dir, passed, skipped, invalid, "\n".join(problems)), pytrace=False)


@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_url_importer_count(corpus):
    files = _wdl_files(_SHARED / corpus)
    direct = [p for p in files if imports_url_directly(p)]
    total = [p for p in files if imports_url(p)]
    want_total, want_direct = CORPORA[corpus]
    assert len(direct) == want_direct, "files importing an http(s) URL directly:\n  " + "\n  ".join(
        p.relative_to(_SHARED).as_posix() for p in direct)
    assert len(total) == want_total, "files importing an http(s) URL, directly or not:\n  " + "\n  ".join(
        p.relative_to(_SHARED).as_posix() for p in total)


def test_known_list_is_short_and_explained():
    entries = read_known()
    assert len(entries) < KNOWN_MAX, (
        "tests/realworld_known.txt has %d entries; it must stay under %d" % (len(entries), KNOWN_MAX))
    seen = set()
    for n, rel, reason in entries:
        assert reason, "realworld_known.txt line %d (%s): no reason (format: path<TAB>reason)" % (n, rel)
        assert rel not in seen, "realworld_known.txt line %d: %s is listed twice" % (n, rel)
        seen.add(rel)


@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_known_list_names_checkable_files():
    for n, rel, _ in read_known():
        path = _SHARED / rel
        assert path.is_file(), "realworld_known.txt line %d: %s does not exist" % (n, path)
        assert not imports_url(path), (
            "realworld_known.txt line %d: %s imports by URL, so the test skips it; do not list it" % (n, rel))
