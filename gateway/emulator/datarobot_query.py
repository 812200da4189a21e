"""DataRobot's query parameters, checked the way the prediction server checks them, and its
``{"message": …}`` error bodies (the documented 422 texts, ``DataError(…)`` included).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from multidict import MultiMapping

from gateway.emulator.models import Model
from gateway.emulator.vendor import Refusal

ALLOWED_PARAMS = frozenset({
    "passthroughColumns", "passthroughColumnsSet", "maxExplanations", "maxCodes", "thresholdLow",
    "thresholdHigh", "explanationAlgorithm", "maxNgramExplanations", "explanationNumTopClasses",
    "explanationClassNames", "predictionWarningEnabled", "excludeAdjustedPredictions"})
TRUE_WORDS = frozenset({"true", "1"})
FALSE_WORDS = frozenset({"false", "0"})


def message(status: int, text: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"message": text}), content_type="application/json")


def _data_error(field: str, problem: str) -> Refusal:
    return Refusal(message(422, f"{{'{field}': DataError({problem})}}"))


@dataclass(slots=True)
class ExplanationRequest:
    algorithm: str  # "shap" | "xemp"
    limit: int | None  # None = all features
    threshold_low: float | None
    threshold_high: float | None

    def wanted(self, value: float) -> bool:
        """Whether a row's prediction lies outside [thresholdLow, thresholdHigh] (or no threshold is set)."""
        if self.threshold_low is None and self.threshold_high is None:
            return True
        return ((self.threshold_low is not None and value < self.threshold_low)
                or (self.threshold_high is not None and value > self.threshold_high))


@dataclass(slots=True)
class DataRobotQuery:
    passthrough: list[str]
    passthrough_all: bool
    max_explanations: int | str  # a count, or "all"
    threshold_low: float | None
    threshold_high: float | None
    algorithm: str | None
    prediction_warnings: bool = False  # predictionWarningEnabled=true

    @classmethod
    def parse(cls, query: MultiMapping[str]) -> DataRobotQuery:
        for key in query:
            if key not in ALLOWED_PARAMS:
                raise Refusal(message(422, f"'{key}': {key} is not allowed key"))
        passthrough = query.getall("passthroughColumns", [])
        if any(not name.strip() for name in passthrough):
            raise Refusal(message(422, "'passthroughColumns': blank value is not allowed"))
        passthrough_set = query.get("passthroughColumnsSet")
        if passthrough_set is not None and passthrough_set != "all":
            raise Refusal(message(422, "'passthroughColumnsSet': value is not exactly 'all'"))
        max_explanations = _max_explanations(query.get("maxExplanations", query.get("maxCodes")))
        low = _threshold("threshold_low", query.get("thresholdLow"))
        high = _threshold("threshold_high", query.get("thresholdHigh"))
        algorithm = query.get("explanationAlgorithm")
        if algorithm is not None:
            algorithm = algorithm.strip().lower()
            if algorithm not in ("shap", "xemp"):
                raise _data_error("explanation_algorithm", "value doesn't match any variant")
        _check_multiclass_params(query)
        warnings = _boolean(query.get("predictionWarningEnabled"), lambda: Refusal(
            message(422, "'predictionWarningEnabled': value can't be converted to Bool")))
        _boolean(query.get("excludeAdjustedPredictions"),
                 lambda: _data_error("exclude_adjusted_predictions", "value can't be converted to Bool"))
        return cls(passthrough, passthrough_set == "all", max_explanations, low, high, algorithm, bool(warnings))

    def explanations(self, model: Model, default_algorithm: str) -> ExplanationRequest | None:
        algorithm = self.algorithm or default_algorithm
        if self.max_explanations == "all" and algorithm != "shap":
            raise _data_error("max_codes", "value can't be converted to int")
        if self.max_explanations == 0:
            return None
        if model.kind == "multiclass":
            raise Refusal(message(422, "Multiclass models cannot be used for Prediction Explanations"))
        limit = None if self.max_explanations == "all" else int(self.max_explanations)
        return ExplanationRequest(algorithm, limit, self.threshold_low, self.threshold_high)


def _max_explanations(value: str | None) -> int | str:
    if value is None:
        return 0
    if value.strip() == "all":
        return "all"
    try:
        number = int(value.strip())
    except ValueError:
        raise _data_error("max_codes", "value can't be converted to int") from None
    if number < 0:
        raise _data_error("max_codes", "value is less than 0")
    return number


def _threshold(field: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _data_error(field, "value can't be converted to float")
    return number


def _check_multiclass_params(query: MultiMapping[str]) -> None:
    """The multiclass selectors are checked even though explanations then refuse multiclass."""
    top = query.get("explanationNumTopClasses")
    names = query.getall("explanationClassNames", [])
    if top is not None:
        try:
            number = int(top.strip())
        except ValueError:
            raise _data_error("explanation_num_top_classes", "value can't be converted to int") from None
        if not 1 <= number <= 10:
            raise _data_error("explanation_num_top_classes", "value is not between 1 and 10")
    if any(not name.strip() for name in names):
        raise Refusal(message(422, "'explanationClassNames': blank value is not allowed"))
    if top is not None and names:
        raise Refusal(message(422, "explanationNumTopClasses and explanationClassNames are mutually exclusive"))
    ngrams = query.get("maxNgramExplanations")
    if ngrams is not None and ngrams.strip() != "all":
        try:
            if int(ngrams.strip()) < 0:
                raise ValueError
        except ValueError:
            raise _data_error("max_ngram_explanations", "value can't be converted to int") from None


def _boolean(value: str | None, refusal: Callable[[], Refusal]) -> bool | None:
    if value is None:
        return None
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise refusal()
