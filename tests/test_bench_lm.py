"""``raretask bench lm``: the bench runs end to end on a tiny corpus and reports finite, positive
numbers (no timing assertions: performance claims live in the bench's own output)."""

import json
import math

import pytest

pytest.importorskip("transformers")

from raretask.cli import main  # noqa: E402
from raretask.lm._bench import bench_lm, format_bench_lm  # noqa: E402

SMALL = dict(preset="tiny", steps=3, warmup=1, repeats=2, batch_size=4, seq_len=32)


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_bench_lm_reports_both_modes_and_the_ratio(small_corpus, tmp_path):
    res = bench_lm(str(small_corpus), workdir=str(tmp_path), **SMALL)
    assert set(res["modes"]) == {"plain", "raretask"}
    for row in res["modes"].values():
        assert _positive(row["step_ms"]) and _positive(row["tokens_per_s"]) and _positive(row["step_ms_mean"])
        assert len(row["step_ms_each"]) == SMALL["repeats"]
        assert row["tokens_per_s"] == pytest.approx(4 * 32 / (row["step_ms"] / 1e3))
    assert math.isfinite(res["raretask_overhead"]) and res["raretask_overhead"] > -1
    assert len(res["raretask_overhead_each"]) == SMALL["repeats"]
    assert _positive(res["raretask_end_of_run_ms"]) and _positive(res["raretask_call_seconds"])
    assert res["compile"] is None
    assert list(tmp_path.iterdir()) == []  # the run folders are gone
    text = format_bench_lm(res)
    assert "plain PyTorch loop" in text and "raretask lm train" in text and "overhead" in text


@pytest.mark.slow
def test_bench_lm_cli_json_and_compile_never_crashes(small_corpus, tmp_path, capsys):
    out = tmp_path / "b.json"
    args = ["bench", "lm", "--corpus", str(small_corpus), "--steps", "2", "--warmup", "1", "--repeats", "1",
            "--batch-size", "4", "--seq-len", "32", "--json", str(out), "--compile"]
    assert main(args) == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert "raretask overhead per step" in text
    c = res["compile"]
    # torch.compile either works here (speed-ups reported) or its failure is one reported line
    assert (c["error"] is not None and "torch.compile failed" in text) or _positive(c["plain_speedup"])
    if c["error"] is None:
        assert _positive(c["raretask_speedup"]) and "torch.compile speed-up" in text


def test_bench_lm_bad_input_is_a_config_error(small_corpus, capsys):
    assert main(["bench", "lm", "--corpus", str(small_corpus), "--steps", "0"]) == 2
    assert "steps" in capsys.readouterr().err


def test_bench_synthetic_labels_the_width_it_timed_alone(monkeypatch):
    """--widths 16 64 times width 64 alone and says so (it said "width 512 alone"); the timers are
    stubbed, the labelling and the result keys are what is checked."""
    import io

    from rich.console import Console

    import raretask.bench as bench

    timed = []
    monkeypatch.setattr(bench, "matmul_peak", lambda: {512: 100.0})
    monkeypatch.setattr(bench, "time_reference", lambda spec, cfg, widths, steps: {w: 0.1 for w in widths})
    monkeypatch.setattr(bench, "time_engine", lambda spec, cfg, widths, steps: timed.append(list(widths)) or 0.01)
    monkeypatch.setattr(bench, "time_metrics", lambda spec, grid: 0.0)
    buf = io.StringIO()
    r = bench.bench_synthetic([16, 64], steps=2, ref_steps=1, batch=64, paper_steps=10, record_points=1,
                              console=Console(file=buf, width=200))
    text = buf.getvalue()
    assert [64] in timed and [512] not in timed
    assert "width 64 alone" in text and "512 alone" not in text and "width 64: fraction of peak" in text
    assert r["widest"] == 64 and not any(k.startswith("width512") for k in r)


@pytest.mark.slow(seconds=20)
def test_bench_ladder_times_both_ways_and_ends_with_the_speed_up(small_corpus, tmp_path, capsys):
    """`raretask bench ladder` on a two-size slice: both ways train the same runs (their final losses
    agree to float32 rounding), every number is finite and positive, the folders are gone, and the
    last line is the speed-up the rows give."""
    out = tmp_path / "ladder.json"
    rc = main(["bench", "ladder", "--corpus", str(small_corpus), "--sizes", "w24", "w48", "--rates", "2", "0.5",
               "--seeds", "0", "--steps", "4", "--workers", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert [(r["size"], r["mode"]) for r in res["rows"]] == [("w24", "old"), ("w24", "new"), ("w48", "new"),
                                                             ("w48", "old")]  # interleaved, the first alternating
    for r in res["rows"]:
        assert all(_positive(float(r[k])) for k in ("wall_seconds", "run_steps_per_s", "gflops", "share_of_peak"))
        assert r["runs"] == 2 and r["final_loss_max_rel_diff"] < 1e-5
        assert r["pack_sizes"] == ([1, 1] if r["mode"] == "old" else [2])
    old = sum(r["wall_seconds"] for r in res["rows"] if r["mode"] == "old")
    new = sum(r["wall_seconds"] for r in res["rows"] if r["mode"] == "new")
    assert res["speedup"] == pytest.approx(old / new)
    assert text.strip().splitlines()[-1] == f"ladder speed-up: {old / new:.1f}x"
    assert _positive(res["peak_gflops"]) and "matmul peak measured in this run" in text
    rc = main(["bench", "ladder", "--corpus", str(tmp_path), "--sizes", "w24"])
    assert rc == 2 and "is not a corpus" in capsys.readouterr().err
