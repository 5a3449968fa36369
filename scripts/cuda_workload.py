"""A small forward+backward of every fastrnn cell on CUDA, for compute-sanitizer.

Covers padded and packed input (sorted lengths, reverse direction), the LSTM projection, the
cells, and float32/bfloat16. Exits non-zero if a result is not finite.

    compute-sanitizer --tool memcheck python scripts/cuda_workload.py
"""

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn


def main() -> None:
    torch.manual_seed(0)
    device = "cuda"
    for dtype in (torch.float32, torch.bfloat16):
        for name in ("RNN", "LSTM", "GRU"):
            kwargs = {"proj_size": 5} if name == "LSTM" else {}
            module = getattr(fastrnn, name)(12, 20, num_layers=2, bidirectional=True, **kwargs)
            module.to(device, dtype)
            x = torch.randn(7, 3, 12, device=device, dtype=dtype, requires_grad=True)
            output, _ = module(x)
            output.float().sum().backward()
            packed = pack_padded_sequence(torch.randn(7, 3, 12, device=device, dtype=dtype),
                                          torch.tensor([7, 4, 2]))
            packed_output, _ = module(packed)
            packed_output.data.float().sum().backward()
            assert torch.isfinite(output).all() and torch.isfinite(x.grad).all(), name
        for name in ("RNNCell", "LSTMCell", "GRUCell"):
            cell = getattr(fastrnn, name)(12, 20).to(device, dtype)
            out = cell(torch.randn(3, 12, device=device, dtype=dtype))
            h = out[0] if isinstance(out, tuple) else out
            h.float().sum().backward()
            assert torch.isfinite(h).all(), name
    torch.cuda.synchronize()
    print("cuda workload: ok")


if __name__ == "__main__":
    main()
