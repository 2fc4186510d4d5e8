"""The key file: tenants, per-tenant limits, and errors that name the line and field but never a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.api.auth import ApiKeyError, KeyTable, parse_api_keys
from app.api.errors import duration, rate_limit_headers
from app.chat.tenants import Budget, RateStatus, TenantLimits

KEY_FILE = """\
# key                 tenant   limits
sk-team-a-000000001   team-a   rpm=600 tpm=200000 max_streams=8
sk-team-a-000000002   team-a   max_sessions=50   # a second key of team-a, same tenant limits
sk-team-b-000000001   team-b   rpm=60 max_queued=0
sk-solo-0000000001
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    return path


def test_keys_tenants_and_limits(tmp_path: Path) -> None:
    keys = parse_api_keys("sk-inline-00001:team-c tpm=1000", write(tmp_path, KEY_FILE))
    assert keys.tenants == {
        "sk-inline-00001": "team-c",
        "sk-team-a-000000001": "team-a",
        "sk-team-a-000000002": "team-a",
        "sk-team-b-000000001": "team-b",
        "sk-solo-0000000001": "sk-solo-0000000001",  # no tenant: its own
    }
    assert keys.limits == {
        "team-a": TenantLimits(rpm=600, tpm=200000, max_streams=8, max_sessions=50),
        "team-b": TenantLimits(rpm=60, max_queued=0),
        "team-c": TenantLimits(tpm=1000),
    }
    table = KeyTable(keys)
    assert table.tenant_for("sk-team-b-000000001") == "team-b"
    assert table.tenant_for("sk-team-b-00000000") is None
    table.replace(parse_api_keys("sk-only-new-key:x", None))
    assert table.tenant_for("sk-team-b-000000001") is None and table.tenant_for("sk-only-new-key") == "x"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("sk-other-key-02 beta rpm=ten", "field 'rpm': expected a whole number >= 1, got 'ten'"),
        ("sk-other-key-02 beta rpm=0", "field 'rpm': expected a whole number >= 1"),
        ("sk-other-key-02 beta max_queued=-1", "field 'max_queued': expected a whole number >= 0"),
        ("sk-other-key-02 beta rpm=1 rpm=2", "field 'rpm': given twice"),
        ("sk-other-key-02 beta burst=5", "field 'burst': unknown limit; use one of rpm, tpm, max_streams"),
        ("sk-other-key-02 rpm=5 alpha", "expected 'key [tenant] [limit=value ...]'"),
        ("sk-bad two tenants", "expected 'key [tenant] [limit=value ...]' with a key of at least 8"),
        ("sk-good-key-0001 alpha", "the same key is already given at"),
        ("sk-good-key-0002 alpha rpm=7", "field 'rpm': tenant 'alpha' already has rpm=5"),
    ],
)
def test_a_malformed_entry_names_file_line_and_field(tmp_path: Path, line: str, says: str) -> None:
    path = write(tmp_path, f"# tenants\nsk-good-key-0001 alpha rpm=5\n{line}\n")
    with pytest.raises(ApiKeyError) as info:
        parse_api_keys(None, path)
    message = str(info.value)
    assert f"{path}:3: " in message and says in message, message


def test_errors_never_echo_a_key(tmp_path: Path) -> None:
    secret = "sk-live-SECRET=abc"  # pasted where a limit belongs: not a safe field name, so never shown
    with pytest.raises(ApiKeyError) as info:
        parse_api_keys(None, write(tmp_path, f"sk-good-key-0001 alpha {secret}\n"))
    assert "SECRET" not in str(info.value) and "field #1 of the limits" in str(info.value)
    with pytest.raises(ApiKeyError) as info:
        parse_api_keys(None, write(tmp_path, "sk-good-key-0001 alpha\nsk-good-key-0001 beta\n"))
    assert "sk-good" not in str(info.value).replace(str(tmp_path), "")


def test_rate_limit_headers_are_openais() -> None:
    status = RateStatus(requests=Budget(60, 59, 1.0), tokens=Budget(150000, 149000, 360.0))
    assert rate_limit_headers(status) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert rate_limit_headers(None) == {} and rate_limit_headers(RateStatus()) == {}
    assert [duration(s) for s in (0.02, 0.0, 1.5, 61.25)] == ["20ms", "0ms", "1.5s", "1m1.25s"]
