"""Results files that lost their ledger, or that are not results files at all: each gets one
message naming the file and what is expected, and no cell is resumed, reused or plotted without
its ledger rows."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.core.test_results import _keyed_row, _ledger, _row
from v2x.results import CorruptResultsError, ResultsStore, read_results


def test_a_results_file_without_its_ledger_is_not_resumed_silently(tmp_path, caplog):
    store = ResultsStore(tmp_path, "j")
    store.add([_row(0.0), _row(10.0)], _ledger(_row(0.0)["cell_id"], 2))
    results_before = store.path.read_bytes()
    store.ledger_path.unlink()  # deleted, or not copied along with the results
    with pytest.raises(CorruptResultsError) as caught:
        ResultsStore(tmp_path, "j")
    message = str(caught.value)
    assert str(store.path) in message and store.ledger_path.name in message
    assert "allow_corrupt=true" in message and "\n" not in message
    assert store.path.read_bytes() == results_before  # nothing touched
    with caplog.at_level(logging.WARNING, logger="v2x.results"):
        again = ResultsStore(tmp_path, "j", allow_corrupt=True)
    assert again.done_cells() == set()  # its cells are recomputed, with their ledger rows
    assert store.ledger_path.name in caplog.text


def test_reading_the_ledger_of_a_results_file_without_one_names_it(tmp_path, caplog):
    a = ResultsStore(tmp_path / "a", "job1")
    a.add([_keyed_row(0.0)], _ledger(_keyed_row(0.0)["cell_id"], 3))
    b = ResultsStore(tmp_path / "b", "job2")
    b.add([_keyed_row(10.0)], _ledger(_keyed_row(10.0)["cell_id"], 2))
    b.ledger_path.unlink()
    assert read_results([tmp_path]).num_rows == 2  # the results themselves are whole
    with pytest.raises(CorruptResultsError, match=str(b.path) + ".*no ledger file.*allow_corrupt"):
        read_results([tmp_path], ledger=True)
    with caplog.at_level(logging.WARNING, logger="v2x.results"):
        assert read_results([tmp_path], ledger=True, allow_corrupt=True).num_rows == 3
    assert "ledger rows of 1 cell(s)" in caplog.text and str(b.path) in caplog.text


def test_cells_of_a_file_without_its_ledger_are_not_reused_and_this_is_said(tmp_path, caplog):
    from v2x.sweep_reuse import reuse_cells

    other = ResultsStore(tmp_path, "other")
    row = _keyed_row(0.0)
    other.add([row], _ledger(row["cell_id"], 2))
    other.ledger_path.unlink()
    store = ResultsStore(tmp_path, "mine")
    with caplog.at_level(logging.WARNING, logger="v2x.sweep"):
        assert reuse_cells(store, {row["cell_id"]}) == 0
    assert str(other.path) in caplog.text and "no ledger file" in caplog.text


def test_a_file_of_other_columns_is_named_with_what_it_has_in_one_short_line(tmp_path):
    path = tmp_path / "sweep-x.parquet"
    pq.write_table(pa.table({"x": [1, 2], "y": ["a", "b"]}), path)
    with pytest.raises(CorruptResultsError) as caught:
        read_results([tmp_path])
    message = str(caught.value)
    assert message.startswith(f"results file {path} lacks column(s) [cell_id, channel,")
    assert "in all)" in message and "it has [x, y]" in message and "RESULTS_SCHEMA" in message
    assert len(message) < 400
    store = ResultsStore(tmp_path, "k")
    store.add([_row(0.0)], _ledger(_row(0.0)["cell_id"], 1))
    pq.write_table(pa.table({"cell_id": ["a"]}), store.ledger_path)
    with pytest.raises(CorruptResultsError, match=f"ledger file {store.ledger_path} lacks"):
        ResultsStore(tmp_path, "k")


def test_a_ledger_file_named_as_results_is_refused_naming_its_results_file(tmp_path):
    store = ResultsStore(tmp_path, "j")
    store.add([_row(0.0)], _ledger(_row(0.0)["cell_id"], 1))
    with pytest.raises(ValueError, match=f"{store.ledger_path} is a ledger file.*sweep-j.parquet"):
        read_results([store.ledger_path])


def test_plotting_an_empty_folder_says_what_was_expected(tmp_path):
    from v2x.plots import make_plots

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no sweep results found.*field 'results'.*sweep-"):
        make_plots([tmp_path / "empty"], tmp_path / "fig", formats=["png"])


def test_plotting_a_metric_older_files_lack_names_it_and_the_ones_they_hold(tmp_path):
    """A results file from before the vehicle AP columns holds NaN there: plotting
    ``vehicle_ap_70`` from it drew empty axes with a matplotlib warning; it is refused naming
    the metric, the file and the metrics the rows do hold, and no figure is written."""
    from v2x.plots import make_plots

    store = ResultsStore(tmp_path / "old", "j")
    store.add([_row(0.0), _row(10.0)], _ledger(_row(0.0)["cell_id"], 2))  # no vehicle_ap_*
    with pytest.raises(ValueError) as caught:
        make_plots([tmp_path / "old"], tmp_path / "fig", metric="vehicle_ap_70", table=False)
    message = str(caught.value)
    assert "'vehicle_ap_70'" in message and str(tmp_path / "old") in message
    assert message.endswith("expected one they hold: ap_30, ap_50, ap_70")
    assert not list((tmp_path / "fig").glob("*.png"))
    files = make_plots([tmp_path / "old"], tmp_path / "fig", formats=["png"], table=False)
    # the default (vehicle_ap_70) falls back on ap_50 for such files: they still plot
    assert tmp_path / "fig" / "ap_vs_snr.png" in files


def test_the_default_figures_show_the_readmes_headline_vehicle_ap_70(tmp_path, monkeypatch, caplog):
    """v2x-sweep's figures and v2x-plot's default showed AP@0.5 pooled over every class while
    the README's headline (and its main figures) is vehicle AP@0.7, OpenCOOD's convention. The
    default is now vehicle AP@0.7; results from before the vehicle columns fall back on AP@0.5
    with a warning that names both; a metric named explicitly is drawn as named."""
    import inspect
    from pathlib import Path

    from hydra import compose, initialize_config_module

    import v2x.plots as plots

    drawn: list[str] = []

    def recording(rows, metric, out_dir, formats):
        drawn.append(metric)
        return []

    monkeypatch.setattr(plots, "plot_ap_vs_snr", recording)
    headline = [{**_row(s), "vehicle_ap_70": 0.25, "vehicle_ap_50": 0.5} for s in (0.0, 10.0)]
    ResultsStore(tmp_path / "new", "j").add(headline, _ledger(headline[0]["cell_id"], 2))
    ResultsStore(tmp_path / "old", "j").add([_row(0.0)], _ledger(_row(0.0)["cell_id"], 1))
    with caplog.at_level(logging.WARNING, logger="v2x.plots"):
        plots.make_plots([tmp_path / "new"], tmp_path / "a", formats=["png"], table=False)
        assert drawn == ["vehicle_ap_70"] and not caplog.records
        plots.make_plots([tmp_path / "old"], tmp_path / "b", formats=["png"], table=False)
    assert drawn[-1] == "ap_50"
    assert "no row holds vehicle_ap_70" in caplog.text and "show ap_50" in caplog.text
    plots.make_plots([tmp_path / "new"], tmp_path / "c", ["png"], metric="ap_50", table=False)
    assert drawn[-1] == "ap_50"
    # v2x-plot's config leaves the metric to make_plots, as v2x-sweep's call does
    with initialize_config_module(config_module="v2x.conf", version_base=None):
        assert compose("plot").metric is None
    assert inspect.signature(plots.make_plots).parameters["metric"].default is None
    # the README's main result is the default's metric
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    main = readme.split("## The main result")[1].split("\n## ")[0]
    assert plots.metric_label(plots.DEFAULT_METRIC) == "vehicle AP@0.7"
    assert main.count("vehicle AP@0.7") >= 3


def test_a_column_of_the_wrong_type_is_named_with_its_type_and_the_expected_one(tmp_path):
    """A results file whose ``snr_db`` holds text: the message named the value Arrow failed to
    parse ('ten') but not the column; it names the file, the column, its type and the schema's."""
    from v2x.results import RESULTS_SCHEMA

    store = ResultsStore(tmp_path / "run", "j")
    store.add([_row(0.0)], _ledger(_row(0.0)["cell_id"], 1))
    table = pq.read_table(store.path)
    at = table.schema.get_field_index("snr_db")
    pq.write_table(table.set_column(at, "snr_db", pa.array(["ten"])), store.path)
    with pytest.raises(CorruptResultsError) as caught:
        read_results([tmp_path / "run"])
    message = str(caught.value)
    assert str(store.path) in message
    assert f"'snr_db' is string, expected {RESULTS_SCHEMA.field('snr_db').type}" in message
    assert "'ten'" in message and "allow_corrupt=true" in message


def test_plotting_with_allow_corrupt_warns_once_per_corrupt_file_saying_what_is_lost(
    tmp_path, caplog
):
    """``v2x-plot allow_corrupt=true`` read the results files twice (once for the results, once
    for the ledger) and logged the same "skipping corrupt file" line twice for one broken
    results file. Each corrupt file is now reported once, naming it, why it cannot be read and
    what is left out; a corrupt ledger beside a whole results file gets its own, distinct
    line (its cells' results are plotted, their ledger rows are not)."""
    from v2x.plots import make_plots

    good = ResultsStore(tmp_path / "good", "j1")
    good.add([_keyed_row(0.0)], _ledger(_keyed_row(0.0)["cell_id"], 2))
    broken = tmp_path / "broken" / "sweep-bad.parquet"
    broken.parent.mkdir()
    broken.write_bytes(b"not parquet at all")
    no_ledger = ResultsStore(tmp_path / "lost", "j2")
    no_ledger.add([_keyed_row(10.0)], _ledger(_keyed_row(10.0)["cell_id"], 2))
    no_ledger.ledger_path.write_bytes(b"half a ledger")
    with caplog.at_level(logging.WARNING):
        make_plots([tmp_path], tmp_path / "fig", formats=["png"], table=False, allow_corrupt=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    about_broken = [w for w in warnings if str(broken) in w]
    assert len(about_broken) == 1, warnings
    assert "cannot be read" in about_broken[0] and "rows" in about_broken[0]
    about_ledger = [w for w in warnings if str(no_ledger.ledger_path) in w]
    assert len(about_ledger) == 1, warnings
    assert "ledger rows of 1 cell(s)" in about_ledger[0] and "cannot be read" in about_ledger[0]
    assert about_broken[0].split(":")[0] != about_ledger[0].split(":")[0]  # distinct lines


def test_plotting_ego_only_results_draws_no_empty_legend(tmp_path):
    """Results of ego-only rows (``fusion=none``: no link sends anything) made ``v2x-plot``
    print matplotlib's "No artists with labels found to put in legend" for the latency/AoI
    figure: a legend is drawn only on axes that have labelled artists."""
    import warnings

    from tests.core.test_sweep import tiny_config
    from v2x.plots import make_plots
    from v2x.sweep import run_sweep

    cfg = tiny_config(
        tmp_path / "cache", tmp_path / "out", fusions=["none"], snr_db=[0.0], codecs=["identity"]
    )
    path = run_sweep(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = make_plots([path], tmp_path / "fig", formats=["png"], table=False)
    assert not [w for w in caught if "legend" in str(w.message)], [str(w.message) for w in caught]
    assert tmp_path / "fig" / "latency_aoi_cdf.png" in files
    from v2x.figures import legend, pyplot

    plt = pyplot()  # the helper still draws a legend where there is something to label
    fig, (labelled, bare) = plt.subplots(1, 2)
    labelled.plot([0, 1], [0, 1], label="max + identity")
    bare.plot([0, 1], [1, 0])
    legend(labelled, fontsize=7)
    legend(bare, fontsize=7)
    assert [t.get_text() for t in labelled.get_legend().get_texts()] == ["max + identity"]
    assert bare.get_legend() is None
    plt.close(fig)
