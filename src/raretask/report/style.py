"""One style for every figure raretask draws, and the rules a figure must meet to go into a paper.

A figure is drawn at the width it is printed at, so its fonts are the sizes a reader sees:

- one panel across: a journal column, ``COLUMN_IN`` = 3.3 in;
- two or more panels across: the page width of a two-column paper, ``PAGE_IN`` = 6.9 in.

The rules (``violations``), checked by ``plots.save`` on every figure (a ``FigureRuleWarning``
names each broken one; the test suite turns it into an error, so every figure the demo, the
studies and the quick sweeps draw meets them):

1. no text under ``MIN_PT`` = 7 pt once the figure is scaled to its print width;
2. no text cut off at the figure's edge (a title wider than its panel), none drawn over other
   text or over a legend it is not part of (a hidden axis label), no legend larger than its panel;
3. no legend entry the colour of the legend's background (an invisible swatch);
4. an x axis whose plotted values are all whole numbers (layers, widths, steps) has no
   fractional tick label.

The palette is Okabe and Ito's eight colours ("Color Universal Design", 2008), distinguishable
under the common colour-vision deficiencies; ``CYCLE`` orders them for lines (black last, so it
stays free for reference lines such as chance).
"""

from __future__ import annotations

import math

import matplotlib
from matplotlib.colors import to_rgb

from ..errors import RaretaskWarning
from ..runfolder import FORMATS_ENV, figure_formats  # noqa: F401  (re-exported)

COLUMN_IN = 3.3
"""Print width of a one-panel figure (inches): one column of a two-column paper."""
PAGE_IN = 6.9
"""Print width of a figure with two or more panels across (inches): a two-column paper's page."""
MIN_PT = 7.0
"""Smallest font a printed figure may show (points, at its print width)."""
DPI = 220
"""PNG resolution: a 3.3 in figure is 726 px wide, sharp on screen and in print."""

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7"}
"""The colour-blind-safe palette, by name."""
CYCLE = tuple(OKABE_ITO[n] for n in ("blue", "vermillion", "bluish green", "orange", "reddish purple", "sky blue",
                                      "yellow", "black"))
"""Line colours in the order a figure's series take them."""
REFERENCE = "0.45"
"""Grey of reference lines (chance, a random-direction baseline, zero)."""

RC = {
    "font.size": 8.0, "axes.titlesize": 8.0, "axes.labelsize": 8.0, "xtick.labelsize": 7.0,
    "ytick.labelsize": 7.0, "legend.fontsize": 7.0, "legend.title_fontsize": 7.0, "figure.titlesize": 8.5,
    "axes.prop_cycle": matplotlib.cycler(color=list(CYCLE)), "lines.linewidth": 1.3, "lines.markersize": 4.0,
    "axes.linewidth": 0.7, "xtick.major.width": 0.7, "ytick.major.width": 0.7, "grid.linewidth": 0.5,
    "legend.frameon": True, "legend.framealpha": 0.85, "legend.edgecolor": "0.8", "figure.dpi": 100,
    "savefig.dpi": DPI, "pdf.fonttype": 42, "svg.fonttype": "none", "image.cmap": "viridis",
}
"""matplotlib settings of every figure (TrueType fonts in PDF so journals accept them)."""


class FigureRuleWarning(RaretaskWarning):
    """A figure breaks one of the rules above (``violations`` says which)."""


def apply() -> None:
    """Make ``RC`` matplotlib's defaults in this process."""
    matplotlib.rcParams.update(RC)


def panels_across(fig) -> int:
    """Columns of panels (colour bars and insets are not panels)."""
    cols = set()
    for ax in fig.axes:
        spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
        if spec is None or getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
            continue
        cols.update(range(spec.colspan.start, spec.colspan.stop))
    return max(len(cols), 1)


def print_width(fig) -> float:
    """The width a figure is printed at: the one ``plots.new_figure`` chose for it, else a column
    for one panel across and the page for more."""
    chosen = getattr(fig, "_raretask_print_width", None)
    if chosen is not None:
        return chosen
    return COLUMN_IN if panels_across(fig) == 1 else PAGE_IN


def _hidden_tick_labels(fig) -> set[int]:
    """ids of tick labels whose tick lies outside its axis' view (matplotlib keeps them, undrawn)."""
    out = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for ticks in (axis.get_major_ticks(), axis.get_minor_ticks()):
                for tick in ticks:
                    loc = tick.get_loc()
                    if loc is None or not (lo - 1e-9 * max(1.0, abs(hi - lo)) <= loc <= hi + 1e-9 * max(1.0, abs(hi - lo))):
                        out.update((id(tick.label1), id(tick.label2)))
    return out


def _texts(fig):
    hidden = _hidden_tick_labels(fig)
    for t in fig.findobj(matplotlib.text.Text):
        if id(t) in hidden:
            continue
        if t.get_visible() and t.get_text().strip() and t.figure is fig:
            axes = t.axes
            if axes is not None and not axes.get_visible():
                continue
            yield t


def _distance(a, b) -> float:
    """Euclidean distance of two colours in RGB (0: identical, about 1.7: black and white)."""
    return math.dist(to_rgb(a), to_rgb(b))


def _handle_colours(h) -> list:
    out = []
    for get in ("get_color", "get_facecolor", "get_edgecolor", "get_markerfacecolor"):
        if hasattr(h, get):
            c = getattr(h, get)()
            if c is None or (isinstance(c, str) and c == "none"):
                continue
            try:
                rgba = matplotlib.colors.to_rgba_array(c)
            except (ValueError, TypeError):
                continue
            out += [tuple(x) for x in rgba if x[3] > 0]
            if get in ("get_color", "get_facecolor"):
                break  # a line's colour or a patch's fill is what the eye reads first
    return out


def _integer_axis_problems(ax, which: str) -> list[str]:
    axis = ax.xaxis if which == "x" else ax.yaxis
    if axis.get_scale() != "linear" or not axis.get_visible():
        return []
    values = []
    for line in ax.get_lines():
        if line.get_transform() != ax.transData:
            continue  # axhline/axvline: one coordinate is the axes', not data
        data = line.get_xdata() if which == "x" else line.get_ydata()
        try:
            values += [float(v) for v in data]
        except (TypeError, ValueError):
            return []
    for coll in ax.collections:
        try:
            offs = coll.get_offsets()
        except AttributeError:
            continue
        if len(offs):
            values += [float(v) for v in offs[:, 0 if which == "x" else 1]]
    values = [v for v in values if math.isfinite(v)]
    if len(set(values)) < 2 or any(abs(v - round(v)) > 1e-9 for v in values):
        return []
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    ticks = [t for t in (axis.get_majorticklocs()) if lo - 1e-9 <= t <= hi + 1e-9]
    labelled = [t for t, lab in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
                if lab.get_visible() and lab.get_text().strip()]
    frac = [t for t in ticks if t in labelled and abs(t - round(t)) > 1e-9]
    if frac:
        return [f"{ax.get_title() or 'a panel'}: whole-number {which} values with fractional ticks "
                f"({', '.join(f'{t:g}' for t in frac[:3])}); use style.integer_axis"]
    return []


def _overlaps(texts: list, legends: list) -> list[str]:
    """Texts drawn over one another, or over a legend they are not part of (a hidden axis label).
    ``texts``: (text, window box) pairs; ``legends``: (legend, window box) pairs. Each box is
    measured once: a legend placed "best" searches its position on every measurement."""
    owned = {id(t): i for i, (leg, _) in enumerate(legends) for t in [*leg.get_texts(), leg.get_title()]}
    boxes = [(t, bb.shrunk(0.9, 0.8)) for t, bb in texts]  # glyph boxes have air around them
    found = []
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1:]:
            if id(a) in owned and owned.get(id(a)) == owned.get(id(b)):
                continue
            if ba.overlaps(bb):
                found.append(f"{a.get_text().strip()[:25]!r} and {b.get_text().strip()[:25]!r}")
        for j, (_, lb) in enumerate(legends):
            if owned.get(id(a)) != j and ba.overlaps(lb):
                found.append(f"{a.get_text().strip()[:25]!r} and a legend")
    return ["text drawn over other text: " + "; ".join(found[:3])] if found else []


def violations(fig) -> list[str]:
    """The rules ``fig`` breaks, one line each (empty: it meets them all). Call after the figure
    is laid out (``plots.save`` calls it after drawing)."""
    width = fig.get_figwidth()
    target = print_width(fig)
    scale = target / width
    out = []
    small: dict[float, list[str]] = {}
    for t in _texts(fig):
        if t.get_fontsize() * scale < MIN_PT - 1e-6:
            small.setdefault(round(t.get_fontsize() * scale, 1), []).append(t.get_text().strip()[:30])
    if small:
        out.append(f"text under {MIN_PT:g} pt at its print width ({target} in, the figure is {width:.2f} in): "
                   + "; ".join(f"{size} pt " + ", ".join(map(repr, texts[:2])) + (", ..." if len(texts) > 2 else "")
                               for size, texts in sorted(small.items())))
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = []
    for t in _texts(fig):
        try:
            texts.append((t, t.get_window_extent(renderer)))
        except (RuntimeError, ValueError):
            continue
    cut = [t.get_text().strip()[:40] for t, bb in texts
           if bb.x0 < box.x0 - 1 or bb.x1 > box.x1 + 1 or bb.y0 < box.y0 - 1 or bb.y1 > box.y1 + 1]
    if cut:
        out.append("text cut off at the figure's edge: " + ", ".join(map(repr, cut[:3])))
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    shown = [(leg, leg.get_window_extent(renderer)) for leg in legends if leg.get_visible()]
    out += _overlaps(texts, shown)
    extent = {id(leg): lb for leg, lb in shown}
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None or not leg.get_visible() or leg._bbox_to_anchor is not None:
            continue  # a legend anchored elsewhere on purpose is placed by its author
        lb, ab = extent[id(leg)], ax.get_window_extent(renderer)
        if lb.width > ab.width + 1 or lb.height > ab.height + 1:
            out.append(f"{ax.get_title() or 'a panel'}: its legend is larger than the panel")
    for leg, _ in shown:
        bg = leg.get_frame().get_facecolor() if leg.get_frame_on() else "white"
        for h, t in zip(leg.legend_handles, leg.get_texts()):
            cols = _handle_colours(h)
            if cols and max(_distance(c[:3], bg[:3] if not isinstance(bg, str) else bg) for c in cols) < 0.12:
                out.append(f"legend entry {t.get_text()!r} is the colour of its legend's background")
    for ax in fig.axes:
        if getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
            continue
        out += _integer_axis_problems(ax, "x")  # the x axis: layers, widths, steps (a y of 0/1 accuracies is not whole-number data)
    return out


def _minor_log_label(x, pos=None) -> str:
    """Minor tick label of a log axis at 2 x 10^e and 5 x 10^e only."""
    if not x > 0:
        return ""
    e = math.floor(math.log10(x) + 1e-9)
    m = round(x / 10**e, 6)
    return f"${m:g}\\times10^{{{e}}}$" if m in (2, 5) else ""


def tidy_log_axes(fig) -> None:
    """On every log-scaled x axis spanning less than a decade (where matplotlib labels minor
    ticks), label the minor ticks at 2 and 5 x 10^e only: 2, 3, 4, 6 x 10^e collide at print
    width. ``plots.save`` calls it."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for ax in fig.axes:
        if ax.get_xscale() != "log":
            continue
        lo, hi = sorted(ax.get_xlim())
        span = math.log10(hi / lo) if lo > 0 and hi > 0 else float("inf")
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_log_label) if span < 1 else NullFormatter())


def integer_axis(ax, which: str = "x") -> None:
    """Whole-number ticks on an axis of whole numbers (layers, widths, steps)."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if which == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def reference_line(ax, y: float, label: str, **kw):
    """A horizontal reference line (chance, a baseline) in the reference grey, dotted."""
    return ax.axhline(y, color=kw.pop("color", REFERENCE), ls=kw.pop("ls", ":"), lw=kw.pop("lw", 1.0),
                      label=label, **kw)
