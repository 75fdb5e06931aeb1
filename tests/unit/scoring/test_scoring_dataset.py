"""Reading any outcomes CSV: typing, placeholders, and a clear error for every bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mcep.scoring.dataset import MISSING, FeatureSchema, LabelledTable, load_csv
from mcep.scoring.errors import ScoringInputError


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def table_text(rows: int = 60, *, sep: str = ",") -> str:
    """A small table: an id, a numeric with placeholders, a categorical, a constant, a label."""
    lines = [sep.join(["id", "age", "job", "country", "outcome"])]
    for i in range(rows):
        age = ["n/a", "?", "NA", ""][i % 4] if i % 10 == 0 else str(20 + i % 50)
        job = ["admin", "unknown", "retired"][i % 3]
        lines.append(sep.join([f"row-{i}", age, job, "CH", "yes" if i % 3 == 0 else "no"]))
    return "\n".join(lines) + "\n"


def test_columns_are_typed_and_placeholders_become_missing(tmp_path: Path) -> None:
    table = load_csv(write(tmp_path, table_text()), label="outcome")
    assert table.kinds == {"age": "numeric", "job": "categorical", "id": "categorical"}
    age = table.features["age"]
    assert age.dtype == np.float64
    assert age.isna().sum() == 6 and age[1] == 21.0
    assert set(table.features["job"]) == {"admin", None, "retired"}
    assert "country" not in table.features
    assert any("'country'" in note and "same value" in note for note in table.notes)


def test_the_label_is_binarised_with_the_inferred_positive(tmp_path: Path) -> None:
    table = load_csv(write(tmp_path, table_text()), label="outcome")
    assert table.positive == "yes"
    assert table.y.tolist() == [1 if i % 3 == 0 else 0 for i in range(60)]


def test_positive_value_is_matched_without_regard_to_case(tmp_path: Path) -> None:
    table = load_csv(write(tmp_path, table_text()), label="outcome", positive="YES")
    assert table.positive == "yes" and table.y.sum() == 20


def test_numeric_labels_and_decimal_commas(tmp_path: Path) -> None:
    lines = ["score;won"] + [f"{i},5;{i % 2}" for i in range(60)]
    table = load_csv(write(tmp_path, "\n".join(lines)), label="won", sep=";")
    assert table.kinds == {"score": "numeric"}
    assert table.features["score"][3] == 3.5
    assert table.positive == "1" and table.y.sum() == 30


def test_rows_without_a_label_are_left_out_with_a_note(tmp_path: Path) -> None:
    text = table_text() + "row-x,30,admin,CH,unknown\nrow-y,31,admin,CH,\n"
    table = load_csv(write(tmp_path, text), label="outcome")
    assert len(table.y) == 60 and len(table.features) == 60
    assert "2 rows without a label were left out" in table.notes


def test_identifier_columns_are_left_out(tmp_path: Path) -> None:
    lines = ["customer,x,y"] + [f"c{i},{i % 7},{'yes' if i % 2 else 'no'}" for i in range(200)]
    table = load_csv(write(tmp_path, "\n".join(lines)), label="y")
    assert "customer" not in table.kinds
    assert any("identifier" in note for note in table.notes)


def test_dropped_columns_are_not_features(tmp_path: Path) -> None:
    table = load_csv(write(tmp_path, table_text()), label="outcome", drop=["id", "job"])
    assert list(table.kinds) == ["age"]


# --- errors ------------------------------------------------------------------------------


def error_for(path: Path, **options: object) -> str:
    with pytest.raises(ScoringInputError) as caught:
        load_csv(path, **{"label": "outcome", **options})  # type: ignore[arg-type]
    return caught.value.message


def test_missing_label_names_it_and_lists_the_columns(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, table_text()), label="converted")
    assert "'converted' not found" in message
    assert "id, age, job, country, outcome" in message


def test_missing_label_with_the_wrong_separator_suggests_the_right_one(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, table_text(sep=";")))
    assert "--sep ';'" in message


def test_constant_label(tmp_path: Path) -> None:
    text = "a,outcome\n" + "".join(f"{i},no\n" for i in range(50))
    message = error_for(write(tmp_path, text))
    assert "single value ('no')" in message


def test_label_with_only_placeholders(tmp_path: Path) -> None:
    text = "a,outcome\n" + "".join(f"{i},unknown\n" for i in range(50))
    assert "single value" in error_for(write(tmp_path, text))


def test_unknown_drop_column(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, table_text()), drop=["duration"])
    assert "--drop 'duration': no such column" in message and "outcome" in message


def test_dropping_the_label(tmp_path: Path) -> None:
    assert "label column itself" in error_for(write(tmp_path, table_text()), drop=["outcome"])


def test_positive_value_not_found(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, table_text()), positive="subscribed")
    assert "'subscribed' not found" in message and "'no', 'yes'" in message


def test_label_without_an_obvious_positive_asks_for_one(tmp_path: Path) -> None:
    text = "a,outcome\n" + "".join(f"{i},{'won' if i % 2 else 'lost'}\n" for i in range(50))
    assert "--positive" in error_for(write(tmp_path, text))


def test_too_few_of_one_outcome(tmp_path: Path) -> None:
    text = "a,outcome\n" + "".join(f"{i},{'yes' if i < 5 else 'no'}\n" for i in range(100))
    assert "at least 20 of each" in error_for(write(tmp_path, text))


def test_no_features_left(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, table_text()), drop=["id", "age", "job", "country"])
    assert "no feature columns" in message


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in error_for(tmp_path / "absent.csv")


def test_empty_file(tmp_path: Path) -> None:
    assert "is empty" in error_for(write(tmp_path, ""))


def test_header_only(tmp_path: Path) -> None:
    assert "no data rows" in error_for(write(tmp_path, "a,outcome\n"))


def test_unparsable_file(tmp_path: Path) -> None:
    text = "a,outcome\n1,yes\n2,no,extra,fields\n"
    assert "could not be parsed as CSV" in error_for(write(tmp_path, text))


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,outcome\n\xff\xfe\x00\x81,yes\n")
    assert "not UTF-8" in error_for(path)


# --- the schema a model carries ----------------------------------------------------------


@pytest.fixture
def small_table(tmp_path: Path) -> LabelledTable:
    return load_csv(write(tmp_path, table_text()), label="outcome", drop=["id"])


def test_schema_codes_categories_and_keeps_missing_as_its_own_level(
    small_table: LabelledTable,
) -> None:
    schema = FeatureSchema.fit(small_table.features, small_table.kinds)
    job = schema.columns[1]
    assert job.categories == ("admin", "retired", MISSING)
    matrix = schema.encode_frame(small_table.features)
    assert matrix[:3, 1].tolist() == [0.0, 2.0, 1.0]  # admin, unknown -> missing, retired
    assert math.isnan(matrix[0, 0])  # 'n/a' age


def test_encode_row_matches_encode_frame_and_handles_the_unexpected(
    small_table: LabelledTable,
) -> None:
    schema = FeatureSchema.fit(small_table.features, small_table.kinds)
    assert schema.encode_row({"age": "21", "job": "retired"}).tolist() == [[21.0, 1.0]]
    assert schema.encode_row({"age": 21, "job": "unknown"}).tolist() == [[21.0, 2.0]]
    unseen = schema.encode_row({"job": "astronaut"})
    assert math.isnan(unseen[0, 0]) and math.isnan(unseen[0, 1])
    with pytest.raises(ScoringInputError, match="'age' must be a number"):
        schema.encode_row({"age": "twenty"})


def test_schema_round_trips_through_a_dict(small_table: LabelledTable) -> None:
    schema = FeatureSchema.fit(small_table.features, small_table.kinds)
    assert FeatureSchema.from_dict(schema.to_dict()) == schema
