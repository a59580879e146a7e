using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using NativeVlm.IO;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>dtype conversions, the writer's exact bytes, and the name check, on small files made here.</summary>
public class SafeTensorsTests
{
    private static string Save(TempDirectory dir, Action<SafeTensorsWriter> add, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var writer = new SafeTensorsWriter { Metadata = metadata };
        add(writer);
        string path = dir.Path("t.safetensors");
        writer.Save(path);
        return path;
    }

    private static void AddBits(SafeTensorsWriter writer, string name, SafeTensorsDType dtype, ushort[] bits) =>
        writer.AddRaw(name, dtype, [bits.Length], MemoryMarshal.AsBytes(bits.AsSpan()));

    /// <summary>Same value, bit for bit (so -0 ≠ +0), any NaN matching any NaN.</summary>
    private static void AssertSameFloats(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(expected[i]))
            {
                Assert.True(float.IsNaN(actual[i]), $"element {i}: expected NaN, got {actual[i]}");
            }
            else
            {
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"element {i}: expected {expected[i]:R}, got {actual[i]:R}");
            }
        }
    }

    // Each bit pattern with the value it encodes, written out from the format's definition.
    private static readonly (ushort Bits, float Value)[] Bf16Cases =
    [
        (0x3F80, 1f), (0xC040, -3f), (0x3F81, 1f + MathF.ScaleB(1f, -7)),
        (0x0001, MathF.ScaleB(1f, -133)), // smallest subnormal
        (0x7F7F, MathF.ScaleB(255f, 120)), // largest finite: (2 - 2^-7) · 2^127
        (0x7F80, float.PositiveInfinity), (0xFF80, float.NegativeInfinity), (0x8000, -0f), (0x7FC0, float.NaN),
    ];

    private static readonly (ushort Bits, float Value)[] F16Cases =
    [
        (0x3C00, 1f), (0xC000, -2f), (0x3555, 1365f / 4096f),
        (0x0001, MathF.ScaleB(1f, -24)), // smallest subnormal
        (0x03FF, MathF.ScaleB(1023f, -24)), // largest subnormal
        (0x0400, MathF.ScaleB(1f, -14)), // smallest normal
        (0x7BFF, 65504f), (0xFC00, float.NegativeInfinity), (0x8000, -0f), (0x7E00, float.NaN),
    ];

    [Fact]
    public void Bf16_and_f16_widen_to_f32_exactly()
    {
        using var dir = new TempDirectory();
        string path = Save(dir, w =>
        {
            AddBits(w, "bf16", SafeTensorsDType.BF16, Bf16Cases.Select(c => c.Bits).ToArray());
            AddBits(w, "f16", SafeTensorsDType.F16, F16Cases.Select(c => c.Bits).ToArray());
        });
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        using Context ctx = Context.Create(DeviceKind.Cpu);

        AssertSameFloats(Bf16Cases.Select(c => c.Value).ToArray(), reader.ReadFloat32("bf16"));
        AssertSameFloats(F16Cases.Select(c => c.Value).ToArray(), reader.ReadFloat32("f16"));
        using Tensor f16 = reader.ToTensor(ctx, "f16");
        AssertSameFloats(F16Cases.Select(c => c.Value).ToArray(), f16.ToFloatArray());
    }

    [Fact]
    public void Integers_widen_and_int64_narrows_to_int32_only_when_it_fits()
    {
        using var dir = new TempDirectory();
        long[] fits = [-1, 0, int.MaxValue, int.MinValue];
        string path = Save(dir, w =>
        {
            w.AddRaw("i64", SafeTensorsDType.I64, [2, 2], MemoryMarshal.AsBytes(fits.AsSpan()));
            w.AddRaw("big", SafeTensorsDType.I64, [2], MemoryMarshal.AsBytes(new long[] { 7, int.MaxValue + 1L }.AsSpan()));
            w.AddRaw("i32", SafeTensorsDType.I32, [2], MemoryMarshal.AsBytes(new[] { -5, 6 }.AsSpan()));
            w.AddRaw("mask", SafeTensorsDType.Bool, [3], [1, 0, 1]);
        });
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);

        Assert.Equal(fits, reader.ReadInt64("i64"));
        Assert.Equal(fits.Select(v => (int)v), reader.ReadInt32("i64"));
        Assert.Equal([-5L, 6L], reader.ReadInt64("i32"));
        Assert.Equal([1, 0, 1], reader.ReadInt32("mask"));
        Assert.Equal([1, 0, 1], reader.ReadUInt8("mask"));

        var tooBig = Assert.Throws<SafeTensorsException>(() => reader.ReadInt32("big"));
        Assert.Equal("big", tooBig.TensorName);
        Assert.Contains("element 1 = 2147483648 does not fit int32", tooBig.Message);
        var notFloat = Assert.Throws<SafeTensorsException>(() => reader.ReadFloat32("i64"));
        Assert.Contains("tensor 'i64': I64 cannot be read as f32", notFloat.Message);
        var absent = Assert.Throws<SafeTensorsException>(() => reader.GetInfo("nope"));
        Assert.Equal("nope", absent.TensorName);
    }

    /// <summary>The byte layouts that safetensors' own serializer tests expect.</summary>
    [Fact]
    public void The_writer_produces_the_bytes_of_safetensors_own_serializer()
    {
        using var dir = new TempDirectory();

        byte[] empty = File.ReadAllBytes(Save(dir, _ => { }));
        Assert.Equal([8, 0, 0, 0, 0, 0, 0, 0, .. "{}      "u8], empty);

        byte[] emptyWithMetadata = File.ReadAllBytes(Save(dir, _ => { }, new Dictionary<string, string> { ["framework"] = "pt" }));
        Assert.Equal([40, 0, 0, 0, 0, 0, 0, 0, .. """{"__metadata__":{"framework":"pt"}}     """u8], emptyWithMetadata);

        float[] values = [0, 1, 2, 3, 4, 5];
        byte[] one = File.ReadAllBytes(Save(dir, w => w.Add("attn.0", values, 1, 2, 3)));
        byte[] header = """{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"""u8.ToArray();
        Assert.Equal([64, 0, 0, 0, 0, 0, 0, 0, .. header, .. MemoryMarshal.AsBytes(values.AsSpan())], one);
    }

    [Fact]
    public void The_header_is_padded_with_spaces_to_a_multiple_of_8_and_names_round_trip()
    {
        using var dir = new TempDirectory();
        // A quote, a backslash, a control character and non-ASCII: escaped as serde_json escapes them.
        const string odd = "a\"b\\c\nd\u0001é";
        string path = Save(dir, w => w.Add(odd, [1f], 1), new Dictionary<string, string> { ["format"] = "pt" });

        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.Equal(0, headerLength % 8);
        Assert.StartsWith("""{"__metadata__":{"format":"pt"},"a\"b\\c\nd\u0001é":""", header);
        Assert.Matches("} *$", header);
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        Assert.Equal([odd], reader.Names);
        Assert.Equal([1f], reader.ReadFloat32(odd));
    }

    [Fact]
    public void Tensors_written_from_the_backend_keep_their_type()
    {
        using var dir = new TempDirectory();
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor f32 = Tensor.FromArray(ctx, [1.5f, -2f, 3.25f, 0f, 7f, 8f], 2, 3);
        using Tensor bf16 = Tensor.FromBf16Bits(ctx, [0x3F80, 0xC040], 2);
        using Tensor i32 = Tensor.FromArray(ctx, [3, -4], 2, 1);
        using Tensor u8 = Tensor.FromArray(ctx, new byte[] { 0, 255 }, 2);
        string path = Save(dir, w =>
        {
            w.Add("f32", f32);
            w.Add("bf16", bf16);
            w.Add("i32", i32);
            w.Add("u8", u8);
        });

        using SafeTensorsReader reader = SafeTensorsReader.Open(path);

        Assert.Equal([SafeTensorsDType.F32, SafeTensorsDType.BF16, SafeTensorsDType.I32, SafeTensorsDType.U8],
            reader.Names.Select(n => reader.GetInfo(n).DType));
        Assert.Equal([2L, 3L], reader.GetInfo("f32").Shape.ToArray());
        Assert.Equal(f32.ToFloatArray(), reader.ReadFloat32("f32"));
        Assert.Equal([1f, -3f], reader.ReadFloat32("bf16"));
        Assert.Equal([3, -4], reader.ReadInt32("i32"));
        Assert.Equal([0, 255], reader.ReadUInt8("u8"));
    }

    [Fact]
    public void The_writer_rejects_what_no_file_could_hold()
    {
        var writer = new SafeTensorsWriter();
        writer.Add("w", [1f, 2f], 2);

        Assert.Throws<ArgumentException>(() => writer.Add("w", [1f], 1));
        Assert.Throws<ArgumentException>(() => writer.Add(SafeTensorsFile.MetadataKey, [1f], 1));
        Assert.Throws<ArgumentException>(() => writer.Add("x", [1f, 2f], 3));
        Assert.Throws<ArgumentException>(() => writer.AddRaw("y", SafeTensorsDType.F32, [-1], []));
    }

    [Fact]
    public void The_name_check_lists_every_missing_and_every_unexpected_tensor()
    {
        TensorNameCheck check = TensorNameCheck.Compare(loaded: ["a", "x", "b"], expected: ["a", "b", "d", "c"]);

        Assert.False(check.IsExact);
        Assert.Equal(["d", "c"], check.Missing);
        Assert.Equal(["x"], check.Unexpected);
        Assert.Equal("2 expected tensors are missing: d, c; 1 tensor is not expected: x", check.ToString());
        Assert.True(TensorNameCheck.Compare(["a", "b"], ["b", "a"]).IsExact);
    }

    [Fact]
    public void RequireNames_throws_with_the_listing_and_the_file()
    {
        using var dir = new TempDirectory();
        string path = Save(dir, w =>
        {
            w.Add("kept", [1f], 1);
            w.Add("extra", [1f], 1);
        });
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);

        reader.RequireNames(["extra", "kept"]);
        var e = Assert.Throws<SafeTensorsException>(() => reader.RequireNames(["kept", "lm_head.weight"]));

        Assert.Equal($"{path}: 1 expected tensor is missing: lm_head.weight; 1 tensor is not expected: extra", e.Message);
    }

    [Fact]
    public void A_directory_without_weights_is_an_error_naming_it()
    {
        using var dir = new TempDirectory();

        var e = Assert.Throws<FileNotFoundException>(() => SafeTensorsReader.Open(dir.Root));

        Assert.Contains(dir.Root, e.Message);
    }
}
