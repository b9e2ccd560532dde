"""Settings for the nets tests."""

import torch

# The tests use tiny tensors: with several intra-op threads on a busy 2-core machine, OpenMP
# synchronisation dominates (about 50x slower per step). One thread keeps the suite fast.
torch.set_num_threads(1)
