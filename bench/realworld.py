#!/usr/bin/env python3
"""Compare `sprocket.py check` with `miniwdl check` on the real-world WDL corpora in shared/.

Usage (from anywhere):
    python3 bench/realworld.py [--repos a,b] [-j N] [--tools sprocket,miniwdl]
                             [--miniwdl PATH] [--miniwdl-args ARGS] [-v]

It checks every `.wdl` file under shared/workflows/realworld/ and shared/realworld-more/
(shared/ is found at ../shared relative to the repo root, or at $SPROCKET_SHARED), one
process per file and tool, as a user would run them: `python3 sprocket.py check FILE` and
`miniwdl check --no-shellcheck FILE` (plus --miniwdl-args), each in the file's
directory. Repositories are named `corpus/repository` (`realworld/...`, `realworld-more/...`).
`-j N` (default 2) runs N files at a time, the same for both tools;
the tools run one after the other, never at the same time. The first time, it creates a virtualenv at
bench/.venv and pip-installs miniwdl 1.16 into it, unless --miniwdl names a miniwdl to use.

Neither tool may touch the network: both run with http_proxy/https_proxy pointing
at a closed local port (and no_proxy cleared), so miniwdl's download of an
`import "https://..."` fails at once and the file counts as rejected (sprocket.py
rejects URL imports anyway). The number of such files is printed.

It prints, per repository directory, how many files each tool accepted (exit 0;
warnings allowed), then the totals, each tool's total wall time (the sum of its
per-file wall times, so -j does not change it much) and the ratio
miniwdl/sprocket (> 1 means sprocket is faster). -v also lists the files where
the two tools disagree. Exit status: 0 when it ran (whatever was accepted), 2 on
a setup problem. Nothing here is asserted by the tests.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import MINIWDL, REPO, SPROCKET, VENV, VENV_PYTHON, ensure_venv, tool_version, shared_dir  # noqa: E402

MINIWDL_VERSION = "1.16"  # the series compared against; installed as miniwdl==1.16.*
TIMEOUT = 300  # seconds per file and tool; a file that takes longer counts as rejected

IMPORT_RE = re.compile(r"""^[ \t]*import[ \t]+(["'])(.*?)\1""", re.M)
URL_RE = re.compile(r"(?i)^https?://")


def ensure_miniwdl():
    """bench/.venv with miniwdl 1.16.x in it (installed, or upgraded/downgraded, when not)."""
    ensure_venv(["miniwdl"], [MINIWDL])
    probe = "import importlib.metadata as m; print(m.version('miniwdl'))"
    have = subprocess.run([VENV_PYTHON, "-c", probe], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()
    if have.split(".")[:2] != MINIWDL_VERSION.split("."):
        print(f"bench/.venv has miniwdl {have or '?'}; installing miniwdl=={MINIWDL_VERSION}.* ...", flush=True)
        subprocess.run([VENV_PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"miniwdl=={MINIWDL_VERSION}.*"], check=True)


def offline_env():
    """The environment both tools run in: proxies that refuse every connection."""
    env = dict(os.environ)
    for k in list(env):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            del env[k]
    blackhole = "http://127.0.0.1:9"  # the discard port; nothing listens there
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env[k] = blackhole
    env["no_proxy"] = env["NO_PROXY"] = ""
    return env


def imports_url(path, memo, stack=()):
    """True when `path` imports an http(s) URL, directly or through its local imports."""
    key = os.path.realpath(path)
    if key in memo:
        return memo[key]
    if key in stack:
        return False
    try:
        with open(key, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    found = False
    for m in IMPORT_RE.finditer(text):
        uri = m.group(2)
        if URL_RE.match(uri):
            found = True
            break
        if uri.startswith("file://"):
            uri = uri[len("file://"):]
        if imports_url(os.path.join(os.path.dirname(key), uri), memo, stack + (key,)):
            found = True
            break
    memo[key] = found
    return found


def run_one(argv, path, env):
    """Check one file; return (seconds, accepted, first line of stderr)."""
    start = time.perf_counter()
    try:
        p = subprocess.run(argv + [path], cwd=os.path.dirname(path), env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=TIMEOUT)
        rc, err = p.returncode, p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        rc, err = None, f"timed out after {TIMEOUT} s"
    elapsed = time.perf_counter() - start
    first = next((x for x in err.splitlines() if "error" in x.lower()), err.strip().splitlines()[0] if err.strip() else "")
    return elapsed, rc == 0, first


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", default="", help="comma-separated repository directories (default: all)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="files checked at a time, per tool (default 2)")
    ap.add_argument("--tools", default="sprocket,sprocket-installed,miniwdl",
                    help="comma-separated subset of sprocket,sprocket-installed,miniwdl")
    ap.add_argument("--miniwdl", default=None, metavar="PATH",
                    help="the miniwdl executable to compare with (default: bench/.venv's, installed on first use)")
    ap.add_argument("--miniwdl-args", default="", metavar="ARGS",
                    help="extra `miniwdl check` options, e.g. --miniwdl-args=--no-quant-check")
    ap.add_argument("-v", "--verbose", action="store_true", help="list the files where the tools disagree")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("-j must be at least 1")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in tools:
        if t not in ("sprocket", "sprocket-installed", "miniwdl"):
            ap.error(f"unknown tool {t!r} (choose from sprocket, sprocket-installed, miniwdl)")

    root = shared_dir()
    corpora = {"realworld": os.path.join(root, "workflows", "realworld"),
               "realworld-more": os.path.join(root, "realworld-more")}
    for path in corpora.values():
        if not os.path.isdir(path):
            print(f"error: {path} not found", file=sys.stderr)
            print("hint: set SPROCKET_SHARED to the shared/ directory", file=sys.stderr)
            return 2
    all_repos = [f"{name}/{d}" for name, path in corpora.items() for d in sorted(os.listdir(path))
                 if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")]
    repos = [r.strip().rstrip("/") for r in args.repos.split(",") if r.strip()] or all_repos
    unknown = [r for r in repos if r not in all_repos]
    if unknown:
        print(f"error: no such repository directory: {', '.join(unknown)} (have: {', '.join(all_repos)})",
              file=sys.stderr)
        return 2

    files = []  # (repo, absolute path)
    for repo in repos:
        corpus, name = repo.split("/", 1)
        for dirpath, dirnames, filenames in os.walk(os.path.join(corpora[corpus], name)):
            dirnames.sort()
            files.extend((repo, os.path.join(dirpath, f)) for f in sorted(filenames) if f.endswith(".wdl"))
    if not files:
        print("error: no .wdl files found", file=sys.stderr)
        return 2
    memo = {}
    url_files = sum(1 for _, p in files if imports_url(p, memo))

    commands = {}
    if "sprocket" in tools:
        if not os.path.isfile(SPROCKET):
            print(f"error: {SPROCKET} not found", file=sys.stderr)
            return 2
        commands["sprocket"] = [sys.executable, SPROCKET, "check"]
    if "sprocket-installed" in tools:
        # What the `sprocket` command of `pip install .` runs: the module imported, its bytecode
        # cached (as pip compiles miniwdl's at install time); `python3 sprocket.py` compiles the
        # whole file on every start.
        commands["sprocket-installed"] = [sys.executable, "-c", "import sys; sys.path.insert(0, %r); import sprocket; "
                                          "sys.exit(sprocket.main())" % REPO, "check"]
    miniwdl = args.miniwdl or MINIWDL
    if "miniwdl" in tools:
        if args.miniwdl is None:
            try:
                ensure_miniwdl()
            except (OSError, subprocess.CalledProcessError) as e:
                print(f"error: could not set up miniwdl in {VENV}: {e}", file=sys.stderr)
                return 2
        elif not os.access(miniwdl, os.X_OK):
            print(f"error: --miniwdl {miniwdl}: not an executable", file=sys.stderr)
            return 2
        commands["miniwdl"] = [miniwdl, "check", "--no-shellcheck"] + shlex.split(args.miniwdl_args)

    print(f"python:   {sys.executable} ({sys.version.split()[0]})")
    if "sprocket" in commands:
        print(f"sprocket: {tool_version(commands['sprocket'][:2] + ['--version'])}")
    if "miniwdl" in commands:
        print(f"miniwdl:  {tool_version([miniwdl, '--version'])}")
    if "miniwdl" in commands:
        print(f"miniwdl:  {' '.join(commands['miniwdl'][1:])} FILE")
    print(f"corpus:   {', '.join(corpora.values())}: {len(files)} .wdl files in {len(repos)} repositories, "
          f"-j {args.jobs}")
    print(f"offline:  {url_files} of them import by http(s) URL (directly or not); "
          "no tool may fetch them, so they count as rejected")
    print(flush=True)

    env = offline_env()
    cached = dict(env)
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    if "sprocket-installed" in commands:  # compile the bytecode once, untimed
        run_one(commands["sprocket-installed"], files[0][1], cached)
    results = {}  # tool -> list of (seconds, accepted, first error), in `files` order
    wall = {}
    for name, cmd in commands.items():
        tenv = cached if name == "sprocket-installed" else env
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results[name] = list(pool.map(lambda rp: run_one(cmd, rp[1], tenv), files))
        wall[name] = time.perf_counter() - start
    batch = None
    if "sprocket" in commands:  # `sprocket.py check FILE...`: one process per repository
        start = time.perf_counter()
        for repo in repos:
            paths = [p for r, p in files if r == repo]
            subprocess.run(commands["sprocket"] + paths, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT * 10)
        batch = time.perf_counter() - start

    width = max(len(r) for r in repos)
    totals = {name: 0 for name in commands}
    for repo in repos:
        idx = [i for i, (r, _) in enumerate(files) if r == repo]
        parts = []
        for name in commands:
            n = sum(1 for i in idx if results[name][i][1])
            totals[name] += n
            parts.append(f"{name} {n:>3}/{len(idx):<3}")
        print(f"{repo:<{width}}  " + "  ".join(parts))
    print(f"{'total':<{width}}  " + "  ".join(f"{name} {totals[name]:>3}/{len(files):<3}" for name in commands))
    print()

    seconds = {name: sum(r[0] for r in results[name]) for name in commands}
    for name in commands:
        print(f"time {name}: {seconds[name]:.1f} s (sum of per-file wall times; {wall[name]:.1f} s elapsed at -j {args.jobs})")
    if batch is not None:
        print(f"time sprocket, one `check FILE...` per repository: {batch:.1f} s")
    if "miniwdl" in commands:
        for name in ("sprocket", "sprocket-installed"):
            if name in commands and seconds[name] > 0:
                print(f"ratio miniwdl/{name}: {seconds['miniwdl'] / seconds[name]:.2f}x (one process per file)")
        if batch:
            print(f"ratio miniwdl/sprocket, one process per repository: {seconds['miniwdl'] / batch:.2f}x")

    if args.verbose and "sprocket" in commands and "miniwdl" in commands:
        for want, label in ((False, "miniwdl accepts, sprocket rejects"), (True, "sprocket accepts, miniwdl rejects")):
            diff = [i for i in range(len(files))
                    if results["sprocket"][i][1] == want and results["miniwdl"][i][1] != want]
            print(f"\n{label}: {len(diff)}")
            for i in diff:
                loser = "sprocket" if not want else "miniwdl"
                print(f"  {os.path.relpath(files[i][1], root)}: {results[loser][i][2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
