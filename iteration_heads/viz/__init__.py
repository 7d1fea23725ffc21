"""Visualisation: attention views, detection and intervention figures, training curves, scaling
grids, the one-file HTML report, and saving figures offline.

Every function takes the library's own objects and returns a plotly ``Figure`` or an
:class:`AttentionView` (circuitsvis); anything else raises
:class:`~iteration_heads.IterationHeadsError` naming what was passed and what is expected.

* :mod:`~iteration_heads.viz.attention`: :func:`attention_view`, :func:`attention_heatmap`;
* :mod:`~iteration_heads.viz.circuits`: :func:`detection_heatmap`, :func:`patching_heatmap`,
  :func:`ablation_chart`;
* :mod:`~iteration_heads.viz.curves`: :func:`training_curves`, :func:`scaling_grid`;
* :mod:`~iteration_heads.viz.export`: :func:`save_html`, :func:`save_png`;
* :mod:`~iteration_heads.viz.sweep_figures`: :func:`aggregate_seeds`, :func:`sweep_heatmaps`,
  :func:`heatmap_markdown` (the paper's heatmaps of a sweep's table, seeds aggregated);
* pathway analyses: :mod:`~iteration_heads.viz.pathway_circuits` (:func:`head_patching_heatmap`,
  :func:`pruning_chart`, :func:`linear_pruning_chart`), :mod:`~iteration_heads.viz.pathway_layers` (:func:`writers_chart`,
  :func:`logit_lens_chart`, :func:`relation_probes_chart`, :func:`horizon_chart`), :mod:`~iteration_heads.viz.pathway_flow` (:func:`flow_graph_chart`,
  :func:`segment_chart`);
* :mod:`~iteration_heads.viz.circuits` also draws the position route (:func:`route_chart`), and
  :mod:`~iteration_heads.viz.curves` an audit across checkpoints (:func:`checkpoint_curves`);
* :mod:`~iteration_heads.viz.html_report`: :func:`report_html`, :func:`write_report` (library
  models and runs); :mod:`~iteration_heads.viz.audit_report`: :func:`write_audit_report` (any
  audited model); :mod:`~iteration_heads.viz.page`: the page both build on.
"""

from iteration_heads.viz.attention import (
    EOI_COLOUR,
    ITERATION_COLOUR,
    AttentionView,
    attention_heatmap,
    attention_view,
)
from iteration_heads.viz.audit_report import audit_report_html, write_audit_report
from iteration_heads.viz.circuits import (
    ablation_chart,
    detection_heatmap,
    patching_heatmap,
    route_chart,
)
from iteration_heads.viz.curves import checkpoint_curves, scaling_grid, training_curves
from iteration_heads.viz.export import find_chromium, notebook_figures, save_html, save_png
from iteration_heads.viz.html_report import report_html, write_report
from iteration_heads.viz.pathway_circuits import (
    head_patching_heatmap,
    linear_pruning_chart,
    pruning_chart,
)
from iteration_heads.viz.pathway_flow import flow_graph_chart, segment_chart
from iteration_heads.viz.pathway_layers import (
    horizon_chart,
    logit_lens_chart,
    relation_probes_chart,
    writers_chart,
)
from iteration_heads.viz.sweep_figures import aggregate_seeds, heatmap_markdown, sweep_heatmaps

__all__ = [
    "EOI_COLOUR",
    "ITERATION_COLOUR",
    "AttentionView",
    "ablation_chart",
    "aggregate_seeds",
    "attention_heatmap",
    "attention_view",
    "audit_report_html",
    "checkpoint_curves",
    "detection_heatmap",
    "find_chromium",
    "flow_graph_chart",
    "head_patching_heatmap",
    "heatmap_markdown",
    "horizon_chart",
    "linear_pruning_chart",
    "logit_lens_chart",
    "notebook_figures",
    "patching_heatmap",
    "pruning_chart",
    "relation_probes_chart",
    "report_html",
    "route_chart",
    "save_html",
    "save_png",
    "scaling_grid",
    "segment_chart",
    "sweep_heatmaps",
    "training_curves",
    "write_audit_report",
    "write_report",
    "writers_chart",
]
