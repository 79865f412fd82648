"""The report in a real browser: headless Chromium renders it with nothing on the console.

Console messages are read from Chromium's own log (``--enable-logging=stderr``), where
each one, whatever its level, is a ``CONSOLE`` line: uncaught exceptions, ``console.*``
calls, and resources the Content-Security-Policy blocked. The report has no scripts, so
it must produce none at all; a control page shows that this check sees errors.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from redblue.evaluate.store import Run, RunStore
from redblue.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not on PATH; install Debian's `chromium` package "
    "(`apt-get install -y chromium`, which .ci/run does when run as root) to check the report "
    "in a browser",
)
#: A console message in Chromium's log: ``...:INFO:CONSOLE:12] "text", source: URL (12)``
#: (``CONSOLE(12)`` in older versions).
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


def open_page(
    page: Path, tmp_path: Path, width: int = 1200, height: int = 2000
) -> tuple[str, list[str], Path]:
    """Load ``page`` in headless Chromium: its DOM after loading, the console messages, and
    a screenshot of the first ``height`` pixels."""
    assert CHROMIUM is not None
    shot = tmp_path / "screenshot.png"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [m[1] for line in done.stderr.splitlines() if (m := CONSOLE.search(line))]
    return done.stdout, messages, shot


def test_the_console_check_sees_errors(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "script-src 'unsafe-inline'; img-src data:\"></head><body><p>control</p>"
        "<script>console.error('first failure')</script>"
        "<img src='https://example.invalid/x.png'>"
        "<script>throw new Error('second failure')</script></body></html>"
    )
    dom, messages, _ = open_page(page, tmp_path, 400, 300)
    assert "control" in dom
    text = "\n".join(messages)
    assert "first failure" in text
    assert "second failure" in text
    assert "Content Security Policy" in text


def test_report_renders_with_a_clean_console(
    store: RunStore, runs: dict[str, Run], tmp_path: Path
) -> None:
    page = build_report(store, [r.id for r in runs.values()], tmp_path / "report.html")
    dom, messages, shot = open_page(page, tmp_path)
    assert messages == []
    # the browser built every section, and shows model output as text, not as markup
    for section in ("summary", "scorecard", "attacks", "transcripts", "provenance"):
        assert f'<section id="{section}">' in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script" not in dom.lower()

    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(shot)  # [height, width, channels], floats in [0, 1]
    assert pixels.shape[:2] == (2000, 1200)
    rgb = np.round(pixels[..., :3] * 255).astype(np.uint32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # one integer per colour
    _, counts = np.unique(codes, return_counts=True)
    assert len(counts) > 100, "the screenshot is nearly one colour"
    assert 1 - counts.max() / codes.size > 0.05, "the screenshot is nearly blank"
