using NativeVlm.Autograd;
using NativeVlm.Interop;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// A context's math mode (nvlm_context_set_math_mode). The CPU backend defines the BF16 mode: the ops it
/// covers multiply bf16-rounded copies of their operands in fp32, so each one in BF16 mode must give
/// exactly, bit for bit, what the same op gives in F32 mode on operands rounded beforehand. The CUDA
/// kernels of the mode are checked against this CPU twin by the native parity suite (tests/native).
/// </summary>
public class MathModeTests
{
    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void A_new_context_computes_in_f32_and_the_mode_reads_back(string backend)
    {
        using Context ctx = Backends.Open(backend);
        Assert.Equal(MathMode.F32, ctx.MathMode);
        ctx.MathMode = MathMode.Bf16;
        Assert.Equal(MathMode.Bf16, ctx.MathMode);
        ctx.MathMode = MathMode.F32;
        Assert.Equal(MathMode.F32, ctx.MathMode);
    }

    [Fact]
    public void An_unknown_mode_is_refused_naming_the_value()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        var error = Assert.Throws<NvlmException>(() => ctx.MathMode = (MathMode)5);
        Assert.Contains("mode = 5", error.Message);
        Assert.Equal(MathMode.F32, ctx.MathMode);
    }

    [Fact]
    public void Bf16_matmul_is_the_f32_matmul_of_rounded_operands_forward_and_backward()
    {
        var rng = new Random(901);
        const int batch = 2, m = 5, n = 7, k = 33;
        float[] a = Rand.Uniform(rng, batch * m * k), b = Rand.Uniform(rng, batch * n * k), g = Rand.Uniform(rng, batch * m * n);
        AssertBitIdentical("matmul", [(a, [batch, m, k]), (b, [batch, n, k])], g, [batch, m, n],
            t => Ops.Matmul(t[0], t[1], transB: true));
    }

    [Fact]
    public void Bf16_linear_is_the_f32_linear_of_rounded_operands_forward_and_backward()
    {
        var rng = new Random(902);
        const int m = 6, kIn = 40, nOut = 9;
        float[] x = Rand.Uniform(rng, m * kIn), w = Rand.Uniform(rng, nOut * kIn), g = Rand.Uniform(rng, m * nOut);
        AssertBitIdentical("linear", [(x, [m, kIn]), (w, [nOut, kIn])], g, [m, nOut], t => Ops.Linear(t[0], t[1]));
    }

    [Fact]
    public void Bf16_attention_is_the_f32_attention_of_rounded_operands_forward_and_backward()
    {
        var rng = new Random(903);
        const int batch = 2, tq = 9, tk = 11, heads = 4, kvHeads = 2, headDim = 16;
        float[] q = Rand.Uniform(rng, batch * tq * heads * headDim, -2, 2);
        float[] k = Rand.Uniform(rng, batch * tk * kvHeads * headDim, -2, 2);
        float[] v = Rand.Uniform(rng, batch * tk * kvHeads * headDim);
        float[] g = Rand.Uniform(rng, q.Length);
        float scale = 1f / MathF.Sqrt(headDim);
        AssertBitIdentical("attention",
            [(q, [batch, tq, heads, headDim]), (k, [batch, tk, kvHeads, headDim]), (v, [batch, tk, kvHeads, headDim])],
            g, [batch, tq, heads, headDim], t => Ops.Attention(t[0], t[1], t[2], keyMask: null, causal: true, scale));
    }

    [Fact]
    public void Bf16_lm_head_log_probs_are_the_f32_ones_of_rounded_operands()
    {
        // Forward only: the backward also rounds the dlogits it computes inside, which no rounding of
        // the op's inputs reproduces.
        var rng = new Random(904);
        const int tokens = 7, hidden = 24, vocab = 50;
        float[] h = Rand.Uniform(rng, tokens * hidden), w = Rand.Uniform(rng, vocab * hidden);
        int[] targets = [3, -100, 49, 0, 17, 17, -100];
        float[] f32 = LogProbs(MathMode.F32, Bf16.Rounded(h), Bf16.Rounded(w), targets, tokens, hidden, vocab);
        float[] bf16 = LogProbs(MathMode.Bf16, h, w, targets, tokens, hidden, vocab);
        Assert.Equal(f32, bf16);
        Assert.NotEqual(f32, LogProbs(MathMode.F32, h, w, targets, tokens, hidden, vocab));
    }

    private static float[] LogProbs(MathMode mode, float[] h, float[] w, int[] targets, int tokens, int hidden, int vocab)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        ctx.MathMode = mode;
        using Tensor th = Tensor.FromArray(ctx, h, tokens, hidden);
        using Tensor tw = Tensor.FromArray(ctx, w, vocab, hidden);
        using Tensor tt = Tensor.FromArray(ctx, targets, tokens);
        using Tensor logp = Ops.LmLogProb(th, tw, tt, chunk: 16);
        return logp.ToFloatArray();
    }

    /// <summary>
    /// Runs op forward and backward (gradient g of the output) on the CPU in BF16 mode with the raw inputs,
    /// and in F32 mode with the inputs and g rounded to bf16 first; the outputs and every input's gradient
    /// must be bit-identical. The F32 run on raw inputs must differ, or the test would not see the mode.
    /// </summary>
    private static void AssertBitIdentical(string op, (float[] Data, long[] Shape)[] inputs, float[] g, long[] outputShape,
        Func<Tensor[], Tensor> forward)
    {
        (float[] Output, float[][] Grads) bf16 = Run(MathMode.Bf16, inputs, g, outputShape, forward);
        (float[] Output, float[][] Grads) rounded = Run(MathMode.F32, inputs.Select(i => (Bf16.Rounded(i.Data), i.Shape)).ToArray(),
            Bf16.Rounded(g), outputShape, forward);
        (float[] Output, float[][] Grads) f32 = Run(MathMode.F32, inputs, g, outputShape, forward);
        Assert.True(bf16.Output.SequenceEqual(rounded.Output), $"{op}: BF16 output differs from F32 on rounded operands");
        for (int i = 0; i < inputs.Length; i++)
        {
            Assert.True(bf16.Grads[i].SequenceEqual(rounded.Grads[i]), $"{op}: BF16 gradient of input {i} differs from F32 on rounded operands");
        }
        Assert.False(bf16.Output.SequenceEqual(f32.Output), $"{op}: BF16 output equals F32 on the raw operands, so the mode did not reach the op");
    }

    private static (float[] Output, float[][] Grads) Run(MathMode mode, (float[] Data, long[] Shape)[] inputs, float[] g,
        long[] outputShape, Func<Tensor[], Tensor> forward)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        ctx.MathMode = mode;
        Tensor[] leaves = inputs.Select(i => Tensor.FromArray(ctx, i.Data, i.Shape)).ToArray();
        try
        {
            foreach (Tensor leaf in leaves)
            {
                leaf.RequiresGrad = true;
            }
            float[] output;
            using (var tape = new Tape())
            {
                Tensor y = forward(leaves);
                output = y.ToFloatArray();
                tape.Backward(y, tape.Own(Tensor.FromArray(ctx, g, outputShape)));
            }
            return (output, leaves.Select(leaf => leaf.Grad!.ToFloatArray()).ToArray());
        }
        finally
        {
            foreach (Tensor leaf in leaves)
            {
                leaf.Dispose();
            }
        }
    }
}
