"""Link budget (Shannon, finite blocklength, AoI), LOS slab test, THz absorption."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import LineString, Polygon

from v2x.channels import build_link, segments_blocked
from v2x.channels.budget import (
    age_of_information_s,
    capacity_bits_per_use,
    fbl_error_prob,
    fbl_rate_bits_per_use,
    thermal_noise_dbm,
)
from v2x.channels.thz import absorption_coefficient, misalignment_loss_db

C = 299_792_458.0


def test_thermal_noise() -> None:
    assert thermal_noise_dbm(20e6, 9.0) == pytest.approx(-174 + 73.0103 + 9, abs=1e-3)
    with pytest.raises(ValueError, match="bandwidth_hz"):
        thermal_noise_dbm(0.0, 9.0)


def test_finite_blocklength_below_capacity_and_converges() -> None:
    for snr_db in (0.0, 10.0, 20.0):
        p = 10 ** (snr_db / 10)
        cap = math.log2(1 + p)
        v = p * (p + 2) / (p + 1) ** 2 * math.log2(math.e) ** 2
        rates = [
            float(fbl_rate_bits_per_use(snr_db, n, 1e-5)) for n in (100, 1000, 10_000, 1_000_000)
        ]
        assert all(r < cap for r in rates) and rates == sorted(rates)
        assert rates[-1] == pytest.approx(cap, rel=0.01)
        q = 4.264890793922602  # Q^{-1}(1e-5)
        assert rates[0] == pytest.approx(
            cap - math.sqrt(v / 100) * q + math.log2(100) / 200, rel=1e-6
        )
        assert float(capacity_bits_per_use(snr_db)) == pytest.approx(cap)
        # error probability at the FBL rate is the target ε (the two are inverses).
        k = rates[1] * 1000
        assert float(fbl_error_prob(snr_db, 1000, k)) == pytest.approx(1e-5, rel=1e-3)


def test_age_of_information_matches_simulation() -> None:
    rng = np.random.default_rng(0)
    delta, lat, p = 0.1, 0.03, 0.3
    n = 200_000
    gen = np.arange(n) * delta
    ok = rng.random(n) >= p
    # Time-average of the sawtooth age between consecutive deliveries.
    g, t = gen[ok], gen[ok] + lat
    # Age grows linearly from (t_i − g_i) to (t_{i+1} − g_i) between deliveries i and i+1.
    area = ((t[1:] - g[:-1]) ** 2 - (t[:-1] - g[:-1]) ** 2) / 2
    aoi_sim = area.sum() / (t[-1] - t[0])
    assert float(age_of_information_s(lat, delta, p)) == pytest.approx(aoi_sim, rel=0.01)
    assert float(age_of_information_s(lat, delta)) == pytest.approx(lat + delta / 2)
    with pytest.raises(ValueError, match="loss_prob"):
        age_of_information_s(lat, delta, 1.0)


def _sample_oracle(p0, p1, boxes, samples=4001):
    """Dense point sampling: a segment is blocked if any sample lies inside a box."""
    t = np.linspace(0, 1, samples)[:, None]
    out = []
    for a, b in zip(p0, p1):
        pts = a + t * (b - a)
        hit = False
        for x, y, z, length, w, h, yaw in boxes:
            d = pts - [x, y, z]
            c, s = math.cos(yaw), math.sin(yaw)
            lx, ly = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]
            inside = (abs(lx) <= length / 2) & (abs(ly) <= w / 2) & (abs(d[:, 2]) <= h / 2)
            hit |= bool(inside.any())
        out.append(hit)
    return np.array(out)


def test_segments_blocked_matches_shapely_and_sampling() -> None:
    rng = np.random.default_rng(1)
    boxes = np.array(
        [[10, 0, 1, 4.5, 1.8, 2.0, 0.3], [25, 5, 5, 10, 10, 10, -1.0], [0, 20, 1.5, 5, 2, 3.0, 1.2]]
    )
    p0 = rng.uniform([-10, -10, 0.5], [40, 30, 1.0], (300, 3))
    p1 = rng.uniform([-10, -10, 0.5], [40, 30, 1.0], (300, 3))
    got = segments_blocked(p0, p1, boxes, ignore_endpoint_boxes=False)
    assert isinstance(got, np.ndarray) and got.dtype == bool
    # Antennas below every box top → a 2D shapely intersection decides.
    polys = []
    for x, y, _z, length, w, _h, yaw in boxes:
        corners = np.array([[length, w], [-length, w], [-length, -w], [length, -w]]) / 2
        rot = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
        polys.append(Polygon(corners @ rot.T + [x, y]))
    shp = np.array(
        [any(LineString([a[:2], b[:2]]).intersects(p) for p in polys) for a, b in zip(p0, p1)]
    )
    assert (got == shp).mean() > 0.99 and got.sum() > 20
    # 3D: antennas at random heights, some passing over the boxes.
    p0[:, 2] = rng.uniform(0.5, 12, 300)
    p1[:, 2] = rng.uniform(0.5, 12, 300)
    got = segments_blocked(
        torch.as_tensor(p0),
        torch.as_tensor(p1),
        torch.as_tensor(boxes),
        ignore_endpoint_boxes=False,
    )
    assert isinstance(got, torch.Tensor)
    assert (got.numpy() == _sample_oracle(p0, p1, boxes)).mean() > 0.99


def test_segments_blocked_edge_cases() -> None:
    car = [[0.0, 0.0, 0.75, 4.0, 2.0, 1.5, 0.0]]
    p0 = np.array([[-10.0, 0, 1.0], [-10, 0, 2.0], [0, 0, 1.0], [-10, 5, 1.0]])
    p1 = np.array([[10.0, 0, 1.0], [10, 0, 2.0], [10, 0, 1.0], [10, 5, 1.0]])
    assert segments_blocked(p0, p1, car).tolist() == [True, False, False, False]  # own box ignored
    assert segments_blocked(p0, p1, car, ignore_endpoint_boxes=False).tolist() == [
        True,
        False,
        True,
        False,
    ]
    blocked, mat = segments_blocked(p0, p1, np.zeros((0, 7)), return_matrix=True)
    assert not blocked.any() and mat.shape == (4, 0)
    with pytest.raises(ValueError, match="boxes"):
        segments_blocked(p0, p1, [[0, 0, 0, -1, 1, 1, 0]])


def kokkoniemi2020(f, t=296.0, p_hpa=1013.25, rh=50.0):
    """Re-typed from Kokkoniemi et al. 2020 (arXiv:2002.04918), eqs. for y1..y6 and g(f)."""
    pw = 6.1121 * (1.0007 + 3.46e-6 * p_hpa) * math.exp(17.502 * (t - 273.15) / (t - 32.18))
    mu = rh / 100 * pw / p_hpa
    nu = f / (100 * C)
    par = [
        (
            5.159e-5 * (1 - mu) * (-6.65e-5 * (1 - mu) + 0.0159),
            (-2.09e-4 * (1 - mu) + 0.05) ** 2,
            3.96,
        ),
        (0.1925 * mu * (0.135 * mu + 0.0318), (0.4241 * mu + 0.0998) ** 2, 6.11),
        (0.2251 * mu * (0.1314 * mu + 0.0297), (0.4127 * mu + 0.0932) ** 2, 10.84),
        (2.053 * mu * (0.1717 * mu + 0.0306), (0.5394 * mu + 0.0961) ** 2, 12.68),
        (0.177 * mu * (0.0832 * mu + 0.0213), (0.2615 * mu + 0.0668) ** 2, 14.65),
        (2.146 * mu * (0.1206 * mu + 0.0277), (0.3789 * mu + 0.0871) ** 2, 14.94),
    ]
    return sum(a / (b + (nu - c) ** 2) for a, b, c in par) + mu / 0.0157 * (
        2e-4 + 0.915e-112 * f**9.42
    )


def test_thz_absorption_window_and_closed_form() -> None:
    f = np.array([150, 183.3, 250, 300, 325.1, 380.2, 420]) * 1e9
    k = absorption_coefficient(torch.tensor(f)).numpy()
    np.testing.assert_allclose(k, [kokkoniemi2020(x) for x in f], rtol=1e-10)
    db_km = k * 10 * math.log10(math.e) * 1e3
    # The 200–320 GHz window: a few dB/km at 300 GHz (ITU-R P.676 gives ~3–6 dB/km for ~10 g/m³),
    # tens to hundreds of dB/km on the 183, 325 and 380 GHz water lines.
    assert 1.0 < db_km[3] < 8.0
    assert db_km[1] > 10 * db_km[3] and db_km[4] > 10 * db_km[3] and db_km[5] > 50 * db_km[3]
    sweep = np.linspace(200e9, 320e9, 121)
    ks_db_km = absorption_coefficient(torch.tensor(sweep)).numpy() * 4343
    assert ks_db_km.max() < 20 and 200e9 < sweep[ks_db_km.argmin()] < 300e9
    # EuCAP 2018 two-line model (275–400 GHz) agrees with the 2020 model near the lines.
    k18 = absorption_coefficient(torch.tensor([325.1e9, 380.2e9]), "kokkoniemi2018").numpy()
    np.testing.assert_allclose(k18, k[[4, 5]], rtol=0.35)
    with pytest.raises(ValueError, match="carrier_hz"):
        absorption_coefficient(torch.tensor([200e9]), "kokkoniemi2018")


def test_thz_link_budget_terms() -> None:
    d, f = 50.0, 300e9
    m = build_link(name="thz", distance_m=d, carrier_hz=f, misalignment_deg=2.0, beamwidth_deg=5.0)
    st = m()
    fs = 20 * math.log10(4 * math.pi * d * f / C)
    absorb = 10 * math.log10(math.e) * kokkoniemi2020(f) * d
    mis = 2 * 12 * (2 / 5) ** 2
    assert float(st.path_loss_db[0]) == pytest.approx(fs + absorb + mis, abs=1e-3)
    assert float(st.extra["misalignment_db"][0]) == pytest.approx(mis, rel=1e-5)
    assert float(misalignment_loss_db(1.0, 0.01)) == 30.0
    k = build_link(
        name="thz", carrier_hz=800e9, absorption_model="constant", absorption_coeff_per_m=0.01
    )
    assert float(k(distance_m=10.0).extra["absorption_db"][0]) == pytest.approx(0.4343, rel=1e-3)


def test_link_conditions_from_scene_feed_the_v2v_model() -> None:
    from v2x.channels import link_conditions
    from v2x.channels.link import LOS, NLOS, NLOSV

    building = [[50.0, 20.0, 10.0, 20.0, 10.0, 20.0, 0.0]]
    truck = [[50.0, 0.0, 1.5, 8.0, 2.5, 3.0, 0.0]]
    tx = np.array([[0.0, 0.0, 1.6], [0.0, 20.0, 1.6], [0.0, -10.0, 1.6], [0.0, 20.0, 1.6]])
    rx = np.array([[100.0, 0.0, 1.6], [100.0, 20.0, 1.6], [100.0, -10.0, 1.6], [100.0, 30.0, 1.6]])
    cond = link_conditions(tx, rx, buildings=building, vehicles=truck)
    assert cond.tolist() == [NLOSV, NLOS, LOS, NLOS]
    m = build_link(name="v2v_urban", los_mode="geometric", shadowing=False)
    st = m(tx_pos=tx, rx_pos=rx, los=cond)
    assert st.los.tolist() == [False, False, True, False]
    pl = st.path_loss_db
    assert float(pl[1]) > float(pl[0]) > float(pl[2])  # NLOS > NLOSv > LOS at 100 m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shannon_capacity_keeps_its_precision_at_any_snr(dtype):
    """``log2(1 + P)`` against its closed form: ``P / ln 2 · (1 − P/2 + P²/3)`` below −30 dB
    (series remainder < P³), ``math.log2(1 + P)`` in float64 above. ``1 + P`` in the dtype
    rounded P away (0 bits per use from −72 dB in float32, 6 % short at −60 dB)."""
    from v2x.channels.budget import shannon_capacity

    tol = float(torch.finfo(dtype).eps) * 4
    for snr_db in (-300.0, -224.0, -160.0, -100.0, -60.0, -40.0, -30.0, 0.0, 10.0, 30.0, 300.0):
        p = 10.0 ** (snr_db / 10.0)
        want = p / math.log(2.0) * (1 - p / 2 + p * p / 3) if snr_db <= -30 else math.log2(1 + p)
        got = float(shannon_capacity(torch.tensor(snr_db, dtype=dtype)))
        if dtype == torch.float32 and p < float(torch.finfo(dtype).tiny):
            assert got == 0.0 or got == pytest.approx(want, rel=1e-3)  # (subnormal P)
            continue
        assert got == pytest.approx(want, rel=tol), snr_db
