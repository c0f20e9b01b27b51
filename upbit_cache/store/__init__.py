"""The store: the only code that touches files (data, records, locks, kept screens, temp files).

    base.py          Store: the data dir as series (records read once per run: Coverage,
                     versions, locks, kept screens); no Parquet. What the manager sees
    candle_store.py  CandleStore: a Store that loads, writes and records candles (Parquet)
    files.py         DataDir: a backend and a root; atomic writes; `--out` files
    backends.py      local disk, S3, any other pyarrow filesystem, behind one protocol
    layout.py        every path, built and parsed back
    records.py       fetched-range records
    locks.py         writer locks (flock on a local disk), the host's shared cell
    lease.py         the writer lock on S3; claim.py: one writer elsewhere
    upkeep.py        the file edits behind prune: retention, compaction, leftovers
    screens.py       kept screen-prep tables
    output.py        a table to a file or stdout (Parquet, CSV, JSON lines)

Imports nothing of the collection engine or the cache manager. Modules are imported by
name: this package's `__init__` loads nothing, so a light command pays only for what it uses.
"""
