"""The client's read-your-writes token: the furthest Catalog-LSN seen wins, whatever order answers
arrive in (concurrent requests), and garbage never replaces a position."""

from __future__ import annotations

from catalog_client._protocol import LSN_HEADER, WritePosition


def test_the_furthest_position_is_kept_and_sent_back() -> None:
    position = WritePosition()
    assert position.headers() == {}
    position.observe({LSN_HEADER: "0/16B3748"})
    position.observe({LSN_HEADER: "0/9FFFFFF"})  # numerically after, textually before
    position.observe({LSN_HEADER: "0/16B3747"})  # an older answer arriving late
    position.observe({LSN_HEADER: "not-a-position"})
    position.observe({})
    assert position.headers() == {LSN_HEADER: "0/9FFFFFF"}
    position.observe({LSN_HEADER: "1/0"})  # the high half counts first
    assert position.lsn == "1/0"
