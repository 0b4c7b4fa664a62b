"""The LightGBM wrapper on synthetic builds with a learnable signal: it learns,
it splits in time, it is deterministic, and its text is the model."""

import json
import math

import numpy as np
import pytest

from scheduler.evaluation.metrics import apfd
from scheduler.risk.features import FeatureMatrix
from scheduler.risk.model import ModelInputError
from scheduler.risk.serving import InvalidModelText, load_model
from scheduler.risk.training import (
    EARLY_STOPPING_ROUNDS,
    NoPositiveLabels,
    TooFewBuilds,
    TrainedModel,
    grouped_apfd,
    train_model,
    validation_metrics,
)

NAMES = ("fail_rate", "own_file_changed", "noise_a", "noise_b", "noise_c", "duration")


def synthetic(builds: int = 200, tests: int = 40, seed: int = 1) -> tuple[np.ndarray, ...]:
    """Rows of ``builds`` builds of ``tests`` tests each, about 6% failing:
    the failure rate and a changed own file raise the risk, the rest is noise."""
    rng = np.random.default_rng(seed)
    build = np.repeat(np.arange(builds), tests)
    n = builds * tests
    features = rng.normal(size=(n, len(NAMES)))
    features[:, 0] = rng.beta(0.5, 10.0, size=n)
    features[:, 1] = rng.random(n) < 0.05
    features[:, 5] = rng.exponential(2.0, size=n)
    logit = -6.5 + 30.0 * features[:, 0] + 5.0 * features[:, 1]
    failed = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    return features, failed, build


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, ...]:
    return synthetic()


@pytest.fixture(scope="module")
def trained(data: tuple[np.ndarray, ...]) -> TrainedModel:
    features, failed, build = data
    return train_model(features, failed, build, NAMES)


def test_the_model_beats_random_order_on_the_validation_builds(
    data: tuple[np.ndarray, ...], trained: TrainedModel
) -> None:
    _, failed, build = data
    newest = build >= trained.validation.first_build
    rng = np.random.default_rng(5)
    random_apfds = [
        value
        for b in np.unique(build[newest])
        for _ in range(20)
        if (value := apfd(rng.permutation(failed[build == b]))) is not None
    ]
    assert np.mean(random_apfds) == pytest.approx(0.5, abs=0.03)
    result = trained.metrics
    assert result.failing_builds > 20
    assert result.mean_apfd is not None
    assert result.mean_apfd > 0.8
    assert result.auc is not None
    assert result.auc > 0.9
    assert result.mean_recall_at_20 is not None
    assert result.mean_recall_at_20 > 0.8
    assert result.mean_recall_at_33 is not None
    assert result.mean_recall_at_33 >= result.mean_recall_at_20
    # Better than the base rate told as a constant probability.
    rate = failed[~newest].mean()
    constant = -np.mean(np.where(failed[newest], math.log(rate), math.log1p(-rate)))
    assert result.log_loss is not None
    assert result.log_loss < constant


def test_the_same_rows_give_the_same_model_text(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    first = train_model(features, failed, build, NAMES)
    second = train_model(features.copy(), failed.copy(), build.copy(), list(NAMES))
    assert first.model_text == second.model_text
    assert first.metrics == second.metrics


def test_a_loaded_model_predicts_exactly_what_the_trained_booster_predicted(
    data: tuple[np.ndarray, ...], trained: TrainedModel
) -> None:
    features, _, _ = data
    loaded = load_model(trained.model_text)
    assert np.array_equal(loaded.predict(features), trained.booster.predict(features))
    assert np.array_equal(
        loaded.contributions(features), trained.booster.predict(features, pred_contrib=True)
    )
    assert loaded.feature_names == NAMES == trained.feature_names
    # A float32 matrix, as the features module builds, is read the same way.
    small = features.astype(np.float32)
    assert np.array_equal(loaded.predict(small), trained.booster.predict(small))


def test_the_split_is_in_time_the_newest_builds_validate() -> None:
    features, failed, build = synthetic(builds=100, tests=30, seed=2)
    # Build indices with gaps, rows in no particular order: time is the index.
    build = build * 3 + 1000
    rows = np.random.default_rng(0).permutation(build.size)
    trained = train_model(features[rows], failed[rows], build[rows], NAMES, validation_share=0.25)
    assert trained.validation.builds == 25
    assert trained.train.builds == 75
    assert trained.train.first_build == 1000
    assert trained.train.last_build == 1000 + 74 * 3
    assert trained.validation.first_build == 1000 + 75 * 3
    assert trained.validation.last_build == 1000 + 99 * 3
    newest = build >= trained.validation.first_build
    assert trained.validation.rows == newest.sum() == 25 * 30
    assert trained.validation.failures == failed[newest].sum()
    assert trained.train.failures == failed[~newest].sum()
    assert (trained.rows, trained.failures) == (build.size, failed.sum())


def test_validation_share_rounds_to_at_least_one_build_each_side() -> None:
    features, failed, build = synthetic(builds=10, tests=60, seed=3)
    small = train_model(features, failed, build, NAMES, validation_share=0.01)
    assert (small.train.builds, small.validation.builds) == (9, 1)
    large = train_model(features, failed, build, NAMES, validation_share=0.99)
    assert (large.train.builds, large.validation.builds) == (1, 9)


def test_contributions_sum_to_the_raw_score(
    data: tuple[np.ndarray, ...], trained: TrainedModel
) -> None:
    features, _, _ = data
    loaded = load_model(trained.model_text)
    contributions = loaded.contributions(features[:500])
    raw = loaded.raw_scores(features[:500])
    assert contributions.shape == (500, len(NAMES) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, rtol=0, atol=1e-9)
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), loaded.predict(features[:500]), atol=1e-12)


def test_top_contributions_name_what_pushed_the_risk_up(trained: TrainedModel) -> None:
    loaded = load_model(trained.model_text)
    risky = np.array([[0.6, 1.0, 0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 2.0]])
    top = loaded.top_contributions(risky)
    assert len(top) == 2
    assert {name for name, _ in top[0][:2]} == {"fail_rate", "own_file_changed"}
    assert all(value > 0 for row in top for _, value in row)
    assert all(len(row) <= 3 for row in top)
    values = [value for _, value in top[0]]
    assert values == sorted(values, reverse=True)
    assert loaded.top_contributions(risky, k=1)[0] == top[0][:1]
    assert loaded.top_contributions(risky, k=0) == [[], []]
    labels = [name.upper() for name in NAMES]
    assert [name for name, _ in loaded.top_contributions(risky, labels)[0]] == [
        name.upper() for name, _ in top[0]
    ]
    with pytest.raises(ModelInputError):
        loaded.top_contributions(risky, labels[:2])


def test_probabilities_are_on_the_scale_of_the_labels(
    data: tuple[np.ndarray, ...], trained: TrainedModel
) -> None:
    features, failed, _ = data
    mean = load_model(trained.model_text).predict(features).mean()
    assert mean == pytest.approx(failed.mean(), rel=0.15)


def test_weighted_failures_keep_probabilities_on_the_label_scale(
    data: tuple[np.ndarray, ...],
) -> None:
    features, failed, build = data
    trained = train_model(features, failed, build, NAMES, pos_weight="balanced")
    assert trained.pos_weight == pytest.approx((~failed).sum() / failed.sum())
    assert trained.params["scale_pos_weight"] == trained.pos_weight
    loaded = load_model(trained.model_text)
    probabilities = loaded.predict(features)
    # Without the shift of the prior the mean would be near 1/2.
    assert probabilities.mean() == pytest.approx(failed.mean(), rel=0.5)
    assert np.array_equal(probabilities, trained.booster.predict(features))
    contributions = loaded.contributions(features[:200])
    np.testing.assert_allclose(
        contributions.sum(axis=1), loaded.raw_scores(features[:200]), rtol=0, atol=1e-9
    )
    assert trained.metrics.mean_apfd is not None
    assert trained.metrics.mean_apfd > 0.8


def test_row_weights_reach_the_fits(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    plain = train_model(features, failed, build, NAMES)
    # Every failing row counted 4 times: the model sees failures far more often
    # (no prior shift, as pos_weight has: these weights are the rows' own).
    weights = np.where(failed, 4.0, 1.0)
    weighted = train_model(features, failed, build, NAMES, weights=weights)
    before = load_model(plain.model_text).predict(features).mean()
    after = load_model(weighted.model_text).predict(features).mean()
    assert after > 1.6 * before  # 0.063 to 0.124 on these rows
    # Weights of 1 are no weights: the same model.
    ones = train_model(features, failed, build, NAMES, weights=np.ones(failed.size))
    assert ones.model_text == plain.model_text
    with pytest.raises(ModelInputError, match="finite and positive"):
        train_model(features, failed, build, NAMES, weights=np.zeros(failed.size))
    with pytest.raises(ModelInputError, match="weights must have shape"):
        train_model(features, failed, build, NAMES, weights=np.ones(3))


def test_without_refit_the_held_out_model_is_served(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    trained = train_model(features, failed, build, NAMES, refit=False)
    assert not trained.refit
    assert trained.booster.num_trees() == trained.best_iteration
    loaded = load_model(trained.model_text)
    assert np.array_equal(loaded.predict(features), trained.booster.predict(features))
    refit = train_model(features, failed, build, NAMES)
    assert refit.best_iteration == trained.best_iteration
    assert refit.booster.num_trees() == refit.best_iteration
    assert refit.model_text != trained.model_text
    assert refit.metrics == trained.metrics  # both describe the held-out model


def test_early_stopping_stops(trained: TrainedModel) -> None:
    assert trained.best_iteration >= 1
    assert trained.params["num_iterations"] == trained.best_iteration
    assert trained.params["deterministic"] is True
    assert trained.params["seed"] == 7
    # Stopped well before the cap on so small a data set.
    assert trained.best_iteration + EARLY_STOPPING_ROUNDS < 1000


def test_summary_is_json(trained: TrainedModel) -> None:
    summary = json.loads(json.dumps(trained.summary()))
    assert summary["feature_names"] == list(NAMES)
    assert summary["validation"]["builds"] == 40
    assert summary["metrics"]["mean_apfd"] == trained.metrics.mean_apfd


def test_validation_metrics_by_hand() -> None:
    # Build 5: the failure ranked first of three: 1 - 1/3 + 1/6; the first
    # test (20% and 33% of 3 round up to 1) holds it.
    # Build 3: ties at 0.5 keep the given order, so the failures run 1st and
    # 3rd of four: 1 - 4/8 + 1/8; one test (20%) or two (33%) hold one of two.
    # Build 9 has no failure and counts only in the pooled log loss and AUC.
    rows = [
        (5, 0, 0.1),
        (3, 1, 0.5),
        (5, 1, 0.9),
        (3, 0, 0.5),
        (9, 0, 0.3),
        (3, 0, 0.1),
        (5, 0, 0.2),
        (3, 1, 0.2),
    ]
    builds, labels, scores = (np.array(column) for column in zip(*rows, strict=True))
    result = validation_metrics(scores, labels, builds)
    assert result.failing_builds == 2
    assert result.mean_apfd == pytest.approx((5 / 6 + 5 / 8) / 2)
    assert result.mean_recall_at_20 == pytest.approx((1 + 1 / 2) / 2)
    assert result.mean_recall_at_33 == pytest.approx((1 + 1 / 2) / 2)
    assert result.mean_probability == pytest.approx(scores.mean())
    # Pairs (failing, passing) over all rows: 0.9 wins all 5; 0.5 wins 4 and
    # ties 1; 0.2 wins 2 and ties 1: (5 + 4.5 + 2.5) / 15.
    assert result.auc == pytest.approx(12 / 15)
    empty = validation_metrics([], [], [])
    assert (empty.failing_builds, empty.mean_apfd, empty.log_loss) == (0, None, None)


# --- refusals ----------------------------------------------------------------------


def test_no_failing_row_is_refused(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    with pytest.raises(NoPositiveLabels, match="no row failed"):
        train_model(features, np.zeros_like(failed), build, NAMES)


def test_failures_only_in_the_validation_builds_are_refused(
    data: tuple[np.ndarray, ...],
) -> None:
    features, failed, build = data
    only_newest = failed & (build >= 190)
    with pytest.raises(NoPositiveLabels, match="training builds"):
        train_model(features, only_newest, build, NAMES)


def test_too_few_builds_are_refused(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    with pytest.raises(TooFewBuilds, match="9 builds"):
        train_model(features, failed, build % 9, NAMES)
    with pytest.raises(TooFewBuilds, match="1 builds"):
        train_model(features, failed, np.zeros_like(build), NAMES, min_builds=0)


def test_bad_inputs_are_refused(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    with pytest.raises(ModelInputError, match="feature names"):
        train_model(features, failed, build, NAMES[:-1])
    with pytest.raises(ModelInputError, match="whitespace"):
        train_model(features, failed, build, (*NAMES[:-1], "run time"))
    with pytest.raises(ModelInputError, match="unique"):
        train_model(features, failed, build, (*NAMES[:-1], NAMES[0]))
    with pytest.raises(ModelInputError, match="labels"):
        train_model(features, failed[:-1], build, NAMES)
    with pytest.raises(ModelInputError, match="labels"):
        train_model(features, failed * 2, build, NAMES)
    with pytest.raises(ModelInputError, match="builds"):
        train_model(features, failed, build.astype(float), NAMES)
    with pytest.raises(ModelInputError, match="2-D"):
        train_model(features[:, 0], failed, build, NAMES)
    with pytest.raises(ModelInputError, match="infinite"):
        train_model(np.where(features > 3, np.inf, features), failed, build, NAMES)
    with pytest.raises(ModelInputError, match="fixed"):
        train_model(features, failed, build, NAMES, params={"objective": "regression"})
    with pytest.raises(ModelInputError, match="seed"):
        train_model(features, failed, build, NAMES, params={"seed": 1})
    with pytest.raises(ModelInputError, match="validation_share"):
        train_model(features, failed, build, NAMES, validation_share=1.0)
    with pytest.raises(ModelInputError, match="pos_weight"):
        train_model(features, failed, build, NAMES, pos_weight=-1.0)


def test_loading_refuses_what_is_not_a_binary_model(trained: TrainedModel) -> None:
    with pytest.raises(InvalidModelText):
        load_model("")
    with pytest.raises(InvalidModelText):
        load_model("not a model at all")
    with pytest.raises(InvalidModelText):
        load_model(trained.model_text.replace("objective=binary", "objective=regression"))
    # LightGBM itself would read past the end of a cut text and crash.
    text = trained.model_text
    for end in (len(text) // 2, text.index("end of trees"), text.index("Tree=1") + 40):
        with pytest.raises(InvalidModelText):
            load_model(text[:end])
    sizes = text.split("tree_sizes=", 1)[1].split("\n", 1)[0]
    with pytest.raises(InvalidModelText, match="tree sizes"):
        load_model(text.replace(sizes, sizes.replace(" ", "0 ", 1)))


def test_predicting_checks_the_columns(trained: TrainedModel) -> None:
    loaded = load_model(trained.model_text)
    with pytest.raises(ModelInputError, match="reads 6 features"):
        loaded.predict(np.zeros((3, 5)))
    with pytest.raises(ModelInputError, match="2-D"):
        loaded.predict(np.zeros(6))
    assert loaded.predict(np.zeros((0, 6))).shape == (0,)
    missing = np.full((1, 6), np.nan)
    assert 0.0 < loaded.predict(missing)[0] < 1.0


def test_grouped_apfd_is_the_mean_apfd_of_the_validation_metrics() -> None:
    """The early-stopping measure is validation_metrics' mean APFD, ties
    included (scores rounded to force them), builds given out of order."""
    rng = np.random.default_rng(5)
    builds = rng.integers(0, 30, size=900)
    failed = rng.random(900) < 0.08
    scores = np.round(rng.random(900), 1)
    expected = validation_metrics(scores, failed, builds).mean_apfd
    assert expected is not None
    assert grouped_apfd(scores, failed, builds) == pytest.approx(expected, abs=1e-12)
    assert grouped_apfd(scores, np.zeros(900, dtype=bool), builds) is None


def test_excluded_features_are_not_read(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    trained = train_model(features, failed, build, NAMES, exclude={"duration", "noise_a"})
    assert trained.feature_names == ("fail_rate", "own_file_changed", "noise_b", "noise_c")
    model = load_model(trained.model_text)
    # Scoring hands over every feature; the model takes its own, by name.
    shuffled = (NAMES[5], *NAMES[:5])
    matrix = FeatureMatrix(
        tests=("",) * len(features),
        values=features[:, [5, 0, 1, 2, 3, 4]].astype(np.float32),
        names=shuffled,
    )
    expected = model.predict(features[:, [0, 1, 3, 4]].astype(np.float32))
    assert np.array_equal(model.predict(model.inputs(matrix)), expected)
    assert train_model(features, failed, build, NAMES).feature_names == NAMES
    with pytest.raises(ModelInputError, match="lacks noise_b"):
        model.inputs(
            FeatureMatrix(
                tests=matrix.tests,
                values=matrix.values[:, [0, 1, 2, 3, 5]],
                names=(*shuffled[:4], shuffled[5]),
            )
        )
    with pytest.raises(ModelInputError, match="every feature is excluded"):
        train_model(features, failed, build, NAMES, exclude=set(NAMES))


def test_a_ranking_model_learns_the_order_and_serves_probabilities(
    data: tuple[np.ndarray, ...], trained: TrainedModel
) -> None:
    features, failed, build = data
    ranked = train_model(features, failed, build, NAMES, ranking=True)
    assert ranked.params["objective"] == "lambdarank"
    assert ranked.params["lambdarank_truncation_level"] == 40  # every test of a build
    assert set(ranked.params["calibration"]) == {"scale", "shift"}
    # It orders the held-out builds about as well as the pointwise model.
    assert ranked.metrics.mean_apfd is not None
    assert trained.metrics.mean_apfd is not None
    assert ranked.metrics.mean_apfd > trained.metrics.mean_apfd - 0.02
    # Served as a binary model whose outputs are calibrated probabilities:
    # Platt scaling on every row makes their mean the failure rate.
    model = load_model(ranked.model_text)
    probabilities = model.predict(features)
    assert probabilities.min() > 0.0
    assert probabilities.max() < 1.0
    assert probabilities.mean() == pytest.approx(failed.mean(), rel=0.02)
    # The order is the ranking model's: the calibration is increasing.
    assert ranked.params["calibration"]["scale"] > 0
    # The held-out model, measured before the refit, is calibrated too.
    held_out = build >= ranked.validation.first_build
    evaluated = ranked.evaluated.predict(features[held_out])
    assert evaluated.mean() == pytest.approx(failed[held_out].mean(), rel=0.05)


def test_a_ranking_model_takes_rows_in_any_build_order(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    shuffled = np.random.default_rng(3).permutation(build.size)
    x, y, b = features[shuffled], failed[shuffled], build[shuffled]
    mixed = train_model(x, y, b, NAMES, ranking=True, refit=False)
    # The same as rows given in build order (stably: a build's rows keep
    # the order they came in).
    order = np.argsort(b, kind="stable")
    sorted_first = train_model(x[order], y[order], b[order], NAMES, ranking=True, refit=False)
    assert mixed.model_text == sorted_first.model_text
    assert mixed.metrics.mean_apfd is not None
    assert mixed.metrics.mean_apfd > 0.8


def test_a_ranking_model_has_no_failure_weight(data: tuple[np.ndarray, ...]) -> None:
    features, failed, build = data
    with pytest.raises(ModelInputError, match="pos_weight"):
        train_model(features, failed, build, NAMES, ranking=True, pos_weight=2.0)
