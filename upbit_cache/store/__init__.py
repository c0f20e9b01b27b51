"""The store: the only code that touches the data dir's files (data, records, locks, kept
screens, temp files). What the user gets (`--out`, stdout) is the output room's
(upbit_cache/output/), which builds on this package, never the reverse.

    files.py         DataDir: one pyarrow filesystem and a root; atomic writes
    layout.py        every path, built and parsed back
    candle_store.py  CandleStore: load, write and record candles (Hive-partitioned Parquet)
    parts.py         data files written once: names, spans, supersedes, roll-ups
    edits.py         one writer's edit of a series' files (create, record, delete)
    records.py       fetched-range records, the manifest of each series' files
    locks.py         writer locks
    upkeep.py        the file edits behind prune: retention, compaction, leftovers
    screens.py       kept screen-prep tables

Imports nothing of the collection engine, the cache manager or the output room. Modules are
imported by name: this package's `__init__` loads nothing, so a light command pays only for
what it uses.
"""
