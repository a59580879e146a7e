using NativeVlm.Interop;
using NativeVlm.Quantization;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// DoRA's weight norm (nvlm_dora_norm): ‖w + scaling·b·a‖ per output row, PEFT's get_weight_norm,
    /// computed from the factors without the [n, k] matrix w + scaling·b·a. w [n, k] (the base weight),
    /// a [r, k], b [n, r] → norm [n] and, when <paramref name="withInverse"/>, 1 / norm [n] (else null).
    /// Not recorded: PEFT detaches the norm, so no gradient flows through it.
    /// </summary>
    public static (Tensor Norm, Tensor? InverseNorm) DoraNorm(Tensor w, Tensor a, Tensor b, float scaling, bool withInverse)
    {
        const string op = "dora_norm";
        RequireDType(op, "w", w, DType.F32);
        if (w.Rank != 2)
        {
            throw new ArgumentException($"{op}: w must be [n, k], got {w}");
        }
        RequireSameContext(op, w, a, b);
        (long n, long k, long r) = DoraNormSizes(op, w.Dim(0), w.Dim(1), a, b);
        (Tensor norm, Tensor? inverse) = DoraNormOutputs(w.Context, n, withInverse);
        Native.Check(NativeMethods.nvlm_dora_norm(w.Context.Handle, norm.Buffer, BufferOrNull(inverse), w.Buffer,
            a.Buffer, b.Buffer, n, k, r, scaling));
        return (norm, inverse);
    }

    /// <summary>
    /// <see cref="DoraNorm(Tensor, Tensor, Tensor, float, bool)"/> with the base weight in NF4
    /// (nvlm_dora_norm_nf4): each element dequantised where it is read, never the whole matrix.
    /// </summary>
    public static (Tensor Norm, Tensor? InverseNorm) DoraNorm(Nf4Weight w, Tensor a, Tensor b, float scaling, bool withInverse)
    {
        const string op = "dora_norm_nf4";
        if (w.Context != a.Context)
        {
            throw new ArgumentException($"{op}: w {w} is on {w.Context}, a {a} on {a.Context}");
        }
        RequireSameContext(op, a, b);
        (long n, long k, long r) = DoraNormSizes(op, w.Rows, w.Columns, a, b);
        (Tensor norm, Tensor? inverse) = DoraNormOutputs(a.Context, n, withInverse);
        Native.Check(NativeMethods.nvlm_dora_norm_nf4(a.Context.Handle, norm.Buffer, BufferOrNull(inverse),
            w.Packed.Buffer, w.AbsmaxQuantized.Buffer, w.NestedAbsmax.Buffer, w.Offset.Buffer, w.AbsmaxCode.Buffer,
            a.Buffer, b.Buffer, n, k, r, scaling));
        return (norm, inverse);
    }

    // a [r, k] and b [n, r] for a weight [n, k].
    private static (long N, long K, long R) DoraNormSizes(string op, long n, long k, Tensor a, Tensor b)
    {
        RequireDType(op, "a", a, DType.F32);
        RequireDType(op, "b", b, DType.F32);
        if (a.Rank != 2 || a.Dim(1) != k || a.Dim(0) == 0)
        {
            throw new ArgumentException($"{op}: a must be [r, {k}] with r > 0 for a weight [{n}, {k}], got {a}");
        }
        long r = a.Dim(0);
        RequireShape(op, "b", b, n, r);
        return (n, k, r);
    }

    private static (Tensor Norm, Tensor? Inverse) DoraNormOutputs(Context context, long n, bool withInverse)
    {
        Tensor norm = Tensor.Empty(context, DType.F32, n);
        return (norm, withInverse ? Tensor.Empty(context, DType.F32, n) : null);
    }
}
