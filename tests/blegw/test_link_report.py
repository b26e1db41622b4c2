"""The link report in relay responses (relay contract key 7): what a gateway says about the
link an answer came over. Optional (older gateways send none), strictly decoded (a hostile
gateway's malformed report is refused with the request id, so the request is still answered),
and in the contract's CDDL."""

from __future__ import annotations

import cbor2
import pytest

from blegw.link_report import link_report
from relay_contract import (
    LinkReport,
    MalformedRelayMessage,
    RelayResponse,
    RelayStatus,
    decode_from_gateway,
)
from tests.test_cddl_contracts import assert_valid, valid

RID = b"\x11" * 16


def test_a_report_round_trips_and_an_answer_without_one_stays_as_before() -> None:
    link = LinkReport.from_text("C0:FF:EE:00:00:01", "00:1a:7d:da:71:13")
    assert (link.peer.hex(), link.central.hex()) == ("c0ffee000001", "001a7dda7113")
    with_link = RelayResponse(RID, RelayStatus.OK, b"\xa0", link=link).encode()
    assert decode_from_gateway(with_link) == RelayResponse.decode(with_link)
    assert RelayResponse.decode(with_link).link == link
    assert_valid("relay-response", with_link)
    without = RelayResponse(RID, RelayStatus.OK, b"\xa0").encode()
    assert RelayResponse.decode(without).link is None
    assert 7 not in cbor2.loads(without)
    assert_valid("relay-response", without)


@pytest.mark.parametrize("report", [
    {1: bytes(6)}, {1: bytes(6), 2: bytes(5)}, {1: bytes(7), 2: bytes(6)},
    {1: bytes(6), 2: bytes(6), 3: bytes(6)}, [bytes(6), bytes(6)], "C0:FF:EE:00:00:01",
    {1: "C0:FF:EE:00:00:01", 2: bytes(6)}])
def test_a_hostile_report_is_refused_with_the_request_id(report: object) -> None:
    raw = cbor2.dumps({1: RID, 2: 0, 3: b"", 4: "", 5: {}, 7: report}, canonical=True)
    for decoder in (RelayResponse.decode, decode_from_gateway):
        with pytest.raises(MalformedRelayMessage) as caught:
            decoder(raw)
        assert caught.value.request_id == RID
    assert not valid("relay-response", raw)


def test_the_gateway_reports_nothing_rather_than_something_wrong() -> None:
    assert link_report("C0:FF:EE:00:00:01", None) is None
    assert link_report("not an address", "00:1A:7D:DA:71:13") is None
    assert link_report("C0:FF:EE:00:00:01", "00:1A:7D:DA:71:13") == LinkReport(
        bytes.fromhex("c0ffee000001"), bytes.fromhex("001a7dda7113"))
