"""Click every button and change every dropdown inside a page region, and collect what went wrong.

Used by the standalone e2e test (CI, gradio 3.41.2 and 4.40.0) and by the real-A1111 check in
tests/real_webui/. What counts as wrong is what a user sees: Gradio's "Error" badge on an output
(3.41) or its error toast (4.x); our own warnings (gr.Warning toasts) are not errors.
"""
from __future__ import annotations

import time
from typing import Any

# an event that failed on the server: 3.41 puts an `.error` badge on the outputs, 4.x an error toast
ERRORS_JS = """root => Array.from(document.querySelectorAll(
    `${root} .error, .toast-body.error, .toast-wrap .error`))
    .filter(e => e.offsetParent !== null && /error/i.test(e.innerText || e.className))
    .map(e => (e.innerText || e.className).trim().slice(0, 200))"""
PENDING_JS = """() => document.querySelectorAll('.eta-bar, .progress-text, .meta-text-center, .wrap.pending').length"""


def settle(pg: Any, timeout: float = 60.0) -> None:
    """Wait until no Gradio event is pending (progress bars and pending overlays gone)."""
    time.sleep(0.3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.evaluate(PENDING_JS) == 0:
            return
        time.sleep(0.25)


def errors(pg: Any, root: str) -> list[str]:
    return pg.evaluate(ERRORS_JS, root)


def click_every_button(pg: Any, root: str, skip: tuple[str, ...] = (),
                       clicked: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """Click each visible button under `root` once (accordions opened first; tab headers left alone: one
    would hide the buttons after it; open each tab and call this per tab); (button, errors) per click
    that left an error on the page. The ids of the buttons actually clicked are added to `clicked`."""
    for acc in pg.query_selector_all(f"{root} .label-wrap:not(.open)"):
        try:
            acc.click()
        except Exception:  # noqa: BLE001 - an accordion hidden by another
            pass
    settle(pg)
    failures = []
    ids = pg.evaluate("""root => Array.from(document.querySelectorAll(`${root} button[id]`))
        .filter(b => b.offsetParent !== null && !b.closest('.tab-nav')).map(b => b.id)""", root)
    for bid in ids:
        if bid in skip:
            continue
        try:
            pg.click(f"#{bid}", timeout=5000)
        except Exception:  # noqa: BLE001 - covered by another element, disabled
            continue
        if clicked is not None:
            clicked.append(bid)
        settle(pg)
        errs = errors(pg, root)
        if errs:
            failures.append((bid, errs))
    return failures


def change_every_dropdown(pg: Any, root: str) -> list[tuple[str, list[str]]]:
    """Pick the second option (or the first, if it is selected) of each dropdown that has an elem_id."""
    failures = []
    ids = pg.evaluate("""root => Array.from(document.querySelectorAll(`${root} [id] input[role=listbox],
        ${root} [id] .wrap-inner input`)).map(i => i.closest('[id]').id).filter((v, i, a) => a.indexOf(v) === i)""",
                      root)
    for did in ids:
        try:
            pg.click(f"#{did} input", timeout=5000)
            options = pg.query_selector_all("[data-testid='dropdown-option'], ul.options li")
            if len(options) > 1:
                options[1].click()
            elif options:
                options[0].click()
            else:
                pg.keyboard.press("Escape")
        except Exception:  # noqa: BLE001 - hidden
            continue
        settle(pg)
        errs = errors(pg, root)
        if errs:
            failures.append((did, errs))
    return failures
