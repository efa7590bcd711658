"""The memory planner: what a run the spec describes needs on one GPU, before it starts.

``aiprod-recipes plan`` builds the spec's transformer on the meta device (no weights are
allocated), counts its parameters, and adds up the device memory of a training step:
frozen weights (quantized or not, minus swapped blocks), trainable weights, gradients,
optimizer states, the text connectors, activations of the largest bucket, and a margin.
It says whether that fits a given GPU and, if not, the cheapest spec change that does.

Modules: ``configs`` (which transformer config), ``workload`` (token counts of the
largest bucket), ``params`` (parameter counts on meta), ``activations`` (the calibrated
activation model), ``flops`` (FLOPs of a step), ``estimate`` (the breakdown and the
suggestions), ``report`` (text and JSON), ``measure`` (measured peaks, for the checks).
Nothing heavy is imported here.
"""
