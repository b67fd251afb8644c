#!/usr/bin/env python3
"""The whole conformance corpus through the slurm_apptainer backend, beside the local backend.

Acceptance check for the Slurm backend: the corpus (../shared/conformance) must pass the same
cases through Slurm + Apptainer as through the local backend. Needs a Slurm cluster (sbatch on
PATH, SLURM_CONF set) and `apptainer` on PATH (on the test machines: ../shared/slurm/
apptainer-double). Prints both results and the cases whose outcome differs; exits 1 if any does.

    python3 bench/slurm_conformance.py [--partition compute] [-j 6] [filters...]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SPROCKET_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
SPROCKET = os.path.join(REPO, "sprocket.py")

CONFIG = """run.experimental_features_enabled = true
run.backends.default.type = "slurm_apptainer"
run.backends.default.default_slurm_partition.name = "{partition}"
run.backends.default.interval = 1
run.backends.default.apptainer.image_cache_dir = "{cache}"
"""


def corpus(engine, jobs, filters, report):
    argv = [sys.executable, os.path.join(SHARED, "conformance", "run.py"), "--engine", engine,
            "-j", str(jobs), "--timeout", "300", "--json", report] + filters
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if not os.path.isfile(report):
        sys.exit("conformance runner failed:\n" + proc.stdout[-3000:])
    last = [line for line in proc.stdout.splitlines() if line.startswith("conformance:")]
    with open(report) as f:
        results = {r["id"]: r for r in json.load(f)["results"]}
    return (last[-1] if last else "?"), results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partition", default="compute")
    ap.add_argument("-j", "--jobs", type=int, default=6)
    ap.add_argument("filters", nargs="*", help="case filters passed to run.py (default: all cases)")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(SHARED, "conformance")):
        sys.exit("no conformance corpus at %s (set SPROCKET_SHARED)" % SHARED)
    for tool in ("sbatch", "sacct", "apptainer"):
        if shutil.which(tool) is None:
            sys.exit("`%s` is not on PATH: this needs a Slurm cluster and apptainer" % tool)
    tmp = tempfile.mkdtemp(prefix="sprocket-slurm-conformance-")
    cfg = os.path.join(tmp, "slurm.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(partition=args.partition, cache=os.path.join(tmp, "sif-cache")))
    base = "%s %s -s" % (sys.executable, SPROCKET)
    local_line, local = corpus(base, args.jobs, args.filters, os.path.join(tmp, "local.json"))
    slurm_line, slurm = corpus("%s -c %s" % (base, cfg), args.jobs, args.filters, os.path.join(tmp, "slurm.json"))
    print("local backend:           %s" % local_line)
    print("slurm_apptainer backend: %s" % slurm_line)
    differ = sorted(c for c in set(local) | set(slurm)
                    if local.get(c, {}).get("status") != slurm.get(c, {}).get("status"))
    for c in differ:
        print("  %-45s local %-5s slurm %-5s %s" % (c, local.get(c, {}).get("status"), slurm.get(c, {}).get("status"),
                                                    slurm.get(c, {}).get("reason", "")[:120]))
    print("same outcome on every case" if not differ else "%d case(s) differ" % len(differ))
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
