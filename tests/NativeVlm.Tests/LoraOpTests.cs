using NativeVlm.Autograd;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// The fused LoRA / DoRA op (Ops.Lora, nvlm_lora_*) against a double reference and finite
/// differences: LoRA (no column scale), DoRA with a separate base term, and DoRA with the base
/// output as its own base term (one tensor passed twice, as the adapter does without dropout or bias).
/// Also DoRA's weight norm (Ops.DoraNorm, nvlm_dora_norm*) on a dense and an NF4 weight.
/// </summary>
public class LoraOpTests
{
    // y is linear in each input element on its own (x, a, b, c, the bases each appear once in every
    // product; the aliased base appears in two terms that are each linear in it), so the central
    // difference with h = 1 is exact up to ~1e-16·|L| of cancellation.
    private const double LinearStep = 1;

    private const float Scaling = 0.75f;

    // Inputs: x, bases in (−1, 1), a, b in (−0.5, 0.5), c in (0.5, 1.5), k ≤ 9, r ≤ 8, n ≤ 7, m ≤ 6, so
    // |down_p| < 4.5 and Σ_p |down_p·b_jp| < 18. Forward, with u = 2^-24 and the standard bound
    // (a K-term fp32 sum is off by ≤ K·u·Σ|terms|): down is off by ≤ 9u·4.5, which b carries into up as
    // ≤ 8·0.5·40.5u = 162u, up's own sum adds ≤ 8u·18 = 144u, c·s ≤ 1.125 scales that to 344u, and the
    // last product and two adds ≤ 4u·(1 + 0.5 + 1.125·18) = 87u: ≤ 431u ≈ 2.6e-5 in all.
    private static readonly Tol Forward = new(3e-5, 0);

    // Backward, the same bound: the largest is dcol_scale = Σ_rows dout·(base + s·up), ≤ 6 rows of
    // ≤ 1 + 0.75·18 = 14.5, whose up carries 306u·0.75 per row (1377u over 6 rows) and whose own sum
    // adds ≤ 8u·87 = 696u: ≤ 2073u ≈ 1.24e-4. dx, da and db stay below 520u ≈ 3.1e-5. A wrong index,
    // scale or missing term is off by O(0.1).
    private static readonly Tol Backward = new(1.5e-4, 0);

    private static readonly (int M0, int M1, int K, int N, int R)[] Shapes =
    [
        (2, 3, 5, 7, 1), // r = 1, leading dims [2, 3]
        (1, 4, 9, 3, 8),
        (3, 2, 6, 5, 3),
    ];

    /// <summary>
    /// y (m, n) = baseOut + (c − 1)·baseDora + c·scaling·(x·aᵀ)·bᵀ in double; c null = 1, baseDora null = 0.
    /// </summary>
    private static double[] Reference(double[] baseOut, double[]? baseDora, double[] x, double[] a, double[] b,
        double[]? c, int m, int k, int n, int r)
    {
        var y = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            var down = new double[r];
            for (int p = 0; p < r; p++)
            {
                for (int l = 0; l < k; l++)
                {
                    down[p] += x[i * k + l] * a[p * k + l];
                }
            }
            for (int j = 0; j < n; j++)
            {
                double up = 0;
                for (int p = 0; p < r; p++)
                {
                    up += down[p] * b[j * r + p];
                }
                double scale = c?[j] ?? 1;
                y[i * n + j] = baseOut[i * n + j] + (scale - 1) * (baseDora?[i * n + j] ?? 0) + scale * Scaling * up;
            }
        }
        return y;
    }

    private static string Label(string kind, (int M0, int M1, int K, int N, int R) s) =>
        $"lora {kind} x=[{s.M0}, {s.M1}, {s.K}] n={s.N} r={s.R}";

    /// <summary>Where the op's DoRA base term comes from: none (LoRA), an input of its own, or baseOut passed twice.</summary>
    private enum BaseTerm { None, Separate, BaseOutput }

    /// <summary>
    /// Checks Ops.Lora on every shape against <see cref="Reference"/>. The inputs are drawn from
    /// <paramref name="seed"/> in the op's argument order: baseOut, baseDora (separate base term only),
    /// x, a, b, then c for DoRA.
    /// </summary>
    private static void CheckAllShapes(string backend, int seed, string kind, BaseTerm baseTerm)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(seed);
        bool dora = baseTerm != BaseTerm.None;
        int xIndex = baseTerm == BaseTerm.Separate ? 2 : 1;
        T? DoraBase<T>(T[] inputs) where T : class => baseTerm switch
        {
            BaseTerm.Separate => inputs[1],
            BaseTerm.BaseOutput => inputs[0],
            _ => null,
        };
        foreach (var s in Shapes)
        {
            int m = s.M0 * s.M1;
            var inputs = new List<Arg> { Arg.Random("baseOut", rng, [s.M0, s.M1, s.N]) };
            if (baseTerm == BaseTerm.Separate)
            {
                inputs.Add(Arg.Random("baseDora", rng, [s.M0, s.M1, s.N]));
            }
            inputs.Add(Arg.Random("x", rng, [s.M0, s.M1, s.K]));
            inputs.Add(Arg.Random("a", rng, [s.R, s.K], -0.5, 0.5));
            inputs.Add(Arg.Random("b", rng, [s.N, s.R], -0.5, 0.5));
            if (dora)
            {
                inputs.Add(Arg.Random("c", rng, [s.N], 0.5, 1.5));
            }
            OpCheck.Run(ctx, Label(kind, s), [.. inputs], [s.M0, s.M1, s.N],
                t => Ops.Lora(t[0], DoraBase(t), t[xIndex], t[xIndex + 1], t[xIndex + 2], dora ? t[xIndex + 3] : null, Scaling),
                v => Reference(v[0], DoraBase(v), v[xIndex], v[xIndex + 1], v[xIndex + 2], dora ? v[xIndex + 3] : null, m, s.K, s.N, s.R),
                Forward, Backward, LinearStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Lora_without_column_scale_adds_the_scaled_low_rank_path(string backend) =>
        CheckAllShapes(backend, seed: 301, "LoRA", BaseTerm.None);

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Dora_scales_columns_and_corrects_the_base(string backend) =>
        CheckAllShapes(backend, seed: 302, "DoRA", BaseTerm.Separate);

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Dora_with_the_base_output_as_its_own_base_term_gets_both_gradients(string backend) =>
        CheckAllShapes(backend, seed: 303, "DoRA aliased base", BaseTerm.BaseOutput);

    // ---- DoRA's weight norm (Ops.DoraNorm, nvlm_dora_norm*) ---------------------------------------

    /// <summary>(n, k, r): r = 1; 72 weights, so two NF4 blocks of 64, the second starting inside row 7; r above k.</summary>
    private static readonly (int N, int K, int R)[] NormShapes = [(7, 9, 1), (8, 9, 8), (5, 3, 4)];

    /// <summary>
    /// ‖w + s·b·a‖ per row against double precision, with w dense or NF4 (the reference then uses the
    /// dequantised weight, which both paths read exactly), and the reciprocal as the correctly rounded
    /// 1 / norm of the op's own norm on both backends.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void DoraNorm_is_the_row_norm_of_w_plus_scaled_ba_dense_and_nf4(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(304);
        foreach ((int n, int k, int r) in NormShapes)
        {
            foreach (bool nf4 in new[] { false, true })
            {
                using var scope = new TensorScope();
                float[] w = Rand.Uniform(rng, n * k), a = Rand.Uniform(rng, r * k, -0.5, 0.5), b = Rand.Uniform(rng, n * r, -0.5, 0.5);
                Tensor wt = scope.Own(Tensor.FromArray(ctx, w, n, k));
                Tensor at = scope.Own(Tensor.FromArray(ctx, a, r, k)), bt = scope.Own(Tensor.FromArray(ctx, b, n, r));
                Tensor norm, inverse;
                if (nf4)
                {
                    using Quantization.Nf4Weight q = Quantization.Nf4Weight.Quantize(wt);
                    w = q.Dequantize().ToFloatArray();
                    (norm, Tensor? inv) = Ops.DoraNorm(q, at, bt, Scaling, withInverse: true);
                    inverse = inv!;
                }
                else
                {
                    (norm, Tensor? inv) = Ops.DoraNorm(wt, at, bt, Scaling, withInverse: true);
                    inverse = inv!;
                }
                float[] got = norm.ToFloatArray(), gotInverse = inverse.ToFloatArray();
                string label = $"dora_norm{(nf4 ? " nf4" : "")} n={n} k={k} r={r} on {ctx}";
                for (int j = 0; j < n; j++)
                {
                    double squares = 0, boundSquares = 0;
                    for (int l = 0; l < k; l++)
                    {
                        double delta = 0, deltaAbs = 0;
                        for (int p = 0; p < r; p++)
                        {
                            delta += (double)b[j * r + p] * a[p * k + l];
                            deltaAbs += Math.Abs((double)b[j * r + p] * a[p * k + l]);
                        }
                        double c = w[j * k + l] + Scaling * delta, t = Math.Abs(w[j * k + l]) + Scaling * deltaAbs;
                        squares += c * c;
                        boundSquares += t * t;
                    }
                    double want = Math.Sqrt(squares);
                    // fp32 with u = 2^-24: each c_l = w + s·Σ_p b·a is within (r+3)u·T_l (T_l = |w| + s·Σ|b·a|),
                    // so the k squares and their sum are within (3(r+3) + k + 2)u·ΣT², which the root turns
                    // into that over the norm, plus its own rounding (2u·norm with second-order terms).
                    double tol = (3 * (r + 3) + k + 2) * Math.Pow(2, -24) * boundSquares / want + 2 * Math.Pow(2, -24) * want;
                    Assert.True(Math.Abs(got[j] - want) <= tol, $"{label}: norm[{j}] = {got[j]:R}, want {want:R} ± {tol:E2}");
                    Assert.True(1f / got[j] == gotInverse[j], $"{label}: inv_norm[{j}] = {gotInverse[j]:R}, not 1 / {got[j]:R}");
                }
            }
        }
    }
}
