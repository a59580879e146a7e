using System.Text.Json;
using NativeVlm.Autograd;
using NativeVlm.Interop;
using NativeVlm.IO;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using Xunit;
using Xunit.Sdk;

namespace NativeVlm.Tests;

/// <summary>
/// NF4 against bitsandbytes 0.47 (fixtures/nf4: quantize_4bit / dequantize_4bit with blocksize 64 and
/// double quantisation, run in float32): every matrix the fixture lists, every shape from its files.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class Nf4FixtureTests
{
    private sealed record Matrix(string Name, long Rows, long Columns, float[] Weight);

    /// <summary>The fixture's matrices (nf4.json), after checking it was made with this layout's block sizes.</summary>
    private static List<Matrix> Matrices(SafeTensorsReader reader)
    {
        using JsonDocument facts = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("nf4", "nf4.json")));
        JsonElement root = facts.RootElement;
        Assert.Equal(Nf4Weight.BlockSize, root.GetProperty("blocksize").GetInt32());
        Assert.Equal(Nf4Weight.NestedBlockSize, root.GetProperty("nested_blocksize").GetInt32());
        Assert.Equal("nf4", root.GetProperty("quant_type").GetString());
        var matrices = new List<Matrix>();
        foreach (JsonProperty matrix in root.GetProperty("matrices").EnumerateObject())
        {
            string weight = $"{matrix.Name}.weight";
            ReadOnlySpan<long> shape = reader.GetInfo(weight).Shape;
            Assert.Equal(2, shape.Length);
            matrices.Add(new Matrix(matrix.Name, shape[0], shape[1], reader.ReadFloat32(weight)));
        }
        Assert.NotEmpty(matrices);
        return matrices;
    }

    private static SafeTensorsReader OpenFixture() => SafeTensorsReader.Open(Fixtures.Path("nf4", "nf4.safetensors"));

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Quantize_gives_bitsandbytes_codes_absmax_and_double_quant_state_bit_for_bit(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using SafeTensorsReader reader = OpenFixture();
        float[] dynamicMap = reader.ReadFloat32("dynamic_map");
        foreach (Matrix m in Matrices(reader))
        {
            using Tensor weight = Tensor.FromArray(ctx, m.Weight, m.Rows, m.Columns);
            using Nf4Weight q = Nf4Weight.Quantize(weight);
            string at = $"{m.Name} [{m.Rows}, {m.Columns}] on {ctx}";

            byte[] packed = q.Packed.ToByteArray();
            Assert.Equal(reader.ReadUInt8($"{m.Name}.packed"), packed);
            // The fixture's unpacked indices read the pairs as element 2i = high nibble, 2i+1 = low nibble.
            byte[] codes = reader.ReadUInt8($"{m.Name}.codes");
            for (int i = 0; i < codes.Length; i++)
            {
                int nibble = i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 0x0F;
                if (nibble != codes[i])
                {
                    throw new XunitException($"{at}: code of element {i} is {nibble}, bitsandbytes has {codes[i]}");
                }
            }

            Assert.Equal(reader.ReadUInt8($"{m.Name}.dq.absmax_quantized"), q.AbsmaxQuantized.ToByteArray());
            AssertBits($"{at}: nested absmax", reader.ReadFloat32($"{m.Name}.dq.nested_absmax"), q.NestedAbsmax.ToFloatArray());
            AssertBits($"{at}: offset", reader.ReadFloat32($"{m.Name}.dq.offset"), q.Offset.ToFloatArray());
            AssertBits($"{at}: absmax code", dynamicMap, q.AbsmaxCode.ToFloatArray());

            // The per-block absmax before double quantisation, through nvlm_nf4_quantize's optional output.
            float[] wantAbsmax = reader.ReadFloat32($"{m.Name}.absmax");
            using Tensor absmax = Tensor.Zeros(ctx, DType.F32, wantAbsmax.Length);
            Native.Check(NativeMethods.nvlm_nf4_quantize(ctx.Handle, q.Packed.Buffer, q.AbsmaxQuantized.Buffer,
                q.NestedAbsmax.Buffer, q.Offset.Buffer, q.AbsmaxCode.Buffer, absmax.Buffer, weight.Buffer, m.Rows,
                m.Columns));
            AssertBits($"{at}: absmax", wantAbsmax, absmax.ToFloatArray());
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Dequantize_gives_bitsandbytes_values_bit_for_bit(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using SafeTensorsReader reader = OpenFixture();
        foreach (Matrix m in Matrices(reader))
        {
            using Tensor weight = Tensor.FromArray(ctx, m.Weight, m.Rows, m.Columns);
            using Nf4Weight q = Nf4Weight.Quantize(weight);
            using Tensor dequantized = q.Dequantize();

            Assert.Equal(new[] { m.Rows, m.Columns }, dequantized.Shape.ToArray());
            // The fixture's README: code · (map[q] · nested_absmax + offset), each a single float32
            // operation, is what bitsandbytes computes, so the bits agree (−0.0 of a zero block included).
            AssertBits($"{m.Name} on {ctx}: dequantised weight", reader.ReadFloat32($"{m.Name}.dq.dequant"),
                dequantized.ToFloatArray());
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Nf4Linear_gives_what_a_Linear4bit_layer_computes(string backend)
    {
        using Context ctx = Backends.Open(backend);
        using SafeTensorsReader reader = OpenFixture();
        foreach (Matrix m in Matrices(reader))
        {
            using var scope = new TensorScope();
            using Tensor weight = Tensor.FromArray(ctx, m.Weight, m.Rows, m.Columns);
            using Nf4Weight q = Nf4Weight.Quantize(weight);
            using Tensor x = reader.ToTensor(ctx, $"{m.Name}.x");
            float[] want = reader.ReadFloat32($"{m.Name}.dq.y");
            float[] dequantized = reader.ReadFloat32($"{m.Name}.dq.dequant");
            float[] xs = x.ToFloatArray();

            Tensor y = Ops.Nf4Linear(x, q);

            long[] shape = reader.GetInfo($"{m.Name}.dq.y").Shape.ToArray();
            Assert.Equal(shape, y.Shape.ToArray());
            // Both sides are fp32 dot products of k terms over the same dequantised weight (torch's and
            // ours sum in different orders). Each is within γ_k·Σ|x_j·w_ij| of the exact value (Higham,
            // γ_k = kU/(1 − kU) ≤ 1.01·kU, U = 2⁻²⁴), so they differ by at most twice the largest such
            // bound over the rows; the README observed ~1e-6 relative.
            double largest = 0;
            for (long i = 0; i < x.Dim(0); i++)
            {
                for (long r = 0; r < m.Rows; r++)
                {
                    double sum = 0;
                    for (long j = 0; j < m.Columns; j++)
                    {
                        sum += Math.Abs(xs[i * m.Columns + j] * (double)dequantized[r * m.Columns + j]);
                    }
                    largest = Math.Max(largest, sum);
                }
            }
            var dot = new Tol(2 * 1.01 * m.Columns * Nf4Tests.U * largest, 0);
            Compare.AllClose($"{m.Name} on {ctx}: x · dequant(W)ᵀ", y.ToFloatArray(), want.ToDouble(), shape, dot);
        }
    }

    /// <summary>Equal float32 bit patterns (so −0.0 ≠ 0.0 and NaN must match NaN exactly).</summary>
    internal static void AssertBits(string what, float[] want, float[] got)
    {
        if (want.Length != got.Length)
        {
            throw new XunitException($"{what}: {got.Length} values, expected {want.Length}");
        }
        for (int i = 0; i < want.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(want[i]) != BitConverter.SingleToInt32Bits(got[i]))
            {
                throw new XunitException(FormattableString.Invariant(
                    $"{what}: element {i} is {got[i]:R} (0x{BitConverter.SingleToInt32Bits(got[i]):X8}), expected {want[i]:R} (0x{BitConverter.SingleToInt32Bits(want[i]):X8})"));
            }
        }
    }
}
