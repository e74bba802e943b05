"""Stream schemas: declared by the user, or inferred from sampled records (``infer``)."""
