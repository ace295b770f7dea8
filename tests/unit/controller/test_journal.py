"""The journal's reader (controller/journal.py): what it cannot use it skips and says so, a torn line never
swallows the next event, the last N events come from the end of the file, lines and files are bounded;
`relevo status` and `relevo events` on such journals show what they can and never fail."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from relevo.cli import cli
from relevo.controller.events import Event, EventKind, EventLog
from relevo.controller.journal import (
    LINE_MAX_BYTES,
    SCAN_MAX_BYTES,
    follow_events,
    parse_line,
    read_journal,
    rotated,
    shape_error,
)

from .fakes import NODES


def event(node: str, reason: str = "probe failed") -> Event:
    return Event(kind=EventKind.HEALTH, node=node, from_="up", to="down", reason=reason)


def line(node: str, ts: float = 1.0) -> bytes:
    record = event(node).record(ts)
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def topology_file(tmp_path: Path) -> Path:
    path = tmp_path / "relevo.yaml"
    path.write_text(f"name: t\nnetwork: 127.102.8.0/24\n{NODES}")
    return path


def test_a_torn_last_line_does_not_swallow_the_next_event(tmp_path: Path):
    """A crash mid-write leaves a line without its newline; the next event appended runs into it: that
    event is read, and the torn one is reported as skipped."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append(event("web1"))
    with path.open("ab") as handle:
        handle.write(line("torn")[:40])  # no newline: the writer died here
    log.append(event("web2"))
    read = read_journal(path)
    assert [e["node"] for e in read.events] == ["web1", "web2"]
    assert read.skipped_lines == 0  # the torn start is part of web2's line, which was recovered


def test_lines_of_the_wrong_shape_are_skipped_and_said(tmp_path: Path):
    """JSON that is not an event (`{"durations":"x"}`, a list, a number) or not JSON at all is skipped,
    counted and described; the events around it are read."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        line("web1") + b'{"durations":"x"}\n[1,2]\n42\nnot json\n' + line("web2") + b'{"ts": NaN}\n'
    )
    read = read_journal(path)
    assert [e["node"] for e in read.events] == ["web1", "web2"]
    assert read.skipped_lines == 5
    assert any('\'{"durations":"x"}\'' in problem for problem in read.problems)


def test_wrong_shapes_are_named():
    """Each field of an event is checked for its type."""
    good = event("web1").record(1.0)
    assert shape_error(good) is None
    assert shape_error({**good, "durations": "x"}) == '"durations" is not an object of numbers'
    assert shape_error({**good, "durations": {"a": True}}) == '"durations" is not an object of numbers'
    assert shape_error({**good, "ts": "1"}) == '"ts" is not a number of seconds'
    assert shape_error({**good, "ts": float("inf")}) == '"ts" is not a number of seconds'
    assert shape_error({**good, "node": 3}) == '"node" is not text'
    assert shape_error({"durations": "x"}) == 'no "time"'
    assert shape_error([good]) == "not a JSON object"


@pytest.mark.parametrize("which", ["current", "rotated"])
def test_a_directory_in_place_of_the_journal_is_skipped_and_said(tmp_path: Path, which: str):
    """A directory where events.jsonl (or .1) should be: the other part is still read, and the reading
    says which file it skipped."""
    path = tmp_path / "events.jsonl"
    other = rotated(path) if which == "current" else path
    (path if which == "current" else rotated(path)).mkdir()
    other.write_bytes(line("web1"))
    read = read_journal(path, 5)
    assert [e["node"] for e in read.events] == ["web1"]
    skipped = path if which == "current" else rotated(path)
    assert read.problems == [
        f"the journal {skipped} is not a regular file (a directory, FIFO or device): skipped"
    ]


def test_a_fifo_in_place_of_the_journal_never_blocks(tmp_path: Path):
    """A FIFO where the journal should be is skipped at once (never opened to wait for a writer)."""
    path = tmp_path / "events.jsonl"
    os.mkfifo(path)
    read = read_journal(path, 5)
    assert read.events == [] and "not a regular file" in read.problems[0]


def test_status_and_events_show_the_nodes_with_a_directory_for_a_journal(tmp_path: Path):
    """`status`, `status --json` and `events` exit 0 with events.jsonl a directory: status lists every
    node and says what it skipped; events says it on stderr."""
    topology = topology_file(tmp_path)
    (tmp_path / ".relevo" / "events.jsonl").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["-f", str(topology), "status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [n["name"] for n in report["nodes"]] == ["ha1", "web1", "web2", "web1bck", "web2bck"]
    assert "is not a regular file" in report["journal_problems"][0]
    text = CliRunner().invoke(cli, ["-f", str(topology), "status"])
    assert text.exit_code == 0, text.output
    assert "web1bck" in text.stdout and "not a regular file" in text.stdout
    events = CliRunner().invoke(cli, ["-f", str(topology), "events"])
    assert events.exit_code == 0, events.output
    assert "not a regular file" in events.stderr


def test_events_with_a_line_of_the_wrong_shape_shows_the_rest(tmp_path: Path):
    """`relevo events` on a journal holding `{"durations":"x"}` prints the good events, no traceback,
    and says on stderr what it skipped."""
    topology = topology_file(tmp_path)
    (tmp_path / ".relevo").mkdir()
    (tmp_path / ".relevo" / "events.jsonl").write_bytes(line("web1") + b'{"durations":"x"}\n')
    result = CliRunner().invoke(cli, ["-f", str(topology), "events"])
    assert result.exit_code == 0, result.output
    assert "web1 up → down" in result.stdout
    assert "a line skipped" in result.stderr and "durations" in result.stderr


class PreadCounter:
    """os.pread as the reader calls it, counting the bytes it asked for."""

    def __init__(self) -> None:
        self.read = 0
        self._pread = os.pread

    def __call__(self, fd: int, size: int, offset: int) -> bytes:
        self.read += size
        return self._pread(fd, size, offset)


def test_the_last_events_are_read_from_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The last 3 events of a 2 GB journal (sparse: one enormous line, then events) cost a few blocks of
    reading, not the file."""
    path = tmp_path / "events.jsonl"
    with path.open("wb") as handle:
        handle.truncate(2 * 10**9)
        handle.seek(0, os.SEEK_END)
        handle.write(b"\n" + line("a") + line("b") + line("c") + line("d"))
    counter = PreadCounter()
    monkeypatch.setattr(os, "pread", counter)
    read = read_journal(path, 3)
    assert [e["node"] for e in read.events] == ["b", "c", "d"]
    assert counter.read <= 64 * 1024
    assert read.problems == []


def test_one_enormous_line_is_skipped_in_bounded_memory_and_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """events.jsonl.1 of 2 GB without a newline: at most SCAN_MAX_BYTES are read, in bounded memory, and
    the reading says the file is larger than relevo writes; the current part's events are read."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(line("web1"))
    with rotated(path).open("wb") as handle:
        handle.truncate(2 * 10**9)
    counter = PreadCounter()
    monkeypatch.setattr(os, "pread", counter)
    tracemalloc.start()
    try:
        read = read_journal(path, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e["node"] for e in read.events] == ["web1"]
    assert counter.read <= SCAN_MAX_BYTES + len(line("web1"))
    assert peak < 4 * LINE_MAX_BYTES + 1_000_000
    assert any("larger than a journal relevo writes" in p for p in read.problems)


def test_an_overlong_line_between_events_is_skipped(tmp_path: Path):
    """A line longer than LINE_MAX_BYTES is skipped and counted; the events on both sides are read."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(line("a") + b"x" * (3 * LINE_MAX_BYTES + 5) + b"\n" + line("b"))
    read = read_journal(path)
    assert [e["node"] for e in read.events] == ["a", "b"]
    assert read.skipped_lines == 1
    assert f"a line longer than {LINE_MAX_BYTES} bytes" in read.problems[0]


def test_the_rotated_part_completes_the_last_n(tmp_path: Path):
    """The last N come from events.jsonl and, for what it lacks, from events.jsonl.1, oldest first."""
    path = tmp_path / "events.jsonl"
    rotated(path).write_bytes(line("a") + line("b") + line("c"))
    path.write_bytes(line("d"))
    assert [e["node"] for e in read_journal(path, 3).events] == ["b", "c", "d"]
    assert [e["node"] for e in read_journal(path).events] == ["a", "b", "c", "d"]
    keep_b = read_journal(path, 5, keep=lambda e: e["node"] in ("b", "d"))
    assert [e["node"] for e in keep_b.events] == ["b", "d"]


def test_follow_recovers_the_event_after_a_torn_line_and_says_what_it_skipped(tmp_path: Path):
    """`events --follow` yields the event after a torn line, and gives word of a bad line once."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(line("torn")[:30] + line("web2") + b'{"durations":"x"}\n' + line("web3"))
    said: list[str] = []
    stop = threading.Event()
    got = []
    for record in follow_events(path, stop=stop, from_start=True, warn=said.append, poll_s=0.01):
        got.append(record["node"])
        if len(got) == 2:
            stop.set()
    assert got == ["web2", "web3"]
    assert said == [f'{path}: a line skipped, no "time": \'{{"durations":"x"}}\'']


def test_journal_max_bytes_is_bounded(tmp_path: Path):
    """controller.journal_max_bytes past 100 MB (the reader's bound) is refused at its line."""
    from relevo.errors import TopologyError
    from relevo.topology import parse_topology

    text = f"name: t\nnetwork: 127.102.8.0/24\n{NODES}controller:\n  journal_max_bytes: 1000000000000\n"
    with pytest.raises(TopologyError) as raised:
        parse_topology(text, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    assert raised.value.line == text.splitlines().index("  journal_max_bytes: 1000000000000") + 1
    assert "from 10000 to 100000000" in str(raised.value)


RECORDS = st.builds(lambda node, ts: line(node, ts), st.text(max_size=20), st.floats(0, 2e9, allow_nan=False))
GARBAGE = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"\n", b"{", b'{"time":', b"\xff\xfe", b"[" * 5000, b'{"durations":"x"}\n']),
    RECORDS.map(lambda raw: raw[: len(raw) // 2]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(RECORDS, GARBAGE), max_size=30), st.integers(-1, 40))
def test_any_journal_reads_without_raising(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[bytes], n: int
):
    """Property: any bytes in events.jsonl give events of the right shape (at most n, every whole
    record line among them) and never raise."""
    path = tmp_path_factory.mktemp("fuzz") / "events.jsonl"
    data = b"".join(pieces)
    path.write_bytes(data)
    read = read_journal(path, n if n >= 0 else None)
    assert all(shape_error(e) is None for e in read.events)
    if n >= 0:
        assert len(read.events) <= n
    else:
        whole = [p for p in data.split(b"\n") if parse_line(p)[0] is not None]
        assert len(read.events) == len(whole)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_line_parses_to_an_event_or_a_reason(raw: bytes):
    """Property: parse_line of any bytes is an event of the right shape or None with a reason."""
    record, why = parse_line(raw)
    assert (record is None) != (why is None)
    if record is not None:
        assert shape_error(record) is None
