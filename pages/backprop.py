"""Backpropagation as a product of Jacobians: step through one example.

Thin page: widgets in, cached engine calls (``ui.backprop``), figures out.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from engine import backprop as bp
from engine.data.errors import DataError
from ui import backprop as ui


def move_step(delta: int | None, last: int) -> None:
    """Button callback: one step back or on, or back to the start."""
    # Reset, or move and stay within 0 .. last
    if delta is None:
        st.session_state[ui.STEP] = 0
        return
    current = int(st.session_state.get(ui.STEP, 0))
    st.session_state[ui.STEP] = min(max(current + delta, 0), last)


def choose_data() -> bp.Dataset | None:
    """Data widgets; the data set, or None after showing why not."""
    # Toy data set
    source = st.radio("Data", ui.SOURCES, key=ui.SOURCE, horizontal=True)
    if source == ui.SOURCES[0]:
        left, right = st.columns(2)
        name = left.selectbox("Toy data set", bp.TOY_DATASETS, key=ui.TOY_NAME)
        count = right.slider("Points", 20, 400, 120, step=10, key=ui.N_POINTS)
        noise = left.slider("Noise", 0.0, 0.5, 0.1, step=0.05, key=ui.NOISE)
        seed = right.number_input("Data seed", 0, 10_000, 0, key=ui.DATA_SEED)
        return ui.toy_data(name, int(count), float(noise), int(seed))

    # A few cells of the bed-topography demo grid
    if source == ui.SOURCES[2]:
        left, right = st.columns(2)
        count = left.slider("Cells", 20, 400, 120, step=10, key=ui.N_CELLS)
        seed = right.number_input("Data seed", 0, 10_000, 0, key=ui.CELL_SEED)
        st.caption(
            "Surface elevation and speed of Helheim cells, standardised; the "
            "class is whether BedMachine's bed lies below sea level."
        )
        try:
            return ui.bed_data(int(count), int(seed))
        except DataError as error:
            st.error(f"The bed-topography cells are not available: {error}")
            return None

    # CSV upload
    limit = (
        f"at most {bp.MAX_CSV_BYTES / 1e6:g} MB and {bp.MAX_CSV_ROWS:,} rows, "
        f"up to {bp.MAX_CSV_FEATURES} numeric feature columns and a "
        f"'{bp.LABEL_COLUMN}' column with 2 to {bp.MAX_CSV_CLASSES} classes"
    )
    uploaded = st.file_uploader(
        f"CSV file ({limit})", type="csv", key=ui.CSV_FILE, max_upload_size=1
    )
    st.caption("Features are standardised to mean 0 and deviation 1 per column.")
    if uploaded is None:
        st.info("Upload a CSV file to use it, or pick a toy data set.")
        return None
    try:
        return ui.csv_data(uploaded.getvalue(), uploaded.name)
    except bp.BackpropError as error:
        st.error(f"This CSV cannot be used: {error}")
        return None


def network_widgets() -> tuple[str, ui.Design | None, int]:
    """Network widgets, drawn whatever the data, so that they keep state."""
    # A preset, or the builder's layers
    preset = st.selectbox("Network", [*ui.PRESETS, ui.CUSTOM], key=ui.PRESET)
    design = None
    if preset == ui.CUSTOM:
        count = st.slider(
            "Hidden layers", 0, ui.MAX_HIDDEN_LAYERS, 1, key=ui.HIDDEN_LAYERS
        )
        widths, functions = [], []
        for i in range(count):
            left, right = st.columns(2)
            widths.append(
                left.slider(
                    f"Width of hidden layer {i + 1}", 1, ui.MAX_WIDTH, 4,
                    key=ui.width_key(i),
                )
            )
            functions.append(
                right.selectbox(
                    f"Activation of hidden layer {i + 1}", bp.ACTIVATIONS, index=1,
                    key=ui.activation_key(i),
                )
            )

        # Output head and the optional convolution
        head = st.selectbox(
            "Output and loss", list(ui.HEAD_LABELS),
            format_func=ui.HEAD_LABELS.__getitem__, key=ui.HEAD,
        )
        conv = None
        label = "1-D convolution after the first hidden layer"
        if count and st.checkbox(label, key=ui.CONV):
            left, right = st.columns(2)
            channels = left.slider("Output channels", 1, 3, 2, key=ui.CONV_CHANNELS)
            kernel = right.slider("Kernel size", 1, 5, 3, key=ui.CONV_KERNEL)
            conv = (int(channels), int(kernel))
        design = ui.Design(tuple(widths), tuple(functions), head, conv)

    # Seed of the initial parameters
    seed = st.number_input("Initial-parameter seed", 0, 10_000, 0, key=ui.INIT_SEED)
    return preset, design, int(seed)


def build(
    preset: str, design: ui.Design | None, seed: int, data: bp.Dataset
) -> tuple[bp.NetworkSpec, bp.Network] | None:
    """The specification and network for the data, or None after an error."""
    # Build it, or say why not
    try:
        spec = ui.network_spec(preset, data.n_features, data.n_classes, design, seed)
        net = bp.build_network(spec)
    except bp.BackpropError as error:
        st.error(f"This network cannot be built: {error}")
        return None

    # A table of the layers
    rows = [
        {k: row[k] for k in ("index", "name", "input", "output", "parameters")}
        for row in net.summary()
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    loss = net.loss.name.replace("_", " ")
    st.caption(f"{net.n_params} parameters; loss: {loss}.")
    return spec, net


def show_forward_step(step: bp.Step, index: int, size: int) -> None:
    """Vectors in and out of a forward step."""
    # Inputs on the left (and the target beside it for the loss)
    columns = st.columns(2)
    for column, (name, values) in zip(columns, step.inputs.items(), strict=False):
        column.plotly_chart(
            ui.vector_figure(values, f"in: {name}", size=size),
            key=f"backprop.fig.in.{index}.{name}",
        )

    # Outputs on the right
    for name, values in step.outputs.items():
        if step.role == "loss":
            columns[1].metric(f"loss {name}", f"{float(values[0]):.6g}")
        else:
            columns[1].plotly_chart(
                ui.vector_figure(values, f"out: {name}", size=size),
                key=f"backprop.fig.out.{index}.{name}",
            )


def show_backward_step(step: bp.Step, index: int, size: int) -> None:
    """The Jacobian of a backward step and the running product."""
    # The Jacobian on the left
    left, right = st.columns(2)
    shape = ui.shape_text(step.jacobian_shape)
    left.markdown(f"Jacobian ${step.jacobian_label}$, shape **{shape}**")
    left.plotly_chart(
        ui.matrix_figure(
            step.jacobian, "Jacobian", step.row_axis, step.column_axis,
            step.column_labels, size,
        ),
        key=f"backprop.fig.jacobian.{index}",
    )

    # The running product (or this layer's gradient) on the right
    what = "this layer's gradient" if step.role == "parameters" else "running product"
    shape = ui.shape_text(step.running_shape)
    right.markdown(f"{what.capitalize()} ${step.running_label}$, shape **{shape}**")
    right.plotly_chart(
        ui.matrix_figure(
            step.running, what.capitalize(), "", step.column_axis,
            step.column_labels, size,
        ),
        key=f"backprop.fig.running.{index}",
    )

    # The product written out
    st.latex(rf"{step.running_label} = " + ui.wrap_chain(step.chain))


def show_comparison(
    trace: bp.Trace,
    reference: bp.AutogradResult,
    comparison: bp.GradientComparison,
    size: int,
) -> None:
    """The finished gradient beside autograd's."""
    # Headline numbers
    st.subheader("Gradient: product of Jacobians vs torch.autograd")
    left, right = st.columns(2)
    left.metric("max abs difference", f"{comparison.overall_abs:.2e}")
    right.metric("max relative difference", f"{comparison.overall_rel:.2e}")

    # Per layer, and entry by entry
    rows = ui.comparison_rows(trace, reference, comparison)
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption(
        "Relative difference: the largest absolute difference divided by the "
        "largest autograd entry. Both are float64; what is left is rounding."
    )
    figure = ui.gradient_figure(trace, reference, size)
    st.plotly_chart(figure, key="backprop.fig.gradient")


def show_training(spec: bp.NetworkSpec, data: bp.Dataset, size: int) -> None:
    """Training widgets, loss curve and decision regions."""
    # Settings and the button
    left, middle, right = st.columns([2, 2, 1])
    steps = left.slider("Steps", 10, 300, 100, step=10, key=ui.TRAIN_STEPS)
    rate = middle.select_slider(
        "Learning rate", options=ui.LEARNING_RATES, value=0.3, key=ui.LEARNING_RATE
    )
    digest = hashlib.sha1(data.features.tobytes() + data.labels.tobytes()).hexdigest()
    signature = (spec.to_json(), digest, int(steps), float(rate))
    if right.button("Train", key=ui.TRAIN, type="primary", width="stretch"):
        st.session_state[ui.TRAINING_RESULT] = signature
    if st.session_state.get(ui.TRAINING_RESULT) != signature:
        st.caption("Press Train to run gradient descent with these gradients.")
        return

    # Results, from the cache
    try:
        result = ui.training(
            spec.to_json(), data.features, data.labels, data.n_classes,
            int(steps), float(rate),
        )
    except bp.BackpropError as error:
        st.error(f"Training failed: {error}")
        return
    if result.diverged:
        st.warning("The loss stopped being finite; try a smaller learning rate.")
    if not len(result.losses):
        return

    # Loss curve and, for 2 features, the decision regions
    st.caption(
        f"Full-batch gradient descent on {result.n_used} examples; accuracy "
        f"{result.accuracies[0]:.0%} before, {result.accuracies[-1]:.0%} after."
    )
    columns = st.columns(2) if result.boundaries else [st.container()]
    columns[0].plotly_chart(ui.loss_figure(result, size), key="backprop.fig.loss")
    if result.boundaries:
        columns[1].plotly_chart(
            ui.boundary_figure(result, data, size), key="backprop.fig.boundary"
        )
        columns[1].caption("Drag the slider under the plot back to earlier steps.")
    else:
        st.caption("Decision regions are drawn for data with 2 features only.")


def main() -> None:
    """The page."""
    # Title and projector mode
    top, toggle = st.columns([5, 1])
    top.title("Backpropagation as a product of Jacobians")
    large = toggle.toggle("Large fonts", key=ui.LARGE_FONTS)
    ui.inject_css(large)
    size = ui.font_size(large)
    st.markdown(
        "A network is a chain of vector functions $a_l = f_l(\\theta_l, a_{l-1})$. "
        "The gradient of the loss with respect to layer $l$'s parameters is a "
        "product of Jacobians; here every factor is written from its formula "
        "(for a dense layer, $[\\,a_{l-1}^\\top \\otimes I \\mid I\\,]$) and "
        "checked against autograd."
    )
    st.latex(
        r"\frac{\partial L}{\partial \theta_l} = \frac{\partial L}{\partial a_L}"
        r"\frac{\partial a_L}{\partial a_{L-1}}\cdots"
        r"\frac{\partial a_{l+1}}{\partial a_l}\frac{\partial a_l}{\partial \theta_l}"
    )

    # 1. Data and network
    st.header("1. Data and network")
    data_column, net_column = st.columns(2)
    with data_column:
        data = choose_data()
    with net_column:
        preset, design, seed = network_widgets()
        built = None if data is None else build(preset, design, seed, data)
    if data is None or built is None:
        return
    spec, net = built

    # The example to trace
    last_row = len(data.labels) - 1
    st.session_state.setdefault(ui.EXAMPLE, 0)
    if int(st.session_state[ui.EXAMPLE]) > last_row:
        st.session_state[ui.EXAMPLE] = 0
    with data_column:
        example = int(
            st.number_input(
                "Example to trace (row)", min_value=0, max_value=last_row,
                key=ui.EXAMPLE,
            )
        )
        if data.n_features == 2:
            figure = ui.data_figure(data, example, size)
            st.plotly_chart(figure, key="backprop.fig.data")
    try:
        targets = bp.encode_targets(data.labels, net.output_dim, data.n_classes)
        x = tuple(float(v) for v in data.features[example])
        y = tuple(float(v) for v in targets[example])
        trace, reference, comparison = ui.trace_and_reference(spec.to_json(), x, y)
    except bp.BackpropError as error:
        st.error(f"This example cannot be traced: {error}")
        return

    # 2. Step through the trace
    st.header("2. Step through the chain")
    last = trace.n_steps - 1
    st.session_state.setdefault(ui.STEP, 0)
    if int(st.session_state[ui.STEP]) > last:
        st.session_state[ui.STEP] = last
    moves = [
        ("Previous", ui.PREVIOUS, -1),
        ("Next", ui.NEXT, 1),
        ("Reset", ui.RESET, None),
    ]
    for column, (label, key, delta) in zip(st.columns(3), moves, strict=True):
        column.button(
            label, key=key, on_click=move_step, args=(delta, last), width="stretch"
        )
    index = int(st.slider("Step", 0, last, key=ui.STEP))
    step = trace.steps[index]
    phase = "forward pass" if step.kind == "forward" else "backward pass"
    st.subheader(f"Step {index + 1} of {trace.n_steps}, {phase}")
    st.markdown(f"**{step.title}**")
    st.latex(step.equation)
    if step.kind == "forward":
        show_forward_step(step, index, size)
    else:
        show_backward_step(step, index, size)
    if index == last:
        show_comparison(trace, reference, comparison, size)
    else:
        st.caption("At the last step the finished gradient is set beside autograd's.")

    # 3. Order of multiplication
    st.header("3. Order of multiplication")
    st.dataframe(ui.cost_rows(trace.costs), hide_index=True, width="stretch")
    st.markdown(bp.cost_summary(trace.costs, net.n_params))
    with st.expander("Every product, in the order computed"):
        for order in ("reverse", "forward"):
            st.markdown(f"**{order}**")
            rows = ui.product_rows(trace.costs[order])
            st.dataframe(rows, hide_index=True, width="stretch")

    # 4. Training
    st.header("4. A few training steps")
    show_training(spec, data, size)

    # 5. Export
    st.header("5. Export this trace")
    try:
        latex, json_text = ui.exports(spec.to_json(), x, y)
    except bp.BackpropError as error:
        st.error(f"This trace cannot be exported: {error}")
        return
    left, right = st.columns(2)
    left.download_button(
        "LaTeX (.tex)", latex, file_name="backprop_chain.tex", mime="text/x-tex",
        key=ui.DOWNLOAD_LATEX, on_click="ignore", width="stretch",
    )
    right.download_button(
        "JSON", json_text, file_name="backprop_trace.json", mime="application/json",
        key=ui.DOWNLOAD_JSON, on_click="ignore", width="stretch",
    )
    with st.expander("LaTeX source"):
        st.code(latex, language="latex")


main()
