"""The producer contract of a landed JSON-lines source, declared as data, judged in Spark.

A line is accepted only if it is one JSON object whose known fields have the declared JSON
type, length and form. Types are strict: ``"user_id": "7"`` is a string where an integer is
expected and is quarantined as ``invalid_user_id``, never cast; ``"event_id": 7`` is a number
where a string is expected (``invalid_event_id``). Strings are bounded (``<field>_too_long``) and
may not carry control characters such as NUL (``<field>_has_control_characters``). Fields the
contract does not know are allowed and kept out of the table, but counted per name, so a
producer that starts sending a new field, or misspells one, shows up in the metadata.

Reasons, in the order a line is judged (the first failure is its reason):
``invalid_encoding``, ``malformed_json``, ``duplicate_field``, then per field in declared
order: ``missing_<field>`` (absent or null when required; the name can be overridden),
``invalid_<field>`` (wrong JSON type), ``<field>_too_long``, ``<field>_has_control_characters``,
``unknown_<field>`` (not one of the allowed values) or ``invalid_<field>`` (not the pattern).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

JsonType = Literal["string", "integer", "number"]
SPARK_TYPES: dict[str, str] = {"string": "string", "integer": "bigint", "number": "double"}
DEFAULT_MAX_CHARS = 128
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
ISO_INSTANT = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})"
# How a number, boolean, object or array begins once Spark has read it into a string field.
_COULD_BE_COERCED = r"^(-?[0-9]|true$|false$|[\[{])"

PARSED = "_parsed"  # struct of the known fields with their contract types
RAW_TEXT = "_raw"  # struct of the numeric fields as text: given or not, whatever the type
FIELDS = "_fields"  # the object as a map: one entry per distinct top-level key
UNKNOWN_FIELDS = "unknown_fields"
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class Field:
    """One top-level field of a producer's record."""

    name: str
    json_type: JsonType
    required: bool = True
    max_chars: int = DEFAULT_MAX_CHARS  # strings only
    allowed: tuple[str, ...] = ()  # strings only: an enumeration
    pattern: str | None = None  # strings only: a full-match regular expression
    missing_reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _FIELD_NAME.fullmatch(self.name):
            raise ValueError(  # it is spliced into a schema string and a JSON path
                f"Field name {self.name!r}: expected letters, digits and underscores."
            )
        if self.json_type not in SPARK_TYPES:
            raise ValueError(
                f"Field {self.name!r}: json_type must be one of {list(SPARK_TYPES)}, "
                f"got {self.json_type!r}."
            )
        if self.json_type != "string" and (self.allowed or self.pattern):
            raise ValueError(f"Field {self.name!r}: allowed values and patterns are for strings.")
        if self.max_chars < 1:
            raise ValueError(f"Field {self.name!r}: max_chars must be >= 1.")

    @property
    def spark_type(self) -> str:
        return SPARK_TYPES[self.json_type]

    @property
    def free_text(self) -> bool:
        """A string whose form is not declared: a number could pass for it once read as text."""
        return self.json_type == "string" and not self.allowed and self.pattern is None


@dataclass(frozen=True)
class ProducerContract:
    """The fields of one source's records."""

    source: str
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"Contract {self.source!r} declares a field twice: {names}.")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def parse(lines: DataFrame, contract: ProducerContract) -> DataFrame:
    """Add the parsed fields to ``lines`` (``value``, ``landing_date``, ``invalid_encoding``).

    Each line is parsed by Spark's JSON reader into the contract's types (strict for numbers),
    numeric fields also as text (to tell "absent" from "wrong type"), and as a map of its
    top-level fields (malformed lines, unknown fields). The typed value of each field is a
    column of its name. Only functions that run on every engine lane are used (Sail's
    ``json_object_keys`` does not run on a Sail cluster's workers).
    """
    typed = ", ".join(f"{f.name} {f.spark_type}" for f in contract.fields)
    numeric = [f.name for f in contract.fields if f.json_type != "string"]
    raw = ", ".join(f"{n} string" for n in numeric) or "_none string"
    known = F.array(*[F.lit(n) for n in contract.names]).cast("array<string>")
    return lines.select(
        "value",
        F.col("landing_date").cast("date").alias("landing_date"),
        F.col("invalid_encoding"),
        # a map is the strictest of Spark's JSON readers: null for anything but one object
        # (trailing text, a number out of range, an array); the struct readers are not. It
        # keeps one entry per distinct key.
        F.from_json("value", "map<string,string>").alias(FIELDS),
        F.from_json("value", typed).alias(PARSED),
        F.from_json("value", raw).alias(RAW_TEXT),
    ).select(
        "*",
        *[F.col(f"{PARSED}.{f.name}").alias(f.name) for f in contract.fields],
        F.coalesce(
            F.array_except(F.map_keys(FIELDS), known), F.array().cast("array<string>")
        ).alias(UNKNOWN_FIELDS),
    )


def _duplicate_key() -> SparkColumn:
    """The object names a key twice. Every top-level member shows in the text as a quote
    followed by a colon, so a line with no more of those than distinct keys has no duplicate;
    only the others (nested objects, quotes in strings) are asked of the exact, slower
    variant parser, which refuses duplicate keys."""
    members_at_most = F.regexp_count("value", F.lit(r'"\s*:'))
    exact = F.try_parse_json("value").isNull()
    return F.when(members_at_most > F.size(FIELDS), exact).otherwise(F.lit(False))


def _given(f: Field) -> SparkColumn:
    """The field is present and not JSON null, whatever its type."""
    source = RAW_TEXT if f.json_type != "string" else PARSED
    return F.col(f"{source}.{f.name}").isNotNull()


def _not_a_json_string(f: Field) -> SparkColumn:
    """A free-text field whose text could be another JSON type read as text: ask the exact
    JSON type (only for those rows; every other string is certainly a JSON string)."""
    value = F.col(f"{PARSED}.{f.name}")
    exact = F.expr(f"try_variant_get(try_parse_json(value), '$.{f.name}', 'string')")
    return F.when(value.rlike(_COULD_BE_COERCED), exact.isNull()).otherwise(F.lit(False))


def field_failures(contract: ProducerContract) -> list[tuple[SparkColumn, str]]:
    """``(failed, reason)`` for every rule, in judging order, over a :func:`parse` result.

    The rules read the parsed struct, so callers may replace the typed columns (a timestamp
    string by its parsed timestamp, say) before judging."""
    checks: list[tuple[SparkColumn, str]] = [
        (F.col("invalid_encoding"), "invalid_encoding"),
        (F.col(FIELDS).isNull(), "malformed_json"),
        (_duplicate_key(), "duplicate_field"),
    ]
    for f in contract.fields:
        value = F.col(f"{PARSED}.{f.name}")
        given = _given(f)
        if f.required:
            missing = ~given
            if f.json_type == "string":
                missing = missing | (value == "")
            checks.append((missing, f.missing_reason or f"missing_{f.name}"))
        if f.json_type != "string":
            checks.append((given & value.isNull(), f"invalid_{f.name}"))
            continue
        if f.free_text:
            checks.append((given & _not_a_json_string(f), f"invalid_{f.name}"))
        checks.append((F.length(value) > f.max_chars, f"{f.name}_too_long"))
        checks.append((value.rlike(CONTROL_CHARACTERS), f"{f.name}_has_control_characters"))
        if f.allowed:
            checks.append((given & ~value.isin(*f.allowed), f"unknown_{f.name}"))
        if f.pattern is not None:
            checks.append((given & ~value.rlike(f"^(?:{f.pattern})$"), f"invalid_{f.name}"))
    return checks


def drop_parsing_columns(judged: DataFrame) -> DataFrame:
    return judged.drop(FIELDS, PARSED, RAW_TEXT)


def unknown_field_counts(classified: DataFrame, limit: int = 20) -> dict[str, int]:
    """How many lines carried each field the contract does not know (the most frequent
    ``limit`` names; names are cut to 64 characters and shown with escapes)."""
    rows = (
        classified.select(F.explode(UNKNOWN_FIELDS).alias("name"))
        .groupBy("name")
        .count()
        .orderBy(F.desc("count"), "name")
        .limit(limit)
        .collect()
    )
    counts: dict[str, int] = {}
    for r in rows:  # two names alike in their first 64 characters are shown as one
        shown = ascii(r["name"][:64])[1:-1]
        counts[shown] = counts.get(shown, 0) + r["count"]
    return counts


def summed_field_counts(parts: Iterable[dict[str, int]], limit: int = 20) -> dict[str, int]:
    """Several batches' :func:`unknown_field_counts` together: the most frequent ``limit``
    names. A name's total is exact when every batch's counts were taken with a ``limit``
    above the number of names that batch carried."""
    total: dict[str, int] = {}
    for part in parts:
        for name, n in part.items():
            total[name] = total.get(name, 0) + n
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])
