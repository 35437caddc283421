"""The clipped LSTM cell's pointwise update as one Triton kernel forward and one backward.

Per step and layer, after the recurrent GEMM `gates = pre_t + h @ W_h`, `lstm.cell_update` is
~10 small kernels forward and ~15 backward in eager mode; on a GPU the recurrence is bound by
those launches (issue #18). Here each direction is one kernel: the gates, the clipped cell and
o * tanh(c) forward; backward recomputes them from the saved gates and previous cell (no other
activations saved) and writes the gradients of the gates and of the previous cell.

Arithmetic is float32 (float64 for float64 inputs) whatever the input dtype. Kernels run on
CUDA tensors, and on CPU tensors under `TRITON_INTERPRET=1` (how the tests run them).
"""

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # CUDA builds of torch bring triton; a CPU build need not have it
    triton = None

BLOCK = 1024  # cell columns per program


def unavailable(device: torch.device) -> str | None:
    """Why the kernels cannot run on `device`; None when they can."""
    if triton is None:
        return "the triton package is not installed"
    if device.type != "cuda" and not isinstance(_forward_kernel, InterpretedFunction):
        return f"Triton kernels need CUDA tensors (or TRITON_INTERPRET=1), not {device.type}"
    return None


def cell_update(gates: Tensor, c: Tensor, cell_clip: float | None) -> tuple[Tensor, Tensor]:
    """`lstm.cell_update` in one kernel: gates `(D, B, 4C)`, c `(D, B, C)` -> (h before the
    projection, new c), both `(D, B, C)` in the promoted dtype of the inputs."""
    why = unavailable(gates.device)
    if why is not None:
        raise RuntimeError(why)
    return _CellUpdate.apply(gates, c, cell_clip)


class _CellUpdate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates: Tensor, c: Tensor, cell_clip: float | None):
        gates, c = gates.contiguous(), c.contiguous()
        dtype = torch.promote_types(gates.dtype, c.dtype)
        h = torch.empty(c.shape, dtype=dtype, device=c.device)
        c_new = torch.empty_like(h)
        _forward_kernel[_grid(c)](
            gates, c, h, c_new, c.shape[-1], *_clip_args(cell_clip), _acc(dtype), BLOCK=BLOCK
        )
        ctx.save_for_backward(gates, c)
        ctx.cell_clip = cell_clip
        return h, c_new

    @staticmethod
    def backward(ctx, grad_h: Tensor, grad_c: Tensor):
        gates, c = ctx.saved_tensors
        grad_gates, grad_c_prev = torch.empty_like(gates), torch.empty_like(c)
        _backward_kernel[_grid(c)](
            gates, c, grad_h.contiguous(), grad_c.contiguous(), grad_gates, grad_c_prev,
            c.shape[-1], *_clip_args(ctx.cell_clip), _acc(grad_c_prev.dtype), BLOCK=BLOCK,
        )  # fmt: skip
        return grad_gates, grad_c_prev, None


def _grid(c: Tensor) -> tuple[int, int]:
    return c.numel() // c.shape[-1], triton.cdiv(c.shape[-1], BLOCK)  # (rows, column blocks)


def _clip_args(cell_clip: float | None) -> tuple[float, bool]:
    return (cell_clip or 0.0), cell_clip is not None


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


if triton is not None:

    @triton.jit
    def _sigmoid(x):
        # Written out, as tl.sigmoid (a jitted library function, not a builtin) would stay
        # compiled for the GPU when the interpreter is switched on after triton's import.
        return 1.0 / (1.0 + tl.exp(-x))

    @triton.jit
    def _tanh(x):
        # tl has no tanh; 1 - exp(-2|x|) loses digits near 0, where the odd Taylor series to
        # x^15 is exact to float64 precision for |x| < 1/8.
        t = tl.exp(-2.0 * tl.abs(x))
        large = (1.0 - t) / (1.0 + t)
        large = tl.where(x < 0, -large, large)
        x2 = x * x
        small = -929569.0 / 638512875
        small = 21844.0 / 6081075 + x2 * small
        small = -1382.0 / 155925 + x2 * small
        small = 62.0 / 2835 + x2 * small
        small = -17.0 / 315 + x2 * small
        small = 2.0 / 15 + x2 * small
        small = -1.0 / 3 + x2 * small
        small = x + x * x2 * small
        return tl.where(tl.abs(x) < 0.125, small, large)

    @triton.jit
    def _gates(gates, c, row, cols, mask, C, ACC: tl.constexpr):
        base = gates + row * 4 * C + cols
        i = _sigmoid(tl.load(base, mask=mask).to(ACC))
        j = _tanh(tl.load(base + C, mask=mask).to(ACC))
        f = _sigmoid(tl.load(base + 2 * C, mask=mask).to(ACC) + 1.0)  # bilm-tf's forget bias
        o = _sigmoid(tl.load(base + 3 * C, mask=mask).to(ACC))
        c_prev = tl.load(c + row * C + cols, mask=mask).to(ACC)
        return i, j, f, o, c_prev, f * c_prev + i * j

    @triton.jit
    def _forward_kernel(
        gates, c, h_out, c_out, C, clip, HAS_CLIP: tl.constexpr, ACC: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < C
        i, j, f, o, c_prev, c_new = _gates(gates, c, row, cols, mask, C, ACC)
        if HAS_CLIP:  # NaN stays NaN, as torch.clamp
            c_new = tl.where(c_new > clip, clip, tl.where(c_new < -clip, -clip, c_new))
        h = o * _tanh(c_new)
        tl.store(c_out + row * C + cols, c_new.to(c_out.dtype.element_ty), mask=mask)
        tl.store(h_out + row * C + cols, h.to(h_out.dtype.element_ty), mask=mask)

    @triton.jit
    def _backward_kernel(
        gates, c, grad_h, grad_c, grad_gates, grad_c_prev, C, clip, HAS_CLIP: tl.constexpr,
        ACC: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < C
        i, j, f, o, c_prev, c_new = _gates(gates, c, row, cols, mask, C, ACC)
        c_t = c_new
        if HAS_CLIP:
            c_t = tl.where(c_new > clip, clip, tl.where(c_new < -clip, -clip, c_new))
        tanh_c = _tanh(c_t)
        dh = tl.load(grad_h + row * C + cols, mask=mask).to(ACC)
        dc = tl.load(grad_c + row * C + cols, mask=mask).to(ACC) + dh * o * (1.0 - tanh_c * tanh_c)
        if HAS_CLIP:  # torch.clamp's gradient: through where min <= x <= max
            dc = tl.where((c_new >= -clip) & (c_new <= clip), dc, 0.0)
        out = grad_gates + row * 4 * C + cols
        element = grad_gates.dtype.element_ty
        tl.store(out, (dc * j * i * (1.0 - i)).to(element), mask=mask)
        tl.store(out + C, (dc * i * (1.0 - j * j)).to(element), mask=mask)
        tl.store(out + 2 * C, (dc * c_prev * f * (1.0 - f)).to(element), mask=mask)
        tl.store(out + 3 * C, (dh * tanh_c * o * (1.0 - o)).to(element), mask=mask)
        grad_c_prev_value = (dc * f).to(grad_c_prev.dtype.element_ty)
        tl.store(grad_c_prev + row * C + cols, grad_c_prev_value, mask=mask)
