using NativeVlm.Interop;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>Matmul, Linear and Embedding against the double reference and finite differences.</summary>
public class DenseOpTests
{
    // fp32 unit roundoff: every fp32 operation returns the exact result times (1 + δ), |δ| ≤ U.
    private const double U = 1.0 / (1 << 24);

    // The inputs below are uniform in (−1, 1) and every reduction has at most 17 terms, so each
    // fp32 dot product or sum is off from the exact one by at most γ₁₇·Σ|terms| ≤ 17·U·17 ≈ 1.7e-5
    // (Higham's bound, valid for any summation order, blocking or FMA). 2e-5 is that worst case;
    // the typical error is ~√17·U ≈ 3e-7, and a wrong index or transpose is off by O(0.1).
    private static readonly Tol Dot17 = new(2e-5, 0);

    // Each of these ops is linear in every single input element (products are bilinear, and finite
    // differences move one element at a time), so the central difference has no truncation error
    // for any h; h = 1 keeps the cancellation error at ~1e-16·|L| ≈ 1e-15.
    private const double LinearStep = 1;

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Matmul_matches_reference_for_all_transposes_and_batches(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(101);
        foreach (int batch in new[] { 0, 1, 3 }) // 0: rank-2 operands
        {
            foreach ((int m, int n, int k) in new[] { (3, 5, 7), (1, 17, 3), (17, 1, 2), (4, 4, 1) })
            {
                foreach (bool transA in new[] { false, true })
                {
                    foreach (bool transB in new[] { false, true })
                    {
                        long[] aShape = WithBatch(batch, transA ? [k, m] : [m, k]);
                        long[] bShape = WithBatch(batch, transB ? [n, k] : [k, n]);
                        long[] cShape = WithBatch(batch, [m, n]);
                        bool ta = transA, tb = transB;
                        OpCheck.Run(ctx, $"matmul batch={batch} m={m} n={n} k={k} transA={ta} transB={tb}",
                            [Arg.Random("a", rng, aShape), Arg.Random("b", rng, bShape)], cShape,
                            t => Ops.Matmul(t[0], t[1], ta, tb),
                            x => Reference.Matmul(x[0], x[1], Math.Max(batch, 1), m, n, k, ta, tb),
                            forward: Dot17, backward: Dot17, fdStep: LinearStep);
                    }
                }
            }
        }
    }

    private static long[] WithBatch(int batch, long[] shape) => batch == 0 ? shape : [batch, .. shape];

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Matmul_native_applies_alpha_and_beta(string backend)
    {
        // c = alpha · op(a) · op(b) + beta · c, which the C# op only uses with (1, 0) forward and
        // (1, 1) in backward: checked directly through the binding.
        using Context ctx = Backends.Open(backend);
        var rng = new Random(102);
        const int batch = 2, m = 3, n = 5, k = 4;
        const float alpha = 0.5f, beta = -1.5f;
        float[] a = Rand.Uniform(rng, batch * k * m), b = Rand.Uniform(rng, batch * k * n), c0 = Rand.Uniform(rng, batch * m * n);
        using Tensor ta = Tensor.FromArray(ctx, a, batch, k, m); // stored transposed
        using Tensor tb = Tensor.FromArray(ctx, b, batch, k, n);
        using Tensor tc = Tensor.FromArray(ctx, c0, batch, m, n);

        Native.Check(NativeMethods.nvlm_matmul(ctx.Handle, tc.Buffer, ta.Buffer, tb.Buffer, batch, m, n, k, 1, 0, alpha, beta));

        double[] product = Reference.Matmul(a.ToDouble(), b.ToDouble(), batch, m, n, k, transA: true, transB: false);
        double[] want = product.Select((p, i) => alpha * p + beta * c0[i]).ToArray();
        // A 4-term dot product of values < 1, then two scalings and an add of O(1) values:
        // ≤ (4·4 + 3)·U ≈ 1.1e-6; 2e-6 bounds it.
        Compare.AllClose($"matmul alpha={alpha} beta={beta} on {ctx}", tc.ToFloatArray(), want, [batch, m, n], new Tol(2e-6, 0));
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Linear_matches_reference_with_and_without_bias(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(103);
        // (leading shape of x, k, n, bias)
        foreach ((long[] lead, int k, int n, bool withBias) in new (long[], int, int, bool)[]
                 {
                     ([2, 3], 5, 7, true), ([2, 3], 5, 7, false), ([1], 17, 1, true), ([4], 3, 17, false), ([17], 1, 3, true),
                 })
        {
            int m = (int)lead.Aggregate(1L, (p, v) => p * v);
            var inputs = new List<Arg> { Arg.Random("x", rng, [.. lead, k]), Arg.Random("w", rng, [n, k]) };
            if (withBias)
            {
                inputs.Add(Arg.Random("bias", rng, [n]));
            }
            OpCheck.Run(ctx, $"linear x=[{string.Join(", ", lead)}, {k}] n={n} bias={withBias}",
                [.. inputs], [.. lead, n],
                t => withBias ? Ops.Linear(t[0], t[1], t[2]) : Ops.Linear(t[0], t[1]),
                x => Reference.Linear(x[0], x[1], withBias ? x[2] : null, m, k, n),
                // Dot products of ≤ 17 terms < 1 plus one bias add: see Dot17.
                forward: Dot17, backward: Dot17, fdStep: LinearStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Embedding_gathers_rows_and_scatter_adds_repeated_ids(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(104);
        foreach ((int vocab, int d, int[] ids, long[] idShape) in new (int, int, int[], long[])[]
                 {
                     (7, 3, [3, 0, 3, 6, 3, 1, 0, 6, 2, 3], [2, 5]), // id 3 four times, 0 and 6 twice, 4 and 5 never
                     (1, 17, [0, 0, 0], [3]),
                     (5, 1, [4, 2, 4, 0, 1, 2, 4], [7]),
                     (17, 4, [16], [1]),
                 })
        {
            OpCheck.Run(ctx, $"embedding vocab={vocab} d={d} ids=[{string.Join(", ", ids)}]",
                [Arg.Random("table", rng, [vocab, d])], [.. idShape, d],
                t => Ops.Embedding(t[0], OpCheck.Own(Tensor.FromArray(ctx, ids, idShape))),
                x => Reference.Embedding(x[0], ids, vocab, d),
                // The forward copies rows: bit-exact.
                forward: Tol.Exact,
                // The backward sums ≤ 4 gradient rows of values < 1 per table row: ≤ 4·U·4 ≈ 1e-6.
                backward: new Tol(1e-6, 0),
                fdStep: LinearStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Embedding_id_out_of_range_throws_naming_its_position(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using Tensor table = Tensor.FromArray(ctx, Rand.Uniform(new Random(105), 7 * 3), 7, 3);
        // One bad id among 40, at positions whose numbers appear nowhere else in the call.
        foreach ((int position, int badId) in new[] { (37, 7), (29, -3), (13, 1000) })
        {
            int[] ids = Enumerable.Range(0, 40).Select(i => i % 7).ToArray();
            ids[position] = badId;
            using Tensor idTensor = Tensor.FromArray(ctx, ids, 40);

            var e = Assert.Throws<NvlmException>(() =>
            {
                using Tensor y = Ops.Embedding(table, idTensor);
                ctx.Synchronize();
            });

            Assert.Equal(NvlmStatus.InvalidArgument, e.Status);
            Assert.True(e.Message.Contains(position.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal),
                $"the message should name position {position} of id {badId}: \"{e.Message}\"");
        }
    }
}
