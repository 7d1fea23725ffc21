"""Auditing any model for iteration heads: a verdict in three layers (are there iteration
heads; are they used; how do they know the position), from probes in the model's own tokens or
text, for HuggingFace checkpoint folders and across a run's checkpoints.

* :mod:`~iteration_heads.auditing.auditor`: :func:`audit` and :class:`Audit`;
* :mod:`~iteration_heads.auditing.route`: :func:`position_route`, the third layer;
* :mod:`~iteration_heads.auditing.sources`: a folder and a way of writing the task, as a model
  and probes (:func:`open_subject`);
* :mod:`~iteration_heads.auditing.solving`: colliding token layouts, and whether the model
  solves its probes (an audit concludes nothing about heads where it does not);
* :mod:`~iteration_heads.auditing.checkpoints`: :func:`audit_checkpoints`, across training.
"""

from iteration_heads.auditing.auditor import EXIT_UNSOLVED, Audit, audit
from iteration_heads.auditing.checkpoints import (
    TrainingAudit,
    audit_checkpoints,
    checkpoint_folders,
)
from iteration_heads.auditing.route import PositionRoute, components_before, position_route
from iteration_heads.auditing.solving import (
    chance_accuracy,
    check_token_layout,
    needed_accuracy,
    probe_accuracy,
)
from iteration_heads.auditing.sources import Subject, TaskWriting, longest_fitting, open_subject

__all__ = [
    "EXIT_UNSOLVED",
    "Audit",
    "PositionRoute",
    "Subject",
    "TaskWriting",
    "TrainingAudit",
    "audit",
    "audit_checkpoints",
    "chance_accuracy",
    "check_token_layout",
    "checkpoint_folders",
    "components_before",
    "longest_fitting",
    "needed_accuracy",
    "open_subject",
    "position_route",
    "probe_accuracy",
]
