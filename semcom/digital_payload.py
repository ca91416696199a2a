"""The ``digital_payload`` codec: the whole feature map at ``bits`` bits per value.

The digital chain of ``v2x.semcom.digital`` (quantise → entropy code → CRC → 5G LDPC → QAM)
with no channel-use budget: every value of the ``[C, H, W]`` map is quantised to ``bits`` bits
(4–8 for realistic payloads: a 64 × 128 × 128 map of the shipped detector is 3.4 Mbit at 4 bits
and 7.6 Mbit at 8 bits after ANS, per link), all of it is sent, and whatever the link's MCS and
bandwidth make of it is charged (channel uses, packets, latency at the scheduled share). A
payload that misses the deadline is dropped by the budget like any other. Its defaults decode
every code block with the batched min-sum LDPC decoder (``decoder="exact"``,
``ldpc_decoder="minsum"``): real bits through a real decoder, at GPU speed.

It is the realistic-payload row of the main result, beside DeepJSCC at its channel-use budget
(``conf/sweep_digital_payload.yaml``); its ``bits`` is recorded in the results column
``bits_per_value`` so that several bit depths are separate rows and lines.
"""

from __future__ import annotations

from v2x.semcom.base import CODECS
from v2x.semcom.digital import DigitalCodec


@CODECS.register("digital_payload")
class DigitalPayloadCodec(DigitalCodec):
    """``DigitalCodec`` sending the whole map at ``bits`` bits per value (see module doc).

    Args:
        bits: quantiser bits per value (1…16), never lowered (``min_bits = bits``).
        decoder, ldpc_decoder: as ``DigitalCodec``'s; default ``"exact"`` with ``"minsum"``.
        target_unit: as ``DigitalCodec``'s; default ``"block"``: this codec's sweep resends the
            failed code blocks (HARQ), so a failed block costs a resend, not its segment — 5G's
            10 % first-transmission block error rate with code-block-group retransmission.
        **kwargs: every other ``DigitalCodec`` argument except ``max_channel_uses`` and
            ``min_bits`` (a budget would make it a different codec: use ``digital``).
    """

    #: ``bits`` is recorded per results row (``bits_per_value``); HARQ rounds as ``digital``.
    sweep_arguments = frozenset({"harq_max_rounds", "bits"})
    default_bits = 8

    def __init__(
        self,
        bits: int = default_bits,
        decoder: str = "exact",
        ldpc_decoder: str = "minsum",
        target_unit: str = "block",
        **kwargs,
    ) -> None:
        for name in ("max_channel_uses", "min_bits"):
            if kwargs.get(name) is not None and not (name == "min_bits" and kwargs[name] == bits):
                raise ValueError(
                    f"digital_payload: '{name}' is {kwargs[name]!r}, but this codec sends the "
                    f"whole map at 'bits' bits per value; use codec 'digital' for a budget"
                )
            kwargs.pop(name, None)
        super().__init__(
            bits=bits,
            decoder=decoder,
            ldpc_decoder=ldpc_decoder,
            target_unit=target_unit,
            min_bits=bits,
            max_channel_uses=None,
            **kwargs,
        )

