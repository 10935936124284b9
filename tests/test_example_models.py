"""The shared example models: MobileNetV2 cut after its first blocks (the
benchmarks' smoke runs) keeps the network's own layers."""

import keras
import pytest

from tfmot_lite.example_models import mobilenet_v2


def test_first_blocks_of_mobilenet_v2_are_its_own_layers():
    whole, first = mobilenet_v2(0.5), mobilenet_v2(0.5, blocks=3)
    names = [layer.name for layer in first.layers]
    # Block 2 is the first with a residual Add; block 3 is cut off.
    assert "block_2_add" in names and not any(n.startswith("block_3_") for n in names)
    assert set(names[1:-2]) <= {layer.name for layer in whole.layers}  # not the Input
    assert first.output_shape == (None, 10)
    assert isinstance(first.layers[-2], keras.layers.GlobalAveragePooling2D)


@pytest.mark.parametrize("blocks", [0, 18])
def test_blocks_out_of_range_are_refused(blocks):
    with pytest.raises(ValueError, match="`blocks` must be 1 to 17"):
        mobilenet_v2(blocks=blocks)


def test_blocks_are_cut_from_keras_3s_model_only():
    class OtherApplications:  # as tf_keras.applications would be passed
        pass

    with pytest.raises(ValueError, match="leave `applications` unset"):
        mobilenet_v2(applications=OtherApplications, blocks=3)
