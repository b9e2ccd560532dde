"""Settings for the whole test suite."""

import torch

# The tests use tiny tensors: with several intra-op threads on a busy 2-core machine, OpenMP
# synchronisation dominates (about 50x slower per step). One thread keeps the suite fast.
torch.set_num_threads(1)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "fast: an end-to-end test shrunk to run in a few seconds")
