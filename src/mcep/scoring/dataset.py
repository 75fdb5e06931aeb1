"""Any table of historical outcomes, read from CSV and typed for training.

Every cell is read as text first, so typing is ours and predictable: placeholders such as
``unknown``, ``''``, ``NA``, ``n/a`` and ``?`` become missing; a column is numeric when every
value left parses as a number (decimal commas are accepted when the separator isn't a comma),
otherwise categorical. Columns that can't help (all missing, one value, or an identifier with a
different value on nearly every row) are left out with a note. Every problem with the file or
the options is a :class:`ScoringInputError` that names what to fix.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from mcep.scoring.errors import ScoringInputError

PLACEHOLDERS = frozenset(
    {"", "unknown", "na", "n/a", "nan", "null", "none", "?", "-", "--", "missing", "#n/a"}
)
MISSING = "<missing>"
TRUE_LABELS = frozenset({"1", "true", "yes", "y", "t", "positive", "pos"})
MIN_PER_CLASS = 20
ColumnKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, slots=True)
class LabelledTable:
    """Typed feature columns and a 0/1 label, ready for training.

    ``features`` holds float columns (numeric, ``nan`` for missing) and object columns
    (categorical: the text, ``None`` for missing).
    """

    features: pd.DataFrame
    y: NDArray[np.int8]
    label: str
    positive: str
    kinds: Mapping[str, ColumnKind]
    notes: tuple[str, ...] = ()


def load_csv(
    path: Path,
    *,
    label: str,
    positive: str | None = None,
    drop: Sequence[str] = (),
    sep: str = ",",
) -> LabelledTable:
    """Read a CSV of outcomes; ``label`` is the outcome column, ``positive`` its "yes" value."""
    raw = _read_text_table(path, sep=sep)
    _check_columns(raw, label=label, drop=drop, sep=sep)
    values = _cleaned(raw[label])
    known = values.notna()
    notes = [f"{int((~known).sum())} rows without a label were left out"] if not known.all() else []
    y, positive_value = binarise_label(values[known], label=label, positive=positive)
    kinds, features, column_notes = type_columns(
        raw.loc[known].drop(columns=[label, *drop]).reset_index(drop=True),
        decimal_comma=sep != ",",
    )
    if not kinds:
        raise ScoringInputError("no feature columns are left to learn from after --drop")
    return LabelledTable(
        features=features,
        y=y,
        label=label,
        positive=positive_value,
        kinds=kinds,
        notes=(*notes, *column_notes),
    )


def table_from_features(
    vectors: Sequence[Mapping[str, float]], outcomes: Sequence[bool], *, label: str = "qualified"
) -> LabelledTable:
    """A training table from feature vectors (see :mod:`mcep.scoring.features`) and outcomes."""
    if len(vectors) != len(outcomes):
        raise ScoringInputError(f"{len(vectors)} feature vectors but {len(outcomes)} outcomes")
    y = np.asarray(outcomes, dtype=np.int8)
    if len(np.unique(y)) < 2:
        raise ScoringInputError(f"every {label!r} outcome is the same: nothing to learn")
    _check_class_sizes(y, label=label, positive="true")
    frame = pd.DataFrame.from_records(list(vectors)).astype(np.float64)
    kinds: dict[str, ColumnKind] = dict.fromkeys(frame.columns, "numeric")
    return LabelledTable(features=frame, y=y, label=label, positive="true", kinds=kinds)


def _read_text_table(path: Path, *, sep: str) -> pd.DataFrame:
    if not path.is_file():
        raise ScoringInputError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ScoringInputError(f"{path} is empty: expected a header row and data rows") from None
    except UnicodeDecodeError:
        raise ScoringInputError(f"{path} is not UTF-8 text") from None
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScoringInputError(f"{path} could not be parsed as CSV: {first_line}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise ScoringInputError(f"{path} has a header but no data rows")
    return frame


def _check_columns(frame: pd.DataFrame, *, label: str, drop: Sequence[str], sep: str) -> None:
    columns = list(frame.columns)
    available = ", ".join(columns)
    if label not in columns:
        hint = _separator_hint(columns, sep)
        raise ScoringInputError(
            f"label column {label!r} not found; available columns: {available}{hint}"
        )
    for name in drop:
        if name == label:
            raise ScoringInputError(f"--drop {name!r} names the label column itself")
        if name not in columns:
            raise ScoringInputError(
                f"--drop {name!r}: no such column; available columns: {available}"
            )


def _separator_hint(columns: list[str], sep: str) -> str:
    if len(columns) != 1:
        return ""
    for candidate in (";", ",", "\t", "|"):
        if candidate != sep and candidate in columns[0]:
            return f" (the header looks {candidate!r}-separated: try --sep {candidate!r})"
    return ""


def _clean(value: object) -> str | None:
    """The cell's text, or ``None`` when it is missing or a placeholder."""
    if not isinstance(value, str):
        return None if value is None or _is_nan(value) else str(value)
    text = value.strip()
    return None if text.casefold() in PLACEHOLDERS else text


def _cleaned(column: pd.Series) -> pd.Series:
    """A text column with placeholders as ``None``, kept as Python objects."""
    return pd.Series([_clean(v) for v in column], index=column.index, dtype=object)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def binarise_label(
    values: pd.Series, *, label: str, positive: str | None
) -> tuple[NDArray[np.int8], str]:
    """The label as 0/1 and the value taken as positive; an unusable label is an error."""
    seen = sorted(set(values))
    listed = ", ".join(repr(v) for v in seen[:10]) + (" ..." if len(seen) > 10 else "")
    if len(seen) < 2:
        only = f" ({listed})" if seen else ""
        raise ScoringInputError(
            f"label column {label!r} has a single value{only}: nothing to learn; "
            "training needs rows of both outcomes"
        )
    chosen = _positive_value(seen, label=label, positive=positive, listed=listed)
    y = (values == chosen).to_numpy(dtype=np.int8)
    _check_class_sizes(y, label=label, positive=chosen)
    return y, chosen


def _positive_value(seen: list[str], *, label: str, positive: str | None, listed: str) -> str:
    if positive is not None:
        if positive in seen:
            return positive
        folded = [v for v in seen if v.casefold() == positive.strip().casefold()]
        if len(folded) == 1:
            return folded[0]
        raise ScoringInputError(
            f"positive value {positive!r} not found in label column {label!r}; values: {listed}"
        )
    truthy = [v for v in seen if v.casefold() in TRUE_LABELS]
    if len(seen) == 2 and len(truthy) == 1:
        return truthy[0]
    raise ScoringInputError(
        f"label column {label!r} has values {listed}; say which one is the positive outcome "
        "with --positive VALUE"
    )


def _check_class_sizes(y: NDArray[np.int8], *, label: str, positive: str) -> None:
    positives = int(y.sum())
    negatives = len(y) - positives
    if min(positives, negatives) < MIN_PER_CLASS:
        raise ScoringInputError(
            f"label column {label!r} has {positives} rows with {positive!r} and {negatives} "
            f"other rows; training and a fair hold-out need at least {MIN_PER_CLASS} of each"
        )


# --- column typing -----------------------------------------------------------------------


def type_columns(
    raw: pd.DataFrame, *, decimal_comma: bool = False
) -> tuple[dict[str, ColumnKind], pd.DataFrame, list[str]]:
    """Type every column; returns the kinds, the typed frame and notes on columns left out."""
    kinds: dict[str, ColumnKind] = {}
    typed: dict[str, pd.Series] = {}
    notes: list[str] = []
    for name in raw.columns:
        cleaned = _cleaned(raw[name])
        kind, column = _type_column(cleaned, decimal_comma=decimal_comma)
        reason = _useless(column, kind)
        if reason:
            notes.append(f"column {name!r} left out: {reason}")
            continue
        kinds[name], typed[name] = kind, column
    return kinds, pd.DataFrame(typed, index=raw.index), notes


def _type_column(cleaned: pd.Series, *, decimal_comma: bool) -> tuple[ColumnKind, pd.Series]:
    present = cleaned.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if decimal_comma and numbers.isna().any():
        numbers = pd.to_numeric(present.str.replace(",", ".", regex=False), errors="coerce")
    if numbers.notna().all():
        return "numeric", numbers.reindex(cleaned.index).astype(np.float64)
    return "categorical", cleaned


def _useless(column: pd.Series, kind: ColumnKind) -> str | None:
    present = column.dropna()
    distinct = present.nunique()
    if present.empty:
        return "no values"
    if distinct == 1 and len(present) == len(column):
        return f"every row has the same value ({present.iloc[0]!r})"
    if kind == "categorical" and len(column) >= 100 and distinct > 0.5 * len(present):
        return f"looks like an identifier ({distinct} distinct values in {len(present)} rows)"
    return None


# --- the schema a trained model carries --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One model input: numeric, or categorical with its categories in code order."""

    name: str
    kind: ColumnKind
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FeatureSchema:
    """The model's inputs in order, and how to turn raw values into LightGBM's floats.

    Categories get integer codes in the order fitted; a category never seen in training
    becomes missing. When training saw missing categorical values they have their own code,
    since a value being absent often says something.
    """

    columns: tuple[ColumnSpec, ...]
    _codes: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = {c.name: {v: i for i, v in enumerate(c.categories)} for c in self.columns}
        object.__setattr__(self, "_codes", codes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.kind == "categorical"]

    @classmethod
    def fit(cls, frame: pd.DataFrame, kinds: Mapping[str, ColumnKind]) -> FeatureSchema:
        """Learn the categories of each categorical column from ``frame`` (training rows)."""
        return cls(tuple(_fit_column(frame[name], name, kind) for name, kind in kinds.items()))

    def encode_frame(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """A typed frame as a float matrix in schema order."""
        out = np.empty((len(frame), len(self.columns)), dtype=np.float64)
        for j, column in enumerate(self.columns):
            values = frame[column.name]
            if column.kind == "numeric":
                out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                out[:, j] = [self._code(column.name, v) for v in values]
        return out

    def encode_row(self, row: Mapping[str, object]) -> NDArray[np.float64]:
        """One mapping of raw values as a 1 x n matrix; absent keys are missing values."""
        out = np.empty((1, len(self.columns)), dtype=np.float64)
        for j, column in enumerate(self.columns):
            value = _clean(row.get(column.name))
            if column.kind == "numeric":
                out[0, j] = _number(column.name, value)
            else:
                out[0, j] = self._code(column.name, value)
        return out

    def decode(self, j: int, code: float) -> str | float | None:
        """The raw value behind an encoded cell, for explanations."""
        column = self.columns[j]
        if math.isnan(code):
            return None
        if column.kind == "numeric":
            return float(code)
        return column.categories[int(code)]

    def _code(self, name: str, value: str | None) -> float:
        code = self._codes[name].get(MISSING if value is None else value)
        return math.nan if code is None else float(code)

    def to_dict(self) -> dict[str, object]:
        return {"columns": [_spec_dict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FeatureSchema:
        columns = data["columns"]
        if not isinstance(columns, list):
            raise ValueError("schema columns must be a list")
        return cls(tuple(_spec_from_dict(c) for c in columns))


def _fit_column(values: pd.Series, name: str, kind: ColumnKind) -> ColumnSpec:
    if kind == "numeric":
        return ColumnSpec(name, kind)
    categories = sorted({v for v in values if v is not None})
    if values.isna().any():
        categories.append(MISSING)
    return ColumnSpec(name, kind, tuple(categories))


def _number(name: str, value: str | None) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise ScoringInputError(f"feature {name!r} must be a number, got {value!r}") from None


def _spec_dict(column: ColumnSpec) -> dict[str, object]:
    return {"name": column.name, "kind": column.kind, "categories": list(column.categories)}


def _spec_from_dict(data: object) -> ColumnSpec:
    if not isinstance(data, dict) or data.get("kind") not in ("numeric", "categorical"):
        raise ValueError(f"not a column spec: {data!r}")
    kind: ColumnKind = "numeric" if data["kind"] == "numeric" else "categorical"
    return ColumnSpec(str(data["name"]), kind, tuple(str(c) for c in data.get("categories", [])))
