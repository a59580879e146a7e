using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>LayerNorm over the last dim (nvlm_layernorm_forward): x [..., d], w and b [d].</summary>
    public static Tensor LayerNorm(Tensor x, Tensor w, Tensor b, float eps)
    {
        const string op = "layernorm";
        RequireDType(op, "x", x, DType.F32);
        RequireDType(op, "w", w, DType.F32);
        RequireDType(op, "b", b, DType.F32);
        RequireRank(op, "x", x, 1);
        RequireSameContext(op, x, w, b);
        long n = Rows(x), d = x.Dim(-1);
        RequireShape(op, "w", w, d);
        RequireShape(op, "b", b, d);

        Tensor y = Tensor.Empty(x.Context, DType.F32, x.Shape.ToArray());
        Tensor mean = Tensor.Empty(x.Context, DType.F32, n); // (n) saved for backward
        Tensor rstd = Tensor.Empty(x.Context, DType.F32, n); // (n) saved for backward
        Native.Check(NativeMethods.nvlm_layernorm_forward(x.Context.Handle, y.Buffer, mean.Buffer, rstd.Buffer,
            x.Buffer, w.Buffer, b.Buffer, n, d, eps));

        if (ShouldRecord(x, w, b))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_layernorm_backward(x.Context.Handle, GradBuffer(x),
                GradBuffer(w), GradBuffer(b), dy.Buffer, x.Buffer, w.Buffer, mean.Buffer, rstd.Buffer, n, d)), saved: [w, mean, rstd], activations: [x]);
        }
        else
        {
            mean.Dispose();
            rstd.Dispose();
        }
        return y;
    }
}
