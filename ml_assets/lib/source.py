"""A deterministic, seeded e-commerce business and the files its upstream systems would land.

``simulate`` produces the clean truth: users with a signup, a plan tier, a country and a
churn time; daily sessions whose events depend on the plan tier, follow a weekly rhythm and
decay in the weeks before a user churns; a users change log (signups, plan and country
changes, and the account closed some days *after* the user churned: a leakage hazard for
anything that joins the current status onto a past observation).

``land`` writes what an upstream system would drop, with realistic dirt at configurable rates:
daily event files (JSON lines) under ``events/date=YYYY-MM-DD/`` and daily users change-log
files under ``users/date=YYYY-MM-DD/``. Each dirt category is exclusive per record, so the
injected counts it returns are the exact ground truth ingestion must reproduce.

Pure: takes a config and a directory, reads no environment. Same config, same bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml_assets.lib.domain import COUNTRIES, DEVICES, EVENT_TYPES, PLAN_TIERS
from ml_assets.lib.files import write_atomically

_COUNTRY_WEIGHTS = (0.30, 0.12, 0.10, 0.08, 0.12, 0.08, 0.06, 0.05, 0.05, 0.04)
_TIER_WEIGHTS = (0.6, 0.3, 0.1)
_TIER_RATE = np.array([0.8, 1.1, 1.4])  # sessions per day multiplier by tier
_TIER_HAZARD = np.array([0.006, 0.0035, 0.002])  # churn hazard per day by tier
_TIER_PURCHASE = np.array([0.04, 0.09, 0.16])  # purchase probability per session by tier
_TIER_REVENUE = np.array([25.0, 40.0, 70.0])  # median order value by tier
_WEEKDAY_FACTOR = np.array([0.95, 0.9, 0.9, 0.95, 1.05, 1.2, 1.15])  # Monday .. Sunday
_DECAY_DAYS = 21.0  # engagement fades over the three weeks before churn
_UNKNOWN_USER_BASE = 90_000_000  # ids no user has

EVENTS_DIR = "events"
USERS_DIR = "users"
EVENTS_FILE = "events.jsonl"
CHANGES_FILE = "changes.jsonl"


class DirtRates(BaseModel):
    """Shares of records landed dirty. Categories are exclusive: a record has at most one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duplicate: float = Field(0.01, ge=0, le=0.2, description="re-sent with the same id")
    late: float = Field(0.03, ge=0, le=0.5, description="landing 1..max_late_days late")
    max_late_days: int = Field(3, ge=1, le=30)
    null_user_id: float = Field(0.002, ge=0, le=0.2)
    unknown_user_id: float = Field(0.002, ge=0, le=0.2, description="events only")
    malformed: float = Field(0.001, ge=0, le=0.2, description="truncated JSON line")
    future_timestamp: float = Field(0.001, ge=0, le=0.2, description="events only")
    negative_revenue: float = Field(0.02, ge=0, le=0.5, description="share of purchases")


class ChangeDirtRates(BaseModel):
    """Dirt of the users change log (another upstream system, with its own failure modes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duplicate: float = Field(0.01, ge=0, le=0.2)
    null_user_id: float = Field(0.002, ge=0, le=0.2)
    malformed: float = Field(0.001, ge=0, le=0.2)


class BehaviourShift(BaseModel):
    """Injected drift: from ``start``, users behave differently (a redesign, a competitor).

    From that day on only ``session_rate`` of the sessions users would have had happen (each
    session kept at random, from its own random stream, so the events before ``start`` are the
    undrifted source's; the landing dirt is drawn per record, so which of them land dirty
    differs). Churn times are unchanged: activity features move.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: dt.date
    session_rate: float = Field(0.4, gt=0, le=1, description="share of sessions that happen")


class BackdatedDowngrades(BaseModel):
    """Injected leakage: when an account closes, the billing system downgrades it to ``free``
    and stamps the downgrade some days before the user's last activity (the start of the last
    paid period; uniform between the two bounds). The record is written, and lands, when the
    account closes: days or weeks after the time it claims. A point-in-time join trusts that
    time, so at an observation before the churn the feature already says ``free``: the future
    leaks in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_days_before_churn: float = Field(3, ge=0)
    max_days_before_churn: float = Field(28, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> BackdatedDowngrades:
        if self.min_days_before_churn > self.max_days_before_churn:
            raise ValueError(
                f"min_days_before_churn ({self.min_days_before_churn}) must not exceed "
                f"max_days_before_churn ({self.max_days_before_churn})"
            )
        return self


class SourceConfig(BaseModel):
    """Scale and calendar of the simulated business."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: int = Field(20_000, ge=1, le=5_000_000)
    days: int = Field(120, ge=1, le=3_650)
    start_date: dt.date = dt.date(2026, 1, 1)
    seed: int = 7
    history_days: int = Field(180, ge=0, description="how long before start_date signups reach")
    base_sessions_per_day: float = Field(0.35, gt=0)
    dirt: DirtRates = DirtRates()
    change_dirt: ChangeDirtRates = ChangeDirtRates()
    behaviour_shift: BehaviourShift | None = None  # injected drift
    backdated_downgrades: BackdatedDowngrades | None = None  # injected leakage

    @property
    def end_date(self) -> dt.date:
        """The last day with landed data (inclusive)."""
        return self.start_date + dt.timedelta(days=self.days - 1)

    @property
    def dates(self) -> list[dt.date]:
        return [self.start_date + dt.timedelta(days=i) for i in range(self.days)]


# The demo's first observation time is the first Monday of 2026. Before it the source lands
# WARMUP_DAYS of history: the longest feature window (90 days) and the lookup's lookback
# (2 days), so the first label's features are computed over complete windows, as serving's are.
FIRST_OBSERVATION_MONTH = dt.date(2026, 1, 1)
WARMUP_DAYS = 92
WARMUP_START = FIRST_OBSERVATION_MONTH - dt.timedelta(days=WARMUP_DAYS)  # 2025-10-01

SCALES: dict[str, SourceConfig] = {
    # 92 warm-up days, then 120 days of observation times and outcomes (through 2026-04-30);
    # 12,000 users keep the events near 2.3 million, what 20,000 users over 120 days made
    "demo": SourceConfig(users=12_000, days=WARMUP_DAYS + 120, start_date=WARMUP_START),
    # warm-up, then long enough for weekly churn labels with a 30-day outcome window (6
    # observation times, through 2026-03-11)
    "tiny": SourceConfig(
        users=400, days=WARMUP_DAYS + 70, start_date=WARMUP_START, history_days=60
    ),
}


@dataclass
class SimulatedBusiness:
    """The clean truth, before any dirt. Timestamps are UTC ``datetime64[ns]``."""

    users: pd.DataFrame  # one row per user: static attributes and churn time (truth)
    changes: pd.DataFrame  # users change log, after-images, sorted by changed_at
    events: pd.DataFrame  # events, sorted by event_ts


@dataclass
class LandingSummary:
    dates: list[dt.date]
    event_lines: int
    change_lines: int
    # exact counts of dirt injected, by category, for events and changes
    injected_events: dict[str, int] = field(default_factory=dict)
    injected_changes: dict[str, int] = field(default_factory=dict)


def _scramble(seq: np.ndarray, salt: int) -> np.ndarray:
    """A bijection on uint64: unique ids that do not look sequential."""
    x = seq.astype(np.uint64) + np.uint64(salt)
    with np.errstate(over="ignore"):
        x = x * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(29)
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(32)
    return x


# "00" .. "ff": the two hex digits of each byte value, as one uint16 (their two bytes)
_HEX_PAIRS = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2").view(np.uint16)


def _ascii_strings(chars: np.ndarray) -> pa.LargeStringArray:
    """An (n, width) array of ASCII bytes as n Arrow strings, one buffer copy and no Python
    object per string (millions of ids and timestamps)."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _hex_ids(prefix: str, seq: np.ndarray, salt: int) -> pd.arrays.ArrowExtensionArray:
    """``prefix`` + 16 hex digits of the scrambled sequence number, vectorized."""
    x = _scramble(seq, salt)
    digits = _HEX_PAIRS[x.astype(">u8").view(np.uint8).reshape(-1, 8)].view(np.uint8)
    head = np.broadcast_to(np.frombuffer(prefix.encode(), np.uint8), (len(x), len(prefix)))
    return pd.arrays.ArrowExtensionArray(_ascii_strings(np.concatenate([head, digits], axis=1)))


_ISO_TEMPLATE = np.frombuffer(b"0000-00-00T00:00:00.000Z", dtype=np.uint8)
# (first character, digits) of each field in _ISO_TEMPLATE
_ISO_FIELDS = ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2), (20, 3))


def _iso_timestamps(values: np.ndarray) -> pa.LargeStringArray:
    """Timestamps (UTC, whole milliseconds) as ISO-8601 text with milliseconds and a ``Z``,
    ``2026-01-01T03:00:52.921Z``; NaT becomes null. Arithmetic on the digits: Arrow's
    ``strftime`` took 2.7 s for the demo's 2.5 million events."""
    missing = np.isnat(values)
    ns = np.where(missing, np.datetime64(0, "ns"), values.astype("datetime64[ns]"))
    ms = ns.astype("datetime64[ms]")
    if (ms != ns).any():
        raise ValueError("_iso_timestamps writes whole milliseconds; a timestamp has more")
    day = ms.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    year = month.astype("datetime64[Y]")
    in_day = (ms - day).astype(np.int64)
    fields = (
        year.astype(np.int64) + 1970,
        (month - year).astype(np.int64) + 1,
        (day - month).astype(np.int64) + 1,
        in_day // 3_600_000,
        in_day // 60_000 % 60,
        in_day // 1000 % 60,
        in_day % 1000,
    )
    if ((fields[0] < 0) | (fields[0] > 9999)).any():
        raise ValueError("_iso_timestamps writes years 0..9999; a timestamp is outside them")
    chars = np.tile(_ISO_TEMPLATE, (len(ns), 1))
    for (first, width), value in zip(_ISO_FIELDS, fields, strict=True):
        for k in range(width):
            chars[:, first + k] += (value // 10 ** (width - 1 - k) % 10).astype(np.uint8)
    text = _ascii_strings(chars)
    if missing.any():
        text = pc.if_else(pa.array(missing), pa.scalar(None, pa.large_string()), text)
    return text


def simulate(config: SourceConfig) -> SimulatedBusiness:
    """Simulate users, their change log and their events over the configured calendar."""
    rng = np.random.default_rng(config.seed)
    n, n_days = config.users, config.days
    start = pd.Timestamp(config.start_date)

    # -- users --------------------------------------------------------------------------
    user_id = np.arange(1, n + 1, dtype=np.int64)
    before_start = rng.random(n) < 0.7
    signup_day = np.where(
        before_start,
        rng.uniform(-config.history_days, 0, n) if config.history_days else 0.0,
        rng.uniform(0, n_days, n),
    )
    tier0 = rng.choice(3, size=n, p=_TIER_WEIGHTS)
    country0 = rng.choice(len(COUNTRIES), size=n, p=_COUNTRY_WEIGHTS)
    device = rng.choice(len(DEVICES), size=n, p=(0.45, 0.3, 0.25))
    base_rate = rng.lognormal(np.log(config.base_sessions_per_day), 0.6, n) * _TIER_RATE[tier0]
    hazard = _TIER_HAZARD[tier0] * np.sqrt(config.base_sessions_per_day / base_rate)
    churn_day = signup_day + rng.exponential(1.0 / hazard)
    closed_day = churn_day + rng.uniform(7, 30, n)
    active_end = np.minimum(churn_day, n_days)
    span = np.maximum(active_end - signup_day, 0)

    plan_change = (rng.random(n) < 0.2) & (span > 1)
    plan_change_day = signup_day + rng.uniform(0.05, 0.95, n) * span
    tier1 = (tier0 + rng.integers(1, 3, n)) % 3
    country_change = (rng.random(n) < 0.02) & (span > 1)
    country_change_day = signup_day + rng.uniform(0.05, 0.95, n) * span
    country1 = (country0 + rng.integers(1, len(COUNTRIES), n)) % len(COUNTRIES)

    def ts(day_offsets: np.ndarray) -> np.ndarray:
        # millisecond precision, as an upstream JSON producer would write
        ms = np.round(day_offsets * 86_400_000).astype(np.int64).astype("timedelta64[ms]")
        return (start.to_datetime64() + ms).astype("datetime64[ns]")

    users = pd.DataFrame(
        {
            "user_id": user_id,
            "signup_ts": ts(signup_day),
            "plan_tier": np.array(PLAN_TIERS)[tier0],
            "country": np.array(COUNTRIES)[country0],
            "churn_ts": ts(churn_day),
        }
    )

    # -- users change log (after-images) --------------------------------------------------
    # injected leakage (off by default; its own random stream, so the rest is unchanged)
    downgrade = np.zeros(n, bool)
    downgrade_day = closed_day
    if config.backdated_downgrades is not None:
        leak = config.backdated_downgrades
        leak_rng = np.random.default_rng(config.seed + 3)
        downgrade_day = churn_day - leak_rng.uniform(
            leak.min_days_before_churn, leak.max_days_before_churn, n
        )
        downgrade = (closed_day < n_days) & (downgrade_day > signup_day)
    # (kind, which users, when it happened, when the upstream system wrote it)
    kinds = [
        ("signup", np.ones(n, bool), signup_day, signup_day),
        ("plan_change", plan_change, plan_change_day, plan_change_day),
        ("country_change", country_change, country_change_day, country_change_day),
        ("status_change", np.ones(n, bool), closed_day, closed_day),
        ("plan_change", downgrade, downgrade_day, closed_day),
    ]
    rows = []
    for kind, mask, day, known in kinds:
        keep = mask & (day < n_days) & (known < n_days)
        rows.append(
            pd.DataFrame(
                {
                    "user_idx": np.nonzero(keep)[0],
                    "day": day[keep],
                    "known": known[keep],
                    "kind": kind,
                }
            )
        )
    ch = pd.concat(rows, ignore_index=True).sort_values(["day", "user_idx"], kind="stable")
    u = ch["user_idx"].to_numpy()
    d = ch["day"].to_numpy()
    tier_at = np.where(plan_change[u] & (d >= plan_change_day[u]), tier1[u], tier0[u])
    tier_at = np.where(downgrade[u] & (d >= downgrade_day[u]), 0, tier_at)  # 0: free
    country_at = np.where(
        country_change[u] & (d >= country_change_day[u]), country1[u], country0[u]
    )
    changes = pd.DataFrame(
        {
            "change_id": _hex_ids("chg_", np.arange(len(ch)), salt=config.seed * 3 + 1),
            "user_id": user_id[u],
            "change_type": ch["kind"].to_numpy(),
            "changed_at": ts(d),
            "plan_tier": np.array(PLAN_TIERS)[tier_at],
            "country": np.array(COUNTRIES)[country_at],
            "status": np.where(d >= closed_day[u], "closed", "active"),
            "signup_at": ts(signup_day[u]),
            # when the record was written upstream (lands that day); not a landed field
            "known_at": ts(ch["known"].to_numpy()),
        }
    ).reset_index(drop=True)

    # -- daily sessions ----------------------------------------------------------------------
    day_idx = np.arange(n_days)
    weekday = np.array([(config.start_date + dt.timedelta(days=int(i))).weekday() for i in day_idx])
    active = (day_idx[None, :] >= np.floor(signup_day)[:, None]) & (
        day_idx[None, :] < churn_day[:, None]
    )
    to_churn = (churn_day[:, None] - day_idx[None, :]) / _DECAY_DAYS
    decay = np.clip(to_churn, 0.0, 1.0) ** 1.5
    rate = base_rate[:, None] * _WEEKDAY_FACTOR[weekday][None, :] * decay * active
    sessions = rng.poisson(rate)
    s_user, s_day = np.nonzero(sessions)
    reps = sessions[s_user, s_day]
    s_user, s_day = np.repeat(s_user, reps), np.repeat(s_day, reps)
    n_sessions = len(s_user)
    s_tier = np.where(
        plan_change[s_user] & (s_day >= plan_change_day[s_user]), tier1[s_user], tier0[s_user]
    )
    # time of day: an evening peak and a lunchtime peak; after signup on the signup day
    secs = np.where(
        rng.random(n_sessions) < 0.6,
        rng.normal(20 * 3600, 2.5 * 3600, n_sessions),
        rng.normal(12.5 * 3600, 3 * 3600, n_sessions),
    )
    secs = np.clip(secs, 0, 86_399)
    first_day = s_day == np.floor(signup_day[s_user])
    signup_secs = (signup_day[s_user] - np.floor(signup_day[s_user])) * 86_400
    secs = np.where(first_day, signup_secs + (86_400 - signup_secs) * secs / 86_400, secs)
    # ... and before the churn time on the churn day
    last_day = s_day == np.floor(churn_day[s_user])
    churn_secs = (churn_day[s_user] - np.floor(churn_day[s_user])) * 86_400
    lower = np.where(first_day, signup_secs, 0.0)
    secs = np.where(last_day, lower + (churn_secs - lower) * secs / 86_400, secs)
    session_start = s_day + secs / 86_400

    # -- events within sessions: login, page views, cart adds, maybe a purchase ----------------
    page_views = 1 + rng.poisson(2.5, n_sessions)
    carts = rng.binomial(page_views, 0.12)
    purchase_p = _TIER_PURCHASE[s_tier] * np.where(carts > 0, 2.0, 0.5)
    purchases = (rng.random(n_sessions) < purchase_p).astype(np.int64)
    per_session = 1 + page_views + carts + purchases
    ev_session = np.repeat(np.arange(n_sessions), per_session)
    offsets = np.cumsum(per_session) - per_session
    pos = np.arange(len(ev_session)) - offsets[ev_session]
    pv, ct = page_views[ev_session], carts[ev_session]
    kind = np.select([pos == 0, pos <= pv, pos <= pv + ct], [0, 1, 2], default=3)
    gaps = np.where(pos == 0, 0.0, rng.exponential(45.0, len(ev_session)))
    cum = np.cumsum(gaps)
    cum -= cum[offsets][ev_session]
    ev_time = session_start[ev_session] + cum / 86_400
    ev_user = s_user[ev_session]
    revenue = np.where(
        kind == 3,
        np.round(rng.lognormal(np.log(_TIER_REVENUE[s_tier[ev_session]]), 0.5), 2),
        np.nan,
    )
    in_horizon = ev_time < n_days  # a session that runs past the last midnight is not landed yet
    shift = config.behaviour_shift
    if shift is not None:  # injected drift: from the shift day, a share of sessions never happen
        shift_from = (shift.start - config.start_date).days
        shift_rng = np.random.default_rng(config.seed + 4)  # its own stream: the past is unchanged
        happens = (s_day < shift_from) | (shift_rng.random(n_sessions) < shift.session_rate)
        in_horizon &= happens[ev_session]
    seq = np.arange(len(ev_session))[in_horizon]
    events = pd.DataFrame(
        {
            "event_id": _hex_ids("evt_", seq, salt=config.seed * 7 + 3),
            "user_id": user_id[ev_user[in_horizon]],
            "event_type": pd.Categorical.from_codes(kind[in_horizon], EVENT_TYPES),
            "event_ts": ts(ev_time[in_horizon]),
            "session_id": _hex_ids("ses_", ev_session[in_horizon], salt=config.seed * 11 + 5),
            "revenue": revenue[in_horizon],
            "device": pd.Categorical.from_codes(device[ev_user[in_horizon]], DEVICES),
        }
    ).sort_values("event_ts", kind="stable", ignore_index=True)
    return SimulatedBusiness(users=users, changes=changes, events=events)


def _categories(
    rng: np.random.Generator, n: int, rates: dict[str, float], also: tuple[str, ...] = ()
) -> pd.Categorical:
    """One exclusive dirt category per record ('' = clean); ``also``: categories the caller
    sets later. A categorical: millions of records are compared by code, not by string."""
    names = ["", *rates]
    probs = [1 - sum(rates.values()), *rates.values()]
    if probs[0] < 0:
        raise ValueError(f"Dirt rates add up to more than 1: {rates}")
    return pd.Categorical.from_codes(rng.choice(len(names), size=n, p=probs), [*names, *also])


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _json_lines(frame: pd.DataFrame, quoted: tuple[str, ...]) -> pa.LargeStringArray:
    """One JSON object per row, each ending in a newline, built column-wise with Arrow compute.

    Every value this module writes is an id, a vocabulary word, a number or a timestamp, so
    no string needs escaping; timestamps become ISO-8601 with milliseconds and a ``Z``. Large
    strings (64-bit offsets): at 80,000 users the events' lines are 2.8 GB, past what one
    Arrow string array holds.
    """
    if not len(frame):
        return pa.array([], pa.large_string())
    parts: list = []
    closing = ""  # a quote the last column's value left for the next separator
    for i, name in enumerate(frame.columns):
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            text = _iso_timestamps(column.to_numpy())
        else:
            text = pa.array(column, from_pandas=True).cast(pa.large_string())
        key = closing + ("{" if i == 0 else ",") + f'"{name}":'
        closing = ""
        if name in quoted and text.null_count:
            text = pc.binary_join_element_wise(_large('"'), text, _large('"'), _large(""))
        elif name in quoted:  # no nulls: the quotes go into the separators on either side
            key, closing = key + '"', '"'
        if text.null_count:
            text = pc.fill_null(text, _large("null"))
        parts += [_large(key), text]
    parts.append(_large(closing + "}\n"))
    return pc.binary_join_element_wise(*parts, _large(""))


def _truncate(
    rng: np.random.Generator, lines: pa.LargeStringArray, which: np.ndarray
) -> pa.LargeStringArray:
    """``lines`` with those at ``which`` (a mask) cut off mid-record, as a crashed writer
    leaves them: never valid JSON (the newline stays)."""
    chosen = [line.removesuffix("\n") for line in lines.filter(pa.array(which)).to_pylist()]
    cut = [
        line[: max(1, int(len(line) * f))] + "\n"
        for line, f in zip(chosen, rng.uniform(0.2, 0.8, len(chosen)), strict=True)
    ]
    if not cut:
        return lines
    return pc.replace_with_mask(lines, pa.array(which), pa.array(cut, pa.large_string()))


@dataclass(frozen=True)
class LandedLines:
    """Records as they land: the i-th landed line is ``lines[line[i]]``, on day ``day[i]`` (a
    re-sent duplicate is one line landed twice, not a copy of it)."""

    day: np.ndarray  # datetime64, one per landed line
    lines: pa.LargeStringArray  # one per record, each ending in a newline
    line: np.ndarray  # index into ``lines``, one per landed line


def dirty_event_lines(
    config: SourceConfig, events: pd.DataFrame
) -> tuple[LandedLines, dict[str, int]]:
    """Event records as landed, and the dirt injected (by category)."""
    rng = np.random.default_rng(config.seed + 1)
    dirt = config.dirt
    n = len(events)
    rates = {
        "duplicate": dirt.duplicate,
        "late": dirt.late,
        "null_user_id": dirt.null_user_id,
        "unknown_user_id": dirt.unknown_user_id,
        "malformed": dirt.malformed,
        "future_timestamp": dirt.future_timestamp,
    }
    cat = _categories(rng, n, rates, also=("negative_revenue",))
    is_purchase = (events["event_type"] == "purchase").to_numpy()
    negative = is_purchase & (cat == "") & (rng.random(n) < dirt.negative_revenue)
    cat[negative] = "negative_revenue"

    out = events.copy()
    event_day = out["event_ts"].dt.normalize().to_numpy()
    landing = event_day.copy()
    late = cat == "late"
    lag = rng.integers(1, dirt.max_late_days + 1, n).astype("timedelta64[D]")
    last_day = np.datetime64(config.end_date, "ns")
    landing[late] = np.minimum(event_day[late] + lag[late], last_day)
    future = cat == "future_timestamp"
    shift_ms = np.round(rng.uniform(2, 400, future.sum()) * 86_400_000)
    out.loc[future, "event_ts"] += pd.to_timedelta(shift_ms, unit="ms")
    out.loc[negative, "revenue"] = -out.loc[negative, "revenue"]
    user = out["user_id"].astype("Int64")
    user[cat == "null_user_id"] = pd.NA
    unknown = cat == "unknown_user_id"
    user[unknown] = _UNKNOWN_USER_BASE + rng.integers(0, 1_000_000, unknown.sum())
    out["user_id"] = user
    lines = _json_lines(out, quoted=("event_id", "event_type", "event_ts", "session_id", "device"))
    lines = _truncate(rng, lines, cat == "malformed")

    # a re-sent copy lands the same day or the next (a retry after a timeout)
    dup = np.nonzero(cat == "duplicate")[0]
    dup_landing = np.minimum(
        landing[dup] + rng.integers(0, 2, len(dup)).astype("timedelta64[D]"), last_day
    )
    landed = LandedLines(
        np.concatenate([landing, dup_landing]), lines, np.concatenate([np.arange(n), dup])
    )
    counts = {k: int((cat == k).sum()) for k in [*rates, "negative_revenue"]}
    # late events of the last days cannot land after the calendar ends: they land on time
    counts["late"] = int((landing > event_day).sum())
    return landed, counts


def dirty_change_lines(
    config: SourceConfig, changes: pd.DataFrame
) -> tuple[LandedLines, dict[str, int]]:
    """Users change-log records as landed, and the dirt injected (by category)."""
    rng = np.random.default_rng(config.seed + 2)
    rates = config.change_dirt.model_dump()
    cat = _categories(rng, len(changes), rates)
    out = changes.drop(columns="known_at")
    # a record lands the day it is written; history from before the calendar arrives in the
    # first file (the initial load)
    landing = np.maximum(
        changes["known_at"].dt.normalize().to_numpy(), np.datetime64(config.start_date, "ns")
    )
    user = out["user_id"].astype("Int64")
    user[cat == "null_user_id"] = pd.NA
    out["user_id"] = user
    lines = _json_lines(
        out,
        quoted=(
            "change_id",
            "change_type",
            "changed_at",
            "plan_tier",
            "country",
            "status",
            "signup_at",
        ),
    )
    lines = _truncate(rng, lines, cat == "malformed")
    dup = np.nonzero(cat == "duplicate")[0]
    landed = LandedLines(
        np.concatenate([landing, landing[dup]]),
        lines,
        np.concatenate([np.arange(len(changes)), dup]),
    )
    return landed, {k: int((cat == k).sum()) for k in rates}


def landing_file(root: str | Path, kind: str, day: dt.date) -> Path:
    name = EVENTS_FILE if kind == EVENTS_DIR else CHANGES_FILE
    return Path(root) / kind / f"date={day.isoformat()}" / name


def _write_by_day(root: Path, kind: str, landed: LandedLines, dates: list[dt.date]) -> int:
    """Each day's lines, in their order, into that day's file; returns how many were written.
    A day's file is the data buffer of its lines taken together. One day at a time: all days'
    lines are hundreds of MB, and taking them in one copy cost more (fresh memory's page
    faults) than the copying itself."""
    days = landed.day.astype("datetime64[D]")
    order = np.argsort(days, kind="stable")
    days, line = days[order], landed.line[order]
    written = 0
    for day in dates:
        lo = np.searchsorted(days, np.datetime64(day, "D"), side="left")
        hi = np.searchsorted(days, np.datetime64(day, "D"), side="right")
        body: bytes | memoryview = b""
        if hi > lo:
            text = landed.lines.take(line[lo:hi])
            _, offsets, data = text.buffers()
            first, last = np.frombuffer(offsets, np.int64)[[text.offset, text.offset + len(text)]]
            body = memoryview(data)[first:last]
        write_atomically(landing_file(root, kind, day), body)
        written += int(hi - lo)
    return written


def land(config: SourceConfig, root: str | Path, through: dt.date | None = None) -> LandingSummary:
    """Write the landing files for every day up to ``through`` (default: the whole calendar).

    Idempotent: the same config writes the same bytes, so landing again changes nothing, and
    landing a prefix of the calendar and later the rest gives the same files as landing all.
    """
    dates = [d for d in config.dates if through is None or d <= through]
    business = simulate(config)
    events, ev_counts = dirty_event_lines(config, business.events)
    changes, ch_counts = dirty_change_lines(config, business.changes)
    root = Path(root)
    # only the files of ``dates`` are written: lines landing later are not there yet
    n_ev = _write_by_day(root, EVENTS_DIR, events, dates)
    n_ch = _write_by_day(root, USERS_DIR, changes, dates)
    # Arrow's allocator keeps what it freed for reuse (about 1 GB at the demo scale): hand it
    # back, the rest of the run needs it more
    del business, events, changes
    pa.default_memory_pool().release_unused()
    return LandingSummary(
        dates=dates,
        event_lines=n_ev,
        change_lines=n_ch,
        injected_events=ev_counts if through is None else {},
        injected_changes=ch_counts if through is None else {},
    )
