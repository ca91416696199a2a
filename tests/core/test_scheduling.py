"""Bandwidth budget: shares, latency, deadline drops and AoI against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.scheduling import SCHEDULERS, BudgetConfig, novelty_from_visibility, schedule


def _kba(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype).view(1, 1, -1)


def test_equal_share_latency_and_deadline_drop():
    cfg = BudgetConfig(bandwidth_hz=10e6, deadline_s=0.05, scheduler="equal")
    assert cfg.channel_uses == pytest.approx(5e5)
    sent = _kba([False, True, True, True, False], torch.bool)
    uses = _kba([0, 1e5, 1.5e5, 2e5, 0])
    packets = _kba([0, 10, 15, 20, 0])
    d = schedule(cfg, sent, uses, packets, torch.zeros(1, 1, 5))
    assert d.share[0, 0].tolist() == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 0])
    rate = 10e6 / 3  # uses per second of each share
    assert d.latency_s[0, 0, 1].item() == pytest.approx(1e5 / rate)  # 0.03 s
    assert d.latency_s[0, 0, 3].item() == pytest.approx(2e5 / rate)  # 0.06 s > deadline
    assert d.on_time[0, 0].tolist() == [False, True, True, False, False]
    assert d.delivered[0, 0].tolist() == [False, True, True, False, False]
    assert d.packets_lost[0, 0].tolist() == [0, 0, 0, 20, 0]
    assert d.aoi_s[0, 0, 2].item() == pytest.approx(1.5e5 / rate)
    assert math.isnan(d.aoi_s[0, 0, 3].item()) and math.isnan(d.latency_s[0, 0, 4].item())


def test_a_payload_of_exactly_its_share_of_the_budget_is_on_time():
    """3 collaborators share 20 MHz for a 30 ms deadline: each gets W / 3, and 200 000 channel
    uses take 200 000 · 3 / 20e6 = 0.03 s exactly, which is not past the deadline. The share
    1/3 is inexact in float64: the latency used to come out 0.030000000000000002 s, dropped.
    One use more (30.00015 ms) is late."""
    cfg = BudgetConfig(bandwidth_hz=20e6, deadline_s=0.03)
    sent = _kba([False, True, True, True], torch.bool)
    uses = _kba([0, 2e5, 2e5, 2e5 + 1])
    d = schedule(cfg, sent, uses, _kba([0, 1, 1, 1]), torch.zeros(1, 1, 4))
    assert d.latency_s[0, 0, 1].item() == pytest.approx(2e5 * 3 / 20e6, rel=1e-15)
    assert d.latency_s[0, 0, 3].item() == pytest.approx((2e5 + 1) * 3 / 20e6, rel=1e-15)
    assert d.on_time[0, 0].tolist() == [False, True, True, False]
    assert d.delivered[0, 0].tolist() == [False, True, True, False]
    assert d.aoi_s[0, 0, 1].item() == pytest.approx(0.03, rel=1e-15)
    assert d.packets_lost[0, 0].tolist() == [0, 0, 0, 1]


def test_stale_policy_keeps_late_payloads_with_their_age():
    cfg = BudgetConfig(
        bandwidth_hz=1e6, deadline_s=0.1, late_policy="stale", processing_latency_s=0.01
    )
    sent = _kba([False, True], torch.bool)
    d = schedule(cfg, sent, _kba([0, 2e5]), _kba([0, 5]), torch.zeros(1, 1, 2))
    assert d.latency_s[0, 0, 1].item() == pytest.approx(0.01 + 0.2)
    assert not d.on_time[0, 0, 1] and d.delivered[0, 0, 1]
    assert d.aoi_s[0, 0, 1].item() == pytest.approx(0.21)
    assert d.packets_lost.sum().item() == 0


def test_importance_weights_novelty_and_link_quality():
    cfg = BudgetConfig(scheduler="importance", alpha=1.0, beta=1.0)
    sent = _kba([False, True, True], torch.bool)
    snr = _kba([0.0, 10 * math.log10(3), 10 * math.log10(15)])  # capacities 2 and 4 bit/use
    novelty = torch.tensor([[0.0, 3.0, 1.0]])
    d = schedule(cfg, sent, _kba([0, 1, 1]), _kba([0, 1, 1]), snr, novelty)
    w1, w2 = (1 + 3) * 2.0, (1 + 1) * 4.0
    assert d.share[0, 0, 1].item() == pytest.approx(w1 / (w1 + w2))
    assert d.share[0, 0, 2].item() == pytest.approx(w2 / (w1 + w2))


def test_unsent_links_get_nothing_and_registry_lists_schedulers():
    cfg = BudgetConfig(scheduler="importance")
    sent = torch.zeros(2, 1, 3, dtype=torch.bool)
    d = schedule(cfg, sent, torch.zeros(2, 1, 3), torch.zeros(2, 1, 3), torch.zeros(2, 1, 3))
    assert d.share.abs().sum() == 0 and not d.delivered.any()
    assert {"equal", "importance"} <= set(SCHEDULERS.names())


def test_novelty_counts_objects_only_collaborators_see():
    vis = torch.tensor([[[5, 0, 0, -1], [0, 3, 0, -1], [2, 1, 4, -1]]], dtype=torch.int32)
    mask = torch.tensor([[True, True, True, False]])
    assert novelty_from_visibility(vis, mask).tolist() == [[0.0, 1.0, 2.0]]


def test_bad_budget_config():
    with pytest.raises(ValueError, match="scheduler.*equal, importance"):
        BudgetConfig(scheduler="fifo")
    with pytest.raises(ValueError, match="late_policy.*drop, stale"):
        BudgetConfig(late_policy="maybe")
    with pytest.raises(ValueError, match="deadline_s"):
        BudgetConfig(deadline_s=0)
    with pytest.raises(ValueError, match="unknown field"):
        BudgetConfig.from_dict({"deadline": 1})


def test_a_setting_is_skipped_as_never_delivering_only_when_even_the_whole_band_is_too_slow():
    """``sweep_order._never_delivers`` (a setting whose every cell is then the ego's alone)
    against the closed form: the identity codec's float16 map of C·h·w values at the Shannon
    rate needs ⌈16·C·h·w / log2(1 + 10^(snr/10))⌉ channel uses, on air for uses / W seconds
    after the processing latency; it never delivers iff that misses the deadline at every SNR."""
    from v2x.semcom.identity import IdentityCodec
    from v2x.sweep_order import _never_delivers

    shape = (64, 32, 32)  # 1,048,576 bits per map
    uses = lambda snr: math.ceil(16 * 64 * 32 * 32 / math.log2(1 + 10 ** (snr / 10)))  # noqa: E731
    codec = IdentityCodec()
    # 10 dB: 303,107 uses; on a 1 MHz band 0.303 s, past a 100 ms deadline; at 30 dB 105,203
    # uses = 0.105 s, still past; with the band at 3.1 MHz the 30 dB map arrives in 34 ms
    assert uses(10) == 303_107 and uses(30) == 105_203
    slow = BudgetConfig(bandwidth_hz=1e6, deadline_s=0.1)
    assert _never_delivers(codec, shape, [10.0, 30.0], slow)
    assert not _never_delivers(codec, shape, [10.0, 30.0], BudgetConfig(bandwidth_hz=3.1e6))
    # exactly on time at the deadline (uses / W == deadline) is delivered; one use more is not
    exact = BudgetConfig(bandwidth_hz=uses(30) / 0.1, deadline_s=0.1)
    assert not _never_delivers(codec, shape, [30.0], exact)
    late = BudgetConfig(bandwidth_hz=uses(30) / 0.1, deadline_s=0.1, processing_latency_s=1e-6)
    assert _never_delivers(codec, shape, [30.0], late)
    # a stale policy fuses late payloads: never skipped
    assert not _never_delivers(
        codec, shape, [10.0], BudgetConfig(bandwidth_hz=1e6, late_policy="stale")
    )


def test_a_frames_channel_use_budget_is_the_airtime_its_deadline_leaves_after_processing():
    """A rate-adaptive codec sized to ``BudgetConfig.channel_uses`` (bandwidth × deadline) with
    a processing latency missed the deadline by exactly that latency. Closed form: W·(D − p)
    uses; a payload of that many uses, alone on the band, arrives at p + uses / W = D."""
    from v2x.scheduling import meets_deadline

    budget = BudgetConfig(bandwidth_hz=2e6, deadline_s=0.1, processing_latency_s=0.025)
    assert budget.channel_uses == pytest.approx(2e6 * 0.075)
    arrival = budget.processing_latency_s + budget.channel_uses / budget.bandwidth_hz
    assert meets_deadline(arrival, budget.deadline_s)
    assert not meets_deadline(arrival + 1 / budget.bandwidth_hz, budget.deadline_s)
    assert BudgetConfig(bandwidth_hz=2e6, deadline_s=0.1).channel_uses == pytest.approx(2e5)
    assert BudgetConfig(deadline_s=0.01, processing_latency_s=0.02).channel_uses == 0.0


@pytest.mark.parametrize("scheduler", ["equal", "importance"])
def test_a_link_with_no_channel_uses_takes_no_share_of_the_band(scheduler):
    """A collaborator that sends no channel use (late fusion with no box, a digital payload
    whose header does not fit: ``sent`` with 0 uses) left the others only 1/3 of the band each
    instead of 1/2. Closed form: two payloads of 3·10⁴ uses on halves of 1 MHz arrive after
    3·10⁴ / 5·10⁵ = 60 ms, inside an 80 ms deadline (at 1/3: 90 ms, dropped)."""
    cfg = BudgetConfig(bandwidth_hz=1e6, deadline_s=0.08, scheduler=scheduler)
    sent = _kba([False, True, True, True], torch.bool)
    uses = _kba([0, 3e4, 3e4, 0])
    d = schedule(cfg, sent, uses, _kba([0, 3, 3, 0]), _kba([0.0, 10.0, 10.0, 10.0]))
    assert d.share[0, 0].tolist() == pytest.approx([0, 0.5, 0.5, 0])
    assert d.latency_s[0, 0, 1:3].tolist() == pytest.approx([0.06, 0.06])
    assert d.delivered[0, 0].tolist() == [False, True, True, True]
    assert d.latency_s[0, 0, 3].item() == 0.0  # nothing on air: the processing latency alone
    assert d.packets_lost[0, 0].tolist() == [0, 0, 0, 0]


def test_a_rate_adaptive_codec_is_sized_to_the_airtime_left_after_the_added_delay():
    """``grid.added_delay_s`` is on top of the processing latency (``Group.budget``), but the
    ``max_channel_uses`` filled in for a rate-adaptive codec was the plan's share, without it:
    a payload that filled its share then missed the deadline by exactly the added delay, and
    ``late_policy=drop`` dropped every such payload. Closed form: W·(D − p − d) / n uses, which
    on a 1/n share arrive at p + d + (D − p − d) = D."""
    from v2x.scheduling import meets_deadline
    from v2x.sweep_group import filled_max_channel_uses, needs_most_links
    from v2x.sweep_plan import plan_sweep

    plan = plan_sweep(
        {
            "checkpoint": "untrained",
            "budget": {"bandwidth_hz": 2e6, "deadline_s": 0.1, "processing_latency_s": 0.01},
            "grid": {"snr_db": [3.0], "codecs": ["digital_fixed"], "fusions": ["max"],
                     "added_delay_s": [0.0, 0.04]},
        }
    )  # fmt: skip
    groups = {g.added_delay_s: g for g in plan.groups if g.codec == "digital_fixed"}
    assert sorted(groups) == [0.0, 0.04] and all(needs_most_links(g) for g in groups.values())
    links = 4
    for delay, group in groups.items():
        uses = filled_max_channel_uses(group, plan.budget, links)
        assert uses == math.floor(2e6 * (0.1 - 0.01 - delay) / links + 1e-6)  # 45,000 / 25,000
        d = schedule(
            group.budget(plan.budget),
            _kba([False] + [True] * links, torch.bool),
            _kba([0] + [uses] * links),
            _kba([0] + [1] * links),
            torch.zeros(1, 1, links + 1),
        )
        assert bool(d.on_time[0, 0, 1:].all())
        arrival = 0.01 + delay + uses / (2e6 / links)
        assert meets_deadline(arrival, 0.1) and not meets_deadline(arrival + 0.5 / 2e6, 0.1)
