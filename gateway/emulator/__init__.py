"""The scoring emulator: a local server that speaks Qlik Predict's and DataRobot's real-time
prediction APIs, backed by real deterministic models with exact SHAP values.

Both vendors require credentials: a request without a bearer token (Qlik) or without an API token
(DataRobot) is answered 401 with the vendor's body; any token is accepted unless one is configured.

Routes (one port):

* Qlik ``POST /api/v1/ml/deployments/{id}/realtime-predictions/actions/run`` and
  ``POST /api/v1/ml/deployments/{id}/aliases/{alias}/realtime-predictions/actions/run`` (any alias);
* DataRobot ``POST /predApi/v1.0/deployments/{id}/predictions``;
* ``GET|POST /_emulator/config`` (options, changed live), ``GET /_emulator/stats``,
  ``GET /_emulator/deployments``, ``GET /_emulator/requests`` (the path and query of the last 256
  prediction requests, exactly as they arrived).

Deployments (each answers to its name, to its UUID on the Qlik routes and to its 24-hex id on the
DataRobot routes; ``GET /_emulator/deployments`` lists the ids):

* ``churn`` — binary classifier, target ``Churned``, classes ``no``/``yes``, on the Qlik tutorial's
  features ``PlanType`` (Basic/Standard/Premium/Enterprise), ``NumberOfPenalties``, ``HasRenewed``,
  ``BaseFee``, ``ServiceTickets``, ``AdditionalFeatureSpend``, ``ServiceRating``, ``Promotion``.
  Logistic; SHAP in probability of ``yes``.
* ``customer_value`` — regression, target ``LifetimeValue`` (currency units), on ``PlanType``,
  ``TenureMonths``, ``BaseFee``, ``AdditionalFeatureSpend``, ``ServiceRating``, ``HasRenewed``.
  Linear; SHAP in target units. Prediction warnings on: with ``predictionWarningEnabled=true``
  every DataRobot row says whether its prediction lies outside 0–4000 (``isOutlierPrediction``).
* ``support_priority`` — multiclass, target ``Priority``, classes ``high``/``low``/``medium``, on
  ``Channel`` (phone/chat/email/web), ``OpenTickets``, ``WaitMinutes``, ``ServiceRating``,
  ``PlanType``, ``IsOutage``. Softmax; SHAP in probability of the predicted class.
  DataRobot refuses explanations for it (422), as it does for multiclass models.

For every row ``base value + Σ SHAP = the reported output`` (P(positive class), the regression's
value, P(predicted class)) to 1e-9, with one base value per deployment (per class for
multiclass): see :mod:`gateway.emulator.attribution`.

The default latency model is a real service's (5 ms + 0.02 ms per row, SHAP 2×, XEMP 100×);
``latency_ms=0, per_row_ms=0`` asks for an instant emulator.

Programmatic use (tests, the demo, benchmarks)::

    from gateway.emulator import EmulatorOptions, start_emulator

    emulator = await start_emulator(EmulatorOptions(latency_ms=0, per_row_ms=0, seed=1), host="127.0.0.1", port=0)
    ...  # talk HTTP to emulator.url
    emulator.configure(error_rate={503: 0.2})   # as POST /_emulator/config does
    emulator.configure(crash_value="666", max_concurrent_requests=8)
    emulator.stats.snapshot()                   # as GET /_emulator/stats returns
    await emulator.stop()                       # or: async with await start_emulator(...) as emulator

From the command line: ``scoring-gateway emulate --port 8080 [options]`` (see ``--help``).
"""

from gateway.emulator.models import DEPLOYMENTS, Deployment, DeploymentCatalog, Model
from gateway.emulator.server import Emulator, start_emulator
from gateway.emulator.settings import EmulatorOptions, OptionError

__all__ = ["DEPLOYMENTS", "Deployment", "DeploymentCatalog", "Emulator", "EmulatorOptions", "Model",
           "OptionError", "start_emulator"]
