"""tradelake: the Phemex public trade stream, captured exactly once into a Parquet lake.

The modules follow the flow of a trade: ``markets`` (which protocol a symbol speaks and its
scales) → ``protocol`` (frames in and out) → ``normalise`` (exact fixed-point values) →
``cursor`` (dedup, reconciliation and gaps) → ``feed`` (the per-frame work, sans I/O: snapshot
discipline per subscription) → ``capture`` (the loop around it) → ``ports`` (sinks, cursor stores
and gap ledgers) with their adapters in ``adapters``.
"""

__version__ = "0.1.0"
