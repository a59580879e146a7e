using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>PixelShuffle (Idefics3 connector), LmLogProb and CrossEntropy (LM head) against the double reference.</summary>
public class ConnectorHeadTests
{
    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void PixelShuffle_matches_idefics3_connector(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(501);
        foreach ((int n, int seq, int d, int scale) in new[]
                 {
                     (2, 16, 3, 2), (1, 36, 5, 2), (2, 36, 1, 3), (1, 9, 2, 3), (3, 4, 7, 2), (1, 64, 3, 2), (1, 1, 5, 1),
                 })
        {
            int s2 = scale * scale;
            OpCheck.Run(ctx, $"pixel_shuffle n={n} seq={seq} d={d} scale={scale}",
                [Arg.Random("x", rng, [n, seq, d])], [n, seq / s2, d * s2],
                t => Ops.PixelShuffle(t[0], scale),
                x => Reference.PixelShuffle(x[0], n, seq, d, scale),
                // A permutation of the input: bit-exact both ways.
                forward: Tol.Exact,
                // Each dx element is one dout element added into zero: exact, up to the ~1e-15 double
                // cancellation of the finite difference (linear op, h = 1).
                backward: new Tol(1e-12, 0),
                fdStep: 1);
        }
    }

    // The LM head is smooth in h and w: h = 1e-6 gives truncation ~1e-13·|∂³L| (logits ≲ 10 here,
    // |∂³L| ≲ 1e2) and cancellation ~1e-16·|L|/h ≈ 1e-9.
    private const double SmoothStep = 1e-6;

    // logits are dot products of ≤ 7 terms with |h| < 2, |w| < 1 (error ≲ 7·U·14 ≈ 6e-6 worst case),
    // logsumexp over ≤ 23 exps adds ≲ (23 + 4)·U relative of values ≲ 10 (≈ 1.6e-5 worst case), and
    // logp = logit − lse is O(5): 3e-5 + 1e-5·|want| bounds the sum of worst cases.
    private static readonly Tol HeadForward = new(3e-5, 1e-5);

    // dlogits = g·(onehot − softmax) carry the softmax's ≲ 2e-6 relative error; dh sums ≤ 23 of them
    // times |w| < 1, dw sums ≤ 6 tokens times |h| < 2: ≲ 23·U·23 + 2e-6·23 ≈ 8e-5 in the worst case,
    // typically ~1e-6.
    private static readonly Tol HeadBackward = new(1e-4, 1e-5);

    public static IEnumerable<(long[] TokenShape, int D, int Vocab, int Chunk, int[] Targets)> HeadCases() =>
    [
        ([5], 7, 11, 4, [3, -100, 10, 0, 7]),          // 11 = 2·4 + 3: a short last chunk
        ([5], 7, 11, 1, [3, -100, 10, 0, 7]),          // chunk 1
        ([5], 7, 11, 16, [3, -100, 10, 0, 7]),         // chunk > vocab
        ([5], 7, 11, 11, [3, -100, 10, 0, 7]),         // chunk == vocab
        ([2, 3], 6, 23, 5, [22, 0, -100, -100, 17, 5]),
        ([1], 1, 3, 2, [2]),
        ([3], 4, 5, 2, [-100, -100, -100]),            // every target ignored: logp 0, no gradient
    ];

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void LmLogProb_matches_log_softmax_gather_in_every_chunking(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(502);
        foreach ((long[] tokenShape, int d, int vocab, int chunk, int[] targets) in HeadCases())
        {
            int n = targets.Length;
            OpCheck.Run(ctx, $"lm_logprob tokens=[{string.Join(", ", tokenShape)}] d={d} vocab={vocab} chunk={chunk} targets=[{string.Join(", ", targets)}]",
                [Arg.Random("h", rng, [.. tokenShape, d], -2, 2), Arg.Random("w", rng, [vocab, d])], tokenShape,
                t => Ops.LmLogProb(t[0], t[1], OpCheck.Own(Tensor.FromArray(ctx, targets, tokenShape)), chunk),
                x => Reference.LmLogProb(x[0], x[1], targets, n, d, vocab).Logp,
                HeadForward, HeadBackward, SmoothStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void CrossEntropy_is_mean_negative_logp_over_kept_targets(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(503);
        foreach ((long[] tokenShape, int d, int vocab, int chunk, int[] targets) in HeadCases().Where(c => c.Targets.Any(t => t != -100)))
        {
            int n = targets.Length;
            OpCheck.Run(ctx, $"cross_entropy tokens=[{string.Join(", ", tokenShape)}] d={d} vocab={vocab} chunk={chunk} targets=[{string.Join(", ", targets)}]",
                [Arg.Random("h", rng, [.. tokenShape, d], -2, 2), Arg.Random("w", rng, [vocab, d])], [1],
                t => Ops.CrossEntropy(t[0], t[1], OpCheck.Own(Tensor.FromArray(ctx, targets, tokenShape)), chunk),
                x => [Reference.CrossEntropy(x[0], x[1], targets, n, d, vocab)],
                // The mean of ≤ 6 logp (each within HeadForward) and one scaling: no larger than one logp's error.
                HeadForward,
                // The same gradients as LmLogProb's, scaled by dloss/kept.
                HeadBackward, SmoothStep);
        }

        // With every target ignored the mean is undefined: refused rather than 0/0.
        using Tensor h = Tensor.FromArray(ctx, Rand.Uniform(rng, 3 * 4), 3, 4);
        using Tensor w = Tensor.FromArray(ctx, Rand.Uniform(rng, 5 * 4), 5, 4);
        using Tensor ignored = Tensor.FromArray(ctx, new[] { -100, -100, -100 }, 3);
        Assert.Throws<ArgumentException>(() => Ops.CrossEntropy(h, w, ignored));
    }
}
