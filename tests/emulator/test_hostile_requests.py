"""Hostile input never gets a 500 or a traceback: each answer is the vendor's status and body."""

from __future__ import annotations

import gzip
import logging

import orjson
import pytest

from tests.emulator.conftest import DATAROBOT_PREDICT, QLIK_RUN, post
from tests.emulator.payloads import CHURN_FEATURES, SEED_ROWS, csv_text, qlik_body

SCHEMA = [{"name": f} for f in CHURN_FEATURES]
GOOD_QLIK = orjson.dumps(qlik_body(CHURN_FEATURES, SEED_ROWS))
GOOD_CSV = csv_text(CHURN_FEATURES, SEED_ROWS).encode()
HEADER = ",".join(CHURN_FEATURES).encode()
JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


QLIK_CASES = [
    ("empty body", "", JSON, b""),
    ("binary garbage", "", JSON, b"\x00\xff\xfe garbage \x80"),
    ("json null", "", JSON, b"null"),
    ("json number", "", JSON, b"42"),
    ("json string", "", JSON, b'"rows"'),
    ("null schema and rows", "", JSON, b'{"schema": null, "rows": null}'),
    ("numeric column name", "", JSON, b'{"schema": [{"name": 5}], "rows": [[1]]}'),
    ("deep nesting", "", JSON, b'{"schema": [{"name": "x"}], "rows": ' + nested(5000) + b"}"),
    ("containers as cells", "includeNotPredictedReason=true", JSON,
     orjson.dumps({"schema": SCHEMA, "rows": [[{"a": 1}, [1], {}, [], None, "x", 1e308, -1e308]]})),
    ("extreme numbers as text", "includeNotPredictedReason=true&includeShap=true", JSON,
     orjson.dumps({"schema": SCHEMA, "rows": [["Basic", "1e400", "NaN", "-Infinity", "inf", "-0", "nan", "1_0"]]})),
    ("huge integers", "", JSON,
     b'{"schema": ' + orjson.dumps(SCHEMA)
     + b', "rows": [["Basic", 99999999999999999999999999999, true, 1, 1, 1, 1, true]]}'),
    ("unicode everywhere", "includeSource=true", JSON,
     orjson.dumps({"schema": [*SCHEMA, {"name": "名前 🙂"}], "rows": [[*SEED_ROWS[0], "ü\u2028\u0000"]]})),
    ("invalid utf-8 inside json", "", JSON, b'{"schema": [{"name": "\xff"}], "rows": []}'),
    ("ragged rows", "", JSON, orjson.dumps({"schema": SCHEMA, "rows": [SEED_ROWS[0], [1] * 10_000]})),
    ("no rows", "", JSON, orjson.dumps({"schema": SCHEMA, "rows": []})),
    ("bare boolean parameter", "includeShap", JSON, GOOD_QLIK),
    ("empty parameter name", "=1", JSON, GOOD_QLIK),
    ("nul in index", "index=%00", JSON, GOOD_QLIK),
    ("gzip header, plain body", "", {**JSON, "Content-Encoding": "gzip"}, GOOD_QLIK),
    ("unknown encoding", "", {**JSON, "Content-Encoding": "br"}, GOOD_QLIK),
    ("truncated gzip", "", {**JSON, "Content-Encoding": "gzip"}, gzip.compress(GOOD_QLIK)[:30]),
    ("form content type", "", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1&b=2"),
]

DATAROBOT_CASES = [
    ("empty body", "", CSV, b""),
    ("header only", "", CSV, HEADER + b"\n"),
    ("blank lines only", "", CSV, b"\n\n\r\n"),
    ("ragged csv", "", CSV, HEADER + b"\nBasic,1\n"),
    ("unbalanced quote", "", CSV, HEADER + b'\n"Basic,1,true,1,1,1,1,true\n'),
    ("nul bytes", "", CSV, HEADER + b"\nBa\x00sic,1,true,1,1,1,1,true\n"),
    ("invalid utf-8", "", CSV, HEADER + b"\n\xff\xfe,1,true,1,1,1,1,true\n"),
    ("unknown charset", "", {"Content-Type": "text/csv; charset=klingon"}, GOOD_CSV),
    ("latin-1 charset", "", {"Content-Type": "text/plain; charset=ISO-8859-1"},
     HEADER + b"\nB\xe9sic,1,true,1,1,1,1,true\n"),
    ("extreme numbers", "", CSV, HEADER + b"\nBasic,1e400,true,nan,-inf,1,1,true\n"),
    ("duplicate header", "", CSV, HEADER + b",BaseFee\nBasic,1,true,1,1,1,1,true,2\n"),
    ("json object", "", JSON, b'{"PlanType": "Basic"}'),
    ("json array of numbers", "", JSON, b"[1, 2, 3]"),
    ("json nested values", "", JSON, orjson.dumps([{f: {"x": [1]} for f in CHURN_FEATURES}])),
    ("json empty array", "", JSON, b"[]"),
    ("json malformed", "", JSON, b"[{"),
    ("json deep nesting", "", JSON, nested(5000)),
    ("json ragged records", "", JSON,
     orjson.dumps([dict(zip(CHURN_FEATURES, SEED_ROWS[0], strict=True)), {"PlanType": "x"}])),
    ("multipart without file", "", {"Content-Type": "multipart/form-data; boundary=XX"},
     b'--XX\r\nContent-Disposition: form-data; name="other"\r\n\r\nhello\r\n--XX--\r\n'),
    ("multipart without boundary", "", {"Content-Type": "multipart/form-data"}, GOOD_CSV),
    ("multipart garbage", "", {"Content-Type": "multipart/form-data; boundary=\"\""}, b"\x00\x01--\r\n"),
    ("xml content type", "", {"Content-Type": "application/xml"}, GOOD_CSV),
    ("negative maxExplanations", "maxExplanations=-1", CSV, GOOD_CSV),
    ("enormous maxExplanations", "maxExplanations=99999999999999999999999", CSV, GOOD_CSV),
    ("nan threshold", "maxExplanations=2&thresholdLow=nan", CSV, GOOD_CSV),
    ("inf threshold", "thresholdHigh=inf", CSV, GOOD_CSV),
    ("zero top classes", "explanationNumTopClasses=0", CSV, GOOD_CSV),
    ("both class selectors", "explanationNumTopClasses=1&explanationClassNames=a", CSV, GOOD_CSV),
    ("blank class name", "explanationClassNames=", CSV, GOOD_CSV),
    ("bad ngram count", "maxNgramExplanations=many", CSV, GOOD_CSV),
    ("unknown algorithm", "maxExplanations=1&explanationAlgorithm=lime", CSV, GOOD_CSV),
    ("bad gzip", "", {**CSV, "Content-Encoding": "gzip"}, b"\x1f\x8b\x08\x00garbage"),
    ("odd accept", "", {**CSV, "Accept": "text/csv;q=abc, */*;q=0"}, GOOD_CSV),
]


@pytest.fixture
def no_tracebacks(caplog):
    caplog.set_level(logging.DEBUG)
    yield
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not problems, [r.getMessage() for r in problems]


@pytest.mark.parametrize("params, headers, body", [c[1:] for c in QLIK_CASES], ids=[c[0] for c in QLIK_CASES])
async def test_qlik_hostile_requests(http, emulator, no_tracebacks, params, headers, body):
    url = emulator.url + QLIK_RUN.format("churn") + (f"?{params}" if params else "")
    status, _, raw = await post(http, url, data=body, headers=headers)
    assert status in (200, 400, 413), raw
    doc = orjson.loads(raw)
    if status == 200:
        assert doc["data"]["type"] == "realtime-prediction"
    else:
        assert set(doc) == {"errors", "traceId"} and doc["errors"][0]["code"] == f"HTTP-{status}"


@pytest.mark.parametrize("params, headers, body", [c[1:] for c in DATAROBOT_CASES],
                         ids=[c[0] for c in DATAROBOT_CASES])
async def test_datarobot_hostile_requests(http, emulator, no_tracebacks, params, headers, body):
    url = emulator.url + DATAROBOT_PREDICT.format("churn") + (f"?{params}" if params else "")
    status, response_headers, raw = await post(http, url, data=body, headers=headers)
    assert status in (200, 400, 413, 422), raw
    assert "X-DataRobot-Execution-Time" in response_headers
    if status == 200 and response_headers["Content-Type"].startswith("text/csv"):
        return
    doc = orjson.loads(raw)
    if status == 200:
        assert isinstance(doc["data"], list)
    else:
        assert list(doc) == ["message"] and isinstance(doc["message"], str) and doc["message"]


@pytest.mark.parametrize("path", [
    "/api/v1/ml/deployments/%2e%2e/realtime-predictions/actions/run",
    "/api/v1/ml/deployments/" + "x" * 5000 + "/realtime-predictions/actions/run",
    "/predApi/v1.0/deployments/%00/predictions",
    "/predApi/v1.0/deployments/" + "f" * 5000 + "/predictions",
    "/predApi/v1.0/deployments/churn/predictionz",
    "/predApi/v2.0/whatever",
])
async def test_odd_paths_get_vendor_404s(http, emulator, no_tracebacks, path):
    status, _, raw = await post(http, emulator.url + path, data=b"x")
    assert status == 404
    doc = orjson.loads(raw)
    assert ("message" in doc) if path.startswith("/predApi") else ("errors" in doc)


async def test_bad_credentials_are_never_a_500(http, emulator, no_tracebacks):
    emulator.configure(token="t", datarobot_key="k")
    for authorization in ("Basic", "Basic %%%", "Basic " + "A" * 8000, "Digest abc", "\t", "Bearer  t  "):
        accepted = authorization == "Bearer  t  "  # surrounding blanks are not part of the token
        status, _, raw = await post(http, emulator.url + DATAROBOT_PREDICT.format("churn"), data=GOOD_CSV,
                                    headers={**CSV, "Authorization": authorization, "DataRobot-Key": "k"})
        assert (status, list(orjson.loads(raw))) == ((200, ["data"]) if accepted else (401, ["message"]))
        status, _, raw = await post(http, emulator.url + QLIK_RUN.format("churn"), data=GOOD_QLIK,
                                    headers={**JSON, "Authorization": authorization})
        assert (status, next(iter(orjson.loads(raw)))) == ((200, "data") if accepted else (401, "errors"))


async def test_malformed_http_is_a_400_without_traceback(http, emulator, no_tracebacks, caplog):
    # Past the HTTP parser's 8 KiB header limit: refused before any route sees it, logged as one line.
    status, _, _ = await post(http, emulator.url + QLIK_RUN.format("churn"), data=GOOD_QLIK,
                              headers={**JSON, "Authorization": "Bearer " + "A" * 10_000})
    assert status == 400
    assert any("HTTP 400" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_control_route_rejects_bad_input(http, emulator, no_tracebacks):
    for body in (b"", b"[1]", b"{", b'{"latency_ms": "fast"}', b'{"error_rate": {"abc": 1}}',
                 b'{"error_rate": {"503": 2}}', b'{"nope": 1}', b'{"hang_rate": -1}', b'{"seed": 1.5}'):
        status, _, raw = await post(http, emulator.url + "/_emulator/config", data=body)
        assert status == 400 and orjson.loads(raw)["error"]
