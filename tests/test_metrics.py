"""The metric registry: defaults, validation, direction and values (checked against scikit-learn)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from tandem.tools.metrics import (
    METRICS,
    MetricError,
    Predictions,
    better,
    gain,
    resolve_metrics,
    reward_scale,
    score_all,
)

# --------------------------------------------------------------------------------------------
# resolve_metrics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "primary"),
    [("binary", "f1_macro"), ("multiclass", "f1_macro"), ("regression", "rmse")],
)
def test_defaults_per_task(task, primary):
    metrics, chosen = resolve_metrics(None, None, task)
    assert chosen == primary
    assert metrics[0] == primary
    assert all(task in METRICS[m].tasks for m in metrics)
    assert len(set(metrics)) == len(metrics)


def test_regression_defaults_include_r2_and_mae():
    metrics, _ = resolve_metrics([], None, "regression")
    assert set(metrics) == {"rmse", "mae", "r2"}


def test_primary_is_put_first():
    metrics, primary = resolve_metrics(["accuracy", "f1", "roc_auc"], "roc_auc", "binary")
    assert primary == "roc_auc"
    assert metrics == ("roc_auc", "accuracy", "f1")


def test_primary_missing_from_list_is_added_first():
    metrics, primary = resolve_metrics(["accuracy"], "mcc", "binary")
    assert metrics == ("mcc", "accuracy")
    assert primary == "mcc"


def test_primary_with_default_list():
    metrics, primary = resolve_metrics(None, "mae", "regression")
    assert primary == "mae"
    assert metrics[0] == "mae"
    assert metrics.count("mae") == 1
    assert "rmse" in metrics


def test_names_are_normalised_and_deduplicated():
    metrics, primary = resolve_metrics([" Accuracy", "accuracy", "F1_MACRO "], None, "multiclass")
    assert metrics == ("accuracy", "f1_macro")
    assert primary == "accuracy"


def test_unknown_metric_raises_one_line_message():
    with pytest.raises(MetricError) as info:
        resolve_metrics(["acuracy"], None, "binary")
    message = str(info.value)
    assert "unknown metric 'acuracy'" in message
    assert "accuracy" in message.split(";", 1)[1]
    assert "\n" not in message


def test_unknown_primary_raises():
    with pytest.raises(MetricError, match="unknown metric 'bogus'"):
        resolve_metrics(["accuracy"], "bogus", "binary")


def test_roc_auc_on_regression_raises_with_fitting_metrics():
    with pytest.raises(MetricError) as info:
        resolve_metrics(["roc_auc"], None, "regression")
    message = str(info.value)
    assert "'roc_auc' does not fit a regression task" in message
    assert "rmse" in message
    assert "accuracy" not in message
    assert "\n" not in message


def test_binary_only_f1_rejected_for_multiclass():
    with pytest.raises(MetricError, match="does not fit a multiclass task"):
        resolve_metrics(None, "f1", "multiclass")


def test_rmse_on_classification_raises():
    with pytest.raises(MetricError, match="does not fit a binary task"):
        resolve_metrics(["accuracy", "rmse"], None, "binary")


# --------------------------------------------------------------------------------------------
# Direction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "greater"),
    [
        ("accuracy", True),
        ("f1", True),
        ("f1_macro", True),
        ("roc_auc", True),
        ("mcc", True),
        ("r2", True),
        ("log_loss", False),
        ("rmse", False),
        ("mae", False),
        ("mape", False),
        ("rmsle", False),
    ],
)
def test_direction(name, greater):
    assert METRICS[name].greater_is_better is greater


def test_gain_positive_means_better_whatever_the_direction():
    assert gain("rmse", 1.0, 2.0) == pytest.approx(1.0)  # lower rmse is better
    assert gain("rmse", 2.0, 1.0) == pytest.approx(-1.0)
    assert gain("r2", 0.8, 0.5) == pytest.approx(0.3)  # higher r2 is better
    assert gain("r2", 0.5, 0.8) == pytest.approx(-0.3)
    assert gain("log_loss", 0.3, 0.5) > 0
    assert gain("f1_macro", 0.7, 0.6) > 0
    assert better("rmse", 1.0, 2.0)
    assert not better("rmse", 2.0, 1.0)
    assert not better("accuracy", 0.5, 0.5)


def test_reward_scale_relative_for_unbounded_and_one_for_bounded():
    assert reward_scale("f1", 0.4) == 1.0
    assert reward_scale("f1_macro", 0.9) == 1.0
    assert reward_scale("r2", -3.0) == 1.0
    assert reward_scale("rmse", 2.5) == pytest.approx(2.5)
    assert reward_scale("mae", -4.0) == pytest.approx(4.0)
    assert reward_scale("log_loss", 0.25) == pytest.approx(0.25)
    assert 0 < reward_scale("rmse", 0.0) <= 1e-9  # never a division by zero


# --------------------------------------------------------------------------------------------
# Values against scikit-learn
# --------------------------------------------------------------------------------------------

Y_BIN = np.array(["no", "yes", "yes", "no", "yes", "no", "no", "yes"], dtype=object)
PRED_BIN = np.array(["no", "yes", "no", "no", "yes", "yes", "no", "no"], dtype=object)
P_YES = np.array([0.1, 0.9, 0.4, 0.2, 0.7, 0.6, 0.3, 0.45])


def binary_predictions(pos_label):
    return Predictions(
        y_pred=PRED_BIN,
        proba=np.column_stack([1 - P_YES, P_YES]),
        classes=("no", "yes"),
        pos_label=pos_label,
    )


def test_binary_f1_uses_pos_label():
    yes = METRICS["f1"](Y_BIN, binary_predictions("yes"))
    no = METRICS["f1"](Y_BIN, binary_predictions("no"))
    assert yes == pytest.approx(skm.f1_score(Y_BIN, PRED_BIN, pos_label="yes"))
    assert no == pytest.approx(skm.f1_score(Y_BIN, PRED_BIN, pos_label="no"))
    assert yes != pytest.approx(no)


def test_binary_precision_recall_use_pos_label():
    pred = binary_predictions("yes")
    assert METRICS["precision"](Y_BIN, pred) == pytest.approx(skm.precision_score(Y_BIN, PRED_BIN, pos_label="yes"))
    assert METRICS["recall"](Y_BIN, pred) == pytest.approx(skm.recall_score(Y_BIN, PRED_BIN, pos_label="yes"))


def test_binary_label_metrics():
    pred = binary_predictions("yes")
    assert METRICS["accuracy"](Y_BIN, pred) == pytest.approx(skm.accuracy_score(Y_BIN, PRED_BIN))
    assert METRICS["f1_macro"](Y_BIN, pred) == pytest.approx(skm.f1_score(Y_BIN, PRED_BIN, average="macro"))
    assert METRICS["mcc"](Y_BIN, pred) == pytest.approx(skm.matthews_corrcoef(Y_BIN, PRED_BIN))
    assert METRICS["balanced_accuracy"](Y_BIN, pred) == pytest.approx(skm.balanced_accuracy_score(Y_BIN, PRED_BIN))


def test_binary_roc_auc_uses_positive_column():
    auc_yes = METRICS["roc_auc"](Y_BIN, binary_predictions("yes"))
    assert auc_yes == pytest.approx(skm.roc_auc_score(Y_BIN == "yes", P_YES))
    assert auc_yes > 0.5
    # with "no" as the positive class the AUC is about P(no) for y == "no": the same ranking
    auc_no = METRICS["roc_auc"](Y_BIN, binary_predictions("no"))
    assert auc_no == pytest.approx(skm.roc_auc_score(Y_BIN == "no", 1 - P_YES))
    assert auc_no == pytest.approx(auc_yes)


def test_binary_roc_auc_respects_column_order_of_classes():
    # the same probabilities with the class order reversed must give the same AUC
    swapped = Predictions(
        y_pred=PRED_BIN, proba=np.column_stack([P_YES, 1 - P_YES]), classes=("yes", "no"), pos_label="yes"
    )
    assert METRICS["roc_auc"](Y_BIN, swapped) == pytest.approx(skm.roc_auc_score(Y_BIN == "yes", P_YES))


def test_binary_average_precision_and_log_loss():
    pred = binary_predictions("yes")
    assert METRICS["average_precision"](Y_BIN, pred) == pytest.approx(
        skm.average_precision_score(Y_BIN == "yes", P_YES)
    )
    expected = skm.log_loss(Y_BIN, np.column_stack([1 - P_YES, P_YES]), labels=["no", "yes"])
    assert METRICS["log_loss"](Y_BIN, pred) == pytest.approx(expected)


Y_MC = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0])
PROBA_MC = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.3, 0.6],
        [0.3, 0.3, 0.4],
        [0.1, 0.8, 0.1],
        [0.4, 0.4, 0.2],
        [0.2, 0.5, 0.3],
        [0.3, 0.4, 0.3],
        [0.6, 0.1, 0.3],
    ]
)


def multiclass_predictions():
    return Predictions(y_pred=PROBA_MC.argmax(axis=1), proba=PROBA_MC, classes=(0, 1, 2))


def test_multiclass_roc_auc_is_ovr_macro():
    value = METRICS["roc_auc"](Y_MC, multiclass_predictions())
    assert value == pytest.approx(skm.roc_auc_score(Y_MC, PROBA_MC, multi_class="ovr", labels=[0, 1, 2]))
    # one-vs-rest macro is the mean of the per-class binary AUCs
    per_class = [skm.roc_auc_score(np.equal(Y_MC, k), PROBA_MC[:, k]) for k in range(3)]
    assert value == pytest.approx(np.mean(per_class))


def test_multiclass_log_loss_and_macro_scores():
    pred = multiclass_predictions()
    assert METRICS["log_loss"](Y_MC, pred) == pytest.approx(skm.log_loss(Y_MC, PROBA_MC, labels=[0, 1, 2]))
    y_pred = PROBA_MC.argmax(axis=1)
    assert METRICS["f1_macro"](Y_MC, pred) == pytest.approx(skm.f1_score(Y_MC, y_pred, average="macro"))
    assert METRICS["precision"](Y_MC, pred) == pytest.approx(
        skm.precision_score(Y_MC, y_pred, average="macro", zero_division=0)
    )
    onehot = Y_MC[:, None] == np.array([0, 1, 2])[None, :]
    assert METRICS["average_precision"](Y_MC, pred) == pytest.approx(
        skm.average_precision_score(onehot, PROBA_MC, average="macro")
    )


def test_log_loss_counts_a_class_missing_from_y():
    # labels come from `classes`, so a fold without class 2 is still scored (not an error)
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.3, 0.6, 0.1]])
    pred = Predictions(y_pred=proba.argmax(axis=1), proba=proba, classes=(0, 1, 2))
    assert METRICS["log_loss"](y, pred) == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2]))


Y_REG = np.array([3.0, 1.5, 4.0, 2.0, 6.0])
PRED_REG = np.array([2.5, 1.0, 4.5, 2.5, 5.0])


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("rmse", lambda y, p: np.sqrt(np.mean((y - p) ** 2))),
        ("mae", lambda y, p: np.mean(np.abs(y - p))),
        ("r2", skm.r2_score),
        ("mape", skm.mean_absolute_percentage_error),
        ("rmsle", lambda y, p: np.sqrt(np.mean((np.log1p(y) - np.log1p(p)) ** 2))),
    ],
)
def test_regression_values(name, reference):
    assert METRICS[name](Y_REG, Predictions(y_pred=PRED_REG)) == pytest.approx(reference(Y_REG, PRED_REG))


def test_rmsle_clips_negative_predictions():
    pred = Predictions(y_pred=np.array([-1.0, 1.5, 4.0, 2.0, 6.0]))
    value = METRICS["rmsle"](Y_REG, pred)
    assert math.isfinite(value)
    clipped = np.array([0.0, 1.5, 4.0, 2.0, 6.0])
    assert value == pytest.approx(np.sqrt(np.mean((np.log1p(Y_REG) - np.log1p(clipped)) ** 2)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_score_all_returns_every_metric_and_nan_for_uncomputable():
    # a fold with a single class: roc_auc is undefined and becomes NaN instead of an error
    y = np.array(["yes", "yes", "yes"], dtype=object)
    pred = Predictions(
        y_pred=np.array(["yes", "no", "yes"], dtype=object),
        proba=np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]]),
        classes=("no", "yes"),
        pos_label="yes",
    )
    scores = score_all(["accuracy", "roc_auc"], y, pred)
    assert list(scores) == ["accuracy", "roc_auc"]
    assert scores["accuracy"] == pytest.approx(2 / 3)
    assert math.isnan(scores["roc_auc"])
