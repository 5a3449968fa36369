"""fastrnn's benchmarks: side-by-side timings of fastrnn and its peers (torch.nn)."""
