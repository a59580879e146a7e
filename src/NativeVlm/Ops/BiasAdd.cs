using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// y = x + bias with bias broadcast over the rows (nvlm_bias_add_forward): x [..., n], bias [n] → y [..., n].
    /// The bias of a Linear whose product is taken without it (NF4, or DoRA's scaled x·Wᵀ), with no
    /// [rows, n] copy of the bias.
    /// </summary>
    public static Tensor BiasAdd(Tensor x, Tensor bias)
    {
        const string op = "bias_add";
        RequireDType(op, "x", x, DType.F32);
        RequireDType(op, "bias", bias, DType.F32);
        RequireRank(op, "x", x, 1);
        RequireSameContext(op, x, bias);
        long m = Rows(x), n = x.Dim(-1);
        RequireShape(op, "bias", bias, n);

        Tensor y = Tensor.Empty(x.Context, DType.F32, x.Shape.ToArray());
        Native.Check(NativeMethods.nvlm_bias_add_forward(x.Context.Handle, y.Buffer, x.Buffer, bias.Buffer, m, n));

        if (ShouldRecord(x, bias))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_bias_add_backward(x.Context.Handle, GradBuffer(x),
                GradBuffer(bias), dy.Buffer, m, n)));
        }
        return y;
    }
}
