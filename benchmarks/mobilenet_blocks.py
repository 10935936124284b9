"""The `--blocks N` option the step benchmarks share: MobileNetV2's stem and
first N inverted residual blocks only (`example_models.mobilenet_v2(blocks=N)`),
for smoke runs such as the test suite's."""


def add_argument(parser):
    parser.add_argument("--blocks", type=int, default=None, metavar="N",
                        help="MobileNetV2's stem and first N inverted residual blocks only "
                             "(a smoke run; default: the whole network)")


def label(blocks):
    """The model as the benchmarks' headers name it."""
    return "MobileNetV2 alpha=0.5" + ("" if blocks is None else f", first {blocks} blocks")
