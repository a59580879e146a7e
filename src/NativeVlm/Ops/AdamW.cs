using System.Runtime.InteropServices;
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
        RequireAdamWTensors(op, "", param, grad, m, v);
        RequireSameContext(op, param, grad, m, v);
        RequireAdamWStep(op, step);
        Native.Check(NativeMethods.nvlm_adamw_step(param.Context.Handle, param.Buffer, grad.Buffer, m.Buffer, v.Buffer,
            param.ElementCount, lr, beta1, beta2, eps, weightDecay, step));
    }

    /// <summary>
    /// <see cref="AdamWStep"/> on every parameter of a list at once, with one step count for all
    /// (nvlm_adamw_multi_tensor_step: one kernel launch on CUDA, the per-tensor steps in turn on the
    /// CPU, so the results are those of <see cref="AdamWStep"/> on each). Parameter t is updated from
    /// grads[t] with moments m[t], v[t] of its shape; the params, m and v are distinct tensors. An
    /// empty list does nothing.
    /// </summary>
    public static void AdamWMultiTensorStep(IReadOnlyList<Tensor> parameters, IReadOnlyList<Tensor> grads,
        IReadOnlyList<Tensor> m, IReadOnlyList<Tensor> v, float lr, float beta1, float beta2, float eps,
        float weightDecay, long step)
    {
        const string op = "adamw_multi_tensor_step";
        int count = parameters.Count;
        if (grads.Count != count || m.Count != count || v.Count != count)
        {
            throw new ArgumentException(
                $"{op}: {count} parameters need as many grads, m and v; got {grads.Count}, {m.Count}, {v.Count}");
        }
        RequireAdamWStep(op, step);
        if (count == 0)
        {
            return;
        }
        for (int t = 0; t < count; t++)
        {
            RequireAdamWTensors(op, $"[{t}]", parameters[t], grads[t], m[t], v[t]);
            RequireSameContext(op, parameters[0], parameters[t], grads[t], m[t], v[t]);
        }

        // The native side reads the handles as arrays of nvlm_buffer*; each stays referenced until it returns.
        var referenced = new List<SafeHandle>(4 * count);
        try
        {
            IntPtr[] Pointers(IReadOnlyList<Tensor> tensors) => tensors.Select(t =>
            {
                bool added = false;
                t.Buffer.DangerousAddRef(ref added);
                referenced.Add(t.Buffer);
                return t.Buffer.DangerousGetHandle();
            }).ToArray();
            IntPtr[] paramPointers = Pointers(parameters), gradPointers = Pointers(grads);
            IntPtr[] mPointers = Pointers(m), vPointers = Pointers(v);
            long[] sizes = parameters.Select(p => p.ElementCount).ToArray();
            Native.Check(NativeMethods.nvlm_adamw_multi_tensor_step(parameters[0].Context.Handle, paramPointers,
                gradPointers, mPointers, vPointers, sizes, count, lr, beta1, beta2, eps, weightDecay, step));
        }
        finally
        {
            foreach (SafeHandle handle in referenced)
            {
                handle.DangerousRelease();
            }
        }
    }

    private static void RequireAdamWTensors(string op, string index, Tensor param, Tensor grad, Tensor m, Tensor v)
    {
        foreach ((string name, Tensor t) in new[] { ("param", param), ("grad", grad), ("m", m), ("v", v) })
        {
            RequireDType(op, name + index, t, DType.F32);
            RequireShape(op, name + index, t, param.Shape.ToArray());
        }
    }

    private static void RequireAdamWStep(string op, long step)
    {
        if (step < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(step), step, $"{op}: step counts from 1");
        }
    }
}
