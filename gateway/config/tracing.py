"""The ``tracing:`` section: where spans go, how many records start a trace, what the service is called.

Absent means off: no context is read from the input records and nothing is added to the outputs.
``exporter: none`` still propagates context (every output record continues its input's trace)
while exporting nothing, for a gateway between traced services whose own spans are not wanted.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict

from .secrets import SECRET
from .section import Section
from .types import Fraction, HttpUrl, Matching, Text

# An HTTP header name (RFC 9110 token) and a value without control characters.
HeaderName = Annotated[str, Strict(), Matching(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}",
                                               "an HTTP header name: letters, digits and !#$%&'*+.^_`|~-")]
HeaderValue = Annotated[str, Strict(), Matching(r"[^\x00-\x1f\x7f]{1,8192}",
                                                "one line of printable text (no control characters)")]
AttributeName = Annotated[str, Strict(), Matching(r"[A-Za-z0-9_.\-/]{1,255}",
                                                  "letters, digits, '.', '_', '-' or '/'")]


class TracingConfig(Section):
    exporter: Literal["otlp", "none"] = Field(
        "otlp", description="`otlp`: spans go to `endpoint` over OTLP/HTTP; `none`: context is propagated to the "
                            "output records and the scoring requests, no span is exported")
    endpoint: Annotated[str, HttpUrl()] = Field(
        "http://localhost:4318", description="the collector's OTLP/HTTP address; `/v1/traces` is added unless the "
                                             "path already ends with it")
    headers: Annotated[dict[HeaderName, HeaderValue], SECRET] = Field(
        {}, description="HTTP headers sent with every export, e.g. an API key (secret values)")
    sample_ratio: Fraction = Field(
        0.01, description="the share of records without trace context that start a trace (0-1), drawn once per "
                          "batch for all of its records without context; a record whose `traceparent` is "
                          "sampled is always traced, one whose `traceparent` is not, never (parent-based)")
    service_name: Text = Field("scoring-gateway", description="`service.name` of the gateway's spans")
    resource_attributes: dict[AttributeName, Text] = Field(
        {}, description="more resource attributes of the gateway's spans "
                                          "(`deployment.environment.name: prod`)")
