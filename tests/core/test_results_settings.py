"""Results of several settings merged (other frames, detectors, code): the table and the
figures keep them apart instead of printing rows that read as repeats of one cell with
different numbers, or one ego-only level that is the mean of two settings' APs."""

from __future__ import annotations

import json

from tests.core.test_results import _keyed_row
from v2x.results import ResultsStore, read_results, rows_to_table
from v2x.results_table import results_table_text


def _ego(snr: float, ap: float, setting: str, **provenance) -> dict:
    row = _keyed_row(snr, ap=ap, setting=setting)
    row.update(fusion="none", codec="n/a", channel="n/a", vehicle_ap_70=ap, **provenance)
    return row


def _table_rows(text: str) -> list[list[str]]:
    """The table's body: the lines between the header's rule and the footnotes."""
    lines = text.splitlines()
    return [line.split() for line in lines[2:] if line.split()[:1] == ["none"]]


def test_table_names_the_frames_of_rows_merged_from_two_folders(tmp_path):
    """Two sweeps of the same grid on other frames (v2x-plot results='[a,b]'): the table had
    one line per cell with no column telling them apart (the same fusion, codec, channel and
    SNR with two different APs); it now shows the frame set's hash and count."""
    many = [_ego(s, 0.557, "s400", data_hash="a" * 64, num_frames=400) for s in (0.0, 10.0)]
    few = [_ego(s, 0.3, "s20", data_hash="b" * 64, num_frames=20) for s in (0.0, 10.0)]
    ResultsStore(tmp_path / "a", "job1").add(many)
    ResultsStore(tmp_path / "b", "job2").add(few)
    text = results_table_text(read_results([tmp_path / "a", tmp_path / "b"]))
    header = text.splitlines()[0].split()
    assert header.index("data_hash") < header.index("snr_db")
    assert header.index("num_frames") < header.index("snr_db")
    hash_at, n_at, ap_at = (header.index(c) for c in ("data_hash", "num_frames", "vehicle_ap_70"))
    rows = _table_rows(text)
    assert len(rows) == 4
    assert {(r[hash_at], r[n_at], r[ap_at]) for r in rows} == {
        ("aaaaaaaa", "400", "0.557"),
        ("bbbbbbbb", "20", "0.300"),
    }
    assert "detector_sha256" not in header and "code_hash" not in header  # (equal: not shown)


def test_table_shows_the_setting_key_when_no_provenance_column_differs(tmp_path):
    """Two settings that differ only in a config field (same frames, detector and code)."""
    rows = [_ego(0.0, 0.5, "setting-one"), _ego(0.0, 0.25, "setting-two")]
    header, *_ = results_table_text(rows_to_table(rows)).splitlines()
    assert "setting_key" in header.split()
    assert "setting-" in results_table_text(rows_to_table(rows))


def test_one_setting_shows_no_provenance_column(tmp_path):
    """Codecs of one sweep carry different codec checkpoints: no clash, no extra column."""
    a = _keyed_row(0.0)
    b = {**_keyed_row(0.0), "codec": "deepjscc", "codec_sha256": "e" * 64}
    header = results_table_text(rows_to_table([a, b])).splitlines()[0].split()
    for name in ("dataset", "data_hash", "num_frames", "codec_sha256", "setting_key"):
        assert name not in header


def test_ego_only_level_is_drawn_per_setting_not_averaged():
    """ap_vs_bandwidth / ap_vs_delay / ap_vs_payload draw ego-only as a reference line: with two
    settings' ego-only rows (0.557 on 400 frames, 0.3 on 20) it was one line at their mean,
    0.4285, an AP no setting has."""
    from v2x.figures import pyplot
    from v2x.plots import _ego_level, label_settings

    rows = [
        _ego(s, ap, key, data_hash=h * 64, num_frames=n)
        for s in (0.0, 10.0)
        for ap, key, h, n in ((0.557, "s400", "a", 400), (0.3, "s20", "b", 20))
    ]
    label_settings(rows)
    plt = pyplot()
    fig, ax = plt.subplots()
    _ego_level(ax, rows, "vehicle_ap_70")
    levels = sorted(float(line.get_ydata()[0]) for line in ax.get_lines())
    labels = sorted(line.get_label() for line in ax.get_lines())
    plt.close(fig)
    assert levels == [0.3, 0.557]
    assert labels[0] != labels[1] and all(t.startswith("ego only [") for t in labels)
    fig, ax = plt.subplots()  # one setting: one line, labelled as before
    one = [r for r in rows if r["num_frames"] == 400]
    label_settings(one)
    _ego_level(ax, one, "vehicle_ap_70")
    assert [line.get_label() for line in ax.get_lines()] == ["ego only"]
    assert float(ax.get_lines()[0].get_ydata()[0]) == 0.557
    plt.close(fig)


def test_plotting_a_folder_names_the_results_files_its_search_does_not_read(tmp_path, caplog):
    """A folder is searched for sweep-*.parquet: the README's renamed results
    (docs/results/main_pointpillars_400.parquet) in a folder given to v2x-plot were left out
    without a word while the folder's sweep-* files were plotted."""
    import logging
    import shutil

    from tests.core.test_results import _ledger
    from v2x.plots import make_plots

    store = ResultsStore(tmp_path / "res" / "run", "j")
    row = _keyed_row(0.0)
    store.add([row], _ledger(row["cell_id"], 1))
    shutil.copy(store.path, tmp_path / "res" / "main_renamed.parquet")
    shutil.copy(store.ledger_path, tmp_path / "res" / "main_renamed.ledger.parquet")
    with caplog.at_level(logging.WARNING, logger="v2x.plots"):
        make_plots([tmp_path / "res"], tmp_path / "fig", formats=["png"], table=False)
    said = [r.getMessage() for r in caplog.records if "not named sweep-" in r.getMessage()]
    assert len(said) == 1
    assert str(tmp_path / "res" / "main_renamed.parquet") in said[0]
    assert "ledger" not in said[0] and "sweep-j" not in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="v2x.plots"):  # named: read, nothing to say
        make_plots([tmp_path / "res" / "main_renamed.parquet"], tmp_path / "g", ["png"], table=False)
    assert not [r for r in caplog.records if "not named sweep-" in r.getMessage()]


def _described(snr: float, ap: float, **leaves) -> dict:
    """An ego-only row whose ``setting`` JSON holds ``leaves`` (dotted paths) beside fixed
    fields, keyed by that JSON's hash as a sweep keys it."""
    from v2x.provenance import canonical_json, text_hash

    setting: dict = {"code_hash": "c" * 64, "eval": {"iou": 0.7}, "codec_kwargs": {}}
    for path, value in leaves.items():
        head, _, leaf = path.partition(".")
        setting[head] = {**setting[head], leaf: value}
    text = canonical_json(setting)
    return {**_ego(snr, ap, text_hash(text, 16)), "setting": text}


def test_table_names_the_setting_fields_that_differ_instead_of_a_hash():
    """Two settings that differ only in config fields (the detector's precision, a codec
    option): the table showed only ``setting_key``'s first 8 hex digits, which says that they
    differ but not how; it now shows the fields of ``setting`` that differ, with their values
    (fields both share, such as ``code_hash``, not)."""
    rows = [
        _described(0.0, 0.5, **{"eval.precision": "fp32", "codec_kwargs.fade_aware": False}),
        _described(0.0, 0.25, **{"eval.precision": "fp16", "codec_kwargs.fade_aware": True}),
    ]
    text = results_table_text(rows_to_table(rows))
    header = text.splitlines()[0].split()
    assert "setting" in header and "setting_key" not in header
    assert "codec_kwargs.fade_aware=false, eval.precision=fp32" in text
    assert "codec_kwargs.fade_aware=true, eval.precision=fp16" in text
    assert "code_hash" not in text and "iou" not in text


def test_figure_labels_name_the_setting_fields_that_differ():
    """A figure's two lines of one series told apart by ``setting=<hash>``; now by the fields."""
    from v2x.plots import label_settings

    rows = [_described(s, 0.5, **{"eval.precision": p}) for s in (0.0, 10.0) for p in ("fp32", "fp16")]
    label_settings(rows)
    assert {r["label"].split(" [")[1] for r in rows} == {"eval.precision=fp32]", "eval.precision=fp16]"}


def test_rows_without_a_setting_fall_back_to_the_key():
    """Rows from files written before the ``setting`` column: the key, as before."""
    from v2x.setting_labels import setting_differences

    rows = [_ego(0.0, 0.5, "setting-one"), _ego(0.0, 0.25, "setting-two")]
    assert setting_differences(rows) == ["", ""]
    described = _described(0.0, 0.5, **{"eval.precision": "fp16"})
    assert setting_differences([rows[0], described]) == ["", ""]


def test_setting_differences_flatten_nested_fields_and_cut_long_values():
    from v2x.setting_labels import MAX_SHOWN, setting_differences, setting_leaves

    assert setting_leaves('{"a":{"b":[1,2],"c":{}},"d":"x"}') == {"a.b": "[1,2]", "a.c": "{}", "d": "x"}
    many = [{"setting": json.dumps({"a": i, "b": i, "c": i, "d": i, "e": "f" * 64})} for i in (0, 1)]
    assert setting_differences(many)[1] == f"a=1, b=1, c=1, +{4 - MAX_SHOWN}"
    one_missing = [{"setting": '{"a":1}'}, {"setting": '{"a":1,"z":"' + "y" * 40 + '"}'}]
    assert setting_differences(one_missing) == ["z=-", "z=" + "y" * 23 + "…"]
