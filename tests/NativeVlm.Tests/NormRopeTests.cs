using NativeVlm.Interop;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>RmsNorm, LayerNorm and Rope against the double reference and finite differences.</summary>
public class NormRopeTests
{
    // Normalisations are smooth, so the central difference has truncation error h²/6·|∂³L|; with
    // h = 1e-6 that is ~1e-13·|∂³L| (∂³L is O(1)–O(1e3) for these inputs), and the cancellation
    // error is ~1e-16·|L|/h ≈ 1e-9. Both lie far below the fp32 tolerances below.
    private const double SmoothStep = 1e-6;

    // Rows of d ≤ 64 elements in (−1, 1): the mean of squares (or mean and variance) is off by at
    // most d·U relative, rsqrt adds ≤ 2 ulp and the output two more products, so the forward is
    // within ~(d + 5)·U ≈ 4e-6 relative of the exact value, and |out| ≲ 2·|w|. 1e-5 + 1e-5·|want|
    // covers that; a wrong mean, eps or weight index is off by ≥ 1e-3.
    private static readonly Tol NormForward = new(1e-5, 1e-5);

    // The backward adds two row reductions of d ≤ 64 products of O(1) values scaled by rstd
    // (≲ 2 for these rows, up to 1/|x| for d = 1): ≲ 64·U·4 ≈ 1.5e-5 in the worst case.
    private static readonly Tol NormBackward = new(3e-5, 1e-5);

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void RmsNorm_matches_llama_rmsnorm(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(201);
        foreach ((long[] shape, float eps) in new (long[], float)[]
                 {
                     ([3, 17], 1e-5f), ([2, 3, 8], 1e-6f), ([5, 1], 1e-5f), ([1, 64], 1e-6f), ([17, 3], 1e-2f),
                 })
        {
            int d = (int)shape[^1], n = (int)(shape.Aggregate(1L, (p, v) => p * v) / d);
            OpCheck.Run(ctx, $"rmsnorm x=[{string.Join(", ", shape)}] eps={eps}",
                [Arg.Random("x", rng, shape), Arg.Random("w", rng, [d], 0.5, 1.5)], shape,
                t => Ops.RmsNorm(t[0], t[1], eps),
                x => Reference.RmsNorm(x[0], x[1], n, d, eps),
                NormForward, NormBackward, SmoothStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void LayerNorm_matches_torch_layernorm(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(202);
        foreach ((long[] shape, float eps) in new (long[], float)[]
                 {
                     ([3, 17], 1e-5f), ([2, 3, 8], 1e-6f), ([4, 1], 1e-5f), ([1, 64], 1e-6f), ([17, 2], 1e-2f),
                 })
        {
            int d = (int)shape[^1], n = (int)(shape.Aggregate(1L, (p, v) => p * v) / d);
            OpCheck.Run(ctx, $"layernorm x=[{string.Join(", ", shape)}] eps={eps}",
                [Arg.Random("x", rng, shape), Arg.Random("w", rng, [d], 0.5, 1.5), Arg.Random("b", rng, [d])], shape,
                t => Ops.LayerNorm(t[0], t[1], t[2], eps),
                x => Reference.LayerNorm(x[0], x[1], x[2], n, d, eps),
                NormForward, NormBackward, SmoothStep);
        }
    }

    // RoPE is linear in x (the angles do not depend on it): h = 1 makes the central difference exact
    // up to ~1e-15 of cancellation.
    private const double RopeStep = 1;

    // The kernel forms angle = pos · inv_freq in fp32 (as transformers does): off by ≤ |angle|·U ≤
    // 40·U ≈ 2.4e-6 for positions < 40 and inv_freq ≤ 1, which moves cos and sin by as much; with
    // |x| < 1 the rotated pair x·cos ∓ x'·sin is then off by ≤ 2·2.4e-6 plus a few roundings ≈ 5e-6.
    // The backward rotates by the same angles. A wrong half, sign or position is off by O(0.1).
    private static readonly Tol RopeTol = new(1e-5, 0);

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Rope_matches_transformers_rotate_half(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(203);
        // (shape of x: [..tokens, heads, head_dim], theta)
        foreach ((long[] shape, double theta) in new (long[], double)[]
                 {
                     ([1, 1, 2], 10000), ([5, 3, 6], 10000), ([7, 2, 8], 100), ([3, 4, 2], 10000), ([2, 3, 2, 8], 10000),
                     ([17, 1, 6], 1e6),
                 })
        {
            int headDim = (int)shape[^1], heads = (int)shape[^2];
            int tokens = (int)(shape.Aggregate(1L, (p, v) => p * v) / (heads * headDim));
            long[] posShape = shape[..^2];
            int[] pos = Rand.Ints(rng, tokens, 0, 40); // unordered, with repeats, as packed sequences give
            float[] invFreq = Ops.RopeInverseFrequencies(headDim, theta);
            OpCheck.Run(ctx, $"rope x=[{string.Join(", ", shape)}] theta={theta} pos=[{string.Join(", ", pos)}]",
                [Arg.Random("x", rng, shape), Arg.Const("inv_freq", invFreq, headDim / 2)], shape,
                t => Ops.Rope(t[0], OpCheck.Own(Tensor.FromArray(ctx, pos, posShape)), t[1]),
                x => Reference.Rope(x[0], pos, x[1], tokens, heads, headDim),
                RopeTol, RopeTol, RopeStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Rope_with_odd_head_dim_throws(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using Tensor x = Tensor.FromArray(ctx, Rand.Uniform(new Random(204), 3 * 2 * 5), 3, 2, 5);
        using Tensor pos = Tensor.FromArray(ctx, new[] { 0, 1, 2 }, 3);
        using Tensor invFreq = Tensor.FromArray(ctx, Ops.RopeInverseFrequencies(5, 10000), 2);
        using Tensor y = Tensor.Zeros(ctx, DType.F32, 3, 2, 5);

        // The C# op refuses it ...
        var managed = Assert.Throws<ArgumentException>(() => Ops.Rope(x, pos, invFreq));
        Assert.Contains("head_dim", managed.Message);

        // ... and so does the native entry point on its own.
        var native = Assert.Throws<NvlmException>(() => Native.Check(NativeMethods.nvlm_rope_forward(ctx.Handle,
            y.Buffer, x.Buffer, pos.Buffer, invFreq.Buffer, 3, 2, 5)));
        Assert.Equal(NvlmStatus.InvalidArgument, native.Status);
        Assert.Contains("head_dim", native.Message);
    }
}
