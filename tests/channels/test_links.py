"""Path-loss models vs values computed here from the standards' tables (independent re-typing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.channels import LINKS, build_link, link_summary
from v2x.channels.link import LOS, NLOS, NLOSV

C = 299_792_458.0
lg = math.log10


def pl(name: str, d: float, cond: str = "los", **kw) -> float:
    m = build_link(name=name, los_mode=cond, shadowing=False, distance_m=d, **kw)
    return float(m().path_loss_db[0])


@pytest.mark.parametrize("d", [1.0, 37.0, 1000.0])
@pytest.mark.parametrize("f", [0.9e9, 5.9e9, 28e9])
def test_free_space(d: float, f: float) -> None:
    oracle = 32.45 + 20 * lg(f / 1e9) + 20 * lg(d)  # the textbook constant (rounded)
    assert pl("free_space", d, carrier_hz=f) == pytest.approx(oracle, abs=0.01)


@pytest.mark.parametrize("d", [10.0, 120.0, 700.0])
@pytest.mark.parametrize("f", [5.9e9, 28e9, 63e9])
def test_v2v_los_nlos_nlosv_table(d: float, f: float) -> None:
    fc = f / 1e9
    hw = 32.4 + 20 * lg(d) + 20 * lg(fc)
    ur = 38.77 + 16.7 * lg(d) + 18.2 * lg(fc)
    nl = 36.85 + 30 * lg(d) + 18.9 * lg(fc)
    mu_both_below = 9 + max(0.0, 15 * lg(d) - 41)
    assert pl("v2v_highway", d, carrier_hz=f) == pytest.approx(hw, abs=1e-4)
    assert pl("v2v_urban", d, carrier_hz=f) == pytest.approx(ur, abs=1e-4)
    for name in ("v2v_highway", "v2v_urban"):
        m = build_link(name=name, shadowing=False, distance_m=d, carrier_hz=f, los_mode="geometric")
        # Antennas at 1.5 m below a 1.6 m blocker: both below → μ_a = 9 + max(0, 15 log d − 41).
        st = m(h_tx_m=1.5, h_rx_m=1.5, los=torch.tensor([NLOSV]))
        los = hw if name == "v2v_highway" else ur
        assert float(st.path_loss_db[0]) == pytest.approx(los + mu_both_below, abs=1e-4)
        assert float(m(los=torch.tensor([NLOS])).path_loss_db[0]) == pytest.approx(nl, abs=1e-4)
    # One antenna above the blocker (truck cab): μ_a = 5 + ...; both above: no blockage.
    m = build_link(name="v2v_urban", shadowing=False, distance_m=d, carrier_hz=f, los_mode="nlos")
    assert float(m(h_tx_m=1.5, h_rx_m=2.5).path_loss_db[0]) == pytest.approx(
        38.77
        + 16.7 * lg(math.hypot(d, 1.0))
        + 18.2 * lg(fc)
        + 5
        + max(0, 15 * lg(math.hypot(d, 1)) - 41),
        abs=1e-4,
    )
    assert float(m(h_tx_m=2.0, h_rx_m=2.5).path_loss_db[0]) == pytest.approx(
        38.77 + 16.7 * lg(math.hypot(d, 0.5)) + 18.2 * lg(fc), abs=1e-4
    )


def test_v2v_los_probability_and_sampled_statistics() -> None:
    d = np.array([20.0, 100.0, 300.0, 500.0, 800.0])
    urban = np.minimum(1, 1.05 * np.exp(-0.0114 * d))
    highway = np.where(
        d <= 475,
        np.minimum(1, 2.1013e-6 * d**2 - 0.002 * d + 1.0193),
        np.maximum(0, 0.54 - 0.001 * (d - 475)),
    )
    for name, oracle in (("v2v_urban", urban), ("v2v_highway", highway)):
        st = build_link(name=name)(distance_m=torch.tensor(d))
        np.testing.assert_allclose(st.extra["p_los"].numpy(), oracle, rtol=1e-5)
    # Sampled LOS fraction, shadowing σ (3 dB LOS) and the NLOSv blockage log-normal moments.
    m = build_link(name="v2v_urban", seed=1)
    st = m(distance_m=torch.full((20_000,), 100.0), h_tx_m=1.5, h_rx_m=1.5)
    p = 1.05 * math.exp(-1.14)
    assert abs(float(st.los.float().mean()) - p) < 5 * math.sqrt(p * (1 - p) / 20_000)
    assert float(st.extra["shadow_db"].std()) == pytest.approx(3.0, rel=0.03)  # σ ≈ 0.5 %
    # NLOSv blockage A = max(0, N(μ, σ²)) dB, μ = 9 (15 log 100 − 41 < 0), σ = 4.5: the clipped
    # normal's mean μΦ(a) + σφ(a) and second moment (μ² + σ²)Φ(a) + μσφ(a), a = μ/σ (the
    # oracle was μ and σ themselves, the moments of the unclipped variable). 5 σ of the sample.
    blk = st.extra["blockage_db"][~st.los].double()
    mu, sd = 9.0, 4.5
    a = mu / sd
    big_phi, small_phi = (
        0.5 * math.erfc(-a / math.sqrt(2)),
        math.exp(-a * a / 2) / math.sqrt(2 * math.pi),
    )
    mean = mu * big_phi + sd * small_phi
    var = (mu**2 + sd**2) * big_phi + mu * sd * small_phi - mean**2
    n = blk.numel()
    assert abs(float(blk.mean()) - mean) < 5 * math.sqrt(var / n)
    var_hat = float(blk.var())
    sigma_var = float((blk - blk.mean()).pow(2).std()) / math.sqrt(n)  # s.e. of the sample variance
    assert abs(var_hat - var) < 5 * sigma_var, (var_hat, var, sigma_var)


@pytest.mark.parametrize(
    ("d", "h_tx", "mu", "sd"),
    [
        (100.0, 1.5, 9.0, 4.5),  # case 2: both antennas below the 1.6 m blocker
        (100.0, 2.5, 5.0, 4.0),  # case 3: one above
        (1000.0, 1.5, 9.0 + 15 * math.log10(math.hypot(1000.0, 0.0)) - 41, 4.5),  # distance term
    ],
)
def test_v2v_nlosv_blockage_without_shadowing_is_the_median_of_the_draws(
    d: float, h_tx: float, mu: float, sd: float
) -> None:
    """TR 37.885 §6.2.1: A = max(0 dB, X), X log-normal with mean μ_a and std σ_a in dB (i.e.
    N(μ_a, σ_a²) in dB). ``shadowing: false`` returns μ_a, which must be the median of the draws:
    the sample median of n draws has σ = 1/(2 f(m) √n), f(m) = 1/(σ_a √(2π)) the density at the
    median. The clipped mass P(A = 0) = Φ(−μ_a/σ_a) is checked within 5 binomial σ."""
    n = 200_000
    kw = {"name": "v2v_urban", "los_mode": "nlos", "h_tx_m": h_tx, "h_rx_m": 1.5}
    fixed = build_link(**kw, shadowing=False)(distance_m=torch.tensor([d]))
    blk0 = float(fixed.extra["blockage_db"][0])
    assert blk0 == pytest.approx(mu, abs=1e-3)
    draws = build_link(**kw, shadowing=True, seed=3)(distance_m=torch.full((n,), d))
    blk = draws.extra["blockage_db"].double()
    sigma_median = sd * math.sqrt(2 * math.pi) / (2 * math.sqrt(n))
    assert abs(float(blk.median()) - blk0) < 5 * sigma_median, (float(blk.median()), blk0)
    p0 = 0.5 * math.erfc(mu / sd / math.sqrt(2))
    frac0 = float((blk == 0).double().mean())
    assert abs(frac0 - p0) < 5 * math.sqrt(p0 * (1 - p0) / n), (frac0, p0)


def umi_oracle(d2, h_bs, h_ut, fc, nlos):
    d3 = math.hypot(d2, h_bs - h_ut)
    bp = 4 * (h_bs - 1) * (h_ut - 1) * fc * 1e9 / C
    if d2 <= bp:
        los = 32.4 + 21 * lg(d3) + 20 * lg(fc)
    else:
        los = 32.4 + 40 * lg(d3) + 20 * lg(fc) - 9.5 * lg(bp**2 + (h_bs - h_ut) ** 2)
    if not nlos:
        return los
    return max(los, 35.3 * lg(d3) + 22.4 + 21.3 * lg(fc) - 0.3 * (h_ut - 1.5))


@pytest.mark.parametrize(
    ("d", "h_ut", "f"),
    [(30.0, 1.5, 3.5e9), (300.0, 1.5, 5.9e9), (900.0, 8.0, 28e9), (2000.0, 1.5, 2e9)],
)
def test_umi_street_canyon_table(d: float, h_ut: float, f: float) -> None:
    for cond, nlos in (("los", False), ("nlos", True)):
        got = pl("umi_street_canyon", d, cond, carrier_hz=f, h_rx_m=h_ut)
        assert got == pytest.approx(umi_oracle(d, 10.0, h_ut, f / 1e9, nlos), abs=1e-4)
    st = build_link(name="umi_street_canyon")(distance_m=torch.tensor([5.0, 18.0, 50.0]))
    ref = [1.0, 1.0, 18 / 50 + math.exp(-50 / 36) * (1 - 18 / 50)]
    np.testing.assert_allclose(st.extra["p_los"].numpy(), ref, rtol=1e-6)


@pytest.mark.parametrize(
    ("d", "h", "f"), [(100.0, 50.0, 2e9), (1000.0, 120.0, 2e9), (3000.0, 250.0, 3.5e9)]
)
def test_aerial_tr36777_table(d: float, h: float, f: float) -> None:
    fc = f / 1e9
    ld = lambda hb: lg(math.hypot(d, h - hb))  # noqa: E731
    # UMa-AV
    assert pl("uma_av", d, "los", h_rx_m=h, carrier_hz=f) == pytest.approx(
        28 + 22 * ld(25) + 20 * lg(fc), abs=1e-4
    )
    nl = -17.5 + (46 - 7 * lg(h)) * ld(25) + 20 * lg(40 * math.pi * fc / 3)
    assert pl("uma_av", d, "nlos", h_rx_m=h, carrier_hz=f) == pytest.approx(nl, abs=1e-4)
    # UMi-AV
    d3 = math.hypot(d, h - 10)
    fs = 20 * lg(4 * math.pi * d3 * f / C)
    los = max(fs, 30.9 + (22.25 - 0.5 * lg(h)) * ld(10) + 20 * lg(fc))
    assert pl("umi_av", d, "los", h_rx_m=h, carrier_hz=f) == pytest.approx(los, abs=1e-4)
    nl = max(los, 32.4 + (43.2 - 7.6 * lg(h)) * ld(10) + 20 * lg(fc))
    assert pl("umi_av", d, "nlos", h_rx_m=h, carrier_hz=f) == pytest.approx(nl, abs=1e-4)
    # RMa-AV
    los = max(23.9 - 1.8 * lg(h), 20) * ld(35) + 20 * lg(40 * math.pi * fc / 3)
    assert pl("rma_av", d, "los", h_rx_m=h, carrier_hz=f) == pytest.approx(los, abs=1e-4)
    nl = max(los, -12 + (35 - 5.3 * lg(h)) * ld(35) + 20 * lg(40 * math.pi * fc / 3))
    assert pl("rma_av", d, "nlos", h_rx_m=h, carrier_hz=f) == pytest.approx(nl, abs=1e-4)


def test_aerial_los_probability_and_fallback() -> None:
    h, d = 60.0, 800.0
    d1 = max(460 * lg(h) - 700, 18)
    p1 = 4300 * lg(h) - 3800
    st = build_link(name="uma_av")(distance_m=d, h_rx_m=h)
    assert float(st.extra["p_los"][0]) == pytest.approx(
        d1 / d + math.exp(-d / p1) * (1 - d1 / d), rel=1e-5
    )
    assert float(build_link(name="uma_av")(distance_m=d, h_rx_m=150.0).extra["p_los"][0]) == 1.0
    d1 = max(294.05 * lg(h) - 432.94, 18)
    p1 = 233.98 * lg(h) - 0.95
    st = build_link(name="umi_av")(distance_m=d, h_rx_m=h)
    assert float(st.extra["p_los"][0]) == pytest.approx(
        d1 / d + math.exp(-d / p1) * (1 - d1 / d), rel=1e-5
    )
    h = 20.0
    d1, p1 = max(1350.8 * lg(h) - 1602, 18), max(15021 * lg(h) - 16053, 1000)
    st = build_link(name="rma_av")(distance_m=d, h_rx_m=h)
    assert float(st.extra["p_los"][0]) == pytest.approx(
        d1 / d + math.exp(-d / p1) * (1 - d1 / d), rel=1e-5
    )
    # Below 22.5 m: UMi-AV falls back to TR 38.901 UMi street canyon; UMa-AV to UMa.
    assert pl("umi_av", 200.0, "nlos", h_rx_m=1.5, carrier_hz=2e9) == pytest.approx(
        umi_oracle(200.0, 10.0, 1.5, 2.0, True), abs=1e-4
    )
    d3 = math.hypot(200.0, 23.5)
    assert pl("uma_av", 200.0, "los", h_rx_m=1.5, carrier_hz=2e9) == pytest.approx(
        28 + 22 * lg(d3) + 20 * lg(2.0), abs=1e-4
    )  # below the breakpoint 4·24·0.5·2e9/c = 640 m
    # RMa (h_UT 1.5 m, h_BS 35 m, fc 2 GHz, d 200 m < d_BP): PL1 with h = 5 m.
    d3 = math.hypot(200.0, 33.5)
    pl1 = (
        20 * lg(40 * math.pi * d3 * 2 / 3)
        + min(0.03 * 5**1.72, 10) * lg(d3)
        - min(0.044 * 5**1.72, 14.77)
        + 0.002 * lg(5) * d3
    )
    assert pl("rma_av", 200.0, "los", h_rx_m=1.5, carrier_hz=2e9) == pytest.approx(pl1, abs=1e-4)


@pytest.mark.parametrize("env", ["suburban", "urban", "dense_urban", "highrise_urban"])
def test_al_hourani(env: str) -> None:
    a, b, e_los, e_nlos = {
        "suburban": (4.88, 0.43, 0.1, 21),
        "urban": (9.61, 0.16, 1.0, 20),
        "dense_urban": (12.08, 0.11, 1.6, 23),
        "highrise_urban": (27.23, 0.08, 2.3, 34),
    }[env]
    h, r = 200.0, 500.0
    theta = math.degrees(math.atan2(h - 1.5, r))
    p = 1 / (1 + a * math.exp(-b * (theta - a)))
    fs = 20 * lg(4 * math.pi * math.hypot(r, h - 1.5) * 2e9 / C)
    m = build_link(name="al_hourani", environment=env, los_mode="expected", h_tx_m=h, distance_m=r)
    st = m()
    assert float(st.extra["p_los"][0]) == pytest.approx(p, rel=1e-5)
    assert float(st.path_loss_db[0]) == pytest.approx(fs + p * e_los + (1 - p) * e_nlos, abs=1e-4)


def test_positions_and_geometric_los() -> None:
    m = build_link(name="v2v_highway", los_mode="geometric", shadowing=False)
    tx = torch.tensor([[0.0, 0.0, 1.6], [0.0, 0.0, 1.6]], dtype=torch.float64)
    rx = torch.tensor([[30.0, 40.0, 1.6], [60.0, 80.0, 1.6]], dtype=torch.float64)
    st = m(tx_pos=tx, rx_pos=rx, los=torch.tensor([True, False]))
    np.testing.assert_allclose(st.distance_m.numpy(), [50.0, 100.0])
    assert st.los.tolist() == [True, False]
    assert float(st.path_loss_db[0]) == pytest.approx(32.4 + 20 * lg(50) + 20 * lg(5.9), abs=1e-4)
    with pytest.raises(ValueError, match="geometric"):
        m(distance_m=10.0)


def test_link_budget_snr_and_summary() -> None:
    m = build_link(
        name="free_space",
        distance_m=100.0,
        tx_power_dbm=20.0,
        tx_gain_dbi=2.0,
        rx_gain_dbi=1.0,
        bandwidth_hz=10e6,
        noise_figure_db=7.0,
    )
    st = m()
    pl_ = 20 * lg(4 * math.pi * 100 * 5.9e9 / C)
    assert float(st.snr_db[0]) == pytest.approx(20 + 3 - pl_ - (-174 + 70 + 7), abs=1e-3)
    s = link_summary({"name": "v2v_urban", "distance_m": 150.0}, payload_bits=8e5)
    assert s["distance_m"] == pytest.approx(150.0)
    assert s["rate_bps"] == pytest.approx(20e6 * math.log2(1 + 10 ** (s["snr_db"] / 10)), rel=1e-5)
    assert s["latency_s"] == pytest.approx(
        math.ceil(8e5 / (s["rate_bps"] / 20e6)) / 20e6 + 150 / C, rel=1e-6
    )


def test_bad_link_inputs() -> None:
    with pytest.raises(ValueError, match="distance_m"):
        build_link(name="v2v_urban")(distance_m=-5.0)
    with pytest.raises(ValueError, match="carrier_hz"):
        build_link(name="v2v_urban", carrier_hz=200e9)
    with pytest.raises(ValueError, match="carrier_hz"):
        build_link(name="thz", carrier_hz=10e9)
    with pytest.raises(ValueError, match="carrier_hz"):
        build_link(name="thz", carrier_hz=600e9)  # beyond the closed form without a κ
    with pytest.raises(ValueError, match="h_rx_m"):
        build_link(name="uma_av")(h_rx_m=400.0)
    with pytest.raises(ValueError, match="h_rx_m"):
        build_link(name="umi_street_canyon")(h_rx_m=30.0)
    with pytest.raises(ValueError, match="los_mode"):
        build_link(name="v2v_urban", los_mode="maybe")
    with pytest.raises(ValueError, match="environment"):
        build_link(name="al_hourani", environment="forest")
    with pytest.raises(ValueError, match="distance_m"):
        build_link(name="free_space")(distance_m=float("nan"))
    with pytest.raises(ValueError, match="unknown link model"):
        build_link(name="v2v_rural")
    assert len(LINKS.names()) >= 9
    assert LOS == 0


@pytest.mark.parametrize(("d", "los_std"), [(1000.0, 4.0), (2100.0, 4.0), (2300.0, 6.0)])
def test_rma_shadowing_std_changes_at_the_breakpoint(d: float, los_std: float) -> None:
    """TR 38.901 Table 7.4.1-1 RMa: σ_SF 4 dB for PL1 (10 m ≤ d2D ≤ d_BP), 6 dB for PL2
    (d_BP < d2D ≤ 10 km), NLOS 8 dB; d_BP = 2π h_BS h_UT f_c / c = 2201 m for 35 m / 1.5 m /
    2 GHz (the ``rma_av`` fallback below 10 m). It used to be 4 dB at every distance."""
    assert 2 * math.pi * 35 * 1.5 * 2e9 / C == pytest.approx(2200.6, abs=0.1)
    m = build_link(name="rma_av", h_rx_m=1.5, carrier_hz=2e9)
    geo = m.geometry(distance_m=d)
    los = m.shadow_std_db(geo, torch.tensor([LOS]))
    nlos = m.shadow_std_db(geo, torch.tensor([NLOS]))
    assert (float(los[0]), float(nlos[0])) == (los_std, 8.0)


@pytest.mark.parametrize("name", ["v2v_highway", "v2v_urban"])
@pytest.mark.parametrize(("cond", "sigma"), [(LOS, 3.0), (NLOSV, 3.0), (NLOS, 4.0)])
def test_v2v_shadow_fading_std_per_condition(name: str, cond: int, sigma: float) -> None:
    """TR 37.885 Table 6.2.1-1 shadow-fading σ: 3 dB LOS and NLOSv, 4 dB NLOS, in both scenarios
    (as ns-3's ``ThreeGppV2vUrbanPropagationLossModel::GetShadowingStd``, which the highway model
    inherits). The draws' sample σ is checked too: its standard error is σ/√(2n) ≈ 0.5 %."""
    n = 20_000
    m = build_link(name=name, los_mode="geometric", seed=4)
    st = m(distance_m=torch.full((n,), 80.0), los=torch.full((n,), cond))
    assert float(st.extra["shadow_db"].std()) == pytest.approx(sigma, rel=0.03)
    geo = m.geometry(distance_m=torch.tensor([80.0]))
    assert float(m.shadow_std_db(geo, torch.tensor([cond]))[0]) == sigma
