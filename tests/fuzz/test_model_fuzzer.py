"""The model fuzzer: random Sequential and Functional models (branches and
merges, shared layers, nested models, several inputs and outputs, an int
input feeding an Embedding; `model_strategies.py`) through pruning,
clustering, QAT and channel pruning, checking the invariants of
`model_checks.py`: no mutation of the input model, a clean ValueError
naming the layer for a model that cannot be wrapped, strip predicts as the
wrapped model, exact `.keras` round trip, and .tflite export that agrees.

Profiles (environment variable `HYPOTHESIS_PROFILE`):

* unset / `fuzz-fast`: a hand-written model with every feature at once
  (`model_strategies.RICH`) and, with a fixed seed (`derandomize=True`),
  two small drawn models per technique, no shrinking; the export test
  converts the hand-written one. Part of the normal test run;
* `long`: random models, `FUZZ_EXAMPLES` (default 200) per test, each
  exported; stops at the first failure and shrinks it. To run thousands
  of examples and collect every failure, use `benchmarks/fuzz_models.py`.
"""

import os
import tempfile
import warnings

import model_checks  # tests/fuzz/, beside this file
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

settings.register_profile(
    "fuzz-fast", max_examples=2, derandomize=True, deadline=None, database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "long", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None,
    database=None, suppress_health_check=list(HealthCheck),
)
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
PROFILE = settings.get_profile("long" if LONG else "fuzz-fast")
# Fast: the export test converts only the hand-written rich model.
EXPORT_PROFILE = PROFILE if LONG else settings(PROFILE, phases=[Phase.explicit])


def run(recipe, technique, export_tflite):
    with tempfile.TemporaryDirectory() as tmp:
        result = model_checks.check(recipe, technique, tmp, export_tflite=export_tflite)
    assert result["outcome"] in ("wrapped", "refused")
    for finding in result.get("upstream", []):
        # The converter's or LiteRT's (see model_checks.check_export).
        warnings.warn(f"upstream: {finding}", stacklevel=1)
    return result


def fuzz(technique, profile, export_tflite):
    """The hypothesis test of `technique`: drawn models, and the
    hand-written rich one."""

    @profile
    @given(recipe=model_checks.technique_models(technique))
    @example(recipe=model_checks.rich_example(technique))
    def check(recipe):
        run(recipe, technique, export_tflite)

    check()


@pytest.mark.slow
@pytest.mark.parametrize("technique", list(model_checks.TECHNIQUES))
def test_invariants(technique):
    """Wrap, train, strip, save/load: prune, cluster, qat, channels."""
    fuzz(technique, PROFILE, export_tflite=False)


@pytest.mark.slow
@pytest.mark.parametrize("technique", list(model_checks.TECHNIQUES))
def test_export_agrees(technique):
    """The .tflite conversions (float, sparse, int8) of fuzzed models."""
    fuzz(technique, EXPORT_PROFILE, export_tflite=True)
