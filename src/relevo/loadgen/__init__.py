"""relevo's load generator: JMeter's semantics and formats, at wrk's speed.

plan (what to send) → shares (cut between processes) → engine (processes, merge) → worker (one event
loop) → drivers (closed users, open-rate groups) → client (one connection) → http (bytes on the wire);
recorder → stats / histogram (what was measured); jtl and jmx / jmx_export (JMeter's files).
"""
