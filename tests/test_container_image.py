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


# The cases that need a container image: the `ubuntu:focal` ones, those that call `python`, and `free`.
CONTAINER_CASES = ("runtime_container_task", "dynamic_container_task", "python_strip_task", "write_json_task",
                   "read_object_task", "serde_array_json_task", "serde_map_json_task", "test_containers", "test_memory_task")


@pytest.mark.slow
@pytest.mark.podman
def test_conformance_container_cases_pass_with_podman_as_default_backend(tmp_path):
    engine = "%s %s -c %s" % (sys.executable, SPROCKET, REPO / "bench" / "podman.toml")
    results = run_conformance(tmp_path, engine, CONTAINER_CASES, timeout=900)
    by_id = {r["id"]: r for r in results}
    # the two cases that only a container can pass
    for case in ("1.1/runtime_container_task", "1.2/dynamic_container_task"):
        assert by_id[case]["status"] == "PASS", by_id[case]
    # 1.1/python_strip_task is a spec defect (tests/conformance_known.txt), in a container too
    failed = ["%s: %s %s" % (r["id"], r["status"], r["reason"]) for r in results
              if r["status"] != "PASS" and r["id"] != "1.1/python_strip_task"]
    assert not failed, "\n".join(failed)
