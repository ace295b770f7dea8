"""The event journal: append-only JSON lines, read back whole, followed as it grows."""

from __future__ import annotations

import threading

from relevo.controller.events import Event, EventKind, EventLog, follow_events, read_events


def event(node: str, kind: EventKind = EventKind.HEALTH) -> Event:
    return Event(
        kind=kind,
        node=node,
        from_="up",
        to="down",
        reason="connection refused",
        durations={"detection_s": 0.12345},
    )


def test_appended_events_read_back_in_order(tmp_path):
    """Each event is one line with time, node, from, to, reason and rounded durations."""
    log = EventLog(tmp_path / "events.jsonl", wall_clock=lambda: 1_700_000_000.5)
    for name in ("web1", "web2", "web1bck"):
        log.append(event(name))
    records = read_events(tmp_path / "events.jsonl")
    assert [r["node"] for r in records] == ["web1", "web2", "web1bck"]
    assert records[0]["from"] == "up" and records[0]["to"] == "down"
    assert records[0]["durations"] == {"detection_s": 0.1235}
    assert records[0]["time"].startswith("2023-11-14T22:13:20.500")


def test_read_last_n_and_missing_journal(tmp_path):
    """`n` keeps the newest events; a journal that does not exist yet reads as empty."""
    log = EventLog(tmp_path / "events.jsonl")
    for i in range(10):
        log.append(event(f"n{i}"))
    assert [r["node"] for r in read_events(tmp_path / "events.jsonl", 3)] == ["n7", "n8", "n9"]
    assert read_events(tmp_path / "none.jsonl") == []


def test_a_line_cut_by_a_crash_is_skipped(tmp_path):
    """A half-written last line (the controller killed mid-write) does not hide the others."""
    path = tmp_path / "events.jsonl"
    EventLog(path).append(event("web1"))
    with path.open("a") as handle:
        handle.write('{"kind": "health", "no')
    assert [r["node"] for r in read_events(path)] == ["web1"]


def test_follow_yields_new_events_as_they_come(tmp_path):
    """Following starts at the end and yields each event appended afterwards."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append(event("old"))
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        for record in follow_events(path, stop=stop, poll_s=0.01):
            seen.append(record["node"])
            if len(seen) == 2:
                return  # two seen: enough (a poll may bring more than one line at once)

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(100):  # the reader may start after the appends: keep appending until it sees two
        log.append(event("new"))
        thread.join(0.02)
        if not thread.is_alive():
            break
    stop.set()
    thread.join(5)
    assert seen == ["new", "new"]
