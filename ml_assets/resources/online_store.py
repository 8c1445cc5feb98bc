"""The online feature store: one SQL table per feature table, keyed by entity, holding the
latest row with its feature timestamp. SQLAlchemy, so the same code runs on a SQLite file
(the local default, ``$ML_ASSETS_HOME/online.db``) and on PostgreSQL (``postgresql+psycopg://``
URL), as Databricks' online store (Lakebase) is PostgreSQL.

Timestamps are stored as UTC without a zone (portable across both); ``_row_hash`` lets a
publish write only the rows that changed; ``online_publications`` records which Delta version
of each table the store holds, which the skew check compares against.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from ml_assets.lib.features.contracts import FeatureTableContract
from ml_assets.lib.serving.online import ROW_HASH, plan_publish

PUBLICATIONS = "online_publications"
CHUNK = 500  # keys per DELETE ... IN (...)
_TYPES = {
    "bigint": sa.BigInteger,
    "int": sa.Integer,
    "double": sa.Float,
    "float": sa.Float,
    "string": sa.String,
    "boolean": sa.Boolean,
    "timestamp": sa.DateTime,
    "date": sa.Date,
}


@dataclass(frozen=True)
class PublishResult:
    table: str
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    rows: int
    delta_version: int


def online_table_name(contract: FeatureTableContract) -> str:
    """``main.features.user_activity`` -> ``features__user_activity``."""
    name = contract.table_spec.name
    return f"{name.schema}__{name.table}"


def _column_type(dtype: str) -> sa.types.TypeEngine:
    if dtype.startswith("decimal"):
        return sa.Float()  # the model reads decimals as doubles
    return _TYPES[dtype]()


@cache
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True)


@cache  # one SQLAlchemy table object per contract, built once per process
def _metadata_for(contract: FeatureTableContract) -> tuple[sa.MetaData, sa.Table]:
    metadata = sa.MetaData()
    dtypes = {c.name: c.dtype for c in contract.table_spec.columns}
    columns = [
        sa.Column(k, _column_type(dtypes[k]), primary_key=True) for k in contract.entity_keys
    ]
    columns.append(sa.Column(contract.timestamp_key, sa.DateTime, nullable=False))
    columns += [sa.Column(n, _column_type(dtypes[n])) for n in contract.feature_names]
    columns.append(sa.Column(ROW_HASH, sa.String(40), nullable=False))
    table = sa.Table(online_table_name(contract), metadata, *columns)
    sa.Table(
        PUBLICATIONS,
        metadata,
        sa.Column("table_name", sa.String(200), primary_key=True),
        sa.Column("delta_version", sa.BigInteger, nullable=False),
        sa.Column("published_at", sa.DateTime, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
    )
    return metadata, table


class OnlineStore(dg.ConfigurableResource, ABC):
    @abstractmethod
    def url(self) -> str: ...

    def engine(self) -> sa.Engine:
        return _engine(self.url())

    def display_url(self) -> str:
        return sa.make_url(self.url()).render_as_string(hide_password=True)

    def publish(
        self, contract: FeatureTableContract, latest: pd.DataFrame, delta_version: int
    ) -> PublishResult:
        """Write the changed rows of ``latest`` (``online_frame`` output) in one transaction."""
        metadata, table = _metadata_for(contract)
        keys = list(contract.entity_keys)
        with self.engine().begin() as conn:
            metadata.create_all(conn)
            stored = pd.DataFrame(
                conn.execute(sa.select(*[table.c[k] for k in keys], table.c[ROW_HASH])).all(),
                columns=[*keys, ROW_HASH],
            )
            plan = plan_publish(latest, stored, keys)
            changed = pd.concat([plan.upserts[keys], plan.deletes[keys]])
            for start in range(0, len(changed), CHUNK):
                chunk = changed.iloc[start : start + CHUNK]
                if len(keys) == 1:
                    condition = table.c[keys[0]].in_(chunk[keys[0]].tolist())
                else:
                    condition = sa.tuple_(*[table.c[k] for k in keys]).in_(
                        list(chunk.itertuples(index=False, name=None))
                    )
                conn.execute(table.delete().where(condition))
            if len(plan.upserts):
                records = plan.upserts.astype(object).where(plan.upserts.notna(), None)
                conn.execute(table.insert(), records.to_dict("records"))
            publications = metadata.tables[PUBLICATIONS]
            conn.execute(
                publications.delete().where(publications.c.table_name == str(contract.name))
            )
            conn.execute(
                publications.insert(),
                {
                    "table_name": str(contract.name),
                    "delta_version": delta_version,
                    "published_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    "rows": len(latest),
                },
            )
        return PublishResult(
            str(contract.name),
            plan.inserted,
            plan.updated,
            len(plan.deletes),
            plan.unchanged,
            len(latest),
            delta_version,
        )

    def read(self, contract: FeatureTableContract, keys: Sequence[object]) -> dict[tuple, dict]:
        """The stored rows of these entity keys (single-key tables) by key tuple, timestamps
        as UTC datetimes. Records, not a DataFrame: the gateway reads one key per request."""
        _, table = _metadata_for(contract)
        (key,) = contract.entity_keys
        columns = [c for c in table.columns if c.name != ROW_HASH]
        times = [c.name for c in columns if isinstance(c.type, sa.DateTime)]
        # numpy scalars would be bound as blobs by SQLite and match nothing
        plain = [k.item() if hasattr(k, "item") else k for k in keys]
        with self.engine().connect() as conn:
            result = conn.execute(sa.select(*columns).where(table.c[key].in_(plain)))
            rows = [dict(r._mapping) for r in result]
        for row in rows:
            for column in times:
                if row[column] is not None:
                    row[column] = row[column].replace(tzinfo=dt.UTC)
        return {(row[key],): row for row in rows}

    def read_keys(self, contract: FeatureTableContract) -> list[object]:
        """Every stored entity key (single-key tables)."""
        _, table = _metadata_for(contract)
        (key,) = contract.entity_keys
        with self.engine().connect() as conn:
            return list(conn.execute(sa.select(table.c[key])).scalars())

    def newest_feature_time(self, contract: FeatureTableContract) -> dt.datetime | None:
        """The newest feature timestamp stored (UTC), or None when the table is empty."""
        _, table = _metadata_for(contract)
        with self.engine().connect() as conn:
            if not sa.inspect(conn).has_table(table.name):
                return None
            newest = conn.execute(sa.select(sa.func.max(table.c[contract.timestamp_key]))).scalar()
        return None if newest is None else newest.replace(tzinfo=dt.UTC)

    def publication(self, contract: FeatureTableContract) -> dict[str, object] | None:
        """Which Delta version of the table the store holds, when it was published, rows."""
        metadata, _ = _metadata_for(contract)
        publications = metadata.tables[PUBLICATIONS]
        with self.engine().connect() as conn:
            if not sa.inspect(conn).has_table(PUBLICATIONS):
                return None
            row = conn.execute(
                sa.select(publications).where(publications.c.table_name == str(contract.name))
            ).first()
        return None if row is None else dict(row._mapping)


class SqlOnlineStore(OnlineStore):
    """Any SQLAlchemy URL: ``sqlite:///…/online.db`` locally, ``postgresql+psycopg://…``."""

    database_url: str

    def url(self) -> str:
        return self.database_url
