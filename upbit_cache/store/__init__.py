"""The store: the only code that touches the data dir's files (data, records, locks, kept
screens, temp files). What the user gets (`--out`, stdout) is the output room's
(upbit_cache/output/), which builds on this package, never the reverse.

    base.py          Store: the data dir as series (records read once per run: Coverage,
                     versions, locks, kept screens); no Parquet. What the manager sees
    candle_store.py  CandleStore: a Store that loads, writes and records candles (Parquet)
    files.py         DataDir: a backend and a root; atomic writes
    backends.py      local disk, S3, any other pyarrow filesystem, behind one protocol
    layout.py        every path, built and parsed back
    parts.py         data files written once: names, spans, supersedes, roll-ups
    edits.py         one writer's edit of a series' files (create, record, delete)
    records.py       fetched-range records, the manifest of each series' files
    locks.py         writer locks (flock on a local disk)
    lease.py         the writer lock on S3; claim.py: one writer elsewhere
    upkeep.py        the file edits behind prune: retention, compaction, leftovers
    screens.py       kept screen-prep tables

Imports nothing of the collection engine, the cache manager or the output room. Modules are
imported by name: this package's `__init__` loads nothing, so a light command pays only for
what it uses.
"""
