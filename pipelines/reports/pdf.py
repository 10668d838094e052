"""The compliance report (or any page of ours) printed to PDF by headless Chromium, when it is installed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from pipelines.reports.report import ReportError

# Headless Chromium flags for printing the PDF (and for the rendering test): no network, no profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


def print_pdf(html_path: Path, pdf_path: Path, chromium: str) -> None:
    """Print the HTML to PDF with headless Chromium (a throwaway profile; no network is needed)."""
    with tempfile.TemporaryDirectory(prefix="usagewatch-chromium-") as profile:
        completed = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
             f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    if completed.returncode != 0 or not pdf_path.exists():
        raise ReportError(f"chromium could not print {html_path}: {completed.stderr.strip()[-500:]}")
