"""`check` over real WDL: every conformance case that is meant to succeed must check clean, the
cases that fail for a static reason must be rejected, and the production hifi-human-wgs
workflows (WDL 1.0) must check clean with all their imports.

The reference corpus lives in ../shared (or $SPROCKET_SHARED); without it these tests skip.
"""

import json
import re

import pytest

from conftest import assert_ok, assert_sane, check_in_process, diagnostics, run_check_subprocess, shared_dir

SHARED = shared_dir()
CASES_DIR = SHARED / "conformance" / "cases" if SHARED else None
NO_SHARED = "shared/ reference directory not found (expected ../shared next to the repo, or set SPROCKET_SHARED)"

# Cases with "fail": true whose failure the spec makes a *static* error (a check error), as
# opposed to a run-time failure (empty select_first, missing map key, bad return code, ...).
STATIC_FAILURES = {
    "bash_comment_fail_task": "unknown name `greeting` in the command",
    "bash_variables_fail_task": "unknown name `s` in a ${} placeholder",
    "call_subworkflow_fail": "a workflow cannot set a nested input of a subworkflow",
    "circular": "circular declarations",
    "coercion_fail": "bare expression statement / File is not a String",
    "illegal_access_fail": "no member `x`; `baz` is not an output",
    "incomplete_struct_fail": "struct literal misses a required member",
    "private_declaration_fail": "private declaration used as call input and output",
    "select_first_empty_fail": "bare expression statement in a workflow",
    "select_first_only_none_fail": "bare expression statement in a workflow",
    "test_as_map_fail": "Map assigned to Boolean",
    "test_prefix_fail": "prefix needs an array of primitives",
    "test_suffix_fail": "suffix needs an array of primitives",
}


def _cases():
    if CASES_DIR is None or not CASES_DIR.is_dir():
        return []
    found = []
    for case_json in sorted(CASES_DIR.glob("*/*/case.json")):
        meta = json.loads(case_json.read_text())
        wdl = case_json.parent / meta.get("wdl", case_json.parent.name + ".wdl")
        found.append((case_json.parent.parent.name + "/" + case_json.parent.name, wdl, meta))
    return found


CASES = _cases()
PASSING = [(cid, wdl) for cid, wdl, meta in CASES if not meta.get("fail")]
STATIC_FAIL = [(cid, wdl) for cid, wdl, meta in CASES
               if meta.get("fail") and cid.split("/")[1] in STATIC_FAILURES]


def _params(items):
    if not items:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=NO_SHARED), id="no-shared")]
    return [pytest.param(cid, wdl, id=cid) for cid, wdl in items]


def test_corpus_is_complete():
    if SHARED is None:
        pytest.skip(NO_SHARED)
    versions = {cid.split("/")[0] for cid, _, _ in CASES}
    assert {"1.1", "1.2", "1.3"} <= versions, versions
    assert len(PASSING) >= 250, len(PASSING)
    missing = set(STATIC_FAILURES) - {cid.split("/")[1] for cid, _ in STATIC_FAIL}
    assert not missing, "static-failure cases not found: %s" % sorted(missing)


@pytest.mark.parametrize("cid, wdl", _params(PASSING))
def test_case_checks_clean(cid, wdl):
    proc = check_in_process(wdl)
    assert_sane(proc)
    assert proc.returncode == 0 and not diagnostics(proc.stderr), (
        "conformance case %s (fail: false) must check clean:\n%s" % (cid, proc.stderr))


@pytest.mark.parametrize("cid, wdl", _params(STATIC_FAIL))
def test_static_failure_is_rejected(cid, wdl):
    proc = check_in_process(wdl)
    assert_sane(proc)
    assert proc.returncode == 1 and diagnostics(proc.stderr), (
        "conformance case %s fails statically (%s); check must reject it:\n%s"
        % (cid, STATIC_FAILURES[cid.split("/")[1]], proc.stderr))


@pytest.mark.parametrize("version", ["1.1", "1.2", "1.3"])
def test_batch_per_version_on_the_command_line(version):
    """All the passing cases of one version in a single `sprocket.py check f1 f2 ...` run."""
    if SHARED is None:
        pytest.skip(NO_SHARED)
    paths = [wdl for cid, wdl in PASSING if cid.startswith(version + "/")]
    assert paths
    proc = run_check_subprocess(*paths, timeout=300)
    assert_sane(proc)
    if proc.returncode != 0:
        bad = sorted({d[0] for d in diagnostics(proc.stderr)})
        pytest.fail("check of %d %s cases exited %d; files with errors:\n  %s\n\n%s"
                    % (len(paths), version, proc.returncode, "\n  ".join(bad), proc.stderr[-5000:]))


# --------------------------------------------------------------------------------------------
# Production WDL: PacBio HiFi human WGS (WDL 1.0)
# --------------------------------------------------------------------------------------------

def _entry_files():
    if SHARED is None:
        return []
    base = SHARED / "workflows" / "hifi-human-wgs"
    readme = base / "README.md"
    if not readme.is_file():
        return []
    return [base / m.group(1) for m in re.finditer(r"^- (workflows/\S+\.wdl)\s*$", readme.read_text(), re.M)]


ENTRIES = _entry_files()


def test_hifi_entry_list_found():
    if SHARED is None:
        pytest.skip(NO_SHARED)
    assert len(ENTRIES) >= 7, ENTRIES
    for path in ENTRIES:
        assert path.is_file(), path


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in ENTRIES]
                         or [pytest.param(None, marks=pytest.mark.skip(reason=NO_SHARED), id="no-shared")])
def test_hifi_entry_checks_clean(path):
    proc = run_check_subprocess(path, timeout=300)
    assert_ok(proc)
    assert "error:" not in proc.stderr, proc.stderr


def test_hifi_all_entries_in_one_run():
    if not ENTRIES:
        pytest.skip(NO_SHARED)
    proc = run_check_subprocess(*ENTRIES, timeout=300)
    assert_ok(proc)


def test_hifi_every_file_checks_clean_on_its_own():
    """Each of the 29 files (not only the entry points) is a valid WDL 1.0 document."""
    if SHARED is None:
        pytest.skip(NO_SHARED)
    files = sorted((SHARED / "workflows" / "hifi-human-wgs").rglob("*.wdl"))
    assert len(files) >= 20
    failures = []
    for path in files:
        proc = check_in_process(path)
        assert_sane(proc)
        if proc.returncode != 0:
            failures.append("%s\n%s" % (path, proc.stderr[-2000:]))
    assert not failures, "\n\n".join(failures)
