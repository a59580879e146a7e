using NativeVlm.Tensors;
using Xunit;
using Xunit.Sdk;

namespace NativeVlm.Tests;

/// <summary>
/// Checks of the test machinery itself: the double references against hand-computed values and
/// against each other, the finite-difference helper against known derivatives, and the shared
/// harness against ops it must reject. A reference or harness that cannot fail would make every
/// op test meaningless.
/// </summary>
public class ReferenceSelfTests
{
    [Fact]
    public void PixelShuffle_literal_transcription_agrees_with_the_header_closed_form()
    {
        var rng = new Random(701);
        foreach ((int n, int seq, int d, int s) in new[] { (2, 16, 3, 2), (1, 36, 5, 2), (2, 36, 1, 3), (1, 9, 2, 3), (1, 144, 2, 4) })
        {
            double[] x = Rand.Uniform(rng, n * seq * d).ToDouble();
            Assert.Equal(Reference.PixelShuffleClosedForm(x, n, seq, d, s), Reference.PixelShuffle(x, n, seq, d, s));
        }
    }

    [Fact]
    public void PixelShuffle_reference_on_a_4x4_grid_by_hand()
    {
        // One channel, patches numbered 0..15 row-major on a 4×4 grid, scale 2: output token 0 holds
        // the top-left 2×2 block (0, 1, 4, 5), token 1 the top-right (2, 3, 6, 7), and so on.
        double[] x = Enumerable.Range(0, 16).Select(i => (double)i).ToArray();
        Assert.Equal(new double[] { 0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15 }, Reference.PixelShuffle(x, 1, 16, 1, 2));
    }

    [Fact]
    public void Elementwise_references_at_known_values()
    {
        // torch.nn.functional.gelu(torch.tensor([1., -2.], dtype=torch.float64), approximate="tanh")
        double[] gelu = Reference.Gelu([1, -2]);
        Assert.Equal(0.8411919906082768, gelu[0], 1e-15);
        Assert.Equal(-0.04540230591222494, gelu[1], 1e-15);
        // silu(1) = 1 / (1 + e^-1)
        Assert.Equal(0.7310585786300049 * 3, Reference.SwiGlu([1], [3])[0], 1e-15);
        // RMSNorm of [3, 4] (mean square 12.5) with eps 0, w = [1, 2]
        double[] rms = Reference.RmsNorm([3, 4], [1, 2], 1, 2, 0);
        Assert.Equal(3 / Math.Sqrt(12.5), rms[0], 1e-15);
        Assert.Equal(8 / Math.Sqrt(12.5), rms[1], 1e-15);
        // LayerNorm of [1, 3] (mean 2, variance 1) with eps 0: [-1, 1]·w + b
        Assert.Equal(new double[] { -2 + 0.5, 3 - 0.5 }, Reference.LayerNorm([1, 3], [2, 3], [0.5, -0.5], 1, 2, 0));
    }

    [Fact]
    public void Rope_reference_rotates_pairs_i_and_i_plus_half()
    {
        // head_dim 4, inv_freq [1, 0.5], position 2: angles 2 and 1 for the pairs (0, 2) and (1, 3).
        double[] y = Reference.Rope([1, 0, 0, 0, /**/ 0, 1, 0, 0], [2, 2], [1, 0.5], 2, 1, 4);
        Assert.Equal(new[] { Math.Cos(2), 0, Math.Sin(2), 0 }, y[..4]);
        Assert.Equal(new[] { 0, Math.Cos(1), 0, Math.Sin(1) }, y[4..]);
    }

    [Fact]
    public void Attention_reference_small_cases()
    {
        // One visible key: the output is its value, whatever the scores.
        (double[] out1, double[] lse1) = Reference.Attention([0.3, -1], [2, 5], [7, -8], null, 1, 1, 1, 1, 1, 2, false, 0.5);
        Assert.Equal(new double[] { 7, -8 }, out1);
        Assert.Equal(0.5 * (0.3 * 2 - 5), lse1[0], 1e-15);
        // Two keys with equal scores: the mean of the values; masking one leaves the other.
        (double[] out2, _) = Reference.Attention([1], [1, 1], [2, 4], null, 1, 1, 2, 1, 1, 1, false, 1);
        Assert.Equal(new double[] { 3 }, out2);
        (double[] out3, _) = Reference.Attention([1], [1, 1], [2, 4], [0, 1], 1, 1, 2, 1, 1, 1, false, 1);
        Assert.Equal(new double[] { 4 }, out3);
        // Bottom-right causal with tq = 1, tk = 2: the single query sees both keys.
        (double[] out4, _) = Reference.Attention([1], [1, 1], [2, 4], null, 1, 1, 2, 1, 1, 1, true, 1);
        Assert.Equal(new double[] { 3 }, out4);
        // tq = 2, tk = 1, causal: query 0 sees j ≤ −1, nothing: out 0, lse −∞.
        (double[] out5, double[] lse5) = Reference.Attention([1, 1], [1], [2], null, 1, 2, 1, 1, 1, 1, true, 1);
        Assert.Equal(new double[] { 0, 2 }, out5);
        Assert.Equal(double.NegativeInfinity, lse5[0]);
    }

    [Fact]
    public void Bf16_reference_rounding_cases()
    {
        foreach ((uint f32, ushort bf16, string why) in CastAdamWTests.RoundingCases)
        {
            ushort got = Reference.F32ToBf16(BitConverter.UInt32BitsToSingle(f32));
            Assert.True(got == bf16, $"reference 0x{f32:X8} → 0x{got:X4}, want 0x{bf16:X4}: {why}");
        }
        Assert.True(Reference.IsBf16NaN(Reference.F32ToBf16(BitConverter.UInt32BitsToSingle(0x7F800001))));
    }

    [Fact]
    public void Finite_differences_recover_known_derivatives()
    {
        // f(x, y) = [x0², x0·y0, sin(x1)]: with g = [1, 2, 3], ∂L/∂x = [2x0 + 2y0, 3cos(x1)], ∂L/∂y = [2x0].
        double[] x = [0.7, -0.4], y = [1.3];
        double[] F(double[][] v) => [v[0][0] * v[0][0], v[0][0] * v[1][0], Math.Sin(v[0][1])];
        double[] g = [1, 2, 3];
        double[] dx = Reference.FiniteDifferenceGradient(F, [x, y], g, 0, 1e-6);
        double[] dy = Reference.FiniteDifferenceGradient(F, [x, y], g, 1, 1e-6);
        // Truncation ~h²·|f'''|/6 ≈ 1e-13 and cancellation ~1e-16/1e-6 = 1e-10.
        Assert.Equal(2 * 0.7 + 2 * 1.3, dx[0], 1e-9);
        Assert.Equal(3 * Math.Cos(-0.4), dx[1], 1e-9);
        Assert.Equal(2 * 0.7, dy[0], 1e-9);
    }

    [Fact]
    public void Harness_rejects_a_forward_that_is_slightly_off()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        var rng = new Random(702);
        var e = Assert.Throws<XunitException>(() => OpCheck.Run(ctx, "scale vs a reference off by 1e-4 relative",
            [Arg.Random("x", rng, [3, 5])], [3, 5],
            t => Ops.Scale(t[0], 2f),
            x => Reference.Scale(x[0], 2 * (1 + 1e-4)),
            forward: new Tol(1e-6, 1e-6), backward: new Tol(1e-6, 1e-6), fdStep: 1));
        Assert.Contains("forward", e.Message);
        Assert.Contains("want", e.Message);
    }

    [Fact]
    public void Harness_rejects_a_gradient_that_is_wrong()
    {
        // y = 2x − detach(x) equals x, but its gradient is 2·dout, not dout.
        using Context ctx = Context.Create(DeviceKind.Cpu);
        var rng = new Random(703);
        var e = Assert.Throws<XunitException>(() => OpCheck.Run(ctx, "identity with a doubled gradient",
            [Arg.Random("x", rng, [17])], [17],
            t => Ops.Residual(Ops.Scale(t[0], 2f), Ops.Scale(t[0].Detach(), -1f)),
            x => x[0],
            forward: new Tol(1e-6, 1e-6), backward: new Tol(1e-6, 1e-6), fdStep: 1));
        Assert.Contains("backward dx", e.Message);
    }

    [Fact]
    public void Harness_rejects_a_wrong_output_shape()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        var rng = new Random(704);
        var e = Assert.Throws<XunitException>(() => OpCheck.Run(ctx, "reshaped",
            [Arg.Random("x", rng, [3, 5])], [5, 3],
            t => Ops.Scale(t[0], 1f),
            x => x[0],
            forward: Tol.Exact, backward: Tol.Exact, fdStep: 1));
        Assert.Contains("shape", e.Message);
    }
}
