using NativeVlm.Autograd;
using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

/// <summary>
/// The differentiable ops. Each op lives in its own file under Ops/, named as its native pair
/// (nvlm_&lt;op&gt;_forward / nvlm_&lt;op&gt;_backward): it checks shapes, allocates the output in the
/// current scope, calls the forward, and — when the tape is recording and an input requires
/// grad — records a backward closure that adds into the inputs' gradients.
/// </summary>
public static partial class Ops
{
    /// <summary>True when the op must record a backward: the tape is on and some input wants a grad.</summary>
    internal static bool ShouldRecord(params Tensor?[] inputs)
    {
        if (!Tape.IsRecording)
        {
            return false;
        }
        foreach (Tensor? t in inputs)
        {
            if (t is { RequiresGrad: true })
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Puts the op on the tape. Together, <paramref name="saved"/> and <paramref name="activations"/> list
    /// every tensor the backward reads besides its output's gradient: the tape keeps their storage until
    /// the backward has run, so that scopes may dispose the tensors as soon as the forward is past them.
    /// <paramref name="saved"/> are read exactly (weights, statistics, indices); <paramref name="activations"/>
    /// are inputs or outputs whose bf16 rounding the backward tolerates, as transformers' bf16 training
    /// stores them (<see cref="Context.SavedActivationDType"/>).
    /// </summary>
    internal static void Record(string name, Tensor output, Action<Tensor> backward,
        Tensor?[]? saved = null, Tensor?[]? activations = null)
    {
        output.RequiresGrad = true;
        var node = new Node(name, output, backward, saved ?? [], activations ?? []);
        output.GradFn = node;
        Tape.Record(node);
    }

    /// <summary>
    /// The buffer a backward adds d(loss)/d(t) into: t's gradient, created as zeros on first use,
    /// or the null buffer when t wants no gradient. Gradients are always f32, whatever t's dtype
    /// (a bf16 cast output included): the tape seeds and accumulates them with f32 kernels.
    /// </summary>
    internal static BufferHandle GradBuffer(Tensor? t)
    {
        if (t is not { RequiresGrad: true })
        {
            return BufferHandle.Null;
        }
        t.Grad ??= Tensor.Zeros(t.Context, DType.F32, t.Shape.ToArray());
        return t.Grad.Buffer;
    }

    /// <summary>t.Grad += grad.</summary>
    internal static void AccumulateGrad(Tensor t, Tensor grad) =>
        Native.Check(NativeMethods.nvlm_residual_backward(t.Context.Handle, GradBuffer(t), BufferHandle.Null,
            grad.Buffer, t.ElementCount));

    internal static void RecordReshape(Tensor view, Tensor source)
    {
        if (ShouldRecord(source))
        {
            Record("reshape", view, dView => AccumulateGrad(source, dView));
        }
    }

    internal static BufferHandle BufferOrNull(Tensor? t) => t?.Buffer ?? BufferHandle.Null;

    // ---- argument checks: they name the op and the argument --------------------------------

    internal static void RequireDType(string op, string name, Tensor t, DType dtype)
    {
        if (t.DType != dtype)
        {
            throw new ArgumentException($"{op}: {name} must be {dtype}, got {t}");
        }
    }

    internal static void RequireSameContext(string op, Tensor first, params Tensor?[] others)
    {
        foreach (Tensor? t in others)
        {
            if (t != null && t.Context != first.Context)
            {
                throw new ArgumentException($"{op}: {t} is on {t.Context}, {first} on {first.Context}");
            }
        }
    }

    internal static void RequireShape(string op, string name, Tensor t, params long[] shape)
    {
        if (!t.Shape.SequenceEqual(shape))
        {
            throw new ArgumentException($"{op}: {name} must have shape [{string.Join(", ", shape)}], got {t}");
        }
    }

    internal static void RequireRank(string op, string name, Tensor t, int minRank)
    {
        if (t.Rank < minRank)
        {
            throw new ArgumentException($"{op}: {name} needs at least {minRank} dimensions, got {t}");
        }
    }

    /// <summary>Product of all dimensions but the last: the row count of a [..., d] tensor.</summary>
    internal static long Rows(Tensor t)
    {
        long rows = 1;
        for (int i = 0; i < t.Rank - 1; i++)
        {
            rows *= t.Shape[i];
        }
        return rows;
    }

    internal static long[] WithLast(Tensor t, long last)
    {
        long[] shape = t.Shape.ToArray();
        shape[^1] = last;
        return shape;
    }
}
