"""Detection in the page runs in a Web Worker: the main thread stays
responsive during a 12 MP search, progress names each pass, and an
AbortSignal cancels it. Real headless Chromium, the real page and model.

See conftest.py for when these skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

# The bar: no main-thread task longer than this during detection.
LONGEST_TASK_MS = 200


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory) -> Path:
    """two_faces.jpg enlarged to 12 MP: the search plans the shrunk pass, its
    mirrored and turned copies, the 2048 px fine pass and six
    full-resolution tiles."""
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "two_faces_12mp.jpg"
    Image.open(FIXTURES / "two_faces.jpg").convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(
        path, quality=90
    )
    return path


def open_photo(page, path: Path) -> None:
    before = int(page.evaluate("window.veilPage.state.detections"))
    page.set_input_files("#file", str(path))
    page.wait_for_selector(f"body[data-detections='{before + 1}']", state="attached", timeout=600_000)


# Runs the page's detector on the open photo while a PerformanceObserver
# records main-thread long tasks; returns what happened.
DETECT_OBSERVED = """async (opts) => {
  const s = window.veilPage.state;
  const tasks = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) tasks.push(e.duration);
  });
  observer.observe({ type: 'longtask', buffered: false });
  const progress = [];
  const controller = new AbortController();
  let outcome;
  const t0 = performance.now();
  try {
    const r = await s.detector.detect(s.photo.original, {
      ...opts,
      signal: controller.signal,
      onProgress(done, total, label) {
        progress.push([done, total, label]);
        if (opts.abortAfter !== undefined && progress.length > opts.abortAfter) controller.abort();
      },
    });
    outcome = { faces: r.faces.length, passes: r.passes, ms: r.ms };
  } catch (e) {
    outcome = { error: e.name, message: e.message, afterMs: performance.now() - t0 };
  }
  // Let the observer deliver the last entries.
  await new Promise((r) => setTimeout(r, 50));
  observer.disconnect();
  return { outcome, progress, longest: Math.max(0, ...tasks), tasks: tasks.length,
           supported: PerformanceObserver.supportedEntryTypes.includes('longtask') };
}"""


def test_big_photo_keeps_the_main_thread_free_and_reports_progress(page, big_photo):
    open_photo(page, big_photo)
    first = page.evaluate("window.veilPage.state.detection.faces.length")
    got = page.evaluate(DETECT_OBSERVED, {})
    assert got["supported"], "this Chromium has no long-task timing"
    assert "error" not in got["outcome"], got["outcome"]
    assert got["outcome"]["faces"] == first >= 2
    passes = got["outcome"]["passes"]
    labels = [label for _, _, label in got["progress"]]
    whole = ["whole photo", "whole photo mirrored", "whole photo turned 90 degrees",
             "whole photo turned 180 degrees", "whole photo turned 270 degrees", "whole photo at 2048x1536"]
    assert labels[:6] == whole and labels[-1] == "done"
    # The fine pass rules out the tiles where it saw no trace of a face it
    # did not find: the total drops then, and the tiles left are renumbered.
    tiles = [x for x in labels if x.startswith("tile")]
    assert passes == len(whole) + len(tiles) and len(tiles) <= 6
    assert tiles == [f"tile {i} of {len(tiles)}" for i in range(1, len(tiles) + 1)]
    assert [done for done, _, _ in got["progress"]] == list(range(passes + 1))
    totals = [total for _, total, _ in got["progress"]]
    assert totals[:6] == [6 + 6] * 6 and totals[6:] == [passes] * (len(totals) - 6)
    assert got["longest"] < LONGEST_TASK_MS, f"a {got['longest']:.0f} ms main-thread task during detection"


def test_abort_rejects_with_abort_error_and_the_detector_keeps_working(page, big_photo):
    open_photo(page, big_photo)
    expected = page.evaluate("window.veilPage.state.detection.faces.length")
    got = page.evaluate(DETECT_OBSERVED, {"abortAfter": 1})
    assert got["outcome"]["error"] == "AbortError", got["outcome"]
    assert len(got["progress"]) == 2  # aborted at once, not at the end of the search
    # An aborted signal before the start rejects too, without searching.
    early = page.evaluate(
        """async () => {
          const s = window.veilPage.state;
          const c = new AbortController();
          c.abort();
          try { await s.detector.detect(s.photo.original, { signal: c.signal }); return 'resolved'; }
          catch (e) { return e.name; }
        }"""
    )
    assert early == "AbortError"
    # The worker drops the cancelled search and serves the next one.
    again = page.evaluate(DETECT_OBSERVED, {})
    assert again["outcome"].get("faces") == expected, again["outcome"]
