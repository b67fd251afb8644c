"""The spec's own examples (../shared/conformance) run through `sprocket.py run`.

Every case must pass, or be listed in tests/conformance_known.txt with its reason; a listed case
that passes is reported too, so the list stays true.
"""

import shlex

import pytest

from conftest import REPO, run_conformance, sprocket_argv


def known_failures():
    known = {}
    for line in (REPO / "tests" / "conformance_known.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            case, _, reason = line.partition("  ")
            known[case.strip()] = reason.strip()
    return known


def test_known_list_has_reasons():
    for case, reason in known_failures().items():
        assert reason, "%s is listed without a reason" % case


@pytest.mark.slow
def test_conformance_corpus(tmp_path):
    results = run_conformance(tmp_path, shlex.join(sprocket_argv()))
    known = known_failures()
    unexpected = ["%s: %s %s" % (r["id"], r["status"], r["reason"]) for r in results
                  if r["status"] in ("FAIL", "ERROR") and r["id"] not in known]
    fixed = [r["id"] for r in results if r["status"] == "PASS" and r["id"] in known]
    passed = sum(r["status"] == "PASS" for r in results)
    print("conformance: %d passed of %d run" % (passed, len(results)))
    assert not unexpected, "cases that fail and are not in conformance_known.txt:\n" + "\n".join(unexpected)
    assert not fixed, "cases listed in conformance_known.txt that now pass (remove them): %s" % fixed
