using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using NativeVlm.Tensors;

namespace NativeVlm.IO;

/// <summary>
/// Writes a safetensors file byte for byte as Hugging Face's serializer does: the 8-byte
/// little-endian header length; the header as compact JSON, <c>__metadata__</c> first and then the
/// tensors in data order, padded with spaces to a multiple of 8 bytes so that the data section
/// starts 8-aligned; then each tensor's bytes. Tensors are laid out in the order they are added
/// (not sorted by name): transformers' and PEFT's files keep the state-dict order, which is what
/// makes a file read and written back byte-identical. Holds the added bytes until <see cref="Save"/>,
/// which suits adapters and checkpoints of trainable parameters, not whole base models.
/// </summary>
public sealed class SafeTensorsWriter
{
    private readonly List<(string Name, SafeTensorsDType DType, long[] Shape, byte[] Data)> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>The header's <c>__metadata__</c>, written in this order; {"format": "pt"} as transformers and PEFT write it; null writes none.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; } = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>Bytes already in the file's layout: little-endian, row-major, <paramref name="shape"/> × dtype size of them.</summary>
    public void AddRaw(string name, SafeTensorsDType dtype, ReadOnlySpan<long> shape, ReadOnlySpan<byte> data)
    {
        if (name == SafeTensorsFile.MetadataKey)
        {
            throw new ArgumentException($"'{SafeTensorsFile.MetadataKey}' is reserved for the metadata, not a tensor name", nameof(name));
        }
        if (_names.Contains(name))
        {
            throw new ArgumentException($"tensor '{name}' was already added", nameof(name));
        }
        long elements = 1;
        foreach (long dim in shape)
        {
            if (dim < 0)
            {
                throw new ArgumentException($"tensor '{name}': negative dimension in shape [{string.Join(", ", shape.ToArray())}]", nameof(shape));
            }
            elements = checked(elements * dim);
        }
        if (checked(elements * dtype.SizeInBytes()) != data.Length)
        {
            throw new ArgumentException(
                $"tensor '{name}': shape [{string.Join(", ", shape.ToArray())}] of {dtype.HeaderName()} needs {elements * dtype.SizeInBytes()} bytes, got {data.Length}",
                nameof(data));
        }
        _names.Add(name);
        _tensors.Add((name, dtype, shape.ToArray(), data.ToArray()));
    }

    public void Add(string name, float[] values, params long[] shape) =>
        AddRaw(name, SafeTensorsDType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()));

    /// <summary>Downloads the tensor; f32, bf16, i32 and u8 tensors keep their type in the file.</summary>
    public void Add(string name, Tensor tensor)
    {
        switch (tensor.DType)
        {
            case DType.F32:
                AddRaw(name, SafeTensorsDType.F32, tensor.Shape, MemoryMarshal.AsBytes(tensor.ToFloatArray().AsSpan()));
                break;
            case DType.BF16:
                AddRaw(name, SafeTensorsDType.BF16, tensor.Shape, MemoryMarshal.AsBytes(tensor.ToBf16Bits().AsSpan()));
                break;
            case DType.I32:
                AddRaw(name, SafeTensorsDType.I32, tensor.Shape, MemoryMarshal.AsBytes(tensor.ToInt32Array().AsSpan()));
                break;
            case DType.U8:
                AddRaw(name, SafeTensorsDType.U8, tensor.Shape, tensor.ToByteArray());
                break;
            default:
                throw new ArgumentException($"tensor '{name}': {tensor.DType} has no safetensors dtype here", nameof(tensor));
        }
    }

    public void Save(string path)
    {
        byte[] header = Header();
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);
        foreach ((_, _, _, byte[] data) in _tensors)
        {
            stream.Write(data);
        }
    }

    /// <summary>
    /// Written by hand rather than with Utf8JsonWriter: its escaping differs from serde_json's
    /// (safetensors' serializer) for non-ASCII and HTML-sensitive characters, and the bytes must match.
    /// </summary>
    private byte[] Header()
    {
        var json = new StringBuilder("{");
        if (Metadata is not null)
        {
            json.Append(Quote(SafeTensorsFile.MetadataKey)).Append(":{");
            json.AppendJoin(',', Metadata.Select(field => $"{Quote(field.Key)}:{Quote(field.Value)}"));
            json.Append('}');
        }
        long offset = 0;
        foreach ((string name, SafeTensorsDType dtype, long[] shape, byte[] data) in _tensors)
        {
            if (json.Length > 1)
            {
                json.Append(',');
            }
            json.Append(Quote(name))
                .Append(":{\"dtype\":").Append(Quote(dtype.HeaderName()))
                .Append(",\"shape\":[").AppendJoin(',', shape.Select(d => d.ToString(CultureInfo.InvariantCulture)))
                .Append("],\"data_offsets\":[").Append(offset.ToString(CultureInfo.InvariantCulture))
                .Append(',').Append((offset + data.Length).ToString(CultureInfo.InvariantCulture)).Append("]}");
            offset += data.Length;
        }
        json.Append('}');
        int length = Encoding.UTF8.GetByteCount(json.ToString());
        json.Append(' ', (8 - length % 8) % 8);
        return Encoding.UTF8.GetBytes(json.ToString());
    }

    /// <summary>A JSON string as serde_json writes it: only '"', '\\' and control characters escaped.</summary>
    private static string Quote(string value)
    {
        var quoted = new StringBuilder(value.Length + 2).Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': quoted.Append("\\\""); break;
                case '\\': quoted.Append("\\\\"); break;
                case '\b': quoted.Append("\\b"); break;
                case '\f': quoted.Append("\\f"); break;
                case '\n': quoted.Append("\\n"); break;
                case '\r': quoted.Append("\\r"); break;
                case '\t': quoted.Append("\\t"); break;
                case < ' ': quoted.Append("\\u00").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture)); break;
                default: quoted.Append(c); break;
            }
        }
        return quoted.Append('"').ToString();
    }
}
