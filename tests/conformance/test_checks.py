"""The contract rules as kube-apiserver applies them, the check vocabulary, and the report.

Pure functions and data: no plugin, no socket. docs/conformance.md's table of checks is
compared with :func:`~bao_kms.conformance.checks.markdown_table`, so the docs cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bao_kms.conformance.checks import (
    Check,
    annotation_key_problem,
    encrypt_problems,
    key_id_problem,
    markdown_table,
    status_problems,
)
from bao_kms.conformance.report import (
    CheckResult,
    ConformanceReport,
    Outcome,
    Recorder,
    latency_summary,
)
from bao_kms.conformance.tamper import same_shape_key_id

DOCS = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


@pytest.mark.parametrize(
    "key",
    [
        "provider.kms.openbao.org",
        "a.b",
        "version.encryption.k8s.io",
        "x-1.example",
        "a" * 63 + ".io",
    ],
)
def test_valid_annotation_keys(key):
    assert annotation_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("Provider.kms.openbao.org", "lowercase RFC 1123"),
        ("provider", "one label"),
        ("kms.openbao.org/provider", "lowercase RFC 1123"),
        ("-a.example", "lowercase RFC 1123"),
        ("a..example", "lowercase RFC 1123"),
        ("a_b.example", "lowercase RFC 1123"),
        ("a" * 64 + ".io", "lowercase RFC 1123"),  # a label over 63 characters
        ("a." * 127 + "io", "limit 253"),
        ("", "lowercase RFC 1123"),
    ],
)
def test_invalid_annotation_keys(key, words):
    problem = annotation_key_problem(key)
    assert problem is not None and words in problem


def test_key_id_limits_count_bytes():
    assert key_id_problem("") == "key_id is empty"
    assert key_id_problem("k" * 1024) is None
    assert "1025 bytes" in (key_id_problem("k" * 1025) or "")
    assert "1026 bytes" in (key_id_problem("é" * 513) or "")  # 2 bytes each in UTF-8


def test_status_version_is_pinned_and_key_id_judged_only_when_healthy():
    assert status_problems("v2", "ok", "k", None) == []
    assert status_problems("v2", "ok", "k", "v2") == []
    assert [c for c, _ in status_problems("v2beta1", "ok", "k", None)] == [Check.STATUS_VERSION]
    assert [c for c, _ in status_problems("v2", "ok", "", None)] == [Check.STATUS_KEY_ID]
    assert status_problems("v2", "openbao_sealed", "", None) == []


def test_encrypt_limits_at_and_past_each_bound():
    ok_annotations = {"a.b": b"x" * (32 * 1024 - 3)}  # exactly 32 KiB with the key
    assert encrypt_problems(b"c" * 1024, "k", ok_annotations, "k") == []
    checks = [
        check
        for check, _ in encrypt_problems(b"c" * 1025, "k2", {"A": b"", "a.b": b"x" * 32766}, "k")
    ]
    assert checks == [
        Check.ENCRYPT_KEY_ID,
        Check.ENCRYPT_CIPHERTEXT_SIZE,
        Check.ENCRYPT_ANNOTATION_KEYS,
        Check.ENCRYPT_ANNOTATION_SIZE,
    ]
    assert [c for c, _ in encrypt_problems(b"", "k", {}, "k")] == [Check.ENCRYPT_CIPHERTEXT_SIZE]


def test_problems_never_carry_a_ciphertext_or_annotation_value():
    secret = b"SECRET-VALUE-Zorblaxian"
    problems = encrypt_problems(secret * 100, "k2", {"Bad": secret * 2000}, "k")
    assert not any("Zorblaxian" in text for _, text in problems)


@pytest.mark.parametrize(
    "key_id",
    ["obk2." + "Ab0_-" * 8 + "xyz", "FK1-" + "0123456789abcdef" * 2, "1", "a", "Z"],
)
def test_same_shape_key_id_differs_in_one_character_of_the_same_kind(key_id):
    other = same_shape_key_id(key_id)
    assert other != key_id and len(other) == len(key_id)
    (index,) = [i for i, (a, b) in enumerate(zip(key_id, other, strict=True)) if a != b]
    assert key_id[index].isdigit() == other[index].isdigit()
    assert key_id[index].islower() == other[index].islower()


def test_every_check_has_a_rule_and_a_consequence_and_only_latency_is_soft():
    assert len({str(check) for check in Check}) == len(Check)
    for check in Check:
        assert check.rule and check.consequence
        assert check.soft == check.value.endswith("-latency")


def test_docs_table_is_the_vocabulary():
    section = DOCS.read_text().split("\n## Checks\n", 1)[1].split("\n## ", 1)[0]
    assert markdown_table() in section
    documented = [
        line.split("|")[1].strip().strip("`")
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    assert documented == [str(check) for check in Check]


def test_recorder_outcomes():
    recorder = Recorder()
    recorder.passed(Check.STATUS_REACHABLE, "fine")
    recorder.failed(Check.ENCRYPT_KEY_ID, "differs")
    recorder.failed(Check.ENCRYPT_KEY_ID, "differs")
    recorder.passed(Check.ENCRYPT_KEY_ID)  # a failure is never outvoted
    recorder.passed(Check.COLD_START_BURST)
    recorder.blocked(Check.COLD_START_BURST, Check.DECRYPT_ROUND_TRIP)
    recorder.skipped(Check.ROTATION, "no rotation observed")
    recorder.missed(Check.DECRYPT_LATENCY, "p99 12 ms")
    results = {r.check: r for r in recorder.results()}
    assert results[Check.STATUS_REACHABLE] == CheckResult(
        Check.STATUS_REACHABLE, Outcome.PASS, "fine"
    )
    assert results[Check.ENCRYPT_KEY_ID].outcome is Outcome.FAIL
    assert results[Check.ENCRYPT_KEY_ID].detail == "differs (x2)"
    assert results[Check.COLD_START_BURST].detail == "not judged: blocked by decrypt-round-trip"
    assert results[Check.ROTATION].outcome is Outcome.SKIP
    assert results[Check.DECRYPT_LATENCY].outcome is Outcome.WARN
    assert results[Check.ENCRYPT_LATENCY].detail == "not exercised"
    strict = {r.check: r for r in recorder.results(strict_latency=True)}
    assert strict[Check.DECRYPT_LATENCY].outcome is Outcome.FAIL


def test_report_text_and_json():
    results = [
        CheckResult(Check.STATUS_REACHABLE, Outcome.PASS, "fine"),
        CheckResult(Check.ENCRYPT_KEY_ID, Outcome.FAIL, "differs"),
        CheckResult(Check.ROTATION, Outcome.SKIP, "no rotation observed"),
        CheckResult(Check.DECRYPT_LATENCY, Outcome.WARN, "p99 12 ms"),
    ]
    report = ConformanceReport(results, {"objects_written": 3})
    assert report.text().splitlines() == [
        "PASS status-reachable: fine",
        "FAIL encrypt-key-id: differs",
        "SKIP rotation: no rotation observed",
        "WARN decrypt-latency: p99 12 ms",
        "1 passed, 1 failed, 1 skipped, 1 warned",
    ]
    data = json.loads(json.dumps(report.as_dict()))
    assert data["ok"] is False and data["objects_written"] == 3
    assert data["summary"] == {"passed": 1, "failed": 1, "skipped": 1, "warned": 1}
    assert data["checks"][1] == {
        "name": "encrypt-key-id",
        "outcome": "FAIL",
        "detail": "differs",
        "rule": Check.ENCRYPT_KEY_ID.rule,
    }


def test_latency_summary_is_nearest_rank():
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert latency_summary(samples) == {"count": 100, "p50": 50.5, "p99": 99.0, "max": 100.0}
    assert latency_summary([]) == {"count": 0}
