using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>GELU, tanh approximation (nvlm_gelu_forward).</summary>
    public static Tensor Gelu(Tensor x)
    {
        RequireDType("gelu", "x", x, DType.F32);
        Tensor y = Tensor.Empty(x.Context, DType.F32, x.Shape.ToArray());
        Native.Check(NativeMethods.nvlm_gelu_forward(x.Context.Handle, y.Buffer, x.Buffer, x.ElementCount));
        if (ShouldRecord(x))
        {
            Record("gelu", y, dy => Native.Check(NativeMethods.nvlm_gelu_backward(x.Context.Handle, GradBuffer(x),
                dy.Buffer, x.Buffer, x.ElementCount)), activations: [x]);
        }
        return y;
    }

    /// <summary>SwiGLU: silu(gate) · up (nvlm_swiglu_forward); same shapes.</summary>
    public static Tensor SwiGlu(Tensor gate, Tensor up)
    {
        const string op = "swiglu";
        RequireDType(op, "gate", gate, DType.F32);
        RequireDType(op, "up", up, DType.F32);
        RequireSameContext(op, gate, up);
        RequireShape(op, "up", up, gate.Shape.ToArray());
        long n = gate.ElementCount;
        Tensor y = Tensor.Empty(gate.Context, DType.F32, gate.Shape.ToArray());
        Native.Check(NativeMethods.nvlm_swiglu_forward(gate.Context.Handle, y.Buffer, gate.Buffer, up.Buffer, n));
        if (ShouldRecord(gate, up))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_swiglu_backward(gate.Context.Handle, GradBuffer(gate),
                GradBuffer(up), dy.Buffer, gate.Buffer, up.Buffer, n)), activations: [gate, up]);
        }
        return y;
    }

    /// <summary>Residual add a + b (nvlm_residual_forward); same shapes.</summary>
    public static Tensor Residual(Tensor a, Tensor b)
    {
        const string op = "residual";
        RequireDType(op, "a", a, DType.F32);
        RequireDType(op, "b", b, DType.F32);
        RequireSameContext(op, a, b);
        RequireShape(op, "b", b, a.Shape.ToArray());
        long n = a.ElementCount;
        Tensor y = Tensor.Empty(a.Context, DType.F32, a.Shape.ToArray());
        Native.Check(NativeMethods.nvlm_residual_forward(a.Context.Handle, y.Buffer, a.Buffer, b.Buffer, n));
        if (ShouldRecord(a, b))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_residual_backward(a.Context.Handle, GradBuffer(a),
                GradBuffer(b), dy.Buffer, n)));
        }
        return y;
    }

    /// <summary>alpha · x (nvlm_scale_forward).</summary>
    public static Tensor Scale(Tensor x, float alpha)
    {
        RequireDType("scale", "x", x, DType.F32);
        Tensor y = Tensor.Empty(x.Context, DType.F32, x.Shape.ToArray());
        Native.Check(NativeMethods.nvlm_scale_forward(x.Context.Handle, y.Buffer, x.Buffer, alpha, x.ElementCount));
        if (ShouldRecord(x))
        {
            Record("scale", y, dy => Native.Check(NativeMethods.nvlm_scale_backward(x.Context.Handle, GradBuffer(x),
                dy.Buffer, alpha, x.ElementCount)));
        }
        return y;
    }

    /// <summary>Σ x over all elements → [1] (nvlm_sum_forward).</summary>
    public static Tensor Sum(Tensor x)
    {
        RequireDType("sum", "x", x, DType.F32);
        Tensor y = Tensor.Empty(x.Context, DType.F32, 1);
        Native.Check(NativeMethods.nvlm_sum_forward(x.Context.Handle, y.Buffer, x.Buffer, x.ElementCount));
        if (ShouldRecord(x))
        {
            Record("sum", y, dy => Native.Check(NativeMethods.nvlm_sum_backward(x.Context.Handle, GradBuffer(x),
                dy.Buffer, x.ElementCount)));
        }
        return y;
    }
}
