"""Collaborative optimization, with the names of `tfmot.experimental.combine`.

Prune or cluster a model, strip it, then quantize it without undoing what
pruning or clustering did:

```python
import tfmot_lite as tfmot

annotated = tfmot.quantization.keras.quantize_annotate_model(stripped_model)
pqat = tfmot.quantization.keras.quantize_apply(
    annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
cqat = tfmot.quantization.keras.quantize_apply(
    annotated, tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme())
```

What lives where:

* `transforms.py`: the math (`SparsityPreserve`, `ClusterPreserve`), kernel
  transforms applied before fake quantization;
* `quantizers.py`: `PreservingQuantizer`, transform then weight quantizer;
* `schemes.py`: the schemes and their registries;
* `strip.py`: `strip_clustering_cqat`.
"""

from tfmot_lite.experimental.combine.quantizers import PreservingQuantizer
from tfmot_lite.experimental.combine.schemes import (
    Default8BitClusterPreserveQuantizeRegistry,
    Default8BitClusterPreserveQuantizeScheme,
    Default8BitPrunePreserveQuantizeRegistry,
    Default8BitPrunePreserveQuantizeScheme,
)
from tfmot_lite.experimental.combine.strip import strip_clustering_cqat
from tfmot_lite.experimental.combine.transforms import (
    ClusterPreserve,
    SparsityPreserve,
    WeightTransform,
)

__all__ = [
    "ClusterPreserve",
    "Default8BitClusterPreserveQuantizeRegistry",
    "Default8BitClusterPreserveQuantizeScheme",
    "Default8BitPrunePreserveQuantizeRegistry",
    "Default8BitPrunePreserveQuantizeScheme",
    "PreservingQuantizer",
    "SparsityPreserve",
    "WeightTransform",
    "strip_clustering_cqat",
]
