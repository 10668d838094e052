"""Where things live: the repository, the fetched JVM artifacts and the run-time state."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Installed from the wheel, sql/ and schemas/ sit inside the package (setup.py puts them there); in a
# checkout or an editable install they are the repository's own top-level folders.
PACKAGED_DATA_DIR = Path(__file__).resolve().parents[1] / "_data"
INSTALLED = PACKAGED_DATA_DIR.is_dir()
DATA_ROOT = PACKAGED_DATA_DIR if INSTALLED else REPO_ROOT
SCHEMAS_DIR = DATA_ROOT / "schemas"
SQL_DIR = DATA_ROOT / "sql"
VIEWS_DIR = SQL_DIR / "views"

# Fetched by scripts/bootstrap.sh from Maven Central (git-ignored).
DEPS_DIR = Path(os.environ.get("USAGEWATCH_DEPS_DIR", REPO_ROOT / ".deps"))
KAFKA_LIBS_DIR = DEPS_DIR / "kafka"
FLINK_CONNECTOR_JARS_DIR = DEPS_DIR / "flink"
UDF_JAR = DEPS_DIR / "udf" / "usagewatch-udf.jar"


def _default_run_dir() -> Path:
    """A checkout keeps its run-time state in .run (git-ignored). Installed from the wheel, REPO_ROOT is
    the environment's site-packages, which must not collect state: the user's XDG state directory."""
    if not INSTALLED:
        return REPO_ROOT / ".run"
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "usagewatch"


# PIDs, logs, broker data.
RUN_DIR = Path(os.environ.get("USAGEWATCH_RUN_DIR") or _default_run_dir())


def flink_job_jars() -> list[Path]:
    """Every jar the aggregation job needs on pipeline.jars, in a stable order."""
    jars = sorted(FLINK_CONNECTOR_JARS_DIR.glob("*.jar"))
    if not jars or not UDF_JAR.exists():
        raise FileNotFoundError(
            f"Flink connector jars or {UDF_JAR.name} missing under {DEPS_DIR}: run scripts/bootstrap.sh"
        )
    return [*jars, UDF_JAR]
