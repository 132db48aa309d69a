"""Recommendation rules as data: the engine is pure."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from booking_consumers.recommend_rules import Facts, default_rules, evaluate, load_rules

TODAY = date(2025, 6, 1)
RECENT = datetime(2025, 5, 1, tzinfo=UTC)


def by_package(recs):
    return {r.package_code: r.rule_id for r in recs}


def test_packaged_rules_load_and_name_demo_packages():
    rules = default_rules()
    assert {r.package for r in rules.rules} == {"CARDIO", "DIABETES", "THYROID", "BASIC-CHECK"}
    assert all(r.reason for r in rules.rules)


def test_age_and_sex():
    assert by_package(
        evaluate(default_rules(), Facts(today=TODAY, age=52, sex="male", last_test_at=RECENT))
    ) == {
        "CARDIO": "cardio-risk-40",
        "DIABETES": "diabetes-screen-45",
    }
    assert by_package(
        evaluate(default_rules(), Facts(today=TODAY, age=36, sex="female", last_test_at=RECENT))
    ) == {"THYROID": "thyroid-women-35"}
    # No lab result on record counts as "more than a year since the last test".
    assert by_package(evaluate(default_rules(), Facts(today=TODAY, age=30, sex="male"))) == {
        "BASIC-CHECK": "annual-check-up"
    }


def test_recent_abnormal_result_gives_its_reason():
    facts = Facts(today=TODAY, age=30, sex="male", abnormal_results=(("LDL", RECENT),), last_test_at=RECENT)
    (rec,) = evaluate(default_rules(), facts)
    assert (rec.package_code, rec.rule_id) == ("CARDIO", "lipid-follow-up") and "cholesterol" in rec.reason
    old = Facts(
        today=TODAY, age=30, sex="male", abnormal_results=(("LDL", datetime(2024, 1, 1, tzinfo=UTC)),)
    )
    assert "CARDIO" not in by_package(evaluate(default_rules(), old))


def test_booked_package_and_time_since_last_test():
    facts = Facts(today=TODAY, age=55, sex="male", booked_package="BASIC-CHECK")
    recs = by_package(evaluate(default_rules(), facts))
    assert recs["CARDIO"] == "basic-upgrade-50" and "BASIC-CHECK" not in recs
    stale = Facts(today=TODAY, age=30, sex="male", last_test_at=datetime(2023, 1, 1, tzinfo=UTC))
    assert by_package(evaluate(default_rules(), stale)) == {"BASIC-CHECK": "annual-check-up"}


def test_unavailable_packages_are_skipped():
    recs = evaluate(default_rules(), Facts(today=TODAY, age=52, sex="male"), frozenset({"DIABETES"}))
    assert by_package(recs) == {"DIABETES": "diabetes-screen-45"}


def test_rules_are_validated():
    with pytest.raises(ValidationError):
        load_rules("rules:\n  - id: x\n    package: P\n    reason: r\n    when: {min_agee: 3}\n")
