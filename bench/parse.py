#!/usr/bin/env python3
"""Time tokenizing and parsing WDL files in-process with sprocket.py (no subprocess, no start-up).

Usage (from anywhere):
    python3 bench/parse.py [--runs N] [--profile] [--lex-only] [WDL or DIR ...]

With no arguments it times the 29 .wdl files of shared/workflows/hifi-human-wgs/
(shared/ is found at ../shared relative to the repo root, or at $SPROCKET_SHARED).
The files are read once; each run then tokenizes and parses every one of them
(Parser.for_source(...).document(), which is what `check` does before analysis).
It prints the best of N runs and the median, in milliseconds, for all files together,
and the best CPU time (steadier than wall time on a busy machine).
--lex-only times tokenize() alone; --profile prints a cProfile of one more run
(the top functions by own time). Exit status: 0, or 2 when a file is missing or
does not parse. Nothing here is asserted by the tests.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import REPO, shared_dir  # noqa: E402

sys.path.insert(0, REPO)
import sprocket  # noqa: E402


def wdl_files(paths):
    """The .wdl files named by `paths` (directories are walked), sorted."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                out.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".wdl"))
        else:
            out.append(p)
    return out


def parse_all(sources, lex_only):
    for src in sources:
        if lex_only:
            m = sprocket._VERSION_RE.match(src.text)
            dialect = sprocket.DIALECTS[m.group(1)] if m else sprocket.DIALECTS["draft-2"]
            sprocket.tokenize(src, m.end() if m else 0, dialect)
        else:
            sprocket.Parser.for_source(src).document()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="WDL files or directories (default: shared/workflows/hifi-human-wgs)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one more run")
    ap.add_argument("--lex-only", action="store_true", help="time tokenize() alone")
    args = ap.parse_args(argv)
    paths = args.paths or [os.path.join(shared_dir(), "workflows", "hifi-human-wgs")]
    files = wdl_files(paths)
    if not files or not all(os.path.isfile(f) for f in files):
        print("error: no WDL files at " + ", ".join(paths), file=sys.stderr)
        return 2
    sources = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            sources.append(sprocket.Source(f, fh.read()))
    try:
        parse_all(sources, args.lex_only)  # warm-up, and every file must parse
    except sprocket.WdlError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    times, cpu = [], []
    for _ in range(max(args.runs, 1)):
        start, start_cpu = time.perf_counter(), time.process_time()
        parse_all(sources, args.lex_only)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    what = "tokenize" if args.lex_only else "tokenize+parse"
    print("%s of %d files (%d bytes): best %.1f ms, median %.1f ms over %d runs (CPU time: best %.1f ms)"
          % (what, len(sources), sum(len(s.text) for s in sources), min(times), statistics.median(times), len(times),
             min(cpu)))
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.runcall(parse_all, sources, args.lex_only)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
