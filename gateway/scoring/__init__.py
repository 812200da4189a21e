"""Scoring a batch: the lanes it takes, and one request's way to the API and back.

``lanes`` builds the prediction lane (and the deferred ``explainer`` lane); ``dispatcher`` scores a
batch with admission by the ``breaker``, a request slot from ``concurrency``, pacing by
``ratelimit``, back-off from ``retry`` and bisection of rejected rows; ``client`` sends one encoded
request over HTTP and maps the answer to a decoded batch or a typed failure. What a request looks
like on the wire is the vendor's, in ``gateway.backends``.
"""
