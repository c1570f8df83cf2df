"""The package's own PyTorch model as an engine: for GPU hosts with PyTorch and nothing else.

No ONNX Runtime GPU build, no TensorRT: the checkpoint is loaded as in export, cast to bf16 or fp16 and
run with scaled_dot_product_attention (flash attention on recent GPUs), optionally through
torch.compile. Same interface as the other engines: (B, 3, H, W) float32 windows -> (B, K, H, W)
float32 logits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SegmenterError
from ..extras import require

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class TorchEngine:
    def __init__(self, checkpoint: str | Path, variant=None, torch_device: str = "cuda", precision: str = "bf16",
                 batch_size: int = 1, window: int | None = None, compile: bool = False) -> None:
        torch = require("torch", "torch", "the PyTorch engine")

        from ..model.loading import is_checkpoint, load_model
        from ..model.network import set_fused_attention

        checkpoint = Path(checkpoint)
        if not is_checkpoint(checkpoint):
            raise SegmenterError(f"{checkpoint}: the PyTorch engine runs a checkpoint (checkpoint.pth), not an "
                                 "exported model")
        if torch_device.startswith("cuda") and not torch.cuda.is_available():
            raise SegmenterError("device torch-cuda: PyTorch sees no CUDA GPU here")
        model, variant = load_model(checkpoint, variant)
        set_fused_attention(model, True)
        self.dtype = getattr(torch, DTYPES[precision])
        self.device = torch.device(torch_device)
        self.model = model.to(self.device, self.dtype).eval()
        self.forward = torch.compile(self.model) if compile else self.model
        side = window or variant.window_size
        self.input_hw, self.n_cls, self.dynamic = (side, side), variant.n_cls, True  # eager: any window
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else torch_device
        self.name = f"torch-{self.device.type} {precision}" + (" compiled" if compile else "") + f" ({where})"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype, non_blocking=True)
            return self.forward(x).float().cpu().numpy()
