"""Messy columns: percent strings, sentinels, missing tokens, unseen categories, typing and the spec."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from creditstack.scoring.columns import (
    CATEGORY_MISSING,
    CATEGORY_UNSEEN,
    PreprocessSpec,
    characteristic_group,
    detect_sentinels,
    fit_preprocess,
    infer_bad_value,
    parse_number,
    parse_numeric,
    parse_table,
    top_reasons_by_group,
)
from creditstack.scoring.errors import DataUnreadable, TargetColumnMissing, TargetNotBinary


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.5%", 12.5),
        (" 7 % ", 7.0),
        ("1,234", 1234.0),
        ("$1,200.50", 1200.5),
        ("(300)", -300.0),
        ("-2", -2.0),
        (3, 3.0),
        ("1e3", 1000.0),
    ],
)
def test_numbers_in_messy_text_are_read(text: object, expected: float) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize("text", ["", "NA", "n/a", "null", "?", "abc", None, "inf", float("nan")])
def test_missing_and_unparseable_cells_become_nan(text: object) -> None:
    assert math.isnan(parse_number(text))


def test_parse_numeric_has_a_fast_path_and_a_messy_path() -> None:
    assert parse_numeric(np.array(["1", "2.5"], dtype=object)).tolist() == [1.0, 2.5]
    parsed = parse_numeric(np.array(["1%", "", "x"], dtype=object))
    assert parsed[0] == 1.0 and np.isnan(parsed[1:]).all()


def test_sentinels_stand_apart_from_the_other_values() -> None:
    counts = np.array([0, 1, 2, 3, 13, 96, 98, 0, 1], dtype=float)
    assert detect_sentinels(counts) == (96.0, 98.0)
    percentages = np.array([0, 50, 96, 98, 100], dtype=float)
    assert detect_sentinels(percentages) == ()
    income = np.array([-999, 1000, 2500, 4000], dtype=float)
    assert detect_sentinels(income) == (-999.0,)
    balances = np.array([-9, -500, 100, 2000], dtype=float)
    assert detect_sentinels(balances) == ()


def test_characteristic_groups_drop_the_period_number() -> None:
    assert characteristic_group("PAY_0") == characteristic_group("PAY_6") == "PAY"
    assert characteristic_group("BILL_AMT1") == "BILL_AMT"
    assert characteristic_group("income") == "income"


def test_fit_preprocess_types_cleans_and_drops_with_reasons(messy_columns: dict[str, np.ndarray]) -> None:
    spec = fit_preprocess(messy_columns, "bad", exclude=["sex"])
    kinds = {c.name: c.kind for c in spec.columns}
    assert kinds == {
        "utilisation": "numeric",
        "income": "numeric",
        "late_payments": "numeric",
        "region": "categorical",
        "PAY_1": "numeric",
        "PAY_2": "numeric",
    }
    assert spec.dropped == {"ID": "identifier", "sex": "excluded"}
    assert spec.bad_value == "1"
    late = next(c for c in spec.columns if c.name == "late_payments")
    assert late.special_codes == (98.0,)
    cleaned = spec.clean(messy_columns)
    assert np.isnan(cleaned["utilisation"]).mean() == pytest.approx(0.05, abs=0.02)
    assert cleaned["income"].min() > 1000


def test_unseen_categories_and_missing_columns_are_not_fatal(messy_columns: dict[str, np.ndarray]) -> None:
    spec = fit_preprocess(messy_columns, "bad")
    cleaned = spec.clean({"region": np.array(["north", "west", "", None], dtype=object)})
    region = next(c for c in spec.columns if c.name == "region")
    assert cleaned["region"].tolist() == [region.categories.index("north"), CATEGORY_UNSEEN, CATEGORY_MISSING, -1]
    assert np.isnan(cleaned["income"]).all()  # column absent from the data: all missing


def test_spec_round_trips_through_json(messy_columns: dict[str, np.ndarray]) -> None:
    spec = fit_preprocess(messy_columns, "bad", exclude=["sex"])
    again = PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_target_problems_are_stated() -> None:
    with pytest.raises(TargetColumnMissing):
        fit_preprocess({"x": np.array(["1", "2"])}, "y")
    with pytest.raises(TargetNotBinary):
        infer_bad_value(["a", "b", "c"])
    assert infer_bad_value(["good", "bad", "good"]) == "bad"
    with pytest.raises(TargetNotBinary):
        fit_preprocess({"x": np.array(["1", "2"]), "y": np.array(["0", "0"])}, "y", bad_value="1")


def test_parse_table_sniffs_pads_and_refuses_empty() -> None:
    table = parse_table(b"a;b;c\n1;2;3\n4;5\n")
    assert list(table.columns) == ["a", "b", "c"] and table.rows == 2 and table.ragged_rows == 1
    assert table.columns["c"].tolist() == ["3", ""]
    with pytest.raises(DataUnreadable):
        parse_table(b"")


def test_top_reasons_take_one_per_group_worst_first_at_most_four() -> None:
    impact = np.array([[5.0, 9.0, 1.0, 0.0, 3.0, 2.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    groups = np.array([0, 0, 1, 2, 3, 4, 5])
    columns, values = top_reasons_by_group(impact, groups)
    assert columns[0].tolist() == [1, 6, 4, 5]  # column 0 loses to column 1 in group 0
    assert values[0].tolist() == [9.0, 4.0, 3.0, 2.0]
    assert columns[1].tolist() == [-1, -1, -1, -1]
