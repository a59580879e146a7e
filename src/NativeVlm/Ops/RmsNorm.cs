using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>Llama RMSNorm over the last dim (nvlm_rmsnorm_forward): x [..., d], w [d].</summary>
    public static Tensor RmsNorm(Tensor x, Tensor w, float eps)
    {
        const string op = "rmsnorm";
        RequireDType(op, "x", x, DType.F32);
        RequireDType(op, "w", w, DType.F32);
        RequireRank(op, "x", x, 1);
        RequireSameContext(op, x, w);
        long n = Rows(x), d = x.Dim(-1);
        RequireShape(op, "w", w, d);

        Tensor y = Tensor.Empty(x.Context, DType.F32, x.Shape.ToArray());
        Tensor rstd = Tensor.Empty(x.Context, DType.F32, n); // (n) saved for backward
        Native.Check(NativeMethods.nvlm_rmsnorm_forward(x.Context.Handle, y.Buffer, rstd.Buffer, x.Buffer, w.Buffer, n, d, eps));

        if (ShouldRecord(x, w))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_rmsnorm_backward(x.Context.Handle, GradBuffer(x),
                GradBuffer(w), dy.Buffer, x.Buffer, w.Buffer, rstd.Buffer, n, d)), saved: [w, rstd], activations: [x]);
        }
        else
        {
            rstd.Dispose();
        }
        return y;
    }
}
