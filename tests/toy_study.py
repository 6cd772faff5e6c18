"""A study defined outside the package: the whole of what adding one takes (plus one
``register_study`` line). It trains two widths on a 4-task mixture and checks that the
wider one ends with a total loss at most ``margin`` times the narrow one's; ``margin`` is the
study's own setting (``--set margin=0.5``)."""

from raretask.report.html import Check, Figure
from raretask.report.plots import new_figure, save
from raretask.sim import RecordSchedule
from raretask.studies import Analysis, Cell
from raretask.validate import PosFloat, strict


@strict
class Settings:
    """The toy study's own settings."""

    margin: PosFloat = 1.0
    """The wide model's final total loss must be at most this times the narrow one's."""

PRESETS = {"quick": {"mixture": {"n_tasks": 4, "block_dim": 2, "beta": 1.5},
                     "train": {"steps": 200, "batch_size": 64, "warmup": 20, "lr": 0.01},
                     "widths": [1, 6], "seeds": [0], "record_points": 5}}


def cells(cfg):
    return [Cell(id=f"seed{s}", labels={"seed": s}, spec=cfg.spec(), train=cfg.train_config(s),
                 widths=list(cfg.widths), record=RecordSchedule("log", cfg.record_points)) for s in cfg.seeds]


def analyze(cfg, results, trace, out):
    last = results[results["step"] == results["step"].max()]
    total = last.groupby("width")["total_loss"].first()
    narrow, wide = total.loc[min(cfg.widths)], total.loc[max(cfg.widths)]
    fig, axes = new_figure()
    axes[0, 0].plot(total.index, total.to_numpy(), "o-")
    margin = cfg.settings.margin
    check = Check("wider model ends with the lower total loss", f"{wide:.3g} vs {narrow:.3g}",
                  f"<= {margin:g} x the narrow one's", bool(wide <= margin * narrow))
    figure = Figure(save(fig, out / "figures" / "toy.png"), "Total loss per width.", [check])
    return Analysis("A toy study.", [], [figure], {"total_loss": total.to_dict()})
