using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// f32 ↔ bf16 (round to nearest even) (nvlm_cast). Differentiable from an f32 input: the
    /// gradient is cast back to f32 (gradients are always f32).
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
            if (x.DType != DType.F32)
            {
                throw new NotSupportedException($"cast: gradients are f32, so a {x.DType} input cannot require grad");
            }
            Record("cast", y, dy =>
            {
                using Tensor dyF32 = Tensor.Zeros(x.Context, DType.F32, x.Shape.ToArray());
                Native.Check(NativeMethods.nvlm_cast(x.Context.Handle, dyF32.Buffer, (int)DType.F32, dy.Buffer, (int)dy.DType, x.ElementCount));
                AccumulateGrad(x, dyF32);
            });
        }
        return y;
    }
}
