"""The wheel is installable on its own: built from this checkout, installed into a fresh venv outside it,
its `usagewatch` finds the sql/ and schemas/ it ships (setup.py) and runs replay, sql and detect on a lake.

To stay fast and offline beyond PyPI (the build backend), the fresh venv reuses the shared venv's
installed dependencies through a .pth line; that line adds their folder to sys.path without running its
.pth files, so the shared venv's editable usagewatch (a .pth import hook) stays out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pipelines.infra.paths import REPO_ROOT

pytestmark = pytest.mark.integration
TIMEOUT_SECONDS = 600


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert result.returncode == 0, f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from this checkout; returns its bin/ folder."""
    work = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist")]
    run([*build, str(REPO_ROOT)], work)
    (wheel,) = (work / "dist").glob("usagewatch-*.whl")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    python = venv / "bin" / "python"
    print_site_packages = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = Path(run([str(python), "-c", print_site_packages], work).stdout.strip())
    (site_packages / "shared-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--force-reinstall", str(wheel)], work)  # fmt: skip
    return venv / "bin"


def test_the_installed_wheel_carries_its_sql_and_schemas_and_runs_sql_and_detect(installed, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "usagewatch.yml").write_text(
        "lake:\n  path: lake\nstate:\n  path: state/state.duckdb\n"
        "routing:\n  sinks:\n    - {name: file, type: jsonl, path: routed.jsonl}\n"
        "incidents:\n  open_threshold: 1\n"
    )
    events = [
        {"event_id": f"travel-{n}", "event_time": time, "account_id": "acct-hopper",
         "api_key_id": "key-hopper", "source_ip": f"192.0.2.{n}", "country": country,
         "latitude": latitude, "longitude": longitude,
         "asn": 64500, "asn_type": "residential", "model": "model-large", "endpoint": "/v1/messages",
         "input_tokens": 420, "output_tokens": 900, "status_code": 200}
        for n, time, country, latitude, longitude in (
            (1, "2026-03-01T10:00:00.000Z", "US", 40.71, -74.01),
            (2, "2026-03-01T10:30:00.000Z", "GB", 51.51, -0.13),
        )
    ]  # fmt: skip
    (site / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
    # Nothing points it at its configuration or state: installed, it reads the current folder's
    # usagewatch.yml and keeps state under $XDG_STATE_HOME, never inside the environment.
    unset = {"PYTHONPATH", "VIRTUAL_ENV", "USAGEWATCH_CONFIG", "USAGEWATCH_RUN_DIR"}
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    usagewatch = str(installed / "usagewatch")

    show_paths = (
        "import pipelines.infra.paths as p, pipelines.infra.config as c;"
        " print(p.__file__, p.SQL_DIR, p.SCHEMAS_DIR, p.RUN_DIR, c.config_path().resolve())"
    )
    where = run([str(installed / "python"), "-c", show_paths], site, env).stdout.split()
    venv = installed.parent
    assert all(Path(path).is_relative_to(venv) for path in where[:3]), where  # not this checkout
    assert Path(where[1]).name == "sql" and (Path(where[1]) / "views" / "events.sql").is_file()
    assert Path(where[3]) == tmp_path / "state" / "usagewatch"
    assert Path(where[4]) == site / "usagewatch.yml"

    run([usagewatch, "replay", "--engine", "duckdb", "--input", str(site / "events.jsonl")], site, env)
    out = run([usagewatch, "sql", "--format", "json", "select count(*) as n from events"], site, env).stdout
    assert json.loads(out) == {"n": 2}
    out = run([usagewatch, "sql", "--schema", "events"], site, env).stdout
    assert "unique id of the event" in out  # the descriptions of the shipped sql/views/events.yml

    out = run([usagewatch, "detect", "--detection", "impossible_travel"], site, env).stdout
    assert "impossible_travel" in out
    query = "select count(*) as n from signals where detection_id = 'impossible_travel'"
    assert json.loads(run([usagewatch, "sql", "--format", "json", query], site, env).stdout)["n"] >= 1
    assert not list(venv.rglob(".run")), "the installed package wrote state into its environment"
