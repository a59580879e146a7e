using NativeVlm.Interop;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using Xunit;
using Xunit.Sdk;

namespace NativeVlm.Tests;

/// <summary>
/// NF4 on shapes the fixture does not have: quantisation against an argmin reference of bitsandbytes'
/// PyTorch backend, Nf4Linear against the double reference and finite differences, sizes and errors.
/// </summary>
public class Nf4Tests
{
    // fp32 unit roundoff: every fp32 operation returns the exact result times (1 + δ), |δ| ≤ U.
    internal const double U = 1.0 / (1 << 24);

    // A sum of t products, each smaller than maxTerm in magnitude, is within γ_t·t·maxTerm of the exact
    // sum in any order, blocking or FMA (Higham; γ_t = tU/(1 − tU) ≤ 1.01·tU for t ≤ 10⁵). A misread code
    // or a misplaced tile is off by O(0.01) and more.
    private static Tol Dot(int terms, double maxTerm) => new(1.01 * terms * terms * U * maxTerm, 0);

    // Nf4Linear is linear in x, so the central difference has no truncation error for any h; h = 1
    // leaves only cancellation, ~1e-16·|L|.
    private const double LinearStep = 1;

    // (rows, columns, what the shape exercises), with the weight's values made by Weight().
    public static IEnumerable<(int Rows, int Columns, string Kind)> QuantizeCases() =>
    [
        (3, 5, "odd count: the last byte's low nibble is padding"),
        (7, 9, "fewer weights than one block"),
        (130, 64, "whole blocks, one nested block of 130"),
        (300, 257, "1205 blocks: five nested blocks, the last partial"),
        (6, 50, "a zero block"),
        (4, 32, "all zeros"),
        (20, 40, "outliers"),
    ];

    private static float[] Weight(Random rng, int rows, int columns, string kind)
    {
        float[] w = Rand.Uniform(rng, rows * columns);
        switch (kind)
        {
            case "a zero block":
                Array.Clear(w, 2 * Nf4Weight.BlockSize, Nf4Weight.BlockSize);
                break;
            case "all zeros":
                Array.Clear(w);
                break;
            case "outliers":
                for (int i = 0; i < w.Length; i += 37)
                {
                    w[i] *= 100;
                }
                break;
        }
        return w;
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Quantize_matches_bitsandbytes_argmin_definition_for_any_shape(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(701);
        foreach ((int rows, int columns, string kind) in QuantizeCases())
        {
            string at = $"nf4 [{rows}, {columns}] ({kind}) on {ctx}";
            float[] w = Weight(rng, rows, columns, kind);
            using Tensor weight = Tensor.FromArray(ctx, w, rows, columns);
            using Nf4Weight q = Nf4Weight.Quantize(weight);
            int blocks = (w.Length + Nf4Weight.BlockSize - 1) / Nf4Weight.BlockSize;
            using Tensor absmax = Tensor.Zeros(ctx, DType.F32, blocks);
            Native.Check(NativeMethods.nvlm_nf4_quantize(ctx.Handle, q.Packed.Buffer, q.AbsmaxQuantized.Buffer,
                q.NestedAbsmax.Buffer, q.Offset.Buffer, q.AbsmaxCode.Buffer, absmax.Buffer, weight.Buffer, rows, columns));

            // The offset is torch's float32 mean, whose order of additions the reference does not copy: a
            // sum of `blocks` non-negative values in float32 is within γ_blocks of the exact sum, and the
            // division adds one rounding, so the relative error is below 1.01·(blocks + 1)·U.
            float offset = q.Offset.ToFloatArray()[0];
            double mean = absmax.ToFloatArray().Select(v => (double)v).Average();
            Compare.AllClose($"{at}: offset vs the exact mean", [offset], [mean], [1], new Tol(0, 1.01 * (blocks + 1) * U));

            // Everything else follows from the weight and the offset bit for bit.
            float[] absmaxCode = q.AbsmaxCode.ToFloatArray();
            Nf4Reference.State want = Nf4Reference.Quantize(w, offset, absmaxCode);
            Assert.Equal(want.Packed, q.Packed.ToByteArray());
            Nf4FixtureTests.AssertBits($"{at}: absmax", want.Absmax, absmax.ToFloatArray());
            Nf4FixtureTests.AssertBits($"{at}: nested absmax", want.NestedAbsmax, q.NestedAbsmax.ToFloatArray());
            Assert.Equal(want.AbsmaxQuantized, q.AbsmaxQuantized.ToByteArray());
            using Tensor dequantized = q.Dequantize();
            Nf4FixtureTests.AssertBits($"{at}: dequantised", want.Dequantized, dequantized.ToFloatArray());
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Nf4Linear_matches_reference_and_passes_gradients_to_x_only(string backend)
    {
        using Context ctx = Backends.Open(backend);
        var rng = new Random(702);
        // (leading shape of x, k, n). The CPU twin dequantises 256 rows of w at a time, so n = 300 and
        // n = 513 cross one and two tile boundaries.
        foreach ((long[] lead, int k, int n) in new (long[], int, int)[]
                 {
                     ([2, 3], 40, 7),   // 280 weights: four blocks and a partial one
                     ([1], 64, 1),      // one whole block
                     ([4], 5, 3),       // 15 weights: an odd count in one partial block
                     ([3], 33, 300),    // two tiles
                     ([2, 2], 17, 513), // three tiles, the last of one row
                 })
        {
            int m = (int)lead.Aggregate(1L, (p, v) => p * v);
            using Tensor weight = Tensor.FromArray(ctx, Rand.Uniform(rng, n * k), n, k);
            using Nf4Weight q = Nf4Weight.Quantize(weight);
            using Tensor dequantizedTensor = q.Dequantize();
            double[] dequantized = dequantizedTensor.ToFloatArray().ToDouble();
            double maxWeight = dequantized.Max(Math.Abs);

            OpCheck.Run(ctx, $"nf4_linear x=[{string.Join(", ", lead)}, {k}] n={n}",
                [Arg.Random("x", rng, [.. lead, k])], [.. lead, n],
                t => Ops.Nf4Linear(t[0], q),
                x => Reference.Linear(x[0], dequantized, null, m, k, n),
                // Dot products of k terms |x|·|w| < maxWeight; dx sums n terms |dy|·|w| < maxWeight (dy in (−1, 1)).
                forward: Dot(k, maxWeight), backward: Dot(n, maxWeight), fdStep: LinearStep);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Nf4Weight_takes_about_an_eighth_of_the_f32_bytes(string backend)
    {
        using Context ctx = Backends.Open(backend);
        const int rows = 300, columns = 257, numel = rows * columns;
        using Tensor weight = Tensor.FromArray(ctx, Rand.Uniform(new Random(703), numel), rows, columns);
        using Nf4Weight q = Nf4Weight.Quantize(weight);

        int blocks = (numel + 63) / 64, nested = (blocks + 255) / 256;
        Assert.Equal((numel + 1) / 2 + blocks + 4 * nested + 4 + 4 * 256, q.ByteCount);
        Assert.Equal(4L * numel, q.Float32ByteCount);
        Assert.Equal(new long[] { (numel + 1) / 2 }, q.Packed.Shape.ToArray());
        Assert.Equal(new long[] { blocks }, q.AbsmaxQuantized.Shape.ToArray());
        Assert.Equal(new long[] { nested }, q.NestedAbsmax.Shape.ToArray());
        Assert.Equal(rows, q.Rows);
        Assert.Equal(columns, q.Columns);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Nf4_ops_refuse_bad_sizes_naming_the_argument(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using Tensor vector = Tensor.Zeros(ctx, DType.F32, 8);
        using Tensor bf16 = Tensor.Zeros(ctx, DType.BF16, 2, 2);
        using Tensor empty = Tensor.Zeros(ctx, DType.F32, 0, 4);
        foreach (Tensor bad in new[] { vector, bf16, empty })
        {
            Assert.Contains("weight", Assert.Throws<ArgumentException>(() => Nf4Weight.Quantize(bad)).Message);
        }

        using Tensor weight = Tensor.FromArray(ctx, Rand.Uniform(new Random(704), 12), 3, 4);
        using Nf4Weight q = Nf4Weight.Quantize(weight);
        using Tensor narrow = Tensor.Zeros(ctx, DType.F32, 2, 5);
        using Tensor ints = Tensor.Zeros(ctx, DType.I32, 2, 4);
        Assert.Contains("x", Assert.Throws<ArgumentException>(() => Ops.Nf4Linear(narrow, q)).Message);
        Assert.Contains("x", Assert.Throws<ArgumentException>(() => Ops.Nf4Linear(ints, q)).Message);

        // The native entry points on their own: sizes, then each buffer by name.
        using Tensor out5 = Tensor.Zeros(ctx, DType.F32, 2, 5);
        using Tensor x = Tensor.Zeros(ctx, DType.F32, 2, 4);
        using Tensor dx = Tensor.Zeros(ctx, DType.F32, 2, 4);
        using Tensor tooFewAbsmax = Tensor.Zeros(ctx, DType.F32, 0);
        var failures = new (string Named, Func<int> Call)[]
        {
            ("n = 0", () => NativeMethods.nvlm_nf4_quantize(ctx.Handle, q.Packed.Buffer, q.AbsmaxQuantized.Buffer,
                q.NestedAbsmax.Buffer, q.Offset.Buffer, q.AbsmaxCode.Buffer, BufferHandle.Null, weight.Buffer, 0, 4)),
            ("k = -1", () => NativeMethods.nvlm_nf4_dequantize(ctx.Handle, weight.Buffer, q.Packed.Buffer,
                q.AbsmaxQuantized.Buffer, q.NestedAbsmax.Buffer, q.Offset.Buffer, q.AbsmaxCode.Buffer, 3, -1)),
            ("absmax holds", () => NativeMethods.nvlm_nf4_quantize(ctx.Handle, q.Packed.Buffer, q.AbsmaxQuantized.Buffer,
                q.NestedAbsmax.Buffer, q.Offset.Buffer, q.AbsmaxCode.Buffer, tooFewAbsmax.Buffer, weight.Buffer, 3, 4)),
            // A weight of 5 rows read from the buffers of a 3-row one: packed is the first too small.
            ("packed holds", () => NativeMethods.nvlm_nf4_linear_forward(ctx.Handle, out5.Buffer, x.Buffer,
                q.Packed.Buffer, q.AbsmaxQuantized.Buffer, q.NestedAbsmax.Buffer, q.Offset.Buffer, q.AbsmaxCode.Buffer,
                2, 4, 5)),
            ("absmax_code holds", () => NativeMethods.nvlm_nf4_dequantize(ctx.Handle, weight.Buffer, q.Packed.Buffer,
                q.AbsmaxQuantized.Buffer, q.NestedAbsmax.Buffer, q.Offset.Buffer, q.Offset.Buffer, 3, 4)),
            ("dout holds", () => NativeMethods.nvlm_nf4_linear_backward(ctx.Handle, dx.Buffer, empty.Buffer,
                q.Packed.Buffer, q.AbsmaxQuantized.Buffer, q.NestedAbsmax.Buffer, q.Offset.Buffer, q.AbsmaxCode.Buffer,
                2, 4, 3)),
        };
        foreach ((string named, Func<int> call) in failures)
        {
            int status = call();
            Assert.True(status == (int)NvlmStatus.InvalidArgument, $"the call that should fail with \"{named}\" returned {status}");
            var native = Assert.Throws<NvlmException>(() => Native.Check(status));
            Assert.Contains(named, native.Message);
        }
    }
}

/// <summary>
/// bitsandbytes 0.47's NF4 with double quantisation as its pure-PyTorch backend defines it
/// (backends/default/ops.py: quantize_4bit, quantize_blockwise, dequantize_blockwise, dequantize_4bit),
/// in float32, written from that definition rather than from nf4.h: each value gets the argmin of
/// |x − code| (the first index on a tie) instead of the native tree of thresholds.
/// </summary>
internal static class Nf4Reference
{
    // get_4bit_type("nf4"): the 16 NF4 values.
    private static readonly float[] Code =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
        0.7229568362236023f, 1.0f,
    ];

    public sealed record State(byte[] Packed, float[] Absmax, float[] NestedAbsmax, byte[] AbsmaxQuantized,
        float[] Dequantized);

    /// <summary>Quantises w (flattened) with the given offset (torch's mean) and absmax code (its dynamic map).</summary>
    public static State Quantize(float[] w, float offset, float[] absmaxCode)
    {
        float[] absmax = BlockAbsmax(w, Nf4Weight.BlockSize);
        var index = new byte[w.Length + w.Length % 2]; // an odd count is padded with the code of 0.0
        for (int i = 0; i < index.Length; i++)
        {
            index[i] = i < w.Length ? Nearest(Code, Scaled(w[i], absmax[i / Nf4Weight.BlockSize])) : Nearest(Code, 0.0f);
        }
        var packed = new byte[index.Length / 2];
        for (int i = 0; i < packed.Length; i++)
        {
            packed[i] = (byte)(index[2 * i] << 4 | index[2 * i + 1]);
        }

        float[] centred = absmax.Select(a => a - offset).ToArray();
        float[] nested = BlockAbsmax(centred, Nf4Weight.NestedBlockSize);
        byte[] absmaxQuantized = centred
            .Select((c, b) => Nearest(absmaxCode, Scaled(c, nested[b / Nf4Weight.NestedBlockSize])))
            .ToArray();

        var dequantized = new float[w.Length];
        for (int i = 0; i < w.Length; i++)
        {
            int block = i / Nf4Weight.BlockSize;
            float scale = absmaxCode[absmaxQuantized[block]] * nested[block / Nf4Weight.NestedBlockSize];
            scale += offset;
            dequantized[i] = Code[index[i]] * scale;
        }
        return new State(packed, absmax, nested, absmaxQuantized, dequantized);
    }

    // max |v| over each block of `block` values (the last may be partial).
    private static float[] BlockAbsmax(float[] values, int block)
    {
        var absmax = new float[(values.Length + block - 1) / block];
        for (int i = 0; i < values.Length; i++)
        {
            absmax[i / block] = Math.Max(absmax[i / block], Math.Abs(values[i]));
        }
        return absmax;
    }

    // clamp(x · (1 / absmax), −1, 1) as torch computes it: 0 · (1/0) is NaN, which clamp keeps.
    private static float Scaled(float x, float absmax)
    {
        float scaled = x * (1.0f / absmax);
        return float.IsNaN(scaled) ? scaled : Math.Clamp(scaled, -1.0f, 1.0f);
    }

    // torch.argmin(|x − code|): every distance is NaN for a NaN x, and argmin returns the first NaN.
    private static byte Nearest(float[] code, float x)
    {
        if (float.IsNaN(x))
        {
            return 0;
        }
        int best = 0;
        for (int i = 1; i < code.Length; i++)
        {
            if (Math.Abs(x - code[i]) < Math.Abs(x - code[best]))
            {
                best = i;
            }
        }
        return (byte)best;
    }
}
