"""Request encoding and the incremental response parser, fed in every possible split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relevo.loadgen import http
from relevo.loadgen.http import ProtocolError, ResponseParser, encode_request, header_key
from relevo.loadgen.plan import HttpRequest

KEY = header_key("X-Served-By")


def parse(*chunks: bytes, no_body: bool = False) -> tuple[ResponseParser, bool, int]:
    """Feed the chunks; return the parser, whether it completed, and after how many chunks."""
    parser = ResponseParser(KEY)
    parser.reset(no_body=no_body)
    for i, chunk in enumerate(chunks, start=1):
        if parser.feed(chunk):
            return parser, True, i
    return parser, False, len(chunks)


def test_request_bytes() -> None:
    """A GET carries Host (with a non-default port), User-Agent and Accept, and no body."""
    data = encode_request(HttpRequest(label="x", host="127.0.0.1", port=8080, path="/a?b=1"))
    head = data.decode()
    assert head.startswith("GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
    assert "User-Agent: relevo/" in head and "Accept: */*" in head
    assert head.endswith("\r\n\r\n") and "Content-Length" not in head and "Connection" not in head


def test_request_with_body_headers_and_no_keepalive() -> None:
    """A body gets its Content-Length; -H replaces a default header; no keep-alive says Connection: close."""
    request = HttpRequest(
        label="x",
        method="POST",
        host="localhost",
        port=80,
        body=b"abc",
        headers=(("user-agent", "me"), ("X-A", "1")),
        keepalive=False,
    )
    head, _, body = encode_request(request).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST / HTTP/1.1"
    assert "Host: localhost" in lines and "user-agent: me" in lines and "X-A: 1" in lines
    assert "Connection: close" in lines and "Content-Length: 3" in lines
    assert not any(line.startswith("User-Agent") for line in lines)
    assert body == b"abc"


RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nx-served-by: web2\r\n"
    b"content-length: 11\r\n\r\nhello world"
)


def test_content_length_response() -> None:
    """Status, the counted header's value, all bytes received, and the connection stays open."""
    parser, done, _ = parse(RESPONSE)
    assert done
    assert (parser.status, parser.served_by, parser.received, parser.close) == (
        200,
        "web2",
        len(RESPONSE),
        False,
    )


@given(st.lists(st.integers(min_value=1, max_value=len(RESPONSE) - 1), max_size=6))
def test_any_split_gives_the_same_result(cuts: list[int]) -> None:
    """However TCP splits the bytes, the response completes exactly at its last byte."""
    points = sorted(set(cuts))
    chunks = [RESPONSE[a:b] for a, b in zip([0, *points], [*points, len(RESPONSE)], strict=True)]
    parser, done, at = parse(*chunks)
    assert done and at == len(chunks)
    assert (parser.status, parser.served_by, parser.received) == (200, "web2", len(RESPONSE))


def test_header_names_are_case_insensitive() -> None:
    """Apache's `Content-Length` and `X-Served-By` are found like HAProxy's lower-case ones."""
    parser, done, _ = parse(
        b"HTTP/1.1 503 Service Unavailable\r\nX-SERVED-BY: web1\r\nContent-Length: 2\r\n\r\nno"
    )
    assert done and parser.status == 503 and parser.served_by == "web1"


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;name=v\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
)


@given(st.lists(st.integers(min_value=1, max_value=len(CHUNKED) - 1), max_size=8))
def test_chunked_body_in_any_split(cuts: list[int]) -> None:
    """Chunk sizes, extensions and trailers: complete exactly at the final empty line."""
    points = sorted(set(cuts))
    chunks = [CHUNKED[a:b] for a, b in zip([0, *points], [*points, len(CHUNKED)], strict=True)]
    parser, done, at = parse(*chunks)
    assert done and at == len(chunks) and parser.received == len(CHUNKED)


def test_body_until_close() -> None:
    """No length and not chunked: the body ends with the connection, which then must not be reused."""
    parser, done, _ = parse(b"HTTP/1.1 200 OK\r\n\r\npartial", b"more")
    assert not done and parser.eof() and parser.close


def test_responses_without_body() -> None:
    """HEAD, 204 and 304 answers end with their head, whatever Content-Length says."""
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", no_body=True)[1]
    assert parse(b"HTTP/1.1 204 No Content\r\n\r\n")[1]
    assert parse(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")[1]


def test_interim_100_continue_is_skipped() -> None:
    """A 100 Continue before the answer is not the answer."""
    parser, done, _ = parse(
        b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    assert done and parser.status == 201


def test_connection_close_and_http_10() -> None:
    """`Connection: close`, or HTTP/1.0 without keep-alive, mark the connection as closing."""
    assert parse(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n")[0].close
    assert parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")[0].close
    assert not parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")[0].close


def test_a_parser_is_reusable_after_odd_responses() -> None:
    """After a chunked or until-close response, reset leaves no state behind for the next one."""
    parser, _, _ = parse(CHUNKED)
    parser.reset(no_body=False)
    assert parser.feed(RESPONSE) and parser.served_by == "web2" and parser.received == len(RESPONSE)


@pytest.mark.parametrize(
    "garbage",
    [
        b"<html>hello</html>\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    ],
)
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    """What is not HTTP/1.x raises, so the engine counts a 'protocol' error instead of hanging."""
    with pytest.raises(ProtocolError):
        parse(garbage)


def test_count_header_can_be_turned_off() -> None:
    """An empty header name never matches."""
    parser = ResponseParser(header_key(""))
    parser.reset(no_body=False)
    assert parser.feed(RESPONSE) and parser.served_by is None


def test_a_head_seen_before_means_the_same_for_each_count_header() -> None:
    """A repeated head is looked up, not parsed again: the same status, server, length and close as the
    first time, and a parser counting another header gets that header's value, not the cached one."""
    head = (
        b"HTTP/1.1 200 OK\r\nX-Served-By: web1\r\nX-Node: n7\r\nConnection: close\r\n"
        b"Content-Length: 3\r\n\r\n"
    )
    first, done, _ = parse(head + b"abc")
    assert done and (first.status, first.served_by, first.close) == (200, "web1", True)
    again, done, _ = parse(head, b"ab", b"c")
    assert done and (again.status, again.served_by, again.close, again.received) == (
        200,
        "web1",
        True,
        len(head) + 3,
    )
    other = ResponseParser(header_key("X-Node"))
    other.reset(no_body=False)
    assert other.feed(head + b"abc") and other.served_by == "n7"


def test_garbage_is_an_error_every_time_and_the_cache_is_bounded() -> None:
    """A head that is not HTTP is never remembered; distinct heads past the bound leave the cache bounded."""
    for _ in range(2):
        with pytest.raises(ProtocolError):
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
    for i in range(http.HEADS_MAX + 10):
        assert parse(f"HTTP/1.1 200 OK\r\nX-Request-Id: {i}\r\nContent-Length: 0\r\n\r\n".encode())[1]
    assert 0 < len(http._HEADS[KEY]) <= http.HEADS_MAX
