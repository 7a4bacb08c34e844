"""Progress bars for long loops: tqdm when installed, a plain fallback otherwise.

Every long loop in sknetk (kernel tiles, cross-validation folds, the command
line's comparisons) goes through :func:`progress`, so ``verbose=0`` is silent
everywhere and ``verbose>=1`` shows one bar on standard error.
"""

import sys
import time

__all__ = ["progress"]


def _get_tqdm():
    """Return ``tqdm.tqdm`` or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def progress(iterable, total=None, desc=None, verbose=0, file=None):
    """Wrap an iterable so that iterating over it shows a progress bar.

    Parameters
    ----------
    iterable : iterable
        The items to iterate over; they are yielded unchanged.
    total : int, default=None
        Number of items, for iterables without ``len``. ``None`` uses
        ``len(iterable)`` when available.
    desc : str, default=None
        A short label printed before the bar.
    verbose : int, default=0
        ``0`` returns ``iterable`` itself and prints nothing; ``>= 1`` shows
        a bar (tqdm's when tqdm is installed, else a plain text counter).
    file : file-like, default=None
        Where the bar is written; ``None`` means ``sys.stderr``.

    Returns
    -------
    iterable
        ``iterable`` when ``verbose=0``, otherwise an iterator over the same
        items that updates the bar as it goes.

    Examples
    --------
    >>> from sknetk._progress import progress
    >>> sum(progress(range(4), desc="adding", verbose=0))
    6
    """
    if not verbose:
        return iterable
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    file = sys.stderr if file is None else file
    tqdm = _get_tqdm()
    if tqdm is not None:
        return tqdm(iterable, total=total, desc=desc, file=file, leave=False)
    return _plain(iterable, total, desc, file)


def _plain(iterable, total, desc, file, min_interval=1.0):
    """Yield from ``iterable`` and print a text counter to ``file``.

    On a terminal the counter is redrawn in place; elsewhere (logs, pipes) a
    line is printed at most every ``min_interval`` seconds, plus a last one.
    """
    interactive = bool(getattr(file, "isatty", lambda: False)())
    label = f"{desc}: " if desc else ""
    start = last = time.perf_counter()
    count = 0

    def line():
        elapsed = time.perf_counter() - start
        done = f"{count}/{total}" if total is not None else f"{count}"
        return f"{label}{done} [{elapsed:.1f}s]"

    for item in iterable:
        yield item
        count += 1
        now = time.perf_counter()
        if now - last >= (0.1 if interactive else min_interval):
            last = now
            file.write(("\r" + line()) if interactive else line() + "\n")
            file.flush()
    file.write(("\r" + line() + "\n") if interactive else line() + "\n")
    file.flush()
