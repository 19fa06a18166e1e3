"""Can skops store the model a run delivers? One row per estimator family, as in docs/security.md.

skops (https://skops.readthedocs.io) saves scikit-learn models in a format that is loaded
without unpickling: only types the loader is told to trust are built. This script fits the
model tandem delivers (`DeliveredModel` around the pipeline: a ratio and a log feature, one-hot
and target encoding, range clipping) for each family, and reports its joblib size, the skops
sizes (stored, as skops writes by default, and deflated), the types skops does not trust on its
own, whether skops's defaults load it, the load time with those types trusted, and whether the
loaded model predicts exactly as the fitted one.

skops is not a core dependency of tandem (the `mlflow` extra brings it, as MLflow's sklearn
flavour saves in it); with it installed (measured with 0.16.0): `python scripts/skops_eval.py`.
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from typing import Any

import joblib
import numpy as np
import pandas as pd

from tandem.tools.delivered_model import deliverable
from tandem.tools.spec import parse_spec
from tandem.tools.training import Problem, fit_final

FAMILIES = ("logistic", "ridge", "knn", "random_forest", "hist_gradient_boosting", "lightgbm", "catboost")


def data(n: int = 400) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features with numbers, gaps, a small and a large category set; a binary and a positive target."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=n), rng.gamma(2.0, size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "city": rng.choice([f"c{i}" for i in range(40)], n)})
    frame.loc[rng.choice(n, 30, replace=False), "x2"] = np.nan
    signal = 1.5 * x1 - np.nan_to_num(x2) + (colour == "red")
    labels = pd.Series(np.where(signal + rng.normal(scale=0.5, size=n) > 0, "yes", "no"))
    return frame, labels, pd.Series(np.exp(1 + 0.2 * signal))


def row(family: str, frame: pd.DataFrame, labels: pd.Series, values: pd.Series) -> dict[str, Any]:
    import skops.io as sio  # an optional tool of this script only

    regression = family == "ridge"
    problem = (
        Problem(task_type="regression", metrics=("rmse",), primary_metric="rmse")
        if regression
        else Problem(
            task_type="binary",
            metrics=("f1_macro",),
            primary_metric="f1_macro",
            classes=("no", "yes"),
            positive_class="yes",
        )
    )
    spec = parse_spec(
        {
            "kind": "pipeline",
            "columns": {"numeric": ["x1", "x2"], "categorical": ["colour"], "high_cardinality": ["city"]},
            "features": [{"op": "ratio", "numerator": "x1", "denominator": "x2"}, {"op": "log", "columns": ["x2"]}],
            "preprocessing": {"numeric_imputer": "median", "scaler": "standard", "high_cardinality_encoder": "target"},
            "model": {"family": family, "params": {}},
            "target_transform": "log" if regression else "none",
        }
    )
    y = values if regression else labels
    model = deliverable(fit_final(spec, frame, y, problem), frame, spec, target="y")
    pickled = io.BytesIO()
    joblib.dump(model, pickled)
    stored = sio.dumps(model)
    deflated = sio.dumps(model, compression=zipfile.ZIP_DEFLATED)
    untrusted = sio.get_untrusted_types(data=deflated)
    try:
        sio.loads(deflated)
        defaults = "loads"
    except Exception as exc:  # skops raises UntrustedTypesFoundException; anything else is reported too
        defaults = type(exc).__name__
    start = time.perf_counter()
    loaded = sio.loads(deflated, trusted=untrusted)
    seconds = time.perf_counter() - start
    return {
        "family": family,
        "joblib_bytes": len(pickled.getvalue()),
        "skops_stored_bytes": len(stored),
        "skops_deflated_bytes": len(deflated),
        "untrusted_types": untrusted,
        "skops_defaults": defaults,
        "load_seconds": round(seconds, 3),
        "same_predictions": bool(np.array_equal(np.asarray(loaded.predict(frame)), np.asarray(model.predict(frame)))),
    }


def main() -> int:
    try:
        import skops  # an optional tool of this script only
    except ImportError:
        print("skops is not installed: pip install skops (measured with 0.16.0)", file=sys.stderr)
        return 2
    import sklearn

    print(json.dumps({"skops": skops.__version__, "scikit-learn": sklearn.__version__}))
    frame, labels, values = data()
    for family in FAMILIES:
        print(json.dumps(row(family, frame, labels, values)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
