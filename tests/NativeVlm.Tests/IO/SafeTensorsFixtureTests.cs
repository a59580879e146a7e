using System.Buffers.Binary;
using System.Text.Json;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>The model fixtures' safetensors files: names and shapes against their configs, values, rewriting, sharding.</summary>
[Trait("Category", Fixtures.Category)]
public class SafeTensorsFixtureTests
{
    public static TheoryData<string> Models => new() { "tiny-idefics3", "tiny-qwen3-smvl" };

    [Theory]
    [MemberData(nameof(Models))]
    public void Every_tensor_has_the_name_and_shape_its_config_implies(string model)
    {
        Idefics3Config config = Idefics3Config.Load(Fixtures.Path(model));
        using SafeTensorsReader reader = SafeTensorsReader.Open(Fixtures.Path(model));
        Dictionary<string, long[]> expected = ExpectedTensors.Of(config);

        reader.RequireNames(expected.Keys);
        foreach (string name in reader.Names)
        {
            SafeTensorInfo info = reader.GetInfo(name);
            Assert.True(expected[name].AsSpan().SequenceEqual(info.Shape),
                $"{name}: file [{string.Join(", ", info.Shape.ToArray())}], config implies [{string.Join(", ", expected[name])}]");
            float[] values = reader.ReadFloat32(name);
            Assert.Equal(info.ElementCount, values.LongLength);
            Assert.All(values, value => Assert.True(float.IsFinite(value), $"{name} holds {value}"));
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Weights_uploaded_into_a_tensor_hold_the_file_values(string model)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using SafeTensorsReader reader = SafeTensorsReader.Open(Fixtures.Path(model));
        IReadOnlyList<string> names = reader.Names;

        foreach (string name in new[] { names[0], names[names.Count / 2], names[^1] })
        {
            SafeTensorInfo info = reader.GetInfo(name);
            // The fixtures store every float as F32 (their README); decoded here independently of the reader.
            Assert.Equal(SafeTensorsDType.F32, info.DType);
            ReadOnlySpan<byte> bytes = reader.GetBytes(name);
            var expected = new float[info.ElementCount];
            for (int i = 0; i < expected.Length; i++)
            {
                expected[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(4 * i)..]);
            }

            using Tensor tensor = reader.ToTensor(ctx, name);

            Assert.Equal(DType.F32, tensor.DType);
            Assert.Equal(info.Shape.ToArray(), tensor.Shape.ToArray());
            Assert.Equal(expected, tensor.ToFloatArray()); // exact: f32 bytes in, the same f32 out
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Token_ids_and_pixel_masks_upload_as_int32_and_uint8(string model)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using SafeTensorsReader inputs = SafeTensorsReader.Open(Fixtures.Path(model, "inputs.safetensors"));

        Assert.Equal(SafeTensorsDType.I64, inputs.GetInfo("input_ids").DType);
        using Tensor ids = inputs.ToTensor(ctx, "input_ids");
        Assert.Equal(DType.I32, ids.DType);
        Assert.Equal(inputs.GetInfo("input_ids").Shape.ToArray(), ids.Shape.ToArray());
        Assert.Equal(inputs.ReadInt64("input_ids"), ids.ToInt32Array().Select(id => (long)id));

        using Tensor mask = inputs.ToTensor(ctx, "pixel_attention_mask");
        Assert.Equal(DType.U8, mask.DType);
        Assert.Equal(inputs.ReadUInt8("pixel_attention_mask"), mask.ToByteArray());
        Assert.All(mask.ToByteArray(), m => Assert.True(m <= 1));
    }

    /// <summary>Every safetensors file of the model folders, read and written back.</summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void Reading_and_writing_back_is_byte_identical(string model)
    {
        using var temp = new TempDirectory();
        string[] files = Directory.GetFiles(Fixtures.Path(model), "*.safetensors");
        Assert.NotEmpty(files);

        foreach (string original in files)
        {
            string first = temp.Path("first.safetensors"), second = temp.Path("second.safetensors");
            Rewrite(original, first);
            Rewrite(first, second);

            Assert.True(File.ReadAllBytes(original).AsSpan().SequenceEqual(File.ReadAllBytes(first)), $"{original} changed when rewritten");
            Assert.True(File.ReadAllBytes(first).AsSpan().SequenceEqual(File.ReadAllBytes(second)), $"{original}: the rewrite changed when rewritten");
        }
    }

    private static void Rewrite(string from, string to)
    {
        using SafeTensorsFile file = SafeTensorsFile.Open(from);
        var writer = new SafeTensorsWriter { Metadata = file.Metadata };
        foreach (SafeTensorInfo tensor in file.Tensors)
        {
            writer.AddRaw(tensor.Name, tensor.DType, tensor.Shape, file.GetBytes(tensor));
        }
        writer.Save(to);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void A_snapshot_split_into_two_shards_loads_like_the_single_file(string model)
    {
        using var temp = new TempDirectory();
        using SafeTensorsReader single = SafeTensorsReader.Open(Fixtures.Path(model, "model.safetensors"));
        IReadOnlyList<string> names = single.Names;
        // As save_pretrained shards: consecutive tensors per shard, the index maps each name to its shard.
        string[] shardNames = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
        int split = names.Count / 2;
        WriteShard(single, names.Take(split), temp.Path(shardNames[0]));
        WriteShard(single, names.Skip(split), temp.Path(shardNames[1]));
        WriteIndex(temp.Path(SafeTensorsReader.IndexFileName), names.Select((name, i) => (name, shardNames[i < split ? 0 : 1])),
            totalSize: names.Sum(name => single.GetInfo(name).ByteCount));

        using SafeTensorsReader sharded = SafeTensorsReader.Open(temp.Root);

        Assert.Equal(2, sharded.Files.Count);
        Assert.Equal(names, sharded.Names);
        foreach (string name in names)
        {
            SafeTensorInfo expected = single.GetInfo(name), actual = sharded.GetInfo(name);
            Assert.Equal(expected.DType, actual.DType);
            Assert.Equal(expected.Shape.ToArray(), actual.Shape.ToArray());
            Assert.True(single.GetBytes(name).SequenceEqual(sharded.GetBytes(name)), $"{name}: bytes differ");
            Assert.Equal(single.ReadFloat32(name), sharded.ReadFloat32(name));
        }
    }

    internal static void WriteShard(SafeTensorsReader source, IEnumerable<string> names, string path)
    {
        var writer = new SafeTensorsWriter();
        foreach (string name in names)
        {
            SafeTensorInfo info = source.GetInfo(name);
            writer.AddRaw(name, info.DType, info.Shape, source.GetBytes(name));
        }
        writer.Save(path);
    }

    /// <summary>{"metadata": {"total_size": N}, "weight_map": {tensor: shard, ...}} as transformers writes it.</summary>
    internal static void WriteIndex(string path, IEnumerable<(string Tensor, string Shard)> weightMap, long totalSize)
    {
        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteStartObject("metadata");
        json.WriteNumber("total_size", totalSize);
        json.WriteEndObject();
        json.WriteStartObject("weight_map");
        foreach ((string tensor, string shard) in weightMap)
        {
            json.WriteString(tensor, shard);
        }
        json.WriteEndObject();
        json.WriteEndObject();
    }
}
