using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>y = x · wᵀ [+ bias] (nvlm_linear_forward): x [..., k], w [n, k], bias [n] → y [..., n].</summary>
    public static Tensor Linear(Tensor x, Tensor w, Tensor? bias = null)
    {
        const string op = "linear";
        RequireDType(op, "x", x, DType.F32);
        RequireDType(op, "w", w, DType.F32);
        RequireRank(op, "x", x, 1);
        RequireSameContext(op, x, w, bias);
        if (w.Rank != 2 || w.Dim(1) != x.Dim(-1))
        {
            throw new ArgumentException($"{op}: w must be [n, {x.Dim(-1)}] for x {x}, got {w}");
        }
        long m = Rows(x), k = x.Dim(-1), n = w.Dim(0);
        if (bias != null)
        {
            RequireDType(op, "bias", bias, DType.F32);
            RequireShape(op, "bias", bias, n);
        }

        Tensor y = Tensor.Empty(x.Context, DType.F32, WithLast(x, n));
        Native.Check(NativeMethods.nvlm_linear_forward(x.Context.Handle, y.Buffer, x.Buffer, w.Buffer,
            BufferOrNull(bias), m, k, n));

        if (ShouldRecord(x, w, bias))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_linear_backward(x.Context.Handle, GradBuffer(x),
                GradBuffer(w), GradBuffer(bias), dy.Buffer, x.Buffer, w.Buffer, m, k, n)), saved: [w], activations: [x]);
        }
        return y;
    }
}
