using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// Batched matrix product c = op(a) · op(b) (nvlm_matmul). a is [batch, m, k] ([batch, k, m]
    /// when transA), b is [batch, k, n] ([batch, n, k] when transB); rank-2 operands are batch 1.
    /// Returns [batch, m, n] (or [m, n] for rank-2 inputs).
    /// </summary>
    public static Tensor Matmul(Tensor a, Tensor b, bool transA = false, bool transB = false)
    {
        const string op = "matmul";
        RequireDType(op, "a", a, DType.F32);
        RequireDType(op, "b", b, DType.F32);
        RequireSameContext(op, a, b);
        if (a.Rank is not (2 or 3) || b.Rank != a.Rank)
        {
            throw new ArgumentException($"{op}: a and b must both be rank 2 or both rank 3, got {a} and {b}");
        }
        long batch = a.Rank == 3 ? a.Dim(0) : 1;
        if (b.Rank == 3 && b.Dim(0) != batch)
        {
            throw new ArgumentException($"{op}: batch sizes differ, {a} and {b}");
        }
        long m = transA ? a.Dim(-1) : a.Dim(-2);
        long k = transA ? a.Dim(-2) : a.Dim(-1);
        long kb = transB ? b.Dim(-1) : b.Dim(-2);
        long n = transB ? b.Dim(-2) : b.Dim(-1);
        if (k != kb)
        {
            throw new ArgumentException($"{op}: inner dimensions differ ({k} vs {kb}) for {a}{(transA ? "ᵀ" : "")} · {b}{(transB ? "ᵀ" : "")}");
        }

        Tensor c = Tensor.Empty(a.Context, DType.F32, a.Rank == 3 ? [batch, m, n] : [m, n]);
        Native.Check(NativeMethods.nvlm_matmul(a.Context.Handle, c.Buffer, a.Buffer, b.Buffer, batch, m, n, k,
            transA ? 1 : 0, transB ? 1 : 0, 1f, 0f));

        if (ShouldRecord(a, b))
        {
            // Which gradients are wanted is fixed now: each needs the other operand kept.
            bool gradA = a.RequiresGrad, gradB = b.RequiresGrad;
            Record(op, c, dc =>
            {
                ContextHandle ctx = a.Context.Handle;
                if (gradA)
                {
                    // d op(a) = dc · op(b)ᵀ; stored transposed when transA.
                    Native.Check(transA
                        ? NativeMethods.nvlm_matmul(ctx, GradBuffer(a), b.Buffer, dc.Buffer, batch, k, m, n, transB ? 1 : 0, 1, 1f, 1f)
                        : NativeMethods.nvlm_matmul(ctx, GradBuffer(a), dc.Buffer, b.Buffer, batch, m, k, n, 0, transB ? 0 : 1, 1f, 1f));
                }
                if (gradB)
                {
                    // d op(b) = op(a)ᵀ · dc; stored transposed when transB.
                    Native.Check(transB
                        ? NativeMethods.nvlm_matmul(ctx, GradBuffer(b), dc.Buffer, a.Buffer, batch, n, k, m, 1, transA ? 1 : 0, 1f, 1f)
                        : NativeMethods.nvlm_matmul(ctx, GradBuffer(b), a.Buffer, dc.Buffer, batch, k, n, m, transA ? 0 : 1, 0, 1f, 1f));
                }
            }, activations: [gradA ? b : null, gradB ? a : null]);
        }
        return c;
    }
}
