"""PyTorch's own conformance data for its recurrent modules
(torch.testing._internal.common_modules: sample inputs with references, and error inputs), run
against fastrnn's twins: same outputs and gradients as torch.nn for every sample, and the same
exception type and message for every error input."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence
pytest.importorskip("expecttest", reason="torch.testing._internal needs expecttest (the README test command installs it)")
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db  # noqa: E402

import fastrnn

FAST = {torch.nn.RNN: fastrnn.RNN, torch.nn.LSTM: fastrnn.LSTM, torch.nn.GRU: fastrnn.GRU,
        torch.nn.RNNCell: fastrnn.RNNCell, torch.nn.LSTMCell: fastrnn.LSTMCell,
        torch.nn.GRUCell: fastrnn.GRUCell}
INFOS = [info for info in module_db if info.module_cls in FAST]


def test_every_module_has_conformance_data():
    assert sorted(info.module_cls.__name__ for info in INFOS) == sorted(c.__name__ for c in FAST)


def _flatten(value) -> list[torch.Tensor]:
    if isinstance(value, PackedSequence):
        return [value.data]
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for item in value for t in _flatten(item)]


def _samples(info, dtype, training):
    func = info.module_inputs_func
    samples = list(func(info, device="cpu", dtype=dtype, requires_grad=True, training=training))
    if info.module_cls in (torch.nn.RNN, torch.nn.GRU):
        samples += list(func(info, device="cpu", dtype=dtype, requires_grad=True, training=training,
                             with_packed_sequence=True))
    return samples


def _clone_inputs(args):
    """Fresh leaf copies of the forward inputs, so each module gets its own gradients."""
    def clone(value):
        if isinstance(value, PackedSequence):
            return PackedSequence(clone(value.data), value.batch_sizes, value.sorted_indices,
                                  value.unsorted_indices)
        if isinstance(value, torch.Tensor):
            return value.detach().clone().requires_grad_(value.requires_grad)
        if isinstance(value, (tuple, list)):
            return type(value)(clone(v) for v in value)
        return value
    return clone(args)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("info", INFOS, ids=[info.name for info in INFOS])
def test_sample_inputs_match_torch(info, dtype, training):
    # torch's samples draw values in [-9, 9]; fp32 errors are relative to each tensor's scale.
    eps = 1e-10 if dtype == torch.float64 else 1e-5

    def close(a, b):
        torch.testing.assert_close(a, b, rtol=eps, atol=eps * max(1.0, b.abs().max().item()))

    samples = _samples(info, dtype, training)
    assert samples
    for sample in samples:
        c = sample.constructor_input
        reference = info.module_cls(*c.args, **c.kwargs).to(dtype).train(training)
        fast = FAST[info.module_cls](*c.args, **c.kwargs).to(dtype).train(training)
        fast.load_state_dict(reference.state_dict())
        results = []
        for module in (reference, fast):
            args = _clone_inputs(sample.forward_input.args)
            outputs = _flatten(module(*args, **sample.forward_input.kwargs))
            leaves = [t for t in _flatten(args) if t.requires_grad] + list(module.parameters())
            grads = torch.autograd.grad([o.sum() for o in outputs], leaves, allow_unused=True)
            results.append((outputs, grads))
        (expected, expected_grads), (actual, actual_grads) = results
        assert len(actual) == len(expected)
        for a, b in zip(actual, expected):
            close(a, b)
        for a, b in zip(actual_grads, expected_grads):
            if b is None:
                assert a is None or torch.all(a == 0)
            else:
                close(a, b)
        packed = any(isinstance(a, PackedSequence) for a in sample.forward_input.args)
        if sample.reference_fn is not None and not packed:  # torch's unbatched reference
            # (ModuleInput wraps it: it is called with a copy of the module and the inputs)
            ref = sample.reference_fn(fast, *_clone_inputs(sample.forward_input.args),
                                      **sample.forward_input.kwargs)
            for a, b in zip(_flatten(fast(*sample.forward_input.args)), _flatten(ref)):
                close(a, b)


@pytest.mark.parametrize("info", INFOS, ids=[info.name for info in INFOS])
def test_error_inputs_raise_like_torch(info):
    errors = list(info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                                requires_grad=False, training=True))
    assert errors
    for error in errors:
        sample = error.module_error_input
        c = sample.constructor_input
        make = partial(FAST[info.module_cls], *c.args, **c.kwargs)
        with pytest.raises(error.error_type, match=error.error_regex):
            if error.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
                make()
            else:
                make()(*sample.forward_input.args, **sample.forward_input.kwargs)
