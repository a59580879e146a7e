using NativeVlm.Autograd;
using NativeVlm.Interop;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// Cast (f32 ↔ bf16) bit patterns and gradient, AdamWStep against torch's formula, the multi-tensor
/// step against it, and the trainer's optimiser (Training.AdamW) built on the multi-tensor step.
/// </summary>
public class CastAdamWTests
{
    /// <summary>(f32 bits, expected bf16 bits, what it checks) — expected values worked out by hand.</summary>
    public static readonly (uint F32, ushort Bf16, string Why)[] RoundingCases =
    [
        (0x3F800000, 0x3F80, "1.0 is exact"),
        (0x3F808000, 0x3F80, "tie between 0x3F80 and 0x3F81 goes to the even 0x3F80 (down)"),
        (0x3F818000, 0x3F82, "tie between 0x3F81 and 0x3F82 goes to the even 0x3F82 (up)"),
        (0x3F808001, 0x3F81, "just above the tie rounds up"),
        (0x3F807FFF, 0x3F80, "just below the tie rounds down"),
        (0xBF808000, 0xBF80, "negative tie to even (down in magnitude)"),
        (0xBF818000, 0xBF82, "negative tie to even (up in magnitude)"),
        (0xBF80C000, 0xBF81, "negative, above the tie"),
        (0x3FFFFFFF, 0x4000, "1.99999988 rounds up into the next exponent: 2.0"),
        (0x3FFF8000, 0x4000, "tie with odd 0x3FFF rounds up into the next exponent"),
        (0xC07FC000, 0xC080, "−3.99… rounds up in magnitude into −4.0"),
        (0x7F7FFFFF, 0x7F80, "FLT_MAX rounds to +Inf"),
        (0x7F7F7FFF, 0x7F7F, "just below the overflow tie stays the largest bf16"),
        (0xFF7FFFFF, 0xFF80, "−FLT_MAX rounds to −Inf"),
        (0x7F800000, 0x7F80, "+Inf"),
        (0xFF800000, 0xFF80, "−Inf"),
        (0x00000000, 0x0000, "+0"),
        (0x80000000, 0x8000, "−0"),
        (0x00000001, 0x0000, "smallest subnormal rounds to 0"),
        (0x00008000, 0x0000, "subnormal tie to even 0"),
        (0x00018000, 0x0002, "subnormal tie to even 0x0002"),
        (0x007FFFFF, 0x0080, "largest subnormal rounds up to the smallest normal"),
        (0x40490FDB, 0x4049, "π"),
        (0xC2F6E979, 0xC2F7, "−123.456"),
    ];

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Cast_f32_to_bf16_rounds_to_nearest_even(string backend)
    {
        using Context ctx = Backends.Open(backend);
        float[] values = RoundingCases.Select(c => BitConverter.UInt32BitsToSingle(c.F32)).ToArray();
        using Tensor x = Tensor.FromArray(ctx, values, values.Length);
        using Tensor y = Ops.Cast(x, DType.BF16);

        Assert.Equal(DType.BF16, y.DType);
        ushort[] got = y.ToBf16Bits();
        var wrong = RoundingCases.Select((c, i) => (c, got: got[i]))
            .Where(p => p.got != p.c.Bf16)
            .Select(p => $"0x{p.c.F32:X8} ({BitConverter.UInt32BitsToSingle(p.c.F32):R}) → got 0x{p.got:X4}, want 0x{p.c.Bf16:X4}: {p.c.Why}")
            .ToList();
        Assert.True(wrong.Count == 0, $"cast f32→bf16 on {ctx}:\n" + string.Join("\n", wrong));
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Cast_f32_to_bf16_keeps_nan_a_quiet_nan(string backend)
    {
        using Context ctx = Backends.Open(backend);
        // Quiet, signalling (a naive +0x7FFF rounding turns 0x7F800001 into Inf), all-ones payload
        // (naive rounding carries into the sign bit) and negative NaNs.
        uint[] nans = [0x7FC00000, 0x7F800001, 0x7FFFFFFF, 0xFFC00000, 0xFF800001, 0x7FBFFFFF, 0x7F808000];
        float[] values = nans.Select(BitConverter.UInt32BitsToSingle).ToArray();
        using Tensor x = Tensor.FromArray(ctx, values, values.Length);
        using Tensor y = Ops.Cast(x, DType.BF16);

        ushort[] got = y.ToBf16Bits();
        for (int i = 0; i < nans.Length; i++)
        {
            Assert.True(Reference.IsBf16NaN(got[i]) && (got[i] & 0x0040) != 0,
                $"cast f32→bf16 on {ctx}: NaN 0x{nans[i]:X8} became 0x{got[i]:X4}, not a quiet NaN");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Cast_f32_to_bf16_matches_reference_on_random_bit_patterns(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(601);
        // Random 32-bit patterns cover every exponent (subnormals, Inf, NaN included), plus values
        // with the low half forced to the tie 0x8000 and its neighbours.
        uint[] bits = Enumerable.Range(0, 1 << 17).Select(i =>
        {
            uint b = (uint)rng.NextInt64(0, 1L << 32);
            return (i % 4) switch { 0 => b, 1 => (b & 0xFFFF0000) | 0x8000, 2 => (b & 0xFFFF0000) | 0x7FFF, _ => (b & 0xFFFF0000) | 0x8001 };
        }).ToArray();
        float[] values = bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
        using Tensor x = Tensor.FromArray(ctx, values, values.Length);
        using Tensor y = Ops.Cast(x, DType.BF16);

        ushort[] got = y.ToBf16Bits();
        var wrong = new List<string>();
        for (int i = 0; i < bits.Length && wrong.Count < 10; i++)
        {
            ushort want = Reference.F32ToBf16(values[i]);
            bool ok = Reference.IsBf16NaN(want) ? Reference.IsBf16NaN(got[i]) && (got[i] & 0x0040) != 0 : got[i] == want;
            if (!ok)
            {
                wrong.Add($"[{i}] 0x{bits[i]:X8} ({values[i]:R}) → got 0x{got[i]:X4}, want 0x{want:X4}");
            }
        }
        Assert.True(wrong.Count == 0, $"cast f32→bf16 on {ctx}:\n" + string.Join("\n", wrong));
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Cast_bf16_to_f32_is_exact_for_every_bit_pattern(string backend)
    {
        using Context ctx = Backends.Open(backend);
        ushort[] all = Enumerable.Range(0, 1 << 16).Select(i => (ushort)i).ToArray();
        using Tensor x = Tensor.FromBf16Bits(ctx, all, all.Length);
        using Tensor y = Ops.Cast(x, DType.F32);

        float[] got = y.ToFloatArray();
        var wrong = new List<string>();
        for (int i = 0; i < all.Length && wrong.Count < 10; i++)
        {
            uint gotBits = BitConverter.SingleToUInt32Bits(got[i]), wantBits = (uint)all[i] << 16;
            bool ok = Reference.IsBf16NaN(all[i]) ? float.IsNaN(got[i]) : gotBits == wantBits;
            if (!ok)
            {
                wrong.Add($"bf16 0x{all[i]:X4} → got 0x{gotBits:X8}, want 0x{wantBits:X8}");
            }
        }
        Assert.True(wrong.Count == 0, $"cast bf16→f32 on {ctx}:\n" + string.Join("\n", wrong));
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Cast_identity_copies_bits(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(602);
        ushort[] bf16 = Enumerable.Range(0, 33).Select(_ => (ushort)rng.Next(0, 1 << 16)).ToArray();
        float[] f32 = Rand.Uniform(rng, 33);
        using Tensor xb = Tensor.FromBf16Bits(ctx, bf16, 3, 11), xf = Tensor.FromArray(ctx, f32, 3, 11);
        using Tensor yb = Ops.Cast(xb, DType.BF16), yf = Ops.Cast(xf, DType.F32);

        Assert.Equal(bf16, yb.ToBf16Bits());
        Assert.Equal(f32, yf.ToFloatArray());
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Cast_is_differentiable_from_f32(string backend)
    {
        // The rounding has zero derivative almost everywhere, so the gradient is defined as torch's
        // x.to(dtype) backward: the incoming gradient, cast back to f32 (straight through). It is
        // checked exactly rather than by finite differences.
        using Context ctx = Backends.Open(backend);
        var rng = new Random(603);
        float[] values = Rand.Uniform(rng, 3 * 17, -3, 3);
        float[] gradOutput = Rand.Uniform(rng, 3 * 17);
        using Tensor x = Tensor.FromArray(ctx, values, 3, 17);
        x.RequiresGrad = true;

        foreach (DType target in new[] { DType.BF16, DType.F32 })
        {
            using (var tape = new Tape())
            {
                Tensor y = Ops.Cast(x, target);
                Assert.True(y.RequiresGrad, $"cast f32→{target} of a leaf that requires grad must record a backward");
                if (target == DType.BF16)
                {
                    Assert.Equal(values.Select(Reference.F32ToBf16).ToArray(), y.ToBf16Bits());
                }
                else
                {
                    Assert.Equal(values, y.ToFloatArray());
                }
                Tensor g = tape.Own(Tensor.FromArray(ctx, gradOutput, 3, 17)); // gradients are f32
                tape.Backward(y, g);
            }

            Assert.NotNull(x.Grad);
            Assert.Equal(DType.F32, x.Grad!.DType);
            Compare.AllClose($"cast f32→{target} backward on {ctx}", x.Grad.ToFloatArray(), gradOutput.ToDouble(), [3, 17], Tol.Exact);
            x.Grad.Dispose();
            x.Grad = null;
        }
        x.Dispose();
    }

    // ---- AdamW ---------------------------------------------------------------------------------

    /// <summary>Hyper-parameters of one AdamW run and the step numbers it takes.</summary>
    public sealed record AdamWCase(int N, float Lr, float Beta1, float Beta2, float Eps, float WeightDecay, long[] Steps);

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void AdamWStep_matches_torch_adamw_over_several_steps(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(604);
        AdamWCase[] cases =
        [
            new(17, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, [1, 2, 3, 4, 5, 6]),
            new(1, 1e-3f, 0.8f, 0.95f, 1e-6f, 0f, [1, 2, 3]),
            new(33, 3e-3f, 0.9f, 0.98f, 1e-8f, 0.01f, [1000, 1001, 1002]), // bias corrections near 1
        ];
        foreach (AdamWCase c in cases)
        {
            float[] p = Rand.Uniform(rng, c.N);
            float[] m = c.Steps[0] == 1 ? new float[c.N] : Rand.Uniform(rng, c.N, -0.1, 0.1);
            float[] v = c.Steps[0] == 1 ? new float[c.N] : Rand.Uniform(rng, c.N, 0.01, 0.3);
            using Tensor tp = Tensor.FromArray(ctx, p, c.N), tm = Tensor.FromArray(ctx, m, c.N), tv = Tensor.FromArray(ctx, v, c.N);
            foreach (long step in c.Steps)
            {
                float[] grad = Rand.Uniform(rng, c.N);
                using Tensor tg = Tensor.FromArray(ctx, grad, c.N);

                // Reference from the kernel's state before this step, so each comparison is of one step.
                double[] wantP = tp.ToFloatArray().ToDouble(), wantM = tm.ToFloatArray().ToDouble(), wantV = tv.ToFloatArray().ToDouble();
                Reference.AdamWStep(wantP, grad.ToDouble(), wantM, wantV, c.Lr, c.Beta1, c.Beta2, c.Eps, c.WeightDecay, step);
                Ops.AdamWStep(tp, tg, tm, tv, c.Lr, c.Beta1, c.Beta2, c.Eps, c.WeightDecay, step);

                string label = $"adamw n={c.N} lr={c.Lr} betas=({c.Beta1}, {c.Beta2}) eps={c.Eps} wd={c.WeightDecay} step={step} on {ctx}";
                // m and v: two products and an add of O(1) values (|g| < 1): ≲ 3U ≈ 2e-7 relative.
                Compare.AllClose($"{label}: m", tm.ToFloatArray(), wantM, [c.N], new Tol(1e-7, 1e-6));
                Compare.AllClose($"{label}: v", tv.ToFloatArray(), wantV, [c.N], new Tol(1e-7, 1e-6));
                // param: p·(1 − lr·wd) rounds at ≲ 2U·|p|; the update lr/bc1 · m/(√v/√bc2 + eps) is
                // ≲ lr·3 with ≲ 10U relative error — plus, if the bias corrections are formed in fp32,
                // 1 − β2^step at step 2 carries up to U/(1 − β2²) ≈ 3e-5 relative, halved by the root:
                // ≲ 2U + lr·3·1.5e-5 ≤ 6e-7 for lr ≤ 1e-2.
                Compare.AllClose($"{label}: param", tp.ToFloatArray(), wantP, [c.N], new Tol(1e-6, 1e-6));
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void AdamWMultiTensorStep_is_bit_identical_to_one_AdamWStep_per_tensor(string backend)
    {
        // Both run the same per-element arithmetic (the CPU twin loops the single-tensor step, the CUDA
        // kernels share one device function), so every bit must agree. The sizes take in an empty tensor,
        // single elements and more than one 16384-element chunk of the CUDA kernel.
        using Context ctx = Backends.Open(backend);
        var rng = new Random(605);
        int[] sizes = [4608, 1, 0, 7, 16385, 129, 3];
        var looped = new List<(Tensor P, Tensor M, Tensor V)>();
        var multi = new List<(Tensor P, Tensor M, Tensor V)>();
        try
        {
            foreach (int n in sizes)
            {
                float[] p = Rand.Uniform(rng, n), m = Rand.Uniform(rng, n, -0.1, 0.1), v = Rand.Uniform(rng, n, 0.01, 0.3);
                looped.Add((Tensor.FromArray(ctx, p, n), Tensor.FromArray(ctx, m, n), Tensor.FromArray(ctx, v, n)));
                multi.Add((Tensor.FromArray(ctx, p, n), Tensor.FromArray(ctx, m, n), Tensor.FromArray(ctx, v, n)));
            }
            foreach (long step in new long[] { 1, 2, 3 })
            {
                Tensor[] grads = sizes.Select(n => Tensor.FromArray(ctx, Rand.Uniform(rng, n), n)).ToArray();
                for (int t = 0; t < sizes.Length; t++)
                {
                    Ops.AdamWStep(looped[t].P, grads[t], looped[t].M, looped[t].V, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
                }
                Ops.AdamWMultiTensorStep(multi.Select(x => x.P).ToArray(), grads, multi.Select(x => x.M).ToArray(),
                    multi.Select(x => x.V).ToArray(), 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
                foreach (Tensor g in grads)
                {
                    g.Dispose();
                }
                for (int t = 0; t < sizes.Length; t++)
                {
                    string label = $"tensor {t} (n={sizes[t]}) after step {step} on {ctx}";
                    Assert.True(looped[t].P.ToFloatArray().SequenceEqual(multi[t].P.ToFloatArray()), $"{label}: param differs");
                    Assert.True(looped[t].M.ToFloatArray().SequenceEqual(multi[t].M.ToFloatArray()), $"{label}: m differs");
                    Assert.True(looped[t].V.ToFloatArray().SequenceEqual(multi[t].V.ToFloatArray()), $"{label}: v differs");
                }
            }
        }
        finally
        {
            foreach ((Tensor P, Tensor M, Tensor V) x in looped.Concat(multi))
            {
                x.P.Dispose();
                x.M.Dispose();
                x.V.Dispose();
            }
        }
    }

    [Fact]
    public void AdamWMultiTensorStep_rejects_a_tensor_written_twice()
    {
        // The CUDA kernel updates every tensor at once, so a buffer named twice would race: the native
        // check names both slots.
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor p = Tensor.Zeros(ctx, DType.F32, 4), g = Tensor.Zeros(ctx, DType.F32, 4);
        using Tensor m0 = Tensor.Zeros(ctx, DType.F32, 4), v0 = Tensor.Zeros(ctx, DType.F32, 4);
        using Tensor m1 = Tensor.Zeros(ctx, DType.F32, 4), v1 = Tensor.Zeros(ctx, DType.F32, 4);
        var e = Assert.Throws<NvlmException>(() =>
            Ops.AdamWMultiTensorStep([p, p], [g, g], [m0, m1], [v0, v1], 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1));
        Assert.Contains("params[0] and params[1] are the same buffer", e.Message);
    }

    [Fact]
    public void Training_AdamW_skips_a_parameter_without_gradient_and_steps_each_by_its_own_count()
    {
        // Parameter 1 gets no gradient at the second update, so at the third its count is 2 while the
        // others' is 3: the optimiser then makes one multi-tensor call per count. Each parameter must end
        // bit for bit as one AdamWStep per update it took, with its own step numbers.
        using Context ctx = Context.Create(DeviceKind.Cpu);
        var rng = new Random(606);
        int[] sizes = [5, 3, 8];
        float[][] initial = sizes.Select(n => Rand.Uniform(rng, n)).ToArray();
        float[][][] grads = Enumerable.Range(0, 3).Select(_ => sizes.Select(n => Rand.Uniform(rng, n)).ToArray()).ToArray();
        bool HasGrad(int update, int t) => !(update == 1 && t == 1);

        Tensor[] parameters = initial.Select((p, t) => Tensor.FromArray(ctx, p, sizes[t])).ToArray();
        Tensor[] expected = initial.Select((p, t) => Tensor.FromArray(ctx, p, sizes[t])).ToArray();
        Tensor[] m = sizes.Select(n => Tensor.Zeros(ctx, DType.F32, n)).ToArray(), v = sizes.Select(n => Tensor.Zeros(ctx, DType.F32, n)).ToArray();
        try
        {
            using var optimizer = new NativeVlm.Training.AdamW(parameters) { WeightDecay = 0.1f };
            var steps = new long[sizes.Length];
            for (int update = 0; update < 3; update++)
            {
                for (int t = 0; t < sizes.Length; t++)
                {
                    if (!HasGrad(update, t))
                    {
                        continue;
                    }
                    parameters[t].Grad = Tensor.FromArray(ctx, grads[update][t], sizes[t]);
                    using Tensor g = Tensor.FromArray(ctx, grads[update][t], sizes[t]);
                    Ops.AdamWStep(expected[t], g, m[t], v[t], 1e-2f, optimizer.Beta1, optimizer.Beta2, optimizer.Epsilon,
                        optimizer.WeightDecay, ++steps[t]);
                }
                optimizer.Update(1e-2f);
                optimizer.ZeroGrad();
            }
            for (int t = 0; t < sizes.Length; t++)
            {
                (Tensor expAvg, Tensor expAvgSq, long step) = optimizer.State(t);
                Assert.Equal(steps[t], step);
                Assert.True(expected[t].ToFloatArray().SequenceEqual(parameters[t].ToFloatArray()), $"parameter {t} differs");
                Assert.True(m[t].ToFloatArray().SequenceEqual(expAvg.ToFloatArray()), $"exp_avg {t} differs");
                Assert.True(v[t].ToFloatArray().SequenceEqual(expAvgSq.ToFloatArray()), $"exp_avg_sq {t} differs");
            }
            Assert.Equal([3L, 2L, 3L], steps);
        }
        finally
        {
            foreach (Tensor t in parameters.Concat(expected).Concat(m).Concat(v))
            {
                t.Dispose();
            }
        }
    }
}
