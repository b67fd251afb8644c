"""Fitting a Slurm site (issue 21 items 1, 2, 5): placement per task (account, QOS, constraint,
reservation, partition; task keys > `run --slurm-<key>` > partition table > backend), the site's
memory and GPU flags, extra sbatch arguments that repeat the engine's refused at start, and each
job's `--comment`. In-process and with the fake Slurm commands of tests/test_slurm_parts.py; on
the real cluster (`-m slurm`), sacct says where each job landed."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sprocket as S  # noqa: E402
from test_slurm_parts import fake_slurm_env  # noqa: E402

MiB = 2 ** 20


# -- the sbatch line ------------------------------------------------------------------------------

def line(place=S.SlurmPlacement(), flags=S._SLURM_SITE_FLAGS, gpu=False, gpus=None, cpu=1, memory=100 * MiB,
         partition=None, extra=(), comment=None):
    return S.sbatch_argv(partition, gpus, gpu, None, extra, cpu, memory, place, flags, job_name="j", adir="/a",
                         script="s", comment=comment)


def test_sbatch_line_places_the_job_after_its_partition_and_tags_it():
    argv = line(S.SlurmPlacement("lab", "high", "avx2&bigmem", "maint"), partition="big", extra=["--x"],
                comment=S.job_comment("brisk-otter-0a1b2c", "w.align-3"))
    assert argv == ["sbatch", "--partition", "big", "--account=lab", "--qos=high", "--constraint=avx2&bigmem",
                    "--reservation=maint", "--x", "--comment=sprocket:brisk-otter-0a1b2c:w.align-3", "--job-name", "j",
                    "-o", "/a/slurm.stdout", "-e", "/a/slurm.stderr", "--ntasks=1", "--cpus-per-task=1", "--mem=100M", "s"]
    # nothing unset is passed; a comment never needs quoting
    assert line()[1:3] == ["--job-name", "j"]
    assert S.job_comment("run", "w.call with 'quotes' \"and\" $x;") == "sprocket:run:w.call_with__quotes___and___x_"


@pytest.mark.parametrize("flag,cpu,memory,want", [
    ("mem", 3, 1000 * MiB + 1, ["--mem=1001M"]),
    ("mem-per-cpu", 3, 1000 * MiB, ["--mem-per-cpu=334M"]),  # 333.3 MiB rounded up
    ("mem-per-cpu", 2.5, 1000 * MiB, ["--mem-per-cpu=334M"]),  # over the 3 CPUs the job gets
    ("mem-per-cpu", 4, 1024 * MiB, ["--mem-per-cpu=256M"]),
    ("none", 2, 1000 * MiB, []),
])
def test_memory_flag_mem_mem_per_cpu_and_none(flag, cpu, memory, want):
    argv = line(flags=(flag, "gpus-per-task", None), cpu=cpu, memory=memory)
    assert argv[argv.index("--ntasks=1") + 2:-1] == want


@pytest.mark.parametrize("flag,gpus,gpu_type,want", [
    ("gpus-per-task", 2, None, "--gpus-per-task=2"),
    ("gpus-per-task", True, "a100", "--gpus-per-task=a100:1"),
    ("gres", 2, None, "--gres=gpu:2"),
    ("gres", 1, "tesla_t4", "--gres=gpu:tesla_t4:1"),
])
def test_gpu_flag_and_gpu_type(flag, gpus, gpu_type, want):
    assert line(flags=("mem", flag, gpu_type), gpu=True, gpus=gpus)[1] == want


@pytest.mark.parametrize("arg,when,refused", [
    ("--mem=4G", "", True), ("--mem-per-cpu=2G", "", True), ("--mem", "", True), ("--mem-per-gpu=1G", "", True),
    ("--mem=4G", "memory_flag_none", False), ("-c4", "", True), ("--cpus-per-task=2", "", True),
    ("-J", "", True), ("--output=/x", "", True), ("-e", "", True), ("--ntasks=2", "", True),
    ("--gres=gpu:a100:1", "", True), ("--gpus-per-task=1", "", True), ("--gres=tmp:10G", "", False),
    ("--partition=x", "", False), ("-px", "sets_partition", True), ("--account=x", "", False),
    ("-A", "sets_account", True), ("--qos=x", "sets_qos", True), ("--constraint=x", "sets_constraint", True),
    ("--exclusive", "", False), ("--time=10", "", False), ("--comment=x", "", True),
])
def test_extra_argument_that_repeats_an_engine_option(arg, when, refused):
    def passes(w):
        return (w == "memory_flag" and when != "memory_flag_none") or w == when

    problem = S.sbatch_conflict([("`run.backends.default.sbatch.args`", ["--exclusive", arg])], passes)
    assert (problem is not None) == refused
    if refused:
        assert problem.startswith("`run.backends.default.sbatch.args` has `%s`, which sprocket.py passes to sbatch "
                                  "itself: remove it (" % arg)


# -- through `sprocket run`, with fake Slurm commands -------------------------------------------------

PLACED = """version 1.0
task where {
  input { String tag }
  command <<< echo ~{tag} >>>
  output { String out = read_string(stdout()) }
  runtime { container: "ubuntu:22.04" %s }
}
workflow w {
  call where as plain { input: tag = "plain" }
  call where as keyed { input: tag = "keyed" }
  output { String a = plain.out  String b = keyed.out }
}
"""


def fake_run(tmp_path, config, wdl, *args, partitions="compute other"):
    """`sprocket run` of `wdl` with the fake Slurm commands: (the process, [the sbatch lines])."""
    (tmp_path / "sprocket.toml").write_text('run.experimental_features_enabled = true\n[run.backends.default]\n'
                                            'type = "slurm_apptainer"\njob_arrays = false\n' + config)
    (tmp_path / "main.wdl").write_text(wdl)
    env, state = fake_slurm_env(tmp_path, FAKE_SLURM_PARTITIONS=partitions)
    p = subprocess.run([sys.executable, str(Path(S.__file__)), "run", "-s", "-c", str(tmp_path / "sprocket.toml"),
                        str(tmp_path / "main.wdl"), "-o", str(tmp_path / "out")] + list(args), env=env,
                       cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=120)
    calls = [json.loads(x) for x in (state / "calls").read_text().splitlines()] if (state / "calls").exists() else []
    return p, calls


def by_job(calls):
    return {c[c.index("--job-name") + 1]: c for c in calls if c[0] == "sbatch"}


def test_task_keys_beat_run_flags_beat_the_partition_table_beat_the_backend(tmp_path):
    config = ('account = "acct-backend"\nqos = "qos-backend"\nconstraint = "feat-backend"\nreservation = "resv"\n'
              'memory_flag = "mem-per-cpu"\njob_name_prefix = "lab"\n'
              'default_slurm_partition.name = "compute"\ndefault_slurm_partition.account = "acct-table"\n'
              'default_slurm_partition.qos = "qos-table"\n')
    keys = ('slurm_partition: "other"  slurm_account: "acct-task"  slurm_qos: "qos-task"  slurm_constraint: "feat-task"'
            '  cpu: 2  memory: "1000 MiB"')
    p, calls = fake_run(tmp_path, config, PLACED % "", "--slurm-qos", "qos-flag")
    assert p.returncode == 0, p.stderr
    plain = by_job(calls)["lab-plain-0"]
    assert plain[1:plain.index("--comment=" + plain[plain.index("--job-name") - 1].split("=", 1)[1])] == [
        "--partition", "compute", "--account=acct-table", "--qos=qos-flag", "--constraint=feat-backend",
        "--reservation=resv"]
    comment = [a for a in plain if a.startswith("--comment=")][0]
    assert comment.startswith("--comment=sprocket:") and comment.endswith(":plain")
    assert "--mem-per-cpu=2048M" in plain  # the default 2 GiB over 1 CPU
    # the task's own keys win, everywhere
    (tmp_path / "slurm" / "calls").unlink()
    p, calls = fake_run(tmp_path, config, PLACED % keys, "--slurm-qos", "qos-flag", "--slurm-account", "acct-flag")
    assert p.returncode == 0, p.stderr
    keyed = by_job(calls)["lab-keyed-0"]
    assert keyed[1:7] == ["--partition", "other", "--account=acct-task", "--qos=qos-task", "--constraint=feat-task",
                          "--reservation=resv"]
    assert "--mem-per-cpu=500M" in keyed and "--cpus-per-task=2" in keyed
    # one look at the cluster's partitions for the whole run
    assert [c for c in calls if c[0] == "scontrol" and "partition" in c] == [["scontrol", "--all", "--oneliner", "show", "partition"]]


def test_run_flag_partition_and_account_apply_to_every_task(tmp_path):
    p, calls = fake_run(tmp_path, "", PLACED % "", "--slurm-partition", "other", "--slurm-account", "a1",
                        "--slurm-constraint", "c1")
    assert p.returncode == 0, p.stderr
    for argv in by_job(calls).values():
        assert argv[1:6] == ["--partition", "other", "--account=a1", "--constraint=c1", "--comment=" + argv[5][10:]]


def test_partition_the_cluster_lacks_is_refused_before_anything_is_submitted(tmp_path):
    p, calls = fake_run(tmp_path, "", PLACED % "", "--slurm-partition", "gpux")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert ("`run --slurm-partition` asks for the partition `gpux`: the cluster has no such partition (it has: compute, "
            "other)") in p.stderr
    assert not [c for c in calls if c[0] == "sbatch"]
    (tmp_path / "slurm" / "calls").unlink()
    # a literal: at start, before the run directory
    p, calls = fake_run(tmp_path, "", PLACED % 'slurm_partition: "nope"')
    assert p.returncode == 1 and "Traceback" not in p.stderr and "run directory" not in p.stderr
    assert ("task `where` asks (`slurm_partition`) for the partition `nope`: the cluster has no such partition "
            "(it has: compute, other)") in p.stderr
    assert [c[0] for c in calls] == ["scontrol"]
    # computed: before the task's job is submitted
    (tmp_path / "slurm" / "calls").unlink()
    p, calls = fake_run(tmp_path, "", PLACED % 'slurm_partition: "~{tag}x"')
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert re.search(r"task `(plain|keyed)` asks \(`slurm_partition`\) for the partition `(plain|keyed)x`: the "
                     r"cluster has no such partition \(it has: compute, other\)", p.stderr), p.stderr
    assert not [c for c in calls if c[0] == "sbatch"]
    assert len([c for c in calls if c[0] == "scontrol" and "partition" in c]) == 1


@pytest.mark.parametrize("config,setting,arg", [
    ('sbatch.args = ["--mem=4G"]\n', "sbatch.args", "--mem=4G"),
    ('extra_sbatch_args = ["--mem-per-cpu=1G"]\nmemory_flag = "mem-per-cpu"\n', "extra_sbatch_args", "--mem-per-cpu=1G"),
    ('default_slurm_partition.name = "compute"\ndefault_slurm_partition.extra_sbatch_args = ["-c", "2"]\n',
     "default_slurm_partition.extra_sbatch_args", "-c"),
    ('sbatch.conditional = [{ condition = "gpu", args = ["--gres=gpu:a100:1"] }]\n', "sbatch.conditional[0].args",
     "--gres=gpu:a100:1"),
    ('account = "lab"\nsbatch.args = ["--account=other"]\n', "sbatch.args", "--account=other"),
    ('default_slurm_partition.name = "compute"\nsbatch.args = ["-p", "compute"]\n', "sbatch.args", "-p"),
])
def test_conflicting_extra_sbatch_arguments_are_refused_at_start(tmp_path, config, setting, arg):
    p, calls = fake_run(tmp_path, config, PLACED % "")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "`run.backends.default.%s` has `%s`, which sprocket.py passes to sbatch itself: remove it (" % (
        setting, arg) in p.stderr
    assert not [c for c in calls if c[0] == "sbatch"]


def test_extra_arguments_the_engine_does_not_pass_are_kept(tmp_path):
    p, calls = fake_run(tmp_path, 'memory_flag = "none"\nsbatch.args = ["--mem=0", "--account=lab"]\n', PLACED % "")
    assert p.returncode == 0, p.stderr
    argv = by_job(calls)["plain-0"]
    assert "--mem=0" in argv and "--account=lab" in argv and not [a for a in argv if a.startswith("--mem=") and a != "--mem=0"]


def test_a_task_key_that_repeats_an_extra_argument_is_refused(tmp_path):
    p, calls = fake_run(tmp_path, 'sbatch.args = ["--account=lab"]\n', PLACED % 'slurm_account: "mine"')
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert re.search(r"the extra sbatch arguments of task `(plain|keyed)` \(`sbatch.args`, `extra_sbatch_args`, the "
                     r"partition's, `sbatch.conditional`\) has `--account=lab`, which sprocket.py passes to sbatch "
                     r"itself", p.stderr), p.stderr
    assert not [c for c in calls if c[0] == "sbatch" and "--account=mine" in c]


def test_gpu_type_reaches_gres(tmp_path):
    wdl = PLACED.replace("call where as plain { input: tag = \"plain\" }\n", "") % 'gpu: true  gpuType: "tesla_t4"'
    p, calls = fake_run(tmp_path, 'gpu_flag = "gres"\n', wdl.replace("String a = plain.out  ", ""))
    assert p.returncode == 0, p.stderr
    argv = by_job(calls)["keyed-0"]
    assert "--gres=gpu:tesla_t4:1" in argv and not [a for a in argv if a.startswith("--gpus")]


def test_slurm_task_keys_are_not_warned_as_unknown(check_wdl):
    proc = check_wdl(PLACED % 'slurm_partition: "a"  slurm_account: "b"  slurm_constraint: "c"  slurm_qos: "d"')
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr


def test_config_resolve_shows_the_placement_and_flag_defaults(tmp_path):
    (tmp_path / "s.toml").write_text('run.experimental_features_enabled = true\n[run.backends.hpc]\n'
                                     'type = "slurm_apptainer"\ndefault_slurm_partition.account = "lab"\n')
    p = subprocess.run([sys.executable, str(Path(S.__file__)), "config", "resolve", "--skip-config-search", "-c",
                        str(tmp_path / "s.toml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert 'run.backends.hpc.memory_flag = "mem"  # default' in lines
    assert 'run.backends.hpc.gpu_flag = "gpus-per-task"  # default' in lines
    assert "# run.backends.hpc.account is not set" in lines and "# run.backends.hpc.qos is not set" in lines
    assert any(x.startswith('run.backends.hpc.default_slurm_partition.account = "lab"  # ') for x in lines)


def test_a_task_naming_a_configured_partition_gets_that_tables_settings_and_limits(tmp_path):
    config = ('gpu_slurm_partition.name = "other"\ngpu_slurm_partition.account = "acct-gpu"\n'
              'gpu_slurm_partition.max_cpu_per_task = 1\n')
    p, calls = fake_run(tmp_path, config, PLACED % 'slurm_partition: "other"')
    assert p.returncode == 0, p.stderr
    assert by_job(calls)["keyed-0"][1:4] == ["--partition", "other", "--account=acct-gpu"]
    (tmp_path / "slurm" / "calls").unlink()
    p, calls = fake_run(tmp_path, config, PLACED % 'slurm_partition: "other"  cpu: 2')
    assert p.returncode == 1 and "requires at least 2 CPU(s), but partition `other` has a maximum of 1" in p.stderr
