"""The figure rules (issue 23 point 4, ``raretask.report.style``): each rule answers "no" on a
figure that breaks it, and ``plots.save`` names the broken rule in a FigureRuleWarning (which
the suite's pytest settings make an error, so every figure the tests draw meets the rules)."""

import warnings

import numpy as np
import pytest

from raretask.report import plots, style


def _laid_out(fig):
    fig.tight_layout()
    fig.canvas.draw()
    return fig


def test_a_figure_in_the_house_style_meets_every_rule(tmp_path, monkeypatch):
    monkeypatch.delenv(style.FORMATS_ENV)  # the default: PNG and PDF
    fig, axes = plots.new_figure(1, 1)
    ax = axes[0, 0]
    ax.plot([0, 1, 2, 3], [0.2, 0.5, 0.7, 0.9], "o-", label="accuracy")
    style.integer_axis(ax, "x")
    style.reference_line(ax, 0.5, "chance")
    ax.set_xlabel("layer")
    ax.legend()
    assert fig.get_figwidth() == style.COLUMN_IN and style.print_width(fig) == style.COLUMN_IN
    assert style.violations(_laid_out(fig)) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = plots.save(fig, tmp_path / "f.png")
    assert out.exists() and (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    two, _ = plots.new_figure(2, 1)
    assert two.get_figwidth() == style.PAGE_IN and style.print_width(two) == style.PAGE_IN


def test_small_text_at_the_print_width_is_a_violation():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))  # one panel: printed in a 3.3 in column
    ax.plot([0.5, 1.5], [1, 2])
    ax.set_title("a 10 pt title", fontsize=10)  # 10 x 3.3 / 6.4 = 5.2 pt in print
    found = style.violations(_laid_out(fig))
    assert len(found) == 1 and "under 7 pt" in found[0] and "5.2 pt 'a 10 pt title'" in found[0], found
    plt.close(fig)
    fig, axes = plots.new_figure(1, 1)
    axes[0, 0].plot([0.5, 1.5], [1, 2])
    axes[0, 0].set_xlabel("six", fontsize=6)
    assert any("6.0 pt 'six'" in v for v in style.violations(_laid_out(fig)))


def test_an_invisible_legend_swatch_is_a_violation():
    fig, axes = plots.new_figure(1, 1)
    ax = axes[0, 0]
    ax.plot([0.5, 1.5], [1.1, 2.2], color="white", label="critical width")  # the phase figure's old staircase
    ax.plot([0.5, 1.5], [2.2, 1.1], label="other")
    ax.legend(facecolor="white")
    found = style.violations(_laid_out(fig))
    assert found == ["legend entry 'critical width' is the colour of its legend's background"]
    ax.legend(facecolor="0.55")  # the house fix: a grey legend behind the white line
    assert style.violations(_laid_out(fig)) == []


def test_fractional_ticks_on_a_whole_number_axis_are_a_violation():
    fig, axes = plots.new_figure(1, 1)
    ax = axes[0, 0]
    ax.plot([0, 1, 2], [0.1, 0.4, 0.3])  # layers 0..2: matplotlib ticks them at 0.25
    found = style.violations(_laid_out(fig))
    assert len(found) == 1 and "whole-number x values with fractional ticks" in found[0]
    style.integer_axis(ax, "x")
    assert style.violations(_laid_out(fig)) == []
    ax.plot([0.5], [0.2], "x")  # not whole numbers any more: any tick is fine
    ax.xaxis.set_major_locator(__import__("matplotlib.ticker", fromlist=["AutoLocator"]).AutoLocator())
    assert style.violations(_laid_out(fig)) == []


def test_save_names_the_broken_rule_in_a_warning(tmp_path):
    fig, axes = plots.new_figure(1, 1)
    axes[0, 0].plot(np.arange(3), [1, 2, 3])
    axes[0, 0].set_ylabel("tiny", fontsize=5)
    with pytest.warns(style.FigureRuleWarning, match=r"figure g.png: .*5.0 pt 'tiny'"):
        plots.save(fig, tmp_path / "g.png")
    assert (tmp_path / "g.png").exists()  # written all the same: a rule is a warning, not a lost figure


def test_the_palette_is_okabe_ito_and_the_style_is_applied():
    import matplotlib

    assert len(set(style.CYCLE)) == 8 and set(style.CYCLE) == set(style.OKABE_ITO.values())
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == list(style.CYCLE)
    assert min(v for k, v in style.RC.items() if k.endswith(("size", "fontsize")) and "marker" not in k) >= style.MIN_PT


def test_a_title_wider_than_the_figure_is_a_violation():
    fig, axes = plots.new_figure(1, 1)
    axes[0, 0].plot([0.5, 1.5], [1.1, 2.2])
    axes[0, 0].set_title("N = 24: six injection cycles (grey lines) where the N = 128 signal rises fastest")
    found = style.violations(_laid_out(fig))
    assert found and found[0].startswith("text cut off at the figure's edge: 'N = 24: six injection"), found
    axes[0, 0].set_title("N = 24: six cycles")
    assert style.violations(_laid_out(fig)) == []


def test_figure_formats_are_checked(tmp_path, monkeypatch):
    from raretask import ConfigError

    monkeypatch.setenv(style.FORMATS_ENV, "png,svg")
    fig, axes = plots.new_figure(1, 1)
    axes[0, 0].plot([0.5, 1.5], [1.1, 2.2])
    plots.save(fig, tmp_path / "h.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "h.svg"]
    for bad, why in (("png,jpg", "jpg unknown"), ("pdf", "no png")):
        monkeypatch.setenv(style.FORMATS_ENV, bad)
        with pytest.raises(ConfigError, match=why):
            style.figure_formats()


def test_a_legend_larger_than_its_panel_is_a_violation():
    fig, axes = plots.new_figure(2, 1)
    ax = axes[0, 1]
    ax.plot([0.5, 1.5], [1.1, 2.2], label="increase: < 1.6e-05/token in the corpus (0 in 0.061M tokens)")
    ax.set_title("reference tasks")
    ax.legend()
    assert "reference tasks: its legend is larger than the panel" in style.violations(_laid_out(fig))
    ax.lines[0].set_label("increase: < 1.6e-05/token")
    ax.legend()
    assert style.violations(_laid_out(fig)) == []


def test_text_drawn_over_a_label_is_a_violation():
    fig, axes = plots.new_figure(1, 1)
    ax = axes[0, 0]
    ax.plot([0.5, 1.5], [1.1, 2.2])
    ax.set_xlabel("held-out LM loss")
    fig.legend(["a long legend entry for a run"], loc="lower center")  # over the x label
    found = style.violations(_laid_out(fig))
    assert found and "'held-out LM loss' and a legend" in found[0], found
    fig.legends.clear()
    ax.text(1.0, 1.6, "note")
    ax.text(1.0, 1.6, "note too")  # two annotations on one spot
    found = style.violations(_laid_out(fig))
    assert found == ["text drawn over other text: 'note' and 'note too'"], found


def test_minor_log_labels_are_thinned_where_they_would_collide():
    fig, axes = plots.new_figure(4, 1)
    ax = axes[0, 1]
    ax.plot([0.00021, 0.0013], [1.1, 2.2])
    ax.set_xscale("log")  # less than a decade in a quarter page: 2, 3, 4, 6 x 10^-4 collide
    fig.tight_layout()
    fig.canvas.draw()
    assert any("drawn over other text" in v for v in style.violations(fig))
    style.tidy_log_axes(fig)
    fig.canvas.draw()
    assert style.violations(fig) == []
    shown = [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    assert shown and all(("2" in t or "5" in t) for t in shown), shown
