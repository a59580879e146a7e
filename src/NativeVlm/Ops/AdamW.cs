using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// One in-place AdamW update of param with its grad and moments m, v (nvlm_adamw_step), as
    /// torch.optim.AdamW; <paramref name="step"/> counts from 1. Not recorded: it is the optimiser.
    /// </summary>
    public static void AdamWStep(Tensor param, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2,
        float eps, float weightDecay, long step)
    {
        const string op = "adamw_step";
        foreach ((string name, Tensor t) in new[] { ("param", param), ("grad", grad), ("m", m), ("v", v) })
        {
            RequireDType(op, name, t, DType.F32);
            RequireShape(op, name, t, param.Shape.ToArray());
        }
        RequireSameContext(op, param, grad, m, v);
        if (step < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(step), step, $"{op}: step counts from 1");
        }
        Native.Check(NativeMethods.nvlm_adamw_step(param.Context.Handle, param.Buffer, grad.Buffer, m.Buffer, v.Buffer,
            param.ElementCount, lr, beta1, beta2, eps, weightDecay, step));
    }
}
