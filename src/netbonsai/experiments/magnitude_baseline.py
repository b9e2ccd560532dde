"""Moved to :mod:`netbonsai.methods.magnitude` (kept so that older imports still work)."""

from ..methods.magnitude import (  # noqa: F401
    MagnitudeSettings, inputs_reach_outputs, magnitude_job, mlp_params, pruned_architecture)
