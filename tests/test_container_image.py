"""The real container runtime the tests use (issue 19): podman with runc, and the test images that
.ci/container-image builds from Debian's packages and tags with the names the spec examples and the
tests use. Also the `podman` fixture's convention: skip with the reason where podman or the image is
absent, fail under CI=true (where .ci/run must have built it).
"""

import os
import subprocess
import sys

import pytest

from conftest import REPO, SPROCKET, run_conformance
from test_conformance import known_failures

# tag -> the Ubuntu codename the tag's /etc/lsb-release names (.ci/container-image's UBUNTU_TAGS)
UBUNTU_CODENAMES = {"ubuntu:latest": "noble", "ubuntu:24.04": "noble", "ubuntu:22.04": "jammy",
                    "ubuntu:jammy": "jammy", "ubuntu:focal": "focal", "ubuntu:20.04": "focal"}


def podman_out(*args):
    proc = subprocess.run(["podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, "podman %s: exit %d: %s" % (" ".join(args), proc.returncode, proc.stdout)
    return proc.stdout


@pytest.mark.podman
def test_image_has_python3_and_python_latest_has_python(podman):
    assert podman_out("run", "--rm", podman, "python3", "-c", "print(6 * 7)").strip() == "42"
    # the spec examples' `python:latest` tasks call `python`
    assert podman_out("run", "--rm", "python:latest", "python", "-c", "print(1)").strip() == "1"


@pytest.mark.podman
@pytest.mark.parametrize("tag", sorted(UBUNTU_CODENAMES))
def test_ubuntu_tags_name_their_codename(tag):
    # runtime_container_task reads DISTRIB_CODENAME to tell which image it ran in
    out = podman_out("run", "--rm", tag, "sh", "-c", "cat /etc/*-release | grep DISTRIB_CODENAME | cut -f 2 -d =")
    assert out.strip() == UBUNTU_CODENAMES[tag]


@pytest.mark.podman
def test_container_writes_files_owned_by_the_host_user(podman, tmp_path):
    uid, gid = os.getuid(), os.getgid()
    podman_out("run", "--rm", "--user", "%d:%d" % (uid, gid), "-v", "%s:/mnt/work" % tmp_path, podman,
               "sh", "-c", "echo hi > /mnt/work/out.txt")
    st = (tmp_path / "out.txt").stat()
    assert (st.st_uid, st.st_gid) == (uid, gid)


@pytest.mark.parametrize("ci", ["", "true"])
def test_podman_fixture_skips_without_podman_and_fails_under_ci(ci, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(tmp_path)  # no podman here
    if ci:
        env["CI"] = ci
    target = "tests/test_container_image.py::test_image_has_python3_and_python_latest_has_python"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", target],
                          cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    if ci:
        assert proc.returncode == 1, proc.stdout
        assert "CI=true and real containers need podman and the test image: `podman` is not on PATH" in proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout
        assert "1 skipped" in proc.stdout
        assert "`podman` is not on PATH (build it as root with `bash .ci/container-image`)" in proc.stdout


# The cases only a container passes: the `ubuntu:focal` ones, and the container's own `/root/.bashrc`.
CONTAINER_ONLY = ("1.1/runtime_container_task", "1.2/dynamic_container_task", "1.1/relative_and_absolute_task",
                  "1.2/relative_and_absolute_task")


@pytest.mark.slow
@pytest.mark.podman
def test_the_conformance_corpus_with_podman_as_default_backend_fails_no_case_that_passes_locally(tmp_path):
    """Every case passes in containers but the spec defects of tests/conformance_known.txt (the local
    run's only failures, which tests/test_conformance.py holds to), the container-only cases included."""
    engine = "%s %s -c %s" % (sys.executable, SPROCKET, REPO / "bench" / "podman.toml")
    results = run_conformance(tmp_path, engine, timeout=1800)
    known = known_failures()
    by_id = {r["id"]: r for r in results}
    for case in CONTAINER_ONLY:
        assert case in known and by_id[case]["status"] == "PASS", by_id[case]
    failed = ["%s: %s %s" % (r["id"], r["status"], r["reason"]) for r in results
              if r["status"] in ("FAIL", "ERROR") and (r["id"] not in known or r["id"] in CONTAINER_ONLY)]
    assert not failed, "\n".join(failed)
    assert sum(r["status"] == "PASS" for r in results) >= 315
