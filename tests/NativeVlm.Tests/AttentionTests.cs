using NativeVlm.Interop;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>Scaled dot-product attention (GQA, key mask, bottom-right causal) against the double reference.</summary>
public class AttentionTests
{
    /// <summary>One attention configuration; mask is [batch, tk] or null.</summary>
    public sealed record Case(int Batch, int Tq, int Tk, int Heads, int KvHeads, int HeadDim, bool Causal, byte[]? Mask)
    {
        public override string ToString() =>
            $"attention batch={Batch} tq={Tq} tk={Tk} heads={Heads}/{KvHeads} head_dim={HeadDim} causal={Causal} " +
            $"mask={(Mask == null ? "none" : string.Join("", Mask))}";
    }

    private static readonly Case[] Cases =
    [
        new(2, 5, 5, 4, 2, 8, Causal: false, Mask: null),
        new(2, 5, 5, 4, 2, 8, Causal: true, Mask: null),
        new(1, 3, 5, 4, 2, 8, Causal: true, Mask: null),                       // tq < tk: bottom-right causal
        new(1, 1, 7, 4, 2, 8, Causal: true, Mask: null),                       // a decode step sees every key
        new(3, 3, 5, 3, 1, 3, Causal: false, Mask: [1, 1, 0, 1, 1, /**/ 1, 1, 1, 1, 1, /**/ 0, 0, 0, 0, 0]), // last row fully masked
        new(3, 3, 5, 3, 1, 3, Causal: true, Mask: [1, 0, 1, 1, 0, /**/ 0, 1, 1, 1, 1, /**/ 0, 0, 0, 0, 0]),
        new(2, 3, 5, 2, 2, 1, Causal: false, Mask: [0, 1, 1, 0, 1, /**/ 1, 1, 1, 1, 0]),
        new(2, 3, 5, 2, 2, 1, Causal: true, Mask: null),
        new(1, 5, 3, 2, 1, 3, Causal: true, Mask: null),                       // tq > tk: the first two queries see no key
        new(2, 1, 1, 1, 1, 8, Causal: true, Mask: [1, 0]),                     // a single key, kept then masked
        new(1, 17, 17, 2, 1, 6, Causal: true, Mask: null),
    ];

    // Scores are scale·q·k over ≤ 8 terms with |q|, |k| < 2 (|score| ≲ 5); exp and log add a few ulp
    // and the softmax sums ≤ 17 terms, so probabilities carry ≲ (8·4·0.4 + 17 + 4)·U ≈ 2e-6
    // relative error, and out = Σ p·v with |v| < 1 is off by ≲ 2e-6. 1e-5 + 1e-5·|want| bounds it
    // with margin; a wrong head mapping, mask or causal offset is off by O(0.1).
    private static readonly Tol Forward = new(1e-5, 1e-5);

    // The backward chains dP = dout·v (≤ 8 terms), D = Σ dout·out, dS = P·(dP − D) and sums of
    // ≤ 17·2 products (dq over keys, dk/dv over queries of the whole head group), each O(1)
    // (|dS| ≲ 2, |q|, |k| < 2): ≲ (8 + 34)·U·8 ≈ 2e-5 worst case.
    private static readonly Tol Backward = new(3e-5, 1e-5);

    // Softmax attention is smooth in q, k, v: h = 1e-6 gives truncation ~1e-12/6·|∂³L| (|∂³L| ≲ 1e2
    // for |scores| ≲ 5) and cancellation ~1e-16·|L|/h ≈ 1e-9.
    private const double Step = 1e-6;

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Attention_matches_sdpa_with_gqa_mask_and_causal(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(301);
        foreach (Case c in Cases)
        {
            float scale = 1f / MathF.Sqrt(c.HeadDim);
            long[] qShape = [c.Batch, c.Tq, c.Heads, c.HeadDim], kvShape = [c.Batch, c.Tk, c.KvHeads, c.HeadDim];
            OpCheck.Run(ctx, c.ToString(),
                [Arg.Random("q", rng, qShape, -2, 2), Arg.Random("k", rng, kvShape, -2, 2), Arg.Random("v", rng, kvShape)],
                qShape,
                t => Ops.Attention(t[0], t[1], t[2],
                    c.Mask == null ? null : OpCheck.Own(Tensor.FromArray(ctx, c.Mask, c.Batch, c.Tk)), c.Causal, scale),
                x => Reference.Attention(x[0], x[1], x[2], c.Mask, c.Batch, c.Tq, c.Tk, c.Heads, c.KvHeads, c.HeadDim,
                    c.Causal, scale).Out,
                Forward, Backward, Step);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Attention_uses_the_given_scale(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(302);
        var c = new Case(2, 3, 5, 4, 2, 8, Causal: true, Mask: [1, 1, 1, 0, 1, /**/ 1, 1, 0, 1, 1]);
        const float scale = 0.9f; // not 1/√head_dim, so a kernel that ignores the argument fails
        long[] qShape = [c.Batch, c.Tq, c.Heads, c.HeadDim], kvShape = [c.Batch, c.Tk, c.KvHeads, c.HeadDim];
        OpCheck.Run(ctx, $"{c} scale={scale}",
            [Arg.Random("q", rng, qShape), Arg.Random("k", rng, kvShape), Arg.Random("v", rng, kvShape)],
            qShape,
            t => Ops.Attention(t[0], t[1], t[2], OpCheck.Own(Tensor.FromArray(ctx, c.Mask!, c.Batch, c.Tk)), c.Causal, scale),
            x => Reference.Attention(x[0], x[1], x[2], c.Mask, c.Batch, c.Tq, c.Tk, c.Heads, c.KvHeads, c.HeadDim,
                c.Causal, scale).Out,
            Forward, Backward, Step);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Attention_saves_logsumexp_and_gives_rows_without_keys_zero_and_minus_infinity(string backend)
    {
        // The lse the backward reads is part of the ABI (nvlm.h): checked through the binding.
        using Context ctx = Backends.Open(backend);
        var rng = new Random(303);
        var c = new Case(3, 4, 3, 4, 2, 3, Causal: true, Mask: [1, 0, 1, /**/ 1, 1, 1, /**/ 0, 0, 0]);
        float scale = 1f / MathF.Sqrt(c.HeadDim);
        float[] q = Rand.Uniform(rng, c.Batch * c.Tq * c.Heads * c.HeadDim, -2, 2);
        float[] k = Rand.Uniform(rng, c.Batch * c.Tk * c.KvHeads * c.HeadDim, -2, 2);
        float[] v = Rand.Uniform(rng, c.Batch * c.Tk * c.KvHeads * c.HeadDim);
        using Tensor tq = Tensor.FromArray(ctx, q, q.Length), tk = Tensor.FromArray(ctx, k, k.Length);
        using Tensor tv = Tensor.FromArray(ctx, v, v.Length), mask = Tensor.FromArray(ctx, c.Mask!, c.Mask!.Length);
        using Tensor output = Tensor.FromArray(ctx, Enumerable.Repeat(float.NaN, q.Length).ToArray(), q.Length);
        using Tensor lse = Tensor.FromArray(ctx, Enumerable.Repeat(float.NaN, c.Batch * c.Heads * c.Tq).ToArray(), c.Batch * c.Heads * c.Tq);

        Native.Check(NativeMethods.nvlm_attention_forward(ctx.Handle, output.Buffer, lse.Buffer, tq.Buffer, tk.Buffer,
            tv.Buffer, mask.Buffer, c.Batch, c.Tq, c.Tk, c.Heads, c.KvHeads, c.HeadDim, 1, scale));

        (double[] wantOut, double[] wantLse) = Reference.Attention(q.ToDouble(), k.ToDouble(), v.ToDouble(), c.Mask,
            c.Batch, c.Tq, c.Tk, c.Heads, c.KvHeads, c.HeadDim, c.Causal, scale);
        Assert.Contains(double.NegativeInfinity, wantLse); // tq > tk and a fully masked row: some rows see no key
        // Outputs as in the test above; rows without keys must be exactly 0 (the buffers start as NaN).
        Compare.AllClose($"{c} out on {ctx}", output.ToFloatArray(), wantOut, [c.Batch, c.Tq, c.Heads, c.HeadDim], Forward);
        // lse = max + log Σ exp over ≤ 3 scores of |s| ≲ 4: a few ulp of values ≲ 5, ≲ 1e-6;
        // −∞ must be −∞ (the comparison treats infinities exactly).
        Compare.AllClose($"{c} lse on {ctx}", lse.ToFloatArray(), wantLse, [c.Batch, c.Heads, c.Tq], new Tol(1e-5, 1e-5));
        float[] got = output.ToFloatArray();
        for (int b = 0; b < c.Batch; b++)
        {
            for (int i = 0; i < c.Tq; i++)
            {
                for (int h = 0; h < c.Heads; h++)
                {
                    if (double.IsNegativeInfinity(wantLse[(b * c.Heads + h) * c.Tq + i]))
                    {
                        int at = ((b * c.Tq + i) * c.Heads + h) * c.HeadDim;
                        float[] row = got[at..(at + c.HeadDim)];
                        Assert.True(row.All(value => value == 0),
                            $"{c} on {ctx}: query (batch {b}, token {i}, head {h}) sees no key, so its output must be 0, got [{string.Join(", ", row)}]");
                    }
                }
            }
        }
    }
}
