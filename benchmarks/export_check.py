"""Export a pruned MNIST model to ONNX and TorchScript and compare both with PyTorch on the test set.

    python benchmarks/export_check.py runs/mnist-7-7/model --data ../shared/data/mnist

Prints the model's parameter count next to the ONNX file's float initializer values (they must be
equal: only live weights and biases are stored), the largest output difference and the test
errors each runtime makes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
import torch

import netbonsai
from netbonsai.data.idx import load_mnist
from netbonsai.nets import to_module
from netbonsai.nets.export import export_onnx, export_torchscript, initializer_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", default=None, help="MNIST folder (default: $NETBONSAI_DATA)")
    args = parser.parse_args()
    net = netbonsai.load(args.model)
    data = load_mnist(args.data)
    x, y = data.x_test.float(), data.y_test.numpy()
    with torch.no_grad():
        reference = to_module(net)(x).numpy()
    with tempfile.TemporaryDirectory() as folder:
        onnx_path, script_path = Path(folder) / "model.onnx", Path(folder) / "model.pt"
        export_onnx(net, onnx_path)
        export_torchscript(net, script_path)
        session = ort.InferenceSession(str(onnx_path))
        from_onnx = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        stored = initializer_count(onnx.load(str(onnx_path)))
        with torch.no_grad():
            from_script = torch.jit.load(str(script_path))(x).numpy()
    print(f"parameters {net.num_params()}, ONNX float initializer values {stored}")
    for name, out in (("onnxruntime", from_onnx), ("torchscript", from_script)):
        print(f"{name}: max |out - torch| {abs(out - reference).max():.2e}, test errors "
              f"{int((out.argmax(1) != y).sum())} (torch {int((reference.argmax(1) != y).sum())}) of {len(y)}")


if __name__ == "__main__":
    main()
