"""Fig. 7 tables: ratios of medians, ablation factors, the tuning rule, the re-scored yardstick."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from dosa import comparison
from dosa.hardware import GEMMINI_DEFAULT
from dosa.search.random_search import random_search
from dosa.tradeoff import AREA_BUDGETS, ISO_AREA_BUDGET

WORKLOADS = ("resnet50", "bert")


def _summary(edps: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    rows = []
    for label, per in edps.items():
        for w, values in per.items():
            for seed, edp in enumerate(values):
                rows.append({"workload": w, "label": label, "seed": seed, "edp": edp})
    return pd.DataFrame(rows)


def _all_labels(scale: dict[str, float]) -> pd.DataFrame:
    base = {"resnet50": [10.0, 12.0, 14.0], "bert": [1.0, 2.0, 3.0]}
    return _summary({label: {w: [v * s for v in vals] for w, vals in base.items()}
                     for label, s in scale.items()})


SCALES = {"random": 2.0, "random-paper": 4.0, "random-paper-regp": 3.0, "bo": 1.5,
          "bo-paper": 12.0, "bo-paper-nobug": 12.0, "bo-paper-keepall": 3.0, "grid": 1.2,
          "dosa": 1.1, "dosa-improved": 1.0}


def test_method_table_ratios_are_ratios_of_medians() -> None:
    summary = _all_labels(SCALES)
    best = {"resnet50": 6.0, "bert": 1.0}
    table = comparison.method_table(summary, headline="dosa-improved", best_known=best)
    row = table.set_index(["workload", "label"])
    assert row.loc[("resnet50", "random"), "median"] == 24.0
    assert row.loc[("resnet50", "random"), "over_dosa"] == pytest.approx(2.0)
    assert row.loc[("bert", "bo-paper"), "over_best_known"] == pytest.approx(24.0)
    geo = row.loc[("geomean", "bo-paper")]
    assert geo["over_dosa"] == pytest.approx(12.0) and geo["paper"] == 12.59
    assert row.loc[("geomean", "random-paper"), "paper"] == 2.80
    assert math.isnan(row.loc[("geomean", "grid"), "paper"])
    assert set(table.label) == set(comparison.MAIN_LABELS)


def test_ablation_factors_and_prose_use_the_runs() -> None:
    summary = _all_labels(SCALES)
    ab = comparison.ablation_table(summary).set_index("ablation")
    assert ab.loc["bo_argsort_bug", "geomean"] == pytest.approx(1.0)
    assert ab.loc["bo_top10_only", "geomean"] == pytest.approx(4.0)
    assert ab.loc["random_no_register_loop", "geomean"] == pytest.approx(4 / 3)
    table = comparison.method_table(summary, headline="dosa-improved",
                                    best_known={"resnet50": 6.0, "bert": 1.0})
    subsets = comparison.seed_subset_spread(summary, "random", "dosa-improved", k=2)
    assert len(subsets) == 3  # C(3, 2)
    gains = pd.DataFrame({"gain": [1.0, 2.0]})
    text = comparison.explain(table, comparison.ablation_table(summary),
                              headline="dosa-improved", subsets=subsets, subset_k=2,
                              gains=gains, top_k=10)
    assert "BO / DOSA = 12.00×" in text and "paper 12.59×" in text
    assert "makes it 4.00× worse" in text and "bug changes little (1.00×)" in text
    assert "most of the faithful ratio" in text and "50 % of DOSA's starts" in text
    assert "over 2 workload(s)" in text


def test_prose_follows_adverse_numbers() -> None:
    """Numbers that contradict the paper's story get different words, not the same ones."""
    adverse = dict(SCALES, **{"bo-paper": 1.4, "bo": 1.5, "bo-paper-nobug": 2.0,
                              "bo-paper-keepall": 1.4})
    summary = _all_labels(adverse)
    table = comparison.method_table(summary, headline="dosa-improved",
                                    best_known={"resnet50": 6.0, "bert": 1.0})
    subsets = comparison.seed_subset_spread(summary, "random", "dosa-improved", k=2)
    text = comparison.explain(table, comparison.ablation_table(summary),
                              headline="dosa-improved", subsets=subsets, subset_k=2,
                              gains=pd.DataFrame({"gain": [1.0]}), top_k=5)
    assert "most of the faithful ratio" not in text
    assert "the original BO is not worse than ours (0.93×)" in text
    assert "bug makes it better (0.70×)" in text and "best of its 5 LCB picks" in text


def test_seed_subsets_are_bounded_and_deterministic() -> None:
    summary = _summary({"random": {"bert": [float(i + 1) for i in range(20)]},
                        "dosa": {"bert": [1.0]}})
    a = comparison.seed_subset_spread(summary, "random", "dosa", k=5, max_subsets=100)
    b = comparison.seed_subset_spread(summary, "random", "dosa", k=5, max_subsets=100)
    assert len(a) == 100 and a.equals(b)
    assert a.min() >= 3.0 and a.max() <= 18.0  # median of 5 of 1..20
    with pytest.raises(ValueError, match="fewer than k=5"):
        comparison.seed_subset_spread(summary, "dosa", "dosa", k=5)


def test_recommended_configuration_needs_every_workload() -> None:
    both = _summary({"dosa": {"a": [2.0, 2.0], "b": [2.0]},
                     "dosa-improved": {"a": [1.0, 1.0], "b": [1.0]}})
    assert comparison.recommended_dosa(both) == "dosa-improved"
    mixed = _summary({"dosa": {"a": [2.0], "b": [1.0]}, "dosa-improved": {"a": [1.0], "b": [2.0]}})
    assert comparison.recommended_dosa(mixed) == "dosa"
    with pytest.raises(ValueError, match="lack the configurations"):
        comparison.recommended_dosa(_summary({"dosa": {"a": [1.0]}}))


def test_best_known_is_rescored_not_reloaded(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    import json

    from dosa.workload import load_network

    result = random_search("bert", 0, num_hw=1, mappings_per_layer=5)
    result.provenance = {"config": {"num_hw": 1}}
    folder = comparison.best_known_folder("bert", tmp_path)
    result.write(folder, load_network("bert"))
    bk = comparison.load_best_known("bert", tmp_path, config={"num_hw": 1})
    assert bk.edp == pytest.approx(result.edp, rel=1e-12) and not bk.rescored_changed
    assert bk.source == "artifacts/best_known/bert"
    # a stored EDP the model no longer gives is replaced by the model's, with a warning
    stored = json.loads((folder / "result.json").read_text())
    stored["edp"] = 2 * stored["edp"]
    (folder / "result.json").write_text(json.dumps(stored))
    bk = comparison.load_best_known("bert", tmp_path)
    assert bk.rescored_changed and bk.edp == pytest.approx(result.edp, rel=1e-12)
    assert "re-scored value is used" in caplog.text
    with pytest.raises(ValueError, match="not the artifact's"):
        comparison.load_best_known("bert", tmp_path, config={"num_hw": 2})
    with pytest.raises(FileNotFoundError, match="make best-known"):
        comparison.load_best_known("unet", tmp_path)


@pytest.mark.parametrize("workload", ["resnet50", "bert", "unet", "retinanet"])
def test_committed_best_known_designs_still_score_as_stored(workload: str) -> None:
    """The committed yardstick is legal and the current model gives it the EDP it was found
    with; a model change that moves it must come with `make best-known`."""
    from dosa.experiments import BUDGETS, SPACE_BOUNDS

    bk = comparison.load_best_known(workload, config=BUDGETS["full"]["best-known"])
    assert not bk.rescored_changed, (workload, bk.edp, bk.stored_edp)
    hw = bk.result.hardware
    assert hw.pe_dim <= SPACE_BOUNDS["max_pe_dim"] and hw.sp_kb <= SPACE_BOUNDS["max_sp_kb"]
    assert hw.acc_kb <= SPACE_BOUNDS["max_acc_kb"]


def test_best_known_under_an_area_budget(tmp_path: Path) -> None:
    """The per-budget yardstick lives in its own folder, and one over its budget is refused."""
    from dosa.workload import load_network

    result = random_search("bert", 0, num_hw=1, mappings_per_layer=5)
    area = result.hardware.area_mm2()
    folder = comparison.best_known_folder("bert", tmp_path, budget=1.267)
    assert folder == tmp_path / "artifacts" / "best_known_area" / "bert" / "1.267mm2"
    budget = area * 1.01
    result.write(comparison.best_known_folder("bert", tmp_path, budget=budget),
                 load_network("bert"))
    bk = comparison.load_best_known("bert", tmp_path, budget=budget)
    assert bk.source == f"artifacts/best_known_area/bert/{budget:.4g}mm2"
    assert bk.edp == pytest.approx(result.edp, rel=1e-12)
    tight = area * 0.99
    result.write(comparison.best_known_folder("bert", tmp_path, budget=tight),
                 load_network("bert"))
    with pytest.raises(ValueError, match="exceeds the budget"):
        comparison.load_best_known("bert", tmp_path, budget=tight)
    with pytest.raises(FileNotFoundError, match="make best-known-area"):
        comparison.load_best_known("unet", tmp_path, budget=2.0)


#: Notebook 08's bounded budgets (``make best-known-area``).
BUDGETED = [(w, b) for w in ("resnet50", "bert", "unet", "retinanet") for b in AREA_BUDGETS]


@pytest.mark.parametrize(("workload", "budget"), BUDGETED)
def test_committed_area_best_known_designs_fit_and_score_as_stored(workload: str,
                                                                   budget: float) -> None:
    """Notebook 08's yardstick: searched with the area budget, within it, scored as stored."""
    from dosa.tradeoff import budget_config

    bk = comparison.load_best_known(workload, budget=budget,
                                    config=budget_config("best-known", "full", budget))
    assert not bk.rescored_changed, (workload, budget, bk.edp, bk.stored_edp)
    assert bk.result.hardware.area_mm2() <= budget


def test_the_budgets_hold_the_default_area_as_notebook_08_names_it() -> None:
    assert ISO_AREA_BUDGET == round(GEMMINI_DEFAULT.area_mm2(), 4)
    assert ISO_AREA_BUDGET in AREA_BUDGETS
    assert list(AREA_BUDGETS) == sorted(AREA_BUDGETS)


def test_best_known_for_the_full_profile_is_the_committed_design() -> None:
    """Notebooks 03 and 08 (full profile): the committed design, checked and re-scored."""
    from dosa.experiments import BUDGETS
    from dosa.tradeoff import budget_config

    bk = comparison.best_known_for("bert", "full")
    assert bk == comparison.load_best_known("bert", config=BUDGETS["full"]["best-known"])
    assert bk.source == "artifacts/best_known/bert"
    iso = comparison.best_known_for("bert", "full", budget=ISO_AREA_BUDGET)
    assert iso == comparison.load_best_known(
        "bert", budget=ISO_AREA_BUDGET, config=budget_config("best-known", "full", ISO_AREA_BUDGET))
    assert iso.source == f"artifacts/best_known_area/bert/{ISO_AREA_BUDGET:.4g}mm2"


def test_best_known_for_the_smoke_profile_is_a_tiny_cached_search(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Smoke profile: the run notebook 03 (``run_label``) and notebook 08 (its budget, its sweep
    label) made themselves, re-scored."""
    from dosa import experiments
    from dosa.tradeoff import budget_config, sweep_label

    result = random_search("bert", 0, num_hw=1, mappings_per_layer=5)
    calls = []

    def run(*args: object, **kwargs: object):
        calls.append((args, kwargs))
        return result

    monkeypatch.setattr(experiments, "run", run)
    bk = comparison.best_known_for("bert", "smoke", seed=3)
    assert (bk.workload, bk.stored_edp, bk.result, bk.source) == ("bert", result.edp, result,
                                                                  "smoke run")
    assert bk.edp == pytest.approx(result.edp, rel=1e-12)
    comparison.best_known_for("bert", "smoke", budget=1.0, experiment="area-best-known",
                              label=sweep_label("best-known", 1.0))
    assert calls == [
        (("bert", experiments.LABELS["best-known"], 3),
         {"experiment": "best-known", "config": experiments.BUDGETS["smoke"]["best-known"],
          "label": "best-known"}),
        (("bert", "best-known", 0),
         {"experiment": "area-best-known", "config": budget_config("best-known", "smoke", 1.0),
          "label": "best-known@1mm2"})]
    with pytest.raises(ValueError, match="profile must be one of"):
        comparison.best_known_for("bert", "tiny")
