"""The registered ops themselves: against the pure-PyTorch reference (padded and packed, both
directions, LSTM projection), gradcheck in fp64, torch.library.opcheck, and their own checks of
bad arguments."""

from __future__ import annotations

import pytest
import torch

import fastrnn  # noqa: F401
from fastrnn import _ops, _reference

from utils import randn

# CI reruns these under each lower FASTRNN_CPU_ISA (.ci/run).
pytestmark = pytest.mark.kernels

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def make_args(cell, generator, *, steps=4, batch=3, input_size=5, hidden=6, proj=0, bias=True,
              packed=False, reverse=False, train=True, dtype=torch.float64, requires_grad=False):
    """Random arguments for the forward op of `cell`, as a dict in schema order."""
    out = proj or hidden
    gates = GATES[cell] * hidden
    if packed:
        # Sorted, non-increasing lengths with the first sequence running the whole time.
        lengths = sorted(torch.randint(1, steps + 1, (batch,), generator=generator).tolist(),
                         reverse=True)
        lengths[0] = steps
        batch_sizes = torch.tensor([sum(1 for n in lengths if n > t) for t in range(steps)])
        input = randn(generator, int(batch_sizes.sum()), input_size, dtype=dtype)
    else:
        batch_sizes = None
        input = randn(generator, steps, batch, input_size, dtype=dtype)

    def param(*shape):
        return (randn(generator, *shape, dtype=dtype) * 0.5).requires_grad_(requires_grad)

    args = {"input": input.requires_grad_(requires_grad),
            "hx": param(batch, out)}
    if cell == "lstm":
        args["cx"] = param(batch, hidden)
    args["w_ih"] = param(gates, input_size)
    args["w_hh"] = param(gates, out)
    args["b_ih"] = param(gates) if bias else None
    args["b_hh"] = param(gates) if bias else None
    if cell == "lstm":
        args["w_hr"] = param(proj, hidden) if proj else None
    args["batch_sizes"] = batch_sizes
    args["reverse"] = reverse
    if cell in ("lstm", "gru"):
        args["train"] = train
    return args


def forward_op(cell):
    return getattr(torch.ops.fastrnn, f"{cell}_forward").default


def backward_op(cell):
    return getattr(torch.ops.fastrnn, f"{cell}_backward").default


def reference(cell, args):
    a = dict(args)
    a.pop("train", None)
    if cell.startswith("rnn"):
        return _reference.rnn_layer(**a, nonlinearity=cell[4:])
    return getattr(_reference, f"{cell}_layer")(**a)


CONFIGS = [
    dict(),
    dict(reverse=True),
    dict(bias=False),
    dict(packed=True),
    dict(packed=True, reverse=True),
    dict(steps=1),
    dict(batch=1, hidden=17),
]
LSTM_PROJ = [dict(proj=4), dict(proj=4, packed=True, reverse=True), dict(proj=3, bias=False)]


def cases():
    for cell in CELLS:
        for config in CONFIGS + (LSTM_PROJ if cell == "lstm" else []):
            yield pytest.param(cell, config, id=f"{cell}-" + ("-".join(f"{k}={v}" for k, v in
                                                                      config.items()) or "plain"))


@pytest.mark.parametrize("cell,config", list(cases()))
def test_forward_and_backward_match_reference(cell, config, generator):
    args = make_args(cell, generator, requires_grad=True, **config)
    outputs = forward_op(cell)(*args.values())
    n_results = 3 if cell == "lstm" else 2
    expected = reference(cell, args)
    for actual, wanted in zip(outputs[:n_results], expected):
        torch.testing.assert_close(actual, wanted, rtol=1e-10, atol=1e-10)
    # Gradients of every differentiable input, for random output and final-state gradients.
    grads_out = [randn(generator, *t.shape, dtype=t.dtype) for t in expected]
    differentiable = [v for v in args.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    actual_grads = torch.autograd.grad(outputs[:n_results], differentiable, grads_out)
    expected_grads = torch.autograd.grad(expected, differentiable, grads_out)
    for actual, wanted in zip(actual_grads, expected_grads):
        torch.testing.assert_close(actual, wanted, rtol=1e-10, atol=1e-10)


def _differentiable_op(cell, args):
    """The forward op of `cell` as a function of the arguments that require grad (for
    gradcheck), returning its differentiable results, and those arguments."""
    names = [k for k, v in args.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    n_results = 3 if cell == "lstm" else 2

    def fn(*tensors):
        call = dict(args, **dict(zip(names, tensors)))
        return forward_op(cell)(*call.values())[:n_results]

    return fn, [args[k] for k in names]


@pytest.mark.parametrize("cell,config", list(cases()))
def test_gradcheck(cell, config, generator):
    # Smaller sizes: gradcheck perturbs every input element one at a time.
    config = {"batch": 2, "input_size": 3, **config, "steps": min(config.get("steps", 3), 3),
              "hidden": 4, "proj": min(config.get("proj", 0), 3)}
    args = make_args(cell, generator, requires_grad=True, **config)
    assert torch.autograd.gradcheck(*_differentiable_op(cell, args))


@pytest.mark.parametrize("initial_state", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("cell,config", list(cases()))
def test_gradgradcheck(cell, config, initial_state, generator):
    """Second derivatives (backward with create_graph=True, through csrc/ops/differentiable.cpp)
    against finite differences of the first, in float64: every cell, padded and packed, both
    directions, with and without initial states, bias and projection."""
    config = {"batch": 2, "input_size": 2, **config, "steps": min(config.get("steps", 3), 3),
              "hidden": 3, "proj": min(config.get("proj", 0), 2)}
    args = make_args(cell, generator, requires_grad=True, **config)
    if not initial_state:
        args["hx"] = None
        if cell == "lstm":
            args["cx"] = None
    assert torch.autograd.gradgradcheck(*_differentiable_op(cell, args))


@pytest.mark.parametrize("cell,config", list(cases()))
def test_opcheck(cell, config, generator):
    args = make_args(cell, generator, requires_grad=True, **config)
    torch.library.opcheck(forward_op(cell), tuple(args.values()))
    if "train" in args:
        no_grad_args = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
        no_grad_args["train"] = False
        torch.library.opcheck(forward_op(cell), tuple(no_grad_args.values()))

    # The backward op, on what its forward saved.
    detached = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    results = forward_op(cell)(*detached.values())
    output = results[0]
    grads = [randn(generator, *t.shape, dtype=t.dtype) for t in results[:3 if cell == "lstm" else 2]]
    d = detached
    if cell == "lstm":
        back = (*grads, d["input"], d["hx"], d["cx"], d["w_ih"], d["w_hh"], d["w_hr"], output,
                results[3], d["batch_sizes"], d["reverse"])
    elif cell == "gru":
        back = (*grads, d["input"], d["hx"], d["w_ih"], d["w_hh"], output, results[2],
                d["batch_sizes"], d["reverse"])
    else:
        back = (*grads, d["input"], d["hx"], d["w_ih"], d["w_hh"], output, d["batch_sizes"],
                d["reverse"])
    for input_grad in (True, False):
        torch.library.opcheck(backward_op(cell), back + (input_grad,))


# The text of every op schema (csrc/ops/schemas.cpp writes them out from the cell list): a
# schema is the ops' public contract (torch.ops.fastrnn, saved exported programs, ONNX export).
SCHEMAS = [
    ("rnn_tanh_forward(Tensor input, Tensor? hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
     "Tensor? b_hh, Tensor? batch_sizes, bool reverse) -> (Tensor output, Tensor hy)"),
    ("rnn_tanh_backward(Tensor? grad_output, Tensor? grad_hy, Tensor input, Tensor? hx, "
     "Tensor w_ih, Tensor w_hh, Tensor output, Tensor? batch_sizes, bool reverse, bool "
     "input_grad) -> (Tensor grad_input, Tensor grad_hx, Tensor grad_w_ih, Tensor grad_w_hh,"
     " Tensor grad_b_ih, Tensor grad_b_hh)"),
    ("rnn_relu_forward(Tensor input, Tensor? hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
     "Tensor? b_hh, Tensor? batch_sizes, bool reverse) -> (Tensor output, Tensor hy)"),
    ("rnn_relu_backward(Tensor? grad_output, Tensor? grad_hy, Tensor input, Tensor? hx, "
     "Tensor w_ih, Tensor w_hh, Tensor output, Tensor? batch_sizes, bool reverse, bool "
     "input_grad) -> (Tensor grad_input, Tensor grad_hx, Tensor grad_w_ih, Tensor grad_w_hh,"
     " Tensor grad_b_ih, Tensor grad_b_hh)"),
    ("lstm_forward(Tensor input, Tensor? hx, Tensor? cx, Tensor w_ih, Tensor w_hh, Tensor? "
     "b_ih, Tensor? b_hh, Tensor? w_hr, Tensor? batch_sizes, bool reverse, bool train) -> "
     "(Tensor output, Tensor hy, Tensor cy, Tensor workspace)"),
    ("lstm_backward(Tensor? grad_output, Tensor? grad_hy, Tensor? grad_cy, Tensor input, "
     "Tensor? hx, Tensor? cx, Tensor w_ih, Tensor w_hh, Tensor? w_hr, Tensor output, Tensor "
     "workspace, Tensor? batch_sizes, bool reverse, bool input_grad) -> (Tensor grad_input, "
     "Tensor grad_hx, Tensor grad_cx, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_b_ih, "
     "Tensor grad_b_hh, Tensor grad_w_hr)"),
    ("gru_forward(Tensor input, Tensor? hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? "
     "b_hh, Tensor? batch_sizes, bool reverse, bool train) -> (Tensor output, Tensor hy, "
     "Tensor workspace)"),
    ("gru_backward(Tensor? grad_output, Tensor? grad_hy, Tensor input, Tensor? hx, Tensor "
     "w_ih, Tensor w_hh, Tensor output, Tensor workspace, Tensor? batch_sizes, bool reverse,"
     " bool input_grad) -> (Tensor grad_input, Tensor grad_hx, Tensor grad_w_ih, Tensor "
     "grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)"),
]


def test_schemas_are_the_published_ones():
    schemas = [str(getattr(torch.ops.fastrnn, f"{cell}_{kind}").default._schema)
               for cell in CELLS for kind in ("forward", "backward")]
    assert schemas == ["fastrnn::" + s for s in SCHEMAS]
    for cell in CELLS:
        for kind in ("forward", "backward"):
            assert torch.Tag.pt2_compliant_tag in getattr(torch.ops.fastrnn, f"{cell}_{kind}").default.tags


def test_cell_table_matches_torch_nn_and_the_ops():
    """fastrnn._C.cells() (csrc/include/fastrnn/cells.h), which the modules, functional and the
    fake kernels read: one entry per op pair, gate counts as torch.nn's weight shapes."""
    modes = {"rnn_tanh": ("RNN", {"nonlinearity": "tanh"}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
             "lstm": ("LSTM", {}), "gru": ("GRU", {})}
    assert list(_ops.CELLS) == list(modes)
    assert [cell["code"] for cell in _ops.CELLS.values()] == list(range(len(modes)))
    for name, cell in _ops.CELLS.items():
        module_name, kwargs = modes[name]
        reference = getattr(torch.nn, module_name)(3, 7, **kwargs)
        assert cell["gates"] == reference.weight_ih_l0.shape[0] // 7
        assert cell["cell_state"] == (name == "lstm")
        assert cell["workspace_blocks"] == {"lstm": 5, "gru": 4}.get(name, 0)
        forward, backward = forward_op(name), backward_op(name)
        train_arguments = [a.name for a in forward._schema.arguments if a.name == "train"]
        assert bool(train_arguments) == (cell["workspace_blocks"] > 0)
        assert ("cx" in [a.name for a in forward._schema.arguments]) == cell["cell_state"]
        assert ("grad_cx" in [r.name for r in backward._schema.returns]) == cell["cell_state"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_workspace_fully_written(cell, generator):
    """Under FASTRNN_DEBUG_POISON (set by conftest) buffers start as NaN: none may be left."""
    for config in CONFIGS:
        args = make_args(cell, generator, dtype=torch.float32, **config)
        results = forward_op(cell)(*args.values())
        workspace = results[-1]
        assert workspace.shape == (results[0].numel() // results[0].shape[-1],
                                   {"lstm": 5, "gru": 4}[cell] * args["hx"].shape[1])
        assert not torch.isnan(workspace).any()


def test_backward_after_inference_forward_is_a_clear_error(generator):
    args = make_args("lstm", generator, train=False)
    output, hy, cy, workspace = forward_op("lstm")(*args.values())
    assert workspace.shape == (0,)
    with pytest.raises(RuntimeError, match="workspace is empty"):
        backward_op("lstm")(output, hy, cy, args["input"], args["hx"], args["cx"], args["w_ih"],
                            args["w_hh"], None, output, workspace, None, False, True)


@pytest.mark.parametrize("cell", CELLS)
def test_autograd_graph(cell, generator):
    """The C++ autograd kernels (csrc/ops/autograd.cpp): the workspace is no differentiable
    output, a graph is recorded only when a gradient can be asked for, a loss on the final state
    alone and an input without requires_grad give the reference's gradients, and so do their
    gradients in turn (create_graph=True: a double backward); the backward op itself, called
    directly and then differentiated, is an error, never a silently wrong second derivative."""
    args = make_args(cell, generator, requires_grad=True)
    args["input"].requires_grad_(False)
    outputs = forward_op(cell)(*args.values())
    n_results = 3 if cell == "lstm" else 2
    assert all(t.requires_grad for t in outputs[:n_results])
    if cell in ("lstm", "gru"):
        assert not outputs[-1].requires_grad
    with torch.no_grad():
        assert all(t.grad_fn is None for t in forward_op(cell)(*args.values()))
    detached = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    assert all(t.grad_fn is None for t in forward_op(cell)(*detached.values()))

    # Only h_n reaches the loss: grad_output (and the LSTM's grad_cy) arrive as None.
    expected = reference(cell, args)
    params = [v for v in args.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    grad_hy = randn(generator, *expected[1].shape, dtype=torch.float64)
    actual = torch.autograd.grad(outputs[1], params, grad_hy, create_graph=True)
    wanted = torch.autograd.grad(expected[1], params, grad_hy, create_graph=True)
    for a, b in zip(actual, wanted):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # Double backward: the gradients of a function of the gradients.
    second = [torch.autograd.grad(sum((g * g).sum() for g in grads), params)
              for grads in (actual, wanted)]
    for a, b in zip(*second):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # The backward op, called directly, has no derivative.
    saved = forward_op(cell)(*dict(args, train=True).values()) if "train" in args else outputs
    d = {k: v for k, v in args.items() if k not in ("train",)}
    direct_args = ([None, grad_hy] + ([None] if cell == "lstm" else []) +
                   [d["input"], d["hx"]] + ([d["cx"]] if cell == "lstm" else []) +
                   [d["w_ih"], d["w_hh"]] + ([d["w_hr"]] if cell == "lstm" else []) +
                   [saved[0]] + ([saved[-1]] if cell in ("lstm", "gru") else []) +
                   [d["batch_sizes"], d["reverse"], False])
    direct = backward_op(cell)(*direct_args)
    with pytest.raises(RuntimeError, match=f"derivative for fastrnn::{cell}_backward is not implemented"):
        direct[1].sum().backward()


@pytest.mark.parametrize("cell", CELLS)
def test_forward_mode_ad_is_a_clear_error(cell, generator):
    """Dual tensors (torch.autograd.forward_ad) have no formula here: an error, on the op and on
    a module whose parameters need no gradient (the inference fast path declines them), never a
    tangent silently dropped."""
    import torch.autograd.forward_ad as fwAD

    args = make_args(cell, generator)
    module = {"rnn_tanh": lambda: fastrnn.RNN(5, 6), "lstm": lambda: fastrnn.LSTM(5, 6),
              "rnn_relu": lambda: fastrnn.RNN(5, 6, nonlinearity="relu"),
              "gru": lambda: fastrnn.GRU(5, 6)}[cell]().double().requires_grad_(False)
    with fwAD.dual_level():
        args["input"] = fwAD.make_dual(args["input"], torch.ones_like(args["input"]))
        with pytest.raises(RuntimeError, match="forward-mode AD"):
            forward_op(cell)(*args.values())
        with pytest.raises(RuntimeError, match="forward-mode AD"):
            module(args["input"])


BAD_ARGUMENTS = [
    ("input rank", lambda a: a.update(input=a["input"][0]), "input must be 3-D"),
    ("input size", lambda a: a.update(input=a["input"][..., :-1]), "input.size\\(-1\\) must equal"),
    ("hx shape", lambda a: a.update(hx=a["hx"][:, :-1]), "expected hx of shape"),
    ("hx batch", lambda a: a.update(hx=a["hx"][:-1]), "expected hx of shape"),
    ("w_hh shape", lambda a: a.update(w_hh=a["w_hh"][:, :-1]), "expected w_hh of shape"),
    ("w_ih rows", lambda a: a.update(w_ih=a["w_ih"][:-1]),
     "w_ih must be 2-D|expected w_hh of shape"),
    ("bias shape", lambda a: a.update(b_ih=a["b_ih"][:-1]), "expected b_ih of shape"),
    ("dtype mix", lambda a: a.update(hx=a["hx"].float()), "hx has dtype Float but input"),
    ("int input", lambda a: a.update(input=a["input"].long()), "floating-point input"),
    ("complex input", lambda a: a.update(**{k: v.to(torch.complex128) for k, v in a.items()
                                            if isinstance(v, torch.Tensor) and v.is_floating_point()}),
     "floating-point input"),
    ("batch_sizes sum", lambda a: a.update(batch_sizes=torch.tensor([3, 3, 3, 2]),
                                           input=a["input"].reshape(-1, a["input"].shape[-1])),
     "batch_sizes sum to 11 but input has 12 rows"),
    ("batch_sizes order", lambda a: a.update(batch_sizes=torch.tensor([3, 2, 3, 3, 1]),
                                             input=a["input"].reshape(-1, a["input"].shape[-1])),
     "non-increasing"),
    ("batch_sizes zero", lambda a: a.update(batch_sizes=torch.tensor([3, 3, 3, 3, 0]),
                                            input=a["input"].reshape(-1, a["input"].shape[-1])),
     "must be positive"),
    ("batch_sizes dtype", lambda a: a.update(batch_sizes=torch.tensor([3., 3., 3., 3.]),
                                             input=a["input"].reshape(-1, a["input"].shape[-1])),
     "1-D int64 CPU tensor"),
    ("batch_sizes vs hx", lambda a: a.update(batch_sizes=torch.tensor([2, 2, 2, 2, 2, 2]),
                                             input=a["input"].reshape(-1, a["input"].shape[-1])),
     "expected hx of shape"),
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name,corrupt,message", BAD_ARGUMENTS, ids=[b[0] for b in BAD_ARGUMENTS])
def test_bad_arguments_raise_clear_errors(cell, name, corrupt, message, generator):
    args = make_args(cell, generator)
    corrupt(args)
    with pytest.raises(RuntimeError, match=message):
        forward_op(cell)(*args.values())


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", CELLS)
def test_absent_states_and_gradients_are_zeros(cell, packed, generator):
    """hx / cx = None means zeros; a None output gradient means zero; grad_hx is then empty."""
    args = make_args(cell, generator, packed=packed, requires_grad=True)
    zero_args = dict(args, hx=torch.zeros_like(args["hx"]))
    none_args = dict(args, hx=None)
    if cell == "lstm":
        zero_args["cx"] = torch.zeros_like(args["cx"])
        none_args["cx"] = None
    with_zeros = forward_op(cell)(*zero_args.values())
    with_none = forward_op(cell)(*none_args.values())
    n_results = 3 if cell == "lstm" else 2
    for a, b in zip(with_none[:n_results], with_zeros[:n_results]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Only the output reaches the loss: the final-state gradients arrive as None.
    grad_output = randn(generator, *with_none[0].shape, dtype=torch.float64)
    params = [v for k, v in args.items() if k not in ("input", "hx", "cx")
              and isinstance(v, torch.Tensor) and v.requires_grad]
    grads_none = torch.autograd.grad(with_none[0], [args["input"], *params], grad_output)
    grads_zeros = torch.autograd.grad(with_zeros[0], [args["input"], *params], grad_output)
    for a, b in zip(grads_none, grads_zeros):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # The backward op itself: no hx, no gradients given, returns an empty grad_hx.
    d = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in none_args.items()}
    results = forward_op(cell)(*d.values())
    if cell == "lstm":
        grads = backward_op(cell)(None, None, None, d["input"], None, None, d["w_ih"], d["w_hh"],
                                  d["w_hr"], results[0], results[3], d["batch_sizes"], False, True)
        assert grads[1].shape == (0,) and grads[2].shape == (0,)
    else:
        extra = (results[2],) if cell == "gru" else ()
        grads = backward_op(cell)(None, None, d["input"], None, d["w_ih"], d["w_hh"], results[0],
                                  *extra, d["batch_sizes"], False, True)
        assert grads[1].shape == (0,)
    assert all(torch.all(g == 0) for g in grads if g.numel())  # zero gradients in, zeros out


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", CELLS)
def test_opcheck_without_states(cell, packed, generator):
    args = make_args(cell, generator, packed=packed, requires_grad=True)
    args["hx"] = None
    if cell == "lstm":
        args["cx"] = None
    torch.library.opcheck(forward_op(cell), tuple(args.values()))
