"""The worker protocol's types: what each side may leave out, and what goes on the wire."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from core.lr import LrOverride
from core.protocol import Directive, EpochMessage, EpochReport, Heartbeat


def test_a_directive_names_its_action_and_stage():
    for missing in ({"stage_index": 0}, {"action": "continue"}):
        with pytest.raises(ValidationError) as error:
            Directive.model_validate(missing)
        assert {e["loc"][0] for e in error.value.errors()} <= {"action", "stage_index"}
    with pytest.raises(ValidationError):
        Directive.model_validate({"action": "go on", "stage_index": 0})
    parsed = Directive.model_validate({"action": "pause", "stage_index": 2, "lr": {"auto_scale": 0.5}, "new": 1})
    assert parsed.lr == LrOverride(auto_scale=0.5)  # an answer's unknown key is ignored


def test_messages_refuse_unknown_keys_and_the_old_one_based_stage():
    with pytest.raises(ValidationError) as error:
        EpochReport.model_validate({"epoch": 1, "stage": 1, "step": 2, "metrics": {}})
    assert {e["loc"][0] for e in error.value.errors()} == {"stage", "stage_index"}


def test_non_finite_numbers_travel_as_null():
    report = EpochReport(epoch=1, stage_index=0, step=2, metrics={"val_cer": math.nan, "train_loss": 0.5},
                         lr={"effective": math.inf})
    wire = json.loads(EpochMessage(**report.model_dump(), lease_token="t" * 16).model_dump_json())
    assert wire["metrics"] == {"val_cer": None, "train_loss": 0.5} and wire["lr"] == {"effective": None}
    beat = Heartbeat(lease_token="t" * 16, epoch=0, step=1, scalars=[{"step": 1, "loss": math.nan}])
    assert json.loads(beat.model_dump_json())["scalars"] == [{"step": 1, "loss": None}]
    with pytest.raises(ValidationError, match="needs an integer 'step'"):
        Heartbeat(lease_token="t" * 16, epoch=0, step=1, scalars=[{"loss": 1.0}])


def test_a_log_line_keeps_what_a_program_printed_but_no_nul():
    from core.protocol import ClaimRequest, LogLine

    line = LogLine(ts="2026-11-30T00:00:00Z", level="INFO", source="stdout", message="a\x00b")
    assert line.message == "a\ufffdb"  # PostgreSQL text cannot hold NUL; the batch is not refused for it
    assert ClaimRequest().nodes == 1 and ClaimRequest().processes_per_node is None
    with pytest.raises(ValidationError):
        ClaimRequest(processes_per_node=0)
