"""The benchmark suite and the profiler run end to end (on the tiny 'smoke' shapes): every cell
and mode, a markdown table, CSV/JSON files that agree with it, fastrnn ops named in the trace."""

from __future__ import annotations

import csv
import json

import torch

import fastrnn
from benchmarks import __main__ as suite
from benchmarks import profile
from fastrnn.info import cpu_model


def test_suite_smoke_run_writes_table_and_files(tmp_path, capsys):
    assert suite.main(["--sets", "smoke", "--repeats", "1", "--dtypes", "float32",
                       "--out", str(tmp_path), "--no-plot"]) == 0
    table = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(rows) == len(data["rows"]) == 12  # 3 cells x 4 modes
    assert {r["mode"] for r in rows} == {"inference", "training", "streaming", "packed"}
    assert {r["cell"] for r in rows} == {"LSTM", "GRU", "RNN"}
    for row in data["rows"]:
        assert row["fastrnn"] > 0 and row["torch.nn"] > 0
        assert abs(row["speedup_vs_torch.nn"] - row["torch.nn"] / row["fastrnn"]) < 1e-9
        if row["mode"] in ("training", "packed"):
            assert row["memory_fastrnn_mb"] > 0 and row["memory_torch.nn_mb"] > 0
        if row["mode"] == "streaming":
            assert row["unit"] == "us/step"
    assert data["metadata"]["gemm_gflops_fp32"] > 0
    assert table.count("| smoke |") == 12
    # The run's header names the CPU, fastrnn's instruction set and its bfloat16 products.
    header = table.splitlines()[0]
    assert header.startswith(f"machine: {cpu_model()}; fastrnn kernels {fastrnn._C.cpu_isa()} ")
    assert "bfloat16 products " in header and f"{torch.get_num_threads()} threads" in header


def test_bfloat16_rows_shrink_without_native_bfloat16(tmp_path, capsys, monkeypatch):
    """Where torch has no native bfloat16 (no oneDNN bfloat16: AVX2-only CPUs), bfloat16 rows run
    on a twentieth of the work, float32 rows on their own shape, and the run says so."""
    monkeypatch.setattr(suite, "torch_bfloat16_native", lambda: False)
    assert suite.main(["--sets", "smoke", "--repeats", "1", "--dtypes", "float32", "bfloat16",
                       "--modes", "inference", "--cells", "GRU", "--out", str(tmp_path),
                       "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "torch has no native bfloat16 on this CPU" in out
    data = json.loads((tmp_path / "results.json").read_text())
    shapes = {row["dtype"]: (row["steps"], row["batch"]) for row in data["rows"]}
    assert shapes == {"fp32": (6, 3), "bf16": (4, 1)}
    assert data["metadata"]["torch_bf16_native"] is False
    # bfloat16 rows are rated against the float32 GEMM (fastrnn computes them in float32 there)
    bf16 = next(row for row in data["rows"] if row["dtype"] == "bf16")
    rate = data["metadata"]["gemm_gflops_fp32"]
    assert abs(bf16["gemm_percent_fastrnn"] - 100 * bf16["gflops_fastrnn"] / rate) < 1e-6


def test_flops_count_layers_directions_and_real_tokens():
    from benchmarks.measure import flops_per_unit
    from benchmarks.peers import Workload
    from benchmarks.shapes import Case

    w = Workload("LSTM", Case("t", "training", 10, 4, 8, 16, layers=2, bidirectional=True),
                 torch.device("cpu"), torch.float32)
    layer0 = 2 * 40 * 4 * 16 * (8 + 16) * 2
    layer1 = 2 * 40 * 4 * 16 * (32 + 16) * 2
    assert flops_per_unit(w) == 3 * (layer0 + layer1)
    packed = Workload("GRU", Case("t", "packed", 10, 4, 8, 16), torch.device("cpu"), torch.float32)
    assert packed.tokens == int(packed.lengths.sum()) < 40
    assert flops_per_unit(packed) == 3 * 2 * packed.tokens * 3 * 16 * (8 + 16)


def test_profiler_names_fastrnn_ops(tmp_path, capsys):
    trace = tmp_path / "trace.json"
    profile.main(["--cell", "GRU", "--steps", "5", "--batch", "2", "--hidden", "8",
                  "--trace", str(trace)])
    out = capsys.readouterr().out
    assert "fastrnn::gru_forward" in out and "fastrnn::gru_backward" in out
    assert "fastrnn::gru_forward" in trace.read_text()


def test_tokens_compares_packed_with_padded(capsys):
    from benchmarks import tokens

    tokens.main(["--set", "smoke", "--repeats", "1", "--threads", "1"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and not line.startswith("| cell")]
    assert [r[0].strip() for r in rows] == ["LSTM", "GRU", "RNN"]
    for _, _, padded, packed, fraction, ratio in rows:
        assert float(padded) > 0 and float(packed) > 0
        assert 0.5 <= float(fraction) < 1  # lengths uniform in [T/2, T], not all T
        expected = float(packed) / (float(padded) * float(fraction))
        assert abs(float(ratio) - expected) < 0.05 * expected  # the table rounds the times


def test_threads_times_one_and_many_threads(capsys):
    from benchmarks import threads

    before = torch.get_num_threads()
    threads.main(["--sets", "smoke", "--min-batch", "1", "--repeats", "1", "--threads", "2"])
    assert torch.get_num_threads() == 2
    torch.set_num_threads(before)
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| smoke")]
    assert len(rows) == 6  # 3 cells x inference, training
    for *_, one, many, speedup in rows:
        check_printed_ratio(one, many, speedup)


def check_printed_ratio(numerator: str, denominator: str, ratio: str) -> None:
    """Two printed times (ms) and their printed ratio. The times are printed to 0.001 ms (the
    smoke shapes take about 0.01 ms, so that alone moves their ratio by several percent) and the
    ratio to 0.01: the ratio must lie within what the rounded times allow."""
    top, bottom = float(numerator), float(denominator)
    assert top > 0 and bottom > 0
    low = (top - 0.0005) / (bottom + 0.0005) - 0.005
    high = (top + 0.0005) / max(bottom - 0.0005, 1e-9) + 0.005
    assert low <= float(ratio.strip().rstrip("x")) <= high


def test_after_peer_times_each_condition(capsys):
    from benchmarks import after_peer

    after_peer.main(["--cells", "LSTM", "RNN", "--modes", "inference", "training", "--steps", "2",
                     "--batch", "2", "--hidden", "8", "--rounds", "2"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| LSTM") or line.startswith("| RNN")]
    conditions = ["own", "onnxruntime", "torch.mm"]  # onnxruntime: the README's commands install it
    assert [(r[0].strip(), r[1].strip(), r[2].strip()) for r in rows] == [
        (cell, mode, condition) for cell in ("LSTM", "RNN") for mode in ("inference", "training")
        for condition in conditions]
    for *_, ours, theirs, ratio in rows:
        check_printed_ratio(theirs, ours, ratio)


def test_regularizers_times_each_option_against_the_plain_layer(capsys):
    from benchmarks import regularizers

    regularizers.main(["--cells", "LSTM", "GRU", "--steps", "2", "--batch", "2", "--hidden", "8",
                       "--rounds", "2"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| LSTM") or line.startswith("| GRU")]
    options = ["none", "weight_dropout", "variational_dropout", "both"]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        (cell, option) for cell in ("LSTM", "GRU") for option in options]
    for row in rows:
        if row[1].strip() == "none":
            plain = row[2]
        check_printed_ratio(row[2], plain, row[3])
