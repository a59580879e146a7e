using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>Gelu, SwiGlu, Residual, BiasAdd, Scale and Sum against the double reference and finite differences.</summary>
public class ElementwiseTests
{
    private const double U = 1.0 / (1 << 24); // fp32 unit roundoff

    // Gelu and SiLU are smooth: h = 1e-6 gives truncation ~1e-13·|∂³L| and cancellation ~1e-10·|L|.
    private const double SmoothStep = 1e-6;

    // Residual, BiasAdd, Scale and Sum are linear: the central difference is exact for any h, and h = 1 keeps
    // the cancellation at ~1e-15.
    private const double LinearStep = 1;

    // A gradient that the kernel forms without rounding (copies, or one add into zero) is compared
    // with finite differences whose only error is double rounding in L = Σ dout·y: ≲ n·1.1e-16·|L|
    // ≤ 2000·1.1e-16·1500 ≈ 3e-10 for the largest case here. Any fp32 rounding of O(1) values
    // (≥ 6e-8) or any wrong gradient is far above 1e-9.
    private static readonly Tol ExactGradient = new(1e-9, 0);

    private static readonly long[][] Shapes = [[1], [17], [3, 5], [2, 3, 7]];

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Gelu_matches_gelu_pytorch_tanh(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(401);
        foreach (long[] shape in Shapes)
        {
            OpCheck.Run(ctx, $"gelu x=[{string.Join(", ", shape)}]",
                [Arg.Random("x", rng, shape, -5, 5)], shape,
                t => Ops.Gelu(t[0]),
                x => Reference.Gelu(x[0]),
                // tanh in fp32 is within a few ulp; 0.5·x·(1 + t) then carries ≲ 0.5·|x|·4U·|1 + t| relative
                // plus, where t ≈ −1 (x ≲ −3), an absolute ≲ 0.5·5·4U ≈ 6e-7: 1e-6 + 1e-5·|want|.
                forward: new Tol(1e-6, 1e-5),
                // d/dx = 0.5(1 + t) + 0.5·x·(1 − t²)·√(2/π)(1 + 3·0.044715x²): terms ≲ 10 with a few
                // roundings each (≲ 10·8U ≈ 5e-6 where 1 − t² cancels), times |dout| < 1.
                backward: new Tol(1e-5, 1e-5),
                SmoothStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void SwiGlu_matches_silu_gate_times_up(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(402);
        foreach (long[] shape in Shapes)
        {
            OpCheck.Run(ctx, $"swiglu shape=[{string.Join(", ", shape)}]",
                [Arg.Random("gate", rng, shape, -5, 5), Arg.Random("up", rng, shape, -2, 2)], shape,
                t => Ops.SwiGlu(t[0], t[1]),
                x => Reference.SwiGlu(x[0], x[1]),
                // exp (≤ 2 ulp), 1 + e, a division and two products: ≲ 6U ≈ 4e-7 relative.
                forward: new Tol(1e-7, 2e-6),
                // dgate = dout·up·σ(g)(1 + g(1 − σ(g))) and dup = dout·silu(g): ≲ 10 roundings of values
                // ≲ 10 (|g| < 5, |up| < 2): ≲ 10·10·U ≈ 6e-6 absolute.
                backward: new Tol(1e-5, 1e-5),
                SmoothStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Bias_add_adds_the_bias_to_every_row_and_sums_its_gradient_over_rows(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(408);
        foreach (long[] shape in Shapes)
        {
            long n = shape[^1];
            OpCheck.Run(ctx, $"bias_add shape=[{string.Join(", ", shape)}]",
                [Arg.Random("x", rng, shape), Arg.Random("bias", rng, [n])], shape,
                t => Ops.BiasAdd(t[0], t[1]),
                x => x[0].Select((v, i) => v + x[1][i % n]).ToArray(),
                // One correctly rounded fp32 add: |fl(x + b) − (x + b)| ≤ U·|x + b|.
                forward: new Tol(0, U),
                // dx = 0 + dout is exact; dbias sums at most 2·3 = 6 rows of |dout| < 1, rounded once to
                // fp32 from a double sum: ≤ U·6 ≈ 3.6e-7, far below 1e-6 and far below a missed row (O(0.1)).
                backward: new Tol(1e-6, 0),
                LinearStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Residual_adds_and_passes_the_gradient_to_both(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(403);
        foreach (long[] shape in Shapes)
        {
            OpCheck.Run(ctx, $"residual shape=[{string.Join(", ", shape)}]",
                [Arg.Random("a", rng, shape), Arg.Random("b", rng, shape)], shape,
                t => Ops.Residual(t[0], t[1]),
                x => Reference.Residual(x[0], x[1]),
                // One correctly rounded fp32 add: |fl(a + b) − (a + b)| ≤ U·|a + b|.
                forward: new Tol(0, U),
                // da = db = 0 + dout: exact.
                backward: ExactGradient,
                LinearStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Residual_of_a_tensor_with_itself_accumulates_both_gradients(string backend)
    {
        // x + x: the backward adds dout into dx twice (da and db are the same buffer): dx = 2·dout.
        using Context ctx = Backends.Open(backend);
        var rng = new Random(404);
        OpCheck.Run(ctx, "residual x + x",
            [Arg.Random("x", rng, [3, 5])], [3, 5],
            t => Ops.Residual(t[0], t[0]),
            x => Reference.Residual(x[0], x[0]),
            // x + x = 2x is exact in binary floating point.
            forward: Tol.Exact,
            backward: ExactGradient,
            LinearStep);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Scale_multiplies_by_alpha(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(405);
        foreach (long[] shape in Shapes)
        {
            foreach (float alpha in new[] { -0.37f, 3f, 1f / 17 })
            {
                OpCheck.Run(ctx, $"scale shape=[{string.Join(", ", shape)}] alpha={alpha}",
                    [Arg.Random("x", rng, shape)], shape,
                    t => Ops.Scale(t[0], alpha),
                    x => Reference.Scale(x[0], alpha),
                    // One correctly rounded fp32 product, forward (alpha·x) and backward (alpha·dout, added to 0).
                    forward: new Tol(0, U),
                    backward: new Tol(1e-9, U),
                    LinearStep);
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Sum_adds_every_element(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(406);
        foreach (long[] shape in new long[][] { [1], [17], [3, 5], [2, 3, 7], [257], [1000, 2] })
        {
            long count = shape.Aggregate(1L, (p, v) => p * v);
            // Long sums take values in [0.5, 1): then every element exceeds the bound below
            // (2000·U·1500 ≈ 0.18), so a dropped or doubled element or chunk cannot hide in it.
            Arg x = count > 100 ? Arg.Random("x", rng, shape, 0.5, 1) : Arg.Random("x", rng, shape);
            // Any fp32 summation order (serial, pairwise, per-thread partials) is within
            // γ_{n−1}·Σ|x| ≤ (n − 1)·U·Σ|x| of the exact sum (Higham, Accuracy and Stability, §4.2),
            // times (1 + 1e-6) for the second-order term.
            double bound = (x.Data.Length - 1) * U * x.Data.Sum(v => Math.Abs((double)v)) * (1 + 1e-6);
            OpCheck.Run(ctx, $"sum x=[{string.Join(", ", shape)}]",
                [x], [1],
                t => Ops.Sum(t[0]),
                xs => Reference.Sum(xs[0]),
                forward: new Tol(bound, 0),
                // dx[i] = 0 + dout[0]: exact.
                backward: ExactGradient,
                LinearStep);
        }
    }
}
