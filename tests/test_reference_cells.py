"""The pure-PyTorch references of issue 25's cells and regularizers (fastrnn/_reference.py), the
oracle their fused kernels will be tested against, checked here against what each formulation
must satisfy: an equivalence with a torch.nn cell where there is one, the invariances layer
normalization implies, torch's own nn.functional.layer_norm, and the limits of every mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastrnn import _reference as ref

DT = torch.float64
T, B, I, H = 5, 4, 6, 7


def _randn(generator, *shape):
    return torch.randn(*shape, generator=generator, dtype=DT)


def _packed(generator, x):
    """x [T, B, I] as a packed sequence's rows and batch sizes (lengths T, then shorter)."""
    lengths = torch.tensor([T, T - 1, 3, 1][:x.shape[1]])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=True)
    return packed.data, packed.batch_sizes


LAYOUTS = [dict(), dict(reverse=True), dict(packed=True), dict(packed=True, reverse=True)]


def _inputs(generator, layout):
    x = _randn(generator, T, B, I)
    if layout.get("packed"):
        x, batch_sizes = _packed(generator, x)
    else:
        batch_sizes = None
    return x, dict(batch_sizes=batch_sizes, reverse=layout.get("reverse", False))


def _ln_params(generator, size, bias=True):
    gain = 1 + 0.3 * _randn(generator, size)
    return gain, (0.2 * _randn(generator, size) if bias else None)


# ---- IndRNN ----

@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_indrnn_is_an_rnn_with_diagonal_recurrent_weights(nonlinearity, layout, generator):
    x, kw = _inputs(generator, layout)
    h0 = _randn(generator, B, H)
    w_ih, u = _randn(generator, H, I), _randn(generator, H)
    b_ih, b_hh = _randn(generator, H), _randn(generator, H)
    got = ref.indrnn_layer(x, h0, w_ih, u, b_ih, b_hh, nonlinearity=nonlinearity, **kw)
    want = ref.rnn_layer(x, h0, w_ih, torch.diag(u), b_ih, b_hh, nonlinearity=nonlinearity, **kw)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_indrnn_rejects_a_matrix_as_recurrent_weights(generator):
    with pytest.raises(ValueError, match=r"vector u \[H\]"):
        ref.indrnn_layer(_randn(generator, T, B, I), _randn(generator, B, H),
                         _randn(generator, H, I), _randn(generator, H, H))


# ---- LayerNorm LSTM and GRU ----

def _ln_lstm_args(generator):
    return dict(hx=_randn(generator, B, H), cx=_randn(generator, B, H),
                w_ih=_randn(generator, 4 * H, I), w_hh=_randn(generator, 4 * H, H),
                ln_ih=_ln_params(generator, 4 * H), ln_hh=_ln_params(generator, 4 * H),
                ln_c=_ln_params(generator, H), b_ih=_randn(generator, 4 * H),
                b_hh=_randn(generator, 4 * H))


def _ln_gru_args(generator):
    return dict(hx=_randn(generator, B, H), w_ih=_randn(generator, 3 * H, I),
                w_hh=_randn(generator, 3 * H, H), ln_ih=_ln_params(generator, 3 * H),
                ln_hh=_ln_params(generator, 3 * H), b_ih=_randn(generator, 3 * H),
                b_hh=_randn(generator, 3 * H))


LN_CELLS = {"lstm": (ref.layer_norm_lstm_layer, _ln_lstm_args),
            "gru": (ref.layer_norm_gru_layer, _ln_gru_args)}


@pytest.mark.parametrize("cell", LN_CELLS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layer_norm_cells_ignore_the_scale_of_their_weights(cell, layout, generator):
    """Both products are normalized before the biases are added: scaling W_ih or W_hh by a
    positive factor changes nothing but the weight of the 1e-5 in the variance, negligible at
    this scale (it would change the outputs by O(1), were a bias inside a normalization or a
    product left unnormalized)."""
    layer, make = LN_CELLS[cell]
    x, kw = _inputs(generator, layout)
    args = make(generator)
    args = {**args, "w_ih": 100 * args["w_ih"], "w_hh": 100 * args["w_hh"]}
    base = layer(x, **args, **kw)
    scaled = layer(x, **{**args, "w_ih": 3.5 * args["w_ih"], "w_hh": 2.0 * args["w_hh"]}, **kw)
    for a, b in zip(base, scaled):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)
    moved = layer(x, **{**args, "b_hh": args["b_hh"] + 0.5}, **kw)
    assert not torch.allclose(base[0], moved[0])


def test_layer_norm_lstm_step_matches_torch_layer_norm(generator):
    args = _ln_lstm_args(generator)
    x = _randn(generator, 1, B, I)
    output, hy, cy = ref.layer_norm_lstm_layer(x, **args)
    (a_ih, m_ih), (a_hh, m_hh), (a_c, m_c) = args["ln_ih"], args["ln_hh"], args["ln_c"]
    pre = (F.layer_norm(x[0] @ args["w_ih"].T, (4 * H,), a_ih, m_ih)
           + F.layer_norm(args["hx"] @ args["w_hh"].T, (4 * H,), a_hh, m_hh)
           + args["b_ih"] + args["b_hh"])
    i, f, g, o = pre.chunk(4, dim=1)
    c = torch.sigmoid(f) * args["cx"] + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (H,), a_c, m_c))
    torch.testing.assert_close(cy, c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hy, h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(output[0], h, rtol=1e-12, atol=1e-12)


def test_layer_norm_gru_step_matches_torch_layer_norm(generator):
    args = _ln_gru_args(generator)
    x = _randn(generator, 1, B, I)
    output, hy = ref.layer_norm_gru_layer(x, **args)
    (a_ih, m_ih), (a_hh, m_hh) = args["ln_ih"], args["ln_hh"]
    a = F.layer_norm(x[0] @ args["w_ih"].T, (3 * H,), a_ih, m_ih) + args["b_ih"]
    b = F.layer_norm(args["hx"] @ args["w_hh"].T, (3 * H,), a_hh, m_hh) + args["b_hh"]
    r = torch.sigmoid(a[:, :H] + b[:, :H])
    z = torch.sigmoid(a[:, H:2 * H] + b[:, H:2 * H])
    n = torch.tanh(a[:, 2 * H:] + r * b[:, 2 * H:])
    torch.testing.assert_close(hy, (1 - z) * n + z * args["hx"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(output[0], hy, rtol=1e-12, atol=1e-12)


# ---- regularizers, on every cell ----

def _plain_args(cell, generator):
    if cell == "lstm":
        return dict(hx=_randn(generator, B, H), cx=_randn(generator, B, H),
                    w_ih=_randn(generator, 4 * H, I), w_hh=_randn(generator, 4 * H, H),
                    b_ih=_randn(generator, 4 * H), b_hh=_randn(generator, 4 * H))
    gates = {"gru": 3, "rnn": 1, "indrnn": 1}[cell]
    w_hh = _randn(generator, H) if cell == "indrnn" else _randn(generator, gates * H, H)
    return dict(hx=_randn(generator, B, H), w_ih=_randn(generator, gates * H, I), w_hh=w_hh,
                b_ih=_randn(generator, gates * H), b_hh=_randn(generator, gates * H))


REGULARIZED = {
    "rnn": (ref.rnn_layer, _plain_args),
    "lstm": (ref.lstm_layer, _plain_args),
    "gru": (ref.gru_layer, _plain_args),
    "indrnn": (ref.indrnn_layer, _plain_args),
    "layer_norm_lstm": (ref.layer_norm_lstm_layer, lambda _, g: _ln_lstm_args(g)),
    "layer_norm_gru": (ref.layer_norm_gru_layer, lambda _, g: _ln_gru_args(g)),
}


def _states(args):
    return [args["hx"]] + ([args["cx"]] if "cx" in args else [])


def _rows(x):
    return x.shape[0] * x.shape[1] if x.dim() == 3 else x.shape[0]


def _case(cell, layout, generator):
    """The reference layer of `cell`, an input in `layout` with its keywords, and arguments."""
    layer, make = REGULARIZED[cell]
    x, kw = _inputs(generator, layout)
    return layer, x, kw, make(cell, generator)


MASK_LAYOUTS = [dict(), dict(packed=True, reverse=True)]


@pytest.mark.parametrize("cell", REGULARIZED)
@pytest.mark.parametrize("layout", MASK_LAYOUTS)
def test_zoneout_masks_at_their_limits(cell, layout, generator):
    layer, x, kw, args = _case(cell, layout, generator)
    plain = layer(x, **args, **kw)
    states = _states(args)
    zeros = [torch.zeros(_rows(x), s.shape[1], dtype=DT) for s in states]
    for a, b in zip(layer(x, **args, zoneout_masks=zeros, **kw), plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Every unit zoned out at every step: the states never leave their initial values.
    ones = [torch.ones_like(z) for z in zeros]
    output, *finals = layer(x, **args, zoneout_masks=ones, **kw)
    for final, initial in zip(finals, states):
        torch.testing.assert_close(final, initial, rtol=0, atol=0)
    if not layout:
        torch.testing.assert_close(output, args["hx"].expand(T, B, H), rtol=0, atol=0)


@pytest.mark.parametrize("cell", REGULARIZED)
def test_zoneout_masks_pick_per_unit_and_step_and_eval_takes_the_expectation(cell, generator):
    layer, make = REGULARIZED[cell]
    x = _randn(generator, 1, B, I)
    args = make(cell, generator)
    plain_output, *plain_finals = layer(x, **args)
    states = _states(args)
    masks = [(torch.rand(B, s.shape[1], generator=generator) < 0.5).to(DT) for s in states]
    _, *finals = layer(x, **args, zoneout_masks=masks)
    for final, m, s, new in zip(finals, masks, states, plain_finals):
        torch.testing.assert_close(final, m * s + (1 - m) * new, rtol=1e-12, atol=1e-12)
    _, *expected = layer(x, **args, zoneout=0.3)
    for final, s, new in zip(expected, states, plain_finals):
        torch.testing.assert_close(final, 0.3 * s + 0.7 * new, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", REGULARIZED)
@pytest.mark.parametrize("layout", MASK_LAYOUTS)
def test_recurrent_mask_reaches_only_the_recurrent_product(cell, layout, generator):
    layer, x, kw, args = _case(cell, layout, generator)
    ones = torch.ones(B, H, dtype=DT)
    for a, b in zip(layer(x, **args, recurrent_mask=ones, **kw), layer(x, **args, **kw)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # A zero mask is a zero recurrent weight: the GRU's z * h and the LSTM's c still see the
    # state (a mask applied to them too would differ).
    no_recurrence = {**args, "w_hh": torch.zeros_like(args["w_hh"])}
    got = layer(x, **args, recurrent_mask=torch.zeros(B, H, dtype=DT), **kw)
    for a, b in zip(got, layer(x, **no_recurrence, **kw)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", REGULARIZED)
def test_input_mask_is_the_same_at_every_step(cell, generator):
    layer, make = REGULARIZED[cell]
    x = _randn(generator, T, B, I)
    args = make(cell, generator)
    mask = (torch.rand(B, I, generator=generator) < 0.7).to(DT) / 0.7
    for a, b in zip(layer(x, **args, input_mask=mask), layer(x * mask, **args)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
