"""The garbage collector's settings for a long-running process of this
package: the service, and the fake providers it is measured against.

Reference counting frees at once everything that is not in a cycle; the
cyclic collector runs on top of it and stops the process while it scans.
Its default thresholds make it scan often and, every hundred young
collections or so, scan the whole heap: with the start-up heap (modules,
classes, the catalog: about 300,000 objects) and a few thousand cached
tenants a full scan took 0.2 s, a pause every caller in flight waits through.
"""

from __future__ import annotations

import gc

#: Young collections every 10,000 net allocations instead of 700. A middle
#: collection every 4 young ones: a thousand open streams keep each chunk's
#: objects alive for the second until the next one, so every young
#: collection passes about 10,000 objects on, and a middle collection's
#: pause grows with the young collections it follows (about 85 ms after 20
#: on the bench machine, 50 after 4). A full one only after 500 middle ones
#: (and, as always, once the old generation has grown by a quarter).
GC_THRESHOLDS = (10_000, 4, 500)


def settle_heap() -> int:
    """Freeze what start-up allocated and make full collections rare; return
    how many objects were frozen.

    Frozen objects are never scanned again (they live as long as the process
    anyway), and with ``GC_THRESHOLDS`` no full collection ran during a whole
    benchmark run. Call it once start-up is done.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return gc.get_freeze_count()
