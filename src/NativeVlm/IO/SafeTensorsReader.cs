using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Unicode;
using NativeVlm.Tensors;

namespace NativeVlm.IO;

/// <summary>
/// The tensors of a Hugging Face snapshot: one safetensors file, or the shards that
/// <c>model.safetensors.index.json</c> lists in its weight_map. Every file is memory-mapped; a read
/// copies (and converts) one tensor, never a whole shard. safetensors data is little-endian, as is
/// every platform .NET runs on, so bytes are reinterpreted in place.
/// </summary>
public sealed class SafeTensorsReader : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafeTensorsFile> _files;
    private readonly Dictionary<string, (SafeTensorsFile File, SafeTensorInfo Info)> _byName;

    private SafeTensorsReader(string sourcePath, List<SafeTensorsFile> files, IReadOnlyList<string> names)
    {
        SourcePath = sourcePath;
        _files = files;
        Names = names;
        _byName = new Dictionary<string, (SafeTensorsFile, SafeTensorInfo)>(StringComparer.Ordinal);
        foreach (SafeTensorsFile file in files)
        {
            foreach (SafeTensorInfo info in file.Tensors)
            {
                _byName.Add(info.Name, (file, info));
            }
        }
    }

    /// <summary>The single file or the index this reader was opened from.</summary>
    public string SourcePath { get; }

    /// <summary>One file, or the shards in the order the weight_map first names them.</summary>
    public IReadOnlyList<SafeTensorsFile> Files => _files;

    /// <summary>Every tensor name: the file's order for one file (see <see cref="SafeTensorsFile.Tensors"/>), weight_map order for shards.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>
    /// A snapshot directory (its index if it has one, else its model.safetensors), an index file
    /// (*.index.json), or one safetensors file.
    /// </summary>
    public static SafeTensorsReader Open(string path)
    {
        if (Directory.Exists(path))
        {
            string index = Path.Combine(path, IndexFileName);
            string single = Path.Combine(path, SingleFileName);
            if (File.Exists(index))
            {
                return OpenIndex(index);
            }
            if (File.Exists(single))
            {
                return OpenFile(single);
            }
            throw new FileNotFoundException($"{path}: the directory has neither {IndexFileName} nor {SingleFileName}", single);
        }
        return path.EndsWith(".index.json", StringComparison.Ordinal) ? OpenIndex(path) : OpenFile(path);
    }

    private static SafeTensorsReader OpenFile(string path)
    {
        SafeTensorsFile file = SafeTensorsFile.Open(path);
        return new SafeTensorsReader(path, [file], file.Tensors.Select(t => t.Name).ToArray());
    }

    private static SafeTensorsReader OpenIndex(string indexPath)
    {
        List<(string Tensor, string Shard)> weightMap = ReadWeightMap(indexPath);
        string directory = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        var shardOf = weightMap.ToDictionary(e => e.Tensor, e => e.Shard, StringComparer.Ordinal);
        var files = new List<SafeTensorsFile>();
        try
        {
            foreach (IGrouping<string, string> shard in weightMap.GroupBy(e => e.Shard, e => e.Tensor, StringComparer.Ordinal))
            {
                string shardPath = Path.Combine(directory, shard.Key);
                if (!File.Exists(shardPath))
                {
                    throw new SafeTensorsException(indexPath, shard.First(),
                        $"its shard '{shard.Key}' is missing ({shard.Count()} tensors are listed for it, looked for {shardPath})");
                }
                SafeTensorsFile file = SafeTensorsFile.Open(shardPath);
                files.Add(file);
                CheckShardAgainstIndex(file, shard.Key, shard, shardOf);
            }
            return new SafeTensorsReader(indexPath, files, weightMap.Select(e => e.Tensor).ToArray());
        }
        catch
        {
            files.ForEach(f => f.Dispose());
            throw;
        }
    }

    /// <summary>weight_map entries (tensor → shard file name) in file order.</summary>
    private static List<(string Tensor, string Shard)> ReadWeightMap(string indexPath)
    {
        byte[] json = File.ReadAllBytes(indexPath);
        if (!Utf8.IsValid(json))
        {
            throw new SafeTensorsException(indexPath, null, "the index is not valid UTF-8");
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new SafeTensorsException(indexPath, null, $"the index is not valid JSON ({e.Message})");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out JsonElement map)
                || map.ValueKind != JsonValueKind.Object)
            {
                throw new SafeTensorsException(indexPath, null, "the index has no weight_map object");
            }
            var entries = new List<(string, string)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                {
                    throw new SafeTensorsException(indexPath, entry.Name, $"weight_map gives a JSON {entry.Value.ValueKind}, not a shard file name");
                }
                if (!seen.Add(entry.Name))
                {
                    throw new SafeTensorsException(indexPath, entry.Name, "appears twice in weight_map");
                }
                entries.Add((entry.Name, entry.Value.GetString()!));
            }
            return entries;
        }
    }

    /// <summary>The shard holds exactly the tensors the weight_map places in it.</summary>
    private static void CheckShardAgainstIndex(
        SafeTensorsFile file, string shardName, IEnumerable<string> listed, Dictionary<string, string> shardOf)
    {
        foreach (string name in listed)
        {
            if (!file.Contains(name))
            {
                throw new SafeTensorsException(file.FilePath, name, $"{IndexFileName} lists it in this shard, but the shard does not hold it");
            }
        }
        foreach (SafeTensorInfo info in file.Tensors)
        {
            if (!shardOf.TryGetValue(info.Name, out string? placed))
            {
                throw new SafeTensorsException(file.FilePath, info.Name, $"the shard holds it, but {IndexFileName}'s weight_map does not list it");
            }
            if (placed != shardName)
            {
                throw new SafeTensorsException(file.FilePath, info.Name, $"the shard holds it, but {IndexFileName} places it in '{placed}'");
            }
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public SafeTensorInfo GetInfo(string name) => Find(name).Info;

    /// <summary>The tensor's bytes inside the mapping, valid until this reader is disposed.</summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        (SafeTensorsFile file, SafeTensorInfo info) = Find(name);
        return file.GetBytes(info);
    }

    /// <summary>F32, or BF16/F16 widened to f32 (exact: every bf16 and f16 value is an f32 value).</summary>
    public float[] ReadFloat32(string name)
    {
        (SafeTensorsFile file, SafeTensorInfo info) = Find(name);
        ReadOnlySpan<byte> bytes = file.GetBytes(info);
        var values = new float[info.ElementCount];
        switch (info.DType)
        {
            case SafeTensorsDType.F32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(values);
                break;
            case SafeTensorsDType.BF16:
                // bf16 is the upper half of an f32's bits.
                ReadOnlySpan<ushort> bf16 = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = BitConverter.Int32BitsToSingle(bf16[i] << 16);
                }
                break;
            case SafeTensorsDType.F16:
                ReadOnlySpan<Half> f16 = MemoryMarshal.Cast<byte, Half>(bytes);
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = (float)f16[i];
                }
                break;
            default:
                throw NotReadableAs(info, "f32", "F32, BF16 or F16");
        }
        return values;
    }

    /// <summary>I64, or I32/U8/BOOL widened.</summary>
    public long[] ReadInt64(string name)
    {
        (SafeTensorsFile file, SafeTensorInfo info) = Find(name);
        ReadOnlySpan<byte> bytes = file.GetBytes(info);
        var values = new long[info.ElementCount];
        switch (info.DType)
        {
            case SafeTensorsDType.I64:
                MemoryMarshal.Cast<byte, long>(bytes).CopyTo(values);
                break;
            case SafeTensorsDType.I32:
                ReadOnlySpan<int> i32 = MemoryMarshal.Cast<byte, int>(bytes);
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = i32[i];
                }
                break;
            case SafeTensorsDType.U8 or SafeTensorsDType.Bool:
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = bytes[i];
                }
                break;
            default:
                throw NotReadableAs(info, "int64", "I64, I32, U8 or BOOL");
        }
        return values;
    }

    /// <summary>I32, U8/BOOL widened, or I64 narrowed when every value fits (token ids do).</summary>
    public int[] ReadInt32(string name)
    {
        long[] wide = ReadInt64(name);
        var values = new int[wide.Length];
        for (int i = 0; i < values.Length; i++)
        {
            if (wide[i] is < int.MinValue or > int.MaxValue)
            {
                SafeTensorInfo info = Find(name).Info;
                throw new SafeTensorsException(info.FilePath, info.Name, $"element {i} = {wide[i]} does not fit int32");
            }
            values[i] = (int)wide[i];
        }
        return values;
    }

    /// <summary>U8 or BOOL (one byte each, 0/1 for BOOL).</summary>
    public byte[] ReadUInt8(string name)
    {
        (SafeTensorsFile file, SafeTensorInfo info) = Find(name);
        if (info.DType is not (SafeTensorsDType.U8 or SafeTensorsDType.Bool))
        {
            throw NotReadableAs(info, "uint8", "U8 or BOOL");
        }
        return file.GetBytes(info).ToArray();
    }

    /// <summary>
    /// A new tensor in <paramref name="context"/> with the file's shape: floating-point dtypes become
    /// f32 (the type the CPU backend computes in), I64/I32 become i32, U8/BOOL become u8.
    /// </summary>
    public Tensor ToTensor(Context context, string name)
    {
        SafeTensorInfo info = GetInfo(name);
        long[] shape = info.Shape.ToArray();
        return info.DType switch
        {
            SafeTensorsDType.F32 or SafeTensorsDType.BF16 or SafeTensorsDType.F16 => Tensor.FromArray(context, ReadFloat32(name), shape),
            SafeTensorsDType.I64 or SafeTensorsDType.I32 => Tensor.FromArray(context, ReadInt32(name), shape),
            SafeTensorsDType.U8 or SafeTensorsDType.Bool => Tensor.FromArray(context, ReadUInt8(name), shape),
            _ => throw NotReadableAs(info, "a tensor", "F32, BF16, F16, I64, I32, U8 or BOOL"),
        };
    }

    public TensorNameCheck CompareNames(IEnumerable<string> expected) => TensorNameCheck.Compare(Names, expected);

    /// <summary>Throws, listing every missing and every unexpected tensor, unless the names are exactly <paramref name="expected"/>.</summary>
    public void RequireNames(IEnumerable<string> expected)
    {
        TensorNameCheck check = CompareNames(expected);
        if (!check.IsExact)
        {
            throw new SafeTensorsException(SourcePath, null, check.ToString());
        }
    }

    private (SafeTensorsFile File, SafeTensorInfo Info) Find(string name) =>
        _byName.TryGetValue(name, out (SafeTensorsFile, SafeTensorInfo) found)
            ? found
            : throw new SafeTensorsException(SourcePath, name, "no such tensor");

    private static SafeTensorsException NotReadableAs(SafeTensorInfo info, string target, string readable) =>
        new(info.FilePath, info.Name, $"{info.DType.HeaderName()} cannot be read as {target} (readable: {readable})");

    public void Dispose() => _files.ForEach(f => f.Dispose());
}
