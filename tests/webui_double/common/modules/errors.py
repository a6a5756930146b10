"""modules/errors.py: what the webui prints, kept for tests to read."""
reported: list[str] = []


def report(message, *, exc_info=False):
    import sys
    text = message
    if exc_info:
        exc = sys.exc_info()[1]
        text = f"{message}: {exc!r}"
    reported.append(text)


def display(e, task, *, full_traceback=False):
    reported.append(f"{task}: {e!r}")
