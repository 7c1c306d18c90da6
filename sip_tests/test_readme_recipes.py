"""The README's Customer Control recipes work as written: the curl block of "Customer
Control API" runs, unchanged but for the API's address, against `softswitch run --api`
over the demo store (`make run`'s process), every request succeeding, and leaves the
store as the recipes say.

- The block is taken from README.md between its first line `API=http://127.0.0.1:8080`
  and the end of that fenced block; only that line's address changes (a free port).
- It runs under `bash -e` with `curl` wrapped as `curl --fail-with-body`, so any answer
  of 400 or more stops it and fails the test with the body.
- Afterwards the API itself shows the outcome: the ratio 2:1, 8 channels, the after-hours
  schedule on in English, the destination change, the designated areas, the new
  account granted, extension 1102 at Osaka, 2003 mapped to the replaced phone, user
  1001's own settings, and the audit log naming who did each change.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO_ROOT
from .test_api_in_switch import ADMIN, OPERATOR, authorized, log_in, switch_with_api

README = REPO_ROOT / "README.md"
API_LINE = "API=http://127.0.0.1:8080"
TF = "/api/v1/tollfree-numbers/0120000111"
SCRIPT_TIMEOUT = 120.0


def recipes(base: str) -> str:
    """The README's curl block, addressed to `base`."""
    text = README.read_text(encoding="utf-8")
    start = text.index(API_LINE + "\n")
    end = text.index("```", start)
    return text[start:end].replace(API_LINE, f"API={base}", 1)


def get(base: str, path: str, token: str) -> Any:
    with urllib.request.urlopen(authorized(base + path, token), timeout=10) as reply:
        assert reply.status == 200
        return json.load(reply)


def test_the_readme_recipes_work_as_written(tmp_path: Path) -> None:
    with switch_with_api(tmp_path) as (switch, base):
        script = 'set -e\ncurl() { command curl --fail-with-body "$@"; echo; }\n' + recipes(base)
        completed = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

        operator = log_in(base, OPERATOR)
        information = get(base, f"{TF}/contract-information", operator)
        ratio = {
            entry["destination_number"]: entry["weight"]
            for entry in information["distribution_ratio"]
        }
        assert ratio == {"0312340001": 2, "0612340001": 1}
        number = get(base, TF, operator)
        assert number["channel_setting"] == 8
        schedules = {entry["name"]: entry for entry in get(base, f"{TF}/schedules", operator)}
        assert schedules["after-hours"]["enabled"] is True
        assert schedules["saturday-osaka"]["destination_set"] == "osaka-only"
        assert number["after_hours_announcement"] == "after_hours_en"
        areas = get(base, f"{TF}/designated-areas", operator)
        assert (areas["whole_country"], areas["prefectures"], areas["area_codes"]) == (
            False,
            ["13"],
            ["06"],
        )
        granted = {entry["login"] for entry in get(base, f"{TF}/accounts", operator)}
        assert granted == {"tf@demo", "reception@demo"}
        extensions = "/api/v1/tenants/demo/extensions"
        assert get(base, f"{extensions}/1102", operator)["site"] == "Osaka"
        mobile = get(base, f"{extensions}/2003", operator)
        assert mobile["mobile_line"] == "+819012340004"
        own = get(base, f"{extensions}/1001", operator)
        assert (own["no_answer_timeout_seconds"], own["voicemail_enabled"]) == (20, True)
        # The administrator's password was changed by the last recipe: the old one fails.
        with pytest.raises(urllib.error.HTTPError):
            log_in(base, ADMIN)
        actions = {
            (entry["actor"], entry["action"])
            for entry in get(base, "/api/v1/audit-log?tenant=demo&limit=500", operator)
        }
        assert {
            ("admin@demo", "tollfree.weights"),
            ("admin@demo", "tollfree.channels"),
            ("operator", "mobile_line.create"),
            ("user1001@demo", "extension.update"),
            ("admin@demo", "account.password_change"),
        } <= actions
    assert "Traceback" not in switch.log_text()
