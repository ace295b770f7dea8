"""The one runner of the programs relevo drives."""

from __future__ import annotations

import gc
import sys
import warnings

from relevo.commands import run_streaming


def test_streaming_closes_its_pipe() -> None:
    """A streamed command's output pipe is closed when it ends, not left to the garbage collector (whose
    ResourceWarning, raised during whichever test runs next, failed the first lxd test on a fresh machine
    after the image build)."""
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_streaming([sys.executable, "-c", "print('one'); print('two')"], lines.append, timeout_s=30)
        gc.collect()
    assert lines == ["one", "two"]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
