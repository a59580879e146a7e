using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// Rotary position embedding, Hugging Face's rotate_half convention (nvlm_rope_forward):
    /// x [..., heads, head_dim] with one position per token (pos int32, the product of the
    /// leading dims), inv_freq [head_dim / 2].
    /// </summary>
    public static Tensor Rope(Tensor x, Tensor pos, Tensor invFreq)
    {
        const string op = "rope";
        RequireDType(op, "x", x, DType.F32);
        RequireDType(op, "pos", pos, DType.I32);
        RequireDType(op, "inv_freq", invFreq, DType.F32);
        RequireRank(op, "x", x, 2);
        RequireSameContext(op, x, pos, invFreq);
        long headDim = x.Dim(-1), heads = x.Dim(-2), tokens = x.ElementCount / Math.Max(1, heads * headDim);
        if (headDim % 2 != 0)
        {
            throw new ArgumentException($"{op}: head_dim must be even, got {x}");
        }
        if (pos.ElementCount != tokens)
        {
            throw new ArgumentException($"{op}: pos must hold one position per token ({tokens}), got {pos}");
        }
        RequireShape(op, "inv_freq", invFreq, headDim / 2);

        Tensor y = Tensor.Empty(x.Context, DType.F32, x.Shape.ToArray());
        Native.Check(NativeMethods.nvlm_rope_forward(x.Context.Handle, y.Buffer, x.Buffer, pos.Buffer, invFreq.Buffer,
            tokens, heads, headDim));

        if (ShouldRecord(x))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_rope_backward(x.Context.Handle, GradBuffer(x),
                dy.Buffer, pos.Buffer, invFreq.Buffer, tokens, heads, headDim)), saved: [pos, invFreq]);
        }
        return y;
    }

    /// <summary>inv_freq[i] = theta^(−2i / head_dim), computed in fp32 as transformers does.</summary>
    public static float[] RopeInverseFrequencies(int headDim, double theta)
    {
        var invFreq = new float[headDim / 2];
        for (int i = 0; i < invFreq.Length; i++)
        {
            invFreq[i] = 1f / MathF.Pow((float)theta, (float)(2 * i) / headDim);
        }
        return invFreq;
    }
}
