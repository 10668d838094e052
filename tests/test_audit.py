"""The audit log is a hash chain: any edit, deletion or reordering is caught and the bad record named."""

from __future__ import annotations

import json

import pytest

from pipelines.commands import cli
from pipelines.incidents import audit
from pipelines.incidents.audit import GENESIS_HASH, AuditLog, record_hash, verify
from pipelines.infra.config import load_config


@pytest.fixture
def log_with_five(tmp_path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for index in range(5):
        log.append("alert", {"alert_id": f"a{index}", "note": "héllo"})
    return log


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text(encoding="utf-8").splitlines()


def test_records_chain_and_head_hash(tmp_path):
    log = AuditLog(tmp_path / "sub" / "audit.jsonl")
    assert log.head_hash() == GENESIS_HASH
    first = log.append("alert", {"alert_id": "x"})
    second = log.append("ack", {"alert_id": "x", "by": "alice"})
    third = log.append("report", {"sha256": "abc"})

    assert (first["seq"], second["seq"], third["seq"]) == (0, 1, 2)
    assert first["prev_hash"] == GENESIS_HASH
    assert second["prev_hash"] == first["hash"] and third["prev_hash"] == second["hash"]
    assert third["hash"] == record_hash(third) and len(third["hash"]) == 64
    assert log.head_hash() == third["hash"]
    assert [json.loads(line) for line in lines(log)] == [first, second, third]
    ok, index, message = verify(log.path)
    assert (ok, index) == (True, None) and "3 record(s), chain intact" in message
    assert verify(log.path, expected_head=third["hash"])[0]


def test_an_edited_record_is_named(log_with_five):
    content = lines(log_with_five)
    content[2] = content[2].replace('"a2"', '"a9"')
    log_with_five.path.write_text("\n".join(content) + "\n", encoding="utf-8")

    ok, index, message = verify(log_with_five.path)

    assert (ok, index) == (False, 2)
    assert "record 2 (line 3) was modified" in message


def test_a_recomputed_hash_still_breaks_the_chain(log_with_five):
    content = [json.loads(line) for line in lines(log_with_five)]
    content[1]["payload"]["alert_id"] = "forged"
    content[1]["hash"] = record_hash(content[1])  # a forger who rehashes the edited record
    log_with_five.path.write_text("".join(json.dumps(record) + "\n" for record in content))

    assert verify(log_with_five.path)[:2] == (False, 2)


def test_a_deleted_record_is_named(log_with_five):
    content = lines(log_with_five)
    del content[1]
    log_with_five.path.write_text("\n".join(content) + "\n", encoding="utf-8")

    ok, index, message = verify(log_with_five.path)

    assert (ok, index) == (False, 1)
    assert "deleted or reordered" in message


def test_reordered_records_are_named(log_with_five):
    content = lines(log_with_five)
    content[3], content[4] = content[4], content[3]
    log_with_five.path.write_text("\n".join(content) + "\n", encoding="utf-8")

    assert verify(log_with_five.path)[:2] == (False, 3)


def test_a_cut_off_tail_is_caught_against_a_known_head(log_with_five):
    head = log_with_five.head_hash()
    log_with_five.path.write_text("\n".join(lines(log_with_five)[:3]) + "\n", encoding="utf-8")

    assert verify(log_with_five.path)[0]  # a shorter chain is still a chain...
    ok, index, message = verify(log_with_five.path, expected_head=head)
    assert (ok, index) == (False, 3)  # ...but not the one a report quoted
    assert "cut off the end" in message


def test_a_torn_last_line_is_reported_and_the_next_append_removes_it(log_with_five, capsys):
    with log_with_five.path.open("a", encoding="utf-8") as handle:
        handle.write('{"seq": 5, "ts": ')

    ok, index, message = verify(log_with_five.path)

    assert (ok, index) == (False, 5)
    assert "not valid JSON" in message
    # A write cut short by a crash was never acknowledged: the next append removes it and says so.
    assert log_with_five.append("alert", {})["seq"] == 5
    assert "removed a torn last line" in capsys.readouterr().err
    assert verify(log_with_five.path)[0]


def test_a_corrupt_complete_last_line_still_stops_appends(log_with_five):
    with log_with_five.path.open("a", encoding="utf-8") as handle:
        handle.write('{"seq": 5, "ts": \n')  # complete (newline-terminated): not a torn write

    with pytest.raises(ValueError, match="last record is unreadable"):
        log_with_five.append("alert", {})


def test_a_write_that_fails_part_way_leaves_no_half_batch(log_with_five, monkeypatch):
    before = log_with_five.path.read_bytes()
    real_fsync = audit.os.fsync

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audit.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        log_with_five.append_many([("alert", {"n": n}) for n in range(3)])
    monkeypatch.setattr(audit.os, "fsync", real_fsync)

    assert log_with_five.path.read_bytes() == before
    assert log_with_five.append("alert", {})["seq"] == 5


def test_module_functions_use_the_configured_log(tmp_path):
    config_file = tmp_path / "usagewatch.yml"
    config_file.write_text("state:\n  audit_log: logs/audit.jsonl\n")
    config = load_config(str(config_file))
    record = audit.append("report", {"title": "weekly"}, config)

    assert (tmp_path / "logs" / "audit.jsonl").exists()
    assert audit.head_hash(config) == record["hash"]


def test_verify_command_exit_codes(log_with_five, capsys):
    assert cli.main(["audit", "verify", "--log", str(log_with_five.path)]) == 0
    assert "5 record(s), chain intact" in capsys.readouterr().out

    content = lines(log_with_five)
    content[4] = content[4].replace('"alert"', '"ack"')
    log_with_five.path.write_text("\n".join(content) + "\n", encoding="utf-8")

    assert cli.main(["audit", "verify", "--log", str(log_with_five.path)]) == 1
    assert "record 4 (line 5) was modified" in capsys.readouterr().err
