"""The one walk that finds XNNPACK's sparse subgraph, over neutral `Op`s.

Both front ends translate their graph into an `OpGraph` (rules `Op`s joined
by data tensors) and call `walk`: the Keras-graph adapter
(`tfmot_lite/sparsity/xnnpack_graph.py`, before training) and the .tflite
adapter (`tfmot_lite/export/inspect_graph.py`, on the exported file). What
runs sparse is decided here once, with the rules of `xnnpack_rules`; each
front end only words the result (findings in Keras terms, a verdict per
operator of the file).

The walk, in three searches:

* starts: from every model input, the first convolution on each path must
  start the subgraph (`xnnpack_rules.start_problems`); a path that leaves
  the model before any convolution has no start;
* ends: from every model output back towards the inputs, each path must
  cross a spatial mean that keeps its axes; those means end the subgraph;
* inside: from the start convolutions (rejected ones too, so every problem
  is found) forward to the ends, every operator must be allowed inside
  (`xnnpack_rules.inside_problem`). The walk goes on past a problem, and
  marks what it reaches only through one as not `clean`: the Keras report
  blames only the first problem on each path, the .tflite table gives every
  operator its role.
"""

import collections
import dataclasses

from tfmot_lite.core import xnnpack_rules as rules

# Roles of the operators the inside walk reaches.
SEED = "seed"  # a start convolution, valid or rejected
INSIDE = "inside"
PROBLEM = "problem"
END = "end"
FLAT_END = "flat end"  # a spatial mean that drops the spatial axes


class OpGraph:
    """A dataflow graph of rules `Op`s, as a front end translates its own.

    `ops` maps each node (any hashable: a Keras layer call, a .tflite
    operator index) to its `Op`, in execution order; `inputs[node]` and
    `outputs[node]` are the data tensors it reads and writes (constants left
    out); `model_inputs` and `model_outputs` the model's. Building it folds
    pads into the convolutions they feed (`_fold_pads`), the one place that
    needs a convolution's neighbours.
    """

    def __init__(self, ops, inputs, outputs, model_inputs, model_outputs):
        self.ops = ops
        self.inputs = inputs
        self.outputs = outputs
        self.model_inputs = list(model_inputs)
        self.model_outputs = list(model_outputs)
        self.producer = {t: node for node in ops for t in outputs[node]}
        self.consumers = collections.defaultdict(list)
        for node in ops:
            for t in inputs[node]:
                self.consumers[t].append(node)
        self.position = {node: i for i, node in enumerate(ops)}
        self._fold_pads()

    def next(self, node):
        return [c for t in self.outputs[node] for c in self.consumers[t]]

    def _folded_pad(self, node):
        """What a pad read only by convolution `node` adds to its input:
        XNNPACK folds it into the convolution (None when there is none)."""
        if not self.inputs[node]:
            return None
        source = self.inputs[node][0]
        pad = self.producer.get(source)
        if pad is None or self.ops[pad].kind != rules.PAD or len(self.consumers[source]) != 1:
            return None
        return self.ops[pad].pads

    def _fold_pads(self):
        """Sets each convolution's `pads` (its own padding plus a folded
        pad) and whether each pad feeds one depthwise convolution that pads
        nothing itself, the only kind XNNPACK folds a pad into."""
        for node, op in self.ops.items():
            if op.kind in (rules.CONV, rules.DEPTHWISE):
                op.pads = rules.conv_pads(
                    op.same_padding, op.input_hw, op.kernel, op.strides,
                    self._folded_pad(node),
                )
            elif op.kind == rules.PAD:
                following = [self.ops[n] for n in self.next(node)]
                op.feeds_valid_depthwise = (
                    len(following) == 1 and following[0].kind == rules.DEPTHWISE
                    and not following[0].same_padding
                )


@dataclasses.dataclass
class Visit:
    """How the inside walk met one operator: its role, the `(rule, fix)`
    it breaks (roles PROBLEM and FLAT_END), and whether some path reaches it
    from a start through operators without problems (`clean`)."""

    role: str
    problem: object = None
    clean: bool = True


@dataclasses.dataclass
class SparseSubgraph:
    """What `walk` found in an `OpGraph`.

    Attributes:
      graph: the `OpGraph` walked; nodes below are its nodes.
      starts: convolutions that start the subgraph, in the order found.
      rejected: `(node, problems)` of first convolutions that cannot start it.
      unstarted: nodes whose output leaves the model before any convolution
        (None: a model input that nothing reads).
      ends: the spatial means, keeping their axes, that end it.
      open_outputs: `(node, flat_means)` per model output computed by
        `node` along a path from a model input that crosses no end;
        `flat_means` are the spatial means dropping their axes on the way.
      visits: `Visit` per operator the inside walk reached, in the order met.
    """

    graph: OpGraph
    starts: list
    rejected: list
    unstarted: list
    ends: list
    open_outputs: list
    visits: dict

    def _reached(self, role, clean_only):
        return [
            node for node, visit in self.visits.items()
            if visit.role == role and (visit.clean or not clean_only)
        ]

    def with_role(self, role, clean_only=False):
        """The reached operators with `role`, in graph order; `clean_only`
        keeps those reached without crossing a problem."""
        return sorted(self._reached(role, clean_only), key=self.graph.position.get)

    def pointwise(self, clean_only=False):
        """The 1x1 convolutions inside: XNNPACK runs them with sparse
        kernels when enough of their weights are zero."""
        return [
            node for node in self.with_role(INSIDE, clean_only)
            if rules.is_sparse_1x1(self.graph.ops[node])
        ]

    def flat_means(self, clean_only=False):
        """Spatial means that drop their axes where an end should be: met
        by the inside walk (in the order met), then those on the way to an
        open output."""
        found = self._reached(FLAT_END, clean_only)
        for _, means in self.open_outputs:
            found += [node for node in means if node not in found]
        return found


def walk(graph):
    """Finds the sparse subgraph of `graph` (an `OpGraph`)."""
    starts, rejected, unstarted = _find_starts(graph)
    ends, open_outputs = _find_ends(graph)
    seeds = starts + [node for node, _ in rejected]
    return SparseSubgraph(
        graph, starts, rejected, unstarted, ends, open_outputs,
        _walk_inside(graph, seeds, set(ends)),
    )


def _dfs(stack, expand):
    """Visits each node reachable from `stack` once; `expand(node)` returns
    the nodes to visit next."""
    seen = set()
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(expand(node))


def _find_starts(graph):
    starts, rejected, unstarted = [], {}, []

    def expand(node):
        op = graph.ops[node]
        if op.kind == rules.CONV:
            problems = rules.start_problems(op)
            if problems:
                rejected.setdefault(node, problems)
            elif node not in starts:
                starts.append(node)
            return []
        following = graph.next(node)
        if not following and node not in unstarted:
            unstarted.append(node)
        return following

    for tensor in graph.model_inputs:
        if not graph.consumers[tensor] and None not in unstarted:
            unstarted.append(None)
        _dfs(list(graph.consumers[tensor]), expand)
    return starts, list(rejected.items()), unstarted


def _is_flat_mean(op):
    return op.kind == rules.MEAN and op.spatial and not op.keepdims


def _find_ends(graph):
    ends, open_outputs = [], []
    model_inputs = set(graph.model_inputs)
    for tensor in graph.model_outputs:
        last = graph.producer.get(tensor)
        if tensor in model_inputs or last is None:
            continue  # An input passed through untouched; nothing runs.
        reached, flat_means, is_open = _back_from(graph, last)
        ends += [node for node in reached if node not in ends]
        if is_open:
            open_outputs.append((last, flat_means))
    return ends, open_outputs


def _back_from(graph, last):
    """From output op `last` back to the inputs, stopping at ends: the ends
    met, the flat spatial means met, and whether a model input was reached."""
    ends, flat_means, open_ = [], [], []

    def expand(node):
        op = graph.ops[node]
        if rules.is_end(op):
            ends.append(node)
            return []
        if _is_flat_mean(op):
            flat_means.append(node)
        sources = graph.inputs[node]
        open_.extend(t for t in sources if t not in graph.producer)
        return [graph.producer[t] for t in sources if t in graph.producer]

    _dfs([last], expand)
    return ends, flat_means, bool(open_)


def _classify(graph, node, seeds, ends):
    op = graph.ops[node]
    if node in seeds:
        return Visit(SEED)
    if node in ends:
        return Visit(END)
    if _is_flat_mean(op):
        return Visit(FLAT_END, rules.keepdims_problem(op))
    problem = rules.inside_problem(op)
    return Visit(INSIDE) if problem is None else Visit(PROBLEM, problem)


def _walk_inside(graph, seeds, ends):
    """Every operator reachable from `seeds` before an end, each met once
    through a clean path if there is one."""
    visits, stack, seeds = {}, [(node, True) for node in seeds], set(seeds)
    while stack:
        node, clean = stack.pop()
        if node in visits and (visits[node].clean or not clean):
            continue
        visit = _classify(graph, node, seeds, ends)
        visit.clean = clean
        visits[node] = visit
        if visit.role in (END, FLAT_END):
            continue
        onward = clean and visit.role != PROBLEM
        stack.extend((following, onward) for following in graph.next(node))
    return visits
