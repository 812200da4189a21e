"""``pipelines[].backend``: a Qlik Predict or a DataRobot deployment, told apart by ``type``.

Each vendor is its own section type with the keys common to both plus its own, so a key of the other
vendor is refused by name (``only valid for type qlik (this backend is datarobot)``) and the JSON
Schema offers each vendor's keys only. :data:`BackendConfig` is the union the rest of the code
annotates with; :func:`choose_backend` picks the type from the section as written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Literal, get_args

from annotated_types import Ge, Le
from pydantic import Field, Strict, ValidationInfo, ValidatorFunctionWrapHandler

from ..json_types import JsonObject
from .errors import Problem
from .secrets import SECRET
from .section import NULL_OR_REFERENCE, Keys, Rule, Section
from .substitution import Resolver, Unresolved
from .types import CountOrAll, Flag, Fraction, HttpUrl, NamesOrAll, PositiveNumber, Text, Unique

QLIK = "qlik"
DATAROBOT = "datarobot"

_QLIK_URL = HttpUrl(
    path=r"(?:/[^?#]*)?/api/v1/ml/deployments/[^/?#]+(?:/aliases/[^/?#]+)?/realtime-predictions/actions/run/?",
    kind="a Qlik real-time run path",
    expected=".../api/v1/ml/deployments/{id}[/aliases/{alias}]/realtime-predictions/actions/run",
    withdrawn=((r"(?:/[^?#]*)?/api/v1/automl-deployments/[^/?#]+/realtime-predictions/?",
                "the automl-deployments endpoint is withdrawn (sunset 2026-02): use "
                ".../api/v1/ml/deployments/{id}/realtime-predictions/actions/run"),))
_DATAROBOT_URL = HttpUrl(
    path=r"(?:/[^?#]*)?/(?:predApi/v1\.0|api/v2)/deployments/[^/?#]+/predictions/?",
    kind="a DataRobot prediction path",
    expected=".../predApi/v1.0/deployments/{id}/predictions or .../api/v2/deployments/{id}/predictions")

_TYPE = "`qlik` or `datarobot`"
_URL = ("the full endpoint URL. Qlik: `…/api/v1/ml/deployments/{id}[/aliases/{alias}]/realtime-predictions/"
        "actions/run`. DataRobot: `…/predApi/v1.0/deployments/{id}/predictions` (or serverless "
        "`…/api/v2/deployments/{id}/predictions`)")


class _Backend(Section):
    """The keys both vendors have."""

    type: Literal["qlik", "datarobot"] = Field(description=_TYPE)
    url: Annotated[str, HttpUrl()] = Field(description=_URL)
    token: Annotated[Text | None, SECRET] = Field(None, description="API key / bearer token (secret)")
    ca_file: Text | None = Field(None, description="CA bundle to trust for the API's TLS; null = the system store")
    rate_limit_per_minute: PositiveNumber | None = Field(
        None, description="client-side request cap (Qlik's real-time tier: 100/min); null = none")
    rate_limit_scope: Literal["replica", "group"] = Field(
        "replica", description="`replica`: the cap is each replica's; `group`: the cap is the whole consumer "
                               "group's, and each replica takes the share of its input partitions")
    response_format: Literal["json", "csv"] = Field("json", description="`json` or `csv`: the `Accept` header sent")

    def applies(self, key: str) -> bool:
        """Whether ``key`` means anything for this backend's type (the other vendor's keys do not)."""
        return key in type(self).model_fields

    @classmethod
    def kind(cls) -> str:
        return str(get_args(cls.model_fields["type"].annotation)[0])

    @classmethod
    def misplaced(cls, key: str) -> str | None:
        for other in _VENDORS.values():
            if other is not cls and key in other.model_fields and key not in cls.model_fields:
                return f"only valid for type {other.kind()} (this backend is {cls.kind()})"
        return None


class QlikBackend(_Backend):
    type: Literal["qlik"] = Field(description=_TYPE)
    url: Annotated[str, _QLIK_URL] = Field(description=_URL)
    include_shap: Flag = Field(True, description="ask for SHAP values")
    include_source: Flag = Field(False, description="echo input columns (into `passthrough`)")
    include_not_predicted_reason: Flag = Field(
        True, description="ask why a row was not predicted (dead-lettered with the reason)")
    index_column: Text | None = Field(None, description="a record field Qlik echoes back as the row's index")
    stringify_values: Flag = Field(
        False, description="send every cell as a string (for deployments that insist on `string[][]`)")


def _basic_auth(keys: Keys) -> Iterator[Problem]:
    if not keys.ok("auth_scheme"):
        return
    if keys["auth_scheme"] == "basic":
        for key in ("username", "token"):
            if keys.ok(key) and keys[key] is None:
                yield (key,), "required with auth_scheme basic"
    elif keys.ok("username") and keys["username"] is not None:
        yield ("username",), f"only used with auth_scheme basic (it is {keys['auth_scheme']})"


def _all_explanations_need_shap(keys: Keys) -> Iterator[Problem]:
    if (keys.ok("max_explanations", "explanation_algorithm") and keys["max_explanations"] == "all"
            and keys["explanation_algorithm"] == "xemp"):
        yield ("max_explanations",), '"all" is only valid with SHAP explanations (explanation_algorithm is xemp)'


def _thresholds_in_order(keys: Keys) -> Iterator[Problem]:
    if keys.ok("threshold_low", "threshold_high"):
        low, high = keys["threshold_low"], keys["threshold_high"]
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            yield ("threshold_low",), f"must be <= threshold_high ({high})"


def _one_class_selector(keys: Keys) -> Iterator[Problem]:
    """The prediction server refuses both selectors at once; so does the config, before any request."""
    if (keys.ok("explanation_num_top_classes", "explanation_class_names")
            and keys["explanation_num_top_classes"] is not None and keys["explanation_class_names"]):
        yield (("explanation_class_names",),
               "mutually exclusive with explanation_num_top_classes (give one of the two)")


_NOT_NULL: JsonObject = {"not": {"type": "null"}}
# The number of top classes a multiclass explanation covers: the server's range.
TopClasses = Annotated[int, Strict(), Ge(1), Le(10)]
ClassNames = Annotated[tuple[Text, ...], Unique()]


class DataRobotBackend(_Backend):
    type: Literal["datarobot"] = Field(description=_TYPE)
    url: Annotated[str, _DATAROBOT_URL] = Field(description=_URL)
    datarobot_key: Annotated[Text | None, SECRET] = Field(
        None, description="the `DataRobot-Key` header managed prediction servers need (secret)")
    auth_scheme: Literal["bearer", "token", "basic"] = Field(
        "bearer", description="`bearer`, `token` or `basic` (basic needs `username`)")
    username: Text | None = Field(None, description="user for `basic` auth")
    body_format: Literal["csv", "json"] = Field("csv", description="request body: `csv` or `json`")
    gzip: Flag = Field(False, description="gzip request bodies")
    max_explanations: CountOrAll = Field(
        0, description='explanations per row: 0 = off, an integer or `"all"` (SHAP only)')
    explanation_algorithm: Literal["shap", "xemp"] | None = Field(
        None, description="`shap`, `xemp` or null (the deployment's default); XEMP can be 100× slower")
    threshold_low: Fraction | None = Field(None, description="explain only predictions below this value (0–1)")
    threshold_high: Fraction | None = Field(None, description="explain only predictions above this value (0–1)")
    passthrough_columns: NamesOrAll = Field(
        (), description='input columns echoed into `passthrough`, or `"all"`')
    explanation_num_top_classes: TopClasses | None = Field(
        None, description="multiclass: explain the N most probable classes (1–10); null = the server's default (1)")
    explanation_class_names: ClassNames = Field(
        (), description="multiclass: explain these classes (not with `explanation_num_top_classes`)")
    exclude_adjusted_predictions: Flag | None = Field(
        None, description="`false` asks for exposure-adjusted predictions (`adjusted_prediction`); "
                          "null = the server's default (`true`, excluded)")
    prediction_warning_enabled: Flag | None = Field(
        None, description="`true` asks for prediction warnings (`prediction_warning`); null = not sent")

    rules = (
        Rule(_basic_auth, schema={"allOf": [
            {"if": {"required": ["auth_scheme"], "properties": {"auth_scheme": {"const": "basic"}}},
             "then": {"required": ["username", "token"], "properties": {"username": _NOT_NULL, "token": _NOT_NULL}}},
            {"if": {"properties": {"auth_scheme": {"enum": ["bearer", "token"]}}},  # also when left out
             "then": {"properties": {"username": NULL_OR_REFERENCE}}},
        ]}),
        Rule(_all_explanations_need_shap, schema={
            "not": {"required": ["max_explanations", "explanation_algorithm"],
                    "properties": {"max_explanations": {"const": "all"}, "explanation_algorithm": {"const": "xemp"}}},
        }),
        Rule(_thresholds_in_order),  # JSON Schema cannot compare two values
        Rule(_one_class_selector, schema={
            "not": {"required": ["explanation_num_top_classes", "explanation_class_names"],
                    "properties": {"explanation_num_top_classes": {"type": "integer"},
                                   "explanation_class_names": {"minItems": 1}}},
        }),
    )


class _AnyBackend(DataRobotBackend, QlikBackend):
    """A backend whose ``type`` is missing or wrong: its keys are still checked, against both vendors'."""

    # Wider than either vendor's on purpose (a validation aid, never a result): hence the ignores.
    type: Literal["qlik", "datarobot"] = Field(description=_TYPE)  # type: ignore[assignment]
    url: Annotated[str, HttpUrl()] = Field(description=_URL)
    rules = ()  # type: ignore[assignment]

    @classmethod
    def misplaced(cls, key: str) -> str | None:
        return None


_VENDORS: Mapping[str, type[QlikBackend] | type[DataRobotBackend]] = {QLIK: QlikBackend, DATAROBOT: DataRobotBackend}

BackendConfig = QlikBackend | DataRobotBackend


def choose_backend(value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> BackendConfig:
    """Validates ``value`` as the vendor its ``type`` names (as written, or resolved if a reference)."""
    if isinstance(value, (QlikBackend, DataRobotBackend)):
        return value
    kind = value.get("type") if isinstance(value, Mapping) else None
    if isinstance(info.context, Resolver):
        try:
            kind = info.context.resolve(kind)
        except Unresolved:
            kind = None  # reported by the validation below
    vendor = _VENDORS.get(kind, _AnyBackend) if isinstance(kind, str) else _AnyBackend
    return vendor.model_validate(value, context=info.context)
