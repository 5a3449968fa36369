"""The implementations a benchmark row compares, each behind the same small interface.

    fastrnn       fastrnn's modules
    torch.nn      torch.nn's (oneDNN/ATen on the CPU, cuDNN on CUDA), holding the same weights
    onnxruntime   the torch.nn module exported to ONNX, CPU inference and streaming, float32
                  (optional: pip install .[bench])
    flashrnn      FlashRNN's fused CUDA kernels, single-layer unidirectional, when installed

Every implementation builds a Runner for a Workload: a zero-argument call that runs one timed
unit (a forward, a forward+backward, or a whole stream of single-step calls) and how many time
steps that unit holds (streaming reports time per step).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from benchmarks.shapes import Case

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


@dataclass
class Workload:
    """One row: a cell, a case, a dtype and device, the torch.nn module and the input data."""

    cell: str
    case: Case
    device: torch.device
    dtype: torch.dtype
    reference: nn.Module = field(init=False)
    x: Tensor = field(init=False)  # [T, B, I]
    lengths: Tensor = field(init=False)  # [B], for packed rows

    def __post_init__(self):
        c = self.case
        torch.manual_seed(0)
        self.reference = getattr(nn, self.cell)(
            c.input_size, c.hidden, num_layers=c.layers, bidirectional=c.bidirectional
        ).to(self.device, self.dtype)
        self.x = torch.randn(c.steps, c.batch, c.input_size, device=self.device, dtype=self.dtype)
        generator = torch.Generator().manual_seed(0)
        self.lengths = torch.randint(max(1, c.steps // 2), c.steps + 1, (c.batch,), generator=generator)

    @property
    def tokens(self) -> int:
        """Time steps times rows actually computed (packed rows count their real lengths)."""
        return int(self.lengths.sum()) if self.case.mode == "packed" else self.case.steps * self.case.batch


@dataclass
class Runner:
    call: Callable[[], object]
    steps_per_call: int = 1
    module: nn.Module | None = None  # for memory accounting


def module_runner(module: nn.Module, w: Workload) -> Runner:
    """The timed unit of a torch-style module (torch.nn's or fastrnn's) for the row's mode."""
    mode = w.case.mode
    if mode == "inference":
        module.eval()

        def infer():
            with torch.no_grad():
                return module(w.x)
        return Runner(infer, module=module)
    if mode == "streaming":
        module.eval()
        steps = [w.x[t:t + 1] for t in range(w.case.steps)]  # each [1, B, I]

        def stream():
            with torch.no_grad():
                state = None
                for x in steps:
                    _, state = module(x, state)
            return state
        return Runner(stream, steps_per_call=len(steps), module=module)
    module.train()
    if mode == "packed":
        packed = pack_padded_sequence(w.x, w.lengths, enforce_sorted=False)
        packed = packed._replace(data=packed.data.detach().requires_grad_())

        def train_packed():
            module(packed)[0].data.sum().backward()
        return Runner(train_packed, module=module)
    x = w.x.detach().clone().requires_grad_()

    def train():
        module(x)[0].sum().backward()
    return Runner(train, module=module)


class TorchNN:
    name = "torch.nn"

    def runner(self, w: Workload) -> Runner | None:
        return module_runner(w.reference, w)


class FastRNN:
    name = "fastrnn"

    def runner(self, w: Workload) -> Runner | None:
        c = w.case
        module = getattr(fastrnn, w.cell)(c.input_size, c.hidden, num_layers=c.layers,
                                          bidirectional=c.bidirectional).to(w.device, w.dtype)
        module.load_state_dict(w.reference.state_dict())
        return module_runner(module, w)


class OnnxRuntime:
    """torch.nn's module exported to ONNX (TorchScript exporter), run by onnxruntime on the CPU.
    Streaming feeds each step's final state back as the next call's initial state."""

    name = "onnxruntime"

    def __init__(self, threads: int):
        import onnxruntime  # noqa: F401  (raises ImportError when the extra is not installed)

        self.threads = threads

    def _session(self, model: nn.Module, inputs: tuple[Tensor, ...], names: list[str]):
        import onnxruntime

        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on batch sizes and RNNs
            torch.onnx.export(model, inputs, buffer, input_names=names, dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(buffer.getvalue(), options,
                                            providers=["CPUExecutionProvider"])

    def runner(self, w: Workload) -> Runner | None:
        if w.device.type != "cpu" or w.dtype != torch.float32:
            return None
        if w.case.mode == "inference":
            session = self._session(w.reference.eval(), (w.x,), ["x"])
            feed = {"x": w.x.numpy()}
            return Runner(lambda: session.run(None, feed))
        if w.case.mode == "streaming":
            return self._streaming(w)
        return None

    def _streaming(self, w: Workload) -> Runner:
        lstm = w.cell == "LSTM"
        module = w.reference.eval()
        layers = w.case.layers * (2 if w.case.bidirectional else 1)
        h0 = torch.zeros(layers, w.case.batch, w.case.hidden)

        class Step(nn.Module):  # (x_t, h[, c]) -> (y_t, h', [c'])
            def __init__(self):
                super().__init__()
                self.rnn = module

            def forward(self, x, *state):
                y, new = self.rnn(x, state if lstm else state[0])
                return (y, *new) if lstm else (y, new)

        names = ["x", "h"] + (["c"] if lstm else [])
        state = (h0, torch.zeros_like(h0)) if lstm else (h0,)
        session = self._session(Step(), (w.x[:1], *state), names)
        steps = [w.x[t:t + 1].numpy() for t in range(w.case.steps)]
        zeros = [s.numpy() for s in state]

        def stream():
            carried = zeros
            for x in steps:
                outputs = session.run(None, {"x": x, **dict(zip(names[1:], carried))})
                carried = outputs[1:]
            return carried
        return Runner(stream, steps_per_call=len(steps))


class FlashRNN:
    """FlashRNN (NX-AI) on CUDA: its kernels take the input projection precomputed, so the
    timed unit is nn.Linear (W_ih x + b) followed by flashrnn(Wx, R, b). Single layer,
    unidirectional; random weights of the same shapes (the same FLOPs, not the same numbers)."""

    name = "flashrnn"
    FUNCTIONS = {"LSTM": "lstm", "GRU": "gru", "RNN": "elman"}

    def __init__(self):
        from flashrnn.flashrnn import flashrnn  # raises ImportError when not installed

        self.flashrnn = flashrnn

    def runner(self, w: Workload) -> Runner | None:
        c = w.case
        if w.device.type != "cuda" or c.layers != 1 or c.bidirectional or c.mode not in (
                "inference", "training"):
            return None
        gates = GATES[w.cell]
        linear = nn.Linear(c.input_size, gates * c.hidden).to(w.device, w.dtype)
        R = (torch.randn(gates, 1, c.hidden, c.hidden, device=w.device, dtype=w.dtype)
             / c.hidden ** 0.5).requires_grad_()
        b = torch.zeros(gates, 1, c.hidden, device=w.device, dtype=w.dtype, requires_grad=True)
        x = w.x.transpose(0, 1).contiguous()  # [B, T, I]
        function, dtype = self.FUNCTIONS[w.cell], str(w.dtype).replace("torch.", "")

        def forward():
            Wx = linear(x).view(c.batch, c.steps, gates, 1, c.hidden)
            return self.flashrnn(Wx, R, b, function=function, backend="cuda_fused", dtype=dtype)[0]

        if c.mode == "inference":
            def infer():
                with torch.no_grad():
                    return forward()
            return Runner(infer)
        return Runner(lambda: forward().sum().backward())


def available_peers(device: torch.device, names: list[str], threads: int) -> tuple[list, list[str]]:
    """The peers that can run here, and a note for each that cannot."""
    peers, notes = [], []
    for name in names:
        try:
            if name == "onnxruntime":
                if device.type == "cpu":
                    peers.append(OnnxRuntime(threads))
            elif name == "flashrnn":
                if device.type == "cuda":
                    peers.append(FlashRNN())
            else:
                raise ValueError(f"unknown peer {name!r}")
        except ImportError as error:
            notes.append(f"{name}: not installed ({error})")
    return peers, notes
