"""Running streams: ``chain`` (one spec's pages), ``fanout`` (which chains, run how),
``resume`` (the position in STATE), ``graph`` (the stream-graph rules) and ``context``
(the composition root: one :class:`~tap_rhttp.run.context.RunContext` per run)."""
