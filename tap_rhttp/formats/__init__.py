"""Response bodies to records: ``readers`` (by `result_format`), ``records``
(`records_path`, splicing), ``streaming`` (large array bodies in flat memory)."""
