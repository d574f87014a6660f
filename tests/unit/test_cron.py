"""Cron expressions fire when cron would, through APScheduler's real triggers.

The oracle is the calendar (``datetime.weekday()``, known dates), not our parser: APScheduler 3
reads day-of-week 0 as Monday and ANDs day of month with day of week, where cron reads 0 as
Sunday and ORs them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from offboard_audit.core.cron import parse_cron
from offboard_audit.daemon.scheduler import cron_trigger

UTC_ZONE = ZoneInfo("UTC")
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a Saturday
MONDAY, SUNDAY = 0, 6  # datetime.weekday()


def fires(expr: str, start: datetime = SATURDAY, count: int = 10) -> list[datetime]:
    trigger = cron_trigger(expr, UTC_ZONE)
    out: list[datetime] = []
    previous, now = None, start
    for _ in range(count):
        nxt = trigger.get_next_fire_time(previous, now)
        out.append(nxt)
        previous, now = nxt, nxt + timedelta(microseconds=1)
    return out


def test_the_oracle_dates_are_what_the_tests_take_them_for() -> None:
    assert SATURDAY.weekday() == 5
    assert datetime(2026, 11, 29).weekday() == SUNDAY


@pytest.mark.parametrize("expr", ["0 3 * * 0", "0 3 * * 7", "0 3 * * sun", "0 3 * * SUN"])
def test_day_of_week_0_and_7_are_sunday_as_in_cron(expr: str) -> None:
    first = fires(expr, count=1)[0]
    assert first == datetime(2026, 11, 29, 3, 0, tzinfo=UTC_ZONE)
    assert {d.weekday() for d in fires(expr)} == {SUNDAY}


def test_apscheduler_alone_would_run_a_sunday_job_on_monday() -> None:
    # Why the expression is not handed to from_crontab: this is the behaviour being corrected.
    trigger = CronTrigger.from_crontab("0 3 * * 0", timezone=UTC_ZONE)
    assert trigger.get_next_fire_time(None, SATURDAY).weekday() == MONDAY


@pytest.mark.parametrize("expr", ["30 2 * * 1-5", "30 2 * * mon-fri", "30 2 * * 1,2,3,4,5"])
def test_weekdays_in_cron_are_monday_to_friday(expr: str) -> None:
    days = fires(expr, count=15)
    assert {d.weekday() for d in days} == {0, 1, 2, 3, 4}
    assert all((d.hour, d.minute) == (2, 30) for d in days)


def test_a_day_of_week_step_counts_from_sunday() -> None:
    # */2 over 0-7: Sunday, Tuesday, Thursday, Saturday.
    assert {d.weekday() for d in fires("0 0 * * */2", count=12)} == {6, 1, 3, 5}


def test_a_name_range_from_sunday_runs_sunday_to_wednesday() -> None:
    assert {d.weekday() for d in fires("0 0 * * sun-wed", count=12)} == {6, 0, 1, 2}


def test_both_days_restricted_fire_on_either_as_cron_does() -> None:
    # The 1st of the month or any Monday: the next ones after Saturday 28 November 2026.
    got = [d.date().isoformat() for d in fires("0 3 1 * mon", count=4)]
    assert got == ["2026-11-30", "2026-12-01", "2026-12-07", "2026-12-14"]


def test_a_star_step_in_one_day_field_keeps_the_other_alone() -> None:
    # Cron's rule: a field that starts with '*' does not count as restricted, so both must match.
    days = fires("0 0 */2 * mon", count=6)
    assert all(d.weekday() == MONDAY and d.day % 2 == 1 for d in days)


def test_a_range_of_one_day_is_that_day() -> None:
    assert {d.weekday() for d in fires("0 0 * * 5-5", count=3)} == {4}  # Friday


def test_a_start_with_a_step_runs_to_the_end_of_the_field() -> None:
    # '5/20' is 5-59/20, as cron implementations that take it read it.
    assert [d.minute for d in fires("5/20 * * * *", count=4)] == [5, 25, 45, 5]
    # Day of week too, where the days are spelled out: 1/2 is 1, 3, 5, 7 (7 is Sunday).
    assert {d.weekday() for d in fires("0 0 * * 1/2", count=8)} == {0, 2, 4, 6}


def test_six_fields_put_seconds_first() -> None:
    got = fires("*/20 * * * * *", start=SATURDAY + timedelta(seconds=1), count=4)
    assert [d.second for d in got] == [20, 40, 0, 20]
    assert got[1] - got[0] == timedelta(seconds=20)


def test_five_fields_fire_on_the_minute() -> None:
    assert [d.second for d in fires("*/15 * * * *", count=3)] == [0, 0, 0]


def test_an_expression_without_a_day_of_week_builds_the_same_trigger_as_before() -> None:
    # Stored jobs are rescheduled only when their trigger's text changes: expressions the old
    # reading got right keep their stored next run time.
    for expr in ("*/15 * * * *", "0 3 * * *", "0 0 1 jan-mar *", "5,35 8-18/2 * * *"):
        assert str(cron_trigger(expr, UTC_ZONE)) == str(CronTrigger.from_crontab(expr, timezone=UTC_ZONE))


def test_the_configured_time_zone_is_the_zone_the_hours_are_read_in() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    nxt = cron_trigger("0 9 * * *", tokyo).get_next_fire_time(None, SATURDAY)
    assert nxt.astimezone(tokyo).hour == 9
    assert nxt.astimezone(UTC) == datetime(2026, 11, 29, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 3 * *", "must have 5 fields"),
        ("0 0 3 * * * *", "got 7"),
        ("0 3 * * 8", "day of week: 8 is out of range 0-7"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 3 0 * *", "day of month: 0 is out of range 1-31"),
        ("0 3 * 13 *", "month: 13 is out of range 1-12"),
        ("61 * * * * *", "second: 61 is out of range 0-59"),
        ("0 3 * * fri-mon", "day of week: the range 'fri-mon' runs backwards"),
        ("*/0 * * * *", "minute: the step in '*/0' must be at least 1"),
        ("0 3 * * funday", "day of week: 'funday' is not a number from 0 to 7 (or a name: sun,"),
        ("0 3 * feb-foo *", "month: 'foo' is not a number from 1 to 12 (or a name: jan,"),
        ("0 3 L * *", "day of month: 'l' is not a number from 1 to 31"),
        ("0 3 * * foo-fri", "day of week: 'foo' is not a number from 0 to 7"),
        ("0 3 * * 1#2", "day of week: '1#2' is not a cron value, range, list or step"),
        ("every 5 minutes", "must have 5 fields"),
    ],
)
def test_an_expression_cron_would_refuse_is_refused_naming_the_field(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron(expr)
    assert message in str(caught.value)


def _noop(kind: str) -> None:
    """What the test scheduler's job calls (never: the scheduler stays paused)."""


def test_a_job_stored_with_apschedulers_reading_of_the_weekday_is_rescheduled_as_cron_reads_it() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from offboard_audit.daemon.scheduler import ensure_job

    sched = BackgroundScheduler(timezone=UTC_ZONE)
    sched.start(paused=True)
    try:
        # As a daemon of the earlier version stored it: from_crontab's Tuesday-to-Saturday.
        sched.add_job(
            _noop, CronTrigger.from_crontab("0 3 * * 1-5", timezone=UTC_ZONE), id="audit", args=["audit"]
        )
        ensure_job(sched, "audit", "audit", "0 3 * * 1-5", UTC_ZONE, _noop)
        job = sched.get_job("audit")
        assert "day_of_week='mon,tue,wed,thu,fri'" in str(job.trigger)
        assert job.trigger.get_next_fire_time(None, SATURDAY).weekday() == MONDAY  # not Tuesday
        assert job.next_run_time.weekday() in {0, 1, 2, 3, 4}  # rescheduled from now, a weekday

        # A stored job whose trigger reads the same is kept with its stored next run time.
        kept_at = job.next_run_time + timedelta(days=7)
        job.modify(next_run_time=kept_at)
        ensure_job(sched, "audit", "audit", "0 3 * * 1-5", UTC_ZONE, _noop)
        assert sched.get_job("audit").next_run_time == kept_at
    finally:
        sched.shutdown(wait=False)


def test_a_field_without_names_says_only_which_numbers_it_takes() -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron("x * * * *")
    assert str(caught.value) == "minute: 'x' is not a number from 0 to 59"


def test_the_next_fire_times_are_counted_from_now_and_an_impossible_date_has_none() -> None:
    from offboard_audit.daemon.scheduler import next_fire_times

    def times(expr: str, count: int = 3) -> list[datetime]:
        return next_fire_times(cron_trigger(expr, UTC_ZONE), SATURDAY, count)

    got = times("0 3 * * 0", count=2)
    assert got == [datetime(2026, 11, 29, 3, 0, tzinfo=UTC), datetime(2026, 12, 6, 3, 0, tzinfo=UTC)]
    assert times("0 0 29 2 *", count=1) == [datetime(2028, 2, 29, tzinfo=UTC)]
    assert times("0 0 31 2 *") == []  # 31 February


def test_the_daemon_refuses_a_schedule_that_never_fires_instead_of_storing_it_paused() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from offboard_audit.core.errors import ConfigError
    from offboard_audit.daemon.scheduler import ensure_job

    sched = BackgroundScheduler(timezone=UTC_ZONE)
    sched.start(paused=True)
    try:
        with pytest.raises(ConfigError) as caught:
            ensure_job(sched, "audit", "audit", "0 0 31 2 *", UTC_ZONE, _noop)
        assert caught.value.key == "schedule.audit" and "never fires" in str(caught.value)
        assert sched.get_job("audit") is None
    finally:
        sched.shutdown(wait=False)
