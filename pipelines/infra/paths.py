"""Where things live: the repository, the fetched JVM artifacts and the run-time state."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Installed from the wheel, sql/ and schemas/ sit inside the package (setup.py puts them there); in a
# checkout or an editable install they are the repository's own top-level folders.
PACKAGED_DATA_DIR = Path(__file__).resolve().parents[1] / "_data"
DATA_ROOT = PACKAGED_DATA_DIR if PACKAGED_DATA_DIR.is_dir() else REPO_ROOT
SCHEMAS_DIR = DATA_ROOT / "schemas"
SQL_DIR = DATA_ROOT / "sql"
VIEWS_DIR = SQL_DIR / "views"

# Fetched by scripts/bootstrap.sh from Maven Central (git-ignored).
DEPS_DIR = Path(os.environ.get("USAGEWATCH_DEPS_DIR", REPO_ROOT / ".deps"))
KAFKA_LIBS_DIR = DEPS_DIR / "kafka"
FLINK_CONNECTOR_JARS_DIR = DEPS_DIR / "flink"
UDF_JAR = DEPS_DIR / "udf" / "usagewatch-udf.jar"

# PIDs, logs, broker data (git-ignored).
RUN_DIR = Path(os.environ.get("USAGEWATCH_RUN_DIR", REPO_ROOT / ".run"))


def flink_job_jars() -> list[Path]:
    """Every jar the aggregation job needs on pipeline.jars, in a stable order."""
    jars = sorted(FLINK_CONNECTOR_JARS_DIR.glob("*.jar"))
    if not jars or not UDF_JAR.exists():
        raise FileNotFoundError(
            f"Flink connector jars or {UDF_JAR.name} missing under {DEPS_DIR}: run scripts/bootstrap.sh"
        )
    return [*jars, UDF_JAR]
