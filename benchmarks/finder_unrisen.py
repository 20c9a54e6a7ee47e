"""How far a sweep's smoothed loss rises after its lowest point, in units of the raw loss's
step-to-step noise: on curves of pure noise, and on the sweeps of `benchmarks/finder.py` that
ended without diverging (status "ok"). It sets `lrkit.finder._api.UNRISEN`, below which such a
sweep warns that it has not reached the LRs where training breaks down.

    .venv/bin/python benchmarks/finder_unrisen.py

Reads the caches of `benchmarks/finder.py` (both suites; run it first) at its `FINDER_VERSION`.
"""

from __future__ import annotations

import json

import numpy as np
from finder import CACHE, FINDER_VERSION, HOLDOUT_CACHE

from lrkit.finder import smooth
from lrkit.finder._api import UNRISEN
from lrkit.finder._rules import rise


def risen(losses: np.ndarray) -> float:
    return rise(losses, smooth(losses))


def main() -> None:
    rng = np.random.default_rng(0)
    noise = [risen(2.3 + 0.05 * rng.standard_normal(80)) for _ in range(2000)]
    q = np.quantile(noise, [0.5, 0.9, 0.99])
    print(f"pure noise, 80 steps, 2000 draws: median {q[0]:.2f}, 90% {q[1]:.2f}, 99% {q[2]:.2f}")
    for path in (CACHE, HOLDOUT_CACHE):
        cache = json.loads(path.read_text())
        found = []
        for key, res in cache.items():
            job = json.loads(key)
            plain = job[0] == "lrkit" and job[4] is None and job[-1] == FINDER_VERSION
            if plain and res.get("status") == "ok":
                found.append((risen(np.asarray(res["losses"], dtype=np.float64)), job[1], job[2], job[3]))
        found.sort()
        low = ", ".join(f"{r:.2f} ({t}, {o}, seed {s})" for r, t, o, s in found[:3])
        print(f"{path.name}: {len(found)} sweeps ended without diverging; the lowest rises: {low}")
        print(f"  below UNRISEN = {UNRISEN}: {sum(r < UNRISEN for r, *_ in found)}")


if __name__ == "__main__":
    main()
