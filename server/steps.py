"""Step scalars: what heartbeats carry, stored densely and rolled up past a horizon, and read back
thinned for charts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from server.models import StepScalar

MAX_SCALARS_PER_HEARTBEAT = 2000


def record(db: Session, run_id: int, scalars: list[dict[str, Any]], *, horizon: int, bucket: int) -> None:
    for item in scalars[:MAX_SCALARS_PER_HEARTBEAT]:
        values = {k: v for k, v in item.items() if k != "step"}
        db.add(StepScalar(run_id=run_id, step=int(item["step"]), values=values))
    if _crosses_chunk(scalars, max(1, horizon // 4)):  # steps are dense: count only now and then
        db.flush()
        compact_steps(db, run_id, horizon, bucket)


def _crosses_chunk(scalars: list[dict[str, Any]], chunk: int) -> bool:
    if not scalars:
        return False
    steps = [int(item["step"]) for item in scalars]
    return min(steps) // chunk != max(steps) // chunk or max(steps) % chunk == chunk - 1


def compact_steps(db: Session, run_id: int, horizon: int, bucket: int) -> int:
    """Keep at most about `horizon` raw step points per run: older ones are averaged into one
    rollup row per `bucket` steps, so storage per run stays bounded however long it trains.
    Works in chunks (a quarter horizon at least) so the cost is paid rarely."""
    raw = db.scalar(select(func.count()).select_from(StepScalar).where(
        StepScalar.run_id == run_id, StepScalar.bucket == 1)) or 0
    excess = raw - horizon
    if excess < max(1, horizon // 4):
        return 0
    oldest = list(db.scalars(select(StepScalar).where(StepScalar.run_id == run_id, StepScalar.bucket == 1)
                             .order_by(StepScalar.step).limit(excess)))
    last_start = (oldest[-1].step // bucket) * bucket
    oldest = [row for row in oldest if row.step < last_start] or oldest  # keep a partial bucket raw
    groups: dict[int, list[StepScalar]] = {}
    for row in oldest:
        groups.setdefault((row.step // bucket) * bucket, []).append(row)
    for start, rows in groups.items():
        db.add(StepScalar(run_id=run_id, step=start, bucket=bucket, values=_mean_values(rows)))
    db.execute(delete(StepScalar).where(StepScalar.id.in_([row.id for row in oldest])))
    return len(oldest)


def _mean_values(rows: list[StepScalar]) -> dict[str, Any]:
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in rows:
        for key, value in row.values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
    return {**{k: sums[k] / counts[k] for k in sums}, "points": len(rows)}


def thinned(db: Session, run_id: int, *, after: int, max_points: int) -> list[dict[str, Any]]:
    """At most `max_points` points after step `after`, evenly spaced in steps, the oldest and the
    newest included: the step range is cut into `max_points - 1` equal buckets, each keeps its
    oldest point, and the newest point is added. Sparse stretches (rolled-up history) keep every
    point they have. The stride comes from the range's ends (two index lookups), not from
    counting rows; the points are picked in SQL so only those are decoded."""
    where = (StepScalar.run_id == run_id, StepScalar.step > after)
    low, high = db.execute(select(func.min(StepScalar.step), func.max(StepScalar.step)).where(*where)).one()
    if low is None:
        return []
    buckets, span = max(1, max_points - 1), high - low + 1
    if span <= buckets:
        bucket = StepScalar.step
    elif span < 2**62 // buckets:  # bucket i holds steps [low + i·span/buckets, low + (i+1)·span/buckets)
        bucket = (StepScalar.step - low) * buckets // span
    else:  # steps too far apart for that product in 64 bits: a whole stride (fewer, wider buckets)
        bucket = (StepScalar.step - low) // -(-span // buckets)
    ranked = select(
        StepScalar.id,
        func.row_number().over(partition_by=bucket,
                               order_by=(StepScalar.step, StepScalar.id)).label("first"),
        func.row_number().over(order_by=(StepScalar.step.desc(), StepScalar.id.desc())).label("last"),
    ).where(*where).subquery()
    keep = ranked.c["last"] == 1 if max_points == 1 else or_(ranked.c["first"] == 1, ranked.c["last"] == 1)
    picked = (select(StepScalar.step, StepScalar.values).join(ranked, ranked.c.id == StepScalar.id)
              .where(keep).order_by(StepScalar.step, StepScalar.id))
    return [{"step": s, **v} for s, v in db.execute(picked)]
