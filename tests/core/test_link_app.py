"""``v2x-link``: the ``channel`` and ``link`` config groups composed into one link, its budget
and the QPSK bit error rate against closed forms."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from v2x.channels import link_summary, simulate_link


def _compose(*overrides: str):
    with initialize_config_module("v2x.conf", version_base=None):
        cfg = compose("single_link", overrides=list(overrides))
    return (OmegaConf.to_container(cfg.channel, resolve=True),
            OmegaConf.to_container(cfg.link, resolve=True), cfg)  # fmt: skip


def _q(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2))


@pytest.mark.parametrize(
    ("channel", "distance_m", "ber"),
    [
        ("awgn", 2000.0, lambda g: _q(math.sqrt(g))),
        # i.i.d. Rayleigh per symbol; each QPSK bit sees Eb/N0 = γ/2
        ("rayleigh", 1000.0, lambda g: 0.5 * (1 - math.sqrt((g / 2) / (1 + g / 2)))),
    ],
)
def test_qpsk_ber_over_a_composed_link_matches_closed_form(channel, distance_m, ber):
    overrides = [f"channel={channel}", "link=free_space", f"link.distance_m={distance_m}"]
    if channel == "rayleigh":
        overrides.append("channel.block_len=1")
    ch, link, cfg = _compose(*overrides)
    out = simulate_link(ch, link, num_symbols=200_000, seed=3)
    assert out["snr_db"] == pytest.approx(link_summary(link)["snr_db"])
    gamma = 10 ** (out["snr_db"] / 10)
    p = ber(gamma)
    sigma = math.sqrt(p * (1 - p) / 200_000)  # per symbol (bits of a symbol share the fading)
    assert abs(out["qpsk_ber"] - p) <= 5 * sigma, (out["qpsk_ber"], p, sigma)
    assert 1e-3 < p < 0.2  # a regime where the check has power


def _v2x_link(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    """``v2x-link`` with ``overrides`` run as a user runs it, in ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "-m", "v2x.apps.link", *overrides, f"hydra.run.dir={tmp_path}",
         "hydra.output_subdir=null"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip


def test_v2x_link_app_runs_the_documented_command(tmp_path):
    proc = _v2x_link(
        tmp_path, "channel=rayleigh", "link=v2v_urban", "link.distance_m=150", "num_symbols=2000"
    )
    assert proc.returncode == 0, proc.stderr
    assert "channel rayleigh, link v2v_urban" in proc.stdout
    assert "snr_db" in proc.stdout and "qpsk_ber" in proc.stdout and "latency_s" in proc.stdout
    # one block fade for the whole transmission: its BER is one draw's, and the app says so
    assert "note: one fading gain for all 2000 symbols" in proc.stdout


def test_the_link_reports_the_bandwidth_its_rate_is_over():
    """``rate_bps`` (Shannon: ``B·log2(1 + SNR)``) and the SNR's noise depend on the link's
    bandwidth, which the summary did not print: a user could not tell 227 Mbit/s over 20 MHz
    from the same over 1 GHz. Oracle: the rate from the printed SNR, and the noise power
    ``kTB``: 10× the bandwidth costs exactly 10 dB of SNR."""
    _, link, _ = _compose("link=v2v_urban", "link.shadowing=false", "link.bandwidth_hz=1e7")
    narrow = link_summary(link)
    assert narrow["bandwidth_hz"] == 1e7
    gamma = 10 ** (narrow["snr_db"] / 10)
    assert narrow["rate_bps"] == pytest.approx(1e7 * math.log2(1 + gamma), rel=1e-6)
    _, link, _ = _compose("link=v2v_urban", "link.shadowing=false", "link.bandwidth_hz=1e8")
    wide = link_summary(link)
    assert wide["bandwidth_hz"] == 1e8
    assert narrow["snr_db"] - wide["snr_db"] == pytest.approx(10.0, abs=1e-4)


@pytest.mark.parametrize(
    ("overrides", "gains"),
    [(["channel=awgn"], 0), (["channel=rayleigh"], 1), (["channel=rician"], 1),
     (["channel=rayleigh", "channel.block_len=1"], 20_000),
     (["channel=rayleigh", "channel.block_len=300"], 67)],  # ceil(20,000 / 300)
)  # fmt: skip
def test_the_link_reports_how_many_channel_gains_its_ber_averages_over(overrides, gains):
    """A QPSK BER of 0 over 200,000 bits of one Rayleigh block fade read as a BER; the count of
    distinct gains says what it averages over."""
    ch, link, _ = _compose(*overrides, "link=free_space")
    assert simulate_link(ch, link, num_symbols=20_000, seed=1)["channel_gains"] == gains


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_symbols", 0), ("num_symbols", "abc"), ("num_symbols", 2.5), ("seed", -1),
     ("payload_bits", -1.0), ("payload_bits", "1e6"), ("payload_bits", math.inf)],
)  # fmt: skip
def test_a_bad_link_setting_is_refused_naming_the_field_and_value(field, value):
    ch, link, _ = _compose("channel=awgn", "link=free_space")
    with pytest.raises(ValueError, match=rf"^link: field '{field}' must be .*got {value!r}"):
        simulate_link(ch, link, **{field: value})


def test_the_link_prints_its_condition_and_carrier():
    """``los False`` of a TR 37.885 model is vehicle blockage (NLOSv), not the building NLOS
    formula: the summary names the branch. Oracle: TR 37.885 Table 6.2.1-1 urban LOS
    ``38.77 + 16.7 log d + 18.2 log fc`` plus the NLOSv blockage median μ_a = 5 dB (case 3: an
    antenna not below the 1.6 m blocker; ``15 log 100 − 41 < 0``)."""
    _, link, _ = _compose("link=v2v_urban", "link.los_mode=nlos", "link.shadowing=false")
    out = link_summary(link)
    assert (out["los"], out["condition"], out["carrier_hz"]) == (False, "NLOSv", 5.9e9)
    expected = 38.77 + 16.7 * math.log10(100.0) + 18.2 * math.log10(5.9) + 5.0
    assert out["path_loss_db"] == pytest.approx(expected, abs=1e-4)
    _, link, _ = _compose("link=v2v_urban", "link.los_mode=los")
    assert link_summary(link)["condition"] == "LOS"


def test_qpsk_ebno_is_the_snr_less_3_dB_and_gives_the_sionna_ber_curve():
    """``snr_db`` is Es/N0 per QPSK symbol; ``qpsk_ebno_db`` is the Eb/N0 that Sionna's
    ``ebnodb2no(ebno_db, 2, 1)`` and its BER curves use: BER = Q(√(2 Eb/N0))."""
    ch, link, _ = _compose("channel=awgn", "link=free_space", "link.distance_m=2000")
    out = simulate_link(ch, link, num_symbols=200_000, seed=5)
    assert out["qpsk_ebno_db"] == pytest.approx(out["snr_db"] - 10 * math.log10(2), abs=1e-9)
    p = 0.5 * math.erfc(math.sqrt(10 ** (out["qpsk_ebno_db"] / 10)))
    sigma = math.sqrt(p * (1 - p) / 400_000)  # AWGN: the I and Q bits' noises are independent
    assert abs(out["qpsk_ber"] - p) <= 5 * sigma, (out["qpsk_ber"], p, sigma)
    assert 1e-3 < p < 0.2


def test_a_channel_carrier_other_than_the_links_is_noted(tmp_path):
    from v2x.channels.radio import carrier_note

    assert carrier_note({"name": "awgn"}, 5.9e9) is None
    assert carrier_note({"name": "tdl", "carrier_hz": 5.9e9}, 5.9e9) is None
    note = carrier_note({"name": "erasure_iid", "inner": {"carrier_hz": 2e9}}, 5.9e9)
    assert note is not None and "channel.inner.carrier_hz=2e+09" in note
    proc = _v2x_link(tmp_path, "channel=rayleigh_fast", "link=thz", "num_symbols=500")
    assert proc.returncode == 0, proc.stderr
    assert "condition      LOS" in proc.stdout and "qpsk_ebno_db" in proc.stdout
    assert "note: the channel's Doppler is at channel.carrier_hz=5.9e+09 Hz" in proc.stdout
    assert "set channel.carrier_hz=3e+11 for one carrier" in proc.stdout


def test_expected_mode_names_no_single_branch():
    """``los_mode: expected`` prints the P_LOS-weighted mean of the branches, not one branch.
    Oracle: TR 37.885 urban P_LOS = min(1, 1.05 e^{−0.0114 d}) and LOS / NLOSv (+5 dB) path
    losses at 100 m."""
    _, link, _ = _compose("link=v2v_urban", "link.los_mode=expected", "link.shadowing=false")
    out = link_summary(link)
    p = min(1.0, 1.05 * math.exp(-0.0114 * 100.0))
    los = 38.77 + 16.7 * math.log10(100.0) + 18.2 * math.log10(5.9)
    assert (out["condition"], out["p_los"]) == ("expected", pytest.approx(p, rel=1e-6))
    assert out["path_loss_db"] == pytest.approx(p * los + (1 - p) * (los + 5.0), abs=1e-4)


def test_geometric_los_says_it_needs_a_sweeps_scene(tmp_path):
    """``link.los_mode=geometric`` (listed in the link YAMLs) failed with "needs 'los' from the
    scene", which v2x-link cannot give; the message now says so and what v2x-link takes."""
    expected = (
        "v2v_urban: field 'los_mode' is 'geometric', which reads LOS from a scene's boxes: a sweep "
        "has them (network.los_mode=geometric), a single link (v2x-link) has none; here "
        "link.los_mode takes probabilistic, expected, los, nlos"
    )
    _, link, _ = _compose("link=v2v_urban", "link.los_mode=geometric")
    with pytest.raises(ValueError) as info:
        link_summary(link)
    assert str(info.value) == expected
    proc = _v2x_link(tmp_path, "link=v2v_urban", "link.los_mode=geometric")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {expected} (set V2X_TRACEBACK=1 for the traceback)"
    ]


def test_a_ber_with_no_error_prints_its_95_percent_upper_bound():
    """0 errors in n bits: the exact one-sided 95 % Clopper–Pearson bound 1 − 0.05^(1/n)
    (≈ 3/n, the rule of three), not a bare 0."""
    from v2x.apps.link import ber_text

    assert ber_text(0.0, 200_000) == "0 (no error in 200000 bits: < 1.5e-05 at 95 % confidence)"
    n = 1000
    bound = 1 - 0.05 ** (1 / n)
    assert bound == pytest.approx(3 / n, rel=0.01)
    assert f"< {bound:.2g} " in ber_text(0.0, n) and ber_text(0.25, n) == "0.25"


def test_v2x_link_notes_a_distance_outside_the_models_range(tmp_path):
    """TR 38.901 Table 7.4.1-1: UMi street canyon is specified for 10 m <= d2D <= 5 km."""
    proc = _v2x_link(tmp_path, "link=umi_street_canyon", "link.distance_m=1e9", "num_symbols=100")
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stdout.splitlines() if "outside" in line]
    assert notes == [
        "note: umi_street_canyon: 1 of 1 link(s) outside the model's distance range (d2D = 1e+09 "
        "m; TR 38.901 Table 7.4.1-1 (UMi street canyon) specifies 10 m <= d2D <= 5000 m): its "
        "path loss and SNR there are an extrapolation"
    ]
    assert "outside_range" not in proc.stdout and "WARNING" not in proc.stdout + proc.stderr
