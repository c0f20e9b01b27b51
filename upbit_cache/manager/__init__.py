"""The cache manager: what is missing, the memory layer, derive, screen, prune, info, live.

    cache.py        UpbitCache: the one object the CLI and Python callers use
    scope.py        markets and windows, resolved in one place
    planner.py      which one timeframe to ask Upbit for
    fetch.py        fetch only what is missing, through the collection engine
    derive.py       derived timeframes, materialised or on the fly
    memory.py       the in-process memory layer (LRU of file tables)
    screen.py       the screener's table; screen_keep.py: when a kept table still answers
    prune.py        compaction, retention and leftovers, by policy
    info.py         what the store holds
    live.py         live candles from the trade stream, backed by REST and the store

Uses the collector, the timeframe calculator and the store; none of them imports it.
"""
