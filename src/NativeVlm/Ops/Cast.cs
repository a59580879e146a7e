using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// f32 ↔ bf16 (round to nearest even) (nvlm_cast). Differentiable: gradients are f32 whatever
    /// the tensor's dtype (Ops.GradBuffer), so d(y) adds into d(x) unchanged.
    /// </summary>
    public static Tensor Cast(Tensor x, DType dtype)
    {
        if (x.DType is not (DType.F32 or DType.BF16) || dtype is not (DType.F32 or DType.BF16))
        {
            throw new ArgumentException($"cast: only f32 and bf16 convert, got {x} → {dtype}");
        }
        Tensor y = Tensor.Empty(x.Context, dtype, x.Shape.ToArray());
        Native.Check(NativeMethods.nvlm_cast(x.Context.Handle, y.Buffer, (int)dtype, x.Buffer, (int)x.DType, x.ElementCount));
        if (ShouldRecord(x))
        {
            Record("cast", y, dy => AccumulateGrad(x, dy));
        }
        return y;
    }
}
