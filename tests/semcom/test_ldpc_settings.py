"""LDPC decoder settings of the digital codec are checked when it is built: Sionna's decoder
checks ``num_iter`` and ``cn_update``, and the min-sum decoder ``num_iter``, only when they are
built, at the first exact decoding of an MCS, i.e. mid-sweep (Sionna-user audit)."""

from __future__ import annotations

import pytest

from v2x.semcom.digital import DigitalCodec
from v2x.semcom.fec import CN_UPDATES

#: Sionna's LDPCBPDecoder check-node updates, typed from its documentation.
SIONNA_CN_UPDATES = {"boxplus-phi", "boxplus", "minsum", "offset-minsum", "identity"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_iter", -3), ("num_iter", 2.5), ("num_iter", True), ("cn_update", "foo"),
     ("cn_update", "boxplus_phi")],
)  # fmt: skip
@pytest.mark.parametrize("ldpc_decoder", ["sionna", "minsum"])
def test_a_bad_ldpc_setting_is_refused_when_built(field, value, ldpc_decoder):
    with pytest.raises(ValueError, match=rf"^digital codec '{field}' must be .*got {value!r}$"):
        DigitalCodec(decoder="exact", ldpc_decoder=ldpc_decoder, **{field: value})


@pytest.mark.parametrize("cn_update", sorted(SIONNA_CN_UPDATES))
def test_every_sionna_check_node_update_is_taken(cn_update):
    assert set(CN_UPDATES) == SIONNA_CN_UPDATES
    codec = DigitalCodec(decoder="exact", cn_update=cn_update, num_iter=0)
    assert (codec.cn_update, codec.num_iter) == (cn_update, 0)
