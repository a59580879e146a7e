using System.Buffers.Binary;
using System.Text;
using NativeVlm.IO;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// Broken files, crafted byte by byte: each is a <see cref="SafeTensorsException"/> that names the
/// file and, where the fault is one tensor's, the tensor; never a crash, a hang or a huge allocation.
/// </summary>
public class SafeTensorsMalformedTests
{
    /// <summary>[u64 header length][header][data bytes]; the length prefix may lie.</summary>
    private static string WriteFile(TempDirectory dir, string header, int dataBytes, ulong? declaredLength = null)
    {
        byte[] headerBytes = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + headerBytes.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredLength ?? (ulong)headerBytes.Length);
        headerBytes.CopyTo(file, 8);
        string path = dir.Path("broken.safetensors");
        File.WriteAllBytes(path, file);
        return path;
    }

    private static SafeTensorsException OpenFails(string path)
    {
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsReader.Open(path).Dispose());
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path + ": ", e.Message);
        return e;
    }

    [Theory]
    // data_offsets out of range: 16 bytes claimed, 8 in the file.
    [InlineData("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "w", "outside the data section (8 bytes)")]
    // overlapping offsets
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, "b", "overlap tensor 'a' [0, 8]")]
    // begin > end
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", 8, "w", "begin after they end")]
    // unknown dtype
    [InlineData("""{"w":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}""", 8, "w", "unknown dtype 'F7'")]
    // shape × dtype size ≠ byte count
    [InlineData("""{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "w", "needs 12 bytes, data_offsets [0, 8] hold 8")]
    [InlineData("""{"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}}""", 16, "w", "needs 8 bytes")]
    // negative and non-integer dimensions
    [InlineData("""{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}}""", 8, "w", "negative dimension")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}""", 8, "w", "not an integer")]
    // element count overflowing a long
    [InlineData("""{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}""", 8, "w", "more elements than any file can hold")]
    // malformed entries
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}""", 8, "w", "two non-negative integers")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2]}}""", 8, "w", "two non-negative integers")]
    [InlineData("""{"w":{"shape":[2],"data_offsets":[0,8]}}""", 8, "w", "dtype is missing")]
    [InlineData("""{"w":[1,2]}""", 8, "w", "not an object")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "w", "appears twice")]
    // a gap between tensors (safetensors rejects it too)
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12, "b", "4 bytes unaccounted for after tensor 'a'")]
    public void A_bad_tensor_entry_names_the_file_and_the_tensor(string header, int dataBytes, string tensor, string detail)
    {
        using var dir = new TempDirectory();
        string path = WriteFile(dir, header, dataBytes);

        SafeTensorsException e = OpenFails(path);

        Assert.Equal(tensor, e.TensorName);
        Assert.Contains($"tensor '{tensor}'", e.Message);
        Assert.Contains(detail, e.Message);
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, 1000UL, "header length 1000 is larger than the file")]
    [InlineData("{}", 0, ulong.MaxValue, "header length 18446744073709551615 is larger than the file")]
    [InlineData("""{"w": {"dtype": """, 0, null, "the header is not valid JSON")]
    [InlineData("[1, 2]", 0, null, "the header is a JSON Array, not an object")]
    [InlineData("""{"__metadata__":{"format":1}}""", 0, null, "__metadata__.format is a JSON Number, not a string")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 12, null, "8 bytes after the last tensor belong to no tensor")]
    public void A_bad_file_names_the_file(string header, int dataBytes, ulong? declaredLength, string detail)
    {
        using var dir = new TempDirectory();
        string path = WriteFile(dir, header, dataBytes, declaredLength);

        SafeTensorsException e = OpenFails(path);

        Assert.Null(e.TensorName);
        Assert.Contains(detail, e.Message);
    }

    [Fact]
    public void A_header_that_is_not_utf8_is_an_error()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("latin1.safetensors");
        byte[] header = [.. "{\"caf"u8, 0xE9, .. "\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"u8];
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)header.Length), .. header]);

        SafeTensorsException e = OpenFails(path);

        Assert.Contains("the header is not valid UTF-8", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void A_file_shorter_than_the_length_prefix_is_an_error(int length)
    {
        using var dir = new TempDirectory();
        string path = dir.Path("short.safetensors");
        File.WriteAllBytes(path, new byte[length]);

        SafeTensorsException e = OpenFails(path);

        Assert.Contains($"the file is {length} bytes", e.Message);
    }

    /// <summary>A two-shard snapshot of tensors a (F32 [2]) and b (F32 [3]); returns the index path.</summary>
    private static string WriteShardedSnapshot(TempDirectory dir, (string Tensor, string Shard)[] weightMap, params (string Shard, string[] Tensors)[] shards)
    {
        foreach ((string shard, string[] tensors) in shards)
        {
            var writer = new SafeTensorsWriter();
            foreach (string tensor in tensors)
            {
                writer.Add(tensor, new float[tensor == "a" ? 2 : 3], tensor == "a" ? 2 : 3);
            }
            writer.Save(dir.Path(shard));
        }
        string index = dir.Path(SafeTensorsReader.IndexFileName);
        SafeTensorsFixtureTests.WriteIndex(index, weightMap, totalSize: 20);
        return index;
    }

    [Fact]
    public void A_shard_missing_from_the_snapshot_names_the_index_the_shard_and_a_tensor()
    {
        using var dir = new TempDirectory();
        string index = WriteShardedSnapshot(dir, [("a", "s1.safetensors"), ("b", "s2.safetensors")], ("s1.safetensors", ["a"]));

        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsReader.Open(dir.Root).Dispose());

        Assert.Equal(index, e.FilePath);
        Assert.Equal("b", e.TensorName);
        Assert.Contains("its shard 's2.safetensors' is missing", e.Message);
    }

    [Fact]
    public void A_tensor_of_the_weight_map_absent_from_its_shard_names_the_shard_and_the_tensor()
    {
        using var dir = new TempDirectory();
        WriteShardedSnapshot(dir, [("a", "s1.safetensors"), ("b", "s2.safetensors")], ("s1.safetensors", ["a"]), ("s2.safetensors", []));

        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsReader.Open(dir.Root).Dispose());

        Assert.Equal(dir.Path("s2.safetensors"), e.FilePath);
        Assert.Equal("b", e.TensorName);
        Assert.Contains("lists it in this shard, but the shard does not hold it", e.Message);
    }

    [Fact]
    public void A_shard_tensor_the_weight_map_places_elsewhere_names_the_shard_and_the_tensor()
    {
        using var dir = new TempDirectory();
        WriteShardedSnapshot(dir, [("a", "s1.safetensors"), ("b", "s2.safetensors")], ("s1.safetensors", ["a", "b"]), ("s2.safetensors", ["b"]));

        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsReader.Open(dir.Root).Dispose());

        Assert.Equal(dir.Path("s1.safetensors"), e.FilePath);
        Assert.Equal("b", e.TensorName);
        Assert.Contains("places it in 's2.safetensors'", e.Message);
    }

    [Fact]
    public void An_index_without_a_weight_map_names_the_index()
    {
        using var dir = new TempDirectory();
        string index = dir.Path(SafeTensorsReader.IndexFileName);
        File.WriteAllText(index, """{"metadata": {"total_size": 0}}""");

        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsReader.Open(index).Dispose());

        Assert.Equal(index, e.FilePath);
        Assert.Contains("no weight_map", e.Message);
    }
}
