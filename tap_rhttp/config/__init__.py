"""The config layer: the option table and its checks, :class:`RequestSpec`, loading.

``checks`` (one function per kind of value), ``options`` (the table), ``spec`` (the
frozen result), ``templates`` (``{{ }}`` placeholders), ``load`` (:func:`load_specs`:
merge with `defaults`, cross-field rules, every error at once) and ``jsonschema`` (the
tap's config schema, generated from the table).
"""
