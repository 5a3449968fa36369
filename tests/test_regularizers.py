"""Issue 25's weight_dropout (DropConnect on W_hh) and variational_dropout (one input mask per
sequence and unit, the same at every step) on fastrnn's RNN, LSTM and GRU: training mode only,
drawn from torch's RNG in the order fastrnn.functional documents, equal to the reference
(fastrnn/_reference.py) on the same masks, with correct gradients, and absent in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from fastrnn import _reference as ref

DT = torch.float64
MODULES = {"LSTM": fastrnn.LSTM, "GRU": fastrnn.GRU, "RNN": fastrnn.RNN}
T, B, I, H = 6, 4, 5, 7


def _module(mode, **kwargs):
    torch.manual_seed(1)
    return MODULES[mode](I, H, dtype=DT, **kwargs)


def _twin(module):
    """The same module without the options, sharing its parameters."""
    twin = type(module)(I, H, num_layers=module.num_layers, bidirectional=module.bidirectional,
                        dtype=DT)
    twin.load_state_dict(module.state_dict())
    return twin


def _mask(shape, p):
    """fastrnn.functional's documented mask: (rand >= p) / (1 - p), one float32 draw."""
    return (torch.rand(shape, dtype=torch.float32) >= p).to(DT) / (1 - p)


def _layer(mode, x, h0, c0, w, reverse=False, batch_sizes=None, input_mask=None):
    """One reference layer and direction (w: w_ih, w_hh, b_ih, b_hh); output and finals."""
    if mode == "LSTM":
        out, h, c = ref.lstm_layer(x, h0, c0, *w, batch_sizes=batch_sizes, reverse=reverse,
                                   input_mask=input_mask)
        return out, [h, c]
    layer = ref.gru_layer if mode == "GRU" else ref.rnn_layer
    out, h = layer(x, h0, *w, batch_sizes=batch_sizes, reverse=reverse, input_mask=input_mask)
    return out, [h]


@pytest.mark.parametrize("option", ["weight_dropout", "variational_dropout"])
@pytest.mark.parametrize("value", [-0.1, 1.5, True, "0.5", None])
def test_options_are_checked_like_dropout(option, value):
    with pytest.raises(ValueError, match=f"{option} should be a number in range"):
        fastrnn.LSTM(I, H, **{option: value})


def test_options_show_in_repr_and_leave_the_state_dict_alone():
    module = fastrnn.GRU(I, H, weight_dropout=0.25, variational_dropout=0.5)
    assert "weight_dropout=0.25" in repr(module) and "variational_dropout=0.5" in repr(module)
    assert "dropout" not in repr(fastrnn.GRU(I, H))
    assert module.state_dict().keys() == fastrnn.GRU(I, H).state_dict().keys()


@pytest.mark.parametrize("mode", MODULES)
def test_eval_mode_ignores_the_options(mode):
    module = _module(mode, num_layers=2, weight_dropout=0.5, variational_dropout=0.5).eval()
    twin = _twin(module).eval()
    x = torch.randn(T, B, I, dtype=DT)
    for a, b in zip(module(x)[:1], twin(x)[:1]):
        assert torch.equal(a, b)
    module.train()
    assert not torch.equal(module(x)[0], twin(x)[0])


@pytest.mark.parametrize("mode", MODULES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_weight_dropout_runs_every_layer_on_a_masked_w_hh(mode, bidirectional):
    p = 0.4
    module = _module(mode, num_layers=2, bidirectional=bidirectional, weight_dropout=p)
    x = torch.randn(T, B, I, dtype=DT)
    torch.manual_seed(7)
    output = module(x)[0]
    output.sum().backward()
    # The documented draws: one mask of each W_hh, layer by layer, direction by direction.
    torch.manual_seed(7)
    names = [n for n in module._flat_weights_names if n.startswith("weight_hh")]
    dropped = {n: (getattr(module, n).detach() * _mask(getattr(module, n).shape, p)).requires_grad_()
               for n in names}
    twin = _twin(module)
    expected = torch.func.functional_call(twin, dropped, (x,))[0]
    assert torch.equal(output, expected)
    expected.sum().backward()
    for n in names:
        mask = dropped[n].detach() != 0
        assert mask.float().mean().item() < 0.9  # some weights dropped
        torch.testing.assert_close(getattr(module, n).grad,
                                   dropped[n].grad * mask / (1 - p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODULES)
@pytest.mark.parametrize("packed", [False, True])
def test_variational_dropout_is_one_input_mask_for_every_step(mode, packed):
    p = 0.5
    module = _module(mode, variational_dropout=p)
    x = torch.randn(T, B, I, dtype=DT)
    lengths = torch.tensor([T, T - 2, 3, 1])
    inp = pack_padded_sequence(x, lengths) if packed else x
    torch.manual_seed(3)
    output = module(inp)[0]
    torch.manual_seed(3)
    mask = _mask((B, I), p)
    zeros = torch.zeros(B, H, dtype=DT)
    w = [getattr(module, f"{k}_l0") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if packed:
        data, batch_sizes = inp.data, inp.batch_sizes
        expected, _ = _layer(mode, data, zeros, zeros, w, batch_sizes=batch_sizes, input_mask=mask)
        torch.testing.assert_close(output.data, expected, rtol=1e-12, atol=1e-12)
    else:
        expected, _ = _layer(mode, x, zeros, zeros, w, input_mask=mask)
        torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODULES)
def test_both_options_in_a_deep_bidirectional_stack_follow_the_documented_draws(mode):
    p_w, p_v = 0.3, 0.25
    module = _module(mode, num_layers=2, bidirectional=True, weight_dropout=p_w,
                     variational_dropout=p_v)
    x = torch.randn(T, B, I, dtype=DT)
    torch.manual_seed(11)
    output, *_ = module(x)
    torch.manual_seed(11)
    layer_input = x
    zeros = torch.zeros(B, H, dtype=DT)
    for layer in range(2):
        mask = _mask((B, layer_input.shape[-1]), p_v)
        outputs = []
        for direction, suffix in enumerate(("", "_reverse")):
            w = [getattr(module, f"{k}_l{layer}{suffix}")
                 for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            w[1] = w[1] * _mask(w[1].shape, p_w)
            out, _ = _layer(mode, layer_input, zeros, zeros, w, reverse=direction == 1,
                            input_mask=mask)
            outputs.append(out)
        layer_input = torch.cat(outputs, dim=-1)
    torch.testing.assert_close(output, layer_input, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODULES)
def test_gradients_through_both_options(mode):
    module = _module(mode, num_layers=2, weight_dropout=0.3, variational_dropout=0.3)
    x = torch.randn(3, 2, I, dtype=DT, requires_grad=True)
    params = dict(module.named_parameters())

    def run(x, *weights):
        torch.manual_seed(5)  # the same masks at every evaluation
        out = torch.func.functional_call(module, dict(zip(params, weights)), (x,))
        return out[0]

    assert torch.autograd.gradcheck(run, (x, *params.values()))


def test_to_torch_refuses_options_torch_nn_lacks():
    model = torch.nn.Sequential(fastrnn.LSTM(I, H, weight_dropout=0.2))
    with pytest.raises(ValueError, match="weight_dropout=0.2"):
        fastrnn.to_torch(model)
    assert isinstance(fastrnn.to_torch(torch.nn.Sequential(fastrnn.LSTM(I, H)))[0], torch.nn.LSTM)
