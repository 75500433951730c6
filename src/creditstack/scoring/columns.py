"""Messy-column cleaning and the serving primitives both model kinds share.

A risk team's CSV is read as text (`read_table`), then a `PreprocessSpec` is *fitted* on the training rows
(`fit_preprocess`): each column is typed numeric or categorical, identifiers, constants, excluded
(protected) columns and the target are dropped with a stated reason, sentinel codes (96/98, 999, −9999…)
are found, and the categories seen in training are remembered. The spec is plain JSON and is stored inside
every model, so serving cleans exactly as training did:

- numbers may come as `"12.5%"` (read as 12.5), `"1,234"`, `"$1,200"`, `"(300)"` (−300); anything that
  does not parse, and the tokens in `MISSING_TOKENS`, become missing (NaN) — never an error;
- sentinel codes stay as their number and are listed in `ColumnSpec.special_codes`, so each model can
  give them their own bin (scorecard) or treat them as missing (gradient boosting);
- categories are integer codes into `ColumnSpec.categories`; `CATEGORY_MISSING` (−1) for missing and
  `CATEGORY_UNSEEN` (−2) for a category that training never saw.

Serving uses numpy only. `ScoredBatch` and `top_reasons_by_group` are the vectorised result type and the
reason selection (at most four reasons, one per characteristic group) shared by `scorecard` and `gbm`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from creditstack.scoring.domain import REASONS_PER_SCORE_MAX, Reason, ScoreResult
from creditstack.scoring.errors import (
    DataUnreadable,
    NoUsableFeatures,
    ProtectedAttributeAsInput,
    TargetColumnMissing,
    TargetNotBinary,
    TooFewRows,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ColumnKind = Literal["numeric", "categorical"]

MISSING_TOKENS = frozenset({"", "na", "n/a", "n.a.", "nan", "null", "?", "-", "--", "nil", "#n/a", "#null!", "missing"})
"""Cell texts (lower-cased, stripped) read as missing in every column."""
SENTINEL_CANDIDATES: tuple[float, ...] = (
    *(float(v) for v in (96, 97, 98, 99, 996, 997, 998, 999, 9996, 9997, 9998, 9999, 99999, 999999)),
    *(float(v) for v in (-9, -99, -999, -9999, -99999, -999999)),
)
"""Values that may be codes rather than quantities; a column's candidate is a sentinel only if it stands
apart from the column's other values (see `detect_sentinels`)."""
NUMERIC_SHARE_MIN = 0.95
"""A text column is numeric when at least this share of its non-missing cells parse as numbers."""
CATEGORIES_MAX = 200
"""A categorical column with more distinct values than this is dropped as high-cardinality."""
CATEGORY_MISSING = -1
CATEGORY_UNSEEN = -2
FILE_BYTES_MAX = 1 << 30
ROWS_MAX = 10_000_000
COLUMNS_MAX = 2_000
TRAINING_ROWS_MIN = 50
CLASS_ROWS_MIN = 10

_ID_NAME = re.compile(r"^(id|.*[_\s.]id|.*[a-z]Id|row_?num(ber)?|index|unnamed:\s*\d+)$", re.IGNORECASE)
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_GROUP_SUFFIX = re.compile(r"[_\s.\-]*\d+$")
_CURRENCY_PREFIX = "$€£¥₹"


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True, slots=True)
class Table:
    """A CSV read as text columns (object arrays of `str`), with the file's sha256 as its fingerprint."""

    columns: dict[str, npt.NDArray[np.object_]]
    rows: int
    sha256: str
    ragged_rows: int = 0

    def subset(self, index: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.object_]]:
        return {name: values[index] for name, values in self.columns.items()}


def read_table(path: str | Path, *, rows_max: int = ROWS_MAX) -> Table:
    """Read a delimited text file with a header row. Short rows are padded, long rows cut (and counted)."""
    file_path = Path(path)
    try:
        size = file_path.stat().st_size
        if size > FILE_BYTES_MAX:
            raise DataUnreadable(f"{file_path} is larger than {FILE_BYTES_MAX} bytes", field="data")
        raw = file_path.read_bytes()
    except OSError as error:
        raise DataUnreadable(f"cannot read {file_path}: {error.strerror}", field="data") from error
    return parse_table(raw, rows_max=rows_max)


def parse_table(raw: bytes, *, rows_max: int = ROWS_MAX) -> Table:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    header_line = text.split("\n", 1)[0]
    delimiter = max(",;\t|", key=header_line.count) if any(d in header_line for d in ",;\t|") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataUnreadable("the file is empty", field="data") from None
    header = _unique_names([name.strip() for name in header])
    if len(header) > COLUMNS_MAX:
        raise DataUnreadable(f"more than {COLUMNS_MAX} columns", field="data")
    width = len(header)
    rows: list[list[str]] = []
    ragged = 0
    for record in reader:
        if not record:
            continue
        if len(record) != width:
            ragged += 1
        rows.append(record if len(record) == width else (record + [""] * width)[:width])
        if len(rows) > rows_max:
            raise DataUnreadable(f"more than {rows_max} rows", field="data")
    if not rows:
        raise DataUnreadable("the file has a header but no rows", field="data")
    matrix = np.array(rows, dtype=object)
    columns = {name: matrix[:, j] for j, name in enumerate(header)}
    return Table(columns, len(rows), hashlib.sha256(raw).hexdigest(), ragged)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for index, name in enumerate(names):
        base = name or f"column_{index}"
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.append(base if count == 0 else f"{base}.{count}")
    return out


def fingerprint_columns(columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> str:
    """sha256 over column names and cell texts, for data that did not come from a file."""
    digest = hashlib.sha256()
    for name in sorted(columns):
        digest.update(name.encode() + b"\x1f")
        digest.update("\x1e".join(map(str, columns[name])).encode())
        digest.update(b"\x1d")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- parsing
def is_missing_token(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def parse_number(value: Any) -> float:
    """One cell to a float; NaN when missing or not a number. `"12.5%"` → 12.5, `"(3)"` → −3."""
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        return number if math.isfinite(number) else math.nan
    text = str(value).strip()
    if text.lower() in MISSING_TOKENS:
        return math.nan
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1].strip()
    text = text.removesuffix("%").strip().lstrip(_CURRENCY_PREFIX).strip()
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    try:
        number = float(text)
    except ValueError:
        return math.nan
    if not math.isfinite(number):
        return math.nan
    return -number if negative else number


def parse_numeric(values: Sequence[Any] | npt.NDArray[Any]) -> FloatArray:
    """A column to float64 with NaN for missing; a vectorised fast path for clean numeric text."""
    array = np.asarray(values)
    if array.dtype.kind in "fiu":
        out = array.astype(np.float64)
    else:
        try:
            out = array.astype(np.float64)
        except (ValueError, TypeError):
            out = np.fromiter((parse_number(v) for v in array), dtype=np.float64, count=len(array))
    out[~np.isfinite(out)] = np.nan
    return out


def normalise_categories(values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    """Cells to stripped text, `None` for missing."""
    out = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        out[index] = None if is_missing_token(value) else _category_text(value)
    return out


def _category_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def detect_sentinels(values: FloatArray) -> tuple[float, ...]:
    """Candidate codes that stand apart from the column's other values.

    A positive candidate (96, 98, 999…) is a sentinel when it exceeds twice the largest non-candidate
    value; a negative one (−9, −999…) when every non-candidate value is ≥ 0. So 96/98 in a count of late
    payments (0–13) are codes, while 96 in a percentage (0–100) is a value.
    """
    present = values[~np.isnan(values)]
    if present.size == 0:
        return ()
    candidates = [c for c in SENTINEL_CANDIDATES if np.any(present == c)]
    if not candidates:
        return ()
    rest = present[~np.isin(present, candidates)]
    if rest.size == 0:
        return ()
    rest_max, rest_min = float(rest.max()), float(rest.min())
    found = [c for c in candidates if (c > 0 and c > 2.0 * max(rest_max, 1.0)) or (c < 0 and rest_min >= 0)]
    return tuple(sorted(found))


def characteristic_group(name: str) -> str:
    """Columns that differ only by a trailing period number form one group: `PAY_0`, `PAY_2` → `PAY`."""
    group = _GROUP_SUFFIX.sub("", name)
    return group or name


def humanise(name: str) -> str:
    """`status_of_existing_checking_account` → `Status of existing checking account`; codes stay."""
    if not any(ch.islower() for ch in name):
        return name
    text = re.sub(r"[_.]+", " ", name).strip()
    text = re.sub(r"\s+", " ", text)
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """How one input column is cleaned; fitted on training rows, stored as JSON."""

    name: str
    kind: ColumnKind
    group: str
    label: str
    special_codes: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "kind": self.kind, "group": self.group, "label": self.label}
        if self.kind == "numeric":
            body["special_codes"] = list(self.special_codes)
        else:
            body["categories"] = list(self.categories)
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        kind = data["kind"]
        if kind not in ("numeric", "categorical"):
            raise DataUnreadable(f"unknown column kind {kind!r}", field=str(data.get("name")))
        return cls(
            name=str(data["name"]),
            kind=kind,
            group=str(data["group"]),
            label=str(data["label"]),
            special_codes=tuple(float(v) for v in data.get("special_codes", ())),
            categories=tuple(str(v) for v in data.get("categories", ())),
        )

    def clean(self, values: Sequence[Any] | npt.NDArray[Any]) -> FloatArray | IntArray:
        """float64 (NaN missing, sentinels kept) for numeric; int64 category codes for categorical."""
        if self.kind == "numeric":
            return parse_numeric(values)
        lookup = {category: code for code, category in enumerate(self.categories)}
        codes = np.empty(len(values), dtype=np.int64)
        for index, value in enumerate(values):
            if is_missing_token(value):
                codes[index] = CATEGORY_MISSING
            else:
                codes[index] = lookup.get(_category_text(value), CATEGORY_UNSEEN)
        return codes

    def describe(self, value: float | int) -> str:
        """A cleaned value as words for a reason text."""
        if self.kind == "categorical":
            code = int(value)
            if code == CATEGORY_MISSING:
                return "not provided"
            if code == CATEGORY_UNSEEN or not 0 <= code < len(self.categories):
                return "a value not seen in the model's development data"
            return self.categories[code]
        number = float(value)
        if math.isnan(number):
            return "not provided"
        if number in self.special_codes:
            return f"special code {_format_number(number)}"
        return _format_number(number)


def _format_number(number: float) -> str:
    return str(int(number)) if number.is_integer() else f"{number:.6g}"


@dataclass(frozen=True, slots=True)
class PreprocessSpec:
    """The fitted cleaning of a whole table: inputs, the target definition and what was dropped, and why."""

    target: str
    bad_value: str
    columns: tuple[ColumnSpec, ...]
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def clean(self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> dict[str, FloatArray | IntArray]:
        """Clean every input column; a column absent from the data is all missing (and not an error)."""
        length = _length(columns)
        cleaned: dict[str, FloatArray | IntArray] = {}
        for column in self.columns:
            values = columns.get(column.name)
            if values is None:
                values = np.full(length, None, dtype=object)
            cleaned[column.name] = column.clean(values)
        return cleaned

    def clean_row(self, row: Mapping[str, Any]) -> dict[str, FloatArray | IntArray]:
        return self.clean({column.name: [row.get(column.name)] for column in self.columns})

    def target_labels(
        self, values: Sequence[Any] | npt.NDArray[Any]
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
        """1 for bad, 0 for good, and a mask of rows whose target is present."""
        return encode_target(values, self.bad_value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "bad_value": self.bad_value,
            "columns": [column.to_dict() for column in self.columns],
            "dropped": dict(self.dropped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        return cls(
            target=str(data["target"]),
            bad_value=str(data["bad_value"]),
            columns=tuple(ColumnSpec.from_dict(c) for c in data["columns"]),
            dropped={str(k): str(v) for k, v in data.get("dropped", {}).items()},
        )


def _length(columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> int:
    for values in columns.values():
        return len(values)
    return 0


def infer_bad_value(values: Sequence[Any] | npt.NDArray[Any]) -> str:
    """The bad value when it is unambiguous: 1 of {0, 1}, `bad` of {good, bad}, yes/true/default."""
    distinct = {_category_text(v).lower() for v in values if not is_missing_token(v)}
    numeric = {parse_number(v) for v in distinct}
    if numeric <= {0.0, 1.0} and len(numeric) == 2 and not any(math.isnan(v) for v in numeric):
        return "1"
    for bad in ("bad", "yes", "true", "default", "y"):
        if bad in distinct and len(distinct) == 2:
            return bad
    raise TargetNotBinary(
        f"cannot tell which target value is bad among {sorted(distinct)[:10]}; give --bad-value",
        field="bad_value",
    )


def encode_target(
    values: Sequence[Any] | npt.NDArray[Any], bad_value: str
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
    bad_text = bad_value.strip().lower()
    bad_number = parse_number(bad_text)
    labels = np.zeros(len(values), dtype=np.int8)
    present = np.ones(len(values), dtype=np.bool_)
    for index, value in enumerate(values):
        if is_missing_token(value):
            present[index] = False
            continue
        text = _category_text(value).lower()
        if text == bad_text or (not math.isnan(bad_number) and parse_number(text) == bad_number):
            labels[index] = 1
    return labels, present


def fit_preprocess(
    columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]],
    target: str,
    *,
    bad_value: str | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
    special_codes: Mapping[str, Sequence[float]] | None = None,
    groups: Mapping[str, str] | None = None,
) -> PreprocessSpec:
    """Type, clean and select the input columns from training rows (the target must be among them).

    `exclude` names columns that must never be inputs (protected attributes, leakage); `categorical`
    forces columns such as numeric codes to be treated as categories; `special_codes` adds to the
    detected sentinels; `groups` overrides the characteristic group of a column (for reason codes).
    """
    if target not in columns:
        raise TargetColumnMissing(f"target column {target!r} is not in the data", field="target")
    target_values = columns[target]
    resolved_bad = bad_value if bad_value is not None else infer_bad_value(target_values)
    labels, present = encode_target(target_values, resolved_bad)
    bads = int(labels[present].sum())
    goods = int(present.sum()) - bads
    if bads == 0 or goods == 0:
        raise TargetNotBinary(
            f"target {target!r} with bad value {resolved_bad!r} gives {bads} bads and {goods} goods",
            field="bad_value",
        )
    excluded = set(exclude)
    forced_categorical = set(categorical)
    extra_specials = dict(special_codes or {})
    group_overrides = dict(groups or {})
    specs: list[ColumnSpec] = []
    dropped: dict[str, str] = {}
    for name, values in columns.items():
        if name == target:
            continue
        if name in excluded:
            dropped[name] = "excluded"
            continue
        if _ID_NAME.match(name):
            dropped[name] = "identifier"
            continue
        spec, reason = _fit_column(name, np.asarray(values)[present], name in forced_categorical)
        if spec is None:
            dropped[name] = reason
            continue
        if name in extra_specials and spec.kind == "numeric":
            merged = tuple(sorted({*spec.special_codes, *(float(v) for v in extra_specials[name])}))
            spec = ColumnSpec(spec.name, spec.kind, spec.group, spec.label, merged)
        if name in group_overrides:
            spec = ColumnSpec(
                spec.name, spec.kind, group_overrides[name], spec.label, spec.special_codes, spec.categories
            )
        specs.append(spec)
    if not specs:
        raise NoUsableFeatures(f"no usable input column; dropped: {dropped}")
    return PreprocessSpec(target, resolved_bad, tuple(specs), dropped)


def _fit_column(name: str, values: npt.NDArray[Any], force_categorical: bool) -> tuple[ColumnSpec | None, str]:
    array = np.asarray(values)
    group, label = characteristic_group(name), humanise(name)
    if not force_categorical:
        numbers = parse_numeric(array)
        present = ~np.isnan(numbers)
        if array.dtype.kind in "fiu":
            is_numeric = True
        else:
            not_missing = np.fromiter((not is_missing_token(v) for v in array), dtype=bool, count=len(array))
            given = int(not_missing.sum())
            is_numeric = given > 0 and int((present & not_missing).sum()) >= NUMERIC_SHARE_MIN * given
        if is_numeric:
            distinct = np.unique(numbers[present])
            if distinct.size <= 1:
                return None, "constant"
            if (
                distinct.size == present.sum() == len(numbers)
                and np.all(np.mod(distinct, 1) == 0)
                and distinct[-1] - distinct[0] == distinct.size - 1
                and len(numbers) >= 20
            ):
                return None, "identifier"
            return ColumnSpec(name, "numeric", group, label, detect_sentinels(numbers)), ""
    texts = normalise_categories(array)
    seen = sorted({t for t in texts if t is not None})
    if len(seen) <= 1:
        return None, "constant"
    if len(seen) > CATEGORIES_MAX:
        return None, "identifier" if len(seen) == len(texts) else "high_cardinality"
    return ColumnSpec(name, "categorical", group, label, categories=tuple(seen)), ""


def check_training_rows(labels: npt.NDArray[np.int8]) -> None:
    bads = int(labels.sum())
    goods = len(labels) - bads
    if len(labels) < TRAINING_ROWS_MIN or min(bads, goods) < CLASS_ROWS_MIN:
        raise TooFewRows(
            f"need at least {TRAINING_ROWS_MIN} rows and {CLASS_ROWS_MIN} of each class; "
            f"got {len(labels)} rows, {bads} bads, {goods} goods"
        )


def check_no_protected_inputs(spec: PreprocessSpec, protected: Sequence[str]) -> None:
    used = set(spec.names) & set(protected)
    if used:
        raise ProtectedAttributeAsInput(f"protected attributes used as inputs: {sorted(used)}")


# ---------------------------------------------------------------------------------------------- serving
def top_reasons_by_group(
    impact: FloatArray, group_ids: IntArray, *, reasons_max: int = REASONS_PER_SCORE_MAX, impact_min: float = 1e-9
) -> tuple[IntArray, FloatArray]:
    """Per row, the characteristics with the largest positive impact, one per group, worst first.

    `impact` is rows × characteristics; returns (rows × `reasons_max` column indices, −1 for none;
    the matching impacts, 0 for none).
    """
    rows, width = impact.shape
    group_count = int(group_ids.max()) + 1 if width else 0
    best_value = np.full((rows, max(group_count, 1)), -np.inf)
    best_column = np.full((rows, max(group_count, 1)), -1, dtype=np.int64)
    for column in range(width):
        group = int(group_ids[column])
        better = impact[:, column] > best_value[:, group]
        best_value[better, group] = impact[better, column]
        best_column[better, group] = column
    order = np.argsort(-best_value, axis=1, kind="stable")[:, :reasons_max]
    values = np.take_along_axis(best_value, order, axis=1)
    columns = np.take_along_axis(best_column, order, axis=1)
    weak = ~(values > impact_min)
    columns[weak] = -1
    values[weak] = 0.0
    if values.shape[1] < reasons_max:
        pad = reasons_max - values.shape[1]
        columns = np.pad(columns, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=0.0)
    return columns, values


def group_index(specs: Sequence[ColumnSpec]) -> IntArray:
    order: dict[str, int] = {}
    return np.array([order.setdefault(s.group, len(order)) for s in specs], dtype=np.int64)


def reason_text(template: str | None, label: str, value_text: str) -> str:
    """The notice text: a template with `{label}`/`{value}` from the model, or `label: value`."""
    if template:
        return template.replace("{label}", label).replace("{value}", value_text)
    return f"{label}: {value_text}"


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """Scores, PDs and reasons for many rows as arrays (the batch path), convertible to `ScoreResult`s."""

    score: IntArray
    pd: FloatArray
    reason_columns: IntArray
    reason_impacts: FloatArray
    reason_texts: npt.NDArray[np.object_]
    reason_values: npt.NDArray[np.object_]
    specs: tuple[ColumnSpec, ...]
    model_id: str = ""

    def __len__(self) -> int:
        return len(self.score)

    def result(self, index: int) -> ScoreResult:
        reasons = []
        for slot in range(self.reason_columns.shape[1]):
            column = int(self.reason_columns[index, slot])
            if column < 0:
                continue
            spec = self.specs[column]
            reasons.append(
                Reason(
                    code=spec.group,
                    characteristic=spec.name,
                    text=str(self.reason_texts[index, slot]),
                    impact=float(self.reason_impacts[index, slot]),
                    value=str(self.reason_values[index, slot]),
                )
            )
        return ScoreResult(int(self.score[index]), float(self.pd[index]), tuple(reasons), self.model_id)

    def results(self) -> list[ScoreResult]:
        return [self.result(i) for i in range(len(self))]


def build_reason_texts(
    reason_columns: IntArray,
    cleaned: Mapping[str, FloatArray | IntArray],
    specs: Sequence[ColumnSpec],
    templates: Mapping[str, str],
    describe: Callable[[int, float | int], str] | None = None,
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """Texts and value descriptions for the chosen reasons (rows × slots, empty where none)."""
    texts = np.full(reason_columns.shape, "", dtype=object)
    values = np.full(reason_columns.shape, "", dtype=object)
    rows, slots = np.nonzero(reason_columns >= 0)
    for row, slot in zip(rows.tolist(), slots.tolist(), strict=True):
        column = int(reason_columns[row, slot])
        spec = specs[column]
        raw = cleaned[spec.name][row]
        value_text = describe(column, raw) if describe else spec.describe(raw)
        template = templates.get(spec.name) or templates.get(spec.group)
        texts[row, slot] = reason_text(template, spec.label, value_text)
        values[row, slot] = spec.describe(raw)
    return texts, values


class ScoresColumns:
    """Batch, single-row and PD-only scoring on top of a model's `score_cleaned`, shared by the scorecard
    and the gradient-boosting model so that both clean their input the same way."""

    preprocess: PreprocessSpec

    def score_cleaned(self, cleaned: Mapping[str, Any], *, with_reasons: bool = True) -> ScoredBatch:
        raise NotImplementedError

    def score_batch(
        self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]], *, with_reasons: bool = True
    ) -> ScoredBatch:
        """Score many rows given as columns of raw cells (text or numbers)."""
        return self.score_cleaned(self.preprocess.clean(columns), with_reasons=with_reasons)

    def score_row(self, row: Mapping[str, Any]) -> ScoreResult:
        """Score one applicant given as a mapping of column name to raw cell."""
        return self.score_cleaned(self.preprocess.clean_row(row)).result(0)

    def predict_pd(self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> npt.NDArray[np.float64]:
        return self.score_batch(columns, with_reasons=False).pd
