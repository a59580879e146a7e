using NativeVlm.Interop;
using NativeVlm.Quantization;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// y = x · dequant(w)ᵀ (nvlm_nf4_linear_forward), the frozen base layer of QLoRA: x [..., k],
    /// w an <see cref="Nf4Weight"/> [n, k] → y [..., n]. The backward adds into x's gradient only
    /// (nvlm_nf4_linear_backward); w has none.
    /// </summary>
    public static Tensor Nf4Linear(Tensor x, Nf4Weight w)
    {
        const string op = "nf4_linear";
        RequireDType(op, "x", x, DType.F32);
        RequireRank(op, "x", x, 1);
        if (w.Context != x.Context)
        {
            throw new ArgumentException($"{op}: w {w} is on {w.Context}, x {x} on {x.Context}");
        }
        if (x.Dim(-1) != w.Columns)
        {
            throw new ArgumentException($"{op}: x must be [..., {w.Columns}] for w {w}, got {x}");
        }
        long m = Rows(x), k = w.Columns, n = w.Rows;

        Tensor y = Tensor.Empty(x.Context, DType.F32, WithLast(x, n));
        Native.Check(NativeMethods.nvlm_nf4_linear_forward(x.Context.Handle, y.Buffer, x.Buffer, w.Packed.Buffer,
            w.AbsmaxQuantized.Buffer, w.NestedAbsmax.Buffer, w.Offset.Buffer, w.AbsmaxCode.Buffer, m, k, n));

        if (ShouldRecord(x))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_nf4_linear_backward(x.Context.Handle, GradBuffer(x),
                dy.Buffer, w.Packed.Buffer, w.AbsmaxQuantized.Buffer, w.NestedAbsmax.Buffer, w.Offset.Buffer,
                w.AbsmaxCode.Buffer, m, k, n)), saved: [w.Packed, w.AbsmaxQuantized, w.NestedAbsmax, w.Offset, w.AbsmaxCode]);
        }
        return y;
    }
}
