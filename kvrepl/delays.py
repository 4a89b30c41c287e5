"""Redis's test-hook delays (``rdb-key-save-delay``, ``key-load-delay``): debugDelay.

Redis sleeps ``usec`` microseconds per key saved or loaded; a negative ``-N`` sleeps one
microsecond once in N keys on average ("statistically sleeping less often"). kvrepl does
not block its event loop for them: the snapshot producer and the loaders await the total
for the keys they just handled (:func:`delay_seconds`), so clients keep being served.
"""

from __future__ import annotations

import random


def delay_seconds(usec: int, keys: int) -> float:
    """Seconds debugDelay(``usec``) would sleep over ``keys`` keys."""
    if usec > 0:
        return usec * keys / 1_000_000
    if usec < 0 and keys:
        hits = sum(1 for _ in range(keys) if random.randrange(-usec) == 0)
        return hits / 1_000_000
    return 0.0
