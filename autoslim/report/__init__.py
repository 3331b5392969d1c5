"""Reports: Pareto fronts (pure), the trials table, plots and files."""

from autoslim.report.frame import front_frame, trials_frame
from autoslim.report.pareto import pareto_front
from autoslim.report.write import write_report

__all__ = ["front_frame", "pareto_front", "trials_frame", "write_report"]
