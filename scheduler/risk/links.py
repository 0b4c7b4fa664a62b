"""The evidence between a changed path and a test (`file_test_links`),
folded one build at a time (pure functions).

Per (path, test): in how many builds the test ran with the path changed
(`changed_together`), and in how many of those it started failing
(`failed_together`): it failed and had not failed in its previous build, or
had never run. A test that stays red is a status change once, not a
co-failure with every path changed while it stays red.

Older evidence weighs less: a build counts half as much every
`HALF_LIFE_BUILDS` builds of the repository later. A link is kept valued at
a build number (`Link.valued_at`, the repository's count of builds when it
last changed) and decayed when it is read or changed again, so builds that
do not touch a link never rewrite it.

Live ingestion (`scheduler.services.ingestion`) and the replay
(`scheduler.risk.replay`) fold with `Link.add` and read with `decayed`, so
they keep the same numbers, bit for bit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

# Builds of the repository after which a link's evidence weighs half. About
# the span of a release or two on a busy project: long enough that a pair
# seen failing together a few times keeps weight for hundreds of builds,
# short enough that what held two thousand builds ago (1/1024) no longer
# outweighs what holds now.
HALF_LIFE_BUILDS: Final = 200


def decayed(values: npt.ArrayLike, valued_at: npt.ArrayLike, build: int) -> npt.NDArray[np.float64]:
    """`values` valued at builds `valued_at`, as of build `build` (not
    before any of them): each halves every HALF_LIFE_BUILDS builds."""
    elapsed = build - np.asarray(valued_at, dtype=np.int64)
    factor: npt.NDArray[np.float64] = 0.5 ** (elapsed / HALF_LIFE_BUILDS)
    return np.asarray(values, dtype=np.float64) * factor


@dataclass(frozen=True)
class Link:
    """One (path, test) pair's evidence, valued at build `valued_at`."""

    changed_together: float = 0.0
    failed_together: float = 0.0
    valued_at: int = 0

    def add(self, *, ran: bool, failed: bool, build: int) -> Link:
        """The evidence after build `build` (not before `valued_at`), in
        which the test ran with the path changed (`ran`) and started failing
        (`failed`)."""
        factor = 0.5 ** ((build - self.valued_at) / HALF_LIFE_BUILDS)
        return Link(
            self.changed_together * factor + ran,
            self.failed_together * factor + failed,
            build,
        )


EMPTY_LINK: Final = Link()
