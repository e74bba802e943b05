"""The transport: from a target URL and request options to one complete response.

``urls`` (query encoding and merging), ``auth`` (credentials as ``requests`` auth
objects), ``body`` (request bodies, and the spool a large response body is written to),
``deadline`` (one deadline per attempt), ``client`` (redirects, one send, the exception
map), ``retry`` (reattempts as data) and ``ratelimit``. Nothing here imports the config
layer: the run layer hands the client plain :class:`~tap_rhttp.http.client.RequestOptions`.
"""
