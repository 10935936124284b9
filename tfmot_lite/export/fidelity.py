"""`layer_fidelity`: where a .tflite stops computing what its Keras model
computes, layer by layer.

Top-1 agreement says *whether* an exported model predicts what the Keras
model predicts; when it does not, this says *where* the two part. It runs
the Keras model (a QAT model from `quantize_model`, or any model) and the
.tflite on the same few examples, pairs each Keras layer output with a
.tflite tensor and compares them. The .tflite runs as deployed, on XNNPACK,
every tensor read as XNNPACK computes it (`taps.every_tensor_an_output`);
`xnnpack=False` reads LiteRT's built-in kernels instead (every intermediate
tensor kept):

```python
from tfmot_lite.export import layer_fidelity

fidelity = layer_fidelity(qat_model, "model.tflite", x_test[:4])
print(fidelity)                    # one row per layer, then the verdict
fidelity.first_departure           # the first row that departs, or None
```

How a Keras layer finds its tensor:

* by name: the converter keeps the Keras layer names in tensor names
  (`model_1/quant_conv_1/Relu;model_1/quant_conv_1/conv_1/BiasAdd`: the
  first `;` part names the operation that produced the tensor, later parts
  name what was fused into it). A layer's tensor is the last one, along the
  graph, whose first part names it and whose shape is the layer's output
  shape. A RESHAPE's tensor named after two layers (`dense/Reshape;norm/...`:
  a Dense over pixels reading a LayerNormalization) belongs to neither: it
  holds the earlier layer's values, whose own tensor is its input.
* folded: a layer named only in a later part (a BatchNormalization fused
  into its convolution), or whose last operation is named in a later part
  of a tensor after its own (a standalone BatchNormalization's ADD fused
  into the ReLU after it: its own tensor is the MUL before), or with no
  tensor of its own between its
  neighbours (QAT's folded BatchNormalization and activations are
  identities in Keras) has nothing to compare: its row says so.
* by shape and order: a layer whose name the converter dropped takes the
  first unused tensor of its output shape between the tensors of the
  matched layers before and after it.

Integer tensors are dequantized with their scale and zero point. Each row
holds the cosine of the two outputs (all examples, flattened), the largest
absolute difference relative to the range of the Keras output, and for an
integer tensor that difference in quantization steps (LSB). A row departs
when its cosine is under `min_cosine` or its relative error over
`max_error`, except an integer tensor within `max_lsb` steps: on an output
that spans a few steps, one rounding step is a large share of the range
(and lowers the cosine) without anything being wrong. `first_departure` is
the first departing row in graph order.

Differences of one step grow along the graph, so a deep model can depart
somewhere with every layer simulated right. Each compared row therefore
also runs its Keras layer on the values the .tflite holds for the layer's
inputs and compares with the .tflite's output (`local_*`): a layer that
lands on other integers in more than `max_local_share` of its elements
computes differently by itself (`first_local_departure`). Read from
LiteRT's built-in kernels (`xnnpack=False`), a layer can compute
differently from them where it computes what XNNPACK does: their int8 MEAN
rounds a share of a small pool's outputs one step up, their LOGISTIC misses
the exactly rounded sigmoid on a few percent.

Layers are those of the model's own graph: a nested model is compared at
its output (one row), Functional and Sequential models only.
"""

import dataclasses
import re

import numpy as np


@dataclasses.dataclass
class LayerFidelity:
    """One Keras layer output and the .tflite tensor it was paired with.

    `match`: "name", "shape" (by shape and order), "folded" (no tensor of
    its own; `tensor` names the one it was fused into, if any) or
    "unmatched". `cosine`, `max_error` (max |keras - tflite| over the Keras
    output's range), `max_abs_error` and `lsb` (that difference in
    quantization steps of an integer tensor) are None when nothing was
    compared. The `local_*` fields compare the layer run on the .tflite's
    own values of its inputs (`local_error` over the tensor's range; for an
    integer tensor `local_lsb`, the largest difference in steps,
    `local_share`, the share of its `local_elements` on another integer,
    and `local_bias`, the mean difference in steps): what this layer computes
    differently by itself, with no drift from the layers before it.
    """

    path: str
    layer_type: str
    shape: tuple
    match: str
    tensor: object = None
    tensor_dtype: object = None
    cosine: object = None
    max_error: object = None
    max_abs_error: object = None
    lsb: object = None
    local_error: object = None
    local_lsb: object = None
    local_share: object = None
    local_bias: object = None
    local_elements: object = None

    @property
    def compared(self):
        return self.cosine is not None

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FidelityReport:
    """Per-layer rows (graph order) and the thresholds a row departs at."""

    rows: list
    examples: int
    min_cosine: float = 0.99
    max_error: float = 0.1
    max_lsb: float = 2.0
    max_local_share: float = 0.02
    kernels: str = "XNNPACK"  # whose tensors were read: "XNNPACK" or "built-in"

    def departs(self, row):
        """Cosine under `min_cosine` or an error over `max_error` of the
        range; an integer tensor within `max_lsb` quantization steps never
        departs (on an output spanning a few steps, one rounding step is a
        large share of the range and lowers the cosine)."""
        if not row.compared:
            return False
        if self.within_rounding(row):
            return False
        return row.cosine < self.min_cosine or row.max_error > self.max_error

    def within_rounding(self, row):
        """An integer tensor within `max_lsb` steps of the Keras output (and
        float32 rounding of the scale)."""
        return row.lsb is not None and row.lsb <= self.max_lsb + 0.01

    def departs_locally(self, row):
        """Run on the .tflite's own inputs, the layer lands on another
        integer in more than `max_local_share` of its elements, and in more
        than one (a float tensor: differs by more than `max_error` of its
        range). Rounding ties move a few elements by one step, and a LUT
        activation can amplify those, so a share and not a largest step is
        the test."""
        if row.local_share is not None:
            differ = row.local_share * (row.local_elements or 0)
            return row.local_share > self.max_local_share and differ > 1.5
        return row.local_error is not None and row.local_error > self.max_error

    @property
    def first_local_departure(self):
        """The first row (graph order) whose layer computes differently by
        itself (`departs_locally`), or None."""
        return next((r for r in self.rows if self.departs_locally(r)), None)

    @property
    def first_departure(self):
        """The first compared row (graph order) that departs, or None."""
        return next((r for r in self.rows if self.departs(r)), None)

    @property
    def compared(self):
        return [r for r in self.rows if r.compared]

    @property
    def worst(self):
        """The compared row with the lowest cosine (integer tensors within
        rounding left out), or None."""
        rows = [r for r in self.compared if not self.within_rounding(r)]
        return min(rows, key=lambda r: r.cosine) if rows else None

    @property
    def output(self):
        """The last compared row (the model output, when it was matched)."""
        rows = self.compared
        return rows[-1] if rows else None

    def row(self, path):
        return next(r for r in self.rows if r.path == path)

    def summary(self):
        """One line: the first departing layer and by how much, or that
        none departs."""
        counts = (f"{len(self.compared)} of {len(self.rows)} layers compared on "
                  f"{self.examples} example(s), {self.kernels} kernels")
        first = self.first_departure
        if first is None:
            worst = self.worst
            tail = "" if worst is None else (
                f"; lowest cosine {worst.cosine:.4f} at {worst.path}")
            return f"no layer departs ({counts}){tail}{self._local_summary()}"
        lsb = "" if first.lsb is None else f", {first.lsb:.1f} LSB"
        return (
            f"first departs at {first.path} ({first.layer_type}): cosine "
            f"{first.cosine:.4f}, max error {first.max_error:.1%} of its range{lsb} "
            f"(tensor '{_short(first.tensor)}'; {counts}){self._local_summary()}"
        )

    def _local_summary(self):
        rows = [r for r in self.rows if r.local_share is not None]
        if not rows:
            return ""
        first = self.first_local_departure
        if first is not None:
            head = (f"; on its own .tflite inputs, {first.path} ({first.layer_type}) "
                    "computes differently: ")
            if first.local_share is None:
                return head + f"max error {first.local_error:.1%} of its range"
            return head + (f"{first.local_share:.1%} of elements on another integer (max "
                           f"{first.local_lsb:.0f} LSB, mean {first.local_bias:+.2f} LSB)")
        worst = max(rows, key=lambda r: r.local_share)
        return (f"; on their own .tflite inputs, {len(rows)} integer layers land on "
                f"the .tflite's integers in >= {1 - self.max_local_share:.0%} of "
                f"elements (most off: {worst.path}, {worst.local_share:.2%}, max "
                f"{worst.local_lsb:.0f} LSB)")

    def to_dict(self):
        first = self.first_departure
        return {
            "examples": self.examples,
            "min_cosine": self.min_cosine,
            "max_error": self.max_error,
            "max_lsb": self.max_lsb,
            "max_local_share": self.max_local_share,
            "kernels": self.kernels,
            "first_departure": None if first is None else first.to_dict(),
            "summary": self.summary(),
            "rows": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, d):
        rows = [LayerFidelity(**dict(r, shape=tuple(r["shape"]))) for r in d["rows"]]
        return cls(rows=rows, examples=d["examples"], min_cosine=d["min_cosine"],
                   max_error=d["max_error"], max_lsb=d.get("max_lsb", 2.0),
                   max_local_share=d.get("max_local_share", 0.02),
                   kernels=d.get("kernels", "built-in"))

    def table(self, only_compared=False):
        from tfmot_lite.export.report import text_table

        header = ["layer", "type", "match", "tflite tensor", "cosine", "max err", "LSB",
                  "own inputs: differ", ""]
        rows = [header]
        for r in self.rows:
            if only_compared and not r.compared:
                continue
            rows.append([
                r.path, r.layer_type, r.match, _short(r.tensor) if r.tensor else "-",
                "-" if r.cosine is None else f"{r.cosine:.4f}",
                "-" if r.max_error is None else f"{r.max_error:.1%}",
                "-" if r.lsb is None else f"{r.lsb:.1f}",
                "-" if r.local_share is None else f"{r.local_share:.1%} ({r.local_lsb:.0f} LSB)",
                ", ".join(w for w, d in (("departs", self.departs(r)),
                                         ("computes differently", self.departs_locally(r)))
                          if d),
            ])
        return text_table(rows)

    def __str__(self):
        return "\n".join([
            f"Layer fidelity, Keras vs .tflite on {self.kernels} kernels "
            f"({self.examples} example(s); a layer "
            f"departs at cosine < {self.min_cosine} or max error > {self.max_error:.0%} "
            f"of its range, an integer tensor only beyond {self.max_lsb:g} LSB):",
            self.table(),
            self.summary(),
        ])


def layer_fidelity(model, flatbuffer, data, examples=4, min_cosine=0.99, max_error=0.1,
                   max_lsb=2.0, xnnpack=True):
    """Compares every layer output of `model` with the .tflite's tensors.

    Args:
      model: the Keras model the .tflite was converted from (QAT or not;
        a distillation model is read as its student).
      flatbuffer: the .tflite, bytes or a path.
      data: inputs, batch first (an array; a dict keyed by input name or a
        list for several inputs); the first `examples` are used.
      examples: how many examples to run (each runs the .tflite once).
      min_cosine, max_error, max_lsb: a layer departs when the cosine of
        its output and the tensor is under `min_cosine`, or their largest
        difference over the range of the Keras output is over `max_error`;
        an integer tensor within `max_lsb` quantization steps never does.
      xnnpack: read the tensors XNNPACK computes (the deployed runtime;
        needs TensorFlow to list them among the graph's outputs), or with
        False those of LiteRT's built-in kernels.

    Returns:
      A `FidelityReport`: `rows` (graph order), `first_departure` (drift
      along the graph), `first_local_departure` (a layer that computes
      differently on the .tflite's own inputs), `summary()`, and a table as
      `str()`.
    """
    import keras

    from tfmot_lite.core import graph
    from tfmot_lite.distillation.distiller import student_of
    from tfmot_lite.export.convert import count_examples, input_names
    from tfmot_lite.export.runtime import TFLiteModel
    from tfmot_lite.export.source import read_tflite
    from tfmot_lite.export.taps import every_tensor_an_output

    model = student_of(model)
    if not isinstance(model, keras.Model) or not graph.is_graph_model(model):
        raise ValueError(
            "`layer_fidelity` reads the layer outputs of a Functional or "
            f"Sequential Keras model; got {type(model).__name__}."
        )
    flatbuffer = read_tflite(flatbuffer, "flatbuffer")
    if not isinstance(examples, int) or examples < 1:
        raise ValueError(f"`examples` must be a positive integer; got {examples!r}.")
    functional = getattr(model, "_functional", None) or model
    entries = _keras_entries(functional)
    several = len(model.inputs) > 1
    names = input_names(model) if several else None
    if xnnpack:
        runner = TFLiteModel(every_tensor_an_output(flatbuffer), input_names=names)
    else:
        runner = TFLiteModel(flatbuffer, input_names=names, preserve_all_tensors=True)
    batch = runner.by_name(data)
    n = min(examples, count_examples(batch if several else next(iter(batch.values()))))
    if n < 1:
        raise ValueError("`data` holds no examples.")
    batch = {name: np.asarray(values)[:n] for name, values in batch.items()}

    # Keras: every node's output, in one call.
    extractor = keras.Model(functional.inputs, [tensor for _, _, tensor, _ in entries])
    keras_inputs = _keras_inputs(functional, batch)
    outputs = extractor(keras_inputs, training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    outputs = [np.asarray(keras.ops.convert_to_numpy(o), dtype=np.float64) for o in outputs]

    # .tflite: every operator output, example by example.
    interpreter = runner.interpreter
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    produced = []  # (position along the graph, tensor index, operator)
    for position, op in enumerate(interpreter._get_ops_details()):
        if op["op_name"] == "DELEGATE" or _requantizes(op, details):
            continue  # a copy in a reader's scale (a concatenation's), named as its input
        produced += [(position, int(i), op["op_name"]) for i in op["outputs"]
                     if int(i) in details]
    values = {i: [] for _, i, _ in produced}
    for k in range(n):
        runner._set_inputs({name: v[k] for name, v in batch.items()})
        interpreter.invoke()
        for _, i, _ in produced:
            values[i].append(np.array(interpreter.get_tensor(i)))
    tensors = [
        _Tensor(index=i, position=p, name=details[i]["name"],
                shape=tuple(int(d) for d in details[i]["shape"]),
                dtype=np.dtype(details[i]["dtype"]).name,
                scale=_scale(details[i]),
                values=_dequantize(np.stack(values[i]), details[i]),
                bounds=_bounds(details[i]), op=op_name)
        for p, i, op_name in produced
    ]

    matches = _match(functional, entries, outputs, tensors)
    rows = []
    for (path, op, _, _), output, (kind, tensor) in zip(entries, outputs, matches):
        row = LayerFidelity(path=path, layer_type=type(op).__name__,
                            shape=tuple(output.shape[1:]), match=kind)
        if tensor is not None:
            row.tensor = tensor.name
            row.tensor_dtype = tensor.dtype
        if kind in ("name", "shape"):
            _compare(row, output, tensor)
        rows.append(row)
    _compare_on_own_inputs(rows, entries, matches, functional, runner, batch)
    return FidelityReport(rows=rows, examples=n, min_cosine=min_cosine, max_error=max_error,
                          max_lsb=max_lsb, kernels="XNNPACK" if xnnpack else "built-in")


def _requantizes(op, details):
    """Whether `op` is a QUANTIZE from integers to integers: the converter
    moving a tensor into the scale one reader needs (CONCATENATION's)."""
    if op["op_name"] != "QUANTIZE":
        return False
    sources = [details.get(int(i)) for i in op["inputs"]]
    return bool(sources) and all(
        d is not None and np.issubdtype(np.dtype(d["dtype"]), np.integer) for d in sources)


@dataclasses.dataclass
class _Tensor:
    index: int
    position: int
    name: str
    shape: tuple
    dtype: str
    scale: object
    values: np.ndarray
    bounds: tuple = None  # the real values an integer tensor can hold
    op: str = ""  # the operator that produced it


def _bounds(d):
    """`(low, high)`: the real values a per-tensor integer tensor holds
    (its integer limits dequantized); None for others. A Keras layer whose
    output range is its reader's (a fused ReLU's, a concatenation's) has no
    clipping of its own: the .tflite's tensor clips where the reader does."""
    scale = _scale(d)
    if scale is None:
        return None
    info = np.iinfo(np.dtype(d["dtype"]))
    zero_point = float(d["quantization_parameters"]["zero_points"][0])
    return (info.min - zero_point) * scale, (info.max - zero_point) * scale


def _keras_entries(functional):
    """`(path, operation, output KerasTensor, node)` of every node of the graph
    with one output, inputs first (by depth, then the model's layer order).
    A layer called more than once gets one entry per call (`name#2`...)."""
    import keras

    order = {id(op): k for k, op in enumerate(functional.operations)}
    calls = {}
    entries = []
    by_depth = functional._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in sorted(by_depth[depth], key=lambda nd: order.get(id(nd.operation), -1)):
            op = node.operation
            if isinstance(op, keras.layers.InputLayer) or len(node.output_tensors) != 1:
                continue
            calls[op.name] = calls.get(op.name, 0) + 1
            path = op.name if calls[op.name] == 1 else f"{op.name}#{calls[op.name]}"
            entries.append((path, op, node.output_tensors[0], node))
    return entries


def _keras_inputs(model, batch):
    """The {tflite input name: array} batch as a list in the order of
    `model.inputs` (how the extractor, built on that list, takes it)."""
    if len(model.inputs) == 1:
        return list(batch.values())
    return [batch[t.name] for t in model.inputs]


def _scale(d):
    if not np.issubdtype(np.dtype(d["dtype"]), np.integer):
        return None
    scales = d["quantization_parameters"]["scales"]
    if scales.size == 1:
        return float(scales[0])
    return None


def _dequantize(values, d):
    """Integer tensor values as the real numbers they stand for."""
    if not np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float64)
    q = d["quantization_parameters"]
    scales, zero_points = q["scales"], q["zero_points"]
    if scales.size == 0:
        return values.astype(np.float64)  # int32 shapes, ids: as they are.
    if scales.size == 1:
        return (values.astype(np.float64) - zero_points[0]) * scales[0]
    # `values` may be stacked examples: the channel axis counts from the
    # tensor's own first axis.
    shape = [1] * values.ndim
    shape[values.ndim - len(d["shape"]) + q["quantized_dimension"]] = -1
    return (values.astype(np.float64) - zero_points.reshape(shape)) * scales.reshape(shape)


def _short(name):
    """A tensor name's first `;` part without its model prefix."""
    if not name:
        return name
    first = name.split(";")[0]
    parts = first.split("/")
    return "/".join(parts[1:]) if len(parts) > 2 else first


def _name_resolver(functional, layer_names, tensor_names):
    """component -> layer name. TensorFlow re-traces the model when it is
    converted, so its name scopes carry a `_1` suffix (`conv_1` for layer
    `conv`); when the model's own name shows one, suffixed names are tried
    first."""
    model_name = functional.name
    suffixed = any(
        re.fullmatch(re.escape(model_name) + r"_\d+", name.split("/")[0])
        for name in tensor_names if "/" in name
    )
    model_scopes = {model_name}

    def resolve(component):
        stripped = re.fullmatch(r"(.+)_\d+", component)
        stripped = stripped.group(1) if stripped else None
        order = (stripped, component) if suffixed else (component, stripped)
        for candidate in order:
            if candidate in layer_names:
                return candidate
        return None

    def layers_of(segment):
        parts = [p for p in segment.split("/") if p]
        if parts and (parts[0] in model_scopes or (
                suffixed and re.fullmatch(re.escape(model_name) + r"_\d+", parts[0]))):
            parts = parts[1:]
        for part in parts:
            layer = resolve(part)
            if layer is not None:
                return layer
        return None

    return layers_of


def _match(functional, entries, outputs, tensors):
    """`(kind, _Tensor or None)` for every entry (see the module docstring)."""
    layer_names = {op.name for _, op, _, _ in entries}
    shared = {op.name for path, op, _, _ in entries if "#" in path}
    layers_of = _name_resolver(functional, layer_names, [t.name for t in tensors])
    order = {}
    for k, (_, op, _, _) in enumerate(entries):
        order.setdefault(op.name, k)
    primary, fused_into, last_fused = {}, {}, {}
    for t in tensors:
        named = [layers_of(s) for s in t.name.split(";") if s]
        named = [name for name in named if name is not None]
        if not named or (t.op == "RESHAPE" and len(set(named)) > 1):
            # A reshape computes nothing: named as its reader's `Reshape`
            # and, fused, as the layer it reshapes, it holds that layer's
            # output, whose own tensor is its input (a Dense over pixels
            # reads the LayerNorm before it through one).
            continue
        # A fused op's tensor names every layer it computes, in no set
        # order (FULLY_CONNECTED + ReLU may read 'dense/MatMul;relu/Relu'):
        # it is the output of the last of them in the graph.
        last = max(named, key=lambda name: order.get(name, -1))
        primary.setdefault(last, []).append(t)
        for other in named:
            if other != last:
                fused_into.setdefault(other, t)
                last_fused[other] = max(last_fused.get(other, -1), t.position)

    def same_shape(t, output):
        return t.shape[1:] == tuple(output.shape[1:]) and (not t.shape or t.shape[0] == 1)

    matches = [("unmatched", None)] * len(entries)
    used = set()
    for k, ((path, op, _, _), output) in enumerate(zip(entries, outputs)):
        if op.name in shared:
            continue
        candidates = [t for t in primary.get(op.name, ()) if same_shape(t, output)]
        if candidates:
            chosen = max(candidates, key=lambda t: t.position)
            if last_fused.get(op.name, -1) > chosen.position:
                # The layer's last operation was fused into a later layer's
                # (a standalone BatchNorm's ADD into the ReLU after it): the
                # named tensor is an intermediate, not the layer's output.
                matches[k] = ("folded", fused_into[op.name])
                continue
            matches[k] = ("name", chosen)
            used.add(chosen.index)
    named = {t.index for ts in primary.values() for t in ts}
    for k, ((path, op, _, _), output) in enumerate(zip(entries, outputs)):
        if matches[k][0] != "unmatched":
            continue
        if op.name in fused_into and op.name not in shared:
            matches[k] = ("folded", fused_into[op.name])
            continue
        before = [m[1].position for m in matches[:k] if m[0] in ("name", "shape")]
        after = [m[1].position for m in matches[k + 1:] if m[0] == "name"]
        low = max(before) if before else -1
        high = min((p for p in after if p > low), default=float("inf"))
        candidates = [
            t for t in tensors
            if low < t.position < high and t.index not in used and t.index not in named
            and same_shape(t, output)
        ]
        if candidates:
            chosen = min(candidates, key=lambda t: t.position)
            matches[k] = ("shape", chosen)
            used.add(chosen.index)
        else:
            matches[k] = ("folded", None)
    return matches


def _compare_on_own_inputs(rows, entries, matches, functional, runner, batch):
    """Fills each compared row's `local_*` fields: the Keras layer run on
    the values the .tflite holds for its inputs, against the .tflite's
    output. Accumulated rows show where the two models have drifted apart;
    these show which layer computes differently by itself.

    A layer's inputs are the .tflite tensors of the layers that produce
    them; a layer with no tensor of its own (a folded BatchNormalization,
    an identity, a padding fused into the next operator) passes on what
    Keras computes from its own inputs, so the next compared row covers
    the fused group. The model inputs are the .tflite's, as it quantized
    them."""
    import keras

    values = {}
    for tensor, name in zip(functional.inputs, runner.input_names):
        details = runner.inputs[name]
        values[id(tensor)] = _dequantize(runner._quantize_input(batch[name], details), details)
    for (_, op, output, node), (kind, tensor), row in zip(entries, matches, rows):
        if not all(id(t) in values for t in node.input_tensors):
            continue
        args, kwargs = node.arguments.fill_in(
            {id(t): keras.ops.convert_to_tensor(values[id(t)], "float32")
             for t in node.input_tensors})
        try:
            local = np.asarray(keras.ops.convert_to_numpy(op(*args, **kwargs)),
                               dtype=np.float64)
        except Exception:  # noqa: BLE001 - a layer that cannot run alone is left out
            continue
        if row.compared and tensor.values.size == local.size:
            own = tensor.values.reshape(local.shape)  # the .tflite runs one example at a time
            _compare_local(row, _clipped(local, tensor), own, tensor.scale)
            values[id(output)] = own
        elif kind not in ("name", "shape"):
            values[id(output)] = local


def _compare_local(row, local, own, scale):
    diff = local - own
    span = float(own.max() - own.min()) if diff.size else 0.0
    row.local_error = float(np.max(np.abs(diff)) / span) if span else float(
        np.max(np.abs(diff), initial=0.0))
    if scale:
        steps = diff / scale
        row.local_lsb = float(np.max(np.abs(steps), initial=0.0))
        row.local_share = float(np.mean(np.abs(steps) > 0.5)) if steps.size else 0.0
        row.local_bias = float(np.mean(steps)) if steps.size else 0.0
        row.local_elements = int(steps.size)


def _clipped(keras_values, tensor):
    if tensor.bounds is None:
        return keras_values
    return np.clip(keras_values, *tensor.bounds)


def _compare(row, keras_output, tensor):
    a = _clipped(keras_output, tensor).reshape(-1)
    b = tensor.values.reshape(-1)
    if a.size != b.size:  # pragma: no cover - shapes were checked
        row.match = "unmatched"
        return
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        cosine = 1.0
    elif na == 0 or nb == 0:
        cosine = 0.0
    else:
        cosine = float(np.dot(a, b) / (na * nb))
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    span = float(a.max() - a.min()) if a.size else 0.0
    if span == 0.0:
        span = float(max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)) if a.size else 1.0
    row.cosine = cosine
    row.max_abs_error = diff
    row.max_error = diff / span
    row.lsb = diff / tensor.scale if tensor.scale else None
