"""Does a change to lrkit move any finder result? Rerun cached lrkit jobs of `finder.py` and compare.

A change that is meant to leave the finder's arithmetic alone (a refactor, a new check, a fix on a
path the benchmark does not take) need not bump `finder.FINDER_VERSION` and rerun the whole suite
if the jobs it reruns come out the same to the bit: the sweep's LRs and losses, every rule's
suggestion, the verified candidates' scores and the pick. This reruns a spread of the cached
jobs of the current version (every task, optimizer and target of the suite, the finder seeds in
turn) in this process, one thread, and says which differ.

    .venv/bin/python benchmarks/finder_recheck.py [--holdout] [--jobs 12]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import finder  # the benchmark's own module, beside this file

#: The fields of a cached lrkit job that must come out the same.
FIELDS = ("lrs", "losses", "suggestions", "suggestion", "status", "candidates", "scores", "errors", "best")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--holdout", action="store_true", help="the held-out suite's cache")
    ap.add_argument("--jobs", type=int, default=12, help="how many cached jobs to rerun")
    args = ap.parse_args()
    tasks = finder.select_suite(args.holdout)
    cache = json.loads(finder.CACHE.read_text())
    configs = itertools.product(tasks, ("momentum", "adam"), ("constant", "onecycle"))
    seeds = itertools.cycle(finder.FINDER_SEEDS)
    jobs = [("lrkit", t, o, next(seeds), target) for t, o, target in configs]
    jobs = [j for j in jobs if finder._key(j) in cache][: args.jobs]
    if not jobs:
        sys.exit(f"no cached jobs of FINDER_VERSION {finder.FINDER_VERSION} in {finder.CACHE}")
    warnings.simplefilter("ignore")  # the finder's advice on the curves is not what is compared here
    moved = 0
    for job in jobs:
        old = cache[finder._key(job)]
        new = finder.job_lrkit(*job[1:])
        diff = [f for f in FIELDS if not _same(old.get(f), new.get(f))]
        moved += bool(diff)
        verdict = "identical" if not diff else "differs in " + ", ".join(diff)
        print(f"{job[1]:<20} {job[2]:<9} seed {job[3]} {job[4]:<9} {new['suggestion']:.4g}  {verdict}")
    print(f"{moved} of {len(jobs)} jobs differ from the cache of FINDER_VERSION {finder.FINDER_VERSION}")


if __name__ == "__main__":
    main()
