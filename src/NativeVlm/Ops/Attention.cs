using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// Scaled dot-product attention with grouped query heads (nvlm_attention_forward).
    /// q [batch, tq, heads, head_dim]; k, v [batch, tk, kv_heads, head_dim]; keyMask [batch, tk]
    /// uint8 (1 = attend) or null. Causal masks bottom-right aligned. Returns [batch, tq, heads, head_dim].
    /// </summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? keyMask, bool causal, float scale)
    {
        const string op = "attention";
        RequireDType(op, "q", q, DType.F32);
        RequireDType(op, "k", k, DType.F32);
        RequireDType(op, "v", v, DType.F32);
        RequireSameContext(op, q, k, v, keyMask);
        if (q.Rank != 4 || k.Rank != 4)
        {
            throw new ArgumentException($"{op}: q and k must be [batch, t, heads, head_dim], got {q} and {k}");
        }
        long batch = q.Dim(0), tq = q.Dim(1), heads = q.Dim(2), headDim = q.Dim(3);
        long tk = k.Dim(1), kvHeads = k.Dim(2);
        RequireShape(op, "k", k, batch, tk, kvHeads, headDim);
        RequireShape(op, "v", v, batch, tk, kvHeads, headDim);
        if (kvHeads == 0 || heads % kvHeads != 0)
        {
            throw new ArgumentException($"{op}: kv heads ({kvHeads}) must divide query heads ({heads})");
        }
        if (keyMask != null)
        {
            RequireDType(op, "key_mask", keyMask, DType.U8);
            RequireShape(op, "key_mask", keyMask, batch, tk);
        }

        Tensor output = Tensor.Empty(q.Context, DType.F32, q.Shape.ToArray());
        Tensor lse = Tensor.Empty(q.Context, DType.F32, batch, heads, tq); // saved for backward
        Native.Check(NativeMethods.nvlm_attention_forward(q.Context.Handle, output.Buffer, lse.Buffer, q.Buffer,
            k.Buffer, v.Buffer, BufferOrNull(keyMask), batch, tq, tk, heads, kvHeads, headDim, causal ? 1 : 0, scale));

        if (ShouldRecord(q, k, v))
        {
            Record(op, output, dOut => Native.Check(NativeMethods.nvlm_attention_backward(q.Context.Handle,
                GradBuffer(q), GradBuffer(k), GradBuffer(v), dOut.Buffer, q.Buffer, k.Buffer, v.Buffer,
                BufferOrNull(keyMask), output.Buffer, lse.Buffer, batch, tq, tk, heads, kvHeads, headDim,
                causal ? 1 : 0, scale)), saved: [keyMask, lse], activations: [q, k, v, output]);
        }
        else
        {
            lse.Dispose();
        }
        return output;
    }
}
